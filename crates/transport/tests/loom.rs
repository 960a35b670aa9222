//! Model-checks the UDP doorbell's token with loom, its eventfd modelled by
//! a counter (a write adds one, a drain takes all): a ringer that publishes
//! and rings, and a lane that answers when the event is readable, never end
//! with something published that the lane has not seen and no wake-up
//! pending (the lane would sleep through it). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rzab-transport --test loom --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering::SeqCst};
use loom::thread;
use rzab_transport::udp::doorbell::Token;

#[derive(Default)]
struct Bell {
    token: Token,
    /// The eventfd's counter.
    event: AtomicU64,
    /// What the ringer published last.
    value: AtomicU64,
}

impl Bell {
    fn ring(&self, v: u64) {
        self.value.store(v, SeqCst);
        self.token.ring(|| {
            self.event.fetch_add(1, SeqCst);
        });
    }

    fn readable(&self) -> bool {
        self.event.load(SeqCst) > 0
    }

    /// Answers and reads what was published.
    fn answer(&self) -> u64 {
        self.token.answer(|| {
            self.event.swap(0, SeqCst);
        });
        self.value.load(SeqCst)
    }
}

/// Three rings against a lane that answers twice at most: the old order
/// (clear the token, then drain) fails this in the interleaving where the
/// second ring lands inside the answer and the third finds the token set.
#[test]
fn no_ring_is_lost() {
    loom::model(|| {
        let bell = Arc::new(Bell::default());
        let ringer = {
            let bell = bell.clone();
            thread::spawn(move || {
                for v in 1..=3 {
                    bell.ring(v);
                }
            })
        };
        let mut seen = 0;
        for _ in 0..2 {
            if bell.readable() {
                seen = bell.answer();
            }
        }
        ringer.join().expect("ringer");
        assert!(
            seen == 3 || bell.readable(),
            "the lane saw {seen} of 3 and no wake-up is pending"
        );
    });
}
