//! The verified contact directory: phone numbers and email addresses of users and patients,
//! their normal forms, and when Ward may send to one. See `docs/devices.md` (verified contact
//! directory).
//!
//! A contact may receive anything only while it is verified (a one-time code sent to it was
//! confirmed), fresh (verified within the organisation's re-verification period), not
//! suppressed (no bounce or disconnection reported since) and not claimed by another person.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Days after verification before a contact must be verified again, unless the organisation
/// sets another period.
pub const DEFAULT_REVERIFY_DAYS: u32 = 90;
/// The longest re-verification period an organisation may set.
pub const MAX_REVERIFY_DAYS: u32 = 730;
/// Digits in a verification code.
pub const CODE_DIGITS: usize = 6;
/// How long a verification code is valid.
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Wrong codes before a challenge is locked (a new code must be requested).
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Verification codes a contact may be sent per [`CODE_WINDOW_MS`]: with
/// [`MAX_CODE_ATTEMPTS`] each, at most 25 guesses a day at a one-in-a-million code.
pub const MAX_CODES_PER_WINDOW: i64 = 5;
/// The window [`MAX_CODES_PER_WINDOW`] counts in.
pub const CODE_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Verification codes one person may have sent (to any contacts) per [`CODE_WINDOW_MS`]:
/// removing and re-adding a contact must not turn Ward into a free SMS pump.
pub const MAX_CODES_PER_ACTOR: i64 = 20;
/// Contacts one user or patient may have.
pub const MAX_CONTACTS_PER_OWNER: i64 = 20;
/// The longest email address (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// What kind of address a contact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    /// A phone number in E.164 form (`+` and 8 to 15 digits).
    Phone,
    /// An email address.
    Email,
}

impl ContactKind {
    /// Both kinds.
    pub const ALL: [ContactKind; 2] = [ContactKind::Phone, ContactKind::Email];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Phone => "phone",
            ContactKind::Email => "email",
        }
    }

    /// The kind with this spelling.
    pub fn parse(s: &str) -> Option<ContactKind> {
        ContactKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The normal form of `raw` for this kind, or why it is not acceptable (never echoing it).
    pub fn normalize(self, raw: &str) -> Result<String, DomainError> {
        match self {
            ContactKind::Phone => normalize_phone(raw),
            ContactKind::Email => normalize_email(raw),
        }
    }
}

/// Why delivery feedback suppressed a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// A message to it bounced (hard bounce, unknown mailbox or number).
    Bounce,
    /// The carrier reports the number disconnected (it may be reassigned to someone else).
    Disconnected,
    /// The recipient reported the message as unwanted.
    Complaint,
}

impl SuppressReason {
    /// Every reason.
    pub const ALL: [SuppressReason; 3] = [SuppressReason::Bounce, SuppressReason::Disconnected, SuppressReason::Complaint];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::Bounce => "bounce",
            SuppressReason::Disconnected => "disconnected",
            SuppressReason::Complaint => "complaint",
        }
    }

    /// The reason with this spelling.
    pub fn parse(s: &str) -> Option<SuppressReason> {
        SuppressReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a contact stands now; only [`ContactStatus::Verified`] may be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    /// Never verified, or re-verification started and not yet confirmed after a suppression.
    Unverified,
    /// Verified within the re-verification period.
    Verified,
    /// Verified longer ago than the re-verification period: must be verified again.
    Expired,
    /// Delivery feedback (bounce, disconnection, complaint) suppressed it since its last
    /// verification.
    Suppressed,
    /// Another person of the organisation claims the same value.
    Conflict,
}

impl ContactStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Unverified => "unverified",
            ContactStatus::Verified => "verified",
            ContactStatus::Expired => "expired",
            ContactStatus::Suppressed => "suppressed",
            ContactStatus::Conflict => "conflict",
        }
    }

    /// Whether Ward may send to a contact in this state.
    pub fn sendable(self) -> bool {
        self == ContactStatus::Verified
    }
}

