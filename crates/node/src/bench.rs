//! `bench` on an in-process cluster: every node and lane as threads of this
//! process over the in-process transport.

use crate::config::{ConfigError, RunConfig};
use crate::lane::{Clock, Control, LaneResult, LaneSetup, LaneWorker, Phase};
use crate::monitor::{Monitor, Watched};
use crate::node::NodeShared;
use crate::report::{Batches, ClusterReport, IntervalReport, NodeReport, Percentiles, Rates, Report, Stalls};
use crate::session::Violations;
use crate::stats::LaneShared;
use crate::value;
use crate::workload::{Trace, TraceError};
use rzab_proto::{FollowerLane, LeaderLane, NodeId, Role};
use rzab_store::{StoreConfig, StoreError};
use rzab_transport::Transport;
use rzab_transport::inproc::{Fabric, FabricConfig};
use rzab_transport::lossy::Lossy;
use std::io::Write;
use std::sync::Arc;
use std::thread;
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

/// Builds the per-lane traces (read once from a file, or generated per lane).
pub fn traces(cfg: &RunConfig) -> Result<Vec<Vec<Trace>>, RunError> {
    let w = &cfg.workload;
    if let Some(path) = &w.trace_file {
        let base = Trace::from_file(path, w.keys)?;
        let total = cfg.nodes as usize * cfg.lanes as usize;
        let step = base.len() / total.max(1);
        let per = |n: usize| {
            (0..cfg.lanes as usize)
                .map(|l| base.clone().with_offset((n * cfg.lanes as usize + l) * step))
                .collect()
        };
        return Ok((0..cfg.nodes as usize).map(per).collect());
    }
    // Generating zipf traces takes a while: one thread per node.
    Ok(thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.nodes)
            .map(|n| {
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
pub fn preloaded_node(cfg: &RunConfig, id: NodeId) -> Result<NodeShared, RunError> {
    let w = &cfg.workload;
    let store = StoreConfig {
        capacity: w.keys as usize,
        value_size: w.value_size,
    };
    let node = NodeShared::new(id, store, 1, id == cfg.leader)?;
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
        Role::Follower(FollowerLane::new(c).map_err(bad)?)
    })
}

/// Runs the whole cluster in this process and reports.
pub fn run_inproc(cfg: &RunConfig, out: &mut dyn Write) -> Result<Report, RunError> {
    cfg.validate()?;
    let traces = traces(cfg)?;
    let _ = writeln!(
        out,
        "rzab bench: preparing {} nodes x {} lanes, {} keys (in-process transport)",
        cfg.nodes, cfg.lanes, cfg.workload.keys
    );
    let nodes: Vec<Arc<NodeShared>> = thread::scope(|s| {
        let hs: Vec<_> = (0..cfg.nodes)
            .map(|n| s.spawn(move || preloaded_node(cfg, n)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| RunError::Setup("preload panicked".into()))?
                    .map(Arc::new)
            })
            .collect::<Result<_, _>>()
    })?;
    let fabric = Fabric::new(FabricConfig {
        members: cfg.members(),
        lanes: cfg.lanes as usize,
        mtu: cfg.proto.mtu,
        queue_depth: cfg.queue_depth,
    });
    let control = Arc::new(Control::default());
    let clock = Clock::new();
    let mut watched = Vec::new();
    let mut setups = Vec::new();
    for (n, node_traces) in traces.into_iter().enumerate() {
        let node = &nodes[n];
        let mut wakers = Vec::new();
        for (l, trace) in node_traces.into_iter().enumerate() {
            let seed = crate::workload::lane_seed(cfg.workload.seed ^ 0x10_55, n as u8, l as u8);
            let transport = Lossy::new(fabric.endpoint(n as NodeId, l), cfg.loss, seed);
            wakers.push(transport.waker());
            let shared = Arc::new(LaneShared::default());
            watched.push(Watched {
                node: n as NodeId,
                lane: l as u8,
                shared: shared.clone(),
            });
            setups.push(LaneSetup {
                node: node.clone(),
                lane: l as u8,
                role: role(cfg, n as NodeId, l as u8)?,
                transport,
                trace,
                sessions: cfg.workload.sessions,
                issue_batch: cfg.workload.issue_batch,
                value_size: cfg.workload.value_size,
                verify: cfg.workload.verify,
                ops_limit: cfg.workload.ops_per_lane,
                poll: cfg.poll,
                shared,
                control: control.clone(),
                clock,
            });
        }
        node.set_wakers(wakers);
    }
    let handles: Vec<_> = setups
        .into_iter()
        .map(|s| {
            let name = format!("n{}l{}", s.node.id, s.lane);
            thread::Builder::new()
                .name(name)
                .spawn(move || LaneWorker::new(s).run())
        })
        .collect::<Result<_, _>>()
        .map_err(|e| RunError::Setup(format!("cannot start lane threads: {e}")))?;
    let mut monitor = Monitor::new(watched);
    let (intervals, elapsed) = run_intervals(cfg, &mut monitor, out);
    // Rates are over the running phase only, not the drain.
    let per_node_running: Vec<_> = monitor
        .nodes
        .iter()
        .map(|&n| monitor.sum(&monitor.snapshots(), Some(n)))
        .collect();
    let drained = drain(cfg, &control, &monitor);
    control.set(Phase::Stopped);
    let results: Vec<LaneResult> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    Ok(assemble(
        cfg,
        "in-process",
        &nodes,
        &monitor,
        results,
        per_node_running,
        intervals,
        elapsed,
        drained,
    ))
}

