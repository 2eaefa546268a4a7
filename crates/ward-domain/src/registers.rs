//! Compliance registers as pure rules: published policies and their acknowledgment, the
//! business associate (BAA) vendor register with its expiry classification, and the risk
//! register scored as likelihood × impact (docs/compliance-registers.md).

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::login::parse_label;

/// Longest policy text, in characters.
pub const POLICY_TEXT_MAX: usize = 100_000;
/// Longest title or vendor name, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest free-text register field (services, data shared, risk description), in characters.
pub const NOTE_MAX: usize = 2_000;

/// What an organisation policy is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// The device security checklist users must keep.
    DeviceChecklist,
    /// The BYOD agreement granting the organisation remote-wipe authority over Ward's data.
    ByodWipeAuthority,
    /// Acceptable use of Ward and PHI.
    AcceptableUse,
    /// Anything else the organisation publishes.
    Other,
}

impl PolicyKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceChecklist => "device_checklist",
            Self::ByodWipeAuthority => "byod_wipe_authority",
            Self::AcceptableUse => "acceptable_use",
            Self::Other => "other",
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        [Self::DeviceChecklist, Self::ByodWipeAuthority, Self::AcceptableUse, Self::Other]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(DomainError::invalid("kind", "must be device_checklist, byod_wipe_authority, acceptable_use or other"))
    }
}

/// A validated policy version to publish: title and full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDraft {
    /// The title (one line).
    pub title: String,
    /// The full text users acknowledge (line breaks allowed).
    pub text: String,
}

impl PolicyDraft {
    /// Validates a title (one line, at most 200 characters) and a text (not blank, at most
    /// 100,000 characters, no control characters but line breaks and tabs).
    pub fn parse(title: &str, text: &str) -> Result<Self, DomainError> {
        let title = parse_label("title", title, TITLE_MAX)?;
        let text = parse_text("text", text, POLICY_TEXT_MAX)?;
        Ok(Self { title, text })
    }
}

/// Free text that may span lines: trimmed, not blank, at most `max` characters, no control
/// characters other than line breaks and tabs.
pub fn parse_text(field: &'static str, raw: &str, max: usize) -> Result<String, DomainError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(DomainError::invalid(field, "is too long"));
    }
    if t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(t.to_owned())
}

/// The state of a vendor's business associate agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BaaStatus {
    /// No agreement (the vendor must not receive PHI).
    None,
    /// Asked for, not yet signed.
    Requested,
    /// In force (needs `signed_on`).
    Signed,
    /// Ended.
    Terminated,
}

impl BaaStatus {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Signed => "signed",
            Self::Terminated => "terminated",
        }
    }
}

impl std::str::FromStr for BaaStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        [Self::None, Self::Requested, Self::Signed, Self::Terminated]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(DomainError::invalid("baa_status", "must be none, requested, signed or terminated"))
    }
}

/// Where a signed agreement stands against its renewal date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BaaExpiry {
    /// Signed, renewal more than the warning window away (or no renewal date).
    Active,
    /// Signed, renewal within the warning window.
    ExpiringSoon,
    /// Signed, renewal date passed.
    Expired,
    /// Not signed (none, requested or terminated): nothing to expire.
    NotInForce,
}

/// Classifies an agreement on `today` (all dates `YYYY-MM-DD`, compared as calendar dates):
/// expired once the renewal date has passed, expiring soon when it falls within
/// `warn_days` days from today (inclusive), active otherwise.
pub fn classify_baa(status: BaaStatus, renewal_on: Option<&str>, today: &str, warn_days: u32) -> BaaExpiry {
    if status != BaaStatus::Signed {
        return BaaExpiry::NotInForce;
    }
    let (Some(renewal), Some(today)) = (renewal_on.and_then(day_number), day_number(today)) else { return BaaExpiry::Active };
    if renewal < today {
        BaaExpiry::Expired
    } else if renewal - today <= i64::from(warn_days) {
        BaaExpiry::ExpiringSoon
    } else {
        BaaExpiry::Active
    }
}

/// Checks a calendar date written `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, raw: &str) -> Result<String, DomainError> {
    day_number(raw).map(|_| raw.to_owned()).ok_or(DomainError::invalid(field, "must be a date written YYYY-MM-DD"))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date; `None` if it is not a real date.
pub fn day_number(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s, format).ok()?;
    Some(i64::from(date.to_julian_day()) - i64::from(time::Date::from_calendar_date(1970, time::Month::January, 1).ok()?.to_julian_day()))
}

/// How many days before a BAA's renewal date Ward starts alerting.
pub const BAA_WARN_DAYS: u32 = 60;

