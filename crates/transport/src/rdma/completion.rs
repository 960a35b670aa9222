//! Send-side completion bookkeeping with selective signaling.
//!
//! Every send work request gets the next id of a 64-bit sequence (its
//! `wr_id`). Only one in `signal_every` asks for a completion; a send queue
//! completes in order, so a completion for id `k` (or an error completion,
//! which the device reports signaled or not) means every request up to `k`
//! is done, and its slot in the send-buffer ring may be reused. The sender
//! posts at most `depth` requests ahead of the last completion and at most
//! `depth - signal_every` per doorbell: when it must wait for room, a
//! signaled request is always in flight to wait for (none would be, if an
//! unsignaled run could fill the queue: the prototype's deadlock).

use std::ops::Range;

/// What is in flight on one send queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendTracker {
    depth: u64,
    signal_every: u64,
    /// The id of the next request to post.
    next: u64,
    /// Every request below this id has completed.
    completed: u64,
}

impl SendTracker {
    /// A queue of `depth` requests, one in `signal_every` signaled
    /// (`1 <= signal_every <= depth / 2`).
    pub fn new(depth: usize, signal_every: usize) -> SendTracker {
        assert!(signal_every >= 1 && signal_every <= depth / 2);
        SendTracker {
            depth: depth as u64,
            signal_every: signal_every as u64,
            next: 0,
            completed: 0,
        }
    }

    /// Requests posted and not known to be complete.
    pub fn in_flight(&self) -> usize {
        (self.next - self.completed) as usize
    }

    /// Requests that may be posted now.
    pub fn room(&self) -> usize {
        self.depth as usize - self.in_flight()
    }

    /// The most requests one doorbell may carry.
    pub fn max_per_post(&self) -> usize {
        (self.depth - self.signal_every) as usize
    }

    /// Whether request `id` asks for a completion.
    pub fn signaled(&self, id: u64) -> bool {
        id % self.signal_every == self.signal_every - 1
    }

    /// The send-buffer slot of request `id` (the ring has `depth` slots).
    pub fn slot(&self, id: u64) -> usize {
        (id % self.depth) as usize
    }

    /// Whether a signaled request is in flight, so waiting for a
    /// completion will end.
    pub fn awaits_signal(&self) -> bool {
        let first = self.completed + (self.signal_every - 1 - self.completed % self.signal_every);
        first < self.next
    }

    /// Takes ids for `n` requests about to be posted (`n <= room()`).
    pub fn reserve(&mut self, n: usize) -> Range<u64> {
        assert!(n <= self.room() && n <= self.max_per_post());
        let ids = self.next..self.next + n as u64;
        self.next = ids.end;
        ids
    }

    /// A post of `ids` (the last reservation) failed: none of them went out.
    pub fn unreserve(&mut self, ids: Range<u64>) {
        assert_eq!(ids.end, self.next, "only the last reservation");
        self.next = ids.start;
    }

    /// A completion for request `id`: it and every earlier request are done.
    /// Returns false for an id not in flight (stale or bogus), which changes
    /// nothing.
    pub fn complete(&mut self, id: u64) -> bool {
        if id < self.completed || id >= self.next {
            return false;
        }
        self.completed = id + 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn one_request_in_signal_every_is_signaled() {
        let t = SendTracker::new(16, 4);
        let signaled: Vec<u64> = (0..12).filter(|&i| t.signaled(i)).collect();
        assert_eq!(signaled, vec![3, 7, 11]);
        assert_eq!((t.slot(17), t.max_per_post()), (1, 12));
    }

    #[test]
    fn completions_free_room_in_order_and_stale_ones_change_nothing() {
        let mut t = SendTracker::new(8, 2);
        assert_eq!(t.reserve(5), 0..5);
        assert_eq!((t.in_flight(), t.room()), (5, 3));
        assert!(t.awaits_signal(), "request 1 is signaled");
        assert!(t.complete(1));
        assert_eq!(t.in_flight(), 3);
        assert!(!t.complete(0), "already covered");
        assert!(!t.complete(9), "never posted");
        assert!(t.awaits_signal(), "request 3");
        assert!(
            t.complete(4),
            "an error completion of an unsignaled request counts"
        );
        assert_eq!((t.in_flight(), t.awaits_signal()), (0, false));
        let ids = t.reserve(3);
        t.unreserve(ids);
        assert_eq!(t.reserve(1), 5..6, "ids of a failed post are reused");
    }

    /// A device that completes only signaled requests, some turns late, and
    /// a sender that posts random batches: the queue never overflows, the
    /// sender never waits without a signaled request in flight, and slots
    /// are never reused while their request is in flight.
    #[test]
    fn random_batches_never_overflow_or_deadlock() {
        let (depth, every) = (32usize, 8usize);
        let mut t = SendTracker::new(depth, every);
        let mut queue: VecDeque<(u64, bool)> = VecDeque::new();
        let mut slot_owner = vec![None::<u64>; depth];
        let mut x = 12345u64;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let want = 1 + rand(t.max_per_post() as u64) as usize;
            while t.room() < want {
                assert!(t.awaits_signal(), "waiting with nothing signaled in flight");
                // The device finishes the oldest requests; the sender sees
                // only signaled completions.
                let (id, sig) = queue.pop_front().expect("something in flight");
                slot_owner[t.slot(id)] = None;
                if sig {
                    assert!(t.complete(id));
                }
            }
            for id in t.reserve(want) {
                let slot = t.slot(id);
                assert_eq!(slot_owner[slot], None, "slot {slot} reused while in flight");
                slot_owner[slot] = Some(id);
                queue.push_back((id, t.signaled(id)));
            }
            assert!(queue.len() <= depth, "send queue overflow");
            // Sometimes the device runs ahead on its own.
            for _ in 0..rand(4) {
                if let Some((id, sig)) = queue.pop_front() {
                    slot_owner[t.slot(id)] = None;
                    if sig {
                        t.complete(id);
                    }
                }
            }
            // Requests the device finished without a signal still count
            // as in flight for the tracker: the slots it may reuse are a
            // subset of the free ones.
            assert!(t.in_flight() >= queue.len());
        }
    }
}
