use super::*;
use crate::testutil::*;
use crate::{Span, Time};

const T0: Time = Time(1_000);

fn leader(members: &[NodeId]) -> LeaderLane {
    LeaderLane::new(cfg(0, members)).unwrap()
}

fn seq1() -> Sequencer {
    Sequencer::new(Zxid::epoch_base(1))
}

/// Every datagram the lane wants to send now.
fn drain(l: &mut LeaderLane, now: Time) -> Vec<Sent> {
    let mut buf = vec![0u8; l.config().mtu];
    std::iter::from_fn(|| l.poll_transmit(now, &mut buf).map(|t| sent(t, &buf))).collect()
}

fn ack(received: u64, prepare_seq: u64, commit_seq: u64, commit: u64) -> AckBody {
    AckBody {
        received_lid: received,
        window_end: received + 32,
        prepare_seq,
        commit_seq,
        commit_lid: commit,
    }
}

#[test]
fn follower_write_is_sequenced_and_broadcast() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    l.handle(
        T0,
        &msg(&write_msg(
            1,
            1,
            &[write(3, 1, 42, b"v1"), write(4, 1, 43, b"v2")],
        )),
    );
    assert_eq!(drain(&mut l, T0), vec![], "nothing is sent before ids are given");
    assert_eq!(l.sequence(&s), Ok(2));
    assert_eq!(
        drain(&mut l, T0),
        vec![Sent::Prepare {
            to: Dest::Group,
            seq: 1,
            first_lid: 0,
            commit_lid: 0,
            zxids: vec![1, 2]
        }]
    );
    assert_eq!(s.peek(), Zxid::new(1, 3), "one shared range per turn");
    assert_eq!(
        (
            l.stats().write_msgs_recv,
            l.stats().writes_recv,
            l.stats().sequenced
        ),
        (1, 2, 2)
    );
}

#[test]
fn one_ack_commits_in_a_three_node_cluster_and_commit_follows() {
    let mut l = leader(&[0, 1, 2]);
    l.submit(&write(0, 1, 7, b"x")).unwrap();
    l.sequence(&seq1()).unwrap();
    drain(&mut l, T0);
    assert!(
        l.next_apply().is_none(),
        "nothing is committed before a quorum acks"
    );
    l.handle(T0, &msg(&ack_msg(1, ack(1, 1, 0, 0), &[])));
    assert_eq!(l.commit_lid(), 1);
    let e = l.next_apply().unwrap();
    assert_eq!(
        (e.lid, e.meta.zxid, e.meta.key, e.value),
        (0, Zxid::new(1, 1), 7, &b"x"[..])
    );
    assert_eq!(
        drain(&mut l, T0),
        vec![Sent::Commit {
            to: Dest::Group,
            seq: 1,
            ranges: vec![(0, 1)]
        }]
    );
    l.advance_apply();
    assert_eq!(l.apply_lid(), 1);
    assert_eq!(drain(&mut l, T0), vec![], "the commit point is sent once");
}

#[test]
fn dead_follower_neither_stalls_commits_nor_receives_without_credit() {
    let mut c = cfg(0, &[0, 1, 2]);
    c.broadcast = BroadcastMode::Unicast;
    let mut l = LeaderLane::new(c).unwrap();
    let s = seq1();
    // Node 2 never answers; node 1 acks everything.
    for i in 1..=5u32 {
        l.submit(&write(0, i as u64, i as u64, b"v")).unwrap();
        l.sequence(&s).unwrap();
        let out = drain(&mut l, T0);
        let to = match &out[0] {
            Sent::Prepare { to, .. } => *to,
            other => panic!("expected a prepare, got {other:?}"),
        };
        // Node 2's two credits are spent on the first two prepares.
        let expected = if i <= 2 {
            NodeSet::from_ids([1, 2])
        } else {
            NodeSet::from_ids([1])
        };
        assert_eq!(to, Dest::Set(expected), "prepare {i}");
        l.handle(T0, &msg(&ack_msg(1, ack(i as u64, i as u64, 0, 0), &[])));
        assert_eq!(l.commit_lid(), i as u64, "quorum of leader + node 1 commits");
    }
    // Node 2 got nothing beyond its credits, not even by catch-up.
    assert_eq!(l.stats().catch_up_sent, 0);
    assert_eq!(l.follower_received(2), Some(0));
}

