//! The records the store hands out, with typed ids.

use ward_domain::conversation::{AccessReason, ConversationKind, MemberRole, Priority, ReceiptKind};
use ward_domain::ids::{ConversationId, DeviceId, MessageId, OrgId, PatientId, SessionId, UserId};
use ward_domain::role::Role;

/// Where a request came from, copied into every audit event it causes.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client's address.
    pub source_ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

/// An organisation and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Id.
    pub id: OrgId,
    /// Short unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Roles that must use a second factor.
    pub mfa_required_roles: Vec<Role>,
    /// Seconds of inactivity after which a session ends.
    pub idle_timeout_secs: i64,
    /// Unix ms.
    pub created_at: i64,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Tenant.
    pub org_id: OrgId,
    /// Unique login name.
    pub login: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// For patient accounts: the patient record.
    pub patient_id: Option<PatientId>,
    /// Disabled accounts cannot sign in and their sessions are gone.
    pub disabled: bool,
    /// Whether TOTP is enrolled.
    pub mfa_enabled: bool,
    /// A one-time password is set and must be changed at next sign-in.
    pub password_must_change: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// What a sign-in needs to check a user's secrets.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Active TOTP secret.
    pub totp_secret: Option<Vec<u8>>,
    /// Last TOTP time step accepted (replay guard).
    pub totp_last_step: Option<i64>,
    /// TOTP secret awaiting confirmation.
    pub totp_pending_secret: Option<Vec<u8>>,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Tenant.
    pub org_id: OrgId,
    /// Login name (already parsed).
    pub login: String,
    /// Display name (already checked).
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Argon2id hash of the initial password.
    pub password_hash: String,
    /// Whether the initial password is one-time.
    pub password_must_change: bool,
    /// For patients: their record.
    pub patient_id: Option<PatientId>,
}

/// What a session may do until its holder completes a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// The password is one-time: only changing it is allowed.
    PasswordChange,
    /// Policy requires MFA and none is enrolled: only enrolment is allowed.
    MfaEnrollment,
}

impl Restriction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::PasswordChange => "password_change",
            Self::MfaEnrollment => "mfa_enrollment",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "password_change" => Some(Self::PasswordChange),
            "mfa_enrollment" => Some(Self::MfaEnrollment),
            _ => None,
        }
    }
}

/// The device a client names when signing in.
#[derive(Debug, Clone)]
pub struct DeviceClaim {
    /// A device id from an earlier sign-in of the same user, if the client has one.
    pub id: Option<DeviceId>,
    /// Human-readable name ("Dr Adams's iPhone").
    pub name: String,
    /// Platform ("ios", "android", "web", "cli").
    pub platform: String,
}

/// Hashes of the tokens to issue with a session (the tokens themselves are never stored).
#[derive(Debug, Clone)]
pub struct TokenHashes {
    /// SHA-256 of the access token.
    pub access: Vec<u8>,
    /// When the access token expires (Unix ms).
    pub access_expires_at: i64,
    /// SHA-256 of the refresh token.
    pub refresh: Vec<u8>,
}

/// A new session to create at sign-in.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Who signs in.
    pub user_id: UserId,
    /// The device claimed.
    pub device: DeviceClaim,
    /// Token hashes.
    pub tokens: TokenHashes,
    /// Absolute end of the session (Unix ms).
    pub expires_at: i64,
    /// What the session is limited to, if anything.
    pub restriction: Option<Restriction>,
    /// Whether a second factor was verified at sign-in.
    pub mfa_verified: bool,
}

/// The session behind an access token.
#[derive(Debug, Clone)]
pub struct AuthSession {
    /// Session.
    pub session_id: SessionId,
    /// User.
    pub user_id: UserId,
    /// Tenant.
    pub org_id: OrgId,
    /// Device.
    pub device_id: DeviceId,
    /// Role.
    pub role: Role,
    /// For patients: their record.
    pub patient_id: Option<PatientId>,
    /// Limitation in force.
    pub restriction: Option<Restriction>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last request.
    pub last_active_at: i64,
    /// Absolute end (Unix ms).
    pub expires_at: i64,
    /// The access token's own expiry (Unix ms).
    pub token_expires_at: i64,
    /// Whether the session was revoked.
    pub revoked: bool,
    /// Whether the user is disabled.
    pub user_disabled: bool,
    /// The organisation's idle timeout.
    pub idle_timeout_secs: i64,
    /// When a second factor was last verified (Unix ms).
    pub mfa_verified_at: Option<i64>,
}

/// A session as listed to its user or an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session.
    pub id: SessionId,
    /// Device.
    pub device_id: DeviceId,
    /// Device name.
    pub device_name: String,
    /// Device platform.
    pub device_platform: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub last_active_at: i64,
    /// Client address at sign-in.
    pub source_ip: Option<String>,
}

/// What a refresh attempt found.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// New tokens were issued.
    Rotated {
        /// The session.
        session_id: SessionId,
        /// Its user.
        user_id: UserId,
        /// What the session is still limited to.
        restriction: Option<Restriction>,
    },
    /// An already-used token was presented: the whole session was revoked.
    Reused {
        /// The revoked session.
        session_id: SessionId,
        /// Its user.
        user_id: UserId,
    },
    /// The token is unknown, expired, revoked, idle or from another device.
    Rejected,
}

/// A patient record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// Id.
    pub id: PatientId,
    /// Tenant.
    pub org_id: OrgId,
    /// Medical record number (PHI).
    pub mrn: String,
    /// Name (PHI).
    pub display_name: String,
    /// Care team: everyone on it, directly or through an attached group.
    pub care_team: Vec<UserId>,
    /// The members named in Ward (`set_care_team`), not through a group.
    pub direct_care_team: Vec<UserId>,
    /// The SCIM groups attached to the care team.
    pub care_team_groups: Vec<AttachedGroup>,
    /// Unix ms.
    pub created_at: i64,
    /// Flagged as restricted (staff member, VIP): every access raises an alert.
    pub restricted: bool,
}

