//! Each checker, fed a hand-made history, flags exactly what is wrong.

use super::*;
use crate::history::*;
use rzab_proto::Time;

fn sid(node: u8) -> SessionId {
    SessionId {
        node,
        lane: 0,
        index: 0,
        inc: 0,
    }
}

fn applied(zxid: u64, seq: u64, key: u64) -> Applied {
    Applied {
        zxid,
        origin: 1,
        lane: 0,
        session: 0,
        seq,
        key,
        op: Op::Put,
        tag: 100 + seq,
        fence: None,
        owner: 0,
    }
}

fn write(seq: u64, key: u64, completed: Option<u64>) -> WriteRec {
    WriteRec {
        session: sid(1),
        seq,
        key,
        op: Op::Put,
        tag: 100 + seq,
        issued_at: Time(0),
        completed: completed.map(|z| (Time(1), z)),
        abandoned: false,
        failed: false,
    }
}

fn life(node: u8, inc: u32, base: u64, applied: Vec<Applied>) -> Incarnation {
    Incarnation {
        node,
        inc,
        base,
        applied,
    }
}

/// Session 1 wrote seq 1 (key 7) and seq 2 (key 8), both applied by nodes 0 and 1.
fn good() -> History {
    let seq = vec![applied(1, 1, 7), applied(2, 2, 8)];
    let mut h = History {
        writes: vec![write(1, 7, Some(1)), write(2, 8, Some(2))],
        incarnations: vec![life(0, 0, 0, seq.clone()), life(1, 0, 0, seq)],
        leaderships: vec![(1, 0)],
        ..History::default()
    };
    h.session_ops(sid(1))
        .extend([SessionOp::Write(0), SessionOp::Write(1)]);
    h
}

fn read(h: &mut History, key: u64, zxid: u64, tag: u64, gate: u64) {
    let i = h.reads.len();
    h.reads.push(ReadRec {
        session: sid(1),
        key,
        zxid,
        tag,
        gate,
        at: Time(2),
    });
    h.session_ops(sid(1)).push(SessionOp::Read(i));
}

fn all(h: &History) -> Vec<Violation> {
    check_all(h, Time(5))
}

#[test]
fn a_good_history_passes_every_check() {
    let mut h = good();
    read(&mut h, 7, 1, 101, 2);
    read(&mut h, 9, 0, 0, 2);
    assert_eq!(all(&h), vec![]);
}

#[test]
fn two_writes_under_one_id_break_agreement() {
    let mut h = good();
    h.incarnations[1].applied[1].tag = 555;
    let (_, out) = sequence(&h);
    assert!(out[0].detail.contains("applied as"), "{out:?}");
}

#[test]
fn skipping_or_reordering_breaks_agreement() {
    let mut h = good();
    h.incarnations[1].applied.swap(0, 1);
    let (seq, _) = sequence(&h);
    assert!(agreement(&h, &seq)[0].detail.contains("skipped or reordered"));
    let mut h = good();
    h.incarnations[1].applied.remove(0);
    let (seq, _) = sequence(&h);
    assert_eq!(agreement(&h, &seq).len(), 1, "node 1 skipped id 1");
}

#[test]
fn a_lagging_prefix_and_a_later_life_from_a_snapshot_are_agreement() {
    let mut h = good();
    h.incarnations[1].applied.pop();
    // Node 2 restarted, installed a snapshot at id 1, then applied id 2.
    h.incarnations.push(life(2, 1, 1, vec![applied(2, 2, 8)]));
    let (seq, out) = sequence(&h);
    assert_eq!(out, vec![]);
    assert_eq!(agreement(&h, &seq), vec![]);
}

#[test]
fn an_invented_or_doubled_write_breaks_validity() {
    let mut h = good();
    for inc in &mut h.incarnations {
        let again = Applied {
            zxid: 3,
            ..inc.applied[0]
        };
        inc.applied.push(again);
    }
    let (seq, _) = sequence(&h);
    assert!(
        validity(&h, &seq)
            .iter()
            .any(|v| v.detail.contains("applied twice"))
    );
    let mut h = good();
    h.writes.pop();
    let (seq, _) = sequence(&h);
    assert!(validity(&h, &seq)[0].detail.contains("matches no issued write"));
}

#[test]
fn a_completed_write_missing_from_the_sequence_breaks_completion() {
    let mut h = good();
    h.writes[1].completed = Some((Time(1), 9));
    let (seq, _) = sequence(&h);
    assert_eq!(completion(&h, &seq).len(), 1);
}

#[test]
fn an_acknowledged_write_lost_by_a_new_epoch_is_caught() {
    // Write 2 completed as id 2, but the surviving nodes' history has
    // another write there after a leader change.
    let mut h = good();
    let other = Applied {
        zxid: 2,
        seq: 3,
        tag: 103,
        ..applied(2, 3, 8)
    };
    h.incarnations[0].applied[1] = other;
    h.incarnations[1].applied[1] = other;
    h.writes.push(write(3, 8, None));
    let out = all(&h);
    assert!(out.iter().any(|v| v.check == "completion"), "{out:?}");
}

