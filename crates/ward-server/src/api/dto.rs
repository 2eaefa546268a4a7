//! Request and response bodies of the JSON API. Requests reject unknown fields.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use ward_domain::conversation::{AccessReason, ConversationKind, MemberRole, Priority, ReceiptKind};
use ward_domain::ids::{AttachmentId, ConversationId, DeviceId, MessageId, OrgId, PatientId, SessionId, UserId};
use ward_domain::role::Role;
use ward_store::{ConversationEvent, EventKind, Restriction};

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn ts(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The device a client signs in from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    /// The device id from an earlier sign-in, to keep one device record per device.
    pub id: Option<DeviceId>,
    /// A name the user will recognise ("Dr Adams's iPhone").
    pub name: String,
    /// `ios`, `android`, `web`, `cli`, ...
    pub platform: String,
}

/// Password sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login name.
    pub login: String,
    /// Password.
    pub password: String,
    /// The device signing in.
    pub device: DeviceRequest,
}

/// Second-factor step of a sign-in: a TOTP code or a recovery code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaRequest {
    /// The token from the login response.
    pub mfa_token: String,
    /// A 6-digit TOTP code.
    pub code: Option<String>,
    /// A recovery code instead.
    pub recovery_code: Option<String>,
}

/// Refresh-token exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token; it is used up by this call.
    pub refresh_token: String,
    /// The device the session is bound to.
    pub device_id: DeviceId,
}

/// What a session is limited to until its holder acts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionView {
    /// Change the one-time password (`POST /api/v1/me/password`).
    PasswordChange,
    /// Enrol TOTP (`POST /api/v1/me/mfa/totp`).
    MfaEnrollment,
}

impl From<Restriction> for RestrictionView {
    fn from(r: Restriction) -> Self {
        match r {
            Restriction::PasswordChange => Self::PasswordChange,
            Restriction::MfaEnrollment => Self::MfaEnrollment,
        }
    }
}

/// Tokens of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// Bearer token for API calls; short-lived.
    pub access_token: String,
    /// When the access token expires.
    pub access_expires_at: String,
    /// Single-use token for `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
    /// The session.
    pub session_id: SessionId,
    /// The device the session is bound to.
    pub device_id: DeviceId,
    /// What the session is limited to, if anything.
    pub restriction: Option<RestrictionView>,
}

/// Result of a password sign-in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginResponse {
    /// Signed in.
    Authenticated {
        /// The session's tokens.
        tokens: Tokens,
    },
    /// The password was right; a second factor is needed (`POST /api/v1/auth/mfa`).
    MfaRequired {
        /// Token for the second step.
        mfa_token: String,
        /// When it expires.
        expires_at: String,
    },
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: UserId,
    /// Login name.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
    /// Whether TOTP is enrolled.
    pub mfa_enabled: bool,
    /// For patient accounts: their record.
    pub patient_id: Option<PatientId>,
    /// Creation time.
    pub created_at: String,
}

impl From<ward_store::User> for UserView {
    fn from(u: ward_store::User) -> Self {
        Self {
            id: u.id,
            login: u.login,
            display_name: u.display_name,
            role: u.role,
            disabled: u.disabled,
            mfa_enabled: u.mfa_enabled,
            patient_id: u.patient_id,
            created_at: ts(u.created_at),
        }
    }
}

/// An organisation and its policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgView {
    /// Id.
    pub id: OrgId,
    /// Short name.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Roles that must use a second factor.
    pub mfa_required_roles: Vec<Role>,
    /// Idle timeout in seconds.
    pub idle_timeout_secs: i64,
}

impl From<ward_store::Org> for OrgView {
    fn from(o: ward_store::Org) -> Self {
        Self { id: o.id, slug: o.slug, name: o.name, mfa_required_roles: o.mfa_required_roles, idle_timeout_secs: o.idle_timeout_secs }
    }
}

/// The signed-in user, their organisation and session.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The user.
    pub user: UserView,
    /// Their organisation.
    pub org: OrgView,
    /// The current session.
    pub session_id: SessionId,
    /// The current device.
    pub device_id: DeviceId,
    /// What the session is limited to.
    pub restriction: Option<RestrictionView>,
    /// Undecided access-review items delegated to the user in open campaigns (0 for most).
    pub access_reviews_to_decide: u32,
}