/// Prints interval lines until the duration is over; returns them with the
/// seconds the sessions actually ran.
fn run_intervals(cfg: &RunConfig, monitor: &mut Monitor, out: &mut dyn Write) -> (Vec<IntervalReport>, f64) {
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

/// Stops new operations and waits for convergence; `Err` says what stalled.
fn drain(cfg: &RunConfig, control: &Control, monitor: &Monitor) -> Result<(), String> {
    control.set(Phase::Draining);
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

#[allow(clippy::too_many_arguments)]
fn assemble(
    cfg: &RunConfig,
    transport: &str,
    nodes: &[Arc<NodeShared>],
    monitor: &Monitor,
    results: Vec<LaneResult>,
    per_node_running: Vec<crate::stats::Snapshot>,
    intervals: Vec<IntervalReport>,
    elapsed: f64,
    drained: Result<(), String>,
) -> Report {
    let mut problems = Vec::new();
    if let Err(why) = drained {
        problems.push(why);
    }
    let mut read = crate::lane::histogram();
    let mut write = crate::lane::histogram();
    let mut violations = Violations::default();
    for r in &results {
        let _ = read.add(&r.read_latency_ns);
        let _ = write.add(&r.write_latency_ns);
        violations.add(&r.violations);
        if let Some(e) = &r.error {
            problems.push(format!("node {} lane {}: {e}", r.node, r.lane));
        }
    }
    if results.len() != monitor.lanes.len() {
        problems.push(format!(
            "{} of {} lanes panicked",
            monitor.lanes.len() - results.len(),
            monitor.lanes.len()
        ));
    }
    let finals = monitor.snapshots();
    let node_reports: Vec<NodeReport> = nodes
        .iter()
        .zip(&per_node_running)
        .map(|(node, running)| {
            let fin = monitor.sum(&finals, Some(node.id));
            let lane_violations =
                results
                    .iter()
                    .filter(|r| r.node == node.id)
                    .fold(Violations::default(), |mut v, r| {
                        v.add(&r.violations);
                        v
                    });
            let (applied, chain) = node.history.snapshot();
            NodeReport {
                id: node.id,
                leader: node.id == cfg.leader,
                rates: Rates::of(&running.runtime, elapsed),
                batches: Batches::of(&fin.proto),
                stalls: Stalls::of(&fin),
                runtime: fin.runtime,
                proto: fin.proto,
                transport: fin.transport,
                digest: format!("{:016x}", node.store.digest()),
                applied,
                history: format!("{chain:016x}"),
                violations: lane_violations,
            }
        })
        .collect();
    let digests_match = node_reports.windows(2).all(|w| w[0].digest == w[1].digest);
    let histories_match = node_reports
        .windows(2)
        .all(|w| (w[0].applied, &w[0].history) == (w[1].applied, &w[1].history));
    if !digests_match {
        problems.push("store digests differ between replicas".into());
    }
    if !histories_match {
        problems.push("replicas applied different write sequences".into());
    }
    if violations.total() > 0 {
        problems.push(format!("session guarantee violations: {violations:?}"));
    }
    let all = monitor.sum(&finals, None);
    let running = monitor.sum(&per_node_running, None);
    if all.runtime.writes_completed != all.runtime.writes_issued {
        problems.push(format!(
            "{} writes issued but {} completed",
            all.runtime.writes_issued, all.runtime.writes_completed
        ));
    }
    let cluster = ClusterReport {
        rates: Rates::of(&running.runtime, elapsed),
        batches: Batches::of(&all.proto),
        stalls: Stalls::of(&all),
        read_latency_us: Percentiles::of(&read),
        write_latency_us: Percentiles::of(&write),
        writes_issued: all.runtime.writes_issued,
        writes_completed: all.runtime.writes_completed,
        datagrams_per_write: if all.runtime.writes_completed == 0 {
            0.0
        } else {
            all.transport.datagrams_sent as f64 / all.runtime.writes_completed as f64
        },
        digests_match,
        histories_match,
        violations,
    };
    Report {
        config: cfg.clone(),
        transport: transport.into(),
        elapsed_s: elapsed,
        nodes: node_reports,
        cluster,
        intervals,
        problems,
    }
}
