//! Access review campaigns (164.308(a)(4) information access management, 164.312(a)(1) access
//! control): at a configurable cadence, reviewers look at every workforce account's role,
//! conversation memberships and last activity, as snapshotted when the campaign opened, and
//! certify or revoke each. Rules:
//!
//! - admins and compliance officers review everyone; nobody else reviews;
//! - separation of duties: a reviewer never decides on their own access (another reviewer
//!   must; in an organisation with a single reviewer that item closes as not reviewed);
//! - a revocation needs a reason (a code; `other` also needs a note);
//! - closing a campaign marks every undecided item `not_reviewed`: never certified by default.

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::ids::UserId;
use crate::policy::{Actor, Denial};
use crate::role::Role;

/// Days between campaigns unless the organisation says otherwise (quarterly).
pub const DEFAULT_CADENCE_DAYS: u32 = 90;
/// Days reviewers have to decide, from the opening, unless the organisation says otherwise.
pub const DEFAULT_WINDOW_DAYS: u32 = 14;
/// The longest revocation note.
pub const NOTE_MAX: usize = 500;

const DAY_MS: i64 = 86_400_000;

/// Where a campaign is in its life. A campaign is created open (its snapshot is taken then);
/// the next one is scheduled by the organisation's cadence (see [`ReviewSchedule::next_opening`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Reviewers are deciding.
    Open,
    /// Decisions are final; undecided items were marked `not_reviewed`.
    Closed,
}

impl CampaignStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Closed].into_iter().find(|v| v.as_str() == s)
    }
}

/// What started a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignTrigger {
    /// The cadence came due; the server opened it.
    Schedule,
    /// An admin or compliance officer started it.
    Manual,
}

impl CampaignTrigger {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Schedule, Self::Manual].into_iter().find(|v| v.as_str() == s)
    }
}

/// The outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The reviewer confirmed the access is still needed.
    Certify,
    /// The reviewer removed the access: the account was disabled and its sessions ended.
    Revoke,
    /// Nobody decided before the campaign closed (a finding, never a certification).
    NotReviewed,
}

impl Decision {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certify => "certify",
            Self::Revoke => "revoke",
            Self::NotReviewed => "not_reviewed",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Certify, Self::Revoke, Self::NotReviewed].into_iter().find(|v| v.as_str() == s)
    }
}

/// Why access was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The person no longer works for the organisation.
    LeftOrganisation,
    /// Their job changed and no longer needs this access.
    RoleChanged,
    /// The access was never needed, or is no longer.
    NotNeeded,
    /// The account is not recognised (no owner can be found).
    UnknownAccount,
    /// Something else, said in the note.
    Other,
}

impl RevokeReason {
    /// Every reason, in a stable order.
    pub const ALL: [RevokeReason; 5] = [Self::LeftOrganisation, Self::RoleChanged, Self::NotNeeded, Self::UnknownAccount, Self::Other];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeftOrganisation => "left_organisation",
            Self::RoleChanged => "role_changed",
            Self::NotNeeded => "not_needed",
            Self::UnknownAccount => "unknown_account",
            Self::Other => "other",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A reviewer's decision on one item, checked: a revocation has a reason, `other` a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemDecision {
    /// Keep the access.
    Certify,
    /// Remove it.
    Revoke {
        /// Why.
        reason: RevokeReason,
        /// The reviewer's words (one line; required for `other`).
        note: Option<String>,
    },
}

impl ItemDecision {
    /// Checks a decision as a reviewer sent it. `NotReviewed` is the close's, never a reviewer's.
    pub fn parse(decision: Decision, reason: Option<RevokeReason>, note: Option<&str>) -> Result<ItemDecision, DomainError> {
        let note = match note.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => Some(crate::login::parse_label("note", n, NOTE_MAX)?),
            None => None,
        };
        match decision {
            Decision::Certify if reason.is_some() => Err(DomainError::invalid("reason", "is only for revocations")),
            Decision::Certify => Ok(ItemDecision::Certify),
            Decision::Revoke => match reason {
                None => Err(DomainError::invalid("reason", "a revocation needs a reason")),
                Some(RevokeReason::Other) if note.is_none() => {
                    Err(DomainError::invalid("note", "a revocation for another reason needs a note saying which"))
                }
                Some(reason) => Ok(ItemDecision::Revoke { reason, note }),
            },
            Decision::NotReviewed => Err(DomainError::invalid("decision", "must be certify or revoke")),
        }
    }

    /// The stored decision.
    pub fn decision(&self) -> Decision {
        match self {
            Self::Certify => Decision::Certify,
            Self::Revoke { .. } => Decision::Revoke,
        }
    }
}

