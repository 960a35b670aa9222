//! The receive side on the device: the registered ring of buffers, posting
//! them as one list of receive work requests (one doorbell), and polling
//! the receive completion queue into a preallocated array. Raw calls:
//! sideway's receive guard and poller allocate on every call and its work
//! completions lack the source QP, source LID and GRH flag.

use super::ring::{RecvRing, RingLayout};
use rdma_mummy_sys::{ibv_cq, ibv_poll_cq, ibv_post_recv, ibv_qp, ibv_recv_wr, ibv_sge, ibv_wc};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;

/// Work completions read per poll.
pub const POLL_BATCH: usize = 32;

/// A block of memory registered with the device. The device writes into it
/// behind Rust's back, so it is only touched through raw pointers, one
/// completed (device-free) range at a time.
pub struct Registered {
    // Field order: the registration goes before the memory.
    mr: Arc<MemoryRegion>,
    base: *mut u8,
    len: usize,
    /// A vector, not a box: moving it does not assert unique access to
    /// the bytes the device and `base` point at.
    _mem: Vec<u8>,
}

// SAFETY: the block is owned by one endpoint, used from one thread at a
// time; the raw pointer is into memory this value owns.
unsafe impl Send for Registered {}

impl Registered {
    pub fn new(pd: &Arc<ProtectionDomain>, len: usize, access: AccessFlags) -> io::Result<Registered> {
        let mut mem = vec![0u8; len.max(1)];
        let base = mem.as_mut_ptr();
        // SAFETY: `mem` is `len` bytes that this value owns, never grows
        // (so never moves) and frees only after the registration is dropped.
        let mr = unsafe { pd.reg_mr(base as usize, mem.len(), access) }
            .map_err(|e| io::Error::other(format!("registering {len} bytes with the device: {e:?}")))?;
        Ok(Registered {
            mr,
            base,
            len: mem.len(),
            _mem: mem,
        })
    }

    pub fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    /// The device address of byte `offset`.
    pub fn addr(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.len);
        self.base as u64 + offset as u64
    }

    /// The bytes of `range`, which the device must not be writing.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked); the caller owns this range (a
        // completed receive slot, or a send slot it filled), so nothing
        // writes it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.base.add(range.start), range.len()) }
    }

    /// Copies `data` to `offset` (a send slot the device is done with).
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len);
        // SAFETY: in bounds (checked); the slot is not in flight, so the
        // device does not read it during the copy; `data` is caller memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(offset), data.len()) };
    }
}

/// The registered receive ring and its posting and polling scratch.
pub struct Receiver {
    pub ring: RecvRing,
    pub mem: Registered,
    wrs: Vec<ibv_recv_wr>,
    sges: Vec<ibv_sge>,
    pub wcs: [ibv_wc; POLL_BATCH],
}

// SAFETY: the work-request scratch holds raw pointers into this value's own
// vectors, rebuilt before every post; the owner uses it from one thread.
unsafe impl Send for Receiver {}

fn zeroed_wc() -> ibv_wc {
    // SAFETY: ibv_wc is integers and a union of integers: all zeroes is valid.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

impl Receiver {
    pub fn new(pd: &Arc<ProtectionDomain>, layout: RingLayout) -> io::Result<Receiver> {
        let mem = Registered::new(pd, layout.block_bytes(), AccessFlags::LocalWrite)?;
        let empty = ibv_recv_wr {
            wr_id: 0,
            next: std::ptr::null_mut(),
            sg_list: std::ptr::null_mut(),
            num_sge: 0,
        };
        Ok(Receiver {
            ring: RecvRing::new(layout),
            mem,
            wrs: vec![empty; layout.slots],
            sges: vec![
                ibv_sge {
                    addr: 0,
                    length: 0,
                    lkey: 0,
                };
                layout.slots
            ],
            wcs: [zeroed_wc(); POLL_BATCH],
        })
    }

    /// Posts every waiting slot as one list. Returns how many were posted;
    /// the rest (if the device refused some) wait for the next call.
    pub fn post(&mut self, qp: *mut ibv_qp) -> io::Result<usize> {
        let n = self.ring.to_post().len();
        if n == 0 {
            return Ok(0);
        }
        let layout = *self.ring.layout();
        for (i, &slot) in self.ring.to_post().iter().enumerate() {
            self.sges[i] = ibv_sge {
                addr: self.mem.addr(layout.offset(slot as usize)),
                length: layout.slot_bytes as u32,
                lkey: self.mem.lkey(),
            };
            self.wrs[i] = ibv_recv_wr {
                wr_id: u64::from(slot),
                next: std::ptr::null_mut(),
                sg_list: &raw mut self.sges[i],
                num_sge: 1,
            };
        }
        for i in 0..n - 1 {
            self.wrs[i].next = &raw mut self.wrs[i + 1];
        }
        let mut bad: *mut ibv_recv_wr = std::ptr::null_mut();
        // SAFETY: `qp` is a live QP; the list's `n` requests and their SGEs
        // live in this value across the call, and name registered slots
        // that are not posted.
        let rc = unsafe { ibv_post_recv(qp, self.wrs.as_mut_ptr(), &mut bad) };
        let posted = if rc == 0 {
            n
        } else {
            // Requests before the refused one were posted.
            let first = self.wrs.as_ptr() as usize;
            (bad as usize).saturating_sub(first) / std::mem::size_of::<ibv_recv_wr>()
        }
        .min(n);
        self.ring.posted(posted);
        if rc != 0 && posted == 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(posted)
    }
}

/// Polls up to `wcs.len()` completions from `cq` into `wcs`.
pub fn poll(cq: *mut ibv_cq, wcs: &mut [ibv_wc]) -> io::Result<usize> {
    let n = i32::try_from(wcs.len()).unwrap_or(i32::MAX);
    // SAFETY: `cq` is a live CQ; `wcs` has room for `n` completions.
    let rc = unsafe { ibv_poll_cq(cq, n, wcs.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::other(format!(
            "polling a completion queue failed ({rc})"
        )));
    }
    Ok(rc as usize)
}
