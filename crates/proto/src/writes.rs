//! A follower lane's writes from submit until applied: the send queue, the
//! write credits, and retransmission of writes the leader has not sequenced.

use crate::inflights::Inflights;
use crate::{Span, Time};
use rzab_wire::{Op, WriteEntry};
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting in the send queue.
    Queued,
    /// Sent at this time; resent if not sequenced within the timeout.
    Sent(Time),
    /// Seen in a Prepare: the leader has it; only its apply is awaited.
    Sequenced,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    session: u32,
    seq: u64,
    key: u64,
    op: Op,
    len: u16,
    state: State,
    /// The Write message (by credit seq) that first carried it; 0 before.
    credit_seq: u64,
    /// The Write message (by header seq) that last carried it.
    sent_msg: u64,
    /// Sent more than once (its round trip is ambiguous: Karn's rule).
    resent: bool,
}

/// Why a follower could not take a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("too many writes pending")]
    Full,
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    ValueTooLong { len: usize, max: usize },
    #[error("session {session} already has write {seq} pending")]
    AlreadyPending { session: u32, seq: u64 },
    #[error("a bind's value is neither an owner nor an owner and a fence")]
    BadBind,
}

/// Pending writes of one follower lane.
///
/// Credits: each Write message carrying a fresh write takes one; it comes
/// back when every fresh write it carried has been applied here (so it is
/// committed: the prototype's implicit return on Commit). Retransmissions
/// take no credit, so lost writes cannot starve the credits that would
/// resend them.
#[derive(Debug)]
pub struct PendingWrites {
    value_max: usize,
    slots: Vec<Slot>,
    values: Vec<u8>,
    free: Vec<u32>,
    by_id: HashMap<(u32, u64), u32>,
    queue: VecDeque<u32>,
    /// Sent writes in send order, for the retransmission timer.
    sent: VecDeque<(u32, Time)>,
    credits: Inflights,
    /// Fresh writes still unapplied per in-flight credit seq (front = oldest).
    unapplied: VecDeque<(u64, u32)>,
    next_credit_seq: u64,
    /// The latest Write message any of whose writes the leader sequenced:
    /// a write still unsequenced from an earlier message was lost (the
    /// leader takes a follower's messages in order), so it goes again now
    /// rather than after the timeout.
    sequenced_msg: u64,
    fast_check: bool,
    /// Writes requeued by the timer (not the fast path), ever.
    timed_out: u64,
}

