use super::*;
use crate::testutil::*;
use crate::{Span, Time};
use rzab_wire::{NodeId, PrepareEntry, Zxid};

const T0: Time = Time(1_000);
const ME: NodeId = 1;

fn follower() -> FollowerLane {
    FollowerLane::new(cfg(ME, &[0, 1, 2])).unwrap()
}

fn drain(f: &mut FollowerLane, now: Time) -> Vec<Sent> {
    let mut buf = vec![0u8; f.config().mtu];
    std::iter::from_fn(|| f.poll_transmit(now, &mut buf).map(|t| sent(t, &buf))).collect()
}

fn ack(received: u64, window_end: u64, prepare_seq: u64, commit_seq: u64, commit: u64) -> AckBody {
    AckBody {
        received_lid: received,
        window_end,
        prepare_seq,
        commit_seq,
        commit_lid: commit,
    }
}

fn apply_all(f: &mut FollowerLane) -> Vec<(u64, Zxid)> {
    let mut out = Vec::new();
    while let Some(e) = f.next_apply() {
        out.push((e.lid, e.meta.zxid));
        f.advance_apply();
    }
    out
}

#[test]
fn prepares_are_acked_cumulatively_and_applied_once_committed() {
    let mut f = follower();
    f.handle(
        T0,
        &msg(&prepare_msg(
            1,
            0,
            0,
            &[prep(1, 2, 0, 1, 10, b"a"), prep(2, 0, 0, 1, 11, b"b")],
        )),
    );
    assert_eq!(
        drain(&mut f, T0),
        vec![Sent::Ack {
            to: Dest::Node(0),
            body: ack(2, 32, 1, 0, 0),
            missing: vec![]
        }]
    );
    assert!(f.next_apply().is_none(), "received is not committed");
    f.handle(T0, &msg(&commit_msg(1, 0, 1)));
    assert_eq!(apply_all(&mut f), vec![(0, Zxid::new(1, 1))]);
    // The next prepare carries the commit point too.
    f.handle(T0, &msg(&prepare_msg(2, 2, 2, &[prep(3, 0, 0, 2, 12, b"c")])));
    assert_eq!(apply_all(&mut f), vec![(1, Zxid::new(1, 2))]);
    assert_eq!(
        drain(&mut f, T0),
        vec![Sent::Ack {
            to: Dest::Node(0),
            body: ack(3, 34, 2, 1, 2),
            missing: vec![]
        }]
    );
    let st = f.stats();
    assert_eq!(
        (
            st.prepare_msgs_recv,
            st.prepares_recv,
            st.commits_recv,
            st.applied
        ),
        (2, 3, 2, 2)
    );
}

#[test]
fn gaps_are_reported_and_filled_out_of_order() {
    let mut f = follower();
    f.handle(T0, &msg(&prepare_msg(2, 1, 0, &[prep(2, 0, 0, 1, 1, b"b")])));
    f.handle(T0, &msg(&prepare_msg(3, 3, 0, &[prep(4, 0, 0, 2, 1, b"d")])));
    assert_eq!(
        drain(&mut f, T0),
        vec![Sent::Ack {
            to: Dest::Node(0),
            body: ack(0, 32, 3, 0, 0),
            missing: vec![(0, 1), (2, 1)]
        }]
    );
    assert_eq!(f.stats().nacks_sent, 1);
    f.handle(
        T0,
        &msg(&prepare_msg(
            4,
            0,
            4,
            &[prep(1, 0, 0, 3, 1, b"a"), prep(2, 0, 0, 1, 1, b"b")],
        )),
    );
    assert_eq!(f.stats().duplicate_prepares, 1, "lid 1 was already held");
    assert_eq!(f.received_lid(), 2);
    f.handle(T0, &msg(&prepare_msg(5, 2, 4, &[prep(3, 0, 0, 4, 1, b"c")])));
    assert_eq!(f.received_lid(), 4, "lid 3 arrived earlier");
    assert_eq!(apply_all(&mut f).len(), 4);
}

#[test]
fn committed_but_missing_entries_wait() {
    let mut f = follower();
    f.handle(T0, &msg(&commit_msg(1, 0, 5)));
    assert_eq!(f.commit_lid(), 5);
    assert!(f.next_apply().is_none());
    f.handle(T0, &msg(&prepare_msg(1, 0, 0, &[prep(1, 0, 0, 1, 1, b"a")])));
    assert_eq!(apply_all(&mut f), vec![(0, Zxid::new(1, 1))]);
}

#[test]
fn entries_beyond_the_window_are_dropped() {
    let mut f = follower();
    let w = f.config().window as u64;
    f.handle(T0, &msg(&prepare_msg(1, w, 0, &[prep(1, 0, 0, 1, 1, b"a")])));
    assert_eq!(f.stats().dropped_window, 1);
    assert_eq!(f.received_lid(), 0);
}

#[test]
fn writes_go_to_the_leader_within_credits_and_credits_return_on_apply() {
    let mut f = follower();
    for s in 0..3 {
        f.submit(&write(s, 1, s as u64, b"v")).unwrap();
        // One message per turn (the test drains after each submit).
        let out = drain(&mut f, T0);
        if s < 2 {
            assert_eq!(
                out,
                vec![Sent::Write {
                    to: Dest::Node(0),
                    seq: s as u64 + 1,
                    writes: vec![(s, 1, s as u64)]
                }]
            );
        } else {
            assert_eq!(out, vec![], "two credits, both in flight");
        }
    }
    assert_eq!(f.stats().write_credit_stalls, 1);
    // The leader sequenced our session 0 write; once applied its credit is back.
    f.handle(T0, &msg(&prepare_msg(1, 0, 1, &[prep(1, ME, 0, 1, 0, b"v")])));
    drain(&mut f, T0);
    apply_all(&mut f);
    assert_eq!(
        drain(&mut f, T0),
        vec![Sent::Write {
            to: Dest::Node(0),
            seq: 3,
            writes: vec![(2, 1, 2)]
        }]
    );
    assert_eq!(f.pending_writes(), 2);
}

