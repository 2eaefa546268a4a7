//! Care teams from SCIM groups (docs/identity.md, "Care teams from groups").
//!
//! The identity provider manages team groups ("Cardiology ward 3") and never sees a patient.
//! In Ward, someone allowed to edit a patient's care team attaches groups to it; every active
//! workforce member of an attached group is then on the care team. `care_team_members` stays
//! the effective care team, with `direct` telling who was named in Ward: a row with
//! `direct = FALSE` exists only because of an attached group, and [`sync_patient`] makes the
//! rows match the groups again after any change (group membership, attach and detach, a
//! direct change, a group deleted, an account disabled, deleted or enabled), in the same
//! transaction as the change. A member who leaves this way loses their on-call flag with the
//! row; a direct member, or a member through another attached group, stays with theirs.

use std::collections::{BTreeMap, BTreeSet};

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::patients::{patient_id_in_org, patient_in_org};
use crate::{AttachedGroup, Patient, RequestMeta, Store, audit, now_ms};

/// Refusal: a group id names no SCIM group of the organisation.
pub const UNKNOWN_GROUP: &str = "group_ids: a value names no SCIM group of this organisation";
/// The most groups one care team may have attached.
pub const MAX_CARE_TEAM_GROUPS: usize = 20;

#[derive(sqlx::FromRow)]
struct Row {
    user_id: uuid::Uuid,
    direct: bool,
}

#[derive(sqlx::FromRow)]
struct GroupMemberRow {
    group_id: uuid::Uuid,
    display_name: String,
    attached_at: i64,
    user_id: Option<uuid::Uuid>,
}

/// Who counts as a member of a group for a care team: an account of the organisation, not a
/// patient's, not disabled, not deleted through SCIM.
const ACTIVE_WORKFORCE: &str = "u.org_id = $2 AND u.role <> 'patient' AND u.disabled_at IS NULL AND u.scim_deleted_at IS NULL";

/// Makes the group-derived rows of a patient's care team match its attached groups. Returns
/// (joined, left).
pub(crate) async fn sync_patient(c: &mut Conn<'_>, org: OrgId, patient: PatientId, now: i64) -> Result<(usize, usize)> {
    let sql = format!(
        "SELECT DISTINCT m.user_id FROM care_team_groups cg JOIN scim_group_members m ON m.group_id = cg.group_id \
         JOIN users u ON u.id = m.user_id WHERE cg.patient_id = $1 AND {ACTIVE_WORKFORCE}"
    );
    let derived: BTreeSet<uuid::Uuid> =
        scalar!(fetch_all, c, uuid::Uuid, sqlx::AssertSqlSafe(sql), patient.0, org.0)?.into_iter().collect();
    let rows = fetch!(fetch_all, c, Row, "SELECT user_id, direct FROM care_team_members WHERE patient_id = $1", patient.0)?;
    let present: BTreeSet<uuid::Uuid> = rows.iter().map(|r| r.user_id).collect();
    let mut left = 0;
    for r in rows.iter().filter(|r| !r.direct && !derived.contains(&r.user_id)) {
        exec!(c, "DELETE FROM care_team_members WHERE patient_id = $1 AND user_id = $2 AND NOT direct", patient.0, r.user_id)?;
        left += 1;
    }
    let mut joined = 0;
    for u in derived.difference(&present) {
        exec!(
            c,
            "INSERT INTO care_team_members (patient_id, user_id, added_at, on_call, direct) VALUES ($1, $2, $3, FALSE, FALSE)",
            patient.0,
            *u,
            now
        )?;
        joined += 1;
    }
    Ok((joined, left))
}

/// Re-syncs every care team the group is attached to; returns how many.
pub(crate) async fn sync_group(c: &mut Conn<'_>, org: OrgId, group: uuid::Uuid, now: i64) -> Result<usize> {
    let patients = scalar!(fetch_all, c, uuid::Uuid, "SELECT patient_id FROM care_team_groups WHERE group_id = $1", group)?;
    for p in &patients {
        sync_patient(c, org, PatientId(*p), now).await?;
    }
    Ok(patients.len())
}

/// Re-syncs every care team the account is on through a group or could join through one
/// (after it was disabled, enabled, deleted or changed).
pub(crate) async fn sync_user(c: &mut Conn<'_>, org: OrgId, user: UserId, now: i64) -> Result<()> {
    let patients = scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT patient_id FROM care_team_members WHERE user_id = $1 AND NOT direct \
         UNION SELECT cg.patient_id FROM care_team_groups cg JOIN scim_group_members m ON m.group_id = cg.group_id WHERE m.user_id = $1",
        user.0
    )?;
    for p in patients {
        sync_patient(c, org, PatientId(p), now).await?;
    }
    Ok(())
}

/// Detaches a group about to be deleted from every care team, auditing each
/// (`patient.care_team`, op `group_detach`, via `scim_group_delete`). Returns how many.
pub(crate) async fn detach_deleted_group(
    c: &mut Conn<'_>,
    org: OrgId,
    group: uuid::Uuid,
    token: uuid::Uuid,
    meta: &RequestMeta,
) -> Result<usize> {
    let patients = scalar!(fetch_all, c, uuid::Uuid, "SELECT patient_id FROM care_team_groups WHERE group_id = $1", group)?;
    exec!(c, "DELETE FROM care_team_groups WHERE group_id = $1", group)?;
    let now = now_ms();
    for p in &patients {
        let patient = PatientId(*p);
        let (_, left) = sync_patient(c, org, patient, now).await?;
        let mut ev = AuditEvent::new(AuditAction::CareTeam, Outcome::Success)
            .target("patient", patient)
            .patient(Some(patient))
            .detail("op", DetailValue::Code("group_detach"))
            .detail("group", DetailValue::Id(group))
            .detail("via", DetailValue::Code("scim_group_delete"))
            .detail("token", DetailValue::Id(token))
            .detail("left", DetailValue::Int(left as i64));
        ev.org_id = Some(org);
        audit::append(c, &ev, meta).await?;
    }
    Ok(patients.len())
}

