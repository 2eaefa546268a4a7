//! The authorization matrix: every operation of the OpenAPI document × every role × every
//! target, checked against an expectation table written from the policy
//! (`ward_domain::policy`, the handlers' checks and the store's tenancy and membership queries).
//!
//! Targets, substituted into the path or (for collection endpoints) the body:
//! - `own`: the actor's own conversation / message / account / session / patient record;
//! - `other`: the same kind of resource in the actor's organisation that is not theirs
//!   (a conversation they are not a member of, another user, another user's session, ...);
//! - `foreign`: the same kind of resource in another organisation;
//! - `random`: a well-formed id that exists nowhere (id guessing);
//! - `invalid`: a malformed id;
//! - `cross`: the actor's own container with a child id that belongs elsewhere (a message of
//!   another conversation, a user of another organisation);
//! - `peer`: the actor's own container with a child that belongs to another member (a message
//!   someone else sent; a patient account in the directory).
//!
//! Rules the table encodes: a non-member gets `404 not_found` for every conversation endpoint,
//! byte-for-byte the same answer as for a conversation that does not exist; another tenant's ids
//! always answer 404; admin-only endpoints answer `403 forbidden` to other roles before looking
//! anything up; patients cannot start conversations or use the directory; only owners change
//! membership and only senders recall or correct. Every bearer-protected operation also answers
//! 401 `missing_token` without a token, `invalid_token` for a forged or malformed one and
//! `session_ended` for a signed-out session, and refuses sessions restricted to changing a
//! one-time password unless it is one of the few that must work for them.
//!
//! The WebSocket stream (`GET /api/v1/stream`) cannot be driven like the JSON operations: it is
//! covered by its handshake (bearer header: 101 and `ready` for every role, 401 `invalid_token`
//! for a forged token, 403 for a restricted session), by first-frame authentication with a
//! forged token (error frame and close 4401), and by checking that no role, nor a member who was
//! removed, ever receives an event of a conversation it does not belong to.
//!
//! Mismatches are collected and printed as a table; the test fails at the end if there are any,
//! or if the OpenAPI document has an operation the table does not cover (or the other way round).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::{Account, Harness, PASSWORD, Reply, Session};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::ContactKind;
use ward_domain::role::Role;
use ward_store::{ContactOwner, Patient};

/// The password every actor changes to through `POST /api/v1/me/password`.
const NEW_PASSWORD: &str = "a different horse, battery and staple";
/// A path id that is not a UUID.
const BAD_ID: &str = "not-a-uuid";

// ---------------------------------------------------------------------------------------------
// The operation table
// ---------------------------------------------------------------------------------------------

/// How an operation authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// No bearer token (sign-in steps).
    Public,
    /// `Authorization: Bearer` required.
    Bearer,
    /// The WebSocket stream: bearer header or first-frame authentication.
    Stream,
}

/// One operation of the API, in the order the matrix runs them (mutating operations come after
/// the reads that need the state they change).
struct OpDef {
    method: &'static str,
    path: &'static str,
    gate: Gate,
    /// Whether a session restricted to changing a one-time password may use it.
    restricted_ok: bool,
}

const fn op(method: &'static str, path: &'static str, gate: Gate, restricted_ok: bool) -> OpDef {
    OpDef { method, path, gate, restricted_ok }
}

const OPS: &[OpDef] = &[
    op("POST", "/api/v1/auth/login", Gate::Public, false),
    op("POST", "/api/v1/auth/mfa", Gate::Public, false),
    op("POST", "/api/v1/auth/link", Gate::Public, false),
    // Single sign-on: the browser flow and the provider's back-channel logout carry no bearer.
    op("GET", "/api/v1/auth/oidc/{org}/start", Gate::Public, false),
    op("GET", "/api/v1/auth/oidc/callback", Gate::Public, false),
    op("POST", "/api/v1/auth/oidc/complete", Gate::Public, false),
    op("POST", "/api/v1/auth/oidc/{org}/backchannel-logout", Gate::Public, false),
    op("POST", "/api/v1/auth/refresh", Gate::Public, false),
    op("POST", "/api/v1/auth/logout", Gate::Bearer, true),
    op("GET", "/api/v1/me", Gate::Bearer, true),
    op("GET", "/api/v1/me/sessions", Gate::Bearer, true),
    op("DELETE", "/api/v1/me/sessions/{session_id}", Gate::Bearer, true),
    // Admits restricted sessions, except those that must change a one-time password first.
    op("POST", "/api/v1/me/mfa/totp", Gate::Bearer, false),
    op("POST", "/api/v1/me/mfa/totp/confirm", Gate::Bearer, true),
    op("DELETE", "/api/v1/me/mfa/totp", Gate::Bearer, false),
    op("POST", "/api/v1/me/mfa/recovery-codes", Gate::Bearer, false),
    // WebAuthn, before anyone has a second factor: the first registration asks the password.
    op("POST", "/api/v1/me/webauthn/registrations", Gate::Bearer, false),
    op("GET", "/api/v1/me/webauthn/credentials", Gate::Bearer, true),
    op("POST", "/api/v1/me/webauthn/credentials", Gate::Bearer, false),
    op("PATCH", "/api/v1/me/webauthn/credentials/{credential_id}", Gate::Bearer, false),
    op("DELETE", "/api/v1/me/webauthn/credentials/{credential_id}", Gate::Bearer, false),
    op("POST", "/api/v1/me/step-up/webauthn/options", Gate::Bearer, false),
    op("POST", "/api/v1/me/step-up/webauthn", Gate::Bearer, false),
    op("POST", "/api/v1/auth/mfa/webauthn/options", Gate::Public, false),
    op("POST", "/api/v1/auth/mfa/webauthn", Gate::Public, false),
    op("POST", "/api/v1/auth/passkey/options", Gate::Public, false),
    op("POST", "/api/v1/auth/passkey", Gate::Public, false),
    op("POST", "/api/v1/me/password", Gate::Bearer, true),
    op("GET", "/api/v1/org", Gate::Bearer, false),
    op("PUT", "/api/v1/org/policy", Gate::Bearer, false),
    op("GET", "/api/v1/audit/checkpoint", Gate::Bearer, false),
    op("GET", "/api/v1/audit/verifier-key", Gate::Bearer, false),
    op("GET", "/api/v1/keys", Gate::Bearer, false),
    op("GET", "/api/v1/audit/proofs/inclusion", Gate::Bearer, false),
    op("GET", "/api/v1/audit/proofs/consistency", Gate::Bearer, false),
    op("GET", "/api/v1/audit/events", Gate::Bearer, false),
    op("GET", "/api/v1/org/alert-rules", Gate::Bearer, false),
    op("PUT", "/api/v1/org/alert-rules", Gate::Bearer, false),
    op("GET", "/api/v1/audit/alerts", Gate::Bearer, false),
    op("POST", "/api/v1/audit/alerts/{alert_id}/acknowledge", Gate::Bearer, false),
    op("PUT", "/api/v1/patients/{patient_id}/restricted", Gate::Bearer, false),
    op("GET", "/api/v1/org/retention", Gate::Bearer, false),
    op("PUT", "/api/v1/org/retention", Gate::Bearer, false),
    op("GET", "/api/v1/legal-holds", Gate::Bearer, false),
    op("POST", "/api/v1/legal-holds", Gate::Bearer, false),
    op("POST", "/api/v1/legal-holds/{hold_id}/release", Gate::Bearer, false),
    op("GET", "/api/v1/retention/shreds", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/export", Gate::Bearer, false),
    // Sensitive operations need a recent second-factor verification: the matrix steps up every
    // workforce actor's main session before each of them (see `STEP_UP_OPS`).
    op("GET", "/api/v1/audit/export", Gate::Bearer, false),
    // Every workforce actor has a second factor from here on; the patient has none.
    op("POST", "/api/v1/me/step-up", Gate::Bearer, false),
    op("GET", "/api/v1/patients/{patient_id}/disclosures", Gate::Bearer, false),
    op("GET", "/api/v1/users/{user_id}/access-report", Gate::Bearer, false),
    op("GET", "/api/v1/users", Gate::Bearer, false),
    op("POST", "/api/v1/users", Gate::Bearer, false),
    op("GET", "/api/v1/users/{user_id}", Gate::Bearer, false),
    op("PATCH", "/api/v1/users/{user_id}", Gate::Bearer, false),
    op("POST", "/api/v1/users/{user_id}/disable", Gate::Bearer, false),
    op("POST", "/api/v1/users/{user_id}/enable", Gate::Bearer, false),
    op("POST", "/api/v1/users/{user_id}/password-reset", Gate::Bearer, false),
    op("GET", "/api/v1/users/{user_id}/sessions", Gate::Bearer, false),
    op("DELETE", "/api/v1/users/{user_id}/sessions", Gate::Bearer, false),
    op("POST", "/api/v1/patients", Gate::Bearer, false),
    op("POST", "/api/v1/patients/search", Gate::Bearer, false),
    op("GET", "/api/v1/patients/{patient_id}", Gate::Bearer, false),
    op("PUT", "/api/v1/patients/{patient_id}/care-team", Gate::Bearer, false),
    op("PUT", "/api/v1/patients/{patient_id}/care-team/{user_id}/on-call", Gate::Bearer, false),
    op("PUT", "/api/v1/patients/{patient_id}/care-team/groups", Gate::Bearer, false),
    op("GET", "/api/v1/groups", Gate::Bearer, false),
    op("GET", "/api/v1/patients/{patient_id}/consents", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/consents", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/consents/revoke", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/authorizations", Gate::Bearer, false),
    op("GET", "/api/v1/org/notice-templates", Gate::Bearer, false),
    op("POST", "/api/v1/org/notice-templates", Gate::Bearer, false),
    op("PUT", "/api/v1/org/notice-templates/{template_id}", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/notices", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/portal-link", Gate::Bearer, false),
    op("DELETE", "/api/v1/org/notice-templates/{template_id}", Gate::Bearer, false),
    op("GET", "/api/v1/me/notices/{notice_id}", Gate::Bearer, false),
    // The inbound webhooks authenticate by the body's signature, not a bearer token.
    op("POST", "/api/v1/inbound/{org}/sms", Gate::Public, false),
    op("POST", "/api/v1/inbound/{org}/email", Gate::Public, false),
    // The contact directory: codes are confirmed (wrongly) before new ones are sent, and
    // deletions come last.
    op("GET", "/api/v1/me/contacts", Gate::Bearer, false),
    op("POST", "/api/v1/me/contacts", Gate::Bearer, false),
    op("POST", "/api/v1/me/contacts/{contact_id}/confirm", Gate::Bearer, false),
    op("POST", "/api/v1/me/contacts/{contact_id}/verify", Gate::Bearer, false),
    op("DELETE", "/api/v1/me/contacts/{contact_id}", Gate::Bearer, false),
    op("GET", "/api/v1/patients/{patient_id}/contacts", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/contacts", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/contacts/{contact_id}/confirm", Gate::Bearer, false),
    op("POST", "/api/v1/patients/{patient_id}/contacts/{contact_id}/verify", Gate::Bearer, false),
    op("DELETE", "/api/v1/patients/{patient_id}/contacts/{contact_id}", Gate::Bearer, false),
    op("POST", "/api/v1/contacts/suppress", Gate::Bearer, false),
    op("GET", "/api/v1/contacts/conflicts", Gate::Bearer, false),
    op("GET", "/api/v1/org/contact-policy", Gate::Bearer, false),
    op("PUT", "/api/v1/org/contact-policy", Gate::Bearer, false),
    op("GET", "/api/v1/conversations", Gate::Bearer, false),
    op("POST", "/api/v1/conversations", Gate::Bearer, false),
    op("GET", "/api/v1/conversations/{conversation_id}", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/members", Gate::Bearer, false),
    op("DELETE", "/api/v1/conversations/{conversation_id}/members/{user_id}", Gate::Bearer, false),
    op("GET", "/api/v1/conversations/{conversation_id}/messages", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/messages", Gate::Bearer, false),
    op("GET", "/api/v1/conversations/{conversation_id}/messages/{message_id}", Gate::Bearer, false),
    // Before the recall: forwarding a recalled message is refused.
    op("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/forward", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/recall", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/receipts", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/attachments", Gate::Bearer, false),
    op("GET", "/api/v1/conversations/{conversation_id}/attachments/{attachment_id}", Gate::Bearer, false),
    // Device trust: the caller's own device first (registration before reports), then the
    // organisation's devices and reports; wipes aim only at devices no later cell needs.
    op("PUT", "/api/v1/me/device", Gate::Bearer, false),
    op("PUT", "/api/v1/me/device/push-token", Gate::Bearer, false),
    op("DELETE", "/api/v1/me/device/push-token", Gate::Bearer, false),
    op("GET", "/api/v1/me/devices", Gate::Bearer, false),
    op("POST", "/api/v1/me/devices/{device_id}/posture", Gate::Bearer, false),
    op("POST", "/api/v1/me/devices/{device_id}/wipe", Gate::Bearer, false),
    op("GET", "/api/v1/devices", Gate::Bearer, false),
    op("GET", "/api/v1/devices/{device_id}/posture", Gate::Bearer, false),
    op("POST", "/api/v1/devices/{device_id}/wipe", Gate::Bearer, false),
    op("GET", "/api/v1/device-wipes", Gate::Bearer, false),
    op("POST", "/api/v1/device-wipe/command", Gate::Public, false),
    op("POST", "/api/v1/device-wipe/ack", Gate::Public, false),
    op("GET", "/api/v1/org/device-policy", Gate::Bearer, false),
    op("PUT", "/api/v1/org/device-policy", Gate::Bearer, false),
    op("GET", "/api/v1/device-reports/drift", Gate::Bearer, false),
    op("GET", "/api/v1/device-reports/review", Gate::Bearer, false),
    op("POST", "/api/v1/device-reports/spot-checks", Gate::Bearer, false),
    op("GET", "/api/v1/device-reports/spot-checks", Gate::Bearer, false),
    op("GET", "/api/v1/device-reports/spot-checks/{spot_check_id}", Gate::Bearer, false),
    op("GET", "/api/v1/org/device-profile", Gate::Bearer, false),
    op("POST", "/api/v1/admin/roster/reconcile", Gate::Bearer, false),
    op("POST", "/api/v1/admin/roster/remediate", Gate::Bearer, false),
    // Break-glass: requests, reads under the fixture's grants, then review and revocation.
    op("POST", "/api/v1/break-glass", Gate::Bearer, false),
    op("GET", "/api/v1/break-glass", Gate::Bearer, false),
    op("GET", "/api/v1/break-glass/{grant_id}/conversations", Gate::Bearer, false),
    op("GET", "/api/v1/break-glass/{grant_id}/conversations/{conversation_id}/messages", Gate::Bearer, false),
    op("GET", "/api/v1/break-glass/reviews", Gate::Bearer, false),
    op("POST", "/api/v1/break-glass/{grant_id}/review", Gate::Bearer, false),
    op("POST", "/api/v1/break-glass/{grant_id}/revoke", Gate::Bearer, false),
    op("POST", "/api/v1/incidents", Gate::Bearer, false),
    op("GET", "/api/v1/incidents", Gate::Bearer, false),
    op("GET", "/api/v1/incidents/{incident_id}", Gate::Bearer, false),
    op("POST", "/api/v1/incidents/{incident_id}/assessment", Gate::Bearer, false),
    op("POST", "/api/v1/incidents/{incident_id}/notifications", Gate::Bearer, false),
    op("POST", "/api/v1/incidents/{incident_id}/close", Gate::Bearer, false),
    op("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/report-misdirected", Gate::Bearer, false),
    op("GET", "/api/v1/conversations/{conversation_id}/escalations", Gate::Bearer, false),
    // Policies: reads and acknowledgments of the fixture's policy, then publications.
    op("GET", "/api/v1/policies", Gate::Bearer, false),
    op("GET", "/api/v1/policies/{policy_id}", Gate::Bearer, false),
    op("POST", "/api/v1/me/policy-acknowledgments", Gate::Bearer, false),
    op("GET", "/api/v1/policies/acknowledgment-report", Gate::Bearer, false),
    op("POST", "/api/v1/policies", Gate::Bearer, false),
    op("POST", "/api/v1/policies/{policy_id}/versions", Gate::Bearer, false),
    op("PUT", "/api/v1/org/policy-acknowledgment", Gate::Bearer, false),
    op("GET", "/api/v1/baa-vendors", Gate::Bearer, false),
    op("POST", "/api/v1/baa-vendors", Gate::Bearer, false),
    op("PUT", "/api/v1/baa-vendors/{vendor_id}", Gate::Bearer, false),
    op("DELETE", "/api/v1/baa-vendors/{vendor_id}", Gate::Bearer, false),
    op("GET", "/api/v1/risks", Gate::Bearer, false),
    op("POST", "/api/v1/risks", Gate::Bearer, false),
    op("PUT", "/api/v1/risks/{risk_id}", Gate::Bearer, false),
    op("DELETE", "/api/v1/risks/{risk_id}", Gate::Bearer, false),
    op("POST", "/api/v1/training-records", Gate::Bearer, false),
    op("GET", "/api/v1/training-records", Gate::Bearer, false),
    op("GET", "/api/v1/me/training-records", Gate::Bearer, false),
    // Access reviews: org A has a closed campaign and an open one (so starting another is
    // refused); decisions only certify, so no account is disabled under the later cells.
    op("GET", "/api/v1/access-reviews", Gate::Bearer, false),
    op("POST", "/api/v1/access-reviews", Gate::Bearer, false),
    op("GET", "/api/v1/access-reviews/{campaign_id}", Gate::Bearer, false),
    op("POST", "/api/v1/access-reviews/{campaign_id}/items/{user_id}", Gate::Bearer, false),
    op("PUT", "/api/v1/access-reviews/{campaign_id}/reviewers", Gate::Bearer, false),
    op("GET", "/api/v1/access-reviews/{campaign_id}/export", Gate::Bearer, false),
    op("POST", "/api/v1/access-reviews/{campaign_id}/close", Gate::Bearer, false),
    op("PUT", "/api/v1/org/access-review-schedule", Gate::Bearer, false),
    op("POST", "/api/v1/evidence/export", Gate::Bearer, false),
    // SCIM administration; the SCIM service itself (/scim/v2) has its own token and its own
    // tests (api_scim).
    op("GET", "/api/v1/admin/scim/tokens", Gate::Bearer, false),
    op("POST", "/api/v1/admin/scim/tokens", Gate::Bearer, false),
    op("DELETE", "/api/v1/admin/scim/tokens/{token_id}", Gate::Bearer, false),
    op("GET", "/api/v1/admin/scim/deprovisions", Gate::Bearer, false),
    // Single sign-on provider settings (admins; changes need a step-up).
    op("PUT", "/api/v1/admin/oidc", Gate::Bearer, false),
    op("GET", "/api/v1/admin/oidc", Gate::Bearer, false),
    op("PUT", "/api/v1/admin/oidc/links/{user_id}", Gate::Bearer, false),
    op("GET", "/api/v1/admin/oidc/links/{user_id}", Gate::Bearer, false),
    op("DELETE", "/api/v1/admin/oidc/links/{user_id}", Gate::Bearer, false),
    op("DELETE", "/api/v1/admin/oidc", Gate::Bearer, false),
    op("GET", "/api/v1/admin/scim/groups", Gate::Bearer, false),
    op("GET", "/api/v1/stream", Gate::Stream, false),
];

/// The operations guarded by the step-up check (`ward_server::auth::require_step_up`).
const STEP_UP_OPS: &[(&str, &str)] = &[
    ("GET", "/api/v1/audit/export"),
    ("PATCH", "/api/v1/users/{user_id}"),
    ("POST", "/api/v1/devices/{device_id}/wipe"),
    ("POST", "/api/v1/break-glass"),
    ("POST", "/api/v1/users/{user_id}/disable"),
    ("POST", "/api/v1/admin/roster/remediate"),
    ("POST", "/api/v1/evidence/export"),
    ("POST", "/api/v1/admin/scim/tokens"),
    ("DELETE", "/api/v1/admin/scim/tokens/{token_id}"),
    ("PUT", "/api/v1/admin/oidc"),
    ("PUT", "/api/v1/admin/oidc/links/{user_id}"),
    ("DELETE", "/api/v1/admin/oidc/links/{user_id}"),
    ("DELETE", "/api/v1/admin/oidc"),
    ("POST", "/api/v1/access-reviews"),
    ("POST", "/api/v1/access-reviews/{campaign_id}/close"),
    ("PUT", "/api/v1/org/access-review-schedule"),
];

impl OpDef {
    fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).unwrap()
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    Own,
    Other,
    Foreign,
    Random,
    Invalid,
    Cross,
    Peer,
}

const TARGETS: [Target; 7] = [Target::Own, Target::Other, Target::Foreign, Target::Random, Target::Invalid, Target::Cross, Target::Peer];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Own => "own",
            Target::Other => "other",
            Target::Foreign => "foreign",
            Target::Random => "random",
            Target::Invalid => "invalid",
            Target::Cross => "cross",
            Target::Peer => "peer",
        }
    }
}

/// An expected answer: a status and, for errors, the problem code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exp {
    status: u16,
    code: Option<&'static str>,
}

