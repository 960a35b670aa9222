use crate::header::HEADER_LEN;
use crate::message::{
    ACK_BODY_LEN, HELLO_BODY_LEN, PREPARE_BODY_LEN, PREPARE_ENTRY_FIXED, RANGE_LEN, WRITE_ENTRY_FIXED,
};
use crate::{AckBody, ControlBody, Header, HelloBody, Item, Kind, Op, PrepareEntry, Range, WriteEntry, Zxid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("buffer of {have} bytes cannot hold a {need}-byte message header and body")]
    BufferTooSmall { need: usize, have: usize },
}

/// Fills one datagram in a caller-owned buffer (whose length is the MTU).
///
/// Start it with the constructor for the message kind, push entries until a
/// push returns `false` (the next entry does not fit), then [`finish`]
/// to patch the entry count and get the datagram's length.
///
/// [`finish`]: Encoder::finish
pub struct Encoder<'b> {
    buf: &'b mut [u8],
    len: usize,
    count: u16,
    kind: Kind,
}

impl<'b> Encoder<'b> {
    fn start(
        buf: &'b mut [u8],
        mut header: Header,
        kind: Kind,
        body_len: usize,
    ) -> Result<Self, EncodeError> {
        let need = HEADER_LEN + body_len;
        if buf.len() < need {
            return Err(EncodeError::BufferTooSmall {
                need,
                have: buf.len(),
            });
        }
        header.kind = kind;
        header.count = 0;
        let mut head = [0u8; HEADER_LEN];
        header.write(&mut head);
        buf[..HEADER_LEN].copy_from_slice(&head);
        Ok(Encoder {
            buf,
            len: HEADER_LEN,
            count: 0,
            kind,
        })
    }

    pub fn write(buf: &'b mut [u8], header: Header) -> Result<Self, EncodeError> {
        Self::start(buf, header, Kind::Write, 0)
    }

    pub fn prepare(
        buf: &'b mut [u8],
        header: Header,
        first_lid: u64,
        commit_lid: u64,
    ) -> Result<Self, EncodeError> {
        let mut e = Self::start(buf, header, Kind::Prepare, PREPARE_BODY_LEN)?;
        e.put_u64(first_lid);
        e.put_u64(commit_lid);
        Ok(e)
    }

    pub fn ack(buf: &'b mut [u8], header: Header, body: &AckBody) -> Result<Self, EncodeError> {
        let mut e = Self::start(buf, header, Kind::Ack, ACK_BODY_LEN)?;
        for v in [
            body.received_lid,
            body.window_end,
            body.prepare_seq,
            body.commit_seq,
            body.commit_lid,
        ] {
            e.put_u64(v);
        }
        Ok(e)
    }

    pub fn hello(buf: &'b mut [u8], header: Header, body: &HelloBody) -> Result<Self, EncodeError> {
        let mut e = Self::start(buf, header, Kind::Hello, HELLO_BODY_LEN)?;
        e.put_u64(body.config_digest);
        e.put_u64(body.heard);
        e.put_u32(body.ready as u32 | (body.answer as u32) << 1);
        e.put_u32(0);
        Ok(e)
    }

    /// A control message with a fixed body.
    pub fn control(buf: &'b mut [u8], header: Header, body: &ControlBody) -> Result<Self, EncodeError> {
        let (kind, a, b, c, d) = crate::control::fixed_words(body);
        let mut e = Self::start(buf, header, kind, 16 + if d.is_some() { 8 } else { 0 })?;
        e.put_u64(a);
        e.put_u32(b);
        e.put_u32(c);
        if let Some(d) = d {
            e.put_u64(d);
        }
        Ok(e)
    }

    /// Chunk `chunk` of transfer `stream`; push items with [`push_item`].
    ///
    /// [`push_item`]: Encoder::push_item
    pub fn transfer(
        buf: &'b mut [u8],
        header: Header,
        stream: u32,
        chunk: u32,
        last: bool,
    ) -> Result<Self, EncodeError> {
        let mut e = Self::start(buf, header, Kind::Transfer, 16)?;
        e.put_u32(stream);
        e.put_u32(chunk);
        e.put_u32(last as u32);
        e.put_u32(0);
        Ok(e)
    }

