//! A lane's side of external client sessions. The client gateway binds each
//! connection to one slot of one lane and hands it that connection's writes;
//! the lane submits them like its own sessions' (session number `base +
//! slot`) and reports each when it is applied at this node. A slot has up
//! to `depth` writes in flight, numbered in order; the leader sequences a
//! session's writes only in that order (a gap waits for the resend), so
//! they apply in the order issued.

use rzab_proto::{Submitted, Time, Zxid};
use rzab_store::KeyedOutcome;
use rzab_wire::{
    GEN_COUNTER_MAX, Op, WriteEntry, gen_end, is_fence_end, next_gen_start, seq_counter, seq_gen,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a write failed that the leader will never sequence.
const STRANDED: &str = "not applied: a newer binding of its session (a reconnect, or the session moving to another replica) superseded it";
pub(crate) const MOVED: &str = "not applied: the session moved to another replica";

/// What the lane reports for a client write.
pub type Done = Box<dyn FnOnce(Result<WriteDone, String>) + Send>;

/// A client write applied at this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteDone {
    pub zxid: u64,
    /// What a keyed write did; `None` for a sync, or when the write was
    /// found applied after a fail-over (its effect was not seen here).
    pub outcome: Option<KeyedOutcome>,
    /// Its session (the lane's number for the slot) and seq: for a `Bind`,
    /// the binding a client names when it fences it off later.
    pub session: u32,
    pub seq: u64,
}

/// A write the gateway hands a lane.
pub struct ClientWrite {
    pub slot: u32,
    pub op: Op,
    /// The first probe slot of the key (0 for a sync).
    pub key: u64,
    /// `[key length][key][value]` (empty for a sync).
    pub payload: Vec<u8>,
    pub done: Done,
    /// False once the connection that sent it is gone: a write not yet
    /// numbered is then dropped, not left for the slot's next connection.
    pub alive: Arc<AtomicBool>,
}

struct Pending {
    seq: u64,
    write: ClientWrite,
    issued_at: Time,
}

#[derive(Default)]
struct Slot {
    /// The last seq this slot used (it outlives the connections it serves).
    seq: u64,
    /// Writes numbered, oldest first; the first `sent` of them are
    /// accepted by the lane's role (writes are offered in order and the
    /// first one not accepted stops the rest, so they are a prefix).
    inflight: VecDeque<Pending>,
    sent: usize,
    /// Writes waiting for room in `inflight`.
    queue: VecDeque<ClientWrite>,
    /// The connection's generation was fenced (its client moved to another
    /// replica): its writes fail until a new connection binds the slot.
    dead: bool,
}

/// A lane's client slots.
pub struct ClientSlots {
    base: u32,
    depth: usize,
    /// Writes are numbered only once the slots know the seqs this node's
    /// sessions used before (a node that rejoins learns them from its
    /// snapshot: numbering from 0 would collide with applied writes).
    ready: bool,
    slots: Vec<Slot>,
    /// Numbered writes not yet accepted, over all slots: an idle lane's
    /// turn skips the slots altogether.
    unsent: usize,
}

