//! The figures of a run: per node and for the cluster, printed for people
//! and serialized as JSON.

use crate::config::RunConfig;
use crate::session::Violations;
use crate::stats::{RuntimeStats, Snapshot};
use hdrhistogram::Histogram;
use rzab_proto::{LaneStats, NodeId};
use rzab_transport::TransportStats;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A latency histogram as (value, count) pairs, so it can cross a process
/// boundary and be merged without losing its precision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl Buckets {
    pub fn add(&mut self, h: &Histogram<u64>) {
        self.0.extend(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())),
        );
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = crate::lane::histogram();
        for &(v, n) in &self.0 {
            let _ = h.record_n(v, n);
        }
        h
    }
}

/// Everything one node reports at the end of a run, in-process or from a
/// node process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub id: NodeId,
    pub leader: bool,
    /// Counters (summed over lanes) when its sessions stopped...
    pub running: Snapshot,
    /// ...after this many seconds.
    pub running_s: f64,
    /// Counters at the end.
    pub fin: Snapshot,
    pub digest: u64,
    /// Writes applied and the hash chain over them.
    pub applied: u64,
    pub chain: u64,
    pub read_latency_ns: Buckets,
    pub write_latency_ns: Buckets,
    pub violations: Violations,
    pub errors: Vec<String>,
    /// Transport details (for example the socket buffers the kernel granted).
    pub info: Option<serde_json::Value>,
    /// It restarted without state and joined from a snapshot (its hash
    /// chain covers only what it applied since).
    #[serde(default)]
    pub rejoined: bool,
    /// Its control plane at the end.
    #[serde(default)]
    pub control: crate::controller::ControlStatus,
    /// Gaps between applies longer than 5 ms (monotonic ns).
    #[serde(default)]
    pub gaps: Vec<(u64, u64)>,
    #[serde(default)]
    pub installed_keys: u64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Average operations per message of each kind (0 when none were sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Batches {
    pub writes_per_write: f64,
    pub prepares_per_prepare: f64,
    pub prepares_per_ack: f64,
    pub commits_per_commit: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Batches {
    pub fn of(s: &LaneStats) -> Batches {
        Batches {
            writes_per_write: ratio(s.writes_sent, s.write_msgs_sent),
            prepares_per_prepare: ratio(s.prepares_sent, s.prepare_msgs_sent),
            prepares_per_ack: ratio(s.acked_lids_sent, s.acks_sent),
            commits_per_commit: ratio(s.commits_sent, s.commit_msgs_sent),
        }
    }
}

/// Stall counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stalls {
    pub apply_order_waits: u64,
    pub prepare_credit_waits: u64,
    pub commit_credit_waits: u64,
    pub write_credit_waits: u64,
}

impl Stalls {
    pub fn of(s: &Snapshot) -> Stalls {
        Stalls {
            apply_order_waits: s.runtime.gate_waits,
            prepare_credit_waits: s.proto.prepare_credit_stalls,
            commit_credit_waits: s.proto.commit_credit_stalls,
            write_credit_waits: s.proto.write_credit_stalls,
        }
    }
}

/// Rates over one stretch of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub mops: f64,
    pub reads_per_s: f64,
    pub writes_per_s: f64,
}

