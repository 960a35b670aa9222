use crate::{NodeSet, Span};
use rzab_wire::{HEADER_LEN, NodeId, PREPARE_BODY_LEN, PREPARE_ENTRY_FIXED, WRITE_ENTRY_FIXED};
use serde::{Deserialize, Serialize};

/// How a leader lane's Prepares and Commits reach its followers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastMode {
    /// One datagram to the lane's multicast group. Followers short of credit
    /// still receive it and repair any overrun by retransmission.
    #[default]
    Multicast,
    /// One datagram per follower that has credit (unicast fan-out).
    Unicast,
}

/// Deliberate bugs, planted only by tests and `rzab sim --plant` to prove the
/// simulator's checkers catch them. `None` everywhere else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlantedBug {
    #[default]
    None,
    /// The leader gives a retransmitted write a second id.
    SequenceDuplicates,
    /// The leader never goes back after a retransmission timeout.
    NoRetransmitTimeout,
    /// (Runtime) lanes apply committed writes without waiting for the gate.
    ApplyOutOfOrder,
    /// (Runtime) a session's write completes when committed, before it is
    /// applied at the session's node.
    CompleteBeforeApply,
    /// (Control) a new leader ignores the entries its voters hold.
    IgnoreHeldEntries,
    /// (Control) a node restarted without its state votes at once.
    AmnesiacVotes,
    /// (Control) a voter grants every candidate of an epoch.
    VoteTwice,
    /// The leader sequences a Bind's fence but keeps sequencing the fenced
    /// binding's writes.
    IgnoreFences,
    /// The leader honours a fence of another client session's binding.
    FenceAnyOwner,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 9] = [
        PlantedBug::SequenceDuplicates,
        PlantedBug::NoRetransmitTimeout,
        PlantedBug::ApplyOutOfOrder,
        PlantedBug::CompleteBeforeApply,
        PlantedBug::IgnoreHeldEntries,
        PlantedBug::AmnesiacVotes,
        PlantedBug::VoteTwice,
        PlantedBug::IgnoreFences,
        PlantedBug::FenceAnyOwner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::None => "none",
            PlantedBug::SequenceDuplicates => "sequence-duplicates",
            PlantedBug::NoRetransmitTimeout => "no-retransmit-timeout",
            PlantedBug::ApplyOutOfOrder => "apply-out-of-order",
            PlantedBug::CompleteBeforeApply => "complete-before-apply",
            PlantedBug::IgnoreHeldEntries => "ignore-held-entries",
            PlantedBug::AmnesiacVotes => "amnesiac-votes",
            PlantedBug::VoteTwice => "vote-twice",
            PlantedBug::IgnoreFences => "ignore-fences",
            PlantedBug::FenceAnyOwner => "fence-any-owner",
        }
    }
}

impl std::str::FromStr for PlantedBug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        std::iter::once(PlantedBug::None)
            .chain(PlantedBug::ALL)
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
                format!("'{s}' is not a planted bug ({})", names.join(", "))
            })
    }
}

/// Everything a lane's state machine needs to know, fixed at its start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneConfig {
    pub cluster_id: u32,
    /// This node.
    pub node: NodeId,
    /// Every voting member, this node and the leader included.
    pub members: NodeSet,
    pub leader: NodeId,
    pub epoch: u32,
    pub lane: u8,
    /// Largest datagram the transport carries.
    pub mtu: usize,
    /// Largest value a write may carry.
    pub value_max: usize,
    pub broadcast: BroadcastMode,
    /// Prepare messages in flight per follower (prototype: 6).
    pub prepare_credits: usize,
    /// Commit messages in flight per follower (prototype: 30).
    pub commit_credits: usize,
    /// Write messages in flight from a follower lane (prototype: 6).
    pub write_credits: usize,
    /// Most entries per Prepare; 0 fills up to the MTU.
    pub prepare_batch_max: usize,
    /// Most writes per Write; 0 fills up to the MTU.
    pub write_batch_max: usize,
    /// Entries the leader lane retains (power of two).
    pub log_capacity: usize,
    /// Bytes of values the leader lane retains (at least `value_max`): the
    /// log is full when either runs out.
    #[serde(default = "default_log_bytes")]
    pub log_bytes: usize,
    /// Entries a follower lane buffers ahead of its apply point (power of two).
    pub window: usize,
    /// Sessions per (node, lane); session ids on the wire are below this.
    pub max_sessions: u32,
    /// Writes a follower lane tracks until applied.
    pub max_pending_writes: usize,
    /// Retransmission timeout before any round trip is measured, and its
    /// ceiling; the timeout adapts to the measured round trip above...
    pub retransmit_timeout: Span,
    /// ...this floor.
    pub min_retransmit_timeout: Span,
    /// A deliberate bug (tests only).
    #[serde(skip)]
    pub planted_bug: PlantedBug,
}

