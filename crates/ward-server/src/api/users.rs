//! Users: the directory for the workforce and account administration for admins.
//! Serves 164.312(a)(2)(i) unique user identification and 164.308(a)(3)(ii)(C) termination.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::UserId;
use ward_domain::login::{LoginName, parse_label};
use ward_domain::page::PageLimit;
use ward_domain::policy;
use ward_domain::role::Role;
use ward_store::NewUser;

use super::dto::{CreateUserRequest, CreatedUser, OneTimePassword, Revoked, SessionView, UpdateUserRequest, UserPage, UserView};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{hash_password, one_time_password};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_users, create_user))
        .routes(utoipa_axum::routes!(get_user, update_user))
        .routes(utoipa_axum::routes!(disable_user))
        .routes(utoipa_axum::routes!(enable_user))
        .routes(utoipa_axum::routes!(reset_password))
        .routes(utoipa_axum::routes!(user_sessions, revoke_user_sessions))
}

/// Paging of the user list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UserListQuery {
    /// Login name to continue after.
    after: Option<String>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// Whom the actor may see: admins see every account of the organisation; other staff see
/// staff (not patients: a patient's account name is PHI).
fn visible(actor_role: Role, user: &ward_store::User) -> bool {
    actor_role == Role::Admin || user.role.is_workforce()
}

/// Lists the organisation's users by login name.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(UserListQuery),
    responses((status = 200, body = UserPage), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn list_users(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Query(q): Query<UserListQuery>) -> ApiResult<Json<UserPage>> {
    policy::may_use_directory(&s.actor)?;
    let limit = PageLimit::parse(q.limit)?;
    let users = state.store.users(s.actor.org_id, q.after, limit.get()).await?;
    let full = users.len() == limit.get() as usize;
    let next_cursor = if full { users.last().map(|u| u.login.clone()) } else { None };
    let items: Vec<UserView> = users.into_iter().filter(|u| visible(s.actor.role, u)).map(Into::into).collect();
    let mut ev = AuditEvent::new(AuditAction::DirectoryRead, Outcome::Success).detail("count", DetailValue::Int(items.len() as i64));
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    state.store.record(ev, meta).await?;
    Ok(Json(UserPage { items, next_cursor }))
}

/// Creates an account with a one-time password (shown once; it must be changed at first sign-in).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    policy::may_administer(&s.actor)?;
    let login = LoginName::parse(&req.login)?;
    let display_name = parse_label("display_name", &req.display_name, 200)?;
    if (req.role == Role::Patient) != req.patient_id.is_some() {
        return Err(ApiError::validation_failed().detail("patient_id is required for patient accounts and only for them"));
    }
    let password = one_time_password();
    let hash = hash_password(password.clone()).await.map_err(ApiError::internal_cause)?;
    let new = NewUser {
        org_id: s.actor.org_id,
        login: login.to_string(),
        display_name,
        role: req.role,
        password_hash: hash,
        password_must_change: true,
        patient_id: req.patient_id,
    };
    let user = state.store.create_user(new, Some(s.actor.user_id), meta).await.map_err(|e| match e {
        ward_store::StoreError::NotFound => ApiError::validation_failed().detail("patient_id is not a patient of this organisation"),
        ward_store::StoreError::Conflict(_) => ApiError::conflict().detail("that login name is taken"),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(CreatedUser { user: user.into(), one_time_password: password })))
}

/// One user of the organisation.
#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_user(State(state): State<AppState>, s: Auth, Path(id): Path<UserId>) -> ApiResult<Json<UserView>> {
    policy::may_use_directory(&s.actor)?;
    let user = state.store.user(s.actor.org_id, id).await?;
    if !visible(s.actor.role, &user) {
        return Err(ApiError::not_found());
    }
    Ok(Json(user.into()))
}

/// Changes a user's role (admins only; not for patient accounts, and not one's own).
#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn update_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<UserId>,
    Json(req): Json<UpdateUserRequest>,
) -> ApiResult<Json<UserView>> {
    policy::may_administer(&s.actor)?;
    if id == s.actor.user_id {
        return Err(ApiError::invalid_state().detail("admins cannot change their own role"));
    }
    crate::auth::require_step_up(&state, &s, "user_role", &meta).await?;
    Ok(Json(state.store.set_user_role(s.actor.org_id, id, req.role, s.actor.user_id, meta).await?.into()))
}

/// Disables a user: they cannot sign in, every session ends and their connections close.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/disable", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn disable_user(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<UserId>) -> ApiResult<Json<UserView>> {
    policy::may_administer(&s.actor)?;
    if id == s.actor.user_id {
        return Err(ApiError::invalid_state().detail("admins cannot disable themselves"));
    }
    // Disabling queues a wipe to each of the person's devices: as sensitive as a wipe.
    crate::auth::require_step_up(&state, &s, "user_disable", &meta).await?;
    state.store.set_user_disabled(s.actor.org_id, id, true, Some(s.actor.user_id), meta).await?;
    state.end_sessions(id, None).await;
    Ok(Json(state.store.user(s.actor.org_id, id).await?.into()))
}

/// Enables a disabled user again.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/enable", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn enable_user(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<UserId>) -> ApiResult<Json<UserView>> {
    policy::may_administer(&s.actor)?;
    state.store.set_user_disabled(s.actor.org_id, id, false, Some(s.actor.user_id), meta).await?;
    Ok(Json(state.store.user(s.actor.org_id, id).await?.into()))
}

/// Sets a new one-time password and ends every session of the user.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/password-reset", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = OneTimePassword), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn reset_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<UserId>,
) -> ApiResult<Json<OneTimePassword>> {
    policy::may_administer(&s.actor)?;
    let password = one_time_password();
    let hash = hash_password(password.clone()).await.map_err(ApiError::internal_cause)?;
    state.store.reset_password(s.actor.org_id, id, hash, Some(s.actor.user_id), meta).await?;
    state.end_sessions(id, None).await;
    Ok(Json(OneTimePassword { one_time_password: password }))
}

/// A user's live sessions.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/sessions", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = Vec<SessionView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn user_sessions(State(state): State<AppState>, s: Auth, Path(id): Path<UserId>) -> ApiResult<Json<Vec<SessionView>>> {
    policy::may_administer(&s.actor)?;
    state.store.user(s.actor.org_id, id).await?;
    let list = state.store.sessions(s.actor.org_id, id).await?;
    Ok(Json(super::me::session_views(list, Some(s.session))))
}

/// Revokes every session of a user; their connections close within a second.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}/sessions", tag = "users", security(("bearer" = [])), params(("user_id" = UserId, Path)),
    responses((status = 200, body = Revoked), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_user_sessions(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<UserId>,
) -> ApiResult<Json<Revoked>> {
    policy::may_administer(&s.actor)?;
    let revoked = state.store.revoke_all_sessions(s.actor.org_id, id, s.actor.user_id, meta).await?;
    state.end_sessions(id, None).await;
    Ok(Json(Revoked { revoked: revoked.len() }))
}
