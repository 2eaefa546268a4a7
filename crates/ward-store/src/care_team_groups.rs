//! Care teams from SCIM groups (docs/identity.md, "Care teams from groups").
//!
//! The identity provider manages team groups ("Cardiology ward 3") and never sees a patient.
//! In Ward, someone allowed to edit a patient's care team attaches groups to it; every active
//! workforce member of an attached group is then on the care team. `care_team_members` stays
//! the effective care team, with `direct` telling who was named in Ward: a row with
//! `direct = FALSE` exists only because of an attached group, and the rows are made to match
//! the groups again after any change, in the same transaction, touching only what the change
//! can move: [`sync_user`] for one account (disabled, enabled, deleted, a group joined or left;
//! a group change re-syncs only the members who joined or left it), [`sync_patient`] for one
//! care team (a direct edit), per group for attach and detach. Each is a couple of set-based
//! statements. A member who leaves this way loses their on-call flag with the row; a direct
//! member, or a member through another attached group, stays with theirs.

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
struct GroupMemberRow {
    group_id: uuid::Uuid,
    display_name: String,
    attached_at: i64,
    user_id: Option<uuid::Uuid>,
}

/// Who counts as a member of a group for a care team: an account of the organisation, not a
/// patient's, not disabled, not deleted through SCIM. `$2` is the organisation in every
/// statement that uses it.
const ACTIVE_WORKFORCE: &str = "u.org_id = $2 AND u.role <> 'patient' AND u.disabled_at IS NULL AND u.scim_deleted_at IS NULL";

/// Removes the patient's group-derived rows that no attached group backs any more (one
/// statement, whatever the team's size). Returns how many left.
async fn prune_patient(c: &mut Conn<'_>, org: OrgId, patient: PatientId) -> Result<usize> {
    let sql = format!(
        "DELETE FROM care_team_members WHERE patient_id = $1 AND NOT direct AND NOT EXISTS (\
         SELECT 1 FROM care_team_groups cg JOIN scim_group_members m ON m.group_id = cg.group_id \
         JOIN users u ON u.id = m.user_id \
         WHERE cg.patient_id = $1 AND m.user_id = care_team_members.user_id AND {ACTIVE_WORKFORCE})"
    );
    Ok(exec!(c, sqlx::AssertSqlSafe(sql), patient.0, org.0)? as usize)
}

/// Puts the active workforce members of one attached group on the patient's care team (those
/// already on it, directly or through another group, stay as they are). Returns how many joined.
async fn join_group_members(c: &mut Conn<'_>, org: OrgId, patient: PatientId, group: uuid::Uuid, now: i64) -> Result<usize> {
    // SQLite needs the WHERE before an upsert's ON CONFLICT on an INSERT ... SELECT.
    let sql = format!(
        "INSERT INTO care_team_members (patient_id, user_id, added_at, on_call, direct) \
         SELECT $1, m.user_id, $3, FALSE, FALSE FROM scim_group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $4 AND {ACTIVE_WORKFORCE} ON CONFLICT (patient_id, user_id) DO NOTHING"
    );
    Ok(exec!(c, sqlx::AssertSqlSafe(sql), patient.0, org.0, now, group)? as usize)
}

/// Makes the group-derived rows of a patient's care team match its attached groups, with two
/// set-based statements. Returns (joined, left).
pub(crate) async fn sync_patient(c: &mut Conn<'_>, org: OrgId, patient: PatientId, now: i64) -> Result<(usize, usize)> {
    let left = prune_patient(c, org, patient).await?;
    let sql = format!(
        "INSERT INTO care_team_members (patient_id, user_id, added_at, on_call, direct) \
         SELECT DISTINCT cg.patient_id, m.user_id, $3, FALSE, FALSE FROM care_team_groups cg \
         JOIN scim_group_members m ON m.group_id = cg.group_id JOIN users u ON u.id = m.user_id \
         WHERE cg.patient_id = $1 AND {ACTIVE_WORKFORCE} ON CONFLICT (patient_id, user_id) DO NOTHING"
    );
    let joined = exec!(c, sqlx::AssertSqlSafe(sql), patient.0, org.0, now)? as usize;
    Ok((joined, left))
}

