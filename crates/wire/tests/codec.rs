//! Round trips and total decoding, by property testing.

use proptest::prelude::*;
use rzab_wire::*;

/// zxid, key, session, seq, origin, op, value.
type OwnedPrepare = (u64, u64, u32, u64, u8, Op, Vec<u8>);

/// An owned message, the model the encoder and decoder are checked against.
#[derive(Clone, Debug, PartialEq)]
enum Owned {
    Write(Vec<(u32, u64, u64, Op, Vec<u8>)>),
    Prepare {
        first_lid: u64,
        commit_lid: u64,
        entries: Vec<OwnedPrepare>,
    },
    Ack {
        body: AckBody,
        missing: Vec<(u64, u32)>,
    },
    Commit(Vec<(u64, u32)>),
    Hello(HelloBody),
}

fn header(kind: Kind, count: usize) -> Header {
    Header {
        kind,
        cluster_id: 0xC1,
        epoch: 3,
        sender: 2,
        lane: 1,
        count: count as u16,
        seq: 99,
    }
}

fn op_value() -> impl Strategy<Value = (Op, Vec<u8>)> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(|v| (Op::Put, v)),
        1 => Just((Op::Delete, Vec::new())),
        1 => any::<u64>().prop_map(|owner| (Op::Bind, BindValue { owner, fence: None }.to_vec())),
        1 => (any::<u64>(), any::<u8>(), any::<u32>(), 1..=GEN_MAX).prop_map(|(owner, node, session, generation)| {
            let fence = Some(Fence { node, session, generation });
            (Op::Bind, BindValue { owner, fence }.to_vec())
        }),
    ]
}

fn range() -> impl Strategy<Value = (u64, u32)> {
    (0u64..u64::MAX / 2, 1u32..u32::MAX)
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        proptest::collection::vec((any::<u32>(), any::<u64>(), any::<u64>(), op_value()), 0..20).prop_map(
            |v| Owned::Write(
                v.into_iter()
                    .map(|(s, q, k, (o, val))| (s, q, k, o, val))
                    .collect()
            )
        ),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<u64>(),
                    any::<u32>(),
                    any::<u64>(),
                    any::<u8>(),
                    op_value()
                ),
                0..20
            )
        )
            .prop_map(|(f, c, v)| Owned::Prepare {
                first_lid: f,
                commit_lid: c,
                entries: v
                    .into_iter()
                    .map(|(z, k, s, q, o, (op, val))| (z, k, s, q, o, op, val))
                    .collect(),
            }),
        (any::<[u64; 5]>(), proptest::collection::vec(range(), 0..8)).prop_map(|(b, m)| Owned::Ack {
            body: AckBody {
                received_lid: b[0],
                window_end: b[1],
                prepare_seq: b[2],
                commit_seq: b[3],
                commit_lid: b[4]
            },
            missing: m,
        }),
        proptest::collection::vec(range(), 0..8).prop_map(Owned::Commit),
        (any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(d, h, r, a)| Owned::Hello(
            HelloBody {
                config_digest: d,
                heard: h,
                ready: r,
                answer: a
            }
        )),
    ]
}

