use crate::sync::{AtomicU64, Ordering};
use rzab_wire::Zxid;

/// The apply-order gate a node's lanes share: writes are applied strictly in
/// zxid order across all lanes.
///
/// A lane may apply the write with id `z` only when the gate holds `z - 1`;
/// after applying it to the store the lane publishes `z`. The publish is a
/// Release store and the check an Acquire load, so everything the previous
/// lane wrote to the store happens-before the next lane's apply (no reliance
/// on x86 ordering, unlike the prototype's relaxed counter).
#[derive(Debug)]
pub struct ApplyGate {
    applied: AtomicU64,
}

impl ApplyGate {
    /// A gate whose last applied id is `applied`.
    pub fn new(applied: Zxid) -> Self {
        ApplyGate {
            applied: AtomicU64::new(applied.0),
        }
    }

    /// Whether `z` is the next write to apply on this node.
    #[inline]
    pub fn is_next(&self, z: Zxid) -> bool {
        self.applied.load(Ordering::Acquire).wrapping_add(1) == z.0
    }

    /// The last id applied on this node.
    #[inline]
    pub fn applied(&self) -> Zxid {
        Zxid(self.applied.load(Ordering::Acquire))
    }

    /// Records that `z` (the next id) has been applied to the store.
    #[inline]
    pub fn publish(&self, z: Zxid) {
        debug_assert!(self.is_next(z), "gate published out of order");
        self.applied.store(z.0, Ordering::Release);
    }

    /// Sets the last applied id (a recovered history, which may skip ids,
    /// or a snapshot's base). Only while no lane applies.
    pub fn set(&self, applied: Zxid) {
        self.applied.store(applied.0, Ordering::Release);
    }

    /// Starts a new epoch: the next id is `Zxid::new(epoch, 1)`.
    /// Only while no lane applies (between epochs).
    pub fn start_epoch(&self, epoch: u32) {
        debug_assert!(Zxid::epoch_base(epoch) >= self.applied());
        self.applied.store(Zxid::epoch_base(epoch).0, Ordering::Release);
    }
}
