//! The risk register of the HIPAA risk analysis: entries kept by admins and compliance
//! officers, listed by score (likelihood × impact). Audited with codes, the score and ids
//! only: never the description.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, RiskId, UserId};
use ward_domain::registers::{RiskDraft, RiskStatus};

use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::vendors::check_owner;
use crate::{RequestMeta, Store, audit, now_ms};

/// A risk in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risk {
    /// Id.
    pub id: RiskId,
    /// What could go wrong.
    pub description: String,
    /// 1–5.
    pub likelihood: u8,
    /// 1–5.
    pub impact: u8,
    /// Its treatment state.
    pub status: RiskStatus,
    /// Next review (`YYYY-MM-DD`).
    pub review_on: String,
    /// Who owns it.
    pub owner_id: Option<UserId>,
    /// Unix ms.
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RiskRow {
    id: uuid::Uuid,
    description: String,
    likelihood: i64,
    impact: i64,
    status: String,
    review_on: String,
    owner_id: Option<uuid::Uuid>,
    updated_at: i64,
}

impl RiskRow {
    fn into_risk(self) -> Result<Risk> {
        let rating = |v: i64| u8::try_from(v).ok().filter(|r| (1..=5).contains(r)).ok_or(StoreError::Corrupt("risks.rating"));
        Ok(Risk {
            id: RiskId(self.id),
            description: self.description,
            likelihood: rating(self.likelihood)?,
            impact: rating(self.impact)?,
            status: self.status.parse().map_err(|_| StoreError::Corrupt("risks.status"))?,
            review_on: self.review_on,
            owner_id: self.owner_id.map(UserId),
            updated_at: self.updated_at,
        })
    }
}

const RISK_COLUMNS: &str = "id, description, likelihood, impact, status, review_on, owner_id, updated_at";

async fn risk_of(c: &mut Conn<'_>, org: OrgId, id: RiskId) -> Result<Risk> {
    fetch!(
        fetch_one,
        c,
        RiskRow,
        sqlx::AssertSqlSafe(format!("SELECT {RISK_COLUMNS} FROM risks WHERE id = $1 AND org_id = $2")),
        id.0,
        org.0
    )?
    .into_risk()
}

fn change_event(org: OrgId, actor: UserId, id: RiskId, op: &'static str, d: (u8, RiskStatus)) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::RiskChange, Outcome::Success)
        .target("risk", id)
        .detail("op", DetailValue::Code(op))
        .detail("score", DetailValue::Int(i64::from(d.0)))
        .detail("status", DetailValue::Code(d.1.as_str()));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

impl Store {
    /// The organisation's risks, highest score first, then earliest review.
    pub async fn risks(&self, org: OrgId) -> Result<Vec<Risk>> {
        self.read(move |mut c| {
            Box::pin(async move {
                fetch!(
                    fetch_all,
                    &mut c,
                    RiskRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {RISK_COLUMNS} FROM risks WHERE org_id = $1 ORDER BY likelihood * impact DESC, review_on, id"
                    )),
                    org.0
                )?
                .into_iter()
                .map(RiskRow::into_risk)
                .collect()
            })
        })
        .await
    }

    /// Adds a risk (audited `risk.change`, op `create`). The owner must be a workforce user
    /// of the organisation (`StoreError::State` otherwise).
    pub async fn create_risk(&self, org: OrgId, actor: UserId, draft: RiskDraft, owner: Option<UserId>, meta: RequestMeta) -> Result<Risk> {
        self.write(move |mut c| {
            Box::pin(async move {
                check_owner(&mut c, org, owner).await?;
                let id = RiskId::new();
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO risks (id, org_id, description, likelihood, impact, owner_id, status, review_on, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                    id.0,
                    org.0,
                    draft.description.as_str(),
                    i64::from(draft.likelihood),
                    i64::from(draft.impact),
                    owner.map(|o| o.0),
                    draft.status.as_str(),
                    draft.review_on.as_str(),
                    now
                )?;
                audit::append(&mut c, &change_event(org, actor, id, "create", (draft.score(), draft.status)), &meta).await?;
                risk_of(&mut c, org, id).await
            })
        })
        .await
    }

    /// Replaces a risk's entry (audited `risk.change`, op `update`).
    pub async fn update_risk(
        &self,
        org: OrgId,
        actor: UserId,
        id: RiskId,
        draft: RiskDraft,
        owner: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Risk> {
        self.write(move |mut c| {
            Box::pin(async move {
                risk_of(&mut c, org, id).await?;
                check_owner(&mut c, org, owner).await?;
                exec!(
                    &mut c,
                    "UPDATE risks SET description = $3, likelihood = $4, impact = $5, owner_id = $6, status = $7, review_on = $8, \
                     updated_at = $9 WHERE id = $1 AND org_id = $2",
                    id.0,
                    org.0,
                    draft.description.as_str(),
                    i64::from(draft.likelihood),
                    i64::from(draft.impact),
                    owner.map(|o| o.0),
                    draft.status.as_str(),
                    draft.review_on.as_str(),
                    now_ms()
                )?;
                audit::append(&mut c, &change_event(org, actor, id, "update", (draft.score(), draft.status)), &meta).await?;
                risk_of(&mut c, org, id).await
            })
        })
        .await
    }

    /// Removes a risk (audited `risk.change`, op `delete`).
    pub async fn delete_risk(&self, org: OrgId, actor: UserId, id: RiskId, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let r = risk_of(&mut c, org, id).await?;
                exec!(&mut c, "DELETE FROM risks WHERE id = $1 AND org_id = $2", id.0, org.0)?;
                let score = ward_domain::registers::risk_score(r.likelihood, r.impact);
                audit::append(&mut c, &change_event(org, actor, id, "delete", (score, r.status)), &meta).await?;
                Ok(())
            })
        })
        .await
    }
}

