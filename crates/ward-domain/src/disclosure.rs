//! Which audit events are disclosures of a patient's information outside the care team, for
//! the accounting of disclosures (HIPAA 164.528).
//!
//! The audit log is the single record of disclosures: a report reads it back and classifies each
//! event with [`AuditAction::disclosure_rule`]. An action that discloses names its rule here; the
//! rule says where the recipient and the purpose are found in the event. New disclosing actions
//! (message forwarding, break-glass reads) follow the [`DisclosureRule::CONVENTION`]: they record
//! the patient on the event and put the recipient's user id under the detail key
//! [`RECIPIENT_KEY`] and a fixed purpose code under [`PURPOSE_KEY`]; adding their action to
//! `disclosure_rule` is then all the accounting needs.

use crate::audit::{AuditAction, Outcome};

/// The detail key holding the user id of whoever received the information (convention).
pub const RECIPIENT_KEY: &str = "recipient";
/// The detail key holding the purpose code of a disclosure (convention).
pub const PURPOSE_KEY: &str = "purpose";
/// The purpose code of an audit export.
pub const PURPOSE_AUDIT_EXPORT: &str = "audit_export";
/// The purpose code of a disclosure made under a recorded patient authorization (164.508).
pub const PURPOSE_AUTHORIZATION: &str = "authorization";
/// The purpose code of a read under a break-glass (emergency access) grant.
pub const PURPOSE_BREAK_GLASS: &str = "break_glass";

/// Where a disclosure's recipient is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientFrom {
    /// A detail holding a user id.
    Detail(&'static str),
    /// The acting user received it (an export: whoever exported holds the copy).
    Actor,
}

/// Where a disclosure's purpose is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurposeFrom {
    /// A detail holding a purpose code.
    Detail(&'static str),
    /// Always this code.
    Fixed(&'static str),
}

/// How an action discloses patient information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisclosureRule {
    /// Who received the information.
    pub recipient: RecipientFrom,
    /// Why.
    pub purpose: PurposeFrom,
    /// A boolean detail that must be true for the event to be a disclosure (`member.add` is a
    /// disclosure only when the new member is outside the patient's care team).
    pub only_if: Option<&'static str>,
    /// Whether an event naming no patient may still disclose patients: an audit export
    /// without a patient filter hands over every patient that appears in the range it covers.
    pub covers_range: bool,
}

impl DisclosureRule {
    /// The rule for new disclosing actions: recipient and purpose under the conventional keys.
    pub const CONVENTION: DisclosureRule = DisclosureRule {
        recipient: RecipientFrom::Detail(RECIPIENT_KEY),
        purpose: PurposeFrom::Detail(PURPOSE_KEY),
        only_if: None,
        covers_range: false,
    };

    /// Classifies one stored event of this rule's action: `None` unless it succeeded, meets
    /// `only_if`, and names a recipient and purpose. `detail` is the stored details JSON.
    pub fn apply(&self, outcome: &str, actor: Option<uuid::Uuid>, detail: &str) -> Option<Disclosure> {
        if outcome != Outcome::Success.as_str() {
            return None;
        }
        let detail: serde_json::Map<String, serde_json::Value> = serde_json::from_str(detail).ok()?;
        if let Some(flag) = self.only_if
            && detail.get(flag).and_then(serde_json::Value::as_bool) != Some(true)
        {
            return None;
        }
        let recipient = match self.recipient {
            RecipientFrom::Detail(key) => Recipient::User(detail.get(key)?.as_str()?.parse().ok()?),
            RecipientFrom::Actor => actor.map_or(Recipient::Operator, Recipient::User),
        };
        let purpose = match self.purpose {
            PurposeFrom::Detail(key) => detail.get(key)?.as_str()?.to_owned(),
            PurposeFrom::Fixed(code) => code.to_owned(),
        };
        Some(Disclosure { recipient, purpose })
    }
}

impl AuditAction {
    /// How this action discloses patient information outside the care team, if it can.
    pub fn disclosure_rule(self) -> Option<DisclosureRule> {
        match self {
            // A member outside the care team joins a patient conversation: the conversation's
            // history about the patient becomes readable by them. The stated reason code is the
            // purpose (the free-text note stays with the membership, see docs/audit-log.md).
            AuditAction::MemberAdd => Some(DisclosureRule {
                recipient: RecipientFrom::Detail("member"),
                purpose: PurposeFrom::Detail("reason"),
                only_if: Some("outside_care_team"),
                covers_range: false,
            }),
            // The exported audit records name the patient's events (who accessed what, when).
            AuditAction::AuditExport => Some(DisclosureRule {
                recipient: RecipientFrom::Actor,
                purpose: PurposeFrom::Fixed(PURPOSE_AUDIT_EXPORT),
                only_if: None,
                covers_range: true,
            }),
            // A clinician outside the patient's conversations read them under emergency access.
            AuditAction::BreakGlassRead => Some(DisclosureRule::CONVENTION),
            // A patient's message was forwarded to someone outside their care team (one event
            // per recipient; a forward inside the care team names no recipient).
            AuditAction::MessageForward => Some(DisclosureRule::CONVENTION),
            _ => None,
        }
    }

    /// Every action that can be a disclosure.
    pub fn disclosing() -> impl Iterator<Item = AuditAction> {
        AuditAction::ALL.iter().copied().filter(|a| a.disclosure_rule().is_some())
    }
}

