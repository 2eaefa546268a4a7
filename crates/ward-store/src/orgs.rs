//! Organisations (tenants) and their policy.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, UserId};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::{Org, RequestMeta, Store, audit, now_ms};

#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: uuid::Uuid,
    slug: String,
    name: String,
    mfa_required_roles: String,
    idle_timeout_secs: i64,
    created_at: i64,
}

impl OrgRow {
    fn into_org(self) -> Result<Org> {
        Ok(Org {
            id: OrgId(self.id),
            slug: self.slug,
            name: self.name,
            mfa_required_roles: parse_roles(&self.mfa_required_roles)?,
            idle_timeout_secs: self.idle_timeout_secs,
            created_at: self.created_at,
        })
    }
}

pub(crate) fn parse_roles(s: &str) -> Result<Vec<Role>> {
    s.split(',').filter(|r| !r.is_empty()).map(|r| r.parse().map_err(|_| StoreError::Corrupt("organizations.mfa_required_roles"))).collect()
}

fn join_roles(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

const ORG_COLUMNS: &str = "id, slug, name, mfa_required_roles, idle_timeout_secs, created_at";

pub(crate) async fn org_by_id(c: &mut Conn<'_>, id: OrgId) -> Result<Org> {
    fetch!(fetch_one, c, OrgRow, sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1")), id.0)?.into_org()
}

impl Store {
    /// Creates an organisation with the default policy. `actor` is the admin doing it, if any
    /// (the command line acts as the operator, with no user).
    pub async fn create_org(
        &self,
        slug: &str,
        name: &str,
        idle_timeout_secs: i64,
        actor: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Org> {
        let org = Org {
            id: OrgId::new(),
            slug: ward_domain::login::OrgSlug::parse(slug)?.as_str().to_owned(),
            name: ward_domain::login::parse_label("name", name, 200)?,
            mfa_required_roles: ward_domain::role::DEFAULT_MFA_REQUIRED.to_vec(),
            idle_timeout_secs,
            created_at: now_ms(),
        };
        let out = org.clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let n = exec!(
                    &mut c,
                    "INSERT INTO organizations (id, slug, name, mfa_required_roles, idle_timeout_secs, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slug) DO NOTHING",
                    org.id.0,
                    org.slug.as_str(),
                    org.name.as_str(),
                    join_roles(&org.mfa_required_roles),
                    org.idle_timeout_secs,
                    org.created_at,
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict("organization slug"));
                }
                let mut ev = AuditEvent::new(AuditAction::OrgCreate, Outcome::Success).target("org", org.id);
                ev.org_id = Some(org.id);
                ev.actor = actor;
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await?;
        Ok(out)
    }

    /// An organisation by id.
    pub async fn org(&self, id: OrgId) -> Result<Org> {
        self.read(|mut c| Box::pin(async move { org_by_id(&mut c, id).await })).await
    }

    /// An organisation by slug.
    pub async fn org_by_slug(&self, slug: &str) -> Result<Org> {
        let slug = slug.to_owned();
        self.read(|mut c| {
            Box::pin(async move {
                fetch!(
                    fetch_one,
                    &mut c,
                    OrgRow,
                    sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM organizations WHERE slug = $1")),
                    slug
                )?
                .into_org()
            })
        })
        .await
    }

    /// Every organisation, by slug.
    pub async fn orgs(&self) -> Result<Vec<Org>> {
        self.read(|mut c| {
            Box::pin(async move {
                fetch!(fetch_all, &mut c, OrgRow, sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM organizations ORDER BY slug")))?
                    .into_iter()
                    .map(OrgRow::into_org)
                    .collect()
            })
        })
        .await
    }

    /// Changes an organisation's policy.
    pub async fn set_org_policy(
        &self,
        org_id: OrgId,
        actor: UserId,
        mfa_required_roles: Vec<Role>,
        idle_timeout_secs: i64,
        meta: RequestMeta,
    ) -> Result<Org> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "UPDATE organizations SET mfa_required_roles = $2, idle_timeout_secs = $3 WHERE id = $1",
                    org_id.0,
                    join_roles(&mfa_required_roles),
                    idle_timeout_secs
                )?;
                let mut ev = AuditEvent::new(AuditAction::OrgPolicy, Outcome::Success)
                    .target("org", org_id)
                    .detail("idle_timeout_secs", DetailValue::Int(idle_timeout_secs))
                    .detail("mfa_roles", DetailValue::Int(mfa_required_roles.len() as i64));
                ev.org_id = Some(org_id);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                org_by_id(&mut c, org_id).await
            })
        })
        .await
    }
}
