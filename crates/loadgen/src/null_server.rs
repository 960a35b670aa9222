//! A server that speaks rzab's client protocol and stores nothing: every
//! read is NotFound, every write is Written at zxid 0. Loaded like an rzab
//! cluster, it measures the ceiling of the request path alone on a machine
//! (TCP, the framing, one runtime worker per server as each rzab gateway
//! has, and the client), which no store served over the same path can beat.

use rzab_client::WriteOutcome;
use rzab_client::protocol::{Binding, Reply, Request, next_frame};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request accepted (a request's key and value fit rzab's limits).
const MAX_FRAME: usize = 1 << 20;
/// How often the accept loop looks at `stop`.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Serves `addr` until `stop` is set. Calls `ready` once listening.
pub fn serve(addr: SocketAddr, stop: Arc<AtomicBool>, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("nullgw")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        ready(listener.local_addr()?);
        let mut sessions = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let accepted = tokio::time::timeout(STOP_CHECK, listener.accept()).await;
            if let Ok(Ok((stream, _))) = accepted {
                sessions += 1;
                tokio::spawn(answer(stream, sessions));
            }
        }
        Ok(())
    })
}

/// Answers one connection's requests in order until it closes or sends
/// something that is not a request.
async fn answer(mut stream: TcpStream, session: u64) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 << 10);
    let mut out = Vec::with_capacity(64 << 10);
    loop {
        let mut start = 0;
        loop {
            let (body, used) = match next_frame(&buf[start..], MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return, // Longer than any request: not a client.
            };
            let Ok((req, _)) = Request::decode(body) else {
                return;
            };
            reply(&req, session).encode(&mut out);
            start += used;
        }
        buf.drain(..start);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        buf.reserve(16 << 10);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn reply(req: &Request<'_>, session: u64) -> Reply<'static> {
    match req {
        Request::Hello { .. } => Reply::Welcome {
            session,
            zxid: 0,
            node: 0,
            max_key: u16::MAX,
            max_value: MAX_FRAME as u32 / 2,
            max_inflight: 1 << 16,
            binding: Binding {
                node: 0,
                lane: 0,
                session: 0,
                generation: 1,
            },
        },
        Request::Get { .. } | Request::SyncGet { .. } => Reply::NotFound { zxid: 0 },
        Request::Put { .. } => Reply::Written {
            zxid: 0,
            outcome: WriteOutcome::Stored,
        },
        Request::Delete { .. } => Reply::Written {
            zxid: 0,
            outcome: WriteOutcome::Absent,
        },
    }
}
