//! `rzab node` and `rzab bench-net`.

use crate::cli::write_json;
use clap::Args;
use rzab_node::process::run_node;
use rzab_node::report::{Percentiles, Rates};
use rzab_transport::netbench::{self, NetBenchConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The cluster file (TOML) shared by every node.
    #[arg(long)]
    pub config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    pub id: u8,
    /// Write this node's report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Report JSON lines on stdout and take drain/stop on stdin (used by `bench --transport udp`).
    #[arg(long, hide = true)]
    pub supervised: bool,
    /// RDMA device for this node, as ibv_devinfo names it (overrides the file).
    #[arg(long, value_name = "NAME")]
    pub rdma_device: Option<String>,
    /// RDMA device port, from 1 (overrides the file).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u8).range(1..))]
    pub rdma_port: Option<u8>,
    /// RDMA GID index (overrides the file; default: the GID of the node's address).
    #[arg(long, value_name = "INDEX")]
    pub rdma_gid_index: Option<u8>,
}

pub fn node(args: NodeArgs) -> ExitCode {
    let mut file = match crate::cli::load_cluster(&args.config) {
        Ok(f) => f,
        Err(code) => return code,
    };
    // This process's own settings: not part of the file's digest.
    file.local.rdma_device = args.rdma_device;
    file.local.rdma_port = args.rdma_port;
    file.local.rdma_gid_index = args.rdma_gid_index;
    let mut stdout = std::io::stdout();
    let outcome = match run_node(&file, args.id, args.supervised, &mut stdout) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rzab: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.supervised {
        let rates = Rates::of(&outcome.running.runtime, outcome.running_s);
        println!("node {}: {}", outcome.id, rzab_node::report::rate_line(&rates));
        let w = Percentiles::of(&outcome.write_latency_ns.histogram());
        println!(
            "write latency us  p50 {:.1}  p99 {:.1}  ({} writes)",
            w.p50, w.p99, w.count
        );
        println!(
            "digest {:016x}  applied {} writes, history {:016x}",
            outcome.digest, outcome.applied, outcome.chain
        );
        for e in &outcome.errors {
            println!("PROBLEM {e}");
        }
    }
    if let Some(Err(code)) = args.json.as_ref().map(|p| write_json(p, &outcome)) {
        return code;
    }
    if outcome.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_size(p: &str) -> Result<usize, String> {
    match p.trim().parse::<usize>() {
        Ok(n) if (1..=65_507).contains(&n) => Ok(n),
        _ => Err(format!("'{p}' is not a datagram size in 1..=65507")),
    }
}

#[derive(Args, Debug)]
pub struct BenchNetArgs {
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,300,1472,4096", value_parser = parse_size)]
    pub sizes: Vec<usize>,
    /// Seconds per case.
    #[arg(long, default_value = "2", value_parser = crate::cli::parse_seconds)]
    pub seconds: f64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn bench_net(args: BenchNetArgs) -> ExitCode {
    let cfg = NetBenchConfig {
        sizes: args.sizes,
        duration: Duration::from_secs_f64(args.seconds),
        ..NetBenchConfig::default()
    };
    match netbench::run(&cfg) {
        Ok(r) => {
            print!("{}", netbench::format_table(&r));
            if let Some(Err(code)) = args.json.as_ref().map(|p| write_json(p, &r)) {
                return code;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rzab: error: bench-net: {e}");
            ExitCode::FAILURE
        }
    }
}
