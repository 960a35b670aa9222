//! Items in one preallocated, 64-byte aligned array of words. An item is
//! `[header, key, zxid, value words...]` rounded up to whole cache lines, so a 32-byte value makes a
//! 64-byte item that one cache miss brings in. The header is the item's seqlock; its `meta` field
//! is 0 for a free item and `len + 1` for a live one.
//!
//! Free items form an intrusive list threaded through their key word (no side array); a `Mutex`
//! guards it because only inserts and deletes take it, never reads or updates.

use crate::seqlock;
use crate::sync::{AtomicU64, Mutex, Ordering::Relaxed};
use crate::{ItemMeta, StoreError};

/// Words before the value: header, key, zxid.
const VALUE: usize = 3;
const LINE_WORDS: usize = 8;
/// `meta` of a free item; zeroed memory is therefore an arena of free items.
const FREE: u32 = 0;
/// End of the free list.
const NIL: u32 = u32::MAX;

pub(crate) struct Arena {
    words: Box<[AtomicU64]>,
    /// Word offset of item 0: the first 64-byte boundary in `words`.
    base: usize,
    /// Words per item, a multiple of a cache line.
    stride: usize,
    alloc: Mutex<Alloc>,
    /// Stands in for an item head in a branch `item` never takes, so it needs no panic path.
    spare_head: [AtomicU64; VALUE],
}

/// One item's words.
struct Item<'a> {
    header: &'a AtomicU64,
    key: &'a AtomicU64,
    zxid: &'a AtomicU64,
    value: &'a [AtomicU64],
}

struct Alloc {
    free_head: u32,
    /// Items `unused..capacity` were never handed out.
    unused: u32,
    capacity: u32,
}

/// Words per item for values of up to `value_size` bytes.
pub(crate) fn stride_words(value_size: usize) -> usize {
    (VALUE + value_size.div_ceil(8)).next_multiple_of(LINE_WORDS)
}

/// A zeroed word array, or `OutOfMemory` instead of aborting the process.
pub(crate) fn zeroed_words(len: usize) -> Result<Box<[AtomicU64]>, StoreError> {
    let mut v = Vec::new();
    let bytes = len.saturating_mul(size_of::<AtomicU64>());
    v.try_reserve_exact(len)
        .map_err(|_| StoreError::OutOfMemory { bytes })?;
    crate::hugepage::advise(v.as_ptr(), bytes);
    v.extend((0..len).map(|_| AtomicU64::new(0)));
    Ok(v.into_boxed_slice())
}

impl Arena {
    pub(crate) fn new(capacity: u32, value_size: usize) -> Result<Arena, StoreError> {
        let stride = stride_words(value_size);
        let total = (capacity as usize)
            .checked_mul(stride)
            .and_then(|w| w.checked_add(LINE_WORDS - 1))
            .ok_or(StoreError::OutOfMemory { bytes: usize::MAX })?;
        let words = zeroed_words(total)?;
        // Under loom the atomics are not 8 bytes; alignment is then irrelevant, but stay in bounds.
        let base = words.as_ptr().align_offset(64).min(LINE_WORDS - 1);
        let alloc = Alloc {
            free_head: NIL,
            unused: 0,
            capacity,
        };
        let spare_head = std::array::from_fn(|_| AtomicU64::new(0));
        Ok(Arena {
            words,
            base,
            stride,
            alloc: Mutex::new(alloc),
            spare_head,
        })
    }

    /// Item `idx`'s words: the fixed head (header, key, zxid) and the value words.
    #[inline(always)]
    fn item(&self, idx: u32) -> Item<'_> {
        let start = self.base + idx as usize * self.stride;
        let words = &self.words[start..start + self.stride];
        // Never fails: a stride holds at least one cache line, more than the head.
        let (head, value) = words
            .split_first_chunk::<VALUE>()
            .unwrap_or((&self.spare_head, &[]));
        let [header, key, zxid] = head;
        Item {
            header,
            key,
            zxid,
            value,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.words.len() * size_of::<AtomicU64>()
    }

    /// Prefetches the item's first two cache lines (all of it for values up to 96 bytes).
    #[inline(always)]
    pub(crate) fn prefetch(&self, idx: u32) {
        let item = self.item(idx);
        crate::prefetch::prefetch(item.header);
        if let Some(second) = item.value.get(LINE_WORDS - VALUE) {
            crate::prefetch::prefetch(second);
        }
    }

