//! Lane 0 running a client gateway in its own thread: the lane's loop
//! becomes one task of a current-thread runtime, beside the gateway's
//! connections. A busy turn yields to them; an idle lane waits on its
//! transport's sockets, a wake from its connections, or its next timer,
//! while the connections run.
//!
//! The runtime tracks the readiness of the transport's descriptors, so a
//! turn reads only those it reports readable (`Transport::recv_readable`)
//! and clears only those the read found empty: few reads find nothing
//! (one after a read that filled the batch, one for an edge whose
//! datagrams an earlier read took), and nothing polls to learn what the
//! runtime already knows.

use super::{Gate, LaneResult, LaneWorker, Phase};
use crate::config::PollMode;
use crate::gateway::hosted::GatewayFuture;
use rzab_transport::Transport;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Idle turns before waiting. Each one also polls the connections' sockets
/// (the runtime's epoll_wait), so the thread's own transport's count is too
/// many. With blind reads, 1 gave the most at 5% writes with 64 in flight
/// (1.0 M ops/s against 0.95 M for 0 and 0.89 M for 4); with gated reads,
/// 0, 1 and 4 were within the noise of each other.
const IDLE_POLLS: u32 = 1;

/// A descriptor the transport owns, registered for readiness only.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl<T: Transport + 'static> LaneWorker<T> {
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
        rt.block_on(async move {
            tokio::spawn(gateway);
            // A task, not the future `block_on` polls: waking that one (each
            // yield, each connection's notify) writes the runtime's eventfd,
            // while waking a task of this thread only queues it.
            match tokio::spawn(self.run_task(last_phase)).await {
                Ok(result) => result,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // Nothing aborts it and the runtime outlives it.
                    Err(e) => panic!("the lane's task ended without a result: {e}"),
                },
            }
        })
    }

    async fn run_task(mut self, last_phase: Phase) -> LaneResult {
        let notify = self.node.host.notify.clone();
        let ready: Result<Vec<AsyncFd<Fd>>, _> = self
            .transport
            .wait_fds()
            .into_iter()
            .map(|fd| {
                // SAFETY: the transport owns these descriptors and keeps
                // them open for as long as it lives; it outlives `ready`,
                // which is dropped before the lane finishes.
                unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }
            })
            .collect();
        let ready = match ready {
            Ok(r) if r.len() <= MAX_FDS => r,
            Ok(r) => {
                self.error = Some(format!(
                    "the transport waits on {} descriptors, at most {MAX_FDS}",
                    r.len()
                ));
                return self.finish();
            }
            Err(e) => {
                self.error = Some(format!("cannot wait on the lane's sockets: {e}"));
                return self.finish();
            }
        };
        self.run_beside(&ready, &notify, last_phase).await;
        drop(ready);
        self.finish()
    }

    async fn run_beside(&mut self, ready: &[AsyncFd<Fd>], notify: &Notify, mut last_phase: Phase) {
        let mut idle = 0u32;
        // One timer, moved for each wait: a new one (or one moved earlier,
        // or moved after it fired) wakes the runtime's driver through its
        // eventfd, a system call; one still pending moved later is only a
        // new deadline.
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let guards = poll_fn(|cx| Poll::Ready(readiness(ready, cx))).await;
            self.gate = Some(Gate {
                readable: guards.readable,
                empty: 0,
            });
            let Some(busy) = self.step(&mut last_phase) else {
                break;
            };
            guards.clear(self.gate.map_or(0, |g| g.empty));
            idle = if busy { 0 } else { idle.saturating_add(1) };
            if busy || self.poll == PollMode::Busy || idle <= IDLE_POLLS {
                // Let the connections run (and the runtime poll their sockets).
                tokio::task::yield_now().await;
            } else {
                self.wait_beside(ready, notify, sleep.as_mut()).await;
            }
        }
        self.gate = None;
    }

    /// Waits until a descriptor of the lane is readable, a connection handed
    /// it writes, or its next timer (at most `MAX_SLEEP`).
    async fn wait_beside(&mut self, ready: &[AsyncFd<Fd>], notify: &Notify, mut sleep: Pin<&mut Sleep>) {
        let wait = self.idle_wait(self.clock.now());
        self.rt.sleeps += 1;
        sleep.as_mut().reset(Instant::now() + wait);
        tokio::select! {
            _ = any_readable(ready) => {}
            _ = notify.notified() => {}
            _ = sleep => {}
        }
    }
}

/// Most descriptors a hosted transport may wait on (UDP: a doorbell and
/// one or two sockets).
pub(crate) const MAX_FDS: usize = 4;

/// What the runtime says is readable, held until the turn has read it.
struct Readiness<'a> {
    guards: [Option<AsyncFdReadyGuard<'a, Fd>>; MAX_FDS],
    /// Bit i: descriptor i may be read.
    readable: u32,
}

impl Readiness<'_> {
    /// Clears the readiness of the descriptors found empty; the others
    /// stay readable for the next turn. A datagram that came after the
    /// read is not lost: epoll holds its edge for the runtime's next poll.
    fn clear(self, empty: u32) {
        for (i, guard) in self.guards.into_iter().enumerate() {
            if let Some(mut g) = guard
                && empty & (1 << i) != 0
            {
                g.clear_ready();
            }
        }
    }
}

/// The readable descriptors among `fds`, without waiting (the others wake
/// the task when they become readable, which at worst costs a poll).
fn readiness<'a>(fds: &'a [AsyncFd<Fd>], cx: &mut std::task::Context<'_>) -> Readiness<'a> {
    let mut r = Readiness {
        guards: Default::default(),
        readable: 0,
    };
    for (i, fd) in fds.iter().enumerate().take(MAX_FDS) {
        match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(g)) => {
                r.guards[i] = Some(g);
                r.readable |= 1 << i;
            }
            // A registration error (only as the runtime shuts down): not
            // readable, so the lane waits on its timer instead of spinning.
            Poll::Ready(Err(_)) | Poll::Pending => {}
        }
    }
    r
}

/// Ready once any of `fds` is readable (leaving its readiness set for the
/// turn that reads it).
async fn any_readable(fds: &[AsyncFd<Fd>]) {
    poll_fn(|cx| {
        let any = fds
            .iter()
            .any(|fd| matches!(fd.poll_read_ready(cx), Poll::Ready(Ok(_))));
        if any { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}