#[test]
fn multicast_waits_for_a_responsive_follower_short_of_credit_but_not_a_silent_one() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    for i in 1..=2u32 {
        l.submit(&write(0, i as u64, 1, b"v")).unwrap();
        l.sequence(&s).unwrap();
        assert_eq!(drain(&mut l, T0).len(), 1);
    }
    // Both followers are out of prepare credits.
    l.submit(&write(0, 3, 1, b"v")).unwrap();
    l.sequence(&s).unwrap();
    assert_eq!(drain(&mut l, T0), vec![]);
    assert_eq!(l.stats().prepare_credit_stalls, 1);
    // Node 2 consumed both messages; node 1 is still short and was heard
    // from just now: a multicast would overrun it, so it waits...
    l.handle(T0, &msg(&ack_msg(2, ack(2, 2, 0, 0), &[])));
    assert!(
        drain(&mut l, T0)
            .iter()
            .all(|m| !matches!(m, Sent::Prepare { .. }))
    );
    // ...but not for longer than a timeout of silence from node 1.
    let later = T0 + l.rto();
    let out = drain(&mut l, later);
    assert!(
        matches!(
            &out[0],
            Sent::Prepare {
                to: Dest::Group,
                first_lid: 2,
                commit_lid: 2,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn duplicate_and_out_of_order_session_writes_are_not_sequenced() {
    let mut l = leader(&[0, 1, 2]);
    l.handle(T0, &msg(&write_msg(1, 1, &[write(0, 1, 1, b"a")])));
    l.handle(
        T0,
        &msg(&write_msg(1, 2, &[write(0, 1, 1, b"a"), write(0, 3, 1, b"c")])),
    );
    assert_eq!(l.end_lid(), 1);
    assert_eq!((l.stats().duplicate_writes, l.stats().rejected_entries), (1, 1));
    // The same session id from another node is another session.
    l.handle(T0, &msg(&write_msg(2, 1, &[write(0, 1, 1, b"a")])));
    assert_eq!(l.end_lid(), 2);
    assert_eq!(l.submit(&write(9, 1, 1, b"a")), Err(SubmitError::BadSession(9)));
    assert_eq!(
        l.submit(&write(1, 1, 1, b"123456789")),
        Err(SubmitError::ValueTooLong { len: 9, max: 8 })
    );
}

#[test]
fn a_bind_fences_the_named_binding_from_then_on() {
    use rzab_wire::{BindValue, Fence, gen_start};
    let mut c = cfg(0, &[0, 1, 2]);
    c.value_max = 32;
    let mut l = LeaderLane::new(c).unwrap();
    fn bind(session: u32, generation: u64, value: &[u8]) -> WriteEntry<'_> {
        WriteEntry {
            session,
            seq: gen_start(generation),
            key: 0,
            op: rzab_wire::Op::Bind,
            value,
        }
    }
    let owned = |owner, fence: Option<(u32, u64)>| {
        BindValue {
            owner,
            fence: fence.map(|(session, generation)| Fence {
                node: 1,
                session,
                generation,
            }),
        }
        .to_vec()
    };
    // Client 42 binds node 1's session 4 (generation 1) and writes once; a
    // second write is still on its way when the client moves to node 2.
    let g1 = gen_start(1);
    let plain = owned(42, None);
    l.handle(
        T0,
        &msg(&write_msg(1, 1, &[bind(4, 1, &plain), write(4, g1 + 1, 1, b"a")])),
    );
    assert_eq!(l.end_lid(), 2);
    let fence = owned(42, Some((4, 1)));
    l.handle(T0, &msg(&write_msg(2, 1, &[bind(7, 1, &fence)])));
    assert_eq!(l.end_lid(), 3);
    // The old binding's write arrives after the fence: never sequenced.
    l.handle(T0, &msg(&write_msg(1, 2, &[write(4, g1 + 2, 1, b"b")])));
    assert_eq!(l.end_lid(), 3);
    assert_eq!(l.stats().duplicate_writes, 1);
    // The new binding writes on, and node 1's slot serves a new client, 43.
    l.handle(T0, &msg(&write_msg(2, 2, &[write(7, g1 + 1, 1, b"c")])));
    let other = owned(43, None);
    l.handle(
        T0,
        &msg(&write_msg(
            1,
            3,
            &[bind(4, 2, &other), write(4, gen_start(2) + 1, 1, b"d")],
        )),
    );
    assert_eq!(l.end_lid(), 6);
    // A fence naming a generation the order has not reached (stale, from a
    // restarted cluster), or a binding of another client (client 42 naming
    // client 43's), is sequenced without it: neither may wedge the slot.
    let ahead = owned(43, Some((4, 9)));
    let foreign = owned(42, Some((4, 2)));
    l.handle(
        T0,
        &msg(&write_msg(2, 3, &[bind(7, 2, &ahead), bind(6, 1, &foreign)])),
    );
    assert_eq!(l.stats().stale_fences, 2);
    l.sequence(&seq1()).expect("ids");
    let mut buf = vec![0u8; l.config().mtu];
    let mut stored = Vec::new();
    while let Some(t) = l.poll_transmit(T0, &mut buf) {
        if let Body::Prepare {
            first_lid, entries, ..
        } = msg(&buf[..t.len]).body
        {
            for (i, e) in entries.enumerate() {
                if first_lid + i as u64 >= 6 {
                    stored.push(BindValue::decode(e.value).expect("a bind"));
                }
            }
        }
    }
    let plain_of = |owner| BindValue { owner, fence: None };
    assert_eq!(stored, [plain_of(43), plain_of(42)], "replicas are sent no fence");
    l.handle(T0, &msg(&write_msg(1, 4, &[write(4, gen_start(2) + 2, 1, b"e")])));
    assert_eq!(l.end_lid(), 9, "node 1's slot writes on");
    // A bind whose value no replica could decode never enters the log.
    assert_eq!(l.submit(&bind(1, 1, b"xyz")), Err(SubmitError::BadBind));
}

#[test]
fn silence_triggers_go_back_to_the_follower_alone() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    l.submit(&write(0, 1, 1, b"v")).unwrap();
    l.sequence(&s).unwrap();
    drain(&mut l, T0);
    l.handle(T0, &msg(&ack_msg(1, ack(1, 1, 0, 0), &[])));
    drain(&mut l, T0); // the commit
    let rto = l.rto();
    assert_eq!(
        l.poll_timeout(),
        Some(T0 + rto),
        "node 2 owes an ack, node 1 a commit confirmation"
    );
    l.handle_timeout(T0 + Span(rto.0 - 1));
    assert_eq!(drain(&mut l, T0), vec![]);
    let later = T0 + rto;
    l.handle_timeout(later);
    // Node 2's prepare, and both nodes' unconfirmed commit point.
    assert_eq!(l.stats().retransmit_timeouts, 3);
    assert_eq!(
        drain(&mut l, later),
        vec![
            Sent::Prepare {
                to: Dest::Node(2),
                seq: 2,
                first_lid: 0,
                commit_lid: 1,
                zxids: vec![1]
            },
            Sent::Commit {
                to: Dest::Group,
                seq: 2,
                ranges: vec![(0, 1)]
            },
        ],
        "node 2 gets the entry (with the commit point) again; node 1 the commit"
    );
}

#[test]
fn missing_range_report_resends_exactly_the_gap() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    for i in 1..=3 {
        l.submit(&write(0, i, 1, b"v")).unwrap();
    }
    l.sequence(&s).unwrap();
    assert_eq!(drain(&mut l, T0).len(), 1, "three entries in one prepare");
    // Node 1 has lid 0 and 2 but not 1.
    l.handle(
        T0,
        &msg(&ack_msg(1, ack(1, 1, 0, 0), &[Range { first: 1, count: 1 }])),
    );
    assert_eq!(l.stats().nacks_recv, 1);
    assert_eq!(
        drain(&mut l, T0),
        vec![
            Sent::Prepare {
                to: Dest::Node(1),
                seq: 2,
                first_lid: 1,
                commit_lid: 1,
                zxids: vec![2] // lid 2 arrived out of order: not sent again
            },
            // Node 2 has not been told lid 0 committed; node 1 learnt it above.
            Sent::Commit {
                to: Dest::Group,
                seq: 1,
                ranges: vec![(0, 1)]
            },
        ]
    );
    // The same report again right away does not resend again.
    l.handle(
        T0,
        &msg(&ack_msg(1, ack(1, 2, 0, 0), &[Range { first: 1, count: 1 }])),
    );
    assert!(
        drain(&mut l, T0)
            .iter()
            .all(|m| !matches!(m, Sent::Prepare { .. }))
    );
}

