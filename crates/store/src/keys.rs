//! Variable-length keys (byte strings up to [`MAX_KEY_LEN`] bytes) over the
//! `u64`-keyed table, with no two distinct keys ever sharing an item.
//!
//! A key lives in the item whose `u64` is one of its probe slots
//! ([`slot_key`]): the first probe slot not taken by another key. The item's
//! value holds `[flags, key length, key, value]` and every lookup compares
//! the whole key, so keys whose hashes collide get different items. Probe
//! slots all have the top bit set, so they never meet the `u64` keys of the
//! built-in workload (which are below 2^63).
//!
//! Keyed writes must be applied by one writer at a time, in the same order
//! on every replica (the apply gate does this): where a key lands depends on
//! the keys applied before it. A slot another key probed past is marked
//! `CHAINED`; deleting its key then leaves a tombstone, so later lookups
//! still walk on to the keys beyond it. Readers never lock: each probe reads
//! one item consistently (its seqlock); a new key placed further on becomes
//! visible when the chain before it is marked, so a reader sees a key's old
//! or new state, never a mix.

use crate::{ItemMeta, Store, StoreError};
use std::cell::Cell;

thread_local! {
    /// An item-sized buffer per thread: a keyed read or write needs one for
    /// the whole item, and allocating or zeroing it each time costs more
    /// than the lookup.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, `size` bytes long (its bytes
/// are whatever the last use left). A nested call gets a buffer of its own.
fn with_scratch<R>(size: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let r = f(&mut buf[..size]);
    SCRATCH.with(|s| s.set(buf));
    r
}

/// Longest key in bytes (its length is stored in one byte).
pub const MAX_KEY_LEN: usize = 255;
/// Bytes an item's value spends on a key beyond the key itself.
pub const KEY_OVERHEAD: usize = 2;
/// Most keys one [`Store::prefetch_keyed`] hints at: about as many misses
/// as a core keeps in flight.
pub const PREFETCH_MAX: usize = 16;
/// Probe slots tried per key. Slots are 63-bit hashes: a key that needs a
/// second one is already rare beyond belief; this bounds hostile input.
pub const MAX_PROBES: u32 = 8;

const KEYED: u64 = 1 << 63;
const DELETED: u8 = 1;
const CHAINED: u8 = 2;

/// The `u64` of `key`'s probe slot number `probe`.
pub fn slot_key(key: &[u8], probe: u32) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(key, u64::from(probe));
    #[cfg(all(test, not(loom)))]
    let h = h & tests::HASH_MASK.with(Cell::get);
    h | KEYED
}

/// Whether `slot` is a keyed slot (not a built-in workload key).
pub fn is_keyed(slot: u64) -> bool {
    slot & KEYED != 0
}

/// The item value bytes for `key` and `value`: what a store of
/// `value_size` needs room for is `KEY_OVERHEAD + key.len() + value.len()`.
pub fn item_len(key: &[u8], value: &[u8]) -> usize {
    KEY_OVERHEAD + key.len() + value.len()
}

/// What a keyed write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// A put stored its value.
    Stored,
    /// A delete found the key (true) or not (false).
    Deleted(bool),
    /// A put of a new key found no room: nothing changed.
    Full,
    /// The key is empty or too long, or the value does not fit: nothing changed.
    Invalid,
}

/// One item as a keyed view.
struct View<'a> {
    flags: u8,
    key: &'a [u8],
    value: &'a [u8],
}

fn view(item: &[u8]) -> Option<View<'_>> {
    let (&flags, rest) = item.split_first()?;
    let (&klen, rest) = rest.split_first()?;
    let key = rest.get(..klen as usize)?;
    Some(View {
        flags,
        key,
        value: &rest[klen as usize..],
    })
}

