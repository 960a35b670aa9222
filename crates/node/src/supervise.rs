//! `bench --transport udp`: the cluster as separate `rzab node` processes on
//! this machine (on loopback, or each in its own network namespace). Their
//! status lines feed the same monitor and report as the in-process bench.
//! Every child is stopped at the end, on Ctrl-C, or when one fails. A crash
//! schedule kills node processes with SIGKILL under load and restarts them.

use crate::cluster::{ClusterFile, TransportSection};
use crate::config::RunConfig;
use crate::controller::{ControlStatus, mono_ns};
use crate::faults::{self, Action, Fault, Leadership, Target, Timeline};
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
use std::sync::{Arc, Mutex, mpsc};
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
    /// Kills and restarts, in time order.
    pub faults: Vec<Fault>,
}

/// One node's process (absent while killed).
#[derive(Default)]
struct Slot {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Bumped when the process is killed on purpose, so its reader knows
    /// the end of its output is not a failure.
    life: u32,
}

/// The children, killed by PID if still running when this is dropped.
#[derive(Default)]
struct Children(Vec<Slot>);

impl Children {
    fn tell(&mut self, what: &str) {
        for slot in &mut self.0 {
            if let Some(s) = &mut slot.stdin {
                let _ = writeln!(s, "{what}").and_then(|_| s.flush());
            }
        }
    }

    /// SIGKILLs node `i`'s process (only ever one this run started).
    fn kill(&mut self, i: usize) -> bool {
        let Some(slot) = self.0.get_mut(i) else {
            return false;
        };
        let Some(mut c) = slot.child.take() else {
            return false;
        };
        slot.life += 1;
        slot.stdin = None;
        let _ = c.kill();
        let _ = c.wait();
        true
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for slot in &mut self.0 {
            drop(slot.stdin.take());
            if let Some(c) = &mut slot.child {
                if matches!(c.try_wait(), Ok(None)) {
                    let _ = c.kill();
                }
                let _ = c.wait();
            }
        }
    }
}

/// What the reader threads learn from the children.
#[derive(Default)]
struct Shared {
    started: AtomicUsize,
    outcomes: Mutex<Vec<Option<NodeOutcome>>>,
    failures: Mutex<Vec<String>>,
    /// Each node's latest control plane status.
    status: Mutex<Vec<ControlStatus>>,
    /// Each node's current life (see `Slot::life`).
    lives: Mutex<Vec<u32>>,
    timeline: Mutex<Timeline>,
}

impl Shared {
    fn life(&self, id: usize) -> u32 {
        self.lives.lock().map(|l| l[id]).unwrap_or(0)
    }

    /// Notes what a status line says about leaderships and catch-ups.
    fn observe(&self, id: usize, c: &ControlStatus) {
        if let Ok(mut s) = self.status.lock() {
            s[id] = c.clone();
        }
        let Ok(mut t) = self.timeline.lock() else { return };
        if c.state == "leading" && c.first_commit_ns != 0 {
            let l = Leadership {
                node: id as u8,
                epoch: c.epoch,
                led_at_ns: c.led_at_ns,
                first_commit_ns: c.first_commit_ns,
            };
            if !t.leaderships.contains(&l) {
                t.leaderships.push(l);
            }
        }
        if t.gaps.len() <= id {
            t.gaps.resize(id + 1, Vec::new());
        }
        for g in &c.recent_gaps {
            if !t.gaps[id].contains(g) {
                t.gaps[id].push(*g);
            }
        }
        if c.caught_up_ns != 0
            && !t
                .catch_ups
                .iter()
                .any(|x| x.0 == id as u8 && x.1 == c.caught_up_ns)
        {
            t.catch_ups.push((id as u8, c.caught_up_ns, c.installed_keys));
        }
    }

    fn fail(&self, what: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.push(what);
        }
    }
}

/// Marks a node's lanes down (killed on purpose) or up again.
fn set_down(lanes: &[Arc<LaneShared>], down: bool) {
    for l in lanes {
        let mut s = l.read();
        s.progress.down = down;
        l.publish(s);
    }
}

