//! What happened in a run, recorded for the checkers: every write a session
//! issued, every read and what it returned, every node incarnation's applied
//! sequence, and every leadership.

use rzab_proto::{NodeId, Op, Time};

/// A session: its node, lane and index, and the node's incarnation (a node
/// that restarts without state gets new sessions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub node: NodeId,
    pub lane: u8,
    pub index: u32,
    pub inc: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRec {
    pub session: SessionId,
    pub seq: u64,
    pub key: u64,
    pub op: Op,
    /// The value's identity (0 for a delete).
    pub tag: u64,
    pub issued_at: Time,
    /// When the session saw it applied at its node, and the id it got.
    pub completed: Option<(Time, u64)>,
    /// Its node crashed before it completed, or its session moved on:
    /// nobody waits for it, and it may or may not apply.
    pub abandoned: bool,
    /// Its node told the session it is not applied (a fence or a newer
    /// generation stranded it): it must never apply.
    pub failed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRec {
    pub session: SessionId,
    pub key: u64,
    /// The zxid of the write whose value was returned (0: never written, or
    /// deleted before a snapshot the node installed).
    pub zxid: u64,
    /// The value returned (0: absent).
    pub tag: u64,
    /// The last id the node had applied when it served the read.
    pub gate: u64,
    pub at: Time,
}

/// One applied write, as a node's store saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub zxid: u64,
    pub origin: NodeId,
    pub lane: u8,
    pub session: u32,
    pub seq: u64,
    pub key: u64,
    pub op: Op,
    pub tag: u64,
    /// A `Bind`'s fence as sequenced: (node, session, generation), and
    /// its owner (0 for other ops).
    pub fence: Option<(NodeId, u32, u64)>,
    pub owner: u64,
}

/// A session's operations in program order (indexes into the records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOp {
    Write(usize),
    Read(usize),
}

/// One life of a node: it started from a snapshot at `base` (0: from the
/// cluster's start) and applied these writes in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incarnation {
    pub node: NodeId,
    pub inc: u32,
    pub base: u64,
    pub applied: Vec<Applied>,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<WriteRec>,
    pub reads: Vec<ReadRec>,
    /// Per session (sorted by id), its operations in order.
    pub sessions: Vec<(SessionId, Vec<SessionOp>)>,
    pub incarnations: Vec<Incarnation>,
    /// (epoch, leader) each time a node became leader.
    pub leaderships: Vec<(u32, NodeId)>,
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
