//! rzab's wire format: the bytes of every datagram the replicas exchange.
//!
//! Every datagram is one [`Header`] (24 bytes, little-endian) followed by a
//! kind-specific body and `count` coalesced entries:
//!
//! | kind    | direction                | body                          | entry                         |
//! |---------|--------------------------|-------------------------------|-------------------------------|
//! | Write   | follower lane -> leader  | none                          | [`WriteEntry`] (20 B + value) |
//! | Prepare | leader -> lane followers | first lid, commit lid (16 B)  | [`PrepareEntry`] (28 B + value)|
//! | Ack     | follower -> leader       | [`AckBody`] (40 B)            | [`Range`] of missing lids     |
//! | Commit  | leader -> lane followers | none                          | [`Range`] of committed lids   |
//! | Hello   | any node -> any node     | [`HelloBody`] (24 B)          | none (start-up handshake)     |
//!
//! Decoding is total: [`decode`] validates the whole datagram up front and
//! returns a [`DecodeError`] for anything malformed, never panicking; the
//! entry iterators of a decoded message then walk bytes already checked.
//! Encoding goes through [`Encoder`], which fills a caller-owned buffer up to
//! the transport's MTU and never allocates.

mod control;
mod decode;
mod encode;
mod header;
mod message;
mod reader;
mod zxid;

pub use control::{
    CONTROL_LANE, ControlBody, ControlMsg, HISTORY_ITEM_FIXED, HistoryItem, Item, Items, Lids,
    SESSION_ITEM_LEN, SNAPSHOT_ITEM_FIXED, SessionItem, SnapshotItem,
};
pub use decode::{DecodeError, decode};
pub use encode::{EncodeError, Encoder, item_len};
pub use header::{HEADER_LEN, Header, Kind, MAGIC, VERSION};
pub use message::{
    ACK_BODY_LEN, AckBody, BIND_FENCE_LEN, BIND_LEN, BindValue, Body, FENCE_LEN, Fence, GEN_COUNTER_MAX,
    GEN_MAX, GEN_SHIFT, HELLO_BODY_LEN, HelloBody, Message, Op, PREPARE_BODY_LEN, PREPARE_ENTRY_FIXED,
    PrepareEntries, PrepareEntry, RANGE_LEN, Range, Ranges, WRITE_ENTRY_FIXED, WriteEntries, WriteEntry,
    gen_end, gen_start, is_fence_end, next_gen_start, seq_counter, seq_gen,
};
pub use zxid::Zxid;

/// A replica's id within its cluster.
pub type NodeId = u8;
