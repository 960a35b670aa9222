//! The receive ring's bookkeeping: how many buffers a lane keeps posted,
//! where each one lives in the registered block, which are posted, and
//! which wait to be posted again. Kept apart from the verbs calls so it is
//! tested without a device.
//!
//! A UD receive lands 40 bytes of Global Routing Header (or, on RoCE v2
//! over IPv4, 20 undefined bytes and the IPv4 header) in front of the
//! payload, whether or not the sender used one: each slot holds those 40
//! bytes plus an MTU, rounded up to a cache line.

use std::ops::Range;

/// Bytes a UD receive puts in front of the payload.
pub const GRH_BYTES: usize = 40;
/// Slots start on cache lines.
const SLOT_ALIGN: usize = 64;

/// The protocol's credits: messages in flight per follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credits {
    pub prepare: usize,
    pub commit: usize,
    pub write: usize,
}

impl Default for Credits {
    /// The prototype's: 6 Prepares, 30 Commits, 6 Writes.
    fn default() -> Self {
        Credits {
            prepare: 6,
            commit: 30,
            write: 6,
        }
    }
}

/// Receive buffers one lane keeps posted. A follower lane has at most
/// `prepare` Prepares and `commit` Commits in flight towards it; a leader
/// lane at most `write` Writes and about `prepare` Acks (one per Prepare)
/// from each of its `peers`. The ring holds twice the larger need (resends,
/// answers to hellos and duplicates arrive on top), at least 64 buffers,
/// rounded up to a power of two.
pub fn ring_slots(c: Credits, peers: usize) -> usize {
    let follower = c.prepare.saturating_add(c.commit);
    let leader = peers.saturating_mul(c.write.saturating_add(c.prepare));
    follower
        .max(leader)
        .saturating_mul(2)
        .max(64)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// Where the slots of a ring lie in one registered block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    pub slots: usize,
    pub slot_bytes: usize,
    pub mtu: usize,
}

/// What a receive completion's byte count says about its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The datagram's bytes within the block.
    Bytes(Range<usize>),
    /// Shorter than the GRH area: not a datagram of ours.
    Runt,
    /// Longer than the MTU.
    Oversize,
}

impl RingLayout {
    pub fn new(slots: usize, mtu: usize) -> RingLayout {
        RingLayout {
            slots,
            slot_bytes: (GRH_BYTES + mtu).div_ceil(SLOT_ALIGN) * SLOT_ALIGN,
            mtu,
        }
    }

    /// Bytes of the whole block.
    pub fn block_bytes(&self) -> usize {
        self.slots * self.slot_bytes
    }

    /// Where slot `slot` starts in the block (its GRH area).
    pub fn offset(&self, slot: usize) -> usize {
        debug_assert!(slot < self.slots);
        slot * self.slot_bytes
    }

    /// The GRH area of slot `slot`.
    pub fn grh(&self, slot: usize) -> Range<usize> {
        let at = self.offset(slot);
        at..at + GRH_BYTES
    }

    /// The payload of a completion of `byte_len` bytes (GRH included) in `slot`.
    pub fn payload(&self, slot: usize, byte_len: usize) -> Payload {
        let Some(len) = byte_len.checked_sub(GRH_BYTES) else {
            return Payload::Runt;
        };
        if len > self.mtu {
            return Payload::Oversize;
        }
        let at = self.offset(slot) + GRH_BYTES;
        Payload::Bytes(at..at + len)
    }
}

/// Which slots are posted and which wait to be posted again.
#[derive(Debug)]
pub struct RecvRing {
    layout: RingLayout,
    posted: Vec<bool>,
    /// Slots to post with the next receive doorbell.
    to_post: Vec<u32>,
    outstanding: usize,
}

impl RecvRing {
    /// A ring with every slot waiting to be posted.
    pub fn new(layout: RingLayout) -> RecvRing {
        assert!(layout.slots > 0 && layout.slots <= u32::MAX as usize);
        RecvRing {
            layout,
            posted: vec![false; layout.slots],
            to_post: (0..layout.slots as u32).collect(),
            outstanding: 0,
        }
    }

    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// Slots posted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// A completion for work request `wr_id`: the slot it filled, which is
    /// no longer posted, or `None` for an id that is not a posted slot (a
    /// provider's phantom or repeated completion must not free a buffer the
    /// device still owns).
    pub fn complete(&mut self, wr_id: u64) -> Option<usize> {
        let slot = usize::try_from(wr_id).ok().filter(|&s| s < self.layout.slots)?;
        if !std::mem::replace(&mut self.posted[slot], false) {
            return None;
        }
        self.outstanding -= 1;
        Some(slot)
    }

