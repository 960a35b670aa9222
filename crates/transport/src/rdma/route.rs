//! Where a `Dest` goes, and whether a received datagram's source is a
//! member's lane. Generic over the address-handle type so it is tested
//! without a device.

use super::grh::Gid;
use crate::{Dest, NodeId, NodeSet};
use rzab_proto::MAX_NODES;

/// What a sender needs to reach a UD queue pair, and what identifies it as
/// a source: learned in the bootstrap exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PeerAddress {
    pub qpn: u32,
    pub qkey: u32,
    /// The port's LID (InfiniBand; 0 on RoCE).
    pub lid: u16,
    /// The GID at the configured index (on RoCE v2 over IPv4, `::ffff:IP`).
    pub gid: Gid,
}

/// Who sent a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Peer(NodeId),
    /// This endpoint's own QP (its multicast heard back).
    Own,
    Unknown,
}

/// Where one `Dest` goes: these members, and the multicast group or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hops {
    pub nodes: NodeSet,
    pub group: bool,
    /// Copies with nowhere to go (a non-member, or one not yet known).
    pub missing: u64,
}

impl Hops {
    pub fn count(&self) -> usize {
        self.nodes.len() + usize::from(self.group)
    }
}

/// The members of one lane: their addresses and address handles.
pub struct Peers<H> {
    me: NodeId,
    own: PeerAddress,
    members: NodeSet,
    /// Whether `Dest::Group` goes to the multicast group.
    multicast: bool,
    /// Whether sources without a GRH may be told apart by LID (InfiniBand).
    lids: bool,
    entries: Vec<Option<(PeerAddress, H)>>,
}

impl<H> Peers<H> {
    pub fn new(me: NodeId, own: PeerAddress, members: NodeSet, multicast: bool, lids: bool) -> Peers<H> {
        Peers {
            me,
            own,
            members,
            multicast,
            lids,
            entries: (0..MAX_NODES).map(|_| None).collect(),
        }
    }

    pub fn own(&self) -> &PeerAddress {
        &self.own
    }

    /// Records (or replaces) a member's address and handle; non-members and
    /// this node are refused.
    pub fn set(&mut self, node: NodeId, addr: PeerAddress, handle: H) -> bool {
        if node == self.me || !self.members.contains(node) {
            return false;
        }
        self.entries[usize::from(node)] = Some((addr, handle));
        true
    }

    pub fn get(&self, node: NodeId) -> Option<&(PeerAddress, H)> {
        self.entries.get(usize::from(node))?.as_ref()
    }

    /// Every member but this node whose address is known.
    pub fn known(&self) -> NodeSet {
        NodeSet::from_ids(self.members.iter().filter(|&n| self.get(n).is_some()))
    }

    /// The hops of `dest` (never this node).
    pub fn resolve(&self, dest: Dest) -> Hops {
        let mut hops = Hops {
            nodes: NodeSet::EMPTY,
            group: false,
            missing: 0,
        };
        let wanted = match dest {
            Dest::Node(n) if n == self.me => NodeSet::EMPTY,
            Dest::Node(n) => NodeSet::from_ids([n]).without(self.me),
            Dest::Set(s) => s.without(self.me),
            Dest::Group if self.multicast => {
                hops.group = true;
                NodeSet::EMPTY
            }
            Dest::Group => self.members.without(self.me),
        };
        for n in wanted.iter() {
            if self.get(n).is_some() {
                hops.nodes.insert(n);
            } else {
                hops.missing += 1;
            }
        }
        hops
    }

