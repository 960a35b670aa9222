//! `rzab loadgen`: the load generator (crates/loadgen) from the command line.

use std::process::ExitCode;

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
