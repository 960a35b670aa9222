//! The simulated network: latency with jitter, and while faults are on,
//! loss, duplication, reordering and partitions. Every decision draws from
//! the run's one RNG, so a seed replays exactly.

use crate::config::Faults;
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rzab_proto::{NodeId, NodeSet, Span, Time};

/// Which links a partition cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// No traffic between `side` and the rest, either way.
    Symmetric { side: NodeSet },
    /// No traffic from `from` to `to`; the reverse direction works.
    OneWay { from: NodeSet, to: NodeSet },
}

impl Partition {
    fn cuts(&self, from: NodeId, to: NodeId) -> bool {
        match *self {
            Partition::Symmetric { side } => side.contains(from) != side.contains(to),
            Partition::OneWay { from: a, to: b } => a.contains(from) && b.contains(to),
        }
    }
}

/// What the network did, for the run's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub cut: u64,
    pub partitions: u64,
}

pub struct Network {
    faults: Faults,
    /// Faults are on (latency always is).
    pub active: bool,
    pub partition: Option<Partition>,
    pub stats: NetStats,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        Network {
            active: faults.any(),
            faults,
            partition: None,
            stats: NetStats::default(),
        }
    }

    fn latency(&self, rng: &mut Xoshiro256PlusPlus) -> Span {
        let jitter = if self.faults.jitter.0 == 0 {
            0
        } else {
            rng.random_range(0..=self.faults.jitter.0)
        };
        Span(self.faults.delay.0 + jitter)
    }

    /// When copies of a datagram sent now from `from` to `to` arrive: none
    /// (lost or cut), one, or two (duplicated).
    pub fn route(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        now: Time,
        from: NodeId,
        to: NodeId,
    ) -> [Option<Time>; 2] {
        self.stats.sent += 1;
        let mut out = [Some(now + self.latency(rng)), None];
        if !self.active {
            return out;
        }
        if self.partition.is_some_and(|p| p.cuts(from, to)) {
            self.stats.cut += 1;
            return [None, None];
        }
        if rng.random_bool(self.faults.drop) {
            self.stats.dropped += 1;
            return [None, None];
        }
        if rng.random_bool(self.faults.reorder) {
            // Held back by several latencies: later datagrams overtake it.
            self.stats.reordered += 1;
            let extra = Span(self.faults.delay.0 * rng.random_range(2..=8));
            out[0] = out[0].map(|t| t + extra);
        }
        if rng.random_bool(self.faults.dup) {
            self.stats.duplicated += 1;
            out[1] = Some(now + self.latency(rng) + self.latency(rng));
        }
        out
    }

    /// A random partition of `members` (one side non-empty and not everyone).
    pub fn random_partition(rng: &mut Xoshiro256PlusPlus, members: NodeSet) -> Partition {
        let ids: Vec<NodeId> = members.iter().collect();
        let pick = |rng: &mut Xoshiro256PlusPlus| {
            let mut side = NodeSet::EMPTY;
            while side.is_empty() || side == members {
                side = NodeSet::from_ids(ids.iter().copied().filter(|_| rng.random_bool(0.5)));
            }
            side
        };
        if ids.len() < 2 {
            return Partition::Symmetric { side: members };
        }
        let side = pick(rng);
        if rng.random_bool(0.5) {
            Partition::Symmetric { side }
        } else {
            let rest = NodeSet(members.0 & !side.0);
            Partition::OneWay { from: side, to: rest }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn partitions_cut_the_right_links() {
        let sym = Partition::Symmetric {
            side: NodeSet::from_ids([0]),
        };
        assert!(sym.cuts(0, 1) && sym.cuts(1, 0) && !sym.cuts(1, 2));
        let one = Partition::OneWay {
            from: NodeSet::from_ids([0]),
            to: NodeSet::from_ids([1, 2]),
        };
        assert!(one.cuts(0, 1) && !one.cuts(1, 0));
    }

    #[test]
    fn without_faults_everything_arrives_once_after_the_latency() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut n = Network::new(Faults::none());
        for _ in 0..100 {
            let [a, b] = n.route(&mut rng, Time(1000), 0, 1);
            let a = a.unwrap();
            assert!(b.is_none());
            assert!(a >= Time(21_000) && a <= Time(31_000));
        }
    }

    #[test]
    fn drop_probability_is_honoured() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut n = Network::new("drop=0.25".parse().unwrap());
        let lost = (0..10_000)
            .filter(|_| n.route(&mut rng, Time(0), 0, 1)[0].is_none())
            .count();
        assert!((2_200..2_800).contains(&lost), "{lost}");
    }
}
