use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[doc = $d:literal])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        pub struct $name { $($(#[doc = $d])* pub $f: u64),* }

        impl $name {
            /// Field names in declaration order (for tables and JSON).
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

            pub fn add(&mut self, o: &$name) {
                $(self.$f += o.$f;)*
            }

            /// `self - earlier`, field by field (for per-interval rates).
            pub fn since(&self, earlier: &$name) -> $name {
                $name { $($f: self.$f.saturating_sub(earlier.$f)),* }
            }

            pub fn values(&self) -> [u64; Self::FIELDS.len()] {
                [$(self.$f),*]
            }
        }
    };
}

counters! {
    /// What one lane did, counted by its state machine. Plain integers owned
    /// by the lane; the runtime publishes copies for the stats thread.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct LaneStats {
        /// Write messages sent by a follower lane, and the writes in them.
        write_msgs_sent, writes_sent,
        /// Write messages and writes a leader lane received.
        write_msgs_recv, writes_recv,
        /// Prepare messages sent (one per broadcast or unicast datagram) and entries in them.
        prepare_msgs_sent, prepares_sent,
        /// Prepare messages and entries a follower lane received.
        prepare_msgs_recv, prepares_recv,
        /// Acks sent by a follower, and the lids they newly acknowledged.
        acks_sent, acked_lids_sent,
        /// Acks a leader received, and the lids they newly acknowledged.
        acks_recv, acked_lids_recv,
        /// Commit messages sent, and the lids they newly committed.
        commit_msgs_sent, commits_sent,
        /// Commit messages a follower received, and the lids they newly committed.
        commit_msgs_recv, commits_recv,
        /// Writes given an id (leader), committed and applied (any role).
        sequenced, committed, applied,
        /// Turns a lane had something to send but no credit for it.
        prepare_credit_stalls, commit_credit_stalls, write_credit_stalls,
        /// Retransmission timeouts, missing-range reports, entries sent to a
        /// follower behind the broadcast point, and writes sent again.
        retransmit_timeouts, nacks_sent, nacks_recv, catch_up_sent, writes_resent,
        /// Window probes sent to followers whose window looked closed for a timeout.
        window_probes,
        /// Duplicates ignored: prepare entries already held, writes already sequenced.
        duplicate_prepares, duplicate_writes,
        /// Binds whose fence named a binding the order had not reached
        /// (stale or forged), or one of another client session: sequenced
        /// without it.
        stale_fences,
        /// Entries dropped: beyond a follower's window, or no room in the leader's log.
        dropped_window, dropped_log_full,
        /// Datagrams refused: other cluster, stale or future epoch, unexpected sender, wrong lane, wrong role.
        rejected_cluster, rejected_epoch, rejected_sender, rejected_lane, rejected_kind,
        /// Entries refused for bad contents (unknown session, oversized value, ...).
        rejected_entries,
        /// Followers marked lagging because the leader could not retain their entries.
        lagging_marked,
        /// Nodes added to a running lane to catch up.
        learners_added,
        /// Entries already applied (below a snapshot) that a catching-up lane skipped.
        skipped_applied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_since() {
        let mut a = LaneStats {
            acks_sent: 3,
            ..Default::default()
        };
        a.add(&LaneStats {
            acks_sent: 2,
            applied: 1,
            ..Default::default()
        });
        assert_eq!((a.acks_sent, a.applied), (5, 1));
        assert_eq!(
            a.since(&LaneStats {
                acks_sent: 4,
                ..Default::default()
            })
            .acks_sent,
            1
        );
        assert_eq!(LaneStats::FIELDS.len(), a.values().len());
    }
}
