//! The control plane's view of a running node ([`Host`]): it reaches the
//! lanes through their command links (pause, start, add or promote a
//! learner), and the store, gate and records directly. Every call that
//! writes the store runs while no lane applies: lanes are paused, or were
//! started holding their applies (a joining node).

use crate::config::RunConfig;
use crate::lane::{Control as RunPhase, Phase};
use crate::node::{Applied, LaneCmd, LaneReply, NodeShared};
use rzab_proto::{Host, LaneStart, NodeId, OwnedEntry, OwnedItem, Role, Sequencer, Snapshot, Zxid};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A lane that does not answer a command within this is stuck or gone.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NodeHost {
    node: Arc<NodeShared>,
    phase: Arc<RunPhase>,
    cfg: RunConfig,
    /// The current epoch's id source when leading.
    sequencer: Option<Arc<Sequencer>>,
    /// Errors seen (a lane not answering, a bad snapshot item), for the report.
    pub errors: Vec<String>,
    /// A snapshot being taken on its own thread (a large store scan must
    /// not hold up the control thread's heartbeats).
    pending: Option<std::thread::JoinHandle<Snapshot>>,
}

/// The store and session tables now. The base is read first: every item
/// is at least that new (newer if lanes apply meanwhile: the receiver
/// replays what follows the base).
fn take_snapshot(node: &NodeShared) -> Snapshot {
    let base = node.gate.applied();
    let mut items = Vec::with_capacity(node.store.len());
    node.store.for_each_sorted(|key, meta, value| {
        items.push(OwnedItem {
            key,
            zxid: Zxid(meta.zxid),
            value: value.to_vec(),
        })
    });
    let sessions = (0..node.lanes())
        .flat_map(|l| node.records(l).seqs.items())
        .collect();
    Snapshot {
        base,
        items,
        sessions,
    }
}

impl NodeHost {
    pub fn new(
        node: Arc<NodeShared>,
        phase: Arc<RunPhase>,
        cfg: RunConfig,
        sequencer: Option<Arc<Sequencer>>,
    ) -> NodeHost {
        NodeHost {
            node,
            phase,
            cfg,
            sequencer,
            errors: Vec::new(),
            pending: None,
        }
    }

    fn tell(&self, lane: usize, cmd: LaneCmd) {
        let _ = self.node.links[lane].cmd_tx.send(cmd);
        self.node.wake_lanes(usize::MAX);
    }

    fn ask(&mut self, lane: usize, cmd: LaneCmd) -> Option<LaneReply> {
        self.tell(lane, cmd);
        let start = std::time::Instant::now();
        while start.elapsed() < REPLY_TIMEOUT {
            if let Ok(r) = self.node.links[lane]
                .reply_rx
                .recv_timeout(Duration::from_millis(20))
            {
                return Some(r);
            }
            if self.phase.get() == Phase::Stopped {
                // The run is over: lanes have stopped answering.
                return None;
            }
        }
        self.errors
            .push(format!("lane {lane} did not answer the control thread"));
        None
    }

    fn role(&self, lane: u8, start: &LaneStart) -> Result<Role, String> {
        let c = self
            .cfg
            .lane_config_in(self.node.id, lane, start.epoch, start.leader);
        let seqs: Vec<_> = self.node.records(lane as usize).seqs.iter().collect();
        Role::starting(c, start, seqs.into_iter()).map_err(|e| e.to_string())
    }

    fn apply_one(&mut self, e: &OwnedEntry) {
        let lane = e.lane as usize;
        if lane >= self.node.lanes() {
            self.errors.push(format!(
                "a recovered write names lane {lane}, which this node lacks"
            ));
            return;
        }
        let a = Applied {
            zxid: e.zxid,
            key: e.key,
            session: e.session,
            seq: e.seq,
            origin: e.origin,
            op: e.op,
            value: &e.value,
        };
        let mut records = self.node.records(lane);
        if let Err(err) = self.node.apply(&mut records, lane, &a) {
            self.errors
                .push(format!("cannot apply recovered write {}: {err}", e.zxid));
        }
        self.node.gate.set(e.zxid);
    }
}

impl Host for NodeHost {
    fn applied(&self) -> Zxid {
        self.node.gate.applied()
    }

    fn pause_lanes(&mut self) -> Vec<OwnedEntry> {
        self.node
            .log_event(|| format!("pause at {}", self.node.gate.applied()));
        let mut held = Vec::new();
        for l in 0..self.node.lanes() {
            if let Some(LaneReply::Held(h)) = self.ask(l, LaneCmd::Pause) {
                held.extend(h);
            }
        }
        self.sequencer = None;
        self.node.standing.serving.store(false, Ordering::Relaxed);
        held.sort_by_key(|e| e.zxid);
        held.dedup_by_key(|e| e.zxid);
        self.node.log_event(|| {
            format!(
                "held {} entries {:?}..{:?}",
                held.len(),
                held.first().map(|e| e.zxid),
                held.last().map(|e| e.zxid)
            )
        });
        held
    }

