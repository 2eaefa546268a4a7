//! The business associate (BAA) vendor register: entries kept by admins and compliance
//! officers, and the periodic expiry check that records `vendor.baa_expiring` once per vendor,
//! renewal date and stage (the alert evaluator turns it into a `baa_expiring` alert). Audited
//! with codes and ids only: never a vendor's name, services or data.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, UserId, VendorId};
use ward_domain::registers::{BaaExpiry, BaaStatus, VendorDraft, classify_baa, day_number};

use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::users::user_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// A vendor in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    /// Id.
    pub id: VendorId,
    /// The vendor's name.
    pub name: String,
    /// What it does for the organisation.
    pub services: String,
    /// What data it receives.
    pub data_shared: String,
    /// The agreement's state.
    pub baa_status: BaaStatus,
    /// When signed (`YYYY-MM-DD`).
    pub signed_on: Option<String>,
    /// When to renew (`YYYY-MM-DD`).
    pub renewal_on: Option<String>,
    /// Who in the organisation owns the relationship.
    pub owner_id: Option<UserId>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// One expiry alert the check recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaaExpiryNotice {
    /// The organisation.
    pub org_id: OrgId,
    /// The vendor.
    pub vendor_id: VendorId,
    /// `ExpiringSoon` or `Expired`.
    pub expiry: BaaExpiry,
    /// Days from today to the renewal date (negative once passed).
    pub days_left: i64,
}

#[derive(sqlx::FromRow)]
struct VendorRow {
    id: uuid::Uuid,
    name: String,
    services: String,
    data_shared: String,
    baa_status: String,
    signed_on: Option<String>,
    renewal_on: Option<String>,
    owner_id: Option<uuid::Uuid>,
    created_at: i64,
    updated_at: i64,
}

