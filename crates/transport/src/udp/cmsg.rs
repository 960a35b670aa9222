//! Control messages, written and parsed as plain bytes (no pointer walking):
//! the UDP_SEGMENT size a GSO send carries, and the GRO segment size and
//! socket drop count a receive returns.

use super::sys::{SO_RXQ_OVFL, SOL_UDP, UDP_GRO, UDP_SEGMENT};
use std::mem::size_of;

/// Room for the control messages of one datagram (GRO size and drop count
/// take 40 bytes on 64-bit Linux).
pub const CMSG_BUF: usize = 64;

const WORD: usize = size_of::<usize>();

/// The kernel's CMSG_ALIGN.
const fn align(n: usize) -> usize {
    (n + WORD - 1) & !(WORD - 1)
}

/// Bytes of a `cmsghdr` (size_t length, int level, int type), aligned.
const HDR: usize = align(WORD + 8);

/// One datagram's control buffer, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct CmsgBuf(pub [u8; CMSG_BUF]);

/// What the kernel attached to a received datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ancillary {
    /// GRO: the read holds datagrams of this size (the last may be shorter).
    pub gro_segment: Option<usize>,
    /// The socket's cumulative count of datagrams dropped on a full queue.
    pub dropped: Option<u32>,
}

impl CmsgBuf {
    pub const fn new() -> CmsgBuf {
        CmsgBuf([0; CMSG_BUF])
    }

    /// Writes a UDP_SEGMENT message; returns the control length to send.
    pub fn write_gso(&mut self, segment: u16) -> usize {
        let len = HDR + size_of::<u16>();
        self.0[..WORD].copy_from_slice(&len.to_ne_bytes());
        self.0[WORD..WORD + 4].copy_from_slice(&SOL_UDP.to_ne_bytes());
        self.0[WORD + 4..WORD + 8].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
        self.0[HDR..len].copy_from_slice(&segment.to_ne_bytes());
        align(len)
    }

    /// Reads the messages in the first `len` bytes. Malformed input ends
    /// the walk; it never panics.
    pub fn parse(&self, len: usize) -> Ancillary {
        let bytes = &self.0[..len.min(CMSG_BUF)];
        let mut out = Ancillary::default();
        let mut at = 0;
        while let Some((msg_len, level, kind)) = header(bytes, at) {
            if msg_len < HDR || at.checked_add(msg_len).is_none_or(|end| end > bytes.len()) {
                break;
            }
            let data = &bytes[at + HDR..at + msg_len];
            match (level, kind) {
                (SOL_UDP, UDP_GRO) => out.gro_segment = read_u32(data).map(|s| s as usize),
                (libc::SOL_SOCKET, SO_RXQ_OVFL) => out.dropped = read_u32(data),
                _ => {}
            }
            at += align(msg_len);
        }
        out
    }
}

impl Default for CmsgBuf {
    fn default() -> Self {
        CmsgBuf::new()
    }
}

/// The (length, level, type) of the message at `at`, if a header fits.
fn header(bytes: &[u8], at: usize) -> Option<(usize, i32, i32)> {
    let h = bytes.get(at..at.checked_add(HDR)?)?;
    let len = usize::from_ne_bytes(h.get(..WORD)?.try_into().ok()?);
    let level = i32::from_ne_bytes(h.get(WORD..WORD + 4)?.try_into().ok()?);
    let kind = i32::from_ne_bytes(h.get(WORD + 4..WORD + 8)?.try_into().ok()?);
    Some((len, level, kind))
}

fn read_u32(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buf: &mut CmsgBuf, at: usize, level: i32, kind: i32, value: u32) -> usize {
        let len = HDR + 4;
        buf.0[at..at + WORD].copy_from_slice(&len.to_ne_bytes());
        buf.0[at + WORD..at + WORD + 4].copy_from_slice(&level.to_ne_bytes());
        buf.0[at + WORD + 4..at + WORD + 8].copy_from_slice(&kind.to_ne_bytes());
        buf.0[at + HDR..at + len].copy_from_slice(&value.to_ne_bytes());
        at + align(len)
    }

    #[test]
    fn header_layout_matches_libc() {
        // SAFETY: CMSG_LEN and CMSG_SPACE are pure arithmetic.
        let (len, space) = unsafe { (libc::CMSG_LEN(2), libc::CMSG_SPACE(2)) };
        assert_eq!(HDR + 2, len as usize);
        assert_eq!(CmsgBuf::new().write_gso(1400), space as usize);
    }

    #[test]
    fn parses_gro_and_drop_count() {
        let mut b = CmsgBuf::new();
        let end = put(&mut b, 0, SOL_UDP, UDP_GRO, 1472);
        let end = put(&mut b, end, libc::SOL_SOCKET, SO_RXQ_OVFL, 7);
        let a = b.parse(end);
        assert_eq!(a.gro_segment, Some(1472));
        assert_eq!(a.dropped, Some(7));
    }

    #[test]
    fn malformed_control_data_never_panics() {
        let mut b = CmsgBuf::new();
        for len in [0usize, 1, HDR - 1, HDR + 1000, usize::MAX] {
            b.0[..WORD].copy_from_slice(&len.to_ne_bytes());
            for limit in [0, 5, HDR, CMSG_BUF, CMSG_BUF + 10] {
                let _ = b.parse(limit);
            }
        }
        assert_eq!(CmsgBuf::new().parse(CMSG_BUF), Ancillary::default());
    }
}