    fn history_after(&self, after: Zxid) -> Option<Vec<OwnedEntry>> {
        // Lanes may apply while their records are read one after another:
        // cut at an applied point read first, so the merge has no hole (a
        // later id from one lane without an earlier one from another, which
        // the receiver would then skip for good).
        let upto = self.node.gate.applied();
        let mut all = Vec::new();
        for l in 0..self.node.lanes() {
            let mine = self.node.records(l).history.after(after)?;
            all.extend(mine.into_iter().filter(|e| e.zxid <= upto));
        }
        all.sort_by_key(|e| e.zxid);
        Some(all)
    }

    fn snapshot(&mut self) -> Snapshot {
        take_snapshot(&self.node)
    }

    fn snapshot_async(&mut self) -> Option<Snapshot> {
        match &self.pending {
            Some(h) if h.is_finished() => self.pending.take().and_then(|h| h.join().ok()),
            Some(_) => None,
            None => {
                let node = self.node.clone();
                self.pending = Some(std::thread::spawn(move || take_snapshot(&node)));
                None
            }
        }
    }

    fn apply(&mut self, entries: &[OwnedEntry]) {
        self.node.log_event(|| {
            format!(
                "control applies {} entries {:?}..{:?} at {}",
                entries.len(),
                entries.first().map(|e| e.zxid),
                entries.last().map(|e| e.zxid),
                self.node.gate.applied()
            )
        });
        for e in entries {
            if e.zxid > self.node.gate.applied() {
                self.apply_one(e);
            }
        }
    }

    fn advance_to(&mut self, to: Zxid) {
        self.node
            .log_event(|| format!("advance to {to} from {}", self.node.gate.applied()));
        if to > self.node.gate.applied() {
            self.node.gate.set(to);
        }
    }

    fn install(&mut self, snapshot: Snapshot) {
        let store = &self.node.store;
        // Keys the snapshot lacks were deleted (or never written): drop them.
        let mut own = Vec::with_capacity(store.len());
        store.for_each_sorted(|key, _, _| own.push(key));
        let mut theirs = snapshot.items.iter().map(|i| i.key).peekable();
        for key in own {
            while theirs.next_if(|&k| k < key).is_some() {}
            if theirs.peek() != Some(&key) {
                let _ = store.delete(key, snapshot.base.0);
            }
        }
        let mut bad = 0;
        for i in &snapshot.items {
            if store.put(i.key, &i.value, i.zxid.0).is_err() {
                bad += 1;
            }
        }
        if bad > 0 {
            self.errors
                .push(format!("{bad} snapshot items did not fit the store"));
        }
        let keys = snapshot.items.len() as u64;
        self.node
            .standing
            .installed_keys
            .fetch_add(keys, Ordering::Relaxed);
        for l in 0..self.node.lanes() {
            let mut r = self.node.records(l);
            r.seqs.load(&snapshot.sessions, snapshot.base);
            r.history.reset(snapshot.base);
        }
        self.node.gate.set(snapshot.base);
    }

    fn start_lanes(&mut self, start: &LaneStart) {
        self.node
            .log_event(|| format!("start {start:?} at {}", self.node.gate.applied()));
        if start.lids.is_none() && self.node.gate.applied().epoch() < start.epoch {
            // The lanes of a new epoch number from its base.
            self.node.gate.start_epoch(start.epoch);
        }
        let me = self.node.id;
        let leading = start.leader == me;
        self.sequencer = leading.then(|| Arc::new(Sequencer::new(self.node.gate.applied())));
        for l in 0..self.node.lanes() as u8 {
            match self.role(l, start) {
                Ok(role) => self.tell(
                    l as usize,
                    LaneCmd::Start {
                        role: Box::new(role),
                        sequencer: self.sequencer.clone(),
                        serving: start.serving,
                        hold: start.lids.is_some(),
                    },
                ),
                Err(e) => self
                    .errors
                    .push(format!("lane {l} cannot start epoch {}: {e}", start.epoch)),
            }
        }
        let s = &self.node.standing;
        s.epoch.store(start.epoch, Ordering::Relaxed);
        s.leader.store(start.leader, Ordering::Relaxed);
        s.serving.store(start.serving, Ordering::Relaxed);
    }

    fn add_learner(&mut self, node: NodeId, fence: bool) -> Option<(Vec<u64>, Zxid, Zxid)> {
        let mut lids = Vec::new();
        let mut below = Zxid::ZERO;
        for l in 0..self.node.lanes() {
            let Some(LaneReply::Learner(Some((lid, b)))) = self.ask(l, LaneCmd::AddLearner { node, fence })
            else {
                return None;
            };
            lids.push(lid);
            below = below.max(b);
        }
        // Each lane sequenced its appended writes first: this covers them.
        let sequenced = Zxid(self.sequencer.as_ref()?.peek().0 - 1);
        Some((lids, below, sequenced))
    }

    fn promote(&mut self, node: NodeId) -> bool {
        let mut all = true;
        for l in 0..self.node.lanes() {
            all &= matches!(
                self.ask(l, LaneCmd::Promote { node }),
                Some(LaneReply::Promoted(true))
            );
        }
        all
    }

    fn serve(&mut self) {
        for l in 0..self.node.lanes() {
            self.tell(l, LaneCmd::Serve);
        }
        self.node.standing.serving.store(true, Ordering::Relaxed);
    }

    fn resume_lanes(&mut self) {
        for l in 0..self.node.lanes() {
            self.tell(l, LaneCmd::Resume);
        }
    }
}
