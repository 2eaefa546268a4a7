//! RFC 5424 syslog messages for audit events and checkpoints, framed for RFC 5425 (TLS)
//! transport by octet counting (RFC 5425 §4.3, RFC 6587 §3.4.1).
//!
//! Pure functions, no I/O: the sink task in the parent module sends what these build.

use std::fmt::Write as _;

use ward_store::{AuditRecord, StoredCheckpoint};

/// The UTF-8 byte order mark that starts a MSG known to be UTF-8 (RFC 5424 §6.4).
pub const BOM: &str = "\u{feff}";

/// The MSGID of a checkpoint message. Action names are dotted (`area.verb`), so this undotted
/// name cannot collide with one.
pub const CHECKPOINT_MSGID: &str = "checkpoint";

/// The facility names of RFC 5424 §6.2.1 (Table 1) as syslog daemons spell them, by code.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// The facility code of a name from [`FACILITIES`].
pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().position(|f| f.eq_ignore_ascii_case(name)).map(|i| i as u8)
}

/// Severities (RFC 5424 §6.2.1, Table 2).
const WARNING: u8 = 4;
const NOTICE: u8 = 5;
const INFORMATIONAL: u8 = 6;

/// The severity of an event by its outcome: a refusal by policy is what a SIEM watches for,
/// a failed attempt (wrong password, bad code) is notable, a success is routine.
pub fn severity(outcome: &str) -> u8 {
    match outcome {
        "success" => INFORMATIONAL,
        "denied" => WARNING,
        _ => NOTICE,
    }
}

