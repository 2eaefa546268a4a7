//! SCIM Groups (docs/identity.md, "SCIM groups"): groups an identity provider manages, their
//! members, and their Ward binding.
//!
//! A group is either plain (membership changes no access) or a role group bound to one
//! clinical role (clinician, nurse or staff). Joining a role group gives the account that
//! role; leaving it (removed, the group replaced without it, the group deleted or unbound)
//! drops the account to `staff`, the least workforce role, so leaving never leaves more access
//! than before; a changed binding changes the members' role with it. An account is in at most one role group (it holds one role), and an admin's or a
//! compliance officer's role is never changed by a group: those accounts cannot join a role
//! group. Every change is one transaction with its audit events; display names are personal
//! data only for members, and audit events carry ids and counts.

use std::collections::BTreeSet;

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, UserId};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::scim::{ScimClient, scim_user_in};
use crate::{RequestMeta, Store, audit, now_ms};

/// Refusal: a privileged account cannot join a role group.
pub const PRIVILEGED_MEMBER: &str = "members: an admin's or compliance officer's role is granted and removed in Ward, not through SCIM: such an account cannot join a role group";
/// Refusal: the account is already in another role group.
pub const SECOND_ROLE_GROUP: &str = "members: a Ward account holds one role, and this account is already in another role group";
/// Refusal: a member names no workforce account of the organisation.
pub const NO_SUCH_MEMBER: &str = "members: a value names no user of this organisation";

/// A member as a group lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupMember {
    /// The account.
    pub user_id: UserId,
    /// Its display name.
    pub display_name: String,
}

/// A SCIM group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// Id.
    pub id: uuid::Uuid,
    /// Display name (unique in the organisation).
    pub display_name: String,
    /// The identity provider's id for it.
    pub external_id: Option<String>,
    /// The role membership grants; `None` for a plain group.
    pub role: Option<Role>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms: last change to the name, the external id or the members.
    pub updated_at: i64,
    /// Its members, by display name.
    pub members: Vec<ScimGroupMember>,
}

impl ScimGroup {
    /// Whether `other` is the same version (see `ScimUser::same_version`).
    pub fn same_version(&self, other: &ScimGroup) -> bool {
        self == other
    }
}

/// What a create, replace or patch makes a group.
#[derive(Debug, Clone)]
pub struct ScimGroupFields {
    /// Display name.
    pub display_name: String,
    /// The identity provider's id.
    pub external_id: Option<String>,
    /// The binding: the role membership grants, or none.
    pub role: Option<Role>,
    /// The members, all of them.
    pub members: Vec<UserId>,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: uuid::Uuid,
    display_name: String,
    external_id: Option<String>,
    role: Option<String>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    group_id: uuid::Uuid,
    user_id: uuid::Uuid,
    display_name: String,
}

const GROUP_SELECT: &str = "SELECT id, display_name, external_id, role, created_at, updated_at FROM scim_groups WHERE org_id = $1";

fn parse_role(role: Option<String>) -> Result<Option<Role>> {
    role.map(|r| r.parse().map_err(|_| StoreError::Corrupt("scim_groups.role"))).transpose()
}

