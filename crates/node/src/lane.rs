//! One lane's worker thread: receive, apply in zxid order, issue session
//! operations, sequence (leader), send; then back off if there was nothing
//! to do.

mod hosted;

pub(crate) use hosted::MAX_FDS as MAX_HOSTED_FDS;

use crate::client_slots::{ClientSlots, WriteDone};
use crate::config::PollMode;
use crate::node::{Applied, LaneCmd, LaneReply, NodeShared};
use crate::session::{Session, Violations};
use crate::stats::{LaneShared, Progress, RuntimeStats, Snapshot};
use crate::value;
use crate::workload::{Trace, TraceOp};
use hdrhistogram::Histogram;
use rzab_proto::{Dest, NodeSet, Sequencer};
use rzab_proto::{LaneStats, Time};
use rzab_proto::{Role, Submitted};
use rzab_store::{ItemMeta, PREFETCH_MAX};
use rzab_transport::{RecvBatch, SendBatch, Transport, TransportStats};
use rzab_wire::{Body, Encoder, Header, HelloBody, Kind, Op, WriteEntry, decode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The run's phase, set by the orchestrator and read by every lane.
#[derive(Debug, Default)]
pub struct Control {
    phase: AtomicU8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sessions issue operations.
    Running,
    /// No new operations; outstanding writes finish.
    Draining,
    Stopped,
}

impl Control {
    pub fn set(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    pub fn get(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }
}

/// Monotonic nanoseconds since the run began.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> Time {
        Time(self.0.elapsed().as_nanos() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What a lane hands back when it stops.
pub struct LaneResult {
    pub node: u8,
    pub lane: u8,
    pub read_latency_ns: Histogram<u64>,
    pub write_latency_ns: Histogram<u64>,
    pub snapshot: Snapshot,
    pub violations: Violations,
    pub error: Option<String>,
}

/// How a running lane answers the start-up Hello of a member that started
/// later: "ready, and I have heard everyone".
#[derive(Clone, Copy, Debug)]
pub struct HelloReply {
    pub cluster_id: u32,
    pub digest: u64,
    pub members: rzab_proto::NodeSet,
}

/// Everything a lane worker is built from.
pub struct LaneSetup<T> {
    pub node: Arc<NodeShared>,
    pub lane: u8,
    /// The role at start (none for a node joining a running cluster: its
    /// control thread starts the lane).
    pub role: Option<Role>,
    pub sequencer: Option<Arc<Sequencer>>,
    pub serving: bool,
    pub transport: T,
    pub trace: Trace,
    pub sessions: u32,
    /// External client sessions (numbered after `sessions`), and the
    /// writes each may have in flight.
    pub client_slots: u32,
    pub client_depth: usize,
    pub issue_batch: usize,
    pub value_size: usize,
    pub verify: bool,
    /// Operations to issue before stopping (None: until the drain).
    pub ops_limit: Option<u64>,
    pub poll: PollMode,
    pub hello: Option<HelloReply>,
    pub shared: Arc<LaneShared>,
    pub control: Arc<Control>,
    pub clock: Clock,
}

/// Datagrams received or sent per batch.
const BATCH: usize = 64;
/// Longest sleep, so a lane notices phase changes promptly.
const MAX_SLEEP: Duration = Duration::from_millis(2);
const PUBLISH_EVERY_NS: u64 = 1_000_000;

pub struct LaneWorker<T> {
    node: Arc<NodeShared>,
    lane: u8,
    role: Option<Role>,
    sequencer: Option<Arc<Sequencer>>,
    /// Sessions may issue (the node runs in the current epoch).
    serving: bool,
    /// Receive and acknowledge, but do not apply (a snapshot is arriving).
    hold: bool,
    /// Protocol counters of the roles of earlier epochs.
    proto_before: LaneStats,
    transport: T,
    send: SendBatch,
    recv: RecvBatch,
    sessions: Vec<Session>,
    clients: ClientSlots,
    cursor: usize,
    trace: Trace,
    issue_batch: usize,
    value_size: usize,
    verify: bool,
    ops_left: u64,
    read_keys: Vec<u64>,
    read_sessions: Vec<u32>,
    read_values: Vec<u8>,
    read_metas: Vec<Option<ItemMeta>>,
    value_buf: Vec<u8>,
    hist_read: Histogram<u64>,
    hist_write: Histogram<u64>,
    rt: RuntimeStats,
    violations: Violations,
    poll: PollMode,
    hello: Option<HelloReply>,
    shared: Arc<LaneShared>,
    control: Arc<Control>,
    clock: Clock,
    last_publish: Time,
    error: Option<String>,
    /// A hosted lane's view of its transport's descriptors this turn.
    gate: Option<Gate>,
    /// The cluster serves external clients, whose writes are keyed: worth
    /// a look at the keys of the writes that arrive (reading them again
    /// cost the built-in load's 5% writes several percent).
    keyed_writes: bool,
}

/// Which of the transport's descriptors a turn may read (their bits, see
/// `Transport::recv_readable`), and which the read found empty.
#[derive(Clone, Copy, Debug)]
struct Gate {
    readable: u32,
    empty: u32,
}

/// Hints the store at the keys of the keyed writes a Prepare (at a
/// follower) or a Write (at the leader) carries: they are applied about a
/// round trip later, and by then their buckets and items are in the cache
/// (missing it cost about a third of a microsecond per write and node).
fn prefetch_writes<'a>(store: &rzab_store::Store, body: &Body<'a>) {
    let keyed = |op: Op, value: &'a [u8]| {
        let keyed = matches!(op, Op::KeyedPut | Op::KeyedDelete);
        keyed
            .then(|| crate::node::split_keyed(value))
            .flatten()
            .map(|(k, _)| k)
    };
    let mut keys: [&[u8]; PREFETCH_MAX] = [&[]; PREFETCH_MAX];
    let n = match body {
        Body::Prepare { entries, .. } => fill(&mut keys, entries.filter_map(|e| keyed(e.op, e.value))),
        Body::Write(entries) => fill(&mut keys, entries.filter_map(|e| keyed(e.op, e.value))),
        _ => 0,
    };
    if n > 0 {
        store.prefetch_keyed(&keys[..n]);
    }
}

/// Fills `out` from `items` (no further than it holds); returns how many.
fn fill<'a>(out: &mut [&'a [u8]], items: impl Iterator<Item = &'a [u8]>) -> usize {
    let mut n = 0;
    for (o, k) in out.iter_mut().zip(items) {
        *o = k;
        n += 1;
    }
    n
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 ns to 60 s at 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl<T: Transport + 'static> LaneWorker<T> {
    pub fn new(s: LaneSetup<T>) -> Self {
        let mtu = s.transport.mtu();
        let n = s.issue_batch;
        LaneWorker {
            node: s.node,
            lane: s.lane,
            role: s.role,
            sequencer: s.sequencer,
            serving: s.serving,
            hold: false,
            proto_before: LaneStats::default(),
            transport: s.transport,
            send: SendBatch::new(BATCH, mtu),
            recv: RecvBatch::new(BATCH, mtu),
            sessions: (0..s.sessions).map(|_| Session::new(s.verify)).collect(),
            clients: ClientSlots::new(s.sessions, s.client_slots, s.client_depth, s.serving),
            cursor: 0,
            trace: s.trace,
            issue_batch: n,
            value_size: s.value_size,
            verify: s.verify,
            ops_left: s.ops_limit.unwrap_or(u64::MAX),
            read_keys: Vec::with_capacity(n),
            read_sessions: Vec::with_capacity(n),
            read_values: vec![0; n * s.value_size],
            read_metas: vec![None; n],
            value_buf: vec![0; s.value_size],
            hist_read: histogram(),
            hist_write: histogram(),
            rt: RuntimeStats::default(),
            violations: Violations::default(),
            poll: s.poll,
            hello: s.hello,
            shared: s.shared,
            control: s.control,
            clock: s.clock,
            last_publish: Time::ZERO,
            error: None,
            gate: None,
            keyed_writes: s.client_slots > 0,
        }
    }

    /// Runs until the orchestrator stops the run or the lane fails. Lane 0
    /// takes over a client gateway offered to it and runs on with it in
    /// one runtime (see `hosted`).
    pub fn run(mut self) -> LaneResult {
        let mut idle = 0u32;
        let mut last_phase = Phase::Running;
        while let Some(busy) = self.step(&mut last_phase) {
            if self.lane == 0
                && let Some(gateway) = self.node.host.take()
            {
                return self.run_hosted(gateway, last_phase);
            }
            if busy {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
                self.back_off(idle, self.clock.now());
            }
        }
        self.finish()
    }

    /// One turn of the lane's loop: `None` once it must stop, else whether
    /// anything happened.
    fn step(&mut self, last_phase: &mut Phase) -> Option<bool> {
        let phase = self.control.get();
        if phase == Phase::Stopped || self.error.is_some() {
            return None;
        }
        if phase != *last_phase {
            // Publish at once so the orchestrator sees the drain begin.
            *last_phase = phase;
            self.last_publish = Time::ZERO;
        }
        let now = self.clock.now();
        let busy = match self.turn(now, phase == Phase::Running) {
            Ok(b) => b,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        };
        if now.0 - self.last_publish.0 >= PUBLISH_EVERY_NS {
            self.publish(now);
        }
        Some(busy)
    }

    fn finish(mut self) -> LaneResult {
        let now = self.clock.now();
        self.publish(now);
        LaneResult {
            node: self.node.id,
            lane: self.lane,
            snapshot: self.shared.read(),
            read_latency_ns: self.hist_read,
            write_latency_ns: self.hist_write,
            violations: self.violations,
            error: self.error,
        }
    }

    /// One pass over every input. Returns whether anything happened.
    fn turn(&mut self, now: Time, issue: bool) -> Result<bool, String> {
        self.rt.turns += 1;
        let mut commands = self.commands(now);
        let received = self.receive(now)?;
        if self.gate.is_some_and(|g| g.empty != 0) {
            // A hosted lane consumes its wake-ups in `receive`: a command
            // queued (and rung) since the look above must not wait for
            // another wake-up.
            commands += self.commands(now);
        }
        let applied = self.apply(now)?;
        let clients = self.take_client_writes(now);
        let issued = match (self.serving && self.role.is_some(), issue) {
            (false, _) => 0,
            (true, true) => self.issue(now),
            (true, false) => self.retry_submits(),
        };
        if let Some(r) = self.role.as_mut() {
            r.handle_timeout(now);
        }
        self.sequence();
        let sent = self.transmit(now)?;
        Ok(commands + received + applied + clients + issued + sent > 0)
    }

    /// Carries out the control thread's requests.
    fn commands(&mut self, now: Time) -> usize {
        let mut n = 0;
        while let Ok(cmd) = self.node.links[self.lane as usize].cmd_rx.try_recv() {
            n += 1;
            let reply = match cmd {
                LaneCmd::Pause => Some(LaneReply::Held(self.pause())),
                LaneCmd::Start {
                    role,
                    sequencer,
                    serving,
                    hold,
                } => {
                    self.role = Some(*role);
                    self.sequencer = sequencer;
                    self.hold = hold;
                    if serving {
                        self.serve();
                    } else {
                        self.settle_clients(now);
                    }
                    None
                }
                LaneCmd::Resume => {
                    self.hold = false;
                    self.settle_clients(now);
                    None
                }
                LaneCmd::Serve => {
                    self.serve();
                    None
                }
                LaneCmd::AddLearner { node, fence } => {
                    // Writes appended but not yet sequenced would get ids
                    // past the point the fence covers: sequence them first.
                    self.sequence();
                    Some(LaneReply::Learner(match self.role.as_mut() {
                        Some(Role::Leader(l)) => l.add_learner(node, now, fence),
                        _ => None,
                    }))
                }
                LaneCmd::Promote { node } => Some(LaneReply::Promoted(match self.role.as_mut() {
                    Some(Role::Leader(l)) => l.promote(node),
                    _ => false,
                })),
            };
            if let Some(r) = reply {
                let _ = self.node.links[self.lane as usize].reply_tx.send(r);
            }
        }
        n
    }

    /// The epoch is over: stop the role, keep the sessions (their pending
    /// writes are submitted again, or found applied, when serving resumes).
    fn pause(&mut self) -> Vec<rzab_proto::OwnedEntry> {
        let Some(role) = self.role.take() else {
            return Vec::new();
        };
        let held = role.held();
        self.proto_before.add(role.stats());
        self.sequencer = None;
        self.serving = false;
        self.hold = false;
        for s in &mut self.sessions {
            if let Some(p) = s.pending.as_mut() {
                p.submitted = false;
            }
        }
        self.clients.unsubmit();
        held
    }

    /// Sessions may issue again: a pending write the node has applied
    /// meanwhile (through a recovered history or a snapshot) completes;
    /// others are submitted again (the leader refuses a second copy).
    fn serve(&mut self) {
        self.serving = true;
        let (me, lane) = (self.node.id, self.lane);
        let now = self.clock.now();
        for idx in 0..self.sessions.len() {
            let last = self.node.records(lane as usize).seqs.last(me, idx as u32);
            let s = &mut self.sessions[idx];
            match (s.pending, last) {
                (Some(p), Some((seq, zxid))) if seq >= p.seq => {
                    if let Some(pp) = s.pending.as_mut() {
                        pp.submitted = true;
                    }
                    self.complete(idx as u32, p.seq, zxid.0, now);
                }
                (Some(_), _) => {}
                (None, Some((seq, _))) => {
                    // Applied writes this session never numbered: a past
                    // life of this node's.
                    s.must_bind |= seq > s.seq;
                    s.seq = s.seq.max(seq);
                }
                (None, None) => {}
            }
        }
        if !self.clients.is_empty() {
            let records = self.node.records(lane as usize);
            self.clients
                .reconcile(now, |session| records.seqs.last(me, session));
        }
    }

    /// Client writes in flight that the control plane's install covered
    /// are settled before the lane applies again.
    fn settle_clients(&mut self, now: Time) {
        if self.clients.is_empty() {
            return;
        }
        let me = self.node.id;
        let records = self.node.records(self.lane as usize);
        self.clients.settle(now, |session| records.seqs.last(me, session));
    }

    /// Takes the client gateway's writes and submits client writes that
    /// wait (when this node serves in an epoch).
    fn take_client_writes(&mut self, now: Time) -> usize {
        if self.clients.is_empty() {
            return 0;
        }
        let mut n = 0;
        while let Ok(w) = self.node.links[self.lane as usize].client_rx.try_recv() {
            self.clients.take(w, now);
            n += 1;
        }
        if let (true, Some(role)) = (self.serving, self.role.as_mut()) {
            n += self.clients.submit(now, |w| role.submit(w));
        }
        n
    }

    fn receive(&mut self, now: Time) -> Result<usize, String> {
        self.recv.clear();
        let got = match self.gate.as_mut() {
            Some(g) => self
                .transport
                .recv_readable(&mut self.recv, g.readable)
                .map(|(n, empty)| {
                    g.empty = empty;
                    n
                }),
            None => self.transport.recv(&mut self.recv),
        };
        let n = got.map_err(|e| format!("receive failed: {e}"))?;
        let mut hellos = NodeSet::EMPTY;
        for bytes in self.recv.iter() {
            match decode(bytes) {
                // Answers are not answered (two running lanes would ping-pong).
                Ok(m) if m.header.kind == Kind::Hello => {
                    if let Body::Hello(b) = m.body
                        && !b.answer
                    {
                        hellos.insert(m.header.sender);
                    }
                }
                Ok(m) => {
                    if self.keyed_writes {
                        prefetch_writes(&self.node.store, &m.body);
                    }
                    if let Some(r) = self.role.as_mut() {
                        r.handle(now, &m);
                    }
                }
                Err(_) => self.rt.decode_errors += 1,
            }
        }
        if !hellos.is_empty() {
            self.answer_hellos(hellos);
        }
        Ok(n)
    }

    /// Tells members still in their start-up handshake that this node runs.
    fn answer_hellos(&mut self, from: NodeSet) {
        let Some(h) = self.hello else { return };
        self.rt.hellos += from.len() as u64;
        for to in from
            .iter()
            .filter(|&n| h.members.contains(n) && n != self.node.id)
        {
            let header = Header {
                kind: Kind::Hello,
                cluster_id: h.cluster_id,
                epoch: 0,
                sender: self.node.id,
                lane: self.lane,
                count: 0,
                seq: 0,
            };
            let body = HelloBody {
                config_digest: h.digest,
                heard: h.members.0,
                ready: true,
                answer: true,
            };
            let Some(buf) = self.send.next_buf() else { return };
            if let Ok(e) = Encoder::hello(buf, header, &body) {
                let len = e.finish();
                self.send.push(Dest::Node(to), len);
            }
        }
    }

    /// Applies committed entries while the gate admits them.
    fn apply(&mut self, now: Time) -> Result<usize, String> {
        let mut applied = 0;
        let lane = self.lane as usize;
        let node = self.node.clone();
        let mut records = node.records(lane);
        while !self.hold {
            let Some(role) = self.role.as_mut() else { break };
            let Some(e) = role.next_apply() else { break };
            let z = e.meta.zxid;
            if !self.node.gate.is_next(z) {
                if z <= self.node.gate.applied() {
                    // In the snapshot or history this node joined from.
                    role.skip_applied();
                    self.rt.skipped_applied += 1;
                    node.log_event(|| format!("lane {lane} skips {z}"));
                    continue;
                }
                self.rt.gate_waits += 1;
                break;
            }
            let a = Applied {
                zxid: z,
                key: e.meta.key,
                session: e.meta.session,
                seq: e.meta.seq,
                origin: e.meta.origin,
                op: e.meta.op,
                value: e.value,
            };
            let (outcome, fence) = node
                .apply(&mut records, lane, &a)
                .map_err(|err| format!("node {} cannot apply {z}: {err}", node.id))?;
            self.node.gate.publish(z);
            let (origin, session, seq) = (a.origin, a.session, a.seq);
            let fence = fence.filter(|f| f.node == self.node.id);
            role.advance_apply();
            if let Some(f) = fence {
                self.clients.fence(f.session, f.generation, now);
            }
            if origin == self.node.id {
                let done = WriteDone {
                    zxid: z.0,
                    outcome,
                    session,
                    seq,
                };
                match self.clients.complete(session, seq, done, now) {
                    Some(latency) => {
                        self.rt.writes_completed += 1;
                        let _ = self.hist_write.record(latency);
                    }
                    // A client session's write it no longer waits for
                    // (found applied after a fail-over) is not a violation.
                    None if (session as usize) < self.sessions.len() => self.complete(session, seq, z.0, now),
                    None => {}
                }
            }
            applied += 1;
        }
        if applied > 0 {
            self.node.wake_lanes(self.lane as usize);
            self.node.standing.note_apply(crate::controller::mono_ns());
        }
        Ok(applied)
    }

    fn complete(&mut self, session: u32, seq: u64, zxid: u64, now: Time) {
        let Some(s) = self.sessions.get_mut(session as usize) else {
            self.violations.completions += 1;
            return;
        };
        if let Some(issued) = s.complete(seq, zxid, &mut self.violations) {
            self.rt.writes_completed += 1;
            let _ = self.hist_write.record((now.0 - issued.0).max(1));
        }
    }

    /// Issues operations round-robin over unblocked sessions: reads are
    /// collected and served from the store in one batch; a write blocks its
    /// session until applied here.
    fn issue(&mut self, now: Time) -> usize {
        let ops = self.retry_submits();
        self.read_keys.clear();
        self.read_sessions.clear();
        let n = self.sessions.len();
        let budget = (self.issue_batch as u64).min(self.ops_left) as usize;
        let mut fresh = 0;
        let mut visited = 0;
        while visited < n && fresh < budget {
            let idx = self.cursor;
            if !self.sessions[idx].is_blocked() {
                fresh += self.issue_session(idx, now, budget - fresh);
            }
            visited += 1;
            self.cursor = (self.cursor + 1) % n;
        }
        self.ops_left -= fresh as u64;
        self.serve_reads(now);
        ops + fresh
    }

    /// Takes trace operations for one session until its first write or the budget.
    fn issue_session(&mut self, idx: usize, now: Time, budget: usize) -> usize {
        if self.sessions[idx].must_bind {
            self.sessions[idx].start_bind(now);
            self.submit(idx);
            return 0;
        }
        let mut ops = 0;
        while ops < budget {
            ops += 1;
            match self.trace.next_op() {
                TraceOp::Read(k) => {
                    self.read_keys.push(k);
                    self.read_sessions.push(idx as u32);
                }
                TraceOp::Write(k) => {
                    self.sessions[idx].start_write(k, now);
                    self.rt.writes_issued += 1;
                    self.submit(idx);
                    break;
                }
            }
        }
        ops
    }

    /// Hands session `idx`'s pending write to the lane.
    fn submit(&mut self, idx: usize) -> bool {
        let Some(p) = self.sessions[idx].pending else {
            return false;
        };
        let bind_value;
        let (op, value) = if p.bind {
            bind_value = rzab_wire::BindValue {
                owner: 0,
                fence: None,
            }
            .to_vec();
            (Op::Bind, &bind_value[..])
        } else {
            value::fill(
                &mut self.value_buf,
                p.key,
                value::tag(self.node.id, self.lane, idx as u32, p.seq),
            );
            (Op::Put, &self.value_buf[..])
        };
        let w = WriteEntry {
            session: idx as u32,
            seq: p.seq,
            key: p.key,
            op,
            value,
        };
        let Some(role) = self.role.as_mut() else {
            return false;
        };
        match role.submit(&w) {
            Submitted::Accepted => {
                if let Some(p) = self.sessions[idx].pending.as_mut() {
                    p.submitted = true;
                }
                true
            }
            Submitted::Retry => {
                self.rt.submit_retries += 1;
                false
            }
            Submitted::Refused(why) => {
                self.error = Some(format!("lane refused a session write: {why}"));
                false
            }
            // Built-in sessions are never fenced: their node lost track.
            Submitted::Stale => {
                self.error = Some("lane refused a session write as already sequenced".into());
                false
            }
        }
    }

    /// Retries writes a full lane could not take earlier.
    fn retry_submits(&mut self) -> usize {
        let mut n = 0;
        for idx in 0..self.sessions.len() {
            if self.sessions[idx].pending.is_some_and(|p| !p.submitted) && self.submit(idx) {
                n += 1;
            }
        }
        n
    }

    fn serve_reads(&mut self, started: Time) {
        let n = self.read_keys.len();
        if n == 0 {
            return;
        }
        let vs = self.value_size;
        let store = &self.node.store;
        store.get_batch(
            &self.read_keys,
            &mut self.read_values[..n * vs],
            &mut self.read_metas[..n],
        );
        self.rt.reads += n as u64;
        if self.verify {
            for i in 0..n {
                self.verify_read(i);
            }
        }
        let latency = (self.clock.now().0 - started.0).max(1);
        let _ = self.hist_read.record_n(latency, n as u64);
    }

    fn verify_read(&mut self, i: usize) {
        let (key, s) = (self.read_keys[i], self.read_sessions[i] as usize);
        let vs = self.value_size;
        match self.read_metas[i] {
            Some(meta) => {
                let bytes = &self.read_values[i * vs..i * vs + meta.len];
                if !value::check(bytes, key) {
                    self.violations.bad_values += 1;
                }
                self.sessions[s].observe_read(key, meta.zxid, &mut self.violations);
            }
            None => self.violations.bad_values += 1,
        }
    }

    /// Gives appended writes their ids. An exhausted epoch (2^32 ids)
    /// leaves them waiting: the leader's control thread starts a new one.
    fn sequence(&mut self) {
        if let (Some(Role::Leader(l)), Some(seq)) = (&mut self.role, self.sequencer.as_ref())
            && l.sequence(seq).is_err()
        {
            self.rt.epoch_exhausted += 1;
        }
    }

    fn transmit(&mut self, now: Time) -> Result<usize, String> {
        let mut sent = 0;
        loop {
            let Some(buf) = self.send.next_buf() else {
                sent += self.flush()?;
                continue;
            };
            let Some(role) = self.role.as_mut() else { break };
            match role.poll_transmit(now, buf) {
                Some(t) => self.send.push(t.dest, t.len),
                None => break,
            }
        }
        sent += self.flush()?;
        Ok(sent)
    }

    fn flush(&mut self) -> Result<usize, String> {
        let n = self.send.len();
        if n > 0 {
            self.transport
                .send(&self.send)
                .map_err(|e| format!("send failed: {e}"))?;
            self.send.clear();
        }
        Ok(n)
    }

    /// Idle: spin a little, then yield, then block in the transport's wait
    /// (until a datagram, a waker or the next timer). How long to poll
    /// before blocking is the transport's call (see `Transport::idle_polls`).
    fn back_off(&mut self, idle: u32, now: Time) {
        let polls = self.transport.idle_polls();
        if self.poll == PollMode::Busy || idle <= polls / 4 {
            std::hint::spin_loop();
        } else if idle <= polls {
            std::thread::yield_now();
        } else {
            let wait = self.idle_wait(now);
            self.rt.sleeps += 1;
            let _ = self.transport.wait(wait);
        }
    }

    /// How long an idle lane may wait: until its role's next timer, at
    /// most `MAX_SLEEP`.
    fn idle_wait(&self, now: Time) -> Duration {
        let until = self
            .role
            .as_ref()
            .and_then(|r| r.poll_timeout())
            .unwrap_or(Time::NEVER);
        Duration::from_nanos(until.0.saturating_sub(now.0)).min(MAX_SLEEP)
    }

    fn publish(&mut self, now: Time) {
        self.last_publish = now;
        let mut progress = self.role.as_ref().map(progress).unwrap_or_default();
        progress.serving = self.serving && self.role.is_some();
        progress.blocked_sessions = self.sessions.iter().filter(|s| s.is_blocked()).count() as u64;
        progress.failed = self.error.is_some();
        progress.draining = self.control.get() != Phase::Running;
        progress.issued_all = self.ops_left == 0;
        let mut proto = self.proto_before;
        if let Some(r) = &self.role {
            proto.add(r.stats());
        }
        self.shared.publish(Snapshot {
            proto,
            runtime: self.rt,
            transport: self.transport.stats(),
            progress,
        });
    }
}

/// Where a lane's log stands.
fn progress(role: &Role) -> Progress {
    let (apply_lid, commit_lid, end_lid) = role.lids();
    let epoch = match role {
        Role::Leader(l) => l.config().epoch,
        Role::Follower(f) => f.config().epoch,
    };
    Progress {
        leader: role.is_leader(),
        epoch,
        apply_lid,
        commit_lid,
        end_lid,
        lagging: match role {
            Role::Leader(l) => l.lagging().0,
            Role::Follower(_) => 0,
        },
        ..Progress::default()
    }
}

/// The proto and transport counters of a finished lane (for tests).
pub fn counters(r: &LaneResult) -> (LaneStats, TransportStats) {
    (r.snapshot.proto, r.snapshot.transport)
}
