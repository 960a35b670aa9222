//! Recovery after an election: the winner sends each voter what it lacks
//! and the epoch's history tail, commits once a quorum installed it, and
//! starts the new epoch.

use super::{Control, Host, LaneStart, SYNC, State, stream};
use crate::transfer::{Payload, Received};
use crate::{NodeSet, Snapshot, Span, Time};
use rzab_wire::{ControlBody, NodeId, Zxid};
use std::sync::Arc;

impl Control {
    /// The election is won: propose the history to the voters.
    pub(super) fn win(&mut self, now: Time, host: &mut impl Host) {
        let State::Candidate(c) = std::mem::replace(
            &mut self.state,
            State::Waiting {
                deadline: Time::NEVER,
            },
        ) else {
            return;
        };
        let epoch = self.accepted_epoch;
        let me = self.cfg.node;
        let applied = host.applied();
        self.tail = c.held.into_values().collect();
        self.current_epoch = epoch;
        self.leaderships.push((epoch, me));
        self.stats.elections_won += 1;
        // Lanes are paused: one exact snapshot serves every voter that needs one.
        let mut snapshot: Option<Arc<Payload>> = None;
        for (&voter, &their_applied) in &c.applied {
            let diff = host.history_after(their_applied);
            let body = ControlBody::NewLeader {
                applied,
                snapshot: diff.is_none(),
            };
            self.send_to(voter, epoch, body);
            let payload = match diff {
                Some(d) => {
                    self.stats.diffs_sent += 1;
                    Arc::new(Payload {
                        entries: d,
                        tail: self.tail.clone(),
                        ..Payload::default()
                    })
                }
                None => {
                    self.stats.snapshots_sent += 1;
                    let tail = self.tail.clone();
                    snapshot
                        .get_or_insert_with(|| {
                            let snap = host.snapshot();
                            Arc::new(Payload {
                                items: snap.items,
                                sessions: snap.sessions,
                                tail,
                                ..Payload::default()
                            })
                        })
                        .clone()
                }
            };
            self.transfer(voter, stream(SYNC, epoch), epoch, payload);
        }
        let deadline = now + Span(self.cfg.election_timeout.0 * 8);
        self.state = State::LeaderSync {
            acked: NodeSet::from_ids([me]),
            granted: c.granted,
            deadline,
        };
        self.maybe_commit(now, host);
    }

    pub(super) fn on_new_leader(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        leader_applied: Zxid,
        snapshot: bool,
    ) {
        let State::Voted { candidate, .. } = self.state else {
            return;
        };
        if candidate != from || epoch != self.accepted_epoch {
            return;
        }
        let deadline = now + Span(self.cfg.election_timeout.0 * 8);
        self.state = State::Syncing {
            leader: from,
            leader_applied,
            snapshot,
            acked: false,
            deadline,
        };
        self.try_install_sync(now, host);
    }

    /// Installs the new leader's history once both its NewLeader and the
    /// transfer have arrived, and acknowledges it.
    pub(super) fn try_install_sync(&mut self, now: Time, host: &mut impl Host) {
        let State::Syncing {
            leader,
            leader_applied,
            snapshot,
            acked: false,
            ..
        } = self.state
        else {
            return;
        };
        let key = (leader, stream(SYNC, self.accepted_epoch));
        if !self.receiving.get(&key).is_some_and(|i| i.done()) {
            return;
        }
        let items = self.receiving.remove(&key).map(|i| i.items).unwrap_or_default();
        let mut snap = Snapshot {
            base: leader_applied,
            ..Snapshot::default()
        };
        let (mut committed, mut tail) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                Received::Item(i) => snap.items.push(i),
                Received::Session(s) => snap.sessions.push(s),
                Received::Entry(e) if e.zxid <= leader_applied => committed.push(e),
                Received::Entry(e) => tail.push(e),
            }
        }
        if snapshot {
            host.install(snap);
        }
        host.apply(&committed);
        self.tail = tail;
        self.current_epoch = self.accepted_epoch;
        if let State::Syncing { acked, .. } = &mut self.state {
            *acked = true;
        }
        let applied = host.applied();
        self.send_to(leader, self.current_epoch, ControlBody::NewLeaderAck { applied });
        let _ = now;
    }

    pub(super) fn on_new_leader_ack(&mut self, now: Time, host: &mut impl Host, from: NodeId, epoch: u32) {
        if epoch != self.current_epoch {
            return;
        }
        match &mut self.state {
            State::LeaderSync { acked, granted, .. } if granted.contains(from) => {
                acked.insert(from);
                self.maybe_commit(now, host);
            }
            State::Leading(l) if !l.synced.contains(from) => {
                // A voter that finished after the commit: it holds the whole
                // history, so it counts in quorums at once.
                l.synced.insert(from);
                l.heard.insert(from, now);
                host.promote(from);
                let base = host.applied();
                self.send_to(from, epoch, ControlBody::StartEpoch { base });
            }
            _ => {}
        }
    }

    /// A quorum installed the history: it is committed; start the epoch.
    fn maybe_commit(&mut self, now: Time, host: &mut impl Host) {
        let State::LeaderSync { acked, .. } = &self.state else {
            return;
        };
        if acked.len() < self.cfg.quorum() {
            return;
        }
        let me = self.cfg.node;
        let followers = acked.without(me);
        let epoch = self.current_epoch;
        let tail = std::mem::take(&mut self.tail);
        host.apply(&tail);
        host.start_lanes(&LaneStart {
            epoch,
            leader: me,
            lids: None,
            voters: followers,
            serving: true,
        });
        self.running = true;
        self.stats.epochs_started += 1;
        let base = host.applied();
        self.send(followers, epoch, ControlBody::StartEpoch { base });
        self.state = State::Leading(self.new_leading(now, followers));
    }

    pub(super) fn on_start_epoch(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        base: Zxid,
    ) {
        match self.state {
            State::Syncing {
                leader, acked: true, ..
            } if leader == from && epoch == self.current_epoch => {
                let tail = std::mem::take(&mut self.tail);
                host.apply(&tail);
                host.start_lanes(&LaneStart {
                    epoch,
                    leader,
                    lids: None,
                    voters: NodeSet::EMPTY,
                    serving: true,
                });
                self.follow(now, leader);
                self.stats.epochs_started += 1;
            }
            State::Learner {
                leader: Some(leader),
                base: Some(_),
                epoch: e,
                ..
            } if leader == from && e == epoch && self.join_installed && host.applied() >= base => {
                // Promotion: a caught-up learner becomes a full member.
                self.voter = true;
                self.accepted_epoch = self.accepted_epoch.max(epoch);
                self.current_epoch = epoch;
                host.serve();
                self.follow(now, leader);
                self.stats.promotions += 1;
            }
            _ => {}
        }
    }

    fn follow(&mut self, now: Time, leader: NodeId) {
        self.running = true;
        self.last_leader_contact = now;
        let deadline = self.election_deadline(now);
        self.state = State::Following { leader, deadline };
    }
}
