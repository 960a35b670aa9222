//! A gateway hosted in lane 0's thread: one runtime polls the lane's
//! sockets and the client connections, so a write goes from its connection
//! to its lane, and its answer back, without waking another thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A gateway's accept loop (its connections are tasks it spawns).
pub(crate) type GatewayFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where lane 0 takes a gateway to host from.
#[derive(Default)]
pub struct HostSlot {
    /// Lane 0's transport can be waited on in a runtime (set before the
    /// lane's thread starts).
    capable: AtomicBool,
    /// A gateway was handed over: lane 0 hosts one at most.
    claimed: AtomicBool,
    offered: AtomicBool,
    future: Mutex<Option<GatewayFuture>>,
    /// Wakes the hosting lane from its own connections: a permit, no
    /// system call.
    pub(crate) notify: Arc<Notify>,
}

impl HostSlot {
    pub fn set_capable(&self) {
        self.capable.store(true, Ordering::Release);
    }

    /// Whether lane 0 can host a gateway and hosts none yet; if so, the
    /// caller must [`HostSlot::offer`] it one.
    pub(crate) fn claim(&self) -> bool {
        self.capable.load(Ordering::Acquire) && !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Hands lane 0 a gateway to run (it takes it on its next turn).
    pub(crate) fn offer(&self, f: GatewayFuture) {
        if let Ok(mut slot) = self.future.lock() {
            *slot = Some(f);
            self.offered.store(true, Ordering::Release);
        }
    }

    /// The gateway offered, if any (one load when there is none).
    pub(crate) fn take(&self) -> Option<GatewayFuture> {
        if !self.offered.load(Ordering::Acquire) {
            return None;
        }
        self.offered.store(false, Ordering::Relaxed);
        self.future.lock().ok()?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_zero_hosts_one_gateway_at_most_and_only_if_capable() {
        let h = HostSlot::default();
        assert!(!h.claim(), "not capable: the gateway gets threads");
        assert!(h.take().is_none());
        h.set_capable();
        assert!(h.claim());
        assert!(!h.claim(), "a second gateway gets threads of its own");
        h.offer(Box::pin(async {}));
        assert!(h.take().is_some());
        assert!(h.take().is_none(), "taken once");
    }
}
