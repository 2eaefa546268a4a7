//! The audit event: one schema for every recorded access, transmission, login and admin action.
//!
//! An event names who did what to which record, with what outcome, from where. It never holds
//! message content or patient identifiers: a patient appears only as the opaque [`PatientId`].
//! The store writes each event in the same transaction as the change it records.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, OrgId, PatientId, UserId};

macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened. The dotted names are stable: exports and queries use them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),*];

            /// The stable dotted name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }

            /// Parses a dotted name.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|a| a.as_str() == s)
            }
        }
    };
}

audit_actions! {
    /// A password login attempt.
    Login = "auth.login",
    /// A second-factor verification during login.
    MfaVerify = "auth.mfa",
    /// A refresh-token exchange.
    TokenRefresh = "auth.refresh",
    /// An old refresh token was presented again; its whole family was revoked.
    RefreshReuse = "auth.refresh_reuse",
    /// A user signed out.
    Logout = "auth.logout",
    /// A session was revoked by its user or an admin.
    SessionRevoke = "session.revoke",
    /// A session ended after the idle timeout.
    SessionIdleTimeout = "session.idle_timeout",
    /// A user changed their own password.
    PasswordChange = "user.password_change",
    /// TOTP enrolment started, confirmed or removed; recovery codes issued.
    TotpEnroll = "mfa.totp_enroll",
    /// TOTP enrolment confirmed.
    TotpConfirm = "mfa.totp_confirm",
    /// TOTP removed.
    TotpRemove = "mfa.totp_remove",
    /// New recovery codes issued.
    RecoveryCodes = "mfa.recovery_codes",
    /// An organisation was created.
    OrgCreate = "admin.org_create",
    /// An organisation's policy changed.
    OrgPolicy = "admin.org_policy",
    /// A user account was created.
    UserCreate = "admin.user_create",
    /// A user account was disabled.
    UserDisable = "admin.user_disable",
    /// A user account was enabled again.
    UserEnable = "admin.user_enable",
    /// A user's role changed.
    UserRole = "admin.user_role",
    /// A user's password was reset to a one-time password.
    PasswordReset = "admin.password_reset",
    /// All of a user's sessions were revoked.
    SessionsRevokeAll = "admin.sessions_revoke",
    /// The workforce directory or user list was read.
    DirectoryRead = "directory.read",
    /// A patient record was created.
    PatientCreate = "patient.create",
    /// A patient record was read or looked up.
    PatientRead = "patient.read",
    /// A patient's care team changed.
    CareTeam = "patient.care_team",
    /// A conversation was created.
    ConversationCreate = "conversation.create",
    /// A conversation's details were read.
    ConversationRead = "conversation.read",
    /// A member was added to a conversation.
    MemberAdd = "member.add",
    /// A member left or was removed.
    MemberRemove = "member.remove",
    /// A message was sent.
    MessageSend = "message.send",
    /// Message content was fetched.
    MessageRead = "message.read",
    /// A message was recalled.
    MessageRecall = "message.recall",
    /// A message was forwarded into another conversation (target the new message; detail
    /// `source`, `conversation`, and for a disclosure outside the patient's care team one
    /// event per recipient with `recipient` and `purpose`; never the text).
    MessageForward = "message.forward",
    /// A patient's authorization to disclose their information was recorded (target the
    /// authorization; detail `expires_at`; never its text).
    AuthorizationRecord = "patient.authorization",
    /// A real-time stream replayed missed events (content delivery after reconnect).
    StreamReplay = "stream.replay",
    /// The audit log itself was read: a checkpoint, a proof or an event search (detail `op`).
    AuditLogRead = "audit.read",
    /// The whole audit log was exported (`ward audit export`).
    AuditExport = "audit.export",
    /// An anomaly rule raised an alert (detail: `rule`, counts, window; subjects as ids).
    AlertRaised = "alert.raised",
    /// A compliance officer or admin acknowledged an alert.
    AlertAcknowledge = "alert.acknowledge",
    /// A patient was flagged as restricted (staff member, VIP) or the flag was cleared.
    PatientRestrict = "patient.restrict",
    /// Entries past retention were archived to a verifiable segment and left the live
    /// database (`ward audit archive`; detail `from`, `to`, `tree_size`).
    AuditArchive = "audit.archive",
    /// The key provider's KEK was rotated and data keys rewrapped under it (`ward keys
    /// rotate`; detail `provider`, `rewrapped`).
    KeyRotate = "keys.rotate",
    /// The key inventory was listed (`ward keys inventory`).
    KeyInventory = "keys.inventory",
    /// A KEK version no data key uses any more was destroyed (`ward keys retire`).
    KeyRetire = "keys.retire",
    /// An organisation's retention periods changed (detail: `kind`, `days`).
    RetentionPolicy = "retention.policy",
    /// A legal hold was placed (detail: `hold`, `subject_kind`, `subject`).
    LegalHoldPlace = "legal_hold.place",
    /// A legal hold was released (detail: `hold`).
    LegalHoldRelease = "legal_hold.release",
    /// Expired content was crypto-shredded (detail: `versions`, `messages`, `days`, `whole`).
    RetentionShred = "retention.shred",
    /// A patient's conversations were exported for a right-of-access request.
    PatientExport = "patient.export",
    /// A signed evidence bundle for auditors was written (`ward evidence export` or the API;
    /// detail `files`, `not_available`), or refused (detail `reason`).
    EvidenceExport = "evidence.export",
    /// An encrypted backup was written (`ward backup`; detail `backend`, `entries`, `files`,
    /// `bytes`, `messages`, `conversations`, `audit_events`, `ms`).
    BackupCreate = "backup.create",
    /// The data directory and database were rebuilt from a backup (`ward restore`; recorded in
    /// the restored log; detail `backup`, `entries`, `files`, `messages`, `ms`).
    BackupRestore = "backup.restore",
    /// A file was uploaded to a conversation (target the attachment; detail `conversation`,
    /// `content_type`, `size`; never the file name).
    AttachmentUpload = "attachment.upload",
    /// An attachment was downloaded (target the attachment; detail `conversation`).
    AttachmentDownload = "attachment.download",
    /// A patient's consent to a channel was recorded (detail `channel`, `insists`; a grant
    /// that replaced the current one has `superseded`).
    ConsentRecord = "consent.record",
    /// A patient's consent to a channel was revoked (detail `channel`).
    ConsentRevoke = "consent.revoke",
    /// A patient's consents and their history were read.
    ConsentRead = "consent.read",
    /// An organisation notice template was created, changed or deleted (detail `op`; a
    /// refused template has `reason` and the blocked categories, never its text).
    NoticeTemplate = "notice.template",
    /// A notice to a patient was queued for delivery, or refused (detail `channel`,
    /// `template`; a refusal has `reason` and, for blocked content, the categories).
    NoticeSend = "notice.send",
    /// A patient portal one-time sign-in link was minted (actor the care team member, target
    /// the patient account, detail `expires_at`) or redeemed (actor the patient, detail
    /// `op`); never the token.
    PortalLink = "portal.link",
    /// A device stated its registration facts (target the device; detail `platform`,
    /// `ownership`, `supervised`, `mdm_enrolled`).
    DeviceRegister = "device.register",
    /// A posture report was received and evaluated, or refused (target the device; detail
    /// `state`, or `reason` when refused).
    DevicePosture = "device.posture",
    /// An organisation's device posture policy changed (detail `devices_reevaluated`).
    DevicePosturePolicy = "device.posture_policy",
    /// A selective wipe of Ward's data was requested for a device; its sessions were revoked
    /// (target the device; detail `wipe`, `source`, `sessions_revoked`; never the reason text).
    DeviceWipe = "device.wipe",
    /// A revoked device fetched its wipe command (target the device; detail `wipe`).
    DeviceWipeDelivered = "device.wipe_delivered",
    /// A device confirmed it erased Ward's data, or a confirmation was refused (replayed,
    /// wrong secret; detail `wipe`, `reason`).
    DeviceWipeAck = "device.wipe_ack",
    /// A spot-check sample of devices was drawn (target the sample; detail `seed`, `percent`,
    /// `population`, `sampled`).
    DeviceSpotCheck = "device.spot_check",
    /// An HR roster was compared with the accounts, or refused (detail: counts only, never a
    /// name or login; a refusal has `reason` and `line`).
    RosterReconcile = "roster.reconcile",
    /// Roster remediation of one account: disabled, sessions revoked, wipes queued (target
    /// the user; detail `reason`, `disabled`, `sessions_revoked`, `wipes_queued`), or a whole
    /// run's summary (detail: counts).
    RosterRemediate = "roster.remediate",
    /// A SCIM bearer token was issued or revoked by an admin (target the token; detail `op`:
    /// `create` or `revoke`; never the token).
    ScimToken = "scim.token",
    /// A SCIM client created, replaced, patched or deleted a user, or was refused (target the
    /// user; detail `op`, `token`, `role`, `active`, or `scim_type` when refused; never the user
    /// name, names or emails).
    ScimUser = "scim.user",
    /// A SCIM client created, replaced, patched or deleted a group (target the group; detail
    /// `op`, `token`, `binding` on create, counts `added`/`removed`; never a name).
    ScimGroup = "scim.group",
    /// A SCIM client deprovisioned a user (`active` false or DELETE): disabled, sessions
    /// revoked, wipes queued (target the user; detail `token`, `trigger`, `sessions_revoked`,
    /// `wipes_queued`, `deprovision`).
    ScimDeprovision = "scim.deprovision",
    /// An organisation's single sign-on (OpenID Connect) provider was set or removed by an
    /// admin (detail `op`: `set` or `delete`, `jit`, `mappings`; never the client secret).
    OidcConfig = "oidc.config",
    /// A single sign-on attempt came back from the provider: accepted (target the user;
    /// detail `jit` when the account was created) or refused (detail `reason`: a fixed code
    /// such as `state_unknown`, `state_replayed`, `provider_error`, `token_invalid`,
    /// `not_linked`, `no_role`, `disabled`); never the subject, names or tokens.
    OidcLogin = "oidc.login",
    /// A provider's back-channel logout was accepted and ended sessions (detail
    /// `sessions_revoked`, `by`: `sid` or `sub`), or refused (detail `reason`).
    OidcLogout = "oidc.logout",
    /// A signed-in user verified a second factor again for a sensitive action, or failed to
    /// (detail `method`; a failure counts towards the login name's lockout).
    StepUp = "auth.step_up",
    /// A WebAuthn credential was registered, or a registration refused (target the credential;
    /// detail `user`, `first_factor`, or `reason`; never the attestation).
    WebAuthnRegister = "mfa.webauthn_register",
    /// A WebAuthn credential was renamed (target the credential; never the label).
    WebAuthnRename = "mfa.webauthn_rename",
    /// A WebAuthn credential was removed, or removal refused (detail `reason`:
    /// `last_second_factor`).
    WebAuthnRemove = "mfa.webauthn_remove",
    /// A WebAuthn credential's signature counter went backwards: it may have been cloned. The
    /// credential is flagged and refused from then on (target the credential).
    WebAuthnCloneSuspected = "auth.webauthn_clone_suspected",
    /// A sensitive action was refused because the session's last second-factor verification
    /// is too old or the user has none enrolled (detail `for`: the action; `reason`).
    StepUpRequired = "auth.step_up_required",
    /// Emergency (break-glass) access to a patient's conversations was requested and granted,
    /// or refused (target the grant; detail `reason_category`, `minutes`; never the reason text).
    BreakGlassRequest = "break_glass.request",
    /// Conversations or messages of a patient were read under a break-glass grant (target the
    /// grant; detail `conversation`, `count`, `recipient`, `purpose`): a disclosure.
    BreakGlassRead = "break_glass.read",
    /// A compliance officer marked a break-glass use justified or unjustified (detail `status`).
    BreakGlassReview = "break_glass.review",
    /// A break-glass grant was ended early by an admin or compliance officer.
    BreakGlassRevoke = "break_glass.revoke",
    /// A phone number or email address was added to a user's or patient's contacts (target the
    /// contact; detail `kind`, `owner`, `conflict` when another person claims the same value;
    /// never the value).
    ContactAdd = "contact.add",
    /// A contact was removed (target the contact; detail `kind`, `owner`).
    ContactRemove = "contact.remove",
    /// A patient's contacts were read (detail `records`).
    ContactRead = "contact.read",
    /// A verification code was sent to a contact, or refused (target the contact; detail
    /// `kind`, `message` (the outbox entry), or `reason`).
    ContactVerifyStart = "contact.verify_start",
    /// A verification code was confirmed, or a wrong one counted (target the contact; detail
    /// `kind`, `attempts`, `reason`: `wrong_code`, `expired`, `locked`, `no_challenge`).
    ContactVerify = "contact.verify",
    /// Delivery feedback suppressed a contact value (bounce, disconnected number, complaint):
    /// every contact of the organisation with that value (detail `reason`, `kind`, `contacts`).
    ContactSuppress = "contact.suppress",
    /// An organisation's contact policy changed (detail `reverify_days`).
    ContactPolicy = "contact.policy",
    /// A breach incident was opened, or refused (target the incident; detail `source`,
    /// `affected`, `patients`, `states`; a refusal has `reason`; never the title or description).
    IncidentCreate = "incident.create",
    /// An incident's record (with its title and description) was read (target the incident).
    IncidentRead = "incident.read",
    /// The four-factor risk assessment was signed, or refused (detail: the four ratings and
    /// `outcome`, or `reason`).
    IncidentAssess = "incident.assess",
    /// A notification of the plan was recorded as done, or refused (detail `obligation`: the
    /// kind, `late`, or `reason`).
    IncidentNotify = "incident.notify",
    /// An incident was closed, or refused (detail `reason`).
    IncidentClose = "incident.close",
    /// A breach-notification deadline of an incident is a week or a day away, or passed, with
    /// the notice not recorded (no actor: the server's reminder check; target the incident;
    /// detail `obligation` (the kind), `urgency`, `days_left`). Raises an `incident_deadline` alert.
    IncidentReminder = "incident.reminder",
    /// A policy version was published (target the policy; detail `kind`, `version`; never the
    /// title or text).
    PolicyPublish = "policy.publish",
    /// A user acknowledged the current version of a policy, or tried to acknowledge one that is
    /// not current (target the policy; detail `version`, `reason`).
    PolicyAcknowledge = "policy.acknowledge",
    /// The organisation's acknowledgment requirement changed (detail `require_before_phi`).
    PolicySettings = "policy.settings",
    /// PHI was refused because the user has not acknowledged every current policy (detail
    /// `pending`: how many).
    PolicyAcknowledgmentRequired = "policy.acknowledgment_required",
    /// A vendor was added to, changed in or removed from the BAA register (target the vendor;
    /// detail `op`, `baa_status`; never the vendor's name or services).
    VendorChange = "vendor.change",
    /// A risk was added to, changed in or removed from the risk register (target the risk;
    /// detail `op`, `score`, `status`; never the description).
    RiskChange = "risk.change",
    /// The register check found a signed BAA within its warning window of renewal, or past it
    /// (target the vendor; detail `expiry`: `expiring_soon` or `expired`, `days_left`); raises
    /// the `baa_expiring` alert.
    VendorBaaExpiring = "vendor.baa_expiring",
    /// An access review campaign opened with its snapshot of every enabled workforce account
    /// (target the campaign; detail `trigger`: `schedule` or `manual`, `items`, `delegated`:
    /// items whose delegation carried over from the previous campaign, `due_at`).
    AccessReviewOpen = "access_review.open",
    /// A reviewer certified or revoked one account's access, or was refused (target the
    /// campaign; detail `user`, `decision`, `reason` (the revocation's code; never the note),
    /// `sessions_revoked`, `delegated` when the delegate decided, or `refused`: `own_access`,
    /// `not_delegated`, `closed`, `already_revoked`, `last_admin`).
    AccessReviewDecide = "access_review.decide",
    /// An access review campaign closed (target the campaign; detail `certified`, `revoked`,
    /// `not_reviewed`).
    AccessReviewClose = "access_review.close",
    /// A campaign's items (names, roles, memberships, decisions) were read, or a reviewer
    /// screen was refused (target the campaign; detail `items`, or `reason`).
    AccessReviewRead = "access_review.read",
    /// A campaign's results were exported (target the campaign; detail `format`).
    AccessReviewExport = "access_review.export",
    /// The organisation's review cadence changed (detail `cadence_days`, `window_days`).
    AccessReviewSchedule = "access_review.schedule",
    /// Items of an open campaign were delegated to a reviewer, or taken back (target the
    /// campaign; detail `reviewer` (absent when taken back), `items`).
    AccessReviewAssign = "access_review.assign",
    /// A training completion was recorded for a user (target the user; detail none: the
    /// course name stays in the register).
    TrainingRecord = "training.record",
    /// One delivery attempt of an outbox entry to its provider (target the entry; detail
    /// `kind`, `channel`, `attempt`, `result`: `sent`, `retry`, `failed`, `unregistered`, and
    /// the provider's error `code`; never the destination or the text).
    NoticeDeliver = "notice.deliver",
    /// Queued outbox entries were cancelled before delivery (target the entry or the patient;
    /// detail `reason`: `consent_revoked`, `contact_unsendable`, `no_provider`; `channel`).
    NoticeCancel = "notice.cancel",
    /// A device registered or replaced its push token (target the device; detail `platform`;
    /// never the token).
    PushTokenRegister = "push_token.register",
    /// A device's push token was removed (target the device; detail `reason`: `user`,
    /// `unregistered`).
    PushTokenRemove = "push_token.remove",
    /// One PHI-free new-message push attempt to a device (target the device; detail
    /// `conversation`, `message`, `platform`, `result`, `code`, `attempt`).
    PushDeliver = "push.deliver",
    /// An urgent or STAT message stayed unread: an escalation step ran (target the message;
    /// detail `conversation`, `step` 1 re-notify / 2 on call, `result` `notified` or `no_one`,
    /// `people`, `devices`, `sms`: on-call phones texted). Ids and counts only.
    MessageEscalate = "message.escalate",
    /// A care-team member was put on or taken off call (target the patient; detail `user`,
    /// `on_call`).
    CareTeamOnCall = "patient.on_call",
    /// A patient (or anyone) wrote in over an unsecured channel (SMS or email webhook). No
    /// actor; detail `channel`, `sender` (a keyed hash of the number or address as an id,
    /// never the value), `result` (`redirect_queued`, `unknown_sender`, `no_consent`,
    /// `rate_limited`, `redirect_blocked`) and, for a known sender, `contact` and `notice`.
    /// The message itself is never stored, logged or audited.
    InboundReceive = "inbound.receive",
    /// A patient fetched a notice by the id a push carried (target the notice).
    NoticeRead = "notice.read",
}

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed (bad password, bad code).
    Failure,
    /// The policy refused it.
    Denied,
}

