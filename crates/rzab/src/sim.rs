//! `rzab sim`: one seed replayed exactly, or a sweep of seeds.

use clap::Args;
use rzab_proto::{BroadcastMode, PlantedBug, Span};
use rzab_sim::sweep::sweep;
use rzab_sim::{Faults, Outcome, SimConfig};
use std::ops::Range;
use std::process::ExitCode;

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or(format!("'{s}' is not a range like 0..1000"))?;
    let a: u64 = a.parse().map_err(|_| format!("'{a}' is not a seed"))?;
    let b: u64 = b.parse().map_err(|_| format!("'{b}' is not a seed"))?;
    if a < b {
        Ok(a..b)
    } else {
        Err(format!("{s} is empty"))
    }
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Run this one seed and print what happened (replays exactly).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep these seeds, e.g. 0..1000, printing each violation with its seed.
    #[arg(long, value_parser = parse_seeds)]
    pub seeds: Option<Range<u64>>,
    /// Faults while they are on: none, or e.g. drop=0.05,dup=0.01,reorder=0.1,partition,crash,move
    /// [,delay=20,jitter=10] (crash: nodes crash and restart empty; move: sessions move between nodes,
    /// fencing their old binding).
    #[arg(long, default_value = "none", value_parser = |s: &str| s.parse::<Faults>())]
    pub faults: Faults,
    /// Milliseconds of virtual time during which faults are on.
    #[arg(long, default_value_t = 200)]
    pub fault_ms: u64,
    /// Milliseconds after faults stop within which every write must complete.
    #[arg(long, default_value_t = 2000)]
    pub liveness_ms: u64,
    /// Nodes (default: drawn from each seed, 2 to 5).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub nodes: Option<u8>,
    /// Lanes per node (default: drawn from each seed, 1 to 3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub lanes: Option<u8>,
    /// Sessions per lane (default: drawn from each seed, 1 to 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub sessions: Option<u32>,
    /// Fraction of operations that are writes (default: drawn from each seed).
    #[arg(long, value_parser = crate::cli::parse_fraction)]
    pub write_ratio: Option<f64>,
    /// multicast or unicast (default: drawn from each seed).
    #[arg(long, value_parser = crate::cli::parse_broadcast)]
    pub broadcast: Option<BroadcastMode>,
    /// Keys the sessions touch.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub keys: u64,
    /// Operations per session.
    #[arg(long, default_value_t = 60)]
    pub ops: u32,
    /// Plant a deliberate bug to see the checkers catch it.
    #[arg(long, default_value = "none")]
    pub plant: PlantedBug,
    /// Threads for a sweep (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            nodes: self.nodes,
            lanes: self.lanes,
            sessions: self.sessions,
            write_ratio: self.write_ratio,
            broadcast: self.broadcast,
            keys: self.keys,
            ops_per_session: self.ops,
            faults: self.faults.clone(),
            fault_span: Span::from_millis(self.fault_ms),
            liveness_bound: Span::from_millis(self.liveness_ms),
            bug: self.plant,
            ..SimConfig::default()
        }
    }
}

fn describe(o: &Outcome) -> String {
    format!(
        "seed {}: {}\n  {} events, {:.1} ms virtual, {} writes ({} completed), {} reads; network: {} sent, {} dropped, \
         {} cut, {} duplicated, {} reordered, {} partitions; {} crashes, {} leader changes; lagging {}; \
         {} binds, {} fences, {} writes refused by a fence; digest {:016x}",
        o.seed,
        o.shape,
        o.events,
        o.end.0 as f64 / 1e6,
        o.writes,
        o.completed,
        o.reads,
        o.net.sent,
        o.net.dropped,
        o.net.cut,
        o.net.duplicated,
        o.net.reordered,
        o.net.partitions,
        o.crashes,
        o.failovers,
        o.lagging,
        o.binds,
        o.fences,
        o.failed,
        o.digest
    )
}

pub fn run(args: SimArgs) -> ExitCode {
    let cfg = args.config();
    if let Some(seed) = args.seed.or(if args.seeds.is_none() { Some(42) } else { None }) {
        let o = rzab_sim::run(&cfg, seed);
        println!("{}", describe(&o));
        for v in &o.violations {
            println!("  VIOLATION {v}");
        }
        println!("{}", if o.violations.is_empty() { "ok" } else { "FAILED" });
        return if o.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let seeds = args.seeds.clone().unwrap_or(0..1);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "rzab sim: seeds {}..{}, faults {}, planted bug {}, {jobs} threads",
        seeds.start,
        seeds.end,
        cfg.faults,
        cfg.bug.name()
    );
    let on_fail = |o: &Outcome| {
        for v in &o.violations {
            println!("seed {}: {v}", o.seed);
        }
    };
    let r = sweep(&cfg, seeds, jobs, &on_fail);
    println!(
        "{} seeds in {:.1} s ({:.1} seeds/s), {} events, {} writes, {} reads; injected {} losses, {} duplicates, \
         {} reorders, {} partitions, {} crashes; {} leader changes; {} binds, {} fences, {} writes refused by a fence",
        r.seeds,
        r.elapsed.as_secs_f64(),
        r.seeds_per_s(),
        r.events,
        r.writes,
        r.reads,
        r.dropped,
        r.duplicated,
        r.reordered,
        r.partitions,
        r.crashes,
        r.failovers,
        r.binds,
        r.fences,
        r.refused_by_fence
    );
    let failed: Vec<String> = r.failed.iter().map(|o| o.seed.to_string()).collect();
    if failed.is_empty() {
        println!("no violations");
        ExitCode::SUCCESS
    } else {
        println!("{} seeds violated a check: {}", failed.len(), failed.join(" "));
        println!(
            "replay one with: rzab sim --seed {} --faults {}",
            failed[0], cfg.faults
        );
        ExitCode::FAILURE
    }
}
