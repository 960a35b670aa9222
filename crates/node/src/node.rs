//! What the lanes and the control thread of one node share: the store, the
//! apply gate, each lane's applied-write records (session table, recent
//! history), the command links to the lanes, where the node stands in the
//! protocol, and a hash chain of the applied history.

use rzab_proto::{AppliedSeqs, ApplyGate, HistoryLog, NodeId, Op, OwnedEntry, Role, Sequencer, Zxid};
use rzab_store::{KeyedOutcome, Store, StoreConfig, StoreError};
use rzab_wire::{Fence, SessionItem};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

/// A keyed write's payload: `[key length][key][value]`.
pub fn split_keyed(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = payload.split_first()?;
    (rest.len() >= n as usize).then(|| rest.split_at(n as usize))
}

/// Builds a keyed write's payload.
pub fn keyed_payload(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + key.len() + value.len());
    p.push(key.len().min(255) as u8);
    p.extend_from_slice(&key[..key.len().min(255)]);
    p.extend_from_slice(value);
    p
}

/// A running hash over every write applied at a node, in apply order.
/// Two replicas that applied the same sequence from the same start have
/// equal chains at equal counts. Updated only by whoever the gate admits,
/// so Relaxed suffices: the gate's Release/Acquire orders updates.
#[derive(Debug, Default)]
pub struct History {
    chain: AtomicU64,
    count: AtomicU64,
}

/// The fields of an applied write the chain covers.
pub struct Applied<'a> {
    pub zxid: Zxid,
    pub key: u64,
    pub session: u32,
    pub seq: u64,
    pub origin: NodeId,
    pub op: Op,
    pub value: &'a [u8],
}

impl History {
    pub fn record(&self, a: &Applied<'_>) {
        let mut fixed = [0u8; 32];
        fixed[0..8].copy_from_slice(&a.zxid.0.to_le_bytes());
        fixed[8..16].copy_from_slice(&a.key.to_le_bytes());
        fixed[16..20].copy_from_slice(&a.session.to_le_bytes());
        fixed[20..28].copy_from_slice(&a.seq.to_le_bytes());
        fixed[28] = a.origin;
        fixed[29] = a.op as u8;
        fixed[30..32].copy_from_slice(&(a.value.len() as u16).to_le_bytes());
        let h = self.chain.load(Ordering::Relaxed);
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&fixed, h);
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(a.value, h);
        self.chain.store(h, Ordering::Relaxed);
        self.count
            .store(self.count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// (writes applied, chain hash).
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Acquire),
            self.chain.load(Ordering::Acquire),
        )
    }
}

/// The last applied write (seq, id) of each session of one lane, and the
/// owner of its binding, in a flat table indexed by (origin, session): the
/// apply path's update is a store, not a map insert.
#[derive(Debug)]
pub struct LaneSeqs {
    lane: u8,
    sessions: u32,
    slots: Vec<(u64, Zxid, u64)>,
}

impl LaneSeqs {
    pub fn new(lane: u8, nodes: usize, sessions: u32) -> LaneSeqs {
        LaneSeqs {
            lane,
            sessions,
            slots: vec![(0, Zxid::ZERO, 0); nodes * sessions as usize],
        }
    }

    fn slot(&mut self, origin: NodeId, session: u32) -> Option<&mut (u64, Zxid, u64)> {
        if session >= self.sessions {
            return None;
        }
        self.slots
            .get_mut(origin as usize * self.sessions as usize + session as usize)
    }

    /// The session's last applied write, if any.
    pub fn last(&self, origin: NodeId, session: u32) -> Option<(u64, Zxid)> {
        let i = origin as usize * self.sessions as usize + session as usize;
        self.slots
            .get(i)
            .filter(|s| s.0 > 0 && session < self.sessions)
            .map(|s| (s.0, s.1))
    }

    /// Every session with a write applied, as (origin, session, seq,
    /// owner of its binding).
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u32, u64, u64)> + '_ {
        let n = self.sessions.max(1) as usize;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.0 > 0)
            .map(move |(i, s)| ((i / n) as NodeId, (i % n) as u32, s.0, s.2))
    }

    pub fn items(&self) -> Vec<SessionItem> {
        self.iter()
            .map(|(origin, session, seq, owner)| SessionItem {
                origin,
                lane: self.lane,
                session,
                seq,
                owner,
            })
            .collect()
    }

    /// Replaces the table with a snapshot's (taken at `base`).
    pub fn load(&mut self, items: &[SessionItem], base: Zxid) {
        self.slots.iter_mut().for_each(|s| *s = (0, Zxid::ZERO, 0));
        let lane = self.lane;
        for i in items.iter().filter(|i| i.lane == lane) {
            self.record(i.origin, i.session, i.seq, base);
            self.bound(i.origin, i.session, i.seq, i.owner);
        }
    }
}

