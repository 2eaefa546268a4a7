//! Device trust (docs/devices.md; HIPAA 164.310(d)(1), 164.308(a)(1)(ii)(D)): a device states
//! its registration facts and sends posture reports for itself; admins and compliance officers
//! see the organisation's devices, posture history, drift, spot checks and the quarterly
//! review; admins (or the user, for their own lost device) wipe a device's Ward data, and the
//! revoked device fetches and acknowledges the command with its wipe secret alone.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use ward_device::profile::{PreviewSetting, ProfileOptions, RandomUuids, profile_xml};
use ward_device::{DeviceRegistration, PosturePolicy, PostureReport, ReportError, StateKind, drift, review_summary};
use ward_domain::audit::{AuditAction, Outcome};
use ward_domain::ids::{DeviceId, UserId};
use ward_domain::login::parse_label;
use ward_domain::policy;
use ward_store::{DeviceRecord, DeviceWipe, PostureRecord, SpotCheck, WipeAck, WipeSource, now_ms};

use super::dto::{PhiWithheld, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{new_token, token_hash};

/// The prefix of device wipe secrets: they open only the wipe endpoints.
pub(crate) const WIPE_SECRET_PREFIX: &str = "wdw_";

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(register_device))
        .routes(utoipa_axum::routes!(put_push_token, delete_push_token))
        .routes(utoipa_axum::routes!(my_devices))
        .routes(utoipa_axum::routes!(report_posture))
        .routes(utoipa_axum::routes!(wipe_my_device))
        .routes(utoipa_axum::routes!(list_devices))
        .routes(utoipa_axum::routes!(device_posture))
        .routes(utoipa_axum::routes!(wipe_device))
        .routes(utoipa_axum::routes!(list_wipes))
        .routes(utoipa_axum::routes!(wipe_command))
        .routes(utoipa_axum::routes!(wipe_ack))
        .routes(utoipa_axum::routes!(get_posture_policy, put_posture_policy))
        .routes(utoipa_axum::routes!(drift_report))
        .routes(utoipa_axum::routes!(review_report))
        .routes(utoipa_axum::routes!(create_spot_check, list_spot_checks))
        .routes(utoipa_axum::routes!(get_spot_check))
        .routes(utoipa_axum::routes!(device_profile))
}

/// A JSON document as `ward_device` reads and writes it (see docs/devices.md for the fields).
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
struct DeviceDocument(serde_json::Value);

/// A device and how it stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceView {
    /// Id.
    pub(crate) id: DeviceId,
    /// Its user.
    pub(crate) user_id: UserId,
    /// The name given at sign-in.
    pub(crate) name: String,
    /// The platform claimed at sign-in.
    pub(crate) platform: String,
    /// First seen.
    pub(crate) first_seen_at: String,
    /// Last seen (sign-in, registration or report).
    pub(crate) last_seen_at: String,
    /// When it was revoked (wiped).
    pub(crate) revoked_at: Option<String>,
    /// Why.
    pub(crate) revoke_reason: Option<String>,
    /// What it stated at registration (platform, model, os_version, app_version, ownership,
    /// supervised, mdm_enrolled); null until it registers.
    #[schema(value_type = Option<Object>)]
    pub(crate) registration: Option<serde_json::Value>,
    /// When it first registered.
    pub(crate) registered_at: Option<String>,
    /// When its latest posture report arrived.
    pub(crate) last_report_at: Option<String>,
    /// Its compliance state now: `compliant`, `warn`, `in_grace` or `block_phi`; null for a
    /// device that never registered.
    #[schema(value_type = Option<String>)]
    pub(crate) state: Option<StateKind>,
    /// Its evaluation now, item by item.
    #[schema(value_type = Option<Object>)]
    pub(crate) evaluation: Option<serde_json::Value>,
}

fn json_of<T: Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(ApiError::internal_cause)
}

fn device_view(d: DeviceRecord) -> ApiResult<DeviceView> {
    Ok(DeviceView {
        id: d.id,
        user_id: d.user_id,
        name: d.name,
        platform: d.platform,
        first_seen_at: ts(d.first_seen_at),
        last_seen_at: ts(d.last_seen_at),
        revoked_at: d.revoked_at.map(ts),
        revoke_reason: d.revoke_reason,
        registration: d.registration.as_ref().map(json_of).transpose()?,
        registered_at: d.registered_at.map(ts),
        last_report_at: d.last_report_at.map(ts),
        state: d.evaluation.as_ref().map(|e| e.state.kind()),
        evaluation: d.evaluation.as_ref().map(json_of).transpose()?,
    })
}