/// A completed training course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// Who completed it.
    pub user_id: UserId,
    /// The course.
    pub course: String,
    /// When (`YYYY-MM-DD`).
    pub completed_on: String,
    /// Who recorded it.
    pub recorded_by: Option<UserId>,
}

#[derive(sqlx::FromRow)]
struct TrainingRow {
    id: uuid::Uuid,
    user_id: uuid::Uuid,
    course: String,
    completed_on: String,
    recorded_by: Option<uuid::Uuid>,
}

impl Store {
    /// Records that a workforce user of the organisation completed a course
    /// (`StoreError::State` for anyone else). Audited `training.record`.
    pub async fn record_training(
        &self,
        org: OrgId,
        actor: UserId,
        user: UserId,
        course: String,
        completed_on: String,
        meta: RequestMeta,
    ) -> Result<TrainingRecord> {
        self.write(move |mut c| {
            Box::pin(async move {
                check_owner(&mut c, org, Some(user)).await?;
                let id = uuid::Uuid::now_v7();
                exec!(
                    &mut c,
                    "INSERT INTO training_records (id, org_id, user_id, course, completed_on, recorded_by, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    id,
                    org.0,
                    user.0,
                    course.as_str(),
                    completed_on.as_str(),
                    actor.0,
                    now_ms()
                )?;
                let mut ev = AuditEvent::new(AuditAction::TrainingRecord, Outcome::Success).target("user", user);
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(TrainingRecord { id, user_id: user, course, completed_on, recorded_by: Some(actor) })
            })
        })
        .await
    }

    /// Training records of the organisation (or of one user), newest completion first.
    pub async fn training_records(&self, org: OrgId, user: Option<UserId>) -> Result<Vec<TrainingRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    TrainingRow,
                    "SELECT id, user_id, course, completed_on, recorded_by FROM training_records \
                     WHERE org_id = $1 AND ($2 IS NULL OR user_id = $2) ORDER BY completed_on DESC, id",
                    org.0,
                    user.map(|u| u.0)
                )?;
                Ok(rows
                    .into_iter()
                    .map(|r| TrainingRecord {
                        id: r.id,
                        user_id: UserId(r.user_id),
                        course: r.course,
                        completed_on: r.completed_on,
                        recorded_by: r.recorded_by.map(UserId),
                    })
                    .collect())
            })
        })
        .await
    }
}