impl ClientSlots {
    /// `n` slots whose session numbers start at `base`, each with up to
    /// `depth` writes in flight; `ready` unless the node joins a running
    /// cluster (then [`ClientSlots::reconcile`] makes them ready).
    pub fn new(base: u32, n: u32, depth: usize, ready: bool) -> ClientSlots {
        ClientSlots {
            base,
            depth: depth.max(1),
            ready,
            slots: (0..n).map(|_| Slot::default()).collect(),
            unsent: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes a write; it waits if the slot has `depth` in flight. Waiting
    /// writes of connections that are gone are dropped.
    pub fn take(&mut self, w: ClientWrite, now: Time) {
        let Some(s) = self.slots.get_mut(w.slot as usize) else {
            (w.done)(Err(format!("no client slot {}", w.slot)));
            return;
        };
        // A slot serves one connection at a time, so writes of connections
        // that are gone are all at the front.
        while s.queue.front().is_some_and(|q| !q.alive.load(Ordering::Relaxed)) {
            if let Some(q) = s.queue.pop_front() {
                (q.done)(Err("the connection closed".into()));
            }
        }
        let i = w.slot as usize;
        s.queue.push_back(w);
        self.refill(i, now);
    }

    /// Offers the writes not yet accepted to `submit`, each slot's in
    /// order; returns how many it accepted. A refused write fails with the
    /// slot's writes after it (their seqs would leave a gap for ever); the
    /// slot's numbering resumes after the last write the leader may have.
    pub fn submit(&mut self, now: Time, mut submit: impl FnMut(&WriteEntry<'_>) -> Submitted) -> usize {
        let mut accepted = 0;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if self.unsent == 0 {
                break;
            }
            while let Some(p) = s.inflight.get(s.sent) {
                let entry = WriteEntry {
                    session: self.base + i as u32,
                    seq: p.seq,
                    key: p.write.key,
                    op: p.write.op,
                    value: &p.write.payload,
                };
                match submit(&entry) {
                    Submitted::Accepted => {
                        s.sent += 1;
                        self.unsent -= 1;
                        accepted += 1;
                    }
                    Submitted::Retry => return accepted,
                    Submitted::Stale => {
                        // A fence or a newer generation closed this one: it
                        // and its connection's writes after it fail (they
                        // would leave a gap for ever if the fence were lost
                        // with this leadership); a new connection's Bind
                        // after them goes on.
                        let generation = seq_gen(p.seq);
                        let n = s
                            .inflight
                            .range(s.sent..)
                            .take_while(|q| seq_gen(q.seq) == generation)
                            .count();
                        self.unsent -= n;
                        for q in s.inflight.drain(s.sent..s.sent + n) {
                            (q.write.done)(Err(STRANDED.into()));
                        }
                        if seq_gen(s.seq) == generation {
                            s.dead = true;
                        }
                    }
                    Submitted::Refused(why) => {
                        s.seq = p.seq.wrapping_sub(1);
                        self.unsent -= s.inflight.len() - s.sent;
                        for p in s.inflight.drain(s.sent..) {
                            (p.write.done)(Err(format!("refused by the leader lane: {why}")));
                        }
                        self.unsent += fill(s, self.depth, now);
                        break;
                    }
                }
            }
        }
        accepted
    }

    /// A write of session `session` applied here. Returns the latency of
    /// the client write it completed, if it was one. Writes of older
    /// generations still in flight never will be: this one's Bind stranded
    /// them.
    pub fn complete(&mut self, session: u32, seq: u64, done: WriteDone, now: Time) -> Option<u64> {
        let i = self.slot_index(session)?;
        while self.slots[i]
            .inflight
            .front()
            .is_some_and(|p| seq_gen(p.seq) < seq_gen(seq))
        {
            self.fail_front(i, STRANDED);
        }
        let s = &mut self.slots[i];
        if s.inflight.front().is_none_or(|p| p.seq != seq) {
            return None;
        }
        let p = self.pop_front(i)?;
        (p.write.done)(Ok(done));
        self.refill(i, now);
        Some(now.0.saturating_sub(p.issued_at.0).max(1))
    }

    /// A `Bind` applied here fenced generation `generation` of `session`:
    /// its client went on through another replica, so its writes in flight
    /// will never apply, and its connection's later writes must not.
    pub fn fence(&mut self, session: u32, generation: u64, now: Time) {
        let Some(i) = self.slot_index(session) else {
            return;
        };
        let end = gen_end(generation);
        while self.slots[i].inflight.front().is_some_and(|p| p.seq <= end) {
            self.fail_front(i, MOVED);
        }
        let s = &mut self.slots[i];
        if seq_gen(s.seq) == generation {
            s.dead = true;
        }
        self.refill(i, now);
    }

    /// The slot of lane session number `session`, if it is a client slot.
    fn slot_index(&self, session: u32) -> Option<usize> {
        let i = session.checked_sub(self.base)? as usize;
        (i < self.slots.len()).then_some(i)
    }

    fn pop_front(&mut self, i: usize) -> Option<Pending> {
        let s = &mut self.slots[i];
        let p = s.inflight.pop_front()?;
        match s.sent {
            // Found applied before it was offered again (after a pause).
            0 => self.unsent -= 1,
            _ => s.sent -= 1,
        }
        Some(p)
    }

    fn fail_front(&mut self, i: usize, why: &str) {
        if let Some(p) = self.pop_front(i) {
            (p.write.done)(Err(why.into()));
        }
    }

    /// The epoch ended: writes in flight are submitted again when serving
    /// resumes (the new leader refuses a second copy).
    pub fn unsubmit(&mut self) {
        self.unsent = 0;
        for s in &mut self.slots {
            s.sent = 0;
            self.unsent += s.inflight.len();
        }
    }

    /// Serving resumes: `last(session)` is the last write of each session
    /// this node has applied. Writes in flight found applied complete
    /// (their effect unknown); an idle slot's seq moves past it.
    pub fn reconcile(&mut self, now: Time, last: impl Fn(u32) -> Option<(u64, Zxid)>) -> usize {
        let completed = self.settle(now, last);
        self.ready = true;
        for i in 0..self.slots.len() {
            self.refill(i, now);
        }
        completed
    }

    /// The lanes apply again after the control plane installed a snapshot
    /// or history (`last` as for [`ClientSlots::reconcile`]): writes in
    /// flight it covered are settled first, so that a later Bind or fence
    /// applied by the lane does not call an applied write 'not applied'.
    pub fn settle(&mut self, now: Time, last: impl Fn(u32) -> Option<(u64, Zxid)>) -> usize {
        let mut completed = 0;
        for i in 0..self.slots.len() {
            let session = self.base + i as u32;
            let Some((seq, zxid)) = last(session) else {
                continue;
            };
            let fenced = is_fence_end(seq);
            while let Some(p) = self.slots[i]
                .inflight
                .front()
                .map(|p| p.seq)
                .filter(|&p| p <= seq)
            {
                if fenced || seq_gen(p) != seq_gen(seq) {
                    // Applied before the fence or the newer binding, or
                    // stranded by it: which, this node cannot tell.
                    self.fail_front(i, "outcome unknown: the session moved on during a fail-over");
                    continue;
                }
                let done = WriteDone {
                    zxid: zxid.0,
                    outcome: None,
                    session,
                    seq: p,
                };
                completed += self.complete(session, p, done, now).map_or(0, |_| 1);
            }
            let s = &mut self.slots[i];
            if fenced && seq_gen(s.seq) <= seq_gen(seq) {
                s.dead = true;
            }
            if s.inflight.is_empty() {
                s.seq = s.seq.max(seq);
            }
        }
        completed
    }

    /// Numbers slot `i`'s waiting writes, once the slots know their seqs.
    fn refill(&mut self, i: usize, now: Time) {
        if self.ready {
            self.unsent += fill(&mut self.slots[i], self.depth, now);
        }
    }
}

#[cfg(test)]
impl ClientSlots {
    /// The count of unsent writes matches the slots.
    fn consistent(&self) -> bool {
        self.unsent
            == self
                .slots
                .iter()
                .map(|s| s.inflight.len() - s.sent)
                .sum::<usize>()
    }
}

/// Numbers waiting writes into the slot's window (dropping those of
/// connections that are gone); returns how many it numbered. A `Bind`
/// opens the next generation; other writes count on within it.
fn fill(s: &mut Slot, depth: usize, now: Time) -> usize {
    let before = s.inflight.len();
    while s.inflight.len() < depth {
        let Some(write) = s.queue.pop_front() else { break };
        if !write.alive.load(Ordering::Relaxed) {
            (write.done)(Err("the connection closed".into()));
            continue;
        }
        let seq = match next_seq(s, write.op) {
            Ok(seq) => seq,
            Err(why) => {
                (write.done)(Err(why.into()));
                continue;
            }
        };
        if write.op == Op::Bind {
            s.dead = false;
        }
        s.seq = seq;
        s.inflight.push_back(Pending {
            seq,
            write,
            issued_at: now,
        });
    }
    s.inflight.len() - before
}

/// The seq of the slot's next write: a `Bind` opens the next generation,
/// any other write counts on in the current one.
fn next_seq(s: &Slot, op: Op) -> Result<u64, &'static str> {
    if op == Op::Bind {
        return next_gen_start(s.seq).ok_or("this client slot used up its generations");
    }
    if s.dead {
        return Err(MOVED);
    }
    // The counter's last value marks a fence: no write takes it.
    if seq_counter(s.seq) >= GEN_COUNTER_MAX - 1 {
        return Err("the connection used up its write counter; reconnect");
    }
    Ok(s.seq + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_wire::{GEN_MAX, gen_start};
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<Result<WriteDone, String>>>>;

    fn write(slot: u32, log: &Log) -> ClientWrite {
        let log = log.clone();
        ClientWrite {
            slot,
            op: Op::KeyedPut,
            key: 1,
            payload: vec![1, b'k', b'v'],
            done: Box::new(move |r| log.lock().expect("log").push(r)),
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    fn done(zxid: u64) -> WriteDone {
        WriteDone {
            zxid,
            outcome: Some(KeyedOutcome::Stored),
            session: 0,
            seq: 0,
        }
    }

    fn bind(slot: u32, log: &Log) -> ClientWrite {
        ClientWrite {
            op: Op::Bind,
            payload: Vec::new(),
            ..write(slot, log)
        }
    }

    fn offered(c: &mut ClientSlots) -> Vec<(Op, u64)> {
        let mut seen = Vec::new();
        c.submit(Time(1), |e| {
            seen.push((e.op, e.seq));
            Submitted::Accepted
        });
        seen
    }

    #[test]
    fn each_connection_opens_a_generation_and_a_fence_ends_it() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.take(bind(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        let g1 = gen_start(1);
        assert_eq!(
            offered(&mut c),
            [(Op::Bind, g1), (Op::KeyedPut, g1 + 1), (Op::KeyedPut, g1 + 2)]
        );
        assert!(c.complete(0, g1, done(1), Time(2)).is_some());
        // The client moved on: the fence fails what is in flight, and the
        // connection's later writes, until a new connection binds.
        c.fence(0, 1, Time(3));
        c.take(write(0, &log), Time(3));
        assert_eq!(offered(&mut c), []);
        c.take(bind(0, &log), Time(4));
        c.take(write(0, &log), Time(4));
        let g2 = gen_start(2);
        assert_eq!(offered(&mut c), [(Op::Bind, g2), (Op::KeyedPut, g2 + 1)]);
        let results: Vec<bool> = log.lock().expect("log").iter().map(|r| r.is_ok()).collect();
        assert_eq!(results, [true, false, false, false]);
        assert!(c.consistent());
    }

    #[test]
    fn a_stale_write_at_the_leader_fails_alone() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.take(bind(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        assert_eq!(offered(&mut c).len(), 2);
        // This node leads; the session moved and the fence was sequenced
        // here before this node applied it: the old connection's next
        // write is stale, and the new connection's Bind after it is not.
        c.take(write(0, &log), Time(1));
        c.take(bind(0, &log), Time(1));
        let mut seen = Vec::new();
        c.submit(Time(1), |e| {
            seen.push(e.op);
            if e.op == Op::Bind {
                Submitted::Accepted
            } else {
                Submitted::Stale
            }
        });
        assert_eq!(seen, [Op::KeyedPut, Op::Bind]);
        let log = log.lock().expect("log");
        assert!(log.len() == 1 && log[0].as_ref().is_err_and(|e| e.starts_with("not applied")));
        assert!(c.consistent());
    }

    #[test]
    fn writes_a_snapshot_covered_settle_before_a_fence_applies() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.take(bind(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        assert_eq!(offered(&mut c).len(), 3);
        assert!(c.complete(0, gen_start(1), done(1), Time(1)).is_some());
        // The node falls behind and installs a snapshot holding the first
        // write; then the lane applies a fence of generation 1.
        c.unsubmit();
        let last = gen_start(1) + 1;
        assert_eq!(c.settle(Time(2), |_| Some((last, Zxid(7)))), 1);
        c.fence(0, 1, Time(3));
        let results: Vec<Result<_, String>> = log
            .lock()
            .expect("log")
            .iter()
            .map(|r| r.clone().map(|d| d.outcome))
            .collect();
        assert_eq!(results.len(), 3);
        assert_eq!(
            results[1],
            Ok(None),
            "applied in the snapshot: done, effect unknown"
        );
        assert!(
            results[2].as_ref().is_err_and(|e| e.contains("moved")),
            "{results:?}"
        );
        assert!(c.consistent());
    }

    #[test]
    fn counters_and_generations_do_not_wrap() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.slots[0].seq = gen_start(3) | (GEN_COUNTER_MAX - 2);
        c.take(write(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        assert_eq!(
            offered(&mut c),
            [(Op::KeyedPut, gen_start(3) | (GEN_COUNTER_MAX - 1))]
        );
        assert!(
            c.complete(0, gen_start(3) | (GEN_COUNTER_MAX - 1), done(1), Time(1))
                .is_some()
        );
        c.take(bind(0, &log), Time(1));
        assert_eq!(
            offered(&mut c),
            [(Op::Bind, gen_start(4))],
            "the counter's last value stays a fence's"
        );
        c.slots[0].inflight.clear();
        c.unsent = 0;
        c.slots[0].seq = gen_start(GEN_MAX) | 5;
        c.take(bind(0, &log), Time(2));
        assert_eq!(offered(&mut c), [], "no generation after the last");
        let errors = log.lock().expect("log").iter().filter(|r| r.is_err()).count();
        assert_eq!(errors, 2);
    }

    #[test]
    fn a_later_generation_applied_fails_the_stranded_writes_before_it() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.take(bind(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        // The connection closes with its write in flight; the next binds.
        c.take(bind(0, &log), Time(0));
        assert_eq!(offered(&mut c).len(), 3);
        assert!(c.complete(0, gen_start(1), done(1), Time(1)).is_some());
        assert!(c.complete(0, gen_start(2), done(3), Time(1)).is_some());
        let results: Vec<bool> = log.lock().expect("log").iter().map(|r| r.is_ok()).collect();
        assert_eq!(
            results,
            [true, false, true],
            "the stranded write failed, in order"
        );
        assert!(c.consistent());
    }

    #[test]
    fn a_fence_found_at_reconcile_leaves_the_outcome_unknown() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 8, true);
        c.take(bind(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        assert_eq!(offered(&mut c).len(), 2);
        c.unsubmit();
        let n = c.reconcile(Time(2), |_| Some((gen_end(1), Zxid(9))));
        assert_eq!(n, 0, "nothing is reported applied");
        c.take(write(0, &log), Time(3));
        assert_eq!(offered(&mut c), [], "the fenced connection writes no more");
        assert_eq!(log.lock().expect("log").iter().filter(|r| r.is_err()).count(), 3);
        assert!(c.consistent());
    }

    #[test]
    fn one_write_in_flight_per_slot_in_order() {
        let log = Log::default();
        let mut c = ClientSlots::new(10, 2, 1, true);
        c.take(write(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        let mut seen = Vec::new();
        assert_eq!(
            c.submit(Time(1), |e| {
                seen.push((e.session, e.seq));
                Submitted::Accepted
            }),
            1
        );
        assert_eq!(seen, [(10, 1)]);
        assert_eq!(
            c.complete(10, 2, done(5), Time(2)),
            None,
            "not the write in flight"
        );
        assert_eq!(c.complete(10, 0, done(5), Time(2)), None, "an older one");
        assert_eq!(c.complete(11, 1, done(5), Time(2)), None, "another slot's");
        assert_eq!(c.complete(10, 1, done(5), Time(3)), Some(3));
        assert_eq!(
            c.submit(Time(4), |e| {
                seen.push((e.session, e.seq));
                Submitted::Accepted
            }),
            1
        );
        assert_eq!(seen[1], (10, 2));
        assert_eq!(log.lock().expect("log").as_slice(), &[Ok(done(5))]);
    }

    #[test]
    fn writes_pipeline_up_to_the_depth_and_complete_in_order() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 3, true);
        for _ in 0..5 {
            c.take(write(0, &log), Time(0));
        }
        let mut seqs = Vec::new();
        c.submit(Time(0), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert_eq!(seqs, [1, 2, 3], "three in flight, two wait");
        assert_eq!(
            c.complete(0, 2, done(9), Time(1)),
            None,
            "only the oldest completes"
        );
        assert!(c.complete(0, 1, done(8), Time(1)).is_some());
        assert!(c.complete(0, 2, done(9), Time(1)).is_some());
        // A full lane takes one, then the other next turn, in order.
        let mut n = 0;
        c.submit(Time(2), |e| {
            n += 1;
            seqs.push(e.seq);
            if n == 1 {
                Submitted::Accepted
            } else {
                Submitted::Retry
            }
        });
        c.submit(Time(3), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert_eq!(seqs, [1, 2, 3, 4, 5, 5]);
        assert_eq!(log.lock().expect("log").len(), 2);
        assert!(c.consistent());
    }

    #[test]
    fn a_paused_write_is_resubmitted_or_found_applied() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 2, 4, true);
        c.take(write(0, &log), Time(0));
        c.take(write(1, &log), Time(0));
        assert_eq!(c.submit(Time(0), |_| Submitted::Accepted), 2);
        c.unsubmit();
        // Slot 0's write was applied during the fail-over; slot 1's was not.
        let n = c.reconcile(Time(9), |s| (s == 0).then_some((1, Zxid(77))));
        assert_eq!(n, 1);
        assert_eq!(
            log.lock().expect("log").as_slice(),
            &[Ok(WriteDone {
                zxid: 77,
                outcome: None,
                session: 0,
                seq: 1
            })]
        );
        let mut again = Vec::new();
        c.submit(Time(9), |e| {
            again.push(e.session);
            Submitted::Accepted
        });
        assert_eq!(again, [1]);
        assert!(c.consistent());
    }

    #[test]
    fn refused_and_unknown_slots_fail_alone() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 1, true);
        c.take(write(5, &log), Time(0));
        c.take(write(0, &log), Time(0));
        c.take(write(0, &log), Time(0));
        c.submit(Time(0), |_| Submitted::Refused("no".into()));
        let l = log.lock().expect("log");
        assert_eq!(l.len(), 2);
        assert!(l.iter().all(Result::is_err));
        drop(l);
        // The queued write moved up with the next seq.
        let mut seqs = Vec::new();
        c.submit(Time(0), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        // It reuses the seq the leader never took.
        assert_eq!(seqs, [1]);
        assert!(c.consistent());
    }

    #[test]
    fn a_rejoining_node_numbers_nothing_before_it_knows_its_seqs() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 4, false);
        c.take(write(0, &log), Time(0));
        let mut seqs = Vec::new();
        c.submit(Time(0), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert!(seqs.is_empty(), "numbered before the snapshot's seqs were known");
        // Its previous life applied seq 41 of this session.
        c.reconcile(Time(1), |_| Some((41, Zxid(9))));
        c.submit(Time(1), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert_eq!(seqs, [42]);
        assert!(
            log.lock().expect("log").is_empty(),
            "nothing completed that was not applied"
        );
    }

    #[test]
    fn waiting_writes_of_a_closed_connection_are_dropped() {
        let log = Log::default();
        let mut c = ClientSlots::new(0, 1, 1, true);
        let old = write(0, &log);
        let gone = old.alive.clone();
        c.take(old, Time(0));
        let mut queued = write(0, &log);
        queued.alive = gone.clone();
        c.take(queued, Time(0));
        gone.store(false, Ordering::Relaxed);
        // The slot's next connection: its write does not wait behind the
        // closed connection's (the one in flight still completes).
        c.take(write(0, &log), Time(0));
        assert!(c.complete(0, 1, done(5), Time(1)).is_some());
        let mut seqs = Vec::new();
        c.submit(Time(1), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert_eq!(seqs, [2], "the new connection's write is next");
        assert!(c.consistent());
        let l = log.lock().expect("log");
        assert_eq!(
            l.iter().filter(|r| r.is_err()).count(),
            1,
            "the dropped write failed"
        );
    }

    #[test]
    fn idle_slots_continue_past_applied_seqs() {
        let log = Log::default();
        let mut c = ClientSlots::new(3, 1, 4, true);
        c.reconcile(Time(0), |_| Some((41, Zxid(1))));
        c.take(write(0, &log), Time(0));
        let mut seqs = Vec::new();
        c.submit(Time(0), |e| {
            seqs.push(e.seq);
            Submitted::Accepted
        });
        assert_eq!(seqs, [42]);
    }
}
