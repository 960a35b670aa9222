//! Model checks (loom) of the real seqlock and store code under every interleaving and every
//! weak-memory outcome loom explores. Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p rzab-store --test loom --release`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering::Relaxed};
use loom::thread;
use rzab_store::{Store, StoreConfig, seqlock};

const WORDS: usize = 3;

/// An item: seqlock header plus value words. Value `n` is every word `n`, with `meta` `n` too.
struct Item {
    header: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl Item {
    fn new() -> Item {
        Item {
            header: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn write(&self, n: u64) {
        seqlock::write(&self.header, n as u32, || {
            self.words.iter().for_each(|w| w.store(n, Relaxed))
        });
    }

    /// One validated read; asserts the copy is a single whole value, the one `meta` names.
    fn check_read(&self) -> u64 {
        let (meta, copy) = seqlock::read(&self.header, |_| self.words.each_ref().map(|w| w.load(Relaxed)));
        assert!(copy.iter().all(|&w| w == copy[0]), "torn read: {copy:?}");
        assert_eq!(u64::from(meta), copy[0], "meta from another write than the data");
        copy[0]
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound.get_or_insert(3);
    b.check(f);
}

#[test]
fn reader_never_sees_a_mix_of_two_values() {
    model(|| {
        let item = Arc::new(Item::new());
        let writer = {
            let item = item.clone();
            thread::spawn(move || {
                item.write(1);
                item.write(2);
            })
        };
        item.check_read();
        writer.join().unwrap();
        assert_eq!(item.check_read(), 2);
    });
}

#[test]
fn reads_never_go_back_in_time() {
    model(|| {
        let item = Arc::new(Item::new());
        let writer = {
            let item = item.clone();
            thread::spawn(move || item.write(1))
        };
        let first = item.check_read();
        let second = item.check_read();
        assert!(second >= first, "read {first}, then the older {second}");
        writer.join().unwrap();
    });
}

/// A reader of key 1 races its delete and the reuse of its item (capacity 1) by key 2: it gets
/// key 1's value whole or nothing, never key 2's.
#[test]
fn get_racing_delete_and_reuse_never_returns_another_keys_value() {
    model(|| {
        let store = Arc::new(
            Store::new(StoreConfig {
                capacity: 1,
                value_size: 8,
            })
            .unwrap(),
        );
        store.put(1, &[1; 8], 1).unwrap();
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                assert!(store.delete(1, 2).unwrap());
                store.put(2, &[2; 8], 3).unwrap();
            })
        };
        let mut out = [0u8; 8];
        if let Some(meta) = store.get(1, &mut out) {
            assert_eq!((meta.zxid, meta.len, out), (1, 8, [1; 8]));
        }
        writer.join().unwrap();
        assert_eq!(store.get(1, &mut out), None);
        assert_eq!(store.get(2, &mut out).map(|m| m.zxid), Some(3));
    });
}

/// An update racing a read: the reader sees the old or the new value, whole.
#[test]
fn get_racing_update_sees_old_or_new() {
    model(|| {
        let store = Arc::new(
            Store::new(StoreConfig {
                capacity: 2,
                value_size: 16,
            })
            .unwrap(),
        );
        store.put(7, &[1; 16], 1).unwrap();
        let writer = {
            let store = store.clone();
            thread::spawn(move || store.put(7, &[2; 9], 2).unwrap())
        };
        let mut out = [0u8; 16];
        let meta = store.get(7, &mut out).expect("key 7 is never absent");
        match meta.zxid {
            1 => assert_eq!((meta.len, out), (16, [1; 16])),
            2 => assert_eq!((meta.len, &out[..9]), (9, &[2; 9][..])),
            z => panic!("unexpected zxid {z}"),
        }
        writer.join().unwrap();
    });
}

/// The same race through `get_batch`, whose pipeline reads the candidate item it found earlier:
/// a stale candidate must be caught like a stale slot.
#[test]
fn get_batch_racing_delete_and_reuse_never_returns_another_keys_value() {
    model(|| {
        let store = Arc::new(
            Store::new(StoreConfig {
                capacity: 1,
                value_size: 8,
            })
            .unwrap(),
        );
        store.put(1, &[1; 8], 1).unwrap();
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                assert!(store.delete(1, 2).unwrap());
                store.put(2, &[2; 8], 3).unwrap();
            })
        };
        let (mut values, mut metas) = ([0u8; 8], [None]);
        store.get_batch(&[1], &mut values, &mut metas);
        if let Some(meta) = metas[0] {
            assert_eq!((meta.zxid, meta.len, values), (1, 8, [1; 8]));
        }
        writer.join().unwrap();
    });
}
