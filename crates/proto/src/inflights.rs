//! Credits as a bounded ring of in-flight message sequence numbers, one per
//! (lane, peer, message kind): raft-rs's `Inflights`, in rzab's terms.

use crate::{Span, Time};
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
    /// (message seq, when it was sent).
    seqs: VecDeque<(u64, Time)>,
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

    /// Takes a credit for message `seq`, sent at `now` (seqs increase).
    pub fn add(&mut self, seq: u64, now: Time) {
        debug_assert!(!self.is_full(), "add without a credit");
        debug_assert!(
            self.seqs.back().is_none_or(|&(b, _)| b < seq),
            "seqs must increase"
        );
        self.seqs.push_back((seq, now));
    }

    /// The peer consumed every message up to `seq` (reported at `now`):
    /// frees their credits. Returns how many were freed, and the round
    /// trip of message `seq` itself if it was in flight (a clean sample:
    /// each seq is sent once).
    pub fn free_to(&mut self, seq: u64, now: Time) -> (usize, Option<Span>) {
        let before = self.seqs.len();
        let mut rtt = None;
        while let Some(&(s, at)) = self.seqs.front().filter(|&&(s, _)| s <= seq) {
            if s == seq {
                rtt = Some(now - at);
            }
            self.seqs.pop_front();
        }
        (before - self.seqs.len(), rtt)
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
        f.add(1, Time(10));
        f.add(4, Time(20));
        f.add(9, Time(30));
        assert!(f.is_full());
        // Message 4 was lost; the peer consumed 1 and 5 (sent to someone
        // else's stream position) - credits up to 5 return, 9 stays.
        assert_eq!(
            f.free_to(5, Time(50)),
            (2, None),
            "5 was not in flight here: no sample"
        );
        assert_eq!(f.available(), 2);
        assert_eq!(
            f.free_to(5, Time(60)),
            (0, None),
            "a duplicate report frees nothing"
        );
        assert_eq!(f.free_to(9, Time(70)), (1, Some(Span(40))));
        f.reset();
        assert_eq!(f.available(), 3);
    }
}
