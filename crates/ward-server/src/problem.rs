//! RFC 9457 problem details: every error the API returns, with a stable machine-readable code.
//!
//! Each code below is part of the API contract. The `type` member is `urn:ward:problem:<code>`.
//! Details never echo request values or stored content (they could carry PHI); 5xx bodies are
//! generic and the cause is logged by middleware, inside the request's span.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ward_domain::DomainError;
use ward_domain::policy::Denial;
use ward_store::StoreError;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Short, fixed summary of the code.
    pub title: &'static str,
    /// Specific explanation (never containing request values).
    pub detail: Option<String>,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u32>,
    /// For `step_up_required`: how recent (seconds) the second-factor verification must be,
    /// sent as `max_age` in the `WWW-Authenticate` challenge (RFC 9470).
    pub max_age: Option<u32>,
    /// Cause to log (5xx only); never sent.
    pub internal: Option<String>,
    /// For `outbound_content_blocked`: the categories of clinical detail found (never the text).
    pub categories: Option<Box<[&'static str]>>,
}

/// The internal cause of a 5xx, handed to the logging middleware through response extensions.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

#[derive(Serialize, utoipa::ToSchema)]
/// RFC 9457 problem details.
pub struct Problem {
    /// `urn:ward:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Summary.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For `outbound_content_blocked`: the categories of clinical detail found, by id
    /// (`condition`, `medication`, `mental_health`, ...); never the matched text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Box<[&'static str]>>,
}