/// Changing one's own password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The current (or one-time) password.
    pub current_password: String,
    /// The new password: at least 12 characters.
    pub new_password: String,
}

/// A session as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Id.
    pub id: SessionId,
    /// Device.
    pub device_id: DeviceId,
    /// Device name.
    pub device_name: String,
    /// Device platform.
    pub device_platform: String,
    /// When it began.
    pub created_at: String,
    /// Last request.
    pub last_active_at: String,
    /// Address at sign-in.
    pub source_ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// Starting TOTP enrolment (the password is asked again).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpBeginRequest {
    /// The account password.
    pub password: String,
}

/// A new TOTP secret to load into an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpBeginResponse {
    /// The secret in base32.
    pub secret: String,
    /// `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

/// A TOTP code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// 6 digits.
    pub code: String,
}

/// Step-up: a TOTP code, or a recovery code instead.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// A 6-digit TOTP code.
    pub code: Option<String>,
    /// A recovery code instead (single use).
    pub recovery_code: Option<String>,
}

/// A successful step-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepUpView {
    /// When the second factor was verified.
    pub mfa_verified_at: String,
    /// Until when sensitive actions are allowed without verifying again.
    pub valid_until: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes.
    pub recovery_codes: Vec<String>,
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Unique login name.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// For patient accounts: their patient record.
    pub patient_id: Option<PatientId>,
}

/// A created account and its one-time password.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    /// The account.
    pub user: UserView,
    /// Must be changed at first sign-in.
    pub one_time_password: String,
}

/// A one-time password.
#[derive(Debug, Serialize, ToSchema)]
pub struct OneTimePassword {
    /// Must be changed at next sign-in.
    pub one_time_password: String,
}

/// Changing a user's role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// New role.
    pub role: Role,
}

/// How many sessions were revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Count.
    pub revoked: usize,
}

/// Organisation policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Roles that must use a second factor.
    pub mfa_required_roles: Vec<Role>,
    /// Idle timeout in seconds (60 to 86400).
    pub idle_timeout_secs: i64,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// Users, by login.
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A new patient record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePatientRequest {
    /// Medical record number, unique in the organisation.
    pub mrn: String,
    /// Patient's name.
    pub display_name: String,
    /// Care team members (staff of the organisation).
    #[serde(default)]
    pub care_team: Vec<UserId>,
}

/// Looking a patient up by MRN (in the body, so the MRN never appears in a URL or access log).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientSearchRequest {
    /// Exact medical record number.
    pub mrn: String,
}

/// Replacing a care team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamRequest {
    /// The whole new care team.
    pub care_team: Vec<UserId>,
}

/// Putting a care-team member on or off call (escalation step 2).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnCallRequest {
    /// On call: told when an urgent or STAT message about the patient stays unread.
    pub on_call: bool,
}

/// The SCIM groups to attach to a patient's care team: all of them (an empty list detaches
/// every group).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamGroupsRequest {
    /// The organisation's SCIM group ids (at most 20).
    pub group_ids: Vec<uuid::Uuid>,
}

/// A SCIM group attached to a patient's care team.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachedGroupView {
    /// The group.
    pub id: uuid::Uuid,
    /// Its name (the identity provider's).
    pub display_name: String,
    /// When it was attached.
    pub attached_at: String,
    /// Its members on the care team through it (active workforce accounts), the first
    /// [`GROUP_MEMBERS_SHOWN`] by id.
    pub members: Vec<UserId>,
    /// How many members it has on the care team (`members` may show fewer).
    pub member_count: usize,
}

/// The most members of one attached group a patient record lists (`member_count` has them all):
/// a group of thousands would otherwise make every patient record and conversation detail huge.
pub const GROUP_MEMBERS_SHOWN: usize = 200;

/// Someone on a patient's care team, and how.
#[derive(Debug, Serialize, ToSchema)]
pub struct CareTeamMemberView {
    /// The user.
    pub user_id: UserId,
    /// Named in Ward (`PUT .../care-team`).
    pub direct: bool,
    /// The attached groups through which they are on it (none for a direct member only).
    pub via_groups: Vec<uuid::Uuid>,
}

