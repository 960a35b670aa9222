//! Preallocated batches of datagrams: the hot path never allocates.

use crate::Dest;

/// Datagrams to send, each with its destination.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<Dest>,
    lens: Vec<usize>,
    len: usize,
}

impl SendBatch {
    /// An error if a datagram exceeds `mtu` (the endpoint refuses the batch).
    pub fn check_mtu(&self, mtu: usize) -> std::io::Result<()> {
        if self.iter().any(|(_, b)| b.len() > mtu) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "datagram exceeds the MTU",
            ));
        }
        Ok(())
    }

    /// Room for `capacity` datagrams of up to `mtu` bytes.
    pub fn new(capacity: usize, mtu: usize) -> Self {
        SendBatch {
            bufs: (0..capacity).map(|_| vec![0u8; mtu]).collect(),
            dests: vec![Dest::Group; capacity],
            lens: vec![0; capacity],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.bufs.len()
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The buffer the next datagram is written into (MTU bytes long), or
    /// `None` when the batch is full.
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.len).map(|b| &mut b[..])
    }

    /// Keeps the first `len` bytes written into `next_buf` as a datagram.
    pub fn push(&mut self, dest: Dest, len: usize) {
        debug_assert!(!self.is_full() && len <= self.bufs[self.len].len());
        self.dests[self.len] = dest;
        self.lens[self.len] = len;
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = (Dest, &[u8])> {
        (0..self.len).map(|i| (self.dests[i], &self.bufs[i][..self.lens[i]]))
    }
}

/// Received datagrams. Buffers are swapped in and out by the transport
/// rather than copied where it can (the in-process fabric does).
pub struct RecvBatch {
    pub(crate) bufs: Vec<Vec<u8>>,
    pub(crate) len: usize,
    buf_size: usize,
}

impl RecvBatch {
    /// Room for `capacity` datagrams of up to `buf_size` bytes each.
    pub fn new(capacity: usize, buf_size: usize) -> Self {
        RecvBatch {
            bufs: (0..capacity).map(|_| Vec::with_capacity(buf_size)).collect(),
            len: 0,
            buf_size,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len).then(|| &self.bufs[i][..])
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.len].iter().map(|b| &b[..])
    }

    /// Swaps a filled buffer into the next slot; returns the slot's old
    /// (empty) buffer for the caller's pool. `None` when the batch is full.
    pub fn swap_in(&mut self, filled: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
        if self.len == self.bufs.len() {
            return Err(filled);
        }
        let mut old = std::mem::replace(&mut self.bufs[self.len], filled);
        old.clear();
        self.len += 1;
        Ok(old)
    }

    /// The next slot's buffer, to fill in place; commit it with `commit`.
    pub fn next_slot(&mut self) -> Option<&mut Vec<u8>> {
        self.bufs.get_mut(self.len)
    }

    pub fn commit(&mut self) {
        debug_assert!(self.len < self.bufs.len());
        self.len += 1;
    }

    /// Copies `bytes` into the next slot as a received datagram (for
    /// transports that receive into their own buffers). Returns false, and
    /// keeps nothing, when the batch is full.
    pub fn push_copy(&mut self, bytes: &[u8]) -> bool {
        let Some(slot) = self.bufs.get_mut(self.len) else {
            return false;
        };
        slot.clear();
        slot.extend_from_slice(bytes);
        self.len += 1;
        true
    }
}