/// Ids out of range are ignored (the leader's session table refuses them
/// before they get an id).
impl AppliedSeqs for LaneSeqs {
    fn record(&mut self, origin: NodeId, session: u32, seq: u64, zxid: Zxid) {
        if let Some(s) = self.slot(origin, session)
            && seq >= s.0
        {
            (s.0, s.1) = (seq, zxid);
        }
    }

    fn bound(&mut self, origin: NodeId, session: u32, seq: u64, owner: u64) {
        if let Some(s) = self.slot(origin, session)
            && seq >= s.0
        {
            s.2 = owner;
        }
    }
}

/// What a lane records about the writes it applied, for recovery: the last
/// write of each session of this lane, and the latest writes themselves.
/// Locked by the lane around its applies (uncontended) and by the control
/// thread rarely (elections, joins).
#[derive(Debug)]
pub struct LaneRecords {
    pub seqs: LaneSeqs,
    pub history: HistoryLog,
}

/// A request from the control thread to a lane.
pub enum LaneCmd {
    /// Stop the role (its epoch is over); reply with what it held.
    Pause,
    /// Run `role` (with the leader's sequencer); with `hold`, receive and
    /// acknowledge but do not apply until `Resume` (a joining node whose
    /// snapshot is still arriving).
    Start {
        role: Box<Role>,
        sequencer: Option<Arc<Sequencer>>,
        serving: bool,
        hold: bool,
    },
    /// Apply again after a hold.
    Resume,
    /// Sessions may issue: resolve pending writes against the session table.
    Serve,
    /// (Leader) add a learner; reply with its lid and what lies below it.
    AddLearner { node: NodeId, fence: bool },
    /// (Leader) count a caught-up learner; reply whether the lane agreed.
    Promote { node: NodeId },
}

pub enum LaneReply {
    Held(Vec<OwnedEntry>),
    Learner(Option<(u64, Zxid)>),
    Promoted(bool),
}

/// The two channels between the control thread and one lane.
pub struct LaneLink {
    pub cmd_tx: crossbeam_channel::Sender<LaneCmd>,
    pub cmd_rx: crossbeam_channel::Receiver<LaneCmd>,
    pub reply_tx: crossbeam_channel::Sender<LaneReply>,
    pub reply_rx: crossbeam_channel::Receiver<LaneReply>,
    /// Client writes from the gateway (bounded by the connections: each
    /// has at most `client.max_inflight` requests waiting).
    pub client_tx: crossbeam_channel::Sender<crate::client_slots::ClientWrite>,
    pub client_rx: crossbeam_channel::Receiver<crate::client_slots::ClientWrite>,
}

impl LaneLink {
    fn new() -> LaneLink {
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        let (client_tx, client_rx) = crossbeam_channel::unbounded();
        LaneLink {
            cmd_tx,
            cmd_rx,
            reply_tx,
            reply_rx,
            client_tx,
            client_rx,
        }
    }
}

/// No leader known.
pub const NO_LEADER: u8 = u8::MAX;

/// Where the node stands in the protocol (for reports and the supervisor).
#[derive(Debug)]
pub struct Standing {
    pub epoch: AtomicU32,
    pub leader: AtomicU8,
    pub serving: AtomicBool,
    /// This process's node started without state and joined a running cluster.
    pub rejoined: AtomicBool,
    /// Monotonic ns when the node last became leader and when it first
    /// committed in that epoch (0: not yet), for failover figures.
    pub led_at_ns: AtomicU64,
    pub first_commit_ns: AtomicU64,
    /// Monotonic ns when a rejoining node was promoted (caught up).
    pub caught_up_ns: AtomicU64,
    /// Monotonic ns of the last apply, and the gaps between applies longer
    /// than [`GAP_NS`] (start, end): the unavailability windows.
    pub last_apply_ns: AtomicU64,
    pub gaps: Mutex<Vec<(u64, u64)>>,
    /// Keys received in the snapshot this node joined from.
    pub installed_keys: AtomicU64,
}

