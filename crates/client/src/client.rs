//! The async client: one TCP connection per [`Client`], shared by clones,
//! with every request pipelined on it. A background task writes requests
//! and another matches replies to them in order. When the connection
//! breaks, requests in flight fail with [`Error::ConnectionLost`] (a write
//! among them may or may not have been applied, as in ZooKeeper) and the
//! next request reconnects to the next server, continuing the session: the
//! new replica answers only once it has applied everything the session saw.

use crate::protocol::{DecodeError, ErrorCode, ReadFrameError, Reply, Request, WriteOutcome, next_frame};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The replicas' client addresses; the client starts with the first and
    /// moves to the next on failure.
    pub servers: Vec<SocketAddr>,
    /// The cluster's shared secret, if it has one.
    pub token: Option<Vec<u8>>,
    /// Requests this client keeps in flight at most (more wait their turn).
    pub max_inflight: usize,
    pub connect_timeout: Duration,
    /// Longest reply frame accepted.
    pub max_frame: usize,
    /// With requests in flight, a connection silent this long is taken for
    /// dead (a replica that vanished without closing it): the requests fail
    /// with ConnectionLost and the next one reconnects. Servers answer
    /// within about 10 s even when they cannot serve.
    pub reply_timeout: Duration,
}

impl ClientConfig {
    pub fn new(servers: Vec<SocketAddr>) -> ClientConfig {
        ClientConfig {
            servers,
            token: None,
            max_inflight: 128,
            connect_timeout: Duration::from_secs(5),
            max_frame: 16 << 20,
            reply_timeout: Duration::from_secs(15),
        }
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no server reachable: {0}")]
    NoServer(String),
    #[error("connection lost with the request in flight (a write may have been applied)")]
    ConnectionLost,
    #[error("server refused ({code:?}): {message}")]
    Server { code: ErrorCode, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("client closed")]
    Closed,
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A value and the id of the write that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// A decoded reply that owns its bytes.
#[derive(Debug)]
enum Answer {
    Value(Versioned),
    NotFound,
    Written(u64, WriteOutcome),
}

struct Call {
    frame: Vec<u8>,
    reply: oneshot::Sender<Result<Answer, Error>>,
}

/// What the session carries across connections.
struct Session {
    id: AtomicU64,
    last_zxid: AtomicU64,
    max_key: AtomicU64,
    max_value: AtomicU64,
    node: AtomicU64,
}

impl Session {
    fn saw(&self, zxid: u64) {
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
    }
}

/// A session with an rzab cluster. Clones share the connection and the
/// session; each may have requests in flight.
#[derive(Clone)]
pub struct Client {
    calls: mpsc::Sender<Call>,
    session: Arc<Session>,
    inflight: Arc<Semaphore>,
}

type Pending = Arc<Mutex<VecDeque<oneshot::Sender<Result<Answer, Error>>>>>;

impl Client {
    /// Connects to the first reachable server and opens a session. Must be
    /// called inside a tokio runtime (the connection's tasks run on it).
    pub async fn connect(cfg: ClientConfig) -> Result<Client, Error> {
        if cfg.servers.is_empty() {
            return Err(Error::Invalid("no server addresses given".into()));
        }
        let session = Arc::new(Session {
            id: AtomicU64::new(0),
            last_zxid: AtomicU64::new(0),
            max_key: AtomicU64::new(u16::MAX as u64),
            max_value: AtomicU64::new(u32::MAX as u64),
            node: AtomicU64::new(0),
        });
        let mut next = 0;
        let stream = connect_any(&cfg, &session, &mut next).await?;
        let (tx, rx) = mpsc::channel(cfg.max_inflight.max(1));
        let inflight = Arc::new(Semaphore::new(cfg.max_inflight.max(1)));
        tokio::spawn(drive(cfg, session.clone(), stream, next, rx));
        Ok(Client {
            calls: tx,
            session,
            inflight,
        })
    }

    /// The session's id (assigned by the first server).
    pub fn session_id(&self) -> u64 {
        self.session.id.load(Ordering::Relaxed)
    }

    /// The newest zxid this session has seen.
    pub fn last_zxid(&self) -> u64 {
        self.session.last_zxid.load(Ordering::Relaxed)
    }

    /// The node serving this session now.
    pub fn node(&self) -> u8 {
        self.session.node.load(Ordering::Relaxed) as u8
    }

    /// Reads `key` at the replica (sequentially consistent, with this
    /// session's read-your-writes and monotonic reads).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        self.check_key(key)?;
        self.read(Request::Get { key }).await
    }

    /// Reads `key` linearizably: after every write committed before the call.
    pub async fn sync_get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        self.check_key(key)?;
        self.read(Request::SyncGet { key }).await
    }

