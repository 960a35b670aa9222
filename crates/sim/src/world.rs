//! One simulation run: every node and lane of a cluster in one thread, in
//! virtual time, driven by the real protocol state machines through the
//! simulated network. One seeded RNG decides everything.

use crate::checker::{self, Violation};
use crate::config::SimConfig;
use crate::history::{Applied, History, ReadRec, SessionId, SessionOp, WriteRec};
use crate::network::{NetStats, Network};
use crate::shape::{Shape, VALUE_SIZE};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rzab_proto::{
    Dest, FollowerLane, LeaderLane, NodeId, Op, PlantedBug, Role, Sequencer, Span, Submitted, Time, Zxid,
};
use rzab_wire::{WriteEntry, decode};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver { to: NodeId, lane: u8, bytes: Vec<u8> },
    Turn { node: NodeId, lane: u8 },
    PartitionStart,
    PartitionEnd,
    FaultsOff,
}

struct Session {
    id: SessionId,
    seq: u32,
    /// The outstanding write (an index into the history) and whether the lane took it.
    pending: Option<(usize, bool)>,
    ops_left: u32,
    ready_at: Time,
}

struct Lane {
    role: Role,
    sessions: Vec<Session>,
    turn_at: Option<Time>,
}

struct Node {
    lanes: Vec<Lane>,
    /// The model store: per key, (zxid, tag) of its latest write (0, 0: absent).
    store: Vec<(u64, u64)>,
    /// The apply gate: the last zxid applied.
    gate: u64,
    sequencer: Option<Sequencer>,
}

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub shape: Shape,
    pub violations: Vec<Violation>,
    pub events: u64,
    pub end: Time,
    pub writes: usize,
    pub completed: usize,
    pub reads: usize,
    pub net: NetStats,
    /// Followers a leader had to mark lagging.
    pub lagging: u64,
    /// A hash of everything that happened: equal for two runs of one seed.
    pub digest: u64,
}

const THINK_MAX_NS: u64 = 50_000;
const RETRY_NS: u64 = 10_000;

pub struct World<'c> {
    cfg: &'c SimConfig,
    shape: Shape,
    rng: Xoshiro256PlusPlus,
    now: Time,
    seq: u64,
    heap: BinaryHeap<Reverse<(Time, u64, Event)>>,
    nodes: Vec<Node>,
    net: Network,
    hist: History,
    events: u64,
    faults_end: Time,
    buf: Vec<u8>,
}

impl<'c> World<'c> {
    pub fn new(cfg: &'c SimConfig, seed: u64) -> World<'c> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let shape = Shape::draw(cfg, &mut rng);
        let nodes = (0..shape.nodes).map(|n| Self::node(cfg, &shape, n)).collect();
        let mut w = World {
            cfg,
            buf: vec![0; shape.mtu],
            shape,
            rng,
            now: Time::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
            nodes,
            net: Network::new(cfg.faults.clone()),
            hist: History::default(),
            events: 0,
            faults_end: Time::ZERO + cfg.fault_span,
        };
        w.hist.applied = vec![Vec::new(); w.shape.nodes as usize];
        w.schedule_faults();
        for n in 0..w.shape.nodes {
            for l in 0..w.shape.lanes {
                w.schedule_turn(n, l, Time::ZERO);
            }
        }
        w
    }

    fn node(cfg: &SimConfig, shape: &Shape, id: NodeId) -> Node {
        let lanes = (0..shape.lanes)
            .map(|l| {
                let c = shape.lane_config(id, l, cfg);
                let role = if id == 0 {
                    Role::Leader(LeaderLane::new(c).unwrap_or_else(|e| panic!("sim shape is valid: {e}")))
                } else {
                    Role::Follower(FollowerLane::new(c).unwrap_or_else(|e| panic!("sim shape is valid: {e}")))
                };
                let sessions = (0..shape.sessions)
                    .map(|i| Session {
                        id: SessionId {
                            node: id,
                            lane: l,
                            index: i,
                        },
                        seq: 0,
                        pending: None,
                        ops_left: cfg.ops_per_session,
                        ready_at: Time::ZERO,
                    })
                    .collect();
                Lane {
                    role,
                    sessions,
                    turn_at: None,
                }
            })
            .collect();
        Node {
            lanes,
            store: vec![(0, 0); cfg.keys as usize],
            gate: Zxid::epoch_base(1).0,
            sequencer: (id == 0).then(|| Sequencer::new(Zxid::epoch_base(1))),
        }
    }

