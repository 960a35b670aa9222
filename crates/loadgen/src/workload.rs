//! What each request does: key names, values, and the read/write and key draws.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::fmt;
use std::str::FromStr;

/// How keys are drawn. Written `uniform` or `zipf:THETA`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Zipf with exponent `theta`: key i (from 0) has weight 1 / (i + 1)^theta.
    Zipf {
        theta: f64,
    },
}

impl Distribution {
    pub fn validate(self) -> Result<(), String> {
        match self {
            Distribution::Uniform => Ok(()),
            Distribution::Zipf { theta } if theta.is_finite() && theta > 0.0 => Ok(()),
            Distribution::Zipf { theta } => Err(format!(
                "--distribution zipf:{theta}: the exponent must be a positive number"
            )),
        }
    }
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Distribution, String> {
        if s == "uniform" {
            return Ok(Distribution::Uniform);
        }
        let theta = s
            .strip_prefix("zipf:")
            .ok_or_else(|| format!("'{s}' is not uniform or zipf:THETA"))?;
        let theta: f64 = theta
            .parse()
            .map_err(|_| format!("zipf exponent '{theta}' is not a number"))?;
        let d = Distribution::Zipf { theta };
        d.validate()?;
        Ok(d)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => write!(f, "uniform"),
            Distribution::Zipf { theta } => write!(f, "zipf:{theta}"),
        }
    }
}

/// The name of key `i`, the same for every back-end.
pub fn key_name(i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    write_key(&mut k, i);
    k
}

/// Writes `key_name(i)` into `out` (cleared first): no allocation per
/// request in the load loops.
pub fn write_key(out: &mut Vec<u8>, i: u64) {
    // By hand: `write!` costs more than the rest of a request's set-up.
    let mut digits = [0u8; 20];
    let (mut n, mut at) = (i, digits.len());
    while n > 0 || at > digits.len() - 9 {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.clear();
    out.push(b'k');
    out.extend_from_slice(&digits[at..]);
}

/// A value of `size` bytes; printable filler so it reads well in any CLI.
pub fn value_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// One request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read(u64),
    Write(u64),
}

/// Draws requests for one loop: read or write by the ratio, a key by the
/// distribution. Seeded, so a loop's request stream is reproducible.
pub struct OpStream {
    rng: Xoshiro256PlusPlus,
    write_ratio: f64,
    keys: KeySampler,
}

enum KeySampler {
    Uniform(u64),
    // Zipf ranks 1..=n map to keys 0..n: key 0 is the hottest.
    Zipf { zipf: Zipf<f64>, keys: u64 },
}

impl OpStream {
    /// `seed` should differ per loop (see [`loop_seed`]).
    pub fn new(dist: Distribution, keys: u64, write_ratio: f64, seed: u64) -> Result<OpStream, String> {
        let keys = match dist {
            Distribution::Uniform => KeySampler::Uniform(keys),
            Distribution::Zipf { theta } => KeySampler::Zipf {
                zipf: Zipf::new(keys as f64, theta)
                    .map_err(|e| format!("zipf over {keys} keys with exponent {theta}: {e}"))?,
                keys,
            },
        };
        Ok(OpStream {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            write_ratio: write_ratio.clamp(0.0, 1.0),
            keys,
        })
    }

    pub fn next_op(&mut self) -> Op {
        let write = self.rng.random_bool(self.write_ratio);
        let key = self.next_key();
        if write { Op::Write(key) } else { Op::Read(key) }
    }

    fn next_key(&mut self) -> u64 {
        match &self.keys {
            KeySampler::Uniform(n) => self.rng.random_range(0..*n),
            KeySampler::Zipf { zipf, keys } => (zipf.sample(&mut self.rng) as u64).clamp(1, *keys) - 1,
        }
    }
}

