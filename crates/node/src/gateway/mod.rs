//! The client gateway: a node's TCP service for external clients
//! (`rzab_client::protocol`). One thread runs a small tokio runtime; each
//! connection is a session bound to one client slot of one lane. Reads are
//! served from the local store; writes go through that lane and are
//! answered once applied here.

mod conn;
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
    pub sessions: AtomicU64,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<GatewayStats>,
}

impl Gateway {
    /// Binds `listen` (errors surface here) and serves it on a thread of
    /// its own until [`Gateway::stop`].
    pub fn start(node: Arc<NodeShared>, listen: SocketAddr, cfg: &ClientsConfig) -> std::io::Result<Gateway> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads.max(1))
            .thread_name(format!("n{}gw", node.id))
            .enable_all()
            .build()?;
        let stats = Arc::new(GatewayStats::default());
        let ctx = Arc::new(Ctx {
            slots: SlotPool::new(node.lanes() as u8, cfg.slots),
            node,
            cfg: cfg.clone(),
            stats: stats.clone(),
            sessions: AtomicU64::new(0),
        });
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(format!("n{}gateway", ctx.node.id))
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => {
                                if let Ok((stream, _)) = accepted {
                                    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                                    tokio::spawn(conn::serve(stream, ctx.clone()));
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime ends every connection.
                rt.shutdown_timeout(std::time::Duration::from_millis(200));
            })?;
        Ok(Gateway {
            addr,
            stop,
            thread: Some(thread),
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

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