#[test]
fn foreign_and_stale_datagrams_change_nothing() {
    let mut l = leader(&[0, 1, 2]);
    let mut bad_epoch = write_msg(1, 1, &[write(0, 1, 1, b"a")]);
    bad_epoch[8] = 9;
    let mut bad_cluster = write_msg(1, 1, &[write(0, 1, 1, b"a")]);
    bad_cluster[4] ^= 0xFF;
    let unknown_sender = write_msg(7, 1, &[write(0, 1, 1, b"a")]);
    let mut wrong_kind = commit_msg(1, 0, 1);
    wrong_kind[12] = 1; // from follower 1: a follower never sends Commits
    let mut wrong_lane = write_msg(1, 1, &[write(0, 1, 1, b"a")]);
    wrong_lane[13] = 3;
    for m in [
        &bad_epoch,
        &bad_cluster,
        &unknown_sender,
        &wrong_kind,
        &wrong_lane,
    ] {
        l.handle(T0, &msg(m));
    }
    let st = l.stats();
    assert_eq!(
        (
            st.rejected_epoch,
            st.rejected_cluster,
            st.rejected_sender,
            st.rejected_kind,
            st.rejected_lane
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(l.end_lid(), 0);
}

#[test]
fn acks_cannot_claim_more_than_was_sent() {
    let mut l = leader(&[0, 1, 2]);
    l.submit(&write(0, 1, 1, b"v")).unwrap();
    l.sequence(&seq1()).unwrap();
    drain(&mut l, T0);
    l.handle(T0, &msg(&ack_msg(1, ack(1_000, 1, 0, 0), &[])));
    assert_eq!(l.follower_received(1), Some(1));
    assert_eq!(l.commit_lid(), 1);
}

#[test]
fn full_log_marks_the_follower_holding_it_lagging() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    let cap = l.config().log_capacity as u32;
    // Node 1 acks everything, node 2 is dead: entries commit and apply but
    // are retained for node 2 until the log is full.
    for i in 1..=cap + 1 {
        l.submit(&write(0, i as u64, 1, b"v")).unwrap();
        l.sequence(&s).unwrap();
        drain(&mut l, T0);
        l.handle(T0, &msg(&ack_msg(1, ack(i as u64, u64::MAX, u64::MAX, 0), &[])));
        while l.next_apply().is_some() {
            l.advance_apply();
        }
    }
    assert_eq!(l.lagging(), NodeSet::from_ids([2]));
    assert_eq!(l.stats().lagging_marked, 1);
    assert_eq!(l.end_lid(), cap as u64 + 1);
}

#[test]
fn full_log_of_unapplied_entries_refuses_writes() {
    let mut l = leader(&[0, 1, 2]);
    let cap = l.config().log_capacity as u32;
    for i in 1..=cap {
        l.submit(&write(0, i as u64, 1, b"v")).unwrap();
    }
    assert_eq!(
        l.submit(&write(0, cap as u64 + 1, 1, b"v")),
        Err(SubmitError::Full)
    );
    assert_eq!(l.lagging(), NodeSet::EMPTY, "no follower is to blame");
}

#[test]
fn a_single_node_commits_alone() {
    let mut l = leader(&[0]);
    l.submit(&write(0, 1, 1, b"v")).unwrap();
    l.sequence(&seq1()).unwrap();
    assert_eq!(l.commit_lid(), 1);
    assert_eq!(drain(&mut l, T0), vec![]);
}

#[test]
fn resend_ranges_shrink_as_the_gap_fills_some_other_way() {
    // Found by the simulator: a stale range below the retained log made the
    // leader mark a healthy follower lagging.
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    for i in 1..=4 {
        l.submit(&write(0, i, 1, b"v")).unwrap();
    }
    l.sequence(&s).unwrap();
    drain(&mut l, T0);
    l.handle(
        T0,
        &msg(&ack_msg(1, ack(0, 1, 0, 0), &[Range { first: 0, count: 2 }])),
    );
    // Before the resend goes out, the gap is filled (say by a delayed copy).
    l.handle(T0, &msg(&ack_msg(1, ack(3, 1, 0, 0), &[])));
    let out = drain(&mut l, T0);
    assert!(
        out.iter().all(|m| !matches!(
            m,
            Sent::Prepare {
                to: Dest::Node(1),
                ..
            }
        )),
        "nothing left to resend: {out:?}"
    );
    assert_eq!(l.lagging(), NodeSet::EMPTY);
}

#[test]
fn a_multicast_reaches_followers_short_of_credit_without_a_second_unicast() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    // Two prepares use up both followers' credits; node 1 then acks.
    for i in 1..=2 {
        l.submit(&write(0, i, 1, b"v")).unwrap();
        l.sequence(&s).unwrap();
        drain(&mut l, T0);
    }
    l.handle(T0, &msg(&ack_msg(1, ack(2, 2, 0, 0), &[])));
    l.submit(&write(0, 3, 1, b"v")).unwrap();
    l.sequence(&s).unwrap();
    // Node 2 has been silent for a timeout: the multicast goes without it.
    let later = T0 + l.rto();
    let out = drain(&mut l, later);
    assert!(
        matches!(
            &out[0],
            Sent::Prepare {
                to: Dest::Group,
                first_lid: 2,
                ..
            }
        ),
        "{out:?}"
    );
    // Node 2 had no credit but heard the group: nothing goes to it alone.
    assert!(
        out.iter().all(|m| !matches!(
            m,
            Sent::Prepare {
                to: Dest::Node(2),
                ..
            }
        )),
        "{out:?}"
    );
    assert!(drain(&mut l, later).is_empty());
    assert_eq!(l.stats().catch_up_sent, 0);
}