impl VendorRow {
    fn into_vendor(self) -> Result<Vendor> {
        Ok(Vendor {
            id: VendorId(self.id),
            name: self.name,
            services: self.services,
            data_shared: self.data_shared,
            baa_status: self.baa_status.parse().map_err(|_| StoreError::Corrupt("baa_vendors.baa_status"))?,
            signed_on: self.signed_on,
            renewal_on: self.renewal_on,
            owner_id: self.owner_id.map(UserId),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    renewal_on: String,
    alerted_stage: Option<String>,
}

const VENDOR_COLUMNS: &str = "id, name, services, data_shared, baa_status, signed_on, renewal_on, owner_id, created_at, updated_at";

async fn vendor_of(c: &mut Conn<'_>, org: OrgId, id: VendorId) -> Result<Vendor> {
    fetch!(
        fetch_one,
        c,
        VendorRow,
        sqlx::AssertSqlSafe(format!("SELECT {VENDOR_COLUMNS} FROM baa_vendors WHERE id = $1 AND org_id = $2")),
        id.0,
        org.0
    )?
    .into_vendor()
}

pub(crate) async fn check_owner(c: &mut Conn<'_>, org: OrgId, owner: Option<UserId>) -> Result<()> {
    if let Some(o) = owner {
        match user_in_org(c, org, o).await {
            Ok(u) if u.role.is_workforce() => {}
            Ok(_) | Err(StoreError::NotFound) => return Err(StoreError::State("the owner must be a workforce user of this organisation")),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn change_event(org: OrgId, actor: UserId, id: VendorId, op: &'static str, status: BaaStatus) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::VendorChange, Outcome::Success)
        .target("vendor", id)
        .detail("op", DetailValue::Code(op))
        .detail("baa_status", DetailValue::Code(status.as_str()));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

fn stage_code(e: BaaExpiry) -> &'static str {
    match e {
        BaaExpiry::Active => "active",
        BaaExpiry::ExpiringSoon => "expiring_soon",
        BaaExpiry::Expired => "expired",
        BaaExpiry::NotInForce => "not_in_force",
    }
}

impl Store {
    /// The organisation's vendors, by name.
    pub async fn vendors(&self, org: OrgId) -> Result<Vec<Vendor>> {
        self.read(move |mut c| {
            Box::pin(async move {
                fetch!(
                    fetch_all,
                    &mut c,
                    VendorRow,
                    sqlx::AssertSqlSafe(format!("SELECT {VENDOR_COLUMNS} FROM baa_vendors WHERE org_id = $1 ORDER BY name, id")),
                    org.0
                )?
                .into_iter()
                .map(VendorRow::into_vendor)
                .collect()
            })
        })
        .await
    }

    /// Adds a vendor (audited `vendor.change`, op `create`). The owner must be a workforce
    /// user of the organisation (`StoreError::State` otherwise).
    pub async fn create_vendor(
        &self,
        org: OrgId,
        actor: UserId,
        draft: VendorDraft,
        owner: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Vendor> {
        self.write(move |mut c| {
            Box::pin(async move {
                check_owner(&mut c, org, owner).await?;
                let id = VendorId::new();
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO baa_vendors (id, org_id, name, services, data_shared, baa_status, signed_on, renewal_on, owner_id, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                    id.0,
                    org.0,
                    draft.name.as_str(),
                    draft.services.as_str(),
                    draft.data_shared.as_str(),
                    draft.baa_status.as_str(),
                    draft.signed_on.as_deref(),
                    draft.renewal_on.as_deref(),
                    owner.map(|o| o.0),
                    now
                )?;
                audit::append(&mut c, &change_event(org, actor, id, "create", draft.baa_status), &meta).await?;
                vendor_of(&mut c, org, id).await
            })
        })
        .await
    }

    /// Replaces a vendor's entry (audited `vendor.change`, op `update`). A new renewal date
    /// re-arms the expiry alerts.
    pub async fn update_vendor(
        &self,
        org: OrgId,
        actor: UserId,
        id: VendorId,
        draft: VendorDraft,
        owner: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Vendor> {
        self.write(move |mut c| {
            Box::pin(async move {
                vendor_of(&mut c, org, id).await?;
                check_owner(&mut c, org, owner).await?;
                exec!(
                    &mut c,
                    "UPDATE baa_vendors SET name = $3, services = $4, data_shared = $5, baa_status = $6, signed_on = $7, \
                     renewal_on = $8, owner_id = $9, updated_at = $10, \
                     alerted_stage = CASE WHEN renewal_on = $8 THEN alerted_stage ELSE NULL END \
                     WHERE id = $1 AND org_id = $2",
                    id.0,
                    org.0,
                    draft.name.as_str(),
                    draft.services.as_str(),
                    draft.data_shared.as_str(),
                    draft.baa_status.as_str(),
                    draft.signed_on.as_deref(),
                    draft.renewal_on.as_deref(),
                    owner.map(|o| o.0),
                    now_ms()
                )?;
                audit::append(&mut c, &change_event(org, actor, id, "update", draft.baa_status), &meta).await?;
                vendor_of(&mut c, org, id).await
            })
        })
        .await
    }

    /// Removes a vendor from the register (audited `vendor.change`, op `delete`).
    pub async fn delete_vendor(&self, org: OrgId, actor: UserId, id: VendorId, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let v = vendor_of(&mut c, org, id).await?;
                exec!(&mut c, "DELETE FROM baa_vendors WHERE id = $1 AND org_id = $2", id.0, org.0)?;
                audit::append(&mut c, &change_event(org, actor, id, "delete", v.baa_status), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// The periodic expiry check for `today` (`YYYY-MM-DD`, injected so tests choose the
    /// day): every signed agreement whose renewal date is within `warn_days` or past gets one
    /// `vendor.baa_expiring` audit event per renewal date and stage (expiring soon, then
    /// expired), in the transaction that marks it. Returns what it recorded.
    pub async fn check_baa_expiry(&self, today: &str, warn_days: u32) -> Result<Vec<BaaExpiryNotice>> {
        let today = today.to_owned();
        let Some(today_n) = day_number(&today) else { return Err(StoreError::State("today must be a date written YYYY-MM-DD")) };
        self.write(move |mut c| {
            Box::pin(async move {
                let due = fetch!(
                    fetch_all,
                    &mut c,
                    DueRow,
                    "SELECT id, org_id, renewal_on, alerted_stage FROM baa_vendors \
                     WHERE baa_status = 'signed' AND renewal_on IS NOT NULL ORDER BY id"
                )?;
                let mut out = Vec::new();
                for d in due {
                    let expiry = classify_baa(BaaStatus::Signed, Some(&d.renewal_on), &today, warn_days);
                    if !matches!(expiry, BaaExpiry::ExpiringSoon | BaaExpiry::Expired) {
                        continue;
                    }
                    let stage = format!("{}:{}", d.renewal_on, stage_code(expiry));
                    if d.alerted_stage.as_deref() == Some(stage.as_str()) {
                        continue;
                    }
                    // Conditional, so two nodes checking at once record the stage once.
                    let marked = exec!(
                        &mut c,
                        "UPDATE baa_vendors SET alerted_stage = $2 WHERE id = $1 AND (alerted_stage IS NULL OR alerted_stage <> $2)",
                        d.id,
                        stage.as_str()
                    )?;
                    if marked == 0 {
                        continue;
                    }
                    let days_left = day_number(&d.renewal_on).map_or(0, |r| r - today_n);
                    let mut ev = AuditEvent::new(AuditAction::VendorBaaExpiring, Outcome::Success)
                        .target("vendor", VendorId(d.id))
                        .detail("expiry", DetailValue::Code(stage_code(expiry)))
                        .detail("days_left", DetailValue::Int(days_left));
                    ev.org_id = Some(OrgId(d.org_id));
                    audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                    out.push(BaaExpiryNotice { org_id: OrgId(d.org_id), vendor_id: VendorId(d.id), expiry, days_left });
                }
                Ok(out)
            })
        })
        .await
    }
}
