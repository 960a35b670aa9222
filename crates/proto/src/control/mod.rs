//! The node-level control plane: failure detection, leader election,
//! recovery of the committed history, and (re)joining nodes. It decides;
//! the node acts through [`Host`] (pause and start lanes, apply, install a
//! snapshot). Like the lanes it is sans-IO: messages and time in, messages
//! and host calls out, randomness from an injected seed.
//!
//! - **Heartbeats**: the leader sends one every `heartbeat`; a follower that
//!   hears none for a randomized election timeout starts an election.
//! - **Election** (Raft-style votes for a new, higher epoch): a voter
//!   promises the epoch and grants only a candidate whose (current epoch,
//!   applied id) is at least its own; granting pauses its lanes and sends the
//!   candidate the entries it holds beyond the candidate's applied point.
//! - **Recovery**: the winner's history is its applied state plus the union
//!   of the held entries of its epoch's voters (anything committed is held by
//!   a quorum, so by one of them; an id nobody holds cannot have committed
//!   and is skipped by everyone alike). It sends each voter what it lacks
//!   (history entries, or a snapshot) and that tail; once a quorum has
//!   installed it, the history is committed: everyone applies it, and the
//!   lanes start the new epoch.
//! - **Joining**: a node that restarted without state, or missed an
//!   election, joins the running epoch as a non-voting learner: the leader
//!   adds it to its lanes from their current lids, sends it a snapshot (or
//!   the history it missed) up to a point that covers everything below those
//!   lids, and promotes it to a voter once it has caught up.

mod election;
mod join;
mod sync;

use crate::transfer::{Incoming, Outgoing, Payload, chunk_header};
use crate::{Dest, NodeSet, OwnedEntry, Snapshot, Span, Time, Transmit};
use rzab_wire::{Body, ControlBody, ControlMsg, Encoder, Header, Kind, Message, NodeId, Zxid};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What the control plane needs from the node it runs on.
pub trait Host {
    /// The last id applied on this node.
    fn applied(&self) -> Zxid;
    /// Stops the lanes (their epoch is over) and returns the entries they
    /// hold but have not applied, in id order. Nothing if they are stopped.
    fn pause_lanes(&mut self) -> Vec<OwnedEntry>;
    /// The entries applied after `after`, if all are still retained.
    fn history_after(&self, after: Zxid) -> Option<Vec<OwnedEntry>>;
    /// The store and session table now (lanes paused: exact).
    fn snapshot(&mut self) -> Snapshot;
    /// A snapshot while lanes run (fuzzy: items may be newer than its
    /// base). `None`: being taken, ask again later (a large store takes a
    /// while; the control plane must keep its heartbeats meanwhile).
    fn snapshot_async(&mut self) -> Option<Snapshot> {
        Some(self.snapshot())
    }
    /// Applies committed entries in id order (ids already applied are skipped).
    fn apply(&mut self, entries: &[OwnedEntry]);
    /// Moves the applied point up to `to` (a join's base: it may be an
    /// epoch's base, past the last entry applied).
    fn advance_to(&mut self, to: Zxid);
    /// Replaces the store and session table with a snapshot.
    fn install(&mut self, snapshot: Snapshot);
    /// Starts the lanes.
    fn start_lanes(&mut self, start: &LaneStart);
    /// (Leader) adds `node` to the running lanes as a learner; returns each
    /// lane's starting lid, the highest id below them (its snapshot must
    /// cover it) and the highest id given so far (writes appended but not
    /// yet sequenced must be sequenced first). With `fence`, the lanes
    /// refuse its writes until it is promoted.
    fn add_learner(&mut self, node: NodeId, fence: bool) -> Option<(Vec<u64>, Zxid, Zxid)>;
    /// (Leader) lets a caught-up learner count in quorums; false if a lane
    /// refused (entries below its join point are not committed yet).
    fn promote(&mut self, node: NodeId) -> bool;
    /// (Learner, promoted) the node's sessions may issue from now on.
    fn serve(&mut self);
    /// (Learner) its snapshot or history is installed: lanes started with
    /// `LaneStart::lids` (which only receive until now) may apply.
    fn resume_lanes(&mut self) {}
}

