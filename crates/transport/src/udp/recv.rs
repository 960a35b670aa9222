//! Batched receiving: recvmmsg into the endpoint's own buffers, then each
//! read is checked (source, size) and split into datagrams (a GRO read holds
//! several) that are copied into the caller's `RecvBatch`. A read that does
//! not fit the batch stays pending for the next call.

use super::cmsg::{CMSG_BUF, CmsgBuf};
use super::route::{Filter, Source};
use super::scratch::{Scratch, zeroed_mmsghdr};
use super::sys;
use crate::{RecvBatch, TransportStats};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};

/// The read being delivered: its segment size, and how far it got.
#[derive(Clone, Copy, Debug)]
struct Current {
    segment: usize,
    offset: usize,
}

pub struct Receiver {
    mtu: usize,
    bufs: Vec<Vec<u8>>,
    names: Vec<libc::sockaddr_in>,
    ctrls: Vec<CmsgBuf>,
    iovs: Scratch<libc::iovec>,
    msgs: Scratch<libc::mmsghdr>,
    /// Reads filled by the last recvmmsg, and the next one to deliver.
    ready: usize,
    next: usize,
    current: Option<Current>,
    /// Which socket the pending reads came from.
    from: usize,
    /// Each socket's last reported drop count (SO_RXQ_OVFL).
    dropped: [u32; 2],
    /// The socket read first next time, so neither starves the other.
    turn: usize,
}