pub(crate) fn device_views(list: Vec<DeviceRecord>) -> ApiResult<Vec<DeviceView>> {
    list.into_iter().map(device_view).collect()
}

/// A registered device and the secret it keeps for fetching a wipe command.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    /// The device.
    pub(crate) device: DeviceView,
    /// Shown once: keep it in the device's secure storage. It opens only
    /// `POST /api/v1/device-wipe/command` and `/ack`, and still works after the device's
    /// sessions were revoked. Only the first registration of a device issues one; registering
    /// again (new OS or app version) leaves it as it is, and this is `null`.
    pub(crate) wipe_secret: Option<String>,
}

/// A stored posture report with its evaluation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostureView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The device.
    pub(crate) device_id: DeviceId,
    /// When it arrived.
    pub(crate) received_at: String,
    /// The report.
    #[schema(value_type = Object)]
    pub(crate) report: serde_json::Value,
    /// The evaluation at receipt.
    #[schema(value_type = Object)]
    pub(crate) evaluation: serde_json::Value,
    /// The state at receipt.
    #[schema(value_type = String)]
    pub(crate) state: StateKind,
}

fn posture_view(p: PostureRecord) -> ApiResult<PostureView> {
    Ok(PostureView {
        id: p.id,
        device_id: p.device_id,
        received_at: ts(p.received_at),
        report: json_of(&p.report)?,
        state: p.evaluation.state.kind(),
        evaluation: json_of(&p.evaluation)?,
    })
}

/// A wipe of Ward's data on one device.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WipeView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The device.
    pub(crate) device_id: DeviceId,
    /// Its user.
    pub(crate) user_id: UserId,
    /// Who asked.
    pub(crate) requested_by: UserId,
    /// When.
    pub(crate) requested_at: String,
    /// Why.
    pub(crate) reason: String,
    /// `admin`, `lost_by_user` or `deprovisioned` (the user's account was disabled).
    pub(crate) source: &'static str,
    /// When the device fetched the command.
    pub(crate) delivered_at: Option<String>,
    /// When the device confirmed the erasure.
    pub(crate) acknowledged_at: Option<String>,
    /// Not acknowledged within `[devices] wipe_ack_overdue_hours` (and not closed).
    pub(crate) overdue: bool,
    /// `no_wipe_channel` when the device never registered: it holds no wipe secret, so it can
    /// never fetch the command; its sessions were revoked at once and the wipe is closed (never
    /// overdue). Null otherwise.
    pub(crate) closed_reason: Option<String>,
}

pub(crate) fn wipe_view(w: DeviceWipe, overdue_hours: u32) -> WipeView {
    let overdue =
        w.acknowledged_at.is_none() && w.closed_reason.is_none() && now_ms() - w.requested_at > i64::from(overdue_hours) * 3_600_000;
    WipeView {
        id: w.id,
        device_id: w.device_id,
        user_id: w.user_id,
        requested_by: w.requested_by,
        requested_at: ts(w.requested_at),
        reason: w.reason,
        source: w.source.as_str(),
        delivered_at: w.delivered_at.map(ts),
        acknowledged_at: w.acknowledged_at.map(ts),
        overdue,
        closed_reason: w.closed_reason,
    }
}

/// Why a wipe is asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WipeRequest {
    /// Stated reason (1 to 500 characters): "lost on the train", "left the organisation".
    pub(crate) reason: String,
}

/// A revoked device asking for its wipe command, or confirming it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WipeCommandRequest {
    /// The device.
    pub(crate) device_id: DeviceId,
    /// The secret issued at registration.
    pub(crate) wipe_secret: String,
    /// For `/ack`: the wipe being confirmed.
    pub(crate) wipe_id: Option<uuid::Uuid>,
}

/// The command a wiped device carries out.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WipeCommand {
    /// Confirm with this id once done.
    pub(crate) wipe_id: uuid::Uuid,
    /// Always `ward_data`: erase Ward's own data (keychain items, database, caches,
    /// attachments) and nothing else on the device.
    pub(crate) scope: &'static str,
    /// When it was requested.
    pub(crate) requested_at: String,
}

/// A spot-check request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpotCheckRequest {
    /// Share of devices to sample, 10 to 100 (default 10).
    pub(crate) percent: Option<u8>,
    /// The seed, 0 to 2^53 − 1; drawn at random when absent. Recorded either way.
    pub(crate) seed: Option<u64>,
}

