//! Patient consent to communication channels, and the channels notices go out on.
//!
//! A consent is a grant for one patient and one channel. Nothing is sent on a channel without a
//! current grant for it. PHI over an unsecured channel is the exception that needs evidence:
//! the version of the risk-warning text the patient was shown, and their explicit statement
//! that they insist (HIPAA 164.522(b) lets a patient ask for it; the covered entity warns them
//! first). See `docs/consent.md`.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The longest warning text version label.
pub const MAX_WARNING_VERSION_LEN: usize = 32;

/// A channel a patient can consent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    /// The patient portal (and its app's PHI-free push notifications).
    Portal,
    /// PHI-free notices and reminders by SMS.
    SmsNotices,
    /// PHI-free notices and reminders by email.
    EmailNotices,
    /// PHI over an unsecured channel, at the patient's insistence after a risk warning.
    UnsecuredPhi,
}

impl ConsentChannel {
    /// Every channel.
    pub const ALL: [ConsentChannel; 4] =
        [ConsentChannel::Portal, ConsentChannel::SmsNotices, ConsentChannel::EmailNotices, ConsentChannel::UnsecuredPhi];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Portal => "portal",
            ConsentChannel::SmsNotices => "sms_notices",
            ConsentChannel::EmailNotices => "email_notices",
            ConsentChannel::UnsecuredPhi => "unsecured_phi",
        }
    }

    /// The channel with this spelling.
    pub fn parse(s: &str) -> Option<ConsentChannel> {
        ConsentChannel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The medium an organisation notice is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeChannel {
    /// A text message.
    Sms,
    /// An email.
    Email,
    /// A push notification to the portal app.
    Push,
}

impl NoticeChannel {
    /// Every notice channel.
    pub const ALL: [NoticeChannel; 3] = [NoticeChannel::Sms, NoticeChannel::Email, NoticeChannel::Push];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeChannel::Sms => "sms",
            NoticeChannel::Email => "email",
            NoticeChannel::Push => "push",
        }
    }

    /// The channel with this spelling.
    pub fn parse(s: &str) -> Option<NoticeChannel> {
        NoticeChannel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The consent a notice on this channel needs: push reaches the patient through the
    /// portal app, so it rides on the portal consent.
    pub fn required_consent(self) -> ConsentChannel {
        match self {
            NoticeChannel::Sms => ConsentChannel::SmsNotices,
            NoticeChannel::Email => ConsentChannel::EmailNotices,
            NoticeChannel::Push => ConsentChannel::Portal,
        }
    }
}

/// A consent about to be recorded, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGrant {
    /// The channel.
    pub channel: ConsentChannel,
    /// The version of the risk-warning text the patient was shown.
    pub warning_version: Option<String>,
    /// The patient's explicit statement that they insist (unsecured PHI only).
    pub patient_insists: bool,
}

impl ConsentGrant {
    /// Checks a grant: a warning version is a short label (letters, digits, `.`, `_`, `-`); PHI
    /// over an unsecured channel needs the warning version shown and the patient's insistence;
    /// other channels cannot carry an insistence (it would be evidence of nothing).
    pub fn new(channel: ConsentChannel, warning_version: Option<String>, patient_insists: bool) -> Result<ConsentGrant, DomainError> {
        if let Some(v) = &warning_version {
            let ok = !v.is_empty()
                && v.len() <= MAX_WARNING_VERSION_LEN
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(DomainError::invalid("warning_version", "use 1 to 32 letters, digits, '.', '_' or '-'"));
            }
        }
        if channel == ConsentChannel::UnsecuredPhi {
            if warning_version.is_none() {
                return Err(DomainError::invalid(
                    "warning_version",
                    "PHI over an unsecured channel needs the version of the risk-warning text the patient was shown",
                ));
            }
            if !patient_insists {
                return Err(DomainError::invalid(
                    "patient_insists",
                    "PHI over an unsecured channel needs the patient's explicit statement that they insist, after the risk warning",
                ));
            }
        } else if patient_insists {
            return Err(DomainError::invalid("patient_insists", "applies only to the unsecured_phi channel"));
        }
        Ok(ConsentGrant { channel, warning_version, patient_insists })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        for c in ConsentChannel::ALL {
            assert_eq!(ConsentChannel::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for c in NoticeChannel::ALL {
            assert_eq!(NoticeChannel::parse(c.as_str()), Some(c));
        }
        assert_eq!(ConsentChannel::parse("fax"), None);
        assert_eq!(NoticeChannel::Sms.required_consent(), ConsentChannel::SmsNotices);
        assert_eq!(NoticeChannel::Push.required_consent(), ConsentChannel::Portal);
    }

    #[test]
    fn unsecured_phi_needs_the_warning_and_the_insistence() {
        let v = || Some("2026-1".to_owned());
        assert!(ConsentGrant::new(ConsentChannel::UnsecuredPhi, v(), true).is_ok());
        assert!(ConsentGrant::new(ConsentChannel::UnsecuredPhi, None, true).is_err());
        assert!(ConsentGrant::new(ConsentChannel::UnsecuredPhi, v(), false).is_err());
        assert!(ConsentGrant::new(ConsentChannel::SmsNotices, None, false).is_ok());
        assert!(ConsentGrant::new(ConsentChannel::SmsNotices, v(), false).is_ok());
        assert!(ConsentGrant::new(ConsentChannel::SmsNotices, None, true).is_err());
        assert!(ConsentGrant::new(ConsentChannel::Portal, Some("two words".into()), false).is_err());
        assert!(ConsentGrant::new(ConsentChannel::Portal, Some(String::new()), false).is_err());
        assert!(ConsentGrant::new(ConsentChannel::Portal, Some("x".repeat(33)), false).is_err());
    }
}
