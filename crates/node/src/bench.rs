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
pub(crate) fn fabric(cfg: &RunConfig) -> std::sync::Arc<Fabric> {
    Fabric::new(FabricConfig {
        members: cfg.members(),
        lanes: cfg.lanes as usize + 1,
        mtu: cfg.proto.mtu,
        queue_depth: cfg.queue_depth,
    })
}

/// Runs the whole cluster in this process and reports.
pub fn run_inproc(cfg: &RunConfig, out: &mut dyn Write) -> Result<Report, RunError> {
    cfg.validate()?;
    let fabric = fabric(cfg);
    let ids: Vec<u8> = (0..cfg.nodes).collect();
    let lanes = cfg.lanes as usize;
    let mut local = Local::start(
        cfg,
        &ids,
        None,
        |n, l| {
            let seed = crate::workload::lane_seed(cfg.workload.seed ^ 0x10_55, n, l);
            Ok(Lossy::new(fabric.endpoint(n, l as usize), cfg.loss, seed))
        },
        |n| Ok(fabric.endpoint(n, lanes)),
    )?;
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
