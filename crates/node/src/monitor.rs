//! Watches the lanes of a run: prints one line per node and one for the
//! cluster every interval, and decides when a drained cluster has converged.

use crate::report::{Batches, IntervalReport, Rates, Stalls, rate_line};
use crate::stats::{LaneShared, Snapshot};
use rzab_proto::NodeId;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One lane's published state, addressed by node and lane.
pub struct Watched {
    pub node: NodeId,
    pub lane: u8,
    pub shared: Arc<LaneShared>,
}

pub struct Monitor {
    pub lanes: Vec<Watched>,
    pub nodes: Vec<NodeId>,
    previous: Vec<Snapshot>,
    previous_t: f64,
    /// Set from outside (Ctrl-C): counts as a failure.
    abort: Option<Arc<AtomicBool>>,
}

impl Monitor {
    pub fn new(lanes: Vec<Watched>) -> Monitor {
        let mut nodes: Vec<NodeId> = lanes.iter().map(|w| w.node).collect();
        nodes.dedup();
        let previous = vec![Snapshot::default(); lanes.len()];
        Monitor {
            lanes,
            nodes,
            previous,
            previous_t: 0.0,
            abort: None,
        }
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.lanes.iter().map(|w| w.shared.read()).collect()
    }

    /// Sums a node's lanes (all nodes when `node` is None).
    pub fn sum(&self, snaps: &[Snapshot], node: Option<NodeId>) -> Snapshot {
        let mut total = Snapshot::default();
        for (w, s) in self.lanes.iter().zip(snaps) {
            if node.is_none_or(|n| n == w.node) {
                total.add_counters(s);
                total.progress.leader |= s.progress.leader && !s.progress.down;
            }
        }
        total
    }

    /// Prints the lines for the interval ending at `t` seconds.
    pub fn interval(&mut self, t: f64, out: &mut dyn Write) -> IntervalReport {
        let now = self.snapshots();
        let secs = t - self.previous_t;
        let delta: Vec<Snapshot> = now
            .iter()
            .zip(&self.previous)
            .map(|(a, b)| Snapshot {
                proto: a.proto.since(&b.proto),
                runtime: a.runtime.since(&b.runtime),
                transport: a.transport,
                progress: a.progress,
            })
            .collect();
        let mut nodes = Vec::new();
        for &n in &self.nodes {
            let s = self.sum(&delta, Some(n));
            let rates = Rates::of(&s.runtime, secs);
            let role = if s.progress.leader { "L" } else { " " };
            let _ = writeln!(
                out,
                "[{t:6.1}s] node {n:<2} {role} {}  | {}",
                rate_line(&rates),
                detail(&s)
            );
            nodes.push(rates);
        }
        let s = self.sum(&delta, None);
        let cluster = Rates::of(&s.runtime, secs);
        let _ = writeln!(
            out,
            "[{t:6.1}s] cluster   {}  | {}",
            rate_line(&cluster),
            detail(&s)
        );
        self.previous = now;
        self.previous_t = t;
        IntervalReport {
            t_s: t,
            nodes,
            cluster,
        }
    }

    /// Whether every write completed and every replica applied everything
    /// its lane's leader appended. `Err` describes what is outstanding.
    pub fn converged(&self) -> Result<(), String> {
        let snaps = self.snapshots();
        let mut waiting = Vec::new();
        let live = || self.lanes.iter().zip(&snaps).filter(|(_, s)| !s.progress.down);
        // One epoch, everyone in it serving: not in the middle of an election.
        let epochs: std::collections::BTreeSet<u32> = live().map(|(_, s)| s.progress.epoch).collect();
        if epochs.len() > 1 {
            waiting.push(format!("lanes are in different epochs {epochs:?}"));
        }
        for (w, s) in live() {
            if !s.progress.serving {
                waiting.push(format!(
                    "node {} lane {} is not serving (between epochs)",
                    w.node, w.lane
                ));
            }
            if !s.progress.draining {
                waiting.push(format!("node {} lane {} has not seen the drain", w.node, w.lane));
            }
            if s.progress.blocked_sessions > 0 {
                waiting.push(format!(
                    "node {} lane {}: {} sessions wait for their write",
                    w.node, w.lane, s.progress.blocked_sessions
                ));
            }
        }
        let lanes = self
            .lanes
            .iter()
            .map(|w| w.lane)
            .max()
            .map_or(0, |m| m as usize + 1);
        for lane in 0..lanes {
            let of_lane = || {
                self.lanes
                    .iter()
                    .zip(&snaps)
                    .filter(move |(w, s)| w.lane as usize == lane && !s.progress.down)
            };
            let Some((_, leader)) = of_lane().find(|(_, s)| s.progress.leader) else {
                waiting.push(format!("lane {lane} has no leader"));
                continue;
            };
            let end = leader.progress.end_lid;
            for (w, s) in of_lane() {
                let p = &s.progress;
                if p.apply_lid != end {
                    waiting.push(format!(
                        "lane {lane}: node {} applied {} of {end} entries (received {}, committed {}){}",
                        w.node,
                        p.apply_lid,
                        p.end_lid,
                        p.commit_lid,
                        if leader.progress.lagging & (1 << w.node) != 0 {
                            ", marked lagging"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join("; "))
        }
    }

    /// Whether every lane issued all the operations it was given.
    pub fn all_issued(&self) -> bool {
        self.snapshots()
            .iter()
            .all(|s| s.progress.issued_all || s.progress.down)
    }

    /// Treats `flag` being set as a failure (to stop on Ctrl-C).
    pub fn abort_on(&mut self, flag: Arc<AtomicBool>) {
        self.abort = Some(flag);
    }

    /// Whether any lane reported a failure (or the run was aborted).
    pub fn failed(&self) -> bool {
        self.abort.as_ref().is_some_and(|a| a.load(Ordering::SeqCst))
            || self
                .snapshots()
                .iter()
                .any(|s| s.progress.failed && !s.progress.down)
    }
}

fn detail(s: &Snapshot) -> String {
    let b = Batches::of(&s.proto);
    let st = Stalls::of(s);
    let f = |v: f64| {
        if v == 0.0 {
            "   -".to_string()
        } else {
            format!("{v:4.1}")
        }
    };
    format!(
        "batch W {} P {} A {} C {} | stall gate {} credit {}",
        f(b.writes_per_write),
        f(b.prepares_per_prepare),
        f(b.prepares_per_ack),
        f(b.commits_per_commit),
        st.apply_order_waits,
        st.prepare_credit_waits + st.commit_credit_waits + st.write_credit_waits
    )
}
