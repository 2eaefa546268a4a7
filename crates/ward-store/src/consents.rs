//! The consent registry: per patient and channel, an append-only history of grants. A grant
//! ends once (revoked, or superseded by a newer grant for the same channel) and is never
//! deleted or otherwise changed, so the history stays readable as evidence.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::{ConsentChannel, ConsentGrant};
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::patients::patient_id_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// Why a grant stopped being current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentEnd {
    /// The patient (or someone for them) revoked it.
    Revoked,
    /// A newer grant for the same channel replaced it (a new warning text version, say).
    Superseded,
}

impl ConsentEnd {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentEnd::Revoked => "revoked",
            ConsentEnd::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Option<ConsentEnd> {
        [ConsentEnd::Revoked, ConsentEnd::Superseded].into_iter().find(|e| e.as_str() == s)
    }
}

/// One consent grant, current or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// The patient.
    pub patient_id: PatientId,
    /// The channel consented to.
    pub channel: ConsentChannel,
    /// The version of the risk-warning text shown (always set for unsecured PHI).
    pub warning_version: Option<String>,
    /// The patient's explicit statement that they insist (unsecured PHI).
    pub patient_insists: bool,
    /// When it was recorded (Unix ms).
    pub recorded_at: i64,
    /// Who recorded it (the patient themself, or a member of the workforce).
    pub recorded_by: UserId,
    /// When it ended (Unix ms); `None` while current.
    pub revoked_at: Option<i64>,
    /// Who ended it.
    pub revoked_by: Option<UserId>,
    /// How it ended.
    pub end_reason: Option<ConsentEnd>,
}

impl Consent {
    /// Whether the grant is in force.
    pub fn is_current(&self) -> bool {
        self.revoked_at.is_none()
    }
}

#[derive(sqlx::FromRow)]
struct ConsentRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    patient_id: uuid::Uuid,
    channel: String,
    warning_version: Option<String>,
    patient_insists: bool,
    recorded_at: i64,
    recorded_by: uuid::Uuid,
    revoked_at: Option<i64>,
    revoked_by: Option<uuid::Uuid>,
    end_reason: Option<String>,
}

const CONSENT_COLUMNS: &str =
    "id, org_id, patient_id, channel, warning_version, patient_insists, recorded_at, recorded_by, revoked_at, revoked_by, end_reason";

impl ConsentRow {
    fn into_consent(self) -> Result<Consent> {
        Ok(Consent {
            id: self.id,
            org_id: OrgId(self.org_id),
            patient_id: PatientId(self.patient_id),
            channel: ConsentChannel::parse(&self.channel).ok_or(StoreError::Corrupt("consents.channel"))?,
            warning_version: self.warning_version,
            patient_insists: self.patient_insists,
            recorded_at: self.recorded_at,
            recorded_by: UserId(self.recorded_by),
            revoked_at: self.revoked_at,
            revoked_by: self.revoked_by.map(UserId),
            end_reason: match self.end_reason {
                None => None,
                Some(e) => Some(ConsentEnd::parse(&e).ok_or(StoreError::Corrupt("consents.end_reason"))?),
            },
        })
    }
}

/// The current grant for a patient and channel, if any (tenancy checked by the caller).
pub(crate) async fn current_consent(c: &mut Conn<'_>, org: OrgId, patient: PatientId, channel: ConsentChannel) -> Result<Option<Consent>> {
    let sql =
        format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE org_id = $1 AND patient_id = $2 AND channel = $3 AND revoked_at IS NULL");
    fetch!(fetch_optional, c, ConsentRow, sqlx::AssertSqlSafe(sql), org.0, patient.0, channel.as_str())?
        .map(ConsentRow::into_consent)
        .transpose()
}

/// Ends the current grant (if any) as of `now`; returns its id.
async fn end_current(
    c: &mut Conn<'_>,
    org: OrgId,
    patient: PatientId,
    channel: ConsentChannel,
    actor: UserId,
    now: i64,
    why: ConsentEnd,
) -> Result<Option<uuid::Uuid>> {
    let Some(cur) = current_consent(c, org, patient, channel).await? else { return Ok(None) };
    // Only the end columns change, and only while they are empty: a grant ends once.
    exec!(
        c,
        "UPDATE consents SET revoked_at = $2, revoked_by = $3, end_reason = $4 WHERE id = $1 AND revoked_at IS NULL",
        cur.id,
        now,
        actor.0,
        why.as_str()
    )?;
    Ok(Some(cur.id))
}