/// A SCIM group attached to a patient's care team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedGroup {
    /// The group.
    pub id: uuid::Uuid,
    /// Its name (the identity provider's).
    pub display_name: String,
    /// Unix ms.
    pub attached_at: i64,
    /// Its members who are on the care team through it (active workforce).
    pub members: Vec<UserId>,
}

/// A member to add, with a reason when they are outside the care team.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// The user.
    pub user_id: UserId,
    /// The stated reason.
    pub reason: Option<ward_domain::conversation::StatedReason>,
}

/// A conversation to create.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// Kind.
    pub kind: ConversationKind,
    /// Title (groups and patient conversations).
    pub title: Option<String>,
    /// The patient, for patient conversations.
    pub patient_id: Option<PatientId>,
    /// Members other than the creator.
    pub members: Vec<MemberSpec>,
    /// The creator's own reason, when they are outside the patient's care team.
    pub creator_reason: Option<ward_domain::conversation::StatedReason>,
}

/// A conversation as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Title.
    pub title: Option<String>,
    /// Patient.
    pub patient_id: Option<PatientId>,
    /// Unix ms.
    pub created_at: i64,
    /// Sequence of the newest message.
    pub last_message_seq: i64,
    /// Sequence of the newest event.
    pub last_event_seq: i64,
    /// The caller's standing.
    pub my_role: MemberRole,
    /// The caller's read watermark.
    pub my_read_seq: i64,
    /// For a patient conversation, how many members are outside the patient's care team (and
    /// not the patient): above zero, members see a minimum-necessary warning (164.502(b)).
    pub beyond_care_team: i64,
    /// The highest priority among the caller's unread messages from others (not recalled);
    /// `None` when there are none.
    pub unread_priority: Option<ward_domain::conversation::Priority>,
}

/// A member with their receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// User.
    pub user_id: UserId,
    /// Display name.
    pub display_name: String,
    /// Organisation role.
    pub user_role: Role,
    /// Standing in the conversation.
    pub role: MemberRole,
    /// Unix ms.
    pub joined_at: i64,
    /// Messages up to this sequence reached the member's device.
    pub delivered_seq: i64,
    /// Messages up to this sequence were read.
    pub read_seq: i64,
    /// Reason code recorded when the member was outside the care team.
    pub reason: Option<AccessReason>,
}

/// A conversation with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationDetail {
    /// Summary.
    pub summary: ConversationSummary,
    /// Members.
    pub members: Vec<Member>,
    /// The patient, for patient conversations.
    pub patient: Option<Patient>,
}

/// A message as members see it: a recalled message has no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Gapless position among the conversation's messages, from 1.
    pub seq: i64,
    /// Sender.
    pub sender_id: UserId,
    /// Client transaction id.
    pub client_txn_id: String,
    /// Priority.
    pub priority: Priority,
    /// Text; `None` once recalled.
    pub body: Option<String>,
    /// The message this one corrects.
    pub corrects: Option<MessageId>,
    /// The attachments it refers to, in the order given.
    pub attachments: Vec<ward_domain::ids::AttachmentId>,
    /// Unix ms.
    pub created_at: i64,
    /// When it was recalled (Unix ms).
    pub recalled_at: Option<i64>,
    /// When its content was crypto-shredded at the end of retention (Unix ms): the message
    /// is a tombstone (id, sender, times and seq remain; `body` is `None`).
    pub shredded_at: Option<i64>,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Client transaction id.
    pub client_txn_id: ward_domain::conversation::ClientTxnId,
    /// Text.
    pub body: ward_domain::conversation::MessageText,
    /// Priority.
    pub priority: Priority,
    /// Corrected message.
    pub corrects: Option<MessageId>,
    /// Attachments (at most 10), each uploaded by the sender to the same conversation.
    pub attachments: Vec<ward_domain::ids::AttachmentId>,
}

/// What a send produced.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message (new, or the earlier one with the same client transaction id).
    pub message: Message,
    /// False when this was a retry of an earlier send.
    pub created: bool,
    /// The event to fan out (only when created).
    pub event: Option<Fanout>,
}

/// A committed conversation event and who should hear of it.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// The event.
    pub event: ConversationEvent,
    /// Users to deliver it to (members after the change, plus anyone removed by it).
    pub recipients: Vec<UserId>,
}

/// One entry in a conversation's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationEvent {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Gapless position among the conversation's events, from 1.
    pub seq: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Who caused it.
    pub actor_id: Option<UserId>,
    /// What happened.
    pub kind: EventKind,
}

/// What a conversation event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A new message.
    Message(Message),
    /// A message was recalled.
    Recall {
        /// The message.
        message_id: MessageId,
    },
    /// A member's receipt watermark moved.
    Receipt {
        /// The member.
        user_id: UserId,
        /// Which watermark.
        kind: ReceiptKind,
        /// Up to which message sequence.
        up_to_seq: i64,
    },
    /// A member joined.
    MemberAdded {
        /// The member.
        user_id: UserId,
        /// Their standing.
        role: MemberRole,
    },
    /// A member left or was removed.
    MemberRemoved {
        /// The former member.
        user_id: UserId,
    },
    /// A patient conversation grew beyond the patient's care team: a minimum-necessary notice
    /// to every member.
    BeyondCareTeam {
        /// The member whose joining caused it.
        user_id: UserId,
        /// How many members are now outside the care team.
        members: i64,
    },
}
