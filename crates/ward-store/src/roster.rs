//! HR roster reconciliation: the snapshot of workforce accounts, live sessions and devices
//! that `ward_domain::roster::reconcile` compares with a roster, and the remediation of one
//! flagged account (disable, revoke, wipe), each step audited in one transaction.

use std::collections::HashMap;

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, OrgId, SessionId, UserId};
use ward_domain::role::Role;
use ward_domain::roster::{AccountSnapshot, DeviceSnapshot, FlagReason};

use crate::db::{exec, fetch};
use crate::devices::{NO_WIPE_CHANNEL, wipe_user_devices};
use crate::error::{Result, StoreError};
use crate::sessions::revoke_user_sessions;
use crate::users::user_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// The wipe reason roster remediation records.
pub const ROSTER_WIPE_REASON: &str = "deprovisioned: roster";

/// What remediation did to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationStep {
    /// The account.
    pub user_id: UserId,
    /// Disabled now (false: it already was).
    pub disabled: bool,
    /// Sessions revoked now (their connections should close).
    pub revoked_sessions: Vec<SessionId>,
    /// Devices a wipe was queued for now.
    pub wipes_queued: Vec<DeviceId>,
    /// Of those, devices that never registered: their wipes are closed as `no_wipe_channel`.
    pub no_wipe_channel: Vec<DeviceId>,
}