#[test]
fn unsequenced_writes_are_resent_after_the_timeout() {
    let mut f = follower();
    f.submit(&write(0, 1, 0, b"v")).unwrap();
    f.submit(&write(1, 1, 1, b"v")).unwrap();
    drain(&mut f, T0);
    f.handle(T0, &msg(&prepare_msg(1, 0, 0, &[prep(1, ME, 1, 1, 1, b"v")])));
    drain(&mut f, T0);
    let rto = f.rto();
    assert_eq!(f.poll_timeout(), Some(T0 + rto));
    f.handle_timeout(T0 + Span(rto.0 - 1));
    assert_eq!(drain(&mut f, T0), vec![]);
    f.handle_timeout(T0 + rto);
    assert_eq!(
        drain(&mut f, T0 + rto),
        vec![Sent::Write {
            to: Dest::Node(0),
            seq: 2,
            writes: vec![(0, 1, 0)]
        }],
        "only the write the leader has not sequenced"
    );
    assert_eq!(f.stats().writes_resent, 1);
}

#[test]
fn datagrams_not_from_the_leader_or_of_another_epoch_change_nothing() {
    let mut f = follower();
    let mut from_peer = prepare_msg(1, 0, 0, &[prep(1, 0, 0, 1, 1, b"a")]);
    from_peer[12] = 2;
    let mut stale = prepare_msg(1, 0, 0, &[prep(1, 0, 0, 1, 1, b"a")]);
    stale[8] = 0;
    let old_epoch_entry = prepare_msg(
        1,
        0,
        0,
        &[PrepareEntry {
            zxid: Zxid::new(0, 5),
            ..prep(1, 0, 0, 1, 1, b"a")
        }],
    );
    let mut write_to_follower = write_msg(0, 1, &[write(0, 1, 1, b"a")]);
    write_to_follower[12] = 0;
    for m in [&from_peer, &stale, &old_epoch_entry, &write_to_follower] {
        f.handle(T0, &msg(m));
    }
    let st = f.stats();
    assert_eq!(
        (
            st.rejected_sender,
            st.rejected_epoch,
            st.rejected_entries,
            st.rejected_kind
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(f.received_lid(), 0);
}

#[test]
fn applying_a_quarter_window_readvertises_it() {
    let mut f = follower();
    let q = f.config().window as u32 / 4;
    let entries: Vec<_> = (1..=q).map(|z| prep(z, 0, 0, z as u64, 1, b"v")).collect();
    f.handle(T0, &msg(&prepare_msg(1, 0, q as u64, &entries)));
    drain(&mut f, T0);
    assert_eq!(apply_all(&mut f).len(), q as usize);
    let out = drain(&mut f, T0);
    assert!(
        matches!(&out[..], [Sent::Ack { body, .. }] if body.window_end == 32 + q as u64),
        "{out:?}"
    );
}

#[test]
fn a_lane_joined_midstream_starts_at_its_lid_and_says_so() {
    let mut f = FollowerLane::new_at(cfg(ME, &[0, 1, 2]), 40).unwrap();
    assert_eq!(
        drain(&mut f, T0),
        vec![Sent::Ack {
            to: Dest::Node(0),
            body: ack(40, 72, 0, 0, 40),
            missing: vec![]
        }]
    );
    f.handle(
        T0,
        &msg(&prepare_msg(
            1,
            40,
            41,
            &[prep(7, 0, 0, 1, 1, b"a"), prep(8, 0, 0, 2, 2, b"b")],
        )),
    );
    let held: Vec<_> = f.held().iter().map(|e| e.zxid.counter()).collect();
    assert_eq!(held, vec![7, 8]);
    // Entry 40 is below the installed snapshot: skipped, not applied.
    f.skip_applied();
    assert_eq!((f.apply_lid(), f.stats().skipped_applied), (41, 1));
}

#[test]
fn a_voter_of_three_commits_what_it_holds_without_the_commit() {
    let two_entries = |f: &mut FollowerLane| {
        let gap = prepare_msg(1, 1, 0, &[prep(2, 0, 0, 2, 11, b"b")]);
        f.handle(T0, &msg(&gap));
        assert!(
            f.next_apply().is_none(),
            "lid 0 is missing: nothing after it counts"
        );
        let first = prepare_msg(2, 0, 0, &[prep(1, 0, 0, 1, 10, b"a")]);
        f.handle(T0, &msg(&first));
    };
    let mut voter = follower();
    voter.commit_on_receipt(true);
    two_entries(&mut voter);
    assert_eq!(
        apply_all(&mut voter),
        vec![(0, Zxid::new(1, 1)), (1, Zxid::new(1, 2))]
    );
    // A learner, or a member of five (the leader and it are no quorum),
    // waits for the leader's Commit.
    let mut learner = follower();
    learner.commit_on_receipt(false);
    two_entries(&mut learner);
    assert!(learner.next_apply().is_none());
    let mut of_five = FollowerLane::new(cfg(ME, &[0, 1, 2, 3, 4])).unwrap();
    of_five.commit_on_receipt(true);
    two_entries(&mut of_five);
    assert!(of_five.next_apply().is_none());
    of_five.handle(T0, &msg(&commit_msg(1, 0, 2)));
    assert_eq!(apply_all(&mut of_five).len(), 2);
}