impl Receiver {
    /// `slots` reads per syscall, each up to `buf_size` bytes.
    pub fn new(slots: usize, buf_size: usize, mtu: usize) -> Receiver {
        let mut iovs = Scratch::new();
        let mut msgs = Scratch::new();
        iovs.resize(
            slots,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        msgs.resize_with(slots, zeroed_mmsghdr);
        Receiver {
            mtu,
            bufs: vec![vec![0u8; buf_size]; slots],
            names: vec![sys::sockaddr(std::net::SocketAddrV4::new(0.into(), 0)); slots],
            ctrls: vec![CmsgBuf::new(); slots],
            iovs,
            msgs,
            ready: 0,
            next: 0,
            current: None,
            from: 0,
            dropped: [0; 2],
            turn: 0,
        }
    }

    /// Whether reads are waiting for room in a batch.
    pub fn pending(&self) -> bool {
        self.next < self.ready
    }

    /// Datagrams the kernel dropped on full receive queues, over all sockets.
    pub fn dropped_full(&self) -> u64 {
        self.dropped.iter().map(|&d| u64::from(d)).sum()
    }

    /// Fills `batch` from pending reads, then from `socks`, reading at most
    /// as many messages as the batch had room for when called.
    pub fn recv(
        &mut self,
        batch: &mut RecvBatch,
        socks: &[&OwnedFd],
        filter: &Filter,
        stats: &mut TransportStats,
    ) -> io::Result<usize> {
        let (n, _) = self.recv_from(batch, socks, [true; 2], filter, stats)?;
        Ok(n)
    }

    /// `recv` that reads only the sockets marked in `readable`; also returns
    /// which of those it found empty (see `read`).
    pub fn recv_from(
        &mut self,
        batch: &mut RecvBatch,
        socks: &[&OwnedFd],
        readable: [bool; 2],
        filter: &Filter,
        stats: &mut TransportStats,
    ) -> io::Result<(usize, [bool; 2])> {
        let mut budget = batch.capacity() - batch.len();
        // Sockets not marked count as drained, so `pick` passes them over.
        let mut drained = readable.map(|r| !r);
        let mut emptied = [false; 2];
        loop {
            self.deliver(batch, filter, stats);
            if self.pending() || budget == 0 || batch.len() == batch.capacity() {
                break;
            }
            let Some(s) = self.pick(socks.len(), &drained) else {
                break;
            };
            let want = budget.min(self.bufs.len());
            let (got, empty) = self.read(socks[s], s, want, stats)?;
            budget -= got;
            drained[s] = got < want;
            emptied[s] = empty;
        }
        Ok((batch.len(), emptied))
    }

    /// The next socket not known to be empty, alternating between calls.
    fn pick(&mut self, n: usize, drained: &[bool; 2]) -> Option<usize> {
        let s = (0..n.min(2))
            .map(|i| (self.turn + i) % n)
            .find(|&s| drained.get(s).is_some_and(|&d| !d))?;
        self.turn = (s + 1) % n;
        Some(s)
    }

    /// One recvmmsg of up to `want` messages from socket number `s`: how
    /// many it read, and whether it found the socket's queue empty (it
    /// read fewer than asked, or nothing was there). A failed read says
    /// nothing about the queue: datagrams may wait behind the error.
    fn read(
        &mut self,
        fd: &OwnedFd,
        s: usize,
        want: usize,
        stats: &mut TransportStats,
    ) -> io::Result<(usize, bool)> {
        self.prepare(want);
        // SAFETY: the first `want` headers point at this receiver's own
        // buffers, names and controls with their true lengths, all alive
        // across the call; a null timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        stats.recv_calls += 1;
        if rc < 0 {
            return match sys::errno() {
                libc::EAGAIN => Ok((0, true)),
                libc::EINTR => Ok((0, false)),
                e @ (libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK) => {
                    Err(io::Error::from_raw_os_error(e))
                }
                // E.g. a queued ICMP error: nothing to deliver, keep going.
                _ => {
                    stats.recv_errors += 1;
                    Ok((0, false))
                }
            };
        }
        (self.ready, self.next, self.from, self.current) = (rc as usize, 0, s, None);
        Ok((self.ready, self.ready < want))
    }

    /// Resets the lengths the kernel overwrites on each read.
    fn prepare(&mut self, want: usize) {
        for k in 0..want {
            self.iovs[k] = libc::iovec {
                iov_base: self.bufs[k].as_mut_ptr().cast(),
                iov_len: self.bufs[k].len(),
            };
            let h = &mut self.msgs[k].msg_hdr;
            h.msg_name = (&raw mut self.names[k]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = (&raw mut self.ctrls[k]).cast();
            h.msg_controllen = CMSG_BUF as _;
            h.msg_flags = 0;
            self.msgs[k].msg_len = 0;
        }
    }

    /// Copies pending datagrams into `batch` until it is full.
    fn deliver(&mut self, batch: &mut RecvBatch, filter: &Filter, stats: &mut TransportStats) {
        while self.next < self.ready {
            if batch.len() == batch.capacity() {
                return;
            }
            let cur = match self.current {
                Some(c) => c,
                None => match self.admit(self.next, filter, stats) {
                    Some(c) => c,
                    None => {
                        self.next += 1;
                        continue;
                    }
                },
            };
            self.current = self.split(self.next, cur, batch, stats);
            if self.current.is_none() {
                self.next += 1;
            }
        }
    }

    /// Checks read `k` and returns how to split it, or `None` to drop it.
    fn admit(&mut self, k: usize, filter: &Filter, stats: &mut TransportStats) -> Option<Current> {
        let h = &self.msgs[k].msg_hdr;
        #[allow(clippy::unnecessary_cast)] // size_t on glibc, socklen_t on musl
        let anc = self.ctrls[k].parse(h.msg_controllen as usize);
        if let Some(d) = anc.dropped {
            self.dropped[self.from] = d;
        }
        if h.msg_flags & libc::MSG_TRUNC != 0 {
            stats.dropped_oversize += 1;
            return None;
        }
        let len = self.len(k);
        let segment = anc.gro_segment.filter(|&s| s > 0 && s < len).unwrap_or(len);
        // Drops count datagrams, however many one read carried.
        let datagrams = len.div_ceil(segment.max(1)).max(1) as u64;
        match filter.classify(&self.names[k], h.msg_namelen as usize) {
            Source::Peer => {}
            Source::Own => {
                stats.dropped_own += datagrams;
                return None;
            }
            Source::Unknown => {
                stats.dropped_unknown_source += datagrams;
                return None;
            }
        }
        if segment < len {
            stats.gro_reads += 1;
            stats.gro_segments += datagrams;
        }
        Some(Current { segment, offset: 0 })
    }

    fn len(&self, k: usize) -> usize {
        (self.msgs[k].msg_len as usize).min(self.bufs[k].len())
    }

    /// Copies read `k`'s datagrams from `cur.offset` into `batch`. Returns
    /// where it stopped if the batch filled first, `None` when done.
    fn split(
        &self,
        k: usize,
        mut cur: Current,
        batch: &mut RecvBatch,
        stats: &mut TransportStats,
    ) -> Option<Current> {
        let data = &self.bufs[k][..self.len(k)];
        loop {
            let end = (cur.offset + cur.segment).min(data.len());
            let piece = &data[cur.offset..end];
            if piece.len() > self.mtu {
                stats.dropped_oversize += 1;
            } else if batch.push_copy(piece) {
                stats.datagrams_recv += 1;
                stats.bytes_recv += piece.len() as u64;
            } else {
                return Some(cur);
            }
            cur.offset = end;
            if cur.offset >= data.len() {
                return None;
            }
        }
    }
}
