//! Closed-loop sessions: each has at most one write outstanding, and reads
//! never block. In verify mode a session checks its own guarantees.

use rzab_proto::Time;
use rzab_wire::{gen_start, seq_gen};
use std::collections::HashMap;

/// A write a session has issued and not yet seen applied at its node.
#[derive(Clone, Copy, Debug)]
pub struct PendingWrite {
    pub seq: u64,
    pub key: u64,
    pub issued_at: Time,
    /// Accepted by the lane (false: the lane was full, retry next turn).
    pub submitted: bool,
    /// A `Bind` opening a new generation (no write of the workload).
    pub bind: bool,
}

/// Violations of session guarantees seen by verify mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violations {
    /// A read returned an older version of a key than the session had seen.
    pub monotonic_reads: u64,
    /// A read returned a version older than the session's own completed write.
    pub read_your_writes: u64,
    /// A read returned bytes that are no whole value of that key.
    pub bad_values: u64,
    /// A completion did not match the session's pending write.
    pub completions: u64,
}

impl Violations {
    pub fn total(&self) -> u64 {
        self.monotonic_reads + self.read_your_writes + self.bad_values + self.completions
    }

    pub fn add(&mut self, o: &Violations) {
        self.monotonic_reads += o.monotonic_reads;
        self.read_your_writes += o.read_your_writes;
        self.bad_values += o.bad_values;
        self.completions += o.completions;
    }
}

#[derive(Debug, Default)]
pub struct Session {
    /// Seq of the last write issued (the first write is 1).
    pub seq: u64,
    pub pending: Option<PendingWrite>,
    pub writes_issued: u64,
    pub writes_completed: u64,
    /// The next write is a `Bind`: the session's node restarted, and a
    /// write of its last life may still be on its way to the leader.
    pub must_bind: bool,
    /// Verify mode: per key, the newest zxid this session read or wrote and
    /// whether it came from its own write.
    seen: Option<HashMap<u64, (u64, bool)>>,
}

impl Session {
    pub fn new(verify: bool) -> Session {
        Session {
            seen: verify.then(HashMap::new),
            ..Session::default()
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts the next write; returns its seq.
    pub fn start_write(&mut self, key: u64, now: Time) -> u64 {
        debug_assert!(self.pending.is_none());
        self.seq = self.seq.wrapping_add(1);
        self.writes_issued += 1;
        self.pending = Some(PendingWrite {
            seq: self.seq,
            key,
            issued_at: now,
            submitted: false,
            bind: false,
        });
        self.seq
    }

    /// Opens the session's next generation: what its last life left on the
    /// way can then never be sequenced after its new writes.
    pub fn start_bind(&mut self, now: Time) {
        debug_assert!(self.pending.is_none());
        self.must_bind = false;
        self.seq = gen_start(seq_gen(self.seq) + 1);
        self.pending = Some(PendingWrite {
            seq: self.seq,
            key: 0,
            issued_at: now,
            submitted: false,
            bind: true,
        });
    }

    /// The session's write `seq` was applied at its node with id `zxid`.
    /// Returns its issue time, or `None` if it was not the pending write or
    /// was a Bind (which no one measures).
    pub fn complete(&mut self, seq: u64, zxid: u64, v: &mut Violations) -> Option<Time> {
        let Some(p) = self.pending.filter(|p| p.seq == seq && p.submitted) else {
            v.completions += 1;
            return None;
        };
        self.pending = None;
        if p.bind {
            return None;
        }
        self.writes_completed += 1;
        if let Some(seen) = self.seen.as_mut() {
            let e = seen.entry(p.key).or_insert((0, true));
            if zxid >= e.0 {
                *e = (zxid, true);
            }
        }
        Some(p.issued_at)
    }

    /// Verify mode: a read of `key` returned the version written by `zxid`.
    pub fn observe_read(&mut self, key: u64, zxid: u64, v: &mut Violations) {
        let Some(seen) = self.seen.as_mut() else { return };
        let e = seen.entry(key).or_insert((0, false));
        if zxid < e.0 {
            if e.1 {
                v.read_your_writes += 1;
            } else {
                v.monotonic_reads += 1;
            }
        } else {
            *e = (zxid, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarantees_are_checked() {
        let mut v = Violations::default();
        let mut s = Session::new(true);
        let seq = s.start_write(5, Time(1));
        assert!(s.is_blocked());
        assert_eq!(s.complete(seq, 10, &mut v), None, "not yet submitted");
        s.pending.as_mut().unwrap().submitted = true;
        assert_eq!(s.complete(seq + 1, 10, &mut v), None, "wrong seq");
        assert_eq!(s.complete(seq, 10, &mut v), Some(Time(1)));
        assert_eq!(v.completions, 2);
        s.observe_read(5, 9, &mut v);
        assert_eq!(v.read_your_writes, 1, "older than own write");
        s.observe_read(5, 12, &mut v);
        s.observe_read(5, 11, &mut v);
        assert_eq!(v.monotonic_reads, 1, "went backwards");
        s.observe_read(6, 0, &mut v);
        assert_eq!(v.total(), 4, "two bad completions, one of each read violation");
    }

    #[test]
    fn a_bind_opens_the_next_generation_and_counts_as_no_write() {
        let mut v = Violations::default();
        let mut s = Session::new(true);
        s.seq = 41;
        s.must_bind = true;
        s.start_bind(Time(1));
        assert!(!s.must_bind && s.is_blocked());
        assert_eq!(s.seq, gen_start(1));
        s.pending.as_mut().unwrap().submitted = true;
        assert_eq!(s.complete(gen_start(1), 50, &mut v), None, "no write latency");
        assert!(!s.is_blocked());
        assert_eq!((s.writes_issued, s.writes_completed, v.total()), (0, 0, 0));
        let seq = s.start_write(3, Time(2));
        assert_eq!(seq, gen_start(1) + 1, "writes go on in the new generation");
    }
}
