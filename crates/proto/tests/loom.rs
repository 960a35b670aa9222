//! Model-checks the apply gate with loom: lanes that apply writes to plain
//! (non-atomic) data in gate order never race, in any interleaving allowed
//! by the Rust memory model. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rzab-proto --test loom --release`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use rzab_proto::{ApplyGate, Zxid};

/// Stands in for the store: written without synchronization of its own, so
/// loom reports a data race unless the gate orders the writers.
struct Applied(UnsafeCell<Vec<u32>>);

// SAFETY: all access goes through loom's UnsafeCell, which checks that
// accesses are ordered by happens-before (that is what this test proves).
unsafe impl Sync for Applied {}

fn lane(gate: Arc<ApplyGate>, applied: Arc<Applied>, ids: &'static [u32]) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for &id in ids {
            let z = Zxid::new(1, id);
            while !gate.is_next(z) {
                thread::yield_now();
            }
            // SAFETY: the gate admits one lane at a time; loom verifies the
            // previous writer's accesses happen-before this one.
            applied.0.with_mut(|v| unsafe { (*v).push(id) });
            gate.publish(z);
        }
    })
}

#[test]
fn lanes_apply_in_zxid_order_without_races() {
    loom::model(|| {
        let gate = Arc::new(ApplyGate::new(Zxid::epoch_base(1)));
        let applied = Arc::new(Applied(UnsafeCell::new(Vec::new())));
        let a = lane(gate.clone(), applied.clone(), &[1, 3]);
        let b = lane(gate.clone(), applied.clone(), &[2]);
        a.join().unwrap();
        b.join().unwrap();
        // SAFETY: both lanes have been joined.
        let order = applied.0.with(|v| unsafe { (*v).clone() });
        assert_eq!(order, vec![1, 2, 3]);
        assert_eq!(gate.applied(), Zxid::new(1, 3));
    });
}
