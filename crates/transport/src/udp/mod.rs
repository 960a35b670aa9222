//! The UDP transport (Linux, IPv4): one endpoint per lane of a node.
//!
//! Lane `t` of a node owns the unicast socket at its base address's port
//! `+ t`; every datagram it sends leaves from there, so a receiver accepts
//! a datagram only if its source is a member's lane address. In multicast
//! mode a lane also has a socket bound to the group's port `+ t` that has
//! joined the group. Sends are batched with sendmmsg and, for runs of
//! equal-size datagrams to one destination, UDP segmentation offload
//! (GSO); receives with recvmmsg and UDP receive offload (GRO). `wait`
//! polls the sockets and an eventfd that the lane's waker rings.
//!
//! - `config`: [`UdpConfig`] and the addresses it resolves to
//! - `socket`: opening and tuning the sockets
//! - `send` / `recv`: the batched paths; `cmsg`: their control messages
//! - `route`: destinations and the source check; `doorbell`: the waker

mod cmsg;
mod config;
pub mod doorbell;
mod recv;
mod route;
mod scratch;
mod send;
mod socket;
pub(crate) mod sys;

pub use config::UdpConfig;

use crate::{RecvBatch, SendBatch, Transport, TransportStats};
use doorbell::Doorbell;
use recv::Receiver;
use route::{Filter, Routes};
use send::Sender;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// What an endpoint got from the kernel, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UdpInfo {
    /// The lane's unicast address.
    pub local: SocketAddrV4,
    /// The group address it receives, if it joined one.
    pub group: Option<SocketAddrV4>,
    /// The unicast socket's buffers as the kernel reports them (it doubles
    /// the request for bookkeeping and caps it at net.core.[rw]mem_max
    /// unless the process may force it).
    pub rcvbuf: usize,
    pub sndbuf: usize,
    /// The group socket's receive buffer.
    pub group_rcvbuf: Option<usize>,
    /// Whether segmentation offload is in use (off if the kernel refused it).
    pub gso: bool,
    /// Whether every receiving socket has receive offload on.
    pub gro: bool,
}

/// One lane's UDP endpoint.
pub struct UdpEndpoint {
    mtu: usize,
    unicast: OwnedFd,
    group: Option<OwnedFd>,
    doorbell: Arc<Doorbell>,
    routes: Routes,
    filter: Filter,
    sender: Sender,
    receiver: Receiver,
    stats: TransportStats,
    info: UdpInfo,
}

/// A lane's sockets, what the kernel granted them, and the receive buffer
/// size that suits them.
struct Opened {
    unicast: OwnedFd,
    group: Option<OwnedFd>,
    info: UdpInfo,
    buf_size: usize,
}

fn open(cfg: &UdpConfig, layout: &config::Layout) -> io::Result<Opened> {
    let (unicast, u) = socket::open_unicast(cfg, layout.own)?;
    let group = match layout.group.filter(|_| cfg.join_group) {
        Some(g) => Some(socket::open_group(cfg, g)?),
        None => None,
    };
    let any_gro = u.gro || group.as_ref().is_some_and(|(_, t)| t.gro);
    let info = UdpInfo {
        local: layout.own,
        group: group.as_ref().and(layout.group),
        rcvbuf: u.rcvbuf,
        sndbuf: u.sndbuf,
        group_rcvbuf: group.as_ref().map(|(_, t)| t.rcvbuf),
        gso: cfg.gso && socket::gso_supported(&unicast),
        gro: u.gro && group.as_ref().is_none_or(|(_, t)| t.gro),
    };
    Ok(Opened {
        unicast,
        group: group.map(|(fd, _)| fd),
        info,
        // A GRO read holds up to 64 KiB; without GRO a datagram is at most the MTU.
        buf_size: if any_gro { sys::GRO_BUF_SIZE } else { cfg.mtu },
    })
}

