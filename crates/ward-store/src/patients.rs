//! Patient records and their care teams.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};

use ward_crypto::{DataKey, Keyring, SealContext};

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, insert_key, open_field, purpose};
use crate::{Patient, RequestMeta, Store, audit, now_ms};

#[derive(sqlx::FromRow)]
struct PatientRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    mrn: String,
    display_name: String,
    mrn_sealed: Option<Vec<u8>>,
    name_sealed: Option<Vec<u8>>,
    created_at: i64,
    restricted: bool,
}

/// Prefix of the blind index stored in `patients.mrn` (rows written before encryption at rest
/// hold the plain MRN until the store seals them).
const MRN_INDEX_PREFIX: &str = "bi1:";

/// The blind index of an MRN under the organisation's index key.
pub(crate) fn mrn_index(index_key: &DataKey, mrn: &str) -> String {
    let mac = index_key.blind_index(purpose::MRN_INDEX, mrn.as_bytes());
    let mut out = String::with_capacity(MRN_INDEX_PREFIX.len() + 64);
    out.push_str(MRN_INDEX_PREFIX);
    for b in mac {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What a row written before encryption at rest holds in `patients.mrn`: the MRN itself. A
/// value that looks like an index never matches as a plain MRN.
fn legacy_mrn(mrn: &str, index: &str) -> String {
    if mrn.starts_with(MRN_INDEX_PREFIX) { index.to_owned() } else { mrn.to_owned() }
}

/// Where a patient's identifying fields are sealed: under the patient's own key, so that
/// shredding one patient's key reaches only that patient.
pub(crate) fn patient_context(purpose: &'static str, org: OrgId, id: PatientId) -> SealContext<'static> {
    SealContext { purpose, org: org.0, scope: id.0, record: id.0 }
}

/// The id of a patient of the organisation, or NotFound.
pub(crate) async fn patient_id_in_org(c: &mut Conn<'_>, org: OrgId, id: PatientId) -> Result<PatientId> {
    scalar!(fetch_optional, c, uuid::Uuid, "SELECT id FROM patients WHERE id = $1 AND org_id = $2", id.0, org.0)?
        .map(PatientId)
        .ok_or(StoreError::NotFound)
}

/// A patient of the organisation with the care team and identifying fields opened, or NotFound.
pub(crate) async fn patient_in_org(c: &mut Conn<'_>, ring: &Keyring, org: OrgId, id: PatientId) -> Result<Patient> {
    let r = fetch!(
        fetch_one,
        c,
        PatientRow,
        "SELECT id, org_id, mrn, display_name, mrn_sealed, name_sealed, created_at, restricted FROM patients WHERE id = $1 AND org_id = $2",
        id.0,
        org.0
    )?;
    let mrn = match &r.mrn_sealed {
        Some(sealed) => open_field(c, ring, &patient_context(purpose::PATIENT_MRN, org, id), sealed).await?,
        None => r.mrn,
    };
    let display_name = match &r.name_sealed {
        Some(sealed) => open_field(c, ring, &patient_context(purpose::PATIENT_NAME, org, id), sealed).await?,
        None => r.display_name,
    };
    let care_team = care_team(c, id).await?;
    let direct_care_team = crate::care_team_groups::direct_members(c, id).await?;
    let care_team_groups = crate::care_team_groups::attached_groups(c, org, id).await?;
    Ok(Patient {
        id: PatientId(r.id),
        org_id: OrgId(r.org_id),
        mrn,
        display_name,
        care_team,
        direct_care_team,
        care_team_groups,
        created_at: r.created_at,
        restricted: r.restricted,
    })
}

pub(crate) async fn care_team(c: &mut Conn<'_>, id: PatientId) -> Result<Vec<UserId>> {
    Ok(scalar!(fetch_all, c, uuid::Uuid, "SELECT user_id FROM care_team_members WHERE patient_id = $1 ORDER BY user_id", id.0)?
        .into_iter()
        .map(UserId)
        .collect())
}

pub(crate) async fn on_care_team(c: &mut Conn<'_>, patient: PatientId, user: UserId) -> Result<bool> {
    Ok(scalar!(fetch_optional, c, i32, "SELECT 1 FROM care_team_members WHERE patient_id = $1 AND user_id = $2", patient.0, user.0)?
        .is_some())
}

/// Makes `team` the direct members (those named in Ward); members through an attached group
/// stay, and whoever stays on the team keeps their on-call flag.
async fn set_team(c: &mut Conn<'_>, org: OrgId, id: PatientId, team: &[UserId], now: i64) -> Result<()> {
    let present = care_team(c, id).await?;
    exec!(c, "UPDATE care_team_members SET direct = FALSE WHERE patient_id = $1", id.0)?;
    for u in team {
        // Only active workforce of the same organisation can join a care team. Someone already
        // on it stays when named again even if their account was disabled since (so the team
        // can still be edited; their sessions are gone, and they can be removed).
        let ok = if present.contains(u) {
            Some(1)
        } else {
            scalar!(
                fetch_optional,
                c,
                i32,
                "SELECT 1 FROM users WHERE id = $1 AND org_id = $2 AND role <> 'patient' AND disabled_at IS NULL",
                u.0,
                org.0
            )?
        };
        if ok.is_none() {
            return Err(StoreError::State("care team members must be active staff of the organisation"));
        }
        exec!(
            c,
            "INSERT INTO care_team_members (patient_id, user_id, added_at, on_call, direct) VALUES ($1, $2, $3, FALSE, TRUE) \
             ON CONFLICT (patient_id, user_id) DO UPDATE SET direct = TRUE",
            id.0,
            u.0,
            now
        )?;
    }
    // Former direct members not in an attached group leave; the others stay through it.
    crate::care_team_groups::sync_patient(c, org, id, now).await?;
    Ok(())
}

fn patient_event(action: AuditAction, org: OrgId, actor: UserId, id: PatientId) -> AuditEvent {
    let mut ev = AuditEvent::new(action, Outcome::Success).target("patient", id).patient(Some(id));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

impl Store {
    /// Creates a patient record with its care team.
    pub async fn create_patient(
        &self,
        org: OrgId,
        actor: UserId,
        mrn: String,
        display_name: String,
        team: Vec<UserId>,
        meta: RequestMeta,
    ) -> Result<Patient> {
        let id = PatientId::new();
        let index = mrn_index(&*self.index_key(org).await?, &mrn);
        let legacy = legacy_mrn(&mrn, &index);
        let prepared = self.prepare_key(org, id.0).await?;
        let mrn_sealed = prepared.key.seal(&patient_context(purpose::PATIENT_MRN, org, id), mrn.as_bytes());
        let name_sealed = prepared.key.seal(&patient_context(purpose::PATIENT_NAME, org, id), display_name.as_bytes());
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                // Legacy rows still hold the plain MRN until sealed: they count as taken too.
                let taken = scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT id FROM patients WHERE org_id = $1 AND mrn = $2", org.0, legacy.as_str())?;
                let n = if taken.is_some() {
                    0
                } else {
                    exec!(
                        &mut c,
                        "INSERT INTO patients (id, org_id, mrn, display_name, mrn_sealed, name_sealed, created_at) VALUES ($1, $2, $3, '', $4, $5, $6) \
                         ON CONFLICT (org_id, mrn) DO NOTHING",
                        id.0,
                        org.0,
                        index.as_str(),
                        mrn_sealed.as_slice(),
                        name_sealed.as_slice(),
                        now
                    )?
                };
                if n == 0 {
                    return Err(StoreError::Conflict("patient with this MRN"));
                }
                insert_key(&mut c, org.0, ScopeKind::Patient, id.0, 1, &prepared.wrapped).await?;
                set_team(&mut c, org, id, &team, now).await?;
                let ev = patient_event(AuditAction::PatientCreate, org, actor, id).detail("care_team", DetailValue::Int(team.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                patient_in_org(&mut c, &ring, org, id).await
            })
        })
        .await
    }

    /// Reads a patient record, auditing the access.
    pub async fn read_patient(&self, org: OrgId, actor: UserId, id: PatientId, meta: RequestMeta) -> Result<Patient> {
        let ring = self.keyring().clone();
        let patient = self.read(|mut c| Box::pin(async move { patient_in_org(&mut c, &ring, org, id).await })).await?;
        self.record(patient_event(AuditAction::PatientRead, org, actor, id), meta).await?;
        Ok(patient)
    }

    /// Whether the user is on the patient's care team (NotFound if the patient is not the org's).
    pub async fn is_on_care_team(&self, org: OrgId, patient: PatientId, user: UserId) -> Result<bool> {
        self.read(|mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, patient).await?;
                on_care_team(&mut c, patient, user).await
            })
        })
        .await
    }

    /// Finds a patient by MRN within the organisation, auditing the lookup.
    pub async fn find_patient(&self, org: OrgId, actor: UserId, mrn: String, meta: RequestMeta) -> Result<Patient> {
        let index = mrn_index(&*self.index_key(org).await?, &mrn);
        let id = self
            .read(|mut c| {
                Box::pin(async move {
                    // The plain MRN matches rows written before encryption at rest, until sealed.
                    Ok(scalar!(
                        fetch_optional,
                        &mut c,
                        uuid::Uuid,
                        "SELECT id FROM patients WHERE org_id = $1 AND (mrn = $2 OR mrn = $3)",
                        org.0,
                        index.as_str(),
                        legacy_mrn(&mrn, &index)
                    )?)
                })
            })
            .await?;
        match id {
            Some(id) => self.read_patient(org, actor, PatientId(id), meta).await,
            None => {
                let mut ev = AuditEvent::new(AuditAction::PatientRead, Outcome::Failure).detail("reason", DetailValue::Code("no_match"));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                self.record(ev, meta).await?;
                Err(StoreError::NotFound)
            }
        }
    }

    /// Flags a patient as restricted (staff member, VIP), or clears the flag: any access to a
    /// restricted patient's records raises an alert. Audited with the new value.
    pub async fn set_patient_restricted(
        &self,
        org: OrgId,
        actor: UserId,
        id: PatientId,
        restricted: bool,
        meta: RequestMeta,
    ) -> Result<Patient> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, id).await?;
                exec!(&mut c, "UPDATE patients SET restricted = $2 WHERE id = $1", id.0, restricted)?;
                let ev = patient_event(AuditAction::PatientRestrict, org, actor, id).detail("restricted", DetailValue::Bool(restricted));
                audit::append(&mut c, &ev, &meta).await?;
                patient_in_org(&mut c, &ring, org, id).await
            })
        })
        .await
    }

    /// Whether the patient is flagged as restricted (false for an unknown id).
    pub async fn patient_restricted(&self, id: PatientId) -> Result<bool> {
        self.read(|mut c| {
            Box::pin(async move {
                Ok(scalar!(fetch_optional, &mut c, bool, "SELECT restricted FROM patients WHERE id = $1", id.0)?.unwrap_or(false))
            })
        })
        .await
    }

    /// Whether the patient was flagged as restricted just before audit index `before`, from
    /// the `patient.restrict` events (`None` if the flag was never set or cleared).
    pub async fn patient_restricted_before(&self, id: PatientId, before: i64) -> Result<Option<bool>> {
        let detail = self
            .read(|mut c| {
                Box::pin(async move {
                    Ok(scalar!(
                        fetch_optional,
                        &mut c,
                        String,
                        "SELECT detail FROM audit_events WHERE patient_id = $1 AND idx < $2 AND action = $3 AND outcome = 'success' \
                         ORDER BY idx DESC LIMIT 1",
                        id.0,
                        before,
                        AuditAction::PatientRestrict.as_str()
                    )?)
                })
            })
            .await?;
        let Some(detail) = detail else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&detail).map_err(|_| StoreError::Corrupt("audit_events.detail"))?;
        v["restricted"].as_bool().map(Some).ok_or(StoreError::Corrupt("patient.restrict detail"))
    }

    /// Replaces the direct members of a patient's care team (members through an attached SCIM
    /// group stay: docs/identity.md, "Care teams from groups").
    pub async fn set_care_team(&self, org: OrgId, actor: UserId, id: PatientId, team: Vec<UserId>, meta: RequestMeta) -> Result<Patient> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, id).await?;
                set_team(&mut c, org, id, &team, now_ms()).await?;
                let ev = patient_event(AuditAction::CareTeam, org, actor, id).detail("care_team", DetailValue::Int(team.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                patient_in_org(&mut c, &ring, org, id).await
            })
        })
        .await
    }
}
