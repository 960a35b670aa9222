//! What a node keeps about applied writes beyond its store: a bounded ring
//! of the latest applied entries in zxid order (so a new leader can send a
//! follower the writes it missed instead of a whole snapshot), and the last
//! applied write of every session (replicated state: it travels in
//! snapshots and lets a new leader refuse a write sequenced twice).

use rzab_wire::{BindValue, HistoryItem, Item, NodeId, Op, SessionItem, SnapshotItem, Zxid};
use std::collections::VecDeque;

/// An applied (or held) write, owned: the unit of recovery transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    pub zxid: Zxid,
    pub lane: u8,
    pub origin: NodeId,
    pub op: Op,
    pub session: u32,
    pub seq: u64,
    pub key: u64,
    pub value: Vec<u8>,
}

impl OwnedEntry {
    fn empty() -> OwnedEntry {
        OwnedEntry {
            zxid: Zxid::ZERO,
            lane: 0,
            origin: 0,
            op: Op::Put,
            session: 0,
            seq: 0,
            key: 0,
            value: Vec::new(),
        }
    }

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

    /// Records an applied entry filled in by `fill`, reusing the evicted
    /// entry's buffer once full (no allocation per apply in steady state).
    pub fn push_with(&mut self, fill: impl FnOnce(&mut OwnedEntry)) {
        let mut slot = if self.entries.len() == self.capacity {
            match self.entries.pop_front() {
                Some(old) => {
                    self.before = old.zxid;
                    old
                }
                None => OwnedEntry::empty(),
            }
        } else {
            OwnedEntry::empty()
        };
        fill(&mut slot);
        if self.capacity == 0 {
            self.before = slot.zxid;
            return;
        }
        debug_assert!(
            self.entries.back().is_none_or(|b| b.zxid < slot.zxid),
            "history out of order"
        );
        self.entries.push_back(slot);
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

/// A replica's table of the last applied write of each session of one
/// lane (by origin and session number), as [`record_applied`] keeps it.
pub trait AppliedSeqs {
    /// Records write `seq` of the session, applied at `zxid`; an older one
    /// (replayed after a fuzzy snapshot) changes nothing.
    fn record(&mut self, origin: NodeId, session: u32, seq: u64, zxid: Zxid);
    /// The session's Bind `seq` of `owner` was applied (after `record`).
    fn bound(&mut self, origin: NodeId, session: u32, seq: u64, owner: u64);
}

/// Records what applying write `seq` of (origin, session) at `zxid` means
/// for the session table, as every replica must, since a new leader loads
/// the table: the write's seq; for a Bind, its owner, and the session it
/// fences raised to the end of the fenced generation. Returns the Bind.
pub fn record_applied(
    t: &mut impl AppliedSeqs,
    origin: NodeId,
    session: u32,
    seq: u64,
    zxid: Zxid,
    op: Op,
    value: &[u8],
) -> Option<BindValue> {
    let bind = crate::bind_of(op, value);
    record_bind(t, origin, session, seq, zxid, bind);
    bind
}

/// [`record_applied`] for a write whose Bind (if it is one) is decoded.
pub fn record_bind(
    t: &mut impl AppliedSeqs,
    origin: NodeId,
    session: u32,
    seq: u64,
    zxid: Zxid,
    bind: Option<BindValue>,
) {
    t.record(origin, session, seq, zxid);
    let Some(bind) = bind else { return };
    t.bound(origin, session, seq, bind.owner);
    if let Some(f) = bind.fence {
        t.record(f.node, f.session, rzab_wire::gen_end(f.generation), zxid);
    }
}

/// The last applied write of each session, keyed by (origin, lane,
/// session): its seq and id (the id is the snapshot's base when the entry
/// came from a snapshot, which carries only seqs), and the owner of its
/// binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSeqs {
    seqs: std::collections::BTreeMap<(NodeId, u8, u32), (u64, Zxid, u64)>,
}

impl SessionSeqs {
    /// Records an applied write; an older one (a fuzzy snapshot may be
    /// ahead of the writes replayed after it) changes nothing.
    pub fn record(&mut self, origin: NodeId, lane: u8, session: u32, seq: u64, zxid: Zxid) {
        let e = self
            .seqs
            .entry((origin, lane, session))
            .or_insert((0, Zxid::ZERO, 0));
        if seq >= e.0 {
            (e.0, e.1) = (seq, zxid);
        }
    }

    /// The session's Bind `seq` of `owner` was applied (after `record`).
    pub fn bound(&mut self, origin: NodeId, lane: u8, session: u32, seq: u64, owner: u64) {
        if let Some(e) = self.seqs.get_mut(&(origin, lane, session))
            && seq >= e.0
        {
            e.2 = owner;
        }
    }

    pub fn get(&self, origin: NodeId, lane: u8, session: u32) -> u64 {
        self.last(origin, lane, session).map_or(0, |(s, _)| s)
    }

    /// The session's last applied write: (seq, id).
    pub fn last(&self, origin: NodeId, lane: u8, session: u32) -> Option<(u64, Zxid)> {
        self.seqs.get(&(origin, lane, session)).map(|e| (e.0, e.1))
    }

