//! One simulated node's state below its control plane: the lanes of the
//! current epoch, the sessions issuing on them, and a model store. It
//! implements the control plane's [`Host`], as the runtime's node does.

use crate::checker;
use crate::config::SimConfig;
use crate::history::{Applied, SessionId};
use crate::shape::{Shape, VALUE_SIZE};
use rzab_proto::{
    HistoryLog, Host, LaneStart, NodeId, Op, OwnedEntry, OwnedItem, PlantedBug, Role, Sequencer, SessionSeqs,
    Snapshot, Submitted, Time, Zxid,
};
use rzab_wire::{BindValue, Fence, WriteEntry, is_fence_end, seq_gen};

/// A session's outstanding write.
#[derive(Clone, Copy, Debug)]
pub struct PendingWrite {
    /// Its index in the history's writes.
    pub idx: usize,
    pub seq: u64,
    pub key: u64,
    pub op: Op,
    pub tag: u64,
    /// A `Bind`'s value: its owner and fence.
    pub bind: Option<BindValue>,
    /// The current lanes have it (false: submit it, again after an epoch change).
    pub submitted: bool,
}

pub struct Session {
    pub id: SessionId,
    /// The last seq this session used.
    pub seq: u64,
    pub pending: Option<PendingWrite>,
    pub ops_left: u32,
    pub ready_at: Time,
    /// The next write is a `Bind` opening a new generation: the session's
    /// binding was given up or fenced, or its node restarted (datagrams of
    /// the last life's writes may still be on their way).
    pub must_bind: bool,
    /// The next write is a `Bind` fencing this binding: a session that
    /// moved here from another node.
    pub fence_next: Option<Fence>,
    /// The generation of the session's last Bind applied here (what a
    /// client learns from its Welcome, and may name in a fence), and that
    /// Bind's owner.
    pub bound: u64,
    pub bound_owner: u64,
    /// The client session its Binds are owned by (a session that moved in
    /// takes the moving client's).
    pub owner: u64,
}

pub struct LaneSlot {
    /// The lane of the current epoch (none while stopped).
    pub role: Option<Role>,
    pub sessions: Vec<Session>,
    pub turn_at: Option<Time>,
}

pub struct SimHost {
    pub node: NodeId,
    pub inc: u32,
    shape: Shape,
    cfg: SimConfig,
    pub lanes: Vec<LaneSlot>,
    /// Sessions may issue.
    pub serving: bool,
    /// Per key, (zxid, tag) of its latest write ((0, 0): absent).
    pub store: Vec<(u64, u64)>,
    /// The apply gate: the last id applied.
    pub gate: Zxid,
    history: HistoryLog,
    pub seqs: SessionSeqs,
    sequencer: Option<Sequencer>,
    /// Set by the world before each call in.
    pub now: Time,
    /// Writes applied since the world last looked.
    pub applied: Vec<Applied>,
    /// Sessions' writes completed since: (lane, session, write index, zxid).
    pub completed: Vec<(u8, u32, usize, u64)>,
    /// Writes resolved without an id seen (applied inside a snapshot).
    pub resolved: Vec<usize>,
    /// Writes the node reported not applied (fenced or stranded).
    pub failed: Vec<usize>,
    /// A snapshot replaced the store at this base since the world looked.
    pub installed: Option<u64>,
    /// Writes the node's own leader lane refused (a bug, reported).
    pub refused: Vec<String>,
}

/// How many applied entries a node retains for diffs (small: the sim
/// should exercise snapshot transfers too).
const HISTORY_RETAINED: usize = 256;

