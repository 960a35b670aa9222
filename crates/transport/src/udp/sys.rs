//! Thin, safe wrappers over the libc socket calls the UDP transport needs.
//! Everything here is Linux and IPv4 only.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use libc::{c_int, socklen_t};

// From linux/udp.h; libc exports these only for some C libraries.
pub const SOL_UDP: c_int = 17;
pub const UDP_SEGMENT: c_int = 103;
pub const UDP_GRO: c_int = 104;
// From asm-generic/socket.h (x86, arm, riscv, ...); libc's glibc targets lack
// them. Setting one the kernel does not know fails cleanly and is tolerated.
pub const SO_SNDBUFFORCE: c_int = 32;
pub const SO_RCVBUFFORCE: c_int = 33;
pub const SO_RXQ_OVFL: c_int = 40;

/// Most segments one GSO send may carry (UDP_MAX_SEGMENTS in older kernels;
/// newer ones allow more, so this is always accepted).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Largest UDP payload over IPv4 (65535 less the IP and UDP headers).
pub const MAX_UDP_PAYLOAD: usize = 65507;
/// A receive buffer that holds any GRO-coalesced read.
pub const GRO_BUF_SIZE: usize = 65536;

/// A non-blocking, close-on-exec IPv4 UDP socket.
pub fn udp_socket() -> io::Result<OwnedFd> {
    let flags = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, flags, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An eventfd for waking a poll from another thread.
pub fn event_fd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets a socket option whose value is the plain-data `value`.
pub fn set_opt<T: Copy>(fd: &impl AsRawFd, level: c_int, name: c_int, value: T) -> io::Result<()> {
    let len = size_of::<T>() as socklen_t;
    // SAFETY: the pointer and length describe `value`, alive across the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an integer socket option.
pub fn get_int(fd: &impl AsRawFd, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: the pointers describe `value` and `len`, alive across the call.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

pub fn bind(fd: &impl AsRawFd, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(addr);
    let len = size_of::<libc::sockaddr_in>() as socklen_t;
    // SAFETY: the pointer and length describe `sa`, alive across the call.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn in_addr(ip: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(ip.octets()),
    }
}

pub fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: in_addr(*addr.ip()),
        sin_zero: [0; 8],
    }
}

/// Whether two socket addresses name the same IPv4 address and port.
pub fn same_addr(a: &libc::sockaddr_in, b: &libc::sockaddr_in) -> bool {
    a.sin_addr.s_addr == b.sin_addr.s_addr && a.sin_port == b.sin_port
}

/// Joins `group` on the interface with address `iface`.
pub fn join_group(fd: &impl AsRawFd, group: Ipv4Addr, iface: Ipv4Addr) -> io::Result<()> {
    let mreq = libc::ip_mreq {
        imr_multiaddr: in_addr(group),
        imr_interface: in_addr(iface),
    };
    set_opt(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, mreq)
}

/// Writes an 8-byte eventfd increment; a full counter (EAGAIN) is already awake.
pub fn event_write(fd: &impl AsRawFd) {
    let one: u64 = 1;
    // SAFETY: the pointer and length describe `one`, alive across the call.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), size_of::<u64>()) };
}

/// Resets an eventfd's counter (non-blocking; nothing to read is fine).
pub fn event_drain(fd: &impl AsRawFd) {
    let mut value: u64 = 0;
    // SAFETY: the pointer and length describe `value`, alive across the call.
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), size_of::<u64>()) };
}

/// poll(2) with a nanosecond timeout. EINTR counts as a timeout.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    // Clamp absurd timeouts rather than overflow time_t.
    let secs = timeout.as_secs().min(i32::MAX as u64);
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of its length; `ts` lives across the call;
    // a null signal mask keeps the current one.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

pub fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
