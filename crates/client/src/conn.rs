//! A session's connection. Requests are encoded straight into one shared
//! outgoing buffer, each with a reply slot, and replies are matched to the
//! slots in order. A caller with nothing else in flight writes its request
//! itself (one request at a time costs no hop to another task); with
//! requests in flight, the connection task writes everything queued in one
//! write, after letting the callers woken by the last replies queue theirs.

use crate::client::{ClientConfig, Error, Session, Versioned, connect_any};
use crate::protocol::{DecodeError, Reply, Request, WriteOutcome, next_frame};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// A decoded reply that owns its bytes.
#[derive(Debug)]
pub(crate) enum Answer {
    Value(Versioned),
    NotFound,
    Written(u64, WriteOutcome),
}

type ReplyTx = oneshot::Sender<Result<Answer, Error>>;

/// What callers and the connection's tasks share.
pub(crate) struct Conn {
    out: Mutex<Outgoing>,
    /// Wakes the connection task: bytes to write (or a connection to open
    /// for them), or every handle gone.
    work: Notify,
    /// Wakes callers waiting for room under `max_inflight`.
    room: Notify,
    closed: AtomicBool,
    max_inflight: usize,
}

#[derive(Default)]
struct Outgoing {
    /// Requests not yet written, in order.
    bytes: Vec<u8>,
    /// A slot per request written or queued, oldest first.
    slots: VecDeque<ReplyTx>,
    /// The open connection; `None` while there is none.
    stream: Option<Arc<TcpStream>>,
    /// The connection task owns the writing (it was told of `bytes`, or is
    /// writing): callers must not write themselves. Never false while
    /// `bytes` holds anything.
    busy: bool,
    /// Callers waiting for room.
    waiting: usize,
}