/// Where a lookup ended.
enum Found {
    /// At this probe, with this view's flags and the item's meta.
    Key { probe: u32, flags: u8, meta: ItemMeta },
    /// Absent: the walk stopped at probe `stop` (an empty slot if `empty`,
    /// else another key's slot nobody probed past), having passed the first
    /// tombstone of another key at `tombstone` (a put may reuse it).
    Absent {
        stop: u32,
        empty: bool,
        tombstone: Option<u32>,
    },
}

impl Store {
    /// Copies `key`'s value into `out` (cleared first) and returns the meta of
    /// its item (`len` is the value's length); `None` if absent.
    pub fn get_keyed(&self, key: &[u8], out: &mut Vec<u8>) -> Option<ItemMeta> {
        out.clear();
        with_scratch(self.value_size, |buf| {
            let Found::Key { meta, .. } = self.find_keyed(key, buf) else {
                return None;
            };
            let v = view(&buf[..meta.len]).filter(|v| v.flags & DELETED == 0)?;
            out.extend_from_slice(v.value);
            Some(ItemMeta {
                zxid: meta.zxid,
                len: v.value.len(),
            })
        })
    }

    /// A hint that `keys` will be looked up soon. A lookup misses the cache
    /// on the key's home bucket, then on its item, one after the other;
    /// this pulls in every bucket first, then every first candidate item, so
    /// the misses of a batch overlap. Only a hint (the lookup checks
    /// everything); keys past the first [`PREFETCH_MAX`] get none.
    pub fn prefetch_keyed(&self, keys: &[&[u8]]) {
        let mut hashes = [0u64; PREFETCH_MAX];
        for (h, k) in hashes.iter_mut().zip(keys) {
            *h = crate::hash::hash(slot_key(k, 0));
            self.index.prefetch_home(*h);
        }
        for &h in &hashes[..keys.len().min(PREFETCH_MAX)] {
            let c = self.index.first_candidate(h);
            if c != crate::index::NO_ITEM {
                self.arena.prefetch(c);
            }
        }
    }

    /// Walks `key`'s probe slots; `buf` ends holding the found item.
    fn find_keyed(&self, key: &[u8], buf: &mut [u8]) -> Found {
        let mut tombstone = None;
        for probe in 0..MAX_PROBES {
            let Some(meta) = self.get(slot_key(key, probe), buf) else {
                return Found::Absent {
                    stop: probe,
                    empty: true,
                    tombstone,
                };
            };
            let Some(v) = view(&buf[..meta.len]) else {
                // Not a keyed item (cannot happen through this API): walk on.
                continue;
            };
            if v.key == key {
                return Found::Key {
                    probe,
                    flags: v.flags,
                    meta,
                };
            }
            if v.flags & DELETED != 0 && tombstone.is_none() {
                tombstone = Some(probe);
            }
            if v.flags & CHAINED == 0 {
                // Nobody ever probed past this slot: the key is nowhere further.
                return Found::Absent {
                    stop: probe,
                    empty: false,
                    tombstone,
                };
            }
        }
        Found::Absent {
            stop: MAX_PROBES,
            empty: false,
            tombstone,
        }
    }

    /// The first of `key`'s probe slots from `from` on that holds no item.
    fn free_probe(&self, key: &[u8], from: u32, buf: &mut [u8]) -> Option<u32> {
        (from..MAX_PROBES).find(|&p| self.get(slot_key(key, p), buf).is_none())
    }