fn encode(m: &Owned, buf: &mut [u8]) -> usize {
    match m {
        Owned::Write(v) => {
            let mut e = Encoder::write(buf, header(Kind::Write, 0)).unwrap();
            for (session, seq, key, op, value) in v {
                assert!(e.push_write(&WriteEntry {
                    session: *session,
                    seq: *seq,
                    key: *key,
                    op: *op,
                    value
                }));
            }
            e.finish()
        }
        Owned::Prepare {
            first_lid,
            commit_lid,
            entries,
        } => {
            let mut e = Encoder::prepare(buf, header(Kind::Prepare, 0), *first_lid, *commit_lid).unwrap();
            for (z, key, session, seq, origin, op, value) in entries {
                let entry = PrepareEntry {
                    zxid: Zxid(*z),
                    key: *key,
                    session: *session,
                    seq: *seq,
                    origin: *origin,
                    op: *op,
                    value,
                };
                assert!(e.push_prepare(&entry));
            }
            e.finish()
        }
        Owned::Ack { body, missing } => {
            let mut e = Encoder::ack(buf, header(Kind::Ack, 0), body).unwrap();
            for &(first, count) in missing {
                assert!(e.push_range(Range { first, count }));
            }
            e.finish()
        }
        Owned::Hello(body) => Encoder::hello(buf, header(Kind::Hello, 0), body)
            .unwrap()
            .finish(),
        Owned::Commit(ranges) => {
            let mut e = Encoder::commit(buf, header(Kind::Commit, 0)).unwrap();
            for &(first, count) in ranges {
                assert!(e.push_range(Range { first, count }));
            }
            e.finish()
        }
    }
}

fn to_owned(m: &Message<'_>) -> Owned {
    match m.body {
        Body::Write(es) => Owned::Write(
            es.map(|e| (e.session, e.seq, e.key, e.op, e.value.to_vec()))
                .collect(),
        ),
        Body::Prepare {
            first_lid,
            commit_lid,
            entries,
        } => Owned::Prepare {
            first_lid,
            commit_lid,
            entries: entries
                .map(|e| {
                    (
                        e.zxid.0,
                        e.key,
                        e.session,
                        e.seq,
                        e.origin,
                        e.op,
                        e.value.to_vec(),
                    )
                })
                .collect(),
        },
        Body::Ack { body, missing } => Owned::Ack {
            body,
            missing: missing.map(|r| (r.first, r.count)).collect(),
        },
        Body::Commit(rs) => Owned::Commit(rs.map(|r| (r.first, r.count)).collect()),
        Body::Hello(body) => Owned::Hello(body),
        Body::Control(_) => panic!("not generated here (see tests/control.rs)"),
    }
}

