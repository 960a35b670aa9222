//! `rzab node`: one replica of a cluster described in a cluster file, as
//! its own process over UDP (or RDMA). Standalone it prints its stats and times its
//! own drain; supervised (by `bench --transport udp`) it reports JSON lines
//! on stdout and takes `drain` and `stop` on stdin.

use crate::cluster::ClusterFile;
use crate::config::RunConfig;
use crate::controller::ControlStatus;
use crate::handshake::{Handshake, Start, handshake};
use crate::lane::{HelloReply, Phase};
use crate::report::NodeOutcome;
use crate::runner::{Local, Prepared, RunError, run_intervals};
use crate::stats::Snapshot;
use rzab_proto::NodeId;
use rzab_transport::Transport;
use rzab_transport::rdma::RdmaEndpoint;
use rzab_transport::udp::UdpEndpoint;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A line a supervised node prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildMsg {
    /// Handshake done, lanes running.
    Started { node: NodeId },
    /// Each lane's counters and progress, and the control plane's state.
    Status {
        node: NodeId,
        lanes: Vec<Snapshot>,
        #[serde(default)]
        control: Box<ControlStatus>,
    },
    /// The end of the run.
    Outcome(Box<NodeOutcome>),
    /// The node could not run.
    Failed { node: NodeId, error: String },
}

/// A command a supervised node reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Drain,
    Stop,
}

fn emit(msg: &ChildMsg) {
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Runs node `id` of `file`. Supervised, all output is JSON lines on stdout.
pub fn run_node(
    file: &ClusterFile,
    id: NodeId,
    supervised: bool,
    out: &mut dyn Write,
) -> Result<NodeOutcome, RunError> {
    let result = run(file, id, supervised, out);
    if let (true, Err(e)) = (supervised, &result) {
        emit(&ChildMsg::Failed {
            node: id,
            error: e.to_string(),
        });
    }
    result
}

/// Runs over the transport the file names.
fn run(
    file: &ClusterFile,
    id: NodeId,
    supervised: bool,
    out: &mut dyn Write,
) -> Result<NodeOutcome, RunError> {
    if file.transport.kind == "rdma" {
        let open = |l: u8| open_rdma(file, id, l);
        let info = |e: &RdmaEndpoint| serde_json::to_value(e.info()).ok();
        return run_with(file, id, supervised, out, open, info);
    }
    let open = |l: u8| UdpEndpoint::new(&file.udp(id, l));
    let info = |e: &UdpEndpoint| serde_json::to_value(e.info()).ok();
    run_with(file, id, supervised, out, open, info)
}

/// Lane `l`'s RDMA endpoint, which learns its peers' queue pairs (UDP
/// bootstrap) before the handshake.
fn open_rdma(file: &ClusterFile, id: NodeId, l: u8) -> std::io::Result<RdmaEndpoint> {
    let mut e = RdmaEndpoint::open(&file.rdma(id, l))?;
    e.bootstrap(&mut |waiting| {
        eprintln!("rzab node {id} lane {l}: waiting for the RDMA addresses of nodes {waiting:?}")
    })
    .map_err(|e| std::io::Error::new(e.kind(), format!("RDMA bootstrap, lane {l}: {e}")))?;
    Ok(e)
}

fn run_with<T: Transport + 'static>(
    file: &ClusterFile,
    id: NodeId,
    supervised: bool,
    out: &mut dyn Write,
    open: impl Fn(u8) -> std::io::Result<T>,
    info_of: impl Fn(&T) -> Option<serde_json::Value>,
) -> Result<NodeOutcome, RunError> {
    let cfg = file.run_config();
    let (mut local, info) = start_local(file, &cfg, id, open, info_of)?;
    let (running, secs) = if supervised {
        emit(&ChildMsg::Started { node: id });
        supervised_run(&local, id)
    } else {
        let _ = writeln!(
            out,
            "rzab node {id}: {} lanes running for {} s",
            file.lanes, cfg.duration_s
        );
        let (_, secs) = run_intervals(&cfg, &mut local.monitor, out);
        let running = local.node_snapshots();
        if let Err(why) = drain_alone(&local, cfg.drain_timeout_s) {
            let _ = writeln!(out, "rzab node {id}: {why}");
        }
        (running, secs)
    };
    let mut outcome = local.finish(running, secs).remove(0);
    outcome.info = info;
    if supervised {
        emit(&ChildMsg::Outcome(Box::new(outcome.clone())));
    }
    Ok(outcome)
}