/// Whether the actor may run access reviews (see campaigns, start, decide, close, export):
/// admins and compliance officers.
pub fn may_review(actor: &Actor) -> Result<(), Denial> {
    if matches!(actor.role, Role::Admin | Role::ComplianceOfficer) { Ok(()) } else { Err(Denial::RoleNotPermitted) }
}

/// Whether the actor may decide on `subject`'s access: a reviewer, or the person the item was
/// delegated to (`assigned`), and never about themself.
pub fn may_decide(actor: &Actor, subject: UserId, assigned: Option<UserId>) -> Result<(), Denial> {
    if actor.user_id == subject {
        return Err(Denial::OwnAccess);
    }
    if assigned == Some(actor.user_id) && actor.role.is_workforce() { Ok(()) } else { may_review(actor) }
}

/// Whether `subject`'s item may be delegated to `reviewer` by `actor`: to an enabled workforce
/// account other than the subject, never by someone about their own item, and never for an
/// admin's or compliance officer's access (which only the organisation's reviewers judge:
/// otherwise a delegate could disable an admin).
pub fn may_delegate(actor: UserId, reviewer: (UserId, Role, bool), subject: (UserId, Role)) -> Result<(), DomainError> {
    let (reviewer, reviewer_role, reviewer_disabled) = reviewer;
    let (subject, subject_role) = subject;
    if subject == actor {
        return Err(DomainError::invalid("user_ids", "nobody chooses who reviews their own access"));
    }
    if subject == reviewer {
        return Err(DomainError::invalid("reviewer_id", "nobody reviews their own access: the reviewer is one of the accounts"));
    }
    if matches!(subject_role, Role::Admin | Role::ComplianceOfficer) {
        return Err(DomainError::invalid("user_ids", "admins and compliance officers are reviewed by the organisation's reviewers only"));
    }
    if !reviewer_role.is_workforce() || reviewer_disabled {
        return Err(DomainError::invalid("reviewer_id", "the reviewer must be an enabled workforce account"));
    }
    Ok(())
}

/// Whom a campaign covers: every enabled workforce account (patients' portal accounts are
/// not workforce access; disabled accounts have none).
pub fn in_scope(role: Role, disabled: bool) -> bool {
    role.is_workforce() && !disabled
}

/// An organisation's review cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewSchedule {
    /// Days between campaigns, 7 to 366 (90: quarterly).
    pub cadence_days: u32,
    /// Days reviewers have to decide after a campaign opens, 1 to 90, and less than the cadence.
    pub window_days: u32,
}

impl Default for ReviewSchedule {
    fn default() -> Self {
        Self { cadence_days: DEFAULT_CADENCE_DAYS, window_days: DEFAULT_WINDOW_DAYS }
    }
}

impl ReviewSchedule {
    /// Checks a schedule.
    pub fn parse(cadence_days: u32, window_days: u32) -> Result<ReviewSchedule, DomainError> {
        if !(7..=366).contains(&cadence_days) {
            return Err(DomainError::invalid("cadence_days", "must be between 7 and 366"));
        }
        if !(1..=90).contains(&window_days) || window_days >= cadence_days {
            return Err(DomainError::invalid("window_days", "must be between 1 and 90 and shorter than the cadence"));
        }
        Ok(Self { cadence_days, window_days })
    }

    /// When the next campaign opens (Unix ms): a cadence after the last one opened or, with
    /// none yet, after the organisation was created.
    pub fn next_opening(&self, last_opened_at: Option<i64>, org_created_at: i64) -> i64 {
        last_opened_at.unwrap_or(org_created_at).saturating_add(i64::from(self.cadence_days) * DAY_MS)
    }

    /// Whether a campaign is due at `now` (none may be open).
    pub fn due(&self, last_opened_at: Option<i64>, org_created_at: i64, now: i64) -> bool {
        self.next_opening(last_opened_at, org_created_at) <= now
    }