    /// A consistent copy of item `idx` if it currently holds `key`: the value goes to
    /// `out[..len]`. `None` if the item is free or holds another key (it was deleted and maybe
    /// reused since the caller found it in the index).
    #[inline(always)]
    pub(crate) fn read(&self, idx: u32, key: u64, out: &mut [u8]) -> Option<ItemMeta> {
        let item = self.item(idx);
        let (_, found) = seqlock::read(item.header, |meta| {
            if meta == FREE || item.key.load(Relaxed) != key {
                return None;
            }
            // `meta` comes from an even header, so it is a length some writer stored; `min` only
            // keeps a caller's short buffer from panicking mid-copy.
            let len = ((meta - 1) as usize).min(out.len());
            copy_out(item.value, &mut out[..len]);
            Some(ItemMeta {
                zxid: item.zxid.load(Relaxed),
                len,
            })
        });
        found
    }

    /// The key of item `idx`, or `None` if it is free (a consistent read).
    pub(crate) fn key_of(&self, idx: u32) -> Option<u64> {
        let item = self.item(idx);
        seqlock::read(item.header, |meta| (meta != FREE).then(|| item.key.load(Relaxed))).1
    }

    /// Writes a whole item (insert or update) as one seqlock write.
    pub(crate) fn write(&self, idx: u32, key: u64, zxid: u64, value: &[u8]) {
        let item = self.item(idx);
        debug_assert!(value.len() < seqlock::META_MAX as usize);
        seqlock::write(item.header, value.len() as u32 + 1, || {
            item.key.store(key, Relaxed);
            item.zxid.store(zxid, Relaxed);
            copy_in(value, item.value);
        });
    }

    /// Marks the item free, so readers holding a stale index entry miss instead of reading it.
    pub(crate) fn kill(&self, idx: u32) {
        seqlock::write(self.item(idx).header, FREE, || ());
    }

    /// Hands out a free item, or `None` when all `capacity` items are live.
    pub(crate) fn allocate(&self) -> Option<u32> {
        let mut a = lock(&self.alloc);
        if a.free_head != NIL {
            let idx = a.free_head;
            a.free_head = self.item(idx).key.load(Relaxed) as u32;
            Some(idx)
        } else if a.unused < a.capacity {
            a.unused += 1;
            Some(a.unused - 1)
        } else {
            None
        }
    }

    /// Returns a killed (or never written) item to the free list.
    pub(crate) fn free(&self, idx: u32) {
        let mut a = lock(&self.alloc);
        // The key word of a free item is the list link. A reader that loads it was already
        // overtaken by the kill, so its seqlock validation fails (see `seqlock`).
        self.item(idx).key.store(u64::from(a.free_head), Relaxed);
        a.free_head = idx;
    }

    /// Items below this index have been handed out at least once; the rest are free.
    pub(crate) fn high_water(&self) -> u32 {
        lock(&self.alloc).unused
    }
}

/// The allocator state is a pair of integers updated in one step each, so a panic elsewhere
/// cannot leave it half-changed: ignore poisoning.
fn lock(m: &Mutex<Alloc>) -> crate::sync::MutexGuard<'_, Alloc> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whole words go as fixed 8-byte copies (one move each); only a short tail needs a variable-length
/// copy, so the common multiple-of-8 value never calls `memcpy`.
#[inline(always)]
fn copy_out(words: &[AtomicU64], dst: &mut [u8]) {
    let mut chunks = dst.chunks_exact_mut(8);
    let mut words = words.iter();
    for (chunk, w) in (&mut chunks).zip(&mut words) {
        chunk.copy_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    if let (false, Some(w)) = (tail.is_empty(), words.next()) {
        let n = tail.len();
        tail.copy_from_slice(&w.load(Relaxed).to_le_bytes()[..n]);
    }
}

#[inline(always)]
fn copy_in(src: &[u8], words: &[AtomicU64]) {
    let chunks = src.chunks_exact(8);
    let tail = chunks.remainder();
    let mut words = words.iter();
    for (chunk, w) in chunks.zip(&mut words) {
        let b: [u8; 8] = chunk.try_into().unwrap_or_default();
        w.store(u64::from_le_bytes(b), Relaxed);
    }
    if let (false, Some(w)) = (tail.is_empty(), words.next()) {
        let mut b = [0u8; 8];
        b[..tail.len()].copy_from_slice(tail);
        w.store(u64::from_le_bytes(b), Relaxed);
    }
}
