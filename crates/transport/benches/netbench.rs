//! `cargo bench -p rzab-transport --bench netbench`: the loopback UDP
//! ceiling table (about 32 s with the defaults). `RZAB_NETBENCH_SECS` sets
//! the seconds per case.

use rzab_transport::netbench::{NetBenchConfig, format_table, run};
use std::time::Duration;

fn main() {
    let mut cfg = NetBenchConfig::default();
    if let Some(secs) = std::env::var("RZAB_NETBENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        cfg.duration = Duration::from_secs_f64(secs.clamp(0.01, 60.0));
    }
    match run(&cfg) {
        Ok(report) => print!("{}", format_table(&report)),
        Err(e) => {
            eprintln!("netbench: {e}");
            std::process::exit(1);
        }
    }
}
