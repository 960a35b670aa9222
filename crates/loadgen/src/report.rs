//! The result of a run: throughput, latency percentiles, the workload that
//! produced them; printed as a table and written as JSON.

use crate::args::LoadArgs;
use crate::cpu::CpuUse;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Latency histograms record microseconds from 1 us to 10 min at 3
/// significant digits; slower requests saturate at the top.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        // Constant, valid bounds.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

/// Percentiles of one kind of request, in microseconds (all 0 when count is 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The workload parameters, echoed in the report so a JSON file stands alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadParams {
    pub servers: Vec<String>,
    pub clients: usize,
    pub inflight: usize,
    pub write_ratio: f64,
    pub keys: u64,
    pub value_size: usize,
    pub distribution: String,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub preload: bool,
    pub threads: usize,
    pub seed: u64,
}

impl WorkloadParams {
    pub fn from_args(a: &LoadArgs) -> WorkloadParams {
        WorkloadParams {
            servers: a.servers.clone(),
            clients: a.clients,
            inflight: a.inflight,
            write_ratio: a.write_ratio,
            keys: a.keys,
            value_size: a.value_size,
            distribution: a.distribution.to_string(),
            warmup_secs: a.warmup,
            duration_secs: a.duration,
            preload: a.preload_enabled(),
            threads: a.threads,
            seed: a.seed,
        }
    }
}

/// One run's measurements. Counts cover the measured window only: requests
/// that started before it (warm-up) or finished after it are left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub backend: String,
    pub workload: WorkloadParams,
    /// Length of the measured window in seconds (the throughput divisor).
    pub measured_secs: f64,
    pub ops: u64,
    pub reads: u64,
    pub writes: u64,
    /// Failed requests in the measured window (not in the latencies).
    pub errors: u64,
    /// Requests completed during warm-up, not counted above.
    pub warmup_ops: u64,
    pub ops_per_sec: f64,
    pub reads_per_sec: f64,
    pub writes_per_sec: f64,
    pub read_latency_us: LatencySummary,
    pub write_latency_us: LatencySummary,
    /// The load generator's own CPU over the measured window (it shares
    /// the machine with the servers when both run on one host).
    pub loadgen_cpu: Option<CpuUse>,
}

/// Raw counts from the runner, turned into a [`Report`] by [`Report::new`].
#[derive(Debug)]
pub struct Measurements {
    pub measured_secs: f64,
    pub errors: u64,
    pub warmup_ops: u64,
    pub reads: Histogram<u64>,
    pub writes: Histogram<u64>,
    pub cpu: Option<CpuUse>,
}

impl Report {
    pub fn new(backend: &str, workload: WorkloadParams, m: &Measurements) -> Report {
        let reads = m.reads.len();
        let writes = m.writes.len();
        let per_sec = |n: u64| {
            if m.measured_secs > 0.0 {
                n as f64 / m.measured_secs
            } else {
                0.0
            }
        };
        Report {
            backend: backend.to_string(),
            workload,
            measured_secs: m.measured_secs,
            ops: reads + writes,
            reads,
            writes,
            errors: m.errors,
            warmup_ops: m.warmup_ops,
            ops_per_sec: per_sec(reads + writes),
            reads_per_sec: per_sec(reads),
            writes_per_sec: per_sec(writes),
            read_latency_us: LatencySummary::from_histogram(&m.reads),
            write_latency_us: LatencySummary::from_histogram(&m.writes),
            loadgen_cpu: m.cpu,
        }
    }