/// Binds node `id`'s endpoints, handshakes with its peers and starts its
/// lanes and control thread under `cfg`.
pub(crate) fn start_local<T: Transport + 'static>(
    file: &ClusterFile,
    cfg: &RunConfig,
    id: NodeId,
    open: impl Fn(u8) -> std::io::Result<T>,
    info_of: impl Fn(&T) -> Option<serde_json::Value>,
) -> Result<(Local, Option<serde_json::Value>), RunError> {
    if id as usize >= file.nodes.len() {
        return Err(RunError::Setup(format!(
            "--id {id} is not a node of the cluster file (ids 0..{})",
            file.nodes.len()
        )));
    }
    // Bind every lane first, so peers' early datagrams are queued, not refused.
    let mut endpoints = (0..file.lanes)
        .map(|l| open(l).map(Some))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| RunError::Setup(format!("node {id}: {e}")))?;
    let info = endpoints[0].as_ref().and_then(info_of);
    let control = UdpEndpoint::new(&file.control_udp(id))
        .map_err(|e| RunError::Setup(format!("node {id}: control endpoint: {e}")))?;
    let mut prepared = Prepared::new(cfg, &[id])?;
    let hs = Handshake {
        cluster_id: file.cluster_id,
        me: id,
        members: cfg.members(),
        digest: file.digest(),
        timeout: Duration::from_secs_f64(file.run.handshake_timeout_s),
    };
    if let Some(lane0) = endpoints[0].as_mut() {
        let start = handshake(lane0, &hs, &mut |m| eprintln!("rzab {m}"))
            .map_err(|e| RunError::Setup(format!("node {id}: {e}")))?;
        if start == Start::Rejoin {
            eprintln!("rzab node {id}: the cluster runs without this node: joining it as a learner");
        }
        if start == Start::Rejoin {
            prepared.rejoin();
        }
    }
    let hello = HelloReply {
        cluster_id: file.cluster_id,
        digest: hs.digest,
        members: hs.members,
    };
    let mut control = Some(control);
    let local = Local::start_prepared(
        cfg,
        prepared,
        Some(hello),
        |_, l| {
            endpoints[l as usize]
                .take()
                .ok_or_else(|| RunError::Setup(format!("lane {l} endpoint missing")))
        },
        |_| {
            control
                .take()
                .ok_or_else(|| RunError::Setup("control endpoint missing".into()))
        },
    )?;
    Ok((local, info))
}

/// Reports status every 100 ms until told to stop (or the supervisor is
/// gone); returns the counters and seconds at the drain.
fn supervised_run(local: &Local, id: NodeId) -> (Vec<Snapshot>, f64) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let cmd = match line.as_deref().map(str::trim) {
                Ok("drain") => Command::Drain,
                Ok("stop") | Err(_) => Command::Stop,
                Ok(_) => continue,
            };
            if tx.send(cmd).is_err() {
                return;
            }
        }
        let _ = tx.send(Command::Stop);
    });
    let mut running = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Command::Drain) if running.is_none() => {
                running = Some((local.node_snapshots(), local.elapsed()));
                local.control.set(Phase::Draining);
            }
            Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            _ => {}
        }
        emit(&ChildMsg::Status {
            node: id,
            lanes: local.monitor.snapshots(),
            control: Box::new(local.controls.first().map(|c| c.read()).unwrap_or_default()),
        });
    }
    running.unwrap_or_else(|| (local.node_snapshots(), local.elapsed()))
}

/// Without a supervisor a node sees only itself: it stops issuing, waits
/// for its sessions' writes, then for its lanes to go quiet (nothing new
/// applied for a while), within the drain timeout.
fn drain_alone(local: &Local, timeout_s: f64) -> Result<(), String> {
    local.control.set(Phase::Draining);
    let start = Instant::now();
    let quiet_for = Duration::from_millis(500);
    let (mut last, mut since) = (Vec::new(), Instant::now());
    while start.elapsed().as_secs_f64() < timeout_s {
        std::thread::sleep(Duration::from_millis(20));
        let snaps = local.monitor.snapshots();
        let lids: Vec<(u64, u64)> = snaps
            .iter()
            .map(|s| (s.progress.apply_lid, s.progress.commit_lid))
            .collect();
        if lids != last {
            (last, since) = (lids, Instant::now());
        }
        let idle = snaps
            .iter()
            .all(|s| s.progress.blocked_sessions == 0 && s.progress.apply_lid == s.progress.commit_lid);
        if idle && since.elapsed() >= quiet_for {
            return Ok(());
        }
    }
    Err(format!("not quiet after {timeout_s} s of draining"))
}

