//! Standalone load generator: the same flags as `rzab loadgen`.
//!
//! ```sh
//! cargo run --release -p rzab-loadgen --features compare --example loadgen -- \
//!     --backend etcd --servers 127.0.0.1:2379 --duration 5
//! ```

use clap::Parser;
use rzab_loadgen::LoadArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "loadgen", about = "Closed-loop key-value load generator")]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> ExitCode {
    rzab_loadgen::main(&Cli::parse().load, "loadgen: ")
}
