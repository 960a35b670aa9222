//! The index: a power-of-two array of 64-byte buckets mapping a key's hash to item numbers.
//!
//! A bucket has 12 slots (an 8-bit tag each, packed in two words, and a `u32` item number) and
//! a control word: a writer lock bit, plus how many keys homed here overflowed into the next
//! buckets and the farthest of them. A lookup scans the home bucket and, only when that count is
//! non-zero, the next buckets up to that distance. Inserts never move existing keys, and no key
//! lands more than `MAX_PROBE - 1` buckets from home: past that the insert fails with `Full`.
//!
//! Slot claims are a CAS on the item number (`EMPTY` -> item), so writers of different home
//! buckets can share an overflow bucket; the tag is set last, which publishes the slot.

use crate::StoreError;
use crate::hash::tag;
use crate::prefetch::prefetch;
use crate::sync::{AtomicU32, AtomicU64, Ordering, spin};

pub(crate) const SLOTS: usize = 12;
/// Buckets a key may occupy: its home and the next `MAX_PROBE - 1`.
pub(crate) const MAX_PROBE: usize = 16;
/// Keys per bucket the index is sized for (12 slots at 80% load), as a fraction: 48 / 5 = 9.6.
const KEYS_PER_BUCKET_NUM: usize = 48;
const KEYS_PER_BUCKET_DEN: usize = 5;

const EMPTY: u32 = u32::MAX;
/// `first_candidate` found nothing.
pub(crate) const NO_ITEM: u32 = EMPTY;
const LOCK: u32 = 1 << 31;
const COUNT_MASK: u32 = (1 << 24) - 1;
const DIST_SHIFT: u32 = 24;
const DIST_MASK: u32 = 0x7f;

#[repr(C, align(64))]
struct Bucket {
    /// Tags of slots 0..8, slot `s` in byte `s`; 0 = no published key.
    tags_lo: AtomicU64,
    /// Tags of slots 8..12, slot `s` in byte `s - 8`.
    tags_hi: AtomicU32,
    /// `LOCK | dist << 24 | count`: see the module doc.
    ctrl: AtomicU32,
    items: [AtomicU32; SLOTS],
}

/// Where a key sits in the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    bucket: usize,
    slot: usize,
}

pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
    /// `MAX_PROBE`, or fewer buckets when the table is that small (so probing never wraps onto
    /// its own home).
    window: usize,
}

/// The number of buckets for `capacity` keys: at most 80% of the slots in use when full.
pub(crate) fn buckets_for(capacity: usize) -> usize {
    capacity
        .saturating_mul(KEYS_PER_BUCKET_DEN)
        .div_ceil(KEYS_PER_BUCKET_NUM)
        .next_power_of_two()
}

/// High bit of each byte of `word` that equals `t`, exact (no false positives): the classic
/// zero-byte test on `word ^ t t t t...`, in the variant whose carries cannot cross bytes.
#[inline(always)]
fn match_bytes(word: u64, t: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (u64::from(t) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// How many buckets past home a lookup must scan, from a home bucket's control word.
#[inline(always)]
fn extent(ctrl: u32) -> usize {
    if ctrl & COUNT_MASK == 0 {
        0
    } else {
        ((ctrl >> DIST_SHIFT) & DIST_MASK) as usize
    }
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tags_lo: AtomicU64::new(0),
            tags_hi: AtomicU32::new(0),
            ctrl: AtomicU32::new(0),
            items: std::array::from_fn(|_| AtomicU32::new(EMPTY)),
        }
    }

    /// Calls `f` on each published slot tagged `t` until it returns `Some`.
    #[inline(always)]
    fn probe<T>(&self, b: usize, t: u8, f: &mut impl FnMut(Slot, u32) -> Option<T>) -> Option<T> {
        let lo = match_bytes(self.tags_lo.load(Ordering::Acquire), t);
        if let Some(found) = self.try_slots(b, lo, 0, f) {
            return Some(found);
        }
        // The upper half of the widened word is zero; `t` is never 0, so it never matches.
        let hi = match_bytes(u64::from(self.tags_hi.load(Ordering::Acquire)), t);
        self.try_slots(b, hi, 8, f)
    }

    /// Calls `f` on the slots flagged in a `match_bytes` mask, slot numbers starting at `first`.
    #[inline(always)]
    fn try_slots<T>(
        &self,
        b: usize,
        mut m: u64,
        first: usize,
        f: &mut impl FnMut(Slot, u32) -> Option<T>,
    ) -> Option<T> {
        while m != 0 {
            let slot = first + (m.trailing_zeros() / 8) as usize;
            m &= m - 1;
            let idx = self.items.get(slot).map_or(EMPTY, |i| i.load(Ordering::Acquire));
            if idx != EMPTY
                && let Some(found) = f(Slot { bucket: b, slot }, idx)
            {
                return Some(found);
            }
        }
        None
    }

    /// Sets a free slot's tag, with release: this publishes the slot.
    fn set_tag(&self, slot: usize, t: u8) {
        if slot < 8 {
            self.tags_lo
                .fetch_or(u64::from(t) << (8 * slot), Ordering::Release);
        } else {
            self.tags_hi
                .fetch_or(u32::from(t) << (8 * (slot - 8)), Ordering::Release);
        }
    }

    /// Clears a slot's tag: lookups stop matching it.
    fn clear_tag(&self, slot: usize) {
        if slot < 8 {
            self.tags_lo.fetch_and(!(0xff << (8 * slot)), Ordering::Release);
        } else {
            self.tags_hi
                .fetch_and(!(0xff << (8 * (slot - 8))), Ordering::Release);
        }
    }
}