    /// Hands a completed slot back once its bytes are consumed.
    pub fn release(&mut self, slot: usize) {
        debug_assert!(slot < self.layout.slots && !self.posted[slot]);
        self.to_post.push(slot as u32);
    }

    /// The slots waiting to be posted, in order.
    pub fn to_post(&self) -> &[u32] {
        &self.to_post
    }

    /// The first `n` waiting slots were posted.
    pub fn posted(&mut self, n: usize) {
        let n = n.min(self.to_post.len());
        for &s in &self.to_post[..n] {
            debug_assert!(!self.posted[s as usize]);
            self.posted[s as usize] = true;
        }
        self.outstanding += n;
        self.to_post.drain(..n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_sized_by_credits() {
        let c = Credits::default();
        // Follower: 6 + 30 = 36 > leader 2 x (6 + 6) = 24; twice 36 is 72 -> 128.
        assert_eq!(ring_slots(c, 2), 128);
        // Nine followers: 9 x 12 = 108 -> 216 -> 256.
        assert_eq!(ring_slots(c, 9), 256);
        let tiny = Credits {
            prepare: 1,
            commit: 1,
            write: 1,
        };
        assert_eq!(ring_slots(tiny, 1), 64, "at least 64");
        let huge = Credits {
            prepare: usize::MAX / 2,
            commit: 1,
            write: 1,
        };
        assert_eq!(ring_slots(huge, 3), usize::MAX, "no overflow");
    }

    #[test]
    fn slots_hold_the_grh_and_an_mtu_on_cache_lines() {
        let l = RingLayout::new(4, 1024);
        assert_eq!(l.slot_bytes, 1088, "40 + 1024 rounded up to 64");
        assert_eq!(l.block_bytes(), 4 * 1088);
        assert_eq!(l.grh(2), 2176..2216);
        assert_eq!(l.payload(2, 40 + 100), Payload::Bytes(2216..2316));
        assert_eq!(l.payload(1, 40), Payload::Bytes(1128..1128));
        assert_eq!(l.payload(1, 39), Payload::Runt);
        assert_eq!(l.payload(1, 40 + 1025), Payload::Oversize);
        assert_eq!(l.payload(3, 40 + 1024), Payload::Bytes(3304..4328));
        assert!(4328 <= l.block_bytes());
    }

    #[test]
    fn a_slot_is_reposted_only_after_it_completed_and_was_released() {
        let mut r = RecvRing::new(RingLayout::new(4, 64));
        assert_eq!(r.to_post(), &[0, 1, 2, 3]);
        r.posted(4);
        assert_eq!((r.outstanding(), r.to_post().len()), (4, 0));
        assert_eq!(r.complete(2), Some(2));
        assert_eq!(r.complete(2), None, "a repeated completion frees nothing");
        assert_eq!(r.complete(7), None, "not a slot");
        assert_eq!(r.complete(u64::MAX), None);
        assert_eq!(r.outstanding(), 3);
        assert!(r.to_post().is_empty(), "not before its bytes are consumed");
        r.release(2);
        assert_eq!(r.complete(0), Some(0));
        r.release(0);
        assert_eq!(r.to_post(), &[2, 0]);
        // A post that took only one of the two keeps the other waiting.
        r.posted(1);
        assert_eq!((r.outstanding(), r.to_post()), (4 - 1, &[0u32][..]));
        r.posted(1);
        assert_eq!(r.outstanding(), 4);
        assert_eq!(r.complete(0), Some(0));
    }

    #[test]
    fn a_ring_survives_many_laps_without_losing_a_slot() {
        let mut r = RecvRing::new(RingLayout::new(8, 64));
        let mut device = std::collections::VecDeque::new();
        for lap in 0..1000usize {
            // Post what waits; the device completes buffers in posting order.
            let n = r.to_post().len();
            device.extend(r.to_post().iter().copied());
            r.posted(n);
            assert_eq!(r.outstanding(), 8);
            let done: Vec<usize> = (0..1 + lap % 8)
                .map(|_| {
                    let wr = device.pop_front().expect("posted");
                    r.complete(u64::from(wr)).expect("a posted slot")
                })
                .collect();
            for s in done {
                r.release(s);
            }
        }
    }
}
