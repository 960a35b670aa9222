//! The leader's record of each session's last sequenced write, so that a
//! write retransmitted by a follower is given an id exactly once.

use crate::MAX_NODES;
use rzab_wire::NodeId;

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
    last: Vec<u32>,
}

impl SessionTable {
    pub fn new(max_sessions: u32) -> Self {
        SessionTable {
            max_sessions,
            last: vec![0; MAX_NODES * max_sessions as usize],
        }
    }

    fn index(&self, origin: NodeId, session: u32) -> Option<usize> {
        ((origin as usize) < MAX_NODES && session < self.max_sessions)
            .then(|| origin as usize * self.max_sessions as usize + session as usize)
    }

    /// Classifies `seq`; `None` if the session id is out of range.
    pub fn check(&self, origin: NodeId, session: u32, seq: u32) -> Option<SeqCheck> {
        let last = self.last[self.index(origin, session)?];
        Some(if seq == last.wrapping_add(1) {
            SeqCheck::Next
        } else if (last.wrapping_sub(seq) as i32) >= 0 {
            SeqCheck::Duplicate
        } else {
            SeqCheck::Gap
        })
    }

    /// Sets a session's last sequenced write (loading recovered state).
    pub fn set(&mut self, origin: NodeId, session: u32, seq: u32) {
        if let Some(i) = self.index(origin, session) {
            self.last[i] = seq;
        }
    }

    pub fn record(&mut self, origin: NodeId, session: u32, seq: u32) {
        if let Some(i) = self.index(origin, session) {
            debug_assert_eq!(seq, self.last[i].wrapping_add(1));
            self.last[i] = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_duplicate_gap() {
        let mut t = SessionTable::new(4);
        assert_eq!(t.check(1, 0, 1), Some(SeqCheck::Next));
        t.record(1, 0, 1);
        assert_eq!(t.check(1, 0, 1), Some(SeqCheck::Duplicate));
        assert_eq!(t.check(1, 0, 3), Some(SeqCheck::Gap));
        assert_eq!(t.check(1, 0, 2), Some(SeqCheck::Next));
        assert_eq!(t.check(2, 0, 1), Some(SeqCheck::Next), "sessions are per origin");
        assert_eq!(t.check(1, 4, 1), None, "session id out of range");
        assert_eq!(t.check(200, 0, 1), None, "node id out of range");
    }
}
