//! Patient notices (docs/consent.md, docs/outbound-policy.md): the organisation's templates
//! (`GET`/`POST /api/v1/org/notice-templates`, `PUT`/`DELETE
//! /api/v1/org/notice-templates/{template_id}`; admins change them, the workforce lists them)
//! and sending one (`POST /api/v1/patients/{patient_id}/notices`; the clinicians, nurses and
//! staff on the patient's care team). Templates and rendered notices pass the outbound content
//! policy; a notice is queued in the outbox only under the patient's current consent for its
//! channel. Every change, send and refusal is audited with codes, categories and ids, never
//! the text.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::NoticeChannel;
use ward_domain::ids::{PatientId, UserId};
use ward_domain::login::parse_label;
use ward_domain::policy;
use ward_outbound::{Category, ContentPolicy, Field, Finding, RenderError, Template, TemplateError, TemplateValues};
use ward_store::{NoticeDraft, NoticeOutcome, RequestMeta, TemplateDraft};

use super::consents::{actor_event, refuse, standing};
use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_templates, create_template))
        .routes(utoipa_axum::routes!(update_template, delete_template))
        .routes(utoipa_axum::routes!(send_notice))
        .routes(utoipa_axum::routes!(my_notice))
}

/// A notice as its patient reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MyNoticeView {
    /// Id (the `notice_id` a push carried).
    pub(crate) id: uuid::Uuid,
    /// The medium it was sent on.
    pub(crate) channel: NoticeChannel,
    /// The text.
    pub(crate) text: String,
    /// When it was queued (RFC 3339).
    pub(crate) created_at: String,
}

/// One of the signed-in patient's notices, by the id a push carried: the push says only
/// "New notice", and the app fetches the text here over TLS. Any other caller, and another
/// patient's or an unknown notice, gets `404`. Audited as `notice.read`.
#[utoipa::path(get, path = "/api/v1/me/notices/{notice_id}", tag = "notices", security(("bearer" = [])),
    params(("notice_id" = uuid::Uuid, Path)),
    responses((status = 200, body = MyNoticeView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn my_notice(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<Json<MyNoticeView>> {
    if s.actor.role != ward_domain::role::Role::Patient {
        return Err(ApiError::not_found());
    }
    let me = state.store.user(s.actor.org_id, s.actor.user_id).await?;
    let patient = me.patient_id.ok_or_else(ApiError::not_found)?;
    let n = state.store.patient_notice(s.actor.org_id, patient, id).await?;
    let ev = actor_event(&s, AuditAction::NoticeRead, Outcome::Success).target("notice", n.id).patient(Some(patient));
    state.store.record(ev, meta).await?;
    Ok(Json(MyNoticeView { id: n.id, channel: n.channel, text: n.body, created_at: ts(n.created_at) }))
}

/// A notice template.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// Unique name within the organisation.
    pub(crate) name: String,
    /// The medium it is written for.
    pub(crate) channel: NoticeChannel,
    /// The text, with `{first_name}`, `{date}`, `{time}`, `{location_name}` and
    /// `{portal_link}` placeholders (`{{` and `}}` for literal braces).
    pub(crate) body: String,
    /// When it was created (RFC 3339).
    pub(crate) created_at: String,
    /// Who created it.
    pub(crate) created_by: UserId,
    /// When it last changed (RFC 3339).
    pub(crate) updated_at: String,
    /// Who last changed it.
    pub(crate) updated_by: UserId,
}

impl From<ward_store::NoticeTemplate> for TemplateView {
    fn from(t: ward_store::NoticeTemplate) -> Self {
        Self {
            id: t.id,
            name: t.name,
            channel: t.channel,
            body: t.body,
            created_at: ts(t.created_at),
            created_by: t.created_by,
            updated_at: ts(t.updated_at),
            updated_by: t.updated_by,
        }
    }
}

/// A template to save.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateRequest {
    /// Unique name within the organisation (1 to 100 characters).
    pub(crate) name: String,
    /// The medium.
    pub(crate) channel: NoticeChannel,
    /// The text (at most 1600 bytes).
    pub(crate) body: String,
}

/// The organisation's notice templates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateList {
    /// By name.
    pub(crate) items: Vec<TemplateView>,
}

/// Values for the fields a template uses.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoticeValues {
    /// The patient's first name (exempt from the content policy).
    pub(crate) first_name: Option<String>,
    /// The appointment date, formatted.
    pub(crate) date: Option<String>,
    /// The appointment time, formatted.
    pub(crate) time: Option<String>,
    /// The location's name.
    pub(crate) location_name: Option<String>,
    /// An `https://` link to the patient portal.
    pub(crate) portal_link: Option<String>,
}

/// A notice to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendNoticeRequest {
    /// The template.
    pub(crate) template_id: uuid::Uuid,
    /// The channel; must be the template's.
    pub(crate) channel: NoticeChannel,
    /// The field values.
    #[serde(default)]
    pub(crate) values: NoticeValues,
}