fn consent_event(action: AuditAction, org: OrgId, actor: UserId, patient: PatientId, channel: ConsentChannel) -> AuditEvent {
    let mut ev = AuditEvent::new(action, Outcome::Success)
        .target("patient", patient)
        .patient(Some(patient))
        .detail("channel", DetailValue::Code(channel.as_str()));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

impl Store {
    /// Records a grant for the patient, superseding the current grant for the channel if there
    /// is one. Audited (channel and ids only).
    pub async fn record_consent(
        &self,
        org: OrgId,
        actor: UserId,
        patient: PatientId,
        grant: ConsentGrant,
        meta: RequestMeta,
    ) -> Result<Consent> {
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, patient).await?;
                let now = now_ms();
                let superseded = end_current(&mut c, org, patient, grant.channel, actor, now, ConsentEnd::Superseded).await?;
                let id = uuid::Uuid::now_v7();
                exec!(
                    &mut c,
                    "INSERT INTO consents (id, org_id, patient_id, channel, warning_version, patient_insists, recorded_at, recorded_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    id,
                    org.0,
                    patient.0,
                    grant.channel.as_str(),
                    grant.warning_version.clone(),
                    grant.patient_insists,
                    now,
                    actor.0
                )?;
                let mut ev = consent_event(AuditAction::ConsentRecord, org, actor, patient, grant.channel)
                    .detail("consent", DetailValue::Id(id))
                    .detail("insists", DetailValue::Bool(grant.patient_insists));
                if let Some(old) = superseded {
                    ev = ev.detail("superseded", DetailValue::Id(old));
                }
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Consent {
                    id,
                    org_id: org,
                    patient_id: patient,
                    channel: grant.channel,
                    warning_version: grant.warning_version,
                    patient_insists: grant.patient_insists,
                    recorded_at: now,
                    recorded_by: actor,
                    revoked_at: None,
                    revoked_by: None,
                    end_reason: None,
                })
            })
        })
        .await
    }

    /// Revokes the patient's current grant for the channel; returns the ended grant.
    /// [`StoreError::State`] if there is none. Audited.
    pub async fn revoke_consent(
        &self,
        org: OrgId,
        actor: UserId,
        patient: PatientId,
        channel: ConsentChannel,
        meta: RequestMeta,
    ) -> Result<Consent> {
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, patient).await?;
                let Some(id) = end_current(&mut c, org, patient, channel, actor, now_ms(), ConsentEnd::Revoked).await? else {
                    return Err(StoreError::State("there is no current consent for this channel"));
                };
                let ev = consent_event(AuditAction::ConsentRevoke, org, actor, patient, channel).detail("consent", DetailValue::Id(id));
                audit::append(&mut c, &ev, &meta).await?;
                // Nothing queued for this channel may go out once consent is gone.
                crate::delivery::cancel_for_revoked_consent(&mut c, org, patient, channel).await?;
                let sql = format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE id = $1");
                fetch!(fetch_one, &mut c, ConsentRow, sqlx::AssertSqlSafe(sql), id)?.into_consent()
            })
        })
        .await
    }

    /// Every grant for the patient, newest first (current and ended). Audited as a read.
    pub async fn consent_history(&self, org: OrgId, actor: UserId, patient: PatientId, meta: RequestMeta) -> Result<Vec<Consent>> {
        let rows = self
            .read(move |mut c| {
                Box::pin(async move {
                    patient_id_in_org(&mut c, org, patient).await?;
                    let sql = format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE org_id = $1 AND patient_id = $2 ORDER BY recorded_at DESC, id DESC"
                    );
                    Ok(fetch!(fetch_all, &mut c, ConsentRow, sqlx::AssertSqlSafe(sql), org.0, patient.0)?)
                })
            })
            .await?;
        let history = rows.into_iter().map(ConsentRow::into_consent).collect::<Result<Vec<_>>>()?;
        let mut ev = AuditEvent::new(AuditAction::ConsentRead, Outcome::Success)
            .target("patient", patient)
            .patient(Some(patient))
            .detail("records", DetailValue::Int(history.len() as i64));
        ev.org_id = Some(org);
        ev.actor = Some(actor);
        self.record(ev, meta).await?;
        Ok(history)
    }

    /// The patient's current grant for the channel, if any (NotFound for another tenant's patient).
    pub async fn current_consent(&self, org: OrgId, patient: PatientId, channel: ConsentChannel) -> Result<Option<Consent>> {
        self.read(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, patient).await?;
                current_consent(&mut c, org, patient, channel).await
            })
        })
        .await
    }
}
