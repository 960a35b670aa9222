//! Which lane slot each client connection uses.

use std::collections::VecDeque;
use std::sync::Mutex;

/// The free (lane, slot) pairs of a node, handed out so that successive
/// connections go to different lanes, and in turn: each connection uses up
/// a generation of its slot, so short connections spread them over all.
pub(crate) struct SlotPool {
    free: Mutex<VecDeque<(u8, u32)>>,
}

impl SlotPool {
    pub fn new(lanes: u8, slots: u32) -> SlotPool {
        // Lane 0 slot 0, lane 1 slot 0, ...
        let free = (0..slots).flat_map(|s| (0..lanes).map(move |l| (l, s))).collect();
        SlotPool {
            free: Mutex::new(free),
        }
    }

    /// The free slot released longest ago, on `lane` if given.
    pub fn acquire(&self, lane: Option<u8>) -> Option<Slot<'_>> {
        let mut free = self.free.lock().ok()?;
        let i = match lane {
            Some(l) => free.iter().position(|p| p.0 == l)?,
            None => 0,
        };
        let pair = free.remove(i)?;
        Some(Slot { pool: self, pair })
    }
}

/// A slot in use; back in the pool when dropped.
pub(crate) struct Slot<'a> {
    pool: &'a SlotPool,
    pub pair: (u8, u32),
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.pool.free.lock() {
            f.push_back(self.pair);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_over_lanes_and_come_back() {
        let p = SlotPool::new(2, 2);
        let a = p.acquire(None).expect("a");
        let b = p.acquire(None).expect("b");
        assert_eq!((a.pair, b.pair), ((0, 0), (1, 0)));
        let c = p.acquire(Some(1)).expect("c");
        assert_eq!(c.pair, (1, 1), "a session keeps its lane");
        assert!(p.acquire(Some(1)).is_none(), "lane 1 is taken");
        let d = p.acquire(None).expect("d");
        assert!(p.acquire(None).is_none());
        drop(c);
        drop(a);
        assert_eq!(
            p.acquire(None).map(|s| s.pair),
            Some((1, 1)),
            "released first, reused first"
        );
        drop((b, d));
    }
}