impl std::fmt::Display for Exp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} {c}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

const fn ok(status: u16) -> Exp {
    Exp { status, code: None }
}

const fn problem(status: u16, code: &'static str) -> Exp {
    Exp { status, code: Some(code) }
}

const OK: Exp = ok(200);
const CREATED: Exp = ok(201);
const ACCEPTED: Exp = ok(202);
const NO_CONTENT: Exp = ok(204);
const NOT_FOUND: Exp = problem(404, "not_found");
const FORBIDDEN: Exp = problem(403, "forbidden");
const BAD_PARAM: Exp = problem(400, "invalid_parameter");
const NOT_OWNER: Exp = problem(403, "not_owner");
const NOT_SENDER: Exp = problem(403, "not_sender");
const INVALID_STATE: Exp = problem(409, "invalid_state");
const VALIDATION: Exp = problem(422, "validation_failed");

/// `yes` when the condition holds, else `no`.
fn when(cond: bool, yes: Exp, no: Exp) -> Exp {
    if cond { yes } else { no }
}

/// Which session sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Main,
    SpareA,
}

/// Where an answer came from: method, path, who asked, target.
type At<'a> = (&'a str, &'a str, &'a str, &'a str);

type BodyCheck = Box<dyn Fn(&Value) -> Result<(), String>>;

/// One request of the matrix and its expected answer.
struct Cell {
    path: String,
    body: Option<Value>,
    who: Who,
    expect: Exp,
    /// Further checks on a 2xx body (lists show nothing of other users, tenants, ...).
    check: Option<BodyCheck>,
    /// A raw (non-JSON) body with its content type, sent instead of `body`.
    raw: Option<(&'static str, Vec<u8>)>,
}

fn cell(path: impl Into<String>, body: Option<Value>, expect: Exp) -> Cell {
    Cell { path: path.into(), body, who: Who::Main, expect, check: None, raw: None }
}

/// The roster the roster cells send (nobody on it: every account is reported, none touched).
const MATRIX_ROSTER: &[u8] = b"employee_id,login,status\n";

/// The PDF every attachment cell uploads.
const FIXTURE_PDF: &[u8] = b"%PDF-1.4\n% matrix fixture attachment\n%%EOF\n";

impl Cell {
    fn raw(mut self, content_type: &'static str, bytes: &[u8]) -> Self {
        self.raw = Some((content_type, bytes.to_vec()));
        self
    }

    fn who(mut self, who: Who) -> Self {
        self.who = who;
        self
    }

    fn check(mut self, f: impl Fn(&Value) -> Result<(), String> + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

/// One actor of organisation A per role.
struct Act {
    role: Role,
    acc: Account,
    /// Used for every bearer request of the matrix.
    main: Session,
    /// Refreshed by `POST /auth/refresh`, then signed out by `POST /auth/logout`.
    spare_a: Session,
    /// Revoked through `DELETE /me/sessions/{id}`.
    spare_b: Session,
    /// A conversation the actor belongs to: a group it owns (workforce), or the patient
    /// conversation about themself (patient, as a plain member).
    conv: String,
    /// A message the actor sent in `conv`.
    msg: String,
    /// A message another member sent in `conv`.
    peer_msg: String,
    /// An attachment the actor uploaded to `conv`, and one another member uploaded there.
    att: String,
    peer_att: String,
    /// The actor's open break-glass grant on `p_other` (clinician and nurse only).
    grant: Option<String>,
    /// The actor's own contacts: one with a pending code (`111111`), one to delete.
    mc: String,
    mc_del: String,
    /// Contacts of `p_self` per actor: one with a pending code (`111111`), one to delete.
    pc: String,
    pc_del: String,
}

struct Fx {
    org_a: String,
    acts: Vec<Act>,
    /// Org A clinician outside every actor's conversations; owns `c_other`.
    outsider: Session,
    /// Org A staff; a member of every workforce actor's conversation and of `c_other`.
    filler: Session,
    /// Org A staff added to and removed from the actors' conversations.
    throwaway: Account,
    /// Org A staff: "another user" for the user endpoints (disabled, enabled, reset by admins).
    victim: Account,
    /// Org B.
    b_clin: Session,
    b_staff: Account,
    /// The patient actor's record (care team: the clinician and the nurse actors).
    p_self: Patient,
    /// Another patient of org A (care team: the outsider).
    p_other: Patient,
    /// A patient of org B.
    p_b: Patient,
    c_other: String,
    m_other: String,
    c_b: String,
    m_b: String,
    /// Attachments of `c_other` and `c_b`.
    att_other: String,
    att_b: String,
    /// An anomaly alert of org A, and one of org B.
    alert_a: String,
    alert_b: String,
    /// Notice templates: org A's (sent by the notice cells), one of org A that admins delete,
    /// and one of org B. `p_self` has a current SMS consent.
    tpl_a: String,
    tpl_del: String,
    tpl_b: String,
    /// The device of an org A session that admins wipe (`other`).
    wipee_device: String,
    /// A patient conversation about `p_other` (the outsider's), read under break-glass grants.
    c_p_other: String,
    /// The outsider's open grant on `p_other` ("another user's"), and org B's grant.
    grant_other: String,
    grant_b: String,
    /// Grants of the outsider that the admin and the compliance officer end early.
    grant_revoke_admin: String,
    grant_revoke_co: String,
    /// Contacts: the filler's own (another user's), org B's clinician's, `p_other`'s (with a
    /// pending code `111111`), `p_b`'s, and the filler's one that admins suppress. `p_self`
    /// has a verified phone number, so the notice cells can send.
    mc_other: String,
    mc_b: String,
    po: String,
    pc_b: String,
    supp: String,
    /// Policies: org A's (acknowledged by the cells), org A's that the cells publish new
    /// versions of, and org B's.
    pol_a: String,
    pol_ver: String,
    pol_b: String,
    /// BAA register entries: org A's (changed by the cells), one per managing role to delete,
    /// and org B's.
    ven_a: String,
    ven_del_admin: String,
    ven_del_co: String,
    ven_b: String,
    /// Risk register entries, as for the vendors.
    risk_a: String,
    risk_del_admin: String,
    risk_del_co: String,
    risk_b: String,
    /// Breach incidents: org A's open one, org B's, an org A breach assessed (its `hhs`
    /// notification is recorded by the compliance officer's cell) and one assessed as not a
    /// breach (closed by that cell).
    incident_a: String,
    incident_b: String,
    incident_n: String,
    incident_close: String,
    /// Access review campaigns: org A's open and closed ones, and org B's open one.
    ar_open: String,
    ar_closed: String,
    ar_b: String,
}

impl Fx {
    fn act(&self, role: Role) -> &Act {
        self.acts.iter().find(|a| a.role == role).unwrap()
    }
}

fn rnd() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A token of the right shape that was never issued.
fn forged(prefix: &str) -> String {
    format!("{prefix}{}{}", uuid::Uuid::new_v4().simple(), "AbCdEfGhIjK")
}

fn device() -> Value {
    json!({"name": "matrix", "platform": "cli"})
}

/// Signs in without panicking (the harness's `login` asserts).
async fn try_login(h: &Harness, acc: &Account, password: &str) -> Option<Session> {
    let r =
        h.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"login": acc.login, "password": password, "device": device()}))).await;
    let r = if r.status == 200 && r.body["status"] == "mfa_required" {
        let code = h.fresh_recovery_code(acc).await;
        let t =
            h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": r.body["mfa_token"], "recovery_code": code}))).await;
        Reply { status: t.status, headers: t.headers, body: json!({"status": "authenticated", "tokens": t.body}) }
    } else {
        r
    };
    if r.status != 200 || r.body["status"] != "authenticated" {
        return None;
    }
    let t = &r.body["tokens"];
    Some(Session {
        access: t["access_token"].as_str()?.into(),
        refresh: t["refresh_token"].as_str()?.into(),
        session_id: t["session_id"].as_str()?.into(),
        device_id: t["device_id"].as_str()?.into(),
        account: acc.clone(),
    })
}

/// A break-glass grant of the session's user on the patient, made directly in the store.
async fn grant(h: &Harness, s: &Session, patient: ward_domain::ids::PatientId) -> String {
    let actor = ward_domain::policy::Actor { user_id: s.account.id, org_id: s.account.org.id, role: s.account.role };
    let device = ward_domain::ids::DeviceId(s.device_id.parse().unwrap());
    let reason = ward_domain::break_glass::ReasonText::parse("reason", "Matrix emergency").unwrap();
    let category = ward_domain::break_glass::ReasonCategory::EmergencyTreatment;
    let g = h.store.request_break_glass(actor, device, patient, category, reason, 60, Harness::meta()).await.unwrap();
    g.id.to_string()
}

