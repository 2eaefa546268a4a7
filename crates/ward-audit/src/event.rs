//! The canonical byte encoding of one audit event: the data whose leaf hash goes into the tree.
//!
//! The encoding is a JSON object in the RFC 8785 (JCS) canonical form, restricted to the value
//! kinds an audit row has, so any implementation can recompute it from an exported row:
//!
//! - exactly the thirteen keys of [`AuditLeaf`], sorted by their (ASCII) bytes, each present
//!   once; no whitespace anywhere;
//! - an absent value is `null`;
//! - `idx` and `occurred_at` are integers in plain decimal (no sign for non-negative values,
//!   no leading zeroes, no exponent, no fraction);
//! - uuids are strings in the lower-case hyphenated form (`8-4-4-4-12` hex digits);
//! - `detail` is the stored JSON text *as a string* (not re-parsed), so the encoding never
//!   depends on how a JSON library orders or formats numbers inside it;
//! - strings are escaped as JCS (and ECMAScript `JSON.stringify`) does: `"` as `\"`, `\` as
//!   `\\`, U+0008/09/0A/0C/0D as `\b` `\t` `\n` `\f` `\r`, every other character below
//!   U+0020 as `\u00xx` with lower-case hex, and every other character as its own UTF-8.
//!
//! The leaf hash is `SHA-256(0x00 || canonical bytes)` ([`leaf_hash`]). `docs/audit-log.md`
//! gives a worked example.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, leaf_hash};

/// One audit event as stored: the fields of an `audit_events` row, nothing else.
///
/// The fields are declared in the canonical key order, so serde's JSON of a leaf (as in an
/// export line) *is* its canonical encoding: a verifier can hash the bytes it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLeaf {
    /// Dotted action name.
    pub action: String,
    /// Acting device.
    pub actor_device_id: Option<uuid::Uuid>,
    /// Acting user.
    pub actor_user_id: Option<uuid::Uuid>,
    /// The stored JSON text of the details, verbatim.
    pub detail: String,
    /// Dense position in the log, from 0.
    pub idx: u64,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// Tenant.
    pub org_id: Option<uuid::Uuid>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Patient involved (opaque id).
    pub patient_id: Option<uuid::Uuid>,
    /// Request id.
    pub request_id: Option<String>,
    /// Client address.
    pub source_ip: Option<String>,
    /// Id of the record acted on.
    pub target_id: Option<String>,
    /// Kind of record acted on.
    pub target_type: Option<String>,
}

impl AuditLeaf {
    /// The canonical encoding (see the module documentation).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(384);
        // Keys in sorted byte order; the order here *is* the encoding.
        out.push_str("{\"action\":");
        string(&mut out, &self.action);
        out.push_str(",\"actor_device_id\":");
        opt_uuid(&mut out, self.actor_device_id);
        out.push_str(",\"actor_user_id\":");
        opt_uuid(&mut out, self.actor_user_id);
        out.push_str(",\"detail\":");
        string(&mut out, &self.detail);
        let _ = write!(out, ",\"idx\":{},\"occurred_at\":{}", self.idx, self.occurred_at);
        out.push_str(",\"org_id\":");
        opt_uuid(&mut out, self.org_id);
        out.push_str(",\"outcome\":");
        string(&mut out, &self.outcome);
        out.push_str(",\"patient_id\":");
        opt_uuid(&mut out, self.patient_id);
        out.push_str(",\"request_id\":");
        opt_string(&mut out, self.request_id.as_deref());
        out.push_str(",\"source_ip\":");
        opt_string(&mut out, self.source_ip.as_deref());
        out.push_str(",\"target_id\":");
        opt_string(&mut out, self.target_id.as_deref());
        out.push_str(",\"target_type\":");
        opt_string(&mut out, self.target_type.as_deref());
        out.push('}');
        out.into_bytes()
    }

    /// The RFC 9162 leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_bytes())
    }
}

