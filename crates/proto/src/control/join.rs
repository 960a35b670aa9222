//! Nodes joining a running epoch: learners (restarted without state, or
//! having missed an election) catch up from a snapshot or the history they
//! missed, plus the lanes from a recorded point, and are promoted once
//! caught up.

use super::{
    Control, Host, JOIN_DIFF, JOIN_SNAPSHOT, Join, LaneStart, Pending, PendingMsg, State, purpose, stream,
};
use crate::transfer::{Payload, Received};
use crate::{NodeSet, OwnedEntry, Snapshot, Time};
use rzab_wire::{ControlBody, NodeId, Zxid};
use std::sync::Arc;

impl Control {
    /// Leaves whatever this node did to catch up with `leader` in `epoch`.
    pub(super) fn become_learner(&mut self, now: Time, host: &mut impl Host, leader: NodeId, epoch: u32) {
        // The tail stays until the join is installed: if this leader fails
        // first, an election may need it.
        self.stop_lanes(host);
        self.forget_transfers();
        self.accepted_epoch = self.accepted_epoch.max(epoch);
        self.state = State::Learner {
            leader: Some(leader),
            asked_at: None,
            base: None,
            epoch,
        };
        self.join_request = self.new_join_request();
        self.join_installed = false;
        self.last_leader_contact = now;
        self.learner_tick(now, host);
    }

    /// A fresh request id (never 0; its low 28 bits name the transfer).
    pub(super) fn new_join_request(&mut self) -> u32 {
        (self.random() as u32 & 0x0FFF_FFFF).max(1)
    }

    /// How long a learner waits for its leader before giving up on it.
    pub(super) fn learner_patience(&self) -> crate::Span {
        crate::Span(self.cfg.election_timeout.0 * 2)
    }

    /// (Learner) its leader went silent: a voter (one that only missed an
    /// election) starts one; a node without its state waits for whichever
    /// leader's heartbeat comes next.
    fn learner_lost_leader(&mut self, now: Time, host: &mut impl Host) {
        if self.voter {
            self.start_election(now, host);
        } else {
            self.stop_lanes(host);
            self.tail.clear();
            self.forget_transfers();
            self.state = State::Learner {
                leader: None,
                asked_at: None,
                base: None,
                epoch: 0,
            };
        }
    }

    /// Asks the leader to join (again, if the answer is overdue).
    pub(super) fn learner_tick(&mut self, now: Time, host: &mut impl Host) {
        if matches!(self.state, State::Learner { leader: Some(_), .. })
            && now >= self.last_leader_contact + self.learner_patience()
        {
            self.learner_lost_leader(now, host);
            return;
        }
        let State::Learner {
            leader: Some(leader),
            asked_at,
            base: None,
            epoch,
        } = self.state
        else {
            return;
        };
        if asked_at.is_some_and(|t| now < t + self.cfg.election_timeout) {
            return;
        }
        if let State::Learner { asked_at, .. } = &mut self.state {
            *asked_at = Some(now);
        }
        self.stats.joins_requested += 1;
        let body = ControlBody::Join {
            applied: host.applied(),
            amnesiac: self.current_epoch == 0,
            request: self.join_request,
        };
        self.send_to(leader, epoch, body);
    }

