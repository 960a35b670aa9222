//! The leader lane: sequences writes, broadcasts Prepares, counts Acks into
//! a quorum commit point, broadcasts Commits, and retains entries for
//! followers that fall behind.

use crate::filter::accept;
use crate::inflights::Inflights;
use crate::log::{EntryMeta, EntryRef, LogRing, owned};
use crate::quorum::{committed_point_of, majority};
use crate::sessions::{SeqCheck, SessionTable};
use crate::{
    BroadcastMode, ConfigError, Dest, EpochExhausted, LaneConfig, LaneStats, NodeSet, OwnedEntry, PlantedBug,
    Rtt, Sequencer, Time, Transmit,
};
use rzab_wire::{AckBody, Body, Encoder, Header, Kind, Message, NodeId, Range, Ranges, WriteEntry, Zxid};

/// Missing ranges of one report the leader resends.
const MAX_RESEND_RANGES: usize = 8;

/// Drops the parts of resend ranges below `received` (they arrived some
/// other way; the log may no longer retain them).
fn prune_resend(resend: &mut Vec<Range>, received: u64) {
    resend.retain_mut(|r| {
        if r.first < received {
            let end = r.end();
            r.first = received.min(end);
            r.count = (end - r.first) as u32;
        }
        r.count > 0
    });
}

/// Why a write was not accepted into the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no room: retry after entries commit")]
    Full,
    #[error("session {0} is out of range")]
    BadSession(u32),
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    ValueTooLong { len: usize, max: usize },
    #[error("this session write was already sequenced")]
    Duplicate,
    #[error("an earlier write of this session is missing")]
    Gap,
    #[error("a bind's value is neither an owner nor an owner and a fence")]
    BadBind,
}

/// What the leader knows about one follower of the lane.
#[derive(Debug)]
struct Peer {
    node: NodeId,
    /// Next lid to send it.
    next_lid: u64,
    /// It has every lid below this.
    received_lid: u64,
    /// It can buffer lids below this.
    window_end: u64,
    /// Highest commit point sent to it, and the highest it confirmed.
    commit_sent: u64,
    commit_known: u64,
    prepare_credits: Inflights,
    commit_credits: Inflights,
    /// When `received_lid` last advanced (or sending began after a quiet spell).
    progress_at: Time,
    commit_sent_at: Time,
    /// Lid ranges it reported missing, to resend alone (selective repeat),
    /// and when that report was taken (one report per quarter timeout).
    resend: Vec<Range>,
    resend_at: Option<Time>,
    /// Entries it needs are no longer retained: it waits for state transfer.
    lagging: bool,
    /// Its acks count towards quorums (false while it catches up after joining).
    voter: bool,
    /// The lid it joined at: below it, it holds the entries only through the
    /// snapshot or history it was sent.
    joined_at: u64,
    /// Its writes are refused until promotion: it restarted without state,
    /// and what its dead incarnation sent must not mix with the new one's.
    fenced: bool,
}

impl Peer {
    fn new(node: NodeId, cfg: &LaneConfig) -> Peer {
        Peer {
            node,
            next_lid: 0,
            received_lid: 0,
            window_end: cfg.window as u64,
            commit_sent: 0,
            commit_known: 0,
            prepare_credits: Inflights::new(cfg.prepare_credits),
            commit_credits: Inflights::new(cfg.commit_credits),
            progress_at: Time::ZERO,
            commit_sent_at: Time::ZERO,
            resend: Vec::with_capacity(MAX_RESEND_RANGES),
            resend_at: None,
            lagging: false,
            voter: true,
            joined_at: 0,
            fenced: false,
        }
    }

    /// Whether a Prepare starting at `lid` may be sent to it now.
    fn can_take(&self, lid: u64) -> bool {
        !self.prepare_credits.is_full() && self.window_end > lid
    }
}

