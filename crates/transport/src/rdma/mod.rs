//! The RDMA transport: InfiniBand or RoCE Unreliable Datagram sends and
//! receives, one endpoint per lane of a node, with the leader's broadcasts
//! by RDMA multicast (or unicast fan-out). Built on rdma-core's libibverbs
//! and librdmacm through the `sideway` binding (which loads them at run
//! time), with a few raw calls where it lacks one; compiled with the `rdma`
//! feature. Without the feature, or without a device or the libraries at
//! run time, [`RdmaEndpoint::open`] fails with an error that says so.
//!
//! Per lane: one UD queue pair with a send and a receive completion queue;
//! receive buffers kept posted in a ring sized by the credits (each holds
//! the 40-byte GRH area and an MTU); a batch's sends posted as one list of
//! work requests (one doorbell), small ones inline, one in `signal_every`
//! signaled; arrivals found by polling the receive CQ (and a completion
//! channel to sleep on); address handles in the queue pair's own PD; the
//! lane's multicast group joined through rdma_cm; every member's QP number,
//! QKey, LID and GID learned by a UDP exchange on the lane's address.
//!
//! Always compiled (and tested without a device):
//! - `config`: [`RdmaConfig`] and what it resolves to
//! - `ring`: receive-ring sizing and slot bookkeeping
//! - `completion`: send-queue bookkeeping with selective signaling
//! - `grh`: the source GID of a received datagram
//! - `route`: destinations and the source check
//! - `bootstrap`: the address exchange
//!
//! With the `rdma` feature (verbs):
//! - `device`: opening the device, its port and GID
//! - `queues`: completion queues, the UD queue pair and its states
//! - `ah`: address handles; `mcast`: the rdma_cm multicast join
//! - `recv` / `send`: the receive ring and the send path on the device
//! - `endpoint`: [`RdmaEndpoint`], the `Transport`

pub mod bootstrap;
pub mod completion;
pub mod config;
pub mod grh;
pub mod ring;
pub mod route;

#[cfg(feature = "rdma")]
mod ah;
#[cfg(feature = "rdma")]
mod device;
#[cfg(feature = "rdma")]
mod endpoint;
#[cfg(feature = "rdma")]
mod mcast;
#[cfg(feature = "rdma")]
mod queues;
#[cfg(feature = "rdma")]
mod recv;
#[cfg(feature = "rdma")]
mod send;
#[cfg(not(feature = "rdma"))]
mod stub;

pub use config::{RDMA_UDP_QKEY, RdmaConfig};
pub use ring::Credits;
pub use route::PeerAddress;

#[cfg(feature = "rdma")]
pub use endpoint::RdmaEndpoint;
#[cfg(not(feature = "rdma"))]
pub use stub::RdmaEndpoint;

/// What an endpoint got from the device, for reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RdmaInfo {
    pub device: String,
    pub port: u8,
    /// "InfiniBand" or "Ethernet" (RoCE).
    pub link_layer: String,
    pub gid_index: u8,
    pub gid: String,
    pub lid: u16,
    pub qpn: u32,
    pub qkey: u32,
    /// The datagram limit in use, and the port's active MTU.
    pub mtu: usize,
    pub active_mtu: usize,
    /// Inline bytes the device granted.
    pub max_inline: usize,
    pub recv_slots: usize,
    pub send_depth: usize,
    pub signal_every: usize,
    /// The lane's multicast group, and whether this QP receives it.
    pub group: Option<String>,
    pub group_attached: bool,
}

/// The one-line advice appended to errors that mean "no RDMA here".
pub const USE_UDP: &str = "use the UDP transport instead (transport.kind = \"udp\")";

/// Whether RDMA can run here: `Ok` with the device names, or why not.
pub fn probe() -> std::io::Result<Vec<String>> {
    #[cfg(feature = "rdma")]
    {
        device::names()
    }
    #[cfg(not(feature = "rdma"))]
    {
        Err(stub::unsupported())
    }
}
