//! What happened in a run, recorded for the checkers: every write a session
//! issued, every read and what it returned, and every node's applied sequence.

use rzab_proto::{NodeId, Op, Time};

/// A session is named by its node, lane and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub node: NodeId,
    pub lane: u8,
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRec {
    pub session: SessionId,
    pub seq: u32,
    pub key: u64,
    pub op: Op,
    /// The value's identity (0 for a delete).
    pub tag: u64,
    pub issued_at: Time,
    /// When the session saw it applied at its node, and the id it got.
    pub completed: Option<(Time, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRec {
    pub session: SessionId,
    pub key: u64,
    /// The zxid of the write whose value was returned (0: the initial absence).
    pub zxid: u64,
    /// The value returned (0: absent).
    pub tag: u64,
    /// How many writes the node had applied when it served the read.
    pub applied: usize,
    pub at: Time,
}

/// One applied write, as a node's store saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub zxid: u64,
    pub session: SessionId,
    pub seq: u32,
    pub key: u64,
    pub op: Op,
    pub tag: u64,
}

/// A session's operations in program order (indexes into the records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOp {
    Write(usize),
    Read(usize),
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<WriteRec>,
    pub reads: Vec<ReadRec>,
    /// Per session (sorted by id), its operations in order.
    pub sessions: Vec<(SessionId, Vec<SessionOp>)>,
    /// Per node, the writes it applied, in order.
    pub applied: Vec<Vec<Applied>>,
}

impl History {
    pub fn session_ops(&mut self, id: SessionId) -> &mut Vec<SessionOp> {
        let i = match self.sessions.binary_search_by_key(&id, |(s, _)| *s) {
            Ok(i) => i,
            Err(i) => {
                self.sessions.insert(i, (id, Vec::new()));
                i
            }
        };
        &mut self.sessions[i].1
    }
}