#[test]
fn a_learner_is_sent_from_the_apply_point_and_counts_only_once_promoted() {
    let mut l = leader(&[0, 1, 2]);
    let s = seq1();
    l.set_voters(NodeSet::from_ids([1]));
    for i in 1..=2 {
        l.submit(&write(0, i, 1, b"v")).unwrap();
    }
    l.sequence(&s).unwrap();
    drain(&mut l, T0);
    // Nothing applied yet: node 2 gets every lid, its snapshot need only
    // cover the epoch's base (lids 0 and 1 are uncommitted: waiting for
    // them could wait for this very node).
    assert_eq!(l.add_learner(2, T0, false), Some((0, Zxid::epoch_base(1))));
    let out = drain(&mut l, T0);
    assert!(
        out.iter()
            .any(|m| matches!(m, Sent::Prepare { first_lid: 0, .. })),
        "the learner gets lid 0 on: {out:?}"
    );
    // Its ack alone does not commit...
    l.handle(T0, &msg(&ack_msg(2, ack(2, 1, 0, 0), &[])));
    assert_eq!(l.commit_lid(), 0);
    // ...until it is promoted: then it makes the quorum.
    assert!(l.promote(2));
    assert_eq!(l.commit_lid(), 2, "now its ack counts");
    // A later join starts at the apply point, below which is id 1:2.
    while l.next_apply().is_some() {
        l.advance_apply();
    }
    assert_eq!(l.add_learner(2, T0, true), Some((2, Zxid::new(1, 2))));
}

