//! What an RDMA lane endpoint is told, and what a valid config resolves to.

use super::ring::{Credits, ring_slots};
use crate::{NodeId, NodeSet};
use rzab_proto::{BroadcastMode, MAX_NODES};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The QKey rdma_cm gives UD multicast groups in its UDP port space
/// (`RDMA_UDP_QKEY`): the default, so unicast and multicast share one.
pub const RDMA_UDP_QKEY: u32 = 0x0123_4567;

/// The configuration of one lane of one node on RDMA UD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdmaConfig {
    /// Sent in the bootstrap exchange: nodes of another cluster are ignored.
    pub cluster_id: u32,
    pub node: NodeId,
    /// Lane `t` bootstraps over UDP on port `base port + t` of its node's
    /// address and joins multicast group `group + t`.
    pub lane: usize,
    /// Every member's base address, this node's included: the IPv4 address
    /// of its RDMA interface (the RoCE netdev or IPoIB) and a base port.
    pub members: Vec<(NodeId, SocketAddr)>,
    /// The device as `ibv_devinfo` names it (`mlx5_0`, `rxe0`); `None`:
    /// the device (and port) that carries this node's address, as rdma_cm
    /// finds it.
    pub device: Option<String>,
    /// The device port, from 1 (used with a named device).
    pub port: u8,
    /// The GID table entry to send from; `None`: on RoCE the RoCE v2 (else
    /// v1) GID of this node's IPv4 address, on InfiniBand entry 0.
    /// `ibv_devinfo -v` lists the table.
    pub gid_index: Option<u8>,
    pub qkey: u32,
    /// Largest datagram sent or accepted; at most the port's active MTU.
    pub mtu: usize,
    /// `Dest::Group` goes to the lane's multicast group, or by unicast to
    /// every other member.
    pub broadcast: BroadcastMode,
    /// The multicast base address (lane `t` uses this address + `t`).
    pub group: Ipv4Addr,
    /// Whether this lane's QP receives the group (a leader never needs to).
    pub join_group: bool,
    /// The protocol's credits, which size the receive ring.
    pub credits: Credits,
    /// Receive buffers kept posted; 0 sizes the ring from the credits.
    pub recv_depth: usize,
    /// Send queue depth: work requests in flight before the sender waits
    /// for a completion.
    pub send_depth: usize,
    /// One send in this many is signaled (selective signaling).
    pub signal_every: usize,
    /// Inline data asked of the device; it may grant less (0 turns inline off).
    pub max_inline: usize,
    /// How long the bootstrap exchange waits for every member.
    pub bootstrap_timeout: Duration,
}

impl RdmaConfig {
    /// Defaults: the device, port and GID of the node's address,
    /// QKey `RDMA_UDP_QKEY`, MTU 1024, multicast to 239.255.77.1 + lane, rings
    /// sized from the prototype's credits, send queue 256 with one send in 32
    /// signaled, up to 256 inline bytes, 60 s to bootstrap.
    pub fn new(node: NodeId, lane: usize, members: Vec<(NodeId, SocketAddr)>) -> RdmaConfig {
        RdmaConfig {
            cluster_id: 0,
            node,
            lane,
            members,
            device: None,
            port: 1,
            gid_index: None,
            qkey: RDMA_UDP_QKEY,
            mtu: 1024,
            broadcast: BroadcastMode::Multicast,
            group: Ipv4Addr::new(239, 255, 77, 1),
            join_group: true,
            credits: Credits::default(),
            recv_depth: 0,
            send_depth: 256,
            signal_every: 32,
            max_inline: 256,
            bootstrap_timeout: Duration::from_secs(60),
        }
    }
}

/// What a validated config resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub members: NodeSet,
    /// Each member's lane address (bootstrap socket) by node id.
    pub lane_addrs: Vec<Option<SocketAddrV4>>,
    /// This lane's bootstrap address.
    pub own: SocketAddrV4,
    /// The lane's multicast group, in multicast mode.
    pub group: Option<Ipv4Addr>,
    /// Receive buffers to keep posted.
    pub recv_slots: usize,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("RDMA transport config: {msg}"),
    )
}

/// The smallest send queue: half of it holds a datagram's copies to every
/// possible member, so one doorbell always fits a whole fan-out.
pub const MIN_SEND_DEPTH: usize = 2 * MAX_NODES;

/// Largest UD message over any link (an InfiniBand or RoCE MTU of 4096).
pub const MAX_UD_MTU: usize = 4096;