impl Index {
    pub(crate) fn new(capacity: usize) -> Result<Index, StoreError> {
        let n = buckets_for(capacity);
        let mut buckets = Vec::new();
        let bytes = n.saturating_mul(size_of::<Bucket>());
        buckets
            .try_reserve_exact(n)
            .map_err(|_| StoreError::OutOfMemory { bytes })?;
        crate::hugepage::advise(buckets.as_ptr(), bytes);
        buckets.extend((0..n).map(|_| Bucket::new()));
        let window = MAX_PROBE.min(n);
        Ok(Index {
            buckets: buckets.into_boxed_slice(),
            mask: n - 1,
            window,
        })
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * size_of::<Bucket>()
    }

    #[inline(always)]
    pub(crate) fn home(&self, h: u64) -> usize {
        h as usize & self.mask
    }

    #[inline(always)]
    pub(crate) fn prefetch_home(&self, h: u64) {
        prefetch(&self.buckets[self.home(h)]);
    }

    /// Calls `f(slot, item)` for every published slot with the hash's tag where the key may be,
    /// nearest first, until `f` returns `Some`. Lock-free; a slot may be stale by the time `f`
    /// runs, so `f` must check the item really holds the key.
    #[inline(always)]
    pub(crate) fn probe<T>(&self, h: u64, mut f: impl FnMut(Slot, u32) -> Option<T>) -> Option<T> {
        let home = self.home(h);
        let bucket = &self.buckets[home];
        if let Some(found) = bucket.probe(home, tag(h), &mut f) {
            return Some(found);
        }
        // A stable key in an overflow bucket keeps its home's count above 0, so reading the
        // control word after the home scan is as good as before it.
        match extent(bucket.ctrl.load(Ordering::Relaxed)) {
            0 => None,
            far => self.probe_overflow(home, far, tag(h), &mut f),
        }
    }

    /// The rare part of `probe`, kept out of line so the hot path stays short.
    #[cold]
    #[inline(never)]
    fn probe_overflow<T>(
        &self,
        home: usize,
        far: usize,
        t: u8,
        f: &mut impl FnMut(Slot, u32) -> Option<T>,
    ) -> Option<T> {
        (1..=far).find_map(|d| {
            let b = (home + d) & self.mask;
            self.buckets[b].probe(b, t, f)
        })
    }

    /// The item of the first slot in the home bucket with the hash's tag, or `NO_ITEM`: a hint
    /// for prefetching and for trying that item first.
    #[inline(always)]
    pub(crate) fn first_candidate(&self, h: u64) -> u32 {
        let b = self.home(h);
        self.buckets[b]
            .probe(b, tag(h), &mut |_, idx| Some(idx))
            .unwrap_or(EMPTY)
    }

