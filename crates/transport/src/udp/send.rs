//! Batched sending. A `SendBatch` becomes one sendmmsg array: each run of
//! consecutive datagrams to one `Dest` whose sizes are equal (the last may
//! be shorter) is one GSO super-datagram per destination address, which the
//! kernel cuts back into the original datagrams.

use super::cmsg::CmsgBuf;
use super::route::Routes;
use super::scratch::{Scratch, zeroed_mmsghdr};
use super::sys::{self, GSO_MAX_SEGMENTS, MAX_UDP_PAYLOAD};
use crate::{Dest, SendBatch, TransportStats};
use libc::c_int;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// How long a send waits for room in a full socket buffer before dropping.
const FULL_BUFFER_WAIT: Duration = Duration::from_millis(1);
/// Interrupted syscalls retried per batch before giving up on a message.
const MAX_INTERRUPTS: u32 = 8;

/// One message of the sendmmsg array: `count` datagrams starting at iovec
/// `iov`, to one address, as a GSO send of `segment`-byte pieces if non-zero.
#[derive(Clone, Copy, Debug)]
struct Planned {
    iov: usize,
    count: usize,
    segment: u16,
}

pub struct Sender {
    gso: bool,
    dests: Vec<Dest>,
    iovs: Scratch<libc::iovec>,
    plan: Vec<Planned>,
    names: Vec<libc::sockaddr_in>,
    ctrls: Vec<CmsgBuf>,
    msgs: Scratch<libc::mmsghdr>,
}

impl Sender {
    pub fn new(gso: bool) -> Sender {
        Sender {
            gso,
            dests: Vec::new(),
            iovs: Scratch::new(),
            plan: Vec::new(),
            names: Vec::new(),
            ctrls: Vec::new(),
            msgs: Scratch::new(),
        }
    }

    /// Whether GSO is in use (it is switched off if the kernel refuses it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends `batch` through `fd`. Per-datagram failures are counted in
    /// `stats`, never returned: UDP delivery is best effort.
    pub fn send(&mut self, fd: &OwnedFd, batch: &SendBatch, routes: &Routes, stats: &mut TransportStats) {
        self.plan(batch, routes, stats);
        self.build_headers();
        self.transmit(fd, stats);
    }

