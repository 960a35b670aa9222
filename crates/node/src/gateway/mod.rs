//! The client gateway: a node's TCP service for external clients
//! (`rzab_client::protocol`). One thread runs a small tokio runtime; each
//! connection is a session bound to one client slot of one lane. Reads are
//! served from the local store; writes go through that lane and are
//! answered once applied here.

mod conn;
pub mod hosted;
mod slots;

use crate::config::ClientsConfig;
use crate::node::NodeShared;
use serde::{Deserialize, Serialize};
use slots::SlotPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use tokio::sync::watch;

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub connections: AtomicU64,
    /// Refused at the handshake (bad token, version, no slot, not serving).
    pub refused: AtomicU64,
    pub gets: AtomicU64,
    pub sync_gets: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    /// Requests answered with an error (the connection may go on).
    pub errors: AtomicU64,
    /// Connections closed for a malformed or oversized frame.
    pub malformed: AtomicU64,
}

/// A point-in-time copy of [`GatewayStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCounts {
    pub connections: u64,
    pub refused: u64,
    pub gets: u64,
    pub sync_gets: u64,
    pub puts: u64,
    pub deletes: u64,
    pub errors: u64,
    pub malformed: u64,
}

impl GatewayStats {
    pub fn read(&self) -> GatewayCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayCounts {
            connections: r(&self.connections),
            refused: r(&self.refused),
            gets: r(&self.gets),
            sync_gets: r(&self.sync_gets),
            puts: r(&self.puts),
            deletes: r(&self.deletes),
            errors: r(&self.errors),
            malformed: r(&self.malformed),
        }
    }
}

/// What every connection of one gateway shares.
pub(crate) struct Ctx {
    pub node: Arc<NodeShared>,
    pub cfg: ClientsConfig,
    pub slots: SlotPool,
    pub stats: Arc<GatewayStats>,
    /// The lane whose thread runs this gateway, if one does.
    pub hosted_lane: Option<u8>,
}

impl Ctx {
    /// Tells `lane` it has client writes to take.
    pub fn wake_lane(&self, lane: u8) {
        if self.hosted_lane == Some(lane) {
            self.node.host.notify.notify_one();
        } else {
            self.node.wake_lane(lane as usize);
        }
    }
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    node: Arc<NodeShared>,
    stop: watch::Sender<bool>,
    /// Its own thread; `None` when lane 0's thread hosts it.
    thread: Option<JoinHandle<()>>,
    /// Closed once the accept loop has ended (or was dropped unrun).
    ended: std::sync::mpsc::Receiver<()>,
    pub stats: Arc<GatewayStats>,
}

impl Gateway {
    /// Binds `listen` (errors surface here) and serves it until
    /// [`Gateway::stop`]: in the lane's thread if `cfg.threads` is 0, the
    /// node has one lane, its transport allows it and it hosts no gateway
    /// yet, else on threads of its own. A hosted gateway also ends when the
    /// lane does.
    pub fn start(node: Arc<NodeShared>, listen: SocketAddr, cfg: &ClientsConfig) -> std::io::Result<Gateway> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // With more lanes, the other lanes' writes cross threads anyway, and
        // a shared thread served worse (2 lanes, 100% writes at 1 in flight:
        // 55 k against 73 k ops/s with a gateway thread).
        let hosted = cfg.threads == 0 && node.lanes() == 1 && node.host.claim();
        let stats = Arc::new(GatewayStats::default());
        let ctx = Arc::new(Ctx {
            slots: SlotPool::new(node.lanes() as u8, cfg.slots),
            node: node.clone(),
            cfg: cfg.clone(),
            stats: stats.clone(),
            hosted_lane: hosted.then_some(0),
        });
        let (stop, stopped) = watch::channel(false);
        let (ended_tx, ended) = std::sync::mpsc::channel();
        let serve = accept_loop(listener, ctx, stopped, ended_tx);
        let thread = if hosted {
            node.host.offer(Box::pin(serve));
            node.wake_lane(0);
            None
        } else {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.threads.max(1))
                .thread_name(format!("n{}gw", node.id))
                .enable_all()
                .build()?;
            let t = std::thread::Builder::new()
                .name(format!("n{}gateway", node.id))
                .spawn(move || {
                    rt.block_on(serve);
                    rt.shutdown_timeout(std::time::Duration::from_millis(200));
                })?;
            Some(t)
        };
        Ok(Gateway {
            addr,
            node,
            stop,
            thread,
            ended,
            stats,
        })
    }

    /// The address it serves (the bound port if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection.
    pub fn stop(self) {
        drop(self);
    }
}

/// Accepts connections until `stopped` changes; each connection is a task
/// that ends with the loop.
async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stopped: watch::Receiver<bool>,
    _ended: std::sync::mpsc::Sender<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(conn::serve(stream, ctx.clone()));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Dropping `conns` ends every connection.
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        match self.thread.take() {
            Some(t) => {
                let _ = t.join();
            }
            None => {
                // Not yet taken by the lane (it stopped first): drop it here.
                drop(self.node.host.take());
                let _ = self.ended.recv_timeout(std::time::Duration::from_secs(2));
            }
        }
    }
}
