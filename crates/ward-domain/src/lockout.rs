//! Account lockout with growing backoff after failed logins.
//!
//! The same rule applies to login names that do not exist, so the answer to a guess never
//! reveals whether an account is there.

/// Failed attempts allowed before the first lock.
pub const FREE_ATTEMPTS: u32 = 5;
/// The first lock's length in seconds; each further failure doubles it.
pub const BASE_LOCK_SECS: i64 = 30;
/// The longest lock in seconds (one hour).
pub const MAX_LOCK_SECS: i64 = 3600;

/// The state of one login name's failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Unix milliseconds until which attempts are refused without checking the password.
    pub locked_until_ms: i64,
}

impl Throttle {
    /// Whether an attempt at `now_ms` must be refused unchecked, and for how many more seconds.
    pub fn locked(&self, now_ms: i64) -> Option<i64> {
        (self.locked_until_ms > now_ms).then(|| (self.locked_until_ms - now_ms + 999) / 1000)
    }

    /// The state after a failed attempt at `now_ms`.
    pub fn after_failure(self, now_ms: i64) -> Throttle {
        let failures = self.failures.saturating_add(1);
        let locked_until_ms = match failures.checked_sub(FREE_ATTEMPTS) {
            None => 0,
            Some(over) => {
                let secs = BASE_LOCK_SECS.checked_shl(over.min(20)).unwrap_or(MAX_LOCK_SECS).min(MAX_LOCK_SECS);
                now_ms + secs * 1000
            }
        };
        Throttle { failures, locked_until_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_attempts_and_backs_off() {
        let mut t = Throttle::default();
        for _ in 0..FREE_ATTEMPTS - 1 {
            t = t.after_failure(0);
            assert_eq!(t.locked(0), None);
        }
        t = t.after_failure(0);
        assert_eq!(t.locked(0), Some(30));
        t = t.after_failure(0);
        assert_eq!(t.locked(0), Some(60));
        for _ in 0..100 {
            t = t.after_failure(0);
        }
        assert_eq!(t.locked(0), Some(MAX_LOCK_SECS));
        assert_eq!(t.locked(MAX_LOCK_SECS * 1000), None);
    }
}