fn opt_uuid(out: &mut String, v: Option<uuid::Uuid>) {
    match v {
        // `Display` of a uuid is the lower-case hyphenated form.
        Some(u) => {
            let _ = write!(out, "\"{}\"", u.hyphenated());
        }
        None => out.push_str("null"),
    }
}

fn opt_string(out: &mut String, v: Option<&str>) {
    match v {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON string as RFC 8785 §3.2.2.2 serialises it.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// If `bytes` are exactly the canonical encoding of some event, its index; `None` otherwise.
///
/// Equivalent to parsing the bytes and comparing them with [`AuditLeaf::canonical_bytes`] of
/// the result, but a single pass without allocation: the verifier's hot path, where the bytes
/// themselves are then hashed.
pub fn canonical_index(bytes: &[u8]) -> Option<u64> {
    // Raw bytes of 0x80 and above must form valid UTF-8, as the encoder's output does.
    std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { b: bytes, i: 0 };
    s.lit(b"{\"action\":")?;
    s.string()?;
    s.lit(b",\"actor_device_id\":")?;
    s.opt_uuid()?;
    s.lit(b",\"actor_user_id\":")?;
    s.opt_uuid()?;
    s.lit(b",\"detail\":")?;
    s.string()?;
    s.lit(b",\"idx\":")?;
    let idx = s.digits()?;
    s.lit(b",\"occurred_at\":")?;
    let negative = s.lit(b"-").is_some();
    let magnitude = s.digits()?;
    // i64 range, and no "-0".
    let fits = if negative { magnitude != 0 && magnitude <= 1 << 63 } else { magnitude < 1 << 63 };
    if !fits {
        return None;
    }
    s.lit(b",\"org_id\":")?;
    s.opt_uuid()?;
    s.lit(b",\"outcome\":")?;
    s.string()?;
    s.lit(b",\"patient_id\":")?;
    s.opt_uuid()?;
    for key in [&b",\"request_id\":"[..], b",\"source_ip\":", b",\"target_id\":", b",\"target_type\":"] {
        s.lit(key)?;
        s.opt_string()?;
    }
    s.lit(b"}")?;
    (s.i == bytes.len()).then_some(idx)
}

/// A cursor over canonical bytes; each method consumes one token or fails.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn lit(&mut self, expected: &[u8]) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(expected) {
            self.i += expected.len();
            Some(())
        } else {
            None
        }
    }

    /// A string as [`string`] writes it: only the escapes it emits, no raw control characters.
    fn string(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        loop {
            // Jump to the next quote or backslash; the bytes skipped must hold no control
            // character (a test the compiler vectorises), which is what makes this fast.
            let skip = memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
            if self.b[self.i..self.i + skip].iter().any(|&c| c < 0x20) {
                return None;
            }
            self.i += skip;
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    match *self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 2,
                        b'u' => {
                            // Only `\u00xx`, lower-case hex, for controls without a short form.
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let digit = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            if &hex[..2] != b"00" {
                                return None;
                            }
                            let value = digit(hex[2])? << 4 | digit(hex[3])?;
                            if value >= 0x20 || matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                // memchr2 stopped at one of the two bytes above.
                _ => return None,
            }
        }
    }

    fn opt_string(&mut self) -> Option<()> {
        if self.lit(b"null").is_some() { Some(()) } else { self.string() }
    }

    /// `null` or a quoted lower-case hyphenated uuid.
    fn opt_uuid(&mut self) -> Option<()> {
        if self.lit(b"null").is_some() {
            return Some(());
        }
        let quoted = self.b.get(self.i..self.i + 38)?;
        let well_formed = quoted[0] == b'"'
            && quoted[37] == b'"'
            && quoted[1..37].iter().enumerate().all(|(k, &c)| match k {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            });
        well_formed.then(|| self.i += 38)
    }

    /// A non-negative decimal integer without leading zeroes that fits in a u64.
    fn digits(&mut self) -> Option<u64> {
        let start = self.i;
        let mut value = 0u64;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        (len > 0 && (len == 1 || self.b[start] != b'0')).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The worked example of `docs/audit-log.md`.
    pub(crate) fn example() -> AuditLeaf {
        AuditLeaf {
            idx: 7,
            occurred_at: 1_767_225_600_000,
            org_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708192".parse().unwrap()),
            actor_user_id: Some("0192F0A4-6C1E-7D2A-9B3C-4D5E6F708193".parse().unwrap()),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: "success".into(),
            target_type: Some("conversation".into()),
            target_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708194".into()),
            patient_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708195".parse().unwrap()),
            source_ip: Some("10.0.0.5".into()),
            request_id: None,
            detail: r#"{"count":3,"reason":"consult"}"#.into(),
        }
    }

    #[test]
    fn worked_example_matches_the_documentation() {
        let leaf = example();
        let bytes = String::from_utf8(leaf.canonical_bytes()).unwrap();
        assert_eq!(
            bytes,
            r#"{"action":"message.read","actor_device_id":null,"actor_user_id":"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708193","detail":"{\"count\":3,\"reason\":\"consult\"}","idx":7,"occurred_at":1767225600000,"org_id":"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708192","outcome":"success","patient_id":"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708195","request_id":null,"source_ip":"10.0.0.5","target_id":"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708194","target_type":"conversation"}"#
        );
        assert_eq!(format!("{:?}", leaf.leaf_hash()), EXAMPLE_LEAF_HASH);
    }

    /// Hex of the worked example's leaf hash (also in `docs/audit-log.md`).
    const EXAMPLE_LEAF_HASH: &str = "4d92aaf47fb9ff1a54782277a763f508f644a1865c93666556816a5c87bae696";

    #[test]
    fn canonical_index_edges() {
        let mut leaf = example();
        for (idx, occurred_at) in [(0, 0), (u64::MAX, i64::MIN), (1, i64::MAX), (10, -1)] {
            leaf.idx = idx;
            leaf.occurred_at = occurred_at;
            assert_eq!(canonical_index(&leaf.canonical_bytes()), Some(idx));
        }
        let text = String::from_utf8(example().canonical_bytes()).unwrap();
        for bad in [
            text.replace("\"idx\":7", "\"idx\":07"),
            text.replace("\"idx\":7", "\"idx\":18446744073709551616"),
            text.replace("1767225600000", "-0"),
            text.replace("1767225600000", "9223372036854775808"),
            text.replace("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708193", "0192F0A4-6C1E-7D2A-9B3C-4D5E6F708193"),
            text.replace("10.0.0.5", "10.0.0\\u002e5"),
            text.replace("10.0.0.5", "10.0.0\\/5"),
            text.replace("10.0.0.5", "10.0.0\\u000a5"),
            text.replace("10.0.0.5", "10.0.0\t5"),
            format!("{text} "),
            text[..text.len() - 1].to_owned(),
        ] {
            assert_eq!(canonical_index(bad.as_bytes()), None, "{bad}");
        }
        let with_control = text.replace("10.0.0.5", "10.0.0\\u001f5");
        assert_eq!(canonical_index(with_control.as_bytes()), Some(7));
    }

    #[test]
    fn strings_are_escaped_as_jcs_does() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\u{8}\t\n\u{c}\r\u{1}\u{1f}é€😀/\u{7f}");
        assert_eq!(s, "\"a\\\"b\\\\c\\b\\t\\n\\f\\r\\u0001\\u001fé€😀/\u{7f}\"");
    }

    fn opt<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        prop::option::of(s)
    }

    fn uuid() -> impl Strategy<Value = uuid::Uuid> {
        any::<u128>().prop_map(uuid::Uuid::from_u128)
    }

    prop_compose! {
        fn arb_leaf()(
            idx in 0u64..(1 << 53),
            occurred_at in any::<i64>(),
            ids in (opt(uuid()), opt(uuid()), opt(uuid()), opt(uuid())),
            action in "\\PC{0,12}",
            outcome in "[a-z\"\\\\\\x00-\\x1f]{0,8}",
            texts in (opt("\\PC{0,8}"), opt(".{0,8}"), opt("[0-9.:]{0,15}"), opt("[ -~]{0,8}")),
            detail in "\\PC{0,20}",
        ) -> AuditLeaf {
            AuditLeaf {
                idx,
                occurred_at,
                org_id: ids.0,
                actor_user_id: ids.1,
                actor_device_id: ids.2,
                action,
                outcome,
                target_type: texts.0,
                target_id: texts.1,
                patient_id: ids.3,
                source_ip: texts.2,
                request_id: texts.3,
                detail,
            }
        }
    }

    proptest! {
        /// Deterministic, valid JSON, already in canonical form (serde_json's default map is
        /// sorted and it writes no whitespace), and it decodes back to the same fields.
        #[test]
        fn encoding_is_canonical_json(leaf in arb_leaf()) {
            let bytes = leaf.canonical_bytes();
            prop_assert_eq!(&bytes, &leaf.canonical_bytes());
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(serde_json::to_vec(&value).unwrap(), bytes.clone());
            let back: AuditLeaf = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, leaf);
        }

        /// serde's JSON of a leaf is its canonical encoding (the fields are in key order).
        #[test]
        fn serde_json_is_the_canonical_encoding(leaf in arb_leaf()) {
            prop_assert_eq!(serde_json::to_vec(&leaf).unwrap(), leaf.canonical_bytes());
        }

        /// Different rows never share an encoding (it decodes back, so it is injective) or,
        /// in practice, a leaf hash.
        #[test]
        fn different_rows_encode_differently(a in arb_leaf(), b in arb_leaf()) {
            prop_assume!(a != b);
            prop_assert_ne!(a.canonical_bytes(), b.canonical_bytes());
            prop_assert_ne!(a.leaf_hash(), b.leaf_hash());
        }

        /// The allocation-free check accepts every canonical encoding, with its index.
        #[test]
        fn canonical_index_accepts_every_encoding(leaf in arb_leaf()) {
            prop_assert_eq!(canonical_index(&leaf.canonical_bytes()), Some(leaf.idx));
        }

        /// ...and, after any one byte changed, accepts exactly what parsing and re-encoding
        /// accepts (the slow, obviously right definition).
        #[test]
        fn canonical_index_agrees_with_parse_and_reencode(leaf in arb_leaf(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
            let mut bytes = leaf.canonical_bytes();
            let at = at.index(bytes.len());
            bytes[at] = to;
            let slow = serde_json::from_slice::<AuditLeaf>(&bytes).ok().filter(|l| l.canonical_bytes() == bytes).map(|l| l.idx);
            prop_assert_eq!(canonical_index(&bytes), slow);
        }

        /// Changing any one field changes the bytes.
        #[test]
        fn every_field_counts(leaf in arb_leaf(), field in 0usize..13) {
            let mut other = leaf.clone();
            match field {
                0 => other.idx ^= 1,
                1 => other.occurred_at ^= 1,
                2 => other.org_id = flip_uuid(other.org_id),
                3 => other.actor_user_id = flip_uuid(other.actor_user_id),
                4 => other.actor_device_id = flip_uuid(other.actor_device_id),
                5 => other.action.push('x'),
                6 => other.outcome.push('x'),
                7 => other.target_type = flip_string(other.target_type),
                8 => other.target_id = flip_string(other.target_id),
                9 => other.patient_id = flip_uuid(other.patient_id),
                10 => other.source_ip = flip_string(other.source_ip),
                11 => other.request_id = flip_string(other.request_id),
                _ => other.detail.push(' '),
            }
            prop_assert_ne!(leaf.canonical_bytes(), other.canonical_bytes());
        }
    }

    fn flip_uuid(u: Option<uuid::Uuid>) -> Option<uuid::Uuid> {
        match u {
            None => Some(uuid::Uuid::nil()),
            Some(u) if u.is_nil() => None,
            Some(u) => Some(uuid::Uuid::from_u128(u.as_u128() ^ 1)),
        }
    }

    fn flip_string(s: Option<String>) -> Option<String> {
        match s {
            None => Some(String::new()),
            Some(s) => Some(s + "x"),
        }
    }
}
