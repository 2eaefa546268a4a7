//! WebAuthn credentials (security keys and passkeys) and the ceremonies that register and use
//! them. The cryptography is the server's (webauthn-rs); this module keeps the credentials,
//! the single-use ceremony state, the signature counters and the audit trail.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, OrgId, SessionId, UserId};
use ward_domain::lockout::Throttle;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::sessions::{login_event, open_session, save_throttle, throttle_of};
use crate::{NewSession, RequestMeta, Restriction, Store, audit, now_ms};

/// A registered WebAuthn credential.
#[derive(Debug, Clone)]
pub struct WebAuthnCredential {
    /// Ward's id for it (what the API and the audit log name).
    pub id: uuid::Uuid,
    /// The owner's tenant.
    pub org_id: OrgId,
    /// The owner.
    pub user_id: UserId,
    /// The authenticator's credential id (raw bytes).
    pub credential_id: Vec<u8>,
    /// The owner's name for it.
    pub label: String,
    /// The verified credential as webauthn-rs serialises it (public key, counter, flags).
    pub passkey: String,
    /// The last signature counter seen.
    pub sign_count: i64,
    /// Transports the authenticator reported at registration (`usb`, `nfc`, `ble`, `internal`, `hybrid`).
    pub transports: Vec<String>,
    /// Registered (Unix ms).
    pub created_at: i64,
    /// Last used to sign in or step up (Unix ms).
    pub last_used_at: Option<i64>,
    /// When its counter went backwards (a possible clone); such a credential is refused.
    pub clone_suspected_at: Option<i64>,
}

/// A credential to store after a verified registration.
#[derive(Debug, Clone)]
pub struct NewWebAuthnCredential {
    /// The authenticator's credential id.
    pub credential_id: Vec<u8>,
    /// The owner's name for it.
    pub label: String,
    /// The verified credential (webauthn-rs JSON).
    pub passkey: String,
    /// The counter at registration.
    pub sign_count: i64,
    /// Reported transports.
    pub transports: Vec<String>,
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Registering a credential for a signed-in user.
    Register,
    /// The second step of a password sign-in.
    Mfa,
    /// A step-up of a signed-in user.
    StepUp,
    /// A passwordless sign-in with a discoverable credential.
    Passkey,
}

impl CeremonyPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Mfa => "mfa",
            Self::StepUp => "step_up",
            Self::Passkey => "passkey",
        }
    }
}

/// A ceremony in progress and what it is bound to.
#[derive(Debug, Clone)]
pub struct Ceremony {
    /// Its id (handed to the client).
    pub id: uuid::Uuid,
    /// What it is for.
    pub purpose: CeremonyPurpose,
    /// The user it was issued to (none for a passkey sign-in).
    pub user_id: Option<UserId>,
    /// The session it was issued in (registration and step-up).
    pub session_id: Option<SessionId>,
    /// The hash of the sign-in challenge token it belongs to (second step of a sign-in).
    pub login_challenge: Option<Vec<u8>>,
    /// The webauthn-rs state (JSON).
    pub state: String,
    /// When it stops being usable (Unix ms).
    pub expires_at: i64,
}

/// A verified assertion, to be accepted in the same transaction as what it unlocks: the
/// counter must still move forward and the credential must not be flagged.
#[derive(Debug, Clone)]
pub struct WebAuthnUse {
    /// Ward's id of the credential.
    pub credential: uuid::Uuid,
    /// The counter the authenticator reported.
    pub counter: u32,
    /// The credential after the assertion (webauthn-rs JSON, counter updated).
    pub passkey: String,
}

/// Why an assertion or registration was refused (audit `reason` codes).
#[derive(Debug, Clone, Copy)]
pub struct WebAuthnFailure {
    /// The audit action of the attempt (`auth.login`, `auth.mfa`, `auth.step_up`, `mfa.webauthn_register`).
    pub action: AuditAction,
    /// The reason code.
    pub reason: &'static str,
    /// The credential involved, when it is known.
    pub credential: Option<uuid::Uuid>,
    /// Whether the counter went backwards: the credential is flagged and refused from then on.
    pub clone_suspected: bool,
    /// Whether the failure counts towards the login name's lockout.
    pub counts: bool,
}

#[derive(sqlx::FromRow)]
struct CredRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    user_id: uuid::Uuid,
    credential_id: Vec<u8>,
    label: String,
    passkey: String,
    sign_count: i64,
    transports: String,
    created_at: i64,
    last_used_at: Option<i64>,
    clone_suspected_at: Option<i64>,
}

