use crate::reader::Reader;
use crate::{DecodeError, NodeId};

/// First two bytes of every rzab datagram ("RZ").
pub const MAGIC: u16 = u16::from_le_bytes(*b"RZ");
/// Wire format version; a receiver drops any other.
pub const VERSION: u8 = 4;
/// Bytes of the common header.
pub const HEADER_LEN: usize = 24;

/// The message kinds. Values are stable wire constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Follower lane to leader lane: writes issued by the follower's sessions.
    Write = 1,
    /// Leader lane to its followers: sequenced writes, with the commit point.
    Prepare = 2,
    /// Follower lane to leader lane: cumulative receipt, credits, missing ranges.
    Ack = 3,
    /// Leader lane to its followers: committed lid ranges.
    Commit = 4,
    /// Any node to any node at start-up: who it has heard, whether it is ready.
    Hello = 5,
    /// Control plane (lane 255): see [`crate::ControlBody`].
    Heartbeat = 6,
    Status = 7,
    VoteRequest = 8,
    Vote = 9,
    NewLeader = 10,
    Transfer = 11,
    TransferAck = 12,
    NewLeaderAck = 13,
    StartEpoch = 14,
    Join = 15,
    JoinInfo = 16,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::Write,
        Kind::Prepare,
        Kind::Ack,
        Kind::Commit,
        Kind::Hello,
        Kind::Heartbeat,
        Kind::Status,
        Kind::VoteRequest,
        Kind::Vote,
        Kind::NewLeader,
        Kind::Transfer,
        Kind::TransferAck,
        Kind::NewLeaderAck,
        Kind::StartEpoch,
        Kind::Join,
        Kind::JoinInfo,
    ];

    /// Whether messages of this kind belong to the control plane.
    pub fn is_control(self) -> bool {
        self as u8 >= Kind::Heartbeat as u8
    }

    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Prepare => "prepare",
            Kind::Ack => "ack",
            Kind::Commit => "commit",
            Kind::Hello => "hello",
            Kind::Heartbeat => "heartbeat",
            Kind::Status => "status",
            Kind::VoteRequest => "vote-request",
            Kind::Vote => "vote",
            Kind::NewLeader => "new-leader",
            Kind::Transfer => "transfer",
            Kind::TransferAck => "transfer-ack",
            Kind::NewLeaderAck => "new-leader-ack",
            Kind::StartEpoch => "start-epoch",
            Kind::Join => "join",
            Kind::JoinInfo => "join-info",
        }
    }
}

/// The common header of every datagram.
///
/// Layout (little-endian): magic u16, version u8, kind u8, cluster id u32,
/// epoch u32, sender u8, lane u8, entry count u16, stream sequence u64.
/// `seq` numbers the messages of one (sender, lane, kind) stream so that a
/// receiver can return credits for what it has consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub cluster_id: u32,
    pub epoch: u32,
    pub sender: NodeId,
    pub lane: u8,
    pub count: u16,
    pub seq: u64,
}

impl Header {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        let magic = r.u16()?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let kind_byte = r.u8()?;
        let kind = Kind::from_u8(kind_byte).ok_or(DecodeError::BadKind(kind_byte))?;
        Ok(Header {
            kind,
            cluster_id: r.u32()?,
            epoch: r.u32()?,
            sender: r.u8()?,
            lane: r.u8()?,
            count: r.u16()?,
            seq: r.u64()?,
        })
    }

    pub(crate) fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2] = VERSION;
        out[3] = self.kind as u8;
        out[4..8].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.epoch.to_le_bytes());
        out[12] = self.sender;
        out[13] = self.lane;
        out[14..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
    }

    /// Byte offset of `count` in the header, patched when an encoder finishes.
    pub(crate) const COUNT_OFFSET: usize = 14;
}
