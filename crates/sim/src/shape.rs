//! The cluster and protocol settings of one run: fixed by the config, or
//! drawn from the seed so a sweep covers many shapes (and a seed replays its own).

use crate::config::SimConfig;
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rzab_proto::{BroadcastMode, ControlConfig, LaneConfig, NodeId, NodeSet, Span};

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub nodes: u8,
    pub lanes: u8,
    pub sessions: u32,
    pub write_ratio: f64,
    pub broadcast: BroadcastMode,
    pub mtu: usize,
    pub prepare_credits: usize,
    pub commit_credits: usize,
    pub write_credits: usize,
    pub window: usize,
    pub retransmit_timeout: Span,
    /// Control plane timers: heartbeat period and election timeout. Short
    /// ones (a few network delays) make elections storm, as on a loaded
    /// machine.
    pub heartbeat: Span,
    pub election_timeout: Span,
}

/// The simulated cluster's id.
pub const CLUSTER_ID: u32 = 0x5114;

/// Values in the simulation are their 8-byte tag.
pub const VALUE_SIZE: usize = 8;

fn pick<T: Copy>(rng: &mut Xoshiro256PlusPlus, from: &[T]) -> T {
    from[rng.random_range(0..from.len())]
}

impl Shape {
    pub fn draw(cfg: &SimConfig, rng: &mut Xoshiro256PlusPlus) -> Shape {
        let nodes = pick(rng, &[2, 3, 3, 3, 4, 5]);
        let lanes = rng.random_range(1..=3);
        let sessions = rng.random_range(1..=4);
        let write_ratio = pick(rng, &[0.1, 0.5, 0.9, 1.0]);
        let broadcast = pick(rng, &[BroadcastMode::Multicast, BroadcastMode::Unicast]);
        let (heartbeat, election_timeout) = pick(
            rng,
            &[
                (Span::from_millis(2), Span::from_millis(10)),
                (Span::from_millis(2), Span::from_millis(10)),
                (Span::from_micros(100), Span::from_micros(300)),
                (Span::from_micros(300), Span::from_millis(1)),
            ],
        );
        Shape {
            nodes: cfg.nodes.unwrap_or(nodes),
            lanes: cfg.lanes.unwrap_or(lanes),
            sessions: cfg.sessions.unwrap_or(sessions),
            write_ratio: cfg.write_ratio.unwrap_or(write_ratio),
            broadcast: cfg.broadcast.unwrap_or(broadcast),
            mtu: pick(rng, &[128, 512, 1500, 4096]),
            prepare_credits: rng.random_range(1..=6),
            commit_credits: rng.random_range(1..=8),
            write_credits: rng.random_range(1..=6),
            window: pick(rng, &[16, 64, 1024]),
            retransmit_timeout: Span::from_micros(pick(rng, &[300, 1_000, 5_000])),
            heartbeat,
            election_timeout,
        }
    }

    pub fn members(&self) -> NodeSet {
        NodeSet::from_ids(0..self.nodes)
    }

    pub fn lane_config(
        &self,
        node: NodeId,
        lane: u8,
        cfg: &SimConfig,
        epoch: u32,
        leader: NodeId,
    ) -> LaneConfig {
        let mut c = LaneConfig::new(CLUSTER_ID, node, self.members(), leader, lane);
        c.epoch = epoch;
        c.mtu = self.mtu;
        // A Bind carries a fence.
        c.value_max = VALUE_SIZE.max(rzab_wire::BIND_FENCE_LEN);
        c.broadcast = self.broadcast;
        c.prepare_credits = self.prepare_credits;
        c.commit_credits = self.commit_credits;
        c.write_credits = self.write_credits;
        c.window = self.window;
        c.log_capacity = 1 << 14;
        c.max_sessions = self.sessions;
        c.max_pending_writes = self.sessions as usize;
        c.retransmit_timeout = self.retransmit_timeout;
        c.min_retransmit_timeout = Span::from_micros(100);
        c.planted_bug = cfg.bug;
        c
    }
}

impl Shape {
    /// The control plane's config: timers scaled to the simulated network.
    pub fn control_config(&self, node: NodeId, cfg: &SimConfig, seed: u64) -> ControlConfig {
        let mut c = ControlConfig::new(CLUSTER_ID, node, self.members());
        c.mtu = self.mtu.max(512);
        c.heartbeat = self.heartbeat;
        c.election_timeout = self.election_timeout;
        c.transfer_timeout = Span::from_millis(2);
        c.seed = seed;
        c.planted_bug = cfg.bug;
        c
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} nodes x {} lanes, {} sessions/lane, {:.0}% writes, {:?}, mtu {}, credits p{}/c{}/w{}, window {}, rto {}, \
             heartbeat {}, election timeout {}",
            self.nodes,
            self.lanes,
            self.sessions,
            self.write_ratio * 100.0,
            self.broadcast,
            self.mtu,
            self.prepare_credits,
            self.commit_credits,
            self.write_credits,
            self.window,
            self.retransmit_timeout,
            self.heartbeat,
            self.election_timeout
        )
    }
}
