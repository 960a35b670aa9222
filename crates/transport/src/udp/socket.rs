//! Opening and tuning a lane's sockets: the unicast socket (bound to the
//! lane's own address; every send leaves from it, so peers see one source
//! address per lane) and the multicast group socket.

use super::UdpConfig;
use super::sys::{self, SO_RCVBUFFORCE, SO_RXQ_OVFL, SO_SNDBUFFORCE, SOL_UDP, UDP_GRO, UDP_SEGMENT};
use libc::c_int;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;

/// What the kernel granted a socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Buffer sizes as getsockopt reports them (the kernel doubles a
    /// request to cover its bookkeeping, and caps it unless forced).
    pub rcvbuf: usize,
    pub sndbuf: usize,
    pub gro: bool,
}

/// Wraps an error with what was being done, for a config error a person can act on.
fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The lane's unicast socket, bound to `own`, set up to send multicast on
/// the configured interface.
pub fn open_unicast(cfg: &UdpConfig, own: SocketAddrV4) -> io::Result<(OwnedFd, Tuning)> {
    let fd = sys::udp_socket().map_err(|e| context(e, "creating a socket"))?;
    sys::bind(&fd, own).map_err(|e| context(e, format!("binding {own}")))?;
    let iface = cfg.interface;
    sys::set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, sys::in_addr(iface))
        .map_err(|e| context(e, format!("using {iface} for multicast")))?;
    // With loop on, a node's own group socket hears its broadcasts too; the
    // receive path drops those by source address.
    let looped = c_int::from(cfg.multicast_loop);
    sys::set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, looped)
        .map_err(|e| context(e, "setting multicast loopback"))?;
    let tuning = tune(&fd, cfg.socket_buffer, cfg.gro);
    Ok((fd, tuning))
}

/// A socket that receives `group` (several processes may bind it).
pub fn open_group(cfg: &UdpConfig, group: SocketAddrV4) -> io::Result<(OwnedFd, Tuning)> {
    let iface = cfg.interface;
    let fd = sys::udp_socket().map_err(|e| context(e, "creating a socket"))?;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        sys::set_opt(&fd, libc::SOL_SOCKET, opt, 1 as c_int)
            .map_err(|e| context(e, "allowing a shared group port"))?;
    }
    // Bound to the group address, not INADDR_ANY: it hears only this group.
    sys::bind(&fd, group).map_err(|e| context(e, format!("binding group {group}")))?;
    sys::join_group(&fd, *group.ip(), iface)
        .map_err(|e| context(e, format!("joining {} on interface {iface}", group.ip())))?;
    // Not every group any socket on the host joined, only ours.
    let _ = sys::set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0 as c_int);
    let tuning = tune(&fd, cfg.socket_buffer, cfg.gro);
    Ok((fd, tuning))
}

/// Best-effort options: buffer sizes, drop counting and GRO. A kernel that
/// refuses any of them still leaves a working socket.
fn tune(fd: &OwnedFd, buffer: usize, gro: bool) -> Tuning {
    let bytes = buffer.min(c_int::MAX as usize / 2) as c_int;
    // The FORCE variants pass net.core.[rw]mem_max but need CAP_NET_ADMIN.
    for (force, plain) in [
        (SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if sys::set_opt(fd, libc::SOL_SOCKET, force, bytes).is_err() {
            let _ = sys::set_opt(fd, libc::SOL_SOCKET, plain, bytes);
        }
    }
    let _ = sys::set_opt(fd, libc::SOL_SOCKET, SO_RXQ_OVFL, 1 as c_int);
    let get = |name| sys::get_int(fd, libc::SOL_SOCKET, name).map_or(0, |v| v.max(0) as usize);
    Tuning {
        rcvbuf: get(libc::SO_RCVBUF),
        sndbuf: get(libc::SO_SNDBUF),
        gro: gro && sys::set_opt(fd, SOL_UDP, UDP_GRO, 1 as c_int).is_ok(),
    }
}

/// Whether the kernel knows UDP_SEGMENT (Linux 4.18 and later).
pub fn gso_supported(fd: &OwnedFd) -> bool {
    sys::get_int(fd, SOL_UDP, UDP_SEGMENT).is_ok()
}
