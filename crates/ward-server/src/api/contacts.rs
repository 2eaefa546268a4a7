//! The verified contact directory (docs/devices.md): a user's own phone numbers and email
//! addresses (`/api/v1/me/contacts...`), a patient record's (`/api/v1/patients/{patient_id}/contacts...`;
//! admins, the care team and the patient themself, as for consent), one-time-code
//! verification, delivery feedback that suppresses a value (`POST /api/v1/contacts/suppress`),
//! the conflicts list and the organisation's re-verification period (admins). Values appear
//! only in the bodies of their owner's listings: never in errors, logs or the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, DetailValue, Outcome};
use ward_domain::contact::{ContactKind, ContactStatus, SuppressReason, check_reverify_days, parse_code, verification_text};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::policy;
use ward_store::{Contact, ContactOwner, RequestMeta, VerificationResult, VerificationStart, new_verification_code};

use super::consents::{actor_event, refuse, standing};
use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(my_contacts, add_my_contact))
        .routes(utoipa_axum::routes!(remove_my_contact))
        .routes(utoipa_axum::routes!(verify_my_contact))
        .routes(utoipa_axum::routes!(confirm_my_contact))
        .routes(utoipa_axum::routes!(patient_contacts, add_patient_contact))
        .routes(utoipa_axum::routes!(remove_patient_contact))
        .routes(utoipa_axum::routes!(verify_patient_contact))
        .routes(utoipa_axum::routes!(confirm_patient_contact))
        .routes(utoipa_axum::routes!(suppress_contact))
        .routes(utoipa_axum::routes!(contact_conflicts))
        .routes(utoipa_axum::routes!(get_contact_policy, put_contact_policy))
}

/// A contact with its status now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ContactView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// `phone` or `email`.
    pub(crate) kind: ContactKind,
    /// The normal form: E.164 (`+14155552671`) or the lowercased address.
    pub(crate) value: String,
    /// `unverified`, `verified`, `expired`, `suppressed` or `conflict`; only `verified` is sent to.
    pub(crate) status: ContactStatus,
    /// When it was last verified (RFC 3339).
    pub(crate) verified_at: Option<String>,
    /// When it must be verified again to stay sendable (RFC 3339).
    pub(crate) reverify_by: Option<String>,
    /// When delivery feedback suppressed it (RFC 3339).
    pub(crate) suppressed_at: Option<String>,
    /// Why (`bounce`, `disconnected`, `complaint`).
    pub(crate) suppressed_reason: Option<SuppressReason>,
    /// Another person of the organisation claims the same value.
    pub(crate) conflict: bool,
    /// When the pending code expires (RFC 3339), while one is pending.
    pub(crate) code_expires_at: Option<String>,
    /// When it was added (RFC 3339).
    pub(crate) created_at: String,
    /// Who added it.
    pub(crate) created_by: UserId,
}

fn contact_view(c: Contact, reverify_days: u32) -> ContactView {
    ContactView {
        id: c.id,
        kind: c.kind,
        value: c.value,
        status: c.status,
        verified_at: c.verified_at.map(ts),
        reverify_by: c.verified_at.map(|v| ts(v + i64::from(reverify_days) * 86_400_000)),
        suppressed_at: c.suppressed_at.map(ts),
        suppressed_reason: c.suppressed_reason,
        conflict: c.conflict,
        code_expires_at: c.code_expires_at.map(ts),
        created_at: ts(c.created_at),
        created_by: c.created_by,
    }
}

/// A list of contacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ContactList {
    /// Oldest first.
    pub(crate) items: Vec<ContactView>,
}

/// A contact to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddContactRequest {
    /// `phone` or `email`.
    pub(crate) kind: ContactKind,
    /// A phone number in international form (`+1 415 555 2671`; spaces, hyphens, dots and
    /// parentheses are dropped) or an email address.
    pub(crate) value: String,
}

/// A verification code was queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VerificationSent {
    /// The outbox entry carrying the code.
    pub(crate) message_id: uuid::Uuid,
    /// When the code expires (RFC 3339).
    pub(crate) expires_at: String,
}

/// The code the contact received.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmContactRequest {
    /// The 6 digits.
    pub(crate) code: String,
}

/// Delivery feedback for a contact.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuppressRequest {
    /// The contact a message bounced from (the `contact:<id>` of the outbox entry).
    pub(crate) contact_id: uuid::Uuid,
    /// `bounce`, `disconnected` or `complaint`.
    pub(crate) reason: SuppressReason,
}

/// What a suppression reached.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressResult {
    /// Contacts of the organisation with the same value, all suppressed now.
    pub(crate) suppressed: u64,
}

