//! What a simulation run does: the fault mix, the cluster shape (fixed, or
//! drawn from each seed), the workload, and an optional planted bug.

use rzab_proto::{BroadcastMode, PlantedBug, Span};
use std::fmt;
use std::str::FromStr;

/// The network's misbehaviour while faults are on.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is lost (per copy, per link).
    pub drop: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Probability that a datagram is held back behind later ones.
    pub reorder: f64,
    /// Symmetric and one-way partitions that later heal.
    pub partition: bool,
    /// Nodes (the leader included) crash and restart without their state.
    pub crash: bool,
    /// Sessions move: a session's connection is given up (its write in
    /// flight left to chance) and a session at another node binds anew,
    /// fencing off its binding.
    pub moves: bool,
    /// One-way latency and its uniform jitter (always on).
    pub delay: Span,
    pub jitter: Span,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            drop: 0.0,
            dup: 0.0,
            reorder: 0.0,
            partition: false,
            crash: false,
            moves: false,
            delay: Span::from_micros(20),
            jitter: Span::from_micros(10),
        }
    }

    pub fn any(&self) -> bool {
        self.drop > 0.0 || self.dup > 0.0 || self.reorder > 0.0 || self.partition || self.crash || self.moves
    }
}

impl FromStr for Faults {
    type Err = String;

    /// `none`, or a comma list: `drop=0.05,dup=0.01,reorder=0.1,partition,delay=20,jitter=10`
    /// (probabilities as fractions, delays in microseconds).
    fn from_str(s: &str) -> Result<Faults, String> {
        let mut f = Faults::none();
        if s == "none" || s.is_empty() {
            return Ok(f);
        }
        for item in s.split(',') {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item.trim(), None),
            };
            let prob = |v: Option<&str>| -> Result<f64, String> {
                let v = v.ok_or(format!("{name} needs a value, e.g. {name}=0.05"))?;
                let p: f64 = v.parse().map_err(|_| format!("{name}={v}: not a number"))?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!("{name}={v}: not a probability in 0..1"))
                }
            };
            let micros = |v: Option<&str>| -> Result<Span, String> {
                let v = v.ok_or(format!("{name} needs a value in microseconds"))?;
                v.parse::<u64>()
                    .map(Span::from_micros)
                    .map_err(|_| format!("{name}={v}: not a whole number of microseconds"))
            };
            match name {
                "drop" => f.drop = prob(value)?,
                "dup" => f.dup = prob(value)?,
                "reorder" => f.reorder = prob(value)?,
                "partition" if value.is_none() => f.partition = true,
                "crash" if value.is_none() => f.crash = true,
                "move" if value.is_none() => f.moves = true,
                "delay" => f.delay = micros(value)?,
                "jitter" => f.jitter = micros(value)?,
                _ => {
                    return Err(format!(
                        "unknown fault '{item}' (want drop=, dup=, reorder=, partition, crash, move, delay=, jitter=)"
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drop={},dup={},reorder={}", self.drop, self.dup, self.reorder)?;
        if self.partition {
            write!(f, ",partition")?;
        }
        if self.crash {
            write!(f, ",crash")?;
        }
        if self.moves {
            write!(f, ",move")?;
        }
        write!(
            f,
            ",delay={},jitter={}",
            self.delay.as_micros(),
            self.jitter.as_micros()
        )
    }
}

/// One simulation run's settings; `None` fields are drawn from the seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: Option<u8>,
    pub lanes: Option<u8>,
    pub sessions: Option<u32>,
    pub write_ratio: Option<f64>,
    pub broadcast: Option<BroadcastMode>,
    /// Keys the sessions touch (few, so writes conflict).
    pub keys: u64,
    /// Operations each session issues.
    pub ops_per_session: u32,
    pub faults: Faults,
    /// Virtual time during which faults are on.
    pub fault_span: Span,
    /// After faults stop, every pending write must complete within this.
    pub liveness_bound: Span,
    /// A run that processes more events than this is a livelock.
    pub max_events: u64,
    pub bug: PlantedBug,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: None,
            lanes: None,
            sessions: None,
            write_ratio: None,
            broadcast: None,
            keys: 16,
            ops_per_session: 60,
            faults: Faults::none(),
            fault_span: Span::from_millis(200),
            liveness_bound: Span::from_millis(2_000),
            max_events: 5_000_000,
            bug: PlantedBug::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_errors_name_the_item() {
        let f: Faults = "drop=0.05,dup=0.01,reorder=0.1,partition,crash,move"
            .parse()
            .unwrap();
        assert!(f.crash && f.moves);
        assert_eq!((f.drop, f.dup, f.reorder, f.partition), (0.05, 0.01, 0.1, true));
        assert!(!"none".parse::<Faults>().unwrap().any());
        assert!("drop=2".parse::<Faults>().unwrap_err().contains("probability"));
        assert!("drop".parse::<Faults>().unwrap_err().contains("needs a value"));
        assert!(
            "lightning=1"
                .parse::<Faults>()
                .unwrap_err()
                .contains("unknown fault")
        );
        let back: Faults = f.to_string().parse().unwrap();
        assert_eq!(back, f);
    }
}
