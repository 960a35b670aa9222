//! `rzab`: run a replicated cluster under load and report what it achieves.

mod cli;
mod node;
mod sim;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => return cli::usage_error(e),
    };
    match args.command {
        cli::Command::Bench(b) => cli::bench(b),
        cli::Command::Sim(s) => sim::run(s),
        cli::Command::Node(n) => node::node(n),
        cli::Command::BenchNet(b) => node::bench_net(b),
    }
}
