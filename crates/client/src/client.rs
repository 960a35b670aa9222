//! The async client: one TCP connection per [`Client`], shared by clones,
//! with every request pipelined on it (the connection's machinery is in
//! `conn.rs`). When the connection breaks, requests written to it fail with
//! [`Error::ConnectionLost`] (a write among them may or may not have been
//! applied, as in ZooKeeper); requests not yet written, and the next ones,
//! go to the next server, continuing the session: the new replica answers
//! only once it has applied everything the session saw.

use crate::conn::{Answer, Conn, drive};
use crate::protocol::{Binding, ErrorCode, ReadFrameError, Reply, Request, WriteOutcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
    /// Per server tried: connecting, the Hello and the Welcome. A server
    /// answers a Hello within about 4 s, with NotServing and its reason if
    /// it cannot serve the session; above that, this sees the reason.
    pub connect_timeout: Duration,
    /// Longest reply frame accepted.
    pub max_frame: usize,
    /// With requests in flight, a connection silent this long is taken for
    /// dead (a replica that vanished without closing it): the requests fail
    /// with ConnectionLost and the next one reconnects. Silence is checked
    /// every quarter of this, so a request may fail after 3/4 of it. Servers
    /// answer within about 10 s even when they cannot serve.
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
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A value and the id of the write that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// What the session carries across connections.
pub(crate) struct Session {
    id: AtomicU64,
    last_zxid: AtomicU64,
    max_key: AtomicU64,
    max_value: AtomicU64,
    node: AtomicU64,
    /// The last connection's binding: the next Hello fences it off.
    binding: std::sync::Mutex<Option<Binding>>,
}

impl Session {
    pub(crate) fn saw(&self, zxid: u64) {
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
    }
}

/// A session with an rzab cluster. Clones share the connection and the
/// session; each may have requests in flight.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
    session: Arc<Session>,
    _handle: Arc<Handle>,
}

/// Dropped with the last clone: the connection's tasks end.
struct Handle(Arc<Conn>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

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
            binding: std::sync::Mutex::new(None),
        });
        let mut next = 0;
        let stream = connect_any(&cfg, &session, &mut next).await?;
        let conn = Arc::new(Conn::new(cfg.max_inflight));
        tokio::spawn(drive(conn.clone(), cfg, session.clone(), stream, next));
        Ok(Client {
            _handle: Arc::new(Handle(conn.clone())),
            conn,
            session,
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
        self.conn.call(&req).await
    }
}

fn unexpected(a: &Answer) -> Error {
    Error::Protocol(format!("unexpected reply {a:?}"))
}

/// Tries each server once, starting at `next`; leaves `next` after the one
/// that answered.
pub(crate) async fn connect_any(
    cfg: &ClientConfig,
    s: &Session,
    next: &mut usize,
) -> Result<TcpStream, Error> {
    let mut why = Vec::new();
    for _ in 0..cfg.servers.len() {
        let addr = cfg.servers[*next % cfg.servers.len()];
        *next = (*next + 1) % cfg.servers.len();
        match tokio::time::timeout(cfg.connect_timeout, hello(cfg, s, addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(Error::Server { code, message })) if fatal(code) => {
                return Err(Error::Server { code, message });
            }
            // The address's own reason, not "no server reachable" again.
            Ok(Err(Error::NoServer(m))) => why.push(format!("{addr}: {m}")),
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
    let prev = *s.binding.lock().unwrap_or_else(|p| p.into_inner());
    Request::Hello {
        session: s.id.load(Ordering::Relaxed),
        last_zxid: s.last_zxid.load(Ordering::Relaxed),
        prev,
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
            binding,
            ..
        } => {
            *s.binding.lock().unwrap_or_else(|p| p.into_inner()) = Some(binding);
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
