//! The follower lane: forwards its sessions' writes to the leader, receives
//! Prepares into a window ordered by lid, acknowledges them cumulatively
//! (reporting gaps), learns the commit point, and hands committed entries to
//! the runtime for applying in zxid order.

use crate::filter::accept;
use crate::log::{EntryMeta, EntryRef, LogRing};
use crate::writes::{PendingWrites, QueueError};
use crate::{ConfigError, Dest, LaneConfig, LaneStats, Rtt, Time, Transmit};
use rzab_wire::{
    AckBody, Body, Encoder, Fence, Header, Kind, Message, NodeId, Op, PrepareEntries, Range, Ranges,
    WriteEntry,
};

/// Most missing ranges one Ack reports.
const MAX_NACK_RANGES: usize = 8;

/// The follower side of one lane.
///
/// Lids: `[.., apply_lid)` applied, `[.., commit_lid)` committed (as far as
/// the leader said), `[.., received_lid)` all received; entries above
/// `received_lid` may be present out of order up to `high_lid`. The window
/// holds lids `[apply_lid, apply_lid + window)`.
#[derive(Debug)]
pub struct FollowerLane {
    cfg: LaneConfig,
    ring: LogRing,
    received_lid: u64,
    high_lid: u64,
    commit_lid: u64,
    apply_lid: u64,
    prepare_seq_seen: u64,
    commit_seq_seen: u64,
    ack_due: bool,
    /// `received_lid` and window end as of the last Ack sent.
    acked_lid: u64,
    advertised_window_end: u64,
    writes: PendingWrites,
    write_msg_seq: u64,
    /// Round trips of writes (sent to seen sequenced).
    rtt: Rtt,
    /// Entries count as committed once stored here (see
    /// [`FollowerLane::commit_on_receipt`]).
    commits_on_receipt: bool,
    stats: LaneStats,
}

impl FollowerLane {
    pub fn new(cfg: LaneConfig) -> Result<FollowerLane, ConfigError> {
        Self::new_at(cfg, 0)
    }

