//! The checkers run after every simulation: agreement, validity, completion,
//! session guarantees of reads, and liveness. Each returns violations as
//! sentences naming what broke, so a failing seed is a bug report.

use crate::history::{Applied, History, SessionId, SessionOp};
use rzab_proto::Op;
use std::collections::{BTreeMap, BTreeSet};

/// A broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

fn v(check: &'static str, detail: String) -> Violation {
    Violation { check, detail }
}

/// The longest applied sequence: the one every replica must be a prefix of.
pub fn longest(h: &History) -> &[Applied] {
    h.applied.iter().max_by_key(|a| a.len()).map_or(&[], |a| &a[..])
}

/// Every replica applied a prefix of one sequence, whose ids are dense and
/// increasing.
pub fn agreement(h: &History) -> Vec<Violation> {
    let seq = longest(h);
    let mut out = Vec::new();
    for (node, applied) in h.applied.iter().enumerate() {
        if let Some(i) = applied.iter().zip(seq).position(|(a, b)| a != b) {
            out.push(v(
                "agreement",
                format!(
                    "node {node} applied {:?} at position {i} where another applied {:?}",
                    applied[i], seq[i]
                ),
            ));
        }
    }
    for w in seq.windows(2) {
        if w[1].zxid != w[0].zxid + 1 {
            out.push(v(
                "agreement",
                format!("zxid {:#x} follows {:#x}: not dense", w[1].zxid, w[0].zxid),
            ));
            break;
        }
    }
    out
}

/// Every applied write was issued by a session, with its contents, exactly once.
pub fn validity(h: &History) -> Vec<Violation> {
    let issued: BTreeMap<(SessionId, u32), usize> = h
        .writes
        .iter()
        .enumerate()
        .map(|(i, w)| ((w.session, w.seq), i))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for a in longest(h) {
        match issued.get(&(a.session, a.seq)).map(|&i| &h.writes[i]) {
            None => out.push(v("validity", format!("applied {a:?} was never issued"))),
            Some(w) if (w.key, w.op, w.tag) != (a.key, a.op, a.tag) => out.push(v(
                "validity",
                format!("applied {a:?} differs from the issued {w:?}"),
            )),
            Some(_) => {}
        }
        if !seen.insert((a.session, a.seq)) {
            out.push(v(
                "validity",
                format!(
                    "{:?} write {} applied more than once (zxid {:#x})",
                    a.session, a.seq, a.zxid
                ),
            ));
        }
    }
    out
}

/// Every write acknowledged to its session is in the sequence with the id
/// the session was given, in the session's order.
pub fn completion(h: &History) -> Vec<Violation> {
    let pos: BTreeMap<u64, usize> = longest(h).iter().enumerate().map(|(i, a)| (a.zxid, i)).collect();
    let seq = longest(h);
    let mut out = Vec::new();
    for (id, ops) in &h.sessions {
        let mut last = None;
        for op in ops {
            let SessionOp::Write(i) = *op else { continue };
            let w = &h.writes[i];
            let Some((_, zxid)) = w.completed else { continue };
            match pos.get(&zxid) {
                Some(&p) if seq[p].session == w.session && seq[p].seq == w.seq => {
                    if last.is_some_and(|l| p < l) {
                        out.push(v(
                            "completion",
                            format!("{id:?} write {} ordered before its predecessor", w.seq),
                        ));
                    }
                    last = Some(p);
                }
                _ => out.push(v(
                    "completion",
                    format!("{id:?} write {} completed as {zxid:#x} but is not there", w.seq),
                )),
            }
        }
    }
    out
}

/// Reads: each returns the latest write to its key at some prefix of the
/// sequence that is no older than what the session already observed (its
/// own completed writes included: read-your-writes, monotonic reads), and
/// that prefix is the one its node had applied.
pub fn sessions(h: &History) -> Vec<Violation> {
    let seq = longest(h);
    let pos: BTreeMap<u64, usize> = seq.iter().enumerate().map(|(i, a)| (a.zxid, i)).collect();
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, a) in seq.iter().enumerate() {
        by_key.entry(a.key).or_default().push(i);
    }
    // The first write to `key` at or after `from` (or the sequence's end).
    let next_write = |key: u64, from: usize| {
        let ps = by_key.get(&key).map_or(&[][..], |v| &v[..]);
        ps.get(ps.partition_point(|&p| p < from))
            .copied()
            .unwrap_or(seq.len())
    };
    let mut out = Vec::new();
    for (id, ops) in &h.sessions {
        let mut observed = 0; // a prefix length the session has certainly seen
        for op in ops {
            match *op {
                SessionOp::Write(i) => {
                    if let Some(p) = h.writes[i].completed.and_then(|(_, z)| pos.get(&z)) {
                        observed = observed.max(p + 1);
                    }
                }
                SessionOp::Read(i) => {
                    let r = &h.reads[i];
                    let at = if r.zxid == 0 {
                        None
                    } else {
                        match pos.get(&r.zxid) {
                            Some(&p) if seq[p].key == r.key && seq[p].tag == r.tag => Some(p),
                            _ => {
                                out.push(v(
                                    "session",
                                    format!("{id:?} read {r:?}: no such write to that key"),
                                ));
                                continue;
                            }
                        }
                    };
                    let from = at.map_or(0, |p| p + 1);
                    let until = next_write(r.key, from);
                    if until < observed {
                        out.push(v(
                            "session",
                            format!(
                                "{id:?} read key {} = {:#x}, older than the prefix {observed} it had observed \
                                 (valid up to {until})",
                                r.key, r.zxid
                            ),
                        ));
                    }
                    if r.applied < from || r.applied > until {
                        out.push(v(
                            "session",
                            format!(
                                "{id:?} read {r:?} is not the state of the {} writes its node applied",
                                r.applied
                            ),
                        ));
                    }
                    observed = observed.max(from);
                }
            }
        }
    }
    out
}

/// Every write completed (checked after faults stopped for long enough).
pub fn liveness(h: &History, end: rzab_proto::Time) -> Vec<Violation> {
    let pending: Vec<_> = h.writes.iter().filter(|w| w.completed.is_none()).collect();
    match pending.first() {
        None => Vec::new(),
        Some(w) => vec![v(
            "liveness",
            format!(
                "{} writes still pending at {} ms, e.g. {:?} write {} issued at {} ms",
                pending.len(),
                end.0 / 1_000_000,
                w.session,
                w.seq,
                w.issued_at.0 / 1_000_000
            ),
        )],
    }
}

/// All checks, in the order their failures explain each other.
pub fn check_all(h: &History, end: rzab_proto::Time) -> Vec<Violation> {
    let mut out = agreement(h);
    out.extend(validity(h));
    out.extend(completion(h));
    if out.is_empty() {
        // Read checks assume one sequence; skip them when that already failed.
        out.extend(sessions(h));
    }
    out.extend(liveness(h, end));
    out
}

/// Deletes carry no value: their tag is 0, like the initial absence.
pub fn tag_of(op: Op, tag: u64) -> u64 {
    if op == Op::Delete { 0 } else { tag }
}

#[cfg(test)]
mod tests;