impl From<CredRow> for WebAuthnCredential {
    fn from(r: CredRow) -> Self {
        WebAuthnCredential {
            id: r.id,
            org_id: OrgId(r.org_id),
            user_id: UserId(r.user_id),
            credential_id: r.credential_id,
            label: r.label,
            passkey: r.passkey,
            sign_count: r.sign_count,
            transports: r.transports.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            clone_suspected_at: r.clone_suspected_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct CeremonyRow {
    id: uuid::Uuid,
    purpose: String,
    user_id: Option<uuid::Uuid>,
    session_id: Option<uuid::Uuid>,
    login_challenge: Option<Vec<u8>>,
    state: String,
    expires_at: i64,
}

macro_rules! cred_select {
    ($rest:literal) => {
        sqlx::AssertSqlSafe(concat!(
            "SELECT id, org_id, user_id, credential_id, label, passkey, sign_count, transports, created_at, last_used_at, \
             clone_suspected_at FROM webauthn_credentials ",
            $rest
        ))
    };
}

fn cred_event(action: AuditAction, outcome: Outcome, org: OrgId, user: UserId, credential: Option<uuid::Uuid>) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev = match credential {
        Some(id) => ev.target("webauthn_credential", id).detail("user", DetailValue::Id(user.0)),
        None => ev.target("user", user),
    };
    ev.org_id = Some(org);
    ev.actor = Some(user);
    ev
}

/// Accepts a verified assertion: the counter must move forward (or stay at zero for an
/// authenticator without one) and the credential must be the user's and not flagged.
pub(crate) async fn use_credential(c: &mut Conn<'_>, user: UserId, u: &WebAuthnUse, now: i64) -> Result<bool> {
    let counter = i64::from(u.counter);
    let n = exec!(
        c,
        "UPDATE webauthn_credentials SET sign_count = $3, passkey = $4, last_used_at = $5 \
         WHERE id = $1 AND user_id = $2 AND clone_suspected_at IS NULL AND (sign_count < $3 OR ($3 = 0 AND sign_count = 0))",
        u.credential,
        user.0,
        counter,
        u.passkey.as_str(),
        now
    )?;
    Ok(n == 1)
}

impl Store {
    /// Stores a ceremony's state; returns nothing but errors (the id is the caller's).
    pub async fn create_ceremony(&self, ceremony: Ceremony) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                // Housekeeping: ceremonies are short-lived, so expired ones are dropped as new ones start.
                exec!(&mut c, "DELETE FROM webauthn_ceremonies WHERE expires_at < $1", now)?;
                exec!(
                    &mut c,
                    "INSERT INTO webauthn_ceremonies (id, purpose, user_id, session_id, login_challenge, state, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    ceremony.id,
                    ceremony.purpose.as_str(),
                    ceremony.user_id.map(|u| u.0),
                    ceremony.session_id.map(|s| s.0),
                    ceremony.login_challenge.as_deref(),
                    ceremony.state.as_str(),
                    ceremony.expires_at
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Takes a ceremony for `purpose` out of the store: it is deleted whatever happens next,
    /// so each challenge is answered at most once, on any node. `None` when it is unknown,
    /// already used, expired or for another purpose.
    pub async fn take_ceremony(&self, id: uuid::Uuid, purpose: CeremonyPurpose) -> Result<Option<Ceremony>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    CeremonyRow,
                    "SELECT id, purpose, user_id, session_id, login_challenge, state, expires_at FROM webauthn_ceremonies WHERE id = $1",
                    id
                )?;
                let Some(row) = row else { return Ok(None) };
                if row.purpose != purpose.as_str() {
                    return Ok(None);
                }
                if exec!(&mut c, "DELETE FROM webauthn_ceremonies WHERE id = $1", id)? != 1 || row.expires_at <= now_ms() {
                    return Ok(None);
                }
                Ok(Some(Ceremony {
                    id: row.id,
                    purpose,
                    user_id: row.user_id.map(UserId),
                    session_id: row.session_id.map(SessionId),
                    login_challenge: row.login_challenge,
                    state: row.state,
                    expires_at: row.expires_at,
                }))
            })
        })
        .await
    }

    /// The user's credentials, oldest first.
    pub async fn webauthn_credentials(&self, org: OrgId, user: UserId) -> Result<Vec<WebAuthnCredential>> {
        self.read(|mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    CredRow,
                    cred_select!("WHERE org_id = $1 AND user_id = $2 ORDER BY created_at, id"),
                    org.0,
                    user.0
                )?;
                Ok(rows.into_iter().map(Into::into).collect())
            })
        })
        .await
    }

    /// A credential by the authenticator's credential id (any user).
    pub async fn webauthn_credential_by_raw_id(&self, credential_id: Vec<u8>) -> Result<Option<WebAuthnCredential>> {
        self.read(|mut c| {
            Box::pin(async move {
                let row = fetch!(fetch_optional, &mut c, CredRow, cred_select!("WHERE credential_id = $1"), credential_id.as_slice())?;
                Ok(row.map(Into::into))
            })
        })
        .await
    }

    /// Stores a verified registration. If it is the user's first second factor, `recovery`
    /// holds the hashes of their new recovery codes. The registering session counts as
    /// MFA-verified from now and loses an enrolment restriction. A credential id registered
    /// before (to anyone) is `Conflict`.
    pub async fn add_webauthn_credential(
        &self,
        org: OrgId,
        user: UserId,
        session: SessionId,
        new: NewWebAuthnCredential,
        recovery: Option<Vec<Vec<u8>>>,
        meta: RequestMeta,
    ) -> Result<WebAuthnCredential> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let id = uuid::Uuid::now_v7();
                let n = exec!(
                    &mut c,
                    "INSERT INTO webauthn_credentials (id, org_id, user_id, credential_id, label, passkey, sign_count, transports, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (credential_id) DO NOTHING",
                    id,
                    org.0,
                    user.0,
                    new.credential_id.as_slice(),
                    new.label.as_str(),
                    new.passkey.as_str(),
                    new.sign_count,
                    new.transports.join(",").as_str(),
                    now
                )?;
                if n == 0 {
                    let ev = cred_event(AuditAction::WebAuthnRegister, Outcome::Failure, org, user, None)
                        .detail("reason", DetailValue::Code("credential_exists"));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Err(StoreError::Conflict("credential_id"));
                }
                if let Some(hashes) = &recovery {
                    crate::users::replace_recovery_codes(&mut c, user, hashes).await?;
                }
                exec!(
                    &mut c,
                    "UPDATE sessions SET restriction = NULL, mfa_verified_at = $3 WHERE id = $1 AND (restriction IS NULL OR restriction = $2)",
                    session.0,
                    Restriction::MfaEnrollment.as_str(),
                    now
                )?;
                let ev = cred_event(AuditAction::WebAuthnRegister, Outcome::Success, org, user, Some(id))
                    .detail("first_factor", DetailValue::Bool(recovery.is_some()));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(fetch!(fetch_one, &mut c, CredRow, cred_select!("WHERE id = $1"), id)?.into())
            })
        })
        .await
    }

    /// Renames one of the user's credentials.
    pub async fn rename_webauthn_credential(
        &self,
        org: OrgId,
        user: UserId,
        id: uuid::Uuid,
        label: String,
        meta: RequestMeta,
    ) -> Result<WebAuthnCredential> {
        self.write(move |mut c| {
            Box::pin(async move {
                let n = exec!(
                    &mut c,
                    "UPDATE webauthn_credentials SET label = $4 WHERE id = $1 AND user_id = $2 AND org_id = $3",
                    id,
                    user.0,
                    org.0,
                    label.as_str()
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                audit::append(&mut c, &cred_event(AuditAction::WebAuthnRename, Outcome::Success, org, user, Some(id)), &meta).await?;
                Ok(fetch!(fetch_one, &mut c, CredRow, cred_select!("WHERE id = $1"), id)?.into())
            })
        })
        .await
    }

    /// Removes one of the user's credentials. With `mfa_required` (the organisation requires
    /// a second factor for the user's role), removing the user's last second factor is
    /// refused: `Ok(false)`, and the refusal audited.
    pub async fn remove_webauthn_credential(
        &self,
        org: OrgId,
        user: UserId,
        id: uuid::Uuid,
        mfa_required: bool,
        meta: RequestMeta,
    ) -> Result<bool> {
        self.write(move |mut c| {
            Box::pin(async move {
                let found = scalar!(
                    fetch_optional,
                    &mut c,
                    i32,
                    "SELECT 1 FROM webauthn_credentials WHERE id = $1 AND user_id = $2 AND org_id = $3",
                    id,
                    user.0,
                    org.0
                )?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
                if mfa_required {
                    let others = scalar!(
                        fetch_one,
                        &mut c,
                        i64,
                        "SELECT (SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1 AND id <> $2 AND clone_suspected_at IS NULL) + \
                         (SELECT COUNT(*) FROM users WHERE id = $1 AND totp_secret IS NOT NULL)",
                        user.0,
                        id
                    )?;
                    if others == 0 {
                        let ev = cred_event(AuditAction::WebAuthnRemove, Outcome::Denied, org, user, Some(id))
                            .detail("reason", DetailValue::Code("last_second_factor"));
                        audit::append(&mut c, &ev, &meta).await?;
                        return Ok(false);
                    }
                }
                exec!(&mut c, "DELETE FROM webauthn_credentials WHERE id = $1", id)?;
                audit::append(&mut c, &cred_event(AuditAction::WebAuthnRemove, Outcome::Success, org, user, Some(id)), &meta).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Records a refused WebAuthn attempt of a known user: audited with its reason (and the
    /// credential, never the raw response); counted towards the login name's lockout when
    /// `counts`; a counter regression flags the credential and raises
    /// `auth.webauthn_clone_suspected`.
    pub async fn webauthn_failed(&self, org: OrgId, user: UserId, login: String, f: WebAuthnFailure, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let mut ev = cred_event(f.action, Outcome::Failure, org, user, None)
                    .detail("method", DetailValue::Code("webauthn"))
                    .detail("reason", DetailValue::Code(f.reason));
                if let Some(cred) = f.credential {
                    ev = ev.detail("credential", DetailValue::Id(cred));
                }
                if f.counts {
                    let t = throttle_of(&mut c, &login).await?.after_failure(now);
                    save_throttle(&mut c, &login, t).await?;
                    ev = ev.detail("failures", DetailValue::Int(i64::from(t.failures)));
                }
                audit::append(&mut c, &ev, &meta).await?;
                if f.clone_suspected
                    && let Some(cred) = f.credential
                {
                    exec!(
                        &mut c,
                        "UPDATE webauthn_credentials SET clone_suspected_at = $2 WHERE id = $1 AND clone_suspected_at IS NULL",
                        cred,
                        now
                    )?;
                    let ev = cred_event(AuditAction::WebAuthnCloneSuspected, Outcome::Denied, org, user, Some(cred))
                        .detail("reason", DetailValue::Code("counter_regression"));
                    audit::append(&mut c, &ev, &meta).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Completes a passwordless sign-in with a verified passkey assertion: checks the account
    /// is enabled, accepts the assertion (counter), resets the throttle and opens a session
    /// that counts as MFA-verified. `Ok(None)` when the assertion was not accepted (a counter
    /// race or a flagged credential: audited and counted).
    pub async fn passkey_login(
        &self,
        org: OrgId,
        login: String,
        assertion: WebAuthnUse,
        new: NewSession,
        meta: RequestMeta,
    ) -> Result<Option<(SessionId, DeviceId)>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let disabled = scalar!(fetch_one, &mut c, Option<i64>, "SELECT disabled_at FROM users WHERE id = $1", new.user_id.0)?;
                if disabled.is_some() {
                    return Err(StoreError::State("account disabled"));
                }
                if !use_credential(&mut c, new.user_id, &assertion, now).await? {
                    let t = throttle_of(&mut c, &login).await?.after_failure(now);
                    save_throttle(&mut c, &login, t).await?;
                    let ev = login_event(AuditAction::Login, Outcome::Failure, Some(org), Some(new.user_id))
                        .detail("method", DetailValue::Code("passkey"))
                        .detail("reason", DetailValue::Code("counter_or_flag"))
                        .detail("credential", DetailValue::Id(assertion.credential));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(None);
                }
                save_throttle(&mut c, &login, Throttle::default()).await?;
                let (session, device) = open_session(&mut c, org, &new, &meta, now).await?;
                let mut ev = login_event(AuditAction::Login, Outcome::Success, Some(org), Some(new.user_id))
                    .detail("method", DetailValue::Code("passkey"))
                    .detail("credential", DetailValue::Id(assertion.credential))
                    .detail("session", DetailValue::Id(session.0))
                    .detail("mfa", DetailValue::Bool(true));
                ev.device = Some(device);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Some((session, device)))
            })
        })
        .await
    }
}
