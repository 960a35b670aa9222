//! rzab's runtime: lane threads around the sans-IO protocol core, the shared
//! store and apply gate of each node, closed-loop sessions driven by a
//! workload, stats, and the orchestration of a whole cluster run.

pub mod bench;
pub mod client_slots;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod faults;
pub mod gateway;
pub mod handshake;
pub mod host;
pub mod lane;
pub mod monitor;
pub mod netns;
pub mod node;
pub mod process;
pub mod report;
pub mod runner;
pub mod serve;
pub mod session;
pub mod stats;
pub mod supervise;
pub mod value;
pub mod workload;

pub use bench::run_inproc;
pub use config::{Distribution, PollMode, ProtoConfig, RunConfig, WorkloadConfig};
pub use report::Report;
pub use runner::RunError;
