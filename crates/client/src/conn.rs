//! A session's connection. Requests are encoded straight into one shared
//! outgoing buffer, each with a reply slot, and replies are matched to the
//! slots in order. A caller with nothing else in flight writes its request
//! itself (one request at a time costs no hop to another task); with
//! requests in flight, the connection task writes everything queued in one
//! write, after letting the callers woken by the last replies queue theirs.

use crate::client::{ClientConfig, Error, Session, Versioned, connect_any};
use crate::protocol::{DecodeError, Reply, Request, WriteOutcome, next_frame};
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::Interest;
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
    closed: AtomicBool,
    max_inflight: usize,
}

#[derive(Default)]
struct Outgoing {
    /// Requests not yet written, in order.
    bytes: Vec<u8>,
    /// Bytes at the front of `bytes` that finish a request partly written.
    partial: usize,
    /// A slot per request written or queued, oldest first.
    slots: VecDeque<ReplyTx>,
    /// The newest slots whose requests are whole in `bytes`: nothing of
    /// them reached a server, so they can go out on the next connection.
    unsent: usize,
    /// The open connection; `None` while there is none.
    stream: Option<Arc<TcpStream>>,
    /// The connection task owns the writing (it was told of `bytes`, or is
    /// writing): callers must not write themselves. Never false while
    /// `bytes` holds anything.
    busy: bool,
    /// Counts connections ended: a reader of an ended connection (still
    /// running for a moment after its abort) takes no slot of the next.
    generation: u64,
    /// Requests waiting for room under `max_inflight`, encoded, in order.
    waiting: VecDeque<(Vec<u8>, ReplyTx)>,
}