/// A patient record.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientView {
    /// Id.
    pub id: PatientId,
    /// Medical record number.
    pub mrn: String,
    /// Name.
    pub display_name: String,
    /// Care team: everyone on it, directly or through an attached group.
    pub care_team: Vec<UserId>,
    /// The members named in Ward (what `PUT .../care-team` replaces).
    pub direct_care_team: Vec<UserId>,
    /// The SCIM groups attached to the care team.
    pub care_team_groups: Vec<AttachedGroupView>,
    /// Each member of the care team, direct or through which groups.
    pub care_team_members: Vec<CareTeamMemberView>,
    /// Flagged as restricted (staff member, VIP): every access raises an anomaly alert.
    pub restricted: bool,
    /// The care-team members on call: told when an urgent or STAT message about the patient
    /// stays unread (escalation step 2). Absent where the record is part of a conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_call: Option<Vec<UserId>>,
}

impl PatientView {
    /// The record with its on-call members.
    pub fn new(p: ward_store::Patient, on_call: Vec<UserId>) -> Self {
        Self { on_call: Some(on_call), ..p.into() }
    }
}

impl From<ward_store::Patient> for PatientView {
    fn from(p: ward_store::Patient) -> Self {
        // Linear in the memberships: sets and one map, not a scan of every group per member.
        let direct: HashSet<UserId> = p.direct_care_team.iter().copied().collect();
        let mut via: HashMap<UserId, Vec<uuid::Uuid>> = HashMap::new();
        for g in &p.care_team_groups {
            for u in &g.members {
                via.entry(*u).or_default().push(g.id);
            }
        }
        let care_team_members = p
            .care_team
            .iter()
            .map(|u| CareTeamMemberView { user_id: *u, direct: direct.contains(u), via_groups: via.remove(u).unwrap_or_default() })
            .collect();
        Self {
            id: p.id,
            mrn: p.mrn,
            display_name: p.display_name,
            care_team: p.care_team,
            direct_care_team: p.direct_care_team,
            care_team_groups: p
                .care_team_groups
                .into_iter()
                .map(|mut g| {
                    let member_count = g.members.len();
                    g.members.truncate(GROUP_MEMBERS_SHOWN);
                    AttachedGroupView {
                        id: g.id,
                        display_name: g.display_name,
                        attached_at: ts(g.attached_at),
                        members: g.members,
                        member_count,
                    }
                })
                .collect(),
            care_team_members,
            restricted: p.restricted,
            on_call: None,
        }
    }
}

impl PatientView {
    /// The record as the patient themself sees it: their care team as before, without the
    /// organisation's internal grouping (the identity provider's group names, when groups were
    /// attached and by which group each member is there).
    pub fn for_patient(mut self) -> Self {
        self.care_team_groups = Vec::new();
        for m in &mut self.care_team_members {
            m.via_groups = Vec::new();
        }
        self
    }
}

/// A stated reason for adding someone outside the care team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Reason code.
    pub code: AccessReason,
    /// Explanation (required for `other`).
    pub note: Option<String>,
}

/// A member to add at creation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemberRequest {
    /// The user.
    pub user_id: UserId,
    /// Required for someone outside the patient's care team.
    pub reason: Option<ReasonRequest>,
}

/// A new conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// Kind.
    pub kind: ConversationKind,
    /// Title (group and patient conversations).
    pub title: Option<String>,
    /// The patient (patient conversations).
    pub patient_id: Option<PatientId>,
    /// Members besides the creator.
    pub members: Vec<NewMemberRequest>,
    /// The creator's own reason, if outside the patient's care team.
    pub reason: Option<ReasonRequest>,
}

/// Adding a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The user.
    pub user_id: UserId,
    /// Standing (default member).
    pub role: Option<MemberRole>,
    /// Required for someone outside the patient's care team.
    pub reason: Option<ReasonRequest>,
}

/// The event sequence of a membership change.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventSeq {
    /// Sequence number in the conversation's event stream.
    pub seq: i64,
}

/// A conversation in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationSummaryView {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Title.
    pub title: Option<String>,
    /// Patient.
    pub patient_id: Option<PatientId>,
    /// Creation time.
    pub created_at: String,
    /// Sequence of the newest message.
    pub last_message_seq: i64,
    /// Sequence of the newest event.
    pub last_event_seq: i64,
    /// Caller's standing.
    pub my_role: MemberRole,
    /// Caller's read watermark.
    pub my_read_seq: i64,
    /// Messages after the caller's read watermark.
    pub unread: i64,
    /// The highest priority among the caller's unread messages from others (recalled ones
    /// excepted), for a list badge; null when none is unread.
    pub unread_priority: Option<Priority>,
    /// Minimum-necessary warning: for a patient conversation, whether any member is outside
    /// the patient's care team (and not the patient).
    pub beyond_care_team: bool,
    /// How many members are outside the patient's care team.
    pub beyond_care_team_count: i64,
    /// Set when the caller's device is blocked from PHI by its posture: the title (free text
    /// that may carry PHI) is then withheld (null).
    pub withheld: Option<Box<PhiWithheld>>,
}