    pub fn to_json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(s) => s,
            // Plain fields only; serde_json fails only on non-string map keys.
            Err(e) => unreachable!("report serialization: {e}"),
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        std::fs::write(path, self.to_json() + "\n")
            .map_err(|e| format!("writing report to {}: {e}", path.display()))
    }

    /// A readable summary for the terminal.
    pub fn table(&self) -> String {
        let w = &self.workload;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} on {}: {} clients x {} in flight, {:.0}% writes, {} keys ({}), {} B values, {:.1} s measured after {:.1} s warm-up",
            self.backend,
            w.servers.join(","),
            w.clients,
            w.inflight,
            w.write_ratio * 100.0,
            w.keys,
            w.distribution,
            w.value_size,
            self.measured_secs,
            w.warmup_secs,
        );
        let _ = writeln!(
            s,
            "throughput {:.0} ops/s ({:.0} reads/s, {:.0} writes/s), {} ops, {} errors",
            self.ops_per_sec, self.reads_per_sec, self.writes_per_sec, self.ops, self.errors
        );
        let _ = writeln!(
            s,
            "{:<8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, l) in [
            ("read us", &self.read_latency_us),
            ("write us", &self.write_latency_us),
        ] {
            let _ = writeln!(
                s,
                "{:<8}{:>10}{:>10.0}{:>10}{:>10}{:>10}{:>10}{:>10}",
                name, l.count, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        if let Some(c) = &self.loadgen_cpu {
            let _ = writeln!(
                s,
                "load generator CPU {:.2} cores (user {:.2} s, system {:.2} s over the measured window)",
                c.cores, c.user_secs, c.system_secs
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut reads = new_histogram();
        for v in 1..=1000u64 {
            reads.record(v).unwrap();
        }
        let mut writes = new_histogram();
        writes.record(2_000).unwrap();
        let m = Measurements {
            measured_secs: 2.0,
            errors: 3,
            warmup_ops: 10,
            reads,
            writes,
            cpu: Some(CpuUse {
                user_secs: 0.5,
                system_secs: 1.0,
                cores: 0.75,
            }),
        };
        let args = LoadArgs::try_parse_flags(["--backend=etcd", "--servers=127.0.0.1:2379"]).unwrap();
        Report::new("etcd", WorkloadParams::from_args(&args), &m)
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let r = sample();
        let l = &r.read_latency_us;
        assert_eq!(l.count, 1000);
        assert_eq!((l.p50, l.p90, l.p99, l.p999, l.max), (500, 900, 990, 999, 1000));
        assert!((l.mean - 500.5).abs() < 1.0);
        let w = &r.write_latency_us;
        // Exact below 2048 at 3 significant digits.
        assert_eq!((w.count, w.p50, w.p99, w.max), (1, 2_000, 2_000, 2_000));
        assert_eq!(
            (r.ops, r.reads, r.writes, r.errors, r.warmup_ops),
            (1001, 1000, 1, 3, 10)
        );
        assert_eq!(
            (r.ops_per_sec, r.reads_per_sec, r.writes_per_sec),
            (500.5, 500.0, 0.5)
        );
    }

    #[test]
    fn empty_histograms_give_zeros() {
        assert_eq!(
            LatencySummary::from_histogram(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn huge_latencies_saturate() {
        let mut h = new_histogram();
        h.saturating_record(u64::MAX);
        let l = LatencySummary::from_histogram(&h);
        assert_eq!(l.count, 1);
        assert!(l.max >= 600_000_000);
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["backend"], "etcd");
        for k in [
            "measured_secs",
            "ops",
            "reads",
            "writes",
            "errors",
            "warmup_ops",
            "ops_per_sec",
            "reads_per_sec",
            "writes_per_sec",
        ] {
            assert!(v[k].is_number(), "{k}: {}", v[k]);
        }
        for k in ["user_secs", "system_secs", "cores"] {
            assert!(v["loadgen_cpu"][k].is_number(), "loadgen_cpu.{k}");
        }
        for h in ["read_latency_us", "write_latency_us"] {
            for k in ["count", "mean", "p50", "p90", "p99", "p999", "max"] {
                assert!(v[h][k].is_number(), "{h}.{k}");
            }
        }
        let w = &v["workload"];
        assert_eq!(w["servers"][0], "127.0.0.1:2379");
        assert_eq!(w["clients"], 32);
        assert_eq!(w["inflight"], 1);
        assert_eq!(w["write_ratio"], 0.05);
        assert_eq!(w["keys"], 10_000);
        assert_eq!(w["value_size"], 32);
        assert_eq!(w["distribution"], "uniform");
        assert_eq!(w["warmup_secs"], 2.0);
        assert_eq!(w["duration_secs"], 10.0);
        assert_eq!(w["preload"], true);
        assert_eq!(v["read_latency_us"]["p99"], 990);
    }

    #[test]
    fn table_shows_throughput_and_percentiles() {
        let t = sample().table();
        assert!(t.contains("etcd on 127.0.0.1:2379"), "{t}");
        assert!(
            t.contains("throughput 500 ops/s (500 reads/s, 0 writes/s)"),
            "{t}"
        );
        assert!(t.contains("p99.9"), "{t}");
        assert!(t.contains("load generator CPU 0.75 cores"), "{t}");
        assert!(
            t.lines().any(|l| l.starts_with("read us") && l.contains("990")),
            "{t}"
        );
    }
}
