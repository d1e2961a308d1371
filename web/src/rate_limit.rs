//! A per-key rate limit (GCRA, from governor): signups, admin logins and key validations per
//! client address, tenant requests per tenant, sign-ins per tenant and address.

/// `per_minute` or `per_second` requests per key, in bursts or spread out.
#[derive(Debug)]
pub struct RateLimit<K: std::hash::Hash + Eq + Clone> {
    limiter: governor::DefaultKeyedRateLimiter<K>,
}

/// Signups and admin logins per client address.
pub type ClientRateLimiter = RateLimit<std::net::IpAddr>;

impl<K: std::hash::Hash + Eq + Clone> RateLimit<K> {
    /// `per_minute` requests per key, in a burst or spread out (0 disables the limit).
    pub fn new(per_minute: u32) -> Self {
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(per_minute).unwrap_or(std::num::NonZeroU32::MAX),
        );
        Self {
            limiter: governor::RateLimiter::keyed(quota),
        }
    }

    /// `per_second` requests per key, with bursts of `burst` (0 disables the limit).
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MAX);
        let burst = std::num::NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            limiter: governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
        }
    }

    /// `Err(seconds to wait)` when the key is over its quota.
    pub fn check(&self, key: &K) -> Result<(), u32> {
        use governor::clock::Clock as _;
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            // The limiter's own clock: making a new one (`DefaultClock::default()`) probes the
            // CPU and calibrates each time, which made every refusal cost as much as an answer.
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_quota_waits_and_others_do_not() {
        let limit = RateLimit::<u8>::new(2);
        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).is_ok());
        let wait = limit
            .check(&1)
            .expect_err("the third request in a minute is over quota");
        assert!((1..=61).contains(&wait), "waits {wait} s");
        assert!(limit.check(&2).is_ok(), "another key has its own quota");
    }
}
