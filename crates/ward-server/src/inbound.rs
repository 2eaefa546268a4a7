//! The signing keys of the inbound webhooks (`[[inbound.orgs]]`), read once at start, and
//! the check of a request's signature: HMAC-SHA256 of `"<timestamp>.<raw body>"` under the
//! organisation's key, compared in constant time (aws-lc-rs `hmac::verify`). The timestamp
//! (`x-ward-timestamp`, Unix seconds) must be within [`MAX_SKEW_SECS`] of the server's clock,
//! and a signature is accepted once: [`ReplayGuard`] remembers the accepted ones for as long
//! as their timestamp would pass, so a captured request cannot be sent again.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::hmac;

use crate::config::InboundConfig;

/// The header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-ward-signature";
/// The header carrying the time of signing, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-ward-timestamp";
/// How far a request's timestamp may be from the server's clock, either way.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a webhook request's signature is refused (the audit's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed or wrong signature or timestamp, or no webhooks for the organisation.
    BadSignature,
    /// Rightly signed, but the timestamp is more than [`MAX_SKEW_SECS`] off.
    Stale,
    /// Rightly signed and fresh, but this signature was accepted before.
    Replayed,
}

impl Refusal {
    /// The stable code recorded as the audit event's `reason`.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale_timestamp",
            Refusal::Replayed => "replayed",
        }
    }
}

/// Each configured organisation's webhook key, by slug.
#[derive(Default)]
pub struct InboundKeys {
    keys: HashMap<String, hmac::Key>,
}

impl std::fmt::Debug for InboundKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundKeys").field("orgs", &self.keys.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl InboundKeys {
    /// Reads the keys (a missing or empty `secret_file` stops the start; the error names the
    /// setting and the path, never the content).
    pub fn from_config(cfg: &InboundConfig) -> anyhow::Result<InboundKeys> {
        let mut keys = HashMap::new();
        for o in &cfg.orgs {
            let secret = match (&o.secret, &o.secret_file) {
                (Some(s), _) => s.as_bytes().to_vec(),
                (None, Some(p)) => {
                    let raw =
                        std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read inbound.orgs[].secret_file {}: {e}", p.display()))?;
                    raw.trim_ascii().to_vec()
                }
                (None, None) => anyhow::bail!("inbound.orgs[] needs secret or secret_file"),
            };
            if secret.len() < 16 {
                anyhow::bail!("the inbound secret of organisation {} is shorter than 16 bytes", o.org);
            }
            keys.insert(o.org.clone(), hmac::Key::new(hmac::HMAC_SHA256, &secret));
        }
        Ok(InboundKeys { keys })
    }

    /// Checks a request: `signature` and `timestamp` are the headers' values, `now_secs` the
    /// server's clock. On success the signature is remembered in `seen`, so the same request
    /// fails as [`Refusal::Replayed`] the next time. An organisation without webhooks fails
    /// like a wrong signature.
    pub fn verify(&self, req: &SignedRequest<'_>, seen: &ReplayGuard, now_secs: i64) -> Result<(), Refusal> {
        let key = self.keys.get(req.org).ok_or(Refusal::BadSignature)?;
        let mac = req.signature.and_then(|s| s.trim().strip_prefix("sha256=")).and_then(from_hex).ok_or(Refusal::BadSignature)?;
        let ts_text = req.timestamp.map(str::trim).ok_or(Refusal::BadSignature)?;
        let ts: i64 = ts_text.parse().map_err(|_| Refusal::BadSignature)?;
        hmac::verify(key, &signed_bytes(ts_text, req.body), &mac).map_err(|_| Refusal::BadSignature)?;
        // Only rightly signed requests get this far: nobody without the key can fill `seen`.
        if (now_secs - ts).abs() > MAX_SKEW_SECS {
            return Err(Refusal::Stale);
        }
        if !seen.first_use(req.org, &mac, ts, now_secs) {
            return Err(Refusal::Replayed);
        }
        Ok(())
    }
}

/// What a webhook request brings to be checked.
pub struct SignedRequest<'a> {
    /// The organisation's slug from the path.
    pub org: &'a str,
    /// The `x-ward-signature` header.
    pub signature: Option<&'a str>,
    /// The `x-ward-timestamp` header.
    pub timestamp: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// The signatures accepted recently, by organisation, each kept until its timestamp falls out
