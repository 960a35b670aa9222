//! The send path on the device. A `SendBatch` becomes lists of UD send work
//! requests, one per destination QP of each datagram (one to the multicast
//! group, or one per member for a unicast fan-out), each list posted with
//! one doorbell (`ibv_wr_start` .. `ibv_wr_complete`, through sideway's
//! extended-QP guard; the UD address is set with the raw `ibv_wr_set_ud_addr`).
//! A datagram up to the device's inline limit is copied into the work
//! request itself; a longer one is copied once into a registered send slot
//! that all its requests point at. One request in `signal_every` is
//! signaled; `SendTracker` says when slots and queue entries are free.

use super::ah::Ah;
use super::completion::SendTracker;
use super::queues::Queues;
use super::recv::{Registered, poll};
use super::route::{Hops, Peers};
use crate::{SendBatch, TransportStats};
use rdma_mummy_sys::{
    ibv_ah, ibv_cq, ibv_qp_ex, ibv_wc, ibv_wc_status, ibv_wc_status_str, ibv_wr_set_ud_addr,
};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    ExtendedPostSendGuard, PostSendGuard, QueuePair, SetInlineData, SetScatterGatherEntry, WorkRequestFlags,
};
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a sender waits for a send completion before declaring the
/// device stuck.
const STALL: Duration = Duration::from_secs(5);

/// The multicast group as a send destination.
pub struct GroupRoute {
    pub ah: Ah,
    pub qpn: u32,
    pub qkey: u32,
}

/// What one doorbell's list holds, counted once it is posted.
#[derive(Default)]
struct Chunk {
    ids: Range<u64>,
    bytes: u64,
    inline: u64,
    signaled: u64,
}

pub struct Sender {
    pub tracker: SendTracker,
    mem: Registered,
    slot_bytes: usize,
    max_inline: usize,
    wcs: [ibv_wc; 16],
}

impl Sender {
    pub fn new(
        pd: &Arc<ProtectionDomain>,
        depth: usize,
        signal_every: usize,
        mtu: usize,
        max_inline: usize,
    ) -> io::Result<Sender> {
        let slot_bytes = mtu.div_ceil(64) * 64;
        Ok(Sender {
            tracker: SendTracker::new(depth, signal_every),
            mem: Registered::new(pd, depth * slot_bytes, AccessFlags::LocalWrite)?,
            slot_bytes,
            max_inline,
            // SAFETY: ibv_wc is integers and a union of integers: all zeroes is valid.
            wcs: [unsafe { MaybeUninit::zeroed().assume_init() }; 16],
        })
    }

    /// Posts `batch` (every datagram already checked against the MTU).
    /// Per-datagram failures are counted in `stats`; an error means the
    /// queue pair is broken.
    pub fn send(
        &mut self,
        batch: &SendBatch,
        peers: &Peers<Ah>,
        group: Option<&GroupRoute>,
        q: &mut Queues,
        stats: &mut TransportStats,
    ) -> io::Result<()> {
        let send_cq = q.raw_send_cq();
        let qpx = q.qpx.0.as_ptr();
        self.reap(send_cq, stats)?;
        let mut items = batch.iter();
        let mut next = next_item(&mut items, peers, stats);
        // One list (one doorbell) per turn of this loop.
        while let Some((_, first)) = next {
            self.wait_room(send_cq, first.count(), stats)?;
            let mut guard = q.qp.start_post_send();
            let mut chunk = Chunk::default();
            while let Some((bytes, hops)) = next {
                let k = hops.count();
                let queued = (chunk.ids.end - chunk.ids.start) as usize;
                if queued + k > self.tracker.max_per_post() || self.tracker.room() < k {
                    break;
                }
                let ids = self.tracker.reserve(k);
                if chunk.ids.is_empty() {
                    chunk.ids = ids.clone();
                }
                chunk.ids.end = ids.end;
                let inline = bytes.len() <= self.max_inline;
                let sge = (!inline).then(|| {
                    // One copy for every request of this datagram, in the slot
                    // of its last request (freed only once all of them are).
                    let at = self.tracker.slot(ids.end - 1) * self.slot_bytes;
                    self.mem.write(at, bytes);
                    (self.mem.lkey(), self.mem.addr(at))
                });
                let targets = hops
                    .nodes
                    .iter()
                    .filter_map(|n| peers.get(n).map(|(a, ah)| (ah.raw(), a.qpn, a.qkey)))
                    .chain(group.filter(|_| hops.group).map(|g| (g.ah.raw(), g.qpn, g.qkey)));
                for (id, (ah, qpn, qkey)) in ids.zip(targets) {
                    let signaled = self.tracker.signaled(id);
                    let mut flags = WorkRequestFlags::none();
                    if signaled {
                        flags |= WorkRequestFlags::Signaled;
                    }
                    if inline {
                        // Inline data needs the flag too, or rxe fails the send.
                        flags |= WorkRequestFlags::Inline;
                    }
                    let wr = guard.construct_wr(id, flags).setup_send();
                    set_ud_addr(qpx, ah, qpn, qkey);
                    match sge {
                        None => wr.setup_inline_data(bytes),
                        // SAFETY: the slot is registered memory holding the
                        // datagram, not reused until this request completes.
                        Some((lkey, addr)) => unsafe { wr.setup_sge(lkey, addr, bytes.len() as u32) },
                    }
                    chunk.bytes += bytes.len() as u64;
                    chunk.inline += u64::from(inline);
                    chunk.signaled += u64::from(signaled);
                }
                next = next_item(&mut items, peers, stats);
            }
            self.post(guard, chunk, stats);
        }
        Ok(())
    }

