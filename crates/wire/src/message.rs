//! The decoded forms of the four message kinds. Entries borrow their value
//! bytes from the datagram, so decoding copies nothing.

use crate::reader::Reader;
use crate::{DecodeError, Header, NodeId, Zxid};

/// What a write does to its key.
///
/// `Put` and `Delete` act on the `u64` key (the built-in workload's).
/// The keyed ops carry an external client's variable-length key in the
/// value (`[key length u8][key][value]`); the entry's `key` is only its
/// first probe slot, and where the key lands is decided at apply time.
/// `Sync` changes nothing: applied at a replica, it shows that the replica
/// has applied everything committed before it was sequenced.
/// `Bind` changes no key either: it opens a new generation of its session's
/// seqs (a client connection taking the session slot). Its value is a
/// [`BindValue`]: the owning client session, and maybe a [`Fence`] naming an
/// earlier binding of that session whose writes not yet sequenced must
/// never be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Put = 1,
    Delete = 2,
    KeyedPut = 3,
    KeyedDelete = 4,
    Sync = 5,
    Bind = 6,
}

impl Op {
    pub(crate) fn from_u8(v: u8) -> Result<Op, DecodeError> {
        match v {
            1 => Ok(Op::Put),
            2 => Ok(Op::Delete),
            3 => Ok(Op::KeyedPut),
            4 => Ok(Op::KeyedDelete),
            5 => Ok(Op::Sync),
            6 => Ok(Op::Bind),
            other => Err(DecodeError::BadOp(other)),
        }
    }
}

/// A session's seq is its binding generation (the high 32 bits) and a
/// counter within it (the low 32): a client connection starts a generation
/// with a `Bind` whose counter is 0, so a stale binding's writes compare
/// below the new one's. Neither part wraps: a connection that used up its
/// counter reconnects, a slot that used up its generations is retired.
pub const GEN_SHIFT: u32 = 32;
/// The largest counter of a generation: a fence raises a session to it, so
/// no write uses it.
pub const GEN_COUNTER_MAX: u64 = (1 << GEN_SHIFT) - 1;
/// The largest generation.
pub const GEN_MAX: u64 = u64::MAX >> GEN_SHIFT;

/// The generation of `seq`.
pub fn seq_gen(seq: u64) -> u64 {
    seq >> GEN_SHIFT
}

/// The counter of `seq` within its generation.
pub fn seq_counter(seq: u64) -> u64 {
    seq & GEN_COUNTER_MAX
}

/// Whether `seq` is a generation's last, which no write takes: a session
/// recorded there was raised by a fence.
pub fn is_fence_end(seq: u64) -> bool {
    seq_counter(seq) == GEN_COUNTER_MAX
}

/// The seq of the `Bind` that opens generation `generation`.
pub fn gen_start(generation: u64) -> u64 {
    generation << GEN_SHIFT
}

/// The first seq of the generation after `seq`'s; `None` past [`GEN_MAX`].
pub fn next_gen_start(seq: u64) -> Option<u64> {
    let next = seq_gen(seq) + 1;
    (next <= GEN_MAX).then(|| gen_start(next))
}

/// The last seq of generation `generation`.
pub fn gen_end(generation: u64) -> u64 {
    gen_start(generation) | GEN_COUNTER_MAX
}

/// An earlier binding a `Bind` fences off: session `session` of node `node`
/// on the same lane, generation `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub node: NodeId,
    pub session: u32,
    pub generation: u64,
}

/// Bytes of a fence.
pub const FENCE_LEN: usize = 1 + 4 + 8;
/// Bytes of a `Bind`'s value: its owner, then maybe a fence.
pub const BIND_LEN: usize = 8;
pub const BIND_FENCE_LEN: usize = BIND_LEN + FENCE_LEN;

/// A `Bind`'s value: the client session that owns the new binding, and
/// the earlier binding of that session it fences off, if any. The leader
/// honours a fence only for a binding of the same owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindValue {
    pub owner: u64,
    pub fence: Option<Fence>,
}

impl BindValue {
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(BIND_FENCE_LEN);
        v.extend_from_slice(&self.owner.to_le_bytes());
        if let Some(f) = self.fence {
            v.extend_from_slice(&f.encode());
        }
        v
    }

    /// An error when `value` is neither an owner nor an owner and a fence.
    pub fn decode(value: &[u8]) -> Result<BindValue, DecodeError> {
        let (owner, fence) = match value.len() {
            BIND_LEN => (value, None),
            BIND_FENCE_LEN => (&value[..BIND_LEN], Some(Fence::decode(&value[BIND_LEN..])?)),
            n => return Err(DecodeError::BadBind(n)),
        };
        let mut o = [0u8; BIND_LEN];
        o.copy_from_slice(owner);
        Ok(BindValue {
            owner: u64::from_le_bytes(o),
            fence,
        })
    }
}

