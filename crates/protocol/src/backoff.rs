//! Exponential back-off of polling and retries (P8.4): after each failure or empty answer from
//! a loaded server the wait doubles, up to a limit; any exchange of messages resets it.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, failures: 0 }
    }

    /// The wait before the next attempt, given a random number in `0.0..1.0` for jitter (so
    /// that many engines do not retry in lock step after a server restart).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let exponent = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let base = self.initial.saturating_mul(1u32 << exponent.min(20)).min(self.max);
        // Full delay minus up to a quarter, so delays never exceed `max`.
        base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_up_to_the_limit_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(jitters in proptest::collection::vec(0.0f64..1.0, 1..100)) {
            let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(30));
            for j in jitters {
                let d = b.next_delay(j);
                prop_assert!(d <= Duration::from_secs(30));
                prop_assert!(d >= Duration::from_millis(37));
            }
        }
    }
}