#[test]
fn held_entries_are_the_sequenced_and_unapplied_ones() {
    let mut l = leader(&[0, 1, 2]);
    for i in 1..=3 {
        l.submit(&write(0, i, i, b"v")).unwrap();
    }
    l.sequence(&seq1()).unwrap();
    l.submit(&write(1, 1, 9, b"v")).unwrap(); // appended, no id yet
    let held: Vec<_> = l
        .held()
        .iter()
        .map(|e| (e.zxid.counter(), e.key, e.lane))
        .collect();
    assert_eq!(held, vec![(1, 1, 0), (2, 2, 0), (3, 3, 0)]);
}

#[test]
fn the_log_is_full_when_its_bytes_run_out() {
    let mut c = cfg(0, &[0, 1, 2]);
    c.log_bytes = 20;
    let mut l = LeaderLane::new(c).unwrap();
    for i in 1..=2 {
        l.submit(&write(0, i, 1, b"12345678")).unwrap();
    }
    assert_eq!(l.submit(&write(0, 3, 1, b"12345")), Err(SubmitError::Full));
    assert!(!l.has_room(), "no room for a value of value_max");
    l.submit(&write(0, 3, 1, b"1234")).unwrap();
    // Both followers ack, the entries apply: their bytes come back.
    l.sequence(&seq1()).unwrap();
    drain(&mut l, T0);
    for n in [1, 2] {
        l.handle(T0, &msg(&ack_msg(n, ack(3, u64::MAX, u64::MAX, 0), &[])));
    }
    while l.next_apply().is_some() {
        l.advance_apply();
    }
    assert!(l.has_room());
    l.submit(&write(0, 4, 1, b"12345678")).unwrap();
}

#[test]
fn log_bytes_must_hold_one_value() {
    let mut c = cfg(0, &[0, 1, 2]);
    c.log_bytes = c.value_max - 1;
    let Err(e) = LeaderLane::new(c) else {
        panic!("a log that cannot hold one value was accepted");
    };
    assert_eq!(e.field, "log_bytes");
}
