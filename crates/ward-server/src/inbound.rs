//! The signing keys of the inbound webhooks (`[[inbound.orgs]]`), read once at start, and
//! the check of a request's signature: HMAC-SHA256 of the raw body under the organisation's
//! key, compared in constant time (aws-lc-rs `hmac::verify`).

use std::collections::HashMap;

use aws_lc_rs::hmac;

use crate::config::InboundConfig;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-ward-signature";

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

    /// Whether `signature` (the header's value) is the organisation's signature of `body`.
    /// An organisation without webhooks fails like a wrong signature.
    pub fn verify(&self, org: &str, signature: Option<&str>, body: &[u8]) -> bool {
        let Some(key) = self.keys.get(org) else { return false };
        let Some(mac) = signature.and_then(|s| s.trim().strip_prefix("sha256=")).and_then(from_hex) else { return false };
        hmac::verify(key, body, &mac).is_ok()
    }
}

/// The signature header's value for `body` under `secret` (for providers' set-up and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
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

    #[test]
    fn only_the_right_signature_of_the_exact_body_passes() {
        let cfg = InboundConfig {
            orgs: vec![InboundOrg { org: "acme".into(), secret: Some("0123456789abcdef-key".into()), secret_file: None }],
            ..InboundConfig::default()
        };
        let keys = InboundKeys::from_config(&cfg).unwrap();
        let sig = sign(b"0123456789abcdef-key", b"{\"from\":\"+1\"}");
        assert!(keys.verify("acme", Some(&sig), b"{\"from\":\"+1\"}"));
        assert!(!keys.verify("acme", Some(&sig), b"{\"from\":\"+2\"}"));
        assert!(!keys.verify("other", Some(&sig), b"{\"from\":\"+1\"}"));
        assert!(!keys.verify("acme", None, b"{\"from\":\"+1\"}"));
        assert!(!keys.verify("acme", Some("sha256=zz"), b"{\"from\":\"+1\"}"));
        assert!(!format!("{keys:?}").contains("0123456789abcdef"));
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"));
    }
}
