//! Lane 0 running a client gateway in its own thread: the lane's loop
//! becomes one task of a current-thread runtime, beside the gateway's
//! connections. A busy turn yields to them; an idle lane waits on its
//! transport's sockets, a wake from its connections, or its next timer,
//! while the connections run.

use super::{LaneResult, LaneWorker, Phase};
use crate::config::PollMode;
use crate::gateway::hosted::GatewayFuture;
use rzab_transport::Transport;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::task::Poll;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// Idle turns before waiting. Each one also polls the connections' sockets
/// (a system call), so the thread's own transport's count is too many:
/// side by side, 1 gave the most at 5% writes with 64 in flight (1.0 M
/// ops/s against 0.95 M for 0 and 0.89 M for 4).
const IDLE_POLLS: u32 = 1;

/// A descriptor the transport owns, registered for readiness only.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl<T: Transport> LaneWorker<T> {
    /// Runs the lane and `gateway` on one current-thread runtime until the
    /// lane stops; the gateway and its connections end with it.
    pub(super) fn run_hosted(mut self, gateway: GatewayFuture, last_phase: Phase) -> LaneResult {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                self.error = Some(format!("cannot start the runtime for the client gateway: {e}"));
                return self.finish();
            }
        };
        // Its connections share its priority now: ahead of the clients'
        // threads, it starved them (a third of the throughput on 2 cores).
        crate::runner::unraise_priority();
        let fds = self.transport.wait_fds();
        let notify = self.node.host.notify.clone();
        rt.block_on(async move {
            tokio::spawn(gateway);
            let ready: Result<Vec<AsyncFd<Fd>>, _> = fds
                .into_iter()
                .map(|fd| {
                    // SAFETY: the transport owns these descriptors and keeps
                    // them open for as long as it lives; it outlives `ready`,
                    // which is dropped before the lane finishes.
                    unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }
                })
                .collect();
            let ready = match ready {
                Ok(r) => r,
                Err(e) => {
                    self.error = Some(format!("cannot wait on the lane's sockets: {e}"));
                    return self.finish();
                }
            };
            self.run_beside(&ready, &notify, last_phase).await;
            drop(ready);
            self.finish()
        })
    }

    async fn run_beside(&mut self, ready: &[AsyncFd<Fd>], notify: &Notify, mut last_phase: Phase) {
        let mut idle = 0u32;
        while let Some(busy) = self.step(&mut last_phase) {
            idle = if busy { 0 } else { idle.saturating_add(1) };
            if busy || self.poll == PollMode::Busy || idle <= IDLE_POLLS {
                // Let the connections run (and the runtime poll their sockets).
                tokio::task::yield_now().await;
            } else {
                self.wait_beside(ready, notify).await;
            }
        }
    }

    /// Waits until a socket of the lane is readable, a connection handed
    /// it writes, or its next timer (at most `MAX_SLEEP`).
    async fn wait_beside(&mut self, ready: &[AsyncFd<Fd>], notify: &Notify) {
        // The runtime's readiness is edge-triggered and may be stale: a
        // turn can stop reading with datagrams still queued (its batch
        // full of ones it dropped). Ask the sockets themselves first.
        if readable_now(ready) {
            let _ = self.transport.wait(Duration::ZERO);
            return;
        }
        let wait = self.idle_wait(self.clock.now());
        self.rt.sleeps += 1;
        tokio::select! {
            _ = readable(ready) => {}
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        // Consumes a wake-up from another thread (the transport's doorbell).
        let _ = self.transport.wait(Duration::ZERO);
    }
}

/// Whether any of `fds` has input now (a poll that does not block).
fn readable_now(fds: &[AsyncFd<Fd>]) -> bool {
    // A transport waits on a few descriptors (UDP: a doorbell and one or
    // two sockets); poll(2) skips the negative ones.
    debug_assert!(fds.len() <= 4, "readable_now checks 4 descriptors");
    let mut polled = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 4];
    for (p, fd) in polled.iter_mut().zip(fds) {
        p.fd = fd.get_ref().0;
    }
    // SAFETY: `polled` is a valid array of its length for the whole call;
    // a zero timeout never blocks.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 0) };
    n > 0
}

/// Ready once any of `fds` is readable (clearing what it saw; the caller
/// checked the sockets just before, so what it clears is news).
async fn readable(fds: &[AsyncFd<Fd>]) {
    poll_fn(|cx| {
        let mut any = false;
        for fd in fds {
            match fd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    any = true;
                }
                // A registration error: wake and let the turn find out.
                Poll::Ready(Err(_)) => any = true,
                Poll::Pending => {}
            }
        }
        if any { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}
