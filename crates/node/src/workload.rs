//! Operations for the sessions: a per-lane trace generated from a seed (or
//! read from a file), so a run's load is reproducible.

use crate::config::{Distribution, WorkloadConfig};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::path::Path;

/// One session operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceOp {
    Read(u64),
    Write(u64),
}

const WRITE_BIT: u64 = 1 << 63;

/// A lane's operations, packed one u64 each (top bit: write), replayed in a loop.
#[derive(Clone, Debug)]
pub struct Trace {
    ops: Vec<u64>,
    cursor: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("trace file {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("trace file {path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("trace file {path} has no operations")]
    Empty { path: String },
}

/// Draws keys; zipf ranks are scattered over the key space by a bijection,
/// so the hot keys are not all neighbours.
enum KeySampler {
    Uniform(u64),
    Zipf { zipf: Zipf<f64>, keys: u64, mult: u64 },
}

impl KeySampler {
    fn new(dist: Distribution, keys: u64) -> KeySampler {
        match dist {
            Distribution::Uniform => KeySampler::Uniform(keys),
            Distribution::Zipf { exponent } => match Zipf::new(keys as f64, exponent) {
                Ok(zipf) => KeySampler::Zipf {
                    zipf,
                    keys,
                    mult: coprime_multiplier(keys),
                },
                // Zipf::new only fails for n < 1 or s < 0, which validation excludes.
                Err(_) => KeySampler::Uniform(keys),
            },
        }
    }

    fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        match self {
            KeySampler::Uniform(n) => rng.random_range(0..*n),
            KeySampler::Zipf { zipf, keys, mult } => {
                let rank = (zipf.sample(rng) as u64).clamp(1, *keys) - 1;
                scatter(rank, *keys, *mult)
            }
        }
    }
}

/// `rank * mult mod keys`: a bijection on `0..keys` when gcd(mult, keys) = 1.
fn scatter(rank: u64, keys: u64, mult: u64) -> u64 {
    ((rank as u128 * mult as u128) % keys as u128) as u64
}

/// An odd multiplier near keys * golden ratio that is coprime with `keys`.
fn coprime_multiplier(keys: u64) -> u64 {
    if keys <= 2 {
        return 1;
    }
    let mut m = ((keys as f64 * 0.618_033_988_75) as u64).max(1) | 1;
    while gcd(m, keys) != 1 {
        m += 2;
    }
    m
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A seed for one lane, mixed from the run seed and the lane's place.
pub fn lane_seed(seed: u64, node: u8, lane: u8) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&[&seed.to_le_bytes()[..], &[node, lane]].concat())
}

impl Trace {
    /// Generates `trace_len` operations for the lane at (node, lane).
    pub fn generate(w: &WorkloadConfig, node: u8, lane: u8) -> Trace {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(lane_seed(w.seed, node, lane));
        let keys = KeySampler::new(w.distribution, w.keys);
        let ops = (0..w.trace_len)
            .map(|_| {
                let write = rng.random_bool(w.write_ratio);
                keys.sample(&mut rng) | if write { WRITE_BIT } else { 0 }
            })
            .collect();
        Trace { ops, cursor: 0 }
    }

    /// Reads `r KEY` / `w KEY` lines (also `read`, `get`, `write`, `put`);
    /// blank lines and `#` comments are skipped. Keys must be below `keys`.
    pub fn from_file(path: &Path, keys: u64) -> Result<Trace, TraceError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| TraceError::Io { path: p.clone(), err })?;
        let mut ops = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parse_err = |reason: String| TraceError::Parse {
                path: p.clone(),
                line: i + 1,
                reason,
            };
            ops.push(parse_line(line, keys).map_err(parse_err)?);
        }
        if ops.is_empty() {
            return Err(TraceError::Empty { path: p });
        }
        Ok(Trace { ops, cursor: 0 })
    }

    /// The same operations, starting at another offset (so lanes sharing a
    /// trace file do not run in lockstep).
    pub fn with_offset(mut self, offset: usize) -> Trace {
        self.cursor = offset % self.ops.len();
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    #[inline]
    pub fn next_op(&mut self) -> TraceOp {
        let op = self.ops[self.cursor];
        self.cursor += 1;
        if self.cursor == self.ops.len() {
            self.cursor = 0;
        }
        if op & WRITE_BIT != 0 {
            TraceOp::Write(op & !WRITE_BIT)
        } else {
            TraceOp::Read(op)
        }
    }
}

