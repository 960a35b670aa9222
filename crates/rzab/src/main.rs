//! `rzab`: run a replicated cluster under load and report what it achieves.

mod cli;
mod client;
mod loadgen;
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
        cli::Command::Serve(s) => client::serve(s),
        cli::Command::Get(a) => client::run(client::Verb::Get, a),
        cli::Command::Put(a) => client::run(client::Verb::Put, a),
        cli::Command::Delete(a) => client::run(client::Verb::Delete, a),
        cli::Command::Loadgen(a) => loadgen::run(a),
        cli::Command::NullServer(a) => loadgen::null_server(a),
    }
}
