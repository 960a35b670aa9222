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
    let cli = Cli::parse();
    // Bad values exit 2 like clap's own usage errors; a failed run exits 1.
    if let Err(e) = cli.load.validate() {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    match rzab_loadgen::run(&cli.load) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