/// The leader side of one lane. See the crate docs for the protocol.
///
/// Lids: `[log.start, apply_lid)` applied locally, `[.., commit_lid)`
/// committed, `[.., bcast_lid)` sent to some follower, `[.., seq_lid)` given
/// a zxid, `[.., end)` appended. So
/// `log.start <= apply_lid <= commit_lid <= bcast_lid <= seq_lid <= end`.
#[derive(Debug)]
pub struct LeaderLane {
    cfg: LaneConfig,
    log: LogRing,
    end: u64,
    seq_lid: u64,
    bcast_lid: u64,
    commit_lid: u64,
    apply_lid: u64,
    peers: Vec<Peer>,
    sessions: SessionTable,
    prepare_msg_seq: u64,
    commit_msg_seq: u64,
    /// Rotates which follower catch-up serves first.
    catch_up_turn: usize,
    last_zxid: Zxid,
    /// Id of the last entry this lane applied (for joins below the log).
    last_applied_zxid: Zxid,
    /// Round trips to the followers (message sent to ack naming it).
    rtt: Rtt,
    points: Vec<u64>,
    scratch: Vec<u64>,
    stats: LaneStats,
}

impl LeaderLane {
    pub fn new(cfg: LaneConfig) -> Result<LeaderLane, ConfigError> {
        cfg.validate()?;
        if !cfg.is_leader() {
            return Err(ConfigError {
                field: "leader",
                reason: format!("node {} is not the leader {}", cfg.node, cfg.leader),
            });
        }
        let peers: Vec<Peer> = cfg.followers().iter().map(|n| Peer::new(n, &cfg)).collect();
        Ok(LeaderLane {
            log: LogRing::appended(cfg.log_capacity, cfg.log_bytes, 0),
            end: 0,
            seq_lid: 0,
            bcast_lid: 0,
            commit_lid: 0,
            apply_lid: 0,
            points: Vec::with_capacity(peers.len()),
            scratch: Vec::with_capacity(peers.len() + 1),
            peers,
            sessions: SessionTable::new(cfg.max_sessions),
            prepare_msg_seq: 0,
            commit_msg_seq: 0,
            catch_up_turn: 0,
            last_zxid: Zxid::epoch_base(cfg.epoch),
            last_applied_zxid: Zxid::epoch_base(cfg.epoch),
            rtt: Rtt::new(cfg.min_retransmit_timeout, cfg.retransmit_timeout),
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

    pub fn commit_lid(&self) -> u64 {
        self.commit_lid
    }

    pub fn apply_lid(&self) -> u64 {
        self.apply_lid
    }

    /// One past the last appended lid.
    pub fn end_lid(&self) -> u64 {
        self.end
    }

    /// Followers marked lagging (their entries are no longer retained).
    pub fn lagging(&self) -> NodeSet {
        NodeSet::from_ids(self.peers.iter().filter(|p| p.lagging).map(|p| p.node))
    }

    /// A follower's cumulative receipt point (for tests and diagnostics).
    pub fn follower_received(&self, node: NodeId) -> Option<u64> {
        self.peers.iter().find(|p| p.node == node).map(|p| p.received_lid)
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> crate::Span {
        self.rtt.rto()
    }

    /// Only these followers' acks count until they are promoted (at an epoch
    /// start: those that took the new leader's history).
    pub fn set_voters(&mut self, voters: NodeSet) {
        for p in &mut self.peers {
            p.voter = voters.contains(p.node);
        }
    }

    /// Seeds the duplicate check with each session's last applied write (a
    /// new leader must not sequence a write the old one already did) and
    /// the owner of its binding, as (origin, session, seq, owner).
    pub fn load_sessions(&mut self, seqs: impl Iterator<Item = (NodeId, u32, u64, u64)>) {
        for (origin, session, seq, owner) in seqs {
            self.sessions.set(origin, session, seq, owner);
        }
    }

    /// A node joins (or rejoins) the running lane: it is sent everything from
    /// the broadcast point on, and counts in quorums once promoted. Returns
    /// that lid and the highest id below it (what its snapshot must cover).
    pub fn add_learner(&mut self, node: NodeId, now: Time, fence: bool) -> Option<(u64, Zxid)> {
        // From the apply point: what is below it is in the store (so in the
        // snapshot or history the node gets), what is above is retained.
        // Not the broadcast point: entries below it may be uncommitted, and
        // waiting for them to apply could wait for this very node's vote.
        let lid = self.apply_lid;
        let below = self.last_applied_zxid;
        let window = self.cfg.window as u64;
        let (credits, commits) = (self.cfg.prepare_credits, self.cfg.commit_credits);
        let p = self.peers.iter_mut().find(|p| p.node == node)?;
        *p = Peer {
            node,
            next_lid: lid,
            received_lid: lid,
            window_end: lid + window,
            commit_sent: lid.min(self.commit_lid),
            commit_known: lid.min(self.commit_lid),
            prepare_credits: Inflights::new(credits),
            commit_credits: Inflights::new(commits),
            progress_at: now,
            commit_sent_at: now,
            resend: Vec::with_capacity(MAX_RESEND_RANGES),
            resend_at: None,
            lagging: false,
            voter: false,
            joined_at: lid,
            fenced: fence,
        };
        self.stats.learners_added += 1;
        Some((lid, below))
    }

    /// A joined node has caught up: its acks count from now on. Refused
    /// (false) while entries below its join point are uncommitted: it holds
    /// those only through its snapshot, which covers committed ones.
    pub fn promote(&mut self, node: NodeId) -> bool {
        let commit_lid = self.commit_lid;
        let Some(p) = self.peers.iter_mut().find(|p| p.node == node) else {
            return false;
        };
        if commit_lid < p.joined_at {
            return false;
        }
        p.voter = true;
        p.fenced = false;
        self.update_commit();
        true
    }

    /// The entries given an id but not applied here (what an election must
    /// consider), in id order.
    pub fn held(&self) -> Vec<OwnedEntry> {
        (self.apply_lid..self.seq_lid)
            .filter_map(|lid| self.log.get(lid))
            .map(|e| owned(e, self.cfg.lane))
            .collect()
    }

    /// One line on where the lane and each follower stand (for diagnostics).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "rto {} log [{}..{}) apply {} commit {} bcast {} seq {};",
            self.rtt.rto(),
            self.log.start(),
            self.end,
            self.apply_lid,
            self.commit_lid,
            self.bcast_lid,
            self.seq_lid
        );
        for p in &self.peers {
            out += &format!(
                " node {}: next {} recv {} win {} credits p{}/c{} commit sent {} known {} progress {}us{};",
                p.node,
                p.next_lid,
                p.received_lid,
                p.window_end,
                p.prepare_credits.available(),
                p.commit_credits.available(),
                p.commit_sent,
                p.commit_known,
                p.progress_at.0 / 1000,
                if p.lagging { " LAGGING" } else { "" }
            );
        }
        out
    }

    /// Whether `submit` has room for another write (of the largest size).
    pub fn has_room(&mut self) -> bool {
        self.make_room(self.cfg.value_max)
    }

    /// Handles one decoded datagram received at `now`.
    pub fn handle(&mut self, now: Time, msg: &Message<'_>) {
        if !accept(&self.cfg, &msg.header, &mut self.stats) {
            return;
        }
        let from = msg.header.sender;
        match msg.body {
            Body::Write(_) if self.peers.iter().any(|p| p.node == from && p.fenced) => {
                self.stats.rejected_sender += 1;
            }
            Body::Write(entries) => {
                self.stats.write_msgs_recv += 1;
                for e in entries {
                    self.stats.writes_recv += 1;
                    let _ = self.append(from, &e);
                }
            }
            Body::Ack { body, missing } => self.on_ack(now, from, &body, missing),
            Body::Prepare { .. } | Body::Commit(_) | Body::Hello(_) | Body::Control(_) => {
                unreachable!("filtered by accept")
            }
        }
        self.check_invariants();
    }

    /// A write from one of this node's own sessions.
    pub fn submit(&mut self, w: &WriteEntry<'_>) -> Result<(), SubmitError> {
        self.append(self.cfg.node, w)
    }

    fn append(&mut self, origin: NodeId, w: &WriteEntry<'_>) -> Result<(), SubmitError> {
        if w.value.len() > self.cfg.value_max {
            self.stats.rejected_entries += 1;
            return Err(SubmitError::ValueTooLong {
                len: w.value.len(),
                max: self.cfg.value_max,
            });
        }
        let bind = w.op == rzab_wire::Op::Bind;
        // What the log holds, every replica decodes: never a bad Bind.
        let bind_value = crate::sessions::bind_of(w.op, w.value);
        if bind && bind_value.is_none() {
            self.stats.rejected_entries += 1;
            return Err(SubmitError::BadBind);
        }
        let check = self.sessions.check(origin, w.session, w.seq, bind);
        match check {
            None => {
                self.stats.rejected_entries += 1;
                return Err(SubmitError::BadSession(w.session));
            }
            Some(SeqCheck::Duplicate) if self.cfg.planted_bug != PlantedBug::SequenceDuplicates => {
                self.stats.duplicate_writes += 1;
                return Err(SubmitError::Duplicate);
            }
            Some(SeqCheck::Duplicate) => {}
            Some(SeqCheck::Gap) => {
                self.stats.rejected_entries += 1;
                return Err(SubmitError::Gap);
            }
            Some(SeqCheck::Next) => {}
        }
        if !self.make_room(w.value.len()) {
            self.stats.dropped_log_full += 1;
            return Err(SubmitError::Full);
        }
        // A fence the order has not reached, or of another owner, is
        // sequenced as a plain Bind: every replica applies what is stored,
        // so all drop it alike.
        let owner = bind_value.map_or(0, |b| b.owner);
        let named = bind_value.and_then(|b| b.fence);
        let any_owner = self.cfg.planted_bug == PlantedBug::FenceAnyOwner;
        let fence = named.filter(|f| {
            let owner = if any_owner {
                self.sessions.owner(f.node, f.session)
            } else {
                owner
            };
            self.sessions.can_fence(f, owner)
        });
        let value = if named.is_some() && fence.is_none() {
            self.stats.stale_fences += 1;
            // The owner alone: the value's first bytes.
            &w.value[..rzab_wire::BIND_LEN]
        } else {
            w.value
        };
        let meta = EntryMeta {
            zxid: Zxid::ZERO,
            key: w.key,
            session: w.session,
            seq: w.seq,
            origin,
            op: w.op,
            len: value.len() as u16,
        };
        let stored = self.log.insert(self.end, meta, value);
        debug_assert!(stored, "make_room guaranteed a slot");
        self.end += 1;
        if check == Some(SeqCheck::Next) {
            self.sessions.record(origin, w.session, w.seq);
            if bind {
                self.sessions.bound(origin, w.session, owner);
            }
            // From here on in the order, the fenced binding's writes are
            // duplicates.
            if let Some(f) = fence
                && self.cfg.planted_bug != PlantedBug::IgnoreFences
            {
                self.sessions.fence(&f);
            }
        }
        Ok(())
    }

    /// Makes room for a value of `len` bytes: frees retained entries no one
    /// needs; if the log is still full and a follower is what holds it, that
    /// follower is marked lagging.
    fn make_room(&mut self, len: usize) -> bool {
        loop {
            let floor = self.retention_floor();
            if floor > self.log.start() {
                self.log.release_below(floor);
            }
            if self.log.fits(self.end, len) {
                return true;
            }
            // Full. Only a follower's retention can be given up, never
            // entries not yet applied here.
            if floor >= self.apply_lid {
                return false;
            }
            let Some(p) = self
                .peers
                .iter_mut()
                .find(|p| !p.lagging && p.received_lid == floor)
            else {
                return false;
            };
            p.lagging = true;
            self.stats.lagging_marked += 1;
        }
    }

    fn retention_floor(&self) -> u64 {
        let followers = self.peers.iter().filter(|p| !p.lagging).map(|p| p.received_lid);
        followers.fold(self.apply_lid, u64::min)
    }

    /// Gives every appended write its global id, taking one range from the
    /// shared sequencer. Returns how many were sequenced.
    pub fn sequence(&mut self, sequencer: &Sequencer) -> Result<usize, EpochExhausted> {
        let n = (self.end - self.seq_lid).min(u32::MAX as u64) as u32;
        if n == 0 {
            return Ok(0);
        }
        let first = sequencer.allocate(n)?;
        debug_assert_eq!(first.epoch(), self.cfg.epoch, "sequencer of another epoch");
        debug_assert!(first > self.last_zxid, "ids must increase within a lane");
        for i in 0..n as u64 {
            self.log.set_zxid(self.seq_lid + i, Zxid(first.0 + i));
        }
        self.seq_lid += n as u64;
        self.last_zxid = Zxid(first.0 + n as u64 - 1);
        self.stats.sequenced += n as u64;
        if self.peers.is_empty() {
            self.update_commit();
        }
        Ok(n as usize)
    }

    fn on_ack(&mut self, now: Time, from: NodeId, body: &AckBody, missing: Ranges<'_>) {
        let bcast_lid = self.bcast_lid;
        let commit_lid = self.commit_lid;
        let rto = self.rtt.rto();
        let Some(p) = self.peers.iter_mut().find(|p| p.node == from) else {
            self.stats.rejected_sender += 1;
            return;
        };
        self.stats.acks_recv += 1;
        // A follower cannot hold what was never sent; clamp hostile claims.
        let received = body.received_lid.min(bcast_lid);
        let moved = received > p.received_lid || body.window_end > p.window_end;
        if received > p.received_lid {
            self.stats.acked_lids_recv += received - p.received_lid;
            p.received_lid = received;
        }
        p.next_lid = p.next_lid.max(p.received_lid);
        prune_resend(&mut p.resend, p.received_lid);
        p.window_end = p.window_end.max(body.window_end);
        let (freed, prepare_rtt) = p.prepare_credits.free_to(body.prepare_seq, now);
        if moved || freed > 0 {
            p.progress_at = now;
        }
        let (_, commit_rtt) = p.commit_credits.free_to(body.commit_seq, now);
        p.commit_known = p.commit_known.max(body.commit_lid.min(commit_lid));
        if !missing.is_empty() {
            self.stats.nacks_recv += 1;
            // Acks keep reporting a gap until it is filled: take one report
            // per quarter timeout, and resend exactly what it lists.
            let quiet = p.resend_at.is_none_or(|at| now >= at + crate::Span(rto.0 / 4));
            if quiet {
                p.resend.clear();
                for r in missing.take(MAX_RESEND_RANGES) {
                    let (first, end) = (r.first.max(p.received_lid), r.end().min(p.next_lid));
                    if first < end {
                        let count = (end - first).min(u32::MAX as u64) as u32;
                        p.resend.push(Range { first, count });
                    }
                }
                p.resend_at = Some(now);
            }
        }
        for sample in [prepare_rtt, commit_rtt].into_iter().flatten() {
            self.rtt.sample(sample);
        }
        self.update_commit();
    }

    fn update_commit(&mut self) {
        self.points.clear();
        self.points
            .extend(self.peers.iter().filter(|p| p.voter).map(|p| p.received_lid));
        let voters = self.peers.len() + 1;
        let point = committed_point_of(voters, self.seq_lid, &self.points, &mut self.scratch);
        if point > self.commit_lid {
            self.stats.committed += point - self.commit_lid;
            self.commit_lid = point;
        }
    }

    /// Writes the next datagram to send into `buf` (sized to the MTU).
    /// Call until it returns `None` each turn.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let t = self
            .transmit_fresh(now, buf)
            .or_else(|| self.transmit_catch_up(now, buf))
            .or_else(|| self.transmit_commit(now, buf));
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

    /// Broadcasts sequenced entries not yet sent to anyone, to the followers
    /// that are up to date and have credit. A multicast reaches the ones
    /// short of credit too: they count it as sent (and repair an overrun by
    /// gap report), so catch-up does not send it to them again.
    fn transmit_fresh(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        if self.bcast_lid == self.seq_lid {
            return None;
        }
        let first = self.bcast_lid;
        let multicast = self.cfg.broadcast == BroadcastMode::Multicast;
        let rto = self.rtt.rto();
        let mut set = NodeSet::EMPTY;
        let mut limit = self.seq_lid;
        let (mut up_to_date, mut waiting) = (0, false);
        for p in self.peers.iter().filter(|p| !p.lagging && p.next_lid == first) {
            up_to_date += 1;
            if p.can_take(first) {
                set.insert(p.node);
                limit = limit.min(p.window_end);
            } else if p.voter && now < p.progress_at + rto {
                // Responsive but short of credit: a multicast would overrun it.
                waiting = true;
            }
        }
        // A multicast reaches every follower, so it waits for the credit of
        // every responsive one (a silent one holds it back one timeout at
        // most) and needs enough followers to commit. Unicast sends to
        // whoever has credit: each follower's credits limit only its stream.
        let needed = if multicast {
            (majority(self.peers.len() + 1) - 1).min(up_to_date).max(1)
        } else {
            1
        };
        if set.len() < needed || (multicast && waiting) {
            self.stats.prepare_credit_stalls += 1;
            return None;
        }
        let (len, end) = self.encode_prepares(buf, first, limit)?;
        let (seq, commit_lid) = (self.prepare_msg_seq, self.commit_lid);
        for p in self
            .peers
            .iter_mut()
            .filter(|p| !p.lagging && p.next_lid == first)
        {
            if set.contains(p.node) {
                Self::sent_prepare(p, now, seq, end, commit_lid);
            } else if multicast && p.window_end >= end {
                if p.received_lid == p.next_lid {
                    p.progress_at = now;
                }
                p.next_lid = end;
            }
        }
        self.stats.prepare_msgs_sent += 1;
        self.stats.prepares_sent += end - first;
        self.bcast_lid = end;
        let dest = if multicast { Dest::Group } else { Dest::Set(set) };
        Some(Transmit { dest, len })
    }

    /// Sends retained entries to one follower: first the ranges it reported
    /// missing, then everything from its next lid if it is behind the
    /// broadcast point (after a credit shortage or a go-back).
    fn transmit_catch_up(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let n = self.peers.len();
        for i in 0..n {
            let idx = (self.catch_up_turn + i) % n;
            let p = &mut self.peers[idx];
            let resend = p.resend.first().copied();
            if p.lagging || (resend.is_none() && p.next_lid >= self.bcast_lid) {
                continue;
            }
            let first = resend.map_or(p.next_lid, |r| r.first);
            if first < self.log.start() {
                p.lagging = true;
                self.stats.lagging_marked += 1;
                continue;
            }
            if p.prepare_credits.is_full() || (resend.is_none() && p.window_end <= first) {
                self.stats.prepare_credit_stalls += 1;
                continue;
            }
            let limit = resend.map_or(p.window_end.min(self.bcast_lid), |r| r.end());
            let (len, end) = self.encode_prepares(buf, first, limit)?;
            let (seq, commit_lid) = (self.prepare_msg_seq, self.commit_lid);
            let p = &mut self.peers[idx];
            match resend {
                Some(r) if end < r.end() => {
                    p.resend[0] = Range {
                        first: end,
                        count: (r.end() - end) as u32,
                    }
                }
                Some(_) => {
                    p.resend.remove(0);
                }
                None => p.next_lid = end,
            }
            Self::charge_prepare(p, now, seq, commit_lid);
            self.stats.prepare_msgs_sent += 1;
            self.stats.prepares_sent += end - first;
            self.stats.catch_up_sent += end - first;
            self.catch_up_turn = idx + 1;
            return Some(Transmit {
                dest: Dest::Node(self.peers[idx].node),
                len,
            });
        }
        None
    }

    /// A Prepare went to `p`: it took a credit and carried the commit point.
    fn charge_prepare(p: &mut Peer, now: Time, seq: u64, commit_lid: u64) {
        p.prepare_credits.add(seq, now);
        if commit_lid > p.commit_sent {
            p.commit_sent = commit_lid;
            p.commit_sent_at = now;
        }
    }

    fn sent_prepare(p: &mut Peer, now: Time, seq: u64, end: u64, commit_lid: u64) {
        if p.received_lid == p.next_lid {
            // Nothing was outstanding: the retransmission clock starts now.
            p.progress_at = now;
        }
        p.next_lid = end;
        Self::charge_prepare(p, now, seq, commit_lid);
    }

    /// Encodes entries `[first, limit)` (as many as fit) into one Prepare.
    /// Returns the datagram length and one past the last lid encoded.
    fn encode_prepares(&mut self, buf: &mut [u8], first: u64, limit: u64) -> Option<(usize, u64)> {
        debug_assert!(first >= self.log.start() && limit <= self.seq_lid);
        let header = self.header(Kind::Prepare, self.prepare_msg_seq + 1);
        let mut enc = Encoder::prepare(buf, header, first, self.commit_lid).ok()?;
        let max = self.cfg.prepares_per_datagram() as u64;
        let mut lid = first;
        while lid < limit && lid - first < max {
            let e = self.log.get(lid)?;
            if !enc.push_prepare(&e.as_prepare()) {
                break;
            }
            lid += 1;
        }
        if lid == first {
            return None;
        }
        self.prepare_msg_seq += 1;
        Some((enc.finish(), lid))
    }

    /// Sends the commit point to followers that have not been told it.
    fn transmit_commit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let mut set = NodeSet::EMPTY;
        let mut first = self.commit_lid;
        let mut short = false;
        for p in self
            .peers
            .iter()
            .filter(|p| !p.lagging && p.commit_sent < self.commit_lid)
        {
            if p.commit_credits.is_full() {
                short = true;
                continue;
            }
            set.insert(p.node);
            first = first.min(p.commit_sent);
        }
        if set.is_empty() {
            self.stats.commit_credit_stalls += short as u64;
            return None;
        }
        // Ranges carry a u32 count; a longer gap sends its newest part (the
        // commit point is cumulative, only the end matters to followers).
        let first = first.max(self.commit_lid.saturating_sub(u32::MAX as u64));
        let range = Range {
            first,
            count: (self.commit_lid - first) as u32,
        };
        let seq = self.commit_msg_seq + 1;
        let mut enc = Encoder::commit(buf, self.header(Kind::Commit, seq)).ok()?;
        if !enc.push_range(range) {
            return None;
        }
        let len = enc.finish();
        self.commit_msg_seq = seq;
        for p in self.peers.iter_mut().filter(|p| set.contains(p.node)) {
            p.commit_sent = self.commit_lid;
            p.commit_sent_at = now;
            p.commit_credits.add(seq, now);
        }
        self.stats.commit_msgs_sent += 1;
        self.stats.commits_sent += range.count as u64;
        let dest = match self.cfg.broadcast {
            BroadcastMode::Multicast => Dest::Group,
            BroadcastMode::Unicast => Dest::Set(set),
        };
        Some(Transmit { dest, len })
    }

    /// The next committed entry to apply locally, if any. The runtime checks
    /// the apply gate, applies it, then calls [`advance_apply`].
    ///
    /// [`advance_apply`]: LeaderLane::advance_apply
    pub fn next_apply(&self) -> Option<EntryRef<'_>> {
        if self.apply_lid < self.commit_lid {
            self.log.get(self.apply_lid)
        } else {
            None
        }
    }