/// A contact another person also claims (no value: ids only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConflictView {
    /// The contact.
    pub(crate) id: uuid::Uuid,
    /// `phone` or `email`.
    pub(crate) kind: ContactKind,
    /// The user it belongs to, for a user's own contact.
    pub(crate) user_id: Option<UserId>,
    /// The patient record it belongs to, for a patient's.
    pub(crate) patient_id: Option<PatientId>,
    /// The same for the contacts that share a value (reveals nothing about the value).
    pub(crate) group: String,
    /// When it was added (RFC 3339).
    pub(crate) created_at: String,
    /// When it was last verified (RFC 3339).
    pub(crate) verified_at: Option<String>,
}

/// The contacts claimed by more than one person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConflictList {
    /// By group.
    pub(crate) items: Vec<ConflictView>,
}

/// The organisation's contact policy.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactPolicy {
    /// Days after verification before a contact must be verified again (1 to 730; default 90).
    pub(crate) reverify_days: u32,
}

// --- shared -----------------------------------------------------------------------------------

async fn list(state: &AppState, s: &Auth, owner: ContactOwner, meta: RequestMeta) -> ApiResult<Json<ContactList>> {
    let days = state.store.contact_reverify_days(s.actor.org_id).await?;
    let items = state.store.contacts(s.actor.org_id, s.actor.user_id, owner, meta).await?;
    Ok(Json(ContactList { items: items.into_iter().map(|c| contact_view(c, days)).collect() }))
}

async fn add(
    state: &AppState,
    s: &Auth,
    owner: ContactOwner,
    req: AddContactRequest,
    meta: RequestMeta,
) -> ApiResult<(StatusCode, Json<ContactView>)> {
    let value = match req.kind.normalize(&req.value) {
        Ok(v) => v,
        Err(e) => {
            // Bad input is audited with its rule's field and kind, never the value.
            let mut ev = actor_event(s, AuditAction::ContactAdd, Outcome::Failure)
                .detail("kind", DetailValue::Code(req.kind.as_str()))
                .detail("reason", DetailValue::Code("invalid_value"));
            if let ContactOwner::Patient(p) = owner {
                ev = ev.target("patient", p).patient(Some(p));
            }
            state.store.record(ev, meta).await?;
            return Err(e.into());
        }
    };
    let days = state.store.contact_reverify_days(s.actor.org_id).await?;
    let c = state.store.add_contact(s.actor.org_id, s.actor.user_id, owner, req.kind, value, meta).await?;
    Ok((StatusCode::CREATED, Json(contact_view(c, days))))
}

async fn start(
    state: &AppState,
    s: &Auth,
    owner: ContactOwner,
    id: uuid::Uuid,
    meta: RequestMeta,
) -> ApiResult<(StatusCode, Json<VerificationSent>)> {
    let code = new_verification_code();
    // The text is fixed and PHI-free; checked anyway, as everything leaving Ward is.
    let policy = state.outbound.get().await?;
    if !policy.check(&verification_text(&code), &[]).is_allowed() {
        return Err(ApiError::internal_cause("the verification text failed the outbound content policy"));
    }
    match state.store.start_contact_verification(s.actor.org_id, s.actor.user_id, owner, id, code, meta).await? {
        VerificationStart::Sent { message_id, expires_at } => {
            Ok((StatusCode::ACCEPTED, Json(VerificationSent { message_id, expires_at: ts(expires_at) })))
        }
        VerificationStart::RateLimited { retry_after_secs } => Err(ApiError::verification_rate_limited()
            .detail("at most 5 codes a day go to one contact, and at most 20 a day are sent by one person")
            .retry_after(retry_after_secs)),
    }
}

async fn confirm(
    state: &AppState,
    s: &Auth,
    owner: ContactOwner,
    id: uuid::Uuid,
    req: ConfirmContactRequest,
    meta: RequestMeta,
) -> ApiResult<Json<ContactView>> {
    let code = parse_code(&req.code)?;
    let days = state.store.contact_reverify_days(s.actor.org_id).await?;
    match state.store.confirm_contact(s.actor.org_id, s.actor.user_id, owner, id, code, meta).await? {
        VerificationResult::Verified(c) => Ok(Json(contact_view(c, days))),
        VerificationResult::WrongCode { attempts_left: 0 } => {
            Err(ApiError::verification_locked().detail("too many wrong codes; ask for a new one"))
        }
        VerificationResult::WrongCode { attempts_left } => {
            Err(ApiError::invalid_verification_code().detail(format!("{attempts_left} attempts left")))
        }
        VerificationResult::Locked => Err(ApiError::verification_locked().detail("too many wrong codes; ask for a new one")),
        VerificationResult::Expired => Err(ApiError::verification_expired().detail("no code is pending, or it expired; ask for a new one")),
    }
}