    /// (Leader) a node asks to join.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_join(
        &mut self,
        _now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        applied: Zxid,
        amnesiac: bool,
        request: u32,
    ) {
        let current = self.current_epoch;
        let State::Leading(l) = &mut self.state else {
            return;
        };
        if epoch != current {
            return;
        }
        if let Some(j) = l.joins.get(&from)
            && j.request == request
        {
            // Our JoinInfo was lost: send it again (the transfer is reliable).
            if let Some((base, _)) = j.target {
                let lids = j.lids.clone();
                self.outbox.push_back(Pending {
                    to: NodeSet::from_ids([from]),
                    epoch,
                    msg: PendingMsg::JoinInfo { request, base, lids },
                });
            }
            return;
        }
        // A new request (or a new life of the node): start over.
        let Some((lids, below, sequenced)) = host.add_learner(from, amnesiac) else {
            return;
        };
        let State::Leading(l) = &mut self.state else {
            return;
        };
        l.synced.remove(from);
        l.joins.insert(
            from,
            Join {
                lids,
                below,
                sequenced,
                applied,
                amnesiac,
                request,
                target: None,
                promoted: false,
            },
        );
        self.stats.joins_served += 1;
        self.serve_joins(host);
    }

    /// (Leader) sends joins their history once it covers their lids.
    pub(super) fn serve_joins(&mut self, host: &mut impl Host) {
        let epoch = self.current_epoch;
        let applied = host.applied();
        let State::Leading(l) = &self.state else { return };
        let ready: Vec<NodeId> = l
            .joins
            .iter()
            .filter(|(_, j)| j.target.is_none() && applied >= j.below)
            .map(|(&n, _)| n)
            .collect();
        for node in ready {
            let State::Leading(l) = &self.state else { return };
            let Some(j) = l.joins.get(&node) else { continue };
            let (lids, below, request) = (j.lids.clone(), j.below, j.request);
            let diff = if j.amnesiac {
                None
            } else {
                host.history_after(j.applied)
            };
            let (base, newest, payload, purpose) = match diff {
                Some(d) => (applied, applied, Payload::of_entries(d), JOIN_DIFF),
                None => {
                    // A large store takes a while: ask again at the next tick.
                    let Some(snap) = host.snapshot_async() else {
                        continue;
                    };
                    if snap.base < below {
                        // Taken before this join began: it misses writes.
                        continue;
                    }
                    // Taken while lanes apply, it may hold writes past its
                    // base: promote only once the node replayed past them.
                    let newest = snap.items.iter().map(|i| i.zxid).max().unwrap_or(Zxid::ZERO);
                    let payload = Payload {
                        items: snap.items,
                        sessions: snap.sessions,
                        ..Payload::default()
                    };
                    (snap.base, newest.max(snap.base), payload, JOIN_SNAPSHOT)
                }
            };
            let State::Leading(l) = &mut self.state else {
                return;
            };
            let Some(j) = l.joins.get_mut(&node) else { continue };
            // Only a node that lost its sessions waits for its old writes
            // (the fence): others resubmit theirs, and waiting for
            // uncommitted ids could wait for this very node's vote.
            let promote_at = if j.amnesiac {
                newest.max(j.sequenced)
            } else {
                newest
            };
            j.target = Some((base, promote_at));
            if purpose == JOIN_DIFF {
                self.stats.diffs_sent += 1;
            } else {
                self.stats.snapshots_sent += 1;
            }
            self.transfer(node, stream(purpose, request), epoch, Arc::new(payload));
            self.outbox.push_back(Pending {
                to: NodeSet::from_ids([node]),
                epoch,
                msg: PendingMsg::JoinInfo { request, base, lids },
            });
        }
    }

    /// (Leader) a joined node reports its progress. Caught up, it is sent
    /// StartEpoch (again, until it runs); only once it runs in this epoch
    /// do the lanes count its acknowledgements. In that order, any node
    /// whose acks count considers itself a member of the epoch, so its
    /// votes carry the entries it holds: counting a node that still votes
    /// as an outsider could commit writes no election would find.
    pub(super) fn maybe_promote(&mut self, host: &mut impl Host, node: NodeId, applied: Zxid, running: bool) {
        let epoch = self.current_epoch;
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let Some(j) = l.joins.get(&node) else { return };
        let Some((_, target)) = j.target else { return };
        if j.promoted {
            if !running {
                self.send_to(node, epoch, ControlBody::StartEpoch { base: target });
            } else if host.promote(node) {
                l.joins.remove(&node);
                l.synced.insert(node);
            }
            return;
        }
        // Its applied point alone does not show it installed this join's
        // transfer (it may be left from an earlier one): that must be acked.
        let low = j.request & 0x0FFF_FFFF;
        let delivering = self
            .sending
            .iter()
            .any(|o| o.to == node && o.stream & 0x0FFF_FFFF == low && !o.done());
        if applied < target || delivering {
            return;
        }
        if let Some(j) = l.joins.get_mut(&node) {
            j.promoted = true;
        }
        self.send_to(node, epoch, ControlBody::StartEpoch { base: target });
    }

    /// (Learner) where the lanes start, and the base of the history to come.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_join_info(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        request: u32,
        base: Zxid,
        lids: Vec<u64>,
    ) {
        let State::Learner {
            leader: Some(leader),
            base: None,
            epoch: e,
            ..
        } = self.state
        else {
            return;
        };
        if leader != from || e != epoch || request != self.join_request {
            return;
        }
        host.start_lanes(&LaneStart {
            epoch,
            leader,
            lids: Some(lids),
            voters: NodeSet::EMPTY,
            serving: false,
        });
        self.running = true;
        if let State::Learner { base: b, .. } = &mut self.state {
            *b = Some(base);
        }
        // The transfer may have overtaken this answer.
        for purpose in [JOIN_DIFF, JOIN_SNAPSHOT] {
            let key = (from, stream(purpose, request));
            if self.receiving.get(&key).is_some_and(|i| i.done()) {
                self.join_arrived(now, host, from, key.1);
            }
        }
    }

    /// (Learner) the snapshot or history arrived: install it (once the
    /// JoinInfo, with its base, is here too).
    pub(super) fn join_arrived(&mut self, _now: Time, host: &mut impl Host, from: NodeId, stream: u32) {
        let State::Learner { base: Some(base), .. } = self.state else {
            return;
        };
        let items = self
            .receiving
            .remove(&(from, stream))
            .map(|i| i.items)
            .unwrap_or_default();
        if purpose(stream) == JOIN_SNAPSHOT {
            let mut snap = Snapshot {
                base,
                ..Snapshot::default()
            };
            for item in items {
                match item {
                    Received::Item(i) => snap.items.push(i),
                    Received::Session(s) => snap.sessions.push(s),
                    Received::Entry(_) => {}
                }
            }
            host.install(snap);
            // Until promoted its store is a snapshot in progress, not a
            // prefix of the history: a later join must send a snapshot again.
            self.current_epoch = 0;
        } else {
            let entries: Vec<OwnedEntry> = items
                .into_iter()
                .filter_map(|i| if let Received::Entry(e) = i { Some(e) } else { None })
                .collect();
            host.apply(&entries);
            host.advance_to(base);
        }
        host.resume_lanes();
        self.join_installed = true;
        // Everything held is below the base now installed.
        self.tail.clear();
        self.send_status(from, host);
    }
}
