//! The retransmission timeout, adapted to the measured round trip
//! (Jacobson/Karels, as TCP does): srtt + 4 * rttvar, clamped between a
//! floor and the configured maximum, which is also the timeout before the
//! first sample.

use crate::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtt {
    min: Span,
    max: Span,
    /// Smoothed round trip and its mean deviation, in ns; None before a sample.
    srtt: Option<(u64, u64)>,
    /// Timeouts since the last sample: each doubles the timeout (up to the
    /// maximum), so a peer that is merely slow is not flooded with resends.
    backoff: u32,
}

impl Rtt {
    pub fn new(min: Span, max: Span) -> Rtt {
        Rtt {
            min: min.min(max),
            max,
            srtt: None,
            backoff: 0,
        }
    }

    /// One measured round trip (of a message sent once: Karn's rule).
    pub fn sample(&mut self, rtt: Span) {
        self.backoff = 0;
        let r = rtt.0;
        self.srtt = Some(match self.srtt {
            None => (r, r / 2),
            Some((s, var)) => (s - s / 8 + r / 8, var - var / 4 + s.abs_diff(r) / 4),
        });
    }

    pub fn rto(&self) -> Span {
        let base = match self.srtt {
            None => self.max,
            Some((s, var)) => Span(s.saturating_add(var.saturating_mul(4))).clamp(self.min, self.max),
        };
        Span(base.0.saturating_mul(1 << self.backoff.min(16))).min(self.max)
    }

    /// A timeout fired without a new sample since the last one.
    pub fn backed_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_round_trip_within_bounds() {
        let mut r = Rtt::new(Span::from_micros(100), Span::from_millis(20));
        assert_eq!(r.rto(), Span::from_millis(20), "no sample yet: the maximum");
        for _ in 0..50 {
            r.sample(Span::from_micros(50));
        }
        assert_eq!(
            r.rto(),
            Span::from_micros(100),
            "a steady 50 us round trip hits the floor"
        );
        r.sample(Span::from_millis(5));
        assert!(
            r.rto() > Span::from_millis(2),
            "a spike raises it at once: {:?}",
            r.rto()
        );
        for _ in 0..100 {
            r.sample(Span::from_millis(1_000));
        }
        assert_eq!(r.rto(), Span::from_millis(20), "never above the maximum");
    }
}