    fn push(&mut self, at: Time, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, e)));
    }

    fn schedule_turn(&mut self, node: NodeId, lane: u8, at: Time) {
        let l = &mut self.nodes[node as usize].lanes[lane as usize];
        if l.turn_at.is_some_and(|t| t <= at) {
            return;
        }
        l.turn_at = Some(at);
        self.push(at, Event::Turn { node, lane });
    }

    /// Partitions at random times while faults are on, then faults off.
    fn schedule_faults(&mut self) {
        if self.cfg.faults.partition {
            let mut t = Time(self.rng.random_range(0..20_000_000));
            while t < self.faults_end {
                let until = (t + Span(self.rng.random_range(5_000_000..=60_000_000))).min(self.faults_end);
                self.push(t, Event::PartitionStart);
                self.push(until, Event::PartitionEnd);
                t = until + Span(self.rng.random_range(5_000_000..=40_000_000));
            }
        }
        self.push(self.faults_end, Event::FaultsOff);
    }

    /// Runs to the end and checks the history.
    pub fn run(mut self, seed: u64) -> Outcome {
        let deadline = self.faults_end + self.cfg.liveness_bound;
        let mut violations = Vec::new();
        while let Some(Reverse((at, _, event))) = self.heap.pop() {
            if at > deadline {
                break;
            }
            self.now = at;
            self.events += 1;
            if self.events > self.cfg.max_events {
                violations.push(Violation {
                    check: "liveness",
                    detail: format!(
                        "over {} events by {} ms: livelock",
                        self.cfg.max_events,
                        at.0 / 1_000_000
                    ),
                });
                break;
            }
            self.dispatch(event);
            if self.now >= self.faults_end && self.quiet() {
                break;
            }
        }
        violations.extend(self.convergence());
        violations.extend(checker::check_all(&self.hist, self.now));
        if !violations.is_empty() && std::env::var_os("RZAB_SIM_DUMP").is_some() {
            self.dump();
        }
        self.outcome(seed, violations)
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { to, lane, bytes } => {
                if let Ok(m) = decode(&bytes) {
                    self.nodes[to as usize].lanes[lane as usize]
                        .role
                        .handle(self.now, &m);
                }
                self.schedule_turn(to, lane, self.now);
            }
            Event::Turn { node, lane } => {
                if self.nodes[node as usize].lanes[lane as usize].turn_at == Some(self.now) {
                    self.nodes[node as usize].lanes[lane as usize].turn_at = None;
                    self.turn(node, lane);
                }
            }
            Event::PartitionStart => {
                self.net.partition = Some(Network::random_partition(&mut self.rng, self.shape.members()));
                self.net.stats.partitions += 1;
            }
            Event::PartitionEnd => self.net.partition = None,
            Event::FaultsOff => {
                self.net.active = false;
                self.net.partition = None;
            }
        }
    }

    /// One lane's turn, as the runtime's lane loop does it.
    fn turn(&mut self, n: NodeId, l: u8) {
        self.apply(n, l);
        self.issue(n, l);
        let node = &mut self.nodes[n as usize];
        if let (Role::Leader(leader), Some(seq)) = (&mut node.lanes[l as usize].role, node.sequencer.as_ref())
        {
            // The simulated epoch cannot run out of 2^32 ids.
            let _ = leader.sequence(seq);
        }
        node.lanes[l as usize].role.handle_timeout(self.now);
        self.transmit(n, l);
        self.schedule_next(n, l);
    }

    fn apply(&mut self, n: NodeId, l: u8) {
        let bug = self.cfg.bug;
        let mut applied = false;
        loop {
            let node = &mut self.nodes[n as usize];
            let Some(e) = node.lanes[l as usize].role.next_apply() else {
                break;
            };
            let z = e.meta.zxid.0;
            if bug != PlantedBug::ApplyOutOfOrder && node.gate + 1 != z {
                break;
            }
            let mut t = [0u8; 8];
            t[..e.value.len().min(8)].copy_from_slice(&e.value[..e.value.len().min(8)]);
            let tag = checker::tag_of(e.meta.op, u64::from_le_bytes(t));
            let rec = Applied {
                zxid: z,
                session: SessionId {
                    node: e.meta.origin,
                    lane: l,
                    index: e.meta.session,
                },
                seq: e.meta.seq,
                key: e.meta.key,
                op: e.meta.op,
                tag,
            };
            node.store[rec.key as usize] = (z, tag);
            node.gate = node.gate.max(z);
            node.lanes[l as usize].role.advance_apply();
            self.hist.applied[n as usize].push(rec);
            let early = bug == PlantedBug::CompleteBeforeApply;
            if (rec.session.node == n && !(early && n != 0)) || (early && n == 0 && rec.session.node != 0) {
                self.complete(rec.session, rec.seq, z);
            }
            applied = true;
        }
        if applied {
            for other in (0..self.shape.lanes).filter(|&o| o != l) {
                self.schedule_turn(n, other, self.now);
            }
        }
    }

    fn complete(&mut self, id: SessionId, seq: u32, zxid: u64) {
        let think = Span(self.rng.random_range(0..=THINK_MAX_NS));
        let s = &mut self.nodes[id.node as usize].lanes[id.lane as usize].sessions[id.index as usize];
        if let Some((w, true)) = s.pending
            && self.hist.writes[w].seq == seq
        {
            self.hist.writes[w].completed = Some((self.now, zxid));
            s.pending = None;
            s.ready_at = self.now + think;
            self.schedule_turn(id.node, id.lane, self.now + think);
        }
    }

    fn issue(&mut self, n: NodeId, l: u8) {
        for i in 0..self.shape.sessions as usize {
            self.submit(n, l, i);
            loop {
                let s = &self.nodes[n as usize].lanes[l as usize].sessions[i];
                if s.ops_left == 0 || s.pending.is_some() || s.ready_at > self.now {
                    break;
                }
                if self.rng.random_bool(self.shape.write_ratio) {
                    self.start_write(n, l, i);
                } else {
                    self.read(n, l, i);
                }
            }
        }
    }

    fn start_write(&mut self, n: NodeId, l: u8, i: usize) {
        let key = self.rng.random_range(0..self.cfg.keys);
        let op = if self.rng.random_bool(0.1) {
            Op::Delete
        } else {
            Op::Put
        };
        let s = &mut self.nodes[n as usize].lanes[l as usize].sessions[i];
        s.ops_left -= 1;
        s.seq += 1;
        let tag = ((n as u64) << 56) | ((l as u64) << 48) | ((i as u64) << 32) | s.seq as u64;
        let idx = self.hist.writes.len();
        s.pending = Some((idx, false));
        let id = s.id;
        self.hist.writes.push(WriteRec {
            session: id,
            seq: s.seq,
            key,
            op,
            tag: checker::tag_of(op, tag),
            issued_at: self.now,
            completed: None,
        });
        self.hist.session_ops(id).push(SessionOp::Write(idx));
        self.submit(n, l, i);
    }

    /// Hands the session's pending write to its lane (again, if it was full).
    fn submit(&mut self, n: NodeId, l: u8, i: usize) {
        let lane = &mut self.nodes[n as usize].lanes[l as usize];
        let Some((w, false)) = lane.sessions[i].pending else {
            return;
        };
        let rec = &self.hist.writes[w];
        let value = rec.tag.to_le_bytes();
        let entry = WriteEntry {
            session: i as u32,
            seq: rec.seq,
            key: rec.key,
            op: rec.op,
            value: if rec.op == Op::Delete {
                &[]
            } else {
                &value[..VALUE_SIZE]
            },
        };
        match lane.role.submit(&entry) {
            Submitted::Accepted => lane.sessions[i].pending = Some((w, true)),
            Submitted::Retry => {}
            Submitted::Refused(why) => panic!("the simulator submitted a bad write: {why}"),
        }
    }

    fn read(&mut self, n: NodeId, l: u8, i: usize) {
        let key = self.rng.random_range(0..self.cfg.keys);
        let think = Span(self.rng.random_range(0..=THINK_MAX_NS));
        let node = &mut self.nodes[n as usize];
        let (zxid, tag) = node.store[key as usize];
        let s = &mut node.lanes[l as usize].sessions[i];
        s.ops_left -= 1;
        s.ready_at = self.now + think;
        let id = s.id;
        let idx = self.hist.reads.len();
        self.hist.reads.push(ReadRec {
            session: id,
            key,
            zxid,
            tag,
            applied: self.hist.applied[n as usize].len(),
            at: self.now,
        });
        self.hist.session_ops(id).push(SessionOp::Read(idx));
    }

    fn transmit(&mut self, n: NodeId, l: u8) {
        loop {
            let lane = &mut self.nodes[n as usize].lanes[l as usize];
            let Some(t) = lane.role.poll_transmit(self.now, &mut self.buf) else {
                break;
            };
            let bytes = self.buf[..t.len].to_vec();
            let to = match t.dest {
                Dest::Node(x) => rzab_proto::NodeSet::from_ids([x]),
                Dest::Set(s) => s,
                Dest::Group => self.shape.members().without(n),
            };
            for dst in to.iter() {
                for at in self
                    .net
                    .route(&mut self.rng, self.now, n, dst)
                    .into_iter()
                    .flatten()
                {
                    self.push(
                        at,
                        Event::Deliver {
                            to: dst,
                            lane: l,
                            bytes: bytes.clone(),
                        },
                    );
                }
            }
        }
    }

    /// The lane's next turn: its earliest timer, session or retry.
    fn schedule_next(&mut self, n: NodeId, l: u8) {
        let lane = &self.nodes[n as usize].lanes[l as usize];
        let mut next = lane.role.poll_timeout();
        for s in &lane.sessions {
            let at = match s.pending {
                Some((_, false)) => Some(self.now + Span(RETRY_NS)),
                Some(_) => None,
                None if s.ops_left > 0 => Some(s.ready_at.max(self.now + Span(1))),
                None => None,
            };
            next = match (next, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(at) = next {
            self.schedule_turn(n, l, at.max(self.now));
        }
    }

    /// Every session is done and every replica applied all the leader has.
    fn quiet(&self) -> bool {
        let sessions_done = self
            .nodes
            .iter()
            .flat_map(|n| &n.lanes)
            .flat_map(|l| &l.sessions)
            .all(|s| s.ops_left == 0 && s.pending.is_none());
        sessions_done && self.lagging_or_behind().is_empty()
    }

    /// Replicas (not marked lagging) that have not applied everything.
    fn lagging_or_behind(&self) -> Vec<String> {
        let mut behind = Vec::new();
        for l in 0..self.shape.lanes as usize {
            let Role::Leader(leader) = &self.nodes[0].lanes[l].role else {
                continue;
            };
            let end = leader.end_lid();
            for (n, node) in self.nodes.iter().enumerate() {
                let (apply, commit, received) = node.lanes[l].role.lids();
                if apply != end && !leader.lagging().contains(n as NodeId) {
                    behind.push(format!(
                        "node {n} lane {l} applied {apply} of {end} (received {received}, committed {commit})"
                    ));
                }
            }
        }
        behind
    }

    fn convergence(&self) -> Vec<Violation> {
        let behind = self.lagging_or_behind();
        if behind.is_empty() {
            return Vec::new();
        }
        vec![Violation {
            check: "liveness",
            detail: format!(
                "replicas had not converged by {} ms: {}",
                self.now.0 / 1_000_000,
                behind.join("; ")
            ),
        }]
    }

    /// Prints every lane's state (set RZAB_SIM_DUMP to see it on failure).
    fn dump(&self) {
        eprintln!(
            "-- state at {} us, {} events queued",
            self.now.0 / 1000,
            self.heap.len()
        );
        for (n, node) in self.nodes.iter().enumerate() {
            for (l, lane) in node.lanes.iter().enumerate() {
                let blocked: Vec<_> = lane.sessions.iter().filter_map(|s| s.pending).collect();
                eprintln!(
                    "node {n} lane {l}: lids {:?} timeout {:?} turn {:?} pending {blocked:?} gate {:#x}",
                    lane.role.lids(),
                    lane.role.poll_timeout(),
                    lane.turn_at,
                    node.gate
                );
                if let Role::Leader(leader) = &lane.role {
                    eprintln!("  {}", leader.describe());
                }
                eprintln!("  {:?}", lane.role.stats());
            }
        }
    }

    fn outcome(self, seed: u64, violations: Vec<Violation>) -> Outcome {
        let lagging = self.nodes[0]
            .lanes
            .iter()
            .filter_map(|l| match &l.role {
                Role::Leader(leader) => Some(leader.lagging().len() as u64),
                Role::Follower(_) => None,
            })
            .sum();
        let longest = checker::longest(&self.hist);
        let mut h = xxhash_rust::xxh3::xxh3_64(&self.events.to_le_bytes()) ^ self.now.0;
        for a in longest {
            h = xxhash_rust::xxh3::xxh3_64_with_seed(
                &[a.zxid.to_le_bytes(), a.tag.to_le_bytes()].concat(),
                h,
            );
        }
        for r in &self.hist.reads {
            h = xxhash_rust::xxh3::xxh3_64_with_seed(&r.zxid.to_le_bytes(), h);
        }
        Outcome {
            seed,
            violations,
            events: self.events,
            end: self.now,
            writes: self.hist.writes.len(),
            completed: self.hist.writes.iter().filter(|w| w.completed.is_some()).count(),
            reads: self.hist.reads.len(),
            net: self.net.stats,
            lagging,
            digest: h,
            shape: self.shape,
        }
    }
}
