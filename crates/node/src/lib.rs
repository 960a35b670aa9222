//! rzab's runtime: lane threads around the sans-IO protocol core, the shared
//! store and apply gate of each node, closed-loop sessions driven by a
//! workload, stats, and the orchestration of a whole cluster run.

pub mod bench;
pub mod config;
pub mod lane;
pub mod monitor;
pub mod node;
pub mod report;
pub mod session;
pub mod stats;
pub mod value;
pub mod workload;

pub use bench::{RunError, run_inproc};
pub use config::{Distribution, PollMode, ProtoConfig, RunConfig, WorkloadConfig};
pub use report::Report;
