//! The authorization policy: which role may do what, as pure functions the server calls on
//! every request. Membership and tenancy are checked by the store's queries (a row that is not
//! yours is not found); these rules cover roles and conversation shapes.

use crate::conversation::{ConversationKind, MemberRole};
use crate::ids::{OrgId, PatientId, UserId};
use crate::role::Role;

/// Who is asking: the authenticated user of the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// Their organisation; nothing outside it is visible to them.
    pub org_id: OrgId,
    /// Their role.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The actor's role does not allow the action.
    #[error("your role does not allow this action")]
    RoleNotPermitted,
    /// The action is not possible on this kind of conversation.
    #[error("this conversation does not allow that change")]
    ConversationShape,
    /// Only an owner of the conversation may do this.
    #[error("only an owner of the conversation may do this")]
    NotOwner,
    /// Only the message's sender may do this.
    #[error("only the sender of the message may do this")]
    NotSender,
    /// The person cannot be a member of this conversation.
    #[error("that person cannot join this conversation")]
    IneligibleMember,
    /// Adding someone outside the patient's care team needs a stated reason.
    #[error("a reason is required to add someone outside the patient's care team")]
    ReasonRequired,
    /// Forwarding a patient's message outside the care team needs a permitted purpose.
    #[error("forwarding outside the patient's care team needs a purpose: treatment, payment or operations")]
    DisclosurePurposeRequired,
    /// The patient authorization given is not recorded for this patient, or has expired.
    #[error("the authorization is not recorded for this patient or has expired")]
    AuthorizationNotValid,
    /// Separation of duties: a reviewer never decides on their own access.
    #[error("a reviewer cannot decide on their own access; another reviewer must")]
    OwnAccess,
}

/// Whether the actor may administer users, sessions and organisation policy.
pub fn may_administer(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role == Role::Admin)
}

/// Whether the actor may read the audit log (checkpoints, proofs, event search): compliance
/// officers and admins only.
pub fn may_read_audit_log(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may configure anomaly alert rules, acknowledge alerts and flag patients
/// as restricted: compliance officers and admins only.
pub fn may_manage_alerts(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may request break-glass (emergency) access to a patient's conversations:
/// clinicians and nurses only.
pub fn may_request_break_glass(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::Clinician | Role::Nurse))
}

/// Whether the actor may review break-glass uses (the review queue, justified or not):
/// compliance officers only.
pub fn may_review_break_glass(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role == Role::ComplianceOfficer)
}

/// Whether the actor may end a break-glass grant early: compliance officers and admins.
pub fn may_revoke_break_glass(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may open, assess, notify and close breach incidents: compliance officers.
pub fn may_manage_incidents(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role == Role::ComplianceOfficer)
}

/// Whether the actor may read breach incidents and their notification plans: compliance
/// officers and admins (read-only).
pub fn may_read_incidents(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may report a message of a conversation they belong to as sent to the
/// wrong recipients (opening an incident): any member of the workforce.
pub fn may_report_misdirected(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role.is_workforce())
}

/// Whether the actor may publish policies, read who has acknowledged them, and keep the BAA
/// vendor and risk registers: compliance officers and admins only.
pub fn may_manage_compliance_registers(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may start a conversation of this kind.
pub fn may_create_conversation(actor: &Actor, _kind: ConversationKind) -> Result<(), Denial> {
    ok_if(actor.role.is_workforce())
}

/// Whether the actor may forward a message: workforce only (a patient sharing their own
/// messages is not a disclosure by the practice).
pub fn may_forward_message(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role.is_workforce())
}

/// Whether the actor may look up patient records and see the workforce directory.
pub fn may_use_directory(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role.is_workforce())
}

/// Whether the actor may create patient records.
pub fn may_create_patient(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::Admin | Role::Clinician | Role::Nurse))
}

/// Whether the actor may change a patient's care team.
pub fn may_edit_care_team(actor: &Actor, actor_on_care_team: bool) -> Result<(), Denial> {
    match actor.role {
        Role::Admin => Ok(()),
        Role::Clinician | Role::Nurse if actor_on_care_team => Ok(()),
        _ => Err(Denial::RoleNotPermitted),
    }
}

/// What the policy needs to know about someone being added to a conversation.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Their role.
    pub role: Role,
    /// Whether their account is disabled.
    pub disabled: bool,
    /// For patient accounts, the patient record they are.
    pub patient_id: Option<PatientId>,
    /// Whether they are on the care team of the conversation's patient.
    pub on_care_team: bool,
}

/// The conversation a member is being added to.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its kind.
    pub kind: ConversationKind,
    /// For patient conversations, the patient.
    pub patient_id: Option<PatientId>,
}

/// What a permitted addition must record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The person belongs: the patient themself or their care team, or any workforce member of a group.
    Routine,
    /// The person is outside the care team; the stated reason is recorded.
    WithReason,
}

