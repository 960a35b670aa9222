//! One client connection: the handshake, then a reader task that decodes
//! requests into a bounded queue (back-pressure: when it is full the
//! reader stops reading the socket) and this task, which executes them in
//! order and writes the replies.

use super::Ctx;
use crate::client_slots::{ClientWrite, WriteDone};
use crate::node::keyed_payload;
use rzab_client::protocol::{ErrorCode, LEN_PREFIX, Reply, Request, VERSION, WriteOutcome, next_frame};
use rzab_store::{KeyedOutcome, slot_key};
use rzab_wire::Op;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Longest a handshake may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request waits for the replica to serve (an election, a
/// catch-up) before it is answered NotServing.
const SERVE_WAIT: Duration = Duration::from_secs(10);

/// A decoded request that owns its bytes.
enum Req {
    Get(Vec<u8>),
    SyncGet(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// The stream is unusable: answer this and close.
    Fail(ErrorCode, String),
}

/// An error reply for one request; `close` ends the connection after it.
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

pub(crate) async fn serve(stream: TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let admitted = match tokio::time::timeout(HELLO_TIMEOUT, handshake(&mut rd, &mut buf, &ctx)).await {
        Ok(r) => r,
        Err(_) => Err(refuse(ErrorCode::Malformed, "no Hello within 10 s")),
    };
    let (session, mut seen) = match admitted {
        Ok(s) => s,
        Err(r) => {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            error_reply(&mut out, &r);
            let _ = wr.write_all(&out).await;
            return;
        }
    };
    let Some(slot) = ctx.slots.acquire() else {
        ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        error_reply(
            &mut out,
            &refuse(ErrorCode::Busy, "no free client slot at this node"),
        );
        let _ = wr.write_all(&out).await;
        return;
    };
    Reply::Welcome {
        session,
        zxid: seen,
        node: ctx.node.id,
        max_key: ctx.cfg.max_key as u16,
        max_value: ctx.cfg.max_value as u32,
        max_inflight: ctx.cfg.max_inflight as u32,
    }
    .encode(&mut out);
    if wr.write_all(&out).await.is_err() {
        return;
    }
    out.clear();
    let (tx, mut rx) = mpsc::channel(ctx.cfg.max_inflight);
    let reader = tokio::spawn(read_requests(rd, buf, tx, ctx.cfg.max_request()));
    let mut batch = Vec::new();
    let mut value = Vec::new();
    'conn: while rx.recv_many(&mut batch, 256).await > 0 {
        for req in batch.drain(..) {
            let close = matches!(req, Req::Fail(..));
            let result = execute(&ctx, slot.pair, req, &mut seen, &mut value, &mut out, &mut wr).await;
            if let Err(r) = result {
                ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                if close {
                    ctx.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
                error_reply(&mut out, &r);
            }
            if close {
                let _ = wr.write_all(&out).await;
                break 'conn;
            }
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
    }
    reader.abort();
}

fn error_reply(out: &mut Vec<u8>, r: &Refusal) {
    Reply::Error {
        code: r.code,
        message: &r.message,
    }
    .encode(out);
}

/// Reads and checks the Hello; waits until this replica has applied what
/// the session saw. Returns (session id, applied point).
async fn handshake(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, ctx: &Ctx) -> Result<(u64, u64), Refusal> {
    let body = read_frame(rd, buf, ctx.cfg.max_request()).await?;
    let (req, version) =
        Request::decode(&buf[body.clone()]).map_err(|e| refuse(ErrorCode::Malformed, e.to_string()))?;
    let Request::Hello {
        session,
        last_zxid,
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
    let session = if session == 0 { new_session(ctx) } else { session };
    buf.drain(..body.end);
    let seen = wait_serving(ctx, last_zxid).await?;
    Ok((session, seen))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_session(ctx: &Ctx) -> u64 {
    let n = ctx.sessions.fetch_add(1, Ordering::Relaxed);
    let salt = crate::controller::mono_ns() ^ u64::from(std::process::id()) << 20;
    (u64::from(ctx.node.id) << 56 | (salt ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 8).max(1)
}

/// Reads until a whole frame is buffered; returns its body's range.
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<std::ops::Range<usize>, Refusal> {
    loop {
        match next_frame(buf, max) {
            Ok(Some((body, _))) => return Ok(LEN_PREFIX..LEN_PREFIX + body.len()),
            Ok(None) => {}
            Err(e) => return Err(refuse(ErrorCode::TooLarge, e.to_string())),
        }
        if fill(rd, buf).await == 0 {
            return Err(refuse(ErrorCode::Malformed, "closed mid-frame"));
        }
    }
}

/// Reads what the socket has into `buf`; 0 at the end of the stream.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> usize {
    let len = buf.len();
    buf.resize(len + (64 << 10), 0);
    let n = rd.read(&mut buf[len..]).await.unwrap_or(0);
    buf.truncate(len + n);
    n
}

/// Decodes frames into the queue until the stream ends or breaks.
async fn read_requests(mut rd: OwnedReadHalf, mut buf: Vec<u8>, tx: mpsc::Sender<Req>, max: usize) {
    loop {
        let mut used = 0;
        loop {
            let (req, n) = match next_frame(&buf[used..], max) {
                Ok(Some((body, n))) => (decode(body), n),
                Ok(None) => break,
                Err(e) => (Req::Fail(ErrorCode::TooLarge, e.to_string()), 0),
            };
            used += n;
            let fail = matches!(req, Req::Fail(..));
            if tx.send(req).await.is_err() || fail {
                return;
            }
        }
        buf.drain(..used);
        if fill(&mut rd, &mut buf).await == 0 {
            return;
        }
    }
}

fn decode(body: &[u8]) -> Req {
    match Request::decode(body) {
        Ok((Request::Get { key }, _)) => Req::Get(key.to_vec()),
        Ok((Request::SyncGet { key }, _)) => Req::SyncGet(key.to_vec()),
        Ok((Request::Put { key, value }, _)) => Req::Put(key.to_vec(), value.to_vec()),
        Ok((Request::Delete { key }, _)) => Req::Delete(key.to_vec()),
        Ok((Request::Hello { .. }, _)) => Req::Fail(ErrorCode::Malformed, "a second Hello".into()),
        Err(e) => Req::Fail(ErrorCode::Malformed, e.to_string()),
    }
}

/// Executes one request, appending its reply to `out` (an error reply is
/// the caller's).
async fn execute(
    ctx: &Ctx,
    slot: (u8, u32),
    req: Req,
    seen: &mut u64,
    value: &mut Vec<u8>,
    out: &mut Vec<u8>,
    wr: &mut OwnedWriteHalf,
) -> Result<(), Refusal> {
    let s = &ctx.stats;
    match req {
        Req::Get(key) => {
            s.gets.fetch_add(1, Ordering::Relaxed);
            check_key(ctx, &key)?;
            read(ctx, &key, seen, value, out).await
        }
        Req::SyncGet(key) => {
            s.sync_gets.fetch_add(1, Ordering::Relaxed);
            check_key(ctx, &key)?;
            flush(wr, out).await;
            let done = write(ctx, slot, Op::Sync, 0, Vec::new()).await?;
            *seen = (*seen).max(done.zxid);
            read(ctx, &key, seen, value, out).await
        }
        Req::Put(key, v) => {
            s.puts.fetch_add(1, Ordering::Relaxed);
            check_key(ctx, &key)?;
            if v.len() > ctx.cfg.max_value {
                return Err(refuse(
                    ErrorCode::ValueTooLong,
                    format!("value of {} bytes exceeds {}", v.len(), ctx.cfg.max_value),
                ));
            }
            flush(wr, out).await;
            let done = write(
                ctx,
                slot,
                Op::KeyedPut,
                slot_key(&key, 0),
                keyed_payload(&key, &v),
            )
            .await?;
            written(done, seen, out)
        }
        Req::Delete(key) => {
            s.deletes.fetch_add(1, Ordering::Relaxed);
            check_key(ctx, &key)?;
            flush(wr, out).await;
            let done = write(
                ctx,
                slot,
                Op::KeyedDelete,
                slot_key(&key, 0),
                keyed_payload(&key, &[]),
            )
            .await?;
            written(done, seen, out)
        }
        Req::Fail(code, message) => Err(Refusal { code, message }),
    }
}

fn check_key(ctx: &Ctx, key: &[u8]) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err(refuse(ErrorCode::EmptyKey, "keys are at least 1 byte"));
    }
    if key.len() > ctx.cfg.max_key {
        return Err(refuse(
            ErrorCode::KeyTooLong,
            format!("key of {} bytes exceeds {}", key.len(), ctx.cfg.max_key),
        ));
    }
    Ok(())
}

/// Sends the replies so far before a write makes the rest wait.
async fn flush(wr: &mut OwnedWriteHalf, out: &mut Vec<u8>) {
    if !out.is_empty() {
        let _ = wr.write_all(out).await;
        out.clear();
    }
}

/// Serves a read from the local store once the replica serves and has
/// applied everything the session saw.
async fn read(
    ctx: &Ctx,
    key: &[u8],
    seen: &mut u64,
    value: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    let at = wait_serving(ctx, *seen).await?;
    *seen = at;
    match ctx.node.store.get_keyed(key, value) {
        Some(meta) => Reply::Value {
            zxid: at,
            version: meta.zxid,
            value,
        }
        .encode(out),
        None => Reply::NotFound { zxid: at }.encode(out),
    }
    Ok(())
}

/// Waits until this node serves in an epoch and has applied `zxid`;
/// returns its applied point.
async fn wait_serving(ctx: &Ctx, zxid: u64) -> Result<u64, Refusal> {
    let n = &ctx.node;
    let start = Instant::now();
    loop {
        let applied = n.gate.applied().0;
        if n.standing.serving.load(Ordering::Acquire) && applied >= zxid {
            return Ok(applied);
        }
        if start.elapsed() > SERVE_WAIT {
            return Err(refuse(
                ErrorCode::NotServing,
                format!(
                    "node {} is not serving at zxid {zxid:#x} (applied {applied:#x})",
                    n.id
                ),
            ));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Hands a write to the slot's lane and waits until it is applied here.
async fn write(
    ctx: &Ctx,
    (lane, slot): (u8, u32),
    op: Op,
    key: u64,
    payload: Vec<u8>,
) -> Result<WriteDone, Refusal> {
    let (tx, rx) = oneshot::channel();
    let w = ClientWrite {
        slot,
        op,
        key,
        payload,
        done: Box::new(move |r| {
            let _ = tx.send(r);
        }),
    };
    let link = &ctx.node.links[lane as usize];
    if link.client_tx.send(w).is_err() {
        return Err(refuse(ErrorCode::NotServing, "the node is stopping"));
    }
    ctx.node.wake_lane(lane as usize);
    match rx.await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(why)) => Err(refuse(ErrorCode::Internal, why)),
        Err(_) => Err(refuse(
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
