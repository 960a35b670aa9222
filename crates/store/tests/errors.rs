//! Bad arguments: each returns a clear error and leaves the store unchanged.
#![cfg(not(loom))]

use rzab_store::{MAX_CAPACITY, MAX_VALUE_SIZE, Op, Store, StoreConfig, StoreError, Write};

fn new(capacity: usize, value_size: usize) -> Result<Store, StoreError> {
    Store::new(StoreConfig { capacity, value_size })
}

#[test]
fn bad_configs_are_refused() {
    assert_eq!(new(0, 32).err(), Some(StoreError::ZeroCapacity));
    assert_eq!(new(10, 0).err(), Some(StoreError::ZeroValueSize));
    let too_big = MAX_VALUE_SIZE + 1;
    assert_eq!(
        new(10, too_big).err(),
        Some(StoreError::ValueSizeTooLarge {
            value_size: too_big,
            max: MAX_VALUE_SIZE
        })
    );
    for capacity in [MAX_CAPACITY + 1, usize::MAX] {
        assert_eq!(
            new(capacity, 8).err(),
            Some(StoreError::CapacityTooLarge {
                capacity,
                max: MAX_CAPACITY
            })
        );
    }
}

#[test]
fn limits_are_usable() {
    let s = new(1, MAX_VALUE_SIZE).unwrap();
    let v = vec![7u8; MAX_VALUE_SIZE];
    s.put(1, &v, 1).unwrap();
    let mut out = vec![0u8; MAX_VALUE_SIZE];
    assert_eq!(s.get(1, &mut out).map(|m| m.len), Some(MAX_VALUE_SIZE));
    assert_eq!(out, v);
}

#[test]
fn messages_are_clear() {
    let msg = |e: StoreError| e.to_string();
    assert_eq!(
        msg(StoreError::ZeroCapacity),
        "store capacity must be at least 1 key"
    );
    assert_eq!(
        msg(StoreError::ValueTooLong { len: 40, max: 32 }),
        "value of 40 bytes exceeds the store's value size of 32 bytes"
    );
    assert!(msg(StoreError::Full { capacity: 5 }).contains("capacity 5 keys"));
}

#[test]
fn too_long_values_change_nothing() {
    let s = new(4, 8).unwrap();
    s.put(1, b"12345678", 1).unwrap();
    let before = s.digest();
    let err = || StoreError::ValueTooLong { len: 9, max: 8 };
    assert_eq!(s.put(1, b"123456789", 2), Err(err()));
    assert_eq!(s.put(2, b"123456789", 2), Err(err()));
    assert_eq!(s.digest(), before);
    assert_eq!(s.len(), 1);

    let writes = [
        Write {
            key: 3,
            zxid: 3,
            op: Op::Put(b"ok"),
        },
        Write {
            key: 1,
            zxid: 4,
            op: Op::Delete,
        },
        Write {
            key: 4,
            zxid: 5,
            op: Op::Put(b"123456789"),
        },
        Write {
            key: 5,
            zxid: 6,
            op: Op::Put(b"never"),
        },
    ];
    assert_eq!(s.apply_batch(&writes), Err((2, err())));
    let mut out = [0u8; 8];
    assert!(s.get(3, &mut out).is_some() && s.get(1, &mut out).is_none());
    assert!(s.get(4, &mut out).is_none() && s.get(5, &mut out).is_none());
    assert_eq!(s.len(), 1);
}

#[test]
fn full_batch_stops_at_the_failing_write() {
    let s = new(2, 8).unwrap();
    let writes = [
        Write {
            key: 1,
            zxid: 1,
            op: Op::Put(b"a"),
        },
        Write {
            key: 2,
            zxid: 2,
            op: Op::Put(b"b"),
        },
        Write {
            key: 1,
            zxid: 3,
            op: Op::Put(b"a2"),
        },
        Write {
            key: 3,
            zxid: 4,
            op: Op::Put(b"c"),
        },
        Write {
            key: 2,
            zxid: 5,
            op: Op::Delete,
        },
    ];
    assert_eq!(s.apply_batch(&writes), Err((3, StoreError::Full { capacity: 2 })));
    assert_eq!(s.len(), 2);
    let mut out = [0u8; 8];
    assert_eq!(s.get(1, &mut out).map(|m| (m.zxid, m.len)), Some((3, 2)));
    assert!(
        s.get(2, &mut out).is_some(),
        "the delete after the error must not run"
    );
}