    /// A follower lane whose first lid is `start` (a node joining a running
    /// lane: earlier entries reach it through a snapshot or history).
    pub fn new_at(cfg: LaneConfig, start: u64) -> Result<FollowerLane, ConfigError> {
        cfg.validate()?;
        if cfg.is_leader() {
            return Err(ConfigError {
                field: "leader",
                reason: format!("node {} is the leader, not a follower", cfg.node),
            });
        }
        Ok(FollowerLane {
            ring: LogRing::new(cfg.window, cfg.value_max, start),
            received_lid: start,
            high_lid: start,
            commit_lid: start,
            apply_lid: start,
            prepare_seq_seen: 0,
            commit_seq_seen: 0,
            // A joining lane tells the leader where it stands at once.
            ack_due: start > 0,
            acked_lid: start,
            advertised_window_end: start + cfg.window as u64,
            writes: PendingWrites::new(cfg.max_pending_writes, cfg.value_max, cfg.write_credits),
            write_msg_seq: 0,
            rtt: Rtt::new(cfg.min_retransmit_timeout, cfg.retransmit_timeout),
            commits_on_receipt: false,
            stats: LaneStats::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &LaneConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &LaneStats {
        &self.stats
    }

    pub fn received_lid(&self) -> u64 {
        self.received_lid
    }

    pub fn commit_lid(&self) -> u64 {
        self.commit_lid
    }

    pub fn apply_lid(&self) -> u64 {
        self.apply_lid
    }

    /// The current retransmission timeout of writes.
    pub fn rto(&self) -> crate::Span {
        self.rtt.rto()
    }

    /// Lets this lane count an entry as committed as soon as it holds it
    /// (with every entry before it), without waiting for the leader's
    /// Commit. Sound only when the leader and this node make a quorum (at
    /// most 3 members) and the leader counts this node's acks (a voter, not
    /// a learner): the entry is then held by a quorum of voters, exactly
    /// what the leader's commit waits for. Saves a hop per write: a
    /// follower's write applies one Prepare after it reaches the leader.
    pub fn commit_on_receipt(&mut self, voter: bool) {
        self.commits_on_receipt = voter && crate::quorum::majority(self.cfg.members.len()) <= 2;
    }

    /// Writes submitted and not yet applied here.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    pub fn has_room(&self) -> bool {
        self.writes.has_room()
    }

    /// Queues a write of one of this node's sessions for the leader.
    pub fn submit(&mut self, w: &WriteEntry<'_>) -> Result<(), QueueError> {
        if w.session >= self.cfg.max_sessions {
            self.stats.rejected_entries += 1;
            return Err(QueueError::Full);
        }
        self.writes.push(w)
    }

    /// Handles one decoded datagram received at `now`.
    pub fn handle(&mut self, now: Time, msg: &Message<'_>) {
        if !accept(&self.cfg, &msg.header, &mut self.stats) {
            return;
        }
        match msg.body {
            Body::Prepare {
                first_lid,
                commit_lid,
                entries,
            } => {
                self.prepare_seq_seen = self.prepare_seq_seen.max(msg.header.seq);
                self.on_prepare(now, first_lid, entries);
                self.learn_commit(commit_lid);
                if self.commits_on_receipt {
                    self.commit_lid = self.commit_lid.max(self.received_lid);
                }
            }
            Body::Commit(ranges) => {
                self.commit_seq_seen = self.commit_seq_seen.max(msg.header.seq);
                self.stats.commit_msgs_recv += 1;
                self.on_commit(ranges);
            }
            Body::Write(_) | Body::Ack { .. } | Body::Hello(_) | Body::Control(_) => {
                unreachable!("filtered by accept")
            }
        }
        self.ack_due = true;
        self.check_invariants();
    }

    fn on_prepare(&mut self, now: Time, first_lid: u64, entries: PrepareEntries<'_>) {
        self.stats.prepare_msgs_recv += 1;
        let epoch = self.cfg.epoch;
        for (i, e) in entries.enumerate() {
            self.stats.prepares_recv += 1;
            let Some(lid) = first_lid.checked_add(i as u64) else {
                self.stats.rejected_entries += 1;
                break;
            };
            if lid < self.received_lid || self.ring.is_present(lid) {
                self.stats.duplicate_prepares += 1;
                continue;
            }
            if e.zxid.epoch() != epoch || e.zxid.counter() == 0 || e.value.len() > self.cfg.value_max {
                self.stats.rejected_entries += 1;
                continue;
            }
            let meta = EntryMeta {
                zxid: e.zxid,
                key: e.key,
                session: e.session,
                seq: e.seq,
                origin: e.origin,
                op: e.op,
                len: e.value.len() as u16,
            };
            if !self.ring.insert(lid, meta, e.value) {
                self.stats.dropped_window += 1;
                continue;
            }
            if e.origin == self.cfg.node
                && let Some(rtt) = self.writes.sequenced(e.session, e.seq, now)
            {
                self.rtt.sample(rtt);
            }
            self.high_lid = self.high_lid.max(lid + 1);
        }
        self.received_lid = self
            .ring
            .first_missing(self.received_lid)
            .min(self.high_lid.max(self.received_lid));
    }

    /// An applied `Bind` strands writes the leader will never sequence: its
    /// own session's older generation, and the generation its fence names.
    /// This node stops sending those of its own (its client slots fail them
    /// at the same apply).
    fn abandon_stranded(&mut self, origin: NodeId, session: u32, seq: u64, fence: Option<Fence>) {
        if origin == self.cfg.node {
            self.writes.abandon(session, seq.saturating_sub(1));
        }
        if let Some(f) = fence
            && f.node == self.cfg.node
        {
            self.writes.abandon(f.session, rzab_wire::gen_end(f.generation));
        }
    }

    fn on_commit(&mut self, ranges: Ranges<'_>) {
        for r in ranges {
            self.learn_commit(r.end());
        }
    }

    fn learn_commit(&mut self, lid: u64) {
        if lid > self.commit_lid {
            self.stats.commits_recv += lid - self.commit_lid;
            self.commit_lid = lid;
        }
    }

    /// Writes the next datagram to send into `buf` (sized to the MTU): an
    /// Ack when anything arrived since the last, then queued writes.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let t = if self.ack_due {
            self.transmit_ack(buf)
        } else {
            self.transmit_writes(now, buf)
        };
        self.check_invariants();
        t
    }

    fn header(&self, kind: Kind, seq: u64) -> Header {
        Header {
            kind,
            cluster_id: self.cfg.cluster_id,
            epoch: self.cfg.epoch,
            sender: self.cfg.node,
            lane: self.cfg.lane,
            count: 0,
            seq,
        }
    }

    fn transmit_ack(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        self.ack_due = false;
        let body = AckBody {
            received_lid: self.received_lid,
            window_end: self.ring.end(),
            prepare_seq: self.prepare_seq_seen,
            commit_seq: self.commit_seq_seen,
            commit_lid: self.commit_lid,
        };
        let mut enc = Encoder::ack(buf, self.header(Kind::Ack, 0), &body).ok()?;
        let nacks = self.push_missing(&mut enc);
        let len = enc.finish();
        self.stats.acks_sent += 1;
        self.stats.acked_lids_sent += self.received_lid - self.acked_lid;
        self.stats.nacks_sent += (nacks > 0) as u64;
        self.acked_lid = self.received_lid;
        self.advertised_window_end = body.window_end;
        Some(Transmit {
            dest: Dest::Node(self.cfg.leader),
            len,
        })
    }