    pub fn advance_apply(&mut self) {
        debug_assert!(self.apply_lid < self.commit_lid);
        if let Some(e) = self.log.get(self.apply_lid) {
            self.last_applied_zxid = e.meta.zxid;
        }
        self.apply_lid += 1;
        self.stats.applied += 1;
    }

    /// Repairs followers that lack entries or the commit point and have made
    /// no progress for a retransmission timeout: go back to the first lid
    /// they lack, reset their credits, and probe a window that looks closed.
    ///
    /// Keyed on what a follower lacks, not on what is in flight: a message
    /// lost while the follower got its entries another way still holds a
    /// credit, and a lost window update leaves nothing in flight at all.
    pub fn handle_timeout(&mut self, now: Time) {
        let rto = self.rtt.rto();
        let go_back = self.cfg.planted_bug != PlantedBug::NoRetransmitTimeout;
        let (seq_lid, commit_lid) = (self.seq_lid, self.commit_lid);
        let fired = self.stats.retransmit_timeouts + self.stats.window_probes;
        for p in self.peers.iter_mut().filter(|p| !p.lagging) {
            if p.received_lid < seq_lid && now >= p.progress_at + rto {
                if go_back {
                    p.next_lid = p.received_lid;
                    p.resend.clear();
                    p.prepare_credits.reset();
                    self.stats.retransmit_timeouts += 1;
                }
                if p.window_end <= p.next_lid {
                    // The Ack that re-opened its window may be lost; one entry
                    // past it makes the follower advertise it again.
                    p.window_end = p.next_lid + 1;
                    self.stats.window_probes += 1;
                }
                p.progress_at = now;
            }
            if p.commit_known < commit_lid && now >= p.commit_sent_at + rto {
                p.commit_sent = p.commit_known;
                p.commit_credits.reset();
                p.commit_sent_at = now;
                self.stats.retransmit_timeouts += 1;
            }
        }
        if self.stats.retransmit_timeouts + self.stats.window_probes > fired {
            self.rtt.backed_off();
        }
    }

    /// When `handle_timeout` next has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let rto = self.rtt.rto();
        let live = self.peers.iter().filter(|p| !p.lagging);
        let prepare = live
            .clone()
            .filter(|p| p.received_lid < self.seq_lid)
            .map(|p| p.progress_at + rto);
        let commit = live
            .filter(|p| p.commit_known < self.commit_lid)
            .map(|p| p.commit_sent_at + rto);
        prepare.chain(commit).min()
    }

    fn check_invariants(&self) {
        debug_assert!(self.log.start() <= self.apply_lid);
        debug_assert!(self.apply_lid <= self.commit_lid);
        debug_assert!(self.commit_lid <= self.bcast_lid || self.peers.is_empty());
        debug_assert!(self.commit_lid <= self.seq_lid);
        debug_assert!(self.bcast_lid <= self.seq_lid && self.seq_lid <= self.end);
        debug_assert!(self.end <= self.log.end());
        debug_assert!(
            self.peers
                .iter()
                .all(|p| p.received_lid <= p.next_lid && p.next_lid <= self.bcast_lid)
        );
    }
}

#[cfg(test)]
mod tests;