/// What decides a contact's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactFacts {
    /// When it was last verified (Unix ms).
    pub verified_at: Option<i64>,
    /// When delivery feedback last suppressed it (Unix ms).
    pub suppressed_at: Option<i64>,
    /// Whether another person claims the same value.
    pub conflict: bool,
}

/// The status of a contact at `now` under a re-verification period of `reverify_days`.
/// Conflict outranks suppression, which outranks age: each needs a different remedy.
pub fn status(facts: ContactFacts, now_ms: i64, reverify_days: u32) -> ContactStatus {
    if facts.conflict {
        return ContactStatus::Conflict;
    }
    match (facts.verified_at, facts.suppressed_at) {
        (_, Some(s)) if facts.verified_at.is_none_or(|v| s >= v) => ContactStatus::Suppressed,
        (None, _) => ContactStatus::Unverified,
        (Some(v), _) if now_ms - v > i64::from(reverify_days) * 86_400_000 => ContactStatus::Expired,
        (Some(_), _) => ContactStatus::Verified,
    }
}

/// A re-verification period an organisation may set (1 to [`MAX_REVERIFY_DAYS`] days).
pub fn check_reverify_days(days: u32) -> Result<u32, DomainError> {
    if (1..=MAX_REVERIFY_DAYS).contains(&days) { Ok(days) } else { Err(DomainError::invalid("reverify_days", "must be between 1 and 730")) }
}

/// A verification code as the user types it: exactly [`CODE_DIGITS`] ASCII digits, spaces
/// ignored.
pub fn parse_code(raw: &str) -> Result<String, DomainError> {
    let code: String = raw.chars().filter(|c| *c != ' ').collect();
    if code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(DomainError::invalid("code", "must be 6 digits"))
    }
}

/// The text of a verification message: PHI-free by construction (a fixed sentence and the
/// code), so it passes the outbound content policy.
pub fn verification_text(code: &str) -> String {
    format!("Your Ward verification code is {code}. It expires in 10 minutes. Do not share it.")
}

/// A strict E.164 number: `+`, a country code not starting with 0, 8 to 15 digits in all.
/// Spaces, hyphens, dots and parentheses between digits are dropped (as people write
/// numbers); anything else, a missing `+` (no national formats: Ward cannot guess the
/// country) or a wrong length is refused. The number's assignment is not checked (no
/// numbering-plan metadata): verification by code proves it reaches its owner.
fn normalize_phone(raw: &str) -> Result<String, DomainError> {
    let bad = |rule| Err(DomainError::invalid("value", rule));
    let trimmed = raw.trim();
    let Some(rest) = trimmed.strip_prefix('+') else {
        return bad("a phone number must be in international E.164 form, starting with + and the country code");
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return bad("a phone number may hold only digits after the +, with spaces, hyphens, dots or parentheses"),
        }
    }
    if !(8..=15).contains(&digits.len()) {
        return bad("a phone number has 8 to 15 digits in E.164 form");
    }
    if digits.starts_with('0') {
        return bad("a country code never starts with 0");
    }
    Ok(format!("+{digits}"))
}

