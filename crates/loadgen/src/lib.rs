//! A closed-loop load generator: one workload definition ([`LoadArgs`]), run
//! against rzab or, for comparison, ZooKeeper and etcd (feature `compare`).
//!
//! A back-end is a [`KvBackend`] plus a connect function; [`run_backend`]
//! drives any of them and [`run`] picks one by `--backend`, then prints the
//! [`Report`] and writes its JSON.

mod args;
mod cpu;
pub mod null_server;
mod report;
mod runner;
mod rzab_backend;
mod workload;

#[cfg(feature = "compare")]
mod etcd;
#[cfg(feature = "compare")]
mod zookeeper;

pub use args::{Backend, LoadArgs};
pub use report::{LatencySummary, Report, WorkloadParams};
pub use runner::{CONNECTION_LOST, KvBackend, REQUEST_TIMEOUT, connection_lost, run_backend};
pub use workload::{Distribution, key_name, value_bytes};

use std::time::Duration;

/// Validates `args`, runs the chosen back-end on a runtime of `--threads`
/// workers, prints the report's table to stdout and writes `--json`.
pub fn run(args: &LoadArgs) -> Result<Report, String> {
    args.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the load generator's runtime: {e}"))?;
    let result = rt.block_on(run_selected(args));
    // Client libraries leave session tasks behind; don't wait long for them.
    rt.shutdown_timeout(Duration::from_secs(2));
    let report = result?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(report)
}

/// [`run`] for a command line: bad values exit 2 like usage errors, a
/// failed run exits 1; messages start with `prefix`.
pub fn main(args: &LoadArgs, prefix: &str) -> std::process::ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("{prefix}{e}");
        return std::process::ExitCode::from(2);
    }
    match run(args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prefix}{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_selected(args: &LoadArgs) -> Result<Report, String> {
    match args.backend {
        Backend::Rzab => {
            let token = args.token.as_deref();
            run_backend(args, |i| {
                rzab_backend::RzabBackend::connect(&args.servers, i, args.inflight, token)
            })
            .await
        }
        #[cfg(feature = "compare")]
        Backend::Zookeeper => {
            run_backend(args, |i| {
                zookeeper::ZkBackend::connect(args.server_for(i).to_string())
            })
            .await
        }
        #[cfg(feature = "compare")]
        Backend::Etcd => {
            run_backend(args, |i| {
                etcd::EtcdBackend::connect(args.server_for(i).to_string())
            })
            .await
        }
        #[cfg(not(feature = "compare"))]
        Backend::Zookeeper | Backend::Etcd => Err(format!(
            "the {} back-end is not built in: build with the `compare` feature \
             (cargo build --release -p rzab --features compare)",
            args.backend
        )),
    }
}