impl ConversationSummaryView {
    /// As a device blocked from PHI sees it: without the title.
    pub fn withhold(&mut self, notice: &PhiWithheld) {
        self.title = None;
        self.withheld = Some(Box::new(notice.clone()));
    }
}

impl ConversationView {
    /// As a device blocked from PHI sees it: no title, no patient (name and MRN), and patient
    /// members' names withheld.
    pub fn withhold(&mut self, notice: &PhiWithheld) {
        self.summary.withhold(notice);
        self.patient = None;
        for m in &mut self.members {
            if m.user_role == Role::Patient {
                m.display_name = "(withheld)".into();
            }
        }
    }
}

impl From<ward_store::ConversationSummary> for ConversationSummaryView {
    fn from(s: ward_store::ConversationSummary) -> Self {
        Self {
            id: s.id,
            kind: s.kind,
            title: s.title,
            patient_id: s.patient_id,
            created_at: ts(s.created_at),
            last_message_seq: s.last_message_seq,
            last_event_seq: s.last_event_seq,
            my_role: s.my_role,
            my_read_seq: s.my_read_seq,
            unread: (s.last_message_seq - s.my_read_seq).max(0),
            unread_priority: s.unread_priority,
            beyond_care_team: s.beyond_care_team > 0,
            beyond_care_team_count: s.beyond_care_team,
            withheld: None,
        }
    }
}

/// A page of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    /// Newest first.
    pub items: Vec<ConversationSummaryView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_cursor: Option<ConversationId>,
}

/// A member and their receipts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// User.
    pub user_id: UserId,
    /// Name.
    pub display_name: String,
    /// Organisation role.
    pub user_role: Role,
    /// Standing.
    pub role: MemberRole,
    /// Join time.
    pub joined_at: String,
    /// Messages up to this sequence reached the member.
    pub delivered_seq: i64,
    /// Messages up to this sequence were read.
    pub read_seq: i64,
    /// Reason recorded for joining from outside the care team.
    pub reason: Option<AccessReason>,
}

/// A conversation with members.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    /// Summary.
    #[serde(flatten)]
    pub summary: ConversationSummaryView,
    /// Members.
    pub members: Vec<MemberView>,
    /// The patient (patient conversations).
    pub patient: Option<PatientView>,
}

impl From<ward_store::ConversationDetail> for ConversationView {
    fn from(d: ward_store::ConversationDetail) -> Self {
        Self {
            summary: d.summary.into(),
            members: d
                .members
                .into_iter()
                .map(|m| MemberView {
                    user_id: m.user_id,
                    display_name: m.display_name,
                    user_role: m.user_role,
                    role: m.role,
                    joined_at: ts(m.joined_at),
                    delivered_seq: m.delivered_seq,
                    read_seq: m.read_seq,
                    reason: m.reason,
                })
                .collect(),
            patient: d.patient.map(Into::into),
        }
    }
}

impl ConversationView {
    /// What a patient member sees: the patient record without the care team's groups.
    pub fn for_patient(mut self) -> Self {
        self.patient = self.patient.map(PatientView::for_patient);
        self
    }
}

/// A new message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Client-chosen id; retrying with the same id never creates a second message.
    pub client_txn_id: String,
    /// Text, up to 64 KiB.
    pub body: String,
    /// Priority (default routine).
    #[serde(default)]
    pub priority: Priority,
    /// The message this corrects (own messages only).
    pub corrects: Option<MessageId>,
    /// Attachments to refer to (at most 10), each uploaded by the sender to this conversation
    /// with `POST .../attachments`. Part of the content a retry must repeat.
    #[serde(default)]
    pub attachments: Vec<AttachmentId>,
}