    /// Fills `iovs` (one per datagram, pointing into `batch`), then `plan`
    /// and `names` (one per message).
    fn plan(&mut self, batch: &SendBatch, routes: &Routes, stats: &mut TransportStats) {
        self.dests.clear();
        self.iovs.clear();
        self.plan.clear();
        self.names.clear();
        for (dest, bytes) in batch.iter() {
            self.dests.push(dest);
            self.iovs.push(libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            });
        }
        let mut i = 0;
        while i < self.dests.len() {
            let end = self.run_end(i);
            let segment = if end - i > 1 {
                self.iovs[i].iov_len as u16
            } else {
                0
            };
            let planned = Planned {
                iov: i,
                count: end - i,
                segment,
            };
            let (plan, names) = (&mut self.plan, &mut self.names);
            let missing = routes.resolve(self.dests[i], |a| {
                plan.push(planned);
                names.push(*a);
            });
            stats.send_errors += missing * planned.count as u64;
            i = end;
        }
    }

    /// The end of the GSO run that starts at datagram `i` (`i + 1` if none).
    fn run_end(&self, i: usize) -> usize {
        let segment = self.iovs[i].iov_len;
        if !self.gso || segment == 0 {
            return i + 1;
        }
        let (mut end, mut total) = (i + 1, segment);
        while end < self.dests.len() && end - i < GSO_MAX_SEGMENTS && self.dests[end] == self.dests[i] {
            let len = self.iovs[end].iov_len;
            if len == 0 || len > segment || total + len > MAX_UDP_PAYLOAD {
                break;
            }
            total += len;
            end += 1;
            if len < segment {
                break; // only the last segment may be short
            }
        }
        end
    }

    /// Points one mmsghdr per planned message at its iovecs, address and
    /// (for GSO) control message. Done after planning so no vector moves.
    fn build_headers(&mut self) {
        self.msgs.clear();
        self.ctrls.resize(self.plan.len(), CmsgBuf::new());
        for (k, p) in self.plan.iter().enumerate() {
            let mut m = zeroed_mmsghdr();
            let h = &mut m.msg_hdr;
            h.msg_name = (&raw mut self.names[k]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[p.iov];
            h.msg_iovlen = p.count as _;
            if p.segment != 0 {
                let len = self.ctrls[k].write_gso(p.segment);
                h.msg_control = (&raw mut self.ctrls[k]).cast();
                h.msg_controllen = len as _;
            }
            self.msgs.push(m);
        }
    }

    /// Runs sendmmsg until every message is sent or given up on.
    fn transmit(&mut self, fd: &OwnedFd, stats: &mut TransportStats) {
        let (mut off, mut waited, mut interrupts) = (0, false, 0);
        while off < self.msgs.len() {
            let rest = &mut self.msgs[off..];
            let vlen = rest.len().min(libc::UIO_MAXIOV as usize) as libc::c_uint;
            // SAFETY: `rest` holds `vlen` initialized headers whose pointers
            // (names, iovecs into the caller's batch, controls) are alive
            // for this call; the kernel writes only each `msg_len`.
            let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), rest.as_mut_ptr(), vlen, 0) };
            stats.send_calls += 1;
            if rc > 0 {
                (off..off + rc as usize).for_each(|k| self.count_sent(k, stats));
                off += rc as usize;
                continue;
            }
            let err = if rc == 0 { libc::EIO } else { sys::errno() };
            match err {
                libc::EINTR if interrupts < MAX_INTERRUPTS => interrupts += 1,
                libc::EAGAIN if !waited => {
                    waited = true;
                    wait_writable(fd);
                }
                libc::EAGAIN => {
                    // Still full: drop the rest, as a full NIC queue would.
                    let rest: usize = self.plan[off..].iter().map(|p| p.count).sum();
                    stats.send_errors += rest as u64;
                    return;
                }
                e if self.plan[off].segment != 0 && gso_refused(e) => {
                    self.gso = false;
                    self.send_singly(fd, off, stats);
                    off += 1;
                }
                _ => {
                    stats.send_errors += self.plan[off].count as u64;
                    off += 1;
                }
            }
        }
    }

    fn count_sent(&self, k: usize, stats: &mut TransportStats) {
        let p = self.plan[k];
        stats.datagrams_sent += p.count as u64;
        stats.bytes_sent += u64::from(self.msgs[k].msg_len);
        if p.segment != 0 {
            stats.gso_sends += 1;
            stats.gso_segments += p.count as u64;
        }
    }

    /// Sends message `k`'s datagrams one by one, without GSO.
    fn send_singly(&mut self, fd: &OwnedFd, k: usize, stats: &mut TransportStats) {
        let p = self.plan[k];
        for i in p.iov..p.iov + p.count {
            let mut h = self.msgs[k].msg_hdr;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            // SAFETY: `h` points at this message's address and at one iovec
            // into the caller's batch, all alive for this call.
            let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &h, 0) };
            stats.send_calls += 1;
            if rc >= 0 {
                stats.datagrams_sent += 1;
                stats.bytes_sent += rc as u64;
            } else {
                stats.send_errors += 1;
            }
        }
    }
}

/// The errors a kernel or device gives when it cannot segment for us.
/// EMSGSIZE: a segment longer than the device's MTU (a veth of 1500 bytes
/// refuses a 4072-byte segment so; sent alone, the datagram is fragmented).
fn gso_refused(err: c_int) -> bool {
    matches!(
        err,
        libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::EOPNOTSUPP | libc::ENOPROTOOPT
    )
}

fn wait_writable(fd: &OwnedFd) {
    let mut fds = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    let _ = sys::poll(&mut fds, FULL_BUFFER_WAIT);
}