/// Reads one child's lines until it exits. Counters of a restarted node
/// continue from its previous life's, so rates never run backwards.
fn read_child(
    id: usize,
    life: u32,
    out: impl std::io::Read,
    lanes: Vec<Arc<LaneShared>>,
    shared: Arc<Shared>,
) {
    let base: Vec<_> = lanes.iter().map(|l| l.read()).collect();
    let mut done = false;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<ChildMsg>(&line) {
            Ok(ChildMsg::Started { .. }) => {
                shared.started.fetch_add(1, Ordering::SeqCst);
            }
            Ok(ChildMsg::Status {
                lanes: snaps,
                control,
                ..
            }) => {
                for ((l, mut s), b) in lanes.iter().zip(snaps).zip(&base) {
                    s.add_counters(b);
                    l.publish(s);
                }
                shared.observe(id, &control);
            }
            Ok(ChildMsg::Outcome(o)) => {
                if let Ok(mut v) = shared.outcomes.lock() {
                    v[id] = Some(*o);
                }
                done = true;
            }
            Ok(ChildMsg::Failed { error, .. }) => shared.fail(format!("node {id}: {error}")),
            Err(_) => eprintln!("node {id}: {line}"),
        }
    }
    if done {
        return;
    }
    if shared.life(id) != life {
        // Killed on purpose: down until restarted.
        set_down(&lanes, true);
        return;
    }
    shared.fail(format!("node {id} exited before reporting"));
    for l in &lanes {
        let mut s = l.read();
        s.progress.failed = true;
        l.publish(s);
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
            // Each lane's port and group port, and the control port after the lanes.
            (0..lanes as u16).all(|l| bind(Ipv4Addr::UNSPECIFIED, base + 1_000 + l))
                && (0..=lanes as u16)
                    .all(|l| (0..nodes).all(|i| bind(Ipv4Addr::new(127, 0, 0, i as u8 + 1), base + l)))
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

/// Starts node processes from one thread that outlives them all: a child
/// dies with the thread that forked it (PR_SET_PDEATHSIG), and restarts
/// come from the fault schedule's thread, which ends first.
struct Spawner {
    requests: Mutex<mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Child>>)>>,
}

impl Spawner {
    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .lock()
            .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
            .send((cmd, tx))
            .map_err(|_| std::io::Error::other("spawner thread gone"))?;
        rx.recv()
            .map_err(|_| std::io::Error::other("spawner thread gone"))?
    }
}

/// How to start node `i`'s process (again).
struct Launcher<'a> {
    exe: &'a std::path::Path,
    path: &'a std::path::Path,
    net: Option<&'a Netns>,
    lanes: &'a [Vec<Arc<LaneShared>>],
    shared: &'a Arc<Shared>,
    spawner: &'a Spawner,
}

impl Launcher<'_> {
    fn start(&self, i: usize, slot: &mut Slot) -> Result<(), RunError> {
        let mut cmd = Command::new(self.exe);
        cmd.args(cmd_args(self.path, i));
        let cmd = self.net.map_or(cmd, |n| {
            n.wrap(i, Command::new(self.exe).args(cmd_args(self.path, i)))
        });
        let mut child = self
            .spawner
            .spawn(cmd)
            .map_err(|e| RunError::Setup(format!("cannot start node {i}: {e}")))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        slot.child = Some(child);
        slot.stdin = stdin;
        set_down(&self.lanes[i], false);
        if let Some(stdout) = stdout {
            let (sh, ls, life) = (self.shared.clone(), self.lanes[i].clone(), slot.life);
            std::thread::spawn(move || read_child(i, life, stdout, ls, sh));
        }
        Ok(())
    }
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
    let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Child>>)>();
    std::thread::scope(|sc| {
        sc.spawn(move || {
            for (cmd, reply) in rx {
                let _ = reply.send(start_child(cmd));
            }
        });
        let spawner = Spawner {
            requests: Mutex::new(tx),
        };
        // Every child is gone when this returns; then the spawner ends.
        supervise_with(cfg, file, path, opts, net, interrupted, out, &spawner)
    })
}

