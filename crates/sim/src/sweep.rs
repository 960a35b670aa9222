//! Runs many seeds (in parallel threads, each seed independent and
//! deterministic) and collects the failing ones.

use crate::{Outcome, SimConfig, run};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct SweepReport {
    pub seeds: u64,
    /// Failing runs, in seed order.
    pub failed: Vec<Outcome>,
    pub events: u64,
    pub writes: u64,
    pub reads: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub partitions: u64,
    pub crashes: u64,
    /// Elections won (leader changes).
    pub failovers: u64,
    pub binds: u64,
    pub fences: u64,
    pub refused_by_fence: u64,
    pub elapsed: Duration,
}

impl SweepReport {
    pub fn seeds_per_s(&self) -> f64 {
        self.seeds as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, o: &Outcome) {
        self.seeds += 1;
        self.events += o.events;
        self.writes += o.writes as u64;
        self.reads += o.reads as u64;
        self.dropped += o.net.dropped + o.net.cut;
        self.duplicated += o.net.duplicated;
        self.reordered += o.net.reordered;
        self.partitions += o.net.partitions;
        self.crashes += o.crashes;
        self.failovers += o.failovers;
        self.binds += o.binds;
        self.fences += o.fences;
        self.refused_by_fence += o.failed;
    }
}

/// Runs `seeds` on `jobs` threads; `on_fail` sees each failing run as it ends.
pub fn sweep(
    cfg: &SimConfig,
    seeds: Range<u64>,
    jobs: usize,
    on_fail: &(dyn Fn(&Outcome) + Sync),
) -> SweepReport {
    let start = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let report = Mutex::new(SweepReport::default());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let o = run(cfg, seed);
                    if !o.violations.is_empty() {
                        on_fail(&o);
                    }
                    if let Ok(mut r) = report.lock() {
                        r.add(&o);
                        if !o.violations.is_empty() {
                            r.failed.push(o);
                        }
                    }
                }
            });
        }
    });
    let mut r = report.into_inner().unwrap_or_default();
    r.failed.sort_by_key(|o| o.seed);
    r.elapsed = start.elapsed();
    r
}