async fn send_id(h: &Harness, s: &Session, conv: &str, txn: &str) -> String {
    let r = h.send(s, conv, txn, "fixture message").await.expect(201);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn upload_id(h: &Harness, s: &Session, conv: &str) -> String {
    let r = h
        .raw(Method::POST, &format!("/api/v1/conversations/{conv}/attachments"), Some(&s.access), "application/pdf", FIXTURE_PDF.to_vec())
        .await;
    r.expect(201).body["id"].as_str().unwrap().to_owned()
}

async fn patient(h: &Harness, org: &ward_store::Org, creator: &Account, mrn: &str, team: Vec<ward_domain::ids::UserId>) -> Patient {
    h.store.create_patient(org.id, creator.id, mrn.into(), format!("Patient {mrn}"), team, Harness::meta()).await.unwrap()
}

async fn fixture(h: &Harness) -> Fx {
    let a = h.org("alpha", vec![]).await;
    let b = h.org("beta", vec![]).await;

    let mut accounts = HashMap::new();
    for role in Role::ALL.into_iter().filter(|r| r.is_workforce()) {
        accounts.insert(role, h.account(&a, &format!("a-{}", role.as_str().replace('_', "-")), role).await);
    }
    let admin = accounts[&Role::Admin].clone();
    let outsider = h.account(&a, "a-outsider", Role::Clinician).await;
    let filler = h.account(&a, "a-filler", Role::Staff).await;
    let throwaway = h.account(&a, "a-throwaway", Role::Staff).await;
    let victim = h.account(&a, "a-victim", Role::Staff).await;
    let p_self = patient(h, &a, &admin, "A-0001", vec![accounts[&Role::Clinician].id, accounts[&Role::Nurse].id]).await;
    let p_other = patient(h, &a, &admin, "A-0002", vec![outsider.id]).await;
    accounts.insert(Role::Patient, h.account_for_patient(&a, "a-patient", Role::Patient, Some(p_self.id)).await);

    let b_clin_acc = h.account(&b, "b-clinician", Role::Clinician).await;
    let b_staff = h.account(&b, "b-staff", Role::Staff).await;
    let p_b = patient(h, &b, &b_clin_acc, "B-0001", vec![b_clin_acc.id]).await;

    let outsider = h.login(&outsider).await;
    let filler = h.login(&filler).await;
    let b_clin = h.login(&b_clin_acc).await;

    let mut acts = Vec::new();
    for role in Role::ALL {
        let acc = accounts[&role].clone();
        let (main, spare_a, spare_b) = (h.login(&acc).await, h.login(&acc).await, h.login(&acc).await);
        acts.push(Act {
            role,
            acc,
            main,
            spare_a,
            spare_b,
            conv: String::new(),
            msg: String::new(),
            peer_msg: String::new(),
            att: String::new(),
            peer_att: String::new(),
            grant: None,
            mc: String::new(),
            mc_del: String::new(),
            pc: String::new(),
            pc_del: String::new(),
        });
    }
    let clin_main = acts.iter().find(|x| x.role == Role::Clinician).unwrap().main.clone();
    for act in &mut acts {
        let tag = act.role.as_str();
        if act.role.is_workforce() {
            act.conv = h.conversation(&act.main, "group", &[&filler.account]).await;
            act.msg = send_id(h, &act.main, &act.conv, &format!("own-{tag}")).await;
            act.peer_msg = send_id(h, &filler, &act.conv, &format!("peer-{tag}")).await;
            act.att = upload_id(h, &act.main, &act.conv).await;
            act.peer_att = upload_id(h, &filler, &act.conv).await;
        } else {
            let r = h
                .post(
                    "/api/v1/conversations",
                    &clin_main.access,
                    json!({"kind": "patient", "title": "About me", "patient_id": p_self.id, "members": [{"user_id": act.acc.id}]}),
                )
                .await
                .expect(201);
            act.conv = r.body["id"].as_str().unwrap().to_owned();
            act.msg = send_id(h, &act.main, &act.conv, "own-patient").await;
            act.peer_msg = send_id(h, &clin_main, &act.conv, "peer-patient").await;
            act.att = upload_id(h, &act.main, &act.conv).await;
            act.peer_att = upload_id(h, &clin_main, &act.conv).await;
        }
    }
    let c_other = h.conversation(&outsider, "group", &[&filler.account]).await;
    let m_other = send_id(h, &outsider, &c_other, "other").await;
    let c_b = h.conversation(&b_clin, "group", &[&b_staff]).await;
    let m_b = send_id(h, &b_clin, &c_b, "foreign").await;
    let att_other = upload_id(h, &outsider, &c_other).await;
    let att_b = upload_id(h, &b_clin, &c_b).await;
    let alert_a = h.store.test_insert_alert(a.id).await.id.to_string();
    let alert_b = h.store.test_insert_alert(b.id).await.id.to_string();
    let tpl = |name: &str| ward_store::TemplateDraft { name: name.into(), channel: NoticeChannel::Sms, body: TEMPLATE_BODY.into() };
    let tpl_a = h.store.create_notice_template(a.id, admin.id, tpl("matrix-a"), Harness::meta()).await.unwrap().id.to_string();
    let tpl_del = h.store.create_notice_template(a.id, admin.id, tpl("matrix-del"), Harness::meta()).await.unwrap().id.to_string();
    let tpl_b = h.store.create_notice_template(b.id, b_clin_acc.id, tpl("matrix-b"), Harness::meta()).await.unwrap().id.to_string();
    let sms = ConsentGrant::new(ConsentChannel::SmsNotices, None, false).unwrap();
    h.store.record_consent(a.id, admin.id, p_self.id, sms, Harness::meta()).await.unwrap();
    let wipee = h.account(&a, "a-wipee", Role::Staff).await;
    let wipee_device = h.login(&wipee).await.device_id;

    let c_p_other = h
        .post(
            "/api/v1/conversations",
            &outsider.access,
            json!({"kind": "patient", "title": "Bed 9", "patient_id": p_other.id, "members": []}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    send_id(h, &outsider, &c_p_other, "bg-1").await;
    for act in &mut acts {
        if matches!(act.role, Role::Clinician | Role::Nurse) {
            act.grant = Some(grant(h, &act.main, p_other.id).await);
        }
    }
    let grant_other = grant(h, &outsider, p_other.id).await;
    let grant_b = grant(h, &b_clin, p_b.id).await;
    let grant_revoke_admin = grant(h, &outsider, p_other.id).await;
    let grant_revoke_co = grant(h, &outsider, p_other.id).await;
    // Contacts, each with its own number (no conflicts).
    let mut numbers = 0u32;
    let mut contact = async |org: &ward_store::Org, actor: ward_domain::ids::UserId, owner: ContactOwner, pending: bool| -> String {
        numbers += 1;
        let value = format!("+1415555{numbers:04}");
        let c = h.store.add_contact(org.id, actor, owner, ContactKind::Phone, value, Harness::meta()).await.unwrap();
        if pending {
            h.store.start_contact_verification(org.id, actor, owner, c.id, "111111".into(), Harness::meta()).await.unwrap();
        }
        c.id.to_string()
    };
    for act in &mut acts {
        let me = ContactOwner::User(act.acc.id);
        act.mc = contact(&a, act.acc.id, me, true).await;
        act.mc_del = contact(&a, act.acc.id, me, false).await;
        act.pc = contact(&a, admin.id, ContactOwner::Patient(p_self.id), true).await;
        act.pc_del = contact(&a, admin.id, ContactOwner::Patient(p_self.id), false).await;
    }
    let mc_other = contact(&a, filler.account.id, ContactOwner::User(filler.account.id), false).await;
    let mc_b = contact(&b, b_clin_acc.id, ContactOwner::User(b_clin_acc.id), false).await;
    let po = contact(&a, admin.id, ContactOwner::Patient(p_other.id), true).await;
    let pc_b = contact(&b, b_clin_acc.id, ContactOwner::Patient(p_b.id), false).await;
    let supp = contact(&a, filler.account.id, ContactOwner::User(filler.account.id), false).await;
    h.store.test_verified_contact(a.id, admin.id, ContactOwner::Patient(p_self.id), ContactKind::Phone, "+14155559999").await;
    let policy = async |org: &ward_store::Org, actor: ward_domain::ids::UserId| -> String {
        let draft = ward_domain::registers::PolicyDraft::parse("Matrix policy", "Matrix text").unwrap();
        let kind = Some(ward_domain::registers::PolicyKind::AcceptableUse);
        h.store.publish_policy(org.id, Some(actor), None, kind, draft, Harness::meta()).await.unwrap().id.to_string()
    };
    let pol_a = policy(&a, admin.id).await;
    let pol_ver = policy(&a, admin.id).await;
    let pol_b = policy(&b, b_clin_acc.id).await;
    let vendor = async |org: &ward_store::Org, actor: ward_domain::ids::UserId| -> String {
        let draft = ward_domain::registers::VendorDraft::parse(
            "Matrix vendor",
            "Hosting",
            "None",
            ward_domain::registers::BaaStatus::None,
            None,
            None,
        );
        h.store.create_vendor(org.id, actor, draft.unwrap(), None, Harness::meta()).await.unwrap().id.to_string()
    };
    let ven_a = vendor(&a, admin.id).await;
    let ven_del_admin = vendor(&a, admin.id).await;
    let ven_del_co = vendor(&a, admin.id).await;
    let ven_b = vendor(&b, b_clin_acc.id).await;
    let risk = async |org: &ward_store::Org, actor: ward_domain::ids::UserId| -> String {
        let draft = ward_domain::registers::RiskDraft::parse("Matrix risk", 3, 4, ward_domain::registers::RiskStatus::Open, "2027-01-01");
        h.store.create_risk(org.id, actor, draft.unwrap(), None, Harness::meta()).await.unwrap().id.to_string()
    };
    let risk_a = risk(&a, admin.id).await;
    let risk_del_admin = risk(&a, admin.id).await;
    let risk_del_co = risk(&a, admin.id).await;
    let risk_b = risk(&b, b_clin_acc.id).await;
    let co = ward_domain::policy::Actor { user_id: accounts[&Role::ComplianceOfficer].id, org_id: a.id, role: Role::ComplianceOfficer };
    let b_actor = ward_domain::policy::Actor { user_id: b_clin_acc.id, org_id: b.id, role: Role::Clinician };
    let incident_a = incident(h, co, None).await;
    let incident_b = incident(h, b_actor, None).await;
    let incident_n = incident(h, co, Some(ward_domain::breach::AssessmentOutcome::Breach)).await;
    let incident_close = incident(h, co, Some(ward_domain::breach::AssessmentOutcome::LowProbabilityOfCompromise)).await;
    let ar_closed = h.store.open_access_review(a.id, admin.id, Harness::meta()).await.unwrap().id;
    h.store.close_access_review(a.id, admin.id, ar_closed, Harness::meta()).await.unwrap();
    let ar_open = h.store.open_access_review(a.id, admin.id, Harness::meta()).await.unwrap().id.to_string();
    let ar_b = h.store.open_access_review(b.id, b_clin_acc.id, Harness::meta()).await.unwrap().id.to_string();

    Fx {
        org_a: a.id.to_string(),
        acts,
        outsider,
        filler,
        throwaway,
        victim,
        b_clin,
        b_staff,
        p_self,
        p_other,
        p_b,
        c_other,
        m_other,
        c_b,
        m_b,
        att_other,
        att_b,
        alert_a,
        alert_b,
        tpl_a,
        tpl_del,
        tpl_b,
        wipee_device,
        c_p_other,
        grant_other,
        grant_b,
        grant_revoke_admin,
        grant_revoke_co,
        mc_other,
        mc_b,
        po,
        pc_b,
        supp,
        pol_a,
        pol_ver,
        pol_b,
        ven_a,
        ven_del_admin,
        ven_del_co,
        ven_b,
        risk_a,
        risk_del_admin,
        risk_del_co,
        risk_b,
        incident_a,
        incident_b,
        incident_n,
        incident_close,
        ar_open,
        ar_closed: ar_closed.to_string(),
        ar_b,
    }
}

/// An incident discovered on 2026-01-05 (one affected), optionally assessed with all-low factors.
async fn incident(h: &Harness, actor: ward_domain::policy::Actor, outcome: Option<ward_domain::breach::AssessmentOutcome>) -> String {
    use ward_domain::breach::{FactorRisk, RiskAssessment};
    let new = ward_store::NewIncident {
        title: "Matrix incident".into(),
        description: "Matrix".into(),
        discovered_on: time::macros::date!(2026 - 01 - 05),
        occurred_on: None,
        affected_count: 1,
        residents: Default::default(),
        patients: vec![],
    };
    let today = time::OffsetDateTime::now_utc().date();
    let i = h.store.create_incident(actor, new, today, ward_domain::breach::StateRules::embedded(), Harness::meta()).await.unwrap();
    if let Some(outcome) = outcome {
        let low = FactorRisk::Low;
        let a = RiskAssessment { nature_and_extent: low, unauthorized_recipient: low, acquired_or_viewed: low, mitigation: low, outcome };
        h.store.assess_incident(actor, i.id, a, ward_domain::breach::StateRules::embedded(), Harness::meta()).await.unwrap();
    }
    i.id.to_string()
}

// ---------------------------------------------------------------------------------------------
// The expectation table
// ---------------------------------------------------------------------------------------------

fn ids_of(list: &Value, key: &str) -> Vec<String> {
    list.as_array().map(|a| a.iter().filter_map(|x| x[key].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// The body check that a listing contains `must` and none of `never`.
fn listing(items: &'static str, must: Vec<String>, never: Vec<String>) -> impl Fn(&Value) -> Result<(), String> {
    move |body| {
        let list = if items.is_empty() { body } else { &body[items] };
        let ids = ids_of(list, "id");
        for m in &must {
            if !ids.contains(m) {
                return Err(format!("listing lacks {m}"));
            }
        }
        for n in &never {
            if ids.contains(n) {
                return Err(format!("listing shows {n}, which is not the caller's to see"));
            }
        }
        Ok(())
    }
}

fn has_id(want: String) -> impl Fn(&Value) -> Result<(), String> {
    move |body| if body["id"].as_str() == Some(want.as_str()) { Ok(()) } else { Err(format!("expected id {want}")) }
}

/// A minimal valid body for each operation (ids are random); the matrix overrides it where the
/// target matters.
/// A well-formed WebAuthn assertion that can never verify (it answers no ceremony).
fn probe_assertion() -> Value {
    json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}})
}

/// A well-formed WebAuthn registration response that can never verify.
fn probe_registration() -> Value {
    json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}})
}

fn min_body(op: &OpDef) -> Option<Value> {
    let b = match (op.method, op.path) {
        ("POST", "/api/v1/auth/login") => json!({"login": "nobody-probe", "password": "not the password", "device": device()}),
        ("POST", "/api/v1/auth/mfa") => json!({"mfa_token": forged("wmc_"), "code": "123456"}),
        ("POST", "/api/v1/auth/link") => json!({"token": forged("wpl_"), "device": device()}),
        ("POST", "/api/v1/auth/oidc/complete") => json!({"token": forged("wsh_"), "device": device()}),
        ("PUT", "/api/v1/admin/oidc") => json!({"issuer": "https://idp.example.org", "client_id": "ward", "client_secret": "matrix",
            "role_map": [{"value": "nurses", "role": "nurse"}], "jit_enabled": true, "jit_default_role": "staff"}),
        ("POST", "/api/v1/auth/refresh") => json!({"refresh_token": forged("wrt_"), "device_id": rnd()}),
        ("POST", "/api/v1/me/password") => json!({"current_password": "not the current password", "new_password": NEW_PASSWORD}),
        ("POST", "/api/v1/me/mfa/totp") => json!({"password": PASSWORD}),
        ("POST", "/api/v1/me/mfa/totp/confirm") => json!({"code": "abcdef"}),
        ("DELETE", "/api/v1/me/mfa/totp") | ("POST", "/api/v1/me/mfa/recovery-codes") => json!({"code": "123456"}),
        ("POST", "/api/v1/me/webauthn/registrations") => json!({"password": PASSWORD}),
        ("POST", "/api/v1/me/webauthn/credentials") => json!({"ceremony_id": rnd(), "label": "probe", "credential": probe_registration()}),
        ("PATCH", "/api/v1/me/webauthn/credentials/{credential_id}") => json!({"label": "probe"}),
        ("POST", "/api/v1/me/step-up/webauthn") => json!({"ceremony_id": rnd(), "credential": probe_assertion()}),
        ("POST", "/api/v1/auth/mfa/webauthn/options") => json!({"mfa_token": forged("wmc_")}),
        ("POST", "/api/v1/auth/mfa/webauthn") => {
            json!({"mfa_token": forged("wmc_"), "ceremony_id": rnd(), "credential": probe_assertion()})
        }
        ("POST", "/api/v1/auth/passkey") => json!({"ceremony_id": rnd(), "credential": probe_assertion(), "device": device()}),
        ("PUT", "/api/v1/org/policy") => json!({"mfa_required_roles": [], "idle_timeout_secs": 900}),
        ("POST", "/api/v1/users") => json!({"login": "matrix-probe", "display_name": "Probe", "role": "staff"}),
        ("PATCH", "/api/v1/users/{user_id}") => json!({"role": "staff"}),
        ("POST", "/api/v1/patients") => json!({"mrn": "PROBE-1", "display_name": "Probe", "care_team": []}),
        ("POST", "/api/v1/patients/search") => json!({"mrn": "PROBE-1"}),
        ("PUT", "/api/v1/patients/{patient_id}/care-team") => json!({"care_team": []}),
        ("PUT", "/api/v1/patients/{patient_id}/care-team/{user_id}/on-call") => json!({"on_call": false}),
        ("PUT", "/api/v1/patients/{patient_id}/care-team/groups") => json!({"group_ids": []}),
        ("PUT", "/api/v1/patients/{patient_id}/restricted") => json!({"restricted": false}),
        ("POST", "/api/v1/patients/{patient_id}/consents") => json!({"channel": "portal"}),
        // No actor ever has an email consent: a permitted revocation answers 409.
        ("POST", "/api/v1/patients/{patient_id}/consents/revoke") => json!({"channel": "email_notices"}),
        ("POST", "/api/v1/org/notice-templates") | ("PUT", "/api/v1/org/notice-templates/{template_id}") => {
            json!({"name": "matrix-probe", "channel": "sms", "body": TEMPLATE_BODY})
        }
        ("POST", "/api/v1/patients/{patient_id}/notices") => json!({"template_id": rnd(), "channel": "sms", "values": notice_values()}),
        ("PUT", "/api/v1/org/alert-rules") => serde_json::to_value(ward_domain::alerts::AlertRules::default()).unwrap(),
        ("PUT", "/api/v1/org/retention") => serde_json::to_value(ward_domain::lifecycle::RetentionPolicy::default()).unwrap(),
        ("POST", "/api/v1/legal-holds") => json!({"subject_kind": "user", "subject_id": rnd(), "reason": "Matrix matter"}),
        ("POST", "/api/v1/conversations") => json!({"kind": "group", "title": "Probe", "members": []}),
        ("POST", "/api/v1/conversations/{conversation_id}/members") => json!({"user_id": rnd()}),
        ("POST", "/api/v1/conversations/{conversation_id}/messages") => json!({"client_txn_id": "probe", "body": "probe"}),
        ("POST", "/api/v1/conversations/{conversation_id}/receipts") => json!({"kind": "read", "up_to_seq": 0}),
        ("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/forward") => {
            json!({"target_conversation_id": rnd(), "client_txn_id": "probe"})
        }
        ("POST", "/api/v1/patients/{patient_id}/authorizations") => {
            json!({"recipient": "Matrix recipient", "purpose": "Matrix", "expires_at": "2099-01-01T00:00:00Z"})
        }
        ("PUT", "/api/v1/me/device/push-token") => json!({"platform": "apns", "token": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}),
        ("PUT", "/api/v1/me/device") => json!({"platform": "ios", "model": "iPhone16,1", "os_version": "18.1", "app_version": "1.0.0",
            "ownership": "corporate", "supervised": true, "mdm_enrolled": true}),
        ("POST", "/api/v1/me/devices/{device_id}/posture") => json!({"os_version": "18.1", "passcode_present": true,
            "passcode_length": 6, "passcode_alphanumeric": true, "erase_after_failed_attempts": 10, "auto_lock_minutes": 5,
            "icloud_backup_enabled": false, "icloud_photos_enabled": false, "siri_while_locked": false,
            "notification_preview": "when_unlocked", "encrypted_backups": true, "jailbreak_detected": false, "app_attestation": "passed"}),
        ("POST", "/api/v1/me/devices/{device_id}/wipe") | ("POST", "/api/v1/devices/{device_id}/wipe") => json!({"reason": "Matrix"}),
        ("POST", "/api/v1/device-wipe/command") => json!({"device_id": rnd(), "wipe_secret": "wdw_matrix"}),
        ("POST", "/api/v1/inbound/{org}/sms") => json!({"from": "+14155550100", "text": "matrix"}),
        ("POST", "/api/v1/inbound/{org}/email") => json!({"from": "matrix@example.org", "text": "matrix"}),
        ("POST", "/api/v1/device-wipe/ack") => json!({"device_id": rnd(), "wipe_secret": "wdw_matrix", "wipe_id": rnd()}),
        ("PUT", "/api/v1/org/device-policy") => serde_json::to_value(ward_device::PosturePolicy::default()).unwrap(),
        ("POST", "/api/v1/device-reports/spot-checks") => json!({"percent": 10, "seed": 1}),
        ("POST", "/api/v1/me/step-up") => json!({"code": "000000"}),
        ("POST", "/api/v1/break-glass") => json!({"patient_id": rnd(), "reason_category": "emergency_treatment", "reason": "Matrix"}),
        ("POST", "/api/v1/break-glass/{grant_id}/review") => json!({"status": "justified"}),
        ("POST", "/api/v1/me/contacts") | ("POST", "/api/v1/patients/{patient_id}/contacts") => {
            json!({"kind": "email", "value": "probe@example.org"})
        }
        ("POST", "/api/v1/me/contacts/{contact_id}/confirm") | ("POST", "/api/v1/patients/{patient_id}/contacts/{contact_id}/confirm") => {
            json!({"code": "222222"})
        }
        ("POST", "/api/v1/contacts/suppress") => json!({"contact_id": rnd(), "reason": "bounce"}),
        ("PUT", "/api/v1/org/contact-policy") => json!({"reverify_days": 90}),
        ("POST", "/api/v1/policies") => json!({"kind": "other", "title": "Matrix", "text": "Matrix text"}),
        ("POST", "/api/v1/policies/{policy_id}/versions") => json!({"title": "Matrix", "text": "Matrix text v2"}),
        ("POST", "/api/v1/me/policy-acknowledgments") => json!({"policy_id": rnd(), "version": 1}),
        // Off: the matrix's other cells must not depend on acknowledgments.
        ("PUT", "/api/v1/org/policy-acknowledgment") => json!({"require_before_phi": false}),
        ("POST", "/api/v1/training-records") => json!({"user_id": rnd(), "course": "HIPAA basics", "completed_on": "2026-11-30"}),
        ("POST", "/api/v1/access-reviews/{campaign_id}/items/{user_id}") => json!({"decision": "certify"}),
        ("PUT", "/api/v1/access-reviews/{campaign_id}/reviewers") => json!({"reviewer_id": null, "user_ids": [rnd()]}),
        ("PUT", "/api/v1/org/access-review-schedule") => json!({"cadence_days": 90, "window_days": 14}),
        ("POST", "/api/v1/risks") | ("PUT", "/api/v1/risks/{risk_id}") => {
            json!({"risk": "Matrix risk", "likelihood": 2, "impact": 3, "status": "open", "review_on": "2027-01-01"})
        }
        ("POST", "/api/v1/baa-vendors") | ("PUT", "/api/v1/baa-vendors/{vendor_id}") => {
            json!({"vendor": "Matrix vendor", "services": "Hosting", "data_shared": "None", "baa_status": "requested"})
        }
        ("POST", "/api/v1/incidents") => {
            json!({"title": "Matrix", "description": "Matrix", "discovered_on": "2026-01-05", "affected_count": 1})
        }
        ("POST", "/api/v1/incidents/{incident_id}/assessment") => json!({"nature_and_extent": "low", "unauthorized_recipient": "low",
            "acquired_or_viewed": "low", "mitigation": "low", "outcome": "breach"}),
        ("POST", "/api/v1/incidents/{incident_id}/notifications") => json!({"obligation": "hhs", "done_on": "2026-01-06"}),
        _ => return None,
    };
    Some(b)
}

