//! Fixed-window request counting for unauthenticated endpoints (the device wipe channel, failed
//! sign-ins per address), kept
//! in memory per node: it slows guessing and flooding, and a restart or another node only
//! grants a fresh window, never access.

use std::collections::HashMap;
use std::sync::Mutex;

/// The most keys one limiter tracks; past it, windows that ended are dropped, and if none
/// has, the oldest half goes (a flood of fresh keys must not grow memory without bound).
const MAX_KEYS: usize = 50_000;
const WINDOW_MS: i64 = 60_000;

/// Counts requests per key in one-minute windows.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per key and minute (0: unlimited).
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one request for `key` at `now_ms`; `Err(seconds)` to wait when over the limit.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        self.count(key, now_ms, true)
    }

    /// Whether `key` is over the limit at `now_ms`, without counting a request.
    pub fn blocked(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        self.count(key, now_ms, false)
    }

    fn count(&self, key: &str, now_ms: i64, add: bool) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-count; the counts stay usable.
        let mut w = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.len() >= MAX_KEYS && !w.contains_key(key) {
            w.retain(|_, (start, _)| now_ms - *start < WINDOW_MS);
            if w.len() >= MAX_KEYS {
                let mut starts: Vec<i64> = w.values().map(|(s, _)| *s).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                w.retain(|_, (start, _)| *start > cut);
            }
        }
        let entry = w.entry(key.to_owned()).or_insert((now_ms, 0));
        if now_ms - entry.0 >= WINDOW_MS {
            *entry = (now_ms, 0);
        }
        if entry.1 >= self.per_minute {
            let wait_ms = (entry.0 + WINDOW_MS - now_ms).max(1000);
            return Err(u64::try_from(wait_ms).unwrap_or(60_000).div_ceil(1000));
        }
        if add {
            entry.1 += 1;
        }
        Ok(())
    }
}

/// The key of a source address: IPv6 addresses by their /64, which one subscriber usually
/// holds whole, so that walking through it buys no fresh windows.
pub fn address_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => address.to_owned(),
    }
}

/// The limits on `POST /api/v1/device-wipe/command` and `/ack` together: per source address
/// (every request) and per device id (failed requests only, so that someone who knows a
/// device's id cannot keep its rightful owner out by spending the budget).
#[derive(Debug)]
pub struct WipeLimits {
    /// Per source address.
    pub by_address: RateLimiter,
    /// Per device id named in the body.
    pub by_device: RateLimiter,
}

impl WipeLimits {
    /// From `[devices] wipe_requests_per_minute_per_address` and `..._per_device`.
    pub fn new(per_address: u32, per_device: u32) -> Self {
        Self { by_address: RateLimiter::new(per_address), by_device: RateLimiter::new(per_device) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), address_key("2001:db8:1:2:bbbb::9"));
        assert_ne!(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:3::1"));
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("::ffff:192.0.2.7"), "::ffff:192.0.2.7");
    }

    #[test]
    fn blocked_reads_without_counting() {
        let l = RateLimiter::new(1);
        assert_eq!(l.blocked("a", 0), Ok(()));
        assert_eq!(l.blocked("a", 0), Ok(()));
        assert_eq!(l.check("a", 0), Ok(()));
        assert!(l.blocked("a", 1).is_err());
    }

    #[test]
    fn counts_per_key_and_window() {
        let l = RateLimiter::new(2);
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.check("a", 10), Ok(()));
        assert_eq!(l.check("a", 20_000), Err(40));
        assert_eq!(l.check("b", 20_000), Ok(()));
        assert_eq!(l.check("a", 60_000), Ok(()));
        assert_eq!(RateLimiter::new(0).check("a", 0), Ok(()));
    }

    #[test]
    fn memory_stays_bounded() {
        let l = RateLimiter::new(1);
        for i in 0..(MAX_KEYS as i64 + 10) {
            assert_eq!(l.check(&i.to_string(), i), Ok(()));
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_KEYS);
    }
}
