//! rzab-store against dashmap and papaya: get and put over 1 M preloaded keys (8-byte keys,
//! 32-byte values), uniform and zipf(0.99) key streams, 1 and 2 threads, ours unbatched and
//! batched. Throughput is items (operations) per second **per thread**: divan times each thread's
//! samples on their own. Before the benchmarks, prints the memory per key of each table.
//!
//! The baselines hash with the same 64-bit mixer as our store (`Mix`), so the comparison is of the
//! tables, not of hash functions; `dashmap_siphash` shows dashmap with its default hasher.
//! papaya's guard is pinned once per 4096 operations, its best case.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use dashmap::DashMap;
use divan::Bencher;
use divan::counter::ItemsCount;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rzab_store::{ItemMeta, Op, Store, StoreConfig, Write};

const N: usize = 1_000_000;
const VALUE: usize = 32;
/// Operations per timed iteration.
const OPS: usize = 4096;
/// Length of each precomputed key stream.
const STREAM: usize = 1 << 21;
const DISTS: [&str; 2] = ["uniform", "zipf"];

/// Counts the net bytes allocated while `COUNTING` is on (off during the timed runs, so it adds no
/// shared-counter traffic to them).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Relaxed) {
        NET.fetch_add(delta, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(l) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        // SAFETY: `p` came from this allocator, i.e. from `System`, with layout `l`.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        // SAFETY: `p` came from `System` with layout `l`; the caller guarantees `new` is valid.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The store's mixer (murmur3 fmix64), as a `BuildHasher` for the baselines.
#[derive(Clone, Copy, Default)]
struct Mix;

struct MixHasher(u64);

impl BuildHasher for Mix {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(0)
    }
}

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(self.0 ^ u64::from(b)));
    }

    fn write_u64(&mut self, x: u64) {
        let mut h = x ^ 0x9e37_79b9_7f4a_7c15;
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = h ^ (h >> 33);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Value = [u8; VALUE];

struct Tables {
    ours: Store,
    dashmap: DashMap<u64, Value, Mix>,
    dashmap_siphash: DashMap<u64, Value>,
    papaya: papaya::HashMap<u64, Value, Mix>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

fn value(k: u64) -> Value {
    let mut v = [0u8; VALUE];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v
}

/// Builds a table while counting its net allocations; returns it and bytes per key.
fn measured<T>(build: impl FnOnce() -> T) -> (T, f64) {
    NET.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let t = build();
    COUNTING.store(false, Relaxed);
    (t, NET.load(Relaxed) as f64 / N as f64)
}

fn build_tables() -> Tables {
    let (ours, ours_alloc) = measured(|| {
        let s = Store::new(StoreConfig {
            capacity: N,
            value_size: VALUE,
        })
        .unwrap();
        (0..N as u64).for_each(|k| s.put(k, &value(k), k).unwrap());
        s
    });
    let (dashmap, dash_b) = measured(|| {
        let m = DashMap::with_hasher(Mix);
        (0..N as u64).for_each(|k| {
            m.insert(k, value(k));
        });
        m
    });
    let (dashmap_siphash, sip_b) = measured(|| {
        let m = DashMap::new();
        (0..N as u64).for_each(|k| {
            m.insert(k, value(k));
        });
        m
    });
    let (papaya, pap_b) = measured(|| {
        let m = papaya::HashMap::with_hasher(Mix);
        let g = m.pin();
        (0..N as u64).for_each(|k| {
            g.insert(k, value(k));
        });
        drop(g);
        m
    });
    let raw = (8 + VALUE) as f64;
    let ours_b = ours.memory_bytes() as f64 / N as f64;
    println!("memory per key, {N} keys, 8-byte keys + {VALUE}-byte values = {raw} raw bytes per key");
    println!(
        "  rzab-store      {ours_b:6.1} B/key ({:.2}x raw; allocator saw {ours_alloc:.1})",
        ours_b / raw
    );
    for (name, b) in [("dashmap", dash_b), ("dashmap_siphash", sip_b), ("papaya", pap_b)] {
        println!(
            "  {name:<15} {b:6.1} B/key ({:.2}x raw; requested bytes, before malloc overhead)",
            b / raw
        );
    }
    Tables {
        ours,
        dashmap,
        dashmap_siphash,
        papaya,
    }
}

fn tables() -> &'static Tables {
    TABLES.get_or_init(build_tables)
}

/// Uniform keys, or zipf(0.99) ranks scattered over the key space so hot keys do not share
/// buckets or shards (rank r -> r * 999,983 mod N, a permutation since 999,983 is prime).
fn stream(dist: &str) -> &'static [u64] {
    static UNIFORM: OnceLock<Vec<u64>> = OnceLock::new();
    static ZIPF: OnceLock<Vec<u64>> = OnceLock::new();
    let (cell, seed) = if dist == "zipf" { (&ZIPF, 2) } else { (&UNIFORM, 1) };
    cell.get_or_init(|| {
        let mut rng = SmallRng::seed_from_u64(seed);
        let zipf = Zipf::new(N as f64, 0.99).unwrap();
        (0..STREAM)
            .map(|_| match dist {
                "zipf" => (zipf.sample(&mut rng) as u64 - 1) * 999_983 % N as u64,
                _ => rng.random_range(0..N as u64),
            })
            .collect()
    })
}