/// Whether `s` may be a HOSTNAME, APP-NAME, PROCID or MSGID: 1 to `max` characters of
/// PRINTUSASCII (`%d33-126`, RFC 5424 §6).
pub fn is_header_field(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

/// Whether `s` may be an SD-NAME (SD-ID or PARAM-NAME): 1 to 32 printable ASCII characters
/// except `=`, space, `]` and `"` (RFC 5424 §6.3).
pub fn is_sd_name(s: &str) -> bool {
    is_header_field(s, 32) && !s.bytes().any(|b| matches!(b, b'=' | b']' | b'"'))
}

/// Appends a PARAM-VALUE with `"`, `\` and `]` escaped by a backslash (RFC 5424 §6.3.3); every
/// other character, including control characters and non-ASCII, is its own UTF-8.
pub fn escape_param_value(out: &mut String, value: &str) {
    for ch in value.chars() {
        if matches!(ch, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(ch);
    }
}

/// The fields every message of one sender shares.
#[derive(Debug, Clone)]
pub struct Header {
    /// Facility code, 0 to 23.
    pub facility: u8,
    /// HOSTNAME (already checked with [`is_header_field`]).
    pub hostname: String,
    /// APP-NAME (already checked).
    pub app_name: String,
    /// PROCID: the server's process id.
    pub procid: String,
    /// SD-ID of event elements, e.g. `ward-audit@32473`.
    pub event_sd_id: String,
    /// SD-ID of checkpoint elements, e.g. `ward-checkpoint@32473`.
    pub checkpoint_sd_id: String,
}

impl Header {
    /// The header for a private enterprise number (see `audit.syslog.enterprise_number`).
    pub fn new(facility: u8, hostname: String, app_name: String, enterprise_number: u32) -> Self {
        Self {
            facility,
            hostname,
            app_name,
            procid: std::process::id().to_string(),
            event_sd_id: format!("ward-audit@{enterprise_number}"),
            checkpoint_sd_id: format!("ward-checkpoint@{enterprise_number}"),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID ` (with the trailing space).
    fn start(&self, out: &mut String, severity: u8, unix_ms: i64, msgid: &str) {
        let pri = u16::from(self.facility) * 8 + u16::from(severity);
        let msgid = if is_header_field(msgid, 32) { msgid } else { "-" };
        let _ = write!(out, "<{pri}>1 {} {} {} {} {msgid} ", timestamp(unix_ms), self.hostname, self.app_name, self.procid);
    }

    /// The message for one audit event: MSGID is the action, the structured data names the
    /// event (index, action, outcome, ids, leaf hash), and MSG is the canonical leaf encoding
    /// (`docs/audit-log.md`), from which the receiver can recompute the leaf hash.
    pub fn event(&self, r: &AuditRecord) -> String {
        let leaf = r.leaf();
        let canonical = leaf.canonical_bytes();
        let mut out = String::with_capacity(256 + canonical.len() * 2);
        self.start(&mut out, severity(&r.outcome), r.occurred_at, &r.action);
        let _ = write!(out, "[{}", self.event_sd_id);
        param(&mut out, "idx", &r.idx.to_string());
        param(&mut out, "action", &r.action);
        param(&mut out, "outcome", &r.outcome);
        let uuid = |u: Option<uuid::Uuid>| u.map(|u| u.hyphenated().to_string());
        for (name, value) in [
            ("org", uuid(r.org_id)),
            ("actor", uuid(r.actor_user_id)),
            ("device", uuid(r.actor_device_id)),
            ("target_type", r.target_type.clone()),
            ("target", r.target_id.clone()),
            ("patient", uuid(r.patient_id)),
        ] {
            if let Some(v) = value {
                param(&mut out, name, &v);
            }
        }
        param(&mut out, "leaf", &leaf.leaf_hash().to_string());
        out.push_str("] ");
        out.push_str(BOM);
        // The canonical encoding is built from `String`s, so it is UTF-8.
        out.push_str(&String::from_utf8_lossy(&canonical));
        out
    }

    /// The message for a signed checkpoint: MSGID [`CHECKPOINT_MSGID`], structured data with
    /// origin, size and root, and MSG the whole signed note, verbatim.
    pub fn checkpoint(&self, cp: &StoredCheckpoint) -> String {
        let mut out = String::with_capacity(256 + cp.note.len() * 2);
        self.start(&mut out, NOTICE, cp.created_at, CHECKPOINT_MSGID);
        let _ = write!(out, "[{}", self.checkpoint_sd_id);
        param(&mut out, "origin", cp.note.lines().next().unwrap_or_default());
        param(&mut out, "size", &cp.tree_size.to_string());
        if let Ok(root) = cp.root() {
            param(&mut out, "root", &root.to_string());
        }
        out.push_str("] ");
        out.push_str(BOM);
        out.push_str(&cp.note);
        out
    }
}

fn param(out: &mut String, name: &str, value: &str) {
    debug_assert!(is_sd_name(name));
    let _ = write!(out, " {name}=\"");
    escape_param_value(out, value);
    out.push('"');
}

/// An RFC 5424 TIMESTAMP in UTC with milliseconds (`2026-01-01T00:00:00.000Z`); the
/// NILVALUE `-` for a time outside the years 0 to 9999, which the format cannot hold.
pub fn timestamp(unix_ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".into())
}

/// Appends one message with octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A strict reading of one PARAM-VALUE body (after the opening quote): returns the value
    /// and the rest after the closing quote. A backslash before anything but `"`, `\` or `]`
    /// stays a backslash (RFC 5424 §6.3.3); an unescaped `]` or `"` ends or breaks it.
    fn unescape(s: &str) -> Option<(String, &str)> {
        let mut out = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match s[i + 1..].chars().next() {
                    Some(n @ ('"' | '\\' | ']')) => {
                        out.push(n);
                        chars.next();
                    }
                    _ => out.push('\\'),
                },
                '"' => return Some((out, &s[i + 1..])),
                ']' => return None,
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        /// Any string survives escaping: the strict reader gets it back and the value ends
        /// exactly at its closing quote, whatever follows.
        #[test]
        fn param_values_round_trip(value in "\\PC*|[\"\\\\\\]a ]{0,12}", tail in "[\\] \"a]{0,3}") {
            let mut escaped = String::new();
            escape_param_value(&mut escaped, &value);
            let text = format!("{escaped}\"{tail}");
            let (back, rest) = unescape(&text).expect("well formed");
            prop_assert_eq!(back, value);
            prop_assert_eq!(rest, tail.as_str());
        }
    }

    #[test]
    fn escaping_touches_only_the_three_characters() {
        let mut s = String::new();
        escape_param_value(&mut s, r#"a"b\c]d[e=f é"#);
        assert_eq!(s, r#"a\"b\\c\]d[e=f é"#);
    }

    #[test]
    fn facilities_severities_and_names() {
        assert_eq!(facility_code("authpriv"), Some(10));
        assert_eq!(facility_code("LOCAL7"), Some(23));
        assert_eq!(facility_code("kern"), Some(0));
        assert_eq!(facility_code("security"), None);
        assert_eq!((severity("success"), severity("failure"), severity("denied")), (6, 5, 4));
        assert!(is_sd_name("ward-audit@32473"));
        assert!(!is_sd_name("a=b") && !is_sd_name("a b") && !is_sd_name("") && !is_sd_name(&"x".repeat(33)));
        assert!(is_header_field("message.read", 32) && !is_header_field("é", 32));
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(timestamp(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_767_225_600_042), "2026-01-01T00:00:00.042Z");
        assert_eq!(timestamp(i64::MAX), "-");
        assert_eq!(timestamp(-62_167_219_200_001), "-");
    }

    #[test]
    fn an_event_message_is_exact() {
        let r = AuditRecord {
            idx: 7,
            occurred_at: 1_767_225_600_000,
            org_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708192".parse().unwrap()),
            actor_user_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708193".parse().unwrap()),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: "denied".into(),
            target_type: Some("conversation".into()),
            target_id: Some("x\"]\\".into()),
            patient_id: Some("0192f0a4-6c1e-7d2a-9b3c-4d5e6f708195".parse().unwrap()),
            source_ip: Some("10.0.0.5".into()),
            request_id: None,
            detail: r#"{"count":3}"#.into(),
        };
        let h = Header { procid: "42".into(), ..Header::new(10, "host".into(), "ward".into(), 32473) };
        let m = h.event(&r);
        let leaf = r.leaf();
        let expected = format!(
            "<84>1 2026-01-01T00:00:00.000Z host ward 42 message.read [ward-audit@32473 idx=\"7\" action=\"message.read\" \
             outcome=\"denied\" org=\"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708192\" actor=\"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708193\" \
             target_type=\"conversation\" target=\"x\\\"\\]\\\\\" patient=\"0192f0a4-6c1e-7d2a-9b3c-4d5e6f708195\" leaf=\"{}\"] \u{feff}{}",
            leaf.leaf_hash(),
            String::from_utf8(leaf.canonical_bytes()).unwrap()
        );
        assert_eq!(m, expected);
        let mut framed = Vec::new();
        frame(&mut framed, &m);
        assert_eq!(framed, format!("{} {m}", m.len()).into_bytes());
    }
}
