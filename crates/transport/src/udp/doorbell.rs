//! An eventfd that another thread rings to wake a lane blocked in poll(2).

use super::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Wake;

/// Ringing costs a write(2) only for the first ring since the last `answer`:
/// `rung` works like a park token, so a ring while the lane is busy makes its
/// next wait return at once rather than being lost.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    rung: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Arc<Doorbell>> {
        Ok(Arc::new(Doorbell {
            fd: sys::event_fd()?,
            rung: AtomicBool::new(false),
        }))
    }

    pub fn ring(&self) {
        // SeqCst pairs with `answer`: whatever the ringer published before
        // is visible to the lane once it has answered.
        if !self.rung.swap(true, Ordering::SeqCst) {
            sys::event_write(&self.fd);
        }
    }

    /// Consumes the rings so far. Clear the token before reading the fd: a
    /// ring in between then writes again and costs one spurious wakeup,
    /// never a lost one.
    pub fn answer(&self) {
        self.rung.swap(false, Ordering::SeqCst);
        sys::event_drain(&self.fd);
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