/// The next `OPS` keys of this thread's walk through the stream (threads start far apart).
fn next_keys(dist: &str) -> &'static [u64] {
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static CURSOR: Cell<usize> = Cell::new(THREADS.fetch_add(1, Relaxed) * 97 * OPS % STREAM));
    let s = stream(dist);
    CURSOR.with(|c| {
        let start = if c.get() + OPS > s.len() { 0 } else { c.get() };
        c.set(start + OPS);
        &s[start..start + OPS]
    })
}

fn main() {
    tables();
    DISTS.iter().for_each(|d| {
        stream(d);
    });
    divan::main();
}

#[divan::bench_group(threads = [1, 2], counters = [ItemsCount::new(OPS)], sample_count = 60, sample_size = 8)]
mod get {
    use super::*;

    #[divan::bench(args = DISTS)]
    fn ours(b: Bencher, dist: &str) {
        let t = tables();
        b.bench(|| {
            let mut out = [0u8; VALUE];
            let mut sum = 0;
            for &k in next_keys(dist) {
                sum += t.ours.get(k, &mut out).map_or(0, |m| m.zxid) + u64::from(out[0]);
            }
            sum
        });
    }

    #[divan::bench(args = DISTS, consts = [16, 32, 64])]
    fn ours_batched<const B: usize>(b: Bencher, dist: &str) {
        let t = tables();
        b.bench(|| {
            let mut values = [0u8; 64 * VALUE];
            let mut metas: [Option<ItemMeta>; 64] = [None; 64];
            let mut sum = 0;
            for keys in next_keys(dist).chunks(B) {
                t.ours.get_batch(keys, &mut values, &mut metas);
                sum +=
                    metas[..keys.len()].iter().flatten().map(|m| m.zxid).sum::<u64>() + u64::from(values[0]);
            }
            sum
        });
    }

    fn dash<S: BuildHasher + Clone + Sync>(b: Bencher, m: &DashMap<u64, Value, S>, dist: &str) {
        b.bench(|| {
            let mut out = [0u8; VALUE];
            let mut sum = 0;
            for &k in next_keys(dist) {
                if let Some(v) = m.get(&k) {
                    out = *v;
                    sum += 1;
                }
                sum += u64::from(out[0]);
            }
            sum
        });
    }

    #[divan::bench(args = DISTS)]
    fn dashmap(b: Bencher, dist: &str) {
        dash(b, &tables().dashmap, dist);
    }

    #[divan::bench(args = DISTS)]
    fn dashmap_siphash(b: Bencher, dist: &str) {
        dash(b, &tables().dashmap_siphash, dist);
    }

    #[divan::bench(args = DISTS)]
    fn papaya(b: Bencher, dist: &str) {
        let m = &tables().papaya;
        b.bench(|| {
            let g = m.pin();
            let mut out = [0u8; VALUE];
            let mut sum = 0;
            for &k in next_keys(dist) {
                if let Some(v) = g.get(&k) {
                    out = *v;
                    sum += 1;
                }
                sum += u64::from(out[0]);
            }
            sum
        });
    }
}

#[divan::bench_group(threads = [1, 2], counters = [ItemsCount::new(OPS)], sample_count = 60, sample_size = 8)]
mod put {
    use super::*;

    #[divan::bench(args = DISTS)]
    fn ours(b: Bencher, dist: &str) {
        let t = tables();
        b.bench(|| {
            for &k in next_keys(dist) {
                t.ours.put(k, &value(k), k + 1).unwrap();
            }
        });
    }

    #[divan::bench(args = DISTS, consts = [16, 32, 64])]
    fn ours_batched<const B: usize>(b: Bencher, dist: &str) {
        let t = tables();
        b.bench(|| {
            let vals: [Value; 64] = std::array::from_fn(|i| value(i as u64));
            let mut writes: [Write<'_>; 64] = std::array::from_fn(|i| Write {
                key: 0,
                zxid: 0,
                op: Op::Put(&vals[i]),
            });
            for keys in next_keys(dist).chunks(B) {
                for (w, &k) in writes.iter_mut().zip(keys) {
                    w.key = k;
                    w.zxid = k + 1;
                }
                t.ours.apply_batch(&writes[..keys.len()]).unwrap();
            }
        });
    }

    #[divan::bench(args = DISTS)]
    fn dashmap(b: Bencher, dist: &str) {
        let m = &tables().dashmap;
        b.bench(|| {
            for &k in next_keys(dist) {
                m.insert(k, value(k));
            }
        });
    }

    #[divan::bench(args = DISTS)]
    fn papaya(b: Bencher, dist: &str) {
        let m = &tables().papaya;
        b.bench(|| {
            let g = m.pin();
            for &k in next_keys(dist) {
                g.insert(k, value(k));
            }
        });
    }
}