/// Whether a member with this standing may add others to a conversation of this kind (checked
/// before anything about the candidate is looked up, so a refusal reveals nothing about them).
pub fn may_change_membership(adder_role: MemberRole, kind: ConversationKind) -> Result<(), Denial> {
    if kind == ConversationKind::Direct {
        return Err(Denial::ConversationShape);
    }
    if adder_role == MemberRole::Member {
        return Err(Denial::NotOwner);
    }
    Ok(())
}

/// Decides whether `candidate` may join a conversation, and whether a reason must be recorded.
/// `adder_role` is the adder's standing in the conversation (`None` while it is being created).
pub fn may_add_member(
    adder_role: Option<MemberRole>,
    target: Target,
    candidate: Candidate,
    reason_given: bool,
) -> Result<Admission, Denial> {
    if let Some(role) = adder_role {
        may_change_membership(role, target.kind)?;
    }
    if candidate.disabled {
        return Err(Denial::IneligibleMember);
    }
    if candidate.role == Role::Patient {
        // A patient only ever joins the conversations about themself.
        let own = target.kind == ConversationKind::Patient && candidate.patient_id.is_some() && candidate.patient_id == target.patient_id;
        return if own { Ok(Admission::Routine) } else { Err(Denial::IneligibleMember) };
    }
    match target.kind {
        ConversationKind::Patient if !candidate.on_care_team => {
            if reason_given {
                Ok(Admission::WithReason)
            } else {
                Err(Denial::ReasonRequired)
            }
        }
        _ => Ok(Admission::Routine),
    }
}

/// Whether a member may remove `subject` (themself, or anyone if they own the conversation).
pub fn may_remove_member(remover: UserId, remover_role: MemberRole, subject: UserId, kind: ConversationKind) -> Result<(), Denial> {
    if kind == ConversationKind::Direct {
        return Err(Denial::ConversationShape);
    }
    if remover == subject || remover_role == MemberRole::Owner { Ok(()) } else { Err(Denial::NotOwner) }
}

/// Whether the actor may recall or correct a message: only its sender may.
pub fn may_amend_message(actor: &Actor, sender: UserId) -> Result<(), Denial> {
    if actor.user_id == sender { Ok(()) } else { Err(Denial::NotSender) }
}

/// Whether the actor may set retention periods, place and release legal holds and see the
/// shred records: compliance officers and admins only.
pub fn may_manage_retention(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may export a patient's conversations (right of access, HIPAA 164.524):
/// compliance officers and admins, who fulfil such requests, and the patient themself
/// (`is_the_patient`). Clinicians see a patient's conversations only as members.
pub fn may_export_patient(actor: &Actor, is_the_patient: bool) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin) || (actor.role == Role::Patient && is_the_patient))
}

/// Whether the actor may record or revoke a patient's consent to a channel: admins, the
/// clinicians, nurses and staff on the patient's care team, and the patient themself.
pub fn may_record_consent(actor: &Actor, actor_on_care_team: bool, is_the_patient: bool) -> Result<(), Denial> {
    ok_if(match actor.role {
        Role::Admin => true,
        Role::Clinician | Role::Nurse | Role::Staff => actor_on_care_team,
        Role::Patient => is_the_patient,
        Role::ComplianceOfficer => false,
    })
}

/// Whether the actor may read a patient's consents and their history: whoever may record
/// them, and compliance officers (the history is evidence).
pub fn may_read_consent(actor: &Actor, actor_on_care_team: bool, is_the_patient: bool) -> Result<(), Denial> {
    ok_if(actor.role == Role::ComplianceOfficer || may_record_consent(actor, actor_on_care_team, is_the_patient).is_ok())
}

/// Whether the actor may send a notice to a patient: the clinicians, nurses and staff on the
/// patient's care team.
pub fn may_send_notice(actor: &Actor, actor_on_care_team: bool) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::Clinician | Role::Nurse | Role::Staff) && actor_on_care_team)
}

/// Whether the actor may wipe any device of the organisation, set the device posture policy
/// and download the configuration profile: admins only.
pub fn may_manage_devices(actor: &Actor) -> Result<(), Denial> {
    ok_if(actor.role == Role::Admin)
}

/// Whether the actor may see the organisation's devices, their posture history and the device
/// reports (drift, spot checks, the quarterly review, wipes): compliance officers and admins.
pub fn may_review_devices(actor: &Actor) -> Result<(), Denial> {
    ok_if(matches!(actor.role, Role::ComplianceOfficer | Role::Admin))
}

/// Whether the actor may add, verify and remove a patient's phone numbers and email
/// addresses: admins, the clinicians, nurses and staff on the patient's care team, and the
/// patient themself (the same people who record consent).
pub fn may_manage_patient_contacts(actor: &Actor, actor_on_care_team: bool, is_the_patient: bool) -> Result<(), Denial> {
    may_record_consent(actor, actor_on_care_team, is_the_patient)
}

