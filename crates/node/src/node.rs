//! What the lanes of one node share: the store, the apply gate, the
//! sequencer (on the leader), and a hash chain of the applied history.

use rzab_proto::{ApplyGate, EntryRef, NodeId, Sequencer, Zxid};
use rzab_store::{Store, StoreConfig, StoreError};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

/// A running hash over every write applied at a node, in apply order.
/// Two replicas that applied the same sequence have equal chains at equal
/// counts. Updated only by the lane the gate admits, so Relaxed suffices:
/// the gate's Release/Acquire orders consecutive updates.
#[derive(Debug, Default)]
pub struct History {
    chain: AtomicU64,
    count: AtomicU64,
}

impl History {
    pub fn record(&self, e: &EntryRef<'_>) {
        let m = e.meta;
        let mut fixed = [0u8; 30];
        fixed[0..8].copy_from_slice(&m.zxid.0.to_le_bytes());
        fixed[8..16].copy_from_slice(&m.key.to_le_bytes());
        fixed[16..20].copy_from_slice(&m.session.to_le_bytes());
        fixed[20..24].copy_from_slice(&m.seq.to_le_bytes());
        fixed[24] = m.origin;
        fixed[25] = m.op as u8;
        fixed[26..28].copy_from_slice(&m.len.to_le_bytes());
        let h = self.chain.load(Ordering::Relaxed);
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&fixed, h);
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(e.value, h);
        self.chain.store(h, Ordering::Relaxed);
        self.count
            .store(self.count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// (writes applied, chain hash).
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Acquire),
            self.chain.load(Ordering::Acquire),
        )
    }
}

pub struct NodeShared {
    pub id: NodeId,
    pub store: Store,
    pub gate: ApplyGate,
    /// The id source of the leader's lanes (None on followers).
    pub sequencer: Option<Sequencer>,
    pub history: History,
    /// Every lane's waker, to wake lanes waiting on the gate.
    wakers: OnceLock<Vec<Waker>>,
}

impl NodeShared {
    pub fn new(id: NodeId, store: StoreConfig, epoch: u32, leader: bool) -> Result<NodeShared, StoreError> {
        Ok(NodeShared {
            id,
            store: Store::new(store)?,
            gate: ApplyGate::new(Zxid::epoch_base(epoch)),
            sequencer: leader.then(|| Sequencer::new(Zxid::epoch_base(epoch))),
            history: History::default(),
            wakers: OnceLock::new(),
        })
    }

    /// Registers the lanes' wakers (once, before the lanes start).
    pub fn set_wakers(&self, wakers: Vec<Waker>) {
        let _ = self.wakers.set(wakers);
    }

    /// Wakes every lane but `except`: the gate moved.
    pub fn wake_lanes(&self, except: usize) {
        if let Some(ws) = self.wakers.get() {
            for (i, w) in ws.iter().enumerate() {
                if i != except {
                    w.wake_by_ref();
                }
            }
        }
    }
}
