use crate::control::{Items, Lids, parse_fixed, parse_item, parse_lid};
use crate::message::{
    ACK_BODY_LEN, Body, Message, PREPARE_BODY_LEN, PrepareEntries, RANGE_LEN, Ranges, WriteEntries,
    parse_ack_body, parse_hello_body, parse_prepare, parse_range, parse_write,
};
use crate::reader::Reader;
use crate::{ControlMsg, Header, Kind, Zxid};

/// Why a datagram was rejected. Receivers count these and drop the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram truncated: needed {needed} bytes, have {len}")]
    Truncated { needed: usize, len: usize },
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    #[error("unsupported wire version {0}")]
    BadVersion(u8),
    #[error("unknown message kind {0}")]
    BadKind(u8),
    #[error("unknown write op {0}")]
    BadOp(u8),
    #[error("delete carries a {0}-byte value")]
    DeleteWithValue(usize),
    #[error("a bind's value is {0} bytes: neither an owner nor an owner and a fence")]
    BadBind(usize),
    #[error("a fence names generation {0}, outside 1..=2^32-1")]
    FenceGeneration(u64),
    #[error("empty lid range")]
    EmptyRange,
    #[error("lid range overflows u64")]
    RangeOverflow,
    #[error("{0} bytes after the last entry")]
    TrailingBytes(usize),
    #[error("a message of this kind carries no entries, not {0}")]
    UnexpectedEntries(u16),
    #[error("unknown transfer item kind {0}")]
    BadItem(u8),
}

/// Validates a whole datagram and returns a view of it.
///
/// Every entry is parsed once here, so the returned iterators only walk bytes
/// known to be well formed. Trailing bytes are an error: a datagram is exactly
/// a header, a body and `count` entries.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let header = Header::read(&mut r)?;
    let body = match header.kind {
        Kind::Write => Body::Write(WriteEntries::new(
            entries(&mut r, header.count, parse_write)?,
            header.count,
        )),
        Kind::Prepare => {
            let first_lid = r.u64()?;
            let commit_lid = r.u64()?;
            debug_assert_eq!(PREPARE_BODY_LEN, 16);
            let bytes = entries(&mut r, header.count, parse_prepare)?;
            Body::Prepare {
                first_lid,
                commit_lid,
                entries: PrepareEntries::new(bytes, header.count),
            }
        }
        Kind::Ack => {
            let body = parse_ack_body(&mut r)?;
            debug_assert_eq!(ACK_BODY_LEN, 40);
            let missing = Ranges::new(entries(&mut r, header.count, parse_range)?, header.count);
            Body::Ack { body, missing }
        }
        Kind::Hello => {
            if header.count != 0 {
                return Err(DecodeError::UnexpectedEntries(header.count));
            }
            Body::Hello(parse_hello_body(&mut r)?)
        }
        Kind::Transfer => {
            let (stream, chunk, flags, _reserved) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            let items = Items::new(entries(&mut r, header.count, parse_item)?, header.count);
            Body::Control(ControlMsg::Transfer {
                stream,
                chunk,
                last: flags & 1 != 0,
                items,
            })
        }
        Kind::JoinInfo => {
            let request = r.u32()?;
            let base = Zxid(r.u64()?);
            let lids = Lids::new(entries(&mut r, header.count, parse_lid)?);
            Body::Control(ControlMsg::JoinInfo { request, base, lids })
        }
        k @ (Kind::Heartbeat
        | Kind::Status
        | Kind::VoteRequest
        | Kind::Vote
        | Kind::NewLeader
        | Kind::TransferAck
        | Kind::NewLeaderAck
        | Kind::StartEpoch
        | Kind::Join) => {
            if header.count != 0 {
                return Err(DecodeError::UnexpectedEntries(header.count));
            }
            Body::Control(ControlMsg::Fixed(parse_fixed(k, &mut r)?))
        }
        Kind::Commit => {
            let bytes = entries(&mut r, header.count, parse_range)?;
            debug_assert_eq!(bytes.len(), header.count as usize * RANGE_LEN);
            Body::Commit(Ranges::new(bytes, header.count))
        }
    };
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Message { header, body })
}

/// Parses `count` entries and returns (and consumes) the bytes they span.
fn entries<'a, T>(
    r: &mut Reader<'a>,
    count: u16,
    parse: impl Fn(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<&'a [u8], DecodeError> {
    let rest = r.rest();
    let mut probe = Reader::new(rest);
    for _ in 0..count {
        parse(&mut probe)?;
    }
    r.bytes(rest.len() - probe.remaining())
}
