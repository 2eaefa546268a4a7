//! Patient portal one-time sign-in links: minted by the care team for a patient account (only
//! the token's hash is kept), redeemed once before they expire.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::db::{exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::users::user_in_org;
use crate::{RequestMeta, Store, User, audit, now_ms};

/// What redeeming a link found.
#[derive(Debug, Clone)]
pub enum PortalRedemption {
    /// No live link has this token (unknown, used or expired).
    Invalid,
    /// The link was live but its account is disabled; the link is spent all the same.
    Disabled(User),
    /// The link was spent; the account may sign in.
    Redeemed(User),
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    org_id: uuid::Uuid,
    user_id: uuid::Uuid,
    patient_id: uuid::Uuid,
    expires_at: i64,
    used_at: Option<i64>,
}

impl Store {
    /// Mints a link for the patient's (enabled) account, keeping only `token_hash`, audited as
    /// `portal.link`. Fails with `State("no patient account")` when the record has none.
    pub async fn create_portal_link(
        &self,
        org: OrgId,
        actor: UserId,
        patient: PatientId,
        token_hash: Vec<u8>,
        expires_at: i64,
        meta: RequestMeta,
    ) -> Result<UserId> {
        self.write(move |mut c| {
            Box::pin(async move {
                let account = scalar!(
                    fetch_optional,
                    &mut c,
                    uuid::Uuid,
                    "SELECT id FROM users WHERE org_id = $1 AND patient_id = $2 AND role = 'patient' AND disabled_at IS NULL \
                     ORDER BY created_at LIMIT 1",
                    org.0,
                    patient.0
                )?
                .ok_or(StoreError::State("no patient account"))?;
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO portal_links (token_hash, org_id, user_id, patient_id, created_by, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    token_hash.as_slice(),
                    org.0,
                    account,
                    patient.0,
                    actor.0,
                    now,
                    expires_at
                )?;
                let mut ev = AuditEvent::new(AuditAction::PortalLink, Outcome::Success)
                    .target("user", account)
                    .patient(Some(patient))
                    .detail("op", DetailValue::Code("create"))
                    .detail("expires_at", DetailValue::Int(expires_at));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(UserId(account))
            })
        })
        .await
    }

    /// Spends a link: at most once, before it expires. A known but spent or expired link is
    /// audited as a failed `portal.link` redemption; an unknown one leaves no trace to audit.
    pub async fn redeem_portal_link(&self, token_hash: Vec<u8>, meta: RequestMeta) -> Result<PortalRedemption> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let Some(row) = fetch!(
                    fetch_optional,
                    &mut c,
                    LinkRow,
                    "SELECT org_id, user_id, patient_id, expires_at, used_at FROM portal_links WHERE token_hash = $1",
                    token_hash.as_slice()
                )?
                else {
                    return Ok(PortalRedemption::Invalid);
                };
                let org = OrgId(row.org_id);
                let user = UserId(row.user_id);
                let event = |outcome, reason: Option<&'static str>| {
                    let mut ev = AuditEvent::new(AuditAction::PortalLink, outcome)
                        .target("user", user)
                        .patient(Some(PatientId(row.patient_id)))
                        .detail("op", DetailValue::Code("redeem"));
                    if let Some(r) = reason {
                        ev = ev.detail("reason", DetailValue::Code(r));
                    }
                    ev.org_id = Some(org);
                    ev.actor = Some(user);
                    ev
                };
                let spent = exec!(
                    &mut c,
                    "UPDATE portal_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                    token_hash.as_slice(),
                    now
                )?;
                if spent == 0 {
                    let reason = if row.used_at.is_some() {
                        "used"
                    } else if row.expires_at <= now {
                        "expired"
                    } else {
                        "raced"
                    };
                    audit::append(&mut c, &event(Outcome::Failure, Some(reason)), &meta).await?;
                    return Ok(PortalRedemption::Invalid);
                }
                let account = user_in_org(&mut c, org, user).await?;
                if account.disabled {
                    audit::append(&mut c, &event(Outcome::Failure, Some("disabled")), &meta).await?;
                    return Ok(PortalRedemption::Disabled(account));
                }
                audit::append(&mut c, &event(Outcome::Success, None), &meta).await?;
                Ok(PortalRedemption::Redeemed(account))
            })
        })
        .await
    }
}