impl SimHost {
    /// A node's state at a cluster's start (`inc` 0) or after a restart
    /// without state (sessions resume their remaining operations).
    pub fn new(shape: &Shape, cfg: &SimConfig, node: NodeId, inc: u32, ops_left: &[Vec<u32>]) -> SimHost {
        let lanes = (0..shape.lanes)
            .map(|l| LaneSlot {
                role: None,
                sessions: (0..shape.sessions)
                    .map(|i| Session {
                        id: SessionId {
                            node,
                            lane: l,
                            index: i,
                            inc,
                        },
                        seq: 0,
                        pending: None,
                        ops_left: ops_left
                            .get(l as usize)
                            .and_then(|s| s.get(i as usize))
                            .copied()
                            .unwrap_or(cfg.ops_per_session),
                        ready_at: Time::ZERO,
                        // Clients bind each connection (when sessions
                        // move, as the gateway's do).
                        must_bind: inc > 0 || cfg.faults.moves,
                        fence_next: None,
                        bound: 0,
                        bound_owner: 0,
                        owner: 1 + ((node as u64) << 40 | (l as u64) << 32 | (inc as u64) << 16 | i as u64),
                    })
                    .collect(),
                turn_at: None,
            })
            .collect();
        SimHost {
            node,
            inc,
            shape: shape.clone(),
            cfg: cfg.clone(),
            lanes,
            serving: false,
            store: vec![(0, 0); cfg.keys as usize],
            gate: Zxid::ZERO,
            history: HistoryLog::new(HISTORY_RETAINED, Zxid::ZERO),
            seqs: SessionSeqs::default(),
            sequencer: None,
            now: Time::ZERO,
            applied: Vec::new(),
            completed: Vec::new(),
            resolved: Vec::new(),
            failed: Vec::new(),
            installed: None,
            refused: Vec::new(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.sequencer.is_some()
    }

    /// Sessions' remaining operations (carried into a restart).
    pub fn ops_left(&self) -> Vec<Vec<u32>> {
        self.lanes
            .iter()
            .map(|l| l.sessions.iter().map(|s| s.ops_left).collect())
            .collect()
    }

    /// The leader's sequencing step for one lane.
    pub fn sequence(&mut self, l: u8) {
        if let (Some(Role::Leader(leader)), Some(seq)) = (&mut self.lanes[l as usize].role, &self.sequencer) {
            // The simulated epoch cannot run out of 2^32 ids.
            let _ = leader.sequence(seq);
        }
    }

    /// Applies what lane `l` has committed, in id order across lanes.
    /// Returns whether anything was applied.
    pub fn apply_lane(&mut self, l: u8) -> bool {
        let out_of_order = self.cfg.bug == PlantedBug::ApplyOutOfOrder;
        let mut any = false;
        while let Some(role) = self.lanes[l as usize].role.as_mut() {
            let Some(e) = role.next_apply() else { break };
            let z = e.meta.zxid;
            if z <= self.gate && !out_of_order {
                // Covered by the snapshot or history this node caught up from.
                role.skip_applied();
                continue;
            }
            if !out_of_order && self.gate.0 + 1 != z.0 {
                break;
            }
            let entry = e.to_owned_entry(l);
            role.advance_apply();
            self.apply_one(entry);
            any = true;
        }
        any
    }

    fn apply_one(&mut self, e: OwnedEntry) {
        let bind = rzab_proto::bind_of(e.op, &e.value);
        let tag = if e.op == Op::Bind {
            0
        } else {
            let mut t = [0u8; 8];
            let n = e.value.len().min(8);
            t[..n].copy_from_slice(&e.value[..n]);
            checker::tag_of(e.op, u64::from_le_bytes(t))
        };
        if e.op != Op::Bind
            && let Some(slot) = self.store.get_mut(e.key as usize)
        {
            *slot = (e.zxid.0, tag);
        }
        let fence = bind.and_then(|b| b.fence);
        // What a session a Bind fences had applied here before this Bind.
        let fenced_applied = fence.map(|f| self.seqs.get(f.node, e.lane, f.session));
        let mut lane = self.seqs.lane(e.lane);
        rzab_proto::record_bind(&mut lane, e.origin, e.session, e.seq, e.zxid, bind);
        let rec = Applied {
            zxid: e.zxid.0,
            origin: e.origin,
            lane: e.lane,
            session: e.session,
            seq: e.seq,
            key: e.key,
            op: e.op,
            tag,
            fence: fence.map(|f| (f.node, f.session, f.generation)),
            owner: bind.map_or(0, |b| b.owner),
        };
        if e.zxid > self.gate {
            self.gate = e.zxid;
            self.history.push(e);
        }
        self.applied.push(rec);
        let early = self.cfg.bug == PlantedBug::CompleteBeforeApply && !self.is_leader();
        if rec.origin == self.node && !early {
            self.complete(rec.lane, rec.session, rec.seq, rec.zxid);
        }
        if let (Some(f), Some(applied)) = (fence.filter(|f| f.node == self.node), fenced_applied) {
            self.fenced(rec.lane, f.session, f.generation, applied);
        }
    }

    /// A `Bind` applied here fenced off generation `generation` of a
    /// session of this node, which had applied up to seq `applied`: its
    /// write of that generation not applied by now never will be (one the
    /// node took in a snapshot was, its id unknown), and the session binds
    /// anew.
    fn fenced(&mut self, lane: u8, session: u32, generation: u64, applied: u64) {
        let Some(s) = self.session_mut(lane, session) else {
            return;
        };
        if seq_gen(s.seq) <= generation {
            s.must_bind = true;
        }
        let Some(p) = s.pending.filter(|p| seq_gen(p.seq) <= generation) else {
            return;
        };
        s.pending = None;
        if p.seq <= applied {
            self.resolved.push(p.idx);
        } else {
            self.failed.push(p.idx);
        }
    }

    /// The session's pending write `seq` is applied (at this node, or at the
    /// leader under the planted early-completion bug).
    pub fn complete(&mut self, lane: u8, session: u32, seq: u64, zxid: u64) {
        let Some(s) = self.session_mut(lane, session) else {
            return;
        };
        if let Some(p) = s.pending
            && p.seq == seq
        {
            if let Some(b) = p.bind {
                s.bound = seq_gen(seq);
                s.bound_owner = b.owner;
            }
            s.pending = None;
            s.ready_at = Time::NEVER;
            self.completed.push((lane, session, p.idx, zxid));
        }
    }

    /// Hands the session's pending write to its lane (again, if it was full
    /// or the lanes changed).
    pub fn submit(&mut self, l: u8, i: usize) {
        let slot = &mut self.lanes[l as usize];
        let (Some(role), Some(p)) = (slot.role.as_mut(), slot.sessions[i].pending) else {
            return;
        };
        if p.submitted || !self.serving {
            return;
        }
        let value = p.tag.to_le_bytes();
        let bind = p.bind.map(|b| b.to_vec()).unwrap_or_default();
        let entry = WriteEntry {
            session: i as u32,
            seq: p.seq,
            key: p.key,
            op: p.op,
            value: match p.op {
                Op::Delete => &[],
                Op::Bind => &bind[..],
                _ => &value[..VALUE_SIZE],
            },
        };
        match role.submit(&entry) {
            Submitted::Accepted => {
                if let Some(p) = &mut slot.sessions[i].pending {
                    p.submitted = true;
                }
            }
            Submitted::Retry => {}
            // This node leads and sequenced a fence of the session's
            // binding that it has not applied yet: the write never will be.
            Submitted::Stale if seq_gen(p.seq) >= 1 => {
                let s = &mut slot.sessions[i];
                s.pending = None;
                s.must_bind = true;
                self.failed.push(p.idx);
            }
            // A session's next write refused (or as already sequenced):
            // its node's view of its own session went wrong (a checker fails).
            refused @ (Submitted::Refused(_) | Submitted::Stale) => {
                let why = match refused {
                    Submitted::Refused(why) => why,
                    _ => "already sequenced".to_string(),
                };
                let id = slot.sessions[i].id;
                self.refused.push(format!("{id:?} write {}: {why}", p.seq));
                slot.sessions[i].pending = None;
                self.resolved.push(p.idx);
            }
        }
    }

    fn session_mut(&mut self, lane: u8, session: u32) -> Option<&mut Session> {
        self.lanes
            .get_mut(lane as usize)
            .and_then(|l| l.sessions.get_mut(session as usize))
    }

    fn role_mut(&mut self, l: usize) -> Option<&mut Role> {
        self.lanes.get_mut(l).and_then(|s| s.role.as_mut())
    }
}

impl Host for SimHost {
    fn applied(&self) -> Zxid {
        self.gate
    }

    fn pause_lanes(&mut self) -> Vec<OwnedEntry> {
        let mut held = Vec::new();
        for slot in &mut self.lanes {
            if let Some(role) = slot.role.take() {
                held.extend(role.held());
            }
            for s in &mut slot.sessions {
                if let Some(p) = &mut s.pending {
                    p.submitted = false;
                }
            }
        }
        self.sequencer = None;
        self.serving = false;
        held.sort_by_key(|e| e.zxid);
        held.dedup_by_key(|e| e.zxid);
        held
    }

    fn history_after(&self, after: Zxid) -> Option<Vec<OwnedEntry>> {
        self.history.after(after)
    }

    fn snapshot(&mut self) -> Snapshot {
        let items = self
            .store
            .iter()
            .enumerate()
            .filter(|(_, (z, _))| *z != 0)
            .map(|(key, &(z, tag))| OwnedItem {
                key: key as u64,
                zxid: Zxid(z),
                value: if tag == 0 {
                    Vec::new()
                } else {
                    tag.to_le_bytes().to_vec()
                },
            })
            .collect();
        Snapshot {
            base: self.gate,
            items,
            sessions: self.seqs.items(),
        }
    }

    fn apply(&mut self, entries: &[OwnedEntry]) {
        for e in entries {
            if e.zxid > self.gate {
                self.apply_one(e.clone());
            }
        }
    }

    fn advance_to(&mut self, to: Zxid) {
        self.gate = self.gate.max(to);
    }

    fn install(&mut self, snapshot: Snapshot) {
        self.store.iter_mut().for_each(|s| *s = (0, 0));
        for i in &snapshot.items {
            let mut t = [0u8; 8];
            let n = i.value.len().min(8);
            t[..n].copy_from_slice(&i.value[..n]);
            if let Some(slot) = self.store.get_mut(i.key as usize) {
                *slot = (i.zxid.0, u64::from_le_bytes(t));
            }
        }
        self.gate = snapshot.base;
        self.history.reset(snapshot.base);
        self.seqs.load(&snapshot.sessions, snapshot.base);
        self.installed = Some(snapshot.base.0);
    }

    fn start_lanes(&mut self, start: &LaneStart) {
        if start.lids.is_none() && self.gate.epoch() < start.epoch {
            // The lanes of a new epoch number from its base.
            self.gate = Zxid::epoch_base(start.epoch);
        }
        let leading = start.leader == self.node;
        for l in 0..self.shape.lanes {
            let c = self
                .shape
                .lane_config(self.node, l, &self.cfg, start.epoch, start.leader);
            let role = Role::starting(c, start, self.seqs.of_lane(l))
                .unwrap_or_else(|e| panic!("sim shape is valid: {e}"));
            self.lanes[l as usize].role = Some(role);
        }
        self.sequencer = leading.then(|| Sequencer::new(self.gate));
        if start.serving {
            self.serve();
        }
    }

    fn add_learner(&mut self, node: NodeId, fence: bool) -> Option<(Vec<u64>, Zxid, Zxid)> {
        let now = self.now;
        // Writes appended but not yet given an id would get one after the
        // fence's point: sequence them first.
        for l in 0..self.lanes.len() as u8 {
            self.sequence(l);
        }
        let sequenced = Zxid(self.sequencer.as_ref()?.peek().0 - 1);
        let mut lids = Vec::new();
        let mut below = Zxid::ZERO;
        for l in 0..self.lanes.len() {
            let Some(Role::Leader(lane)) = self.role_mut(l) else {
                return None;
            };
            let (lid, b) = lane.add_learner(node, now, fence)?;
            lids.push(lid);
            below = below.max(b);
        }
        Some((lids, below, sequenced))
    }

    fn promote(&mut self, node: NodeId) -> bool {
        let mut all = true;
        for l in 0..self.lanes.len() {
            if let Some(Role::Leader(lane)) = self.role_mut(l) {
                all &= lane.promote(node);
            }
        }
        all
    }

    fn serve(&mut self) {
        self.serving = true;
        let node = self.node;
        for (l, slot) in self.lanes.iter_mut().enumerate() {
            for (i, s) in slot.sessions.iter_mut().enumerate() {
                let done = self.seqs.get(node, l as u8, i as u32);
                match s.pending {
                    // Applied through a snapshot: done, though its id is unknown here.
                    Some(p) if p.seq <= done => {
                        self.resolved.push(p.idx);
                        s.pending = None;
                    }
                    // Lost with the old epoch's lanes, or still to come: resubmit
                    // (the leader's session table refuses a second copy).
                    Some(_) => {}
                    None => s.seq = s.seq.max(done),
                }
                // A fence of the session's binding (its end of generation
                // is no write's seq) was applied while its lanes were down.
                if is_fence_end(done) && seq_gen(done) >= seq_gen(s.seq) {
                    s.must_bind = true;
                }
            }
        }
    }
}