/// A seed for loop `lane` of client `client`, mixed (splitmix64) so nearby
/// places get unrelated streams.
pub fn loop_seed(seed: u64, client: usize, lane: usize) -> u64 {
    let mut z = seed ^ ((client as u64) << 32) ^ lane as u64;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(dist: Distribution, keys: u64, draws: usize) -> Vec<u64> {
        let mut s = OpStream::new(dist, keys, 0.0, 7).unwrap();
        let mut c = vec![0u64; keys as usize];
        for _ in 0..draws {
            match s.next_op() {
                Op::Read(k) => c[k as usize] += 1,
                Op::Write(k) => panic!("write {k} at ratio 0"),
            }
        }
        c
    }

    #[test]
    fn key_names_have_one_width() {
        assert_eq!(key_name(0), b"k000000000");
        assert_eq!(key_name(1), b"k000000001");
        assert_eq!(key_name(999_999_999), b"k999999999");
        assert_eq!(value_bytes(0), b"");
        assert_eq!(value_bytes(28), b"abcdefghijklmnopqrstuvwxyzab");
    }

    #[test]
    fn distribution_round_trips_and_rejects_junk() {
        for s in ["uniform", "zipf:0.99", "zipf:1.5"] {
            let d: Distribution = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        for s in [
            "", "zipf", "zipf:", "zipf:x", "zipf:-1", "zipf:0", "zipf:NaN", "Uniform",
        ] {
            assert!(s.parse::<Distribution>().is_err(), "{s} accepted");
        }
    }

    #[test]
    fn uniform_stays_in_bounds_and_covers_every_key() {
        let c = counts(Distribution::Uniform, 50, 50_000);
        // Expected 1000 per key; 6 sigma is about 190.
        assert!(c.iter().all(|&n| (800..1200).contains(&n)), "{c:?}");
        let mut s = OpStream::new(Distribution::Uniform, 1, 0.5, 1).unwrap();
        for _ in 0..100 {
            let (Op::Read(k) | Op::Write(k)) = s.next_op();
            assert_eq!(k, 0);
        }
    }

    #[test]
    fn zipf_is_skewed_toward_low_keys() {
        let keys = 1_000;
        let c = counts(Distribution::Zipf { theta: 0.99 }, keys, 100_000);
        // Key 0 is hottest; with theta 0.99 over 1000 keys it takes about 13%
        // of draws, key 1 about half of that, and the top 10 keys over 35%.
        let total: u64 = c.iter().sum();
        assert_eq!(total, 100_000);
        let top = c[0] as f64 / total as f64;
        assert!((0.10..0.17).contains(&top), "key 0 share {top}");
        assert!(c[0] > c[1] && c[1] > c[9], "{:?}", &c[..10]);
        let top10: u64 = c[..10].iter().sum();
        assert!(top10 as f64 / total as f64 > 0.35);
        // The cold half gets little.
        let cold: u64 = c[500..].iter().sum();
        assert!((cold as f64 / total as f64) < 0.15);
    }

    #[test]
    fn write_ratio_is_respected() {
        for ratio in [0.0, 0.05, 0.5, 1.0] {
            let mut s = OpStream::new(Distribution::Uniform, 10, ratio, 3).unwrap();
            let n = 100_000;
            let writes = (0..n).filter(|_| matches!(s.next_op(), Op::Write(_))).count();
            let got = writes as f64 / n as f64;
            assert!((got - ratio).abs() < 0.01, "ratio {ratio}: got {got}");
        }
    }

    #[test]
    fn loop_seeds_differ() {
        let mut seen = std::collections::HashSet::new();
        for c in 0..64 {
            for l in 0..64 {
                assert!(seen.insert(loop_seed(1, c, l)));
            }
        }
    }
}

#[cfg(test)]
mod key_tests {
    #[test]
    fn keys_are_zero_padded_to_nine_digits() {
        for i in [0u64, 7, 123_456_789, 1_234_567_890, u64::MAX] {
            assert_eq!(super::key_name(i), format!("k{i:09}").into_bytes(), "{i}");
        }
    }
}
