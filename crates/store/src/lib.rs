//! rzab-store: a fixed-capacity, in-memory key-value table shared by one replica's lanes.
//!
//! Keys are `u64`; values are byte strings of up to `value_size` bytes, chosen at start-up. Every
//! item carries the zxid of the write that produced it. The store knows nothing of replication:
//! the caller decides what is written in which order.
//!
//! # Concurrency
//! Reads (`get`, `get_batch`, iteration) never lock, never write shared memory and never return a
//! torn value: each item has a seqlock (`seqlock` documents the fences). Writes may come from
//! several threads: all mutations of a key are serialized by a lock bit in its home bucket, and a
//! slot claim in a shared bucket is a CAS. A reader racing a delete and a reuse of the item it
//! found detects it (the item is free or holds another key) and never returns another key's value.
//!
//! # Layout
//! - Index (`index`): `2^k` buckets of 64 bytes, each 12 tagged slots holding a `u32` item
//!   number, plus a control word (writer lock, overflow count, farthest overflow). A full home
//!   bucket spills into the next 15 buckets; beyond that an insert fails with
//!   [`StoreError::Full`]. Nothing is ever evicted.
//! - Arena (`arena`): `capacity` items preallocated at start-up, each
//!   `[seqlock header (seq + len), key, zxid, value]` rounded up to whole 64-byte lines: a 32-byte
//!   value makes a 64-byte item, one cache line. Deleted items go on a free list.
//!
//! # Memory math (32-byte values)
//! The index has `next_pow2(capacity / 9.6)` buckets (load at most 80% of the slots when full):
//! for 1 M keys, 131,072 buckets = 8 MiB = 8.4 bytes per key. The arena is 64 bytes per key. All
//! in: about 72.4 bytes per key against 40 raw key + value bytes (1.81x). Both arrays are
//! allocated and touched at start-up, with a transparent-huge-page hint (`hugepage`).
//!
//! # Speed
//! A lookup costs one miss in the index and one in the arena, and the second depends on the
//! first. `get` pays both in turn; `get_batch` and `apply_batch` run the keys through a
//! three-stage prefetch pipeline (`batch`) so the misses of many keys overlap.

mod arena;
mod batch;
mod error;
mod hash;
mod hugepage;
mod index;
mod keys;
mod prefetch;
mod scan;
#[cfg(loom)]
pub mod seqlock;
#[cfg(not(loom))]
mod seqlock;
mod sync;

use arena::Arena;
pub use error::StoreError;
use index::Index;
pub use keys::{
    KEY_OVERHEAD, KeyedOutcome, MAX_KEY_LEN, MAX_PROBES, PREFETCH_MAX, is_keyed, item_len, slot_key,
};
use sync::{AtomicUsize, Ordering};

/// Largest configurable value size: an item header stores `len + 1` in 24 bits; 1 MiB keeps
/// single items well inside that.
pub const MAX_VALUE_SIZE: usize = 1 << 20;
/// Largest configurable capacity: item numbers are `u32`, with `u32::MAX` reserved.
pub const MAX_CAPACITY: usize = u32::MAX as usize - 1;

/// Table dimensions, fixed for the store's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most keys the store holds at once.
    pub capacity: usize,
    /// Longest value in bytes; every item reserves this much.
    pub value_size: usize,
}

/// What the store keeps beside a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemMeta {
    /// The zxid of the write that produced the value.
    pub zxid: u64,
    /// The value's length in bytes.
    pub len: usize,
}

/// A write's effect on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Insert or update the key with this value.
    Put(&'a [u8]),
    /// Remove the key if present.
    Delete,
}

/// One write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write<'a> {
    pub key: u64,
    pub zxid: u64,
    pub op: Op<'a>,
}

/// The table. `Send + Sync`; every method takes `&self`.
pub struct Store {
    index: Index,
    arena: Arena,
    len: AtomicUsize,
    capacity: usize,
    value_size: usize,
}

