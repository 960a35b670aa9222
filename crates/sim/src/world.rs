//! One simulation run: every node of a cluster (its control plane, its lanes
//! and sessions) in one thread, in virtual time, driven by the real protocol
//! state machines through the simulated network. Nodes crash and restart
//! without their state. One seeded RNG decides everything.

use crate::checker::{self, Violation};
use crate::config::SimConfig;
use crate::history::{History, Incarnation, ReadRec, SessionOp, WriteRec};
use crate::host::{PendingWrite, SimHost};
use crate::network::{NetStats, Network};
use crate::shape::Shape;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rzab_proto::{Control, Dest, Host, LaneStart, NodeId, NodeSet, Op, PlantedBug, Role, Span, Time, Zxid};
use rzab_wire::{BindValue, CONTROL_LANE, Fence, decode, next_gen_start, seq_counter};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: NodeId,
        lane: u8,
        bytes: Vec<u8>,
    },
    /// A lane's turn (of the node's incarnation `inc`).
    Turn {
        node: NodeId,
        lane: u8,
        inc: u32,
    },
    /// The control plane's timers.
    Tick {
        node: NodeId,
        inc: u32,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    PartitionStart,
    PartitionEnd,
    /// A session's client moves to another node.
    Move,
    FaultsOff,
}

struct SimNode {
    up: bool,
    control: Control,
    host: SimHost,
    tick_at: Option<Time>,
    /// Index of the current incarnation's record in the history.
    record: usize,
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
    pub crashes: u64,
    /// Leaderships after the first (elections won).
    pub failovers: u64,
    /// Bindings: Binds issued, fences in the order (as sequenced), and
    /// writes reported not applied because of them.
    pub binds: u64,
    pub fences: u64,
    pub failed: u64,
    /// A hash of everything that happened: equal for two runs of one seed.
    pub digest: u64,
}

const THINK_MAX_NS: u64 = 50_000;
const RETRY_NS: u64 = 10_000;

pub struct World<'c> {
    cfg: &'c SimConfig,
    shape: Shape,
    seed: u64,
    rng: Xoshiro256PlusPlus,
    now: Time,
    seq: u64,
    heap: BinaryHeap<Reverse<(Time, u64, Event)>>,
    nodes: Vec<SimNode>,
    net: Network,
    hist: History,
    events: u64,
    crashes: u64,
    faults_end: Time,
    buf: Vec<u8>,
    /// Print node state changes (RZAB_SIM_TRACE set).
    trace: bool,
}

impl<'c> World<'c> {
    pub fn new(cfg: &'c SimConfig, seed: u64) -> World<'c> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let shape = Shape::draw(cfg, &mut rng);
        let mut w = World {
            cfg,
            buf: vec![0; shape.mtu.max(512)],
            seed,
            shape,
            rng,
            now: Time::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
            nodes: Vec::new(),
            net: Network::new(cfg.faults.clone()),
            hist: History::default(),
            events: 0,
            crashes: 0,
            faults_end: Time::ZERO + cfg.fault_span,
            trace: std::env::var_os("RZAB_SIM_TRACE").is_some(),
        };
        for n in 0..w.shape.nodes {
            let node = w.first_node(n);
            w.nodes.push(node);
        }
        w.schedule_faults();
        for n in 0..w.shape.nodes {
            w.schedule_tick(n, Time::ZERO);
            for l in 0..w.shape.lanes {
                w.schedule_turn(n, l, Time::ZERO);
            }
        }
        w
    }

    /// A node at the cluster's start: epoch 1, node 0 leads.
    fn first_node(&mut self, n: NodeId) -> SimNode {
        let members = self.shape.members();
        let control = Control::new(
            self.shape.control_config(n, self.cfg, self.seed ^ n as u64),
            0,
            Time::ZERO,
        );
        let mut host = SimHost::new(&self.shape, self.cfg, n, 0, &[]);
        host.gate = Zxid::epoch_base(1);
        host.start_lanes(&LaneStart {
            epoch: 1,
            leader: 0,
            lids: None,
            voters: members.without(0),
            serving: true,
        });
        let record = self.new_record(n, 0, Zxid::epoch_base(1).0);
        SimNode {
            up: true,
            control,
            host,
            tick_at: None,
            record,
        }
    }

