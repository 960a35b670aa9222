//! Counters of the runtime, and the snapshot each lane publishes for the
//! stats printer (under a mutex, about once a millisecond: no racy reads).

use rzab_proto::LaneStats;
use rzab_transport::TransportStats;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// What the lane runtime counts (the state machine counts the protocol).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStats {
    pub reads: u64,
    pub writes_issued: u64,
    pub writes_completed: u64,
    /// Turns a committed entry waited for another lane's earlier id (apply-order waits).
    pub gate_waits: u64,
    /// Writes a full lane could not take yet (retried next turn).
    pub submit_retries: u64,
    /// Datagrams that failed to decode.
    pub decode_errors: u64,
    pub turns: u64,
    /// Times an idle lane slept.
    pub sleeps: u64,
    /// Start-up Hellos answered while running.
    pub hellos: u64,
    /// Turns the leader could not sequence: its epoch ran out of ids.
    pub epoch_exhausted: u64,
    /// Committed entries skipped: already in the snapshot this node joined from.
    pub skipped_applied: u64,
}

impl RuntimeStats {
    pub fn ops(&self) -> u64 {
        self.reads + self.writes_completed
    }

    pub fn add(&mut self, o: &RuntimeStats) {
        self.reads += o.reads;
        self.writes_issued += o.writes_issued;
        self.writes_completed += o.writes_completed;
        self.gate_waits += o.gate_waits;
        self.submit_retries += o.submit_retries;
        self.decode_errors += o.decode_errors;
        self.turns += o.turns;
        self.sleeps += o.sleeps;
        self.hellos += o.hellos;
        self.epoch_exhausted += o.epoch_exhausted;
        self.skipped_applied += o.skipped_applied;
    }

    pub fn since(&self, e: &RuntimeStats) -> RuntimeStats {
        RuntimeStats {
            reads: self.reads - e.reads,
            writes_issued: self.writes_issued - e.writes_issued,
            writes_completed: self.writes_completed - e.writes_completed,
            gate_waits: self.gate_waits - e.gate_waits,
            submit_retries: self.submit_retries - e.submit_retries,
            decode_errors: self.decode_errors - e.decode_errors,
            turns: self.turns - e.turns,
            sleeps: self.sleeps - e.sleeps,
            hellos: self.hellos - e.hellos,
            epoch_exhausted: self.epoch_exhausted - e.epoch_exhausted,
            skipped_applied: self.skipped_applied - e.skipped_applied,
        }
    }
}

/// Where a lane's log stands, for convergence checks and stall reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub leader: bool,
    pub apply_lid: u64,
    pub commit_lid: u64,
    /// Leader: lids appended; follower: lids received.
    pub end_lid: u64,
    /// Sessions with a write outstanding.
    pub blocked_sessions: u64,
    /// Leader: followers marked lagging (a node-id bitmask).
    pub lagging: u64,
    pub failed: bool,
    /// The lane has seen the drain phase (its counts are final-shaped).
    pub draining: bool,
    /// The lane issued all the operations it was given.
    pub issued_all: bool,
    /// Its node is down (killed on purpose by a fault schedule): not
    /// waited for, not a failure.
    #[serde(default)]
    pub down: bool,
    /// The epoch of the lane's role, and whether it runs and serves
    /// (false between epochs: the lane waits for its control plane).
    #[serde(default)]
    pub epoch: u32,
    #[serde(default)]
    pub serving: bool,
}

/// One lane's published figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub proto: LaneStats,
    pub runtime: RuntimeStats,
    pub transport: TransportStats,
    pub progress: Progress,
}

impl Snapshot {
    /// Adds counters (progress is not additive; it is left as is).
    pub fn add_counters(&mut self, o: &Snapshot) {
        self.proto.add(&o.proto);
        self.runtime.add(&o.runtime);
        self.transport.add(&o.transport);
    }
}

#[derive(Debug, Default)]
pub struct LaneShared {
    snapshot: Mutex<Snapshot>,
}

impl LaneShared {
    pub fn publish(&self, s: Snapshot) {
        if let Ok(mut g) = self.snapshot.lock() {
            *g = s;
        }
    }

    pub fn read(&self) -> Snapshot {
        self.snapshot.lock().map(|g| *g).unwrap_or_default()
    }
}
