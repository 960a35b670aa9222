//! The leader's record of each session's last sequenced write, so that a
//! write retransmitted by a follower is given an id exactly once, and of
//! the client session that owns each slot's binding (only it may fence it).

use crate::MAX_NODES;
use rzab_wire::{BindValue, Fence, NodeId, Op, gen_end, seq_counter, seq_gen};

/// How a write's session counter relates to the last one sequenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next write of the session: sequence it.
    Next,
    /// Already sequenced (a retransmission): ignore it.
    Duplicate,
    /// A later write arrived before an earlier one: drop it; the sender
    /// retransmits in order.
    Gap,
}

#[derive(Debug)]
pub struct SessionTable {
    max_sessions: u32,
    /// `last[origin * max_sessions + session]`: the last seq sequenced (0 = none).
    last: Vec<u64>,
    /// The client session that owns each session's binding (0: none).
    owner: Vec<u64>,
}

impl SessionTable {
    pub fn new(max_sessions: u32) -> Self {
        SessionTable {
            max_sessions,
            last: vec![0; MAX_NODES * max_sessions as usize],
            owner: vec![0; MAX_NODES * max_sessions as usize],
        }
    }

    fn index(&self, origin: NodeId, session: u32) -> Option<usize> {
        ((origin as usize) < MAX_NODES && session < self.max_sessions)
            .then(|| origin as usize * self.max_sessions as usize + session as usize)
    }

    /// Classifies `seq` (of a `Bind` if `bind`); `None` if the session id
    /// is out of range. Seqs of a generation are sequenced one after the
    /// other; only a `Bind` may jump, to the start of a later generation,
    /// and what the old one had not yet sequenced then never is.
    pub fn check(&self, origin: NodeId, session: u32, seq: u64, bind: bool) -> Option<SeqCheck> {
        let last = self.last[self.index(origin, session)?];
        Some(if seq <= last {
            SeqCheck::Duplicate
        } else if bind {
            if seq_gen(seq) > seq_gen(last) && seq_counter(seq) == 0 {
                SeqCheck::Next
            } else {
                SeqCheck::Gap
            }
        } else if seq == last + 1 && seq_counter(seq) != 0 {
            SeqCheck::Next
        } else {
            SeqCheck::Gap
        })
    }

    /// Sets a session's last sequenced write and its binding's owner
    /// (loading recovered state).
    pub fn set(&mut self, origin: NodeId, session: u32, seq: u64, owner: u64) {
        if let Some(i) = self.index(origin, session) {
            self.last[i] = seq;
            self.owner[i] = owner;
        }
    }

    /// The owner of the session's binding (0: none).
    pub fn owner(&self, origin: NodeId, session: u32) -> u64 {
        self.index(origin, session).map_or(0, |i| self.owner[i])
    }

    /// A `Bind` of `owner` was sequenced for the session.
    pub fn bound(&mut self, origin: NodeId, session: u32, owner: u64) {
        if let Some(i) = self.index(origin, session) {
            self.owner[i] = owner;
        }
    }

    pub fn record(&mut self, origin: NodeId, session: u32, seq: u64) {
        if let Some(i) = self.index(origin, session) {
            debug_assert!(seq > self.last[i]);
            self.last[i] = seq;
        }
    }

    /// Whether a Bind of `owner` may fence `f`: a binding the order has
    /// reached (a generation of a known session, not beyond its last
    /// sequenced write: a stale fence must not wedge a session still to
    /// bind it), owned by the same client session (one client cannot fence
    /// another's).
    pub fn can_fence(&self, f: &Fence, owner: u64) -> bool {
        self.index(f.node, f.session).is_some_and(|i| {
            f.generation >= 1 && f.generation <= seq_gen(self.last[i]) && owner != 0 && self.owner[i] == owner
        })
    }

    /// A `Bind` fenced off generation `f.generation` of another binding:
    /// none of its writes not yet sequenced will be.
    pub fn fence(&mut self, f: &Fence) {
        if let Some(i) = self.index(f.node, f.session) {
            self.last[i] = self.last[i].max(gen_end(f.generation));
        }
    }
}

/// A `Bind`'s value; `None` for other ops, or a malformed value (decoding
/// refuses one from the network; the leader refuses a local one with it).
pub fn bind_of(op: Op, value: &[u8]) -> Option<BindValue> {
    if op != Op::Bind {
        return None;
    }
    BindValue::decode(value).ok()
}