    fn new_record(&mut self, node: NodeId, inc: u32, base: u64) -> usize {
        self.hist.incarnations.push(Incarnation {
            node,
            inc,
            base,
            applied: Vec::new(),
        });
        self.hist.incarnations.len() - 1
    }

    fn push(&mut self, at: Time, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, e)));
    }

    fn schedule_turn(&mut self, node: NodeId, lane: u8, at: Time) {
        let n = &mut self.nodes[node as usize];
        let slot = &mut n.host.lanes[lane as usize];
        if !n.up || slot.turn_at.is_some_and(|t| t <= at) {
            return;
        }
        slot.turn_at = Some(at);
        let inc = n.host.inc;
        self.push(at, Event::Turn { node, lane, inc });
    }

    fn schedule_tick(&mut self, node: NodeId, at: Time) {
        let n = &mut self.nodes[node as usize];
        if !n.up || n.tick_at.is_some_and(|t| t <= at) {
            return;
        }
        n.tick_at = Some(at);
        let inc = n.host.inc;
        self.push(at, Event::Tick { node, inc });
    }

    /// Partitions and crashes at random times while faults are on, then faults off.
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
        if self.cfg.faults.crash {
            let mut t = Time(self.rng.random_range(5_000_000..30_000_000));
            while t < self.faults_end {
                let node = self.rng.random_range(0..self.shape.nodes);
                let down = Span(self.rng.random_range(2_000_000..=60_000_000));
                self.push(t, Event::Crash { node });
                self.push((t + down).min(self.faults_end), Event::Restart { node });
                t = t + Span(self.rng.random_range(10_000_000..=50_000_000));
            }
        }
        if self.cfg.faults.moves {
            // Often: sessions finish their operations within tens of ms.
            let mut t = Time(self.rng.random_range(200_000..1_000_000));
            while t < self.faults_end {
                self.push(t, Event::Move);
                t = t + Span(self.rng.random_range(100_000..=1_500_000));
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
        for n in &self.nodes {
            violations.extend(n.host.refused.iter().map(|why| Violation {
                check: "session",
                detail: format!("a session's write was refused by its own node: {why}"),
            }));
        }
        for n in 0..self.shape.nodes {
            self.harvest_leaderships(n);
        }
        violations.extend(checker::check_all(&self.hist, self.now));
        if !violations.is_empty() && std::env::var_os("RZAB_SIM_DUMP").is_some() {
            self.dump();
        }
        self.outcome(seed, violations)
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { to, lane, bytes } => self.deliver(to, lane, &bytes),
            Event::Turn { node, lane, inc } => {
                let n = &mut self.nodes[node as usize];
                let slot = &mut n.host.lanes[lane as usize];
                if n.up && n.host.inc == inc && slot.turn_at == Some(self.now) {
                    slot.turn_at = None;
                    self.turn(node, lane);
                }
            }
            Event::Tick { node, inc } => {
                let n = &mut self.nodes[node as usize];
                if n.up && n.host.inc == inc && n.tick_at == Some(self.now) {
                    n.tick_at = None;
                    n.host.now = self.now;
                    let before = (n.control.state_name(), n.control.epoch());
                    n.control.handle_timeout(self.now, &mut n.host);
                    self.after_control(node, before);
                }
            }
            Event::Crash { node } => self.crash(node),
            Event::Restart { node } => self.restart(node),
            Event::PartitionStart => {
                self.net.partition = Some(Network::random_partition(&mut self.rng, self.shape.members()));
                self.net.stats.partitions += 1;
            }
            Event::PartitionEnd => self.net.partition = None,
            Event::Move => self.move_session(),
            Event::FaultsOff => {
                self.net.active = false;
                self.net.partition = None;
                for n in 0..self.shape.nodes {
                    self.restart(n);
                }
            }
        }
    }

    fn deliver(&mut self, to: NodeId, lane: u8, bytes: &[u8]) {
        let n = &mut self.nodes[to as usize];
        if !n.up {
            return;
        }
        let Ok(m) = decode(bytes) else { return };
        if lane == CONTROL_LANE {
            if self.trace && std::env::var_os("RZAB_SIM_TRACE_CONTROL").is_some() {
                eprintln!(
                    "{:>9} us  node {to} <- {}: {:?}",
                    self.now.0 / 1000,
                    m.header.sender,
                    m.body
                );
            }
            let n = &mut self.nodes[to as usize];
            n.host.now = self.now;
            let before = (n.control.state_name(), n.control.epoch());
            n.control.handle(self.now, &mut n.host, &m);
            self.after_control(to, before);
        } else if let Some(role) = n.host.lanes[lane as usize].role.as_mut() {
            role.handle(self.now, &m);
            self.schedule_turn(to, lane, self.now);
        }
    }

    /// A crash: the node's state is gone; its sessions' pending writes are
    /// abandoned (nobody waits for them). At most a minority is without its
    /// state at once: down, or restarted and not yet caught up (the fault
    /// model Zab tolerates).
    fn crash(&mut self, node: NodeId) {
        let members = self.shape.nodes as usize;
        let lost = self.nodes.iter().filter(|n| !n.up || !n.control.voter()).count();
        let target = &self.nodes[node as usize];
        if !target.up
            || (target.control.voter() && lost + 1 > members - rzab_proto::quorum::majority(members))
        {
            return;
        }
        self.crashes += 1;
        self.trace(|| format!("node {node}: crash"));
        // What the node did before it crashed (writes it applied, completed
        // or refused) happened: harvest it before its state is gone.
        self.record(node);
        let n = &mut self.nodes[node as usize];
        n.up = false;
        for s in n.host.lanes.iter().flat_map(|l| &l.sessions) {
            if let Some(p) = s.pending {
                self.hist.writes[p.idx].abandoned = true;
            }
        }
    }

    /// A crashed node comes back empty and rejoins as a learner.
    fn restart(&mut self, node: NodeId) {
        if self.nodes[node as usize].up {
            return;
        }
        self.harvest_leaderships(node);
        let old = &self.nodes[node as usize];
        let inc = old.host.inc + 1;
        let ops = old.host.ops_left();
        let mut ctl_cfg =
            self.shape
                .control_config(node, self.cfg, self.seed ^ ((inc as u64) << 8) ^ node as u64);
        ctl_cfg.seed = ctl_cfg.seed.wrapping_add(inc as u64);
        let control = Control::new_learner(ctl_cfg);
        let host = SimHost::new(&self.shape, self.cfg, node, inc, &ops);
        let record = self.new_record(node, inc, 0);
        self.trace(|| format!("node {node}: restart (life {inc})"));
        self.nodes[node as usize] = SimNode {
            up: true,
            control,
            host,
            tick_at: None,
            record,
        };
        self.schedule_tick(node, self.now);
        for l in 0..self.shape.lanes {
            self.schedule_turn(node, l, self.now);
        }
    }

    /// Moves a node's record of its leaderships into the history (before
    /// its control plane is replaced, and at the end).
    fn harvest_leaderships(&mut self, n: NodeId) {
        let taken = std::mem::take(&mut self.nodes[n as usize].control.leaderships);
        self.hist.leaderships.extend(taken);
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>9} us  {}", self.now.0 / 1000, what());
        }
    }

    /// After the control plane ran: record what the host did, send what
    /// the control plane wants sent, and wake lanes and timers.
    fn after_control(&mut self, n: NodeId, before: (&'static str, u32)) {
        let c = &self.nodes[n as usize].control;
        if (c.state_name(), c.epoch()) != before {
            let h = &self.nodes[n as usize].host;
            self.trace(|| {
                format!(
                    "node {n}: {} epoch {} -> {} epoch {} (gate {:#x}, serving {})",
                    before.0,
                    before.1,
                    c.state_name(),
                    c.epoch(),
                    h.gate.0,
                    h.serving
                )
            });
        }
        self.record(n);
        self.transmit_control(n);
        for l in 0..self.shape.lanes {
            self.schedule_turn(n, l, self.now);
        }
        if let Some(at) = self.nodes[n as usize].control.poll_timeout() {
            self.schedule_tick(n, at.max(self.now));
        }
    }

    /// Moves the host's applied writes, completions and installs into the history.
    fn record(&mut self, n: NodeId) {
        let node = &mut self.nodes[n as usize];
        if let Some(base) = node.host.installed.take() {
            let inc = node.host.inc;
            node.record = self.hist.incarnations.len();
            self.hist.incarnations.push(Incarnation {
                node: n,
                inc,
                base,
                applied: Vec::new(),
            });
        }
        let node = &mut self.nodes[n as usize];
        let applied = std::mem::take(&mut node.host.applied);
        let leader = node.host.is_leader();
        self.hist.incarnations[node.record]
            .applied
            .extend_from_slice(&applied);
        if self.cfg.bug == PlantedBug::CompleteBeforeApply && leader {
            // The planted bug: the leader tells sessions elsewhere their
            // write is done when it applies it, before their node has.
            for a in applied.iter().filter(|a| a.origin != n) {
                let origin = &mut self.nodes[a.origin as usize];
                if origin.up {
                    origin.host.complete(a.lane, a.session, a.seq, a.zxid);
                    self.finish_completions(a.origin);
                }
            }
        }
        self.finish_completions(n);
        let node = &mut self.nodes[n as usize];
        for w in std::mem::take(&mut node.host.resolved) {
            self.hist.writes[w].abandoned = true;
        }
        let failed = std::mem::take(&mut node.host.failed);
        for &w in &failed {
            self.hist.writes[w].failed = true;
            let r = &self.hist.writes[w];
            self.trace(|| format!("node {n}: {:?} write {:#x} refused by a fence", r.session, r.seq));
        }
        if !failed.is_empty() {
            for l in 0..self.shape.lanes {
                self.schedule_turn(n, l, self.now);
            }
        }
    }

    fn finish_completions(&mut self, n: NodeId) {
        let done = std::mem::take(&mut self.nodes[n as usize].host.completed);
        for (l, i, w, zxid) in done {
            let think = Span(self.rng.random_range(0..=THINK_MAX_NS));
            self.hist.writes[w].completed = Some((self.now, zxid));
            self.nodes[n as usize].host.lanes[l as usize].sessions[i as usize].ready_at = self.now + think;
            self.schedule_turn(n, l, self.now + think);
        }
    }

    /// One lane's turn, as the runtime's lane loop does it.
    fn turn(&mut self, n: NodeId, l: u8) {
        let host = &mut self.nodes[n as usize].host;
        host.now = self.now;
        if host.apply_lane(l) {
            for other in (0..self.shape.lanes).filter(|&o| o != l) {
                self.schedule_turn(n, other, self.now);
            }
        }
        self.record(n);
        self.issue(n, l);
        let host = &mut self.nodes[n as usize].host;
        host.sequence(l);
        if let Some(role) = host.lanes[l as usize].role.as_mut() {
            role.handle_timeout(self.now);
        }
        self.transmit_lane(n, l);
        self.schedule_next(n, l);
    }

    fn issue(&mut self, n: NodeId, l: u8) {
        if !self.nodes[n as usize].host.serving
            || self.nodes[n as usize].host.lanes[l as usize].role.is_none()
        {
            return;
        }
        for i in 0..self.shape.sessions as usize {
            self.nodes[n as usize].host.submit(l, i);
            loop {
                let s = &self.nodes[n as usize].host.lanes[l as usize].sessions[i];
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
        let s = &self.nodes[n as usize].host.lanes[l as usize].sessions[i];
        if s.must_bind || s.fence_next.is_some() {
            return self.start_bind(n, l, i);
        }
        let key = self.rng.random_range(0..self.cfg.keys);
        let op = if self.rng.random_bool(0.1) {
            Op::Delete
        } else {
            Op::Put
        };
        let host = &mut self.nodes[n as usize].host;
        let inc = host.inc as u64;
        let s = &mut host.lanes[l as usize].sessions[i];
        s.ops_left -= 1;
        s.seq += 1;
        // Unique per write within a generation, and never 0 (absent).
        let tag =
            (inc << 58) | ((n as u64) << 50) | ((l as u64) << 42) | ((i as u64) << 32) | seq_counter(s.seq);
        let tag = checker::tag_of(op, tag);
        let seq = s.seq;
        self.issue_write(n, l, i, (seq, key, op, tag), None);
    }

    /// The session opens a new generation (no operation of the workload):
    /// a new connection to its slot, fencing its old binding if it moved.
    fn start_bind(&mut self, n: NodeId, l: u8, i: usize) {
        let s = &mut self.nodes[n as usize].host.lanes[l as usize].sessions[i];
        let Some(seq) = next_gen_start(s.seq) else {
            return;
        };
        s.must_bind = false;
        let bind = BindValue {
            owner: s.owner,
            fence: s.fence_next.take(),
        };
        s.seq = seq;
        self.issue_write(n, l, i, (seq, 0, Op::Bind, 0), Some(bind));
    }

    /// Makes (seq, key, op, tag) the session's pending write, records it and
    /// hands it to the lane.
    fn issue_write(&mut self, n: NodeId, l: u8, i: usize, w: (u64, u64, Op, u64), bind: Option<BindValue>) {
        let (seq, key, op, tag) = w;
        let idx = self.hist.writes.len();
        let s = &mut self.nodes[n as usize].host.lanes[l as usize].sessions[i];
        s.pending = Some(PendingWrite {
            idx,
            seq,
            key,
            op,
            tag,
            bind,
            submitted: false,
        });
        let id = s.id;
        self.hist.writes.push(WriteRec {
            session: id,
            seq,
            key,
            op,
            tag,
            issued_at: self.now,
            completed: None,
            abandoned: false,
            failed: false,
        });
        self.hist.session_ops(id).push(SessionOp::Write(idx));
        self.nodes[n as usize].host.submit(l, i);
    }

    /// A session's client moves: at node `n` it gives up its connection
    /// (its write in flight may or may not apply) or, half the time, keeps
    /// it open and writing; at another node the same session index binds
    /// anew, fencing off the generation it had at `n`.
    fn move_session(&mut self) {
        let n = self.rng.random_range(0..self.shape.nodes);
        let l = self.rng.random_range(0..self.shape.lanes);
        let i = self.rng.random_range(0..self.shape.sessions) as usize;
        let to = (n + self.rng.random_range(1..self.shape.nodes.max(2))) % self.shape.nodes;
        let keep_open = self.rng.random_bool(0.5);
        if !self.nodes[n as usize].up || to == n || !self.nodes[to as usize].up {
            return;
        }
        let s = &mut self.nodes[n as usize].host.lanes[l as usize].sessions[i];
        // The client names the binding its last Welcome gave it.
        let (generation, owner) = (s.bound, s.bound_owner);
        if !keep_open {
            if let Some(p) = s.pending.take() {
                self.hist.writes[p.idx].abandoned = true;
            }
            // Another client takes the slot's session.
            s.owner = self.rng.random::<u64>() | 1;
            s.must_bind = true;
            s.ready_at = self.now;
        }
        // Now and then the fence comes from another client (a forged or
        // mistaken one): the leader must not honour it.
        let forged = self.rng.random_bool(0.2);
        self.trace(|| {
            format!("session {n}/{l}/{i} moves to node {to} (generation {generation}, kept open {keep_open})")
        });
        if generation >= 1 {
            // The client moves in: its Binds there are its own.
            let s = &mut self.nodes[to as usize].host.lanes[l as usize].sessions[i];
            if !forged {
                s.owner = owner;
            }
            s.fence_next = Some(Fence {
                node: n,
                session: i as u32,
                generation,
            });
        }
        self.schedule_turn(n, l, self.now);
        self.schedule_turn(to, l, self.now);
    }

    fn read(&mut self, n: NodeId, l: u8, i: usize) {
        let key = self.rng.random_range(0..self.cfg.keys);
        let think = Span(self.rng.random_range(0..=THINK_MAX_NS));
        let host = &mut self.nodes[n as usize].host;
        let (zxid, tag) = host.store[key as usize];
        let gate = host.gate.0;
        let s = &mut host.lanes[l as usize].sessions[i];
        s.ops_left -= 1;
        s.ready_at = self.now + think;
        let id = s.id;
        let idx = self.hist.reads.len();
        self.hist.reads.push(ReadRec {
            session: id,
            key,
            zxid,
            tag,
            gate,
            at: self.now,
        });
        self.hist.session_ops(id).push(SessionOp::Read(idx));
    }

    /// Where a datagram from `n` goes.
    fn destinations(&self, n: NodeId, dest: Dest) -> NodeSet {
        match dest {
            Dest::Node(x) => NodeSet::from_ids([x]),
            Dest::Set(s) => s,
            Dest::Group => self.shape.members().without(n),
        }
    }

    fn send(&mut self, n: NodeId, lane: u8, dest: Dest, len: usize) {
        let bytes = self.buf[..len].to_vec();
        for dst in self.destinations(n, dest).iter() {
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
                        lane,
                        bytes: bytes.clone(),
                    },
                );
            }
        }
    }

    fn transmit_lane(&mut self, n: NodeId, l: u8) {
        loop {
            let Some(role) = self.nodes[n as usize].host.lanes[l as usize].role.as_mut() else {
                return;
            };
            let Some(t) = role.poll_transmit(self.now, &mut self.buf) else {
                return;
            };
            self.send(n, l, t.dest, t.len);
        }
    }

    fn transmit_control(&mut self, n: NodeId) {
        while let Some(t) = self.nodes[n as usize]
            .control
            .poll_transmit(self.now, &mut self.buf)
        {
            self.send(n, CONTROL_LANE, t.dest, t.len);
        }
    }

    /// The lane's next turn: its earliest timer, session or retry.
    fn schedule_next(&mut self, n: NodeId, l: u8) {
        let host = &self.nodes[n as usize].host;
        let slot = &host.lanes[l as usize];
        let Some(role) = slot.role.as_ref() else { return };
        let mut next = role.poll_timeout();
        if host.serving {
            for s in &slot.sessions {
                let at = match s.pending {
                    Some(p) if !p.submitted => Some(self.now + Span(RETRY_NS)),
                    Some(_) => None,
                    None if s.ops_left > 0 => Some(s.ready_at.max(self.now + Span(1))),
                    None => None,
                };
                next = match (next, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        if let Some(at) = next {
            self.schedule_turn(n, l, at.max(self.now));
        }
    }

    /// Every session is done and the cluster converged.
    fn quiet(&self) -> bool {
        let sessions_done = self
            .nodes
            .iter()
            .flat_map(|n| &n.host.lanes)
            .flat_map(|l| &l.sessions)
            .all(|s| s.ops_left == 0 && s.pending.is_none());
        sessions_done && self.not_converged().is_empty()
    }

    /// Why the cluster has not converged: every node up and serving under
    /// one leader, every replica (not marked lagging) applied all it has.
    fn not_converged(&self) -> Vec<String> {
        let mut why = Vec::new();
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].control.is_leader())
            .collect();
        let [leader] = leaders[..] else {
            return vec![format!("leaders {leaders:?}")];
        };
        let epoch = self.nodes[leader].control.epoch();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.up || !n.control.serving() || n.control.epoch() != epoch {
                why.push(format!(
                    "node {i} is {} in epoch {}",
                    n.control.state_name(),
                    n.control.epoch()
                ));
            }
        }
        if !why.is_empty() {
            return why;
        }
        for l in 0..self.shape.lanes as usize {
            let Some(Role::Leader(lane)) = &self.nodes[leader].host.lanes[l].role else {
                why.push(format!("leader {leader} lane {l} is not leading"));
                continue;
            };
            let end = lane.end_lid();
            for (i, n) in self.nodes.iter().enumerate() {
                let Some(role) = &n.host.lanes[l].role else {
                    continue;
                };
                let (apply, commit, received) = role.lids();
                if apply != end && !lane.lagging().contains(i as NodeId) {
                    why.push(format!(
                        "node {i} lane {l} applied {apply} of {end} (received {received}, committed {commit})"
                    ));
                }
                // Every write is applied or given up by now: one still
                // held is resent for ever.
                if role.pending_writes() > 0 && !lane.lagging().contains(i as NodeId) {
                    why.push(format!(
                        "node {i} lane {l} still holds {} writes the leader never sequenced",
                        role.pending_writes()
                    ));
                }
            }
        }
        why
    }

    fn convergence(&self) -> Vec<Violation> {
        let mut why = self.not_converged();
        for n in &self.nodes {
            for s in n.host.lanes.iter().flat_map(|l| &l.sessions) {
                if s.ops_left > 0 && n.up {
                    why.push(format!("{:?} has {} operations left", s.id, s.ops_left));
                    break;
                }
            }
        }
        if why.is_empty() {
            return Vec::new();
        }
        why.truncate(6);
        vec![Violation {
            check: "liveness",
            detail: format!(
                "the cluster had not converged by {} ms: {}",
                self.now.0 / 1_000_000,
                why.join("; ")
            ),
        }]
    }

    /// Prints every node's state (set RZAB_SIM_DUMP to see it on failure).
    fn dump(&self) {
        eprintln!(
            "-- state at {} us, {} events queued",
            self.now.0 / 1000,
            self.heap.len()
        );
        for (i, n) in self.nodes.iter().enumerate() {
            eprintln!(
                "node {i} (life {}, up {}): {} epoch {} gate {:#x} {:?}",
                n.host.inc,
                n.up,
                n.control.state_name(),
                n.control.epoch(),
                n.host.gate.0,
                n.control.stats()
            );
            for (l, slot) in n.host.lanes.iter().enumerate() {
                let pending: Vec<_> = slot.sessions.iter().filter_map(|s| s.pending).collect();
                let Some(role) = &slot.role else {
                    eprintln!("  lane {l}: stopped, pending {pending:?}");
                    continue;
                };
                eprintln!(
                    "  lane {l}: lids {:?} turn {:?} pending {pending:?}",
                    role.lids(),
                    slot.turn_at
                );
                if let Role::Leader(leader) = role {
                    eprintln!("    {}", leader.describe());
                }
            }
        }
    }

    fn outcome(self, seed: u64, violations: Vec<Violation>) -> Outcome {
        let lagging = self
            .nodes
            .iter()
            .flat_map(|n| &n.host.lanes)
            .filter_map(|l| match &l.role {
                Some(Role::Leader(leader)) => Some(leader.lagging().len() as u64),
                _ => None,
            })
            .sum();
        let (sequence, _) = checker::sequence(&self.hist);
        let fences = sequence.iter().filter(|a| a.fence.is_some()).count() as u64;
        let mut h = xxhash_rust::xxh3::xxh3_64(&self.events.to_le_bytes()) ^ self.now.0;
        for a in sequence {
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
            crashes: self.crashes,
            failovers: self.hist.leaderships.len().saturating_sub(1) as u64, // the first is the start's
            binds: self.hist.writes.iter().filter(|w| w.op == Op::Bind).count() as u64,
            fences,
            failed: self.hist.writes.iter().filter(|w| w.failed).count() as u64,
            digest: h,
            shape: self.shape,
        }
    }
}
