//! `rzab loadgen` and `rzab null-server`: the load generator
//! (crates/loadgen) and its ceiling server from the command line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn run(args: rzab_loadgen::LoadArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("rzab: error: {e}");
        return ExitCode::from(2);
    }
    match rzab_loadgen::run(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rzab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct NullServerArgs {
    /// Address to listen on (IP:PORT).
    #[arg(long)]
    pub listen: SocketAddr,
}

/// Serves until SIGINT or SIGTERM.
pub fn null_server(args: NullServerArgs) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("rzab: error: cannot handle signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let ready = |a: SocketAddr| println!("null server listening on {a}");
    match rzab_loadgen::null_server::serve(args.listen, stop, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rzab: error: null server on {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}