/// The fence a write carries: only a `Bind` may.
pub fn fence_of(op: Op, value: &[u8]) -> Option<Fence> {
    bind_of(op, value).and_then(|b| b.fence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_wire::gen_start;

    #[test]
    fn next_duplicate_gap() {
        let mut t = SessionTable::new(4);
        assert_eq!(t.check(1, 0, 1, false), Some(SeqCheck::Next));
        t.record(1, 0, 1);
        assert_eq!(t.check(1, 0, 1, false), Some(SeqCheck::Duplicate));
        assert_eq!(t.check(1, 0, 3, false), Some(SeqCheck::Gap));
        assert_eq!(t.check(1, 0, 2, false), Some(SeqCheck::Next));
        assert_eq!(
            t.check(2, 0, 1, false),
            Some(SeqCheck::Next),
            "sessions are per origin"
        );
        assert_eq!(t.check(1, 4, 1, false), None, "session id out of range");
        assert_eq!(t.check(200, 0, 1, false), None, "node id out of range");
    }

    #[test]
    fn a_bind_starts_a_later_generation_and_strands_the_old_tail() {
        let mut t = SessionTable::new(4);
        let g1 = gen_start(1);
        t.record(1, 0, g1);
        t.record(1, 0, g1 + 1);
        // g1 + 2 and g1 + 3 are still on their way when the slot is bound
        // again: the new generation's Bind may jump over them.
        assert_eq!(
            t.check(1, 0, gen_start(2) + 1, false),
            Some(SeqCheck::Gap),
            "no jump without a Bind"
        );
        assert_eq!(
            t.check(1, 0, gen_start(2) + 1, true),
            Some(SeqCheck::Gap),
            "a Bind opens at counter 0"
        );
        assert_eq!(t.check(1, 0, gen_start(1), true), Some(SeqCheck::Duplicate));
        assert_eq!(t.check(1, 0, gen_start(2), true), Some(SeqCheck::Next));
        t.record(1, 0, gen_start(2));
        assert_eq!(
            t.check(1, 0, g1 + 2, false),
            Some(SeqCheck::Duplicate),
            "the old tail never sequences"
        );
        assert_eq!(t.check(1, 0, gen_start(2) + 1, false), Some(SeqCheck::Next));
        assert_eq!(
            t.check(1, 0, gen_start(3), false),
            Some(SeqCheck::Gap),
            "counter 0 is a Bind's"
        );
    }

    #[test]
    fn a_fence_strands_exactly_the_named_generation() {
        let mut t = SessionTable::new(4);
        t.record(2, 1, gen_start(5));
        t.record(2, 1, gen_start(5) + 1);
        // A fence for an older generation changes nothing.
        t.fence(&Fence {
            node: 2,
            session: 1,
            generation: 4,
        });
        assert_eq!(t.check(2, 1, gen_start(5) + 2, false), Some(SeqCheck::Next));
        t.fence(&Fence {
            node: 2,
            session: 1,
            generation: 5,
        });
        assert_eq!(t.check(2, 1, gen_start(5) + 2, false), Some(SeqCheck::Duplicate));
        assert_eq!(
            t.check(2, 1, gen_start(6), true),
            Some(SeqCheck::Next),
            "the slot's next connection"
        );
        t.fence(&Fence {
            node: 9,
            session: 1,
            generation: 1,
        });
        t.fence(&Fence {
            node: 2,
            session: 99,
            generation: 1,
        });
        assert_eq!(
            t.check(9, 1, gen_start(1) + 1, false),
            Some(SeqCheck::Duplicate),
            "(9, 1) raised"
        );
        assert_eq!(
            t.check(2, 1, gen_start(6), true),
            Some(SeqCheck::Next),
            "(2, 1) untouched by the others"
        );
        let f = Fence {
            node: 1,
            session: 2,
            generation: 3,
        };
        let with = BindValue {
            owner: 1,
            fence: Some(f),
        }
        .to_vec();
        assert_eq!(fence_of(Op::Bind, &with), Some(f));
        assert_eq!(fence_of(Op::Sync, &with), None, "only a Bind carries a fence");
        let plain = BindValue {
            owner: 1,
            fence: None,
        }
        .to_vec();
        assert_eq!(fence_of(Op::Bind, &plain), None);
        assert_eq!(
            bind_of(Op::Bind, &plain),
            Some(BindValue {
                owner: 1,
                fence: None
            })
        );
        assert_eq!(bind_of(Op::Bind, &[1, 2]), None, "malformed");
        assert_eq!(bind_of(Op::Bind, &[]), None, "a Bind has an owner");
    }

    #[test]
    fn only_a_binding_the_order_reached_can_be_fenced() {
        let mut t = SessionTable::new(4);
        t.record(1, 2, gen_start(3));
        t.bound(1, 2, 55);
        let f = |generation| Fence {
            node: 1,
            session: 2,
            generation,
        };
        assert!(t.can_fence(&f(3), 55) && t.can_fence(&f(1), 55));
        assert!(!t.can_fence(&f(3), 56), "another client session's binding");
        assert!(!t.can_fence(&f(3), 0), "no owner");
        assert!(
            !t.can_fence(&f(4), 55),
            "not bound yet: a stale or forged fence would wedge it"
        );
        assert!(!t.can_fence(&f(0), 55), "generation 0 is the built-in sessions'");
        assert!(
            !t.can_fence(
                &Fence {
                    node: 1,
                    session: 9,
                    generation: 1
                },
                55
            ),
            "out of range"
        );
        t.set(1, 3, gen_start(2) + 4, 66);
        assert!(
            t.can_fence(&Fence { session: 3, ..f(2) }, 66),
            "loaded with its owner"
        );
    }
}