fn entry_count(m: &Owned) -> usize {
    match m {
        Owned::Write(v) => v.len(),
        Owned::Prepare { entries, .. } => entries.len(),
        Owned::Ack { missing, .. } => missing.len(),
        Owned::Commit(v) => v.len(),
        Owned::Hello(_) => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(m in owned()) {
        let mut buf = vec![0u8; 1 << 16];
        let len = encode(&m, &mut buf);
        let msg = decode(&buf[..len]).expect("an encoded message decodes");
        prop_assert_eq!(msg.header.cluster_id, 0xC1);
        prop_assert_eq!((msg.header.epoch, msg.header.sender, msg.header.lane, msg.header.seq), (3, 2, 1, 99));
        prop_assert_eq!(msg.header.count as usize, entry_count(&m));
        prop_assert_eq!(to_owned(&msg), m);
    }

    #[test]
    fn every_truncation_is_an_error(m in owned()) {
        let mut buf = vec![0u8; 1 << 16];
        let len = encode(&m, &mut buf);
        for cut in 0..len {
            prop_assert!(decode(&buf[..cut]).is_err(), "prefix of {} of {} bytes decoded", cut, len);
        }
        let mut longer = buf[..len].to_vec();
        longer.push(0);
        prop_assert_eq!(decode(&longer).err(), Some(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = decode(&bytes) {
            let _ = to_owned(&m);
        }
    }

    #[test]
    fn valid_header_random_body_never_panics(m in owned(), noise in proptest::collection::vec(any::<u8>(), 0..300), count in any::<u16>()) {
        let mut buf = vec![0u8; 1 << 16];
        let len = encode(&m, &mut buf);
        let mut bytes = buf[..HEADER_LEN].to_vec();
        bytes[14..16].copy_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&noise);
        if let Ok(m) = decode(&bytes) {
            let owned = to_owned(&m);
            prop_assert_eq!(entry_count(&owned), count as usize);
        }
        let _ = len;
    }

    #[test]
    fn flipped_bytes_never_panic(m in owned(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut buf = vec![0u8; 1 << 16];
        let len = encode(&m, &mut buf);
        let mut bytes = buf[..len].to_vec();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        // A flip can turn the kind into Control with a body that decodes
        // as one (tests/control.rs covers those); walk the others.
        if let Ok(m) = decode(&bytes)
            && !matches!(m.body, Body::Control(_))
        {
            let _ = to_owned(&m);
        }
    }
}

#[test]
fn encoder_stops_at_the_mtu() {
    let mut buf = vec![0u8; 200];
    let mut e = Encoder::prepare(&mut buf, header(Kind::Prepare, 0), 0, 0).unwrap();
    let value = [7u8; 32];
    let entry = PrepareEntry {
        zxid: Zxid(1),
        key: 1,
        session: 0,
        seq: 0,
        origin: 0,
        op: Op::Put,
        value: &value,
    };
    let mut n = 0;
    while e.push_prepare(&entry) {
        n += 1;
    }
    // 24 header + 16 body + n * (32 + 32) <= 200
    assert_eq!(n, 2);
    let len = e.finish();
    assert_eq!(len, 24 + 16 + 2 * 64);
    let m = decode(&buf[..len]).unwrap();
    assert_eq!(m.header.count, 2);
}

#[test]
fn specific_errors() {
    assert!(matches!(decode(&[]), Err(DecodeError::Truncated { .. })));
    let mut buf = vec![0u8; 64];
    let len = Encoder::commit(&mut buf, header(Kind::Commit, 0))
        .unwrap()
        .finish();
    let good = buf[..len].to_vec();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(decode(&bad), Err(DecodeError::BadMagic(_))));
    let mut bad = good.clone();
    bad[2] = 9;
    assert_eq!(decode(&bad).err(), Some(DecodeError::BadVersion(9)));
    let mut bad = good.clone();
    bad[3] = 200;
    assert_eq!(decode(&bad).err(), Some(DecodeError::BadKind(200)));
    // A delete that carries a value is refused by both sides.
    let mut e = Encoder::write(&mut buf, header(Kind::Write, 0)).unwrap();
    assert!(!e.push_write(&WriteEntry {
        session: 0,
        seq: 0,
        key: 0,
        op: Op::Delete,
        value: b"x"
    }));
    // A bind whose value is neither an owner nor an owner and a fence is
    // refused on decode.
    let mut e = Encoder::write(&mut buf, header(Kind::Write, 1)).unwrap();
    assert!(e.push_write(&WriteEntry {
        session: 0,
        seq: gen_start(1),
        key: 0,
        op: Op::Bind,
        value: b"12345"
    }));
    let n = e.finish();
    assert_eq!(decode(&buf[..n]).err(), Some(DecodeError::BadBind(5)));
    assert_eq!(BindValue::decode(&[]), Err(DecodeError::BadBind(0)));
    let f = Fence {
        node: 3,
        session: 70_000,
        generation: GEN_MAX,
    };
    let b = BindValue {
        owner: 1 << 60,
        fence: Some(f),
    };
    assert_eq!(BindValue::decode(&b.to_vec()), Ok(b));
    for generation in [0, GEN_MAX + 1, u64::MAX] {
        let bad = BindValue {
            fence: Some(Fence { generation, ..f }),
            ..b
        };
        assert_eq!(
            BindValue::decode(&bad.to_vec()),
            Err(DecodeError::FenceGeneration(generation))
        );
    }
    assert_eq!(seq_gen(gen_end(7)), 7);
    assert_eq!(gen_end(7) + 1, gen_start(8));
    // An empty commit range is not encodable.
    let mut e = Encoder::commit(&mut buf, header(Kind::Commit, 0)).unwrap();
    assert!(!e.push_range(Range { first: 5, count: 0 }));
    assert!(Encoder::ack(&mut buf[..30], header(Kind::Ack, 0), &AckBody::default()).is_err());
}