/// A validated BAA register entry (everything but the owner, which the store checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorDraft {
    /// The vendor's name (one line).
    pub name: String,
    /// What the vendor does for the organisation.
    pub services: String,
    /// What data it receives (for example "PHI: appointment reminders").
    pub data_shared: String,
    /// The agreement's state.
    pub baa_status: BaaStatus,
    /// When it was signed (`YYYY-MM-DD`); required when signed.
    pub signed_on: Option<String>,
    /// When it must be renewed (`YYYY-MM-DD`), not before `signed_on`.
    pub renewal_on: Option<String>,
}

impl VendorDraft {
    /// Validates an entry: name one line (at most 200 characters), services and data shared
    /// (at most 2,000 characters), dates real `YYYY-MM-DD`, a signed agreement has a signing
    /// date, and renewal is not before signing.
    pub fn parse(
        name: &str,
        services: &str,
        data_shared: &str,
        baa_status: BaaStatus,
        signed_on: Option<&str>,
        renewal_on: Option<&str>,
    ) -> Result<Self, DomainError> {
        let name = parse_label("name", name, TITLE_MAX)?;
        let services = parse_text("services", services, NOTE_MAX)?;
        let data_shared = parse_text("data_shared", data_shared, NOTE_MAX)?;
        let signed_on = signed_on.map(|d| parse_date("signed_on", d)).transpose()?;
        let renewal_on = renewal_on.map(|d| parse_date("renewal_on", d)).transpose()?;
        if baa_status == BaaStatus::Signed && signed_on.is_none() {
            return Err(DomainError::invalid("signed_on", "is required when the BAA is signed"));
        }
        if let (Some(s), Some(r)) = (&signed_on, &renewal_on)
            && day_number(r) < day_number(s)
        {
            return Err(DomainError::invalid("renewal_on", "must not be before signed_on"));
        }
        Ok(Self { name, services, data_shared, baa_status, signed_on, renewal_on })
    }
}

/// A risk's state in the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskStatus {
    /// Identified, not yet treated.
    Open,
    /// Controls are being put in place.
    Mitigating,
    /// Accepted by management as it is.
    Accepted,
    /// No longer applies.
    Closed,
}

impl RiskStatus {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Mitigating => "mitigating",
            Self::Accepted => "accepted",
            Self::Closed => "closed",
        }
    }
}

impl std::str::FromStr for RiskStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        [Self::Open, Self::Mitigating, Self::Accepted, Self::Closed]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(DomainError::invalid("status", "must be open, mitigating, accepted or closed"))
    }
}

/// A validated risk register entry (everything but the owner, which the store checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskDraft {
    /// What could go wrong (at most 2,000 characters).
    pub description: String,
    /// 1 (rare) to 5 (almost certain).
    pub likelihood: u8,
    /// 1 (negligible) to 5 (severe).
    pub impact: u8,
    /// Its treatment state.
    pub status: RiskStatus,
    /// When it must next be reviewed (`YYYY-MM-DD`).
    pub review_on: String,
}

impl RiskDraft {
    /// Validates an entry: description not blank, ratings 1–5, review date a real date.
    pub fn parse(description: &str, likelihood: i64, impact: i64, status: RiskStatus, review_on: &str) -> Result<Self, DomainError> {
        Ok(Self {
            description: parse_text("risk", description, NOTE_MAX)?,
            likelihood: parse_rating("likelihood", likelihood)?,
            impact: parse_rating("impact", impact)?,
            status,
            review_on: parse_date("review_on", review_on)?,
        })
    }

    /// Likelihood × impact.
    pub fn score(&self) -> u8 {
        risk_score(self.likelihood, self.impact)
    }
}

/// A likelihood or impact rating on the documented 1–5 scale (1 rare/negligible … 5 almost
/// certain/severe).
pub fn parse_rating(field: &'static str, v: i64) -> Result<u8, DomainError> {
    u8::try_from(v).ok().filter(|r| (1..=5).contains(r)).ok_or(DomainError::invalid(field, "must be from 1 to 5"))
}

/// A risk's score: likelihood × impact, 1–25.
pub fn risk_score(likelihood: u8, impact: u8) -> u8 {
    likelihood.saturating_mul(impact)
}

