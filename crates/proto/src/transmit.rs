use crate::NodeSet;
use rzab_wire::NodeId;

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// One peer.
    Node(NodeId),
    /// Each of these peers (the transport fans one datagram out by unicast).
    Set(NodeSet),
    /// The lane's multicast group: every follower of the lane receives it.
    Group,
}

/// A datagram the core has written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}