impl Fence {
    fn encode(&self) -> [u8; FENCE_LEN] {
        let mut b = [0u8; FENCE_LEN];
        b[0] = self.node;
        b[1..5].copy_from_slice(&self.session.to_le_bytes());
        b[5..].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    fn decode(value: &[u8]) -> Result<Fence, DecodeError> {
        let Ok(b) = <[u8; FENCE_LEN]>::try_from(value) else {
            return Err(DecodeError::BadBind(value.len()));
        };
        let mut session = [0u8; 4];
        session.copy_from_slice(&b[1..5]);
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&b[5..]);
        let generation = u64::from_le_bytes(generation);
        // Generation 0 is the built-in sessions', which never move.
        if !(1..=GEN_MAX).contains(&generation) {
            return Err(DecodeError::FenceGeneration(generation));
        }
        Ok(Fence {
            node: b[0],
            session: u32::from_le_bytes(session),
            generation,
        })
    }
}

/// Fixed bytes of a [`WriteEntry`] before its value.
pub const WRITE_ENTRY_FIXED: usize = 24;
/// Fixed bytes of a [`PrepareEntry`] before its value.
pub const PREPARE_ENTRY_FIXED: usize = 32;
/// Bytes of the Prepare body (first lid, commit lid).
pub const PREPARE_BODY_LEN: usize = 16;
/// Bytes of the Ack body.
pub const ACK_BODY_LEN: usize = 40;
/// Bytes of the Hello body.
pub const HELLO_BODY_LEN: usize = 24;

/// Bytes of one [`Range`].
pub const RANGE_LEN: usize = 16;

/// A write issued by a session at a follower, sent to the leader.
///
/// Layout: session u32, seq u64, key u64, op u8, reserved u8, len u16, value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteEntry<'a> {
    /// Session index within (origin node, lane).
    pub session: u32,
    /// The session's write counter: the leader sequences each (session, seq) once.
    pub seq: u64,
    pub key: u64,
    pub op: Op,
    pub value: &'a [u8],
}

/// A write with its global id, broadcast by the leader.
///
/// Layout: zxid u64, key u64, session u32, seq u64, origin u8, op u8, len u16, value.
/// The entry's lane-local id (lid) is the message's first lid plus its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareEntry<'a> {
    pub zxid: Zxid,
    pub key: u64,
    pub session: u32,
    pub seq: u64,
    /// The node whose session issued the write.
    pub origin: NodeId,
    pub op: Op,
    pub value: &'a [u8],
}

/// A half-open range of lane-local ids `[first, first + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub count: u32,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.count as u64)
    }
}

/// The fixed part of an Ack.
///
/// Layout: five u64 in field order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckBody {
    /// Every lid below this has been received (the cumulative ack).
    pub received_lid: u64,
    /// The follower can hold lids below this (its advertised window).
    pub window_end: u64,
    /// Highest Prepare message seq consumed: returns prepare credits.
    pub prepare_seq: u64,
    /// Highest Commit message seq consumed: returns commit credits.
    pub commit_seq: u64,
    /// The follower's commit point, so the leader knows whom to re-send it.
    pub commit_lid: u64,
}

/// The start-up handshake: a node announces itself until every member has
/// heard every other (no "machine 0 first", no registry).
///
/// Layout: config digest u64, heard u64 (a node-id bitmask), flags u32
/// (bit 0: ready, bit 1: answer), reserved u32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelloBody {
    /// Hash of the cluster configuration: members must agree on it.
    pub config_digest: u64,
    /// The members this node has heard from (itself included).
    pub heard: u64,
    /// It has heard from every member and is starting (or running).
    pub ready: bool,
    /// A running node's answer to a Hello: never itself answered, or two
    /// running nodes would answer each other forever.
    pub answer: bool,
}

/// A decoded datagram.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub header: Header,
    pub body: Body<'a>,
}