impl RemediationStep {
    /// Whether anything changed (a second run changes nothing).
    pub fn changed(&self) -> bool {
        self.disabled || !self.revoked_sessions.is_empty() || !self.wipes_queued.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: uuid::Uuid,
    login: String,
    role: String,
    disabled_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SessionCountRow {
    user_id: uuid::Uuid,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: uuid::Uuid,
    user_id: uuid::Uuid,
    revoked: bool,
    channel: bool,
    pending: bool,
}

fn reason_code(r: FlagReason) -> &'static str {
    match r {
        FlagReason::Terminated => "terminated",
        FlagReason::NotOnRoster => "not_on_roster",
    }
}

impl Store {
    /// The organisation's workforce accounts (patients excluded) with their live sessions and
    /// devices, for `ward_domain::roster::reconcile`.
    pub async fn roster_snapshot(&self, org: OrgId) -> Result<Vec<AccountSnapshot>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let users = fetch!(
                    fetch_all,
                    &mut c,
                    AccountRow,
                    "SELECT id, login, role, disabled_at FROM users WHERE org_id = $1 AND role <> 'patient' ORDER BY login",
                    org.0
                )?;
                let sessions = fetch!(
                    fetch_all,
                    &mut c,
                    SessionCountRow,
                    "SELECT user_id, COUNT(*) AS n FROM sessions WHERE org_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                     GROUP BY user_id",
                    org.0,
                    now
                )?;
                let devices = fetch!(
                    fetch_all,
                    &mut c,
                    DeviceRow,
                    "SELECT d.id, d.user_id, d.revoked_at IS NOT NULL AS revoked, d.wipe_secret_hash IS NOT NULL AS channel, \
                     (w.id IS NOT NULL AND w.acknowledged_at IS NULL AND w.closed_reason IS NULL) AS pending \
                     FROM devices d JOIN users u ON u.id = d.user_id LEFT JOIN device_wipes w ON w.device_id = d.id \
                     WHERE u.org_id = $1 AND u.role <> 'patient' ORDER BY d.id",
                    org.0
                )?;
                let live: HashMap<uuid::Uuid, i64> = sessions.into_iter().map(|r| (r.user_id, r.n)).collect();
                let mut by_user: HashMap<uuid::Uuid, Vec<DeviceSnapshot>> = HashMap::new();
                for d in devices {
                    by_user.entry(d.user_id).or_default().push(DeviceSnapshot {
                        id: DeviceId(d.id),
                        revoked: d.revoked,
                        wipe_channel: d.channel,
                        wipe_pending: d.pending,
                    });
                }
                users
                    .into_iter()
                    .map(|u| {
                        Ok(AccountSnapshot {
                            user_id: UserId(u.id),
                            login: u.login,
                            role: u.role.parse().map_err(|_| StoreError::Corrupt("users.role"))?,
                            disabled: u.disabled_at.is_some(),
                            live_sessions: u32::try_from(live.get(&u.id).copied().unwrap_or(0)).unwrap_or(u32::MAX),
                            devices: by_user.remove(&u.id).unwrap_or_default(),
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// Remediates one flagged workforce account in one transaction: disables it (audited
    /// `admin.user_disable`), revokes every session, queues a wipe to each device not yet
    /// revoked (each audited `device.wipe`, reason `deprovisioned: roster`) and audits the
    /// step as `roster.remediate`. Running it again changes nothing and audits nothing.
    /// `actor` is the administrator, `None` for the command line.
    pub async fn remediate_roster_account(
        &self,
        org: OrgId,
        user: UserId,
        reason: FlagReason,
        actor: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<RemediationStep> {
        self.write(move |mut c| {
            Box::pin(async move {
                let account = user_in_org(&mut c, org, user).await?;
                if !account.role.is_workforce() {
                    return Err(StoreError::State("roster remediation applies to workforce accounts only"));
                }
                if account.role == Role::Admin && !account.disabled {
                    crate::users::keep_another_admin(&mut c, org, user).await?;
                }
                let now = now_ms();
                let disabled =
                    exec!(&mut c, "UPDATE users SET disabled_at = $2, updated_at = $2 WHERE id = $1 AND disabled_at IS NULL", user.0, now)?
                        == 1;
                exec!(&mut c, "DELETE FROM device_push_tokens WHERE user_id = $1", user.0)?;
                crate::care_team_groups::sync_user(&mut c, org, user, now, "roster", &meta).await?;
                // Wipes first, so each device's wipe event counts the sessions it revoked.
                let requested = wipe_user_devices(&mut c, org, user, actor, ROSTER_WIPE_REASON, now, &meta).await?;
                let mut revoked_sessions: Vec<_> = requested.iter().flat_map(|w| w.revoked_sessions.iter().copied()).collect();
                revoked_sessions.extend(revoke_user_sessions(&mut c, user, None, "user_disabled", now).await?);
                let wipes: Vec<_> = requested.into_iter().map(|w| w.wipe).collect();
                let step = RemediationStep {
                    user_id: user,
                    disabled,
                    revoked_sessions,
                    wipes_queued: wipes.iter().map(|w| w.device_id).collect(),
                    no_wipe_channel: wipes
                        .iter()
                        .filter(|w| w.closed_reason.as_deref() == Some(NO_WIPE_CHANNEL))
                        .map(|w| w.device_id)
                        .collect(),
                };
                if !step.changed() {
                    return Ok(step);
                }
                if disabled {
                    let mut ev = AuditEvent::new(AuditAction::UserDisable, Outcome::Success)
                        .target("user", user)
                        .detail("via", DetailValue::Code("roster"))
                        .detail("sessions_revoked", DetailValue::Int(step.revoked_sessions.len() as i64))
                        .detail("wipes_queued", DetailValue::Int(wipes.len() as i64));
                    ev.org_id = Some(org);
                    ev.actor = actor;
                    audit::append(&mut c, &ev, &meta).await?;
                }
                let mut ev = AuditEvent::new(AuditAction::RosterRemediate, Outcome::Success)
                    .target("user", user)
                    .detail("reason", DetailValue::Code(reason_code(reason)))
                    .detail("disabled", DetailValue::Bool(disabled))
                    .detail("sessions_revoked", DetailValue::Int(step.revoked_sessions.len() as i64))
                    .detail("wipes_queued", DetailValue::Int(wipes.len() as i64))
                    .detail("no_wipe_channel", DetailValue::Int(step.no_wipe_channel.len() as i64));
                ev.org_id = Some(org);
                ev.actor = actor;
                audit::append(&mut c, &ev, &meta).await?;
                Ok(step)
            })
        })
        .await
    }
}
