//! `bench` on an in-process cluster: every node and lane as threads of this
//! process over the in-process transport.

use crate::config::RunConfig;
use crate::report::{Report, assemble};
use crate::runner::{Local, RunError, drain, run_intervals};
use rzab_transport::inproc::{Fabric, FabricConfig};
use rzab_transport::lossy::Lossy;
use std::io::Write;

/// The in-process network of `cfg`'s nodes: their lanes, and one more
/// lane each for the control plane.
fn fabric(cfg: &RunConfig) -> std::sync::Arc<Fabric> {
    Fabric::new(FabricConfig {
        members: cfg.members(),
        lanes: cfg.lanes as usize + 1,
        mtu: cfg.proto.mtu,
        queue_depth: cfg.queue_depth,
    })
}

/// Starts every node of `cfg` in this process over the in-process
/// transport, losing `cfg.loss` of the lanes' datagrams (seeded from the
/// workload seed and `salt`).
pub(crate) fn start_inproc(cfg: &RunConfig, salt: u64) -> Result<Local, RunError> {
    let fabric = fabric(cfg);
    let ids: Vec<u8> = (0..cfg.nodes).collect();
    let lanes = cfg.lanes as usize;
    Local::start(
        cfg,
        &ids,
        None,
        |n, l| {
            let seed = crate::workload::lane_seed(cfg.workload.seed ^ salt, n, l);
            Ok(Lossy::new(fabric.endpoint(n, l as usize), cfg.loss, seed))
        },
        |n| Ok(fabric.endpoint(n, lanes)),
    )
}

/// Runs the whole cluster in this process and reports.
pub fn run_inproc(cfg: &RunConfig, out: &mut dyn Write) -> Result<Report, RunError> {
    cfg.validate()?;
    let mut local = start_inproc(cfg, 0x10_55)?;
    let _ = writeln!(
        out,
        "rzab bench: {} nodes x {} lanes, {} keys, in-process transport",
        cfg.nodes, cfg.lanes, cfg.workload.keys
    );
    let (intervals, elapsed) = run_intervals(cfg, &mut local.monitor, out);
    // Rates are over the running phase only, not the drain.
    let running = local.node_snapshots();
    let drained = drain(cfg, Some(&local.control), &local.monitor);
    let outcomes = local.finish(running, elapsed);
    Ok(assemble(
        cfg,
        "in-process",
        &outcomes,
        intervals,
        elapsed,
        drained,
    ))
}