/// A message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// Id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Gapless position in the conversation, from 1.
    pub seq: i64,
    /// Sender.
    pub sender_id: UserId,
    /// The sender's transaction id.
    pub client_txn_id: String,
    /// Priority.
    pub priority: Priority,
    /// Text; null once recalled.
    pub body: Option<String>,
    /// The corrected message.
    pub corrects: Option<MessageId>,
    /// Attachments, in the order given (empty once recalled).
    pub attachments: Vec<AttachmentId>,
    /// Send time.
    pub created_at: String,
    /// Recall time.
    pub recalled_at: Option<String>,
    /// Present when the organisation's device posture policy blocks this device from PHI:
    /// `body` is null and `attachments` empty; fix the named settings and report again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Box<PhiWithheld>>,
    /// True once the content was crypto-shredded at the end of its retention period: a
    /// tombstone (id, sender, seq and times remain; `body` is null).
    pub shredded: bool,
    /// When it was shredded.
    pub shredded_at: Option<String>,
}

impl From<ward_store::Message> for MessageView {
    fn from(m: ward_store::Message) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            sender_id: m.sender_id,
            client_txn_id: m.client_txn_id,
            priority: m.priority,
            body: m.body,
            corrects: m.corrects,
            attachments: m.attachments,
            created_at: ts(m.created_at),
            recalled_at: m.recalled_at.map(ts),
            withheld: None,
            shredded: m.shredded_at.is_some(),
            shredded_at: m.shredded_at.map(ts),
        }
    }
}

/// The notice a blocked device receives instead of message content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PhiWithheld {
    /// `device_posture`, or `policy_acknowledgment` while the user must still acknowledge
    /// the organisation's current policies (then `fix` is empty).
    pub reason: &'static str,
    /// The settings to fix (posture item names, docs/devices.md).
    #[schema(value_type = Vec<String>)]
    pub fix: Vec<ward_device::ItemId>,
}

impl MessageView {
    /// The view a device blocked from PHI gets: everything but the content, and the notice.
    pub fn withhold(mut self, notice: &PhiWithheld) -> Self {
        self.body = None;
        self.attachments = Vec::new();
        self.withheld = Some(Box::new(notice.clone()));
        self
    }
}

/// A page of messages, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Messages in sequence order.
    pub items: Vec<MessageView>,
    /// Sequence to pass as `before` for older messages; absent when there are none.
    pub before_cursor: Option<i64>,
    /// Sequence to pass as `after` for newer messages.
    pub after_cursor: Option<i64>,
}

/// Moving a receipt watermark.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRequest {
    /// Delivered or read.
    pub kind: ReceiptKind,
    /// Up to this message sequence.
    pub up_to_seq: i64,
}

/// A conversation event as streamed over the WebSocket.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventFrame {
    /// Always `event`.
    #[serde(rename = "type")]
    pub frame: &'static str,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Gapless position in the conversation's event stream; acknowledge it.
    pub seq: i64,
    /// Time.
    pub at: String,
    /// Who caused it.
    pub actor_id: Option<UserId>,
    /// What happened.
    #[serde(flatten)]
    pub event: EventBody,
}

/// The body of an event frame.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Built once per event, rendered to JSON and dropped: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum EventBody {
    /// A new message.
    Message {
        /// The message.
        message: MessageView,
    },
    /// A message was recalled; clients drop its text.
    Recall {
        /// The message.
        message_id: MessageId,
    },
    /// A member's receipt moved.
    Receipt {
        /// The member.
        user_id: UserId,
        /// Which watermark.
        receipt: ReceiptKind,
        /// Up to which message.
        up_to_seq: i64,
    },
    /// A member joined.
    MemberAdded {
        /// The member.
        user_id: UserId,
        /// Standing.
        role: MemberRole,
    },
    /// A member left or was removed.
    MemberRemoved {
        /// The former member.
        user_id: UserId,
    },
    /// Minimum-necessary notice: the patient conversation now reaches beyond the patient's
    /// care team; share only what the added members need.
    BeyondCareTeam {
        /// The member whose joining caused it.
        user_id: UserId,
        /// How many members are now outside the care team.
        members: i64,
    },
}

impl From<ConversationEvent> for EventFrame {
    fn from(e: ConversationEvent) -> Self {
        let event = match e.kind {
            EventKind::Message(m) => EventBody::Message { message: m.into() },
            EventKind::Recall { message_id } => EventBody::Recall { message_id },
            EventKind::Receipt { user_id, kind, up_to_seq } => EventBody::Receipt { user_id, receipt: kind, up_to_seq },
            EventKind::MemberAdded { user_id, role } => EventBody::MemberAdded { user_id, role },
            EventKind::MemberRemoved { user_id } => EventBody::MemberRemoved { user_id },
            EventKind::BeyondCareTeam { user_id, members } => EventBody::BeyondCareTeam { user_id, members },
        };
        Self { frame: "event", conversation_id: e.conversation_id, seq: e.seq, at: ts(e.created_at), actor_id: e.actor_id, event }
    }
}

