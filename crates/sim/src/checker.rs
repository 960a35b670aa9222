//! The checkers run after every simulation: agreement, validity, completion,
//! session guarantees of reads, at most one leader per epoch, and liveness.
//! Each returns violations as sentences naming what broke, so a failing
//! seed is a bug report.

use crate::history::{Applied, History, SessionOp};
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

/// The one sequence every node's applies must follow: every applied write,
/// by id. Two different writes applied under one id break agreement.
pub fn sequence(h: &History) -> (Vec<Applied>, Vec<Violation>) {
    let mut by_id: BTreeMap<u64, (Applied, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, inc) in h.incarnations.iter().enumerate() {
        for a in &inc.applied {
            match by_id.get(&a.zxid) {
                Some((b, j)) if b != a => out.push(v(
                    "agreement",
                    format!(
                        "id {:#x} applied as {a:?} by node {} but as {b:?} by node {}",
                        a.zxid, inc.node, h.incarnations[*j].node
                    ),
                )),
                Some(_) => {}
                None => {
                    by_id.insert(a.zxid, (*a, i));
                }
            }
        }
    }
    (by_id.into_values().map(|(a, _)| a).collect(), out)
}

/// Every incarnation applied exactly a run of the sequence from its base:
/// nothing skipped that another applied, nothing extra, in order.
pub fn agreement(h: &History, seq: &[Applied]) -> Vec<Violation> {
    let mut out = Vec::new();
    for inc in &h.incarnations {
        let start = seq.partition_point(|a| a.zxid <= inc.base);
        let expected = &seq[start..(start + inc.applied.len()).min(seq.len())];
        if let Some(i) = inc.applied.iter().zip(expected).position(|(a, b)| a != b) {
            out.push(v(
                "agreement",
                format!(
                    "node {} (life {}) applied {:#x} where the sequence has {:#x}: it skipped or reordered writes",
                    inc.node, inc.inc, inc.applied[i].zxid, expected[i].zxid
                ),
            ));
        }
    }
    out
}