#[test]
fn reading_an_older_value_than_own_write_is_caught() {
    let mut h = good();
    // After its write to key 7 (id 1) completed, the session reads key 7
    // absent at a node that had applied nothing.
    read(&mut h, 7, 0, 0, 0);
    let out = sessions(&h, &sequence(&h).0);
    assert_eq!(out.len(), 1, "older than observed: {out:?}");
    let mut h = good();
    // The node had applied id 1 yet returned the key absent.
    read(&mut h, 7, 0, 0, 1);
    let out = sessions(&h, &sequence(&h).0);
    assert!(out[0].detail.contains("not key 7's value"), "{out:?}");
}

#[test]
fn reads_going_backwards_across_keys_are_caught() {
    let mut h = History {
        writes: vec![write(1, 7, None), write(2, 8, None)],
        ..good()
    };
    h.sessions.clear();
    // Key 8 at id 2 (prefix 2), then key 7 absent (valid only for prefix 0).
    read(&mut h, 8, 2, 102, 2);
    read(&mut h, 7, 0, 0, 0);
    assert_eq!(sessions(&h, &sequence(&h).0).len(), 1);
}

#[test]
fn a_read_of_a_value_never_written_is_caught() {
    let mut h = good();
    read(&mut h, 7, 1, 999, 2);
    assert_eq!(sessions(&h, &sequence(&h).0).len(), 1);
}

#[test]
fn two_leaders_in_one_epoch_are_caught() {
    let mut h = good();
    h.leaderships.extend([(2, 1), (2, 2), (3, 2)]);
    let out = one_leader_per_epoch(&h);
    assert_eq!(out.len(), 1);
    assert!(out[0].detail.contains("epoch 2"));
}

#[test]
fn pending_writes_break_liveness_unless_abandoned() {
    let mut h = good();
    h.writes[1].completed = None;
    assert_eq!(liveness(&h, Time(9)).len(), 1);
    h.writes[1].abandoned = true;
    assert_eq!(liveness(&h, Time(9)), vec![]);
}

fn bind(zxid: u64, origin: u8, generation: u64, fence: Option<(u8, u32, u64)>) -> Applied {
    Applied {
        origin,
        op: Op::Bind,
        key: 0,
        tag: 0,
        fence,
        owner: 1,
        ..applied(zxid, rzab_wire::gen_start(generation), 0)
    }
}

#[test]
fn writes_of_a_closed_binding_after_its_bind_or_fence_are_caught() {
    let g = rzab_wire::gen_start;
    let h = History::default();
    // Node 1's session binds generation 1 and writes; node 2's session
    // fences that generation; node 1's binding then writes again.
    let mut seq = vec![
        bind(1, 1, 1, None),
        applied(2, g(1) + 1, 7),
        bind(3, 2, 1, Some((1, 0, 1))),
    ];
    assert!(fences(&h, &seq).is_empty(), "in order: fine");
    seq.push(applied(4, g(1) + 2, 7));
    assert_eq!(
        fences(&h, &seq).len(),
        1,
        "a fenced generation's write after its fence"
    );
    // A newer generation's Bind closes the older ones of its own session.
    let seq = vec![bind(1, 1, 1, None), bind(2, 1, 2, None), applied(3, g(1) + 1, 7)];
    assert_eq!(
        fences(&h, &seq).len(),
        1,
        "an older generation's write after a Bind"
    );
    // A write its node reported not applied must not be there.
    let mut h = History::default();
    let mut w = write(g(1) + 1, 7, None);
    w.failed = true;
    h.writes.push(w);
    let seq = vec![bind(1, 1, 1, None), applied(2, g(1) + 1, 7)];
    let found = fences(&h, &seq);
    assert!(
        found.len() == 1 && found[0].detail.contains("reported not applied"),
        "{found:?}"
    );
}

#[test]
fn a_fence_honoured_across_client_sessions_is_caught() {
    let h = History::default();
    let owned = |a: Applied, owner| Applied { owner, ..a };
    let seq = vec![
        owned(bind(1, 1, 1, None), 5),
        owned(bind(2, 2, 1, Some((1, 0, 1))), 5),
    ];
    assert!(fences(&h, &seq).is_empty(), "the same client session");
    let seq = vec![
        owned(bind(1, 1, 1, None), 5),
        owned(bind(2, 2, 1, Some((1, 0, 1))), 6),
    ];
    let found = fences(&h, &seq);
    assert!(
        found.len() == 1 && found[0].detail.contains("another client"),
        "{found:?}"
    );
    // A slot never bound, and a Bind fencing its own slot: checked against
    // the slot's owner before this Bind.
    let seq = vec![owned(bind(1, 2, 1, Some((1, 0, 1))), 5)];
    assert_eq!(fences(&h, &seq).len(), 1, "no binding to fence");
    let own = Applied {
        origin: 1,
        ..owned(bind(2, 1, 2, Some((1, 0, 1))), 6)
    };
    let seq = vec![owned(bind(1, 1, 1, None), 5), own];
    assert_eq!(fences(&h, &seq).len(), 1, "the slot was client 5's, not 6's");
    let seq = vec![owned(bind(1, 1, 1, None), 6), own];
    assert!(fences(&h, &seq).is_empty());
}