/// Whether a risk's review is overdue on `today`: its review date passed and it is not closed.
pub fn review_overdue(status: RiskStatus, review_on: &str, today: &str) -> bool {
    status != RiskStatus::Closed && matches!((day_number(review_on), day_number(today)), (Some(r), Some(t)) if r < t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_kinds_and_drafts_validate() {
        assert_eq!("byod_wipe_authority".parse::<PolicyKind>().unwrap(), PolicyKind::ByodWipeAuthority);
        assert!("byod".parse::<PolicyKind>().is_err());
        let d = PolicyDraft::parse(" BYOD agreement ", "I agree.\n\nWard may wipe its data.").unwrap();
        assert_eq!(d.title, "BYOD agreement");
        assert!(d.text.contains('\n'));
        assert!(PolicyDraft::parse("", "x").is_err());
        assert!(PolicyDraft::parse("t", "  ").is_err());
        assert!(PolicyDraft::parse("t", "bad\u{7}bell").is_err());
        assert!(PolicyDraft::parse("t", &"x".repeat(POLICY_TEXT_MAX + 1)).is_err());
        assert!(PolicyDraft::parse("two\nlines", "x").is_err());
    }

    #[test]
    fn dates_are_real_calendar_dates() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2000-03-01").unwrap() - day_number("2000-02-28").unwrap(), 2);
        assert_eq!(day_number("2026-12-31").unwrap() - day_number("2026-01-01").unwrap(), 364);
        for bad in ["2026-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "26-01-01xx", "2026/01/01", "+026-01-01"] {
            assert!(parse_date("d", bad).is_err(), "{bad}");
        }
        assert!(parse_date("d", "2024-02-29").is_ok());
    }

    #[test]
    fn baa_expiry_is_classified_against_the_window() {
        let c = |status, renewal: Option<&str>| classify_baa(status, renewal, "2026-12-01", 30);
        assert_eq!(c(BaaStatus::Signed, Some("2027-06-01")), BaaExpiry::Active);
        assert_eq!(c(BaaStatus::Signed, Some("2026-12-31")), BaaExpiry::ExpiringSoon);
        assert_eq!(c(BaaStatus::Signed, Some("2027-01-01")), BaaExpiry::Active);
        assert_eq!(c(BaaStatus::Signed, Some("2026-12-01")), BaaExpiry::ExpiringSoon);
        assert_eq!(c(BaaStatus::Signed, Some("2026-11-30")), BaaExpiry::Expired);
        assert_eq!(c(BaaStatus::Signed, None), BaaExpiry::Active);
        assert_eq!(c(BaaStatus::Requested, Some("2026-11-30")), BaaExpiry::NotInForce);
        assert_eq!(c(BaaStatus::Terminated, Some("2026-12-10")), BaaExpiry::NotInForce);
        assert_eq!("signed".parse::<BaaStatus>().unwrap(), BaaStatus::Signed);
        assert!("active".parse::<BaaStatus>().is_err());
    }

    #[test]
    fn vendor_entries_validate() {
        let ok =
            VendorDraft::parse("SMS Co", "Reminders", "Names, phone numbers", BaaStatus::Signed, Some("2026-01-01"), Some("2027-01-01"));
        assert_eq!(ok.unwrap().renewal_on.as_deref(), Some("2027-01-01"));
        assert!(VendorDraft::parse("SMS Co", "x", "y", BaaStatus::Signed, None, None).is_err());
        assert!(VendorDraft::parse("SMS Co", "x", "y", BaaStatus::Signed, Some("2026-01-01"), Some("2025-12-31")).is_err());
        assert!(VendorDraft::parse("SMS Co", "x", "y", BaaStatus::Requested, None, Some("2026-02-30")).is_err());
        assert!(VendorDraft::parse("", "x", "y", BaaStatus::None, None, None).is_err());
        assert!(VendorDraft::parse("SMS Co", "x", "y", BaaStatus::None, None, None).is_ok());
    }

    #[test]
    fn risks_score_on_the_one_to_five_scales() {
        assert_eq!(parse_rating("likelihood", 5).unwrap(), 5);
        assert!(parse_rating("likelihood", 0).is_err());
        assert!(parse_rating("impact", 6).is_err());
        assert!(parse_rating("impact", -1).is_err());
        assert_eq!(risk_score(4, 5), 20);
        assert_eq!(risk_score(1, 1), 1);
        assert!(review_overdue(RiskStatus::Open, "2026-11-30", "2026-12-01"));
        assert!(!review_overdue(RiskStatus::Open, "2026-12-01", "2026-12-01"));
        assert!(!review_overdue(RiskStatus::Closed, "2026-01-01", "2026-12-01"));
        assert_eq!("mitigating".parse::<RiskStatus>().unwrap(), RiskStatus::Mitigating);
        assert_eq!(RiskDraft::parse("Lost phone", 4, 5, RiskStatus::Open, "2027-01-01").unwrap().score(), 20);
        assert!(RiskDraft::parse("Lost phone", 4, 0, RiskStatus::Open, "2027-01-01").is_err());
        assert!(RiskDraft::parse(" ", 4, 5, RiskStatus::Open, "2027-01-01").is_err());
        assert!(RiskDraft::parse("Lost phone", 4, 5, RiskStatus::Open, "soon").is_err());
        assert!("done".parse::<RiskStatus>().is_err());
    }
}