    /// Inserts or updates `key` (the caller serializes keyed writes).
    pub fn put_keyed(&self, key: &[u8], value: &[u8], zxid: u64) -> Result<KeyedOutcome, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || item_len(key, value) > self.value_size {
            return Ok(KeyedOutcome::Invalid);
        }
        with_scratch(self.value_size, |buf| self.put_keyed_in(buf, key, value, zxid))
    }

    fn put_keyed_in(
        &self,
        buf: &mut [u8],
        key: &[u8],
        value: &[u8],
        zxid: u64,
    ) -> Result<KeyedOutcome, StoreError> {
        let (probe, flags) = match self.find_keyed(key, buf) {
            Found::Key { probe, flags, .. } => (probe, flags & CHAINED),
            Found::Absent {
                tombstone: Some(t), ..
            } => (t, CHAINED),
            Found::Absent {
                stop,
                empty,
                tombstone: None,
            } => {
                // The walk just found `stop` empty: no need to read it again.
                let free = if empty {
                    Some(stop)
                } else {
                    self.free_probe(key, stop, buf)
                };
                let Some(free) = free else {
                    // Every probe slot holds another live key: refused, unchanged.
                    return Ok(KeyedOutcome::Full);
                };
                // Claim the item first: if the store is full, nothing changes.
                let item = encode(buf, 0, key, value);
                match self.put(slot_key(key, free), item, zxid) {
                    Err(StoreError::Full { .. }) => return Ok(KeyedOutcome::Full),
                    other => other?,
                }
                self.mark_chained(key, free, buf)?;
                return Ok(KeyedOutcome::Stored);
            }
        };
        let item = encode(buf, flags, key, value);
        self.put(slot_key(key, probe), item, zxid)?;
        Ok(KeyedOutcome::Stored)
    }

    /// Every probe slot before `upto` was passed over by `key`: mark it so
    /// lookups walk on past it even once its own key is deleted.
    fn mark_chained(&self, key: &[u8], upto: u32, buf: &mut [u8]) -> Result<(), StoreError> {
        for probe in 0..upto {
            let slot = slot_key(key, probe);
            let Some(meta) = self.get(slot, buf) else {
                continue;
            };
            if meta.len >= KEY_OVERHEAD && buf[0] & CHAINED == 0 {
                buf[0] |= CHAINED;
                self.put(slot, &buf[..meta.len], meta.zxid)?;
            }
        }
        Ok(())
    }

    /// Removes `key`: a tombstone if some key probed past its slot.
    pub fn delete_keyed(&self, key: &[u8], zxid: u64) -> Result<KeyedOutcome, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Ok(KeyedOutcome::Invalid);
        }
        with_scratch(self.value_size, |buf| self.delete_keyed_in(buf, key, zxid))
    }

    fn delete_keyed_in(&self, buf: &mut [u8], key: &[u8], zxid: u64) -> Result<KeyedOutcome, StoreError> {
        let Found::Key { probe, flags, .. } = self.find_keyed(key, buf) else {
            return Ok(KeyedOutcome::Deleted(false));
        };
        if flags & DELETED != 0 {
            return Ok(KeyedOutcome::Deleted(false));
        }
        let slot = slot_key(key, probe);
        if flags & CHAINED != 0 {
            let item = encode(buf, CHAINED | DELETED, key, &[]);
            self.put(slot, item, zxid)?;
        } else {
            self.delete(slot, zxid)?;
        }
        Ok(KeyedOutcome::Deleted(true))
    }
}

