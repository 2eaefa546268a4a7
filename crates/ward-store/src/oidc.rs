//! Single sign-on (OpenID Connect) records: each organisation's provider settings (the
//! client secret sealed), sign-ins in flight (state, nonce, PKCE verifier; single use), the
//! link from a provider subject to a Ward account, the one-time hand-over of a finished
//! sign-in to the web app, and what back-channel logout needs (provider session ids of Ward
//! sessions, spent logout token ids).

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, SessionId, UserId};
use ward_domain::oidc::RoleMapping;
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::users::user_in_org;
use crate::{RequestMeta, Store, User, audit, now_ms};

/// An organisation's provider, as stored (the secret opened only where the flow needs it).
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// The organisation.
    pub org_id: OrgId,
    /// The issuer URL (discovery is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Ward's client id at the provider.
    pub client_id: String,
    /// The client secret (`None` for a public client, or when not opened).
    pub client_secret: Option<String>,
    /// Whether a secret is stored.
    pub has_client_secret: bool,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim holding role or group names.
    pub role_claim: String,
    /// Claim value to role, first match wins.
    pub role_map: Vec<RoleMapping>,
    /// Whether unknown subjects get an account.
    pub jit_enabled: bool,
    /// The role of a just-in-time account when no mapping entry matches.
    pub jit_default_role: Option<Role>,
    /// The admin who last changed it.
    pub updated_by: UserId,
    /// When (Unix ms).
    pub updated_at: i64,
}

/// Settings to store. `client_secret: None` keeps the stored one.
#[derive(Debug, Clone)]
pub struct OidcProviderInput {
    /// Issuer URL.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// A new client secret, or `None` to keep the current one.
    pub client_secret: Option<String>,
    /// Extra scopes.
    pub scopes: Vec<String>,
    /// Role claim name.
    pub role_claim: String,
    /// Mapping.
    pub role_map: Vec<RoleMapping>,
    /// Just-in-time accounts on or off.
    pub jit_enabled: bool,
    /// Fallback role for just-in-time accounts.
    pub jit_default_role: Option<Role>,
}

/// A sign-in in flight.
#[derive(Debug, Clone)]
pub struct OidcState {
    /// The organisation.
    pub org_id: OrgId,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// The redirect URI the authorization request named.
    pub redirect_uri: String,
}

/// What taking a state found.
#[derive(Debug, Clone)]
pub enum StateTaken {
    /// Live: it is spent now.
    Live(OidcState),
    /// Known but already used or expired (audited as a refused sign-in).
    Spent,
    /// Not known at all.
    Unknown,
}

/// What a back-channel logout did.
#[derive(Debug, Clone)]
pub enum LogoutOutcome {
    /// The token id was seen before: nothing changed.
    Replayed,
    /// These sessions (of these users) were revoked; possibly none.
    Revoked(Vec<(UserId, SessionId)>),
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    issuer: String,
    client_id: String,
    client_secret_sealed: Option<Vec<u8>>,
    scopes: String,
    role_claim: String,
    role_map: String,
    jit_enabled: bool,
    jit_default_role: Option<String>,
    updated_by: uuid::Uuid,
    updated_at: i64,
}

struct StateRow {
    nonce: String,
    pkce_verifier: String,
    redirect_uri: String,
    expires_at: i64,
    used_at: Option<i64>,
}

/// A workforce account's link to a provider subject.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OidcLink {
    /// The provider's `sub`.
    pub subject: String,
    /// When it was made (Unix ms).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct HandoffRow {
    org_id: uuid::Uuid,
    user_id: uuid::Uuid,
    sid: Option<String>,
    browser_hash: Option<Vec<u8>>,
}

/// A finished sign-in to hand to the web app in the browser that finished it.
#[derive(Debug, Clone)]
pub struct NewOidcHandoff {
    /// SHA-256 of the hand-over token.
    pub token_hash: Vec<u8>,
    /// SHA-256 of the browser-binding cookie set with it.
    pub browser_hash: Vec<u8>,
    /// The provider's session id, when sent.
    pub sid: Option<String>,
    /// Whether the account was just created.
    pub jit: bool,
    /// Unix ms.
    pub expires_at: i64,
}

