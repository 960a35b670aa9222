//! The lane's multicast group, joined through rdma_cm so it works on
//! InfiniBand (the subnet manager creates the group; the join event gives
//! its MGID, MLID and QKey) and on RoCE (rdma_cm maps the IPv4 group to a
//! GID and joins it by IGMP, without which the kernel drops the group's
//! packets before the device sees them). The lane's own QP is attached to
//! the group with `ibv_attach_mcast` when it receives broadcasts, and is
//! detached before it is destroyed. sideway wraps neither the join nor its
//! event's parameters, so these are raw librdmacm calls.
//!
//! The same rdma_cm binding tells which device and port carry an address.

use rdma_mummy_sys::{
    ibv_ah_attr, ibv_attach_mcast, ibv_detach_mcast, ibv_get_device_name, ibv_gid, ibv_qp, rdma_ack_cm_event,
    rdma_bind_addr, rdma_cm_event, rdma_cm_event_type, rdma_cm_id, rdma_create_event_channel, rdma_create_id,
    rdma_destroy_event_channel, rdma_destroy_id, rdma_event_channel, rdma_get_cm_event, rdma_join_multicast,
    rdma_leave_multicast, rdma_port_space,
};
use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

/// How long a join may take (the subnet manager answers on InfiniBand).
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// An event's type, status, and UD parameters (address, QP number, QKey).
#[derive(Clone, Copy)]
struct Event {
    kind: u32,
    status: i32,
    ah_attr: ibv_ah_attr,
    qpn: u32,
    qkey: u32,
}

/// An rdma_cm event channel and one id on it, bound to a local address.
struct CmId {
    channel: NonNull<rdma_event_channel>,
    id: NonNull<rdma_cm_id>,
}

impl CmId {
    /// A UDP-port-space id bound to `ip` (which picks the device).
    fn bound(ip: Ipv4Addr) -> io::Result<CmId> {
        // SAFETY: no arguments; a null result is an error.
        let channel = NonNull::new(unsafe { rdma_create_event_channel() }).ok_or_else(|| {
            let e = io::Error::last_os_error();
            io::Error::new(
                e.kind(),
                format!("rdma_cm is unavailable ({e}); is librdmacm installed?"),
            )
        })?;
        let mut id = ptr::null_mut();
        // SAFETY: `channel` is live; `id` receives the new id.
        let rc = unsafe {
            rdma_create_id(
                channel.as_ptr(),
                &mut id,
                ptr::null_mut(),
                rdma_port_space::RDMA_PS_UDP,
            )
        };
        let Some(id) = NonNull::new(id).filter(|_| rc == 0) else {
            let e = io::Error::last_os_error();
            // SAFETY: the channel has no ids; it is destroyed once.
            unsafe { rdma_destroy_event_channel(channel.as_ptr()) };
            return Err(io::Error::new(e.kind(), format!("rdma_create_id: {e}")));
        };
        let cm = CmId { channel, id };
        let mut addr = sockaddr(ip);
        // SAFETY: `id` is live; `addr` is a sockaddr_in alive across the call.
        let rc = unsafe { rdma_bind_addr(cm.id.as_ptr(), (&raw mut addr).cast()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("no RDMA device has address {ip} (rdma_bind_addr: {e})"),
            ));
        }
        // Events are read without blocking, after poll(2) says so.
        // SAFETY: `channel` is live; fcntl takes no pointers.
        unsafe {
            let fd = cm.channel.as_ref().fd;
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(cm)
    }

    /// The device and port the bound address lives on.
    fn device(&self) -> Option<(String, u8)> {
        // SAFETY: `id` is live; after a successful bind its `verbs` context
        // and that context's device stay valid while the id exists.
        unsafe {
            let id = self.id.as_ref();
            let ctx = NonNull::new(id.verbs)?;
            let name = ibv_get_device_name(ctx.as_ref().device);
            let name = NonNull::new(name.cast_mut())?;
            Some((
                CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
                id.port_num,
            ))
        }
    }

    /// Waits up to `timeout` for the next event; returns its type, status
    /// and UD parameters (the event is acknowledged).
    fn next_event(&self, timeout: Duration) -> io::Result<Option<Event>> {
        // SAFETY: `channel` is live.
        let fd = unsafe { self.channel.as_ref().fd };
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        crate::udp::sys::poll(&mut fds, timeout)?;
        let mut event: *mut rdma_cm_event = ptr::null_mut();
        // SAFETY: `channel` is live; `event` receives an event we ack below.
        let rc = unsafe { rdma_get_cm_event(self.channel.as_ptr(), &mut event) };
        let Some(event) = NonNull::new(event).filter(|_| rc == 0) else {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        };
        // SAFETY: `event` is a live event until acked; `param.ud` is the
        // union member rdma_cm fills for UD (multicast) events, plain data.
        let got = unsafe {
            let ev = event.as_ref();
            let ud = ev.param.ud;
            Event {
                kind: ev.event,
                status: ev.status,
                ah_attr: ud.ah_attr,
                qpn: ud.qp_num,
                qkey: ud.qkey,
            }
        };
        // SAFETY: acknowledged once, after its fields were copied out.
        unsafe { rdma_ack_cm_event(event.as_ptr()) };
        Ok(Some(got))
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: both were created by this value, every event was acked,
        // and each is destroyed once, the id first.
        unsafe {
            rdma_destroy_id(self.id.as_ptr());
            rdma_destroy_event_channel(self.channel.as_ptr());
        }
    }
}

