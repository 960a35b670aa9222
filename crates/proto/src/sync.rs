//! Atomics, from loom when model checking (`--cfg loom`) and std otherwise,
//! so the loom tests exercise the real gate.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