impl Conn {
    pub(crate) fn new(max_inflight: usize) -> Conn {
        Conn {
            out: Mutex::new(Outgoing::default()),
            work: Notify::new(),
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
        let rx = self.enqueue(req);
        rx.await.map_err(|_| Error::ConnectionLost)?
    }

    /// Queues `req` for writing, or behind the requests already waiting for
    /// room if `max_inflight` are in flight (in order: a session's
    /// requests go out as issued).
    fn enqueue(&self, req: &Request<'_>) -> oneshot::Receiver<Result<Answer, Error>> {
        let (tx, rx) = oneshot::channel();
        let mut o = self.lock();
        if o.waiting.is_empty() && o.slots.len() < self.max_inflight {
            self.push(&mut o, req, tx);
        } else {
            let mut frame = Vec::with_capacity(req.encoded_len_hint());
            req.encode(&mut frame);
            o.waiting.push_back((frame, tx));
        }
        rx
    }

    fn push(&self, o: &mut Outgoing, req: &Request<'_>, tx: ReplyTx) {
        // Nothing in flight and nobody writing: `bytes` is empty.
        let alone = o.slots.is_empty() && !o.busy;
        req.encode(&mut o.bytes);
        o.slots.push_back(tx);
        o.unsent += 1;
        if alone && let Some(stream) = &o.stream {
            // Nothing to batch with: write now. An error leaves the bytes to
            // the connection task, which finds the connection broken.
            if let Ok(n @ 1..) = stream.try_write(&o.bytes) {
                o.bytes.drain(..n);
                o.partial = o.bytes.len();
                o.unsent = 0;
            }
        }
        self.ensure_writer(o);
    }

    /// Tells the connection task about queued bytes it does not know of.
    fn ensure_writer(&self, o: &mut Outgoing) {
        if !o.bytes.is_empty() && !o.busy {
            o.busy = true;
            self.work.notify_one();
        }
    }

    /// Moves waiting requests into the outgoing buffer while there is
    /// room; requests whose caller gave up are dropped unsent.
    fn admit(&self, o: &mut Outgoing) {
        while o.slots.len() < self.max_inflight {
            let Some((frame, tx)) = o.waiting.pop_front() else {
                break;
            };
            if tx.is_closed() {
                continue;
            }
            o.bytes.extend_from_slice(&frame);
            o.slots.push_back(tx);
            o.unsent += 1;
        }
        self.ensure_writer(o);
    }

    /// The reply slot for the next reply on connection `generation`, if
    /// any request written there waits for one.
    fn pop_slot(&self, generation: u64) -> Option<ReplyTx> {
        let mut o = self.lock();
        // Only a request written can be answered.
        if o.generation != generation || o.slots.len() <= o.unsent {
            return None;
        }
        let tx = o.slots.pop_front();
        if !o.waiting.is_empty() {
            self.admit(&mut o);
        }
        tx
    }

    fn in_flight(&self) -> bool {
        !self.lock().slots.is_empty()
    }

    /// Ends the connection: requests written (even in part) fail with
    /// ConnectionLost; the ones nothing of which was written go out on the
    /// next connection, before those waiting for room.
    fn end_connection(&self) {
        self.fail(&Error::ConnectionLost, true);
    }

    /// No connection could be opened: every request queued fails with `e`
    /// (those waiting for room get the next attempt).
    fn fail_queued(&self, e: &Error) {
        self.fail(e, false);
    }

    /// Fails the requests written, and unless `keep_unsent` also those
    /// queued to be; then admits waiting ones into the room made.
    fn fail(&self, e: &Error, keep_unsent: bool) {
        let lost: Vec<ReplyTx> = {
            let mut o = self.lock();
            o.stream = None;
            o.generation += 1;
            o.busy = false;
            let partial = std::mem::take(&mut o.partial);
            o.bytes.drain(..partial);
            if !keep_unsent {
                o.bytes.clear();
                o.unsent = 0;
            }
            let sent = o.slots.len() - o.unsent;
            let lost = o.slots.drain(..sent).collect();
            self.admit(&mut o);
            lost
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
                        conn.fail_queued(&e);
                        continue;
                    }
                }
            }
        };
        let st = Arc::new(st);
        let generation = {
            let mut o = conn.lock();
            o.stream = Some(st.clone());
            o.generation
        };
        let reader = tokio::spawn(read_replies(
            conn.clone(),
            generation,
            st.clone(),
            s.clone(),
            cfg.max_frame,
            cfg.reply_timeout,
        ));
        let open = write_requests(&conn, &st, reader).await;
        conn.end_connection();
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
            if o.stream.is_none() {
                break true; // The reader found the connection ended.
            }
            if o.bytes.is_empty() {
                o.busy = false;
            } else {
                std::mem::swap(&mut o.bytes, &mut batch);
                o.partial = 0;
                o.unsent = 0;
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
async fn read_replies(
    conn: Arc<Conn>,
    generation: u64,
    st: Arc<TcpStream>,
    s: Arc<Session>,
    max: usize,
    silence: Duration,
) {
    // However it ends, later requests queue for the next connection
    // instead of going to this one.
    let _ended = Ended(&conn, generation);
    let mut buf = Vec::with_capacity(64 << 10);
    // Checked in quarters of the timeout: a request sent in the middle of
    // a quarter still gets most of its time.
    let mut tick = tokio::time::interval((silence / 4).max(Duration::from_millis(1)));
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
            let Some(tx) = conn.pop_slot(generation) else {
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
                match read_some(&st, &mut buf) {
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

/// Reads what has arrived into `buf`'s spare room, as `try_read_buf` does,
/// except that a read which leaves room over clears the socket's readiness
/// (it found the socket drained, as tokio's own `poll_read` reasons): with
/// one request in flight, that saves a read per reply that finds nothing.
fn read_some(st: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() == buf.capacity() {
        // No room would read as the end of the stream.
        buf.reserve(16 << 10);
    }
    let mut got = 0;
    let r = st.try_io(Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        got = SockRef::from(st).recv(spare)?;
        if got > 0 && got < room {
            // Tells `try_io` to clear the readiness; the bytes are kept.
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    // SAFETY: recv(2) initialized the first `got` bytes of the spare room
    // (and `got` is 0 if it failed).
    unsafe { buf.set_len(buf.len() + got) };
    match r {
        Ok(()) => Ok(got),
        Err(_) if got > 0 => Ok(got),
        Err(e) => Err(e),
    }
}

/// Marks connection `.1` ended when its reader stops (or is aborted).
struct Ended<'a>(&'a Conn, u64);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        let mut o = self.0.lock();
        if o.generation == self.1 {
            o.stream = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &[u8]) -> Request<'_> {
        Request::Get { key }
    }

    fn frame(req: &Request<'_>) -> Vec<u8> {
        let mut f = Vec::new();
        req.encode(&mut f);
        f
    }

    /// What the connection task does when it takes the queued bytes.
    fn take_as_writer(c: &Conn) -> Vec<u8> {
        let mut o = c.lock();
        o.partial = 0;
        o.unsent = 0;
        std::mem::take(&mut o.bytes)
    }

    /// Small rooms force partial reads: every byte arrives once, in order,
    /// and a read that filled its room is followed by one that does not wait.
    #[test]
    fn reads_fill_only_the_spare_room_and_lose_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = l.local_addr().expect("addr");
            let client = TcpStream::connect(addr).await.expect("connect");
            let (mut server, _) = l.accept().await.expect("accept");
            let sent: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
            server.write_all(&sent).await.expect("write");
            let mut got = Vec::new();
            while got.len() < sent.len() {
                let mut buf = Vec::with_capacity(64);
                let wait = tokio::time::timeout(Duration::from_secs(5), client.readable());
                wait.await.expect("readable in time").expect("readable");
                match read_some(&client, &mut buf) {
                    Ok(n) => {
                        assert!(n > 0 && n <= 64, "{n} bytes into a 64-byte room");
                        assert_eq!(buf.len(), n);
                        got.extend_from_slice(&buf);
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
                }
            }
            assert_eq!(got, sent);
            // The last read left room over: it cleared the readiness.
            let idle = tokio::time::timeout(Duration::from_millis(50), client.readable()).await;
            assert!(idle.is_err(), "readable with nothing to read");
            drop(server);
            let mut buf = Vec::with_capacity(64);
            client.readable().await.expect("readable at close");
            assert_eq!(
                read_some(&client, &mut buf).expect("end"),
                0,
                "the close reads as 0"
            );
        });
    }

    #[test]
    fn requests_never_written_survive_a_broken_connection() {
        let c = Conn::new(8);
        let mut a = c.enqueue(&get(b"a"));
        assert_eq!(take_as_writer(&c), frame(&get(b"a")));
        let mut b = c.enqueue(&get(b"b"));
        let mut d = c.enqueue(&get(b"d"));
        c.end_connection();
        // `a` was written: it may have been applied, so it fails.
        assert!(matches!(a.try_recv(), Ok(Err(Error::ConnectionLost))));
        // `b` and `d` reached nobody: queued for the next connection.
        assert!(b.try_recv().is_err() && d.try_recv().is_err());
        let o = c.lock();
        assert_eq!(o.slots.len(), 2);
        assert_eq!(o.bytes, [frame(&get(b"b")), frame(&get(b"d"))].concat());
        assert!(o.busy, "the connection task is told to reconnect");
    }

    #[test]
    fn the_rest_of_a_request_written_in_part_is_not_resent() {
        let c = Conn::new(8);
        let _a = c.enqueue(&get(b"a"));
        let _b = c.enqueue(&get(b"b"));
        {
            // As after a direct write that took 3 bytes of `a`.
            let mut o = c.lock();
            let rest = o.bytes.len() - frame(&get(b"b")).len() - 3;
            o.bytes.drain(..3);
            o.partial = rest;
            o.unsent = 1;
        }
        c.end_connection();
        assert_eq!(c.lock().bytes, frame(&get(b"b")));
    }

    #[test]
    fn no_reply_is_matched_to_a_request_not_written() {
        let c = Conn::new(8);
        let _a = c.enqueue(&get(b"a"));
        let generation = c.lock().generation;
        assert!(c.pop_slot(generation).is_none());
        take_as_writer(&c);
        assert!(c.pop_slot(generation).is_some());
        assert!(c.pop_slot(generation + 1).is_none());
    }

    #[test]
    fn a_failed_connect_fails_what_was_queued_and_admits_the_waiting() {
        let c = Conn::new(1);
        let mut a = c.enqueue(&get(b"a"));
        let mut b = c.enqueue(&get(b"b"));
        c.fail_queued(&Error::NoServer("none".into()));
        assert!(matches!(a.try_recv(), Ok(Err(Error::NoServer(_)))));
        assert!(b.try_recv().is_err());
        assert_eq!(c.lock().bytes, frame(&get(b"b")));
    }
}