impl Outcome {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// One audit record, before the store gives it its index and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The tenant, when known (a failed login for an unknown name has none).
    pub org_id: Option<OrgId>,
    /// The acting user, when known.
    pub actor: Option<UserId>,
    /// The acting device, when known.
    pub device: Option<DeviceId>,
    /// What happened.
    pub action: AuditAction,
    /// How it ended.
    pub outcome: Outcome,
    /// The kind of record acted on (`user`, `conversation`, `message`, `session`, `patient`, `org`).
    pub target_type: Option<&'static str>,
    /// The id of the record acted on.
    pub target_id: Option<String>,
    /// The patient whose information was involved, as an opaque id.
    pub patient: Option<PatientId>,
    /// The client's network address.
    pub source_ip: Option<String>,
    /// The request id, tying the event to the request's log lines.
    pub request_id: Option<String>,
    /// Machine-readable details: codes and counts only, never free text or content.
    pub detail: Vec<(&'static str, DetailValue)>,
}

/// A detail value: deliberately only numbers, booleans, ids and fixed codes, so free text
/// (which could carry PHI) cannot be put into the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailValue {
    /// A number.
    Int(i64),
    /// A flag.
    Bool(bool),
    /// A fixed code from the program, never user input.
    Code(&'static str),
    /// An id.
    Id(uuid::Uuid),
}

impl AuditEvent {
    /// An event with just an action and outcome; the rest is filled in with the builder methods.
    pub fn new(action: AuditAction, outcome: Outcome) -> Self {
        Self {
            org_id: None,
            actor: None,
            device: None,
            action,
            outcome,
            target_type: None,
            target_id: None,
            patient: None,
            source_ip: None,
            request_id: None,
            detail: Vec::new(),
        }
    }

    /// Sets the target record.
    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target_type = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    /// Sets the patient involved.
    pub fn patient(mut self, patient: Option<PatientId>) -> Self {
        self.patient = patient;
        self
    }

    /// Adds a detail.
    pub fn detail(mut self, key: &'static str, value: DetailValue) -> Self {
        self.detail.push((key, value));
        self
    }

    /// The details as a JSON object, for storage.
    pub fn detail_json(&self) -> String {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.detail {
            let v = match v {
                DetailValue::Int(n) => serde_json::Value::from(*n),
                DetailValue::Bool(b) => serde_json::Value::from(*b),
                DetailValue::Code(c) => serde_json::Value::from(*c),
                DetailValue::Id(u) => serde_json::Value::from(u.to_string()),
            };
            map.insert((*k).to_owned(), v);
        }
        serde_json::Value::Object(map).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "duplicate name {}", a.as_str());
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
    }

    #[test]
    fn details_hold_no_free_text() {
        let e = AuditEvent::new(AuditAction::MemberAdd, Outcome::Success)
            .detail("reason", DetailValue::Code("consult"))
            .detail("count", DetailValue::Int(3));
        assert_eq!(e.detail_json(), r#"{"count":3,"reason":"consult"}"#);
    }
}
