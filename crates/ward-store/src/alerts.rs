//! Anomaly alerts: per-organisation rules, the alerts raised (each with its `alert.raised`
//! audit event, in the same transaction) and the evaluator's cursor in the audit log.

use ward_domain::alerts::{AlertRules, Finding, RuleCode};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, audit, now_ms};

/// A stored alert. Ids and numbers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Id.
    pub id: uuid::Uuid,
    /// Organisation.
    pub org_id: OrgId,
    /// The rule that raised it.
    pub rule: RuleCode,
    /// Unix ms.
    pub raised_at: i64,
    /// The user concerned.
    pub subject_user: Option<UserId>,
    /// The patient concerned.
    pub subject_patient: Option<PatientId>,
    /// The count observed in the window.
    pub observed: Option<i64>,
    /// The threshold in force.
    pub threshold: Option<i64>,
    /// The window in minutes.
    pub window_minutes: Option<i64>,
    /// The audit event that tripped the rule.
    pub trigger_idx: i64,
    /// The alert's own `alert.raised` audit event (also the paging cursor).
    pub audit_idx: i64,
    /// When it was acknowledged (Unix ms).
    pub acknowledged_at: Option<i64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<UserId>,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    rule: String,
    raised_at: i64,
    subject_user_id: Option<uuid::Uuid>,
    subject_patient_id: Option<uuid::Uuid>,
    observed: Option<i64>,
    threshold: Option<i64>,
    window_minutes: Option<i64>,
    trigger_idx: i64,
    audit_idx: i64,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<uuid::Uuid>,
}

const ALERT_COLUMNS: &str = "id, org_id, rule, raised_at, subject_user_id, subject_patient_id, observed, threshold, window_minutes, \
     trigger_idx, audit_idx, acknowledged_at, acknowledged_by";

impl AlertRow {
    fn into_alert(self) -> Result<Alert> {
        Ok(Alert {
            id: self.id,
            org_id: OrgId(self.org_id),
            rule: RuleCode::parse(&self.rule).ok_or(StoreError::Corrupt("audit_alerts.rule"))?,
            raised_at: self.raised_at,
            subject_user: self.subject_user_id.map(UserId),
            subject_patient: self.subject_patient_id.map(PatientId),
            observed: self.observed,
            threshold: self.threshold,
            window_minutes: self.window_minutes,
            trigger_idx: self.trigger_idx,
            audit_idx: self.audit_idx,
            acknowledged_at: self.acknowledged_at,
            acknowledged_by: self.acknowledged_by.map(UserId),
        })
    }
}

/// A finding to record, with the index of the audit event that tripped it.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// What the rules found.
    pub finding: Finding,
    /// The audit event that tripped the rule.
    pub trigger_idx: i64,
}

/// Records one alert with its `alert.raised` audit event.
pub(crate) async fn insert_alert(c: &mut Conn<'_>, a: NewAlert) -> Result<Alert> {
    let f = a.finding;
    let id = uuid::Uuid::now_v7();
    let mut ev = AuditEvent::new(AuditAction::AlertRaised, Outcome::Success)
        .target("alert", id)
        .patient(f.subject_patient)
        .detail("rule", DetailValue::Code(f.rule.as_str()))
        .detail("trigger_idx", DetailValue::Int(a.trigger_idx));
    if let Some(u) = f.subject_user {
        ev = ev.detail("subject_user", DetailValue::Id(u.0));
    }
    for (k, v) in [("count", f.count), ("threshold", f.threshold), ("window_minutes", f.window_minutes)] {
        if let Some(v) = v {
            ev = ev.detail(k, DetailValue::Int(i64::from(v)));
        }
    }
    ev.org_id = Some(f.org);
    let audit_idx = audit::append(c, &ev, &RequestMeta::default()).await?;
    let alert = Alert {
        id,
        org_id: f.org,
        rule: f.rule,
        raised_at: now_ms(),
        subject_user: f.subject_user,
        subject_patient: f.subject_patient,
        observed: f.count.map(i64::from),
        threshold: f.threshold.map(i64::from),
        window_minutes: f.window_minutes.map(i64::from),
        trigger_idx: a.trigger_idx,
        audit_idx,
        acknowledged_at: None,
        acknowledged_by: None,
    };
    exec!(
        c,
        "INSERT INTO audit_alerts (id, org_id, rule, raised_at, subject_user_id, subject_patient_id, observed, threshold, \
         window_minutes, trigger_idx, audit_idx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        alert.id,
        alert.org_id.0,
        alert.rule.as_str(),
        alert.raised_at,
        alert.subject_user.map(|u| u.0),
        alert.subject_patient.map(|p| p.0),
        alert.observed,
        alert.threshold,
        alert.window_minutes,
        alert.trigger_idx,
        alert.audit_idx
    )?;
    Ok(alert)
}

impl Store {
    /// The organisation's alert rules (the defaults if it never set any).
    pub async fn alert_rules(&self, org: OrgId) -> Result<AlertRules> {
        let json = self
            .read(|mut c| {
                Box::pin(
                    async move { Ok(scalar!(fetch_optional, &mut c, String, "SELECT rules FROM alert_rules WHERE org_id = $1", org.0)?) },
                )
            })
            .await?;
        match json {
            None => Ok(AlertRules::default()),
            Some(j) => serde_json::from_str(&j).map_err(|_| StoreError::Corrupt("alert_rules.rules")),
        }
    }

