//! Per-item sequence lock: readers never write shared memory and never block a writer; a reader
//! that overlaps a write sees the version change and retries, so it never returns a torn value.
//!
//! The header word packs `seq` (low 40 bits, odd while a writer is inside) and `meta` (high 24
//! bits, owned by the caller; the arena stores 0 for a free item and `len + 1` for a live one).
//! Because `meta` lives in the version word, a reader gets it consistent with the data for free.
//!
//! Memory model (not just x86 TSO): protected data are atomics accessed `Relaxed`, so racing reads
//! are not undefined behaviour, and two fences order them (Boehm, "Can seqlocks get along with
//! programming language memory models?", 2012):
//! - writer: even -> odd (an Acquire RMW), `fence(Release)`, data stores, `store(even + 2, Release)`;
//! - reader: `load(Acquire)` = v1 (retry while odd), data loads, `fence(Acquire)`, `load(Relaxed)` = v2.
//!
//! If a reader's data load saw a store of some write W, its acquire fence synchronizes with W's
//! release fence, which comes after W's CAS: v2 then sees W's odd value (or later), so v2 != v1.
//! If v1 was W's final store, the acquire load makes all of W's data visible. Hence v1 == v2
//! (even) implies the data came from exactly the writes completed by v1.

use crate::sync::{AtomicU64, Ordering, fence, spin};

const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Largest `meta` a header can carry (24 bits).
pub const META_MAX: u32 = (1 << (64 - SEQ_BITS)) - 1;

/// The caller's 24-bit field of a header value.
#[inline(always)]
pub fn meta(header: u64) -> u32 {
    (header >> SEQ_BITS) as u32
}

/// The header a writer that locked at `locked_from` (even) publishes on unlock. The sequence wraps
/// after 2^39 writes to one item; a reader would have to stall across all of them to be fooled.
#[inline(always)]
fn next(locked_from: u64, meta: u32) -> u64 {
    debug_assert!(meta <= META_MAX);
    (((locked_from & SEQ_MASK) + 2) & SEQ_MASK) | (u64::from(meta) << SEQ_BITS)
}

/// Starts a read: the header once no writer is inside (spins, without writing, while one is).
#[inline(always)]
pub fn read_begin(header: &AtomicU64) -> u64 {
    loop {
        let v = header.load(Ordering::Acquire);
        if v & 1 == 0 {
            return v;
        }
        spin();
    }
}

/// Ends a read started at `begin`: true if no write touched the item in between, so everything
/// loaded since `read_begin` is one consistent copy.
#[inline(always)]
pub fn read_validate(header: &AtomicU64, begin: u64) -> bool {
    fence(Ordering::Acquire);
    header.load(Ordering::Relaxed) == begin
}

/// Runs `body` until it completes without a concurrent write; returns the header's `meta` and the
/// body's result from that consistent pass. `body` gets `meta` and must only load the data.
#[inline(always)]
pub fn read<T>(header: &AtomicU64, mut body: impl FnMut(u32) -> T) -> (u32, T) {
    loop {
        let v = read_begin(header);
        let out = body(meta(v));
        if read_validate(header, v) {
            return (meta(v), out);
        }
    }
}

/// Takes the item's write side (spinning while another writer holds it) and returns the even
/// header it was locked from. Setting the odd bit with `fetch_or` is harmless when it is already
/// set, and an RMW always reads the latest header, so a waiter cannot spin on a stale value.
#[inline(always)]
pub fn write_lock(header: &AtomicU64) -> u64 {
    loop {
        let v = header.fetch_or(1, Ordering::Acquire);
        if v & 1 == 0 {
            // Orders the odd mark before every data store that follows (see module doc).
            fence(Ordering::Release);
            return v;
        }
        spin();
    }
}

/// Publishes the writes made since `write_lock` returned `locked_from`, with a new `meta`.
#[inline(always)]
pub fn write_unlock(header: &AtomicU64, locked_from: u64, meta: u32) {
    header.store(next(locked_from, meta), Ordering::Release);
}

/// Runs `body` (data stores, `Relaxed`) as one write that readers see whole or not at all, and
/// sets the header's `meta`.
#[inline(always)]
pub fn write<T>(header: &AtomicU64, meta: u32, body: impl FnOnce() -> T) -> T {
    let from = write_lock(header);
    let out = body();
    write_unlock(header, from, meta);
    out
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn write_bumps_seq_and_sets_meta() {
        let h = AtomicU64::new(0);
        write(&h, 33, || ());
        let v = h.load(Ordering::Relaxed);
        assert_eq!(v & 1, 0);
        assert_eq!(meta(v), 33);
        assert_eq!(v & SEQ_MASK, 2);
        assert_eq!(read(&h, |m| m + 1), (33, 34));
    }

    #[test]
    fn seq_wraps_without_touching_meta() {
        let h = AtomicU64::new((SEQ_MASK - 1) | (u64::from(META_MAX) << SEQ_BITS));
        write(&h, META_MAX, || ());
        let v = h.load(Ordering::Relaxed);
        assert_eq!(v & SEQ_MASK, 0);
        assert_eq!(meta(v), META_MAX);
    }
}