/// `rzab serve`: runs node `id` of `file` as a server for external clients
/// (no built-in workload) until `stop` is set; prints a status line every
/// `run.interval_s`.
pub fn serve_node(
    file: &ClusterFile,
    id: NodeId,
    out: &mut dyn Write,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<NodeOutcome, RunError> {
    let mut file = file.clone();
    if file.client.slots == 0 {
        file.client.slots = crate::serve::SERVE_SLOTS;
    }
    file.validate()?;
    if file.transport.kind == "rdma" {
        let open = |l: u8| open_rdma(&file, id, l);
        return serve_with(&file, id, out, stop, open);
    }
    let open = |l: u8| UdpEndpoint::new(&file.udp(id, l));
    serve_with(&file, id, out, stop, open)
}

fn serve_with<T: Transport + 'static>(
    file: &ClusterFile,
    id: NodeId,
    out: &mut dyn Write,
    stop: &std::sync::atomic::AtomicBool,
    open: impl Fn(u8) -> std::io::Result<T>,
) -> Result<NodeOutcome, RunError> {
    use std::sync::atomic::Ordering;
    let cfg = crate::serve::server_config(file.run_config());
    let listen = file
        .client_addr(id)
        .ok_or_else(|| RunError::Setup(format!("--id {id} is not a node of the cluster file")))?;
    let (local, _) = start_local(file, &cfg, id, open, |_| None)?;
    let node = local.nodes[0].clone();
    let gateway = crate::gateway::Gateway::start(node.clone(), listen, &cfg.clients)
        .map_err(|e| RunError::Setup(format!("node {id}: client address {listen}: {e}")))?;
    let _ = writeln!(
        out,
        "rzab serve {id}: serving clients on {} ({} slots per lane, {} lanes)",
        gateway.local_addr(),
        cfg.clients.slots,
        file.lanes
    );
    let every = Duration::from_secs_f64(file.run.interval_s.clamp(0.1, 3600.0));
    let mut last = (Instant::now(), gateway.stats.read());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if last.0.elapsed() < every {
            continue;
        }
        let now = gateway.stats.read();
        let secs = last.0.elapsed().as_secs_f64();
        let rate = |a: u64, b: u64| (a - b) as f64 / secs;
        let s = &node.standing;
        let _ = writeln!(
            out,
            "node {id}: epoch {} leader {} {}; {:.0} gets/s {:.0} puts/s {:.0} deletes/s {:.0} sync gets/s; {} connections, {} refused, {} errors",
            s.epoch.load(Ordering::Relaxed),
            s.leader.load(Ordering::Relaxed),
            if s.serving.load(Ordering::Relaxed) {
                "serving"
            } else {
                "not serving"
            },
            rate(now.gets, last.1.gets),
            rate(now.puts, last.1.puts),
            rate(now.deletes, last.1.deletes),
            rate(now.sync_gets, last.1.sync_gets),
            now.connections,
            now.refused,
            now.errors,
        );
        last = (Instant::now(), now);
    }
    gateway.stop();
    let running = local.node_snapshots();
    let secs = local.elapsed();
    let outcome = local.finish(running, secs).remove(0);
    let _ = writeln!(
        out,
        "rzab serve {id}: stopped; {} writes applied, digest {:016x}",
        outcome.applied, outcome.digest
    );
    let t = &outcome.fin.transport;
    let _ = writeln!(
        out,
        "rzab serve {id}: datagrams sent {} in {} calls, received {} in {} calls; dropped {} (queue full), {} (unknown source)",
        t.datagrams_sent,
        t.send_calls,
        t.datagrams_recv,
        t.recv_calls,
        t.dropped_full,
        t.dropped_unknown_source
    );
    Ok(outcome)
}