    /// Classifies a datagram from QP `src_qp` whose GRH area names `gid`
    /// (`None` without a GRH), from LID `slid`. A member's QP number must
    /// come with its GID, or, without a GRH on InfiniBand, its LID.
    pub fn classify(&self, src_qp: u32, gid: Option<Gid>, slid: u16) -> Source {
        let matches = |a: &PeerAddress| {
            a.qpn == src_qp
                && match gid {
                    Some(g) => g == a.gid,
                    None => self.lids && a.lid != 0 && a.lid == slid,
                }
        };
        if matches(&self.own) {
            return Source::Own;
        }
        self.members
            .iter()
            .find(|&n| self.get(n).is_some_and(|(a, _)| matches(a)))
            .map_or(Source::Unknown, Source::Peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdma::grh::ipv4_mapped;

    fn addr(n: u8, qpn: u32) -> PeerAddress {
        PeerAddress {
            qpn,
            qkey: 7,
            lid: u16::from(n) + 1,
            gid: ipv4_mapped([10, 77, 0, n + 1]),
        }
    }

    fn peers(multicast: bool, lids: bool) -> Peers<u32> {
        let mut p = Peers::new(1, addr(1, 17), NodeSet::from_ids([0, 1, 2, 3]), multicast, lids);
        assert!(p.set(0, addr(0, 17), 100));
        assert!(p.set(2, addr(2, 18), 102));
        assert!(!p.set(1, addr(1, 17), 101), "not this node");
        assert!(!p.set(9, addr(9, 17), 109), "not a member");
        p
    }

    #[test]
    fn destinations_skip_this_node_and_count_unknown_members() {
        let p = peers(false, false);
        assert_eq!(p.known(), NodeSet::from_ids([0, 2]));
        let r = p.resolve(Dest::Node(0));
        assert_eq!((r.nodes, r.group, r.missing), (NodeSet::from_ids([0]), false, 0));
        assert_eq!(p.resolve(Dest::Node(1)).count(), 0);
        assert_eq!(p.resolve(Dest::Node(3)).missing, 1, "member 3 not known yet");
        assert_eq!(p.resolve(Dest::Node(40)).missing, 1, "not a member");
        let all = p.resolve(Dest::Group);
        assert_eq!(
            (all.nodes, all.group, all.missing),
            (NodeSet::from_ids([0, 2]), false, 1)
        );
        let set = p.resolve(Dest::Set(NodeSet::from_ids([1, 2])));
        assert_eq!((set.nodes, set.count()), (NodeSet::from_ids([2]), 1));
        let m = peers(true, false).resolve(Dest::Group);
        assert_eq!((m.nodes, m.group, m.count()), (NodeSet::EMPTY, true, 1));
        assert_eq!(p.get(2).map(|(a, h)| (a.qpn, *h)), Some((18, 102)));
    }

    #[test]
    fn a_source_needs_a_members_qpn_with_its_gid() {
        let p = peers(true, false);
        let g = |n: u8| Some(ipv4_mapped([10, 77, 0, n + 1]));
        assert_eq!(p.classify(17, g(0), 0), Source::Peer(0));
        assert_eq!(p.classify(18, g(2), 0), Source::Peer(2));
        assert_eq!(p.classify(17, g(1), 0), Source::Own);
        assert_eq!(
            p.classify(18, g(0), 0),
            Source::Unknown,
            "node 0's GID, node 2's QPN"
        );
        assert_eq!(
            p.classify(99, g(0), 0),
            Source::Unknown,
            "a stranger QP on a member's device"
        );
        assert_eq!(p.classify(17, g(7), 0), Source::Unknown, "a stranger device");
        assert_eq!(
            p.classify(17, None, 1),
            Source::Unknown,
            "no GRH, RoCE: no LIDs to trust"
        );
    }

    #[test]
    fn on_infiniband_a_lid_stands_in_for_a_missing_grh() {
        let p = peers(false, true);
        assert_eq!(p.classify(17, None, 1), Source::Peer(0));
        assert_eq!(p.classify(18, None, 3), Source::Peer(2));
        assert_eq!(p.classify(18, None, 1), Source::Unknown);
        assert_eq!(p.classify(17, None, 0), Source::Unknown, "LID 0 is no identity");
    }
}
