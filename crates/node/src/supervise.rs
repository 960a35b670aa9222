//! `bench --transport udp`: the cluster as separate `rzab node` processes on
//! this machine (on loopback, or each in its own network namespace). Their
//! status lines feed the same monitor and report as the in-process bench.
//! Every child is stopped at the end, on Ctrl-C, or when one fails.

use crate::cluster::{ClusterFile, TransportSection};
use crate::config::RunConfig;
use crate::monitor::{Monitor, Watched};
use crate::netns::Netns;
use crate::process::ChildMsg;
use crate::report::{NodeOutcome, Report, assemble};
use crate::runner::{RunError, drain, run_intervals};
use crate::stats::LaneShared;
use rzab_proto::BroadcastMode;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct UdpBench {
    /// The `rzab` binary to start nodes with (normally this one).
    pub exe: PathBuf,
    /// First port of node 0 (0: chosen from the process id).
    pub port: u16,
    /// Each node in its own network namespace (root only).
    pub netns: bool,
    /// Start the nodes in reverse order, this far apart (to show that start
    /// order does not matter).
    pub stagger: Duration,
}

/// The children, killed by PID if still running when this is dropped.
#[derive(Default)]
struct Children(Vec<(Child, Option<ChildStdin>)>);

impl Children {
    fn tell(&mut self, what: &str) {
        for (_, stdin) in &mut self.0 {
            if let Some(s) = stdin {
                let _ = writeln!(s, "{what}").and_then(|_| s.flush());
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (c, stdin) in &mut self.0 {
            drop(stdin.take());
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// What the reader threads learn from the children.
#[derive(Default)]
struct Shared {
    started: AtomicUsize,
    outcomes: Mutex<Vec<Option<NodeOutcome>>>,
    failures: Mutex<Vec<String>>,
}

/// Reads one child's lines until it exits.
fn read_child(id: usize, out: impl std::io::Read, lanes: Vec<Arc<LaneShared>>, shared: Arc<Shared>) {
    let mut done = false;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<ChildMsg>(&line) {
            Ok(ChildMsg::Started { .. }) => {
                shared.started.fetch_add(1, Ordering::SeqCst);
            }
            Ok(ChildMsg::Status { lanes: snaps, .. }) => {
                for (l, s) in lanes.iter().zip(snaps) {
                    l.publish(s);
                }
            }
            Ok(ChildMsg::Outcome(o)) => {
                if let Ok(mut v) = shared.outcomes.lock() {
                    v[id] = Some(*o);
                }
                done = true;
            }
            Ok(ChildMsg::Failed { error, .. }) => {
                if let Ok(mut f) = shared.failures.lock() {
                    f.push(format!("node {id}: {error}"));
                }
            }
            Err(_) => eprintln!("node {id}: {line}"),
        }
    }
    if !done {
        if let Ok(mut f) = shared.failures.lock() {
            f.push(format!("node {id} exited before reporting"));
        }
        for l in &lanes {
            let mut s = l.read();
            s.progress.failed = true;
            l.publish(s);
        }
    }
}

fn start_child(cmd: Command) -> std::io::Result<Child> {
    let mut cmd = cmd;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe, the only kind of call allowed
        // between fork and exec; it makes the child die with this process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// A base port whose lane ports are free on every node's loopback address
/// (and the group ports above them), so concurrent benches do not collide.
fn free_ports(nodes: usize, lanes: u8) -> Result<u16, RunError> {
    let start = (std::process::id() % 1_000) as u16;
    (0..1_000u16)
        .map(|k| 20_000 + ((start + k) % 1_000) * 40)
        .find(|&base| {
            let mut held = Vec::new();
            let mut bind =
                |ip: Ipv4Addr, p: u16| std::net::UdpSocket::bind((ip, p)).map(|s| held.push(s)).is_ok();
            (0..lanes as u16).all(|l| {
                bind(Ipv4Addr::UNSPECIFIED, base + 1_000 + l)
                    && (0..nodes).all(|i| bind(Ipv4Addr::new(127, 0, 0, i as u8 + 1), base + l))
            })
        })
        .ok_or_else(|| RunError::Setup("no free block of UDP ports on loopback".into()))
}

/// Runs the cluster as `cfg.nodes` processes and reports.
pub fn run_udp(cfg: &RunConfig, opts: &UdpBench, out: &mut dyn Write) -> Result<Report, RunError> {
    cfg.validate()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, interrupted.clone());
    }
    let pid = std::process::id();
    let nodes = cfg.nodes as usize;
    let net = if opts.netns {
        Some(Netns::create(nodes, pid).map_err(RunError::Setup)?)
    } else {
        None
    };
    let port = match (opts.port, &net) {
        (0, None) => free_ports(nodes, cfg.lanes)?,
        (0, Some(_)) => 17_000,
        (p, _) => p,
    };
    let addresses: Vec<SocketAddr> = (0..nodes)
        .map(|i| match &net {
            Some(n) => SocketAddr::new(n.address(i), port),
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8 + 1)), port),
        })
        .collect();
    let transport = TransportSection {
        multicast_group: SocketAddrV4::new(Ipv4Addr::new(239, 255, (pid % 250) as u8, 1), port + 1_000),
        ..TransportSection::default()
    };
    let file = ClusterFile::from_run(cfg, &addresses, transport);
    file.validate().map_err(RunError::Config)?;
    let dir = std::env::temp_dir().join(format!("rzab-bench-{pid}"));
    std::fs::create_dir_all(&dir).map_err(|e| RunError::Setup(format!("{}: {e}", dir.display())))?;
    let path = dir.join("cluster.toml");
    std::fs::write(&path, file.to_toml()).map_err(|e| RunError::Setup(format!("{}: {e}", path.display())))?;
    let result = supervise(cfg, &file, &path, opts, net.as_ref(), &interrupted, out);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn supervise(
    cfg: &RunConfig,
    file: &ClusterFile,
    path: &std::path::Path,
    opts: &UdpBench,
    net: Option<&Netns>,
    interrupted: &Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<Report, RunError> {
    let nodes = cfg.nodes as usize;
    let shared = Arc::new(Shared {
        outcomes: Mutex::new(vec![None; nodes]),
        ..Shared::default()
    });
    let lanes: Vec<Vec<Arc<LaneShared>>> = (0..nodes)
        .map(|_| (0..cfg.lanes).map(|_| Arc::new(LaneShared::default())).collect())
        .collect();
    let watched: Vec<Watched> = lanes
        .iter()
        .enumerate()
        .flat_map(|(i, ls)| {
            ls.iter().enumerate().map(move |(l, s)| Watched {
                node: i as u8,
                lane: l as u8,
                shared: s.clone(),
            })
        })
        .collect();
    let mut children = Children::default();
    for i in (0..nodes).rev() {
        if i + 1 < nodes {
            std::thread::sleep(opts.stagger);
        }
        let mut cmd = Command::new(&opts.exe);
        cmd.args(cmd_args(path, i));
        let cmd = net.map_or(cmd, |n| {
            n.wrap(i, Command::new(&opts.exe).args(cmd_args(path, i)))
        });
        let mut child =
            start_child(cmd).map_err(|e| RunError::Setup(format!("cannot start node {i}: {e}")))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        children.0.push((child, stdin));
        if let Some(stdout) = stdout {
            let (sh, ls) = (shared.clone(), lanes[i].clone());
            std::thread::spawn(move || read_child(i, stdout, ls, sh));
        }
    }
    let mut monitor = Monitor::new(watched);
    monitor.abort_on(interrupted.clone());
    wait_started(file, &shared, &monitor, nodes)?;
    let where_ = if net.is_some() {
        "network namespaces"
    } else {
        "loopback"
    };
    let mode = if cfg.proto.broadcast == BroadcastMode::Multicast {
        "multicast"
    } else {
        "unicast"
    };
    let _ = writeln!(
        out,
        "rzab bench: {nodes} node processes x {} lanes, UDP on {where_}, {mode}",
        cfg.lanes
    );
    let (intervals, elapsed) = run_intervals(cfg, &mut monitor, out);
    children.tell("drain");
    let drained = drain(cfg, None, &monitor);
    children.tell("stop");
    let outcomes = collect(&shared, nodes, interrupted);
    let mut report = assemble(
        cfg,
        &format!("udp, {nodes} processes on {where_}, {mode}"),
        &outcomes,
        intervals,
        elapsed,
        drained,
    );
    if let Ok(f) = shared.failures.lock() {
        report.problems.extend(f.iter().cloned());
    }
    if interrupted.load(Ordering::SeqCst) {
        report.problems.push("interrupted".into());
    }
    drop(children);
    Ok(report)
}

fn cmd_args(path: &std::path::Path, i: usize) -> Vec<String> {
    let p = path.display().to_string();
    ["node", "--config", &p, "--id", &i.to_string(), "--supervised"]
        .map(String::from)
        .to_vec()
}

/// Waits for every child to finish its handshake (or for one to fail).
fn wait_started(
    file: &ClusterFile,
    shared: &Shared,
    monitor: &Monitor,
    nodes: usize,
) -> Result<(), RunError> {
    let limit = Duration::from_secs_f64(file.run.handshake_timeout_s + 120.0);
    let start = Instant::now();
    while shared.started.load(Ordering::SeqCst) < nodes {
        let failed = shared.failures.lock().map(|f| f.join("; ")).unwrap_or_default();
        if !failed.is_empty() {
            return Err(RunError::Setup(failed));
        }
        if monitor.failed() || start.elapsed() > limit {
            return Err(RunError::Setup("nodes did not all start".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The children's final reports, in node order (waits up to 60 s).
fn collect(shared: &Shared, nodes: usize, interrupted: &AtomicBool) -> Vec<NodeOutcome> {
    let start = Instant::now();
    loop {
        let got = shared
            .outcomes
            .lock()
            .map(|v| v.iter().flatten().count())
            .unwrap_or(0);
        let gave_up = shared.failures.lock().map(|f| f.len()).unwrap_or(0);
        if got + gave_up >= nodes
            || start.elapsed() > Duration::from_secs(60)
            || interrupted.load(Ordering::SeqCst)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    shared
        .outcomes
        .lock()
        .map(|v| v.iter().flatten().cloned().collect())
        .unwrap_or_default()
}
