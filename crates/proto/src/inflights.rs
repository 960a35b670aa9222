//! Credits as a bounded ring of in-flight message sequence numbers, one per
//! (lane, peer, message kind): raft-rs's `Inflights`, in rzab's terms.

use std::collections::VecDeque;

/// The messages sent to one peer that it has not yet reported consumed.
///
/// A send takes a credit (`add`); the peer reports the highest message seq
/// it consumed and every in-flight seq up to it frees its credit. A message
/// lost in the network is freed by any later report, so only the messages
/// after the last delivered one can hold credits; a retransmission timeout
/// frees those ([`reset`](Inflights::reset)), so credits never leak.
#[derive(Clone, Debug)]
pub struct Inflights {
    cap: usize,
    seqs: VecDeque<u64>,
}

impl Inflights {
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "a peer needs at least one credit");
        Inflights {
            cap,
            seqs: VecDeque::with_capacity(cap),
        }
    }

    /// Credits left.
    pub fn available(&self) -> usize {
        self.cap - self.seqs.len()
    }

    pub fn is_full(&self) -> bool {
        self.seqs.len() == self.cap
    }

    pub fn in_flight(&self) -> usize {
        self.seqs.len()
    }

    /// Takes a credit for message `seq` (seqs are added in increasing order).
    pub fn add(&mut self, seq: u64) {
        debug_assert!(!self.is_full(), "add without a credit");
        debug_assert!(self.seqs.back().is_none_or(|&b| b < seq), "seqs must increase");
        self.seqs.push_back(seq);
    }

    /// The peer consumed every message up to `seq`: frees their credits.
    /// Returns how many were freed.
    pub fn free_to(&mut self, seq: u64) -> usize {
        let before = self.seqs.len();
        while self.seqs.front().is_some_and(|&s| s <= seq) {
            self.seqs.pop_front();
        }
        before - self.seqs.len()
    }

    /// Assume everything in flight is lost.
    pub fn reset(&mut self) {
        self.seqs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_come_back_by_highest_consumed_seq() {
        let mut f = Inflights::new(3);
        f.add(1);
        f.add(4);
        f.add(9);
        assert!(f.is_full());
        // Message 4 was lost; the peer consumed 1 and 5 (sent to someone
        // else's stream position) - credits up to 5 return, 9 stays.
        assert_eq!(f.free_to(5), 2);
        assert_eq!(f.available(), 2);
        assert_eq!(f.free_to(5), 0, "a duplicate report frees nothing");
        f.reset();
        assert_eq!(f.available(), 3);
    }
}
