//! The load generator's flags (flattened into `rzab loadgen`) and their checks.

use crate::workload::Distribution;
use clap::{Args, Parser, ValueEnum};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The system under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Rzab,
    Zookeeper,
    Etcd,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Rzab => "rzab",
            Backend::Zookeeper => "zookeeper",
            Backend::Etcd => "etcd",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Bounds that keep a typo from asking for something absurd; generous for any
// real run on a handful of machines.
const MAX_CLIENTS: usize = 10_000;
const MAX_INFLIGHT: usize = 4_096;
const MAX_TOTAL_LOOPS: usize = 100_000;
/// Keys are written with nine digits, so the names keep one width.
const MAX_KEYS: u64 = 1_000_000_000;
/// Below ZooKeeper's default 1 MiB packet limit (jute.maxbuffer) with room for headers.
const MAX_VALUE_SIZE: usize = 1_000_000;
const MAX_THREADS: usize = 1_024;
const MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// A closed-loop workload: `clients` connections, each with `inflight`
/// requests outstanding, reading and writing `keys` keys for a fixed time.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// System to load
    #[arg(long, value_enum, default_value_t = Backend::Rzab)]
    pub backend: Backend,

    /// Servers as host:port, comma separated; client i uses server i mod n
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub servers: Vec<String>,

    /// Client connections (sessions), each its own back-end client
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub clients: usize,

    /// Requests in flight per client (pipelined on its connection)
    #[arg(long, default_value_t = 1, value_name = "D")]
    pub inflight: usize,

    /// Fraction of requests that are writes, 0 to 1
    #[arg(long, default_value_t = 0.05, value_name = "F")]
    pub write_ratio: f64,

    /// Number of distinct keys (k000000000 ...)
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub keys: u64,

    /// Bytes per value written
    #[arg(long, default_value_t = 32, value_name = "B")]
    pub value_size: usize,

    /// Key popularity: uniform, or zipf:THETA
    #[arg(long, default_value_t = Distribution::Uniform, value_name = "uniform|zipf:THETA")]
    pub distribution: Distribution,

    /// Seconds of load before measuring (not recorded)
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub warmup: f64,

    /// Seconds of measured load
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,

    /// Also write the report as JSON to this file
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write every key once before measuring (the default)
    #[arg(long, overrides_with = "no_preload")]
    pub preload: bool,

    /// Skip writing every key before measuring
    #[arg(long, overrides_with = "preload")]
    pub no_preload: bool,

    /// Access token (rzab back-end only)
    #[arg(long, value_name = "STR")]
    pub token: Option<String>,

    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub threads: usize,

    /// Seed of the request streams (each loop mixes in its place)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
}

/// Lets tests and callers build `LoadArgs` with clap's own defaults.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Standalone {
    #[command(flatten)]
    args: LoadArgs,
}

impl LoadArgs {
    /// Parses flags (without a program name) the way the CLI would.
    pub fn try_parse_flags<I, S>(flags: I) -> Result<LoadArgs, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let argv =
            std::iter::once(std::ffi::OsString::from("loadgen")).chain(flags.into_iter().map(Into::into));
        Standalone::try_parse_from(argv)
            .map(|s| s.args)
            .map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Whether to write every key before measuring.
    pub fn preload_enabled(&self) -> bool {
        !self.no_preload
    }

    pub fn warmup_time(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    pub fn duration_time(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// Checks every value; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err(format!("--servers is required for the {} back-end", self.backend));
        }
        for s in &self.servers {
            check_server(s)?;
        }
        if !(1..=MAX_CLIENTS).contains(&self.clients) {
            return Err(format!(
                "--clients {} must be between 1 and {MAX_CLIENTS}",
                self.clients
            ));
        }
        if !(1..=MAX_INFLIGHT).contains(&self.inflight) {
            return Err(format!(
                "--inflight {} must be between 1 and {MAX_INFLIGHT}",
                self.inflight
            ));
        }
        if self.clients * self.inflight > MAX_TOTAL_LOOPS {
            return Err(format!(
                "--clients x --inflight = {} exceeds {MAX_TOTAL_LOOPS} outstanding requests",
                self.clients * self.inflight
            ));
        }
        if !(0.0..=1.0).contains(&self.write_ratio) {
            return Err(format!(
                "--write-ratio {} must be between 0 and 1",
                self.write_ratio
            ));
        }
        if !(1..=MAX_KEYS).contains(&self.keys) {
            return Err(format!("--keys {} must be between 1 and {MAX_KEYS}", self.keys));
        }
        if self.value_size > MAX_VALUE_SIZE {
            return Err(format!(
                "--value-size {} must be at most {MAX_VALUE_SIZE}",
                self.value_size
            ));
        }
        self.distribution.validate()?;
        if !(self.warmup.is_finite() && (0.0..=MAX_SECS).contains(&self.warmup)) {
            return Err(format!(
                "--warmup {} must be between 0 and {MAX_SECS} seconds",
                self.warmup
            ));
        }
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= MAX_SECS) {
            return Err(format!(
                "--duration {} must be above 0 and at most {MAX_SECS} seconds",
                self.duration
            ));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!(
                "--threads {} must be between 1 and {MAX_THREADS}",
                self.threads
            ));
        }
        if self.token.is_some() && self.backend != Backend::Rzab {
            return Err(format!(
                "--token applies to the rzab back-end only, not {}",
                self.backend
            ));
        }
        Ok(())
    }

    /// The server that client `index` uses: clients spread round-robin, so
    /// every back-end sees the same even split.
    pub fn server_for(&self, index: usize) -> &str {
        &self.servers[index % self.servers.len()]
    }
}