/// Whether the actor may list a patient's contacts: whoever may manage them.
pub fn may_read_patient_contacts(actor: &Actor, actor_on_care_team: bool, is_the_patient: bool) -> Result<(), Denial> {
    may_manage_patient_contacts(actor, actor_on_care_team, is_the_patient)
}

fn ok_if(allowed: bool) -> Result<(), Denial> {
    if allowed { Ok(()) } else { Err(Denial::RoleNotPermitted) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(on_care_team: bool) -> Candidate {
        Candidate { role: Role::Nurse, disabled: false, patient_id: None, on_care_team }
    }

    #[test]
    fn care_team_outsiders_need_a_reason() {
        let p = PatientId::new();
        let target = Target { kind: ConversationKind::Patient, patient_id: Some(p) };
        let owner = Some(MemberRole::Owner);
        assert_eq!(may_add_member(owner, target, worker(true), false), Ok(Admission::Routine));
        assert_eq!(may_add_member(owner, target, worker(false), false), Err(Denial::ReasonRequired));
        assert_eq!(may_add_member(owner, target, worker(false), true), Ok(Admission::WithReason));
        assert_eq!(may_add_member(Some(MemberRole::Member), target, worker(true), false), Err(Denial::NotOwner));
    }

    #[test]
    fn patients_join_only_their_own_conversations() {
        let p = PatientId::new();
        let me = Candidate { role: Role::Patient, disabled: false, patient_id: Some(p), on_care_team: false };
        let mine = Target { kind: ConversationKind::Patient, patient_id: Some(p) };
        let theirs = Target { kind: ConversationKind::Patient, patient_id: Some(PatientId::new()) };
        let group = Target { kind: ConversationKind::Group, patient_id: None };
        assert_eq!(may_add_member(None, mine, me, false), Ok(Admission::Routine));
        assert_eq!(may_add_member(None, theirs, me, true), Err(Denial::IneligibleMember));
        assert_eq!(may_add_member(None, group, me, true), Err(Denial::IneligibleMember));
    }

    #[test]
    fn direct_conversations_never_change_and_disabled_users_never_join() {
        let direct = Target { kind: ConversationKind::Direct, patient_id: None };
        assert_eq!(may_add_member(Some(MemberRole::Owner), direct, worker(true), false), Err(Denial::ConversationShape));
        let group = Target { kind: ConversationKind::Group, patient_id: None };
        let disabled = Candidate { disabled: true, ..worker(true) };
        assert_eq!(may_add_member(None, group, disabled, false), Err(Denial::IneligibleMember));
        let (a, b) = (UserId::new(), UserId::new());
        assert!(may_remove_member(a, MemberRole::Member, a, ConversationKind::Group).is_ok());
        assert_eq!(may_remove_member(a, MemberRole::Member, b, ConversationKind::Group), Err(Denial::NotOwner));
        assert_eq!(may_remove_member(a, MemberRole::Owner, b, ConversationKind::Direct), Err(Denial::ConversationShape));
    }

    #[test]
    fn roles() {
        let actor = |role| Actor { user_id: UserId::new(), org_id: OrgId::new(), role };
        assert!(may_administer(&actor(Role::Admin)).is_ok());
        for role in [Role::ComplianceOfficer, Role::Clinician, Role::Nurse, Role::Staff, Role::Patient] {
            assert!(may_administer(&actor(role)).is_err());
        }
        for role in Role::ALL {
            assert_eq!(may_read_audit_log(&actor(role)).is_ok(), matches!(role, Role::Admin | Role::ComplianceOfficer));
        }
        assert!(may_create_conversation(&actor(Role::Patient), ConversationKind::Group).is_err());
        assert!(may_create_patient(&actor(Role::Staff)).is_err());
        assert!(may_edit_care_team(&actor(Role::Clinician), false).is_err());
        assert!(may_edit_care_team(&actor(Role::Clinician), true).is_ok());
    }

    #[test]
    fn consent_and_notices() {
        let actor = |role| Actor { user_id: UserId::new(), org_id: OrgId::new(), role };
        for role in Role::ALL {
            let a = actor(role);
            let record_on_team = may_record_consent(&a, true, false).is_ok();
            assert_eq!(record_on_team, matches!(role, Role::Admin | Role::Clinician | Role::Nurse | Role::Staff), "{role}");
            assert_eq!(may_record_consent(&a, false, false).is_ok(), role == Role::Admin, "{role}");
            assert_eq!(may_record_consent(&a, false, true).is_ok(), matches!(role, Role::Admin | Role::Patient), "{role}");
            assert_eq!(may_read_consent(&a, false, false).is_ok(), matches!(role, Role::Admin | Role::ComplianceOfficer), "{role}");
            assert_eq!(may_send_notice(&a, true).is_ok(), matches!(role, Role::Clinician | Role::Nurse | Role::Staff), "{role}");
            assert!(may_send_notice(&a, false).is_err());
        }
    }
}
