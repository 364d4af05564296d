//! Request rates per source address for what anyone may call without an identity
//! (registration, health, metrics, the API document, and requests that fail to authenticate):
//! token buckets, so that one address cannot fill the database with registrations or keep the
//! server busy with strangers' requests, while others are served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's shape: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: f64,
}

/// The rates a server applies per source address.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Requests that carry no identity: registration, health, metrics, the API document,
    /// unknown paths, and any request that fails to authenticate.
    pub unauthenticated: Rate,
    /// Registrations, on top of `unauthenticated`: each may add a party to the database.
    pub registrations: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            unauthenticated: Rate { burst: 120, per_second: 10.0 },
            // An office of engines starting together registers at once; a flood does not.
            registrations: Rate { burst: 30, per_second: 0.2 },
        }
    }
}

impl RateLimits {
    /// Limits no caller reaches: for a server whose callers all share one address (a local
    /// cluster on loopback).
    pub fn unbounded() -> RateLimits {
        let plenty = Rate { burst: u32::MAX, per_second: 1e9 };
        RateLimits { unauthenticated: plenty, registrations: plenty }
    }
}

/// Tokens of one source; pure arithmetic over milliseconds of a monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

impl Bucket {
    pub fn full(rate: &Rate, now_ms: u64) -> Bucket {
        Bucket { tokens: f64::from(rate.burst), updated_ms: now_ms }
    }

    fn refill(&mut self, rate: &Rate, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Take a token, or say how long until one is there.
    pub fn take(&mut self, rate: &Rate, now_ms: u64) -> Result<(), Duration> {
        self.refill(rate, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if rate.per_second <= 0.0 || rate.burst == 0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_second).min(3600.0)))
    }

    /// Whether the bucket is full again, so forgetting it changes nothing.
    fn is_full(&self, rate: &Rate, now_ms: u64) -> bool {
        let mut probe = self.clone();
        probe.refill(rate, now_ms);
        probe.tokens >= f64::from(rate.burst)
    }
}

/// The key of a source: an IPv4 address, or the /64 network of an IPv6 address (one
/// subscriber usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Buckets per source address, forgotten once full again (so memory follows the sources
/// active lately, not every address ever seen).
pub struct Limiter {
    rate: Rate,
    started: Instant,
    /// The buckets, and the count at which full ones are next forgotten (doubled when few
    /// are, so that many active sources do not make every request scan them all).
    buckets: Mutex<(HashMap<IpAddr, Bucket>, usize)>,
}

const FORGET_ABOVE: usize = 10_000;

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter { rate, started: Instant::now(), buckets: Mutex::new((HashMap::new(), FORGET_ABOVE)) }
    }

    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (buckets, forget_at) = &mut *guard;
        if buckets.len() >= *forget_at {
            let rate = self.rate;
            buckets.retain(|_, bucket| !bucket.is_full(&rate, now_ms));
            *forget_at = (buckets.len() * 2).max(FORGET_ABOVE);
        }
        buckets.entry(source_key(source)).or_insert_with(|| Bucket::full(&self.rate, now_ms)).take(&self.rate, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_request_per_refill() {
        let rate = Rate { burst: 3, per_second: 2.0 };
        let mut bucket = Bucket::full(&rate, 1_000);
        for _ in 0..3 {
            bucket.take(&rate, 1_000).unwrap();
        }
        assert_eq!(bucket.take(&rate, 1_000), Err(Duration::from_millis(500)));
        assert_eq!(bucket.take(&rate, 1_250), Err(Duration::from_millis(250)), "half a token refilled");
        bucket.take(&rate, 1_500).unwrap();
        assert!(bucket.take(&rate, 1_500).is_err());
        // A long pause refills up to the burst, not beyond.
        for _ in 0..3 {
            bucket.take(&rate, 100_000).unwrap();
        }
        assert!(bucket.take(&rate, 100_000).is_err());
    }

    #[test]
    fn a_clock_going_back_or_a_zero_rate_never_panics_nor_refills() {
        let rate = Rate { burst: 1, per_second: 0.0 };
        let mut bucket = Bucket::full(&rate, 5_000);
        bucket.take(&rate, 5_000).unwrap();
        assert!(bucket.take(&rate, 4_000).is_err());
        assert!(bucket.take(&rate, u64::MAX).is_err());
        assert!(
            Bucket::full(&Rate { burst: 0, per_second: 1.0 }, 0).take(&Rate { burst: 0, per_second: 1.0 }, 0).is_err()
        );
    }

    #[test]
    fn sources_are_limited_apart_and_ipv6_by_its_64() {
        let limiter = Limiter::new(Rate { burst: 1, per_second: 0.001 });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        limiter.check(a).unwrap();
        assert!(limiter.check(a).is_err());
        limiter.check(b).unwrap();
        limiter.check("2001:db8::1".parse().unwrap()).unwrap();
        assert!(limiter.check("2001:db8::ffff:1".parse().unwrap()).is_err(), "same /64");
        limiter.check("2001:db8:0:1::1".parse().unwrap()).unwrap();
        assert!(limiter.check("::ffff:192.0.2.1".parse().unwrap()).is_err(), "a mapped IPv4 address is that address");
    }
}
