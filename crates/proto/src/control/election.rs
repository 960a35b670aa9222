//! Heartbeats, failure detection and elections.

use super::{Candidate, Control, HELD, Host, Leading, State, stream};
use crate::{NodeSet, Span, Time};
use rzab_wire::{ControlBody, NodeId, Zxid};

impl Control {
    pub(super) fn send_status(&mut self, to: NodeId, host: &impl Host) {
        let body = ControlBody::Status {
            applied: host.applied(),
            accepted_epoch: self.accepted_epoch,
            voter: self.serving(),
            synced: matches!(self.state, State::Syncing { acked: true, .. }),
        };
        self.send_to(to, self.accepted_epoch, body);
    }

    pub(super) fn on_heartbeat(&mut self, now: Time, host: &mut impl Host, from: NodeId, epoch: u32) {
        self.stats.heartbeats_recv += 1;
        if epoch < self.accepted_epoch {
            // A leader of an epoch this node has moved past: our status
            // (with the higher epoch) makes it step down.
            self.send_status(from, host);
            return;
        }
        let current = self.current_epoch;
        let fresh_deadline = self.election_deadline(now);
        match &mut self.state {
            State::Following { leader, deadline } if *leader == from && epoch == current => {
                *deadline = fresh_deadline;
                self.last_leader_contact = now;
            }
            State::Syncing { leader, .. } if *leader == from && epoch == self.accepted_epoch => {}
            State::Learner {
                leader: Some(l),
                epoch: e,
                ..
            } if *l == from && *e == epoch => {
                self.last_leader_contact = now;
                self.learner_tick(now, host);
            }
            State::Leading(_) if epoch == current => {
                // Two leaders of one epoch cannot happen; ignore it loudly.
                self.stats.rejected += 1;
                return;
            }
            _ => {
                // A leader of an epoch this node is not part of: join it.
                self.become_learner(now, host, from, epoch);
            }
        }
        self.send_status(from, host);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_status(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        _epoch: u32,
        applied: Zxid,
        accepted_epoch: u32,
        running: bool,
        synced: bool,
    ) {
        let current = self.current_epoch;
        let State::Leading(l) = &mut self.state else {
            return;
        };
        if accepted_epoch > current {
            // A newer election is under way: this leadership is over.
            self.step_down(now, host);
            return;
        }
        // Only members of this epoch count for the leader's quorum check
        // (a learner catching up does not keep a cut-off leader in office).
        if l.synced.contains(from) {
            l.heard.insert(from, now);
        }
        // A synced follower whose StartEpoch was lost (a learner is promoted
        // by maybe_promote instead).
        if !running && synced && l.synced.contains(from) && !l.joins.contains_key(&from) {
            let base = host.applied();
            self.send_to(from, current, ControlBody::StartEpoch { base });
        }
        self.maybe_promote(host, from, applied, running);
    }

    /// Stops leading (lanes stop; an election follows unless a leader appears).
    pub(super) fn step_down(&mut self, now: Time, host: &mut impl Host) {
        self.stats.step_downs += 1;
        self.stop_lanes(host);
        let deadline = self.election_deadline(now);
        self.state = State::Waiting { deadline };
    }

    /// Leader upkeep: step down without a quorum; serve joins.
    pub(super) fn leader_checks(&mut self, now: Time, host: &mut impl Host) {
        let State::Leading(l) = &self.state else { return };
        let window = Span(self.cfg.election_timeout.0 * 3);
        let heard = l.heard.values().filter(|&&t| now < t + window).count();
        if heard + 1 < self.cfg.quorum() {
            self.step_down(now, host);
            return;
        }
        self.serve_joins(host);
    }

    pub(super) fn on_vote_request(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        their_epoch: u32,
        their_applied: Zxid,
    ) {
        let mine = (self.current_epoch, host.applied());
        let vote_twice = self.cfg.planted_bug == crate::PlantedBug::VoteTwice;
        let repeat = epoch == self.accepted_epoch && (self.voted_for == Some(from) || vote_twice);
        let fresh = epoch > self.accepted_epoch;
        // A follower that hears its leader, or a leader that hears a quorum,
        // does not help depose it.
        let leader_alive = self.leader_is_alive(now);
        let grant = self.voter && (repeat || fresh) && (their_epoch, their_applied) >= mine && !leader_alive;
        if !grant {
            self.stats.votes_denied += 1;
            if fresh && !leader_alive {
                // The epoch is taken (if only by a failed candidacy): no
                // vote in it, and the candidate learns to go higher.
                self.accepted_epoch = epoch;
                self.voted_for = None;
            }
            let body = ControlBody::Vote {
                granted: false,
                current_epoch: mine.0,
                applied: mine.1,
                held: 0,
            };
            self.send_to(from, epoch.max(self.accepted_epoch), body);
            return;
        }
        self.stats.votes_granted += 1;
        if fresh {
            self.accepted_epoch = epoch;
            self.voted_for = Some(from);
            self.stop_lanes(host);
            let held = self.tail.clone();
            self.forget_transfers();
            // Held entries count only in the candidate's own epoch: older ones
            // were superseded by that epoch's history.
            let send: Vec<_> = if self.current_epoch == their_epoch {
                held.into_iter().filter(|e| e.zxid > their_applied).collect()
            } else {
                Vec::new()
            };
            let deadline = now + Span(self.cfg.election_timeout.0 * 4);
            self.state = State::Voted {
                candidate: from,
                deadline,
            };
            let body = ControlBody::Vote {
                granted: true,
                current_epoch: mine.0,
                applied: mine.1,
                held: send.len() as u64,
            };
            self.send_to(from, epoch, body);
            if !send.is_empty() {
                let payload = std::sync::Arc::new(crate::transfer::Payload::of_entries(send));
                self.transfer(from, stream(HELD, epoch), epoch, payload);
            }
        } else {
            // A repeated request (our vote was lost): answer again; any
            // transfer of held entries is still under way.
            let held = self
                .sending
                .iter()
                .any(|o| o.to == from && o.stream == stream(HELD, epoch));
            let body = ControlBody::Vote {
                granted: true,
                current_epoch: mine.0,
                applied: mine.1,
                held: held as u64,
            };
            self.send_to(from, epoch, body);
        }
    }

    /// Whether this node has a working leadership to defend: it follows a
    /// leader heard within the election timeout, or leads and heard a quorum.
    fn leader_is_alive(&self, now: Time) -> bool {
        let window = self.cfg.election_timeout;
        match &self.state {
            State::Following { .. } => now < self.last_leader_contact + window,
            State::Leading(l) => {
                l.heard.values().filter(|&&t| now < t + window).count() + 1 >= self.cfg.quorum()
            }
            _ => false,
        }
    }

    /// No leader: ask for votes in a new epoch (voters only).
    pub(super) fn start_election(&mut self, now: Time, host: &mut impl Host) {
        self.stop_lanes(host);
        if !self.voter {
            let deadline = self.election_deadline(now);
            self.state = State::Waiting { deadline };
            return;
        }
        let held = self.tail.clone();
        self.forget_transfers();
        let epoch = self.accepted_epoch.max(self.current_epoch) + 1;
        self.accepted_epoch = epoch;
        self.voted_for = Some(self.cfg.node);
        let applied = host.applied();
        // A fresh random timeout: two candidates that split the vote retry
        // at different times (a round trip fits in it many times over).
        let deadline = self.retry_deadline(now);
        self.state = State::Candidate(Candidate {
            granted: NodeSet::from_ids([self.cfg.node]),
            denied: NodeSet::EMPTY,
            expecting: NodeSet::EMPTY,
            applied: Default::default(),
            held: held
                .into_iter()
                .filter(|e| e.zxid > applied)
                .map(|e| (e.zxid, e))
                .collect(),
            deadline,
        });
        self.stats.elections_started += 1;
        let body = ControlBody::VoteRequest {
            current_epoch: self.current_epoch,
            applied,
        };
        self.send(self.cfg.others(), epoch, body);
        self.check_won(now, host);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_vote(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        granted: bool,
        _their_epoch: u32,
        their_applied: Zxid,
        held: u64,
    ) {
        let accepted = self.accepted_epoch;
        let losers = self.cfg.members.len() - self.cfg.quorum();
        if epoch > accepted && matches!(self.state, State::Candidate(_)) {
            // Someone is already at a higher epoch: this candidacy is moot.
            self.accepted_epoch = epoch;
            self.voted_for = None;
            let deadline = self.election_deadline(now);
            self.state = State::Waiting { deadline };
            return;
        }
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        if epoch != accepted {
            return;
        }
        if granted {
            c.granted.insert(from);
            c.applied.insert(from, their_applied);
            let arrived = self.finished.contains_key(&(from, stream(HELD, epoch)));
            if held > 0 && !arrived {
                c.expecting.insert(from);
            }
        } else {
            c.denied.insert(from);
            if c.denied.len() > losers {
                let deadline = self.retry_deadline(now);
                self.state = State::Waiting { deadline };
                return;
            }
        }
        self.check_won(now, host);
    }

    /// A voter's held entries arrived.
    pub(super) fn held_arrived(&mut self, now: Time, host: &mut impl Host, from: NodeId, stream: u32) {
        let applied = host.applied();
        let items = self
            .receiving
            .remove(&(from, stream))
            .map(|i| i.items)
            .unwrap_or_default();
        let State::Candidate(c) = &mut self.state else {
            return;
        };
        let ignore = self.cfg.planted_bug == crate::PlantedBug::IgnoreHeldEntries;
        for item in items {
            if let crate::transfer::Received::Entry(e) = item
                && e.zxid > applied
                && !ignore
            {
                c.held.insert(e.zxid, e);
            }
        }
        c.expecting.remove(from);
        self.check_won(now, host);
    }

    pub(super) fn check_won(&mut self, now: Time, host: &mut impl Host) {
        let quorum = self.cfg.quorum();
        let State::Candidate(c) = &self.state else { return };
        let waiting = NodeSet(c.expecting.0 & c.granted.0);
        if c.granted.len() >= quorum && waiting.is_empty() {
            self.win(now, host);
        }
    }

    pub(super) fn new_leading(&self, now: Time, synced: NodeSet) -> Leading {
        Leading {
            next_heartbeat: now,
            heard: synced.iter().map(|n| (n, now)).collect(),
            synced,
            joins: Default::default(),
        }
    }
}
