//! The control plane's messages: heartbeats, elections, recovery and state
//! transfer. They travel on each node's control endpoint (lane
//! [`CONTROL_LANE`]), apart from the lanes' data path.

use crate::reader::Reader;
use crate::{DecodeError, NodeId, Op, Zxid};

/// The lane number control messages carry in their header.
pub const CONTROL_LANE: u8 = u8::MAX;

/// Fixed-size control bodies (everything but [`Transfer`](ControlMsg::Transfer)
/// items and [`JoinInfo`](ControlMsg::JoinInfo) lids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlBody {
    /// Leader to every member, periodically: it is alive and what it applied.
    Heartbeat { applied: Zxid },
    /// Member to leader, answering a heartbeat.
    Status {
        applied: Zxid,
        accepted_epoch: u32,
        /// Its lanes run and it serves.
        voter: bool,
        /// It installed the new leader's history as a voter and waits for
        /// StartEpoch (a learner never sets this).
        synced: bool,
    },
    /// Candidate for the header's epoch to every member.
    VoteRequest { current_epoch: u32, applied: Zxid },
    /// Answer to a vote request; a granted vote is followed by a transfer of
    /// the `held` entries the voter has beyond the candidate's applied point.
    Vote {
        granted: bool,
        current_epoch: u32,
        applied: Zxid,
        held: u64,
    },
    /// New leader to a voter: a transfer of the history follows (entries, or a
    /// snapshot when `snapshot`), then the epoch's uncommitted tail.
    NewLeader { applied: Zxid, snapshot: bool },
    /// Receiver of a transfer: the first `chunks` chunks of `stream` arrived.
    TransferAck { stream: u32, chunks: u32 },
    /// Voter to new leader: the history is installed.
    NewLeaderAck { applied: Zxid },
    /// New leader to its followers: the epoch's history is committed; apply it
    /// and start the lanes. `base` is the last id of the history.
    StartEpoch { base: Zxid },
    /// A node that must catch up (restarted, or missed an election) to the
    /// leader. `request` names this attempt: answers and transfers for an
    /// earlier one (a previous life of the node) are told apart by it.
    Join {
        applied: Zxid,
        amnesiac: bool,
        request: u32,
    },
}

/// One item of a state transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A write, with its lane and session (history and recovery tails).
    History(HistoryItem<'a>),
    /// A key's current value (a snapshot).
    Snapshot(SnapshotItem<'a>),
    /// A session's last applied write (part of every snapshot).
    Session(SessionItem),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryItem<'a> {
    pub zxid: Zxid,
    pub lane: u8,
    pub origin: NodeId,
    pub op: Op,
    pub session: u32,
    pub seq: u64,
    pub key: u64,
    pub value: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotItem<'a> {
    pub key: u64,
    pub zxid: Zxid,
    pub value: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionItem {
    pub origin: NodeId,
    pub lane: u8,
    pub session: u32,
    pub seq: u64,
    /// The client session that owns the session's binding (0: none).
    pub owner: u64,
}

/// A decoded control message.
#[derive(Clone, Copy, Debug)]
pub enum ControlMsg<'a> {
    Fixed(ControlBody),
    /// Chunk `chunk` of transfer `stream`; `last` ends it.
    Transfer {
        stream: u32,
        chunk: u32,
        last: bool,
        items: Items<'a>,
    },
    /// Leader to a joining node: its lanes start at these lids, after the
    /// snapshot (or history) up to `base` that follows as a transfer.
    JoinInfo {
        /// The join request answered.
        request: u32,
        base: Zxid,
        lids: Lids<'a>,
    },
}

pub(crate) const ITEM_HISTORY: u8 = 1;
pub(crate) const ITEM_SNAPSHOT: u8 = 2;
pub(crate) const ITEM_SESSION: u8 = 3;

/// Fixed bytes of each item before its value (kind byte included).
pub const HISTORY_ITEM_FIXED: usize = 1 + 8 + 1 + 1 + 1 + 4 + 8 + 8 + 2;
pub const SNAPSHOT_ITEM_FIXED: usize = 1 + 8 + 8 + 2;
pub const SESSION_ITEM_LEN: usize = 1 + 1 + 1 + 4 + 8 + 8;

pub(crate) fn parse_item<'a>(r: &mut Reader<'a>) -> Result<Item<'a>, DecodeError> {
    match r.u8()? {
        ITEM_HISTORY => {
            let zxid = Zxid(r.u64()?);
            let lane = r.u8()?;
            let origin = r.u8()?;
            let op = Op::from_u8(r.u8()?)?;
            let session = r.u32()?;
            let seq = r.u64()?;
            let key = r.u64()?;
            let len = r.u16()? as usize;
            if op == Op::Delete && len != 0 {
                return Err(DecodeError::DeleteWithValue(len));
            }
            let value = r.bytes(len)?;
            if op == Op::Bind {
                crate::BindValue::decode(value)?;
            }
            Ok(Item::History(HistoryItem {
                zxid,
                lane,
                origin,
                op,
                session,
                seq,
                key,
                value,
            }))
        }
        ITEM_SNAPSHOT => {
            let key = r.u64()?;
            let zxid = Zxid(r.u64()?);
            let len = r.u16()? as usize;
            Ok(Item::Snapshot(SnapshotItem {
                key,
                zxid,
                value: r.bytes(len)?,
            }))
        }
        ITEM_SESSION => Ok(Item::Session(SessionItem {
            origin: r.u8()?,
            lane: r.u8()?,
            session: r.u32()?,
            seq: r.u64()?,
            owner: r.u64()?,
        })),
        other => Err(DecodeError::BadItem(other)),
    }
}