/// Renders an event as the JSON text of a WebSocket frame.
pub fn render_event(e: ConversationEvent) -> String {
    serde_json::to_string(&EventFrame::from(e)).unwrap_or_default()
}

/// A rendered event frame as a device blocked from PHI receives it: a message event loses its
/// body and attachments and carries the notice; other events pass unchanged.
pub fn withhold_frame(frame: &str, notice: &PhiWithheld) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(frame) else { return frame.to_owned() };
    if v.get("kind").and_then(|k| k.as_str()) != Some("message") {
        return frame.to_owned();
    }
    if let Some(m) = v.get_mut("message").and_then(|m| m.as_object_mut()) {
        m.insert("body".into(), serde_json::Value::Null);
        m.insert("attachments".into(), serde_json::Value::Array(Vec::new()));
        m.insert("withheld".into(), serde_json::to_value(notice).unwrap_or_default());
    }
    serde_json::to_string(&v).unwrap_or_default()
}

/// An uploaded attachment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    /// Id, to refer to from a message's `attachments`.
    pub id: AttachmentId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Who uploaded it.
    pub uploader_id: UserId,
    /// The content type, as detected from the content itself.
    pub content_type: String,
    /// Size in bytes (after location metadata was removed from images).
    pub size: u64,
    /// The file name given at upload, if any.
    pub file_name: Option<String>,
    /// Upload time.
    pub created_at: String,
}

impl From<ward_store::Attachment> for AttachmentView {
    fn from(a: ward_store::Attachment) -> Self {
        Self {
            id: a.id,
            conversation_id: a.conversation_id,
            uploader_id: a.uploader_id,
            content_type: a.content_type,
            size: a.size,
            file_name: a.file_name,
            created_at: ts(a.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large attached group: the record lists the first members with the full count, every
    /// care-team member still says through which groups, and the patient's view hides groups.
    #[test]
    fn a_large_group_is_capped_and_hidden_from_the_patient() {
        let members: Vec<UserId> = (0..GROUP_MEMBERS_SHOWN + 50).map(|_| UserId(uuid::Uuid::new_v4())).collect();
        let direct = UserId(uuid::Uuid::new_v4());
        let (big, small) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let group = |id, members: Vec<UserId>| ward_store::AttachedGroup { id, display_name: "Ward".into(), attached_at: 0, members };
        let mut care_team = members.clone();
        care_team.push(direct);
        let p = ward_store::Patient {
            id: PatientId(uuid::Uuid::new_v4()),
            org_id: OrgId(uuid::Uuid::new_v4()),
            mrn: "M".into(),
            display_name: "P".into(),
            care_team,
            direct_care_team: vec![direct],
            care_team_groups: vec![group(big, members.clone()), group(small, vec![members[0]])],
            created_at: 0,
            restricted: false,
        };
        let v = PatientView::from(p);
        assert_eq!(v.care_team_groups[0].members.len(), GROUP_MEMBERS_SHOWN);
        assert_eq!(v.care_team_groups[0].member_count, GROUP_MEMBERS_SHOWN + 50);
        assert_eq!(v.care_team_members.len(), GROUP_MEMBERS_SHOWN + 51);
        let first = v.care_team_members.iter().find(|m| m.user_id == members[0]).unwrap();
        assert_eq!((first.direct, first.via_groups.clone()), (false, vec![big, small]));
        let last = v.care_team_members.iter().find(|m| m.user_id == members[GROUP_MEMBERS_SHOWN + 49]).unwrap();
        assert_eq!(last.via_groups, vec![big], "beyond the listed members, provenance is still complete");
        let d = v.care_team_members.iter().find(|m| m.user_id == direct).unwrap();
        assert_eq!((d.direct, d.via_groups.len()), (true, 0));
        let mine = v.for_patient();
        assert!(mine.care_team_groups.is_empty() && mine.care_team_members.iter().all(|m| m.via_groups.is_empty()));
        assert_eq!(mine.care_team.len(), GROUP_MEMBERS_SHOWN + 51);
    }
}
