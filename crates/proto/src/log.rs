//! A ring of log entries addressed by lane-local id (lid): the leader lane's
//! retained log and a follower lane's receive window share this structure.

use rzab_wire::{NodeId, Op, PrepareEntry, Zxid};

/// An entry's fixed fields (its value lives in the ring's value arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub zxid: Zxid,
    pub key: u64,
    pub session: u32,
    pub seq: u64,
    pub origin: NodeId,
    pub op: Op,
    pub len: u16,
}

impl EntryMeta {
    const EMPTY: EntryMeta = EntryMeta {
        zxid: Zxid::ZERO,
        key: 0,
        session: 0,
        seq: 0,
        origin: 0,
        op: Op::Put,
        len: 0,
    };
}

/// A borrowed view of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub lid: u64,
    pub meta: &'a EntryMeta,
    pub value: &'a [u8],
}

impl<'a> EntryRef<'a> {
    /// The entry, owned (for recovery and the history log).
    pub fn to_owned_entry(&self, lane: u8) -> crate::OwnedEntry {
        owned(*self, lane)
    }

    /// The entry as a Prepare entry for encoding.
    pub fn as_prepare(&self) -> PrepareEntry<'a> {
        PrepareEntry {
            zxid: self.meta.zxid,
            key: self.meta.key,
            session: self.meta.session,
            seq: self.meta.seq,
            origin: self.meta.origin,
            op: self.meta.op,
            value: self.value,
        }
    }
}

/// An entry of lane `lane` as an owned history entry.
pub fn owned(e: EntryRef<'_>, lane: u8) -> crate::OwnedEntry {
    crate::OwnedEntry {
        zxid: e.meta.zxid,
        lane,
        origin: e.meta.origin,
        op: e.meta.op,
        session: e.meta.session,
        seq: e.meta.seq,
        key: e.meta.key,
        value: e.value.to_vec(),
    }
}

/// Entries with lids in `[start, start + capacity)`, each slot present or not.
///
/// Preallocated at start-up (metas plus a flat value arena), so the hot path
/// never allocates. Where values go depends on how entries arrive:
/// - [`LogRing::new`] (a follower's receive window, filled in any order):
///   slot `s` keeps its value at `s * value_max`.
/// - [`LogRing::appended`] (the leader's retained log, filled in lid order):
///   values are packed one after another in a circular byte arena, so the
///   log holds as many bytes as its entries carry rather than
///   `capacity * value_max` (with 1 KiB values allowed, that was 290 MB for
///   a log of 32-byte writes).
#[derive(Debug)]
pub struct LogRing {
    mask: u64,
    metas: Vec<EntryMeta>,
    present: Vec<bool>,
    values: Vec<u8>,
    place: Place,
    start: u64,
}

#[derive(Debug)]
enum Place {
    Slots {
        value_max: usize,
    },
    /// `at[slot]` is where the entry's value starts, in bytes counted since
    /// the arena was made (the arena index is that modulo its size, and a
    /// value never wraps around its end); `head` is where the next one goes
    /// and `next` the lid it must have.
    Packed {
        at: Vec<u64>,
        head: u64,
        next: u64,
    },
}

impl LogRing {
    pub fn new(capacity: usize, value_max: usize, start: u64) -> LogRing {
        let values = vec![0; capacity * value_max];
        LogRing::with(capacity, values, Place::Slots { value_max }, start)
    }

    /// A ring filled in lid order from `start`, whose values share `bytes`
    /// bytes.
    pub fn appended(capacity: usize, bytes: usize, start: u64) -> LogRing {
        let place = Place::Packed {
            at: vec![0; capacity],
            head: 0,
            next: start,
        };
        LogRing::with(capacity, vec![0; bytes.max(1)], place, start)
    }

    fn with(capacity: usize, values: Vec<u8>, place: Place, start: u64) -> LogRing {
        assert!(capacity.is_power_of_two(), "ring capacity must be a power of two");
        LogRing {
            mask: capacity as u64 - 1,
            metas: vec![EntryMeta::EMPTY; capacity],
            present: vec![false; capacity],
            values,
            place,
            start,
        }
    }

    pub fn capacity(&self) -> usize {
        self.metas.len()
    }