pub(crate) fn parse_lid(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    r.u64()
}

/// Iterator over validated transfer items.
#[derive(Clone, Copy, Debug)]
pub struct Items<'a> {
    bytes: &'a [u8],
    left: u16,
}

impl<'a> Items<'a> {
    pub(crate) fn new(bytes: &'a [u8], left: u16) -> Self {
        Items { bytes, left }
    }

    pub fn len(&self) -> usize {
        self.left as usize
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.left == 0 {
            return None;
        }
        let mut r = Reader::new(self.bytes);
        let item = parse_item(&mut r).ok()?;
        self.bytes = &self.bytes[self.bytes.len() - r.remaining()..];
        self.left -= 1;
        Some(item)
    }
}

/// Iterator over validated lane lids.
#[derive(Clone, Copy, Debug)]
pub struct Lids<'a> {
    bytes: &'a [u8],
}

impl<'a> Lids<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Lids { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Iterator for Lids<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let (head, rest) = self.bytes.split_first_chunk::<8>()?;
        self.bytes = rest;
        Some(u64::from_le_bytes(*head))
    }
}

/// Reads the 16-byte fixed body of control kind `kind`.
pub(crate) fn parse_fixed(kind: crate::Kind, r: &mut Reader<'_>) -> Result<ControlBody, DecodeError> {
    use crate::Kind as K;
    let (a, b, c) = (r.u64()?, r.u32()?, r.u32()?);
    Ok(match kind {
        K::Heartbeat => ControlBody::Heartbeat { applied: Zxid(a) },
        K::Status => ControlBody::Status {
            applied: Zxid(a),
            accepted_epoch: b,
            voter: c & 1 != 0,
            synced: c & 2 != 0,
        },
        K::VoteRequest => ControlBody::VoteRequest {
            applied: Zxid(a),
            current_epoch: b,
        },
        K::Vote => {
            let held = r.u64()?;
            ControlBody::Vote {
                applied: Zxid(a),
                current_epoch: b,
                granted: c & 1 != 0,
                held,
            }
        }
        K::NewLeader => ControlBody::NewLeader {
            applied: Zxid(a),
            snapshot: b & 1 != 0,
        },
        K::TransferAck => ControlBody::TransferAck { stream: b, chunks: c },
        K::NewLeaderAck => ControlBody::NewLeaderAck { applied: Zxid(a) },
        K::StartEpoch => ControlBody::StartEpoch { base: Zxid(a) },
        K::Join => ControlBody::Join {
            applied: Zxid(a),
            amnesiac: b & 1 != 0,
            request: c,
        },
        _ => return Err(DecodeError::BadKind(kind as u8)),
    })
}

/// The fixed body's words (u64, u32, u32[, u64 for Vote]) of a control message.
pub(crate) fn fixed_words(body: &ControlBody) -> (crate::Kind, u64, u32, u32, Option<u64>) {
    use crate::Kind as K;
    match *body {
        ControlBody::Heartbeat { applied } => (K::Heartbeat, applied.0, 0, 0, None),
        ControlBody::Status {
            applied,
            accepted_epoch,
            voter,
            synced,
        } => (
            K::Status,
            applied.0,
            accepted_epoch,
            voter as u32 | (synced as u32) << 1,
            None,
        ),
        ControlBody::VoteRequest {
            current_epoch,
            applied,
        } => (K::VoteRequest, applied.0, current_epoch, 0, None),
        ControlBody::Vote {
            granted,
            current_epoch,
            applied,
            held,
        } => (K::Vote, applied.0, current_epoch, granted as u32, Some(held)),
        ControlBody::NewLeader { applied, snapshot } => (K::NewLeader, applied.0, snapshot as u32, 0, None),
        ControlBody::TransferAck { stream, chunks } => (K::TransferAck, 0, stream, chunks, None),
        ControlBody::NewLeaderAck { applied } => (K::NewLeaderAck, applied.0, 0, 0, None),
        ControlBody::StartEpoch { base } => (K::StartEpoch, base.0, 0, 0, None),
        ControlBody::Join {
            applied,
            amnesiac,
            request,
        } => (K::Join, applied.0, amnesiac as u32, request, None),
    }
}