impl UdpEndpoint {
    /// Opens the lane's sockets. A bad config or an address in use is an
    /// error that says which.
    pub fn new(cfg: &UdpConfig) -> io::Result<UdpEndpoint> {
        let layout = cfg.layout()?;
        let who = |e: io::Error| {
            let msg = format!("UDP transport, node {} lane {}: {e}", cfg.node, cfg.lane);
            io::Error::new(e.kind(), msg)
        };
        let o = open(cfg, &layout).map_err(who)?;
        let doorbell = Doorbell::new().map_err(|e| who(io::Error::new(e.kind(), format!("eventfd: {e}"))))?;
        Ok(UdpEndpoint {
            mtu: cfg.mtu,
            unicast: o.unicast,
            group: o.group,
            doorbell,
            routes: Routes::new(cfg.node, &layout),
            filter: Filter::new(&layout),
            sender: Sender::new(o.info.gso),
            receiver: Receiver::new(cfg.recv_slots, o.buf_size, cfg.mtu),
            stats: TransportStats::default(),
            info: o.info,
        })
    }

    pub fn info(&self) -> UdpInfo {
        UdpInfo {
            gso: self.sender.gso(),
            ..self.info
        }
    }

    fn poll_fds(&self) -> ([libc::pollfd; 3], usize) {
        let entry = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let group = self.group.as_ref().map_or(-1, |g| g.as_raw_fd());
        let fds = [
            entry(self.doorbell.as_raw_fd()),
            entry(self.unicast.as_raw_fd()),
            entry(group),
        ];
        (fds, if self.group.is_some() { 3 } else { 2 })
    }
}

impl Transport for UdpEndpoint {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<()> {
        batch.check_mtu(self.mtu)?;
        if !batch.is_empty() {
            self.sender
                .send(&self.unicast, batch, &self.routes, &mut self.stats);
        }
        Ok(())
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let (socks, n) = sockets(&self.unicast, self.group.as_ref());
        self.receiver
            .recv(batch, &socks[..n], &self.filter, &mut self.stats)
    }

    /// Bit 0 is the doorbell, bits 1 and 2 the sockets (see `poll_fds`).
    fn recv_readable(&mut self, batch: &mut RecvBatch, readable: u32) -> io::Result<(usize, u32)> {
        let mut empty = 0;
        if readable & 1 != 0 {
            self.doorbell.answer();
            empty |= 1;
        }
        let (socks, n) = sockets(&self.unicast, self.group.as_ref());
        let marked = [readable & 2 != 0, readable & 4 != 0];
        let (got, emptied) =
            self.receiver
                .recv_from(batch, &socks[..n], marked, &self.filter, &mut self.stats)?;
        for (s, _) in emptied.iter().enumerate().filter(|(_, e)| **e) {
            empty |= 2 << s;
        }
        Ok((got, empty))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if self.receiver.pending() {
            return Ok(());
        }
        let (mut fds, n) = self.poll_fds();
        sys::poll(&mut fds[..n], timeout)?;
        if fds[0].revents != 0 {
            self.doorbell.answer();
        }
        Ok(())
    }

    fn waker(&self) -> Waker {
        Waker::from(self.doorbell.clone())
    }

    fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        let (fds, n) = self.poll_fds();
        fds[..n].iter().map(|f| f.fd).collect()
    }

    /// An empty receive costs two system calls (unicast and group socket):
    /// block in poll(2) almost at once instead.
    fn idle_polls(&self) -> u32 {
        4
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            dropped_full: self.receiver.dropped_full(),
            ..self.stats
        }
    }
}

/// The sockets to read: unicast, then the group's if joined.
fn sockets<'a>(unicast: &'a OwnedFd, group: Option<&'a OwnedFd>) -> ([&'a OwnedFd; 2], usize) {
    match group {
        Some(g) => ([unicast, g], 2),
        None => ([unicast; 2], 1),
    }
}

#[cfg(test)]
mod tests;
