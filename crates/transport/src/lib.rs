//! rzab's transports: one narrow trait with the semantics of RDMA
//! Unreliable Datagram sends, and its implementations.
//!
//! A transport endpoint belongs to one lane of one node. It sends datagrams
//! up to its MTU to a peer's same lane, to a set of peers, or to the lane's
//! broadcast group, and receives datagrams in batches. Delivery is
//! unreliable: a datagram may be dropped (a full receive queue drops, as UD
//! does), and the protocol core repairs loss.
//!
//! - [`inproc`]: every node of a cluster in one process, bounded queues.
//! - [`lossy`]: a wrapper that loses received datagrams at random.
//! - [`udp`]: UDP/IPv4 on Linux, batched, with segmentation offload and multicast.
//! - [`rdma`]: RDMA Unreliable Datagram (InfiniBand or RoCE) with RDMA
//!   multicast; the verbs part needs the `rdma` feature.
//! - [`netbench`]: the loopback UDP ceiling, measured through [`udp`].

pub mod batch;
pub mod inproc;
pub mod lossy;
pub mod netbench;
pub mod rdma;
pub mod udp;
mod wake;

pub use batch::{RecvBatch, SendBatch};
pub use rzab_proto::{Dest, NodeId, NodeSet};
pub use wake::Sleeper;

use std::io;
use std::task::Waker;
use std::time::Duration;

/// Counters every transport keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportStats {
    /// Datagrams handed to the network (a fan-out counts each copy).
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_recv: u64,
    pub bytes_recv: u64,
    /// Datagrams dropped because a receive queue was full.
    pub dropped_full: u64,
    /// Send or receive calls into the kernel (or the fabric), for batching figures.
    pub send_calls: u64,
    pub recv_calls: u64,
    /// Datagrams not sent: a kernel error for that datagram (counted, not
    /// fatal: delivery is best effort), or a destination that is not a member.
    pub send_errors: u64,
    /// Receive calls that failed with something other than "nothing to read".
    pub recv_errors: u64,
    /// Datagrams dropped because their source is not a member's lane.
    pub dropped_unknown_source: u64,
    /// This endpoint's own multicast datagrams heard back, dropped.
    pub dropped_own: u64,
    /// Datagrams dropped because they exceed the MTU.
    pub dropped_oversize: u64,
    /// Segmentation offload: super-datagrams sent, and the datagrams in them.
    pub gso_sends: u64,
    pub gso_segments: u64,
    /// Receive offload: reads that held several datagrams, and those datagrams.
    pub gro_reads: u64,
    pub gro_segments: u64,
    /// Datagrams lost on purpose by the [`lossy`] wrapper.
    pub dropped_injected: u64,
    /// RDMA: send doorbells (each posts one list of work requests), the
    /// send work requests they carried, those sent inline and those
    /// signaled, and completion-queue polls (send and receive).
    pub doorbells: u64,
    pub work_requests: u64,
    pub inline_sends: u64,
    pub signaled_sends: u64,
    pub cq_polls: u64,
}

impl TransportStats {
    pub fn add(&mut self, o: &TransportStats) {
        self.datagrams_sent += o.datagrams_sent;
        self.bytes_sent += o.bytes_sent;
        self.datagrams_recv += o.datagrams_recv;
        self.bytes_recv += o.bytes_recv;
        self.dropped_full += o.dropped_full;
        self.dropped_injected += o.dropped_injected;
        self.send_calls += o.send_calls;
        self.recv_calls += o.recv_calls;
        self.send_errors += o.send_errors;
        self.recv_errors += o.recv_errors;
        self.dropped_unknown_source += o.dropped_unknown_source;
        self.dropped_own += o.dropped_own;
        self.dropped_oversize += o.dropped_oversize;
        self.gso_sends += o.gso_sends;
        self.gso_segments += o.gso_segments;
        self.gro_reads += o.gro_reads;
        self.gro_segments += o.gro_segments;
        self.doorbells += o.doorbells;
        self.work_requests += o.work_requests;
        self.inline_sends += o.inline_sends;
        self.signaled_sends += o.signaled_sends;
        self.cq_polls += o.cq_polls;
    }
}

/// One lane's endpoint on the network.
pub trait Transport: Send {
    /// Largest datagram this transport carries.
    fn mtu(&self) -> usize;

    /// Sends every datagram in the batch (best effort: the network may drop
    /// any of them). The batch is left as it was; the caller clears it.
    fn send(&mut self, batch: &SendBatch) -> io::Result<()>;

    /// Receives what has arrived, without blocking, up to the batch's
    /// capacity. Returns the number of datagrams now in the batch.
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize>;

    /// Blocks until a datagram may have arrived, the waker is woken, or
    /// `timeout` passes. May return early.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Wakes this endpoint's `wait` from another thread.
    fn waker(&self) -> Waker;

    /// The file descriptors `wait` blocks on, for a caller that would rather
    /// wait on them in its own poll loop and then receive with
    /// `recv_readable`, which consumes a wake-up. Empty: only `wait` can
    /// wait. A transport that lists descriptors must implement
    /// `recv_readable`.
    fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }

    /// `recv` for a caller that waits on `wait_fds` itself and tracks their
    /// readiness, edge-triggered as an async runtime does: reads only the
    /// descriptors whose bit is set in `readable` (bit i: `wait_fds()[i]`),
    /// consumes a wake-up if its descriptor is marked, and returns the
    /// datagrams now in the batch with the bits of the marked descriptors it
    /// found empty. The caller may clear those; a marked descriptor not
    /// reported empty may hold more. Reads that an earlier call left pending
    /// are delivered whatever `readable` says.
    ///
    /// The default suits a transport without descriptors: a plain `recv`.
    /// With descriptors it would report none empty, and a caller that waits
    /// on their readiness would never wait.
    fn recv_readable(&mut self, batch: &mut RecvBatch, readable: u32) -> io::Result<(usize, u32)> {
        let _ = readable;
        Ok((self.recv(batch)?, 0))
    }

    /// Idle turns worth polling `recv` before blocking in `wait`: many when
    /// an empty `recv` is an atomic load, few when it is a system call.
    fn idle_polls(&self) -> u32 {
        64
    }

    fn stats(&self) -> TransportStats;
}
