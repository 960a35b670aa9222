//! The store against a `HashMap` model: random operation sequences (proptest) on small tables, so
//! `Full` is exercised, plus deterministic tests of filling a table and of the probe bound.
#![cfg(not(loom))]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use rzab_store::{ItemMeta, Op, Store, StoreConfig, StoreError, Write};
use xxhash_rust::xxh3::Xxh3Default;

#[derive(Debug, Clone)]
enum Step {
    Put(u64, Vec<u8>),
    Delete(u64),
    Get(u64),
    GetBatch(Vec<u64>),
    Apply(Vec<(u64, Option<Vec<u8>>)>),
    Check,
}

/// Keys mostly from a small range (so updates, deletes and `Full` all happen), plus the extremes.
fn key() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..48, 1 => Just(0), 1 => Just(u64::MAX), 1 => any::<u64>()]
}

/// Values up to two bytes longer than the store allows, to hit `ValueTooLong`.
fn value(value_size: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=value_size + 2)
}

fn step(vs: usize) -> impl Strategy<Value = Step> {
    let write = (key(), proptest::option::weighted(0.8, value(vs)));
    prop_oneof![
        6 => (key(), value(vs)).prop_map(|(k, v)| Step::Put(k, v)),
        2 => key().prop_map(Step::Delete),
        3 => key().prop_map(Step::Get),
        1 => proptest::collection::vec(key(), 0..40).prop_map(Step::GetBatch),
        2 => proptest::collection::vec(write, 0..40).prop_map(Step::Apply),
        1 => Just(Step::Check),
    ]
}

/// Capacities up to 150 keep the index at most 16 buckets, the probe window: `Full` then happens
/// exactly when the model holds `capacity` keys.
fn case() -> impl Strategy<Value = (usize, usize, Vec<Step>)> {
    (1usize..=40, 1usize..=40)
        .prop_flat_map(|(cap, vs)| (Just(cap), Just(vs), proptest::collection::vec(step(vs), 1..150)))
}

struct Model {
    capacity: usize,
    value_size: usize,
    map: HashMap<u64, (u64, Vec<u8>)>,
}

impl Model {
    fn put(&mut self, key: u64, value: &[u8], zxid: u64) -> Result<(), StoreError> {
        if value.len() > self.value_size {
            return Err(StoreError::ValueTooLong {
                len: value.len(),
                max: self.value_size,
            });
        }
        if !self.map.contains_key(&key) && self.map.len() == self.capacity {
            return Err(StoreError::Full {
                capacity: self.capacity,
            });
        }
        self.map.insert(key, (zxid, value.to_vec()));
        Ok(())
    }

    fn get(&self, key: u64) -> Option<(ItemMeta, &[u8])> {
        self.map.get(&key).map(|(z, v)| {
            (
                ItemMeta {
                    zxid: *z,
                    len: v.len(),
                },
                v.as_slice(),
            )
        })
    }