/// The text of the matrix's notice templates.
const TEMPLATE_BODY: &str = "See you {date} at {time}, {first_name}";

fn notice_values() -> Value {
    json!({"first_name": "Jamie", "date": "Tuesday", "time": "3 PM"})
}

/// The path of an operation with every id replaced by a random one.
fn random_path(op: &OpDef) -> String {
    let mut p = op.path.to_owned();
    for param in [
        "{session_id}",
        "{user_id}",
        "{patient_id}",
        "{conversation_id}",
        "{message_id}",
        "{alert_id}",
        "{hold_id}",
        "{attachment_id}",
        "{template_id}",
        "{device_id}",
        "{spot_check_id}",
        "{grant_id}",
        "{contact_id}",
        "{policy_id}",
        "{vendor_id}",
        "{risk_id}",
        "{incident_id}",
        "{credential_id}",
        "{campaign_id}",
    ] {
        p = p.replace(param, &rnd());
    }
    p
}

/// The request for one operation, actor and target, and the answer the policy demands; `None`
/// where the target means nothing for the operation.
fn plan(fx: &Fx, op: &OpDef, a: &Act, t: Target, n: u32) -> Option<Cell> {
    use Target::{Cross, Foreign, Invalid, Other, Own, Peer, Random};
    let role = a.role;
    let admin = role == Role::Admin;
    let auditor = matches!(role, Role::Admin | Role::ComplianceOfficer);
    let workforce = role.is_workforce();
    let may_create_patient = matches!(role, Role::Admin | Role::Clinician | Role::Nurse);
    let patient_acc = fx.act(Role::Patient).acc.id.to_string();
    let body = min_body(op);

    // A conversation id by target (Own/Cross/Peer are the actor's conversation).
    let conv = |t: Target| -> String {
        match t {
            Other => fx.c_other.clone(),
            Foreign => fx.c_b.clone(),
            Random => rnd(),
            Invalid => BAD_ID.into(),
            Own | Cross | Peer => a.conv.clone(),
        }
    };
    // What any conversation endpoint answers outside the actor's own conversation.
    let outside = |t: Target| -> Option<Exp> {
        match t {
            Other | Foreign | Random => Some(NOT_FOUND),
            Invalid => Some(BAD_PARAM),
            _ => None,
        }
    };

    let c = match (op.method, op.path) {
        // --- sign-in ------------------------------------------------------------------------
        ("POST", "/api/v1/auth/login") => match t {
            Own => cell(op.path, Some(json!({"login": a.acc.login, "password": PASSWORD, "device": device()})), OK)
                .check(|b| if b["status"] == "authenticated" { Ok(()) } else { Err("not authenticated".into()) }),
            Random => cell(
                op.path,
                Some(json!({"login": format!("nobody-{n}"), "password": PASSWORD, "device": device()})),
                problem(401, "invalid_credentials"),
            ),
            _ => return None,
        }
        .who(Who::Anonymous),
        ("POST", "/api/v1/auth/mfa") => match t {
            Random => cell(op.path, body, problem(401, "invalid_mfa_code")).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/auth/link") => match t {
            Random => cell(op.path, body, problem(401, "invalid_portal_link")).who(Who::Anonymous),
            _ => return None,
        },
        // Single sign-on: an unknown organisation, a forged state, a forged hand-over and a
        // logout token that is no JWT (the standard's `invalid_request`, not problem+json).
        ("GET", "/api/v1/auth/oidc/{org}/start") => match t {
            Random => cell(op.path.replace("{org}", "matrix-nowhere"), None, problem(404, "oidc_not_configured")).who(Who::Anonymous),
            _ => return None,
        },
        ("GET", "/api/v1/auth/oidc/callback") => match t {
            Random => {
                cell(format!("{}?state={}&code=x", op.path, forged("s")), None, problem(400, "oidc_state_invalid")).who(Who::Anonymous)
            }
            _ => return None,
        },
        ("POST", "/api/v1/auth/oidc/complete") => match t {
            Random => cell(op.path, body, problem(401, "oidc_handoff_invalid")).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/auth/oidc/{org}/backchannel-logout") => match t {
            Random => cell(op.path.replace("{org}", "matrix-nowhere"), None, ok(400))
                .raw("application/x-www-form-urlencoded", b"logout_token=not-a-jwt")
                .who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/auth/refresh") => match t {
            Own => cell(op.path, Some(json!({"refresh_token": a.spare_a.refresh, "device_id": a.spare_a.device_id})), OK),
            Random => cell(op.path, body, problem(401, "invalid_refresh_token")),
            _ => return None,
        }
        .who(Who::Anonymous),
        ("POST", "/api/v1/auth/logout") => match t {
            Own => cell(op.path, None, NO_CONTENT).who(Who::SpareA),
            _ => return None,
        },

        // --- the caller's own account ---------------------------------------------------------
        ("GET", "/api/v1/me") => match t {
            Own => {
                let (user, org, session) = (a.acc.id.to_string(), fx.org_a.clone(), a.main.session_id.clone());
                cell(op.path, None, OK).check(move |b| {
                    let right = b["user"]["id"] == user.as_str() && b["org"]["id"] == org.as_str() && b["session_id"] == session.as_str();
                    if right { Ok(()) } else { Err("another user, organisation or session".into()) }
                })
            }
            _ => return None,
        },
        ("GET", "/api/v1/me/sessions") => match t {
            Own => cell(op.path, None, OK).check(listing(
                "",
                vec![a.main.session_id.clone()],
                vec![fx.outsider.session_id.clone(), fx.b_clin.session_id.clone(), fx.filler.session_id.clone()],
            )),
            _ => return None,
        },
        ("DELETE", "/api/v1/me/sessions/{session_id}") => {
            let (id, exp) = match t {
                Own => (a.spare_b.session_id.clone(), NO_CONTENT),
                Other => (fx.outsider.session_id.clone(), NOT_FOUND),
                Foreign => (fx.b_clin.session_id.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{session_id}", &id), None, exp)
        }
        ("POST", "/api/v1/me/mfa/totp") => match t {
            Own => cell(op.path, body, OK),
            _ => return None,
        },
        // A code that can never be right: the enrolment just begun stays pending.
        ("POST", "/api/v1/me/mfa/totp/confirm") => match t {
            Own => cell(op.path, body, problem(401, "invalid_mfa_code")),
            _ => return None,
        },
        // Nobody has TOTP enrolled, so these reach the handler and stop at the state check.
        ("DELETE", "/api/v1/me/mfa/totp") | ("POST", "/api/v1/me/mfa/recovery-codes") => match t {
            Own => cell(op.path, body, INVALID_STATE),
            _ => return None,
        },
        // --- WebAuthn: nobody has a credential, so these stop at the ceremony or the lookup ----
        ("POST", "/api/v1/me/webauthn/registrations") | ("GET", "/api/v1/me/webauthn/credentials") => match t {
            Own => cell(op.path, body, OK),
            _ => return None,
        },
        ("POST", "/api/v1/me/webauthn/credentials") | ("POST", "/api/v1/me/step-up/webauthn") => match t {
            Own => cell(op.path, body, problem(400, "webauthn_challenge_invalid")),
            _ => return None,
        },
        ("PATCH", "/api/v1/me/webauthn/credentials/{credential_id}") | ("DELETE", "/api/v1/me/webauthn/credentials/{credential_id}") => {
            let (id, exp) = match t {
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{credential_id}", &id), body, exp)
        }
        ("POST", "/api/v1/me/step-up/webauthn/options") => match t {
            Own => cell(op.path, body, INVALID_STATE),
            _ => return None,
        },
        ("POST", "/api/v1/auth/mfa/webauthn/options") | ("POST", "/api/v1/auth/mfa/webauthn") => match t {
            Random => cell(op.path, body, problem(401, "invalid_mfa_code")).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/auth/passkey/options") => match t {
            Own => cell(op.path, body, OK).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/auth/passkey") => match t {
            Random => cell(op.path, body, problem(400, "webauthn_challenge_invalid")).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/me/password") => match t {
            Own => cell(op.path, Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})), NO_CONTENT),
            _ => return None,
        },

        // --- the organisation ----------------------------------------------------------------
        ("GET", "/api/v1/org") => match t {
            Own => cell(op.path, None, OK).check(has_id(fx.org_a.clone())),
            _ => return None,
        },
        ("PUT", "/api/v1/org/policy") => match t {
            Own => cell(op.path, body, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- the audit log: compliance officers and admins only -------------------------------
        ("GET", "/api/v1/audit/checkpoint") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/verifier-key") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/keys") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/proofs/inclusion") => match t {
            Own => cell("/api/v1/audit/proofs/inclusion?index=0", None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/proofs/consistency") => match t {
            Own => cell("/api/v1/audit/proofs/consistency?old_size=0", None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/events") => match t {
            Own => cell("/api/v1/audit/events?limit=200", None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/export") => match t {
            Own => cell("/api/v1/audit/export?format=csv", None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        // A code that is never right: workforce actors have a second factor and the code counts
        // as a miss; the patient has none to verify.
        ("POST", "/api/v1/me/step-up") => match t {
            Own => cell(op.path, body, when(workforce, problem(401, "invalid_mfa_code"), problem(403, "mfa_enrollment_required"))),
            _ => return None,
        },
        // Reports on one patient or user: the role is checked first; then another tenant's or a
        // made-up id is not found.
        ("GET", "/api/v1/patients/{patient_id}/disclosures") => {
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), OK),
                Other => (fx.p_other.id.to_string(), OK),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{patient_id}", &id), None, exp)
        }
        ("GET", "/api/v1/users/{user_id}/access-report") => {
            let (id, exp) = match t {
                Own => (a.acc.id.to_string(), OK),
                Other => (fx.victim.id.to_string(), OK),
                Foreign => (fx.b_staff.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{user_id}", &id), None, exp)
        }

        // --- anomaly alerts: compliance officers and admins only ------------------------------
        ("GET", "/api/v1/org/alert-rules") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("PUT", "/api/v1/org/alert-rules") => match t {
            Own => cell(op.path, body, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/audit/alerts") => match t {
            Own => cell("/api/v1/audit/alerts?limit=200", None, when(auditor, OK, FORBIDDEN)).check(listing(
                "items",
                vec![fx.alert_a.clone()],
                vec![fx.alert_b.clone()],
            )),
            _ => return None,
        },
        ("POST", "/api/v1/audit/alerts/{alert_id}/acknowledge") => {
            // The role is checked before the alert is looked up.
            let (id, exp) = match t {
                Own => (fx.alert_a.clone(), when(auditor, OK, FORBIDDEN)),
                Foreign => (fx.alert_b.clone(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let c = cell(op.path.replace("{alert_id}", &id), None, exp);
            if exp == OK { c.check(has_id(id)) } else { c }
        }
        ("PUT", "/api/v1/patients/{patient_id}/restricted") => {
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(auditor, OK, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), when(auditor, OK, FORBIDDEN)),
                Foreign => (fx.p_b.id.to_string(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let c = cell(op.path.replace("{patient_id}", &id), body, exp);
            if exp == OK { c.check(has_id(id)) } else { c }
        }

        // --- retention and legal holds: compliance officers and admins only -----------------
        ("GET", "/api/v1/org/retention") | ("GET", "/api/v1/legal-holds") | ("GET", "/api/v1/retention/shreds") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("PUT", "/api/v1/org/retention") => match t {
            Own => cell(op.path, body, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("POST", "/api/v1/legal-holds") => {
            // The role is checked before the subject is looked up.
            let (subject, exp) = match t {
                Own => (a.acc.id.to_string(), CREATED),
                Foreign => (fx.b_staff.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                _ => return None,
            };
            cell(
                op.path,
                Some(json!({"subject_kind": "user", "subject_id": subject, "reason": "Matrix matter"})),
                when(auditor, exp, FORBIDDEN),
            )
        }
        ("POST", "/api/v1/legal-holds/{hold_id}/release") => {
            let (id, exp) = match t {
                Random => (rnd(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{hold_id}", &id), None, exp)
        }
        // Right of access: compliance officers and admins for any patient of the organisation,
        // a patient for their own record only (others look absent); other roles are refused.
        ("POST", "/api/v1/patients/{patient_id}/export") => {
            let patient = role == Role::Patient;
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), if auditor || patient { OK } else { FORBIDDEN }),
                Other => (
                    fx.p_other.id.to_string(),
                    if auditor {
                        OK
                    } else if patient {
                        NOT_FOUND
                    } else {
                        FORBIDDEN
                    },
                ),
                Foreign => (fx.p_b.id.to_string(), if auditor || patient { NOT_FOUND } else { FORBIDDEN }),
                Random => (rnd(), if auditor || patient { NOT_FOUND } else { FORBIDDEN }),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{patient_id}", &id), None, exp)
        }

        // --- users ---------------------------------------------------------------------------
        ("GET", "/api/v1/users") => match t {
            Own => {
                let never = vec![fx.b_staff.id.to_string(), fx.b_clin.account.id.to_string()];
                let all = listing("items", vec![a.acc.id.to_string(), fx.victim.id.to_string()], never);
                cell("/api/v1/users?limit=200", None, when(workforce, OK, FORBIDDEN)).check(move |b| {
                    all(b)?;
                    let patients = b["items"].as_array().map_or(0, |i| i.iter().filter(|u| u["role"] == "patient").count());
                    if !admin && patients > 0 { Err("a non-admin sees patient accounts".into()) } else { Ok(()) }
                })
            }
            _ => return None,
        },
        ("POST", "/api/v1/users") => {
            let login = format!("matrix-user-{n}");
            let (b, exp) = match t {
                Own => (json!({"login": login, "display_name": "Matrix", "role": "staff"}), CREATED),
                Other => (json!({"login": login, "display_name": "Matrix", "role": "patient", "patient_id": fx.p_other.id}), CREATED),
                Foreign => (json!({"login": login, "display_name": "Matrix", "role": "patient", "patient_id": fx.p_b.id}), VALIDATION),
                Random => (json!({"login": login, "display_name": "Matrix", "role": "patient", "patient_id": rnd()}), VALIDATION),
                _ => return None,
            };
            cell(op.path, Some(b), when(admin, exp, FORBIDDEN))
        }
        (_, p) if p.starts_with("/api/v1/users/{user_id}") => {
            let user = match t {
                Own => a.acc.id.to_string(),
                Other => fx.victim.id.to_string(),
                Foreign => fx.b_staff.id.to_string(),
                Random => rnd(),
                Invalid => BAD_ID.into(),
                Peer => patient_acc.clone(),
                Cross => return None,
            };
            let path = op.path.replace("{user_id}", &user);
            // Admin-only operations refuse other roles before looking anything up; a malformed
            // id fails extraction first; another tenant's or a made-up id is not found.
            let admin_only = |own: Exp, other: Exp| -> Option<Exp> {
                Some(match t {
                    Invalid => BAD_PARAM,
                    _ if !admin => FORBIDDEN,
                    Own => own,
                    Other => other,
                    Foreign | Random => NOT_FOUND,
                    _ => return None,
                })
            };
            let exp = match op.method {
                "GET" if op.path == "/api/v1/users/{user_id}" => match t {
                    Invalid => BAD_PARAM,
                    _ if !workforce => FORBIDDEN,
                    Own | Other => OK,
                    Foreign | Random => NOT_FOUND,
                    // Patient accounts are PHI: only admins see them in the directory.
                    Peer => when(admin, OK, NOT_FOUND),
                    Cross => return None,
                },
                "PATCH" => match t {
                    // Patient accounts never change role.
                    Peer => when(admin, INVALID_STATE, FORBIDDEN),
                    _ => admin_only(INVALID_STATE, OK)?,
                },
                _ if t == Peer => return None,
                _ => match op.path {
                    "/api/v1/users/{user_id}/disable" => admin_only(INVALID_STATE, OK)?,
                    "/api/v1/users/{user_id}/enable" => admin_only(OK, OK)?,
                    // An admin resetting their own password or revoking their own sessions ends
                    // the session the matrix runs on: that cell runs last (see `deferred`).
                    "/api/v1/users/{user_id}/password-reset" | "/api/v1/users/{user_id}/sessions"
                        if op.method != "GET" && admin && t == Own =>
                    {
                        return None;
                    }
                    _ => admin_only(OK, OK)?,
                },
            };
            let b = match (op.method, t) {
                ("PATCH", Own) => Some(json!({"role": role})),
                _ => body,
            };
            let mut c = cell(path, b, exp);
            if op.method == "GET" && op.path == "/api/v1/users/{user_id}/sessions" && t == Own {
                c = c.check(listing("", vec![a.main.session_id.clone()], vec![fx.outsider.session_id.clone()]));
            } else if op.is("GET", "/api/v1/users/{user_id}") && exp == OK {
                c = c.check(has_id(user.clone()));
            }
            c
        }

        // --- patients ------------------------------------------------------------------------
        ("POST", "/api/v1/patients") => {
            let mrn = format!("M-{n}");
            let (team, exp) = match t {
                Own => (json!([]), CREATED),
                // Care teams are active staff of the caller's organisation only.
                Foreign => (json!([fx.b_staff.id]), INVALID_STATE),
                Random => (json!([rnd()]), INVALID_STATE),
                Peer => (json!([patient_acc]), INVALID_STATE),
                _ => return None,
            };
            cell(op.path, Some(json!({"mrn": mrn, "display_name": "Matrix", "care_team": team})), when(may_create_patient, exp, FORBIDDEN))
        }
        ("POST", "/api/v1/patients/search") => {
            let (mrn, exp, id) = match t {
                Own => (fx.p_self.mrn.clone(), OK, Some(fx.p_self.id.to_string())),
                Other => (fx.p_other.mrn.clone(), OK, Some(fx.p_other.id.to_string())),
                Foreign => (fx.p_b.mrn.clone(), NOT_FOUND, None),
                Random => ("NO-SUCH-MRN".into(), NOT_FOUND, None),
                _ => return None,
            };
            let c = cell(op.path, Some(json!({"mrn": mrn})), when(workforce, exp, FORBIDDEN));
            match id {
                Some(id) if workforce => c.check(has_id(id)),
                _ => c,
            }
        }
        ("GET", "/api/v1/patients/{patient_id}") => {
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), OK),
                // A patient sees only their own record.
                Other => (fx.p_other.id.to_string(), when(workforce, OK, NOT_FOUND)),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let c = cell(op.path.replace("{patient_id}", &id), None, exp);
            if exp == OK { c.check(has_id(id)) } else { c }
        }
        ("PUT", "/api/v1/patients/{patient_id}/care-team") => {
            // The body is the current team, so a permitted call changes nothing.
            let (p, exp) = match t {
                // The clinician and nurse actors are on this patient's care team.
                Own => (Some(&fx.p_self), when(matches!(role, Role::Admin | Role::Clinician | Role::Nurse), OK, FORBIDDEN)),
                Other => (Some(&fx.p_other), when(admin, OK, FORBIDDEN)),
                Foreign => (Some(&fx.p_b), when(workforce, NOT_FOUND, FORBIDDEN)),
                Random => (None, when(workforce, NOT_FOUND, FORBIDDEN)),
                Invalid => (None, BAD_PARAM),
                _ => return None,
            };
            let id = match (p, t) {
                (Some(p), _) => p.id.to_string(),
                (None, Invalid) => BAD_ID.into(),
                (None, _) => rnd(),
            };
            let team = p.map_or(json!([]), |p| json!(p.care_team));
            cell(op.path.replace("{patient_id}", &id), Some(json!({"care_team": team})), exp)
        }
        ("PUT", "/api/v1/patients/{patient_id}/care-team/{user_id}/on-call") => {
            // Authorized like care-team edits; the body (off call) changes nothing.
            let (p, exp) = match t {
                Own => (Some(&fx.p_self), when(matches!(role, Role::Admin | Role::Clinician | Role::Nurse), NO_CONTENT, FORBIDDEN)),
                Other => (Some(&fx.p_other), when(admin, NO_CONTENT, FORBIDDEN)),
                Foreign => (Some(&fx.p_b), when(workforce, NOT_FOUND, FORBIDDEN)),
                Random => (None, when(workforce, NOT_FOUND, FORBIDDEN)),
                Invalid => (None, BAD_PARAM),
                _ => return None,
            };
            let id = match (p, t) {
                (Some(p), _) => p.id.to_string(),
                (None, Invalid) => BAD_ID.into(),
                (None, _) => rnd(),
            };
            let user = p.and_then(|p| p.care_team.first()).map_or_else(rnd, |u| u.to_string());
            let path = op.path.replace("{patient_id}", &id).replace("{user_id}", &user);
            cell(path, Some(json!({"on_call": false})), exp)
        }

        ("PUT", "/api/v1/patients/{patient_id}/care-team/groups") => {
            // Authorized like care-team edits; no group is attached, so an empty list changes
            // nothing.
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(matches!(role, Role::Admin | Role::Clinician | Role::Nurse), OK, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), when(admin, OK, FORBIDDEN)),
                Foreign => (fx.p_b.id.to_string(), when(workforce, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(workforce, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{patient_id}", &id), Some(json!({"group_ids": []})), exp)
        }
        ("GET", "/api/v1/groups") => match t {
            Own => cell(op.path, None, when(may_create_patient, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- consent: admins, the care team and the patient record and revoke; compliance
        // officers also read. A patient account sees only its own record; the care team of
        // `p_self` is the clinician and the nurse actors, `p_other`'s is the outsider.
        (_, "/api/v1/patients/{patient_id}/consents") | ("POST", "/api/v1/patients/{patient_id}/consents/revoke") => {
            let patient = role == Role::Patient;
            let (success, may): (Exp, fn(Role, bool) -> bool) = match (op.method, op.path.ends_with("/revoke")) {
                ("GET", _) => (OK, |r: Role, own: bool| r == Role::Admin || r == Role::ComplianceOfficer || own),
                (_, false) => (CREATED, |r: Role, own: bool| r == Role::Admin || own),
                (_, true) => (INVALID_STATE, |r: Role, own: bool| r == Role::Admin || own),
            };
            let on_self = matches!(role, Role::Clinician | Role::Nurse | Role::Patient);
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(may(role, on_self), success, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), if patient { NOT_FOUND } else { when(may(role, false), success, FORBIDDEN) }),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let c = cell(op.path.replace("{patient_id}", &id), body, exp);
            if exp == OK {
                let want = id.clone();
                c.check(move |b| {
                    let all = b["history"].as_array().map(Vec::as_slice).unwrap_or_default();
                    if all.iter().all(|x| x["patient_id"] == want.as_str()) { Ok(()) } else { Err("another patient's consent".into()) }
                })
            } else {
                c
            }
        }

        // --- patient authorizations: admins and the patient's care team (clinicians, nurses,
        // staff) record them; patients and compliance officers never, refused before the patient
        // is looked up. `p_self`'s care team is the clinician and nurse actors.
        ("POST", "/api/v1/patients/{patient_id}/authorizations") => {
            let may_ever = matches!(role, Role::Admin | Role::Clinician | Role::Nurse | Role::Staff);
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(matches!(role, Role::Admin | Role::Clinician | Role::Nurse), CREATED, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), when(admin, CREATED, FORBIDDEN)),
                Foreign => (fx.p_b.id.to_string(), when(may_ever, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(may_ever, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let want = id.clone();
            let c = cell(op.path.replace("{patient_id}", &id), body, exp);
            if exp == CREATED {
                c.check(move |b| if b["patient_id"] == want.as_str() { Ok(()) } else { Err("another patient's authorization".into()) })
            } else {
                c
            }
        }

        // --- notice templates: the workforce lists, admins change -----------------------------
        ("GET", "/api/v1/org/notice-templates") => match t {
            Own => {
                let c = cell(op.path, None, when(workforce, OK, FORBIDDEN));
                if workforce { c.check(listing("items", vec![fx.tpl_a.clone()], vec![fx.tpl_b.clone()])) } else { c }
            }
            _ => return None,
        },
        ("POST", "/api/v1/org/notice-templates") => match t {
            Own => cell(
                op.path,
                Some(json!({"name": format!("matrix-{n}"), "channel": "sms", "body": TEMPLATE_BODY})),
                when(admin, CREATED, FORBIDDEN),
            ),
            _ => return None,
        },
        ("PUT", "/api/v1/org/notice-templates/{template_id}") | ("DELETE", "/api/v1/org/notice-templates/{template_id}") => {
            let delete = op.method == "DELETE";
            let (id, exp) = match t {
                // PUT rewrites the template as it is, so the notice cells still use it.
                Own if delete => (fx.tpl_del.clone(), when(admin, NO_CONTENT, FORBIDDEN)),
                Own => (fx.tpl_a.clone(), when(admin, OK, FORBIDDEN)),
                Foreign => (fx.tpl_b.clone(), when(admin, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(admin, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let b = (!delete).then(|| json!({"name": "matrix-a", "channel": "sms", "body": TEMPLATE_BODY}));
            let c = cell(op.path.replace("{template_id}", &id), b, exp);
            if exp == OK { c.check(has_id(id)) } else { c }
        }

        // --- notices: the clinicians, nurses and staff on the care team send ------------------
        // Only the patient's own notices exist for them; nobody else sees any (404 like an
        // unknown id).
        ("GET", "/api/v1/me/notices/{notice_id}") => {
            let (id, exp) = match t {
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{notice_id}", &id), None, exp)
        }
        // Unsigned (and for an organisation without webhooks): 401 whoever calls.
        ("POST", "/api/v1/inbound/{org}/sms") | ("POST", "/api/v1/inbound/{org}/email") => match t {
            Random => cell(op.path.replace("{org}", "matrix-nowhere"), body, problem(401, "invalid_signature")).who(Who::Anonymous),
            _ => return None,
        },
        ("POST", "/api/v1/patients/{patient_id}/notices") => {
            let patient = role == Role::Patient;
            let sender = matches!(role, Role::Clinician | Role::Nurse);
            let (id, tpl, exp) = match t {
                Own => (fx.p_self.id.to_string(), fx.tpl_a.clone(), when(sender, CREATED, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), fx.tpl_a.clone(), when(patient, NOT_FOUND, FORBIDDEN)),
                Foreign => (fx.p_b.id.to_string(), fx.tpl_a.clone(), NOT_FOUND),
                Random => (rnd(), fx.tpl_a.clone(), NOT_FOUND),
                Invalid => (BAD_ID.into(), fx.tpl_a.clone(), BAD_PARAM),
                // The caller's own patient with another organisation's template.
                Cross => (fx.p_self.id.to_string(), fx.tpl_b.clone(), when(sender, NOT_FOUND, FORBIDDEN)),
                Peer => return None,
            };
            cell(op.path.replace("{patient_id}", &id), Some(json!({"template_id": tpl, "channel": "sms", "values": notice_values()})), exp)
        }

        // --- portal links: whoever may send the patient notices mints them ---------------------
        ("POST", "/api/v1/patients/{patient_id}/portal-link") => {
            let patient = role == Role::Patient;
            let sender = matches!(role, Role::Clinician | Role::Nurse);
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(sender, CREATED, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), when(patient, NOT_FOUND, FORBIDDEN)),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                Cross | Peer => return None,
            };
            cell(op.path.replace("{patient_id}", &id), None, exp)
        }

        // --- the contact directory: one's own contacts; a patient's for admins, the care team
        // and the patient (as for consent); suppression, conflicts and the policy for admins ---
        ("GET", "/api/v1/me/contacts") => match t {
            Own => cell(op.path, None, OK).check(listing("items", vec![a.mc.clone()], vec![fx.mc_other.clone(), fx.mc_b.clone()])),
            _ => return None,
        },
        ("POST", "/api/v1/me/contacts") => match t {
            Own => cell(op.path, Some(json!({"kind": "phone", "value": format!("+1415666{:04}", n % 10_000)})), CREATED),
            _ => return None,
        },
        ("DELETE", "/api/v1/me/contacts/{contact_id}")
        | ("POST", "/api/v1/me/contacts/{contact_id}/confirm")
        | ("POST", "/api/v1/me/contacts/{contact_id}/verify") => {
            let success = match op.method {
                "DELETE" => NO_CONTENT,
                _ if op.path.ends_with("/confirm") => problem(422, "invalid_verification_code"),
                _ => ACCEPTED,
            };
            let (id, exp) = match t {
                Own if op.method == "DELETE" => (a.mc_del.clone(), success),
                Own => (a.mc.clone(), success),
                Other => (fx.mc_other.clone(), NOT_FOUND),
                Foreign => (fx.mc_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                // A contact of the actor's patient record is not the actor's own.
                Cross => (a.pc.clone(), NOT_FOUND),
                Peer => return None,
            };
            cell(op.path.replace("{contact_id}", &id), body, exp)
        }
        ("GET", "/api/v1/patients/{patient_id}/contacts") | ("POST", "/api/v1/patients/{patient_id}/contacts") => {
            let patient = role == Role::Patient;
            let may = |own: bool| admin || own;
            let on_self = matches!(role, Role::Clinician | Role::Nurse | Role::Patient);
            let success = if op.method == "GET" { OK } else { CREATED };
            let (id, exp) = match t {
                Own => (fx.p_self.id.to_string(), when(may(on_self), success, FORBIDDEN)),
                Other => (fx.p_other.id.to_string(), if patient { NOT_FOUND } else { when(may(false), success, FORBIDDEN) }),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let b = (op.method == "POST").then(|| json!({"kind": "phone", "value": format!("+1415777{:04}", n % 10_000)}));
            let c = cell(op.path.replace("{patient_id}", &id), b, exp);
            if exp == OK && t == Own { c.check(listing("items", vec![a.pc.clone()], vec![fx.po.clone(), fx.pc_b.clone()])) } else { c }
        }
        ("DELETE", "/api/v1/patients/{patient_id}/contacts/{contact_id}")
        | ("POST", "/api/v1/patients/{patient_id}/contacts/{contact_id}/confirm")
        | ("POST", "/api/v1/patients/{patient_id}/contacts/{contact_id}/verify") => {
            let patient = role == Role::Patient;
            let may = |own: bool| admin || own;
            let on_self = matches!(role, Role::Clinician | Role::Nurse | Role::Patient);
            let success = match op.method {
                "DELETE" => NO_CONTENT,
                _ if op.path.ends_with("/confirm") => problem(422, "invalid_verification_code"),
                _ => ACCEPTED,
            };
            let mine = if op.method == "DELETE" { a.pc_del.clone() } else { a.pc.clone() };
            let (pid, cid, exp) = match t {
                Own => (fx.p_self.id.to_string(), mine, when(may(on_self), success, FORBIDDEN)),
                // Only admins may act on p_other's contacts (its care team is the outsider).
                Other => (fx.p_other.id.to_string(), fx.po.clone(), if patient { NOT_FOUND } else { when(may(false), success, FORBIDDEN) }),
                Foreign => (fx.p_b.id.to_string(), fx.pc_b.clone(), NOT_FOUND),
                Random => (rnd(), rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), rnd(), BAD_PARAM),
                // The actor's own patient with another patient's contact.
                Cross => (fx.p_self.id.to_string(), fx.po.clone(), when(may(on_self), NOT_FOUND, FORBIDDEN)),
                Peer => return None,
            };
            cell(op.path.replace("{patient_id}", &pid).replace("{contact_id}", &cid), body, exp)
        }
        ("POST", "/api/v1/contacts/suppress") => {
            let (id, exp) = match t {
                Own => (fx.supp.clone(), OK),
                Foreign => (fx.mc_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                _ => return None,
            };
            cell(op.path, Some(json!({"contact_id": id, "reason": "bounce"})), when(admin, exp, FORBIDDEN))
        }
        ("GET", "/api/v1/contacts/conflicts") => match t {
            Own => cell(op.path, None, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/org/contact-policy") => match t {
            Own => cell(op.path, None, when(workforce, OK, FORBIDDEN)),
            _ => return None,
        },
        ("PUT", "/api/v1/org/contact-policy") => match t {
            Own => cell(op.path, body, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- conversations -------------------------------------------------------------------
        ("GET", "/api/v1/conversations") => match t {
            Own => cell("/api/v1/conversations?limit=200", None, OK).check(listing(
                "items",
                vec![a.conv.clone()],
                vec![fx.c_other.clone(), fx.c_b.clone()],
            )),
            _ => return None,
        },
        ("POST", "/api/v1/conversations") => {
            let (b, exp) = match t {
                Own => (json!({"kind": "group", "title": "Matrix", "members": [{"user_id": fx.filler.account.id}]}), CREATED),
                // Starting a conversation about a patient whose care team one is not on needs a
                // stated reason (minimum necessary).
                Other => (
                    json!({"kind": "patient", "title": "Matrix", "patient_id": fx.p_other.id, "members": []}),
                    problem(422, "reason_required"),
                ),
                Foreign => (json!({"kind": "group", "title": "Matrix", "members": [{"user_id": fx.b_staff.id}]}), NOT_FOUND),
                Random => (json!({"kind": "group", "title": "Matrix", "members": [{"user_id": rnd()}]}), NOT_FOUND),
                Cross => (json!({"kind": "patient", "title": "Matrix", "patient_id": fx.p_b.id, "members": []}), NOT_FOUND),
                _ => return None,
            };
            cell(op.path, Some(b), when(workforce, exp, FORBIDDEN))
        }
        ("GET", "/api/v1/conversations/{conversation_id}") => {
            let exp = match t {
                Own => OK,
                _ => outside(t)?,
            };
            let c = cell(op.path.replace("{conversation_id}", &conv(t)), None, exp);
            if t == Own {
                let (id, me) = (a.conv.clone(), a.acc.id.to_string());
                c.check(move |b| {
                    let members = ids_of(&b["members"], "user_id");
                    if b["id"] == id.as_str() && members.contains(&me) { Ok(()) } else { Err("not the caller's conversation".into()) }
                })
            } else {
                c
            }
        }
        ("POST", "/api/v1/conversations/{conversation_id}/members") => {
            // The candidate is always someone who could join, so only the caller's standing
            // decides. The standing is checked before the candidate is looked up, so a
            // non-owner learns nothing about whether a user id exists (`cross`: a user of
            // another organisation is not found for owners, and refused for non-owners).
            let (user, exp) = match t {
                Own => (fx.throwaway.id.to_string(), when(workforce, CREATED, NOT_OWNER)),
                Cross => (fx.b_staff.id.to_string(), when(workforce, NOT_FOUND, NOT_OWNER)),
                _ => (fx.throwaway.id.to_string(), outside(t)?),
            };
            cell(op.path.replace("{conversation_id}", &conv(t)), Some(json!({"user_id": user})), exp)
        }
        ("DELETE", "/api/v1/conversations/{conversation_id}/members/{user_id}") => {
            let (user, exp) = match t {
                // Removes the member the previous operation added.
                Own => (fx.throwaway.id.to_string(), when(workforce, NO_CONTENT, NOT_OWNER)),
                Other => (fx.filler.account.id.to_string(), NOT_FOUND),
                Foreign => (fx.b_staff.id.to_string(), NOT_FOUND),
                Random | Invalid => (fx.throwaway.id.to_string(), outside(t)?),
                Cross => (fx.b_staff.id.to_string(), when(workforce, NOT_FOUND, NOT_OWNER)),
                Peer => return None,
            };
            cell(op.path.replace("{conversation_id}", &conv(t)).replace("{user_id}", &user), None, exp)
        }
        ("GET", "/api/v1/conversations/{conversation_id}/messages") => {
            let exp = match t {
                Own => OK,
                _ => outside(t)?,
            };
            let c = cell(op.path.replace("{conversation_id}", &conv(t)), None, exp);
            if t == Own {
                c.check(listing("items", vec![a.msg.clone(), a.peer_msg.clone()], vec![fx.m_other.clone(), fx.m_b.clone()]))
            } else {
                c
            }
        }
        ("POST", "/api/v1/conversations/{conversation_id}/messages") => {
            let txn = format!("matrix-{n}");
            let (b, exp) = match t {
                Own => (json!({"client_txn_id": txn, "body": "matrix"}), CREATED),
                // Corrections: only one's own messages, and only of this conversation.
                Cross => (json!({"client_txn_id": txn, "body": "matrix", "corrects": fx.m_other}), NOT_FOUND),
                Peer => (json!({"client_txn_id": txn, "body": "matrix", "corrects": a.peer_msg}), NOT_SENDER),
                _ => (json!({"client_txn_id": txn, "body": "matrix"}), outside(t)?),
            };
            cell(op.path.replace("{conversation_id}", &conv(t)), Some(b), exp)
        }
        ("GET", "/api/v1/conversations/{conversation_id}/messages/{message_id}")
        | ("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/recall") => {
            let recall = op.method == "POST";
            let (msg, exp) = match t {
                Own => (a.msg.clone(), OK),
                Other => (fx.m_other.clone(), NOT_FOUND),
                Foreign => (fx.m_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (a.msg.clone(), BAD_PARAM),
                // A message of another conversation, through one's own.
                Cross => (fx.m_other.clone(), NOT_FOUND),
                Peer => (a.peer_msg.clone(), when(recall, NOT_SENDER, OK)),
            };
            let c = cell(op.path.replace("{conversation_id}", &conv(t)).replace("{message_id}", &msg), None, exp);
            if exp == OK {
                c.check(move |b| {
                    if b["id"] != msg.as_str() {
                        Err("another message".into())
                    } else if recall && !b["body"].is_null() {
                        Err("a recalled message still shows its text".into())
                    } else {
                        Ok(())
                    }
                })
            } else {
                c
            }
        }
        // --- forwarding: workforce members of both conversations; a patient's account never
        // forwards (refused before anything is looked up). Forwards go into the actor's own
        // group, so no disclosure purpose is needed.
        ("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/forward") => {
            let (msg, exp) = match t {
                Own => (a.msg.clone(), when(workforce, CREATED, FORBIDDEN)),
                Peer => (a.peer_msg.clone(), when(workforce, CREATED, FORBIDDEN)),
                Other => (fx.m_other.clone(), when(workforce, NOT_FOUND, FORBIDDEN)),
                Foreign => (fx.m_b.clone(), when(workforce, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(workforce, NOT_FOUND, FORBIDDEN)),
                Invalid => (a.msg.clone(), BAD_PARAM),
                // A message of another conversation, through one's own.
                Cross => (fx.m_other.clone(), when(workforce, NOT_FOUND, FORBIDDEN)),
            };
            let body = json!({"target_conversation_id": a.conv, "client_txn_id": format!("matrix-fwd-{n}")});
            let c = cell(op.path.replace("{conversation_id}", &conv(t)).replace("{message_id}", &msg), Some(body), exp);
            if exp == CREATED {
                c.check(move |b| if b["forwarded_from"] == msg.as_str() { Ok(()) } else { Err("forwarded another message".into()) })
            } else {
                c
            }
        }
        ("POST", "/api/v1/conversations/{conversation_id}/receipts") => {
            let exp = match t {
                Own => NO_CONTENT,
                _ => outside(t)?,
            };
            cell(op.path.replace("{conversation_id}", &conv(t)), body, exp)
        }
        ("POST", "/api/v1/conversations/{conversation_id}/attachments") => {
            let exp = match t {
                Own => CREATED,
                Cross | Peer => return None,
                _ => outside(t)?,
            };
            cell(op.path.replace("{conversation_id}", &conv(t)), None, exp).raw("application/pdf", FIXTURE_PDF)
        }
        ("GET", "/api/v1/conversations/{conversation_id}/attachments/{attachment_id}") => {
            let (att, exp) = match t {
                Own => (a.att.clone(), OK),
                Other => (fx.att_other.clone(), NOT_FOUND),
                Foreign => (fx.att_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (a.att.clone(), BAD_PARAM),
                // An attachment of another conversation, through one's own.
                Cross => (fx.att_other.clone(), NOT_FOUND),
                // Any member may read what another member attached.
                Peer => (a.peer_att.clone(), OK),
            };
            let c = cell(op.path.replace("{conversation_id}", &conv(t)).replace("{attachment_id}", &att), None, exp);
            if exp == OK {
                c.check(
                    |b| {
                        if b.as_str().map(str::as_bytes) == Some(FIXTURE_PDF) { Ok(()) } else { Err("not the uploaded content".into()) }
                    },
                )
            } else {
                c
            }
        }
        // --- device trust ----------------------------------------------------------------------
        ("PUT", "/api/v1/me/device") => match t {
            Own => cell(op.path, body, OK).check({
                let d = a.main.device_id.clone();
                move |b| if b["device"]["id"] == d.as_str() { Ok(()) } else { Err("another device".into()) }
            }),
            _ => return None,
        },
        // The session's own device only: there is no id to aim elsewhere.
        ("PUT", "/api/v1/me/device/push-token") => match t {
            Own => cell(op.path, body, OK),
            _ => return None,
        },
        ("DELETE", "/api/v1/me/device/push-token") => match t {
            Own => cell(op.path, None, NO_CONTENT),
            _ => return None,
        },
        ("GET", "/api/v1/me/devices") => match t {
            Own => cell(op.path, None, OK).check(listing(
                "",
                vec![a.main.device_id.clone()],
                vec![fx.outsider.device_id.clone(), fx.b_clin.device_id.clone()],
            )),
            _ => return None,
        },
        // Only the session's own device reports; any other id looks absent.
        ("POST", "/api/v1/me/devices/{device_id}/posture") => {
            let (id, exp) = match t {
                Own => (a.main.device_id.clone(), CREATED),
                Other => (fx.outsider.device_id.clone(), NOT_FOUND),
                Foreign => (fx.b_clin.device_id.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                // The caller's own device, but not the one of this session.
                Cross => (a.spare_a.device_id.clone(), NOT_FOUND),
                Peer => return None,
            };
            cell(op.path.replace("{device_id}", &id), body, exp)
        }
        // A user reports their own device lost (the revoked spare session's device).
        ("POST", "/api/v1/me/devices/{device_id}/wipe") => {
            let (id, exp) = match t {
                Own => (a.spare_b.device_id.clone(), CREATED),
                Other => (fx.outsider.device_id.clone(), NOT_FOUND),
                Foreign => (fx.b_clin.device_id.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{device_id}", &id), body, exp)
        }
        ("GET", "/api/v1/devices") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)).check(listing(
                "",
                vec![a.main.device_id.clone(), fx.outsider.device_id.clone()],
                vec![fx.b_clin.device_id.clone()],
            )),
            _ => return None,
        },
        ("GET", "/api/v1/devices/{device_id}/posture") => {
            let (id, exp) = match t {
                Own => (a.main.device_id.clone(), OK),
                Other => (fx.outsider.device_id.clone(), OK),
                Foreign => (fx.b_clin.device_id.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{device_id}", &id), None, exp)
        }
        // Admins wipe any device of the organisation (the role is checked before the lookup).
        ("POST", "/api/v1/devices/{device_id}/wipe") => {
            let (id, exp) = match t {
                Other => (fx.wipee_device.clone(), CREATED),
                Foreign => (fx.b_clin.device_id.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(admin, exp, FORBIDDEN) };
            cell(op.path.replace("{device_id}", &id), body, exp)
        }
        ("GET", "/api/v1/device-wipes")
        | ("GET", "/api/v1/org/device-policy")
        | ("GET", "/api/v1/device-reports/drift")
        | ("GET", "/api/v1/device-reports/review")
        | ("GET", "/api/v1/device-reports/spot-checks") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        // Without a valid wipe secret there is nothing to fetch or acknowledge.
        ("POST", "/api/v1/device-wipe/command") | ("POST", "/api/v1/device-wipe/ack") => match t {
            Random => cell(op.path, body, NOT_FOUND).who(Who::Anonymous),
            _ => return None,
        },
        ("PUT", "/api/v1/org/device-policy") => match t {
            Own => cell(op.path, body, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        ("POST", "/api/v1/device-reports/spot-checks") => match t {
            Own => cell(op.path, body, when(auditor, CREATED, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/device-reports/spot-checks/{spot_check_id}") => {
            let (id, exp) = match t {
                Random => (rnd(), when(auditor, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{spot_check_id}", &id), None, exp)
        }
        ("GET", "/api/v1/org/device-profile") => match t {
            Own => cell("/api/v1/org/device-profile?org_prefix=org.example.matrix", None, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        // Roster reconciliation is admin-only and changes nothing; remediation is refused
        // without `confirm=true` (so the matrix never disables its own actors), after the role
        // check.
        ("POST", "/api/v1/admin/roster/reconcile") => match t {
            Own => cell(op.path, None, when(admin, OK, FORBIDDEN)).raw("text/csv", MATRIX_ROSTER),
            _ => return None,
        },
        ("POST", "/api/v1/admin/roster/remediate") => match t {
            Own => cell(op.path, None, when(admin, VALIDATION, FORBIDDEN)).raw("text/csv", MATRIX_ROSTER),
            _ => return None,
        },

        // --- break-glass ----------------------------------------------------------------------
        // Clinicians and nurses request (after the step-up); another tenant's or a made-up
        // patient is not found.
        ("POST", "/api/v1/break-glass") => {
            let may = matches!(role, Role::Clinician | Role::Nurse);
            let (patient, exp) = match t {
                Own => (fx.p_other.id.to_string(), CREATED),
                Foreign => (fx.p_b.id.to_string(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), problem(400, "invalid_body")),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(may, exp, FORBIDDEN) };
            cell(op.path, Some(json!({"patient_id": patient, "reason_category": "emergency_treatment", "reason": "Matrix emergency"})), exp)
        }
        ("GET", "/api/v1/break-glass") => match t {
            Own => cell(op.path, None, OK).check(listing(
                "",
                a.grant.iter().cloned().collect(),
                vec![fx.grant_other.clone(), fx.grant_b.clone()],
            )),
            _ => return None,
        },
        // Only the requester reads under a grant; anyone else's grant looks absent.
        ("GET", "/api/v1/break-glass/{grant_id}/conversations") => {
            let (g, exp) = match t {
                Own => (a.grant.clone()?, OK),
                Other => (fx.grant_other.clone(), NOT_FOUND),
                Foreign => (fx.grant_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let c = cell(op.path.replace("{grant_id}", &g), None, exp);
            if t == Own { c.check(listing("", vec![fx.c_p_other.clone()], vec![a.conv.clone(), fx.c_other.clone()])) } else { c }
        }
        // Cross: the caller's own grant with a conversation that is not about its patient.
        ("GET", "/api/v1/break-glass/{grant_id}/conversations/{conversation_id}/messages") => {
            let (g, conv, exp) = match t {
                Own => (a.grant.clone()?, fx.c_p_other.clone(), OK),
                Cross => (a.grant.clone()?, a.conv.clone(), NOT_FOUND),
                Other => (fx.grant_other.clone(), fx.c_p_other.clone(), NOT_FOUND),
                Foreign => (fx.grant_b.clone(), fx.c_b.clone(), NOT_FOUND),
                Random => (rnd(), rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_ID.into(), BAD_PARAM),
                Peer => return None,
            };
            cell(op.path.replace("{grant_id}", &g).replace("{conversation_id}", &conv), None, exp)
        }
        ("GET", "/api/v1/break-glass/reviews") => match t {
            Own => cell(op.path, None, when(role == Role::ComplianceOfficer, OK, FORBIDDEN)).check(listing(
                "",
                vec![fx.grant_other.clone()],
                vec![fx.grant_b.clone()],
            )),
            _ => return None,
        },
        // The role is checked before the lookup.
        ("POST", "/api/v1/break-glass/{grant_id}/review") => {
            let (g, exp) = match t {
                Other => (fx.grant_other.clone(), OK),
                Foreign => (fx.grant_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(role == Role::ComplianceOfficer, exp, FORBIDDEN) };
            cell(op.path.replace("{grant_id}", &g), body, exp)
        }
        ("POST", "/api/v1/break-glass/{grant_id}/revoke") => {
            let may = matches!(role, Role::Admin | Role::ComplianceOfficer);
            let (g, exp) = match t {
                Other if role == Role::Admin => (fx.grant_revoke_admin.clone(), OK),
                Other if role == Role::ComplianceOfficer => (fx.grant_revoke_co.clone(), OK),
                Other => (fx.grant_other.clone(), FORBIDDEN),
                Foreign => (fx.grant_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(may, exp, FORBIDDEN) };
            cell(op.path.replace("{grant_id}", &g), None, exp)
        }
        // Breach incidents: compliance officers manage, admins read; the role is checked first.
        ("POST", "/api/v1/incidents") => match t {
            Own => cell(op.path, body, when(role == Role::ComplianceOfficer, CREATED, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/incidents") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)).check(listing(
                "",
                vec![fx.incident_a.clone()],
                vec![fx.incident_b.clone()],
            )),
            _ => return None,
        },
        ("GET", "/api/v1/incidents/{incident_id}")
        | ("POST", "/api/v1/incidents/{incident_id}/assessment")
        | ("POST", "/api/v1/incidents/{incident_id}/notifications")
        | ("POST", "/api/v1/incidents/{incident_id}/close") => {
            let may = if op.method == "GET" { auditor } else { role == Role::ComplianceOfficer };
            let mine = match op.path {
                "/api/v1/incidents/{incident_id}/notifications" => fx.incident_n.clone(),
                "/api/v1/incidents/{incident_id}/close" => fx.incident_close.clone(),
                _ => fx.incident_a.clone(),
            };
            let (i, exp) = match t {
                Other => (mine, OK),
                Foreign => (fx.incident_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(may, exp, FORBIDDEN) };
            cell(op.path.replace("{incident_id}", &i), body, exp)
        }
        // Members of the conversation (workforce) report one of its messages; others get 404.
        ("POST", "/api/v1/conversations/{conversation_id}/messages/{message_id}/report-misdirected") => {
            let (c, m, exp) = match t {
                Own => (a.conv.clone(), a.msg.clone(), CREATED),
                Cross => (a.conv.clone(), fx.m_other.clone(), NOT_FOUND),
                Other => (fx.c_other.clone(), fx.m_other.clone(), NOT_FOUND),
                Foreign => (fx.c_b.clone(), fx.m_b.clone(), NOT_FOUND),
                Random => (rnd(), rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_ID.into(), BAD_PARAM),
                Peer => return None,
            };
            let exp = if t == Invalid { exp } else { when(workforce, exp, FORBIDDEN) };
            cell(op.path.replace("{conversation_id}", &c).replace("{message_id}", &m), None, exp)
        }
        // Workforce members of the conversation read its escalation steps; patients are refused
        // before anything is looked up; non-members get 404.
        ("GET", "/api/v1/conversations/{conversation_id}/escalations") => {
            let exp = match t {
                Own => OK,
                _ => outside(t)?,
            };
            let exp = if t == Invalid { exp } else { when(workforce, exp, FORBIDDEN) };
            cell(op.path.replace("{conversation_id}", &conv(t)), None, exp)
        }
        // --- policies ------------------------------------------------------------------------
        ("GET", "/api/v1/policies") => match t {
            Own => cell(op.path, None, OK).check(listing("items", vec![fx.pol_a.clone()], vec![fx.pol_b.clone()])),
            _ => return None,
        },
        ("GET", "/api/v1/policies/{policy_id}") => {
            let (id, exp) = match t {
                Own => (fx.pol_a.clone(), OK),
                Foreign => (fx.pol_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{policy_id}", &id), None, exp)
        }
        ("POST", "/api/v1/me/policy-acknowledgments") => {
            let (id, exp) = match t {
                Own => (fx.pol_a.clone(), OK),
                Foreign => (fx.pol_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                _ => return None,
            };
            cell(op.path, Some(json!({"policy_id": id, "version": 1})), exp)
        }
        ("GET", "/api/v1/policies/acknowledgment-report") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("POST", "/api/v1/policies") => match t {
            Own => cell(op.path, body, when(auditor, CREATED, FORBIDDEN)),
            _ => return None,
        },
        // The role is checked before the lookup.
        ("POST", "/api/v1/policies/{policy_id}/versions") => {
            let (id, exp) = match t {
                Own => (fx.pol_ver.clone(), CREATED),
                Foreign => (fx.pol_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{policy_id}", &id), body, exp)
        }
        ("PUT", "/api/v1/org/policy-acknowledgment") => match t {
            Own => cell(op.path, body, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- SCIM administration -------------------------------------------------------------
        ("GET", "/api/v1/admin/scim/tokens") => match t {
            Own => cell(op.path, None, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        ("POST", "/api/v1/admin/scim/tokens") => match t {
            Own => cell(op.path, Some(json!({"label": "matrix"})), when(admin, CREATED, FORBIDDEN)),
            _ => return None,
        },
        ("DELETE", "/api/v1/admin/scim/tokens/{token_id}") => {
            let (id, exp) = match t {
                Random => (rnd(), when(admin, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{token_id}", &id), None, exp)
        }
        // --- single sign-on provider settings ---------------------------------------------------
        ("PUT", "/api/v1/admin/oidc") => match t {
            Own => cell(op.path, body, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/admin/oidc") => match t {
            Own => cell(op.path, None, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },
        ("DELETE", "/api/v1/admin/oidc") => match t {
            Own => cell(op.path, None, when(admin, NO_CONTENT, FORBIDDEN)),
            _ => return None,
        },
        ("PUT", "/api/v1/admin/oidc/links/{user_id}") => {
            let (user, exp) = match t {
                Own => (a.acc.id.to_string(), when(admin, NO_CONTENT, FORBIDDEN)),
                Other => (fx.victim.id.to_string(), when(admin, NO_CONTENT, FORBIDDEN)),
                Foreign => (fx.b_staff.id.to_string(), when(admin, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(admin, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                // A patient account never signs in with single sign-on.
                Peer => (patient_acc.clone(), when(admin, VALIDATION, FORBIDDEN)),
                Cross => return None,
            };
            cell(op.path.replace("{user_id}", &user), Some(json!({"subject": format!("matrix-{n}")})), exp)
        }
        ("GET", "/api/v1/admin/oidc/links/{user_id}") => {
            let (user, exp) = match t {
                Own => (a.acc.id.to_string(), when(admin, OK, FORBIDDEN)),
                Foreign => (fx.b_staff.id.to_string(), when(admin, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(admin, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            cell(op.path.replace("{user_id}", &user), None, exp)
        }
        // Only targets whose link state no other cell changes: never linked, so 404 for admins.
        ("DELETE", "/api/v1/admin/oidc/links/{user_id}") => {
            let (user, exp) = match t {
                Foreign => (fx.b_staff.id.to_string(), when(admin, NOT_FOUND, FORBIDDEN)),
                Random => (rnd(), when(admin, NOT_FOUND, FORBIDDEN)),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                Peer => (patient_acc.clone(), when(admin, NOT_FOUND, FORBIDDEN)),
                _ => return None,
            };
            cell(op.path.replace("{user_id}", &user), None, exp)
        }
        ("GET", "/api/v1/admin/scim/deprovisions") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/admin/scim/groups") => match t {
            Own => cell(op.path, None, when(admin, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- evidence bundle (step-up) --------------------------------------------------------
        ("POST", "/api/v1/evidence/export") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },

        // --- BAA vendor register -------------------------------------------------------------
        ("GET", "/api/v1/baa-vendors") => match t {
            Own => {
                cell(op.path, None, when(auditor, OK, FORBIDDEN)).check(listing("items", vec![fx.ven_a.clone()], vec![fx.ven_b.clone()]))
            }
            _ => return None,
        },
        ("POST", "/api/v1/baa-vendors") => match t {
            Own => cell(op.path, body, when(auditor, CREATED, FORBIDDEN)),
            _ => return None,
        },
        // The role is checked before the lookup.
        ("PUT", "/api/v1/baa-vendors/{vendor_id}") => {
            let (id, exp) = match t {
                Own => (fx.ven_a.clone(), OK),
                Foreign => (fx.ven_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{vendor_id}", &id), body, exp)
        }
        ("DELETE", "/api/v1/baa-vendors/{vendor_id}") => {
            let (id, exp) = match t {
                Own if role == Role::Admin => (fx.ven_del_admin.clone(), NO_CONTENT),
                Own if role == Role::ComplianceOfficer => (fx.ven_del_co.clone(), NO_CONTENT),
                Own => (fx.ven_a.clone(), FORBIDDEN),
                Foreign => (fx.ven_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{vendor_id}", &id), None, exp)
        }

        // --- risk register -------------------------------------------------------------------
        ("GET", "/api/v1/risks") => match t {
            Own => {
                cell(op.path, None, when(auditor, OK, FORBIDDEN)).check(listing("items", vec![fx.risk_a.clone()], vec![fx.risk_b.clone()]))
            }
            _ => return None,
        },
        ("POST", "/api/v1/risks") => match t {
            Own => cell(op.path, body, when(auditor, CREATED, FORBIDDEN)),
            _ => return None,
        },
        // The role is checked before the lookup.
        ("PUT", "/api/v1/risks/{risk_id}") => {
            let (id, exp) = match t {
                Own => (fx.risk_a.clone(), OK),
                Foreign => (fx.risk_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{risk_id}", &id), body, exp)
        }
        ("DELETE", "/api/v1/risks/{risk_id}") => {
            let (id, exp) = match t {
                Own if role == Role::Admin => (fx.risk_del_admin.clone(), NO_CONTENT),
                Own if role == Role::ComplianceOfficer => (fx.risk_del_co.clone(), NO_CONTENT),
                Own => (fx.risk_a.clone(), FORBIDDEN),
                Foreign => (fx.risk_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{risk_id}", &id), None, exp)
        }

        // --- training records ----------------------------------------------------------------
        // Own: the actor itself (a patient is not workforce: 422); Foreign: org B's staff.
        ("POST", "/api/v1/training-records") => {
            let (user, exp) = match t {
                Own => (a.acc.id.to_string(), when(workforce, CREATED, VALIDATION)),
                Foreign => (fx.b_staff.id.to_string(), VALIDATION),
                Random => (rnd(), VALIDATION),
                _ => return None,
            };
            cell(
                op.path,
                Some(json!({"user_id": user, "course": "HIPAA basics", "completed_on": "2026-11-30"})),
                when(auditor, exp, FORBIDDEN),
            )
        }
        ("GET", "/api/v1/training-records") => match t {
            Own => cell(op.path, None, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/me/training-records") => match t {
            Own => cell(op.path, None, OK),
            _ => return None,
        },

        // --- access reviews -------------------------------------------------------------------
        // The role is checked before any lookup; another tenant's campaign is not found.
        ("GET", "/api/v1/access-reviews") => match t {
            Own => {
                cell(op.path, None, when(auditor, OK, FORBIDDEN)).check(listing("items", vec![fx.ar_open.clone()], vec![fx.ar_b.clone()]))
            }
            _ => return None,
        },
        // Org A's campaign is open: another cannot start.
        ("POST", "/api/v1/access-reviews") => match t {
            Own => cell(op.path, None, when(auditor, INVALID_STATE, FORBIDDEN)),
            _ => return None,
        },
        ("GET", "/api/v1/access-reviews/{campaign_id}") | ("GET", "/api/v1/access-reviews/{campaign_id}/export") => {
            let (id, exp) = match t {
                Own => (fx.ar_open.clone(), OK),
                Other => (fx.ar_closed.clone(), OK),
                Foreign => (fx.ar_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{campaign_id}", &id), None, exp)
        }
        // Own: the actor's own item (separation of duties); Other: another user's; Cross: a
        // user of another organisation in org A's campaign; Peer: org A's closed campaign.
        ("POST", "/api/v1/access-reviews/{campaign_id}/items/{user_id}") => {
            let (id, user, exp) = match t {
                Own => (fx.ar_open.clone(), a.acc.id.to_string(), FORBIDDEN),
                Other => (fx.ar_open.clone(), fx.victim.id.to_string(), OK),
                Foreign => (fx.ar_b.clone(), fx.b_staff.id.to_string(), NOT_FOUND),
                Random => (rnd(), rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), rnd(), BAD_PARAM),
                Cross => (fx.ar_open.clone(), fx.b_staff.id.to_string(), NOT_FOUND),
                Peer => (fx.ar_closed.clone(), fx.victim.id.to_string(), INVALID_STATE),
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{campaign_id}", &id).replace("{user_id}", &user), body, exp)
        }
        // Giving the victim's item back to the organisation's reviewers (a delegate's account
        // could be disabled by other cells); Cross: an account of another organisation.
        ("PUT", "/api/v1/access-reviews/{campaign_id}/reviewers") => {
            let (id, user, exp) = match t {
                Own => (fx.ar_open.clone(), fx.victim.id.to_string(), NO_CONTENT),
                Foreign => (fx.ar_b.clone(), fx.b_staff.id.to_string(), NOT_FOUND),
                Random => (rnd(), rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), rnd(), BAD_PARAM),
                Cross => (fx.ar_open.clone(), fx.b_staff.id.to_string(), NOT_FOUND),
                Peer => (fx.ar_closed.clone(), fx.victim.id.to_string(), INVALID_STATE),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{campaign_id}", &id), Some(json!({"reviewer_id": null, "user_ids": [user]})), exp)
        }
        // Only the closed campaign is closed again (refused): the open one stays open for the
        // cells above.
        ("POST", "/api/v1/access-reviews/{campaign_id}/close") => {
            let (id, exp) = match t {
                Own => (fx.ar_closed.clone(), INVALID_STATE),
                Foreign => (fx.ar_b.clone(), NOT_FOUND),
                Random => (rnd(), NOT_FOUND),
                Invalid => (BAD_ID.into(), BAD_PARAM),
                _ => return None,
            };
            let exp = if t == Invalid { exp } else { when(auditor, exp, FORBIDDEN) };
            cell(op.path.replace("{campaign_id}", &id), None, exp)
        }
        ("PUT", "/api/v1/org/access-review-schedule") => match t {
            Own => cell(op.path, body, when(auditor, OK, FORBIDDEN)),
            _ => return None,
        },
        _ => panic!("the matrix has no plan for {}", op.key()),
    };
    Some(c)
}

// ---------------------------------------------------------------------------------------------
// Running and recording
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Recorder {
    cells: usize,
    extra: usize,
    per_op: BTreeMap<String, usize>,
    per_target: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    /// 404 answers by (operation, role, target), to compare "not yours" with "does not exist".
    not_found: HashMap<(String, Role, Target), Value>,
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s }
}

impl Recorder {
    fn fail(&mut self, at: At<'_>, expected: &str, got: &str, body: &str) {
        let (method, path, who, target) = at;
        self.failures.push(format!("| {method:<6} | {path} | {who} | {target} | expected {expected} | got {got} | {body} |"));
    }

    /// Compares an answer with the expectation; returns whether it matched.
    fn judge(&mut self, at: At<'_>, exp: Exp, r: &Reply, check: Option<&BodyCheck>) -> bool {
        let got = format!("{} {}", r.status.as_u16(), r.code());
        let mut why = None;
        if r.status.as_u16() != exp.status {
            why = Some(String::new());
        } else if let Some(code) = exp.code {
            let problem_json = r.headers.get("content-type").is_some_and(|v| v == "application/problem+json");
            if r.code() != code || !problem_json || r.body["type"] != format!("urn:ward:problem:{code}") {
                why = Some("not the expected problem+json".into());
            }
        } else if let Some(Err(e)) = check.map(|c| c(&r.body)) {
            why = Some(e);
        }
        match why {
            None => true,
            Some(why) => {
                let body = if why.is_empty() { short(&r.body) } else { format!("{why}: {}", short(&r.body)) };
                self.fail(at, &exp.to_string(), got.trim(), &body);
                false
            }
        }
    }
}

async fn run_matrix(h: &Harness, fx: &mut Fx, rec: &mut Recorder) {
    let mut n = 0u32;
    for op in OPS {
        if op.gate == Gate::Stream {
            stream_cells(h, fx, rec).await;
            continue;
        }
        if STEP_UP_OPS.contains(&(op.method, op.path)) {
            for a in fx.acts.iter().filter(|a| a.role.is_workforce()) {
                h.step_up(&a.main).await;
            }
        }
        for ai in 0..fx.acts.len() {
            for t in TARGETS {
                n += 1;
                let Some(c) = plan(fx, op, &fx.acts[ai], t, n) else { continue };
                let a = &fx.acts[ai];
                let token = match c.who {
                    Who::Anonymous => None,
                    Who::Main => Some(a.main.access.clone()),
                    Who::SpareA => Some(a.spare_a.access.clone()),
                };
                let r = match &c.raw {
                    Some((ct, bytes)) => h.raw(op.method(), &c.path, token.as_deref(), ct, bytes.clone()).await,
                    None => h.call(op.method(), &c.path, token.as_deref(), c.body.clone()).await,
                };
                rec.cells += 1;
                *rec.per_op.entry(op.key()).or_default() += 1;
                *rec.per_target.entry(t.label()).or_default() += 1;
                let matched = rec.judge((op.method, &c.path, a.role.as_str(), t.label()), c.expect, &r, c.check.as_ref());
                if r.status == 404 {
                    rec.not_found.insert((op.key(), a.role, t), r.body.clone());
                }
                // The refreshed tokens replace the spare session's (the old access token is dead).
                if op.is("POST", "/api/v1/auth/refresh") && t == Target::Own && matched {
                    let a = &mut fx.acts[ai];
                    a.spare_a.access = r.body["access_token"].as_str().unwrap().into();
                    a.spare_a.refresh = r.body["refresh_token"].as_str().unwrap().into();
                }
                if op.is("POST", "/api/v1/auth/logout") && matched {
                    let r = h.get("/api/v1/me", &fx.acts[ai].spare_a.access).await;
                    rec.extra += 1;
                    let who = format!("{} (signed out)", fx.acts[ai].role.as_str());
                    rec.judge(("GET", "/api/v1/me", &who, "own"), problem(401, "session_ended"), &r, None);
                }
            }
        }
    }
}

/// "Not yours" must be indistinguishable from "does not exist": same status, same body.
fn compare_not_found(rec: &mut Recorder) {
    let mut diffs = Vec::new();
    for ((op, role, t), body) in &rec.not_found {
        if !matches!(t, Target::Other | Target::Foreign | Target::Cross) {
            continue;
        }
        let random = rec.not_found.get(&(op.clone(), *role, Target::Random));
        if let Some(random) = random.filter(|r| *r != body) {
            diffs.push(format!(
                "| {op} | {} | {} vs random | bodies differ: {} vs {} |",
                role.as_str(),
                t.label(),
                short(body),
                short(random)
            ));
        }
    }
    rec.extra += rec.not_found.len();
    rec.failures.extend(diffs);
}

// ---------------------------------------------------------------------------------------------
// The WebSocket stream
// ---------------------------------------------------------------------------------------------

/// Opens the stream with an optional bearer header: the stream, or the refused handshake's
/// status and body.
async fn ws_connect(h: &Harness, bearer: Option<&str>) -> Result<common::Stream, (u16, Value)> {
    let url = h.url.replace("https://", "wss://") + "/api/v1/stream";
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let connector = Some(tokio_tungstenite::Connector::Rustls(h.tls.clone()));
    match tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector).await {
        Ok((ws, _)) => Ok(common::Stream { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let body = res.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
            Err((res.status().as_u16(), body))
        }
        Err(e) => Err((0, json!(e.to_string()))),
    }
}

/// A refused handshake judged like an HTTP answer.
fn judge_handshake(rec: &mut Recorder, who: &str, target: &str, exp: Exp, got: Result<common::Stream, (u16, Value)>) {
    const PATH: &str = "/api/v1/stream";
    match got {
        Ok(_) => rec.fail(("GET", PATH, who, target), &exp.to_string(), "101", "the WebSocket was accepted"),
        Err((status, body)) => {
            let code = body["code"].as_str().unwrap_or("");
            if status != exp.status || exp.code.is_some_and(|c| c != code) {
                rec.fail(("GET", PATH, who, target), &exp.to_string(), &format!("{status} {code}"), &short(&body));
            }
        }
    }
}

/// The stream's matrix cells: every role connects (own), a forged bearer is refused (random).
async fn stream_cells(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    for a in &fx.acts {
        rec.cells += 2;
        *rec.per_op.entry("GET /api/v1/stream".into()).or_default() += 2;
        *rec.per_target.entry("own").or_default() += 1;
        *rec.per_target.entry("random").or_default() += 1;
        match ws_connect(h, Some(&a.main.access)).await {
            Ok(mut st) => {
                let ready = st.next_json(Duration::from_secs(5)).await.unwrap_or(Value::Null);
                if ready["type"] != "ready" {
                    rec.fail(("GET", "/api/v1/stream", a.role.as_str(), "own"), "101 ready", "101", &short(&ready));
                }
            }
            Err((status, body)) => {
                rec.fail(("GET", "/api/v1/stream", a.role.as_str(), "own"), "101 ready", &status.to_string(), &short(&body))
            }
        }
        let forged_token = forged("wat_");
        judge_handshake(rec, a.role.as_str(), "random", problem(401, "invalid_token"), ws_connect(h, Some(&forged_token)).await);
    }
}

/// No role, and no former member, receives an event of a conversation it does not belong to:
/// neither in the catch-up replay nor live.
async fn stream_isolation(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    let throwaway = h.login(&fx.throwaway).await;
    let mut observers: Vec<(String, Session, Option<String>)> =
        fx.acts.iter().map(|a| (a.role.as_str().to_owned(), a.main.clone(), Some(a.conv.clone()))).collect();
    observers.push(("throwaway (removed member)".into(), throwaway, None));
    let mut streams = Vec::new();
    for (who, s, conv) in &observers {
        let allowed: BTreeSet<String> =
            ids_of(&h.get("/api/v1/conversations?limit=200", &s.access).await.expect(200).body["items"], "id").into_iter().collect();
        let mut st = h.stream(s).await;
        // The catch-up replay.
        let mut strays = Vec::new();
        while let Some(ev) = st.next_event(Duration::from_millis(300)).await {
            let c = ev["conversation_id"].as_str().unwrap_or("").to_owned();
            if !allowed.contains(&c) {
                strays.push(c);
            }
        }
        rec.extra += 1;
        if !strays.is_empty() {
            rec.fail(("GET", "/api/v1/stream", who, "replay"), "own events only", "foreign events", &format!("{strays:?}"));
        }
        streams.push((who.clone(), s.clone(), conv.clone(), allowed, st));
    }
    // Traffic the observers must not see, then a marker in each observer's own conversation.
    h.send(&fx.outsider, &fx.c_other, "isolation-other", "not for the matrix actors").await.expect(201);
    h.send(&fx.b_clin, &fx.c_b, "isolation-foreign", "not for organisation A").await.expect(201);
    let mut markers = Vec::new();
    for (who, s, conv, _, _) in &streams {
        let marker = match conv {
            Some(c) => Some(send_id(h, s, c, &format!("marker-{who}")).await),
            None => None,
        };
        markers.push(marker);
    }
    // The throwaway was removed from every actor's conversation: the actors' markers (sent
    // after the foreign traffic) bound how long to wait for anything stray.
    for ((who, _, _, allowed, st), marker) in streams.iter_mut().zip(markers) {
        let wait = if marker.is_some() { Duration::from_secs(5) } else { Duration::from_millis(700) };
        let mut strays = Vec::new();
        let mut seen_marker = false;
        while let Some(ev) = st.next_event(wait).await {
            let c = ev["conversation_id"].as_str().unwrap_or("").to_owned();
            if !allowed.contains(&c) {
                strays.push(c);
            }
            if marker.as_ref().is_some_and(|m| ev.to_string().contains(m.as_str())) {
                seen_marker = true;
                break;
            }
        }
        rec.extra += 1;
        if !strays.is_empty() {
            rec.fail(("GET", "/api/v1/stream", who, "live"), "own events only", "foreign events", &format!("{strays:?}"));
        }
        if marker.is_some() && !seen_marker {
            rec.fail(("GET", "/api/v1/stream", who, "live"), "own conversation's event", "nothing", "the marker message never arrived");
        }
    }
}

/// First-frame authentication with a forged token: an error frame and close 4401.
async fn stream_first_frame(h: &Harness, rec: &mut Recorder) {
    let mut st = h.stream_unauthenticated().await;
    st.send_json(json!({"type": "auth", "access_token": forged("wat_")})).await;
    rec.extra += 1;
    let err = st.next_json(Duration::from_secs(5)).await.unwrap_or(Value::Null);
    if err["type"] != "error" || err["code"] != "invalid_token" {
        rec.fail(("GET", "/api/v1/stream", "anonymous", "first-frame forged"), "error invalid_token", "", &short(&err));
    }
    match st.next_frame(Duration::from_secs(5)).await {
        common::Frame::Closed(Some(4401)) => {}
        other => rec.fail(("GET", "/api/v1/stream", "anonymous", "first-frame forged"), "close 4401", &format!("{other:?}"), ""),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens: missing, forged, malformed, signed out, restricted
// ---------------------------------------------------------------------------------------------

const AUTH_CODES: &[&str] =
    &["missing_token", "invalid_token", "token_expired", "session_ended", "password_change_required", "mfa_enrollment_required"];

/// Every bearer operation without a token, with forged and malformed ones, with a refresh
/// token in place of an access token, and with a signed-out session.
async fn token_probes(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    let signed_out = fx.act(Role::Clinician).spare_a.access.clone();
    let refresh_as_access = fx.act(Role::Admin).main.refresh.clone();
    for op in OPS.iter().filter(|o| o.gate == Gate::Bearer) {
        let probes: [(&str, Option<String>, Exp); 6] = [
            ("no token", None, problem(401, "missing_token")),
            ("forged wat_ token", Some(format!("Bearer {}", forged("wat_"))), problem(401, "invalid_token")),
            ("refresh token as bearer", Some(format!("Bearer {refresh_as_access}")), problem(401, "invalid_token")),
            ("not a bearer header", Some(format!("Basic {}", forged(""))), problem(401, "invalid_token")),
            ("empty bearer", Some("Bearer ".into()), problem(401, "invalid_token")),
            ("signed-out session", Some(format!("Bearer {signed_out}")), problem(401, "session_ended")),
        ];
        for (what, header, exp) in probes {
            let path = random_path(op);
            let mut req = h.http.request(op.method(), format!("{}{path}", h.url));
            if let Some(v) = header {
                req = req.header("authorization", v);
            }
            if let Some(b) = min_body(op) {
                req = req.json(&b);
            }
            let res = req.send().await.expect("request reaches the server");
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = res.bytes().await.unwrap();
            let r = Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            rec.extra += 1;
            rec.judge((op.method, &path, what, "-"), exp, &r, None);
        }
    }
    // The stream: a forged bearer header is refused at the handshake.
    rec.extra += 1;
    judge_handshake(rec, "forged wat_ token", "-", problem(401, "invalid_token"), ws_connect(h, Some(&forged("wat_"))).await);
    stream_first_frame(h, rec).await;
}

/// A session restricted to changing a one-time password reaches only the operations that
/// must work for it.
async fn restricted_probes(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    let admin = &fx.act(Role::Admin).main;
    let r = h.call(Method::POST, &format!("/api/v1/users/{}/password-reset", fx.victim.id), Some(&admin.access), None).await;
    let Some(otp) = r.body["one_time_password"].as_str() else {
        rec.fail(("POST", "/api/v1/users/{victim}/password-reset", "admin", "other"), "200", &r.status.to_string(), &short(&r.body));
        return;
    };
    let Some(v) = try_login(h, &fx.victim, otp).await else {
        rec.fail(("POST", "/api/v1/auth/login", "victim", "one-time password"), "200", "", "cannot sign in");
        return;
    };
    let mut logout = None;
    for op in OPS.iter().filter(|o| o.gate == Gate::Bearer) {
        if op.is("POST", "/api/v1/auth/logout") {
            logout = Some(op);
            continue;
        }
        let path = random_path(op);
        let r = h.call(op.method(), &path, Some(&v.access), min_body(op)).await;
        rec.extra += 1;
        if op.restricted_ok {
            if AUTH_CODES.contains(&r.code()) || r.status == 403 {
                rec.fail(
                    (op.method, &path, "restricted (password change)", "-"),
                    "past authentication",
                    &format!("{} {}", r.status, r.code()),
                    &short(&r.body),
                );
            }
        } else {
            rec.judge((op.method, &path, "restricted (password change)", "-"), problem(403, "password_change_required"), &r, None);
        }
    }
    rec.extra += 1;
    judge_handshake(
        rec,
        "restricted (password change)",
        "-",
        problem(403, "password_change_required"),
        ws_connect(h, Some(&v.access)).await,
    );
    let op = logout.unwrap();
    let r = h.call(op.method(), op.path, Some(&v.access), None).await;
    rec.extra += 1;
    rec.judge((op.method, op.path, "restricted (password change)", "-"), NO_CONTENT, &r, None);
}

/// The admin cells that end the admin's own sessions run last, each on a fresh session.
async fn deferred(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    let a = fx.act(Role::Admin);
    let me = a.acc.id.to_string();
    let revoke = format!("/api/v1/users/{me}/sessions");
    let r = h.call(Method::DELETE, &revoke, Some(&a.main.access), None).await;
    rec.cells += 1;
    *rec.per_op.entry("DELETE /api/v1/users/{user_id}/sessions".into()).or_default() += 1;
    *rec.per_target.entry("own").or_default() += 1;
    let check: BodyCheck = Box::new(|b| if b["revoked"].as_u64().unwrap_or(0) >= 1 { Ok(()) } else { Err("nothing revoked".into()) });
    rec.judge(("DELETE", &revoke, "admin", "own"), OK, &r, Some(&check));
    rec.extra += 1;
    let r = h.get("/api/v1/me", &a.main.access).await;
    rec.judge(("GET", "/api/v1/me", "admin (sessions revoked)", "own"), problem(401, "session_ended"), &r, None);

    let mut again = None;
    for pw in [NEW_PASSWORD, PASSWORD] {
        again = try_login(h, &a.acc, pw).await;
        if again.is_some() {
            break;
        }
    }
    let Some(again) = again else {
        rec.fail(("POST", "/api/v1/auth/login", "admin", "own"), "200", "", "the admin cannot sign in again");
        return;
    };
    let reset = format!("/api/v1/users/{me}/password-reset");
    let r = h.call(Method::POST, &reset, Some(&again.access), None).await;
    rec.cells += 1;
    *rec.per_op.entry("POST /api/v1/users/{user_id}/password-reset".into()).or_default() += 1;
    *rec.per_target.entry("own").or_default() += 1;
    rec.judge(("POST", &reset, "admin", "own"), OK, &r, None);
    rec.extra += 1;
    let r = h.get("/api/v1/me", &again.access).await;
    rec.judge(("GET", "/api/v1/me", "admin (password reset)", "own"), problem(401, "session_ended"), &r, None);
}

/// Denied attempts changed nothing: the sessions and memberships the matrix aimed at as
/// `other` and `foreign` are intact.
async fn intact(h: &Harness, fx: &Fx, rec: &mut Recorder) {
    let checks = [
        ("outsider", &fx.outsider, fx.c_other.clone(), fx.filler.account.id.to_string()),
        ("b-clinician", &fx.b_clin, fx.c_b.clone(), fx.b_staff.id.to_string()),
    ];
    for (who, s, conv, member) in checks {
        let r = h.get(&format!("/api/v1/conversations/{conv}"), &s.access).await;
        rec.extra += 1;
        let members = ids_of(&r.body["members"], "user_id");
        if r.status != 200 || !members.contains(&member) {
            rec.fail(("GET", "/api/v1/conversations/{id}", who, "intact"), "200 with its members", &r.status.to_string(), &short(&r.body));
        }
    }
    let r = h.get(&format!("/api/v1/patients/{}", fx.p_b.id), &fx.b_clin.access).await;
    rec.extra += 1;
    if r.body["care_team"] != json!(fx.p_b.care_team) {
        rec.fail(("GET", "/api/v1/patients/{id}", "b-clinician", "intact"), "unchanged care team", &r.status.to_string(), &short(&r.body));
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI coverage
// ---------------------------------------------------------------------------------------------

async fn openapi_coverage(h: &Harness, rec: &mut Recorder) -> usize {
    let doc = h.call(Method::GET, "/api/v1/openapi.json", None, None).await.expect(200).body;
    let mut documented = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
                documented.insert(format!("{} {path}", method.to_uppercase()), secured);
            }
        }
    }
    let table: BTreeMap<String, &OpDef> = OPS.iter().map(|o| (o.key(), o)).collect();
    assert_eq!(table.len(), OPS.len(), "the operation table lists an operation twice");
    for (key, secured) in &documented {
        match table.get(key) {
            None => rec
                .failures
                .push(format!("| {key} | in the OpenAPI document but not in the authorization matrix: add it to OPS and plan() |")),
            // The stream authenticates with a header or its first frame, so it declares none.
            Some(o) if *secured != (o.gate == Gate::Bearer) => {
                rec.failures.push(format!("| {key} | OpenAPI security {secured} disagrees with the matrix gate {:?} |", o.gate))
            }
            Some(_) => {}
        }
    }
    for key in table.keys() {
        if !documented.contains_key(key) {
            rec.failures.push(format!("| {key} | in the matrix but not in the OpenAPI document (stale table?) |"));
        }
    }
    documented.len()
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_tenant_role_and_membership() {
    let started = Instant::now();
    // Every call comes from 127.0.0.1: the webhooks' per-address limit on bad signatures would
    // otherwise answer the matrix's own unsigned calls with 429 before it checks them.
    let Some(h) = Harness::start_with(ward_store::Backend::Sqlite, |c| {
        c.inbound.bad_signatures_per_minute_per_address = 10_000;
        // The single sign-on cells' refusals count as failed sign-ins from 127.0.0.1 too.
        c.sessions.failed_logins_per_minute_per_address = 10_000;
    })
    .await
    else {
        return;
    };
    let mut rec = Recorder::default();
    let documented = openapi_coverage(&h, &mut rec).await;
    let mut fx = fixture(&h).await;
    let fixture_done = started.elapsed();

    run_matrix(&h, &mut fx, &mut rec).await;
    compare_not_found(&mut rec);
    token_probes(&h, &fx, &mut rec).await;
    stream_isolation(&h, &fx, &mut rec).await;
    intact(&h, &fx, &mut rec).await;
    restricted_probes(&h, &fx, &mut rec).await;
    deferred(&h, &fx, &mut rec).await;

    eprintln!(
        "authorization matrix: {documented} documented operations, {} in the table; {} matrix cells (operation × role × target), \
         {} further checks; fixture {:.1?}, total {:.1?}",
        OPS.len(),
        rec.cells,
        rec.extra,
        fixture_done,
        started.elapsed()
    );
    eprintln!("cells by target: {:?}", rec.per_target);
    for (op, n) in &rec.per_op {
        eprintln!("  {n:>3}  {op}");
    }
    if !rec.failures.is_empty() {
        eprintln!("| method | path | role | target | expected | got | body |");
        for f in &rec.failures {
            eprintln!("{f}");
        }
    }
    assert!(rec.failures.is_empty(), "{} authorization mismatches (table above)", rec.failures.len());
}