/// A recorded spot-check sample.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpotCheckView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// When it was drawn.
    pub(crate) created_at: String,
    /// Who drew it.
    pub(crate) created_by: UserId,
    /// The seed: `ward_device::spot_check(population, seed, percent)` draws the same sample.
    pub(crate) seed: u64,
    /// Share sampled.
    pub(crate) percent: u8,
    /// Every live registered device at the time, ascending.
    pub(crate) population: Vec<DeviceId>,
    /// The devices to check by hand.
    pub(crate) sample: Vec<DeviceId>,
}

impl From<SpotCheck> for SpotCheckView {
    fn from(s: SpotCheck) -> Self {
        Self {
            id: s.id,
            created_at: ts(s.created_at),
            created_by: s.created_by,
            seed: s.seed,
            percent: s.percent,
            population: s.population,
            sample: s.sample,
        }
    }
}

/// One device's crossings of the compliance line.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceDrift {
    /// The device.
    pub(crate) device_id: DeviceId,
    /// The transitions, oldest first (`ward_device::DriftEvent`: `at_ms`, `previous_at_ms`,
    /// `direction`, `from`, `to`, `changed`).
    #[schema(value_type = Vec<Object>)]
    pub(crate) events: Vec<serde_json::Value>,
}

/// The drift report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DriftReport {
    /// From when reports are included.
    pub(crate) from: String,
    /// Devices that crossed the line, with the crossings.
    pub(crate) devices: Vec<DeviceDrift>,
}

/// The quarterly review.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReviewReport {
    /// When it was computed.
    pub(crate) generated_at: String,
    /// Live devices that never registered (not judged).
    pub(crate) unregistered_devices: usize,
    /// Counts over the live registered devices' evaluations now (`devices`, `by_state`,
    /// `by_item`).
    #[schema(value_type = Object)]
    pub(crate) summary: serde_json::Value,
    /// Wipes not acknowledged within `[devices] wipe_ack_overdue_hours`.
    pub(crate) overdue_wipes: Vec<WipeView>,
    /// The latest spot check, if any.
    pub(crate) latest_spot_check: Option<SpotCheckView>,
}

/// The drift window.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DriftQuery {
    /// Days back to include (1 to 3660; default 92, a quarter).
    #[param(minimum = 1, maximum = 3660)]
    days: Option<u32>,
}

/// History paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Newest reports to return, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Wipe listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WipeQuery {
    /// Only wipes not acknowledged within `[devices] wipe_ack_overdue_hours`.
    overdue: Option<bool>,
}

/// Profile options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    /// The organisation's reverse-DNS prefix, such as `org.example.hospital`.
    org_prefix: String,
    /// Ward's app bundle id, for a rebranded build.
    bundle_id: Option<String>,
    /// Notification previews for Ward: `never` (default) or `when_unlocked`.
    previews: Option<String>,
    /// `true`: CMS-signed (DER) with the configured certificate (`[devices] profile_sign_cert`
    /// and `profile_sign_key`); default unsigned XML.
    signed: Option<bool>,
}

fn report_error(e: &ReportError) -> ApiError {
    // The message names the field and rule, never the value.
    let detail = match e {
        ReportError::Malformed(_) => "the document is not JSON of the expected fields (unknown, missing or mistyped field)".to_owned(),
        other => other.to_string(),
    };
    ApiError::invalid_device_report().detail(detail)
}

fn report_reason(e: &ReportError) -> &'static str {
    match e {
        ReportError::Malformed(_) => "malformed",
        _ => "impossible_value",
    }
}

fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if ok { Ok(()) } else { Err(ApiError::unsupported_media_type()) }
}

fn body_text(body: &Bytes) -> ApiResult<&str> {
    std::str::from_utf8(body).map_err(|_| ApiError::malformed_json().detail("the body is not valid UTF-8"))
}