impl Rates {
    pub fn of(r: &RuntimeStats, secs: f64) -> Rates {
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Rates {
            mops: per_s(r.ops()) / 1e6,
            reads_per_s: per_s(r.reads),
            writes_per_s: per_s(r.writes_completed),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub id: u8,
    pub leader: bool,
    pub rates: Rates,
    pub batches: Batches,
    pub stalls: Stalls,
    pub runtime: RuntimeStats,
    pub proto: LaneStats,
    pub transport: TransportStats,
    /// xxh3 over every (key, zxid, value) in key order, as hex.
    pub digest: String,
    /// Writes applied and the hash chain over them, in apply order.
    pub applied: u64,
    pub history: String,
    pub violations: Violations,
    /// Transport details, when the node reported them.
    pub info: Option<serde_json::Value>,
    /// Its control plane at the end.
    pub control: crate::controller::ControlStatus,
    pub rejoined: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    pub rates: Rates,
    pub batches: Batches,
    pub stalls: Stalls,
    pub read_latency_us: Percentiles,
    pub write_latency_us: Percentiles,
    pub writes_issued: u64,
    pub writes_completed: u64,
    /// Datagrams sent by all nodes per committed write.
    pub datagrams_per_write: f64,
    pub digests_match: bool,
    pub histories_match: bool,
    pub violations: Violations,
}

#[derive(Clone, Debug, Serialize)]
pub struct IntervalReport {
    pub t_s: f64,
    pub nodes: Vec<Rates>,
    pub cluster: Rates,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub config: RunConfig,
    pub transport: String,
    /// Seconds the sessions ran (rates are over this).
    pub elapsed_s: f64,
    pub nodes: Vec<NodeReport>,
    pub cluster: ClusterReport,
    pub intervals: Vec<IntervalReport>,
    /// Everything that makes the run a failure; empty when it passed.
    pub problems: Vec<String>,
    /// The crash schedule's figures, when the run had one.
    pub faults: Option<crate::faults::FaultReport>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let w = &c.workload;
        let _ = writeln!(
            s,
            "== rzab bench: {} nodes x {} lanes, {}, {:.1} s, {}% writes, {} keys, {}-byte values, {} ==",
            c.nodes,
            c.lanes,
            self.transport,
            self.elapsed_s,
            w.write_ratio * 100.0,
            w.keys,
            w.value_size,
            w.distribution
        );
        for n in &self.nodes {
            let role = if n.leader { "(leader)" } else { "" };
            let _ = writeln!(
                s,
                "node {:<3}{:<9}{}  digest {}",
                n.id,
                role,
                rate_line(&n.rates),
                n.digest
            );
        }
        let cl = &self.cluster;
        let _ = writeln!(s, "cluster     {}  ", rate_line(&cl.rates));
        let b = &cl.batches;
        let _ = writeln!(
            s,
            "batch sizes   writes/Write {:.1}  prepares/Prepare {:.1}  prepares/Ack {:.1}  commits/Commit {:.1}",
            b.writes_per_write, b.prepares_per_prepare, b.prepares_per_ack, b.commits_per_commit
        );
        let st = &cl.stalls;
        let _ = writeln!(
            s,
            "stalls        apply-order waits {}  credit waits: prepare {} commit {} write {}",
            st.apply_order_waits, st.prepare_credit_waits, st.commit_credit_waits, st.write_credit_waits
        );
        for (name, p) in [("read ", &cl.read_latency_us), ("write", &cl.write_latency_us)] {
            let _ = writeln!(
                s,
                "{name} latency us  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} ops)",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
        let _ = writeln!(
            s,
            "writes        {} issued, {} completed, {:.2} datagrams per write",
            cl.writes_issued, cl.writes_completed, cl.datagrams_per_write
        );
        let t = self.nodes.iter().fold(TransportStats::default(), |mut t, n| {
            t.add(&n.transport);
            t
        });
        let p = self.nodes.iter().fold(LaneStats::default(), |mut p, n| {
            p.add(&n.proto);
            p
        });
        let _ = writeln!(
            s,
            "network       {} datagrams sent; lost: {} full queues, {} injected; repaired by {} timeouts, \
             {} gap reports, {} entries resent, {} writes resent",
            t.datagrams_sent,
            t.dropped_full,
            t.dropped_injected,
            p.retransmit_timeouts,
            p.nacks_sent,
            p.catch_up_sent,
            p.writes_resent
        );
        let verdict = if cl.digests_match && cl.histories_match {
            "all match"
        } else {
            "MISMATCH"
        };
        let _ = writeln!(s, "digests       {verdict}");
        if let Some(f) = &self.faults {
            s.push_str(&fault_lines(f));
        }
        if self.ok() {
            let _ = writeln!(s, "result        ok");
        } else {
            for p in &self.problems {
                let _ = writeln!(s, "PROBLEM       {p}");
            }
        }
        s
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

fn fault_lines(f: &crate::faults::FaultReport) -> String {
    let mut s = String::new();
    for k in &f.kills {
        let who = if k.was_leader { "leader" } else { "follower" };
        let next = match (k.new_leader, k.new_epoch) {
            (Some(n), Some(e)) if k.was_leader => format!("node {n} leads epoch {e}"),
            _ => "no leader change".into(),
        };
        let _ = writeln!(
            s,
            "kill          node {} ({who}) at {:.2} s: {next}; elected after {}, first commit after {}, \
             no commits for {}",
            k.node,
            k.at_s,
            opt_ms(k.elected_ms),
            opt_ms(k.failover_ms),
            opt_ms(k.unavailable_ms)
        );
    }
    for r in &f.restarts {
        let rate = r.keys_per_s.map_or("-".into(), |v| format!("{:.0} keys/s", v));
        let _ = writeln!(
            s,
            "restart       node {} at {:.2} s: caught up after {} ({} keys in its snapshot, {rate})",
            r.node,
            r.at_s,
            opt_ms(r.caught_up_ms),
            r.snapshot_keys
        );
    }
    for (name, m) in [
        ("failover", &f.failover_ms),
        ("unavailable", &f.unavailable_ms),
        ("catch-up", &f.caught_up_ms),
    ] {
        if m.count > 0 {
            let _ = writeln!(
                s,
                "{name:<13} median {:.1} ms, max {:.1} ms over {}",
                m.median, m.max, m.count
            );
        }
    }
    for why in &f.skipped {
        let _ = writeln!(s, "skipped       {why}");
    }
    s
}

/// "  3.41 Mops/s  reads 3.24 M/s  writes 170.2 k/s".
pub fn rate_line(r: &Rates) -> String {
    format!(
        "{:7.3} Mops/s  reads {:7.3} M/s  writes {:8.1} k/s",
        r.mops,
        r.reads_per_s / 1e6,
        r.writes_per_s / 1e3
    )
}

/// The report of a run from its nodes' outcomes.
pub fn assemble(
    cfg: &RunConfig,
    transport: &str,
    outcomes: &[NodeOutcome],
    intervals: Vec<IntervalReport>,
    elapsed: f64,
    drained: Result<(), String>,
) -> Report {
    let mut problems: Vec<String> = drained.err().into_iter().collect();
    let mut read = Buckets::default();
    let mut write = Buckets::default();
    let mut violations = Violations::default();
    let mut all = Snapshot::default();
    let mut rates = Rates::default();
    for o in outcomes {
        read.0.extend_from_slice(&o.read_latency_ns.0);
        write.0.extend_from_slice(&o.write_latency_ns.0);
        violations.add(&o.violations);
        all.add_counters(&o.fin);
        let r = Rates::of(&o.running.runtime, o.running_s);
        rates.mops += r.mops;
        rates.reads_per_s += r.reads_per_s;
        rates.writes_per_s += r.writes_per_s;
        problems.extend(o.errors.iter().map(|e| format!("node {}: {e}", o.id)));
    }
    if outcomes.len() != cfg.nodes as usize {
        problems.push(format!("{} of {} nodes reported", outcomes.len(), cfg.nodes));
    }
    let nodes: Vec<NodeReport> = outcomes.iter().map(node_report).collect();
    let digests_match = nodes.windows(2).all(|w| w[0].digest == w[1].digest);
    // A node that joined from a snapshot applied only what followed it.
    let whole: Vec<&NodeReport> = nodes
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| !o.rejoined)
        .map(|(n, _)| n)
        .collect();
    let histories_match = whole
        .windows(2)
        .all(|w| (w[0].applied, &w[0].history) == (w[1].applied, &w[1].history));
    if !digests_match {
        problems.push("store digests differ between replicas".into());
    }
    if !histories_match {
        problems.push("replicas applied different write sequences".into());
    }
    if violations.total() > 0 {
        problems.push(format!("session guarantee violations: {violations:?}"));
    }
    if all.runtime.writes_completed != all.runtime.writes_issued {
        problems.push(format!(
            "{} writes issued but {} completed",
            all.runtime.writes_issued, all.runtime.writes_completed
        ));
    }
    let cluster = ClusterReport {
        rates,
        batches: Batches::of(&all.proto),
        stalls: Stalls::of(&all),
        read_latency_us: Percentiles::of(&read.histogram()),
        write_latency_us: Percentiles::of(&write.histogram()),
        writes_issued: all.runtime.writes_issued,
        writes_completed: all.runtime.writes_completed,
        datagrams_per_write: ratio(all.transport.datagrams_sent, all.runtime.writes_completed),
        digests_match,
        histories_match,
        violations,
    };
    Report {
        config: cfg.clone(),
        transport: transport.into(),
        elapsed_s: elapsed,
        nodes,
        cluster,
        intervals,
        problems,
        faults: None,
    }
}

fn node_report(o: &NodeOutcome) -> NodeReport {
    NodeReport {
        id: o.id,
        leader: o.leader,
        rates: Rates::of(&o.running.runtime, o.running_s),
        batches: Batches::of(&o.fin.proto),
        stalls: Stalls::of(&o.fin),
        runtime: o.fin.runtime,
        proto: o.fin.proto,
        transport: o.fin.transport,
        digest: format!("{:016x}", o.digest),
        applied: o.applied,
        history: format!("{:016x}", o.chain),
        violations: o.violations,
        info: o.info.clone(),
        control: o.control.clone(),
        rejoined: o.rejoined,
    }
}