    /// Stores `value` under `key`; returns the write's zxid.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<u64, Error> {
        self.check_key(key)?;
        let max = self.session.max_value.load(Ordering::Relaxed);
        if value.len() as u64 > max {
            return Err(Error::Invalid(format!(
                "value of {} bytes exceeds the cluster's maximum of {max}",
                value.len()
            )));
        }
        match self.call(Request::Put { key, value }).await? {
            Answer::Written(z, _) => Ok(z),
            a => Err(unexpected(&a)),
        }
    }

    /// Deletes `key`; returns whether it existed (`None` if the write was
    /// applied during a fail-over and its effect is unknown).
    pub async fn delete(&self, key: &[u8]) -> Result<Option<bool>, Error> {
        self.check_key(key)?;
        match self.call(Request::Delete { key }).await? {
            Answer::Written(_, WriteOutcome::Deleted) => Ok(Some(true)),
            Answer::Written(_, WriteOutcome::Absent) => Ok(Some(false)),
            Answer::Written(_, _) => Ok(None),
            a => Err(unexpected(&a)),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        let max = self.session.max_key.load(Ordering::Relaxed);
        if key.is_empty() || key.len() as u64 > max {
            return Err(Error::Invalid(format!(
                "key of {} bytes: keys are 1 to {max} bytes",
                key.len()
            )));
        }
        Ok(())
    }

    async fn read(&self, req: Request<'_>) -> Result<Option<Versioned>, Error> {
        match self.call(req).await? {
            Answer::Value(v) => Ok(Some(v)),
            Answer::NotFound => Ok(None),
            a => Err(unexpected(&a)),
        }
    }

    async fn call(&self, req: Request<'_>) -> Result<Answer, Error> {
        let _permit = self.inflight.acquire().await.map_err(|_| Error::Closed)?;
        // Room for the frame's fixed fields, key and value: one allocation.
        let mut frame = Vec::with_capacity(req.encoded_len_hint());
        req.encode(&mut frame);
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Call { frame, reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::ConnectionLost)?
    }
}

fn unexpected(a: &Answer) -> Error {
    Error::Protocol(format!("unexpected reply {a:?}"))
}

/// Tries each server once, starting at `next`; leaves `next` after the one
/// that answered.
async fn connect_any(cfg: &ClientConfig, s: &Session, next: &mut usize) -> Result<TcpStream, Error> {
    let mut why = Vec::new();
    for _ in 0..cfg.servers.len() {
        let addr = cfg.servers[*next % cfg.servers.len()];
        *next = (*next + 1) % cfg.servers.len();
        match tokio::time::timeout(cfg.connect_timeout, hello(cfg, s, addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(Error::Server { code, message })) if fatal(code) => {
                return Err(Error::Server { code, message });
            }
            Ok(Err(e)) => why.push(format!("{addr}: {e}")),
            Err(_) => why.push(format!("{addr}: no answer within {:?}", cfg.connect_timeout)),
        }
    }
    Err(Error::NoServer(why.join("; ")))
}

/// Refusals no other server would answer differently.
fn fatal(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::Unauthorized | ErrorCode::BadVersion)
}

async fn hello(cfg: &ClientConfig, s: &Session, addr: SocketAddr) -> Result<TcpStream, Error> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::NoServer(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut out = Vec::new();
    Request::Hello {
        session: s.id.load(Ordering::Relaxed),
        last_zxid: s.last_zxid.load(Ordering::Relaxed),
        token: cfg.token.as_deref().unwrap_or_default(),
    }
    .encode(&mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::NoServer(e.to_string()))?;
    let mut buf = Vec::new();
    let body = read_frame(&mut stream, &mut buf, cfg.max_frame).await?;
    match Reply::decode(&buf[body]).map_err(|e| Error::Protocol(e.to_string()))? {
        Reply::Welcome {
            session,
            zxid,
            node,
            max_key,
            max_value,
            ..
        } => {
            s.id.store(session, Ordering::Relaxed);
            s.saw(zxid);
            s.max_key.store(max_key as u64, Ordering::Relaxed);
            s.max_value.store(max_value as u64, Ordering::Relaxed);
            s.node.store(node as u64, Ordering::Relaxed);
            Ok(stream)
        }
        Reply::Error { code, message } => Err(Error::Server {
            code,
            message: message.to_string(),
        }),
        other => Err(Error::Protocol(format!("expected Welcome, got {other:?}"))),
    }
}

