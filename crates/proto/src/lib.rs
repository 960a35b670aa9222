//! rzab's protocol core: Zab's broadcast phase as deterministic, sans-IO
//! state machines.
//!
//! A cluster runs `lanes` independent lanes; lane `t` of the leader talks
//! only to lane `t` of each follower. Per lane:
//!
//! 1. A follower's session write goes to the leader in a **Write** message.
//! 2. The [`LeaderLane`] appends it to its log, gives it the next global id
//!    from the [`Sequencer`] shared by the leader's lanes, and broadcasts it
//!    in a **Prepare** (which also carries the current commit point).
//! 3. Each [`FollowerLane`] stores it by lane-local id (lid) and returns a
//!    cumulative **Ack** that also reports gaps and returns credits.
//! 4. Once a quorum (the leader included) holds a lid, it is committed; the
//!    leader tells followers in a **Commit** (or the next Prepare).
//! 5. Every node applies committed writes strictly in zxid order across its
//!    lanes, through the [`ApplyGate`] they share; a session's write
//!    completes when it is applied at the session's own node.
//!
//! Credits bound the Write, Prepare and Commit messages in flight per lane
//! and follower ([`inflights`]); a follower short of credit or dead limits
//! only what is sent to it. Sequence numbers, cumulative acks, gap reports,
//! retransmission timeouts and the leader's retained log make every stream
//! survive loss, duplication and reordering.
//!
//! Nothing here touches sockets, threads or clocks: lanes take `(now,
//! message)` and timer calls, and return datagrams to send and entries to
//! apply. The runtime (`rzab-node`) and the simulator drive them.

mod config;
pub mod control;
mod filter;
mod follower;
mod gate;
mod history;
pub mod inflights;
mod leader;
mod log;
mod nodeset;
pub mod quorum;
mod role;
mod rtt;
mod sequencer;
mod sessions;
mod stats;
mod sync;
mod time;
pub mod transfer;
mod transmit;
mod writes;

#[cfg(test)]
mod testutil;

pub use config::{BroadcastMode, ConfigError, LaneConfig, PlantedBug};
pub use control::{Control, ControlConfig, ControlStats, Host, LaneStart};
pub use follower::FollowerLane;
pub use gate::ApplyGate;
pub use history::{
    AppliedSeqs, HistoryLog, LaneOf, OwnedEntry, OwnedItem, SessionSeqs, Snapshot, record_applied,
    record_bind,
};
pub use leader::{LeaderLane, SubmitError};
pub use log::{EntryMeta, EntryRef, LogRing};
pub use nodeset::{MAX_NODES, NodeSet};
pub use role::{Role, Submitted};
pub use rtt::Rtt;
pub use sequencer::{EpochExhausted, Sequencer};
pub use sessions::{SeqCheck, SessionTable, bind_of, fence_of};
pub use stats::LaneStats;
pub use time::{Span, Time};
pub use transmit::{Dest, Transmit};
pub use writes::{PendingWrites, QueueError};

pub use rzab_wire::{NodeId, Op, Zxid};
