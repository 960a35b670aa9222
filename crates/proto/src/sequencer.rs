use crate::sync::{AtomicU64, Ordering};
use rzab_wire::Zxid;

/// The leader's one source of global ids, shared by all its lanes.
///
/// Each lane takes a contiguous range once per turn, so ids are dense across
/// lanes (what makes the apply gate live) and increasing within a lane.
#[derive(Debug)]
pub struct Sequencer {
    epoch: u32,
    /// The next id to hand out; past the epoch's last id once exhausted.
    next: AtomicU64,
}

/// The epoch's 2^32 - 1 ids are used up; a new epoch must begin (as in
/// ZooKeeper, where counter rollover forces an epoch change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("epoch {epoch} has no ids left for {wanted} more writes")]
pub struct EpochExhausted {
    pub epoch: u32,
    pub wanted: u32,
}

impl Sequencer {
    /// A sequencer whose first id is `after + 1` (after the last id applied).
    pub fn new(after: Zxid) -> Self {
        Sequencer {
            epoch: after.epoch(),
            next: AtomicU64::new(after.0 + 1),
        }
    }

    /// Reserves `n` consecutive ids; returns the first.
    ///
    /// Relaxed is enough: the ids only need to be unique and dense (the RMW
    /// total order gives that); apply order is published by the gate.
    pub fn allocate(&self, n: u32) -> Result<Zxid, EpochExhausted> {
        debug_assert!(n > 0);
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let first = Zxid(cur);
            let last = cur + n as u64 - 1;
            if first.epoch() != self.epoch || Zxid(last).epoch() != self.epoch {
                return Err(EpochExhausted {
                    epoch: self.epoch,
                    wanted: n,
                });
            }
            match self
                .next
                .compare_exchange_weak(cur, cur + n as u64, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(first),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The next id that would be handed out.
    pub fn peek(&self) -> Zxid {
        Zxid(self.next.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_dense_and_bounded_by_the_epoch() {
        let s = Sequencer::new(Zxid::epoch_base(1));
        assert_eq!(s.allocate(3), Ok(Zxid::new(1, 1)));
        assert_eq!(s.allocate(2), Ok(Zxid::new(1, 4)));
        let s = Sequencer::new(Zxid::new(1, u32::MAX - 2));
        assert_eq!(s.allocate(2), Ok(Zxid::new(1, u32::MAX - 1)));
        assert_eq!(s.allocate(1), Err(EpochExhausted { epoch: 1, wanted: 1 }));
        let s = Sequencer::new(Zxid::new(1, u32::MAX - 2));
        assert!(
            s.allocate(3).is_err(),
            "a range may not spill into the next epoch"
        );
    }
}