/// of the window (after that it fails as stale anyway). Held in memory per node: behind a load
/// balancer a replay to another node within five minutes can pass once there, which at worst
/// asks for a redirect that `inbound.redirect_every_minutes` already holds back.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, Vec<u8>), i64>>,
}

impl ReplayGuard {
    /// Records the signature; `false` when it was already there and not yet expired.
    fn first_use(&self, org: &str, mac: &[u8], ts: i64, now_secs: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget what can no longer pass the timestamp check, so memory follows the traffic
        // of the last ten minutes at most.
        seen.retain(|_, expires| *expires >= now_secs);
        let expires = ts + MAX_SKEW_SECS;
        seen.insert((org.to_owned(), mac.to_vec()), expires).is_none()
    }
}

/// The bytes signed: the timestamp as sent, a dot, the body.
fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    msg
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds) under `secret`
/// (for providers' set-up and tests).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &signed_bytes(&timestamp.to_string(), body));
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InboundOrg;

    const NOW: i64 = 1_800_000_000;

    fn check(keys: &InboundKeys, seen: &ReplayGuard, org: &str, sig: Option<&str>, ts: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
        keys.verify(&SignedRequest { org, signature: sig, timestamp: ts, body }, seen, NOW)
    }

    #[test]
    fn only_the_right_signature_of_the_exact_body_and_time_passes_once() {
        let cfg = InboundConfig {
            orgs: vec![InboundOrg { org: "acme".into(), secret: Some("0123456789abcdef-key".into()), secret_file: None }],
            ..InboundConfig::default()
        };
        let keys = InboundKeys::from_config(&cfg).unwrap();
        let seen = ReplayGuard::default();
        let body: &[u8] = b"{\"from\":\"+1\"}";
        let ts = NOW.to_string();
        let sig = sign(b"0123456789abcdef-key", NOW, body);
        let bad = Err(Refusal::BadSignature);
        assert_eq!(check(&keys, &seen, "acme", Some(&sig), Some(&ts), b"{\"from\":\"+2\"}"), bad);
        assert_eq!(check(&keys, &seen, "other", Some(&sig), Some(&ts), body), bad);
        assert_eq!(check(&keys, &seen, "acme", None, Some(&ts), body), bad);
        assert_eq!(check(&keys, &seen, "acme", Some(&sig), None, body), bad);
        assert_eq!(check(&keys, &seen, "acme", Some(&sig), Some(&(NOW + 1).to_string()), body), bad, "the time is signed");
        assert_eq!(check(&keys, &seen, "acme", Some("sha256=zz"), Some(&ts), body), bad);
        assert_eq!(check(&keys, &seen, "acme", Some(&sig), Some(&ts), body), Ok(()));
        assert_eq!(check(&keys, &seen, "acme", Some(&sig), Some(&ts), body), Err(Refusal::Replayed));
        // Five minutes either way pass; more is stale, even when rightly signed.
        for (offset, ok) in [(-MAX_SKEW_SECS, true), (MAX_SKEW_SECS, true), (-MAX_SKEW_SECS - 1, false), (MAX_SKEW_SECS + 1, false)] {
            let t = NOW + offset;
            let sig = sign(b"0123456789abcdef-key", t, body);
            let got = check(&keys, &seen, "acme", Some(&sig), Some(&t.to_string()), body);
            assert_eq!(got, if ok { Ok(()) } else { Err(Refusal::Stale) }, "offset {offset}");
        }
        assert!(!format!("{keys:?}").contains("0123456789abcdef"));
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_replay_memory_forgets_what_has_expired() {
        let seen = ReplayGuard::default();
        assert!(seen.first_use("acme", b"mac", NOW, NOW));
        assert!(!seen.first_use("acme", b"mac", NOW, NOW + 10));
        assert!(seen.first_use("other", b"mac", NOW, NOW + 10), "per organisation");
        assert!(seen.first_use("acme", b"mac2", NOW + MAX_SKEW_SECS + 1, NOW + MAX_SKEW_SECS + 1));
        assert_eq!(seen.seen.lock().unwrap().len(), 1, "the expired ones are gone");
    }
}
