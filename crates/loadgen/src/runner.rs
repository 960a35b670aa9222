//! Runs a workload against any back-end: connect every client, preload the
//! keys, then `clients x inflight` closed loops for warm-up plus measurement.

use crate::args::LoadArgs;
use crate::cpu::{CpuUse, process_cpu, used};
use crate::report::{Measurements, Report, WorkloadParams, new_histogram};
use crate::workload::{Op, OpStream, key_name, loop_seed, value_bytes, write_key};
use crossbeam_utils::CachePadded;
use futures_util::StreamExt as _;
use futures_util::stream;
use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
// tokio's clock, so tests can run on a paused, deterministic one.
use tokio::time::Instant;

/// A key-value service as the load generator sees it. A value is one client
/// (one connection or session); clones share it, so the `inflight` loops of
/// a client pipeline their requests on the same connection.
pub trait KvBackend: Clone + Send + Sync + 'static {
    /// Reads `key`; the value is discarded.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<(), String>> + Send;

    /// Writes `value` to an existing `key`.
    fn put(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), String>> + Send;

    /// Runs once, on client 0, before any key is written (e.g. to create a
    /// parent node).
    fn prepare(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }

    /// Writes `key` before the run; for stores where a key must be created
    /// before it can be updated.
    fn preload(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        self.put(key, value)
    }
}

/// Starts an error that means a client's connection is gone (see
/// [`connection_lost`]): such an error ends the run at once, whatever the
/// error rate.
pub const CONNECTION_LOST: &str = "connection lost: ";

/// An error for a request that failed because its connection is gone.
pub fn connection_lost(cause: impl std::fmt::Display) -> String {
    format!("{CONNECTION_LOST}{cause}")
}

/// A request that takes this long counts as failed (and bounds how long a
/// run can overstay its duration).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Clients connecting at once: enough to be quick, few enough not to look
/// like a connection storm to the servers.
const CONNECT_CONCURRENCY: usize = 16;
/// The run stops when more than 1% of requests fail (after this many).
const ERROR_FLOOR: u64 = 100;
/// Successes a load loop counts before adding them to the shared count.
const SUCCESS_BATCH: u64 = 16;

/// Runs the workload of `args` against clients made by `connect(i)` for
/// i in 0..clients. Must be called inside a multi-thread tokio runtime.
pub async fn run_backend<B, F, Fut>(args: &LoadArgs, connect: F) -> Result<Report, String>
where
    B: KvBackend,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<B, String>>,
{
    args.validate()?;
    let name = args.backend.name();
    let clients = connect_all(args, &connect)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let prepare = clients[0].prepare();
    match tokio::time::timeout(REQUEST_TIMEOUT, prepare).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("{name}: preparing: {e}")),
        Err(_) => return Err(format!("{name}: preparing: no reply within {REQUEST_TIMEOUT:?}")),
    }
    if args.preload_enabled() {
        eprintln!("{name}: preloading {} keys", args.keys);
        preload(args, &clients)
            .await
            .map_err(|e| format!("{name}: preload: {e}"))?;
    }
    eprintln!(
        "{name}: {} clients x {} in flight, {} s warm-up, {} s measured",
        args.clients, args.inflight, args.warmup, args.duration
    );
    let m = measure(args, clients).await.map_err(|e| format!("{name}: {e}"))?;
    Ok(Report::new(name, WorkloadParams::from_args(args), &m))
}

async fn connect_all<B, F, Fut>(args: &LoadArgs, connect: &F) -> Result<Vec<B>, String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<B, String>>,
{
    let attempts = (0..args.clients).map(|i| async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(i)).await {
            Ok(Ok(b)) => Ok((i, b)),
            Ok(Err(e)) => Err(format!("connecting client {i} ({}): {e}", args.server_for(i))),
            Err(_) => Err(format!(
                "connecting client {i} ({}): no connection within {CONNECT_TIMEOUT:?}",
                args.server_for(i)
            )),
        }
    });
    let mut pending = stream::iter(attempts).buffer_unordered(CONNECT_CONCURRENCY);
    let mut clients: Vec<Option<B>> = (0..args.clients).map(|_| None).collect();
    while let Some(r) = pending.next().await {
        let (i, b) = r?;
        clients[i] = Some(b);
    }
    Ok(clients.into_iter().flatten().collect())
}