    pub fn items(&self) -> Vec<SessionItem> {
        self.seqs
            .iter()
            .map(|(&(origin, lane, session), &(seq, _, owner))| SessionItem {
                origin,
                lane,
                session,
                seq,
                owner,
            })
            .collect()
    }

    /// Replaces the table with a snapshot's (taken at `base`).
    pub fn load(&mut self, items: &[SessionItem], base: Zxid) {
        self.seqs = items
            .iter()
            .map(|s| ((s.origin, s.lane, s.session), (s.seq, base, s.owner)))
            .collect();
    }

    /// The table of one lane's sessions, for [`record_applied`].
    pub fn lane(&mut self, lane: u8) -> LaneOf<'_> {
        LaneOf { seqs: self, lane }
    }

    /// The sessions of one lane, as (origin, session, seq, owner).
    pub fn of_lane(&self, lane: u8) -> impl Iterator<Item = (NodeId, u32, u64, u64)> + '_ {
        self.seqs
            .iter()
            .filter(move |(k, _)| k.1 == lane)
            .map(|(&(o, _, s), &(q, _, w))| (o, s, q, w))
    }
}

/// One lane's part of a [`SessionSeqs`].
pub struct LaneOf<'a> {
    seqs: &'a mut SessionSeqs,
    lane: u8,
}

impl AppliedSeqs for LaneOf<'_> {
    fn record(&mut self, origin: NodeId, session: u32, seq: u64, zxid: Zxid) {
        self.seqs.record(origin, self.lane, session, seq, zxid);
    }

    fn bound(&mut self, origin: NodeId, session: u32, seq: u64, owner: u64) {
        self.seqs.bound(origin, self.lane, session, seq, owner);
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
            seq: c as u64,
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
    fn push_with_recycles_the_oldest_entry() {
        let mut h = HistoryLog::new(2, Zxid::epoch_base(1));
        for c in 1..=3 {
            h.push_with(|slot| {
                *slot = e(c);
            });
        }
        assert_eq!(h.len(), 2);
        assert!(h.after(Zxid::new(1, 0)).is_none(), "1 was evicted");
        assert_eq!(h.after(Zxid::new(1, 1)).unwrap(), vec![e(2), e(3)]);
        let mut none = HistoryLog::new(0, Zxid::epoch_base(1));
        none.push_with(|slot| *slot = e(1));
        assert!(none.is_empty());
        assert_eq!(
            none.after(Zxid::new(1, 1)).unwrap(),
            vec![],
            "nothing retained, nothing missed"
        );
    }

    #[test]
    fn an_applied_bind_records_its_owner_and_closes_the_fenced_generation() {
        use rzab_wire::{Fence, gen_end, gen_start};
        let z = |c| Zxid::new(1, c);
        let mut s = SessionSeqs::default();
        let put = rzab_wire::Op::Put;
        assert_eq!(
            record_applied(&mut s.lane(2), 1, 3, gen_start(1) + 4, z(1), put, b"x"),
            None
        );
        let bind = BindValue {
            owner: 77,
            fence: Some(Fence {
                node: 1,
                session: 3,
                generation: 1,
            }),
        };
        let got = record_applied(&mut s.lane(2), 0, 5, gen_start(2), z(2), Op::Bind, &bind.to_vec());
        assert_eq!(got, Some(bind));
        assert_eq!(
            s.of_lane(2).collect::<Vec<_>>(),
            vec![(0, 5, gen_start(2), 77), (1, 3, gen_end(1), 0)],
            "the binder's owner, and the fenced generation ended"
        );
        assert_eq!(
            s.last(1, 2, 3),
            Some((gen_end(1), z(2))),
            "raised at the Bind's id"
        );
        // A write of the fenced generation replayed later changes nothing.
        record_applied(&mut s.lane(2), 1, 3, gen_start(1) + 5, z(3), put, b"y");
        assert_eq!(s.get(1, 2, 3), gen_end(1));
        assert!(s.of_lane(0).next().is_none(), "other lanes untouched");
    }

    #[test]
    fn session_table_keeps_the_latest_and_round_trips() {
        let z = |c| Zxid::new(1, c);
        let mut s = SessionSeqs::default();
        s.record(1, 0, 3, 9, z(1));
        s.record(2, 1, 0, 4, z(2));
        s.bound(2, 1, 0, 4, 77);
        s.record(1, 0, 3, 10, z(3));
        s.record(1, 0, 3, 8, z(4)); // older (replayed after a fuzzy snapshot)
        assert_eq!(s.last(1, 0, 3), Some((10, z(3))));
        assert_eq!(s.get(5, 0, 0), 0);
        let mut t = SessionSeqs::default();
        t.load(&s.items(), z(7));
        assert_eq!(t.items(), s.items());
        assert_eq!(t.last(1, 0, 3), Some((10, z(7))), "a snapshot's ids are its base");
        assert_eq!(
            s.of_lane(1).collect::<Vec<_>>(),
            vec![(2, 0, 4, 77)],
            "with the owner"
        );
        assert_eq!(
            t.of_lane(1).collect::<Vec<_>>(),
            vec![(2, 0, 4, 77)],
            "through a snapshot"
        );
    }
}
