//! A lane's protocol state machine, whichever role its node plays.

use crate::{EntryRef, FollowerLane, LaneStats, LeaderLane, QueueError, SubmitError, Time, Transmit};
use rzab_wire::{Message, WriteEntry};

pub enum Role {
    Leader(LeaderLane),
    Follower(FollowerLane),
}

/// Outcome of handing a session's write to the lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    Accepted,
    /// No room now; try again next turn.
    Retry,
    /// The leader has this session past the write: a later generation of
    /// the session, or a fence, stranded it. It will never be sequenced.
    Stale,
    /// The write can never be accepted (a bug in the caller).
    Refused(String),
}

impl Role {
    /// The role a lane takes when its node starts the lanes of `start`:
    /// the leader's (counting `start.voters`, refusing writes `sessions`
    /// says were applied), or a follower's from its first lid.
    pub fn starting(
        cfg: crate::LaneConfig,
        start: &crate::LaneStart,
        sessions: impl Iterator<Item = (rzab_wire::NodeId, u32, u64, u64)>,
    ) -> Result<Role, crate::ConfigError> {
        if start.leader == cfg.node {
            let mut l = LeaderLane::new(cfg)?;
            l.set_voters(start.voters);
            l.load_sessions(sessions);
            return Ok(Role::Leader(l));
        }
        let lane = cfg.lane as usize;
        let from = start
            .lids
            .as_ref()
            .and_then(|v| v.get(lane))
            .copied()
            .unwrap_or(0);
        let mut f = FollowerLane::new_at(cfg, from)?;
        // A learner's holding counts for nothing until it is promoted.
        f.commit_on_receipt(start.serving);
        Ok(Role::Follower(f))
    }

    pub fn handle(&mut self, now: Time, m: &Message<'_>) {
        match self {
            Role::Leader(l) => l.handle(now, m),
            Role::Follower(f) => f.handle(now, m),
        }
    }

    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        match self {
            Role::Leader(l) => l.poll_transmit(now, buf),
            Role::Follower(f) => f.poll_transmit(now, buf),
        }
    }

    pub fn next_apply(&self) -> Option<EntryRef<'_>> {
        match self {
            Role::Leader(l) => l.next_apply(),
            Role::Follower(f) => f.next_apply(),
        }
    }

    pub fn advance_apply(&mut self) {
        match self {
            Role::Leader(l) => l.advance_apply(),
            Role::Follower(f) => f.advance_apply(),
        }
    }

    /// Skips the next entry: the store already has it (a joining node's
    /// snapshot covered it). Leaders never hold such entries.
    pub fn skip_applied(&mut self) {
        if let Role::Follower(f) = self {
            f.skip_applied();
        }
    }

    /// Entries held but not applied, in id order.
    pub fn held(&self) -> Vec<crate::OwnedEntry> {
        match self {
            Role::Leader(l) => l.held(),
            Role::Follower(f) => f.held(),
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        match self {
            Role::Leader(l) => l.handle_timeout(now),
            Role::Follower(f) => f.handle_timeout(now),
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self {
            Role::Leader(l) => l.poll_timeout(),
            Role::Follower(f) => f.poll_timeout(),
        }
    }

    pub fn stats(&self) -> &LaneStats {
        match self {
            Role::Leader(l) => l.stats(),
            Role::Follower(f) => f.stats(),
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader(_))
    }

    /// Entries applied, committed, and appended (leader) or received (follower).
    pub fn lids(&self) -> (u64, u64, u64) {
        match self {
            Role::Leader(l) => (l.apply_lid(), l.commit_lid(), l.end_lid()),
            Role::Follower(f) => (f.apply_lid(), f.commit_lid(), f.received_lid()),
        }
    }

    /// Writes a follower lane holds for the leader (0 for a leader).
    pub fn pending_writes(&self) -> usize {
        match self {
            Role::Leader(_) => 0,
            Role::Follower(f) => f.pending_writes(),
        }
    }

    pub fn submit(&mut self, w: &WriteEntry<'_>) -> Submitted {
        match self {
            Role::Leader(l) => match l.submit(w) {
                Ok(()) => Submitted::Accepted,
                Err(SubmitError::Full) => Submitted::Retry,
                Err(SubmitError::Duplicate) => Submitted::Stale,
                Err(e) => Submitted::Refused(e.to_string()),
            },
            Role::Follower(f) => match f.submit(w) {
                Ok(()) => Submitted::Accepted,
                Err(QueueError::Full) => Submitted::Retry,
                Err(e) => Submitted::Refused(e.to_string()),
            },
        }
    }
}
