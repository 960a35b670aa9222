//! `rzab loadgen` and `rzab null-server`: the load generator
//! (crates/loadgen) and its ceiling server from the command line.

use std::net::SocketAddr;
use std::process::ExitCode;

pub fn run(args: rzab_loadgen::LoadArgs) -> ExitCode {
    rzab_loadgen::main(&args, "rzab: error: ")
}

#[derive(clap::Args, Debug)]
pub struct NullServerArgs {
    /// Address to listen on (IP:PORT).
    #[arg(long)]
    pub listen: SocketAddr,
}

/// Serves until SIGINT or SIGTERM.
pub fn null_server(args: NullServerArgs) -> ExitCode {
    let stop = match crate::cli::stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let ready = |a: SocketAddr| println!("null server listening on {a}");
    match rzab_loadgen::null_server::serve(args.listen, stop, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rzab: error: null server on {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}