async fn groups_in(c: &mut Conn<'_>, org: OrgId, only: Option<uuid::Uuid>) -> Result<Vec<ScimGroup>> {
    let sql = format!("{GROUP_SELECT} AND ($2 OR id = $3) ORDER BY display_name, id");
    let rows = fetch!(fetch_all, c, GroupRow, sqlx::AssertSqlSafe(sql), org.0, only.is_none(), only.unwrap_or_else(uuid::Uuid::nil))?;
    // Accounts deleted through SCIM have left their groups; the filter is a second line.
    let members = fetch!(
        fetch_all,
        c,
        MemberRow,
        "SELECT m.group_id, m.user_id, u.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
         JOIN users u ON u.id = m.user_id WHERE g.org_id = $1 AND ($2 OR g.id = $3) AND u.scim_deleted_at IS NULL \
         ORDER BY u.display_name, u.id",
        org.0,
        only.is_none(),
        only.unwrap_or_else(uuid::Uuid::nil)
    )?;
    rows.into_iter()
        .map(|r| {
            Ok(ScimGroup {
                id: r.id,
                members: members
                    .iter()
                    .filter(|m| m.group_id == r.id)
                    .map(|m| ScimGroupMember { user_id: UserId(m.user_id), display_name: m.display_name.clone() })
                    .collect(),
                display_name: r.display_name,
                external_id: r.external_id,
                role: parse_role(r.role)?,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })
        .collect()
}

async fn group_in(c: &mut Conn<'_>, org: OrgId, id: uuid::Uuid) -> Result<ScimGroup> {
    groups_in(c, org, Some(id)).await?.pop().ok_or(StoreError::NotFound)
}

fn group_event(client: ScimClient, group: uuid::Uuid, op: &'static str) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::ScimGroup, Outcome::Success)
        .target("scim_group", group)
        .detail("op", DetailValue::Code(op))
        .detail("token", DetailValue::Id(client.token));
    ev.org_id = Some(client.org);
    ev
}

/// Sets an account's role because of a role group, audited `admin.user_role` (`via`
/// `scim_group`). No-op when it already has that role.
async fn set_role(c: &mut Conn<'_>, client: ScimClient, user: UserId, from: Role, to: Role, now: i64, meta: &RequestMeta) -> Result<()> {
    if from == to {
        return Ok(());
    }
    exec!(c, "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1", user.0, to.as_str(), now)?;
    let mut ev = AuditEvent::new(AuditAction::UserRole, Outcome::Success)
        .target("user", user)
        .detail("from", DetailValue::Code(from.as_str()))
        .detail("to", DetailValue::Code(to.as_str()))
        .detail("via", DetailValue::Code("scim_group"))
        .detail("token", DetailValue::Id(client.token));
    ev.org_id = Some(client.org);
    audit::append(c, &ev, meta).await?;
    Ok(())
}

fn privileged(r: Role) -> bool {
    matches!(r, Role::Admin | Role::ComplianceOfficer)
}

/// A group's binding before and after a write.
#[derive(Debug, Clone, Copy)]
struct Binding {
    before: Option<Role>,
    after: Option<Role>,
}

/// Makes `members` the group's members under the binding `after` (the group had `before`):
/// those who leave lose the old binding's role, those who stay follow a changed binding, those
/// who join take the new one; each account whose `groups` changed is marked. Returns (added,
/// removed).
async fn set_members(
    c: &mut Conn<'_>,
    client: ScimClient,
    group: uuid::Uuid,
    binding: Binding,
    old_members: &[UserId],
    members: &[UserId],
    meta: &RequestMeta,
) -> Result<(Vec<UserId>, Vec<UserId>)> {
    let old: BTreeSet<UserId> = old_members.iter().copied().collect();
    let new: BTreeSet<UserId> = members.iter().copied().collect();
    let now = now_ms();
    let mut removed = Vec::new();
    for &user in old.difference(&new) {
        exec!(c, "DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2", group, user.0)?;
        exec!(c, "UPDATE users SET updated_at = $2 WHERE id = $1", user.0, now)?;
        removed.push(user);
        if binding.before.is_some() {
            leave_role(c, client, user, now, meta).await?;
        }
    }
    if binding.before != binding.after {
        for &user in old.intersection(&new) {
            match binding.after {
                Some(role) => join_role(c, client, group, user, role, now, meta).await?,
                None => leave_role(c, client, user, now, meta).await?,
            }
        }
    }
    let mut added = Vec::new();
    for &user in new.difference(&old) {
        let u = match scim_user_in(c, client.org, user).await {
            Ok(u) => u,
            Err(StoreError::NotFound) => return Err(StoreError::State(NO_SUCH_MEMBER)),
            Err(e) => return Err(e),
        };
        if binding.after.is_some() && privileged(u.user.role) {
            return Err(StoreError::State(PRIVILEGED_MEMBER));
        }
        exec!(c, "INSERT INTO scim_group_members (group_id, user_id, added_at) VALUES ($1, $2, $3)", group, user.0, now)?;
        exec!(c, "UPDATE users SET updated_at = $2 WHERE id = $1", user.0, now)?;
        added.push(user);
        if let Some(role) = binding.after {
            join_role(c, client, group, user, role, now, meta).await?;
        }
    }
    Ok((added, removed))
}

/// A member takes a role group's role: refused for a privileged account and for one already
/// in another role group (an account holds one role).
async fn join_role(
    c: &mut Conn<'_>,
    client: ScimClient,
    group: uuid::Uuid,
    user: UserId,
    role: Role,
    now: i64,
    meta: &RequestMeta,
) -> Result<()> {
    let u = scim_user_in(c, client.org, user).await?;
    if privileged(u.user.role) {
        return Err(StoreError::State(PRIVILEGED_MEMBER));
    }
    if role_groups_of(c, user).await?.iter().any(|g| *g != group) {
        return Err(StoreError::State(SECOND_ROLE_GROUP));
    }
    set_role(c, client, user, u.user.role, role, now, meta).await
}

/// A member leaves a role group (or its binding goes): down to the least workforce role. A
/// privileged role (granted in Ward meanwhile) is Ward's to take away.
async fn leave_role(c: &mut Conn<'_>, client: ScimClient, user: UserId, now: i64, meta: &RequestMeta) -> Result<()> {
    let u = scim_user_in(c, client.org, user).await?;
    if privileged(u.user.role) {
        return Ok(());
    }
    set_role(c, client, user, u.user.role, Role::Staff, now, meta).await
}

/// The role groups the account is in (read after the binding being written is stored).
async fn role_groups_of(c: &mut Conn<'_>, user: UserId) -> Result<Vec<uuid::Uuid>> {
    Ok(scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT g.id FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_id = $1 AND g.role IS NOT NULL",
        user.0
    )?)
}

/// Takes a deleted account out of every group (its role no longer matters: it is disabled).
pub(crate) async fn leave_all_groups(c: &mut Conn<'_>, org: OrgId, user: UserId, now: i64) -> Result<()> {
    exec!(
        c,
        "UPDATE scim_groups SET updated_at = $3 WHERE org_id = $1 AND id IN (SELECT group_id FROM scim_group_members WHERE user_id = $2)",
        org.0,
        user.0,
        now
    )?;
    exec!(c, "DELETE FROM scim_group_members WHERE user_id = $1", user.0)?;
    Ok(())
}

async fn check_unique(c: &mut Conn<'_>, org: OrgId, f: &ScimGroupFields, except: uuid::Uuid) -> Result<()> {
    let taken = scalar!(
        fetch_optional,
        c,
        i32,
        "SELECT 1 FROM scim_groups WHERE org_id = $1 AND display_name = $2 AND id <> $3",
        org.0,
        f.display_name.as_str(),
        except
    )?;
    if taken.is_some() {
        return Err(StoreError::Conflict("displayName"));
    }
    if let Some(e) = &f.external_id {
        let taken = scalar!(
            fetch_optional,
            c,
            i32,
            "SELECT 1 FROM scim_groups WHERE org_id = $1 AND external_id = $2 AND id <> $3",
            org.0,
            e.as_str(),
            except
        )?;
        if taken.is_some() {
            return Err(StoreError::Conflict("externalId"));
        }
    }
    Ok(())
}

impl Store {
    /// The organisation's SCIM groups, by display name.
    pub async fn scim_groups(&self, org: OrgId) -> Result<Vec<ScimGroup>> {
        self.read(move |mut c| Box::pin(async move { groups_in(&mut c, org, None).await })).await
    }

    /// One SCIM group (NotFound for another organisation's).
    pub async fn scim_group(&self, org: OrgId, id: uuid::Uuid) -> Result<ScimGroup> {
        self.read(move |mut c| Box::pin(async move { group_in(&mut c, org, id).await })).await
    }

    /// Creates a group with its members (their roles set by a role binding). Conflict
    /// ("displayName" or "externalId") when taken. Audited `scim.group` op `create`.
    pub async fn scim_create_group(&self, client: ScimClient, f: ScimGroupFields, meta: RequestMeta) -> Result<ScimGroup> {
        self.write(move |mut c| {
            Box::pin(async move {
                if f.role.is_some_and(|r| privileged(r) || r == Role::Patient) {
                    return Err(StoreError::State("a role group grants clinician, nurse or staff only"));
                }
                let id = uuid::Uuid::new_v4();
                check_unique(&mut c, client.org, &f, id).await?;
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO scim_groups (id, org_id, display_name, external_id, role, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    id,
                    client.org.0,
                    f.display_name.as_str(),
                    f.external_id.as_deref(),
                    f.role.map(Role::as_str),
                    now
                )?;
                let binding = Binding { before: None, after: f.role };
                let (added, _) = set_members(&mut c, client, id, binding, &[], &f.members, &meta).await?;
                let added = added.len();
                let ev = group_event(client, id, "create")
                    .detail("binding", DetailValue::Code(f.role.map_or("none", Role::as_str)))
                    .detail("added", DetailValue::Int(added as i64));
                audit::append(&mut c, &ev, &meta).await?;
                group_in(&mut c, client.org, id).await
            })
        })
        .await
    }

    /// Replaces a group's name, external id, binding and members (`op` is `replace` or
    /// `patch`, for the audit event), conditional on `expected` as `scim_update_user` is.
    pub async fn scim_update_group(
        &self,
        client: ScimClient,
        expected: ScimGroup,
        f: ScimGroupFields,
        op: &'static str,
        meta: RequestMeta,
    ) -> Result<ScimGroup> {
        self.write(move |mut c| {
            Box::pin(async move {
                let id = expected.id;
                let before = group_in(&mut c, client.org, id).await?;
                if !before.same_version(&expected) {
                    return Err(StoreError::Changed);
                }
                if f.role.is_some_and(|r| privileged(r) || r == Role::Patient) {
                    return Err(StoreError::State("a role group grants clinician, nurse or staff only"));
                }
                check_unique(&mut c, client.org, &f, id).await?;
                // The binding is stored first: the one-role-group rule reads it.
                exec!(&mut c, "UPDATE scim_groups SET role = $2 WHERE id = $1", id, f.role.map(Role::as_str))?;
                let old: Vec<UserId> = before.members.iter().map(|m| m.user_id).collect();
                let binding = Binding { before: before.role, after: f.role };
                let (added, removed) = set_members(&mut c, client, id, binding, &old, &f.members, &meta).await?;
                let changed = f.display_name != before.display_name || f.external_id != before.external_id || f.role != before.role;
                if changed || !added.is_empty() || !removed.is_empty() {
                    exec!(
                        &mut c,
                        "UPDATE scim_groups SET display_name = $2, external_id = $3, updated_at = $4 WHERE id = $1",
                        id,
                        f.display_name.as_str(),
                        f.external_id.as_deref(),
                        now_ms().max(before.updated_at + 1)
                    )?;
                }
                // Members who joined or left are on or off the care teams the group is attached
                // to; only they are re-synced, and nobody when the membership did not change.
                let moved: Vec<UserId> = added.iter().chain(&removed).copied().collect();
                let care_teams = crate::care_team_groups::sync_group_members(&mut c, client.org, id, &moved, now_ms(), &meta).await?;
                let mut ev = group_event(client, id, op)
                    .detail("added", DetailValue::Int(added.len() as i64))
                    .detail("removed", DetailValue::Int(removed.len() as i64))
                    .detail("care_teams", DetailValue::Int(care_teams as i64));
                if f.role != before.role {
                    ev = ev.detail("binding", DetailValue::Code(f.role.map_or("none", Role::as_str)));
                }
                audit::append(&mut c, &ev, &meta).await?;
                group_in(&mut c, client.org, id).await
            })
        })
        .await
    }

    /// Deletes a group; its members leave it as if removed (a role group's drop to `staff`).
    /// With `expected`, conditional. Audited `scim.group` op `delete`.
    pub async fn scim_delete_group(
        &self,
        client: ScimClient,
        id: uuid::Uuid,
        expected: Option<ScimGroup>,
        meta: RequestMeta,
    ) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let before = group_in(&mut c, client.org, id).await?;
                if expected.is_some_and(|e| !before.same_version(&e)) {
                    return Err(StoreError::Changed);
                }
                let old: Vec<UserId> = before.members.iter().map(|m| m.user_id).collect();
                let binding = Binding { before: before.role, after: before.role };
                let (_, removed) = set_members(&mut c, client, id, binding, &old, &[], &meta).await?;
                exec!(&mut c, "DELETE FROM scim_group_members WHERE group_id = $1", id)?;
                // Detached from every care team; its members leave those they were on through it.
                let care_teams = crate::care_team_groups::detach_deleted_group(&mut c, client.org, id, client.token, &meta).await?;
                exec!(&mut c, "DELETE FROM scim_groups WHERE id = $1", id)?;
                let ev = group_event(client, id, "delete")
                    .detail("removed", DetailValue::Int(removed.len() as i64))
                    .detail("care_teams", DetailValue::Int(care_teams as i64));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }
}