/// State shared by every loop of a run.
struct Shared {
    stop: AtomicBool,
    succeeded: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The failure that stopped the run at once, if one did.
    fatal: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            fatal: Mutex::new(None),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn success(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` successes at once (a load loop's batch: one shared
    /// counter touched by every loop per request costs cache-line traffic).
    fn successes(&self, n: u64) {
        self.succeeded.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failure and stops the run once failures pass 1% of requests,
    /// or at once if the failure is not `tolerated`.
    fn failure(&self, what: String, tolerated: bool) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        if !tolerated && let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert_with(|| what.clone());
        }
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
        let total = failed + self.succeeded.load(Ordering::Relaxed);
        if !tolerated || failed * 100 > total.max(ERROR_FLOOR) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn error_summary(&self) -> String {
        let failed = self.failed.load(Ordering::Relaxed);
        let total = failed + self.succeeded.load(Ordering::Relaxed);
        let get = |m: &Mutex<Option<String>>| m.lock().ok().and_then(|f| f.clone());
        let first = get(&self.first_error).unwrap_or_else(|| "unknown error".to_string());
        match get(&self.fatal) {
            Some(fatal) if fatal != first => {
                format!("{fatal} ({failed} of {total} requests failed; first: {first})")
            }
            Some(fatal) => format!("{fatal} ({failed} of {total} requests failed)"),
            None => format!("{failed} of {total} requests failed; first: {first}"),
        }
    }
}

async fn with_timeout(f: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no reply within {REQUEST_TIMEOUT:?}")),
    }
}

/// Writes every key once; client c's loop l takes every (clients x inflight)th
/// key from its place on. Any failure fails the preload.
async fn preload<B: KvBackend>(args: &LoadArgs, clients: &[B]) -> Result<(), String> {
    let shared = Shared::new();
    let value: Arc<[u8]> = value_bytes(args.value_size).into();
    let stride = (args.clients * args.inflight) as u64;
    let mut tasks = JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        for lane in 0..args.inflight {
            let (client, shared, value) = (client.clone(), shared.clone(), value.clone());
            let first = (c * args.inflight + lane) as u64;
            let keys = args.keys;
            tasks.spawn(async move {
                let mut k = first;
                while k < keys && !shared.stopped() {
                    let key = key_name(k);
                    match with_timeout(client.preload(&key, &value)).await {
                        Ok(()) => shared.success(),
                        Err(e) => shared.failure(format!("{}: {e}", show(&key)), false),
                    }
                    k += stride;
                }
            });
        }
    }
    join_all_tasks(&mut tasks).await?;
    if shared.failed.load(Ordering::Relaxed) > 0 {
        return Err(shared.error_summary());
    }
    Ok(())
}

/// What one loop saw. Latencies go to its client's histograms (shared by
/// the client's loops, so thousands of loops do not each drag a histogram
/// through the caches), a batch at a time.
struct LoopStats {
    hist: Arc<std::sync::Mutex<ClientHist>>,
    batch: Vec<(bool, u64)>,
    errors: u64,
    warmup_ops: u64,
}

/// One client's latency histograms (reads, writes).
struct ClientHist {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
}

const HIST_BATCH: usize = 64;

impl LoopStats {
    fn record(&mut self, read: bool, us: u64) {
        self.batch.push((read, us));
        if self.batch.len() >= HIST_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Ok(mut h) = self.hist.lock() {
            for &(read, us) in &self.batch {
                let h = if read { &mut h.reads } else { &mut h.writes };
                h.saturating_record(us);
            }
        }
        self.batch.clear();
    }
}

struct LoopPlan {
    start: Instant,
    measure_from: Instant,
    until: Instant,
    /// Per loop: when its request in flight began (ns since `start`, plus
    /// one), or 0. A watchdog reads them: one timer for the run instead of
    /// one per request.
    /// One per loop, padded: loops on different threads store here on
    /// every request and must not share cache lines.
    in_flight: Vec<CachePadded<AtomicU64>>,
}

impl LoopPlan {
    fn ns(&self, t: Instant) -> u64 {
        u64::try_from((t - self.start).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Ends when a request has waited `REQUEST_TIMEOUT` (checked 20 times per
/// timeout), after recording the failure that stops the run.
async fn watchdog(plan: &LoopPlan, shared: &Shared) {
    let limit = u64::try_from(REQUEST_TIMEOUT.as_nanos()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(REQUEST_TIMEOUT / 20).await;
        let now = plan.ns(Instant::now());
        let hung = plan.in_flight.iter().any(|b| {
            let began = b.load(Ordering::Relaxed);
            began != 0 && now.saturating_sub(began) >= limit
        });
        if hung {
            shared.failure(format!("no reply within {REQUEST_TIMEOUT:?}"), false);
            return;
        }
    }
}

async fn measure<B: KvBackend>(args: &LoadArgs, clients: Vec<B>) -> Result<Measurements, String> {
    let shared = Shared::new();
    let value: Arc<[u8]> = value_bytes(args.value_size).into();
    let start = Instant::now();
    let measure_from = start + args.warmup_time();
    let until = measure_from + args.duration_time();
    let plan = Arc::new(LoopPlan {
        start,
        measure_from,
        until,
        in_flight: (0..args.clients * args.inflight)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect(),
    });
    let cpu = tokio::spawn(sample_cpu(measure_from, until));
    let mut tasks = JoinSet::new();
    let hists: Vec<_> = (0..clients.len())
        .map(|_| {
            Arc::new(std::sync::Mutex::new(ClientHist {
                reads: new_histogram(),
                writes: new_histogram(),
            }))
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        for lane in 0..args.inflight {
            let ops = OpStream::new(
                args.distribution,
                args.keys,
                args.write_ratio,
                loop_seed(args.seed, c, lane),
            )?;
            let (client, shared, value, plan) = (client.clone(), shared.clone(), value.clone(), plan.clone());
            let index = c * args.inflight + lane;
            tasks.spawn(load_loop(
                client,
                shared,
                ops,
                value,
                plan,
                hists[c].clone(),
                index,
            ));
        }
    }
    let stats = tokio::select! {
        r = join_all_tasks(&mut tasks) => r,
        () = watchdog(&plan, &shared) => {
            tasks.abort_all();
            Err(shared.error_summary())
        }
    };
    let stats = match stats {
        Ok(s) if !shared.stopped() => s,
        failed => {
            cpu.abort();
            return Err(failed.err().unwrap_or_else(|| shared.error_summary()));
        }
    };
    let mut m = Measurements {
        measured_secs: args.duration,
        errors: 0,
        warmup_ops: 0,
        reads: new_histogram(),
        writes: new_histogram(),
        cpu: cpu.await.ok().flatten(),
    };
    for s in stats {
        m.errors += s.errors;
        m.warmup_ops += s.warmup_ops;
    }
    for h in hists {
        let h = h
            .lock()
            .map_err(|_| "a load task panicked holding a histogram".to_string())?;
        m.reads
            .add(&h.reads)
            .map_err(|e| format!("merging histograms: {e}"))?;
        m.writes
            .add(&h.writes)
            .map_err(|e| format!("merging histograms: {e}"))?;
    }
    Ok(m)
}

/// The process's CPU use from `from` to `until` (the measured window).
async fn sample_cpu(from: Instant, until: Instant) -> Option<CpuUse> {
    tokio::time::sleep_until(from).await;
    let (t0, before) = (Instant::now(), process_cpu()?);
    tokio::time::sleep_until(until).await;
    let after = process_cpu()?;
    Some(used(before, after, t0.elapsed().as_secs_f64()))
}

/// One closed loop: issue a request, wait for it, record it, repeat until
/// the end of the run. Only requests that start after warm-up and finish
/// before the end are recorded.
async fn load_loop<B: KvBackend>(
    client: B,
    shared: Arc<Shared>,
    mut ops: OpStream,
    value: Arc<[u8]>,
    plan: Arc<LoopPlan>,
    hist: Arc<std::sync::Mutex<ClientHist>>,
    index: usize,
) -> LoopStats {
    let mut st = LoopStats {
        hist,
        batch: Vec::with_capacity(HIST_BATCH),
        errors: 0,
        warmup_ops: 0,
    };
    let mut key = Vec::with_capacity(16);
    let mut ok = 0u64;
    while !shared.stopped() {
        if ok >= SUCCESS_BATCH {
            shared.successes(std::mem::take(&mut ok));
        }
        let began = Instant::now();
        if began >= plan.until {
            break;
        }
        let (read, k) = match ops.next_op() {
            Op::Read(k) => (true, k),
            Op::Write(k) => (false, k),
        };
        write_key(&mut key, k);
        let mark = &plan.in_flight[index];
        mark.store(plan.ns(began), Ordering::Relaxed);
        let result = if read {
            client.get(&key).await
        } else {
            client.put(&key, &value).await
        };
        mark.store(0, Ordering::Relaxed);
        let ended = Instant::now();
        let measured = began >= plan.measure_from && ended <= plan.until;
        match result {
            Ok(()) => {
                ok += 1;
                if measured {
                    let us = (ended - began).as_micros().max(1);
                    st.record(read, u64::try_from(us).unwrap_or(u64::MAX));
                } else if began < plan.measure_from {
                    st.warmup_ops += 1;
                }
            }
            Err(e) => {
                shared.successes(std::mem::take(&mut ok));
                let verb = if read { "get" } else { "put" };
                let what = format!("{verb} {}", show(&key));
                match e.strip_prefix(CONNECTION_LOST) {
                    Some(cause) => shared.failure(format!("{CONNECTION_LOST}{what}: {cause}"), false),
                    None => shared.failure(format!("{what}: {e}"), true),
                }
                if measured {
                    st.errors += 1;
                }
            }
        }
    }
    shared.successes(ok);
    st.flush();
    st
}

/// Waits for every task; a task that panicked fails the run.
async fn join_all_tasks<T: 'static>(tasks: &mut JoinSet<T>) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(t) => out.push(t),
            Err(e) => {
                tasks.abort_all();
                return Err(format!("a load task failed: {e}"));
            }
        }
    }
    Ok(out)
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LatencySummary;
    use std::collections::HashSet;

    /// An in-memory back-end whose requests take `delay` on tokio's clock.
    #[derive(Clone, Default)]
    struct Fake {
        inner: Arc<FakeInner>,
    }

    #[derive(Default)]
    struct FakeInner {
        delay: Duration,
        /// Requests that start before this instant take `slow_delay`.
        slow_until: Mutex<Option<(Instant, Duration)>>,
        /// Every nth request fails (0: none).
        fail_every: u64,
        /// Requests never complete.
        hang: bool,
        calls: AtomicU64,
        gets: AtomicU64,
        puts: AtomicU64,
        prepared: AtomicU64,
        preloaded: Mutex<HashSet<Vec<u8>>>,
    }

    impl Fake {
        fn new(delay: Duration) -> Fake {
            Fake::with(FakeInner {
                delay,
                ..FakeInner::default()
            })
        }

        fn with(inner: FakeInner) -> Fake {
            Fake {
                inner: Arc::new(inner),
            }
        }

        async fn request(&self) -> Result<(), String> {
            let n = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
            if self.inner.hang {
                std::future::pending::<()>().await;
            }
            let slow = *self.inner.slow_until.lock().unwrap();
            let delay = match slow {
                Some((until, d)) if Instant::now() < until => d,
                _ => self.inner.delay,
            };
            tokio::time::sleep(delay).await;
            if self.inner.fail_every > 0 && n.is_multiple_of(self.inner.fail_every) {
                return Err(format!("injected failure {n}"));
            }
            Ok(())
        }
    }

    impl KvBackend for Fake {
        async fn get(&self, key: &[u8]) -> Result<(), String> {
            assert_eq!(key.len(), 10);
            self.inner.gets.fetch_add(1, Ordering::Relaxed);
            self.request().await
        }

        async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            assert_eq!((key.len(), value.len()), (10, 16));
            self.inner.puts.fetch_add(1, Ordering::Relaxed);
            self.request().await
        }

        async fn prepare(&self) -> Result<(), String> {
            self.inner.prepared.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        async fn preload(&self, key: &[u8], _value: &[u8]) -> Result<(), String> {
            assert!(
                self.inner.preloaded.lock().unwrap().insert(key.to_vec()),
                "key preloaded twice"
            );
            Ok(())
        }
    }

    fn args(extra: &[&str]) -> LoadArgs {
        let mut flags = vec![
            "--backend=zookeeper",
            "--servers=127.0.0.1:1",
            "--clients=2",
            "--inflight=2",
            "--write-ratio=0.3",
            "--keys=50",
            "--value-size=16",
            "--warmup=1",
            "--duration=2",
        ];
        // A flag in `extra` replaces the base one of the same name.
        let name = |f: &str| f.split('=').next().unwrap_or_default().to_string();
        flags.retain(|f| extra.iter().all(|e| name(e) != name(f)));
        flags.extend_from_slice(extra);
        LoadArgs::try_parse_flags(flags).unwrap()
    }

    /// Runs with every client sharing `fake`; returns the result and the
    /// (tokio clock) time the run took.
    async fn run_fake(a: &LoadArgs, fake: &Fake) -> (Result<Report, String>, Duration) {
        let start = Instant::now();
        let r = run_backend(a, |_| {
            let f = fake.clone();
            async move { Ok(f) }
        })
        .await;
        (r, start.elapsed())
    }

    // On a paused clock every request takes exactly 1 ms, so the counts are
    // exact: each of the 4 loops does 1000 warm-up and 2000 measured requests.
    #[tokio::test(start_paused = true)]
    async fn full_run_counts_every_measured_request_once() {
        let fake = Fake::new(Duration::from_millis(1));
        let a = args(&[]);
        let (r, took) = run_fake(&a, &fake).await;
        let r = r.unwrap();
        assert_eq!(fake.inner.prepared.load(Ordering::Relaxed), 1);
        assert_eq!(fake.inner.preloaded.lock().unwrap().len(), 50);
        assert_eq!(r.backend, "zookeeper");
        assert_eq!(r.ops, r.reads + r.writes);
        assert_eq!(r.warmup_ops, 4 * 1000);
        assert_eq!(r.ops, 4 * 2000);
        assert_eq!(r.errors, 0);
        let calls = fake.inner.gets.load(Ordering::Relaxed) + fake.inner.puts.load(Ordering::Relaxed);
        assert_eq!(calls, r.ops + r.warmup_ops);
        assert_eq!(r.measured_secs, 2.0);
        assert_eq!(r.ops_per_sec, 4000.0);
        assert_eq!(r.read_latency_us.count, r.reads);
        assert_eq!((r.read_latency_us.p50, r.write_latency_us.max), (1000, 1000));
        // The ratio drawn matches the one asked within 5 sigma.
        let got = r.writes as f64 / r.ops as f64;
        let sigma = (0.3 * 0.7 / r.ops as f64).sqrt();
        assert!((got - 0.3).abs() < 5.0 * sigma, "write share {got}");
        // The run lasts warm-up plus duration, not a request more.
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_millis(3010),
            "{took:?}"
        );
    }

    // Requests started during warm-up take 300 ms; none of them may show up
    // in the measured latencies.
    #[tokio::test(start_paused = true)]
    async fn warm_up_is_not_recorded() {
        let fake = Fake::new(Duration::from_millis(2));
        let slow_until = Instant::now() + Duration::from_millis(990);
        *fake.inner.slow_until.lock().unwrap() = Some((slow_until, Duration::from_millis(300)));
        let (r, _) = run_fake(&args(&[]), &fake).await;
        let r = r.unwrap();
        assert!(r.warmup_ops > 0);
        for l in [&r.read_latency_us, &r.write_latency_us] {
            assert_eq!(l.max, 2000, "{l:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_preload_and_no_warm_up() {
        let fake = Fake::new(Duration::from_millis(1));
        let (r, _) = run_fake(&args(&["--no-preload", "--warmup=0", "--write-ratio=1"]), &fake).await;
        let r = r.unwrap();
        assert!(fake.inner.preloaded.lock().unwrap().is_empty());
        assert_eq!(fake.inner.prepared.load(Ordering::Relaxed), 1);
        assert_eq!((r.warmup_ops, r.reads, r.writes), (0, 0, 4 * 2000));
        assert_eq!(r.read_latency_us, LatencySummary::default());
    }

    #[tokio::test(start_paused = true)]
    async fn rare_errors_are_counted_but_do_not_stop_the_run() {
        let fake = Fake::with(FakeInner {
            delay: Duration::from_millis(1),
            fail_every: 1000,
            ..FakeInner::default()
        });
        let (r, _) = run_fake(&args(&[]), &fake).await;
        let r = r.unwrap();
        // 12000 requests, every 1000th fails: 4 during warm-up, 8 measured.
        assert_eq!(r.errors, 8);
        assert_eq!(r.ops + r.warmup_ops, 12_000 - 12);
    }

    #[tokio::test(start_paused = true)]
    async fn many_errors_stop_the_run_early_with_the_cause() {
        let fake = Fake::with(FakeInner {
            delay: Duration::from_millis(1),
            fail_every: 10,
            ..FakeInner::default()
        });
        let (r, took) = run_fake(&args(&[]), &fake).await;
        let e = r.unwrap_err();
        assert!(e.starts_with("zookeeper: "), "{e}");
        assert!(e.contains("injected failure 10"), "{e}");
        assert!(took < Duration::from_millis(500), "{took:?}");
        // Stopped soon after passing 1%, not at the end of the run.
        assert!(fake.inner.calls.load(Ordering::Relaxed) < 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_ends_the_run_at_once() {
        #[derive(Clone)]
        struct Drops(Arc<AtomicU64>);
        impl KvBackend for Drops {
            async fn get(&self, _: &[u8]) -> Result<(), String> {
                tokio::time::sleep(Duration::from_millis(1)).await;
                match self.0.fetch_add(1, Ordering::Relaxed) {
                    5000 => Err(connection_lost("reset by peer")),
                    _ => Ok(()),
                }
            }
            async fn put(&self, k: &[u8], _: &[u8]) -> Result<(), String> {
                self.get(k).await
            }
        }
        let calls = Arc::new(AtomicU64::new(0));
        let b = Drops(calls.clone());
        let r = run_backend(&args(&["--no-preload"]), |_| {
            let b = b.clone();
            async move { Ok(b) }
        })
        .await;
        let e = r.unwrap_err();
        assert!(e.starts_with("zookeeper: connection lost: get k"), "{e}");
        assert!(e.contains(": reset by peer (1 of "), "{e}");
        assert!(calls.load(Ordering::Relaxed) < 5010);
    }

    #[tokio::test(start_paused = true)]
    async fn hung_requests_time_out_and_end_the_run() {
        let fake = Fake::with(FakeInner {
            hang: true,
            ..FakeInner::default()
        });
        let (r, took) = run_fake(&args(&["--no-preload"]), &fake).await;
        let e = r.unwrap_err();
        assert!(e.contains("no reply within"), "{e}");
        // The watchdog looks 20 times per timeout.
        assert!(took <= REQUEST_TIMEOUT + REQUEST_TIMEOUT / 10, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn preload_failure_names_the_key() {
        #[derive(Clone)]
        struct BadPreload;
        impl KvBackend for BadPreload {
            async fn get(&self, _: &[u8]) -> Result<(), String> {
                Ok(())
            }
            async fn put(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
                Ok(())
            }
            async fn preload(&self, key: &[u8], _: &[u8]) -> Result<(), String> {
                if key == b"k000000007" {
                    Err("disk full".into())
                } else {
                    Ok(())
                }
            }
        }
        let r = run_backend(&args(&[]), |_| async { Ok(BadPreload) }).await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with("zookeeper: preload: ") && e.contains("k000000007: disk full"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_connection_ends_the_run() {
        let fake = Fake::new(Duration::from_millis(1));
        let r = run_backend(&args(&[]), |i| {
            let f = fake.clone();
            async move {
                if i == 1 {
                    Err("connection refused".to_string())
                } else {
                    Ok(f)
                }
            }
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(
            e,
            "zookeeper: connecting client 1 (127.0.0.1:1): connection refused"
        );
        assert_eq!(fake.inner.calls.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_arguments_are_refused_before_connecting() {
        let mut a = args(&[]);
        a.write_ratio = -0.5;
        let r = run_backend(&a, |_| async { Err::<Fake, _>("must not connect".to_string()) }).await;
        assert!(r.unwrap_err().contains("--write-ratio"));
    }

    // The real clock and a multi-thread runtime, as `run` uses; only loose
    // bounds on time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_clock_run_ends_on_time() {
        let fake = Fake::new(Duration::from_micros(200));
        let a = args(&["--warmup=0.2", "--duration=0.3", "--clients=4"]);
        let (r, took) = run_fake(&a, &fake).await;
        let r = r.unwrap();
        assert!(r.ops > 0 && r.reads > 0);
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_millis(500) + REQUEST_TIMEOUT, "{took:?}");
    }
}
