//! Control-plane messages: round trips and total decoding.

use proptest::prelude::*;
use rzab_wire::*;

fn header(kind: Kind) -> Header {
    Header {
        kind,
        cluster_id: 5,
        epoch: 9,
        sender: 1,
        lane: CONTROL_LANE,
        count: 0,
        seq: 3,
    }
}

fn zxid() -> impl Strategy<Value = Zxid> {
    any::<u64>().prop_map(Zxid)
}

fn body() -> impl Strategy<Value = ControlBody> {
    prop_oneof![
        zxid().prop_map(|applied| ControlBody::Heartbeat { applied }),
        (zxid(), any::<u32>(), any::<bool>(), any::<bool>()).prop_map(
            |(applied, accepted_epoch, voter, synced)| {
                ControlBody::Status {
                    applied,
                    accepted_epoch,
                    voter,
                    synced,
                }
            }
        ),
        (any::<u32>(), zxid()).prop_map(|(current_epoch, applied)| ControlBody::VoteRequest {
            current_epoch,
            applied
        }),
        (any::<bool>(), any::<u32>(), zxid(), any::<u64>()).prop_map(
            |(granted, current_epoch, applied, held)| ControlBody::Vote {
                granted,
                current_epoch,
                applied,
                held
            }
        ),
        (zxid(), any::<bool>()).prop_map(|(applied, snapshot)| ControlBody::NewLeader { applied, snapshot }),
        (any::<u32>(), any::<u32>()).prop_map(|(stream, chunks)| ControlBody::TransferAck { stream, chunks }),
        zxid().prop_map(|applied| ControlBody::NewLeaderAck { applied }),
        zxid().prop_map(|base| ControlBody::StartEpoch { base }),
        (zxid(), any::<bool>(), any::<u32>()).prop_map(|(applied, amnesiac, request)| ControlBody::Join {
            applied,
            amnesiac,
            request
        }),
    ]
}

/// An owned item: (kind, fields, value).
#[derive(Clone, Debug, PartialEq)]
enum OwnedItem {
    History(u64, u8, u8, bool, u32, u64, u64, Vec<u8>),
    Snapshot(u64, u64, Vec<u8>),
    Session(u8, u8, u32, u64, u64),
}

fn item() -> impl Strategy<Value = OwnedItem> {
    let v = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            v.clone()
        )
            .prop_map(|(z, l, o, del, s, q, k, v)| OwnedItem::History(
                z,
                l,
                o,
                del,
                s,
                q,
                k,
                if del { vec![] } else { v }
            )),
        (any::<u64>(), any::<u64>(), v).prop_map(|(k, z, v)| OwnedItem::Snapshot(k, z, v)),
        (any::<u8>(), any::<u8>(), any::<u32>(), any::<u64>(), any::<u64>())
            .prop_map(|(o, l, s, q, w)| OwnedItem::Session(o, l, s, q, w)),
    ]
}

fn borrow(i: &OwnedItem) -> Item<'_> {
    match i {
        OwnedItem::History(z, l, o, del, s, q, k, v) => Item::History(HistoryItem {
            zxid: Zxid(*z),
            lane: *l,
            origin: *o,
            op: if *del { Op::Delete } else { Op::Put },
            session: *s,
            seq: *q,
            key: *k,
            value: v,
        }),
        OwnedItem::Snapshot(k, z, v) => Item::Snapshot(SnapshotItem {
            key: *k,
            zxid: Zxid(*z),
            value: v,
        }),
        OwnedItem::Session(o, l, s, q, w) => Item::Session(SessionItem {
            origin: *o,
            lane: *l,
            session: *s,
            seq: *q,
            owner: *w,
        }),
    }
}

fn own(i: Item<'_>) -> OwnedItem {
    match i {
        Item::History(h) => OwnedItem::History(
            h.zxid.0,
            h.lane,
            h.origin,
            h.op == Op::Delete,
            h.session,
            h.seq,
            h.key,
            h.value.to_vec(),
        ),
        Item::Snapshot(s) => OwnedItem::Snapshot(s.key, s.zxid.0, s.value.to_vec()),
        Item::Session(s) => OwnedItem::Session(s.origin, s.lane, s.session, s.seq, s.owner),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fixed_bodies_round_trip_and_truncations_fail(b in body()) {
        let mut buf = vec![0u8; 256];
        let len = Encoder::control(&mut buf, header(Kind::Heartbeat), &b).unwrap().finish();
        let m = decode(&buf[..len]).unwrap();
        let Body::Control(ControlMsg::Fixed(got)) = m.body else { panic!("not a control body") };
        prop_assert_eq!(got, b);
        prop_assert_eq!(m.header.lane, CONTROL_LANE);
        for cut in 0..len {
            prop_assert!(decode(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn transfers_round_trip(items in proptest::collection::vec(item(), 0..30), stream in any::<u32>(), chunk in any::<u32>(), last in any::<bool>()) {
        let mut buf = vec![0u8; 1 << 14];
        let mut e = Encoder::transfer(&mut buf, header(Kind::Transfer), stream, chunk, false).unwrap();
        for i in &items {
            prop_assert!(e.push_item(&borrow(i)));
        }
        if last {
            e.set_last();
        }
        let len = e.finish();
        let m = decode(&buf[..len]).unwrap();
        let Body::Control(ControlMsg::Transfer { stream: s, chunk: c, last: l, items: got }) = m.body else {
            panic!("not a transfer")
        };
        prop_assert_eq!((s, c, l), (stream, chunk, last));
        prop_assert_eq!(got.map(own).collect::<Vec<_>>(), items);
    }

    #[test]
    fn join_info_round_trips(request in any::<u32>(), base in zxid(), lids in proptest::collection::vec(any::<u64>(), 0..16)) {
        let mut buf = vec![0u8; 512];
        let len = Encoder::join_info(&mut buf, header(Kind::JoinInfo), request, base, &lids).unwrap().finish();
        let m = decode(&buf[..len]).unwrap();
        let Body::Control(ControlMsg::JoinInfo { request: r, base: b, lids: l }) = m.body else { panic!("not join info") };
        prop_assert_eq!((r, b), (request, base));
        prop_assert_eq!(l.collect::<Vec<_>>(), lids);
    }

    #[test]
    fn random_control_bodies_never_panic(kind in 6u8..=16, count in any::<u16>(), noise in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = vec![0u8; 24];
        let h = Header { count, ..header(Kind::Heartbeat) };
        let _ = Encoder::commit(&mut buf, h).unwrap();
        buf[3] = kind;
        buf[14..16].copy_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&noise);
        if let Ok(m) = decode(&buf) {
            if let Body::Control(ControlMsg::Transfer { items, .. }) = m.body {
                let _ = items.map(own).count();
            }
            if let Body::Control(ControlMsg::JoinInfo { lids, .. }) = m.body {
                let _ = lids.count();
            }
        }
    }
}