/// Registers the session's device: platform, model, OS and app versions, ownership,
/// supervision and MDM enrolment (unknown keys and impossible values are refused). Returns a
/// new wipe secret; the previous one stops working.
#[utoipa::path(put, path = "/api/v1/me/device", tag = "devices", security(("bearer" = [])),
    request_body(content = DeviceDocument, content_type = "application/json",
        description = "A device registration: platform, model, os_version, app_version, ownership, supervised, mdm_enrolled"),
    responses((status = 200, body = Registered), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn register_device(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Registered>> {
    require_json(&headers)?;
    let reg = match DeviceRegistration::from_json(body_text(&body)?) {
        Ok(r) => r,
        Err(e) => {
            state
                .store
                .device_refused(s.actor, s.device, s.device, AuditAction::DeviceRegister, Outcome::Failure, report_reason(&e), meta)
                .await?;
            return Err(report_error(&e));
        }
    };
    let secret = new_token(WIPE_SECRET_PREFIX);
    let (device, issued) = state.store.register_device(s.actor, s.device, reg, token_hash(&secret), meta).await?;
    Ok(Json(Registered { device: device_view(device)?, wipe_secret: issued.then_some(secret) }))
}

/// The user's own devices with their state now.
#[utoipa::path(get, path = "/api/v1/me/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceView>), (status = 401, body = Problem)))]
async fn my_devices(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<DeviceView>>> {
    Ok(Json(device_views(state.store.devices(s.actor.org_id, Some(s.actor.user_id)).await?)?))
}

/// Sends a posture report for the session's own device. Every report is stored with its
/// evaluation. Another device's id answers 404; unknown keys and impossible values answer
/// 400 `invalid_device_report`. Either refusal is audited and nothing is stored.
#[utoipa::path(post, path = "/api/v1/me/devices/{device_id}/posture", tag = "devices", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path)),
    request_body(content = DeviceDocument, content_type = "application/json", description = "A posture report (docs/devices.md)"),
    responses((status = 201, body = PostureView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn report_posture(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PostureView>)> {
    require_json(&headers)?;
    if device != s.device {
        // Checked before the body, so a probe of someone else's device learns nothing more.
        state
            .store
            .device_refused(s.actor, s.device, device, AuditAction::DevicePosture, Outcome::Denied, "not_the_session_device", meta)
            .await?;
        return Err(ApiError::not_found());
    }
    let report = match PostureReport::from_json(body_text(&body)?) {
        Ok(r) => r,
        Err(e) => {
            state
                .store
                .device_refused(s.actor, s.device, device, AuditAction::DevicePosture, Outcome::Failure, report_reason(&e), meta)
                .await?;
            return Err(report_error(&e));
        }
    };
    let stored = state.store.record_posture(s.actor, s.device, device, report, meta).await?;
    Ok((StatusCode::CREATED, Json(posture_view(stored)?)))
}

fn wipe_reason(r: &WipeRequest) -> ApiResult<String> {
    Ok(parse_label("reason", &r.reason, 500)?)
}

/// Reports one of the user's own devices lost: its Ward data is wiped at its next contact and
/// its sessions end now (the current session too, if it is this device). Deliberately no
/// step-up: whoever lost their phone may have lost their authenticator with it, and the
/// report only takes access away.
#[utoipa::path(post, path = "/api/v1/me/devices/{device_id}/wipe", tag = "devices", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path)), request_body = WipeRequest,
    responses((status = 201, body = WipeView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn wipe_my_device(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(device): Path<DeviceId>,
    Json(req): Json<WipeRequest>,
) -> ApiResult<(StatusCode, Json<WipeView>)> {
    let reason = wipe_reason(&req)?;
    let done = state
        .store
        .request_wipe(s.actor.org_id, device, Some(s.actor.user_id), s.actor.user_id, reason, WipeSource::LostByUser, meta)
        .await?;
    state.end_sessions(done.wipe.user_id, Some(done.revoked_sessions)).await;
    Ok((StatusCode::CREATED, Json(wipe_view(done.wipe, state.config.devices.wipe_ack_overdue_hours))))
}

/// The organisation's devices with their compliance state now.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceView>), (status = 403, body = Problem)))]
async fn list_devices(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<DeviceView>>> {
    policy::may_review_devices(&s.actor)?;
    Ok(Json(device_views(state.store.devices(s.actor.org_id, None).await?)?))
}

/// A device's posture history, newest first: every report with its evaluation.
#[utoipa::path(get, path = "/api/v1/devices/{device_id}/posture", tag = "devices", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path), HistoryQuery),
    responses((status = 200, body = Vec<PostureView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn device_posture(
    State(state): State<AppState>,
    s: Auth,
    Path(device): Path<DeviceId>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Vec<PostureView>>> {
    policy::may_review_devices(&s.actor)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_parameter().detail("limit must be from 1 to 500"));
    }
    let list = state.store.posture_history(s.actor.org_id, device, limit).await?;
    Ok(Json(list.into_iter().map(posture_view).collect::<ApiResult<_>>()?))
}

/// Wipes Ward's data from a device of the organisation: its sessions end now, the command
/// waits for the device's next contact.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/wipe", tag = "devices", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path)), request_body = WipeRequest,
    responses((status = 201, body = WipeView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn wipe_device(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(device): Path<DeviceId>,
    Json(req): Json<WipeRequest>,
) -> ApiResult<(StatusCode, Json<WipeView>)> {
    policy::may_manage_devices(&s.actor)?;
    let reason = wipe_reason(&req)?;
    crate::auth::require_step_up(&state, &s, "device_wipe", &meta).await?;
    let done = state.store.request_wipe(s.actor.org_id, device, None, s.actor.user_id, reason, WipeSource::Admin, meta).await?;
    state.end_sessions(done.wipe.user_id, Some(done.revoked_sessions)).await;
    Ok((StatusCode::CREATED, Json(wipe_view(done.wipe, state.config.devices.wipe_ack_overdue_hours))))
}

/// The organisation's wipes, newest first; `overdue=true` lists those not acknowledged in time.
#[utoipa::path(get, path = "/api/v1/device-wipes", tag = "devices", security(("bearer" = [])), params(WipeQuery),
    responses((status = 200, body = Vec<WipeView>), (status = 403, body = Problem)))]
async fn list_wipes(State(state): State<AppState>, s: Auth, Query(q): Query<WipeQuery>) -> ApiResult<Json<Vec<WipeView>>> {
    policy::may_review_devices(&s.actor)?;
    let hours = state.config.devices.wipe_ack_overdue_hours;
    let before = q.overdue.unwrap_or(false).then(|| now_ms() - i64::from(hours) * 3_600_000);
    let list = state.store.wipes(s.actor.org_id, before).await?;
    Ok(Json(list.into_iter().map(|w| wipe_view(w, hours)).collect()))
}

/// Runs a request to the unauthenticated wipe endpoints under their limits: every request
/// counts against its source address, and a failed one (unknown device, wrong secret or
/// wipe) against the device it names; 429 `rate_limited` with Retry-After past `[devices]
/// wipe_requests_per_minute_per_address` or `..._per_device`.
async fn wipe_rate_limited<T>(
    state: &AppState,
    meta: &ward_store::RequestMeta,
    device: DeviceId,
    answer: impl std::future::Future<Output = ApiResult<T>>,
) -> ApiResult<T> {
    let now = now_ms();
    let address = crate::rate_limit::address_key(meta.source_ip.as_deref().unwrap_or("unknown"));
    let device = device.to_string();
    state
        .wipe_limits
        .by_address
        .check(&address, now)
        .and_then(|()| state.wipe_limits.by_device.blocked(&device, now))
        .map_err(|wait| ApiError::rate_limited().retry_after(wait))?;
    let out = answer.await;
    if out.as_ref().is_err_and(|e| e.status == StatusCode::NOT_FOUND) {
        // Counted after the fact; only the next request can be refused.
        let _ = state.wipe_limits.by_device.check(&device, now);
    }
    out
}

fn wipe_secret_hash(secret: &str) -> ApiResult<Vec<u8>> {
    if !secret.starts_with(WIPE_SECRET_PREFIX) || secret.len() > 128 {
        return Err(ApiError::not_found());
    }
    Ok(token_hash(secret))
}

/// For a device whose sessions were revoked: fetches its wipe command with the wipe secret
/// (no bearer token; the secret opens nothing else). 404 when there is none.
#[utoipa::path(post, path = "/api/v1/device-wipe/command", tag = "devices", request_body = WipeCommandRequest,
    responses((status = 200, body = WipeCommand), (status = 404, body = Problem), (status = 429, body = Problem)))]
async fn wipe_command(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<WipeCommandRequest>,
) -> ApiResult<Json<WipeCommand>> {
    wipe_rate_limited(&state, &meta.clone(), req.device_id, async {
        let hash = wipe_secret_hash(&req.wipe_secret)?;
        let wipe = state.store.fetch_wipe(req.device_id, hash, meta).await?.ok_or_else(ApiError::not_found)?;
        Ok(Json(WipeCommand { wipe_id: wipe.id, scope: "ward_data", requested_at: ts(wipe.requested_at) }))
    })
    .await
}

/// The device confirms it erased Ward's data. A second confirmation answers 409
/// `wipe_already_acknowledged`; both outcomes are audited.
#[utoipa::path(post, path = "/api/v1/device-wipe/ack", tag = "devices", request_body = WipeCommandRequest,
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem)))]
async fn wipe_ack(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<WipeCommandRequest>) -> ApiResult<StatusCode> {
    wipe_rate_limited(&state, &meta.clone(), req.device_id, async {
        let wipe_id = req.wipe_id.ok_or_else(|| ApiError::validation_failed().detail("wipe_id is required"))?;
        let hash = wipe_secret_hash(&req.wipe_secret)?;
        match state.store.acknowledge_wipe(req.device_id, hash, wipe_id, meta).await? {
            WipeAck::Acknowledged(_) => Ok(StatusCode::NO_CONTENT),
            WipeAck::Replayed => Err(ApiError::wipe_already_acknowledged()),
            WipeAck::Unknown => Err(ApiError::not_found()),
        }
    })
    .await
}

/// The organisation's device posture policy (the baseline's until one is set): per item the
/// action (`record_only`, `warn_user`, `block_phi`) and grace, the staleness limit and the
/// minimum OS.
#[utoipa::path(get, path = "/api/v1/org/device-policy", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceDocument), (status = 403, body = Problem)))]
async fn get_posture_policy(State(state): State<AppState>, s: Auth) -> ApiResult<Json<PosturePolicy>> {
    policy::may_review_devices(&s.actor)?;
    Ok(Json(state.store.posture_policy(s.actor.org_id).await?))
}

/// Replaces the device posture policy (admins; audited); every live device is judged again.
#[utoipa::path(put, path = "/api/v1/org/device-policy", tag = "devices", security(("bearer" = [])),
    request_body(content = DeviceDocument, content_type = "application/json", description = "A posture policy"),
    responses((status = 200, body = DeviceDocument), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn put_posture_policy(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PosturePolicy>> {
    policy::may_manage_devices(&s.actor)?;
    require_json(&headers)?;
    let p = PosturePolicy::from_json(body_text(&body)?).map_err(|e| match e {
        ward_device::policy::PolicyError::Malformed(_) => {
            ApiError::invalid_body().detail("not a posture policy (unknown, missing or mistyped field)")
        }
        other => ApiError::validation_failed().detail(other.to_string()),
    })?;
    state.store.set_posture_policy(s.actor.org_id, s.actor.user_id, p.clone(), meta).await?;
    Ok(Json(p))
}

/// Devices that crossed the compliance line (either way) in the window, with what changed.
#[utoipa::path(get, path = "/api/v1/device-reports/drift", tag = "devices", security(("bearer" = [])), params(DriftQuery),
    responses((status = 200, body = DriftReport), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn drift_report(State(state): State<AppState>, s: Auth, Query(q): Query<DriftQuery>) -> ApiResult<Json<DriftReport>> {
    policy::may_review_devices(&s.actor)?;
    let days = q.days.unwrap_or(92);
    if !(1..=3660).contains(&days) {
        return Err(ApiError::invalid_parameter().detail("days must be from 1 to 3660"));
    }
    let from = now_ms() - i64::from(days) * 86_400_000;
    let timelines = state.store.posture_timelines(s.actor.org_id, from).await?;
    let mut devices = Vec::new();
    for (device_id, evaluations) in timelines {
        let events = drift(&evaluations);
        if !events.is_empty() {
            devices.push(DeviceDrift { device_id, events: events.iter().map(json_of).collect::<ApiResult<_>>()? });
        }
    }
    Ok(Json(DriftReport { from: ts(from), devices }))
}

/// The quarterly review: devices per state and failures per item now, overdue wipes and the
/// latest spot check.
#[utoipa::path(get, path = "/api/v1/device-reports/review", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = ReviewReport), (status = 403, body = Problem)))]
async fn review_report(State(state): State<AppState>, s: Auth) -> ApiResult<Json<ReviewReport>> {
    policy::may_review_devices(&s.actor)?;
    let org = s.actor.org_id;
    let devices = state.store.devices(org, None).await?;
    let live: Vec<&DeviceRecord> = devices.iter().filter(|d| d.revoked_at.is_none()).collect();
    let unregistered_devices = live.iter().filter(|d| d.evaluation.is_none()).count();
    let summary = review_summary(live.iter().filter_map(|d| d.evaluation.as_ref()));
    let hours = state.config.devices.wipe_ack_overdue_hours;
    let before = now_ms() - i64::from(hours) * 3_600_000;
    let overdue_wipes = state.store.wipes(org, Some(before)).await?.into_iter().map(|w| wipe_view(w, hours)).collect();
    let latest_spot_check = state.store.spot_checks(org, None).await?.into_iter().next().map(Into::into);
    Ok(Json(ReviewReport {
        generated_at: ts(now_ms()),
        unregistered_devices,
        summary: json_of(&summary)?,
        overdue_wipes,
        latest_spot_check,
    }))
}

/// The largest seed: integers above 2^53 lose precision in JavaScript clients.
const MAX_SEED: u64 = (1 << 53) - 1;

/// Draws a spot-check sample of at least 10% of the live registered devices and records it
/// with its seed and population (audited), so it can be drawn again.
#[utoipa::path(post, path = "/api/v1/device-reports/spot-checks", tag = "devices", security(("bearer" = [])), request_body = SpotCheckRequest,
    responses((status = 201, body = SpotCheckView), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_spot_check(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<SpotCheckRequest>,
) -> ApiResult<(StatusCode, Json<SpotCheckView>)> {
    policy::may_review_devices(&s.actor)?;
    let percent = req.percent.unwrap_or(10);
    if !(10..=100).contains(&percent) {
        return Err(ApiError::validation_failed().detail("percent must be from 10 to 100"));
    }
    let seed = match req.seed {
        Some(seed) if seed > MAX_SEED => return Err(ApiError::validation_failed().detail("seed must be from 0 to 2^53 - 1")),
        Some(seed) => seed,
        None => u64::from_le_bytes(crate::secrets::random_bytes::<8>()) & MAX_SEED,
    };
    let check = state.store.create_spot_check(s.actor.org_id, s.actor.user_id, seed, percent, meta).await?;
    Ok((StatusCode::CREATED, Json(check.into())))
}

/// The organisation's spot checks, newest first (at most 200).
#[utoipa::path(get, path = "/api/v1/device-reports/spot-checks", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<SpotCheckView>), (status = 403, body = Problem)))]
async fn list_spot_checks(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<SpotCheckView>>> {
    policy::may_review_devices(&s.actor)?;
    Ok(Json(state.store.spot_checks(s.actor.org_id, None).await?.into_iter().map(Into::into).collect()))
}

/// One spot check.
#[utoipa::path(get, path = "/api/v1/device-reports/spot-checks/{spot_check_id}", tag = "devices", security(("bearer" = [])),
    params(("spot_check_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SpotCheckView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_spot_check(State(state): State<AppState>, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<Json<SpotCheckView>> {
    policy::may_review_devices(&s.actor)?;
    let found = state.store.spot_checks(s.actor.org_id, Some(id)).await?.into_iter().next().ok_or_else(ApiError::not_found)?;
    Ok(Json(found.into()))
}

/// The Apple configuration profile enforcing the baseline (passcode policy, restrictions,
/// Ward's notification previews on supervised devices), with fresh payload UUIDs: unsigned
/// XML, or with `signed=true` CMS SignedData (DER) signed with the configured certificate
/// (409 `invalid_state` when none is configured).
#[utoipa::path(get, path = "/api/v1/org/device-profile", tag = "devices", security(("bearer" = [])), params(ProfileQuery),
    responses((status = 200, content_type = "application/x-apple-aspen-config", body = String), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn device_profile(State(state): State<AppState>, s: Auth, Query(q): Query<ProfileQuery>) -> ApiResult<Response> {
    policy::may_manage_devices(&s.actor)?;
    let bad = |e: ward_device::profile::ProfileError| ApiError::validation_failed().detail(e.to_string());
    let mut options = ProfileOptions::new(&q.org_prefix).map_err(bad)?;
    if let Some(b) = &q.bundle_id {
        options = options.bundle_id(b).map_err(bad)?;
    }
    let org = state.store.org(s.actor.org_id).await?;
    options = options.organisation(&org.name).map_err(bad)?;
    options = options.previews(match q.previews.as_deref() {
        None | Some("never") => PreviewSetting::Never,
        Some("when_unlocked") => PreviewSetting::WhenUnlocked,
        Some(_) => return Err(ApiError::invalid_parameter().detail("previews must be never or when_unlocked")),
    });
    let signer = if q.signed.unwrap_or(false) {
        let d = &state.config.devices;
        let (Some(cert), Some(key)) = (&d.profile_sign_cert, &d.profile_sign_key) else {
            return Err(
                ApiError::invalid_state().detail("profile signing is not configured ([devices] profile_sign_cert and profile_sign_key)")
            );
        };
        let cert = tokio::fs::read(cert).await.map_err(|e| ApiError::internal_cause(format!("profile signing certificate: {e}")))?;
        let key = tokio::fs::read(key).await.map_err(|e| ApiError::internal_cause(format!("profile signing key: {e}")))?;
        Some(ward_crypto::signed_data::CmsSigner::from_pem(&cert, &key).map_err(ApiError::internal_cause)?)
    } else {
        None
    };
    let xml = profile_xml(&options, &mut RandomUuids).map_err(bad)?;
    let body = match signer {
        Some(s) => s.sign_attached(&xml, std::time::SystemTime::now()).map_err(ApiError::internal_cause)?,
        None => xml,
    };
    let name = format!("attachment; filename=\"{}.mobileconfig\"", options.profile_identifier());
    Ok(([(header::CONTENT_TYPE, "application/x-apple-aspen-config".to_owned()), (header::CONTENT_DISPOSITION, name)], body).into_response())
}

/// Whether the session's device may receive message content now; the notice if not.
/// A workforce user who must still acknowledge policies (docs/compliance-registers.md) gets
/// the `policy_acknowledgment` notice, with nothing to fix on the device.
pub(crate) async fn phi_withheld(state: &AppState, s: &crate::auth::AnySession) -> ApiResult<Option<PhiWithheld>> {
    if super::policies::acknowledgment_pending(state, s).await? {
        return Ok(Some(PhiWithheld { reason: "policy_acknowledgment", fix: Vec::new() }));
    }
    Ok(state.store.phi_block(s.actor.org_id, s.device).await?.map(|fix| PhiWithheld { reason: "device_posture", fix }))
}

/// Refuses content that cannot be withheld field by field (attachment bytes, a patient
/// archive) while the session's device is blocked from PHI, or while its user must still
/// acknowledge the organisation's policies.
pub(crate) async fn require_phi_allowed(state: &AppState, s: &crate::auth::AnySession, meta: &ward_store::RequestMeta) -> ApiResult<()> {
    // The request's metadata, so a denial's audit event carries its request id and source.
    super::policies::require_acknowledged(state, s, meta).await?;
    match phi_withheld(state, s).await? {
        Some(notice) => {
            let fix: Vec<&str> = notice.fix.iter().map(|i| i.as_str()).collect();
            Err(ApiError::device_blocked().detail(format!("fix these settings and report again: {}", fix.join(", "))))
        }
        None => Ok(()),
    }
}

/// A push service.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PushPlatformDto {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
}

impl PushPlatformDto {
    fn as_str(self) -> &'static str {
        match self {
            PushPlatformDto::Apns => "apns",
            PushPlatformDto::Fcm => "fcm",
        }
    }
}

/// A device's push token, as its push service issued it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushTokenRequest {
    /// `apns` or `fcm`.
    platform: PushPlatformDto,
    /// The token (APNs: hex; FCM: the registration token). Never shown again.
    token: String,
}

/// The session's device's push registration (never the token).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PushTokenView {
    /// `apns` or `fcm`.
    platform: String,
    /// When it was registered.
    registered_at: String,
}

/// Whether a token is plausible for its service: APNs tokens are hex (they go into the URL
/// path), FCM tokens printable ASCII without spaces; both at most 4 KiB.
fn valid_push_token(platform: PushPlatformDto, token: &str) -> bool {
    let len_ok = (8..=4096).contains(&token.len());
    match platform {
        PushPlatformDto::Apns => len_ok && token.bytes().all(|b| b.is_ascii_hexdigit()),
        PushPlatformDto::Fcm => len_ok && token.bytes().all(|b| b.is_ascii_graphic()),
    }
}

/// Registers (or replaces) the session's device's push token: one per device. New-message
/// pushes then go to it: ids and "New message" only (docs/notifications.md). Removed when the
/// device is revoked or wiped, its user disabled, or the push service calls it unregistered.
#[utoipa::path(put, path = "/api/v1/me/device/push-token", tag = "devices", security(("bearer" = [])),
    request_body = PushTokenRequest,
    responses((status = 200, body = PushTokenView), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn put_push_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<PushTokenRequest>,
) -> ApiResult<Json<PushTokenView>> {
    if !valid_push_token(req.platform, &req.token) {
        return Err(ApiError::invalid_body().detail("token is not a plausible push token for its platform"));
    }
    let reg = state.store.register_push_token(s.actor.org_id, s.actor.user_id, s.device, req.platform.as_str(), req.token, meta).await?;
    Ok(Json(PushTokenView { platform: reg.platform, registered_at: ts(reg.created_at) }))
}

/// Removes the session's device's push token (no more pushes to it). Idempotent: 204 whether
/// or not one was registered.
#[utoipa::path(delete, path = "/api/v1/me/device/push-token", tag = "devices", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn delete_push_token(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<StatusCode> {
    state.store.remove_push_token(s.actor.org_id, Some(s.actor.user_id), s.device, "user", meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