/// The patient's contacts are the caller's to manage: standing (404 for a patient account
/// asking about another patient), then the role rule (403, audited).
async fn may_manage(state: &AppState, s: &Auth, patient: PatientId, meta: &RequestMeta, action: AuditAction) -> ApiResult<ContactOwner> {
    let st = standing(state, s, patient).await?;
    if let Err(d) = policy::may_manage_patient_contacts(&s.actor, st.on_care_team, st.is_the_patient) {
        return Err(refuse(state, s, meta.clone(), action, patient, d).await);
    }
    Ok(ContactOwner::Patient(patient))
}

// --- the caller's own -------------------------------------------------------------------------

/// The caller's own phone numbers and email addresses with their status.
#[utoipa::path(get, path = "/api/v1/me/contacts", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = ContactList), (status = 401, body = Problem)))]
async fn my_contacts(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<ContactList>> {
    list(&state, &s, ContactOwner::User(s.actor.user_id), meta).await
}

/// Adds a phone number or email address to the caller's contacts, unverified (audited; a
/// value another person claims is flagged on both).
#[utoipa::path(post, path = "/api/v1/me/contacts", tag = "contacts", security(("bearer" = [])), request_body = AddContactRequest,
    responses((status = 201, body = ContactView), (status = 400, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_my_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<AddContactRequest>,
) -> ApiResult<(StatusCode, Json<ContactView>)> {
    add(&state, &s, ContactOwner::User(s.actor.user_id), req, meta).await
}

/// Removes one of the caller's contacts (audited).
#[utoipa::path(delete, path = "/api/v1/me/contacts/{contact_id}", tag = "contacts", security(("bearer" = [])),
    params(("contact_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn remove_my_contact(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<StatusCode> {
    state.store.remove_contact(s.actor.org_id, s.actor.user_id, ContactOwner::User(s.actor.user_id), id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a one-time code to one of the caller's contacts through the outbox (valid 10
/// minutes; at most 5 a day; audited).
#[utoipa::path(post, path = "/api/v1/me/contacts/{contact_id}/verify", tag = "contacts", security(("bearer" = [])),
    params(("contact_id" = uuid::Uuid, Path)),
    responses((status = 202, body = VerificationSent), (status = 400, body = Problem), (status = 404, body = Problem), (status = 429, body = Problem)))]
async fn verify_my_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<(StatusCode, Json<VerificationSent>)> {
    start(&state, &s, ContactOwner::User(s.actor.user_id), id, meta).await
}

/// Confirms the code sent to one of the caller's contacts: verified from now (audited; five
/// wrong codes lock it).
#[utoipa::path(post, path = "/api/v1/me/contacts/{contact_id}/confirm", tag = "contacts", security(("bearer" = [])),
    params(("contact_id" = uuid::Uuid, Path)), request_body = ConfirmContactRequest,
    responses((status = 200, body = ContactView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn confirm_my_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(req): Json<ConfirmContactRequest>,
) -> ApiResult<Json<ContactView>> {
    confirm(&state, &s, ContactOwner::User(s.actor.user_id), id, req, meta).await
}

// --- a patient's ------------------------------------------------------------------------------

/// A patient's phone numbers and email addresses with their status (admins, the care team
/// and the patient; audited).
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/contacts", tag = "contacts", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)),
    responses((status = 200, body = ContactList), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn patient_contacts(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
) -> ApiResult<Json<ContactList>> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_read_patient_contacts(&s.actor, st.on_care_team, st.is_the_patient) {
        return Err(refuse(&state, &s, meta, AuditAction::ContactRead, id, d).await);
    }
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    list(&state, &s, ContactOwner::Patient(id), meta).await
}

/// Adds a phone number or email address to a patient's contacts, unverified (audited).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/contacts", tag = "contacts", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = AddContactRequest,
    responses((status = 201, body = ContactView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_patient_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<AddContactRequest>,
) -> ApiResult<(StatusCode, Json<ContactView>)> {
    let owner = may_manage(&state, &s, id, &meta, AuditAction::ContactAdd).await?;
    add(&state, &s, owner, req, meta).await
}

/// Removes one of a patient's contacts (audited).
#[utoipa::path(delete, path = "/api/v1/patients/{patient_id}/contacts/{contact_id}", tag = "contacts", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path), ("contact_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_patient_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, contact)): Path<(PatientId, uuid::Uuid)>,
) -> ApiResult<StatusCode> {
    let owner = may_manage(&state, &s, id, &meta, AuditAction::ContactRemove).await?;
    state.store.remove_contact(s.actor.org_id, s.actor.user_id, owner, contact, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a one-time code to one of a patient's contacts (audited).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/contacts/{contact_id}/verify", tag = "contacts", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path), ("contact_id" = uuid::Uuid, Path)),
    responses((status = 202, body = VerificationSent), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem)))]
async fn verify_patient_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, contact)): Path<(PatientId, uuid::Uuid)>,
) -> ApiResult<(StatusCode, Json<VerificationSent>)> {
    let owner = may_manage(&state, &s, id, &meta, AuditAction::ContactVerifyStart).await?;
    start(&state, &s, owner, contact, meta).await
}