/// Gaps between applies worth recording (under load applies come every
/// few microseconds; a failover stops them for milliseconds).
pub const GAP_NS: u64 = 5_000_000;

impl Standing {
    /// Notes applies at `now_ns` (monotonic), recording a long gap before them.
    pub fn note_apply(&self, now_ns: u64) {
        let last = self.last_apply_ns.swap(now_ns, Ordering::Relaxed);
        if last != 0
            && now_ns > last + GAP_NS
            && let Ok(mut g) = self.gaps.lock()
            && g.len() < 10_000
        {
            g.push((last, now_ns));
        }
    }

    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.gaps.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The last `n` gaps.
    pub fn recent_gaps(&self, n: usize) -> Vec<(u64, u64)> {
        self.gaps
            .lock()
            .map(|g| g[g.len().saturating_sub(n)..].to_vec())
            .unwrap_or_default()
    }
}

pub struct NodeShared {
    pub id: NodeId,
    pub store: Store,
    pub gate: ApplyGate,
    pub history: History,
    pub records: Vec<Mutex<LaneRecords>>,
    pub links: Vec<LaneLink>,
    pub standing: Standing,
    /// Every lane's waker, to wake lanes waiting on the gate or a command.
    wakers: OnceLock<Vec<Waker>>,
    /// A client gateway for lane 0's thread to run.
    pub host: crate::gateway::hosted::HostSlot,
    /// Debugging aid: every applied write, one line each, to the file
    /// `$RZAB_APPLY_LOG/node-N.log`.
    apply_log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl NodeShared {
    /// A node of a `nodes`-member cluster whose last applied id is
    /// `applied`, with `lanes` lanes of `sessions` sessions each, that each
    /// retain `retained` applied writes for recovery.
    pub fn new(
        id: NodeId,
        store: StoreConfig,
        shape: (usize, u8, u32),
        applied: Zxid,
        retained: usize,
    ) -> Result<NodeShared, StoreError> {
        let (nodes, lanes, sessions) = shape;
        Ok(NodeShared {
            id,
            store: Store::new(store)?,
            gate: ApplyGate::new(applied),
            history: History::default(),
            records: (0..lanes)
                .map(|l| {
                    Mutex::new(LaneRecords {
                        seqs: LaneSeqs::new(l, nodes, sessions),
                        history: HistoryLog::new(retained, applied),
                    })
                })
                .collect(),
            links: (0..lanes).map(|_| LaneLink::new()).collect(),
            standing: Standing {
                epoch: AtomicU32::new(applied.epoch()),
                leader: AtomicU8::new(NO_LEADER),
                serving: AtomicBool::new(false),
                rejoined: AtomicBool::new(false),
                led_at_ns: AtomicU64::new(0),
                first_commit_ns: AtomicU64::new(0),
                caught_up_ns: AtomicU64::new(0),
                last_apply_ns: AtomicU64::new(0),
                gaps: Mutex::new(Vec::new()),
                installed_keys: AtomicU64::new(0),
            },
            wakers: OnceLock::new(),
            host: Default::default(),
            apply_log: std::env::var_os("RZAB_APPLY_LOG").and_then(|dir| {
                let path = std::path::Path::new(&dir).join(format!("node-{id}-{}.log", std::process::id()));
                std::fs::File::create(path)
                    .ok()
                    .map(|f| Mutex::new(std::io::BufWriter::new(f)))
            }),
        })
    }

    pub fn lanes(&self) -> usize {
        self.links.len()
    }

    /// A lane's records (a poisoned lock still holds valid data: every
    /// update is a single insert).
    pub fn records(&self, lane: usize) -> MutexGuard<'_, LaneRecords> {
        self.records[lane].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the lanes' wakers (once, before the lanes start).
    pub fn set_wakers(&self, wakers: Vec<Waker>) {
        let _ = self.wakers.set(wakers);
    }

    /// Wakes lane `lane` (a client write waits for it).
    pub fn wake_lane(&self, lane: usize) {
        if let Some(w) = self.wakers.get().and_then(|ws| ws.get(lane)) {
            w.wake_by_ref();
        }
    }

    /// Wakes every lane but `except` (the gate moved, or a command waits).
    pub fn wake_lanes(&self, except: usize) {
        if let Some(ws) = self.wakers.get() {
            for (i, w) in ws.iter().enumerate() {
                if i != except {
                    w.wake_by_ref();
                }
            }
        }
    }

    /// Applies one committed write the gate admitted: the store, the hash
    /// chain, and the lane's records. (After a fuzzy snapshot, the writes
    /// replayed after its base may briefly put older versions back; the
    /// replay in id order ends in the exact state, as in ZooKeeper.)
    /// `records` is the lane's, locked by the caller (once for many applies).
    /// Returns what a keyed write did (`None` for the other ops), and the
    /// fence a Bind carried.
    pub fn apply(
        &self,
        records: &mut LaneRecords,
        lane: usize,
        a: &Applied<'_>,
    ) -> Result<(Option<KeyedOutcome>, Option<Fence>), StoreError> {
        let z = a.zxid.0;
        let outcome = match a.op {
            Op::Put => {
                self.store.put(a.key, a.value, z)?;
                None
            }
            Op::Delete => {
                self.store.delete(a.key, z)?;
                None
            }
            // A malformed payload (only a hostile member could send one) is
            // refused alike everywhere: it must not stop the replicas.
            Op::KeyedPut => Some(match split_keyed(a.value) {
                Some((k, v)) => self.store.put_keyed(k, v, z)?,
                None => KeyedOutcome::Invalid,
            }),
            Op::KeyedDelete => Some(match split_keyed(a.value) {
                Some((k, [])) => self.store.delete_keyed(k, z)?,
                _ => KeyedOutcome::Invalid,
            }),
            Op::Sync | Op::Bind => None,
        };
        self.history.record(a);
        if let Some(log) = &self.apply_log
            && let Ok(mut w) = log.lock()
        {
            use std::io::Write;
            let _ = writeln!(
                w,
                "{} {} {} {} {} {}",
                a.zxid, lane, a.origin, a.session, a.seq, a.key
            );
        }
        let r = records;
        let bind = rzab_proto::record_applied(&mut r.seqs, a.origin, a.session, a.seq, a.zxid, a.op, a.value);
        r.history.push_with(|e| {
            e.zxid = a.zxid;
            e.lane = lane as u8;
            e.origin = a.origin;
            e.op = a.op;
            e.session = a.session;
            e.seq = a.seq;
            e.key = a.key;
            e.value.clear();
            e.value.extend_from_slice(a.value);
        });
        Ok((outcome, bind.and_then(|b| b.fence)))
    }

    /// Debugging aid: notes an event in the apply log, if on.
    pub fn log_event(&self, what: impl FnOnce() -> String) {
        if let Some(log) = &self.apply_log
            && let Ok(mut w) = log.lock()
        {
            use std::io::Write;
            let _ = writeln!(w, "# {}", what());
            let _ = w.flush();
        }
    }

    /// Whether this node leads (for reports).
    pub fn is_leader(&self) -> bool {
        self.standing.leader.load(Ordering::Relaxed) == self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_wire::{gen_end, gen_start};

    #[test]
    fn session_records_keep_owners_through_fences_and_snapshots() {
        let mut s = LaneSeqs::new(1, 3, 4);
        s.record(2, 1, gen_start(1), Zxid(5));
        s.bound(2, 1, gen_start(1), 42);
        s.record(2, 1, gen_start(1) + 3, Zxid(6));
        // A fence raises the session; its owner stays until the slot's
        // next Bind, which brings its own.
        s.record(2, 1, gen_end(1), Zxid(7));
        assert_eq!(s.iter().collect::<Vec<_>>(), [(2, 1, gen_end(1), 42)]);
        s.record(2, 1, gen_start(2), Zxid(8));
        s.bound(2, 1, gen_start(2), 43);
        // An older Bind replayed after a fuzzy snapshot changes nothing.
        s.record(2, 1, gen_start(1), Zxid(9));
        s.bound(2, 1, gen_start(1), 42);
        assert_eq!(s.last(2, 1), Some((gen_start(2), Zxid(8))));
        assert_eq!(s.iter().collect::<Vec<_>>(), [(2, 1, gen_start(2), 43)]);
        // Through a snapshot: the same seqs and owners.
        let mut t = LaneSeqs::new(1, 3, 4);
        t.load(&s.items(), Zxid(20));
        assert_eq!(t.iter().collect::<Vec<_>>(), s.iter().collect::<Vec<_>>());
        assert_eq!(t.last(2, 1), Some((gen_start(2), Zxid(20))));
        // Out of range: ignored.
        t.bound(9, 9, 1, 1);
        assert_eq!(t.items().len(), 1);
    }
}