#[allow(clippy::too_many_arguments)]
fn supervise_with(
    cfg: &RunConfig,
    file: &ClusterFile,
    path: &std::path::Path,
    opts: &UdpBench,
    net: Option<&Netns>,
    interrupted: &Arc<AtomicBool>,
    out: &mut dyn Write,
    spawner: &Spawner,
) -> Result<Report, RunError> {
    let nodes = cfg.nodes as usize;
    let shared = Arc::new(Shared {
        outcomes: Mutex::new(vec![None; nodes]),
        status: Mutex::new(vec![ControlStatus::default(); nodes]),
        lives: Mutex::new(vec![0; nodes]),
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
    let launcher = Launcher {
        exe: &opts.exe,
        path,
        net,
        lanes: &lanes,
        shared: &shared,
        spawner,
    };
    let children = Mutex::new(Children((0..nodes).map(|_| Slot::default()).collect()));
    for i in (0..nodes).rev() {
        if i + 1 < nodes {
            std::thread::sleep(opts.stagger);
        }
        let mut c = children
            .lock()
            .map_err(|_| RunError::Setup("children lock".into()))?;
        launcher.start(i, &mut c.0[i])?;
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
    if let Ok(mut t) = shared.timeline.lock() {
        t.start_ns = mono_ns();
    }
    let stop_faults = AtomicBool::new(false);
    let (intervals, elapsed) = std::thread::scope(|sc| {
        let faults = sc.spawn(|| run_faults(&opts.faults, &children, &launcher, &stop_faults));
        let r = run_intervals(cfg, &mut monitor, out);
        stop_faults.store(true, Ordering::SeqCst);
        let _ = faults.join();
        r
    });
    let mut children = children.into_inner().unwrap_or_default();
    let alive = children.0.iter().filter(|s| s.child.is_some()).count();
    children.tell("drain");
    let drained = drain(cfg, None, &monitor);
    children.tell("stop");
    let outcomes = collect(&shared, alive, interrupted);
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
    if !opts.faults.is_empty() {
        let t = shared.timeline.lock().map(|t| t.clone()).unwrap_or_default();
        let f = faults::report(&t, &outcomes);
        let down = nodes - alive;
        // Nodes killed for good do not report: that is expected.
        report
            .problems
            .retain(|p| !(down > 0 && p == &format!("{alive} of {nodes} nodes reported")));
        report.faults = Some(f);
    }
    if interrupted.load(Ordering::SeqCst) {
        report.problems.push("interrupted".into());
    }
    drop(children);
    Ok(report)
}

/// Waits until every running node serves in one epoch (up to 10 s).
fn wait_healthy(shared: &Shared, children: &Mutex<Children>, stop: &AtomicBool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !stop.load(Ordering::SeqCst) {
        let running: Vec<bool> = children
            .lock()
            .map(|c| c.0.iter().map(|s| s.child.is_some()).collect())
            .unwrap_or_default();
        let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
        let live: Vec<&ControlStatus> = status
            .iter()
            .zip(&running)
            .filter(|(_, r)| **r)
            .map(|(s, _)| s)
            .collect();
        let epoch = live.first().map(|s| s.epoch);
        if !live.is_empty() && live.iter().all(|s| s.serving && Some(s.epoch) == epoch) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Carries out the crash schedule (until `stop`), noting what it did.
fn run_faults(schedule: &[Fault], children: &Mutex<Children>, launcher: &Launcher<'_>, stop: &AtomicBool) {
    let start = Instant::now();
    let shared = launcher.shared;
    let mut dead: Vec<usize> = Vec::new();
    for f in schedule {
        while start.elapsed() < f.at {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep((f.at - start.elapsed()).min(Duration::from_millis(5)));
        }
        if f.when_healthy && !wait_healthy(shared, children, stop) {
            if let Ok(mut t) = shared.timeline.lock() {
                t.skipped
                    .push(format!("{f}: the cluster was not whole within 10 s"));
            }
            continue;
        }
        let Ok(mut c) = children.lock() else { return };
        let skip = |why: String| {
            if let Ok(mut t) = shared.timeline.lock() {
                t.skipped.push(format!("{f}: {why}"));
            }
        };
        match f.action {
            Action::Kill(target) => {
                let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
                let leader = (0..c.0.len()).find(|&i| c.0[i].child.is_some() && status[i].state == "leading");
                let victim = match target {
                    Target::Leader => leader,
                    Target::Follower => (0..c.0.len()).find(|&i| c.0[i].child.is_some() && Some(i) != leader),
                    Target::Node(n) => Some(n as usize).filter(|&n| n < c.0.len()),
                };
                let Some(v) = victim else {
                    skip("no such node is running".into());
                    continue;
                };
                if let Ok(mut l) = shared.lives.lock() {
                    l[v] += 1;
                }
                if !c.kill(v) {
                    skip(format!("node {v} is not running"));
                    continue;
                }
                set_down(&launcher.lanes[v], true);
                dead.push(v);
                if let Ok(mut t) = shared.timeline.lock() {
                    t.kills.push((v as u8, mono_ns(), leader == Some(v)));
                }
            }
            Action::Restart => {
                if dead.is_empty() {
                    skip("no node is down".into());
                    continue;
                }
                let v = dead.remove(0);
                let at = mono_ns();
                if let Err(e) = launcher.start(v, &mut c.0[v]) {
                    shared.fail(e.to_string());
                    continue;
                }
                if let Ok(mut t) = shared.timeline.lock() {
                    t.restarts.push((v as u8, at));
                }
            }
        }
    }
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

/// The final reports of the `nodes` running children, in node order
/// (waits up to 60 s).
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
