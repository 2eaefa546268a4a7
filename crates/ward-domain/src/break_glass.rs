//! Break-glass (emergency access): the reason categories a clinician states, the review
//! states a compliance officer gives each use, and the checks on a request.
//!
//! The free-text reason can name the patient and their condition, so it is PHI: it is sealed
//! where it is stored and never copied into the audit log, which keeps only the category.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The longest free-text reason or review note, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Why emergency access is needed: a fixed code, recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCategory {
    /// The patient needs urgent treatment and their history matters now.
    EmergencyTreatment,
    /// The patient cannot communicate (unconscious, confused) and no one on the care team answers.
    PatientUnresponsive,
    /// The care team cannot be reached and a decision cannot wait.
    CareTeamUnreachable,
    /// Something else, explained in the reason.
    Other,
}

impl ReasonCategory {
    /// Every category.
    pub const ALL: [ReasonCategory; 4] = [
        ReasonCategory::EmergencyTreatment,
        ReasonCategory::PatientUnresponsive,
        ReasonCategory::CareTeamUnreachable,
        ReasonCategory::Other,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmergencyTreatment => "emergency_treatment",
            Self::PatientUnresponsive => "patient_unresponsive",
            Self::CareTeamUnreachable => "care_team_unreachable",
            Self::Other => "other",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Where a grant stands in the compliance review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Not reviewed yet.
    Pending,
    /// A compliance officer found the use justified.
    Justified,
    /// A compliance officer found the use not justified.
    Unjustified,
}

impl ReviewStatus {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Justified => "justified",
            Self::Unjustified => "unjustified",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Justified, Self::Unjustified].into_iter().find(|c| c.as_str() == s)
    }
}

/// A checked free-text reason (never shown in errors or logs: `Debug` prints its length only).
#[derive(Clone, PartialEq, Eq)]
pub struct ReasonText(String);

impl std::fmt::Debug for ReasonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReasonText({} bytes)", self.0.len())
    }
}

impl ReasonText {
    /// Checks a mandatory reason: not blank, at most [`MAX_TEXT_CHARS`], no control characters
    /// other than line breaks and tabs.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, DomainError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(DomainError::invalid(field, "is required"));
        }
        if t.chars().count() > MAX_TEXT_CHARS {
            return Err(DomainError::invalid(field, "is too long"));
        }
        if t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
            return Err(DomainError::invalid(field, "must not contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The text, for sealing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in ReasonCategory::ALL {
            assert_eq!(ReasonCategory::parse(c.as_str()), Some(c));
        }
        for s in [ReviewStatus::Pending, ReviewStatus::Justified, ReviewStatus::Unjustified] {
            assert_eq!(ReviewStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReasonCategory::parse("nope"), None);
    }

    #[test]
    fn reasons_are_mandatory_and_bounded_and_never_printed() {
        assert!(ReasonText::parse("reason", "  ").is_err());
        assert!(ReasonText::parse("reason", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(ReasonText::parse("reason", "a\0b").is_err());
        let r = ReasonText::parse("reason", " Unconscious in bay 4\nno ID ").unwrap();
        assert_eq!(r.expose(), "Unconscious in bay 4\nno ID");
        assert!(!format!("{r:?}").contains("bay"));
        let e = ReasonText::parse("reason", "").unwrap_err().to_string();
        assert_eq!(e, "reason is invalid: is required");
    }
}
