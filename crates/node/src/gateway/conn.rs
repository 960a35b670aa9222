//! One client connection, one task: the handshake, then a loop that reads
//! requests, hands writes to the connection's lane at once (they pipeline
//! in the protocol, applied in order), and answers everything in order: a
//! read is served once every write before it on the connection is applied
//! here (read-your-writes). At most `max_inflight` requests wait; past that
//! the task stops reading the socket (back-pressure through TCP).

use super::Ctx;
use crate::client_slots::{ClientWrite, MOVED, WriteDone};
use crate::node::keyed_payload;
use rzab_client::protocol::{
    Binding, ErrorCode, ReadFrameError, Reply, Request, VERSION, WriteOutcome, next_frame,
};
use rzab_store::{KeyedOutcome, slot_key};
use rzab_wire::{BindValue, Fence, GEN_MAX, Op, seq_gen};
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Longest a new connection may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request waits for the replica to serve (an election, a
/// catch-up) before it is answered NotServing.
const SERVE_WAIT: Duration = Duration::from_secs(10);
/// Longest a new connection waits, from its accept, for the replica to
/// serve what the session saw and to apply the connection's Bind: below
/// the client's default connect timeout (5 s), so a client that cannot be
/// served here hears NotServing and why, not a timeout.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(4);
/// Room for bytes from the socket made before each read.
const CHUNK: usize = 16 << 10;

type WriteRx = oneshot::Receiver<Result<WriteDone, String>>;

/// A queued read's key: held inline up to this many bytes. Most reads
/// wait behind a write when a session pipelines; a heap copy of each key
/// was one allocation per read.
type Key = SmallVec<[u8; 48]>;

/// A request waiting for its turn to be answered.
enum Entry {
    /// A read (a Get, or the read of a SyncGet after its Sync).
    Read(Key),
    /// A write handed to the lane; `reply` is false for a SyncGet's Sync.
    Write {
        rx: WriteRx,
        reply: bool,
        done: Option<Result<WriteDone, Refusal>>,
    },
    /// An error answer; `close` ends the connection after it.
    Fail(Refusal, bool),
}

/// An error reply.
struct Refusal {
    code: ErrorCode,
    message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A connection after its handshake.
struct Conn {
    ctx: Arc<Ctx>,
    lane: u8,
    slot: u32,
    /// The newest zxid this session has seen.
    seen: u64,
    queue: VecDeque<Entry>,
    value: Vec<u8>,
    /// Cleared when the connection ends: its writes still waiting at the
    /// lane are dropped (the slot serves other connections next).
    alive: Arc<AtomicBool>,
    /// Writes were handed to the lane since it was last woken.
    lane_has_writes: Cell<bool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

pub(crate) async fn serve(stream: TcpStream, ctx: Arc<Ctx>) {
    let deadline = Instant::now() + HANDSHAKE_WAIT;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let admitted = handshake(&mut rd, &mut buf, &ctx, deadline)
        .await
        .and_then(|(session, seen, prev)| {
            // A fence works within one lane: the session stays on its lane.
            let slot = ctx.slots.acquire(prev.map(|b| b.lane)).ok_or_else(|| {
                refuse(
                    ErrorCode::Busy,
                    "no free client slot at this node (on the session's lane)",
                )
            })?;
            Ok((session, seen, prev, slot))
        });
    let (session, seen, prev, slot) = match admitted {
        Ok(a) => a,
        Err(r) => return refused(&ctx, &mut wr, &mut out, &r).await,
    };
    let (lane, slot_no) = slot.pair;
    let mut c = Conn {
        ctx: ctx.clone(),
        lane,
        slot: slot_no,
        seen,
        queue: VecDeque::new(),
        value: Vec::new(),
        alive: Arc::new(AtomicBool::new(true)),
        lane_has_writes: Cell::new(false),
    };
    let binding = match c.bind(session, prev, deadline).await {
        Ok(b) => b,
        Err(r) => return refused(&ctx, &mut wr, &mut out, &r).await,
    };
    Reply::Welcome {
        session,
        zxid: c.seen,
        node: ctx.node.id,
        max_key: ctx.cfg.max_key as u16,
        max_value: ctx.cfg.max_value as u32,
        max_inflight: ctx.cfg.max_inflight as u32,
        binding,
    }
    .encode(&mut out);
    if wr.write_all(&out).await.is_err() {
        return;
    }
    out.clear();
    let max = ctx.cfg.max_request();
    let mut eof = false;
    loop {
        let close = c.answer(&mut out).await;
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || (eof && c.queue.is_empty()) {
            return;
        }
        // Take the requests already buffered, as room allows, and answer
        // what can be answered before waiting for anything.
        let (added, stop) = c.take_frames(&mut buf, max, &mut out);
        eof |= stop;
        if added > 0 {
            continue;
        }
        let room = c.queue.len() < ctx.cfg.max_inflight;
        buf.reserve(CHUNK);
        if c.wait(&mut rd, &mut buf, room && !eof).await == Some(0) {
            eof = true;
        }
    }
}

async fn refused(ctx: &Ctx, wr: &mut OwnedWriteHalf, out: &mut Vec<u8>, r: &Refusal) {
    ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
    error_reply(out, r);
    let _ = wr.write_all(out).await;
}

impl Conn {
    /// Opens the connection's generation of its slot with a `Bind` owned by
    /// client session `session`, which fences off that session's previous
    /// binding if the client names one; returns the new binding once the
    /// `Bind` is applied here (by `deadline`).
    async fn bind(
        &mut self,
        session: u64,
        prev: Option<Binding>,
        deadline: Instant,
    ) -> Result<Binding, Refusal> {
        let value = BindValue {
            owner: session,
            fence: prev.map(|b| Fence {
                node: b.node,
                session: b.session,
                generation: b.generation,
            }),
        };
        let Entry::Write { rx, .. } = self.submit(Op::Bind, 0, value.to_vec(), false)? else {
            return Err(refuse(ErrorCode::Internal, "a bind is a write"));
        };
        self.lane_has_writes.set(false);
        self.ctx.wake_lane(self.lane);
        let not_serving =
            |why: String| refuse(ErrorCode::NotServing, format!("cannot bind the session: {why}"));
        let done = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(Ok(done))) => done,
            Ok(Ok(Err(why))) => return Err(not_serving(why)),
            Ok(Err(_)) => return Err(not_serving("the lane stopped".into())),
            Err(_) => return Err(not_serving(format!("not applied within {HANDSHAKE_WAIT:?}"))),
        };
        self.seen = self.seen.max(done.zxid);
        Ok(Binding {
            node: self.ctx.node.id,
            lane: self.lane,
            session: done.session,
            generation: seq_gen(done.seq),
        })
    }

    /// Answers from the head of the queue while answers are ready;
    /// returns whether the connection must close.
    async fn answer(&mut self, out: &mut Vec<u8>) -> bool {
        // Queue entries from the front whose reads have been hinted.
        let mut hinted = 0usize;
        while let Some(front) = self.queue.front_mut() {
            match front {
                Entry::Write { rx, done, .. } if done.is_none() => match rx.try_recv() {
                    Ok(r) => *done = Some(settled(Some(r))),
                    Err(oneshot::error::TryRecvError::Empty) => return false,
                    Err(oneshot::error::TryRecvError::Closed) => *done = Some(settled(None)),
                },
                _ => {}
            }
            if hinted == 0 {
                hinted = hint_queued(&self.ctx.node.store, &self.queue);
            }
            hinted -= 1;
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            let result = match entry {
                Entry::Read(key) => self.read(&key, out).await,
                Entry::Write { done, reply, .. } => match done {
                    Some(Ok(d)) if reply => written(d, &mut self.seen, out),
                    Some(Ok(d)) => {
                        self.seen = self.seen.max(d.zxid);
                        Ok(())
                    }
                    Some(Err(r)) => {
                        if !reply {
                            // A SyncGet's Sync failed: its error is the
                            // SyncGet's one answer; drop the read after it.
                            self.queue.pop_front();
                        }
                        Err(r)
                    }
                    None => Ok(()),
                },
                Entry::Fail(r, close) => {
                    if close {
                        self.ctx.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                    error_reply(out, &r);
                    if close {
                        self.queue.clear();
                        return true;
                    }
                    continue;
                }
            };
            if let Err(r) = result {
                self.ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                error_reply(out, &r);
                if r.message == MOVED {
                    // The session goes on through another replica: this
                    // connection will never write again; free its slot.
                    self.queue.clear();
                    return true;
                }
            }
        }
        false
    }

    /// Waits for the head write to apply or (if `read`) for bytes from the
    /// socket, appended to `buf`; returns how many were read.
    async fn wait(&mut self, rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, read: bool) -> Option<usize> {
        let head = match self.queue.front_mut() {
            Some(Entry::Write { rx, done: None, .. }) => Some(rx),
            _ => None,
        };
        let applied = async move {
            match head {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Awaiting took the result: keep it in the entry.
            r = applied => {
                if let Some(Entry::Write { done, .. }) = self.queue.front_mut() {
                    *done = Some(settled(r));
                }
                None
            }
            n = rd.read_buf(buf), if read => Some(n.unwrap_or(0)),
        }
    }

    /// Moves whole frames from `buf` into the queue while there is room;
    /// returns how many, and whether the stream is unusable (no more
    /// reading).
    fn take_frames(&mut self, buf: &mut Vec<u8>, max: usize, out: &mut Vec<u8>) -> (usize, bool) {
        let (mut used, mut added) = (0, 0);
        let mut stop = false;
        // Frames ahead whose reads have been hinted to the store.
        let mut hinted = 0usize;
        while self.queue.len() < self.ctx.cfg.max_inflight {
            if hinted == 0 {
                hinted = hint_reads(&self.ctx.node.store, &buf[used..], max);
            }
            match next_frame(&buf[used..], max) {
                Ok(Some((body, n))) => {
                    hinted = hinted.saturating_sub(1);
                    stop = self.request(body, out);
                    used += n;
                    added += 1;
                    if stop {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.queue
                        .push_back(Entry::Fail(refuse(ErrorCode::TooLarge, e.to_string()), true));
                    stop = true;
                    added += 1;
                    break;
                }
            }
        }
        buf.drain(..used);
        // One wake-up for the writes of the whole batch.
        if self.lane_has_writes.take() {
            self.ctx.wake_lane(self.lane);
        }
        (added, stop)
    }

    /// Queues one request (a write goes to the lane now; a read with
    /// nothing before it is answered into `out` at once); true if the
    /// stream is unusable after it.
    fn request(&mut self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let s = &self.ctx.stats;
        let req = match Request::decode(body) {
            Ok((Request::Hello { .. }, _)) => Err("a second Hello".to_string()),
            Ok((r, _)) => Ok(r),
            Err(e) => Err(e.to_string()),
        };
        let req = match req {
            Ok(r) => r,
            Err(why) => {
                self.queue
                    .push_back(Entry::Fail(refuse(ErrorCode::Malformed, why), true));
                return true;
            }
        };
        let entries = match req {
            Request::Get { key } => {
                s.gets.fetch_add(1, Ordering::Relaxed);
                if let Err(r) = self.check_key(key) {
                    self.queue.push_back(Entry::Fail(r, false));
                    return false;
                }
                // Nothing to wait for: answer now, without queueing a copy
                // of the key (the usual read).
                if self.queue.is_empty()
                    && let Some(at) = ready_at(&self.ctx, self.seen)
                {
                    self.serve_read(key, at, out);
                    return false;
                }
                Ok((Entry::Read(Key::from_slice(key)), None))
            }
            Request::SyncGet { key } => {
                s.sync_gets.fetch_add(1, Ordering::Relaxed);
                self.check_key(key)
                    .and_then(|()| self.submit(Op::Sync, 0, Vec::new(), false))
                    .map(|w| (w, Some(Entry::Read(Key::from_slice(key)))))
            }
            Request::Put { key, value } => {
                s.puts.fetch_add(1, Ordering::Relaxed);
                self.check_key(key)
                    .and_then(|()| self.check_value(value))
                    .and_then(|()| {
                        self.submit(Op::KeyedPut, slot_key(key, 0), keyed_payload(key, value), true)
                    })
                    .map(|w| (w, None))
            }
            Request::Delete { key } => {
                s.deletes.fetch_add(1, Ordering::Relaxed);
                self.check_key(key)
                    .and_then(|()| {
                        self.submit(Op::KeyedDelete, slot_key(key, 0), keyed_payload(key, &[]), true)
                    })
                    .map(|w| (w, None))
            }
            // A second Hello was refused above.
            Request::Hello { .. } => return true,
        };
        match entries {
            Ok((first, then)) => {
                self.queue.push_back(first);
                self.queue.extend(then);
            }
            Err(r) => self.queue.push_back(Entry::Fail(r, false)),
        }
        false
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Refusal> {
        if key.is_empty() {
            return Err(refuse(ErrorCode::EmptyKey, "keys are at least 1 byte"));
        }
        let max = self.ctx.cfg.max_key;
        if key.len() > max {
            return Err(refuse(
                ErrorCode::KeyTooLong,
                format!("key of {} bytes exceeds {max}", key.len()),
            ));
        }
        Ok(())
    }

    fn check_value(&self, v: &[u8]) -> Result<(), Refusal> {
        let max = self.ctx.cfg.max_value;
        if v.len() > max {
            return Err(refuse(
                ErrorCode::ValueTooLong,
                format!("value of {} bytes exceeds {max}", v.len()),
            ));
        }
        Ok(())
    }

    /// Hands a write to the connection's lane.
    fn submit(&self, op: Op, key: u64, payload: Vec<u8>, reply: bool) -> Result<Entry, Refusal> {
        let (tx, rx) = oneshot::channel();
        let w = ClientWrite {
            slot: self.slot,
            op,
            key,
            payload,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
            alive: self.alive.clone(),
        };
        let node = &self.ctx.node;
        if node.links[self.lane as usize].client_tx.send(w).is_err() {
            return Err(refuse(ErrorCode::NotServing, "the node is stopping"));
        }
        self.lane_has_writes.set(true);
        Ok(Entry::Write {
            rx,
            reply,
            done: None,
        })
    }

    /// Serves a read from the local store once the replica serves and has
    /// applied everything the session saw.
    async fn read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        // The usual case first, without reading the clock.
        let at = match ready_at(&self.ctx, self.seen) {
            Some(at) => at,
            None => wait_serving(&self.ctx, self.seen, Instant::now() + SERVE_WAIT).await?,
        };
        self.serve_read(key, at, out);
        Ok(())
    }

    /// Answers a read from the store, which has applied `at`.
    fn serve_read(&mut self, key: &[u8], at: u64, out: &mut Vec<u8>) {
        self.seen = at;
        match self.ctx.node.store.get_keyed(key, &mut self.value) {
            Some(meta) => Reply::Value {
                zxid: at,
                version: meta.zxid,
                value: &self.value,
            }
            .encode(out),
            None => Reply::NotFound { zxid: at }.encode(out),
        }
    }
}

/// Frames [`hint_reads`] looks ahead at once.
const HINT_AHEAD: usize = rzab_store::PREFETCH_MAX;

/// Hints the store about the Gets among the next [`HINT_AHEAD`] whole
/// frames of `buf`, so a batch's cache misses overlap instead of queueing
/// one after another. Returns how many frames it looked at. A lone Get
/// gains nothing from a hint and gets none.
fn hint_reads(store: &rzab_store::Store, buf: &[u8], max: usize) -> usize {
    let mut keys: [&[u8]; HINT_AHEAD] = [&[]; HINT_AHEAD];
    let (mut frames, mut gets, mut at) = (0, 0, 0);
    while frames < HINT_AHEAD {
        let Ok(Some((body, n))) = next_frame(&buf[at..], max) else {
            break;
        };
        if let Ok((Request::Get { key }, _)) = Request::decode(body) {
            keys[gets] = key;
            gets += 1;
        }
        frames += 1;
        at += n;
    }
    if gets > 1 {
        store.prefetch_keyed(&keys[..gets]);
    }
    frames
}

/// Like [`hint_reads`], for the reads among the next [`HINT_AHEAD`]
/// entries of a queue that a write had held up, up to the next write not
/// yet applied (what follows it cannot be answered now); returns how many
/// entries it looked at (at least one, so the caller's countdown moves).
fn hint_queued(store: &rzab_store::Store, queue: &VecDeque<Entry>) -> usize {
    let mut keys: [&[u8]; HINT_AHEAD] = [&[]; HINT_AHEAD];
    let (mut gets, mut looked) = (0, 0);
    for e in queue.iter().take(HINT_AHEAD) {
        match e {
            Entry::Write { done: None, .. } if looked > 0 => break,
            Entry::Read(key) => {
                keys[gets] = key;
                gets += 1;
            }
            _ => {}
        }
        looked += 1;
    }
    if gets > 1 {
        store.prefetch_keyed(&keys[..gets]);
    }
    looked.max(1)
}

fn error_reply(out: &mut Vec<u8>, r: &Refusal) {
    Reply::Error {
        code: r.code,
        message: &r.message,
    }
    .encode(out);
}

/// Reads and checks the Hello; waits until this replica has applied what
/// the session saw (by `deadline`). Returns (session id, applied point,
/// previous binding).
async fn handshake(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    ctx: &Ctx,
    deadline: Instant,
) -> Result<(u64, u64, Option<Binding>), Refusal> {
    let body = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(rd, buf, hello_max(ctx))).await {
        Ok(r) => r?,
        Err(_) => return Err(refuse(ErrorCode::Malformed, "no Hello within 10 s")),
    };
    let (req, version) =
        Request::decode(&buf[body.clone()]).map_err(|e| refuse(ErrorCode::Malformed, e.to_string()))?;
    let Request::Hello {
        session,
        last_zxid,
        prev,
        token,
    } = req
    else {
        return Err(refuse(ErrorCode::Malformed, "the first message must be Hello"));
    };
    if version != VERSION {
        return Err(refuse(
            ErrorCode::BadVersion,
            format!("protocol version {version}; this server speaks {VERSION}"),
        ));
    }
    if let Some(expected) = &ctx.cfg.token
        && !same(expected.as_bytes(), token)
    {
        return Err(refuse(ErrorCode::Unauthorized, "wrong token"));
    }
    if let Some(b) = prev
        && !(1..=GEN_MAX).contains(&b.generation)
    {
        return Err(refuse(
            ErrorCode::Malformed,
            format!(
                "the previous binding's generation {} is not one a server gives",
                b.generation
            ),
        ));
    }
    let session = if session == 0 { new_session(ctx) } else { session };
    buf.drain(..body.end);
    let seen = wait_serving(ctx, last_zxid, deadline).await?;
    Ok((session, seen, prev))
}

/// The longest Hello: fixed fields and a token of up to 1 KiB (requests
/// may be shorter than that under small key and value limits).
fn hello_max(ctx: &Ctx) -> usize {
    ctx.cfg.max_request().max(1 + 4 + 1 + 8 + 8 + 1 + 14 + 2 + 1024)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new session id: the node's id, then 56 random bits (a session's
/// bindings are fenced only by Binds carrying its id, so ids must not be
/// guessable).
fn new_session(ctx: &Ctx) -> u64 {
    (u64::from(ctx.node.id) << 56 | rand::random::<u64>() >> 8).max(1)
}

/// Reads the Hello frame into `buf`; returns its body's range.
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<std::ops::Range<usize>, Refusal> {
    rzab_client::protocol::read_frame(rd, buf, max)
        .await
        .map_err(|e| match e {
            ReadFrameError::Frame(e) => refuse(ErrorCode::TooLarge, e.to_string()),
            ReadFrameError::Closed | ReadFrameError::Io(_) => {
                refuse(ErrorCode::Malformed, "closed mid-frame")
            }
        })
}

/// Waits until this node serves in an epoch and has applied `zxid`, at
/// most until `deadline`; returns its applied point.
async fn wait_serving(ctx: &Ctx, zxid: u64, deadline: Instant) -> Result<u64, Refusal> {
    let n = &ctx.node;
    let ready = || ready_at(ctx, zxid);
    // The usual case, without reading the clock.
    if let Some(applied) = ready() {
        return Ok(applied);
    }
    loop {
        tokio::time::sleep(Duration::from_micros(200)).await;
        if let Some(applied) = ready() {
            return Ok(applied);
        }
        if Instant::now() > deadline {
            return Err(refuse(
                ErrorCode::NotServing,
                format!(
                    "node {} is not serving at zxid {zxid:#x} (applied {:#x})",
                    n.id,
                    n.gate.applied().0
                ),
            ));
        }
    }
}

/// The node's applied point if it serves and has applied `zxid`.
fn ready_at(ctx: &Ctx, zxid: u64) -> Option<u64> {
    let n = &ctx.node;
    let applied = n.gate.applied().0;
    (n.standing.serving.load(Ordering::Acquire) && applied >= zxid).then_some(applied)
}

/// What the lane reported for a write (`None`: it dropped the write,
/// stopping).
fn settled(r: Option<Result<WriteDone, String>>) -> Result<WriteDone, Refusal> {
    match r {
        Some(Ok(d)) => Ok(d),
        Some(Err(why)) => Err(refuse(ErrorCode::Internal, why)),
        None => Err(refuse(
            ErrorCode::NotServing,
            "the node stopped before the write applied",
        )),
    }
}

fn written(done: WriteDone, seen: &mut u64, out: &mut Vec<u8>) -> Result<(), Refusal> {
    *seen = (*seen).max(done.zxid);
    let outcome = match done.outcome {
        Some(KeyedOutcome::Stored) => WriteOutcome::Stored,
        Some(KeyedOutcome::Deleted(true)) => WriteOutcome::Deleted,
        Some(KeyedOutcome::Deleted(false)) => WriteOutcome::Absent,
        Some(KeyedOutcome::Full) => {
            return Err(refuse(
                ErrorCode::StoreFull,
                "the store has no room for another key",
            ));
        }
        Some(KeyedOutcome::Invalid) => {
            return Err(refuse(ErrorCode::Internal, "the write was refused as invalid"));
        }
        None => WriteOutcome::Unknown,
    };
    Reply::Written {
        zxid: done.zxid,
        outcome,
    }
    .encode(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_store::{Store, StoreConfig};

    fn frames(reqs: &[Request<'_>]) -> Vec<u8> {
        let mut buf = Vec::new();
        reqs.iter().for_each(|r| r.encode(&mut buf));
        buf
    }

    #[test]
    fn hints_look_at_whole_frames_only_and_change_nothing() {
        let store = Store::new(StoreConfig {
            capacity: 64,
            value_size: 64,
        })
        .expect("store");
        store.put_keyed(b"a", b"1", 7).expect("put");
        let get = |key: &'static [u8]| Request::Get { key };
        let put = Request::Put {
            key: b"b",
            value: b"2",
        };
        let mut buf = frames(&[get(b"a"), put, get(b"zz")]);
        assert_eq!(hint_reads(&store, &buf, 1 << 10), 3);
        // A partial frame at the end is not looked at.
        let whole = buf.len();
        get(b"a").encode(&mut buf);
        assert_eq!(hint_reads(&store, &buf[..buf.len() - 1], 1 << 10), 3);
        assert_eq!(hint_reads(&store, &buf[whole..], 1 << 10), 1);
        assert_eq!(hint_reads(&store, &[], 1 << 10), 0);
        // At most HINT_AHEAD frames at once; an oversized frame stops the look.
        let many = frames(&vec![get(b"a"); HINT_AHEAD + 3]);
        assert_eq!(hint_reads(&store, &many, 1 << 10), HINT_AHEAD);
        assert_eq!(hint_reads(&store, &many, 2), 0);
        // Hints are hints: lookups are as before.
        let mut out = Vec::new();
        assert_eq!(store.get_keyed(b"a", &mut out).map(|m| m.zxid), Some(7));
        assert_eq!(out, b"1");
        assert!(store.get_keyed(b"zz", &mut out).is_none());
    }
}
