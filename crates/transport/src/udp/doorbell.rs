//! An eventfd that another thread rings to wake a lane blocked in poll(2)
//! or in an epoll-based runtime.

use super::sys;
#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Wake;

/// Ringing costs a write(2) only for the first ring since the last `answer`:
/// the token works like a park token, so a ring while the lane is busy makes
/// its next wait return at once rather than being lost.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    token: Token,
}

impl Doorbell {
    pub fn new() -> io::Result<Arc<Doorbell>> {
        Ok(Arc::new(Doorbell {
            fd: sys::event_fd()?,
            token: Token::default(),
        }))
    }

    pub fn ring(&self) {
        self.token.ring(|| sys::event_write(&self.fd));
    }

    /// Consumes the rings so far.
    pub fn answer(&self) {
        self.token.answer(|| sys::event_drain(&self.fd));
    }
}

/// The doorbell's protocol apart from its eventfd (which loom cannot run):
/// whether a ring since the last answer has written the event.
#[derive(Debug, Default)]
pub struct Token {
    rung: AtomicBool,
}

impl Token {
    /// Rings: `write` the event unless a ring since the last answer did.
    /// SeqCst pairs with `answer`: whatever the ringer published before is
    /// visible to the lane once it has answered.
    pub fn ring(&self, write: impl FnOnce()) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            write();
        }
    }

    /// Answers: `drain` the event, then clear the token. In this order a
    /// ring in between finds the token set and does not write, and the
    /// swap still makes what it published visible. Cleared first, a ring in
    /// between would write, the drain would eat it, and the token would
    /// stay set with the event empty: no later ring would ever write again.
    pub fn answer(&self, drain: impl FnOnce()) {
        drain();
        self.rung.swap(false, Ordering::SeqCst);
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Wake for Doorbell {
    fn wake(self: Arc<Self>) {
        self.ring();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    /// A ringer that never waits for the lane: whenever the lane's wait
    /// times out, it must already have seen everything published, else a
    /// ring was lost (the doorbell went silent).
    #[test]
    fn no_ring_is_lost_while_the_lane_answers() {
        // Each round takes milliseconds; the race it looks for is rare.
        for _ in 0..30 {
            round();
        }
    }

    /// A lost ring silences the doorbell for good, so a wait that times out
    /// after the ringer finished with something unseen is a lost ring (one
    /// before may be a ringer descheduled between publishing and ringing).
    fn round() {
        const RINGS: u64 = 200_000;
        let bell = Doorbell::new().expect("eventfd");
        let value = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let ringer = {
            let (bell, value, done) = (bell.clone(), value.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 1..=RINGS {
                    value.store(i, Ordering::Relaxed);
                    bell.ring();
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let start = Instant::now();
        let mut seen = 0;
        while seen < RINGS && start.elapsed() < Duration::from_secs(20) {
            let mut fds = [libc::pollfd {
                fd: bell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            sys::poll(&mut fds, Duration::from_millis(200)).expect("poll");
            if fds[0].revents == 0 {
                if done.load(Ordering::SeqCst) {
                    let now = value.load(Ordering::Relaxed);
                    assert_eq!(now, seen, "a ring was lost: published {now}, the lane saw {seen}");
                }
                continue;
            }
            bell.answer();
            seen = value.load(Ordering::Relaxed);
        }
        ringer.join().expect("ringer");
        assert_eq!(seen, RINGS);
    }
}