impl PendingWrites {
    pub fn new(capacity: usize, value_max: usize, credits: usize) -> Self {
        let empty = Slot {
            session: 0,
            seq: 0,
            key: 0,
            op: Op::Put,
            len: 0,
            state: State::Sequenced,
            credit_seq: 0,
            sent_msg: 0,
            resent: false,
        };
        PendingWrites {
            value_max,
            slots: vec![empty; capacity],
            values: vec![0; capacity * value_max],
            free: (0..capacity as u32).rev().collect(),
            by_id: HashMap::with_capacity(capacity),
            queue: VecDeque::with_capacity(capacity),
            sent: VecDeque::with_capacity(capacity),
            credits: Inflights::new(credits),
            unapplied: VecDeque::with_capacity(credits),
            next_credit_seq: 1,
            sequenced_msg: 0,
            fast_check: false,
            timed_out: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.len() == self.slots.len()
    }

    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn credits_available(&self) -> usize {
        self.credits.available()
    }

    pub fn push(&mut self, w: &WriteEntry<'_>) -> Result<(), QueueError> {
        if w.value.len() > self.value_max {
            return Err(QueueError::ValueTooLong {
                len: w.value.len(),
                max: self.value_max,
            });
        }
        // The leader would refuse the whole datagram that carried it.
        if w.op == Op::Bind && rzab_wire::BindValue::decode(w.value).is_err() {
            return Err(QueueError::BadBind);
        }
        if self.by_id.contains_key(&(w.session, w.seq)) {
            return Err(QueueError::AlreadyPending {
                session: w.session,
                seq: w.seq,
            });
        }
        let idx = self.free.pop().ok_or(QueueError::Full)?;
        self.slots[idx as usize] = Slot {
            session: w.session,
            seq: w.seq,
            key: w.key,
            op: w.op,
            len: w.value.len() as u16,
            state: State::Queued,
            credit_seq: 0,
            sent_msg: 0,
            resent: false,
        };
        let at = idx as usize * self.value_max;
        self.values[at..at + w.value.len()].copy_from_slice(w.value);
        self.by_id.insert((w.session, w.seq), idx);
        self.queue.push_back(idx);
        Ok(())
    }

    /// Whether a queued write waits for a credit (it was never sent).
    pub fn fresh_queued(&self) -> bool {
        self.queue.iter().any(|&i| {
            let s = &self.slots[i as usize];
            s.state == State::Queued && s.credit_seq == 0
        })
    }

    /// Takes queued writes for one message: `push` is offered each until it
    /// returns false (message full). Fresh writes are taken only if
    /// `with_fresh` (a credit is available); retransmissions always are, so
    /// writes lost in flight are resent even when credits ran out. Marks the
    /// taken ones sent at `now` in message `msg`. Returns (writes taken, of
    /// which fresh).
    pub fn drain_into(
        &mut self,
        now: Time,
        msg: u64,
        with_fresh: bool,
        mut push: impl FnMut(&WriteEntry<'_>) -> bool,
    ) -> (usize, usize) {
        let credit_seq = self.next_credit_seq;
        let (mut taken, mut fresh) = (0, 0);
        let mut i = 0;
        while let Some(&idx) = self.queue.get(i) {
            let slot = self.slots[idx as usize];
            if slot.state != State::Queued {
                self.queue.remove(i);
                continue;
            }
            if slot.credit_seq == 0 && !with_fresh {
                i += 1;
                continue;
            }
            let at = idx as usize * self.value_max;
            let entry = WriteEntry {
                session: slot.session,
                seq: slot.seq,
                key: slot.key,
                op: slot.op,
                value: &self.values[at..at + slot.len as usize],
            };
            if !push(&entry) {
                break;
            }
            self.queue.remove(i);
            let s = &mut self.slots[idx as usize];
            s.state = State::Sent(now);
            s.sent_msg = msg;
            if s.credit_seq == 0 {
                s.credit_seq = credit_seq;
                fresh += 1;
            }
            self.sent.push_back((idx, now));
            taken += 1;
        }
        if fresh > 0 {
            // Write credits come back on apply, long after the round trip:
            // they take no round-trip samples.
            self.credits.add(credit_seq, Time::ZERO);
            self.unapplied.push_back((credit_seq, fresh as u32));
            self.next_credit_seq += 1;
        }
        (taken, fresh)
    }

    /// The leader sequenced this write (it appeared in a Prepare at `now`).
    /// Returns its round trip if it was sent once and this is news.
    pub fn sequenced(&mut self, session: u32, seq: u64, now: Time) -> Option<Span> {
        let &idx = self.by_id.get(&(session, seq))?;
        let s = &mut self.slots[idx as usize];
        let rtt = match s.state {
            State::Sent(at) if !s.resent => Some(now - at),
            _ => None,
        };
        {
            s.state = State::Sequenced;
            // A resent write may have been sequenced from an earlier copy:
            // its latest message says nothing about what was lost.
            if !s.resent && s.sent_msg > self.sequenced_msg {
                self.sequenced_msg = s.sent_msg;
                self.fast_check = true;
            }
        }
        rtt
    }

    /// The write was applied here: frees its slot and maybe a credit.
    /// Returns false if it was not pending (e.g. a write of a previous run).
    pub fn applied(&mut self, session: u32, seq: u64) -> bool {
        let Some(idx) = self.by_id.remove(&(session, seq)) else {
            return false;
        };
        self.release(idx);
        true
    }

    /// Gives up the writes of `session` up to `upto` that the leader has not
    /// sequenced: a later generation of the session was sequenced, or a
    /// fence named theirs, so the leader will never sequence them. Returns
    /// how many. (Rare: once per client connection; it scans.)
    pub fn abandon(&mut self, session: u32, upto: u64) -> usize {
        let dead: Vec<u32> = self
            .by_id
            .iter()
            .filter(|&(&(s, q), &idx)| {
                s == session && q <= upto && self.slots[idx as usize].state != State::Sequenced
            })
            .map(|(_, &idx)| idx)
            .collect();
        for &idx in &dead {
            let slot = self.slots[idx as usize];
            self.by_id.remove(&(slot.session, slot.seq));
            self.queue.retain(|&q| q != idx);
            self.sent.retain(|&(q, _)| q != idx);
            self.release(idx);
        }
        dead.len()
    }

    /// Frees a slot, and its credit once every write its message carried is
    /// done.
    fn release(&mut self, idx: u32) {
        let credit_seq = self.slots[idx as usize].credit_seq;
        self.slots[idx as usize].state = State::Sequenced;
        self.free.push(idx);
        if credit_seq != 0
            && let Some(c) = self.unapplied.iter_mut().find(|(s, _)| *s == credit_seq)
        {
            c.1 -= 1;
        }
        // Credits return in message order once a prefix of messages is done.
        while let Some(&(s, 0)) = self.unapplied.front() {
            self.unapplied.pop_front();
            self.credits.free_to(s, Time::ZERO);
        }
    }

    /// Requeues writes sent more than `rto` ago and still not sequenced, and
    /// (fast) those from a message older than one the leader sequenced.
    /// Returns how many.
    pub fn expire(&mut self, now: Time, rto: Span) -> usize {
        let mut n = 0;
        if self.fast_check {
            self.fast_check = false;
            for idx in 0..self.slots.len() {
                let s = &mut self.slots[idx];
                if matches!(s.state, State::Sent(_)) && s.sent_msg < self.sequenced_msg {
                    s.state = State::Queued;
                    s.resent = true;
                    self.queue.push_back(idx as u32);
                    n += 1;
                }
            }
        }
        while let Some(&(idx, at)) = self.sent.front() {
            if now < at + rto {
                break;
            }
            self.sent.pop_front();
            let s = &mut self.slots[idx as usize];
            if s.state == State::Sent(at) {
                s.state = State::Queued;
                s.resent = true;
                self.queue.push_back(idx);
                self.timed_out += 1;
                n += 1;
            }
        }
        n
    }

    /// Writes the timer has requeued so far.
    pub fn timed_out(&self) -> u64 {
        self.timed_out
    }

    /// When `expire` next has something to do.
    pub fn next_expiry(&self, rto: Span) -> Option<Time> {
        self.sent.front().map(|&(_, at)| at + rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(session: u32, seq: u64) -> WriteEntry<'static> {
        WriteEntry {
            session,
            seq,
            key: session as u64,
            op: Op::Put,
            value: b"v",
        }
    }

    #[test]
    fn credit_returns_when_every_write_of_its_message_is_applied() {
        let mut p = PendingWrites::new(4, 8, 1);
        p.push(&w(0, 1)).unwrap();
        p.push(&w(1, 1)).unwrap();
        assert!(p.fresh_queued());
        assert_eq!(p.drain_into(Time(5), 1, true, |_| true), (2, 2));
        assert_eq!(p.credits_available(), 0);
        assert!(p.applied(1, 1));
        assert_eq!(
            p.credits_available(),
            0,
            "one write of the message still unapplied"
        );
        assert!(p.applied(0, 1));
        assert_eq!(p.credits_available(), 1);
        assert!(!p.applied(0, 1), "a second apply is not pending");
        assert!(p.is_empty());
    }

    #[test]
    fn unsequenced_writes_are_resent_without_credit() {
        let mut p = PendingWrites::new(4, 8, 1);
        p.push(&w(0, 1)).unwrap();
        p.push(&w(1, 1)).unwrap();
        p.drain_into(Time(0), 1, true, |_| true);
        assert_eq!(p.sequenced(0, 1, Time(4)), Some(Span(4)), "a clean round trip");
        assert_eq!(p.expire(Time(9), Span(10)), 0, "not yet");
        assert_eq!(p.expire(Time(10), Span(10)), 1, "only the unsequenced one");
        assert!(!p.fresh_queued(), "a retransmission needs no credit");
        let mut seen = Vec::new();
        assert_eq!(
            p.drain_into(Time(10), 1, false, |e: &WriteEntry<'_>| {
                seen.push((e.session, e.seq));
                true
            }),
            (1, 0)
        );
        assert_eq!(seen, vec![(1, 1)]);
    }

    #[test]
    fn retransmissions_overtake_fresh_writes_waiting_for_credit() {
        // Found by the simulator: with every credit held by lost writes, their
        // retransmissions queued behind fresh writes deadlocked the lane.
        let mut p = PendingWrites::new(4, 8, 1);
        p.push(&w(0, 1)).unwrap();
        p.drain_into(Time(0), 1, true, |_| true);
        assert_eq!(p.credits_available(), 0);
        p.push(&w(1, 1)).unwrap();
        assert_eq!(p.expire(Time(10), Span(10)), 1);
        let mut seen = Vec::new();
        let taken = p.drain_into(Time(10), 1, false, |e: &WriteEntry<'_>| {
            seen.push((e.session, e.seq));
            true
        });
        assert_eq!(taken, (1, 0));
        assert_eq!(
            seen,
            vec![(0, 1)],
            "the lost write goes again; the fresh one keeps waiting"
        );
        assert!(p.fresh_queued());
    }

    #[test]
    fn a_write_of_an_older_message_is_resent_once_a_newer_one_is_sequenced() {
        let mut p = PendingWrites::new(4, 8, 4);
        p.push(&w(0, 1)).unwrap();
        p.drain_into(Time(0), 1, true, |_| true);
        p.push(&w(1, 1)).unwrap();
        p.drain_into(Time(1), 2, true, |_| true);
        p.sequenced(1, 1, Time(2));
        assert_eq!(
            p.expire(Time(2), Span(1_000)),
            1,
            "message 1 was lost: no need to wait"
        );
        assert_eq!(p.expire(Time(3), Span(1_000)), 0, "only once");
        let mut seen = Vec::new();
        p.drain_into(Time(3), 3, false, |e: &WriteEntry<'_>| {
            seen.push(e.session);
            true
        });
        assert_eq!(seen, vec![0]);
    }