/// How the lanes start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneStart {
    pub epoch: u32,
    pub leader: NodeId,
    /// Each lane's first lid (a joining node, whose lanes receive but do
    /// not apply until `Host::resume_lanes`); `None`: all from 0.
    pub lids: Option<Vec<u64>>,
    /// (Leader) the followers whose acks count from the start.
    pub voters: NodeSet,
    /// Whether this node's sessions may issue (false for a learner).
    pub serving: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    pub cluster_id: u32,
    pub node: NodeId,
    pub members: NodeSet,
    pub mtu: usize,
    /// Leader heartbeat period.
    pub heartbeat: Span,
    /// Silence from the leader after which an election starts, randomized
    /// in `[t, 2t)` so that candidates rarely collide.
    pub election_timeout: Span,
    /// Retransmission timeout of state transfers.
    pub transfer_timeout: Span,
    /// Transfer chunks in flight.
    pub transfer_window: u32,
    pub seed: u64,
    /// A deliberate bug, for the simulator to show its checkers catch it.
    pub planted_bug: crate::PlantedBug,
}

impl ControlConfig {
    pub fn new(cluster_id: u32, node: NodeId, members: NodeSet) -> ControlConfig {
        ControlConfig {
            cluster_id,
            node,
            members,
            mtu: 4096,
            heartbeat: Span::from_millis(5),
            election_timeout: Span::from_millis(30),
            transfer_timeout: Span::from_millis(10),
            transfer_window: 64,
            seed: node as u64,
            planted_bug: crate::PlantedBug::None,
        }
    }

    fn quorum(&self) -> usize {
        crate::quorum::majority(self.members.len())
    }

    fn others(&self) -> NodeSet {
        self.members.without(self.node)
    }
}

/// What the control plane did (for stats and the simulator's checkers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlStats {
    pub heartbeats_sent: u64,
    pub heartbeats_recv: u64,
    pub elections_started: u64,
    pub elections_won: u64,
    pub votes_granted: u64,
    pub votes_denied: u64,
    pub epochs_started: u64,
    pub step_downs: u64,
    pub joins_requested: u64,
    pub joins_served: u64,
    pub promotions: u64,
    pub snapshots_sent: u64,
    pub diffs_sent: u64,
    pub transfer_chunks_sent: u64,
    pub rejected: u64,
}

/// Transfer purposes (the high bits of a stream id).
const HELD: u32 = 1;
const SYNC: u32 = 2;
const JOIN_DIFF: u32 = 3;
const JOIN_SNAPSHOT: u32 = 4;

fn stream(purpose: u32, epoch: u32) -> u32 {
    (purpose << 28) | (epoch & 0x0FFF_FFFF)
}

fn purpose(stream: u32) -> u32 {
    stream >> 28
}