/// Makes one account's group-derived care-team rows match its groups and its state (after it
/// was disabled, enabled, deleted, or joined or left a group): two statements over that
/// account's rows only (indexed by user), never a pass over every member of a group. Each care
/// team it joins or leaves this way gets a `patient.care_team` event (op `member_join` or
/// `member_leave`, the `user` id and `via`, the cause: ids and codes only), so who was on a
/// care team when can be rebuilt from the log. Returns (joined, left).
pub(crate) async fn sync_user(
    c: &mut Conn<'_>,
    org: OrgId,
    user: UserId,
    now: i64,
    via: &'static str,
    meta: &RequestMeta,
) -> Result<(usize, usize)> {
    // Sees every other node's committed group change first (re-entrant: the writer's batch
    // usually holds it already).
    audit::lock_appends(c).await?;
    let prune = format!(
        "DELETE FROM care_team_members WHERE user_id = $1 AND NOT direct AND NOT EXISTS (\
         SELECT 1 FROM care_team_groups cg JOIN scim_group_members m ON m.group_id = cg.group_id \
         JOIN users u ON u.id = m.user_id \
         WHERE cg.patient_id = care_team_members.patient_id AND m.user_id = $1 AND {ACTIVE_WORKFORCE}) \
         RETURNING patient_id"
    );
    let left = scalar!(fetch_all, c, uuid::Uuid, sqlx::AssertSqlSafe(prune), user.0, org.0)?;
    let join = format!(
        "INSERT INTO care_team_members (patient_id, user_id, added_at, on_call, direct) \
         SELECT DISTINCT cg.patient_id, m.user_id, $3, FALSE, FALSE FROM care_team_groups cg \
         JOIN scim_group_members m ON m.group_id = cg.group_id JOIN users u ON u.id = m.user_id \
         WHERE m.user_id = $1 AND {ACTIVE_WORKFORCE} ON CONFLICT (patient_id, user_id) DO NOTHING RETURNING patient_id"
    );
    let joined = scalar!(fetch_all, c, uuid::Uuid, sqlx::AssertSqlSafe(join), user.0, org.0, now)?;
    let mut events = Vec::with_capacity(left.len() + joined.len());
    for (patients, op) in [(&left, "member_leave"), (&joined, "member_join")] {
        for p in patients {
            let patient = PatientId(*p);
            let mut ev = AuditEvent::new(AuditAction::CareTeam, Outcome::Success)
                .target("patient", patient)
                .patient(Some(patient))
                .detail("op", DetailValue::Code(op))
                .detail("user", DetailValue::Id(user.0))
                .detail("via", DetailValue::Code(via));
            ev.org_id = Some(org);
            events.push(ev);
        }
    }
    // One multi-row append however many care teams: a ward group attached to thousands of
    // patients must not cost a round trip each inside the writer's batch.
    if !events.is_empty() {
        let rows: Vec<(&AuditEvent, &RequestMeta)> = events.iter().map(|e| (e, meta)).collect();
        audit::append_many(c, &rows).await?;
    }
    Ok((joined.len(), left.len()))
}

/// After a group's membership changed: re-syncs only the accounts that joined or left it
/// (nothing when none did; a rename or a binding change touches no care team, since a role
/// group never grants the patient role). Returns how many care teams the group is attached to.
pub(crate) async fn sync_group_members(
    c: &mut Conn<'_>,
    org: OrgId,
    group: uuid::Uuid,
    changed: &[UserId],
    now: i64,
    meta: &RequestMeta,
) -> Result<usize> {
    for u in changed {
        sync_user(c, org, *u, now, "scim_group", meta).await?;
    }
    Ok(scalar!(fetch_one, c, i64, "SELECT COUNT(*) FROM care_team_groups WHERE group_id = $1", group)? as usize)
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
    audit::lock_appends(c).await?;
    let patients = scalar!(fetch_all, c, uuid::Uuid, "SELECT patient_id FROM care_team_groups WHERE group_id = $1", group)?;
    exec!(c, "DELETE FROM care_team_groups WHERE group_id = $1", group)?;
    for p in &patients {
        let patient = PatientId(*p);
        let left = prune_patient(c, org, patient).await?;
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
    /// (`patient.care_team`, op `group_attach`/`group_detach`, the group id, and how many joined
    /// or left through that group).
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
                audit::lock_appends(&mut c).await?;
                // One group at a time, so each event counts who joined or left through that
                // group: attaches first, then detaches, so a member of both a detached and an
                // attached group never leaves (and keeps their on-call flag).
                let mut changes: Vec<(uuid::Uuid, &'static str, usize, usize)> = Vec::new();
                for g in wanted.difference(&had) {
                    exec!(
                        &mut c,
                        "INSERT INTO care_team_groups (patient_id, group_id, attached_at, attached_by) VALUES ($1, $2, $3, $4)",
                        id.0,
                        *g,
                        now,
                        actor.0
                    )?;
                    let joined = join_group_members(&mut c, org, id, *g, now).await?;
                    changes.push((*g, "group_attach", joined, 0));
                }
                for g in had.difference(&wanted) {
                    exec!(&mut c, "DELETE FROM care_team_groups WHERE patient_id = $1 AND group_id = $2", id.0, *g)?;
                    let left = prune_patient(&mut c, org, id).await?;
                    changes.push((*g, "group_detach", 0, left));
                }
                for (g, op, joined, left) in changes {
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
