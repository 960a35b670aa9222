//! Parking for an idle lane thread, and the waker that unparks it.

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

/// Lets one thread sleep until another has something for it.
///
/// The sleeper announces itself (`sleeping = true`), re-checks its inputs,
/// then parks; a producer publishes its input, then wakes the sleeper if it
/// announced itself. SeqCst fences on both sides make one of them see the
/// other, and park/unpark keep a token, so no wakeup is lost.
#[derive(Debug, Default)]
pub struct Sleeper {
    sleeping: AtomicBool,
    thread: Mutex<Option<Thread>>,
}

impl Sleeper {
    pub fn new() -> Arc<Sleeper> {
        Arc::new(Sleeper::default())
    }

    /// Sleeps up to `timeout` unless `ready()` (checked after announcing) is true.
    pub fn sleep_unless(&self, timeout: Duration, ready: impl FnOnce() -> bool) {
        if let Ok(mut t) = self.thread.lock()
            && t.is_none()
        {
            *t = Some(thread::current());
        }
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Wakes the sleeper if it is (about to be) asleep. Call after
    /// publishing the input it waits for.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst)
            && let Ok(t) = self.thread.lock()
            && let Some(t) = t.as_ref()
        {
            t.unpark();
        }
    }
}

impl Wake for Sleeper {
    fn wake(self: Arc<Self>) {
        self.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify();
    }
}

/// A `std::task::Waker` that wakes `sleeper`.
pub fn waker(sleeper: &Arc<Sleeper>) -> Waker {
    Waker::from(sleeper.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    #[test]
    fn a_wake_after_publishing_is_never_lost() {
        let s = Sleeper::new();
        let inbox = Arc::new(AtomicU64::new(0));
        let (s2, inbox2) = (s.clone(), inbox.clone());
        let consumer = thread::spawn(move || {
            let start = Instant::now();
            let mut seen = 0;
            while seen < 200 {
                s2.sleep_unless(Duration::from_secs(5), || inbox2.load(Ordering::SeqCst) > seen);
                seen = inbox2.load(Ordering::SeqCst);
            }
            start.elapsed()
        });
        for _ in 0..200 {
            inbox.fetch_add(1, Ordering::SeqCst);
            s.notify();
            thread::sleep(Duration::from_micros(50));
        }
        let took = consumer.join().unwrap();
        assert!(
            took < Duration::from_secs(5),
            "a lost wakeup would park for the full timeout"
        );
    }
}
