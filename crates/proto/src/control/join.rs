//! Nodes joining a running epoch: learners (restarted without state, or
//! having missed an election) catch up from a snapshot or the history they
//! missed, plus the lanes from a recorded point, and are promoted once
//! caught up.

use super::{Control, Host, JOIN_DIFF, JOIN_SNAPSHOT, Join, LaneStart, PendingMsg, Pending, State, purpose, stream};
use crate::transfer::Received;
use crate::{NodeSet, OwnedEntry, Snapshot, Time};
use rzab_wire::{ControlBody, Item, NodeId, Zxid};

impl Control {
    /// Leaves whatever this node did to catch up with `leader` in `epoch`.
    pub(super) fn become_learner(&mut self, now: Time, host: &mut impl Host, leader: NodeId, epoch: u32) {
        self.stop_lanes(host);
        self.tail.clear();
        self.receiving.clear();
        self.accepted_epoch = self.accepted_epoch.max(epoch);
        self.state = State::Learner { leader: Some(leader), asked_at: None, base: None, epoch };
        self.learner_tick(now, host);
    }

    /// Asks the leader to join (again, if the answer is overdue).
    pub(super) fn learner_tick(&mut self, now: Time, host: &impl Host) {
        let State::Learner { leader: Some(leader), asked_at, base: None, epoch } = self.state else { return };
        if asked_at.is_some_and(|t| now < t + self.cfg.election_timeout) {
            return;
        }
        if let State::Learner { asked_at, .. } = &mut self.state {
            *asked_at = Some(now);
        }
        self.stats.joins_requested += 1;
        let body = ControlBody::Join { applied: host.applied(), amnesiac: self.current_epoch == 0 };
        self.send_to(leader, epoch, body);
    }

    /// (Leader) a node asks to join.
    pub(super) fn on_join(&mut self, _now: Time, host: &mut impl Host, from: NodeId, epoch: u32, applied: Zxid, amnesiac: bool) {
        let current = self.current_epoch;
        let State::Leading(l) = &mut self.state else { return };
        if epoch != current {
            return;
        }
        if let Some(j) = l.joins.get(&from) {
            // Our JoinInfo was lost: send it again (the transfer is reliable).
            if let Some(base) = j.target {
                let lids = j.lids.clone();
                self.outbox.push_back(Pending {
                    to: NodeSet::from_ids([from]),
                    epoch,
                    msg: PendingMsg::JoinInfo { base, lids },
                });
            }
            return;
        }
        let Some((lids, below, sequenced)) = host.add_learner(from, amnesiac) else { return };
        l.synced.remove(from);
        l.joins.insert(from, Join { lids, below, sequenced, applied, amnesiac, target: None });
        self.stats.joins_served += 1;
        self.serve_joins(host);
    }

    /// (Leader) sends joins their history once it covers their lids.
    pub(super) fn serve_joins(&mut self, host: &mut impl Host) {
        let epoch = self.current_epoch;
        let applied = host.applied();
        let State::Leading(l) = &mut self.state else { return };
        let ready: Vec<NodeId> =
            l.joins.iter().filter(|(_, j)| j.target.is_none() && applied >= j.below).map(|(&n, _)| n).collect();
        for node in ready {
            let State::Leading(l) = &mut self.state else { return };
            let Some(j) = l.joins.get_mut(&node) else { continue };
            j.target = Some(applied.max(j.sequenced));
            let (lids, their_applied, amnesiac) = (j.lids.clone(), j.applied, j.amnesiac);
            let diff = if amnesiac { None } else { host.history_after(their_applied) };
            match diff {
                Some(d) => {
                    self.stats.diffs_sent += 1;
                    self.transfer(node, stream(JOIN_DIFF, epoch), epoch, d.iter().map(OwnedEntry::item));
                }
                None => {
                    self.stats.snapshots_sent += 1;
                    let snap = host.snapshot();
                    let items = snap.items.iter().map(|i| i.item());
                    let sessions = snap.sessions.iter().map(|s| Item::Session(*s));
                    self.transfer(node, stream(JOIN_SNAPSHOT, epoch), epoch, items.chain(sessions));
                }
            }
            self.outbox.push_back(Pending {
                to: NodeSet::from_ids([node]),
                epoch,
                msg: PendingMsg::JoinInfo { base: applied, lids },
            });
        }
    }

    /// (Leader) a joined node reports its progress: promote it when caught up.
    pub(super) fn maybe_promote(&mut self, host: &mut impl Host, node: NodeId, applied: Zxid) {
        let epoch = self.current_epoch;
        let State::Leading(l) = &mut self.state else { return };
        let Some(target) = l.joins.get(&node).and_then(|j| j.target) else { return };
        if applied < target || !host.promote(node) {
            return;
        }
        let State::Leading(l) = &mut self.state else { return };
        l.joins.remove(&node);
        l.synced.insert(node);
        self.send_to(node, epoch, ControlBody::StartEpoch { base: target });
    }

    /// (Learner) where the lanes start, and the base of the history to come.
    pub(super) fn on_join_info(
        &mut self,
        _now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        base: Zxid,
        lids: Vec<u64>,
    ) {
        let State::Learner { leader: Some(leader), base: None, epoch: e, .. } = self.state else { return };
        if leader != from || e != epoch {
            return;
        }
        host.start_lanes(&LaneStart { epoch, leader, lids: Some(lids), voters: NodeSet::EMPTY, serving: false });
        self.running = true;
        if let State::Learner { base: b, .. } = &mut self.state {
            *b = Some(base);
        }
    }

    /// (Learner) the snapshot or history arrived: install it.
    pub(super) fn join_arrived(&mut self, _now: Time, host: &mut impl Host, from: NodeId, stream: u32) {
        let State::Learner { base: Some(base), .. } = self.state else { return };
        let items = self.receiving.remove(&(from, stream)).map(|i| i.items).unwrap_or_default();
        if purpose(stream) == JOIN_SNAPSHOT {
            let mut snap = Snapshot { base, ..Snapshot::default() };
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
        self.send_status(from, host);
    }
}