/// A conservative check of an email address, lowercased whole (providers treat the local
/// part case-insensitively in practice, and one spelling per address keeps "claimed by two
/// people" honest): `local@domain`, local part of RFC 5322 dot-atoms (letters, digits and
/// ``!#$%&'*+/=?^_`{|}~-``, dots only between them, at most 64), domain of at least two
/// LDH labels of 1 to 63 with an alphabetic top-level label, at most 254 in all. Quoted local
/// parts, comments, IP literals and non-ASCII (internationalised) addresses are refused.
fn normalize_email(raw: &str) -> Result<String, DomainError> {
    let bad = |rule| Err(DomainError::invalid("value", rule));
    let addr = raw.trim().to_ascii_lowercase();
    if addr.is_empty() || addr.len() > MAX_EMAIL_LEN || !addr.is_ascii() {
        return bad("an email address is 3 to 254 ASCII characters");
    }
    let Some((local, domain)) = addr.split_once('@') else { return bad("an email address needs one @") };
    if domain.contains('@') {
        return bad("an email address needs one @");
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local.is_empty() || local.len() > 64 || local.split('.').any(|p| p.is_empty() || !p.chars().all(atext)) {
        return bad("the part before @ must be 1 to 64 letters, digits or permitted symbols, with dots only between them");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return bad("the domain must be at least two labels of letters, digits and hyphens");
    }
    if !labels.last().is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic())) {
        return bad("the top-level domain must be letters");
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_e164_or_are_refused() {
        let p = ContactKind::Phone;
        assert_eq!(p.normalize("+1 (415) 555-2671").unwrap(), "+14155552671");
        assert_eq!(p.normalize(" +44.20.7946.0958 ").unwrap(), "+442079460958");
        for bad in ["4155552671", "+0155552671", "+1234567", "+1234567890123456", "+1 415 555 267x", "", "+", "++14155552671"] {
            assert!(p.normalize(bad).is_err(), "{bad:?} accepted");
        }
        let e = p.normalize("555-CALL-NOW").unwrap_err().to_string();
        assert!(!e.contains("CALL"), "the error echoes the value: {e}");
    }

    #[test]
    fn emails_normalise_lowercased_or_are_refused() {
        let e = ContactKind::Email;
        assert_eq!(e.normalize(" Jamie.Doe+ward@Example.ORG ").unwrap(), "jamie.doe+ward@example.org");
        assert_eq!(e.normalize("a@b.co").unwrap(), "a@b.co");
        for bad in [
            "plain",
            "a@b",
            "a@@b.org",
            "a@b@c.org",
            ".a@b.org",
            "a..b@b.org",
            "a@-b.org",
            "a@b.o",
            "a@b.123",
            "\"q\"@b.org",
            "a b@c.org",
            "jörg@b.org",
            "a@[127.0.0.1]",
        ] {
            assert!(e.normalize(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@b.org", "a".repeat(65));
        assert!(e.normalize(&long).is_err());
    }

    #[test]
    fn status_needs_fresh_unsuppressed_unclaimed_verification() {
        let day = 86_400_000;
        let now = 1_000 * day;
        let f = |verified_at, suppressed_at, conflict| ContactFacts { verified_at, suppressed_at, conflict };
        assert_eq!(status(f(None, None, false), now, 90), ContactStatus::Unverified);
        assert_eq!(status(f(Some(now - 89 * day), None, false), now, 90), ContactStatus::Verified);
        assert_eq!(status(f(Some(now - 91 * day), None, false), now, 90), ContactStatus::Expired);
        assert_eq!(status(f(Some(now - 91 * day), None, false), now, 120), ContactStatus::Verified);
        assert_eq!(status(f(Some(now - day), Some(now), false), now, 90), ContactStatus::Suppressed);
        // Verifying again after a suppression clears it.
        assert_eq!(status(f(Some(now), Some(now - day), false), now, 90), ContactStatus::Verified);
        assert_eq!(status(f(None, Some(now), false), now, 90), ContactStatus::Suppressed);
        assert_eq!(status(f(Some(now), None, true), now, 90), ContactStatus::Conflict);
        assert!(ContactStatus::Verified.sendable());
        assert!(!ContactStatus::Expired.sendable());
    }

    #[test]
    fn codes_are_six_digits_and_the_message_passes_as_plain_text() {
        assert_eq!(parse_code("123 456").unwrap(), "123456");
        assert!(parse_code("12345").is_err());
        assert!(parse_code("12345a").is_err());
        assert!(verification_text("123456").contains("123456"));
        assert!(check_reverify_days(0).is_err());
        assert_eq!(check_reverify_days(90).unwrap(), 90);
    }
}