/// What redeeming a hand-over found.
#[derive(Debug, Clone)]
pub enum HandoffTaken {
    /// Spent now: the account and the provider's session id.
    Redeemed(User, Option<String>),
    /// Live, but presented without the cookie of the browser it was made for: not spent.
    WrongBrowser(OrgId),
    /// Unknown, used or expired.
    Unknown,
}

/// The secret's seal context: bound to the organisation (there is one provider per org).
fn secret_context(org: OrgId) -> SealContext<'static> {
    SealContext { purpose: purpose::OIDC_CLIENT_SECRET, org: org.0, scope: org.0, record: org.0 }
}

/// A keyed fingerprint of a provider subject for audit events (HMAC-SHA256 under the
/// organisation's index key, as for inbound senders): equal subjects of one organisation give
/// equal ids, and the subject (often an email address) cannot be read back.
fn subject_fingerprint(key: &ward_crypto::DataKey, subject: &str) -> uuid::Uuid {
    let mac = key.blind_index(purpose::OIDC_SUBJECT, subject.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&mac[..16]);
    uuid::Uuid::from_bytes(first)
}

/// Revokes the live Ward sessions opened by single sign-on in the organisation (of one
/// account, or of all) and forgets their provider sessions: once a link is gone or changed,
/// the provider can no longer end them by `sub`. Returns what was revoked, for the caller to
/// close their connections.
async fn revoke_sso_sessions(c: &mut Conn<'_>, org: OrgId, user: Option<UserId>, now: i64) -> Result<Vec<(UserId, SessionId)>> {
    let rows = match user {
        Some(u) => fetch!(
            fetch_all,
            c,
            (uuid::Uuid, uuid::Uuid),
            "SELECT o.user_id, o.session_id FROM oidc_sessions o JOIN sessions s ON s.id = o.session_id \
             WHERE o.org_id = $1 AND o.user_id = $2 AND s.revoked_at IS NULL",
            org.0,
            u.0
        )?,
        None => fetch!(
            fetch_all,
            c,
            (uuid::Uuid, uuid::Uuid),
            "SELECT o.user_id, o.session_id FROM oidc_sessions o JOIN sessions s ON s.id = o.session_id \
             WHERE o.org_id = $1 AND s.revoked_at IS NULL",
            org.0
        )?,
    };
    for (_, session) in &rows {
        exec!(
            c,
            "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
            *session,
            now,
            "oidc_unlinked"
        )?;
    }
    match user {
        Some(u) => exec!(c, "DELETE FROM oidc_sessions WHERE org_id = $1 AND user_id = $2", org.0, u.0)?,
        None => exec!(c, "DELETE FROM oidc_sessions WHERE org_id = $1", org.0)?,
    };
    Ok(rows.into_iter().map(|(u, s)| (UserId(u), SessionId(s))).collect())
}