/// Every applied write was issued by a session with those contents, once.
pub fn validity(h: &History, seq: &[Applied]) -> Vec<Violation> {
    let mut issued: BTreeMap<(u8, u8, u32, u64), Vec<usize>> = BTreeMap::new();
    for (i, w) in h.writes.iter().enumerate() {
        issued
            .entry((w.session.node, w.session.lane, w.session.index, w.seq))
            .or_default()
            .push(i);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for a in seq {
        let key = (a.origin, a.lane, a.session, a.seq);
        let candidates = issued.get(&key).map_or(&[][..], |v| &v[..]);
        let matches = candidates.iter().any(|&i| {
            let w = &h.writes[i];
            (w.key, w.op, w.tag) == (a.key, a.op, a.tag)
        });
        if !matches {
            out.push(v("validity", format!("applied {a:?} matches no issued write")));
        }
        if !seen.insert(key) {
            out.push(v(
                "validity",
                format!("session write {key:?} applied twice (again as {:#x})", a.zxid),
            ));
        }
    }
    out
}

/// Every write acknowledged to its session is in the sequence with the id it
/// was given, in the session's order.
pub fn completion(h: &History, seq: &[Applied]) -> Vec<Violation> {
    let pos: BTreeMap<u64, usize> = seq.iter().enumerate().map(|(i, a)| (a.zxid, i)).collect();
    let mut out = Vec::new();
    for (id, ops) in &h.sessions {
        let mut last = None;
        for op in ops {
            let SessionOp::Write(i) = *op else { continue };
            let w = &h.writes[i];
            let Some((_, zxid)) = w.completed else { continue };
            match pos.get(&zxid) {
                Some(&p)
                    if (seq[p].key, seq[p].op, seq[p].tag, seq[p].seq) == (w.key, w.op, w.tag, w.seq) =>
                {
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

/// Reads: each returns the latest write to its key in the prefix its node
/// had applied, and sessions never see an older prefix than they observed
/// (their own completed writes included: read-your-writes, monotonic reads).
pub fn sessions(h: &History, seq: &[Applied]) -> Vec<Violation> {
    let pos: BTreeMap<u64, usize> = seq.iter().enumerate().map(|(i, a)| (a.zxid, i)).collect();
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, a) in seq.iter().enumerate().filter(|(_, a)| a.op != Op::Bind) {
        by_key.entry(a.key).or_default().push(i);
    }
    let mut out = Vec::new();
    for (id, ops) in &h.sessions {
        let mut observed = 0;
        for op in ops {
            match *op {
                SessionOp::Write(i) => {
                    if let Some(p) = h.writes[i].completed.and_then(|(_, z)| pos.get(&z)) {
                        observed = observed.max(p + 1);
                    }
                }
                SessionOp::Read(i) => {
                    let r = &h.reads[i];
                    let prefix = seq.partition_point(|a| a.zxid <= r.gate);
                    let latest = by_key
                        .get(&r.key)
                        .and_then(|ps| ps[..ps.partition_point(|&p| p < prefix)].last());
                    let ok = match latest.map(|&p| &seq[p]) {
                        None => r.tag == 0,
                        Some(a) if a.op == Op::Delete => r.tag == 0 && (r.zxid == a.zxid || r.zxid == 0),
                        Some(a) => (r.zxid, r.tag) == (a.zxid, a.tag),
                    };
                    if !ok {
                        out.push(v(
                            "session",
                            format!("{id:?} read {r:?}: not key {}'s value after the {prefix} writes its node applied", r.key),
                        ));
                    }
                    if prefix < observed {
                        out.push(v(
                            "session",
                            format!(
                                "{id:?} read key {} at a prefix of {prefix} writes after observing {observed}: \
                                 it went back in time",
                                r.key
                            ),
                        ));
                    }
                    observed = observed.max(prefix);
                }
            }
        }
    }
    out
}

/// Bindings: once a session's `Bind` is in the order, no write of its older
/// generations follows it; once a fence is, no write of the generation it
/// names follows it; and no write its node reported not applied is in the
/// order at all.
pub fn fences(h: &History, seq: &[Applied]) -> Vec<Violation> {
    let failed: BTreeSet<(u8, u8, u32, u64)> = h
        .writes
        .iter()
        .filter(|w| w.failed)
        .map(|w| (w.session.node, w.session.lane, w.session.index, w.seq))
        .collect();
    let mut closed: BTreeMap<(u8, u8, u32), u64> = BTreeMap::new();
    let mut owners: BTreeMap<(u8, u8, u32), u64> = BTreeMap::new();
    let mut out = Vec::new();
    for a in seq {
        let session = (a.origin, a.lane, a.session);
        if let Some(&c) = closed.get(&session).filter(|&&c| a.seq <= c) {
            out.push(v(
                "fence",
                format!("{a:?} follows a Bind or fence that closed its session up to seq {c:#x}"),
            ));
        }
        if failed.contains(&(a.origin, a.lane, a.session, a.seq)) {
            out.push(v("fence", format!("{a:?} was reported not applied, and applied")));
        }
        if a.op != Op::Bind {
            continue;
        }
        let older = closed.entry(session).or_default();
        *older = (*older).max(a.seq.saturating_sub(1));
        if let Some((node, s, generation)) = a.fence {
            let named = (node, a.lane, s);
            if a.owner == 0 || owners.get(&named) != Some(&a.owner) {
                out.push(v(
                    "fence",
                    format!(
                        "{a:?} fenced a binding of another client session ({:?})",
                        owners.get(&named)
                    ),
                ));
            }
            let fenced = closed.entry(named).or_default();
            *fenced = (*fenced).max(rzab_wire::gen_end(generation));
        }
        owners.insert(session, a.owner);
    }
    out
}

/// At most one node led each epoch.
pub fn one_leader_per_epoch(h: &History) -> Vec<Violation> {
    let mut by_epoch: BTreeMap<u32, BTreeSet<u8>> = BTreeMap::new();
    for &(e, n) in &h.leaderships {
        by_epoch.entry(e).or_default().insert(n);
    }
    by_epoch
        .into_iter()
        .filter(|(_, ns)| ns.len() > 1)
        .map(|(e, ns)| v("leaders", format!("epoch {e} had leaders {ns:?}")))
        .collect()
}

/// Every write of a session still alive completed.
pub fn liveness(h: &History, end: rzab_proto::Time) -> Vec<Violation> {
    let pending: Vec<_> = h
        .writes
        .iter()
        .filter(|w| w.completed.is_none() && !w.abandoned && !w.failed)
        .collect();
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
    let (seq, mut out) = sequence(h);
    out.extend(agreement(h, &seq));
    out.extend(validity(h, &seq));
    out.extend(completion(h, &seq));
    out.extend(fences(h, &seq));
    out.extend(one_leader_per_epoch(h));
    if out.is_empty() {
        // Read checks assume one sequence; skip them when that already failed.
        out.extend(sessions(h, &seq));
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
