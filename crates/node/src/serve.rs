//! Serving external clients: nodes that run no built-in workload, each with
//! a client gateway. `rzab serve` runs one node of a cluster file this way;
//! [`InprocCluster`] runs a whole cluster in this process (tests, examples).

use crate::config::RunConfig;
use crate::gateway::{Gateway, GatewayCounts};
use crate::report::NodeOutcome;
use crate::runner::{Local, RunError};
use std::net::SocketAddr;

/// Client slots per lane when the cluster file sets none.
pub const SERVE_SLOTS: u32 = 256;

/// The run config of a pure server: no workload sessions, one workload
/// key (the store must hold one), client slots on.
pub fn server_config(mut cfg: RunConfig) -> RunConfig {
    cfg.workload.sessions = 0;
    cfg.workload.keys = 1;
    cfg.workload.trace_len = 1;
    cfg.workload.write_ratio = 0.0;
    if cfg.clients.slots == 0 {
        cfg.clients.slots = SERVE_SLOTS;
    }
    // Serving runs until stopped; the duration only paces status lines.
    cfg.duration_s = f64::MAX / 4.0;
    // Woken protocol threads get the CPU before connection threads: a
    // write's path crosses several of them (about 3x lower write latency
    // under load on 2 cores). A lane that hosts the gateway goes back to
    // the default: ahead of everything, it starved the clients.
    if cfg.lane_nice == 0 {
        cfg.lane_nice = -10;
    }
    cfg
}

/// A whole cluster serving clients in this process.
pub struct InprocCluster {
    cfg: RunConfig,
    local: Option<Local>,
    /// By node id; `None` once stopped.
    gateways: Vec<Option<Gateway>>,
}

impl InprocCluster {
    /// Starts `cfg.nodes` nodes over the in-process transport (losing
    /// `cfg.loss` of the lanes' datagrams), with a gateway per node on
    /// `127.0.0.1` (ports chosen by the system).
    pub fn start(cfg: &RunConfig) -> Result<InprocCluster, RunError> {
        let cfg = server_config(cfg.clone());
        cfg.validate()?;
        // `loss` drops lane datagrams on purpose (tests of repair).
        let local = crate::bench::start_inproc(&cfg, 0xc11e)?;
        let gateways = local
            .nodes
            .iter()
            .map(|n| Gateway::start(n.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), &cfg.clients).map(Some))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| RunError::Setup(format!("client gateway: {e}")))?;
        Ok(InprocCluster {
            cfg,
            local: Some(local),
            gateways,
        })
    }

    /// Each node's client address, by node id.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let closed = SocketAddr::from(([127, 0, 0, 1], 0));
        self.gateways
            .iter()
            .map(|g| g.as_ref().map_or(closed, Gateway::local_addr))
            .collect()
    }

    /// Each node's gateway counters.
    pub fn counts(&self) -> Vec<GatewayCounts> {
        self.gateways
            .iter()
            .map(|g| g.as_ref().map(|g| g.stats.read()).unwrap_or_default())
            .collect()
    }

    /// The running nodes (for checks on their stores).
    pub fn local(&self) -> Option<&Local> {
        self.local.as_ref()
    }

    /// Stops node `id`'s gateway: its clients must move to another replica.
    pub fn stop_gateway(&mut self, id: usize) -> Option<GatewayCounts> {
        let g = self.gateways.get_mut(id)?.take()?;
        let counts = g.stats.read();
        g.stop();
        Some(counts)
    }

    /// Stops the gateways, lets every replica apply what was committed
    /// (within the drain timeout), stops the nodes; returns each node's
    /// outcome (digests to compare; a failed drain is in the errors).
    pub fn stop(mut self) -> Vec<NodeOutcome> {
        self.gateways.clear();
        let Some(local) = self.local.take() else {
            return Vec::new();
        };
        let running = local.node_snapshots();
        let secs = local.elapsed();
        let drained = crate::runner::drain(&self.cfg, Some(&local.control), &local.monitor);
        let mut outcomes = local.finish(running, secs);
        if let (Err(why), Some(o)) = (drained, outcomes.first_mut()) {
            o.errors.push(format!("drain: {why}"));
        }
        outcomes
    }
}

impl Drop for InprocCluster {
    fn drop(&mut self) {
        // Gateways stop when dropped; the nodes are stopped here.
        self.gateways.clear();
        if let Some(local) = self.local.take() {
            let running = local.node_snapshots();
            let secs = local.elapsed();
            let _ = local.finish(running, secs);
        }
    }
}