impl RdmaConfig {
    /// Checks the config; errors name the field.
    pub fn layout(&self) -> io::Result<Layout> {
        if self.mtu < 64 || self.mtu > MAX_UD_MTU {
            return Err(invalid(format!("mtu {} is not in 64..={MAX_UD_MTU}", self.mtu)));
        }
        if self.device.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                "device is empty (name it as ibv_devinfo shows it)".into(),
            ));
        }
        if self.port == 0 {
            return Err(invalid("port counts from 1".into()));
        }
        if self.qkey & 0x8000_0000 != 0 {
            return Err(invalid(format!(
                "qkey {:#x} has the high bit set (a controlled QKey)",
                self.qkey
            )));
        }
        if self.send_depth < MIN_SEND_DEPTH || !self.send_depth.is_power_of_two() {
            return Err(invalid(format!(
                "send_depth {} must be a power of two, at least {MIN_SEND_DEPTH}",
                self.send_depth
            )));
        }
        if self.signal_every == 0 || self.signal_every > self.send_depth / 2 {
            return Err(invalid(format!(
                "signal_every {} must be in 1..={} (half the send queue)",
                self.signal_every,
                self.send_depth / 2
            )));
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
            lane_addrs[usize::from(node)] = Some(lane_addr(node, addr, self.lane)?);
        }
        let own = lane_addrs
            .get(usize::from(self.node))
            .copied()
            .flatten()
            .ok_or_else(|| invalid(format!("node {} is not among the members", self.node)))?;
        let group = match self.broadcast {
            BroadcastMode::Multicast => Some(self.lane_group()?),
            BroadcastMode::Unicast => None,
        };
        let peers = members.len().saturating_sub(1);
        let recv_slots = match self.recv_depth {
            0 => ring_slots(self.credits, peers),
            n => n,
        };
        Ok(Layout {
            members,
            lane_addrs,
            own,
            group,
            recv_slots,
        })
    }

    /// The group address + lane, still a multicast address.
    fn lane_group(&self) -> io::Result<Ipv4Addr> {
        let g = u32::from(self.group)
            .checked_add(self.lane as u32)
            .map(Ipv4Addr::from)
            .filter(|g| g.is_multicast() && self.group.is_multicast());
        g.ok_or_else(|| {
            invalid(format!(
                "multicast group {} + lane {} is not an IPv4 multicast address",
                self.group, self.lane
            ))
        })
    }
}

fn lane_addr(node: NodeId, addr: SocketAddr, lane: usize) -> io::Result<SocketAddrV4> {
    let SocketAddr::V4(v4) = addr else {
        return Err(invalid(format!(
            "node {node} has address {addr}: only IPv4 is supported"
        )));
    };
    if v4.ip().is_unspecified() || v4.ip().is_multicast() || v4.port() == 0 {
        return Err(invalid(format!(
            "node {node} has address {addr}: it needs the IP of its RDMA interface and a non-zero port"
        )));
    }
    let port = usize::from(v4.port())
        .checked_add(lane)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            invalid(format!(
                "node {node}'s port {} + lane {lane} exceeds 65535",
                v4.port()
            ))
        })?;
    Ok(SocketAddrV4::new(*v4.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RdmaConfig {
        let members = (0..3)
            .map(|n| (n, SocketAddr::from(([10, 77, 0, n + 1], 7000))))
            .collect();
        RdmaConfig::new(1, 2, members)
    }

    #[test]
    fn a_good_config_resolves_lane_addresses_and_group() {
        let l = cfg().layout().unwrap();
        assert_eq!(l.own, SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), 7002));
        assert_eq!(l.group, Some(Ipv4Addr::new(239, 255, 77, 3)));
        assert_eq!(l.members, NodeSet::from_ids([0, 1, 2]));
        assert_eq!(l.recv_slots, ring_slots(Credits::default(), 2));
        let mut u = cfg();
        u.broadcast = BroadcastMode::Unicast;
        u.recv_depth = 100;
        let l = u.layout().unwrap();
        assert_eq!((l.group, l.recv_slots), (None, 100));
    }

    #[test]
    fn bad_configs_say_which_field() {
        let check = |f: &dyn Fn(&mut RdmaConfig), word: &str| {
            let mut c = cfg();
            f(&mut c);
            let e = c.layout().unwrap_err().to_string();
            assert!(e.contains(word), "{e} should mention {word}");
        };
        check(&|c| c.mtu = 9000, "mtu");
        check(&|c| c.device = Some(String::new()), "device");
        check(&|c| c.port = 0, "port");
        check(&|c| c.qkey = 0x8000_0001, "qkey");
        check(&|c| c.send_depth = 100, "send_depth");
        check(&|c| c.signal_every = 200, "signal_every");
        check(&|c| c.node = 9, "node 9");
        check(&|c| c.group = Ipv4Addr::new(10, 0, 0, 1), "multicast");
        check(&|c| c.group = Ipv4Addr::new(239, 255, 255, 255), "multicast");
        check(
            &|c| c.members[0].1 = SocketAddr::from(([0, 0, 0, 0], 7000)),
            "RDMA interface",
        );
        check(
            &|c| c.members[0].1 = SocketAddr::from(([10, 0, 0, 1], 65535)),
            "65535",
        );
    }
}