/// A notice queued for delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NoticeView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The recipient.
    pub(crate) patient_id: PatientId,
    /// The medium.
    pub(crate) channel: NoticeChannel,
    /// What the delivery provider resolves to an address: `contact:<id>` (SMS, email: the
    /// patient's verified contact) or `patient:<id>` (push).
    pub(crate) destination: String,
    /// The template.
    pub(crate) template_id: uuid::Uuid,
    /// The consent grant it goes out under.
    pub(crate) consent_id: uuid::Uuid,
    /// The rendered text.
    pub(crate) text: String,
    /// `queued`.
    pub(crate) status: String,
    /// When it was queued (RFC 3339).
    pub(crate) created_at: String,
}

/// The categories found, once each, in their fixed order.
fn categories(findings: &[Finding]) -> Vec<Category> {
    Category::ALL.into_iter().filter(|c| findings.iter().any(|f| f.category == *c)).collect()
}

/// The answer for blocked text: the categories, never the matched text.
fn blocked(found: &[Category], what: &str) -> ApiError {
    let names: Vec<&'static str> = found.iter().map(|c| c.as_str()).collect();
    ApiError::outbound_content_blocked().detail(format!("{what} contains clinical detail ({})", names.join(", "))).categories(names)
}

/// A refusal to record: its reason code and, for blocked text, the categories.
struct Refusal {
    error: ApiError,
    reason: &'static str,
    found: Vec<Category>,
}

fn template_refusal(e: TemplateError) -> Refusal {
    match e {
        TemplateError::Blocked { findings } => {
            let found = categories(&findings);
            Refusal { error: blocked(&found, "the template text"), reason: "outbound_content_blocked", found }
        }
        // A disallowed name comes from ward-outbound's fixed list, so it may be named.
        e @ TemplateError::DisallowedField { .. } => {
            Refusal { error: ApiError::template_field_not_allowed().detail(e.to_string()), reason: "field_not_allowed", found: vec![] }
        }
        // Any other name is free text from the request: only its position is given.
        TemplateError::UnknownField { offset, .. } => Refusal {
            error: ApiError::template_field_not_allowed()
                .detail(format!("unknown field at byte {offset}: use one of {}", Field::ALL.map(Field::name).join(", "))),
            reason: "field_not_allowed",
            found: vec![],
        },
        e => Refusal { error: ApiError::template_invalid().detail(e.to_string()), reason: "template_invalid", found: vec![] },
    }
}

fn render_refusal(e: RenderError) -> Refusal {
    match e {
        RenderError::Blocked { findings } => {
            let found = categories(&findings);
            Refusal { error: blocked(&found, "the notice"), reason: "outbound_content_blocked", found }
        }
        // Names the field only, never its value.
        e => Refusal { error: ApiError::validation_failed().detail(e.to_string()), reason: "invalid_value", found: vec![] },
    }
}

/// Adds a refusal's reason and categories to an audit event (category ids as keys).
fn with_refusal(mut ev: AuditEvent, r: &Refusal) -> AuditEvent {
    ev.outcome = Outcome::Failure;
    ev = ev.detail("reason", DetailValue::Code(r.reason));
    for c in &r.found {
        ev = ev.detail(c.as_str(), DetailValue::Bool(true));
    }
    ev
}

/// Records a refusal, then answers its error.
async fn refused(state: &AppState, ev: AuditEvent, r: Refusal, meta: RequestMeta) -> ApiError {
    let ev = with_refusal(ev, &r);
    match state.store.record(ev, meta).await {
        Ok(_) => r.error,
        Err(e) => e.into(),
    }
}

/// Refuses non-admins (audited), then checks the name and the text against the content policy.
async fn checked_draft(state: &AppState, s: &Auth, meta: &RequestMeta, op: &'static str, req: TemplateRequest) -> ApiResult<TemplateDraft> {
    let ev = actor_event(s, AuditAction::NoticeTemplate, Outcome::Success)
        .detail("op", DetailValue::Code(op))
        .detail("channel", DetailValue::Code(req.channel.as_str()));
    if let Err(d) = policy::may_administer(&s.actor) {
        state.store.record(AuditEvent { outcome: Outcome::Denied, ..ev }, meta.clone()).await?;
        return Err(d.into());
    }
    let name = parse_label("name", &req.name, 100)?;
    let policy: ContentPolicy = state.outbound.get().await?;
    if let Err(e) = Template::parse(&req.body, &policy) {
        return Err(refused(state, ev, template_refusal(e), meta.clone()).await);
    }
    Ok(TemplateDraft { name, channel: req.channel, body: req.body })
}

/// The organisation's notice templates (the workforce; patients are refused).
#[utoipa::path(get, path = "/api/v1/org/notice-templates", tag = "notices", security(("bearer" = [])),
    responses((status = 200, body = TemplateList), (status = 403, body = Problem)))]
