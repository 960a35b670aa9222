use rzab_wire::NodeId;

/// The most nodes a cluster may have: node ids are `0..MAX_NODES`.
pub const MAX_NODES: usize = 64;

/// A set of node ids as a bitmask (Zab clusters are small; 64 is plenty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NodeSet(pub u64);

impl NodeSet {
    pub const EMPTY: NodeSet = NodeSet(0);

    pub fn from_ids(ids: impl IntoIterator<Item = NodeId>) -> NodeSet {
        let mut s = NodeSet::EMPTY;
        for id in ids {
            s.insert(id);
        }
        s
    }

    pub fn insert(&mut self, id: NodeId) {
        debug_assert!((id as usize) < MAX_NODES);
        self.0 |= 1u64 << id;
    }

    pub fn remove(&mut self, id: NodeId) {
        self.0 &= !(1u64 << id);
    }

    pub fn contains(self, id: NodeId) -> bool {
        (id as usize) < MAX_NODES && self.0 & (1u64 << id) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn without(self, id: NodeId) -> NodeSet {
        let mut s = self;
        s.remove(id);
        s
    }

    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let id = bits.trailing_zeros() as NodeId;
            bits &= bits - 1;
            Some(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_ops() {
        let s = NodeSet::from_ids([0, 2, 63]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(63) && !s.contains(1) && !s.contains(200));
        assert_eq!(s.without(2).iter().collect::<Vec<_>>(), vec![0, 63]);
    }
}
