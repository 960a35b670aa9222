//! `rzab sim`: deterministic simulation of a whole rzab cluster, in the style
//! of FoundationDB's simulator and TigerBeetle's VOPR.
//!
//! All nodes and lanes run in one thread in virtual time, driven by the real
//! protocol state machines (`rzab-proto`) through a simulated network that
//! drops, duplicates, reorders, delays and partitions datagrams. One seeded
//! RNG decides everything, so a seed replays exactly. After each run the
//! checkers ([`checker`]) verify agreement, validity, completion, the
//! session guarantees of reads, and liveness once faults stop.

pub mod checker;
pub mod config;
pub mod history;
pub mod host;
pub mod network;
pub mod shape;
pub mod sweep;
pub mod world;

pub use config::{Faults, SimConfig};
pub use world::{Outcome, World};

/// Runs one seed.
pub fn run(cfg: &SimConfig, seed: u64) -> Outcome {
    World::new(cfg, seed).run(seed)
}
