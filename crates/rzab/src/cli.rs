//! Command-line parsing and the commands.

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use rzab_node::faults::Fault;
use rzab_node::{Distribution, PollMode, RunConfig};
use rzab_proto::BroadcastMode;
use std::path::PathBuf;
use std::process::ExitCode;

/// rzab: ZooKeeper's atomic broadcast over datagrams, as a replicated
/// in-memory key-value store.
#[derive(Parser, Debug)]
#[command(name = "rzab", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a whole cluster on this machine under a workload and report.
    Bench(BenchArgs),
    /// Simulate a cluster deterministically under network faults and check it.
    Sim(crate::sim::SimArgs),
    /// Run one replica of a cluster described in a cluster file (over UDP).
    Node(crate::node::NodeArgs),
    /// Measure this machine's loopback UDP ceiling for rzab's datagram sizes.
    BenchNet(crate::node::BenchNetArgs),
    /// Run one replica of a cluster file as a server for external clients.
    Serve(crate::client::ServeArgs),
    /// Read a key from a cluster (prints the value).
    Get(crate::client::ClientArgs),
    /// Write a key's value to a cluster.
    Put(crate::client::ClientArgs),
    /// Delete a key from a cluster.
    Delete(crate::client::ClientArgs),
    /// Closed-loop load against rzab, ZooKeeper or etcd over the network.
    Loadgen(rzab_loadgen::LoadArgs),
    /// Answer the client protocol without storing anything (every read
    /// NotFound, every write Written): loaded like a cluster, it measures the
    /// ceiling of the request path alone on this machine.
    NullServer(crate::loadgen::NullServerArgs),
}

/// Where `bench` runs the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// Every node as threads of this process.
    Inproc,
    /// Every node as its own process over UDP on loopback (or network namespaces).
    Udp,
}

pub fn parse_broadcast(s: &str) -> Result<BroadcastMode, String> {
    match s {
        "multicast" => Ok(BroadcastMode::Multicast),
        "unicast" => Ok(BroadcastMode::Unicast),
        _ => Err(format!("'{s}' is not multicast or unicast")),
    }
}

pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a fraction between 0 and 1 (5% is 0.05)"))
    }
}

pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{v} must be a positive number of seconds"))
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Where the nodes run: inproc (threads of this process) or udp (one process each).
    #[arg(long, value_enum, default_value = "inproc")]
    pub transport: TransportKind,
    /// With --transport udp: each node in its own network namespace joined by veth pairs (root only).
    #[arg(long)]
    pub netns: bool,
    /// With --transport udp: node 0's first port (0: chosen from the process id).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// With --transport udp: start nodes in reverse order this many ms apart.
    #[arg(long, default_value_t = 0, hide = true)]
    pub stagger_ms: u64,
    /// With --transport udp: SIGKILL a node under load, e.g. leader@5s,
    /// follower@2s or 2@1.5s (repeatable).
    #[arg(long, value_parser = Fault::kill)]
    pub kill: Vec<Fault>,
    /// With --transport udp: restart the longest-dead node, e.g. @8s (repeatable);
    /// it rejoins as a learner from a snapshot.
    #[arg(long, value_parser = Fault::restart)]
    pub restart: Vec<Fault>,
    /// With --transport udp: kill the leader this many times (restarting
    /// each victim halfway to the next kill), for failover figures.
    #[arg(long, default_value_t = 0)]
    pub failovers: u32,
    /// Seconds between --failovers kills (the first is at one interval).
    #[arg(long, default_value = "1.5", value_parser = parse_seconds)]
    pub failover_every: f64,
    /// Leader heartbeat period in milliseconds.
    #[arg(long, default_value = "5")]
    pub heartbeat_ms: f64,
    /// Leader silence after which a follower starts an election, in
    /// milliseconds (randomized up to twice this).
    #[arg(long, default_value = "25")]
    pub election_timeout_ms: f64,
    /// Replicas in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub nodes: u8,
    /// Lanes (worker threads) per node; lane t of the leader talks to lane t of each follower.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub lanes: u8,
    /// Closed-loop client sessions per lane (each has at most one write outstanding).
    #[arg(long, default_value_t = 22)]
    pub sessions: u32,
    /// Fraction of operations that are writes (0.05 = 5%).
    #[arg(long, default_value = "0.05", value_parser = parse_fraction)]
    pub write_ratio: f64,
    /// Keys in the store (all preloaded).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// Key distribution: uniform, zipf (0.99) or zipf:EXPONENT.
    #[arg(long, default_value = "uniform")]
    pub distribution: Distribution,
    /// Stop each lane after this many operations (the run still ends at --duration).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Seconds the sessions run.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: f64,
    /// Seconds between stats lines.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub interval: f64,
    /// Seed of the generated workload (a run is reproducible).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Read operations from this file instead: one `r KEY` or `w KEY` per line.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Generated operations per lane before its trace repeats.
    #[arg(long, default_value_t = 1 << 20)]
    pub trace_len: usize,
    /// Most operations a lane issues per loop turn.
    #[arg(long, default_value_t = 1000)]
    pub issue_batch: usize,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Idle lanes: adaptive (spin, yield, then sleep) or busy (always spin; for dedicated cores).
    #[arg(long, default_value = "adaptive")]
    pub poll: PollMode,
    /// Check read-your-writes and monotonic reads on every read.
    #[arg(long)]
    pub verify: bool,
    /// Largest datagram in bytes.
    #[arg(long, default_value_t = 4096)]
    pub mtu: usize,
    /// How Prepares and Commits reach followers: multicast or unicast.
    #[arg(long, default_value = "multicast", value_parser = parse_broadcast)]
    pub broadcast: BroadcastMode,
    /// Prepare messages in flight per follower and lane.
    #[arg(long, default_value_t = 6)]
    pub prepare_credits: usize,
    /// Commit messages in flight per follower and lane.
    #[arg(long, default_value_t = 30)]
    pub commit_credits: usize,
    /// Write messages in flight from each follower lane.
    #[arg(long, default_value_t = 6)]
    pub write_credits: usize,
    /// Most entries per Prepare (0: as many as the MTU holds).
    #[arg(long, default_value_t = 0)]
    pub prepare_batch_max: usize,
    /// Most writes per Write message (0: as many as the MTU holds).
    #[arg(long, default_value_t = 0)]
    pub write_batch_max: usize,
    /// Entries a leader lane retains for followers (a power of two).
    #[arg(long, default_value_t = 1 << 18)]
    pub log_capacity: usize,
    /// Bytes of values a leader lane retains (the log is full when either
    /// this or --log-capacity runs out).
    #[arg(long, default_value_t = 64 << 20)]
    pub log_bytes: usize,
    /// Entries a follower lane buffers ahead of its apply point (a power of two).
    #[arg(long, default_value_t = 1 << 13)]
    pub window: usize,
    /// Retransmission timeout in microseconds before a round trip is measured,
    /// and its ceiling (it adapts to the measured round trip).
    #[arg(long, default_value_t = 20_000)]
    pub retransmit_timeout_us: u64,
    /// Floor of the adaptive retransmission timeout, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub min_retransmit_timeout_us: u64,
    /// Datagrams each in-process lane endpoint queues before dropping.
    #[arg(long, default_value_t = 4096)]
    pub queue_depth: usize,
    /// Lose this fraction of received datagrams at random (fault injection, e.g. 0.01).
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    pub loss: f64,
    /// Seconds to wait at the end for every write to complete and replicas to converge.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub drain_timeout: f64,
    /// Cluster id carried in every datagram.
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u32,
}

impl BenchArgs {
    /// The kills and restarts asked for, in time order.
    pub fn fault_schedule(&self) -> Vec<Fault> {
        let every = std::time::Duration::from_secs_f64(self.failover_every);
        let mut f: Vec<Fault> = self.kill.iter().chain(&self.restart).copied().collect();
        f.extend(rzab_node::faults::repeated_failovers(
            every,
            every,
            self.failovers,
        ));
        f.sort_by_key(|f| f.at);
        f
    }