/// The groups attached to a patient's care team, by name, each with its members who count.
pub(crate) async fn attached_groups(c: &mut Conn<'_>, org: OrgId, patient: PatientId) -> Result<Vec<AttachedGroup>> {
    let sql = format!(
        "SELECT g.id AS group_id, g.display_name, cg.attached_at, u.id AS user_id FROM care_team_groups cg \
         JOIN scim_groups g ON g.id = cg.group_id \
         LEFT JOIN scim_group_members m ON m.group_id = g.id \
         LEFT JOIN users u ON u.id = m.user_id AND {ACTIVE_WORKFORCE} \
         WHERE cg.patient_id = $1 ORDER BY g.display_name, g.id, u.id"
    );
    let rows = fetch!(fetch_all, c, GroupMemberRow, sqlx::AssertSqlSafe(sql), patient.0, org.0)?;
    let mut out: Vec<AttachedGroup> = Vec::new();
    for r in rows {
        if out.last().is_none_or(|g| g.id != r.group_id) {
            out.push(AttachedGroup { id: r.group_id, display_name: r.display_name, attached_at: r.attached_at, members: Vec::new() });
        }
        if let (Some(u), Some(g)) = (r.user_id, out.last_mut()) {
            g.members.push(UserId(u));
        }
    }
    Ok(out)
}

/// The members named in Ward (not through a group).
pub(crate) async fn direct_members(c: &mut Conn<'_>, patient: PatientId) -> Result<Vec<UserId>> {
    Ok(scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT user_id FROM care_team_members WHERE patient_id = $1 AND direct ORDER BY user_id",
        patient.0
    )?
    .into_iter()
    .map(UserId)
    .collect())
}

impl Store {
    /// Makes `groups` the SCIM groups attached to the patient's care team: their active
    /// workforce members join it at once, and the members of detached groups leave it unless
    /// they are direct members or in another attached group. Each attach and detach is audited
    /// (`patient.care_team`, op `group_attach`/`group_detach`, the group id and member counts).
    /// `State(UNKNOWN_GROUP)` for an id that is not one of the organisation's groups.
    pub async fn set_care_team_groups(
        &self,
        org: OrgId,
        actor: UserId,
        id: PatientId,
        groups: Vec<uuid::Uuid>,
        meta: RequestMeta,
    ) -> Result<Patient> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, id).await?;
                let wanted: BTreeSet<uuid::Uuid> = groups.iter().copied().collect();
                if wanted.len() > MAX_CARE_TEAM_GROUPS {
                    return Err(StoreError::State("a care team has at most 20 groups attached"));
                }
                for g in &wanted {
                    let ok = scalar!(fetch_optional, &mut c, i32, "SELECT 1 FROM scim_groups WHERE id = $1 AND org_id = $2", *g, org.0)?;
                    if ok.is_none() {
                        return Err(StoreError::State(UNKNOWN_GROUP));
                    }
                }
                let had: BTreeSet<uuid::Uuid> =
                    scalar!(fetch_all, &mut c, uuid::Uuid, "SELECT group_id FROM care_team_groups WHERE patient_id = $1", id.0)?
                        .into_iter()
                        .collect();
                let now = now_ms();
                let mut changes: BTreeMap<uuid::Uuid, &'static str> = BTreeMap::new();
                for g in had.difference(&wanted) {
                    exec!(&mut c, "DELETE FROM care_team_groups WHERE patient_id = $1 AND group_id = $2", id.0, *g)?;
                    changes.insert(*g, "group_detach");
                }
                for g in wanted.difference(&had) {
                    exec!(
                        &mut c,
                        "INSERT INTO care_team_groups (patient_id, group_id, attached_at, attached_by) VALUES ($1, $2, $3, $4)",
                        id.0,
                        *g,
                        now,
                        actor.0
                    )?;
                    changes.insert(*g, "group_attach");
                }
                if !changes.is_empty() {
                    let (joined, left) = crate::care_team_groups::sync_patient(&mut c, org, id, now).await?;
                    for (g, op) in changes {
                        let mut ev = AuditEvent::new(AuditAction::CareTeam, Outcome::Success)
                            .target("patient", id)
                            .patient(Some(id))
                            .detail("op", DetailValue::Code(op))
                            .detail("group", DetailValue::Id(g))
                            .detail("groups", DetailValue::Int(wanted.len() as i64))
                            .detail("joined", DetailValue::Int(joined as i64))
                            .detail("left", DetailValue::Int(left as i64));
                        ev.org_id = Some(org);
                        ev.actor = Some(actor);
                        audit::append(&mut c, &ev, &meta).await?;
                    }
                }
                patient_in_org(&mut c, &ring, org, id).await
            })
        })
        .await
    }

    /// How many care teams each of the organisation's SCIM groups is attached to (a count
    /// only: the Provisioning screen shows no patient).
    pub async fn care_team_group_counts(&self, org: OrgId) -> Result<BTreeMap<uuid::Uuid, i64>> {
        #[derive(sqlx::FromRow)]
        struct Count {
            group_id: uuid::Uuid,
            n: i64,
        }
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    Count,
                    "SELECT cg.group_id, COUNT(*) AS n FROM care_team_groups cg JOIN scim_groups g ON g.id = cg.group_id \
                     WHERE g.org_id = $1 GROUP BY cg.group_id",
                    org.0
                )?;
                Ok(rows.into_iter().map(|r| (r.group_id, r.n)).collect())
            })
        })
        .await
    }
}