    #[test]
    fn a_resent_write_sequenced_from_its_first_copy_does_not_cascade() {
        // Found with UDP on a busy machine: write A timed out and went again
        // in message 3; its first copy (message 1) was then sequenced, which
        // must not declare write B of message 2 lost.
        let mut p = PendingWrites::new(4, 8, 4);
        p.push(&w(0, 1)).unwrap();
        p.drain_into(Time(0), 1, true, |_| true);
        p.push(&w(1, 1)).unwrap();
        p.drain_into(Time(5), 2, true, |_| true);
        assert_eq!(p.expire(Time(10), Span(10)), 1, "A times out");
        p.drain_into(Time(10), 3, false, |_| true);
        assert_eq!(
            p.sequenced(0, 1, Time(11)),
            None,
            "ambiguous: no round-trip sample"
        );
        assert_eq!(p.expire(Time(12), Span(10)), 0, "B is not presumed lost");
    }

    #[test]
    fn bounded_and_checked() {
        let mut p = PendingWrites::new(1, 2, 1);
        assert_eq!(
            p.push(&WriteEntry {
                value: b"abc",
                ..w(0, 1)
            }),
            Err(QueueError::ValueTooLong { len: 3, max: 2 })
        );
        p.push(&w(0, 1)).unwrap();
        assert_eq!(
            p.push(&w(0, 1)),
            Err(QueueError::AlreadyPending { session: 0, seq: 1 })
        );
        assert_eq!(p.push(&w(1, 1)), Err(QueueError::Full));
    }
}