    /// Rings the doorbell for one list.
    fn post(&mut self, guard: ExtendedPostSendGuard<'_>, chunk: Chunk, stats: &mut TransportStats) {
        let n = chunk.ids.end - chunk.ids.start;
        match guard.post() {
            Ok(()) => {
                stats.doorbells += 1;
                stats.send_calls += 1;
                stats.work_requests += n;
                stats.datagrams_sent += n;
                stats.bytes_sent += chunk.bytes;
                stats.inline_sends += chunk.inline;
                stats.signaled_sends += chunk.signaled;
            }
            Err(_) => {
                // Nothing of the list went out: its ids and slots are free.
                self.tracker.unreserve(chunk.ids);
                stats.send_errors += n;
            }
        }
    }

    /// Polls send completions until `k` requests fit.
    fn wait_room(&mut self, cq: *mut ibv_cq, k: usize, stats: &mut TransportStats) -> io::Result<()> {
        let start = Instant::now();
        let mut spins = 0u32;
        while self.tracker.room() < k {
            if !self.tracker.awaits_signal() {
                return Err(io::Error::other(
                    "RDMA send queue full with no signaled send in flight",
                ));
            }
            if self.reap(cq, stats)? == 0 {
                spins += 1;
                if spins > 64 {
                    std::thread::yield_now();
                }
                if start.elapsed() > STALL {
                    return Err(io::Error::other(format!(
                        "RDMA send completions stopped for {} s",
                        STALL.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Takes in the send completions waiting. A failed send is counted; a
    /// flushed one means the queue pair is in error, which is fatal.
    pub fn reap(&mut self, cq: *mut ibv_cq, stats: &mut TransportStats) -> io::Result<usize> {
        let n = poll(cq, &mut self.wcs)?;
        stats.cq_polls += 1;
        for wc in &self.wcs[..n] {
            self.tracker.complete(wc.wr_id);
            if wc.status != ibv_wc_status::IBV_WC_SUCCESS {
                stats.send_errors += 1;
                if wc.status == ibv_wc_status::IBV_WC_WR_FLUSH_ERR {
                    return Err(io::Error::other(format!(
                        "RDMA queue pair failed: {}",
                        status_str(wc.status)
                    )));
                }
            }
        }
        Ok(n)
    }

    /// Waits (bounded) until no send is in flight, before the address
    /// handles or queue pair they use go away.
    pub fn drain(&mut self, cq: *mut ibv_cq, stats: &mut TransportStats) {
        let start = Instant::now();
        while self.tracker.in_flight() > 0 && start.elapsed() < Duration::from_millis(200) {
            if !self.tracker.awaits_signal() {
                return; // the rest completed unsignaled; nothing to wait for
            }
            if matches!(self.reap(cq, stats), Err(_) | Ok(0)) {
                std::thread::yield_now();
            }
        }
    }
}

/// The next datagram that has somewhere to go, with its hops; copies to
/// unknown members are counted as send errors.
fn next_item<'b>(
    items: &mut impl Iterator<Item = (crate::Dest, &'b [u8])>,
    peers: &Peers<Ah>,
    stats: &mut TransportStats,
) -> Option<(&'b [u8], Hops)> {
    for (dest, bytes) in items {
        let hops = peers.resolve(dest);
        stats.send_errors += hops.missing;
        if hops.count() > 0 {
            return Some((bytes, hops));
        }
    }
    None
}

fn set_ud_addr(qpx: *mut ibv_qp_ex, ah: *mut ibv_ah, qpn: u32, qkey: u32) {
    // SAFETY: called between a work request's builder (setup_send) and the
    // next one, on the live extended view of the QP the guard is posting
    // on; `ah` is a live handle in that QP's PD.
    unsafe { ibv_wr_set_ud_addr(qpx, ah, qpn, qkey) };
}

/// The library's name for a completion status.
pub fn status_str(status: u32) -> String {
    // SAFETY: ibv_wc_status_str returns a static string (or null).
    let s = unsafe { ibv_wc_status_str(status) };
    if s.is_null() {
        return format!("status {status}");
    }
    // SAFETY: non-null, NUL-terminated and static.
    unsafe { std::ffi::CStr::from_ptr(s) }
        .to_string_lossy()
        .into_owned()
}