/// The kind-specific part of a decoded datagram.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Write(WriteEntries<'a>),
    Prepare {
        first_lid: u64,
        commit_lid: u64,
        entries: PrepareEntries<'a>,
    },
    /// `missing` lists lid ranges the follower lacks above `received_lid`.
    Ack {
        body: AckBody,
        missing: Ranges<'a>,
    },
    Commit(Ranges<'a>),
    Hello(HelloBody),
    Control(crate::ControlMsg<'a>),
}

macro_rules! entry_iter {
    ($name:ident, $item:ident, $parse:path) => {
        /// Iterator over already-validated entries.
        #[derive(Clone, Copy, Debug)]
        pub struct $name<'a> {
            bytes: &'a [u8],
            left: u16,
        }

        impl<'a> $name<'a> {
            pub(crate) fn new(bytes: &'a [u8], count: u16) -> Self {
                $name { bytes, left: count }
            }

            pub fn len(&self) -> usize {
                self.left as usize
            }

            pub fn is_empty(&self) -> bool {
                self.left == 0
            }
        }

        impl<'a> Iterator for $name<'a> {
            type Item = $item<'a>;

            fn next(&mut self) -> Option<$item<'a>> {
                if self.left == 0 {
                    return None;
                }
                let mut r = Reader::new(self.bytes);
                // Decoding validated every entry, so this cannot fail; stop
                // quietly rather than panic if it somehow does.
                let entry = $parse(&mut r).ok()?;
                self.bytes = &self.bytes[self.bytes.len() - r.remaining()..];
                self.left -= 1;
                Some(entry)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                (self.left as usize, Some(self.left as usize))
            }
        }
    };
}

entry_iter!(WriteEntries, WriteEntry, parse_write);
entry_iter!(PrepareEntries, PrepareEntry, parse_prepare);

/// Iterator over already-validated ranges.
#[derive(Clone, Copy, Debug)]
pub struct Ranges<'a> {
    bytes: &'a [u8],
    left: u16,
}

impl<'a> Ranges<'a> {
    pub(crate) fn new(bytes: &'a [u8], count: u16) -> Self {
        Ranges { bytes, left: count }
    }

    pub fn len(&self) -> usize {
        self.left as usize
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for Ranges<'_> {
    type Item = Range;

    fn next(&mut self) -> Option<Range> {
        if self.left == 0 {
            return None;
        }
        let mut r = Reader::new(self.bytes);
        let range = parse_range(&mut r).ok()?;
        self.bytes = &self.bytes[RANGE_LEN..];
        self.left -= 1;
        Some(range)
    }
}

pub(crate) fn parse_write<'a>(r: &mut Reader<'a>) -> Result<WriteEntry<'a>, DecodeError> {
    let session = r.u32()?;
    let seq = r.u64()?;
    let key = r.u64()?;
    let op = Op::from_u8(r.u8()?)?;
    let _reserved = r.u8()?;
    let value = parse_value(r, op)?;
    Ok(WriteEntry {
        session,
        seq,
        key,
        op,
        value,
    })
}

pub(crate) fn parse_prepare<'a>(r: &mut Reader<'a>) -> Result<PrepareEntry<'a>, DecodeError> {
    let zxid = Zxid(r.u64()?);
    let key = r.u64()?;
    let session = r.u32()?;
    let seq = r.u64()?;
    let origin = r.u8()?;
    let op = Op::from_u8(r.u8()?)?;
    let value = parse_value(r, op)?;
    Ok(PrepareEntry {
        zxid,
        key,
        session,
        seq,
        origin,
        op,
        value,
    })
}

/// Reads the u16 length and the value; a Delete carries no value.
fn parse_value<'a>(r: &mut Reader<'a>, op: Op) -> Result<&'a [u8], DecodeError> {
    let len = r.u16()? as usize;
    if op == Op::Delete && len != 0 {
        return Err(DecodeError::DeleteWithValue(len));
    }
    let value = r.bytes(len)?;
    if op == Op::Bind {
        BindValue::decode(value)?;
    }
    Ok(value)
}

pub(crate) fn parse_range(r: &mut Reader<'_>) -> Result<Range, DecodeError> {
    let first = r.u64()?;
    let count = r.u32()?;
    let _reserved = r.u32()?;
    if count == 0 {
        return Err(DecodeError::EmptyRange);
    }
    if first.checked_add(count as u64).is_none() {
        return Err(DecodeError::RangeOverflow);
    }
    Ok(Range { first, count })
}

pub(crate) fn parse_hello_body(r: &mut Reader<'_>) -> Result<HelloBody, DecodeError> {
    let config_digest = r.u64()?;
    let heard = r.u64()?;
    let flags = r.u32()?;
    let _reserved = r.u32()?;
    Ok(HelloBody {
        config_digest,
        heard,
        ready: flags & 1 != 0,
        answer: flags & 2 != 0,
    })
}

pub(crate) fn parse_ack_body(r: &mut Reader<'_>) -> Result<AckBody, DecodeError> {
    Ok(AckBody {
        received_lid: r.u64()?,
        window_end: r.u64()?,
        prepare_seq: r.u64()?,
        commit_seq: r.u64()?,
        commit_lid: r.u64()?,
    })
}
