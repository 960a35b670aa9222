//! The checks every datagram passes before a lane looks inside it.

use crate::{LaneConfig, LaneStats};
use rzab_wire::{Header, Kind};

/// Whether a lane accepts `h`; refusals are counted by reason.
///
/// `from_leader` selects the role: a follower lane accepts only Prepare and
/// Commit from the leader; the leader lane only Write and Ack from members.
pub(crate) fn accept(cfg: &LaneConfig, h: &Header, stats: &mut LaneStats) -> bool {
    let (sender_ok, kind_ok) = if cfg.is_leader() {
        (
            h.sender != cfg.node && cfg.members.contains(h.sender),
            matches!(h.kind, Kind::Write | Kind::Ack),
        )
    } else {
        (
            h.sender == cfg.leader,
            matches!(h.kind, Kind::Prepare | Kind::Commit),
        )
    };
    let counter = if h.cluster_id != cfg.cluster_id {
        &mut stats.rejected_cluster
    } else if !sender_ok {
        &mut stats.rejected_sender
    } else if h.epoch != cfg.epoch {
        &mut stats.rejected_epoch
    } else if h.lane != cfg.lane {
        &mut stats.rejected_lane
    } else if !kind_ok {
        &mut stats.rejected_kind
    } else {
        return true;
    };
    *counter += 1;
    false
}