async fn list_templates(State(state): State<AppState>, s: Auth) -> ApiResult<Json<TemplateList>> {
    policy::may_use_directory(&s.actor)?;
    let items = state.store.notice_templates(s.actor.org_id).await?.into_iter().map(Into::into).collect();
    Ok(Json(TemplateList { items }))
}

/// Saves a new notice template, checked by the content policy (admins; audited).
#[utoipa::path(post, path = "/api/v1/org/notice-templates", tag = "notices", security(("bearer" = [])), request_body = TemplateRequest,
    responses((status = 201, body = TemplateView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn create_template(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<TemplateRequest>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let draft = checked_draft(&state, &s, &meta, "create", req).await?;
    let t = state.store.create_notice_template(s.actor.org_id, s.actor.user_id, draft, meta).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// Replaces a notice template, checked by the content policy (admins; audited).
#[utoipa::path(put, path = "/api/v1/org/notice-templates/{template_id}", tag = "notices", security(("bearer" = [])),
    params(("template_id" = uuid::Uuid, Path)), request_body = TemplateRequest,
    responses((status = 200, body = TemplateView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_template(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(req): Json<TemplateRequest>,
) -> ApiResult<Json<TemplateView>> {
    let draft = checked_draft(&state, &s, &meta, "update", req).await?;
    Ok(Json(state.store.update_notice_template(s.actor.org_id, s.actor.user_id, id, draft, meta).await?.into()))
}

/// Deletes a notice template; notices already queued keep their text (admins; audited).
#[utoipa::path(delete, path = "/api/v1/org/notice-templates/{template_id}", tag = "notices", security(("bearer" = [])),
    params(("template_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_template(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<StatusCode> {
    if let Err(d) = policy::may_administer(&s.actor) {
        state
            .store
            .record(actor_event(&s, AuditAction::NoticeTemplate, Outcome::Denied).detail("op", DetailValue::Code("delete")), meta)
            .await?;
        return Err(d.into());
    }
    state.store.delete_notice_template(s.actor.org_id, s.actor.user_id, id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renders a template for the patient and queues it for delivery: refused without the
/// patient's current consent for the channel (`consent_required`), without a verified, fresh,
/// unsuppressed contact for an SMS or email notice (`verified_contact_required`) or when the text carries
/// clinical detail (`outbound_content_blocked`). Every attempt is audited with its outcome.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/notices", tag = "notices", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = SendNoticeRequest,
    responses((status = 201, body = NoticeView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn send_notice(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<SendNoticeRequest>,
) -> ApiResult<(StatusCode, Json<NoticeView>)> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_send_notice(&s.actor, st.on_care_team) {
        return Err(refuse(&state, &s, meta, AuditAction::NoticeSend, id, d).await);
    }
    let stored = state.store.notice_template(s.actor.org_id, req.template_id).await?;
    if stored.channel != req.channel {
        return Err(ApiError::validation_failed().detail(format!("the template is written for the {} channel", stored.channel.as_str())));
    }
    let ev = actor_event(&s, AuditAction::NoticeSend, Outcome::Success)
        .target("patient", id)
        .patient(Some(id))
        .detail("channel", DetailValue::Code(req.channel.as_str()))
        .detail("template", DetailValue::Id(stored.id));
    let policy = state.outbound.get().await?;
    // The template passed when saved; the vocabularies may have grown since.
    let template = match Template::parse(&stored.body, &policy) {
        Ok(t) => t,
        Err(e) => return Err(refused(&state, ev, template_refusal(e), meta).await),
    };
    let v = &req.values;
    let values = TemplateValues {
        first_name: v.first_name.as_deref(),
        date: v.date.as_deref(),
        time: v.time.as_deref(),
        location_name: v.location_name.as_deref(),
        portal_link: v.portal_link.as_deref(),
    };
    let text = match template.render(&values) {
        Ok(text) => text,
        Err(e) => return Err(refused(&state, ev, render_refusal(e), meta).await),
    };
    let draft = NoticeDraft { patient_id: id, template_id: stored.id, channel: req.channel, text };
    match state.store.enqueue_notice(s.actor.org_id, s.actor.user_id, draft, meta).await? {
        NoticeOutcome::Queued(q) => Ok((
            StatusCode::CREATED,
            Json(NoticeView {
                id: q.id,
                patient_id: q.patient_id,
                channel: q.channel,
                destination: q.destination,
                template_id: q.template_id,
                consent_id: q.consent_id,
                text: q.body,
                status: q.status,
                created_at: ts(q.created_at),
            }),
        )),
        NoticeOutcome::ConsentRequired => {
            Err(ApiError::consent_required()
                .detail(format!("the patient has no current {} consent", req.channel.required_consent().as_str())))
        }
        NoticeOutcome::VerifiedContactRequired => Err(ApiError::verified_contact_required().detail(format!(
            "the patient has no {} channel contact that is verified, within the re-verification period, unsuppressed and unclaimed by anyone else",
            req.channel.as_str()
        ))),
    }
}