/// Lays out an item's value in `buf`; returns the used prefix.
fn encode<'b>(buf: &'b mut [u8], flags: u8, key: &[u8], value: &[u8]) -> &'b [u8] {
    let n = item_len(key, value);
    buf[0] = flags;
    buf[1] = key.len() as u8;
    buf[2..2 + key.len()].copy_from_slice(key);
    buf[2 + key.len()..n].copy_from_slice(value);
    &buf[..n]
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use proptest::prelude::*;

    fn store(capacity: usize) -> Store {
        Store::new(StoreConfig {
            capacity,
            value_size: 64,
        })
        .expect("store")
    }

    fn get(s: &Store, k: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        s.get_keyed(k, &mut out).map(|_| out)
    }

    #[test]
    fn put_get_delete_round_trip() {
        let s = store(16);
        assert_eq!(s.put_keyed(b"alpha", b"1", 5), Ok(KeyedOutcome::Stored));
        assert_eq!(get(&s, b"alpha").as_deref(), Some(&b"1"[..]));
        let mut out = Vec::new();
        assert_eq!(s.get_keyed(b"alpha", &mut out).map(|m| m.zxid), Some(5));
        assert_eq!(s.put_keyed(b"alpha", b"22", 6), Ok(KeyedOutcome::Stored));
        assert_eq!(get(&s, b"alpha").as_deref(), Some(&b"22"[..]));
        assert_eq!(s.len(), 1);
        assert_eq!(get(&s, b"alph"), None);
        assert_eq!(s.delete_keyed(b"alpha", 7), Ok(KeyedOutcome::Deleted(true)));
        assert_eq!(s.delete_keyed(b"alpha", 8), Ok(KeyedOutcome::Deleted(false)));
        assert_eq!(get(&s, b"alpha"), None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn prefetch_hints_any_number_of_keys_and_change_nothing() {
        let s = store(64);
        let keys: Vec<Vec<u8>> = (0..PREFETCH_MAX as u8 * 2).map(|i| vec![b'k', i]).collect();
        for k in keys.iter().step_by(2) {
            assert_eq!(s.put_keyed(k, k, 1), Ok(KeyedOutcome::Stored));
        }
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        s.prefetch_keyed(&refs);
        s.prefetch_keyed(&[]);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(get(&s, k), (i % 2 == 0).then(|| k.clone()), "key {i}");
        }
        assert_eq!(s.len(), PREFETCH_MAX);
    }

    #[test]
    fn empty_long_or_oversize_is_invalid_and_changes_nothing() {
        let s = store(16);
        assert_eq!(s.put_keyed(b"", b"v", 1), Ok(KeyedOutcome::Invalid));
        assert_eq!(s.put_keyed(&[7; 256], b"v", 1), Ok(KeyedOutcome::Invalid));
        assert_eq!(s.put_keyed(b"k", &[0; 62], 1), Ok(KeyedOutcome::Invalid));
        assert_eq!(s.put_keyed(b"k", &[0; 61], 1), Ok(KeyedOutcome::Stored));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_full_store_refuses_new_keys_only() {
        let s = store(2);
        assert_eq!(s.put_keyed(b"a", b"1", 1), Ok(KeyedOutcome::Stored));
        assert_eq!(s.put_keyed(b"b", b"1", 2), Ok(KeyedOutcome::Stored));
        assert_eq!(s.put_keyed(b"c", b"1", 3), Ok(KeyedOutcome::Full));
        assert_eq!(s.put_keyed(b"a", b"2", 4), Ok(KeyedOutcome::Stored));
        assert_eq!(get(&s, b"c"), None);
    }

    /// Forces two keys into one probe slot (as a 63-bit hash collision
    /// would) by planting a foreign key's item in `b`'s first slot.
    #[test]
    fn colliding_keys_get_separate_items_and_survive_deletes() {
        let s = store(16);
        let mut buf = vec![0u8; 64];
        // "x" squats on "b"'s first probe slot.
        let squat = encode(&mut buf, 0, b"x", b"xv").to_vec();
        s.put(slot_key(b"b", 0), &squat, 1).expect("plant");
        assert_eq!(s.put_keyed(b"b", b"bv", 2), Ok(KeyedOutcome::Stored));
        assert_eq!(get(&s, b"b").as_deref(), Some(&b"bv"[..]));
        // The squatter's slot is now chained; deleting it leaves a tombstone.
        let mut raw = vec![0u8; 64];
        s.get(slot_key(b"b", 0), &mut raw).expect("squatter");
        assert_eq!(raw[0] & CHAINED, CHAINED);
        assert_eq!(s.delete_keyed(b"b", 3), Ok(KeyedOutcome::Deleted(true)));
        assert_eq!(get(&s, b"b"), None);
        assert_eq!(s.put_keyed(b"b", b"again", 4), Ok(KeyedOutcome::Stored));
        assert_eq!(get(&s, b"b").as_deref(), Some(&b"again"[..]));
    }

    #[derive(Clone, Debug)]
    enum KeyedOp {
        Put(usize, usize),
        Delete(usize),
        Get(usize),
    }

    fn keyed_op() -> impl Strategy<Value = KeyedOp> {
        prop_oneof![
            (0..KEYS.len(), 0..=40usize).prop_map(|(k, n)| KeyedOp::Put(k, n)),
            (0..KEYS.len()).prop_map(KeyedOp::Delete),
            (0..KEYS.len()).prop_map(KeyedOp::Get),
        ]
    }

    const KEYS: [&[u8]; 6] = [b"a", b"b", b"key-2", b"a-much-longer-key-3", b"k4", b"z"];

    thread_local! {
        /// Narrows this test thread's probe-slot hashes, so that keys
        /// collide as often as a test needs (63-bit hashes never do).
        pub(super) static HASH_MASK: Cell<u64> = const { Cell::new(u64::MAX) };
    }

    proptest! {
        /// Any mix of puts (values long and short, so the buffers reused
        /// between calls hold stale bytes), deletes and gets matches a map,
        /// with keys colliding on narrowed hashes and foreign items
        /// squatting on some keys' first probe slots (chains, tombstones).
        #[test]
        fn keyed_ops_match_a_map(
            ops in proptest::collection::vec(keyed_op(), 1..120),
            squat in any::<u8>(),
            bits in 2..6u32,
        ) {
            // 4 to 32 slots for 6 keys of 8 probes each: collisions,
            // chains and tombstones on most runs.
            HASH_MASK.with(|m| m.set((1 << bits) - 1));
            let s = store(64);
            let mut buf = vec![0u8; 64];
            for (i, k) in KEYS.iter().enumerate() {
                if squat & (1 << i) != 0 {
                    let item = encode(&mut buf, 0, b"squatter", b"sv").to_vec();
                    s.put(slot_key(k, 0), &item, 1).expect("plant");
                }
            }
            let mut model: std::collections::BTreeMap<usize, (Vec<u8>, u64)> = Default::default();
            for (z, op) in ops.into_iter().enumerate() {
                let zxid = 10 + z as u64;
                match op {
                    KeyedOp::Put(k, n) => {
                        let v: Vec<u8> = (0..n).map(|b| (b as u8) ^ (z as u8)).collect();
                        match s.put_keyed(KEYS[k], &v, zxid) {
                            Ok(KeyedOutcome::Stored) => {
                                model.insert(k, (v, zxid));
                            }
                            // Every probe slot of a new key holds another
                            // key (likely on narrowed hashes): refused,
                            // nothing changed. An update is never refused.
                            Ok(KeyedOutcome::Full) => prop_assert!(!model.contains_key(&k)),
                            other => prop_assert!(false, "put: {:?}", other),
                        }
                    }
                    KeyedOp::Delete(k) => {
                        let existed = model.remove(&k).is_some();
                        prop_assert_eq!(s.delete_keyed(KEYS[k], zxid), Ok(KeyedOutcome::Deleted(existed)));
                    }
                    KeyedOp::Get(k) => {
                        let mut out = vec![0xAA; 7];
                        let got = s.get_keyed(KEYS[k], &mut out).map(|m| (out.clone(), m.zxid));
                        prop_assert_eq!(got, model.get(&k).cloned());
                    }
                }
            }
            for (k, key) in KEYS.iter().enumerate() {
                prop_assert_eq!(get(&s, key), model.get(&k).map(|(v, _)| v.clone()));
            }
        }
    }

    #[test]
    fn keyed_slots_never_meet_workload_keys() {
        for k in [&b"a"[..], b"key-1", &[0xff; 64]] {
            for p in 0..MAX_PROBES {
                assert!(is_keyed(slot_key(k, p)));
            }
        }
        assert!(!is_keyed(1_000_000));
    }
}