// SAFETY: the rdma_cm id and channel are used by the one thread owning the
// endpoint at a time; librdmacm allows that from any thread.
unsafe impl Send for CmId {}

/// The device name and port that carry `ip`, as rdma_cm resolves it.
pub fn locate(ip: Ipv4Addr) -> io::Result<(String, u8)> {
    let cm = CmId::bound(ip)?;
    cm.device()
        .ok_or_else(|| io::Error::other(format!("no RDMA device has address {ip}")))
}

/// A joined group, and the QP attached to it if any.
pub struct Membership {
    cm: CmId,
    group: Ipv4Addr,
    /// Sends go to this address (the group's MGID and MLID)...
    pub ah_attr: ibv_ah_attr,
    /// ...with this QP number (0xFFFFFF) and QKey.
    pub qpn: u32,
    pub qkey: u32,
    attached: Option<NonNull<ibv_qp>>,
}

// SAFETY: see CmId; the attached QP pointer is only used to detach, by the
// owner, before the QP is destroyed.
unsafe impl Send for Membership {}

impl Membership {
    /// Joins `group` from the device of local address `ip`, which must be
    /// `device` (the one the lane's QP lives on).
    pub fn join(ip: Ipv4Addr, group: Ipv4Addr, device: &str) -> io::Result<Membership> {
        let cm = CmId::bound(ip)?;
        match cm.device() {
            Some((d, _)) if d == device => {}
            other => {
                return Err(io::Error::other(format!(
                    "address {ip} is on RDMA device {}, not {device}: rdma_cm would join multicast on another device",
                    other.map_or("(none)".into(), |(d, _)| d)
                )));
            }
        }
        let mut addr = sockaddr(group);
        // SAFETY: `id` is bound; `addr` is a sockaddr_in alive across the
        // call (librdmacm copies it).
        let rc = unsafe { rdma_join_multicast(cm.id.as_ptr(), (&raw mut addr).cast(), ptr::null_mut()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("joining multicast group {group}: {e}"),
            ));
        }
        let start = Instant::now();
        while start.elapsed() < JOIN_TIMEOUT {
            let Some(ev) = cm.next_event(JOIN_TIMEOUT.saturating_sub(start.elapsed()))? else {
                continue;
            };
            match (ev.kind, ev.status) {
                (rdma_cm_event_type::RDMA_CM_EVENT_MULTICAST_JOIN, 0) => {
                    return Ok(Membership {
                        cm,
                        group,
                        ah_attr: ev.ah_attr,
                        qpn: ev.qpn,
                        qkey: ev.qkey,
                        attached: None,
                    });
                }
                (
                    rdma_cm_event_type::RDMA_CM_EVENT_MULTICAST_JOIN
                    | rdma_cm_event_type::RDMA_CM_EVENT_MULTICAST_ERROR,
                    s,
                ) => {
                    return Err(io::Error::other(format!(
                        "joining multicast group {group} failed (status {s}){HINT}"
                    )));
                }
                _ => {}
            }
        }
        Err(io::Error::other(format!(
            "joining multicast group {group} timed out after {} s{HINT}",
            JOIN_TIMEOUT.as_secs()
        )))
    }

    /// The group's GID (its MGID).
    pub fn gid(&self) -> ibv_gid {
        self.ah_attr.grh.dgid
    }

    /// Attaches `qp` so it receives the group.
    pub fn attach(&mut self, qp: NonNull<ibv_qp>) -> io::Result<()> {
        let gid = self.gid();
        // SAFETY: `qp` is a live UD QP; `gid` lives across the call.
        let rc = unsafe { ibv_attach_mcast(qp.as_ptr(), &gid, self.ah_attr.dlid) };
        if rc != 0 {
            return Err(io::Error::other(format!(
                "attaching the QP to multicast group {}: {}",
                self.group,
                io::Error::from_raw_os_error(rc)
            )));
        }
        self.attached = Some(qp);
        Ok(())
    }

    pub fn attached(&self) -> bool {
        self.attached.is_some()
    }

    pub fn group(&self) -> Ipv4Addr {
        self.group
    }
}

const HINT: &str = " (on InfiniBand a subnet manager must run; or set protocol.broadcast = \"unicast\")";

impl Drop for Membership {
    fn drop(&mut self) {
        let gid = self.gid();
        if let Some(qp) = self.attached.take() {
            // SAFETY: the owner drops the membership before the QP (a QP
            // still attached cannot be destroyed); `gid` lives across the call.
            let _ = unsafe { ibv_detach_mcast(qp.as_ptr(), &gid, self.ah_attr.dlid) };
        }
        let mut addr = sockaddr(self.group);
        // SAFETY: the id joined this group; `addr` lives across the call.
        let _ = unsafe { rdma_leave_multicast(self.cm.id.as_ptr(), (&raw mut addr).cast()) };
    }
}