    fn sorted(&self) -> BTreeMap<u64, (u64, Vec<u8>)> {
        self.map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// The digest as specified: xxh3-64 over (key, zxid, len as u64, value), little-endian, by key.
    fn digest(&self) -> u64 {
        let mut h = Xxh3Default::new();
        for (k, (z, v)) in self.sorted() {
            h.update(&k.to_le_bytes());
            h.update(&z.to_le_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(&v);
        }
        h.digest()
    }
}

fn contents(store: &Store) -> BTreeMap<u64, (u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut last = None;
    store.for_each_sorted(|k, meta, v| {
        assert!(last < Some(k), "keys out of order: {last:?} then {k}");
        assert_eq!(meta.len, v.len());
        last = Some(k);
        out.insert(k, (meta.zxid, v.to_vec()));
    });
    out
}

fn check_all(store: &Store, model: &Model) {
    assert_eq!(store.len(), model.map.len());
    assert_eq!(store.is_empty(), model.map.is_empty());
    assert_eq!(contents(store), model.sorted());
    assert_eq!(store.digest(), model.digest());
}

fn check_get(store: &Store, model: &Model, key: u64) {
    let mut out = vec![0xAA; store.value_size()];
    let got = store.get(key, &mut out);
    let want = model.get(key);
    assert_eq!(got, want.map(|(m, _)| m), "get({key})");
    if let (Some(m), Some((_, v))) = (got, want) {
        assert_eq!(&out[..m.len], v);
    }
}

fn check_get_batch(store: &Store, model: &Model, keys: &[u64]) {
    let vs = store.value_size();
    let mut values = vec![0xAA; keys.len() * vs];
    let mut metas = vec![None; keys.len()];
    store.get_batch(keys, &mut values, &mut metas);
    for (i, &k) in keys.iter().enumerate() {
        let want = model.get(k);
        assert_eq!(metas[i], want.map(|(m, _)| m), "get_batch key {i} = {k}");
        if let Some((m, v)) = want {
            assert_eq!(&values[i * vs..i * vs + m.len], v);
        }
    }
}

/// Applies a batch to the model the way the store must: in order, stopping at the first error.
fn model_apply(model: &mut Model, writes: &[Write<'_>]) -> Result<(), (usize, StoreError)> {
    for (i, w) in writes.iter().enumerate() {
        match w.op {
            Op::Put(v) => model.put(w.key, v, w.zxid).map_err(|e| (i, e))?,
            Op::Delete => {
                model.map.remove(&w.key);
            }
        }
    }
    Ok(())
}

fn run(capacity: usize, value_size: usize, steps: &[Step]) {
    let store = Store::new(StoreConfig { capacity, value_size }).unwrap();
    let mut model = Model {
        capacity,
        value_size,
        map: HashMap::new(),
    };
    let mut zxid = 0u64;
    for step in steps {
        zxid += 1;
        match step {
            Step::Put(k, v) => {
                let want = model.put(*k, v, zxid);
                let before = want.is_err().then(|| store.digest());
                assert_eq!(store.put(*k, v, zxid), want, "put({k}, {} bytes)", v.len());
                if let Some(before) = before {
                    assert_eq!(store.digest(), before, "a failed put changed the store");
                }
            }
            Step::Delete(k) => {
                let want = model.map.remove(k).is_some();
                assert_eq!(store.delete(*k, zxid), Ok(want), "delete({k})");
            }
            Step::Get(k) => check_get(&store, &model, *k),
            Step::GetBatch(keys) => check_get_batch(&store, &model, keys),
            Step::Apply(ws) => {
                let writes: Vec<Write<'_>> = ws
                    .iter()
                    .enumerate()
                    .map(|(i, (key, v))| {
                        let op = v.as_deref().map_or(Op::Delete, Op::Put);
                        Write {
                            key: *key,
                            zxid: zxid * 100 + i as u64,
                            op,
                        }
                    })
                    .collect();
                let want = model_apply(&mut model, &writes);
                assert_eq!(store.apply_batch(&writes), want);
            }
            Step::Check => check_all(&store, &model),
        }
        assert_eq!(store.len(), model.map.len());
    }
    check_all(&store, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_hashmap_model((capacity, value_size, steps) in case()) {
        run(capacity, value_size, &steps);
    }
}

/// Keys `0..capacity` (dense, as in the benchmarks) or scattered: every one fits, the next is Full.
fn fill(capacity: usize, keys: impl Iterator<Item = u64>) {
    let store = Store::new(StoreConfig {
        capacity,
        value_size: 8,
    })
    .unwrap();
    for (n, k) in keys.take(capacity).enumerate() {
        assert_eq!(
            store.put(k, &k.to_le_bytes(), k),
            Ok(()),
            "key #{n} of {capacity}"
        );
    }
    assert_eq!(store.len(), capacity);
    assert_eq!(
        store.put(u64::MAX - 7, b"x", 1),
        Err(StoreError::Full { capacity })
    );
    let mut out = [0u8; 8];
    assert_eq!(store.get(u64::MAX - 7, &mut out), None);
}

#[test]
fn fills_to_capacity_without_early_full() {
    for cap in [1, 2, 12, 13, 100, 1000, 10_000, 100_000] {
        fill(cap, 0..);
        let mut x = cap as u64;
        fill(
            cap,
            std::iter::repeat_with(move || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                x
            }),
        );
    }
}

#[test]
fn fills_a_million_dense_keys() {
    fill(1_000_000, 0..);
}

/// Keys that all share one home bucket fill its 16-bucket window (192 slots) and then get `Full`
/// although the table is nearly empty; other keys still go in; a delete makes room again.
#[test]
fn probe_bound_gives_full_and_delete_makes_room() {
    let capacity = 10_000;
    let store = Store::new(StoreConfig {
        capacity,
        value_size: 8,
    })
    .unwrap();
    let home = store.home_bucket(0);
    let same: Vec<u64> = (0..)
        .filter(|&k| store.home_bucket(k) == home)
        .take(193)
        .collect();
    for &k in &same[..192] {
        store.put(k, &k.to_le_bytes(), 1).unwrap();
    }
    let before = store.digest();
    assert_eq!(
        store.put(same[192], b"late", 2),
        Err(StoreError::Full { capacity })
    );
    assert_eq!(store.digest(), before, "Full changed the store");
    let mut out = [0u8; 8];
    for &k in &same[..192] {
        assert_eq!(
            store.get(k, &mut out).map(|m| m.zxid),
            Some(1),
            "overflowed key {k}"
        );
        assert_eq!(out, k.to_le_bytes());
    }
    let other = (0..).find(|&k| store.home_bucket(k) == home + 200).unwrap();
    store.put(other, b"other", 3).unwrap();
    assert!(store.delete(same[0], 4).unwrap());
    store.put(same[192], b"late", 5).unwrap();
    assert_eq!(store.get(same[192], &mut out), Some(ItemMeta { zxid: 5, len: 4 }));
    for &k in &same[1..] {
        assert!(store.delete(k, 6).unwrap());
    }
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(other, &mut out).map(|m| m.len), Some(5));
}

#[test]
fn extreme_keys_and_reuse() {
    let store = Store::new(StoreConfig {
        capacity: 3,
        value_size: 16,
    })
    .unwrap();
    let mut out = [0u8; 16];
    for k in [0, u64::MAX, 1] {
        store.put(k, &k.to_be_bytes(), k).unwrap();
    }
    assert_eq!(store.put(2, b"", 2), Err(StoreError::Full { capacity: 3 }));
    assert_eq!(store.delete(u64::MAX, 9), Ok(true));
    assert_eq!(store.delete(u64::MAX, 9), Ok(false));
    assert_eq!(store.get(u64::MAX, &mut out), None);
    store.put(2, b"", 2).unwrap();
    assert_eq!(store.get(2, &mut out), Some(ItemMeta { zxid: 2, len: 0 }));
    assert_eq!(store.get(0, &mut out), Some(ItemMeta { zxid: 0, len: 8 }));
    assert_eq!(out[..8], 0u64.to_be_bytes());
}

#[test]
fn digest_is_independent_of_insertion_order() {
    let cfg = StoreConfig {
        capacity: 500,
        value_size: 24,
    };
    let (a, b) = (Store::new(cfg).unwrap(), Store::new(cfg).unwrap());
    for k in 0..300u64 {
        a.put(k * 7919, &k.to_le_bytes(), k).unwrap();
    }
    for k in (0..300u64).rev() {
        b.put(k * 7919, b"junk", 0).unwrap();
        b.put(k * 7919, &k.to_le_bytes(), k).unwrap();
    }
    b.put(1, b"gone", 1).unwrap();
    b.delete(1, 2).unwrap();
    assert_eq!(a.digest(), b.digest());
    b.put(0, &0u64.to_le_bytes(), 1).unwrap();
    assert_ne!(a.digest(), b.digest(), "zxid is part of the digest");
}

#[test]
fn large_values_round_trip() {
    for vs in [1, 7, 8, 9, 33, 40, 41, 1024, 4099] {
        let store = Store::new(StoreConfig {
            capacity: 50,
            value_size: vs,
        })
        .unwrap();
        let mut out = vec![0u8; vs];
        for k in 0..50u64 {
            let v: Vec<u8> = (0..vs as u64 - k % 3.min(vs as u64))
                .map(|i| (i * 31 + k) as u8)
                .collect();
            store.put(k, &v, k).unwrap();
            assert_eq!(store.get(k, &mut out).map(|m| m.len), Some(v.len()));
            assert_eq!(out[..v.len()], v[..]);
        }
    }
}