/// Reads the handshake's answer frame into `buf`; returns the body's range.
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<std::ops::Range<usize>, Error> {
    crate::protocol::read_frame(stream, buf, max)
        .await
        .map_err(|e| match e {
            ReadFrameError::Closed => Error::NoServer("closed during the handshake".into()),
            ReadFrameError::Io(e) => Error::NoServer(e.to_string()),
            ReadFrameError::Frame(e) => Error::Protocol(e.to_string()),
        })
}

/// Runs connections until every handle is dropped. After a break, the
/// next request reconnects (and fails alone if no server answers).
async fn drive(
    cfg: ClientConfig,
    s: Arc<Session>,
    first: TcpStream,
    mut next: usize,
    mut calls: mpsc::Receiver<Call>,
) {
    let mut conn = Some(first);
    let mut carry = None;
    loop {
        let stream = match conn.take() {
            Some(c) => c,
            None => {
                let Some(call) = calls.recv().await else { return };
                match connect_any(&cfg, &s, &mut next).await {
                    Ok(c) => {
                        carry = Some(call);
                        c
                    }
                    Err(e) => {
                        let _ = call.reply.send(Err(e));
                        continue;
                    }
                }
            }
        };
        if !serve(&cfg, &s, stream, carry.take(), &mut calls).await {
            return;
        }
    }
}

/// Serves one connection until it breaks (true) or every handle is gone
/// (false). `first` goes before the calls waiting in `calls`.
async fn serve(
    cfg: &ClientConfig,
    s: &Arc<Session>,
    conn: TcpStream,
    first: Option<Call>,
    calls: &mut mpsc::Receiver<Call>,
) -> bool {
    let (rd, mut wr) = conn.into_split();
    let pending: Pending = Arc::new(Mutex::new(VecDeque::new()));
    let mut reader = tokio::spawn(read_replies(
        rd,
        pending.clone(),
        s.clone(),
        cfg.max_frame,
        cfg.reply_timeout,
    ));
    let mut batch: Vec<Call> = first.into_iter().collect();
    let alive = loop {
        if batch.is_empty() {
            tokio::select! {
                n = calls.recv_many(&mut batch, 256) => if n == 0 { break false },
                _ = &mut reader => break true,
            }
        }
        // Let the tasks woken by the last replies queue their next requests
        // first: one write for many requests instead of one each.
        tokio::task::yield_now().await;
        while batch.len() < 1024 {
            match calls.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if !write_calls(&mut wr, &pending, &mut batch).await {
            break true;
        }
    };
    reader.abort();
    let lost: Vec<_> = pending
        .lock()
        .map(|mut p| p.drain(..).collect())
        .unwrap_or_default();
    for tx in lost {
        let _ = tx.send(Err(Error::ConnectionLost));
    }
    for call in batch.drain(..) {
        let _ = call.reply.send(Err(Error::ConnectionLost));
    }
    alive
}

/// Writes a batch of calls in one write; their reply slots are queued
/// first, so the reader finds them.
async fn write_calls(wr: &mut OwnedWriteHalf, pending: &Pending, batch: &mut Vec<Call>) -> bool {
    let mut bytes = Vec::with_capacity(batch.iter().map(|c| c.frame.len()).sum());
    if let Ok(mut p) = pending.lock() {
        for call in batch.drain(..) {
            bytes.extend_from_slice(&call.frame);
            p.push_back(call.reply);
        }
    }
    wr.write_all(&bytes).await.is_ok()
}

/// Matches replies to the oldest calls in flight until the connection ends.
async fn read_replies(
    mut rd: OwnedReadHalf,
    pending: Pending,
    s: Arc<Session>,
    max: usize,
    silence: Duration,
) {
    let mut buf = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let mut start = 0;
    let mut quiet = 0u32;
    loop {
        loop {
            let frame = match next_frame(&buf[start..], max) {
                Ok(Some((body, used))) => (answer(body, &s), used),
                Ok(None) => break,
                Err(_) => return,
            };
            start += frame.1;
            let Some(tx) = pending.lock().ok().and_then(|mut p| p.pop_front()) else {
                return; // A reply nobody asked for: the connection is unusable.
            };
            let _ = tx.send(frame.0);
        }
        buf.drain(..start);
        start = 0;
        // Checked in quarters of the timeout: a request sent while this
        // read already waited still gets most of its time.
        match tokio::time::timeout(silence / 4, rd.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => {
                quiet = 0;
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => {
                let waiting = pending.lock().map(|p| !p.is_empty()).unwrap_or(false);
                quiet = if waiting { quiet + 1 } else { 0 };
                if quiet >= 4 {
                    return; // Silent with requests in flight: dead.
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