/// Where this node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Lanes run in `current_epoch`; the leader is heard from.
    Following {
        leader: NodeId,
        deadline: Time,
    },
    Leading(Leading),
    /// No leader known; lanes stopped. An election starts at the deadline.
    Waiting {
        deadline: Time,
    },
    Candidate(Candidate),
    /// Voted for `candidate` in `accepted_epoch`; lanes stopped.
    Voted {
        candidate: NodeId,
        deadline: Time,
    },
    /// Taking a new leader's history (`leader_applied`: its applied id).
    Syncing {
        leader: NodeId,
        leader_applied: Zxid,
        snapshot: bool,
        acked: bool,
        deadline: Time,
    },
    /// Won; waiting for a quorum to install the history.
    LeaderSync {
        acked: NodeSet,
        granted: NodeSet,
        deadline: Time,
    },
    /// Catching up with a running epoch; does not vote until promoted.
    Learner {
        leader: Option<NodeId>,
        asked_at: Option<Time>,
        base: Option<Zxid>,
        epoch: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Leading {
    next_heartbeat: Time,
    /// When each follower was last heard from.
    heard: BTreeMap<NodeId, Time>,
    /// Followers that installed this epoch's history (they need StartEpoch).
    synced: NodeSet,
    /// Nodes joining: what they must catch up to before promotion.
    joins: BTreeMap<NodeId, Join>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Join {
    lids: Vec<u64>,
    /// Their snapshot must cover this id.
    below: Zxid,
    /// Promotion waits until they applied this far: every write of theirs
    /// sequenced before the fence (an amnesiac's old incarnation) is in.
    sequenced: Zxid,
    applied: Zxid,
    amnesiac: bool,
    /// The learner's request (a new one restarts the join).
    request: u32,
    /// Set once the transfer is sent: its base, and the point to promote
    /// at (once the learner has applied this far).
    target: Option<(Zxid, Zxid)>,
    /// Promoted (its lanes count it); StartEpoch sent until it runs.
    promoted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Candidate {
    granted: NodeSet,
    denied: NodeSet,
    /// Voters whose held entries are still arriving.
    expecting: NodeSet,
    /// Each granting voter's applied id.
    applied: BTreeMap<NodeId, Zxid>,
    /// The union of held entries beyond this node's applied id.
    held: BTreeMap<Zxid, OwnedEntry>,
    deadline: Time,
}

/// A fixed message waiting to be sent.
struct Pending {
    to: NodeSet,
    epoch: u32,
    msg: PendingMsg,
}

enum PendingMsg {
    Fixed(ControlBody),
    JoinInfo {
        request: u32,
        base: Zxid,
        lids: Vec<u64>,
    },
}

pub struct Control {
    cfg: ControlConfig,
    rng: u64,
    /// The highest epoch this node promised (it votes and follows no lower).
    accepted_epoch: u32,
    /// The epoch whose history this node took (0: none, it lost its state).
    current_epoch: u32,
    voted_for: Option<NodeId>,
    /// May vote: false for a node that restarted without state, until promoted.
    voter: bool,
    /// Lanes run (and the node serves) in `current_epoch`.
    running: bool,
    state: State,
    /// When a transfer last made progress (phases wait while it does).
    transfer_progress_at: Time,
    /// This node's current join request (as a learner).
    join_request: u32,
    /// The join's snapshot or history is installed (promotion may follow).
    join_installed: bool,
    /// Entries this node holds beyond its applied point, which a recovery
    /// may need (any may be committed): what its lanes held when they
    /// stopped, or a new leader's uncommitted history it took (or, leading,
    /// proposes). Kept through failed elections; replaced or applied when a
    /// new epoch's history is installed.
    tail: Vec<OwnedEntry>,
    last_leader_contact: Time,
    outbox: VecDeque<Pending>,
    sending: Vec<Outgoing>,
    receiving: BTreeMap<(NodeId, u32), Incoming>,
    /// Transfers received whole (and their chunk counts): a repeated last
    /// chunk is acknowledged again, never applied twice.
    finished: BTreeMap<(NodeId, u32), u32>,
    turn: usize,
    /// (epoch, leader) each time this node became leader, for checkers.
    pub leaderships: Vec<(u32, NodeId)>,
    stats: ControlStats,
}

impl Control {
    /// A node of a cluster starting fresh together (epoch 1, `leader` leads).
    pub fn new(cfg: ControlConfig, leader: NodeId, now: Time) -> Control {
        let mut c = Control::blank(cfg);
        c.accepted_epoch = 1;
        c.current_epoch = 1;
        c.voter = true;
        c.running = true;
        c.last_leader_contact = now;
        c.state = if leader == c.cfg.node {
            c.leaderships.push((1, leader));
            // At a cluster's start every other member follows epoch 1.
            State::Leading(c.new_leading(now, c.cfg.others()))
        } else {
            let deadline = c.election_deadline(now);
            State::Following { leader, deadline }
        };
        c
    }

    /// A node that restarted without its state into a running cluster: it
    /// joins as a learner and votes only once promoted.
    pub fn new_learner(cfg: ControlConfig) -> Control {
        let mut c = Control::blank(cfg);
        c.voter = c.cfg.planted_bug == crate::PlantedBug::AmnesiacVotes;
        c.state = State::Learner {
            leader: None,
            asked_at: None,
            base: None,
            epoch: 0,
        };
        c.join_request = c.new_join_request();
        c
    }

    fn blank(cfg: ControlConfig) -> Control {
        let rng = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Control {
            cfg,
            rng,
            accepted_epoch: 0,
            current_epoch: 0,
            voted_for: None,
            voter: false,
            running: false,
            state: State::Waiting {
                deadline: Time::NEVER,
            },
            tail: Vec::new(),
            join_request: 0,
            transfer_progress_at: Time::ZERO,
            join_installed: false,
            last_leader_contact: Time::ZERO,
            outbox: VecDeque::new(),
            sending: Vec::new(),
            receiving: BTreeMap::new(),
            finished: BTreeMap::new(),
            turn: 0,
            leaderships: Vec::new(),
            stats: ControlStats::default(),
        }
    }

    pub fn stats(&self) -> &ControlStats {
        &self.stats
    }

    pub fn epoch(&self) -> u32 {
        self.current_epoch
    }

    /// Whether this node votes: false after a restart without state, until
    /// it has caught up and been promoted.
    pub fn voter(&self) -> bool {
        self.voter
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.state, State::Leading(_))
    }

    /// The leader this node follows (itself when leading), if any.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.state {
            State::Following { leader, .. } => Some(*leader),
            State::Leading(_) => Some(self.cfg.node),
            _ => None,
        }
    }

    /// Whether the lanes run and the node serves its sessions.
    pub fn serving(&self) -> bool {
        self.running && matches!(self.state, State::Following { .. } | State::Leading(_))
    }

    /// A short name of the state (diagnostics).
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Following { .. } => "following",
            State::Leading(_) => "leading",
            State::Waiting { .. } => "waiting",
            State::Candidate(_) => "candidate",
            State::Voted { .. } => "voted",
            State::Syncing { .. } => "syncing",
            State::LeaderSync { .. } => "leader-sync",
            State::Learner { .. } => "learner",
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic from the seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn election_deadline(&mut self, now: Time) -> Time {
        let t = self.cfg.election_timeout.0.max(1);
        now + Span(t + self.random() % t)
    }

    /// A shorter random wait, in `[t/2, t)`, for a candidacy and the retry
    /// after one failed: no leader is known, so there is none to wait out,
    /// and a split vote costs one of these rather than two full timeouts.
    fn retry_deadline(&mut self, now: Time) -> Time {
        let half = (self.cfg.election_timeout.0 / 2).max(1);
        now + Span(half + self.random() % half)
    }

    fn send(&mut self, to: NodeSet, epoch: u32, body: ControlBody) {
        self.outbox.push_back(Pending {
            to,
            epoch,
            msg: PendingMsg::Fixed(body),
        });
    }

    fn send_to(&mut self, to: NodeId, epoch: u32, body: ControlBody) {
        self.send(NodeSet::from_ids([to]), epoch, body);
    }

    /// Starts sending `payload` to `to` as transfer `stream`.
    fn transfer(&mut self, to: NodeId, stream: u32, epoch: u32, payload: Arc<Payload>) {
        let header = chunk_header(self.cfg.cluster_id, epoch, self.cfg.node);
        self.sending.retain(|o| !(o.to == to && o.stream == stream));
        self.sending
            .push(Outgoing::new(header, to, stream, payload, self.cfg.mtu));
    }

    /// Drops transfers being received (a new phase begins).
    fn forget_transfers(&mut self) {
        self.receiving.clear();
        self.finished.clear();
    }

    /// Whether an outgoing transfer still serves the current state (others
    /// stop: their receiver moved on, or crashed and came back as another).
    fn transfer_wanted(&self, to: NodeId, stream: u32) -> bool {
        let low = |x: u32| x & 0x0FFF_FFFF;
        match (purpose(stream), &self.state) {
            (HELD, State::Voted { candidate, .. }) => *candidate == to,
            (SYNC, State::LeaderSync { .. }) => true,
            (SYNC, State::Leading(l)) => !l.synced.contains(to) && !l.joins.contains_key(&to),
            (JOIN_DIFF | JOIN_SNAPSHOT, State::Leading(l)) => l
                .joins
                .get(&to)
                .is_some_and(|j| !j.promoted && low(j.request) == low(stream)),
            _ => false,
        }
    }

    /// Stops the lanes if they run; what they held joins the tail (a
    /// recovery may need it: it may be committed).
    fn stop_lanes(&mut self, host: &mut impl Host) {
        if self.running {
            self.tail.extend(host.pause_lanes());
            self.tail.sort_by_key(|e| e.zxid);
            self.tail.dedup_by_key(|e| e.zxid);
        }
        self.running = false;
    }

    /// Handles one decoded control datagram.
    pub fn handle(&mut self, now: Time, host: &mut impl Host, msg: &Message<'_>) {
        let h = msg.header;
        let from = h.sender;
        if h.cluster_id != self.cfg.cluster_id || from == self.cfg.node || !self.cfg.members.contains(from) {
            self.stats.rejected += 1;
            return;
        }
        match msg.body {
            Body::Control(ControlMsg::Fixed(b)) => self.on_fixed(now, host, from, h.epoch, b),
            Body::Control(ControlMsg::Transfer {
                stream,
                chunk,
                last,
                items,
            }) => self.on_chunk(now, host, from, h.epoch, stream, chunk, last, items),
            Body::Control(ControlMsg::JoinInfo { request, base, lids }) => {
                self.on_join_info(now, host, from, h.epoch, request, base, lids.collect())
            }
            _ => self.stats.rejected += 1,
        }
    }

    fn on_fixed(&mut self, now: Time, host: &mut impl Host, from: NodeId, epoch: u32, b: ControlBody) {
        match b {
            ControlBody::Heartbeat { .. } => self.on_heartbeat(now, host, from, epoch),
            ControlBody::Status {
                applied,
                accepted_epoch,
                voter,
                synced,
            } => self.on_status(now, host, from, epoch, applied, accepted_epoch, voter, synced),
            ControlBody::VoteRequest {
                current_epoch,
                applied,
            } => self.on_vote_request(now, host, from, epoch, current_epoch, applied),
            ControlBody::Vote {
                granted,
                current_epoch,
                applied,
                held,
            } => self.on_vote(now, host, from, epoch, granted, current_epoch, applied, held),
            ControlBody::NewLeader { applied, snapshot } => {
                self.on_new_leader(now, host, from, epoch, applied, snapshot)
            }
            ControlBody::TransferAck { stream, chunks } => {
                let out = self
                    .sending
                    .iter_mut()
                    .find(|o| o.to == from && o.stream == stream);
                if out.is_some_and(|o| o.on_ack(chunks, now)) {
                    self.transfer_progress_at = now;
                }
            }
            ControlBody::NewLeaderAck { .. } => self.on_new_leader_ack(now, host, from, epoch),
            ControlBody::StartEpoch { base } => self.on_start_epoch(now, host, from, epoch, base),
            ControlBody::Join {
                applied,
                amnesiac,
                request,
            } => self.on_join(now, host, from, epoch, applied, amnesiac, request),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_chunk(
        &mut self,
        now: Time,
        host: &mut impl Host,
        from: NodeId,
        epoch: u32,
        stream: u32,
        chunk: u32,
        last: bool,
        items: rzab_wire::Items<'_>,
    ) {
        if let Some(&chunks) = self.finished.get(&(from, stream)) {
            self.send_to(from, epoch, ControlBody::TransferAck { stream, chunks });
            return;
        }
        if !self.expects(from, stream) {
            self.stats.rejected += 1;
            return;
        }
        let inc = self.receiving.entry((from, stream)).or_default();
        if inc.on_chunk(chunk, last, items) {
            self.transfer_progress_at = now;
        }
        let (received, done) = (inc.received(), inc.done());
        self.send_to(
            from,
            epoch,
            ControlBody::TransferAck {
                stream,
                chunks: received,
            },
        );
        if done {
            self.finished.insert((from, stream), received);
            self.on_transfer_done(now, host, from, stream);
        }
    }

    /// Whether a transfer from `from` fits this node's state (others are
    /// refused: a member cannot make this node buffer what it never asked for).
    fn expects(&self, from: NodeId, stream: u32) -> bool {
        let epoch = stream & 0x0FFF_FFFF;
        match (&self.state, purpose(stream)) {
            (State::Candidate(c), HELD) => {
                c.granted.contains(from) && epoch == self.accepted_epoch & 0x0FFF_FFFF
            }
            (
                State::Voted { candidate, .. }
                | State::Syncing {
                    leader: candidate, ..
                },
                SYNC,
            ) => *candidate == from,
            (State::Learner { leader: Some(l), .. }, JOIN_DIFF | JOIN_SNAPSHOT) => {
                *l == from && stream & 0x0FFF_FFFF == self.join_request & 0x0FFF_FFFF
            }
            _ => false,
        }
    }

    fn on_transfer_done(&mut self, now: Time, host: &mut impl Host, from: NodeId, stream: u32) {
        match purpose(stream) {
            HELD => self.held_arrived(now, host, from, stream),
            SYNC => self.try_install_sync(now, host),
            JOIN_DIFF | JOIN_SNAPSHOT => self.join_arrived(now, host, from, stream),
            _ => {}
        }
    }

    /// Timers: heartbeats, election and phase deadlines, joins waiting on
    /// the applied point, transfer retransmissions (via `poll_transmit`).
    pub fn handle_timeout(&mut self, now: Time, host: &mut impl Host) {
        match &mut self.state {
            State::Leading(l) => {
                if now >= l.next_heartbeat {
                    l.next_heartbeat = now + self.cfg.heartbeat;
                    let applied = host.applied();
                    let others = self.cfg.others();
                    self.stats.heartbeats_sent += 1;
                    self.send(others, self.current_epoch, ControlBody::Heartbeat { applied });
                }
                self.leader_checks(now, host);
            }
            State::Following { deadline, .. } | State::Waiting { deadline } => {
                if now >= *deadline {
                    self.start_election(now, host);
                }
            }
            State::Voted { deadline, .. } => {
                let d = *deadline;
                if now >= self.phase_deadline(d) {
                    self.start_election(now, host);
                }
            }
            State::Syncing { deadline, .. } | State::LeaderSync { deadline, .. } => {
                let d = *deadline;
                if now >= self.phase_deadline(d) {
                    self.give_up(now, host);
                }
            }
            State::Candidate(c) => {
                let d = c.deadline;
                if now >= self.phase_deadline(d) {
                    self.give_up(now, host);
                }
            }
            State::Learner { .. } => self.learner_tick(now, host),
        }
    }

    /// A phase's deadline, pushed back while its transfers make progress (a
    /// large snapshot may take far longer than an election timeout).
    fn phase_deadline(&self, deadline: Time) -> Time {
        deadline.max(self.transfer_progress_at + Span(self.cfg.election_timeout.0 * 4))
    }

    /// A phase that waited too long: back to waiting (an election follows).
    fn give_up(&mut self, now: Time, host: &mut impl Host) {
        self.stop_lanes(host);
        let deadline = self.retry_deadline(now);
        self.state = State::Waiting { deadline };
    }

    /// When `handle_timeout` next has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let state = match &self.state {
            // Joins waiting for the applied point are served at heartbeats.
            State::Leading(l) => Some(l.next_heartbeat),
            State::Following { deadline, .. } | State::Waiting { deadline } => Some(*deadline),
            State::Voted { deadline, .. }
            | State::Syncing { deadline, .. }
            | State::LeaderSync { deadline, .. } => Some(self.phase_deadline(*deadline)),
            State::Candidate(c) => Some(self.phase_deadline(c.deadline)),
            State::Learner {
                leader,
                asked_at,
                base,
                ..
            } => {
                let ask = asked_at
                    .filter(|_| base.is_none())
                    .map(|t| t + self.cfg.election_timeout);
                let silence = leader.map(|_| self.last_leader_contact + self.learner_patience());
                [ask, silence].into_iter().flatten().min()
            }
        };
        let transfers = self
            .sending
            .iter()
            .filter_map(|o| o.deadline(self.cfg.transfer_timeout))
            .min();
        [state, transfers].into_iter().flatten().min()
    }

    /// Writes the next control datagram into `buf` (sized to the MTU).
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(p) = self.outbox.pop_front() {
            let header = Header {
                kind: Kind::Heartbeat,
                cluster_id: self.cfg.cluster_id,
                epoch: p.epoch,
                sender: self.cfg.node,
                lane: rzab_wire::CONTROL_LANE,
                count: 0,
                seq: 0,
            };
            let len = match &p.msg {
                PendingMsg::Fixed(b) => Encoder::control(buf, header, b).ok()?.finish(),
                PendingMsg::JoinInfo { request, base, lids } => {
                    Encoder::join_info(buf, header, *request, *base, lids)
                        .ok()?
                        .finish()
                }
            };
            let dest = match p.to.len() {
                1 => Dest::Node(p.to.iter().next()?),
                _ => Dest::Set(p.to),
            };
            return Some(Transmit { dest, len });
        }
        let stale: Vec<bool> = self
            .sending
            .iter()
            .map(|o| !self.transfer_wanted(o.to, o.stream))
            .collect();
        if stale.iter().any(|&s| s) {
            let mut it = stale.into_iter();
            self.sending.retain(|_| !it.next().unwrap_or(false));
        }
        let n = self.sending.len();
        for i in 0..n {
            let idx = (self.turn + i) % n;
            let o = &mut self.sending[idx];
            if let Some(chunk) = o.poll(now, self.cfg.transfer_timeout, self.cfg.transfer_window) {
                let len = chunk.len().min(buf.len());
                buf[..len].copy_from_slice(&chunk[..len]);
                let to = o.to;
                self.turn = idx + 1;
                self.stats.transfer_chunks_sent += 1;
                return Some(Transmit {
                    dest: Dest::Node(to),
                    len,
                });
            }
        }
        self.sending.retain(|o| !o.done());
        None
    }
}

#[cfg(test)]
mod tests;
