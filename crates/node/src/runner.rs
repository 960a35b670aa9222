//! Running the nodes that live in this process: build their shared state,
//! start one thread per lane over whatever transport, watch them, drain
//! them, and turn them into per-node outcomes. The in-process bench runs
//! every node here; a node process (`rzab node`) runs one.

use crate::config::{ConfigError, RunConfig};
use crate::controller::{ControlShared, Controller};
use crate::host::NodeHost;
use crate::lane::{Clock, Control, HelloReply, LaneResult, LaneSetup, LaneWorker, Phase};
use crate::monitor::{Monitor, Watched};
use crate::node::NodeShared;
use crate::report::{Buckets, IntervalReport, NodeOutcome};
use crate::session::Violations;
use crate::stats::{LaneShared, Snapshot};
use crate::value;
use crate::workload::{Trace, TraceError};
use rzab_proto::{FollowerLane, LeaderLane, NodeId, Role, Sequencer, Time, Zxid};
use rzab_store::{StoreConfig, StoreError};
use rzab_transport::Transport;
use std::io::Write;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// The traces of `ids`' lanes (read once from a file, or generated per lane).
pub fn traces(cfg: &RunConfig, ids: &[NodeId]) -> Result<Vec<Vec<Trace>>, RunError> {
    let w = &cfg.workload;
    if let Some(path) = &w.trace_file {
        let base = Trace::from_file(path, w.keys)?;
        let lanes = cfg.lanes as usize;
        let step = base.len() / (cfg.nodes as usize * lanes).max(1);
        let per = |n: NodeId| {
            (0..lanes)
                .map(|l| base.clone().with_offset((n as usize * lanes + l) * step))
                .collect()
        };
        return Ok(ids.iter().map(|&n| per(n)).collect());
    }
    // Generating zipf traces takes a while: one thread per node.
    Ok(thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|&n| {
                s.spawn(move || {
                    (0..cfg.lanes)
                        .map(|l| Trace::generate(w, n, l))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    }))
}

/// A node's shared state with every key preloaded identically (zxid 0).
/// A node that rejoins a running cluster starts from nothing applied (its
/// snapshot replaces the preload).
pub fn preloaded_node(cfg: &RunConfig, id: NodeId, rejoin: bool) -> Result<NodeShared, RunError> {
    let w = &cfg.workload;
    let store = StoreConfig {
        capacity: cfg.store_capacity(),
        value_size: cfg.value_max(),
    };
    let applied = if rejoin { Zxid::ZERO } else { Zxid::epoch_base(1) };
    let shape = (cfg.nodes as usize, cfg.lanes, cfg.lane_sessions());
    let node = NodeShared::new(id, store, shape, applied, cfg.proto.history_retained)?;
    node.standing
        .rejoined
        .store(rejoin, std::sync::atomic::Ordering::Relaxed);
    let mut buf = vec![0u8; w.value_size];
    for key in 0..w.keys {
        value::fill(&mut buf, key, 0);
        node.store.put(key, &buf, 0)?;
    }
    Ok(node)
}

fn role(cfg: &RunConfig, node: NodeId, lane: u8) -> Result<Role, RunError> {
    let c = cfg.lane_config(node, lane);
    let bad = |e: rzab_proto::ConfigError| RunError::Config(crate::config::bad(e.field, e.reason));
    Ok(if node == cfg.leader {
        Role::Leader(LeaderLane::new(c).map_err(bad)?)
    } else {
        // The first epoch's leader counts every follower.
        let mut f = FollowerLane::new(c).map_err(bad)?;
        f.commit_on_receipt(true);
        Role::Follower(f)
    })
}

/// Takes the calling thread from a raised priority (nice below 0) back to
/// the default; a thread at 0 or above is left as it is. Lowering one's
/// own priority needs no privilege.
pub(crate) fn unraise_priority() {
    // SAFETY: gettid, getpriority and setpriority take no pointers; on
    // Linux PRIO_PROCESS with a thread id applies to that thread alone.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::getpriority(libc::PRIO_PROCESS, tid) < 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, 0);
        }
    }
}