    /// Lowest lid the ring can hold.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the highest lid the ring can hold.
    pub fn end(&self) -> u64 {
        self.start + self.capacity() as u64
    }

    pub fn in_window(&self, lid: u64) -> bool {
        lid >= self.start && lid < self.end()
    }

    fn slot(&self, lid: u64) -> usize {
        (lid & self.mask) as usize
    }

    pub fn is_present(&self, lid: u64) -> bool {
        self.in_window(lid) && self.present[self.slot(lid)]
    }

    /// Where (in bytes since the arena was made) a packed value of `len`
    /// bytes for `lid` would start, if it fits now.
    fn packed_at(&self, lid: u64, len: usize) -> Option<u64> {
        let Place::Packed { at, head, next } = &self.place else {
            return None;
        };
        let (size, len) = (self.values.len() as u64, len as u64);
        if lid != *next || len > size {
            return None;
        }
        // Values never straddle the arena's end: skip to its start.
        let mut pos = *head;
        if pos % size + len > size {
            pos = pos.next_multiple_of(size);
        }
        // The oldest value still held (none: the arena is free).
        let tail = if self.start < *next {
            at[self.slot(self.start)]
        } else {
            pos
        };
        (pos + len - tail <= size).then_some(pos)
    }

    /// Where a value of `len` bytes for `lid` would go, if it fits now:
    /// its index in `values`, and its packed position (0 for slots).
    fn place_for(&self, lid: u64, len: usize) -> Option<(usize, u64)> {
        match &self.place {
            Place::Slots { value_max } => (len <= *value_max).then(|| (self.slot(lid) * value_max, 0)),
            Place::Packed { .. } => self
                .packed_at(lid, len)
                .map(|pos| ((pos % self.values.len() as u64) as usize, pos)),
        }
    }

    /// Whether a value of `len` bytes for `lid` fits now (a packed ring
    /// may be out of bytes before it is out of slots).
    pub fn fits(&self, lid: u64, len: usize) -> bool {
        self.in_window(lid) && self.place_for(lid, len).is_some()
    }

    /// Stores an entry at `lid`. Returns false (storing nothing) if `lid` is
    /// outside the window, or the value does not fit (longer than
    /// `value_max`; a packed ring: out of bytes, or `lid` out of order).
    pub fn insert(&mut self, lid: u64, meta: EntryMeta, value: &[u8]) -> bool {
        if !self.in_window(lid) {
            return false;
        }
        let Some((pos, virt)) = self.place_for(lid, value.len()) else {
            return false;
        };
        debug_assert_eq!(meta.len as usize, value.len());
        let slot = self.slot(lid);
        if let Place::Packed { at, head, next } = &mut self.place {
            at[slot] = virt;
            *head = virt + value.len() as u64;
            *next = lid + 1;
        }
        self.metas[slot] = meta;
        self.values[pos..pos + value.len()].copy_from_slice(value);
        self.present[slot] = true;
        true
    }