    /// Reports the gaps between `received_lid` and `high_lid`.
    fn push_missing(&self, enc: &mut Encoder<'_>) -> usize {
        let mut n = 0;
        let mut lid = self.received_lid;
        while lid < self.high_lid && n < MAX_NACK_RANGES {
            let first = lid;
            while lid < self.high_lid && !self.ring.is_present(lid) {
                lid += 1;
            }
            let count = (lid - first).min(u32::MAX as u64) as u32;
            if count > 0 && enc.push_range(Range { first, count }) {
                n += 1;
            }
            lid = self.ring.first_missing(lid);
        }
        n
    }

    fn transmit_writes(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        if !self.writes.has_queued() {
            return None;
        }
        let with_fresh = self.writes.credits_available() > 0;
        let header = self.header(Kind::Write, self.write_msg_seq + 1);
        let mut enc = Encoder::write(buf, header).ok()?;
        let max = self.cfg.writes_per_datagram();
        let (taken, fresh) = self
            .writes
            .drain_into(now, self.write_msg_seq + 1, with_fresh, |w| {
                (enc.count() as usize) < max && enc.push_write(w)
            });
        if taken == 0 {
            self.stats.write_credit_stalls += self.writes.fresh_queued() as u64;
            return None;
        }
        self.write_msg_seq += 1;
        self.stats.write_msgs_sent += 1;
        self.stats.writes_sent += taken as u64;
        self.stats.writes_resent += (taken - fresh) as u64;
        Some(Transmit {
            dest: Dest::Node(self.cfg.leader),
            len: enc.finish(),
        })
    }

    /// The next committed entry to apply, if it has arrived. The runtime
    /// checks the apply gate, applies it, then calls [`advance_apply`].
    ///
    /// [`advance_apply`]: FollowerLane::advance_apply
    pub fn next_apply(&self) -> Option<EntryRef<'_>> {
        if self.apply_lid < self.commit_lid {
            self.ring.get(self.apply_lid)
        } else {
            None
        }
    }

    pub fn advance_apply(&mut self) {
        let Some(e) = self.next_apply() else {
            debug_assert!(false, "advance_apply without an entry");
            return;
        };
        let m = *e.meta;
        if m.op == Op::Bind {
            let fence = crate::sessions::fence_of(m.op, e.value);
            self.abandon_stranded(m.origin, m.session, m.seq, fence);
        }
        if m.origin == self.cfg.node {
            self.writes.applied(m.session, m.seq);
        }
        self.apply_lid += 1;
        self.ring.release_below(self.apply_lid);
        self.stats.applied += 1;
        // Re-advertise the window when a quarter of it has opened up, so a
        // leader blocked on it does not wait for the next Prepare.
        if self.ring.end() >= self.advertised_window_end + (self.cfg.window as u64 / 4) {
            self.ack_due = true;
        }
    }

    /// Entries received and not applied here (what an election must
    /// consider), in id order.
    pub fn held(&self) -> Vec<crate::OwnedEntry> {
        (self.apply_lid..self.high_lid)
            .filter_map(|lid| self.ring.get(lid))
            .map(|e| crate::log::owned(e, self.cfg.lane))
            .collect()
    }

    /// Skips the next entry without applying it: it is already in the store
    /// (below the snapshot a joining node installed).
    pub fn skip_applied(&mut self) {
        if self.next_apply().is_some() {
            self.apply_lid += 1;
            self.ring.release_below(self.apply_lid);
            self.stats.skipped_applied += 1;
        }
    }

    /// Requeues writes the leader has not sequenced within the timeout.
    pub fn handle_timeout(&mut self, now: Time) {
        let before = self.writes.timed_out();
        let n = self.writes.expire(now, self.rtt.rto());
        self.stats.retransmit_timeouts += (n > 0) as u64;
        if self.writes.timed_out() > before {
            self.rtt.backed_off();
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.writes.next_expiry(self.rtt.rto())
    }

    fn check_invariants(&self) {
        debug_assert!(self.apply_lid <= self.received_lid || self.apply_lid <= self.commit_lid);
        debug_assert!(self.apply_lid == self.ring.start());
        debug_assert!(self.received_lid <= self.high_lid.max(self.received_lid));
        debug_assert!(self.received_lid <= self.ring.end());
    }
}

#[cfg(test)]
mod tests;