    /// The decision deadline of a campaign opened at `opened_at`.
    pub fn due_at(&self, opened_at: i64) -> i64 {
        opened_at.saturating_add(i64::from(self.window_days) * DAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgId;

    fn actor(role: Role) -> Actor {
        Actor { user_id: UserId::new(), org_id: OrgId::new(), role }
    }

    #[test]
    fn only_admins_and_compliance_officers_review_and_never_themselves() {
        for role in Role::ALL {
            let a = actor(role);
            let reviewer = matches!(role, Role::Admin | Role::ComplianceOfficer);
            assert_eq!(may_review(&a).is_ok(), reviewer, "{role}");
            assert_eq!(may_decide(&a, UserId::new(), None).is_ok(), reviewer, "{role}");
            assert!(may_decide(&a, a.user_id, None).is_err(), "{role} decided on their own access");
            assert!(may_decide(&a, a.user_id, Some(a.user_id)).is_err(), "{role} decided on their own access as its delegate");
            // A delegate decides the items given to them, and only those.
            let delegate = role.is_workforce();
            assert_eq!(may_decide(&a, UserId::new(), Some(a.user_id)).is_ok(), delegate, "{role} as delegate");
            assert_eq!(may_decide(&a, UserId::new(), Some(UserId::new())).is_ok(), reviewer, "{role}, another's delegation");
        }
        let co = actor(Role::ComplianceOfficer);
        assert_eq!(may_decide(&co, co.user_id, None), Err(Denial::OwnAccess));
    }

    #[test]
    fn items_are_delegated_to_enabled_workforce_other_than_the_subject() {
        let (actor, r, s) = (UserId::new(), UserId::new(), UserId::new());
        assert!(may_delegate(actor, (r, Role::Nurse, false), (s, Role::Nurse)).is_ok());
        assert!(may_delegate(actor, (r, Role::Nurse, true), (s, Role::Nurse)).is_err(), "a disabled reviewer");
        assert!(may_delegate(actor, (r, Role::Patient, false), (s, Role::Nurse)).is_err(), "a patient reviewer");
        assert!(may_delegate(actor, (s, Role::Admin, false), (s, Role::Nurse)).is_err(), "one's own item");
        assert!(may_delegate(actor, (r, Role::Nurse, false), (actor, Role::ComplianceOfficer)).is_err(), "the actor's own item");
        assert!(may_delegate(actor, (r, Role::Admin, false), (s, Role::Admin)).is_err(), "an admin's item");
        assert!(may_delegate(actor, (r, Role::Admin, false), (s, Role::ComplianceOfficer)).is_err(), "a compliance officer's item");
    }

    #[test]
    fn a_revocation_needs_a_reason_and_other_a_note() {
        assert_eq!(ItemDecision::parse(Decision::Certify, None, None), Ok(ItemDecision::Certify));
        assert!(ItemDecision::parse(Decision::Certify, Some(RevokeReason::NotNeeded), None).is_err());
        assert!(ItemDecision::parse(Decision::Revoke, None, Some("left")).is_err());
        assert!(ItemDecision::parse(Decision::Revoke, Some(RevokeReason::Other), None).is_err());
        assert!(ItemDecision::parse(Decision::Revoke, Some(RevokeReason::Other), Some("   ")).is_err());
        assert_eq!(
            ItemDecision::parse(Decision::Revoke, Some(RevokeReason::Other), Some(" contractor ended ")),
            Ok(ItemDecision::Revoke { reason: RevokeReason::Other, note: Some("contractor ended".into()) })
        );
        assert_eq!(
            ItemDecision::parse(Decision::Revoke, Some(RevokeReason::LeftOrganisation), None).map(|d| d.decision()),
            Ok(Decision::Revoke)
        );
        assert!(ItemDecision::parse(Decision::NotReviewed, None, None).is_err());
        assert!(ItemDecision::parse(Decision::Revoke, Some(RevokeReason::NotNeeded), Some(&"x".repeat(NOTE_MAX + 1))).is_err());
    }

    #[test]
    fn the_schedule_is_checked_and_counts_from_the_last_opening() {
        assert!(ReviewSchedule::parse(6, 1).is_err());
        assert!(ReviewSchedule::parse(367, 14).is_err());
        assert!(ReviewSchedule::parse(30, 30).is_err());
        assert!(ReviewSchedule::parse(30, 0).is_err());
        let s = ReviewSchedule::default();
        assert_eq!((s.cadence_days, s.window_days), (90, 14));
        assert_eq!(s.next_opening(None, 0), 90 * DAY_MS);
        assert_eq!(s.next_opening(Some(DAY_MS), 0), 91 * DAY_MS);
        assert!(!s.due(None, 0, 90 * DAY_MS - 1));
        assert!(s.due(None, 0, 90 * DAY_MS));
        assert_eq!(s.due_at(0), 14 * DAY_MS);
    }

    #[test]
    fn spellings_round_trip() {
        for d in [Decision::Certify, Decision::Revoke, Decision::NotReviewed] {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        for r in RevokeReason::ALL {
            assert_eq!(RevokeReason::parse(r.as_str()), Some(r));
        }
        for s in [CampaignStatus::Open, CampaignStatus::Closed] {
            assert_eq!(CampaignStatus::parse(s.as_str()), Some(s));
        }
        assert!(in_scope(Role::Nurse, false));
        assert!(!in_scope(Role::Nurse, true));
        assert!(!in_scope(Role::Patient, false));
    }
}