    /// Marks a transfer chunk as the last of its stream (after pushing items).
    pub fn set_last(&mut self) {
        debug_assert_eq!(self.kind, Kind::Transfer);
        let at = crate::header::HEADER_LEN + 8;
        self.buf[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
    }

    /// A join answer: the lanes' starting lids.
    pub fn join_info(
        buf: &'b mut [u8],
        header: Header,
        request: u32,
        base: Zxid,
        lids: &[u64],
    ) -> Result<Self, EncodeError> {
        let mut e = Self::start(buf, header, Kind::JoinInfo, 4 + 8 + 8 * lids.len())?;
        e.put_u32(request);
        e.put_u64(base.0);
        for &l in lids {
            e.put_u64(l);
        }
        e.count = lids.len().min(u16::MAX as usize) as u16;
        Ok(e)
    }

    pub fn push_item(&mut self, item: &Item<'_>) -> bool {
        debug_assert_eq!(self.kind, Kind::Transfer);
        let need = item_len(item);
        if !self.fits(need) {
            return false;
        }
        match *item {
            Item::History(h) => {
                let Some(len) = value_len(h.op, h.value) else {
                    return false;
                };
                self.put_bytes(&[crate::control::ITEM_HISTORY]);
                self.put_u64(h.zxid.0);
                self.put_bytes(&[h.lane, h.origin, h.op as u8]);
                self.put_u32(h.session);
                self.put_u64(h.seq);
                self.put_u64(h.key);
                self.put_bytes(&len.to_le_bytes());
                self.put_bytes(h.value);
            }
            Item::Snapshot(s) => {
                let Ok(len) = u16::try_from(s.value.len()) else {
                    return false;
                };
                self.put_bytes(&[crate::control::ITEM_SNAPSHOT]);
                self.put_u64(s.key);
                self.put_u64(s.zxid.0);
                self.put_bytes(&len.to_le_bytes());
                self.put_bytes(s.value);
            }
            Item::Session(s) => {
                self.put_bytes(&[crate::control::ITEM_SESSION, s.origin, s.lane]);
                self.put_u32(s.session);
                self.put_u64(s.seq);
                self.put_u64(s.owner);
            }
        }
        self.count += 1;
        true
    }

    pub fn commit(buf: &'b mut [u8], header: Header) -> Result<Self, EncodeError> {
        Self::start(buf, header, Kind::Commit, 0)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Entries pushed so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes of the message so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether an entry of `bytes` more bytes fits.
    pub fn fits(&self, bytes: usize) -> bool {
        self.count < u16::MAX && self.buf.len() - self.len >= bytes
    }

    pub fn push_write(&mut self, e: &WriteEntry<'_>) -> bool {
        debug_assert_eq!(self.kind, Kind::Write);
        let Some(len) = value_len(e.op, e.value) else {
            return false;
        };
        if !self.fits(WRITE_ENTRY_FIXED + e.value.len()) {
            return false;
        }
        self.put_u32(e.session);
        self.put_u64(e.seq);
        self.put_u64(e.key);
        self.put_bytes(&[e.op as u8, 0]);
        self.put_bytes(&len.to_le_bytes());
        self.put_bytes(e.value);
        self.count += 1;
        true
    }

    pub fn push_prepare(&mut self, e: &PrepareEntry<'_>) -> bool {
        debug_assert_eq!(self.kind, Kind::Prepare);
        let Some(len) = value_len(e.op, e.value) else {
            return false;
        };
        if !self.fits(PREPARE_ENTRY_FIXED + e.value.len()) {
            return false;
        }
        self.put_u64(e.zxid.0);
        self.put_u64(e.key);
        self.put_u32(e.session);
        self.put_u64(e.seq);
        self.put_bytes(&[e.origin, e.op as u8]);
        self.put_bytes(&len.to_le_bytes());
        self.put_bytes(e.value);
        self.count += 1;
        true
    }

    /// Pushes a lid range (Commit ranges, or an Ack's missing ranges).
    /// An empty range is not encodable and is refused.
    pub fn push_range(&mut self, r: Range) -> bool {
        debug_assert!(matches!(self.kind, Kind::Commit | Kind::Ack));
        if r.count == 0 || r.first.checked_add(r.count as u64).is_none() || !self.fits(RANGE_LEN) {
            return false;
        }
        self.put_u64(r.first);
        self.put_u32(r.count);
        self.put_u32(0);
        self.count += 1;
        true
    }

    /// Patches the entry count into the header; returns the datagram length.
    pub fn finish(self) -> usize {
        self.buf[Header::COUNT_OFFSET..Header::COUNT_OFFSET + 2].copy_from_slice(&self.count.to_le_bytes());
        self.len
    }

    fn put_bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn put_u32(&mut self, v: u32) {
        self.put_bytes(&v.to_le_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.put_bytes(&v.to_le_bytes());
    }
}

/// Bytes an item takes.
pub fn item_len(item: &Item<'_>) -> usize {
    match item {
        Item::History(h) => crate::control::HISTORY_ITEM_FIXED + h.value.len(),
        Item::Snapshot(s) => crate::control::SNAPSHOT_ITEM_FIXED + s.value.len(),
        Item::Session(_) => crate::control::SESSION_ITEM_LEN,
    }
}

/// The encodable length of a value: Deletes carry none, and a length must fit u16.
fn value_len(op: Op, value: &[u8]) -> Option<u16> {
    if op == Op::Delete && !value.is_empty() {
        return None;
    }
    u16::try_from(value.len()).ok()
}