/// Sets the calling thread's nice value (Linux: per thread); a refusal
/// (no CAP_SYS_NICE) leaves it as it was, with a warning.
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and setpriority take no pointers; on Linux
    // PRIO_PROCESS with a thread id applies to that thread alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "rzab: cannot set lane threads to nice {nice} ({}); running them at the default",
                std::io::Error::last_os_error()
            );
        });
    }
}

/// The lanes and control threads of this process's nodes, running.
pub struct Local {
    pub nodes: Vec<Arc<NodeShared>>,
    pub control: Arc<Control>,
    pub monitor: Monitor,
    /// Each node's control plane status.
    pub controls: Vec<Arc<ControlShared>>,
    handles: Vec<JoinHandle<LaneResult>>,
    controllers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// Nodes preloaded and traces ready, lanes not started yet (a node process
/// handshakes with its peers in between).
pub struct Prepared {
    nodes: Vec<Arc<NodeShared>>,
    traces: Vec<Vec<Trace>>,
    rejoin: bool,
}

impl Prepared {
    /// Builds the traces of `ids`' lanes and preloads their stores.
    pub fn new(cfg: &RunConfig, ids: &[NodeId]) -> Result<Prepared, RunError> {
        Self::build(cfg, ids, false)
    }

    /// Like [`Prepared::new`]; with `rejoin` the nodes join a running
    /// cluster (they lost their state) instead of starting one.
    pub fn build(cfg: &RunConfig, ids: &[NodeId], rejoin: bool) -> Result<Prepared, RunError> {
        let traces = traces(cfg, ids)?;
        let nodes = thread::scope(|s| {
            let hs: Vec<_> = ids
                .iter()
                .map(|&n| s.spawn(move || preloaded_node(cfg, n, rejoin)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| RunError::Setup("preload panicked".into()))?
                        .map(Arc::new)
                })
                .collect::<Result<_, _>>()
        })?;
        Ok(Prepared {
            nodes,
            traces,
            rejoin,
        })
    }