/// Classifies a stored event: the disclosure it is, if any. Unknown actions are none.
pub fn classify(action: &str, outcome: &str, actor: Option<uuid::Uuid>, detail: &str) -> Option<Disclosure> {
    AuditAction::parse(action)?.disclosure_rule()?.apply(outcome, actor, detail)
}

/// Who received a disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// A Ward user (workforce member), by id.
    User(uuid::Uuid),
    /// The server operator, through the `ward` command on the server itself.
    Operator,
}

impl Recipient {
    /// `user` or `operator`.
    pub fn kind(self) -> &'static str {
        match self {
            Recipient::User(_) => "user",
            Recipient::Operator => "operator",
        }
    }

    /// The user id, if a user.
    pub fn user_id(self) -> Option<uuid::Uuid> {
        match self {
            Recipient::User(u) => Some(u),
            Recipient::Operator => None,
        }
    }
}

/// One classified disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// Who received the information.
    pub recipient: Recipient,
    /// The purpose code.
    pub purpose: String,
}

/// The brief statement of purpose 164.528(b)(2)(iv) asks for, for a purpose code: fixed text
/// written by Ward, never user input.
pub fn purpose_statement(code: &str) -> &'static str {
    match code {
        "consult" => "Consultation requested by the patient's care team",
        "coverage" => "Covering for a member of the patient's care team",
        "handoff" => "Handing over the patient's care",
        "coordination" => "Coordinating a referral, transport or other care logistics",
        "other" => "Another reason stated by the person who shared the information",
        "treatment" => "Treatment of the patient (forwarded message)",
        "payment" => "Payment for the patient's care (forwarded message)",
        "operations" => "Health care operations (forwarded message)",
        PURPOSE_AUTHORIZATION => "As authorized in writing by the patient (recorded authorization)",
        PURPOSE_AUDIT_EXPORT => "Export of the audit trail for compliance review or oversight",
        PURPOSE_BREAK_GLASS => "Emergency access by a clinician outside the patient's conversations (break-glass)",
        _ => "Purpose recorded as a code (see the code)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "0192f0a4-6c1e-7d2a-9b3c-4d5e6f708193";

    #[test]
    fn member_add_is_a_disclosure_only_outside_the_care_team() {
        let outside = format!(r#"{{"member":"{USER}","outside_care_team":true,"reason":"consult"}}"#);
        let d = classify("member.add", "success", None, &outside).unwrap();
        assert_eq!(d.recipient, Recipient::User(USER.parse().unwrap()));
        assert_eq!(d.purpose, "consult");
        let inside = format!(r#"{{"member":"{USER}","outside_care_team":false}}"#);
        assert_eq!(classify("member.add", "success", None, &inside), None);
        assert_eq!(classify("member.add", "denied", None, &outside), None);
        assert_eq!(classify("member.add", "success", None, "not json"), None);
    }

    #[test]
    fn exports_disclose_to_whoever_exported() {
        let actor: uuid::Uuid = USER.parse().unwrap();
        let d = classify("audit.export", "success", Some(actor), r#"{"format":"csv"}"#).unwrap();
        assert_eq!(d.recipient, Recipient::User(actor));
        assert_eq!(d.purpose, PURPOSE_AUDIT_EXPORT);
        assert_eq!(classify("audit.export", "success", None, "{}").unwrap().recipient, Recipient::Operator);
        assert!(AuditAction::AuditExport.disclosure_rule().unwrap().covers_range);
    }

    #[test]
    fn the_convention_reads_recipient_and_purpose() {
        let rule = DisclosureRule::CONVENTION;
        let d = rule.apply("success", None, &format!(r#"{{"purpose":"treatment","recipient":"{USER}"}}"#)).unwrap();
        assert_eq!(d.purpose, "treatment");
        assert_eq!(rule.apply("success", None, r#"{"purpose":"treatment"}"#), None, "no recipient, no disclosure");
    }

    #[test]
    fn break_glass_reads_are_disclosures_to_the_reader() {
        let d = classify("break_glass.read", "success", None, &format!(r#"{{"purpose":"break_glass","recipient":"{USER}"}}"#)).unwrap();
        assert_eq!(d.recipient, Recipient::User(USER.parse().unwrap()));
        assert_eq!(d.purpose, PURPOSE_BREAK_GLASS);
        assert!(purpose_statement(PURPOSE_BREAK_GLASS).contains("break-glass"));
        assert_eq!(classify("break_glass.read", "denied", None, &format!(r#"{{"purpose":"break_glass","recipient":"{USER}"}}"#)), None);
    }

    #[test]
    fn forwards_disclose_only_when_they_name_a_recipient() {
        let d = classify("message.forward", "success", None, &format!(r#"{{"purpose":"payment","recipient":"{USER}"}}"#)).unwrap();
        assert_eq!(d.recipient, Recipient::User(USER.parse().unwrap()));
        assert_eq!(d.purpose, "payment");
        assert!(purpose_statement("payment").contains("Payment"));
        assert_eq!(classify("message.forward", "success", None, r#"{"source":"x"}"#), None, "inside the care team");
    }

    #[test]
    fn reads_and_sends_are_not_disclosures() {
        for a in [AuditAction::MessageRead, AuditAction::MessageSend, AuditAction::PatientRead, AuditAction::AuditLogRead] {
            assert!(a.disclosure_rule().is_none(), "{}", a.as_str());
        }
        assert_eq!(AuditAction::disclosing().count(), 4);
        assert_eq!(classify("no.such_action", "success", None, "{}"), None);
    }
}