macro_rules! problems {
    ($($(#[$doc:meta])* $fn:ident => $status:ident, $code:literal, $title:literal;)*) => {
        impl ApiError {
            $(
                $(#[$doc])*
                pub fn $fn() -> Self {
                    Self::new(StatusCode::$status, $code, $title)
                }
            )*
        }

        /// Every problem code with its status and title (documentation and tests).
        pub const CODES: &[(&str, u16, &str)] = &[$(($code, StatusCode::$status.as_u16(), $title)),*];
    };
}

problems! {
    /// The body is not valid JSON (or not UTF-8).
    malformed_json => BAD_REQUEST, "malformed_json", "The request body is not valid JSON";
    /// The body is JSON of the wrong shape: a missing, unknown or mistyped field.
    invalid_body => BAD_REQUEST, "invalid_body", "The request body does not have the expected fields";
    /// A path or query parameter is malformed.
    invalid_parameter => BAD_REQUEST, "invalid_parameter", "A path or query parameter is invalid";
    /// The body is not JSON.
    unsupported_media_type => UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send a JSON body with Content-Type: application/json";
    /// The body is larger than allowed.
    payload_too_large => PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large";
    /// A value broke a rule (length, alphabet, range).
    validation_failed => UNPROCESSABLE_ENTITY, "validation_failed", "A value in the request is not acceptable";
    /// No bearer token was sent.
    missing_token => UNAUTHORIZED, "missing_token", "Authentication is required";
    /// The token is unknown, malformed or revoked.
    invalid_token => UNAUTHORIZED, "invalid_token", "The access token is not valid";
    /// The access token has expired; refresh it.
    token_expired => UNAUTHORIZED, "token_expired", "The access token has expired";
    /// The session ended (revoked, idle too long, or past its lifetime); sign in again.
    session_ended => UNAUTHORIZED, "session_ended", "The session has ended; sign in again";
    /// Wrong login name or password (the same answer whether or not the name exists).
    invalid_credentials => UNAUTHORIZED, "invalid_credentials", "The login name or password is wrong";
    /// Wrong or reused second-factor code.
    invalid_mfa_code => UNAUTHORIZED, "invalid_mfa_code", "The verification code is wrong or was already used";
    /// The refresh token is unknown, used, expired or from another device.
    invalid_refresh_token => UNAUTHORIZED, "invalid_refresh_token", "The refresh token is not valid";
    /// A webhook request's `x-ward-signature` or `x-ward-timestamp` is missing, the signature
    /// is not the organisation's HMAC-SHA256 of `<timestamp>.<body>` (or the organisation has
    /// no webhooks configured), the timestamp is stale, or the request is a replay.
    invalid_signature => UNAUTHORIZED, "invalid_signature", "The request signature is missing or wrong";
    /// The account is disabled.
    account_disabled => FORBIDDEN, "account_disabled", "The account is disabled";
    /// A portal one-time link is unknown, used or expired (one answer for all three).
    invalid_portal_link => UNAUTHORIZED, "invalid_portal_link", "The sign-in link is unknown, used or expired";
    /// The organisation has no single sign-on provider (or does not exist: one answer).
    oidc_not_configured => NOT_FOUND, "oidc_not_configured", "Single sign-on is not set up for this organisation";
    /// A single sign-on callback whose state is missing, unknown, already used, expired, or
    /// not this browser's (one answer for all).
    oidc_state_invalid => BAD_REQUEST, "oidc_state_invalid", "The single sign-on attempt is unknown, used or expired";
    /// The provider answered the sign-in with an error, or could not be reached.
    oidc_provider_error => BAD_GATEWAY, "oidc_provider_error", "The identity provider did not complete the sign-in";
    /// The provider's ID token failed validation (signature, issuer, audience, expiry, nonce).
    oidc_token_invalid => UNAUTHORIZED, "oidc_token_invalid", "The identity provider's token is not valid";
    /// The provider's user has no Ward account and just-in-time accounts are off.
    oidc_account_not_linked => FORBIDDEN, "oidc_account_not_linked", "No Ward account is linked to this identity";
    /// Just-in-time account creation found no role for the provider's claims.
    oidc_no_role => FORBIDDEN, "oidc_no_role", "The identity provider gave no role Ward accepts";
    /// The single sign-on hand-over is unknown, used or expired.
    oidc_handoff_invalid => UNAUTHORIZED, "oidc_handoff_invalid", "The single sign-on hand-over is unknown, used or expired";
    /// Single sign-on needs Ward's public address (`[oidc] public_url`, `[portal] public_url` or
    /// a `webauthn.origins` entry) unless the request came to a loopback name or address.
    oidc_public_url_required => SERVICE_UNAVAILABLE, "oidc_public_url_required", "Single sign-on needs Ward's public address configured";
    /// The role does not allow the action.
    forbidden => FORBIDDEN, "forbidden", "Your role does not allow this action";
    /// The password is one-time and must be changed first.
    password_change_required => FORBIDDEN, "password_change_required", "Change your one-time password first";
    /// The organisation requires MFA for this role and none is enrolled; or the action needs a
    /// recent second-factor verification (step-up) and the user has no second factor.
    mfa_enrollment_required => FORBIDDEN, "mfa_enrollment_required", "Enrol a second factor first";
    /// A sensitive action needs a second-factor verification within the last few minutes:
    /// verify again with `POST /api/v1/me/step-up`, then retry. The `WWW-Authenticate` header
    /// carries RFC 9470's `insufficient_user_authentication` error and the `max_age`.
    step_up_required => UNAUTHORIZED, "step_up_required", "Verify your second factor again to continue";
    /// The WebAuthn ceremony named is unknown, was already used, has expired, or was issued
    /// for another user, session or sign-in: begin again.
    webauthn_challenge_invalid => BAD_REQUEST, "webauthn_challenge_invalid", "The WebAuthn challenge is unknown, used or expired";
    /// The WebAuthn assertion failed verification (signature, challenge, origin, relying
    /// party, user verification). Counts towards the sign-in lockout.
    webauthn_assertion_invalid => UNAUTHORIZED, "webauthn_assertion_invalid", "The WebAuthn assertion could not be verified";
    /// The assertion names a credential that is not registered to this account (another
    /// user's, or none). Counts towards the sign-in lockout.
    webauthn_credential_unknown => UNAUTHORIZED, "webauthn_credential_unknown", "The WebAuthn credential is not registered to this account";
    /// The credential's signature counter went backwards: the authenticator may have been
    /// cloned. The credential is flagged and refused from now on; remove it and register again.
    webauthn_possible_clone => UNAUTHORIZED, "webauthn_possible_clone", "This WebAuthn credential may have been cloned and is refused";
    /// The registration response failed verification (attestation, challenge, origin, user
    /// verification).
    webauthn_registration_invalid => UNPROCESSABLE_ENTITY, "webauthn_registration_invalid", "The WebAuthn registration could not be verified";
    /// Only an owner may do this.
    not_owner => FORBIDDEN, "not_owner", "Only an owner of the conversation may do this";
    /// Only the sender may do this.
    not_sender => FORBIDDEN, "not_sender", "Only the sender of the message may do this";
    /// The record does not exist or is not visible to the caller.
    not_found => NOT_FOUND, "not_found", "Not found";
    /// A unique value is taken.
    conflict => CONFLICT, "conflict", "That already exists";
    /// A client transaction id was reused for different content.
    client_txn_id_reused => CONFLICT, "client_txn_id_reused", "This client_txn_id was already used for a different message";
    /// The operation does not fit the record's state.
    invalid_state => CONFLICT, "invalid_state", "The request does not fit the current state";
    /// A group id sent to attach to a care team names no SCIM group of the organisation (an
    /// unknown id, or another organisation's group: one answer).
    unknown_group => UNPROCESSABLE_ENTITY, "unknown_group", "A group id names no SCIM group of this organisation";
    /// Someone outside the patient's care team needs a stated reason.
    reason_required => UNPROCESSABLE_ENTITY, "reason_required", "A reason is required to add someone outside the patient's care team";
    /// Forwarding a patient's message outside the care team needs a purpose or an authorization.
    disclosure_purpose_required => UNPROCESSABLE_ENTITY, "disclosure_purpose_required", "Forwarding outside the patient's care team needs a purpose or a patient authorization";
    /// The patient authorization given is not recorded for this patient, or has expired.
    authorization_not_valid => UNPROCESSABLE_ENTITY, "authorization_not_valid", "The authorization is not recorded for this patient or has expired";
    /// The person cannot join this conversation.
    ineligible_member => UNPROCESSABLE_ENTITY, "ineligible_member", "That person cannot join this conversation";
    /// Too many failed sign-ins; wait.
    login_locked => TOO_MANY_REQUESTS, "login_locked", "Too many failed attempts; try again later";
    /// The content was crypto-shredded at the end of its retention period: its data key is
    /// destroyed, and only the metadata tombstone remains.
    content_shredded => GONE, "content_shredded", "The content was destroyed at the end of its retention period";
    /// A legal hold covers the content, so it cannot be destroyed now.
    legal_hold => CONFLICT, "legal_hold", "A legal hold covers this content";
    /// The attachment is larger than `[attachments] max_bytes` (refused as it streams in).
    attachment_too_large => PAYLOAD_TOO_LARGE, "attachment_too_large", "The attachment is too large";
    /// The attachment's content (recognised from its bytes, not only the declared type) is not
    /// an allowed type, or does not match the declared Content-Type.
    attachment_type_not_allowed => UNSUPPORTED_MEDIA_TYPE, "attachment_type_not_allowed", "This type of file cannot be attached";
    /// The stored attachment is missing, truncated, reordered or altered; nothing of it is served.
    attachment_damaged => INTERNAL_SERVER_ERROR, "attachment_damaged", "The stored attachment is damaged";
    /// Nothing is sent on a channel without the patient's current consent for it.
    consent_required => CONFLICT, "consent_required", "The patient has not consented to this channel";
    /// Nothing is sent to a phone number or email address unless it is verified, within the
    /// organisation's re-verification period, not suppressed by delivery feedback and not
    /// claimed by another person.
    verified_contact_required => CONFLICT, "verified_contact_required", "The patient has no verified contact for this channel";
    /// The patient record has no enabled patient account.
    patient_account_required => CONFLICT, "patient_account_required", "The patient has no enabled portal account";
    /// The verification code is wrong; `detail` says how many attempts remain.
    invalid_verification_code => UNPROCESSABLE_ENTITY, "invalid_verification_code", "The verification code is wrong";
    /// Too many wrong codes: this code no longer works; ask for a new one.
    verification_locked => CONFLICT, "verification_locked", "Too many wrong codes; ask for a new code";
    /// No code is pending for the contact, or it expired; ask for a new one.
    verification_expired => CONFLICT, "verification_expired", "No verification code is pending, or it expired";
    /// Too many codes were sent to the contact lately; see Retry-After.
    verification_rate_limited => TOO_MANY_REQUESTS, "verification_rate_limited", "Too many verification codes were sent to this contact; try later";
    /// The outbound content policy found clinical detail in text meant for a channel Ward does
    /// not control; `categories` lists what kinds (never the text).
    outbound_content_blocked => UNPROCESSABLE_ENTITY, "outbound_content_blocked", "The text contains clinical detail and cannot be sent outside Ward";
    /// A notice template uses a field that is not allowed (only first name, date, time,
    /// location name and portal link are).
    template_field_not_allowed => UNPROCESSABLE_ENTITY, "template_field_not_allowed", "The template uses a field that is not allowed in patient notices";
    /// A notice template is empty, too long or has unbalanced braces.
    template_invalid => UNPROCESSABLE_ENTITY, "template_invalid", "The template cannot be parsed";
    /// A posture report or device registration has unknown keys or values no device can have.
    invalid_device_report => BAD_REQUEST, "invalid_device_report", "The device report has unknown fields or impossible values";
    /// The device already confirmed this wipe; nothing changed.
    wipe_already_acknowledged => CONFLICT, "wipe_already_acknowledged", "This wipe was already acknowledged";
    /// The session's device is blocked from PHI by the organisation's posture policy until the
    /// named settings are fixed.
    device_blocked => FORBIDDEN, "device_blocked", "This device must fix its security settings before it receives PHI";
    /// The organisation requires every current policy to be acknowledged before PHI access,
    /// and the user has not acknowledged them all (`GET /api/v1/policies`).
    policy_acknowledgment_required => FORBIDDEN, "policy_acknowledgment_required", "Acknowledge the organisation's current policies before accessing PHI";
    /// Too many requests from this address or for this device; wait `Retry-After` seconds.
    rate_limited => TOO_MANY_REQUESTS, "rate_limited", "Too many requests; try again later";
    /// The roster CSV cannot be read or breaks a rule; the detail names the line and column
    /// (never a value: rosters hold personal data).
    invalid_roster => UNPROCESSABLE_ENTITY, "invalid_roster", "The roster cannot be read";
    /// `/api/v1/stream` was requested without a WebSocket upgrade.
    websocket_required => UPGRADE_REQUIRED, "websocket_required", "This endpoint speaks only the WebSocket protocol";
    /// The database is unavailable; retry.
    unavailable => SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable";
    /// The database's disk is full; nothing was written.
    storage_full => INSUFFICIENT_STORAGE, "storage_full", "The server is out of storage space";
    /// Something failed inside Ward.
    internal => INTERNAL_SERVER_ERROR, "internal", "Internal error";
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self { status, code, title, detail: None, retry_after: None, max_age: None, internal: None, categories: None }
    }

    /// Adds an explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a Retry-After.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        self
    }

    /// Lists the categories of clinical detail found (`outbound_content_blocked`).
    pub fn categories(mut self, categories: Vec<&'static str>) -> Self {
        // Boxed slice, not Vec: keeps ApiError small enough to return by value everywhere.
        self.categories = Some(categories.into_boxed_slice());
        self
    }

    /// Step-up required: the last second-factor verification must be at most `max_age_secs` old.
    pub fn step_up(max_age_secs: u32) -> Self {
        let mut e = Self::step_up_required();
        e.max_age = Some(max_age_secs);
        e.detail(format!(
            "this action needs a second-factor verification within the last {max_age_secs} seconds; POST /api/v1/me/step-up and retry"
        ))
    }

    /// An internal error with its cause for the log.
    pub fn internal_cause(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::internal();
        e.internal = Some(cause.to_string());
        e
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::validation_failed().detail(e.to_string())
    }
}

impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        let e = match d {
            Denial::RoleNotPermitted => ApiError::forbidden(),
            Denial::NotOwner => ApiError::not_owner(),
            Denial::NotSender => ApiError::not_sender(),
            Denial::ReasonRequired => ApiError::reason_required(),
            Denial::IneligibleMember => ApiError::ineligible_member(),
            Denial::DisclosurePurposeRequired => ApiError::disclosure_purpose_required(),
            Denial::AuthorizationNotValid => ApiError::authorization_not_valid(),
            Denial::ConversationShape => ApiError::invalid_state(),
            _ => ApiError::forbidden(),
        };
        e.detail(d.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Conflict("client_txn_id") => ApiError::client_txn_id_reused(),
            StoreError::Conflict(what) => ApiError::conflict().detail(format!("{what} already exists")),
            StoreError::Denied(d) => d.into(),
            StoreError::Invalid(d) => d.into(),
            StoreError::State(why) => ApiError::invalid_state().detail(why),
            StoreError::Changed => ApiError::invalid_state().detail("the record changed meanwhile: read it again"),
            StoreError::Unavailable => ApiError::unavailable().retry_after(1),
            StoreError::StorageFull => ApiError::storage_full().retry_after(30),
            StoreError::KeyDestroyed => ApiError::content_shredded(),
            StoreError::LegalHold => ApiError::legal_hold(),
            other => ApiError::internal_cause(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:ward:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            categories: self.categories,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (self.status, bytes).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(max_age) = self.max_age {
            let challenge = format!(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"A recent second-factor verification is required\", max_age={max_age}"
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(cause) = self.internal {
            res.extensions_mut().insert(InternalCause(cause));
        }
        res
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::CODES;

    #[test]
    fn codes_are_unique_and_documented() {
        let doc = include_str!("../../../docs/errors.md");
        let mut seen = std::collections::HashSet::new();
        for (code, status, _) in CODES {
            assert!(seen.insert(*code), "duplicate problem code {code}");
            assert!(doc.contains(&format!("| `{code}` | {status} |")), "docs/errors.md lacks {code}");
        }
    }
}