    pub fn config(&self) -> RunConfig {
        let mut c = RunConfig {
            cluster_id: self.cluster_id,
            nodes: self.nodes,
            lanes: self.lanes,
            duration_s: self.duration,
            interval_s: self.interval,
            drain_timeout_s: self.drain_timeout,
            poll: self.poll,
            queue_depth: self.queue_depth,
            loss: self.loss,
            ..RunConfig::default()
        };
        let p = &mut c.proto;
        p.mtu = self.mtu;
        p.broadcast = self.broadcast;
        p.prepare_credits = self.prepare_credits;
        p.commit_credits = self.commit_credits;
        p.write_credits = self.write_credits;
        p.heartbeat_ms = self.heartbeat_ms;
        p.election_timeout_ms = self.election_timeout_ms;
        p.prepare_batch_max = self.prepare_batch_max;
        p.write_batch_max = self.write_batch_max;
        p.log_capacity = self.log_capacity;
        p.log_bytes = self.log_bytes;
        p.window = self.window;
        p.retransmit_timeout_us = self.retransmit_timeout_us;
        p.min_retransmit_timeout_us = self.min_retransmit_timeout_us;
        let w = &mut c.workload;
        w.sessions = self.sessions;
        w.write_ratio = self.write_ratio;
        w.keys = self.keys;
        w.value_size = self.value_size;
        w.distribution = self.distribution;
        w.seed = self.seed;
        w.trace_file = self.trace.clone();
        w.trace_len = self.trace_len;
        w.issue_batch = self.issue_batch;
        w.verify = self.verify;
        w.ops_per_lane = self.ops;
        c
    }
}

/// Prints a usage error as one line and exits 2 (help and version print as usual).
pub fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // Some messages list what they mean on indented lines below
            // (e.g. the missing arguments): fold those into the one line.
            let listed: Vec<&str> = lines.take_while(|l| l.starts_with(' ')).map(str::trim).collect();
            let first = if listed.is_empty() {
                first.to_string()
            } else {
                format!("{} {}", first, listed.join(", "))
            };
            eprintln!("rzab: error: {first} (see rzab --help)");
            ExitCode::from(2)
        }
    }
}

/// Writes `value` as pretty JSON to `path`; on failure says so in one line.
pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), ExitCode> {
    let written = serde_json::to_string_pretty(value)
        .map_err(|e| e.to_string())
        .and_then(|s| std::fs::write(path, s + "\n").map_err(|e| e.to_string()));
    written.map_err(|e| {
        eprintln!("rzab: error: cannot write {}: {e}", path.display());
        ExitCode::FAILURE
    })
}

/// Bad input: one line, exit code 2.
pub fn fail_config(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("rzab: error: {msg}");
    ExitCode::from(2)
}

/// Loads a cluster file; a bad one is bad input.
pub fn load_cluster(path: &std::path::Path) -> Result<rzab_node::cluster::ClusterFile, ExitCode> {
    rzab_node::cluster::ClusterFile::load(path)
        .map_err(|e| fail_config(format_args!("invalid cluster file, {}: {}", e.field, e.reason)))
}

/// A flag that SIGINT or SIGTERM sets (for commands that run until told).
pub fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, ExitCode> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("rzab: error: cannot handle signal {sig}: {e}");
            return Err(ExitCode::FAILURE);
        }
    }
    Ok(stop)
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let cfg = args.config();
    if let Err(e) = cfg.validate() {
        return fail_config(format_args!("invalid --{}: {}", e.field, e.reason));
    }
    if args.netns && args.transport != TransportKind::Udp {
        return fail_config("--netns needs --transport udp");
    }
    let schedule = args.fault_schedule();
    if !schedule.is_empty() && args.transport != TransportKind::Udp {
        return fail_config(
            "--kill, --restart and --failovers need --transport udp (node processes to kill)",
        );
    }
    if let Some(late) = schedule.iter().find(|f| f.at.as_secs_f64() >= args.duration) {
        return fail_config(format_args!(
            "'{late}' is not within the run (--duration {} s)",
            args.duration
        ));
    }
    let mut stdout = std::io::stdout();
    let run = match args.transport {
        TransportKind::Inproc => rzab_node::run_inproc(&cfg, &mut stdout),
        TransportKind::Udp => {
            let exe = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => return fail_config(format_args!("cannot find the rzab binary: {e}")),
            };
            let opts = rzab_node::supervise::UdpBench {
                exe,
                port: args.port,
                netns: args.netns,
                stagger: std::time::Duration::from_millis(args.stagger_ms),
                faults: args.fault_schedule(),
            };
            rzab_node::supervise::run_udp(&cfg, &opts, &mut stdout)
        }
    };
    let report = match run {
        Ok(r) => r,
        Err(rzab_node::RunError::Config(e)) => {
            return fail_config(format_args!("invalid --{}: {}", e.field, e.reason));
        }
        Err(e) => return fail_config(e),
    };
    print!("{}", report.summary());
    if let Some(Err(code)) = args.json.as_ref().map(|p| write_json(p, &report)) {
        return code;
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
