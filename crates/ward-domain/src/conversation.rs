//! Conversations, members and messages: the values they are made of and the rules on them.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// What a conversation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Exactly two workforce members; never grows.
    Direct,
    /// A named group of workforce members.
    Group,
    /// About one patient, bound to that patient's record and care team.
    Patient,
}

impl ConversationKind {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
            Self::Patient => "patient",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Direct, Self::Group, Self::Patient].into_iter().find(|k| k.as_str() == s)
    }
}

/// A member's standing in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// May add and remove members.
    Owner,
    /// May read and send.
    Member,
}

impl MemberRole {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Owner, Self::Member].into_iter().find(|k| k.as_str() == s)
    }
}

/// How urgently a message needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Normal traffic.
    #[default]
    Routine,
    /// Needs attention soon.
    Urgent,
    /// Needs attention now.
    Stat,
}

impl Priority {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Urgent => "urgent",
            Self::Stat => "stat",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Routine, Self::Urgent, Self::Stat].into_iter().find(|k| k.as_str() == s)
    }
}

/// A purpose HIPAA permits for disclosing a patient's information without their
/// authorization (164.506): chosen when forwarding a patient's message outside the care team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisclosurePurpose {
    /// Treatment of the patient.
    Treatment,
    /// Payment for the patient's care.
    Payment,
    /// Health care operations.
    Operations,
}

impl DisclosurePurpose {
    /// The wire, database and audit spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Treatment => "treatment",
            Self::Payment => "payment",
            Self::Operations => "operations",
        }
    }
}

/// Which receipt a member is reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// The member's device has the messages.
    Delivered,
    /// The member has seen the messages.
    Read,
}

/// A message's text: 1 byte to 64 KiB of UTF-8, not only whitespace, no NUL.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// The largest message text in bytes.
    pub const MAX_BYTES: usize = 64 * 1024;

    /// Checks a message text.
    pub fn parse(raw: String) -> Result<Self, DomainError> {
        if raw.trim().is_empty() {
            return Err(DomainError::invalid("body", "must not be empty"));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(DomainError::invalid("body", "must be at most 65536 bytes"));
        }
        if raw.contains('\0') {
            return Err(DomainError::invalid("body", "must not contain NUL characters"));
        }
        Ok(Self(raw))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Message text is PHI: its `Debug` never shows it.
impl std::fmt::Debug for MessageText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageText({} bytes)", self.0.len())
    }
}

/// The client's id for one send, making retries idempotent: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientTxnId(String);

impl ClientTxnId {
    /// Checks a client transaction id.
    pub fn parse(raw: String) -> Result<Self, DomainError> {
        if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid("client_txn_id", "must be 1 to 128 printable ASCII characters"));
        }
        Ok(Self(raw))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why someone outside a patient's care team is being added to that patient's conversation
/// (the HIPAA minimum-necessary standard asks that the reason be recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessReason {
    /// A consultation requested by the care team.
    Consult,
    /// Covering for a care-team member.
    Coverage,
    /// Handing care over.
    Handoff,
    /// Coordinating a referral, transport or similar.
    Coordination,
    /// Something else, explained in the note.
    Other,
}

impl AccessReason {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consult => "consult",
            Self::Coverage => "coverage",
            Self::Handoff => "handoff",
            Self::Coordination => "coordination",
            Self::Other => "other",
        }
    }
}

/// A stated reason with an optional free-text note. The note can carry PHI, so it is stored with
/// the membership and never copied into the audit log; the audit log keeps the reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedReason {
    /// The reason code.
    pub code: AccessReason,
    /// A short explanation; required when the code is [`AccessReason::Other`].
    pub note: Option<String>,
}

impl StatedReason {
    /// Checks a stated reason.
    pub fn parse(code: AccessReason, note: Option<String>) -> Result<Self, DomainError> {
        let note = match note {
            Some(n) if !n.trim().is_empty() => Some(crate::login::parse_label("reason.note", &n, 500)?),
            _ => None,
        };
        if code == AccessReason::Other && note.is_none() {
            return Err(DomainError::invalid("reason.note", "is required when the reason is other"));
        }
        Ok(Self { code, note })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn message_text_bounds() {
        assert!(MessageText::parse("   ".into()).is_err());
        assert!(MessageText::parse("a\0b".into()).is_err());
        assert!(MessageText::parse("x".repeat(65536)).is_ok());
        assert!(MessageText::parse("x".repeat(65537)).is_err());
        assert_eq!(format!("{:?}", MessageText::parse("secret".into()).unwrap()), "MessageText(6 bytes)");
    }

    #[test]
    fn reasons() {
        assert!(StatedReason::parse(AccessReason::Other, None).is_err());
        assert!(StatedReason::parse(AccessReason::Other, Some("  ".into())).is_err());
        assert!(StatedReason::parse(AccessReason::Consult, None).is_ok());
    }

    proptest! {
        #[test]
        fn client_txn_ids_accept_exactly_printable_ascii(s in "\\PC{0,140}") {
            let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(ClientTxnId::parse(s).is_ok(), ok);
        }

        #[test]
        fn priorities_and_kinds_round_trip(i in 0usize..3) {
            let p = [Priority::Routine, Priority::Urgent, Priority::Stat][i];
            prop_assert_eq!(Priority::parse(p.as_str()), Some(p));
            let k = [ConversationKind::Direct, ConversationKind::Group, ConversationKind::Patient][i];
            prop_assert_eq!(ConversationKind::parse(k.as_str()), Some(k));
        }
    }
}