    /// Takes the writer lock of the hash's home bucket, which serializes all mutations of the
    /// keys homed there. Readers never look at the lock.
    pub(crate) fn lock(&self, h: u64) -> Locked<'_> {
        let home = self.home(h);
        let ctrl = &self.buckets[home].ctrl;
        loop {
            let v = ctrl.load(Ordering::Relaxed);
            if v & LOCK == 0
                && ctrl
                    .compare_exchange(v, v | LOCK, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Locked {
                    index: self,
                    home,
                    ctrl: v,
                };
            }
            spin();
        }
    }

    /// Claims the first empty slot within the window for `idx` (not yet visible to lookups).
    fn claim(&self, home: usize, idx: u32) -> Option<(usize, Slot)> {
        for d in 0..self.window {
            let bucket = (home + d) & self.mask;
            for (slot, item) in self.buckets[bucket].items.iter().enumerate() {
                if item.load(Ordering::Relaxed) == EMPTY
                    && item
                        .compare_exchange(EMPTY, idx, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return Some((d, Slot { bucket, slot }));
                }
            }
        }
        None
    }
}

/// A held bucket lock; unlocks on drop. Keeps the control word's count and distance, which only
/// the holder changes.
pub(crate) struct Locked<'a> {
    index: &'a Index,
    home: usize,
    ctrl: u32,
}

impl Locked<'_> {
    /// Reserves a slot for item `idx`; `None` when the window around home has no empty slot.
    pub(crate) fn claim(&self, idx: u32) -> Option<Slot> {
        self.index.claim(self.home, idx).map(|(_, s)| s)
    }

    /// Makes a claimed slot visible to lookups of hash `h`. The item must be written already:
    /// the tag's release store is what publishes it.
    pub(crate) fn publish(&mut self, s: Slot, h: u64) {
        let d = s.bucket.wrapping_sub(self.home) & self.index.mask;
        if d > 0 {
            // Before the tag, so a reader that sees the tag also sees that home overflows.
            let count = (self.ctrl & COUNT_MASK) + 1;
            let dist = ((self.ctrl >> DIST_SHIFT) & DIST_MASK).max(d as u32);
            self.set_ctrl(count | dist << DIST_SHIFT);
        }
        self.index.buckets[s.bucket].set_tag(s.slot, tag(h));
    }

    /// Removes a published slot (its item must already be killed).
    pub(crate) fn remove(&mut self, s: Slot) {
        let bucket = &self.index.buckets[s.bucket];
        bucket.clear_tag(s.slot);
        bucket.items[s.slot].store(EMPTY, Ordering::Release);
        if s.bucket != self.home {
            let count = (self.ctrl & COUNT_MASK) - 1;
            // The farthest distance is only known to be 0 again once nothing overflows.
            let dist = if count == 0 {
                0
            } else {
                self.ctrl & (DIST_MASK << DIST_SHIFT)
            };
            self.set_ctrl(count | dist);
        }
    }

    fn set_ctrl(&mut self, ctrl: u32) {
        self.ctrl = ctrl;
        self.index.buckets[self.home]
            .ctrl
            .store(ctrl | LOCK, Ordering::Relaxed);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.index.buckets[self.home]
            .ctrl
            .store(self.ctrl, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn match_bytes_is_exact() {
        assert_eq!(match_bytes(0x0001_0100, 1), 0x0080_8000);
        assert_eq!(
            match_bytes(0x0100_0001, 0),
            0xffff_ffff_0080_8000 & 0x8080_8080_8080_8080
        );
        assert_eq!(match_bytes(u64::MAX, 0xff), 0x8080_8080_8080_8080);
        assert_eq!(match_bytes(0x0201_0201_0201_0201, 1), 0x0080_0080_0080_0080);
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(size_of::<Bucket>(), 64);
        assert_eq!(align_of::<Bucket>(), 64);
    }

    #[test]
    fn sizing_keeps_load_at_most_80_percent() {
        for cap in [1, 2, 9, 10, 100, 153, 1000, 1 << 20, 1_000_000, 3_000_000] {
            let n = buckets_for(cap);
            assert!(cap * 10 <= n * SLOTS * 8, "capacity {cap} -> {n} buckets");
        }
        assert!(
            buckets_for(153) <= MAX_PROBE,
            "small tables must probe every bucket"
        );
    }
}
