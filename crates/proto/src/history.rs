//! What a node keeps about applied writes beyond its store: a bounded ring
//! of the latest applied entries in zxid order (so a new leader can send a
//! follower the writes it missed instead of a whole snapshot), and the last
//! applied write of every session (replicated state: it travels in
//! snapshots and lets a new leader refuse a write sequenced twice).

use rzab_wire::{HistoryItem, Item, NodeId, Op, SessionItem, SnapshotItem, Zxid};
use std::collections::VecDeque;

/// An applied (or held) write, owned: the unit of recovery transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    pub zxid: Zxid,
    pub lane: u8,
    pub origin: NodeId,
    pub op: Op,
    pub session: u32,
    pub seq: u32,
    pub key: u64,
    pub value: Vec<u8>,
}

impl OwnedEntry {
    pub fn from_item(h: &HistoryItem<'_>) -> OwnedEntry {
        OwnedEntry {
            zxid: h.zxid,
            lane: h.lane,
            origin: h.origin,
            op: h.op,
            session: h.session,
            seq: h.seq,
            key: h.key,
            value: h.value.to_vec(),
        }
    }

    pub fn item(&self) -> Item<'_> {
        Item::History(HistoryItem {
            zxid: self.zxid,
            lane: self.lane,
            origin: self.origin,
            op: self.op,
            session: self.session,
            seq: self.seq,
            key: self.key,
            value: &self.value,
        })
    }
}

/// A key's value in a snapshot, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedItem {
    pub key: u64,
    pub zxid: Zxid,
    pub value: Vec<u8>,
}

impl OwnedItem {
    pub fn item(&self) -> Item<'_> {
        Item::Snapshot(SnapshotItem {
            key: self.key,
            zxid: self.zxid,
            value: &self.value,
        })
    }
}

/// A store snapshot with the session table, taken when the node had applied
/// `base` (fuzzy if writes went on meanwhile: items may be newer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub base: Zxid,
    pub items: Vec<OwnedItem>,
    pub sessions: Vec<SessionItem>,
}

/// The latest applied entries, oldest first, at most `capacity` of them.
#[derive(Debug)]
pub struct HistoryLog {
    capacity: usize,
    entries: VecDeque<OwnedEntry>,
    /// The id applied just before the oldest retained entry.
    before: Zxid,
}

impl HistoryLog {
    pub fn new(capacity: usize, applied: Zxid) -> HistoryLog {
        HistoryLog {
            capacity,
            entries: VecDeque::with_capacity(capacity.min(1 << 16)),
            before: applied,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records an applied entry (ids increase).
    pub fn push(&mut self, e: OwnedEntry) {
        debug_assert!(
            self.entries.back().is_none_or(|b| b.zxid < e.zxid),
            "history out of order"
        );
        if self.capacity == 0 {
            self.before = e.zxid;
            return;
        }
        if self.entries.len() == self.capacity
            && let Some(old) = self.entries.pop_front()
        {
            self.before = old.zxid;
        }
        self.entries.push_back(e);
    }

    /// The entries applied after `after`, if every one of them is retained.
    pub fn after(&self, after: Zxid) -> Option<Vec<OwnedEntry>> {
        if after < self.before {
            return None;
        }
        let from = self.entries.partition_point(|e| e.zxid <= after);
        Some(self.entries.range(from..).cloned().collect())
    }

    /// Forgets everything (the store was replaced by a snapshot at `base`).
    pub fn reset(&mut self, base: Zxid) {
        self.entries.clear();
        self.before = base;
    }
}

/// The last applied write of each session, keyed by (origin, lane, session).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSeqs {
    seqs: std::collections::BTreeMap<(NodeId, u8, u32), u32>,
}

impl SessionSeqs {
    pub fn record(&mut self, origin: NodeId, lane: u8, session: u32, seq: u32) {
        self.seqs.insert((origin, lane, session), seq);
    }

    pub fn get(&self, origin: NodeId, lane: u8, session: u32) -> u32 {
        self.seqs.get(&(origin, lane, session)).copied().unwrap_or(0)
    }

    pub fn items(&self) -> Vec<SessionItem> {
        self.seqs
            .iter()
            .map(|(&(origin, lane, session), &seq)| SessionItem {
                origin,
                lane,
                session,
                seq,
            })
            .collect()
    }

    pub fn load(&mut self, items: &[SessionItem]) {
        self.seqs = items
            .iter()
            .map(|s| ((s.origin, s.lane, s.session), s.seq))
            .collect();
    }

    /// The sessions of one lane, as (origin, session, seq).
    pub fn of_lane(&self, lane: u8) -> impl Iterator<Item = (NodeId, u32, u32)> + '_ {
        self.seqs
            .iter()
            .filter(move |(k, _)| k.1 == lane)
            .map(|(&(o, _, s), &q)| (o, s, q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(c: u32) -> OwnedEntry {
        OwnedEntry {
            zxid: Zxid::new(1, c),
            lane: 0,
            origin: 1,
            op: Op::Put,
            session: 0,
            seq: c,
            key: c as u64,
            value: vec![c as u8],
        }
    }

    #[test]
    fn keeps_the_latest_and_knows_what_it_lost() {
        let mut h = HistoryLog::new(3, Zxid::epoch_base(1));
        for c in 1..=5 {
            h.push(e(c));
        }
        assert_eq!(h.after(Zxid::new(1, 3)).unwrap(), vec![e(4), e(5)]);
        assert_eq!(
            h.after(Zxid::new(1, 2)).unwrap().len(),
            3,
            "3, 4 and 5 are retained"
        );
        assert!(
            h.after(Zxid::new(1, 1)).is_none(),
            "2 was dropped: a snapshot is needed"
        );
        assert_eq!(h.after(Zxid::new(1, 5)).unwrap(), vec![]);
        h.reset(Zxid::new(2, 7));
        assert!(h.after(Zxid::new(1, 5)).is_none());
        assert_eq!(h.after(Zxid::new(2, 7)).unwrap(), vec![]);
    }

    #[test]
    fn session_table_round_trips() {
        let mut s = SessionSeqs::default();
        s.record(1, 0, 3, 9);
        s.record(2, 1, 0, 4);
        s.record(1, 0, 3, 10);
        assert_eq!(s.get(1, 0, 3), 10);
        assert_eq!(s.get(5, 0, 0), 0);
        let mut t = SessionSeqs::default();
        t.load(&s.items());
        assert_eq!(t, s);
        assert_eq!(s.of_lane(1).collect::<Vec<_>>(), vec![(2, 0, 4)]);
    }
}