    /// Replaces the organisation's alert rules (validated), audited as an org policy change.
    pub async fn set_alert_rules(&self, org: OrgId, actor: UserId, rules: AlertRules, meta: RequestMeta) -> Result<AlertRules> {
        rules.validate()?;
        let json = serde_json::to_string(&rules).map_err(|_| StoreError::State("alert rules cannot be encoded"))?;
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO alert_rules (org_id, rules, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (org_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                    org.0,
                    json,
                    now_ms()
                )?;
                let mut ev = AuditEvent::new(AuditAction::OrgPolicy, Outcome::Success)
                    .target("org", org)
                    .detail("op", DetailValue::Code("alert_rules"))
                    .detail("rules_enabled", DetailValue::Int(rules.enabled_count()));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(rules)
            })
        })
        .await
    }

    /// The next audit index the alert evaluator will read.
    pub async fn alert_cursor(&self) -> Result<i64> {
        self.read(|mut c| Box::pin(async move { Ok(scalar!(fetch_one, &mut c, i64, "SELECT next_idx FROM alert_cursor WHERE id = 1")?) }))
            .await
    }

    /// Records what the evaluator found in the events `[from, to)` and moves its cursor to
    /// `to`, in one transaction: each alert with its `alert.raised` audit event. Fails with
    /// [`StoreError::Conflict`] if the cursor is no longer at `from` (another node got there
    /// first), so no event is evaluated twice.
    pub async fn raise_alerts(&self, from: i64, to: i64, alerts: Vec<NewAlert>) -> Result<Vec<Alert>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let moved = exec!(&mut c, "UPDATE alert_cursor SET next_idx = $2 WHERE id = 1 AND next_idx = $1", from, to)?;
                if moved == 0 {
                    return Err(StoreError::Conflict("alert cursor"));
                }
                let mut out = Vec::with_capacity(alerts.len());
                for a in alerts {
                    out.push(insert_alert(&mut c, a).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// The organisation's alerts, newest first, before the cursor `before` (an `audit_idx`),
    /// at most `limit`; only unacknowledged ones if asked.
    pub async fn alerts(&self, org: OrgId, before: Option<i64>, unacknowledged: bool, limit: i64) -> Result<Vec<Alert>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {ALERT_COLUMNS} FROM audit_alerts WHERE org_id = $1 AND audit_idx < $2 \
                     AND ($3 = 0 OR acknowledged_at IS NULL) ORDER BY audit_idx DESC LIMIT $4"
                );
                fetch!(
                    fetch_all,
                    &mut c,
                    AlertRow,
                    sqlx::AssertSqlSafe(sql),
                    org.0,
                    before.unwrap_or(i64::MAX),
                    i32::from(unacknowledged),
                    limit
                )?
                .into_iter()
                .map(AlertRow::into_alert)
                .collect()
            })
        })
        .await
    }

    /// Acknowledges an alert of the organisation, audited. Acknowledging again changes
    /// nothing (the first acknowledgement stands) but is audited too.
    pub async fn acknowledge_alert(&self, org: OrgId, actor: UserId, id: uuid::Uuid, meta: RequestMeta) -> Result<Alert> {
        self.write(move |mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    AlertRow,
                    sqlx::AssertSqlSafe(format!("SELECT {ALERT_COLUMNS} FROM audit_alerts WHERE id = $1 AND org_id = $2")),
                    id,
                    org.0
                )?
                .ok_or(StoreError::NotFound)?;
                let mut alert = row.into_alert()?;
                let already = alert.acknowledged_at.is_some();
                if !already {
                    let now = now_ms();
                    exec!(&mut c, "UPDATE audit_alerts SET acknowledged_at = $2, acknowledged_by = $3 WHERE id = $1", id, now, actor.0)?;
                    alert.acknowledged_at = Some(now);
                    alert.acknowledged_by = Some(actor);
                }
                let mut ev = AuditEvent::new(AuditAction::AlertAcknowledge, Outcome::Success)
                    .target("alert", id)
                    .detail("rule", DetailValue::Code(alert.rule.as_str()))
                    .detail("already", DetailValue::Bool(already));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(alert)
            })
        })
        .await
    }

    /// The active compliance officers of an organisation (who receive alerts).
    pub async fn compliance_officers(&self, org: OrgId) -> Result<Vec<UserId>> {
        self.read(|mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_all,
                    &mut c,
                    uuid::Uuid,
                    "SELECT id FROM users WHERE org_id = $1 AND role = $2 AND disabled_at IS NULL ORDER BY id",
                    org.0,
                    Role::ComplianceOfficer.as_str()
                )?
                .into_iter()
                .map(UserId)
                .collect())
            })
        })
        .await
    }

    /// A user's current role, if the user exists.
    pub async fn user_role(&self, user: UserId) -> Result<Option<Role>> {
        let role = self
            .read(|mut c| {
                Box::pin(async move { Ok(scalar!(fetch_optional, &mut c, String, "SELECT role FROM users WHERE id = $1", user.0)?) })
            })
            .await?;
        role.map(|r| r.parse().map_err(|_| StoreError::Corrupt("users.role"))).transpose()
    }
}