    pub fn get(&self, lid: u64) -> Option<EntryRef<'_>> {
        if !self.is_present(lid) {
            return None;
        }
        let slot = self.slot(lid);
        let meta = &self.metas[slot];
        let at = match &self.place {
            Place::Slots { value_max } => slot * value_max,
            Place::Packed { at, .. } => (at[slot] % self.values.len() as u64) as usize,
        };
        Some(EntryRef {
            lid,
            meta,
            value: &self.values[at..at + meta.len as usize],
        })
    }

    pub fn set_zxid(&mut self, lid: u64, zxid: Zxid) {
        debug_assert!(self.is_present(lid));
        let slot = self.slot(lid);
        self.metas[slot].zxid = zxid;
    }

    /// Frees every slot below `lid`, sliding the window forward.
    pub fn release_below(&mut self, lid: u64) {
        debug_assert!(lid >= self.start);
        let upto = lid.min(self.end());
        for l in self.start..upto {
            let slot = self.slot(l);
            self.present[slot] = false;
        }
        self.start = lid;
        if let Place::Packed { next, .. } = &mut self.place {
            *next = (*next).max(lid);
        }
    }

    /// First lid at or above `from` that is not present (bounded by the window end).
    pub fn first_missing(&self, from: u64) -> u64 {
        let mut lid = from.max(self.start);
        while lid < self.end() && self.present[self.slot(lid)] {
            lid += 1;
        }
        lid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: u64, len: u16) -> EntryMeta {
        EntryMeta {
            key,
            len,
            ..EntryMeta::EMPTY
        }
    }

    #[test]
    fn window_slides_and_slots_are_reused() {
        let mut r = LogRing::new(4, 8, 10);
        assert!(!r.insert(9, meta(1, 0), &[]), "below the window");
        assert!(!r.insert(14, meta(1, 0), &[]), "beyond the window");
        assert!(r.insert(10, meta(1, 3), b"abc"));
        assert!(r.insert(12, meta(2, 1), b"z"));
        assert_eq!(r.first_missing(10), 11);
        assert_eq!(r.get(12).unwrap().value, b"z");
        r.release_below(12);
        assert!(r.get(10).is_none());
        assert!(r.insert(14, meta(3, 2), b"xy"), "slot of lid 10 reused");
        assert_eq!(r.get(14).unwrap().meta.key, 3);
        assert_eq!(r.first_missing(12), 13);
        assert!(!r.insert(13, meta(4, 9), &[0; 9]), "value longer than value_max");
    }

    #[test]
    fn packed_values_wrap_and_bytes_bound_the_log() {
        let mut r = LogRing::appended(8, 10, 0);
        assert!(r.insert(0, meta(1, 4), b"abcd"));
        assert!(r.insert(1, meta(2, 4), b"efgh"));
        assert!(!r.fits(2, 3), "2 bytes left at the end, and the front is held");
        assert!(r.fits(2, 2));
        assert!(!r.insert(3, meta(3, 1), b"x"), "lids go in order");
        r.release_below(1);
        // 3 bytes do not fit at the end (8..10): they go to the front (0..3).
        assert!(r.insert(2, meta(3, 3), b"ijk"));
        assert_eq!(r.get(2).unwrap().value, b"ijk");
        assert_eq!(r.get(1).unwrap().value, b"efgh", "the held value is intact");
        assert!(!r.fits(3, 2), "3..4 is free but 4..8 is held");
        assert!(r.fits(3, 1));
        assert!(r.insert(3, meta(4, 0), b""), "an empty value always fits");
        r.release_below(4);
        assert!(r.fits(4, 10), "all free: a value of the arena's size fits");
        assert!(!r.fits(4, 11));
        assert!(r.insert(4, meta(5, 10), b"0123456789"));
        assert_eq!(r.get(4).unwrap().value, b"0123456789");
        assert!(r.get(3).is_none());
    }

    const LONGEST: usize = 11;

    proptest::proptest! {
        /// Against a model of what is held: every held entry reads back its
        /// own bytes, and the ring refuses a value only when the bytes held
        /// plus the value exceed the arena less one skipped end (a value
        /// never straddles the end, and the held span crosses the end at
        /// most once, so at most `longest - 1` bytes are skipped).
        #[test]
        fn packed_ring_matches_a_model(
            ops in proptest::collection::vec((0..=LONGEST, 0u64..3), 1..200),
        ) {
            const SIZE: usize = 48;
            let mut r = LogRing::appended(16, SIZE, 0);
            let mut held: std::collections::VecDeque<(u64, Vec<u8>)> = Default::default();
            let mut next = 0u64;
            for (len, free) in ops {
                let value: Vec<u8> = (0..len).map(|i| (next as u8).wrapping_mul(7).wrapping_add(i as u8)).collect();
                let live: usize = held.iter().map(|(_, v)| v.len()).sum();
                let in_slots = held.len() < 16;
                if r.insert(next, meta(next, len as u16), &value) {
                    proptest::prop_assert!(in_slots && live + len <= SIZE);
                    held.push_back((next, value));
                    next += 1;
                } else {
                    proptest::prop_assert!(!in_slots || live + len + LONGEST - 1 > SIZE,
                        "refused {len} bytes with {live} held");
                }
                for _ in 0..free {
                    if held.pop_front().is_some() {
                        r.release_below(held.front().map_or(next, |(l, _)| *l));
                    }
                }
                for (lid, v) in &held {
                    proptest::prop_assert_eq!(r.get(*lid).map(|e| e.value), Some(&v[..]));
                }
            }
        }
    }
}
