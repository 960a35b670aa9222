//! Crash schedules for the multi-process bench (`--kill leader@5s
//! --restart @8s`), and the figures they produce: failover time,
//! unavailability window, catch-up of restarted nodes.

use crate::report::NodeOutcome;
use rzab_proto::NodeId;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Whom a kill hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    /// Whichever node leads at that moment.
    Leader,
    /// A node that does not lead at that moment (the lowest id).
    Follower,
    Node(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    /// SIGKILL the node's process: it loses everything.
    Kill(Target),
    /// Start the longest-dead node again (it joins as a learner).
    Restart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// Since the sessions started.
    pub at: Duration,
    pub action: Action,
    /// Wait (up to 10 s) until every running node serves in one epoch: a
    /// kill the cluster can survive, for failover figures.
    pub when_healthy: bool,
}

fn parse_time(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        return Err(format!("'{s}' needs a unit: s or ms (e.g. 5s, 750ms)"));
    };
    let v: f64 = num.parse().map_err(|_| format!("'{num}' is not a number"))?;
    if !(v >= 0.0 && v.is_finite() && v * scale <= 86_400.0) {
        return Err(format!("'{s}' is not a time between 0 and one day"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl Fault {
    /// `TARGET@TIME` for `--kill` (TARGET: leader, follower or a node id).
    pub fn kill(s: &str) -> Result<Fault, String> {
        let (who, at) = s
            .split_once('@')
            .ok_or_else(|| format!("'{s}' is not TARGET@TIME (e.g. leader@5s, 2@1.5s)"))?;
        let target = match who {
            "leader" => Target::Leader,
            "follower" => Target::Follower,
            n => Target::Node(
                n.parse()
                    .map_err(|_| format!("'{n}' is not leader, follower or a node id"))?,
            ),
        };
        Ok(Fault {
            at: parse_time(at)?,
            action: Action::Kill(target),
            when_healthy: false,
        })
    }

    /// `@TIME` (or `TIME`) for `--restart`.
    pub fn restart(s: &str) -> Result<Fault, String> {
        Ok(Fault {
            at: parse_time(s.strip_prefix('@').unwrap_or(s))?,
            action: Action::Restart,
            when_healthy: false,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.at.as_secs_f64();
        match self.action {
            Action::Kill(Target::Leader) => write!(f, "kill leader@{t}s"),
            Action::Kill(Target::Follower) => write!(f, "kill follower@{t}s"),
            Action::Kill(Target::Node(n)) => write!(f, "kill {n}@{t}s"),
            Action::Restart => write!(f, "restart @{t}s"),
        }
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        match s.split_once(' ') {
            Some(("kill", rest)) => Fault::kill(rest),
            Some(("restart", rest)) => Fault::restart(rest),
            _ => Err(format!("'{s}' is not 'kill TARGET@TIME' or 'restart @TIME'")),
        }
    }
}

/// `count` leader kills, `every` apart from `first` (each waits until the
/// cluster is whole again), each victim restarted halfway to the next kill.
pub fn repeated_failovers(first: Duration, every: Duration, count: u32) -> Vec<Fault> {
    (0..count)
        .flat_map(|i| {
            let at = first + every * i;
            [
                Fault {
                    at,
                    action: Action::Kill(Target::Leader),
                    when_healthy: true,
                },
                Fault {
                    at: at + every / 2,
                    action: Action::Restart,
                    when_healthy: false,
                },
            ]
        })
        .collect()
}

/// A leadership the supervisor saw in status lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Leadership {
    pub node: NodeId,
    pub epoch: u32,
    pub led_at_ns: u64,
    pub first_commit_ns: u64,
}

/// What the schedule did, with monotonic times.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub start_ns: u64,
    pub kills: Vec<(NodeId, u64, bool)>,
    pub restarts: Vec<(NodeId, u64)>,
    pub leaderships: Vec<Leadership>,
    /// (node, promoted at, keys in its snapshot), for restarted nodes.
    pub catch_ups: Vec<(NodeId, u64, u64)>,
    /// Faults that could not be carried out, and why.
    pub skipped: Vec<String>,
    /// Per node, gaps between its applies over 5 ms (across its lives).
    pub gaps: Vec<Vec<(u64, u64)>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KillReport {
    pub node: NodeId,
    pub at_s: f64,
    pub was_leader: bool,
    /// The next leader, its epoch, and ms from the kill to its election
    /// and to the first commit of its epoch.
    pub new_leader: Option<NodeId>,
    pub new_epoch: Option<u32>,
    pub elected_ms: Option<f64>,
    pub failover_ms: Option<f64>,
    /// Longest time around the kill in which no replica applied a write.
    pub unavailable_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestartReport {
    pub node: NodeId,
    pub at_s: f64,
    /// From the restart to its promotion (caught up, voting again).
    pub caught_up_ms: Option<f64>,
    pub snapshot_keys: u64,
    pub keys_per_s: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub median: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: impl Iterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        Summary {
            count: v.len(),
            median: if v.is_empty() { 0.0 } else { v[v.len() / 2] },
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    pub kills: Vec<KillReport>,
    pub restarts: Vec<RestartReport>,
    /// Over kills of the leader.
    pub failover_ms: Summary,
    pub unavailable_ms: Summary,
    pub caught_up_ms: Summary,
    pub skipped: Vec<String>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The figures of a timeline; the gaps between applies come from it and
/// from the final outcomes.
pub fn report(t: &Timeline, outcomes: &[NodeOutcome]) -> FaultReport {
    let mut gaps: Vec<Vec<(u64, u64)>> = t.gaps.clone();
    for o in outcomes {
        let i = o.id as usize;
        if gaps.len() <= i {
            gaps.resize(i + 1, Vec::new());
        }
        for g in &o.gaps {
            if !gaps[i].contains(g) {
                gaps[i].push(*g);
            }
        }
    }
    let kills: Vec<KillReport> = t
        .kills
        .iter()
        .map(|&(node, at, was_leader)| {
            let next = t
                .leaderships
                .iter()
                .filter(|l| l.led_at_ns > at && l.node != node)
                .min_by_key(|l| l.led_at_ns);
            // The window in which no replica applied: the intersection of
            // every node's gap around the kill.
            let around: Vec<(u64, u64)> = gaps
                .iter()
                .filter_map(|g| g.iter().find(|&&(s, e)| s <= at && at < e).copied())
                .collect();
            let unavailable = (!around.is_empty()).then(|| {
                let start = around.iter().map(|g| g.0).max().unwrap_or(at);
                let end = around.iter().map(|g| g.1).min().unwrap_or(at);
                ms(end.saturating_sub(start))
            });
            KillReport {
                node,
                at_s: ms(at.saturating_sub(t.start_ns)) / 1e3,
                was_leader,
                new_leader: next.map(|l| l.node),
                new_epoch: next.map(|l| l.epoch),
                elected_ms: next.filter(|_| was_leader).map(|l| ms(l.led_at_ns - at)),
                failover_ms: next
                    .filter(|l| was_leader && l.first_commit_ns > at)
                    .map(|l| ms(l.first_commit_ns - at)),
                unavailable_ms: unavailable,
            }
        })
        .collect();
    let restarts: Vec<RestartReport> = t
        .restarts
        .iter()
        .map(|&(node, at)| {
            let done = t.catch_ups.iter().find(|c| c.0 == node && c.1 > at);
            let took = done.map(|c| c.1 - at);
            RestartReport {
                node,
                at_s: ms(at.saturating_sub(t.start_ns)) / 1e3,
                caught_up_ms: took.map(ms),
                snapshot_keys: done.map_or(0, |c| c.2),
                keys_per_s: done
                    .zip(took)
                    .filter(|(_, ns)| *ns > 0)
                    .map(|(c, ns)| c.2 as f64 / (ns as f64 / 1e9)),
            }
        })
        .collect();
    FaultReport {
        failover_ms: Summary::of(kills.iter().filter_map(|k| k.failover_ms)),
        unavailable_ms: Summary::of(kills.iter().filter_map(|k| k.unavailable_ms)),
        caught_up_ms: Summary::of(restarts.iter().filter_map(|r| r.caught_up_ms)),
        kills,
        restarts,
        skipped: t.skipped.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_errors_say_why() {
        assert_eq!(
            Fault::kill("leader@5s").unwrap(),
            Fault {
                at: Duration::from_secs(5),
                action: Action::Kill(Target::Leader),
                when_healthy: false,
            }
        );
        assert_eq!(
            Fault::kill("2@750ms").unwrap().action,
            Action::Kill(Target::Node(2))
        );
        assert_eq!(Fault::restart("@8s").unwrap().at, Duration::from_secs(8));
        assert!(Fault::kill("leader").unwrap_err().contains("TARGET@TIME"));
        assert!(Fault::kill("leader@5").unwrap_err().contains("unit"));
        assert!(Fault::kill("boss@5s").unwrap_err().contains("node id"));
        assert!(Fault::restart("@-1s").unwrap_err().contains("between"));
        let f: Fault = "kill follower@1.5s".parse().unwrap();
        assert_eq!(f.to_string(), "kill follower@1.5s");
    }

    #[test]
    fn repeated_failovers_alternate_kills_and_restarts() {
        let f = repeated_failovers(Duration::from_secs(1), Duration::from_secs(2), 3);
        assert_eq!(f.len(), 6);
        assert!(f[0].when_healthy && !f[1].when_healthy);
        assert_eq!(f[1].at, Duration::from_secs(2));
        assert_eq!(f[4].at, Duration::from_secs(5));
    }

    #[test]
    fn figures_come_from_the_timeline() {
        let t = Timeline {
            start_ns: 0,
            kills: vec![(0, 1_000_000_000, true)],
            restarts: vec![(0, 2_000_000_000)],
            leaderships: vec![
                Leadership {
                    node: 0,
                    epoch: 1,
                    led_at_ns: 0,
                    first_commit_ns: 1,
                },
                Leadership {
                    node: 2,
                    epoch: 2,
                    led_at_ns: 1_030_000_000,
                    first_commit_ns: 1_040_000_000,
                },
            ],
            catch_ups: vec![(0, 2_500_000_000, 1_000_000)],
            skipped: vec![],
            gaps: vec![
                vec![],
                vec![(990_000_000, 1_045_000_000)],
                vec![(995_000_000, 1_040_000_000)],
            ],
        };
        let r = report(&t, &[]);
        let k = &r.kills[0];
        assert_eq!((k.new_leader, k.new_epoch), (Some(2), Some(2)));
        assert!((k.elected_ms.unwrap() - 30.0).abs() < 1e-6);
        assert!((k.failover_ms.unwrap() - 40.0).abs() < 1e-6);
        let window = k.unavailable_ms.unwrap();
        assert!((window - 45.0).abs() < 1e-6, "the gaps' intersection: {window}");
        let c = &r.restarts[0];
        assert!((c.caught_up_ms.unwrap() - 500.0).abs() < 1e-6);
        assert!((c.keys_per_s.unwrap() - 2_000_000.0).abs() < 1.0);
        assert_eq!(r.failover_ms.count, 1);
    }
}