impl Store {
    /// Allocates the whole table up front.
    pub fn new(cfg: StoreConfig) -> Result<Store, StoreError> {
        let StoreConfig { capacity, value_size } = cfg;
        if capacity == 0 {
            return Err(StoreError::ZeroCapacity);
        }
        if value_size == 0 {
            return Err(StoreError::ZeroValueSize);
        }
        if value_size > MAX_VALUE_SIZE {
            return Err(StoreError::ValueSizeTooLarge {
                value_size,
                max: MAX_VALUE_SIZE,
            });
        }
        let items = u32::try_from(capacity)
            .ok()
            .filter(|_| capacity <= MAX_CAPACITY)
            .ok_or(StoreError::CapacityTooLarge {
                capacity,
                max: MAX_CAPACITY,
            })?;
        let index = Index::new(capacity)?;
        let arena = Arena::new(items, value_size)?;
        Ok(Store {
            index,
            arena,
            len: AtomicUsize::new(0),
            capacity,
            value_size,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Keys currently stored (exact when no write is in flight).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the value into `out[..len]` and returns its meta; `None` if the key is absent.
    ///
    /// # Panics
    /// If `out.len() < value_size()`.
    #[inline]
    pub fn get(&self, key: u64, out: &mut [u8]) -> Option<ItemMeta> {
        self.check_out(out.len(), 1);
        self.get_hashed(key, hash::hash(key), out)
    }

    #[inline(always)]
    fn get_hashed(&self, key: u64, h: u64, out: &mut [u8]) -> Option<ItemMeta> {
        self.index.probe(h, |_, idx| self.arena.read(idx, key, out))
    }

    /// Inserts or updates `key`. `Err(Full)` when a new key finds no room; never evicts a key.
    pub fn put(&self, key: u64, value: &[u8], zxid: u64) -> Result<(), StoreError> {
        self.check_value(value)?;
        self.put_hashed(key, hash::hash(key), value, zxid)
    }

    fn put_hashed(&self, key: u64, h: u64, value: &[u8], zxid: u64) -> Result<(), StoreError> {
        let mut locked = self.index.lock(h);
        if let Some((_, idx)) = self.find_locked(key, h) {
            self.arena.write(idx, key, zxid, value);
            return Ok(());
        }
        let full = || StoreError::Full {
            capacity: self.capacity,
        };
        let idx = self.arena.allocate().ok_or_else(full)?;
        let Some(slot) = locked.claim(idx) else {
            self.arena.free(idx);
            return Err(full());
        };
        // Claimed but unpublished slots are invisible to lookups: write the item, then publish.
        self.arena.write(idx, key, zxid, value);
        locked.publish(slot, h);
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `key`. `Ok(true)` if it existed. The zxid is accepted for symmetry with `put`;
    /// no tombstone is kept.
    pub fn delete(&self, key: u64, zxid: u64) -> Result<bool, StoreError> {
        let _ = zxid;
        Ok(self.delete_hashed(key, hash::hash(key)))
    }

    fn delete_hashed(&self, key: u64, h: u64) -> bool {
        let mut locked = self.index.lock(h);
        let Some((slot, idx)) = self.find_locked(key, h) else {
            return false;
        };
        // Kill first: a reader still holding this slot then misses instead of reading the item.
        self.arena.kill(idx);
        locked.remove(slot);
        self.arena.free(idx);
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// The slot and item of `key`; the caller holds its home bucket's lock, so it is stable.
    fn find_locked(&self, key: u64, h: u64) -> Option<(index::Slot, u32)> {
        self.index.probe(h, |slot, idx| {
            (self.arena.key_of(idx) == Some(key)).then_some((slot, idx))
        })
    }

    fn check_value(&self, value: &[u8]) -> Result<(), StoreError> {
        if value.len() > self.value_size {
            return Err(StoreError::ValueTooLong {
                len: value.len(),
                max: self.value_size,
            });
        }
        Ok(())
    }

    fn check_out(&self, out_len: usize, keys: usize) {
        assert!(
            out_len >= keys.saturating_mul(self.value_size),
            "output buffer of {out_len} bytes is shorter than {keys} x value_size ({})",
            self.value_size
        );
    }

    /// The index bucket `key` hashes to; lets tests build keys that collide. Not a stable API.
    #[doc(hidden)]
    pub fn home_bucket(&self, key: u64) -> usize {
        self.index.home(hash::hash(key))
    }

    /// Bytes allocated by the table: index, arena and this struct (the free list is intrusive).
    pub fn memory_bytes(&self) -> usize {
        self.index.bytes() + self.arena.bytes() + size_of::<Store>()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_and_sync() {
        assert_send_sync::<Store>();
    }

    #[test]
    fn memory_for_a_million_32_byte_values_is_under_80_bytes_per_key() {
        let s = Store::new(StoreConfig {
            capacity: 1_000_000,
            value_size: 32,
        })
        .unwrap();
        let per_key = s.memory_bytes() as f64 / 1e6;
        assert!(per_key <= 80.0, "{per_key} bytes per key");
    }
}
