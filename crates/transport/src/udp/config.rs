//! What a UDP lane endpoint is told, and the addresses derived from it.

use super::sys::{self, MAX_UDP_PAYLOAD};
use crate::{NodeId, NodeSet};
use rzab_proto::BroadcastMode;
use rzab_proto::MAX_NODES;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The configuration of one lane of one node on UDP/IPv4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// This node.
    pub node: NodeId,
    /// This lane: it uses port `base port + lane` of every member address,
    /// and port `group port + lane` of the multicast group.
    pub lane: usize,
    /// Every member's base address, this node's included.
    pub members: Vec<(NodeId, SocketAddr)>,
    /// Largest datagram sent or accepted.
    pub mtu: usize,
    /// How `Dest::Group` is sent: to the multicast group, or by unicast to
    /// every other member.
    pub broadcast: BroadcastMode,
    /// The multicast group and its base port (used in `Multicast` mode).
    pub group: SocketAddrV4,
    /// The address of the interface multicast is sent and joined on.
    pub interface: Ipv4Addr,
    /// Whether to receive the group (a lane that is never a follower may
    /// skip it). Only in `Multicast` mode.
    pub join_group: bool,
    /// Whether this host's group sockets hear its own multicast. Needed when
    /// several nodes share a host (each node drops its own copies); a
    /// cluster with one node per host can turn it off to spare that work.
    pub multicast_loop: bool,
    /// Bytes requested for each socket's send and receive buffer.
    pub socket_buffer: usize,
    /// Use UDP segmentation offload for runs of datagrams to one destination.
    pub gso: bool,
    /// Use UDP receive offload (coalesced reads, split on receipt).
    pub gro: bool,
    /// Datagrams (or GRO reads) one receive syscall may return. Each slot
    /// is a buffer of 64 KiB with GRO (a coalesced read), else of the MTU.
    pub recv_slots: usize,
}

impl UdpConfig {
    /// Defaults: MTU 1472 (an Ethernet frame), multicast to 239.255.77.1 base
    /// port 17000 on 127.0.0.1, 16 MiB socket buffers, GSO and GRO on.
    pub fn new(node: NodeId, lane: usize, members: Vec<(NodeId, SocketAddr)>) -> UdpConfig {
        UdpConfig {
            node,
            lane,
            members,
            mtu: 1472,
            broadcast: BroadcastMode::Multicast,
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 1), 17000),
            interface: Ipv4Addr::LOCALHOST,
            join_group: true,
            multicast_loop: true,
            socket_buffer: 16 << 20,
            gso: true,
            gro: true,
            recv_slots: 32,
        }
    }
}

/// The addresses a validated config resolves to.
#[derive(Clone, Debug)]
pub struct Layout {
    pub own: SocketAddrV4,
    pub members: NodeSet,
    /// Each member's lane address by node id (`None` for non-members).
    pub lane_addrs: Vec<Option<SocketAddrV4>>,
    /// The lane's group address, in multicast mode.
    pub group: Option<SocketAddrV4>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("UDP transport config: {msg}"),
    )
}

/// `base` moved up by `lane` ports, or an error naming what overflowed.
fn lane_port(what: &str, base: u16, lane: usize) -> io::Result<u16> {
    usize::from(base)
        .checked_add(lane)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| invalid(format!("{what} port {base} + lane {lane} exceeds 65535")))
}

fn member_addr(node: NodeId, addr: SocketAddr, lane: usize) -> io::Result<SocketAddrV4> {
    let SocketAddr::V4(v4) = addr else {
        return Err(invalid(format!(
            "node {node} has address {addr}: only IPv4 is supported"
        )));
    };
    if v4.ip().is_unspecified() || v4.ip().is_multicast() || v4.port() == 0 {
        return Err(invalid(format!(
            "node {node} has address {addr}: it needs a concrete unicast IP and a non-zero port"
        )));
    }
    let port = lane_port(&format!("node {node}'s"), v4.port(), lane)?;
    Ok(SocketAddrV4::new(*v4.ip(), port))
}

impl UdpConfig {
    pub(crate) fn layout(&self) -> io::Result<Layout> {
        if self.mtu == 0 || self.mtu > MAX_UDP_PAYLOAD {
            return Err(invalid(format!(
                "mtu {} is not in 1..={MAX_UDP_PAYLOAD}",
                self.mtu
            )));
        }
        if self.recv_slots == 0 {
            return Err(invalid("recv_slots must be at least 1".into()));
        }
        let mut members = NodeSet::EMPTY;
        let mut lane_addrs = vec![None; MAX_NODES];
        for &(node, addr) in &self.members {
            if usize::from(node) >= MAX_NODES || members.contains(node) {
                return Err(invalid(format!(
                    "node id {node} is repeated or not below {MAX_NODES}"
                )));
            }
            members.insert(node);
            lane_addrs[usize::from(node)] = Some(member_addr(node, addr, self.lane)?);
        }
        let own = lane_addrs
            .get(usize::from(self.node))
            .copied()
            .flatten()
            .ok_or_else(|| invalid(format!("node {} is not among the members", self.node)))?;
        Ok(Layout {
            own,
            members,
            lane_addrs,
            group: self.group_addr()?,
        })
    }

    fn group_addr(&self) -> io::Result<Option<SocketAddrV4>> {
        if self.broadcast != BroadcastMode::Multicast {
            return Ok(None);
        }
        if !self.group.ip().is_multicast() {
            return Err(invalid(format!(
                "group {} is not an IPv4 multicast address",
                self.group
            )));
        }
        let port = lane_port("group", self.group.port(), self.lane)?;
        Ok(Some(SocketAddrV4::new(*self.group.ip(), port)))
    }
}

impl Layout {
    /// The raw lane address of every member but this node, for source checks.
    pub fn peer_sockaddrs(&self) -> Vec<libc::sockaddr_in> {
        self.lane_addrs
            .iter()
            .flatten()
            .filter(|&&a| a != self.own)
            .map(|&a| sys::sockaddr(a))
            .collect()
    }
}