impl Default for LoadArgs {
    fn default() -> LoadArgs {
        match Standalone::try_parse_from(["loadgen"]) {
            Ok(s) => s.args,
            // Every flag has a default or is optional, so this cannot fail.
            Err(e) => unreachable!("default flags do not parse: {e}"),
        }
    }
}

/// `host:port` with a non-empty host and a port in 1..=65535.
fn check_server(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("--servers entry '{s}' {why} (expected host:port)");
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad("has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("has no valid port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<LoadArgs, String> {
        let a = LoadArgs::try_parse_flags(flags)?;
        a.validate()?;
        Ok(a)
    }

    const SERVERS: &str = "--servers=127.0.0.1:2181,localhost:2182";

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = LoadArgs::default();
        assert_eq!(a.backend, Backend::Rzab);
        assert!(a.servers.is_empty());
        assert_eq!((a.clients, a.inflight, a.keys, a.value_size), (32, 1, 10_000, 32));
        assert_eq!(a.write_ratio, 0.05);
        assert_eq!(a.distribution, Distribution::Uniform);
        assert_eq!((a.warmup, a.duration, a.threads), (2.0, 10.0, 2));
        assert!(a.preload_enabled());
        assert!(a.json.is_none() && a.token.is_none());
    }

    #[test]
    fn parses_a_full_command_line() {
        let a = parse(&[
            "--backend",
            "zookeeper",
            SERVERS,
            "--clients",
            "8",
            "--inflight",
            "4",
            "--write-ratio",
            "0.5",
            "--keys",
            "100",
            "--value-size",
            "0",
            "--distribution",
            "zipf:0.99",
            "--warmup",
            "0",
            "--duration",
            "0.5",
            "--json",
            "out.json",
            "--no-preload",
            "--threads",
            "1",
        ])
        .unwrap();
        assert_eq!(a.backend, Backend::Zookeeper);
        assert_eq!(a.servers, ["127.0.0.1:2181", "localhost:2182"]);
        assert_eq!(a.server_for(0), "127.0.0.1:2181");
        assert_eq!(a.server_for(3), "localhost:2182");
        assert_eq!(a.distribution, Distribution::Zipf { theta: 0.99 });
        assert!(!a.preload_enabled());
        assert_eq!(a.json.as_deref(), Some(std::path::Path::new("out.json")));
    }

    #[test]
    fn last_preload_flag_wins() {
        let a = parse(&[SERVERS, "--no-preload", "--preload"]).unwrap();
        assert!(a.preload_enabled());
        let a = parse(&[SERVERS, "--preload", "--no-preload"]).unwrap();
        assert!(!a.preload_enabled());
    }

    #[test]
    fn rejects_bad_values_with_the_flag_named() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--servers is required"),
            (&["--servers=127.0.0.1"], "has no port"),
            (&["--servers=:2181"], "no valid host"),
            (&["--servers=a:0"], "no valid port"),
            (&["--servers=a:70000"], "no valid port"),
            (&["--servers=a:1,"], "has no port"),
            (&[SERVERS, "--clients=0"], "--clients 0"),
            (&[SERVERS, "--inflight=0"], "--inflight 0"),
            (&[SERVERS, "--clients=1000", "--inflight=1000"], "exceeds"),
            (&[SERVERS, "--write-ratio=1.5"], "--write-ratio"),
            (&[SERVERS, "--write-ratio=NaN"], "--write-ratio"),
            (&[SERVERS, "--keys=0"], "--keys 0"),
            (&[SERVERS, "--keys=2000000000"], "--keys"),
            (&[SERVERS, "--value-size=2000000"], "--value-size"),
            (&[SERVERS, "--distribution=zipf:0"], "zipf"),
            (&[SERVERS, "--distribution=zipf:inf"], "zipf"),
            (&[SERVERS, "--distribution=normal"], "uniform"),
            (&[SERVERS, "--warmup=-1"], "--warmup"),
            (&[SERVERS, "--duration=0"], "--duration"),
            (&[SERVERS, "--duration=inf"], "--duration"),
            (&[SERVERS, "--threads=0"], "--threads"),
            (&[SERVERS, "--backend=etcd", "--token=x"], "rzab back-end only"),
            (&[SERVERS, "--backend=mysql"], "mysql"),
            (&[SERVERS, "--clients=-3"], "-3"),
        ];
        for (flags, want) in cases {
            match parse(flags) {
                Ok(a) => panic!("{flags:?} accepted: {a:?}"),
                Err(e) => assert!(e.contains(want), "{flags:?}: '{e}' lacks '{want}'"),
            }
        }
    }

    #[test]
    fn token_is_accepted_for_rzab() {
        assert!(parse(&[SERVERS, "--token", "secret"]).is_ok());
    }
}
