//! Login names, passwords, organisation slugs and display names, each parsed once at the edge.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A unique login name: lower-case letters, digits and `._@+-`, 3 to 254 characters.
///
/// Names are case-folded on parsing so `Dr.Adams@Clinic` and `dr.adams@clinic` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LoginName(String);

impl LoginName {
    /// Parses and case-folds a login name.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let folded = raw.trim().to_ascii_lowercase();
        if !(3..=254).contains(&folded.len()) {
            return Err(DomainError::invalid("login", "must be 3 to 254 characters"));
        }
        if !folded.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@+-".contains(&b)) {
            return Err(DomainError::invalid("login", "may use only letters, digits and . _ @ + -"));
        }
        Ok(Self(folded))
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LoginName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LoginName> for String {
    fn from(l: LoginName) -> Self {
        l.0
    }
}

impl std::fmt::Display for LoginName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password that satisfies the policy (NIST SP 800-63B: length, not composition rules).
///
/// Its `Debug` output is redacted so it cannot reach a log by accident.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    /// The shortest password accepted.
    pub const MIN_CHARS: usize = 12;
    /// The longest password accepted; bounds the hashing work an attacker can cause.
    pub const MAX_BYTES: usize = 1024;

    /// Checks a candidate password against the policy.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(DomainError::invalid("password", "must be at least 12 characters"));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(DomainError::invalid("password", "must be at most 1024 bytes"));
        }
        if raw.chars().any(char::is_control) {
            return Err(DomainError::invalid("password", "must not contain control characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// An organisation's short name: lower-case letters, digits and `-`, 2 to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Parses a slug.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok_len = (2..=63).contains(&raw.len());
        let ok_chars = raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_len || !ok_chars || raw.starts_with('-') || raw.ends_with('-') {
            return Err(DomainError::invalid("slug", "must be 2 to 63 lower-case letters, digits or inner hyphens"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgSlug {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OrgSlug> for String {
    fn from(s: OrgSlug) -> Self {
        s.0
    }
}

/// Checks a short human-readable name (display names, organisation names, conversation titles):
/// 1 to `max` characters after trimming, no control characters.
pub fn parse_label(field: &'static str, raw: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(DomainError::invalid(field, "is too long"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_are_case_folded_and_checked() {
        assert_eq!(LoginName::parse(" Dr.Adams@Clinic ").unwrap().as_str(), "dr.adams@clinic");
        assert!(LoginName::parse("ab").is_err());
        assert!(LoginName::parse("no spaces").is_err());
        assert!(LoginName::parse("émile").is_err());
        assert!(LoginName::parse(&"a".repeat(255)).is_err());
    }

    #[test]
    fn passwords_need_length_not_composition() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse("correct horse battery").is_ok());
        assert!(NewPassword::parse(&"x".repeat(1025)).is_err());
        assert!(NewPassword::parse("twelve chars\u{0}!").is_err());
        assert_eq!(format!("{:?}", NewPassword::parse("correct horse battery").unwrap()), "NewPassword(<redacted>)");
    }

    #[test]
    fn slugs_and_labels() {
        assert!(OrgSlug::parse("demo-clinic").is_ok());
        assert!(OrgSlug::parse("-x").is_err());
        assert!(OrgSlug::parse("Demo").is_err());
        assert_eq!(parse_label("title", "  Ward 4  ", 10).unwrap(), "Ward 4");
        assert!(parse_label("title", "   ", 10).is_err());
        assert!(parse_label("title", "a\u{7}b", 10).is_err());
        assert!(parse_label("title", "abcdefghijk", 10).is_err());
    }
}