fn parse_line(line: &str, keys: u64) -> Result<u64, String> {
    let mut parts = line.split_whitespace();
    let (op, key) = (parts.next().unwrap_or(""), parts.next());
    let write = match op {
        "r" | "read" | "get" => false,
        "w" | "write" | "put" => true,
        other => return Err(format!("unknown operation '{other}' (want r or w)")),
    };
    let key = key.ok_or("missing key")?;
    let key: u64 = key.parse().map_err(|_| format!("key '{key}' is not a number"))?;
    if key >= keys {
        return Err(format!("key {key} is not below --keys {keys}"));
    }
    if parts.next().is_some() {
        return Err("extra fields after the key".into());
    }
    Ok(key | if write { WRITE_BIT } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dist: Distribution, ratio: f64) -> WorkloadConfig {
        WorkloadConfig {
            keys: 1000,
            write_ratio: ratio,
            distribution: dist,
            trace_len: 20_000,
            ..WorkloadConfig::default()
        }
    }

    fn counts(t: &mut Trace) -> (usize, Vec<u32>) {
        let mut writes = 0;
        let mut per_key = vec![0u32; 1000];
        for _ in 0..t.len() {
            let k = match t.next_op() {
                TraceOp::Read(k) => k,
                TraceOp::Write(k) => {
                    writes += 1;
                    k
                }
            };
            per_key[k as usize] += 1;
        }
        (writes, per_key)
    }

    #[test]
    fn write_ratio_and_reproducibility() {
        let c = cfg(Distribution::Uniform, 0.25);
        let (writes, per_key) = counts(&mut Trace::generate(&c, 0, 0));
        assert!(
            (4_500..5_500).contains(&writes),
            "{writes} writes of 20000 at 25%"
        );
        assert!(per_key.iter().all(|&n| n < 60), "uniform keys");
        assert_eq!(
            Trace::generate(&c, 1, 2).ops,
            Trace::generate(&c, 1, 2).ops,
            "same seed, same trace"
        );
        assert_ne!(
            Trace::generate(&c, 1, 2).ops,
            Trace::generate(&c, 2, 1).ops,
            "lanes differ"
        );
    }

    #[test]
    fn zipf_is_skewed_and_scattered() {
        let (_, per_key) = counts(&mut Trace::generate(
            &cfg(Distribution::Zipf { exponent: 0.99 }, 0.0),
            0,
            0,
        ));
        let mut sorted: Vec<(u32, usize)> = per_key.iter().copied().zip(0..).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = sorted[..10].iter().map(|s| s.0).sum();
        assert!(
            top10 > 20_000 / 5,
            "the 10 hottest of 1000 keys take > 20% ({top10})"
        );
        let hot: Vec<usize> = sorted[..4].iter().map(|s| s.1).collect();
        assert!(
            hot.windows(2).any(|w| w[0].abs_diff(w[1]) > 10),
            "hot keys are spread: {hot:?}"
        );
    }

    #[test]
    fn scatter_is_a_bijection() {
        for keys in [1u64, 2, 3, 10, 1000, 1024, 999_983] {
            let m = coprime_multiplier(keys);
            if keys <= 1000 {
                let mut seen = vec![false; keys as usize];
                for r in 0..keys {
                    seen[scatter(r, keys, m) as usize] = true;
                }
                assert!(seen.iter().all(|&s| s), "keys={keys}");
            }
            assert_eq!(gcd(m, keys.max(1)), 1);
        }
    }

    #[test]
    fn trace_files_parse_with_line_numbers() {
        let dir = std::env::temp_dir().join(format!("rzab-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(&good, "# a trace\nr 1\nw 2\n\nput 3 # comment\n").unwrap();
        let mut t = Trace::from_file(&good, 10).unwrap();
        let ops: Vec<_> = (0..4).map(|_| t.next_op()).collect();
        assert_eq!(
            ops,
            [
                TraceOp::Read(1),
                TraceOp::Write(2),
                TraceOp::Write(3),
                TraceOp::Read(1)
            ]
        );
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "r 1\nx 2\n").unwrap();
        let e = Trace::from_file(&bad, 10).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unknown operation"), "{e}");
        std::fs::write(&bad, "r 10\n").unwrap();
        assert!(
            Trace::from_file(&bad, 10)
                .unwrap_err()
                .to_string()
                .contains("not below")
        );
        std::fs::write(&bad, "# nothing\n").unwrap();
        assert!(matches!(
            Trace::from_file(&bad, 10),
            Err(TraceError::Empty { .. })
        ));
        assert!(matches!(
            Trace::from_file(&dir.join("missing"), 10),
            Err(TraceError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
