//! Concurrency stress: writers put, delete and re-insert while readers check that every value they
//! get is whole (a checksum embedded in the value), belongs to the key asked for, matches its
//! zxid, and never goes back in time. Bounded by operation count and by wall time.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rzab_store::{ItemMeta, Op, Store, StoreConfig, Write};
use xxhash_rust::xxh3::xxh3_64;

const VALUE_SIZE: usize = 64;
/// key, counter and checksum words.
const MIN_LEN: usize = 24;
const TIME_LIMIT: Duration = Duration::from_secs(4);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: plenty for picking keys.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `[key][counter][filler...][xxh3 of everything before]`, `len` bytes.
fn make_value(key: u64, counter: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&counter.to_le_bytes());
    v.extend((0..len - MIN_LEN).map(|i| (counter as usize + i * 7) as u8));
    let sum = xxh3_64(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn word(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().unwrap())
}

/// Checks a value read for `key`; returns its counter.
fn verify(key: u64, meta: ItemMeta, v: &[u8]) -> u64 {
    assert!(
        meta.len >= MIN_LEN && meta.len <= VALUE_SIZE,
        "key {key}: bad len {}",
        meta.len
    );
    let v = &v[..meta.len];
    let body = meta.len - 8;
    assert_eq!(
        word(v, body),
        xxh3_64(&v[..body]),
        "key {key}: torn value (checksum)"
    );
    assert_eq!(word(v, 0), key, "key {key}: value of another key");
    assert_eq!(word(v, 8), meta.zxid, "key {key}: zxid does not match the value");
    meta.zxid
}

struct Reader {
    store: &'static Store,
    seen: HashMap<u64, u64>,
    reads: u64,
}

impl Reader {
    /// With one writer, counters per key only grow: a read must not return an older value.
    fn observe(&mut self, key: u64, meta: Option<ItemMeta>, v: &[u8], monotonic: bool) {
        self.reads += 1;
        let Some(meta) = meta else { return };
        let c = verify(key, meta, v);
        let last = self.seen.entry(key).or_insert(0);
        assert!(
            !monotonic || c >= *last,
            "key {key}: went back from {last} to {c}"
        );
        *last = c;
    }

    fn run(mut self, keys: u64, seed: u64, monotonic: bool, stop: &AtomicBool) -> u64 {
        let mut rng = Rng(seed);
        let mut out = [0u8; VALUE_SIZE];
        let mut batch_keys = [0u64; 32];
        let mut values = vec![0u8; 32 * VALUE_SIZE];
        let mut metas = [None; 32];
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                let k = rng.below(keys);
                let m = self.store.get(k, &mut out);
                self.observe(k, m, &out, monotonic);
            }
            batch_keys.iter_mut().for_each(|k| *k = rng.below(keys));
            self.store.get_batch(&batch_keys, &mut values, &mut metas);
            for (i, &k) in batch_keys.iter().enumerate() {
                let v = &values[i * VALUE_SIZE..(i + 1) * VALUE_SIZE];
                self.observe(k, metas[i], v, false);
            }
            if rng.below(500) == 0 {
                let mut last = None;
                self.store.for_each_sorted(|k, m, v| {
                    assert!(last < Some(k), "iteration out of order");
                    last = Some(k);
                    verify(k, m, v);
                });
            }
        }
        self.reads
    }
}

/// One writer's work: puts (varying length), deletes, re-inserts and batches, with counters from
/// `counter` (so zxids are unique). Returns the final value counter of each key it wrote last.
fn write(store: &Store, keys: u64, ops: u64, seed: u64, counter: &AtomicU64, deadline: Instant) {
    let mut rng = Rng(seed);
    for i in 0..ops {
        if i % 256 == 0 && Instant::now() > deadline {
            break;
        }
        let next = || counter.fetch_add(1, Ordering::Relaxed) + 1;
        let len = MIN_LEN + rng.below((VALUE_SIZE - MIN_LEN + 1) as u64) as usize;
        let k = rng.below(keys);
        match rng.below(10) {
            0 | 1 => {
                store.delete(k, next()).unwrap();
            }
            2 => {
                let vals: Vec<(u64, u64, Vec<u8>)> = (0..8)
                    .map(|_| {
                        let (k, c) = (rng.below(keys), next());
                        (k, c, make_value(k, c, len))
                    })
                    .collect();
                let writes: Vec<Write<'_>> = vals
                    .iter()
                    .map(|(k, c, v)| {
                        let op = if c % 5 == 0 { Op::Delete } else { Op::Put(v) };
                        Write {
                            key: *k,
                            zxid: *c,
                            op,
                        }
                    })
                    .collect();
                store.apply_batch(&writes).unwrap();
            }
            _ => {
                let c = next();
                store.put(k, &make_value(k, c, len), c).unwrap();
            }
        }
    }
}

/// After the threads stop: every item is whole, iteration and `len` agree, and deleting everything
/// then refilling to capacity works (no leaked items or index slots).
fn check_quiescent(store: &Store, keys: u64) {
    let mut n = 0;
    store.for_each_sorted(|k, m, v| {
        verify(k, m, v);
        n += 1;
    });
    assert_eq!(n, store.len());
    let mut out = [0u8; VALUE_SIZE];
    for k in 0..keys {
        if let Some(m) = store.get(k, &mut out) {
            verify(k, m, &out);
        }
        store.delete(k, 0).unwrap();
    }
    assert!(store.is_empty());
    for k in 0..store.capacity() as u64 {
        store.put(k + keys, &make_value(k + keys, 1, MIN_LEN), 1).unwrap();
    }
    assert_eq!(store.len(), store.capacity());
}

fn leak(cfg: StoreConfig) -> &'static Store {
    Box::leak(Box::new(Store::new(cfg).unwrap()))
}

fn run(writers: u64, readers: u64, keys: u64, ops: u64, monotonic: bool) {
    // Capacity == keys: the table is often full, so deleted items and slots are reused constantly.
    let store = leak(StoreConfig {
        capacity: keys as usize,
        value_size: VALUE_SIZE,
    });
    let stop = AtomicBool::new(false);
    let counter = AtomicU64::new(0);
    let deadline = Instant::now() + TIME_LIMIT;
    let reads: u64 = thread::scope(|s| {
        let rs: Vec<_> = (0..readers)
            .map(|r| {
                let reader = Reader {
                    store,
                    seen: HashMap::new(),
                    reads: 0,
                };
                let stop = &stop;
                s.spawn(move || reader.run(keys, 1000 + r, monotonic, stop))
            })
            .collect();
        let ws: Vec<_> = (0..writers)
            .map(|w| {
                let counter = &counter;
                s.spawn(move || write(store, keys, ops, 77 + w, counter, deadline))
            })
            .collect();
        ws.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        rs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert!(reads > 0);
    assert!(counter.load(Ordering::Relaxed) > 0);
    check_quiescent(store, keys);
}

#[test]
fn one_writer_two_readers() {
    run(1, 2, 1024, 3_000_000, true);
}

#[test]
fn two_writers_one_reader_on_shared_keys() {
    run(2, 1, 256, 1_000_000, false);
}