/// A configuration that cannot work, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid lane configuration: {field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn default_log_bytes() -> usize {
    64 << 20
}

fn err(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl LaneConfig {
    /// A config with the prototype's defaults for a cluster of `members`.
    pub fn new(cluster_id: u32, node: NodeId, members: NodeSet, leader: NodeId, lane: u8) -> LaneConfig {
        LaneConfig {
            cluster_id,
            node,
            members,
            leader,
            epoch: 1,
            lane,
            mtu: 4096,
            value_max: 32,
            broadcast: BroadcastMode::Multicast,
            prepare_credits: 6,
            commit_credits: 30,
            write_credits: 6,
            prepare_batch_max: 0,
            write_batch_max: 0,
            log_capacity: 1 << 18,
            log_bytes: default_log_bytes(),
            window: 1 << 13,
            max_sessions: 1024,
            max_pending_writes: 1024,
            retransmit_timeout: Span::from_millis(20),
            min_retransmit_timeout: Span::from_millis(1),
            planted_bug: PlantedBug::None,
        }
    }

    pub fn followers(&self) -> NodeSet {
        self.members.without(self.leader)
    }

    pub fn is_leader(&self) -> bool {
        self.node == self.leader
    }

    /// Checks that the lane can run with this config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.contains(self.node) {
            return Err(err("node", format!("node {} is not a member", self.node)));
        }
        if !self.members.contains(self.leader) {
            return Err(err("leader", format!("leader {} is not a member", self.leader)));
        }
        if self.epoch == 0 {
            return Err(err("epoch", "epochs start at 1"));
        }
        if self.value_max > u16::MAX as usize {
            return Err(err(
                "value_max",
                format!("{} exceeds {}", self.value_max, u16::MAX),
            ));
        }
        let biggest = HEADER_LEN + PREPARE_BODY_LEN + PREPARE_ENTRY_FIXED + self.value_max;
        if self.mtu < biggest {
            return Err(err(
                "mtu",
                format!(
                    "{} bytes cannot carry one {}-byte value (need {biggest})",
                    self.mtu, self.value_max
                ),
            ));
        }
        for (field, v) in [
            ("prepare_credits", self.prepare_credits),
            ("commit_credits", self.commit_credits),
            ("write_credits", self.write_credits),
            ("max_pending_writes", self.max_pending_writes),
        ] {
            if v == 0 {
                return Err(err(field, "must be at least 1"));
            }
        }
        for (field, v) in [("log_capacity", self.log_capacity), ("window", self.window)] {
            if !v.is_power_of_two() || v < 16 {
                return Err(err(field, format!("{v} is not a power of two >= 16")));
            }
        }
        if self.log_bytes < self.value_max.max(1) {
            return Err(err(
                "log_bytes",
                format!("{} cannot hold one {}-byte value", self.log_bytes, self.value_max),
            ));
        }
        if self.max_sessions == 0 {
            return Err(err("max_sessions", "must be at least 1"));
        }
        if self.retransmit_timeout.0 == 0 {
            return Err(err("retransmit_timeout", "must be positive"));
        }
        Ok(())
    }

    /// The most Write entries of full size one datagram carries.
    pub fn writes_per_datagram(&self) -> usize {
        let fit = (self.mtu - HEADER_LEN) / (WRITE_ENTRY_FIXED + self.value_max);
        cap_batch(fit, self.write_batch_max)
    }

    /// The most Prepare entries of full size one datagram carries.
    pub fn prepares_per_datagram(&self) -> usize {
        let fit = (self.mtu - HEADER_LEN - PREPARE_BODY_LEN) / (PREPARE_ENTRY_FIXED + self.value_max);
        cap_batch(fit, self.prepare_batch_max)
    }
}

fn cap_batch(fit: usize, max: usize) -> usize {
    let fit = fit.min(u16::MAX as usize);
    if max == 0 { fit } else { fit.min(max) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        let c = LaneConfig::new(1, 0, NodeSet::from_ids([0, 1, 2]), 0, 0);
        c.validate().unwrap();
        assert_eq!(c.prepares_per_datagram(), (4096 - 40) / 64);
        let mut bad = c.clone();
        bad.mtu = 64;
        assert_eq!(bad.validate().unwrap_err().field, "mtu");
        let mut bad = c.clone();
        bad.window = 100;
        assert_eq!(bad.validate().unwrap_err().field, "window");
        let mut bad = c;
        bad.leader = 9;
        assert_eq!(bad.validate().unwrap_err().field, "leader");
    }
}
