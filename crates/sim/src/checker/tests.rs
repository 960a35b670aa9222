//! Each checker, fed a hand-made history, flags exactly what is wrong.

use super::*;
use crate::history::*;
use rzab_proto::Time;

fn sid(node: u8) -> SessionId {
    SessionId {
        node,
        lane: 0,
        index: 0,
    }
}

fn applied(zxid: u64, seq: u32, key: u64) -> Applied {
    Applied {
        zxid,
        session: sid(1),
        seq,
        key,
        op: Op::Put,
        tag: 100 + seq as u64,
    }
}

fn write(seq: u32, key: u64, completed: Option<u64>) -> WriteRec {
    WriteRec {
        session: sid(1),
        seq,
        key,
        op: Op::Put,
        tag: 100 + seq as u64,
        issued_at: Time(0),
        completed: completed.map(|z| (Time(1), z)),
    }
}

/// Session 1 wrote seq 1 (key 7) and seq 2 (key 8), both applied everywhere.
fn good() -> History {
    let seq = vec![applied(1, 1, 7), applied(2, 2, 8)];
    let mut h = History {
        writes: vec![write(1, 7, Some(1)), write(2, 8, Some(2))],
        applied: vec![seq.clone(), seq],
        ..History::default()
    };
    h.session_ops(sid(1))
        .extend([SessionOp::Write(0), SessionOp::Write(1)]);
    h
}

fn read(h: &mut History, key: u64, zxid: u64, tag: u64, applied: usize) {
    let i = h.reads.len();
    h.reads.push(ReadRec {
        session: sid(1),
        key,
        zxid,
        tag,
        applied,
        at: Time(2),
    });
    h.session_ops(sid(1)).push(SessionOp::Read(i));
}

#[test]
fn a_good_history_passes_every_check() {
    let mut h = good();
    read(&mut h, 7, 1, 101, 2);
    read(&mut h, 9, 0, 0, 2);
    assert_eq!(check_all(&h, Time(5)), vec![]);
}

#[test]
fn diverging_replicas_break_agreement() {
    let mut h = good();
    h.applied[1].swap(0, 1);
    let out = agreement(&h);
    assert!(out.iter().any(|v| v.detail.contains("at position 0")), "{out:?}");
    assert!(
        out.iter().any(|v| v.detail.contains("not dense")),
        "the swapped order is also out of id order"
    );
    let mut h = good();
    h.applied[0][1].zxid = 3;
    h.applied[1][1].zxid = 3;
    assert!(agreement(&h)[0].detail.contains("not dense"));
}

#[test]
fn a_lagging_prefix_is_agreement() {
    let mut h = good();
    h.applied[1].pop();
    assert_eq!(agreement(&h), vec![]);
}

#[test]
fn an_invented_or_doubled_write_breaks_validity() {
    let mut h = good();
    for a in &mut h.applied {
        a.push(Applied { zxid: 3, ..a[0] });
    }
    let out = validity(&h);
    assert!(out.iter().any(|v| v.detail.contains("more than once")), "{out:?}");
    let mut h = good();
    h.writes.pop();
    assert!(validity(&h)[0].detail.contains("never issued"));
}

#[test]
fn a_completed_write_missing_from_the_sequence_breaks_completion() {
    let mut h = good();
    h.writes[1].completed = Some((Time(1), 9));
    assert_eq!(completion(&h).len(), 1);
}

#[test]
fn reading_an_older_value_than_own_write_is_caught() {
    let mut h = good();
    // After its write to key 7 (zxid 1) completed, the session reads key 7 absent.
    read(&mut h, 7, 0, 0, 2);
    let out = sessions(&h);
    assert_eq!(
        out.len(),
        2,
        "older than observed, and not its node's state: {out:?}"
    );
}

#[test]
fn reads_going_backwards_across_keys_are_caught() {
    let mut h = History {
        writes: vec![write(1, 7, None), write(2, 8, None)],
        ..good()
    };
    h.sessions.clear();
    // Key 8 at zxid 2 (prefix >= 2), then key 7 absent (valid only for prefix 0).
    read(&mut h, 8, 2, 102, 2);
    read(&mut h, 7, 0, 0, 0);
    assert_eq!(sessions(&h).len(), 1);
}

#[test]
fn a_read_of_a_value_never_written_is_caught() {
    let mut h = good();
    read(&mut h, 7, 1, 999, 2);
    assert!(sessions(&h)[0].detail.contains("no such write"));
}

#[test]
fn pending_writes_break_liveness() {
    let mut h = good();
    h.writes[1].completed = None;
    assert_eq!(liveness(&h, Time(9)).len(), 1);
}