impl Conn {
    pub(crate) fn new(max_inflight: usize) -> Conn {
        Conn {
            out: Mutex::new(Outgoing::default()),
            work: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            max_inflight: max_inflight.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        // A panic elsewhere while holding the lock leaves consistent state
        // (every update is a single step), so poisoning is ignored.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` and waits for its answer.
    pub(crate) async fn call(&self, req: &Request<'_>) -> Result<Answer, Error> {
        let rx = self.enqueue(req).await;
        rx.await.map_err(|_| Error::ConnectionLost)?
    }

    /// Queues `req` once fewer than `max_inflight` requests are in flight.
    async fn enqueue(&self, req: &Request<'_>) -> oneshot::Receiver<Result<Answer, Error>> {
        {
            let mut o = self.lock();
            // Not past callers already waiting for room.
            if o.slots.len() < self.max_inflight && o.waiting == 0 {
                return self.push(&mut o, req);
            }
        }
        self.enqueue_when_room(req).await
    }

    async fn enqueue_when_room(&self, req: &Request<'_>) -> oneshot::Receiver<Result<Answer, Error>> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check, so a slot freed in between wakes it.
            room.as_mut().enable();
            {
                let mut o = self.lock();
                if o.slots.len() < self.max_inflight {
                    return self.push(&mut o, req);
                }
                o.waiting += 1;
            }
            let _waiting = Waiting(self);
            room.await;
        }
    }

    fn push(&self, o: &mut Outgoing, req: &Request<'_>) -> oneshot::Receiver<Result<Answer, Error>> {
        let (tx, rx) = oneshot::channel();
        let alone = o.slots.is_empty() && !o.busy;
        req.encode(&mut o.bytes);
        o.slots.push_back(tx);
        if alone && let Some(stream) = &o.stream {
            // Nothing to batch with: write now. An error leaves the bytes to
            // the connection task, which finds the connection broken.
            if let Ok(n) = stream.try_write(&o.bytes) {
                o.bytes.drain(..n);
            }
        }
        if !o.bytes.is_empty() && !o.busy {
            o.busy = true;
            self.work.notify_one();
        }
        rx
    }

    /// The reply slot for the next reply, if any request is in flight.
    fn pop_slot(&self) -> Option<ReplyTx> {
        let mut o = self.lock();
        let tx = o.slots.pop_front();
        if o.waiting > 0 {
            self.room.notify_waiters();
        }
        tx
    }

    fn in_flight(&self) -> bool {
        !self.lock().slots.is_empty()
    }

    /// Ends the connection: every request written or queued fails with `e`.
    fn fail_all(&self, e: &Error) {
        let lost: Vec<ReplyTx> = {
            let mut o = self.lock();
            o.stream = None;
            o.bytes.clear();
            o.busy = false;
            if o.waiting > 0 {
                self.room.notify_waiters();
            }
            o.slots.drain(..).collect()
        };
        for tx in lost {
            let _ = tx.send(Err(e.clone()));
        }
    }

    /// Every handle is gone: the connection task ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.work.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Counts a caller waiting for room while it waits (also if its future is
/// dropped).
struct Waiting<'a>(&'a Conn);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

/// Runs connections until every handle is gone. After a break, the next
/// request reconnects; if no server answers, the requests queued fail.
pub(crate) async fn drive(
    conn: Arc<Conn>,
    cfg: ClientConfig,
    s: Arc<Session>,
    first: TcpStream,
    mut next: usize,
) {
    let mut stream = Some(first);
    loop {
        let st = match stream.take() {
            Some(st) => st,
            None => {
                conn.work.notified().await;
                if conn.is_closed() {
                    return;
                }
                if conn.lock().bytes.is_empty() {
                    continue;
                }
                match connect_any(&cfg, &s, &mut next).await {
                    Ok(st) => st,
                    Err(e) => {
                        conn.fail_all(&e);
                        continue;
                    }
                }
            }
        };
        let st = Arc::new(st);
        conn.lock().stream = Some(st.clone());
        let reader = tokio::spawn(read_replies(
            conn.clone(),
            st.clone(),
            s.clone(),
            cfg.max_frame,
            cfg.reply_timeout,
        ));
        let open = write_requests(&conn, &st, reader).await;
        conn.fail_all(&Error::ConnectionLost);
        if !open {
            return;
        }
    }
}

/// Writes what callers queue until the connection breaks (true) or every
/// handle is gone (false).
async fn write_requests(conn: &Conn, st: &TcpStream, mut reader: JoinHandle<()>) -> bool {
    let mut batch = Vec::new();
    let open = loop {
        {
            let mut o = conn.lock();
            if o.bytes.is_empty() {
                o.busy = false;
            } else {
                std::mem::swap(&mut o.bytes, &mut batch);
            }
        }
        if !batch.is_empty() {
            tokio::select! {
                r = write_all(st, &batch) => if r.is_err() { break true },
                _ = &mut reader => break true,
            }
            batch.clear();
            continue;
        }
        tokio::select! {
            _ = conn.work.notified() => {}
            _ = &mut reader => break true,
        }
        if conn.is_closed() {
            break false;
        }
        // Let the callers woken by the last replies queue their requests
        // first: one write for many.
        tokio::task::yield_now().await;
    };
    reader.abort();
    open
}

async fn write_all(st: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        st.writable().await?;
        match st.try_write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Matches replies to the oldest requests in flight until the connection
/// ends: closed, broken, a reply nobody asked for, or silent for `silence`
/// with requests in flight (a replica that vanished without closing it).
async fn read_replies(conn: Arc<Conn>, st: Arc<TcpStream>, s: Arc<Session>, max: usize, silence: Duration) {
    let mut buf = Vec::with_capacity(64 << 10);
    // Checked in quarters of the timeout: a request sent in the middle of
    // a quarter still gets most of its time.
    let mut tick = tokio::time::interval(silence / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut heard, mut quiet) = (false, 0u32);
    loop {
        let mut start = 0;
        loop {
            let (a, used) = match next_frame(&buf[start..], max) {
                Ok(Some((body, used))) => (answer(body, &s), used),
                Ok(None) => break,
                Err(_) => return,
            };
            start += used;
            let Some(tx) = conn.pop_slot() else {
                return; // A reply nobody asked for: the connection is unusable.
            };
            let _ = tx.send(a);
        }
        buf.drain(..start);
        buf.reserve(16 << 10);
        tokio::select! {
            r = st.readable() => {
                if r.is_err() {
                    return;
                }
                match st.try_read_buf(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => heard = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = tick.tick() => {
                quiet = if heard || !conn.in_flight() { 0 } else { quiet + 1 };
                heard = false;
                if quiet >= 4 {
                    return;
                }
            }
        }
    }
}

fn answer(body: &[u8], s: &Session) -> Result<Answer, Error> {
    let reply = Reply::decode(body).map_err(|e: DecodeError| Error::Protocol(e.to_string()))?;
    match reply {
        Reply::Value { zxid, version, value } => {
            s.saw(zxid.max(version));
            Ok(Answer::Value(Versioned {
                value: value.to_vec(),
                version,
            }))
        }
        Reply::NotFound { zxid } => {
            s.saw(zxid);
            Ok(Answer::NotFound)
        }
        Reply::Written { zxid, outcome } => {
            s.saw(zxid);
            Ok(Answer::Written(zxid, outcome))
        }
        Reply::Error { code, message } => Err(Error::Server {
            code,
            message: message.to_string(),
        }),
        Reply::Welcome { .. } => Err(Error::Protocol("unexpected Welcome".into())),
    }
}
