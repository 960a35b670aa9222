//! A ring of log entries addressed by lane-local id (lid): the leader lane's
//! retained log and a follower lane's receive window share this structure.

use rzab_wire::{NodeId, Op, PrepareEntry, Zxid};

/// An entry's fixed fields (its value lives in the ring's value arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub zxid: Zxid,
    pub key: u64,
    pub session: u32,
    pub seq: u32,
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
/// Preallocated at start-up (metas plus a flat value arena of
/// `capacity * value_max` bytes), so the hot path never allocates.
#[derive(Debug)]
pub struct LogRing {
    mask: u64,
    value_max: usize,
    metas: Vec<EntryMeta>,
    present: Vec<bool>,
    values: Vec<u8>,
    start: u64,
}

impl LogRing {
    pub fn new(capacity: usize, value_max: usize, start: u64) -> LogRing {
        assert!(capacity.is_power_of_two(), "ring capacity must be a power of two");
        LogRing {
            mask: capacity as u64 - 1,
            value_max,
            metas: vec![EntryMeta::EMPTY; capacity],
            present: vec![false; capacity],
            values: vec![0; capacity * value_max],
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

    /// Stores an entry at `lid`. Returns false (storing nothing) if `lid` is
    /// outside the window or the value is longer than `value_max`.
    pub fn insert(&mut self, lid: u64, meta: EntryMeta, value: &[u8]) -> bool {
        if !self.in_window(lid) || value.len() > self.value_max {
            return false;
        }
        debug_assert_eq!(meta.len as usize, value.len());
        let slot = self.slot(lid);
        self.metas[slot] = meta;
        let at = slot * self.value_max;
        self.values[at..at + value.len()].copy_from_slice(value);
        self.present[slot] = true;
        true
    }

    pub fn get(&self, lid: u64) -> Option<EntryRef<'_>> {
        if !self.is_present(lid) {
            return None;
        }
        let slot = self.slot(lid);
        let meta = &self.metas[slot];
        let at = slot * self.value_max;
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
}