    /// The nodes join a running cluster instead (found by the handshake):
    /// nothing counts as applied until their snapshot arrives.
    pub fn rejoin(&mut self) {
        self.rejoin = true;
        for n in &self.nodes {
            n.gate.set(Zxid::ZERO);
            for l in 0..n.lanes() {
                n.records(l).history.reset(Zxid::ZERO);
            }
            n.standing
                .rejoined
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Local {
    /// Preloads `ids` and starts them (see [`Local::start_prepared`]).
    pub fn start<T: Transport + 'static, C: Transport + 'static>(
        cfg: &RunConfig,
        ids: &[NodeId],
        hello: Option<HelloReply>,
        transport: impl FnMut(NodeId, u8) -> Result<T, RunError>,
        control_transport: impl FnMut(NodeId) -> Result<C, RunError>,
    ) -> Result<Local, RunError> {
        Self::start_prepared(cfg, Prepared::new(cfg, ids)?, hello, transport, control_transport)
    }

    /// Starts the lanes and control thread of prepared nodes:
    /// `transport(node, lane)` makes each lane's endpoint and
    /// `control_transport(node)` the control thread's (all made before any
    /// thread starts).
    pub fn start_prepared<T: Transport + 'static, C: Transport + 'static>(
        cfg: &RunConfig,
        prepared: Prepared,
        hello: Option<HelloReply>,
        mut transport: impl FnMut(NodeId, u8) -> Result<T, RunError>,
        mut control_transport: impl FnMut(NodeId) -> Result<C, RunError>,
    ) -> Result<Local, RunError> {
        let Prepared {
            nodes,
            traces,
            rejoin,
        } = prepared;
        let control = Arc::new(Control::default());
        let clock = Clock::new();
        let mut watched = Vec::new();
        let mut setups = Vec::new();
        let mut controllers = Vec::new();
        for (node, node_traces) in nodes.iter().zip(traces) {
            let leading = !rejoin && node.id == cfg.leader;
            let sequencer = leading.then(|| Arc::new(Sequencer::new(Zxid::epoch_base(1))));
            let mut wakers = Vec::new();
            for (l, trace) in node_traces.into_iter().enumerate() {
                let t = transport(node.id, l as u8)?;
                wakers.push(t.waker());
                let shared = Arc::new(LaneShared::default());
                watched.push(Watched {
                    node: node.id,
                    lane: l as u8,
                    shared: shared.clone(),
                });
                setups.push(LaneSetup {
                    node: node.clone(),
                    lane: l as u8,
                    role: if rejoin {
                        None
                    } else {
                        Some(role(cfg, node.id, l as u8)?)
                    },
                    sequencer: sequencer.clone(),
                    serving: !rejoin,
                    transport: t,
                    trace,
                    sessions: cfg.workload.sessions,
                    client_slots: cfg.clients.slots,
                    client_depth: cfg.clients.write_depth,
                    issue_batch: cfg.workload.issue_batch,
                    value_size: cfg.workload.value_size,
                    verify: cfg.workload.verify,
                    ops_limit: cfg.workload.ops_per_lane,
                    poll: cfg.poll,
                    hello,
                    shared,
                    control: control.clone(),
                    clock,
                });
            }
            node.set_wakers(wakers);
            let standing = &node.standing;
            standing
                .epoch
                .store(if rejoin { 0 } else { 1 }, std::sync::atomic::Ordering::Relaxed);
            if !rejoin {
                standing
                    .leader
                    .store(cfg.leader, std::sync::atomic::Ordering::Relaxed);
                standing.serving.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let seed = cfg.workload.seed ^ (node.id as u64) << 32 ^ crate::controller::mono_ns();
            let ctl_cfg = cfg.control_config(node.id, seed);
            let plane = if rejoin {
                rzab_proto::Control::new_learner(ctl_cfg)
            } else {
                rzab_proto::Control::new(ctl_cfg, cfg.leader, Time::ZERO)
            };
            controllers.push(Controller {
                control: plane,
                host: NodeHost::new(node.clone(), control.clone(), cfg.clone(), sequencer),
                node: node.clone(),
                transport: control_transport(node.id)?,
                phase: control.clone(),
                clock,
                shared: Arc::new(ControlShared::default()),
                trace: std::env::var_os("RZAB_TRACE_CONTROL").is_some(),
                decode_errors: 0,
            });
        }
        let controls = controllers.iter().map(|c| c.shared.clone()).collect();
        let handles = setups
            .into_iter()
            .map(|s| {
                let name = format!("n{}l{}", s.node.id, s.lane);
                let nice = cfg.lane_nice;
                let fds = s.transport.wait_fds().len();
                if s.lane == 0 && (1..=crate::lane::MAX_HOSTED_FDS).contains(&fds) {
                    s.node.host.set_capable();
                }
                thread::Builder::new().name(name).spawn(move || {
                    set_nice(nice);
                    LaneWorker::new(s).run()
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| RunError::Setup(format!("cannot start lane threads: {e}")))?;
        let controllers = controllers
            .into_iter()
            .map(|c| {
                let name = format!("n{}ctl", c.node.id);
                let nice = cfg.lane_nice;
                thread::Builder::new().name(name).spawn(move || {
                    set_nice(nice);
                    c.run()
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| RunError::Setup(format!("cannot start control threads: {e}")))?;
        Ok(Local {
            nodes,
            control,
            monitor: Monitor::new(watched),
            controls,
            handles,
            controllers,
            started: Instant::now(),
        })
    }

    /// Seconds since the lanes started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Each node's counters now (summed over its lanes).
    pub fn node_snapshots(&self) -> Vec<Snapshot> {
        let snaps = self.monitor.snapshots();
        self.nodes
            .iter()
            .map(|n| self.monitor.sum(&snaps, Some(n.id)))
            .collect()
    }

    /// Stops the lanes and reports each node. `running` is each node's
    /// counters when its sessions stopped, after `running_s` seconds.
    pub fn finish(self, running: Vec<Snapshot>, running_s: f64) -> Vec<NodeOutcome> {
        self.control.set(Phase::Stopped);
        for c in self.controllers {
            let _ = c.join();
        }
        let controls = &self.controls;
        let expected = self.handles.len();
        let results: Vec<LaneResult> = self.handles.into_iter().filter_map(|h| h.join().ok()).collect();
        let finals = self.monitor.snapshots();
        let mut outcomes: Vec<NodeOutcome> = self
            .nodes
            .iter()
            .zip(running)
            .enumerate()
            .map(|(i, (node, running))| {
                let mine: Vec<&LaneResult> = results.iter().filter(|r| r.node == node.id).collect();
                let (applied, chain) = node.history.snapshot();
                let mut read = Buckets::default();
                let mut write = Buckets::default();
                let mut violations = Violations::default();
                for r in &mine {
                    read.add(&r.read_latency_ns);
                    write.add(&r.write_latency_ns);
                    violations.add(&r.violations);
                }
                NodeOutcome {
                    id: node.id,
                    leader: node.is_leader(),
                    running,
                    running_s,
                    fin: self.monitor.sum(&finals, Some(node.id)),
                    digest: node.store.digest(),
                    applied,
                    chain,
                    read_latency_ns: read,
                    write_latency_ns: write,
                    violations,
                    errors: mine
                        .iter()
                        .filter_map(|r| r.error.as_ref().map(|e| format!("lane {}: {e}", r.lane)))
                        .chain(controls.get(i).map(|c| c.errors()).unwrap_or_default())
                        .collect(),
                    info: None,
                    rejoined: node.standing.rejoined.load(std::sync::atomic::Ordering::Relaxed),
                    control: controls.get(i).map(|c| c.read()).unwrap_or_default(),
                    gaps: node.standing.gaps(),
                    installed_keys: node
                        .standing
                        .installed_keys
                        .load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect();
        if results.len() != expected
            && let Some(o) = outcomes.first_mut()
        {
            o.errors.push(format!(
                "{} of {expected} lanes panicked",
                expected - results.len()
            ));
        }
        outcomes
    }
}

/// Prints interval lines until `duration_s`, or until every lane issued its
/// operations or one failed; returns them with the seconds that passed.
pub fn run_intervals(
    cfg: &RunConfig,
    monitor: &mut Monitor,
    out: &mut dyn Write,
) -> (Vec<IntervalReport>, f64) {
    let start = Instant::now();
    let mut intervals = Vec::new();
    let mut next = cfg.interval_s;
    loop {
        let t = next.min(cfg.duration_s);
        let target = start + Duration::from_secs_f64(t);
        while Instant::now() < target {
            thread::sleep((target - Instant::now()).min(Duration::from_millis(50)));
            if monitor.failed() || monitor.all_issued() {
                let t = start.elapsed().as_secs_f64();
                intervals.push(monitor.interval(t, out));
                return (intervals, t);
            }
        }
        intervals.push(monitor.interval(start.elapsed().as_secs_f64(), out));
        if t >= cfg.duration_s {
            return (intervals, start.elapsed().as_secs_f64());
        }
        next += cfg.interval_s;
    }
}

/// Stops new operations and waits for `monitor` to see convergence; `Err`
/// says what stalled.
pub fn drain(cfg: &RunConfig, control: Option<&Control>, monitor: &Monitor) -> Result<(), String> {
    if let Some(c) = control {
        c.set(Phase::Draining);
    }
    let start = Instant::now();
    let limit = Duration::from_secs_f64(cfg.drain_timeout_s);
    loop {
        thread::sleep(Duration::from_millis(5));
        if monitor.failed() {
            return Err("a lane failed".into());
        }
        match monitor.converged() {
            Ok(()) => return Ok(()),
            Err(why) if start.elapsed() >= limit => {
                return Err(format!(
                    "stalled for {:.1} s draining: {why}",
                    start.elapsed().as_secs_f64()
                ));
            }
            Err(_) => {}
        }
    }
}
