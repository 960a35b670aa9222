use std::fmt;

/// A write's global id: `epoch << 32 | counter`, ZooKeeper's zxid.
///
/// The whole 64 bits travel on the wire (the prototype truncated to 32 and
/// asserted at 2^32 writes). Ids order writes totally; within an epoch the
/// counter starts at 1 and is dense, so "the next id" is `self + 1`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(pub u64);

impl Zxid {
    pub const ZERO: Zxid = Zxid(0);

    pub const fn new(epoch: u32, counter: u32) -> Zxid {
        Zxid(((epoch as u64) << 32) | counter as u64)
    }

    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn counter(self) -> u32 {
        self.0 as u32
    }

    /// The id before any write of `epoch`: what an apply gate holds when the
    /// epoch starts, so that `Zxid::new(epoch, 1)` is next.
    pub const fn epoch_base(epoch: u32) -> Zxid {
        Zxid::new(epoch, 0)
    }
}

impl fmt::Debug for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch(), self.counter())
    }
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let z = Zxid::new(7, u32::MAX);
        assert_eq!((z.epoch(), z.counter()), (7, u32::MAX));
        assert!(
            Zxid::new(8, 0) > z,
            "a later epoch orders after every id of an earlier one"
        );
        assert_eq!(Zxid::epoch_base(3).0 + 1, Zxid::new(3, 1).0);
    }
}