/// Confirms the code a patient's contact received (audited; five wrong codes lock it).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/contacts/{contact_id}/confirm", tag = "contacts", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path), ("contact_id" = uuid::Uuid, Path)), request_body = ConfirmContactRequest,
    responses((status = 200, body = ContactView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn confirm_patient_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, contact)): Path<(PatientId, uuid::Uuid)>,
    Json(req): Json<ConfirmContactRequest>,
) -> ApiResult<Json<ContactView>> {
    let owner = may_manage(&state, &s, id, &meta, AuditAction::ContactVerify).await?;
    confirm(&state, &s, owner, contact, req, meta).await
}

// --- the organisation's -----------------------------------------------------------------------

/// Delivery feedback (a bounce, a number reported disconnected, a complaint): suppresses the
/// contact's value at once on every contact of the organisation holding it, until verified
/// again (admins; audited).
#[utoipa::path(post, path = "/api/v1/contacts/suppress", tag = "contacts", security(("bearer" = [])), request_body = SuppressRequest,
    responses((status = 200, body = SuppressResult), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn suppress_contact(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<SuppressRequest>,
) -> ApiResult<Json<SuppressResult>> {
    if let Err(d) = policy::may_administer(&s.actor) {
        state.store.record(actor_event(&s, AuditAction::ContactSuppress, Outcome::Denied), meta).await?;
        return Err(d.into());
    }
    let suppressed = state.store.suppress_contact(s.actor.org_id, s.actor.user_id, req.contact_id, req.reason, meta).await?;
    Ok(Json(SuppressResult { suppressed }))
}

/// The contacts whose value more than one person of the organisation claims (admins).
#[utoipa::path(get, path = "/api/v1/contacts/conflicts", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = ConflictList), (status = 403, body = Problem)))]
async fn contact_conflicts(State(state): State<AppState>, s: Auth) -> ApiResult<Json<ConflictList>> {
    policy::may_administer(&s.actor)?;
    let items = state
        .store
        .contact_conflicts(s.actor.org_id)
        .await?
        .into_iter()
        .map(|c| {
            let (user_id, patient_id) = match c.owner {
                ContactOwner::User(u) => (Some(u), None),
                ContactOwner::Patient(p) => (None, Some(p)),
            };
            ConflictView {
                id: c.id,
                kind: c.kind,
                user_id,
                patient_id,
                group: c.group,
                created_at: ts(c.created_at),
                verified_at: c.verified_at.map(ts),
            }
        })
        .collect();
    Ok(Json(ConflictList { items }))
}

/// The organisation's contact policy (the workforce).
#[utoipa::path(get, path = "/api/v1/org/contact-policy", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = ContactPolicy), (status = 403, body = Problem)))]
async fn get_contact_policy(State(state): State<AppState>, s: Auth) -> ApiResult<Json<ContactPolicy>> {
    policy::may_use_directory(&s.actor)?;
    Ok(Json(ContactPolicy { reverify_days: state.store.contact_reverify_days(s.actor.org_id).await? }))
}

/// Sets how many days after verification a contact must be verified again (admins; audited).
#[utoipa::path(put, path = "/api/v1/org/contact-policy", tag = "contacts", security(("bearer" = [])), request_body = ContactPolicy,
    responses((status = 200, body = ContactPolicy), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn put_contact_policy(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<ContactPolicy>,
) -> ApiResult<Json<ContactPolicy>> {
    if let Err(d) = policy::may_administer(&s.actor) {
        state.store.record(actor_event(&s, AuditAction::ContactPolicy, Outcome::Denied), meta).await?;
        return Err(d.into());
    }
    let days = check_reverify_days(req.reverify_days)?;
    let reverify_days = state.store.set_contact_reverify_days(s.actor.org_id, s.actor.user_id, days, meta).await?;
    Ok(Json(ContactPolicy { reverify_days }))
}