fn config_event(org: OrgId, actor: UserId, op: &'static str) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::OidcConfig, Outcome::Success).target("org", org.0).detail("op", DetailValue::Code(op));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

/// A `oidc.login` event; `reason` marks a refusal.
fn login_event(org: Option<OrgId>, user: Option<UserId>, reason: Option<&'static str>) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::OidcLogin, if reason.is_some() { Outcome::Failure } else { Outcome::Success });
    if let Some(u) = user {
        ev = ev.target("user", u);
    }
    if let Some(r) = reason {
        ev = ev.detail("reason", DetailValue::Code(r));
    }
    ev.org_id = org;
    ev.actor = user;
    ev
}

impl Store {
    /// Creates or replaces the organisation's provider (the secret sealed; kept when the
    /// input has none), audited `oidc.config` op `set`. A new issuer clears the links and
    /// revokes every session opened by single sign-on (returned, for closing connections).
    pub async fn set_oidc_provider(
        &self,
        org: OrgId,
        actor: UserId,
        input: OidcProviderInput,
        meta: RequestMeta,
    ) -> Result<(OidcProvider, Vec<(UserId, SessionId)>)> {
        let sealed = match &input.client_secret {
            Some(s) => Some(self.current_key(org, ScopeKind::Org, org.0).await?.seal(&secret_context(org), s.as_bytes())),
            None => None,
        };
        let map = serde_json::to_string(&input.role_map).map_err(|_| StoreError::Corrupt("oidc role map"))?;
        let scopes = input.scopes.join(" ");
        let revoked = self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let kept = scalar!(
                    fetch_optional,
                    &mut c,
                    Option<Vec<u8>>,
                    "SELECT client_secret_sealed FROM oidc_providers WHERE org_id = $1",
                    org.0
                )?
                .flatten();
                let secret = sealed.or(kept);
                let old_issuer =
                    scalar!(fetch_optional, &mut c, String, "SELECT issuer FROM oidc_providers WHERE org_id = $1", org.0)?;
                // Subjects are unique only per issuer: links made under another issuer would let
                // the new provider's subject of the same value into someone else's account.
                let mut revoked = Vec::new();
                let links_cleared = match old_issuer {
                    Some(old) if old != input.issuer => {
                        exec!(&mut c, "DELETE FROM oidc_links WHERE org_id = $1", org.0)?;
                        revoked = revoke_sso_sessions(&mut c, org, None, now).await?;
                        exec!(&mut c, "DELETE FROM oidc_states WHERE org_id = $1", org.0)?;
                        exec!(&mut c, "DELETE FROM oidc_handoffs WHERE org_id = $1", org.0)?;
                        exec!(&mut c, "DELETE FROM oidc_challenges WHERE org_id = $1", org.0)?;
                        true
                    }
                    _ => false,
                };
                exec!(&mut c, "DELETE FROM oidc_providers WHERE org_id = $1", org.0)?;
                exec!(
                    &mut c,
                    "INSERT INTO oidc_providers (org_id, issuer, client_id, client_secret_sealed, scopes, role_claim, role_map, jit_enabled, \
                     jit_default_role, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    org.0,
                    input.issuer.as_str(),
                    input.client_id.as_str(),
                    secret.as_deref(),
                    scopes.as_str(),
                    input.role_claim.as_str(),
                    map.as_str(),
                    input.jit_enabled,
                    input.jit_default_role.map(Role::as_str),
                    actor.0,
                    now
                )?;
                let ev = config_event(org, actor, "set")
                    .detail("jit", DetailValue::Bool(input.jit_enabled))
                    .detail("mappings", DetailValue::Int(input.role_map.len() as i64))
                    .detail("secret_changed", DetailValue::Bool(input.client_secret.is_some()))
                    .detail("links_cleared", DetailValue::Bool(links_cleared))
                    .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await?;
        Ok((self.oidc_provider(org, false).await?.ok_or(StoreError::NotFound)?, revoked))
    }

    /// Removes the organisation's provider (sign-ins stop; links and sessions stay), audited
    /// `oidc.config` op `delete`. NotFound when there is none.
    pub async fn delete_oidc_provider(&self, org: OrgId, actor: UserId, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let n = exec!(&mut c, "DELETE FROM oidc_providers WHERE org_id = $1", org.0)?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                exec!(&mut c, "DELETE FROM oidc_states WHERE org_id = $1", org.0)?;
                audit::append(&mut c, &config_event(org, actor, "delete"), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// The organisation's provider, with the client secret opened when `with_secret`.
    pub async fn oidc_provider(&self, org: OrgId, with_secret: bool) -> Result<Option<OidcProvider>> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let Some(r) = fetch!(
                    fetch_optional,
                    &mut c,
                    ProviderRow,
                    "SELECT issuer, client_id, client_secret_sealed, scopes, role_claim, role_map, jit_enabled, jit_default_role, \
                     updated_by, updated_at FROM oidc_providers WHERE org_id = $1",
                    org.0
                )?
                else {
                    return Ok(None);
                };
                let client_secret = match (&r.client_secret_sealed, with_secret) {
                    (Some(s), true) => Some(open_field(&mut c, &ring, &secret_context(org), s).await?),
                    _ => None,
                };
                let role_map: Vec<RoleMapping> = serde_json::from_str(&r.role_map).map_err(|_| StoreError::Corrupt("oidc role map"))?;
                let jit_default_role = match r.jit_default_role {
                    Some(s) => Some(s.parse::<Role>().map_err(|_| StoreError::Corrupt("oidc default role"))?),
                    None => None,
                };
                Ok(Some(OidcProvider {
                    org_id: org,
                    issuer: r.issuer,
                    client_id: r.client_id,
                    client_secret,
                    has_client_secret: r.client_secret_sealed.is_some(),
                    scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
                    role_claim: r.role_claim,
                    role_map,
                    jit_enabled: r.jit_enabled,
                    jit_default_role,
                    updated_by: UserId(r.updated_by),
                    updated_at: r.updated_at,
                }))
            })
        })
        .await
    }

    /// Records a sign-in in flight under the state's hash.
    pub async fn create_oidc_state(&self, state_hash: Vec<u8>, state: OidcState, expires_at: i64) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO oidc_states (state_hash, org_id, nonce, pkce_verifier, redirect_uri, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    state_hash.as_slice(),
                    state.org_id.0,
                    state.nonce.as_str(),
                    state.pkce_verifier.as_str(),
                    state.redirect_uri.as_str(),
                    now_ms(),
                    expires_at
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Spends a sign-in's state: at most once, before it expires. A known but spent or expired
    /// state is audited as a refused `oidc.login` (reason `state_replayed` or `state_expired`).
    pub async fn take_oidc_state(&self, state_hash: Vec<u8>, meta: RequestMeta) -> Result<StateTaken> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let Some((org, row)) = fetch!(
                    fetch_optional,
                    &mut c,
                    (uuid::Uuid, String, String, String, i64, Option<i64>),
                    "SELECT org_id, nonce, pkce_verifier, redirect_uri, expires_at, used_at FROM oidc_states WHERE state_hash = $1",
                    state_hash.as_slice()
                )?
                .map(|(o, nonce, pkce_verifier, redirect_uri, expires_at, used_at)| {
                    (OrgId(o), StateRow { nonce, pkce_verifier, redirect_uri, expires_at, used_at })
                }) else {
                    return Ok(StateTaken::Unknown);
                };
                let spent = exec!(
                    &mut c,
                    "UPDATE oidc_states SET used_at = $2 WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2",
                    state_hash.as_slice(),
                    now
                )?;
                if spent == 0 {
                    let reason = if row.used_at.is_some() || row.expires_at > now { "state_replayed" } else { "state_expired" };
                    audit::append(&mut c, &login_event(Some(org), None, Some(reason)), &meta).await?;
                    return Ok(StateTaken::Spent);
                }
                Ok(StateTaken::Live(OidcState {
                    org_id: org,
                    nonce: row.nonce,
                    pkce_verifier: row.pkce_verifier,
                    redirect_uri: row.redirect_uri,
                }))
            })
        })
        .await
    }

    /// The Ward account linked to a provider subject in the organisation.
    pub async fn oidc_linked_user(&self, org: OrgId, subject: String) -> Result<Option<User>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let id = scalar!(
                    fetch_optional,
                    &mut c,
                    uuid::Uuid,
                    "SELECT user_id FROM oidc_links WHERE org_id = $1 AND subject = $2",
                    org.0,
                    subject.as_str()
                )?;
                match id {
                    Some(id) => Ok(Some(user_in_org(&mut c, org, UserId(id)).await?)),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    /// Creates a just-in-time workforce account linked to `subject`, with an unusable
    /// password, audited `user.create` (via `oidc`). Conflict("login") when the name is taken.
    pub async fn oidc_create_user(&self, new: crate::NewUser, subject: String, meta: RequestMeta) -> Result<User> {
        self.write(move |mut c| {
            Box::pin(async move {
                if new.role == Role::Patient || new.patient_id.is_some() {
                    return Err(StoreError::State("single sign-on creates workforce accounts only"));
                }
                let org = new.org_id;
                let id = UserId::new();
                let now = now_ms();
                let n = exec!(
                    &mut c,
                    "INSERT INTO users (id, org_id, login, display_name, role, password_hash, password_must_change, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (login) DO NOTHING",
                    id.0,
                    org.0,
                    new.login.as_str(),
                    new.display_name.as_str(),
                    new.role.as_str(),
                    new.password_hash.as_str(),
                    false,
                    now
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict("login"));
                }
                let linked = exec!(
                    &mut c,
                    "INSERT INTO oidc_links (org_id, subject, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    org.0,
                    subject.as_str(),
                    id.0,
                    now
                )?;
                if linked == 0 {
                    return Err(StoreError::Conflict("subject"));
                }
                let mut ev = AuditEvent::new(AuditAction::UserCreate, Outcome::Success)
                    .target("user", id)
                    .detail("role", DetailValue::Code(new.role.as_str()))
                    .detail("via", DetailValue::Code("oidc"));
                ev.org_id = Some(org);
                audit::append(&mut c, &ev, &meta).await?;
                user_in_org(&mut c, org, id).await
            })
        })
        .await
    }

    /// Links an existing account of the organisation to a provider subject (admin action,
    /// audited `oidc.config` op `link` with `replaced`, whether another subject was linked,
    /// and a keyed fingerprint of the subject, never the subject). Conflict("subject") when
    /// the subject is linked to someone else. Relinking to another subject revokes the
    /// account's single sign-on sessions (returned): the old subject's logouts no longer reach
    /// them.
    pub async fn oidc_link_user(
        &self,
        org: OrgId,
        user: UserId,
        subject: String,
        actor: UserId,
        meta: RequestMeta,
    ) -> Result<Vec<(UserId, SessionId)>> {
        let fingerprint = subject_fingerprint(&*self.index_key(org).await?, &subject);
        self.write(move |mut c| {
            Box::pin(async move {
                let u = user_in_org(&mut c, org, user).await?;
                if u.role == Role::Patient {
                    return Err(StoreError::State("single sign-on is for workforce accounts"));
                }
                let old = scalar!(
                    fetch_optional,
                    &mut c,
                    String,
                    "SELECT subject FROM oidc_links WHERE org_id = $1 AND user_id = $2",
                    org.0,
                    user.0
                )?;
                let replaced = old.as_ref().is_some_and(|o| *o != subject);
                exec!(&mut c, "DELETE FROM oidc_links WHERE org_id = $1 AND user_id = $2", org.0, user.0)?;
                let n = exec!(
                    &mut c,
                    "INSERT INTO oidc_links (org_id, subject, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    org.0,
                    subject.as_str(),
                    user.0,
                    now_ms()
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict("subject"));
                }
                let revoked = if replaced { revoke_sso_sessions(&mut c, org, Some(user), now_ms()).await? } else { Vec::new() };
                let ev = config_event(org, actor, "link")
                    .detail("user", DetailValue::Id(user.0))
                    .detail("replaced", DetailValue::Bool(replaced))
                    .detail("subject", DetailValue::Id(fingerprint))
                    .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await
    }

    /// The provider subject an account of the organisation is linked to, if any (NotFound for
    /// an account of another organisation).
    pub async fn oidc_link_of(&self, org: OrgId, user: UserId) -> Result<Option<OidcLink>> {
        self.read(move |mut c| {
            Box::pin(async move {
                user_in_org(&mut c, org, user).await?;
                Ok(fetch!(
                    fetch_optional,
                    &mut c,
                    OidcLink,
                    "SELECT subject, created_at FROM oidc_links WHERE org_id = $1 AND user_id = $2",
                    org.0,
                    user.0
                )?)
            })
        })
        .await
    }

    /// Removes an account's link to its provider subject, audited `oidc.config` op `unlink`
    /// (with a keyed fingerprint of the subject, never the subject). NotFound when the account
    /// is not linked. Its single sign-on sessions are revoked (returned: the provider could no
    /// longer end them); password and passkey sessions stay.
    pub async fn oidc_unlink_user(&self, org: OrgId, user: UserId, actor: UserId, meta: RequestMeta) -> Result<Vec<(UserId, SessionId)>> {
        let key = self.index_key(org).await?;
        self.write(move |mut c| {
            Box::pin(async move {
                user_in_org(&mut c, org, user).await?;
                let Some(subject) = scalar!(
                    fetch_optional,
                    &mut c,
                    String,
                    "SELECT subject FROM oidc_links WHERE org_id = $1 AND user_id = $2",
                    org.0,
                    user.0
                )?
                else {
                    return Err(StoreError::NotFound);
                };
                exec!(&mut c, "DELETE FROM oidc_links WHERE org_id = $1 AND user_id = $2", org.0, user.0)?;
                let revoked = revoke_sso_sessions(&mut c, org, Some(user), now_ms()).await?;
                let ev = config_event(org, actor, "unlink")
                    .detail("user", DetailValue::Id(user.0))
                    .detail("replaced", DetailValue::Bool(false))
                    .detail("subject", DetailValue::Id(subject_fingerprint(&key, &subject)))
                    .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await
    }

    /// Records a finished sign-in for the web app to collect once, in the same browser,
    /// audited `oidc.login` (success; `jit` when the account was just created).
    pub async fn create_oidc_handoff(&self, h: NewOidcHandoff, user: &User, meta: RequestMeta) -> Result<()> {
        let (org, id) = (user.org_id, user.id);
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO oidc_handoffs (token_hash, org_id, user_id, sid, created_at, expires_at, browser_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    h.token_hash.as_slice(),
                    org.0,
                    id.0,
                    h.sid.as_deref(),
                    now_ms(),
                    h.expires_at,
                    h.browser_hash.as_slice()
                )?;
                let ev = login_event(Some(org), Some(id), None).detail("jit", DetailValue::Bool(h.jit));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Spends a hand-over presented with the SHA-256 of the browser's binding cookie (if any).
    /// A live hand-over presented from another browser is not spent (its own browser may
    /// still collect it); refusals are audited `oidc.login` by the caller.
    pub async fn redeem_oidc_handoff(&self, token_hash: Vec<u8>, browser_hash: Option<Vec<u8>>) -> Result<HandoffTaken> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let Some(row) = fetch!(
                    fetch_optional,
                    &mut c,
                    HandoffRow,
                    "SELECT org_id, user_id, sid, browser_hash FROM oidc_handoffs WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                    token_hash.as_slice(),
                    now
                )?
                else {
                    return Ok(HandoffTaken::Unknown);
                };
                // Rows from before the binding existed have no hash and are refused too.
                let same_browser = match (&row.browser_hash, &browser_hash) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                };
                if !same_browser {
                    return Ok(HandoffTaken::WrongBrowser(OrgId(row.org_id)));
                }
                let n = exec!(
                    &mut c,
                    "UPDATE oidc_handoffs SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                    token_hash.as_slice(),
                    now
                )?;
                if n == 0 {
                    return Ok(HandoffTaken::Unknown);
                }
                let user = user_in_org(&mut c, OrgId(row.org_id), UserId(row.user_id)).await?;
                Ok(HandoffTaken::Redeemed(user, row.sid))
            })
        })
        .await
    }

    /// Keeps the provider's session id of a single sign-on that stopped at Ward's second
    /// factor, keyed by the login challenge, until the challenge expires.
    pub async fn create_oidc_challenge(&self, challenge_hash: Vec<u8>, user: &User, sid: Option<String>, expires_at: i64) -> Result<()> {
        let (org, id) = (user.org_id, user.id);
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO oidc_challenges (challenge_hash, org_id, user_id, sid, expires_at) VALUES ($1, $2, $3, $4, $5)",
                    challenge_hash.as_slice(),
                    org.0,
                    id.0,
                    sid.as_deref(),
                    expires_at
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Notes that a Ward session was opened by single sign-on (for back-channel logout).
    pub async fn bind_oidc_session(&self, user: &User, session: SessionId, sid: Option<String>) -> Result<()> {
        let (org, id) = (user.org_id, user.id);
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO oidc_sessions (session_id, org_id, user_id, sid, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT DO NOTHING",
                    session.0,
                    org.0,
                    id.0,
                    sid.as_deref(),
                    now_ms()
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Applies a verified logout token: refuses a token id seen before; else revokes the live
    /// sessions opened under the provider session `sid` when any are known, or else every live
    /// session of the account linked to `sub`. Audited `oidc.logout`.
    pub async fn oidc_backchannel_logout(
        &self,
        org: OrgId,
        jti: String,
        jti_expires_at: i64,
        sub: Option<String>,
        sid: Option<String>,
        meta: RequestMeta,
    ) -> Result<LogoutOutcome> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let fresh = exec!(
                    &mut c,
                    "INSERT INTO oidc_logout_jtis (org_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    org.0,
                    jti.as_str(),
                    jti_expires_at
                )?;
                let mut ev = AuditEvent::new(AuditAction::OidcLogout, Outcome::Success);
                ev.org_id = Some(org);
                if fresh == 0 {
                    ev.outcome = Outcome::Failure;
                    audit::append(&mut c, &ev.detail("reason", DetailValue::Code("jti_replayed")), &meta).await?;
                    return Ok(LogoutOutcome::Replayed);
                }
                // Only sessions opened by single sign-on: those under the provider session when
                // the token names one, else every one of the account's. Password and passkey
                // sessions are never ended by the provider.
                let (by, targets): (&'static str, Vec<(uuid::Uuid, uuid::Uuid)>) = match (&sid, &sub) {
                    (Some(sid), _) => (
                        "sid",
                        fetch!(
                            fetch_all,
                            &mut c,
                            (uuid::Uuid, uuid::Uuid),
                            "SELECT o.user_id, o.session_id FROM oidc_sessions o JOIN sessions s ON s.id = o.session_id \
                             WHERE o.org_id = $1 AND o.sid = $2 AND s.revoked_at IS NULL",
                            org.0,
                            sid.as_str()
                        )?,
                    ),
                    (None, Some(sub)) => (
                        "sub",
                        fetch!(
                            fetch_all,
                            &mut c,
                            (uuid::Uuid, uuid::Uuid),
                            "SELECT o.user_id, o.session_id FROM oidc_links l JOIN oidc_sessions o ON o.user_id = l.user_id AND o.org_id = l.org_id \
                             JOIN sessions s ON s.id = o.session_id WHERE l.org_id = $1 AND l.subject = $2 AND s.revoked_at IS NULL",
                            org.0,
                            sub.as_str()
                        )?,
                    ),
                    (None, None) => ("none", Vec::new()),
                };
                for (_, session) in &targets {
                    exec!(
                        &mut c,
                        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
                        *session,
                        now,
                        "oidc_logout"
                    )?;
                }
                if let Some((user, _)) = targets.first() {
                    ev = ev.target("user", user);
                }
                let ev = ev.detail("sessions_revoked", DetailValue::Int(targets.len() as i64)).detail("by", DetailValue::Code(by));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(LogoutOutcome::Revoked(targets.into_iter().map(|(u, s)| (UserId(u), SessionId(s))).collect()))
            })
        })
        .await
    }

    /// Records a refused sign-in or logout (`oidc.login` or `oidc.logout` with `reason`).
    pub async fn oidc_refused(&self, action: AuditAction, org: Option<OrgId>, reason: &'static str, meta: RequestMeta) -> Result<()> {
        let mut ev = AuditEvent::new(action, Outcome::Failure).detail("reason", DetailValue::Code(reason));
        ev.org_id = org;
        self.record(ev, meta).await.map(|_| ())
    }
}

/// When a login challenge came from a single sign-on, binds the session its answer opened to
/// the provider's session (for back-channel logout); called in the answer's transaction.
pub(crate) async fn bind_challenge_session(c: &mut Conn<'_>, challenge_hash: &[u8], session: SessionId, now: i64) -> Result<()> {
    let row = fetch!(
        fetch_optional,
        c,
        (uuid::Uuid, uuid::Uuid, Option<String>),
        "SELECT org_id, user_id, sid FROM oidc_challenges WHERE challenge_hash = $1",
        challenge_hash
    )?;
    let Some((org, user, sid)) = row else { return Ok(()) };
    exec!(c, "DELETE FROM oidc_challenges WHERE challenge_hash = $1", challenge_hash)?;
    exec!(
        c,
        "INSERT INTO oidc_sessions (session_id, org_id, user_id, sid, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        session.0,
        org,
        user,
        sid.as_deref(),
        now
    )?;
    Ok(())
}
