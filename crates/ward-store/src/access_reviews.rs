//! Access review campaigns (docs/access-reviews.md): the organisation's cadence, campaigns
//! that snapshot every enabled workforce account when they open, reviewers' decisions (a
//! revocation disables the account in the same transaction, as an admin's disable does), and
//! the close that marks undecided items `not_reviewed`. Audited with ids and codes only.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ward_domain::access_review::{
    CampaignStatus, CampaignTrigger, Decision, ItemDecision, ReviewSchedule, RevokeReason, in_scope, may_decide, may_delegate, may_review,
};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{CampaignId, ConversationId, OrgId, SessionId, UserId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::users::{disable_account, enabled_workforce, keep_another_admin, user_in_org};
use crate::{RequestMeta, Store, audit, now_ms};

/// A campaign and how far its reviewers got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// Id.
    pub id: CampaignId,
    /// Open or closed.
    pub status: CampaignStatus,
    /// What opened it.
    pub origin: CampaignTrigger,
    /// Unix ms: when the snapshot was taken.
    pub opened_at: i64,
    /// Who started it (`None`: the schedule).
    pub opened_by: Option<UserId>,
    /// Unix ms: the decision deadline.
    pub due_at: i64,
    /// Unix ms.
    pub closed_at: Option<i64>,
    /// Who closed it.
    pub closed_by: Option<UserId>,
    /// Items by outcome.
    pub counts: ItemCounts,
}

/// How many items a campaign has, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCounts {
    /// Every item.
    pub total: u32,
    /// Certified.
    pub certified: u32,
    /// Revoked.
    pub revoked: u32,
    /// Closed without a decision.
    pub not_reviewed: u32,
    /// Still to decide (open campaigns only).
    pub pending: u32,
}

/// One conversation an account belonged to at the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its kind.
    pub kind: ConversationKind,
}

/// One account's access as snapshotted, and the decision on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    /// The account.
    pub user_id: UserId,
    /// Its login name at the snapshot.
    pub login: String,
    /// Its display name at the snapshot.
    pub display_name: String,
    /// Its role at the snapshot.
    pub role: Role,
    /// Whether it had a second factor.
    pub mfa_enabled: bool,
    /// The conversations it belonged to.
    pub memberships: Vec<Membership>,
    /// Unix ms of its last sign-in (`None`: none on record).
    pub last_sign_in_at: Option<i64>,
    /// Unix ms of the last message it sent (`None`: never).
    pub last_message_at: Option<i64>,
    /// The decision, once made.
    pub decision: Option<Decision>,
    /// A revocation's reason.
    pub reason: Option<RevokeReason>,
    /// The reviewer's note.
    pub note: Option<String>,
    /// Who decided.
    pub decided_by: Option<UserId>,
    /// Unix ms.
    pub decided_at: Option<i64>,
    /// The person the item was delegated to (`None`: the organisation's reviewers).
    pub reviewer: Option<UserId>,
}

/// What a decision did.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The item with its decision.
    pub item: ReviewItem,
    /// Sessions a revocation ended (to close their connections).
    pub revoked_sessions: Vec<SessionId>,
    /// Whether a revocation disabled the account (false: it already was).
    pub disabled: bool,
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: uuid::Uuid,
    status: String,
    origin: String,
    opened_at: i64,
    opened_by: Option<uuid::Uuid>,
    due_at: i64,
    closed_at: Option<i64>,
    closed_by: Option<uuid::Uuid>,
}

impl CampaignRow {
    fn into_campaign(self, counts: ItemCounts) -> Result<Campaign> {
        Ok(Campaign {
            id: CampaignId(self.id),
            status: CampaignStatus::parse(&self.status).ok_or(StoreError::Corrupt("access_review_campaigns.status"))?,
            origin: CampaignTrigger::parse(&self.origin).ok_or(StoreError::Corrupt("access_review_campaigns.origin"))?,
            opened_at: self.opened_at,
            opened_by: self.opened_by.map(UserId),
            due_at: self.due_at,
            closed_at: self.closed_at,
            closed_by: self.closed_by.map(UserId),
            counts,
        })
    }
}

const CAMPAIGN_COLUMNS: &str = "id, status, origin, opened_at, opened_by, due_at, closed_at, closed_by";

#[derive(sqlx::FromRow)]
struct ItemRow {
    user_id: uuid::Uuid,
    login: String,
    display_name: String,
    role: String,
    mfa_enabled: bool,
    memberships: String,
    last_sign_in_at: Option<i64>,
    last_message_at: Option<i64>,
    decision: Option<String>,
    reason: Option<String>,
    note: Option<String>,
    decided_by: Option<uuid::Uuid>,
    decided_at: Option<i64>,
    reviewer_id: Option<uuid::Uuid>,
}

impl ItemRow {
    fn into_item(self) -> Result<ReviewItem> {
        let corrupt = StoreError::Corrupt;
        Ok(ReviewItem {
            user_id: UserId(self.user_id),
            login: self.login,
            display_name: self.display_name,
            role: self.role.parse().map_err(|_| corrupt("access_review_items.role"))?,
            mfa_enabled: self.mfa_enabled,
            memberships: serde_json::from_str(&self.memberships).map_err(|_| corrupt("access_review_items.memberships"))?,
            last_sign_in_at: self.last_sign_in_at,
            last_message_at: self.last_message_at,
            decision: self.decision.map(|d| Decision::parse(&d).ok_or(corrupt("access_review_items.decision"))).transpose()?,
            reason: self.reason.map(|r| RevokeReason::parse(&r).ok_or(corrupt("access_review_items.reason"))).transpose()?,
            note: self.note,
            decided_by: self.decided_by.map(UserId),
            decided_at: self.decided_at,
            reviewer: self.reviewer_id.map(UserId),
        })
    }
}

const ITEM_COLUMNS: &str = "user_id, login, display_name, role, mfa_enabled, memberships, last_sign_in_at, last_message_at, \
     decision, reason, note, decided_by, decided_at, reviewer_id";

async fn schedule_of(c: &mut Conn<'_>, org: OrgId) -> Result<ReviewSchedule> {
    let row =
        fetch!(fetch_optional, c, (i64, i64), "SELECT cadence_days, window_days FROM access_review_settings WHERE org_id = $1", org.0)?;
    Ok(match row {
        Some((cadence, window)) => ReviewSchedule {
            cadence_days: u32::try_from(cadence).map_err(|_| StoreError::Corrupt("access_review_settings.cadence_days"))?,
            window_days: u32::try_from(window).map_err(|_| StoreError::Corrupt("access_review_settings.window_days"))?,
        },
        None => ReviewSchedule::default(),
    })
}

/// A campaign's items by outcome: all of them, or those delegated to `reviewer`.
async fn counts_of(c: &mut Conn<'_>, campaign: uuid::Uuid, reviewer: Option<UserId>) -> Result<ItemCounts> {
    let rows = fetch!(
        fetch_all,
        c,
        (Option<String>, i64),
        "SELECT decision, COUNT(*) FROM access_review_items WHERE campaign_id = $1 AND ($2 IS NULL OR reviewer_id = $2) GROUP BY decision",
        campaign,
        reviewer.map(|r| r.0)
    )?;
    let mut n = ItemCounts::default();
    for (decision, count) in rows {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        n.total += count;
        match decision.as_deref().and_then(Decision::parse) {
            Some(Decision::Certify) => n.certified += count,
            Some(Decision::Revoke) => n.revoked += count,
            Some(Decision::NotReviewed) => n.not_reviewed += count,
            None => n.pending += count,
        }
    }
    Ok(n)
}

/// The organisation's campaigns, newest first: all of them, or the open ones with items
/// delegated to `reviewer` (counted over those items only).
async fn campaigns_of(c: &mut Conn<'_>, org: OrgId, reviewer: Option<UserId>) -> Result<Vec<Campaign>> {
    let rows = fetch!(
        fetch_all,
        &mut *c,
        CampaignRow,
        sqlx::AssertSqlSafe(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM access_review_campaigns WHERE org_id = $1 AND ($2 IS NULL OR (status = 'open' AND id IN \
             (SELECT campaign_id FROM access_review_items WHERE reviewer_id = $2))) ORDER BY opened_at DESC, id DESC"
        )),
        org.0,
        reviewer.map(|r| r.0)
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let counts = counts_of(c, r.id, reviewer).await?;
        out.push(r.into_campaign(counts)?);
    }
    Ok(out)
}

async fn campaign_of(c: &mut Conn<'_>, org: OrgId, id: CampaignId) -> Result<Campaign> {
    let row = fetch!(
        fetch_one,
        &mut *c,
        CampaignRow,
        sqlx::AssertSqlSafe(format!("SELECT {CAMPAIGN_COLUMNS} FROM access_review_campaigns WHERE id = $1 AND org_id = $2")),
        id.0,
        org.0
    )?;
    let counts = counts_of(c, row.id, None).await?;
    row.into_campaign(counts)
}

async fn item_of(c: &mut Conn<'_>, campaign: CampaignId, user: UserId) -> Result<ReviewItem> {
    fetch!(
        fetch_one,
        c,
        ItemRow,
        sqlx::AssertSqlSafe(format!("SELECT {ITEM_COLUMNS} FROM access_review_items WHERE campaign_id = $1 AND user_id = $2")),
        campaign.0,
        user.0
    )?
    .into_item()
}

fn event(action: AuditAction, outcome: Outcome, org: OrgId, actor: Option<UserId>, campaign: CampaignId) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome).target("access_review", campaign);
    ev.org_id = Some(org);
    ev.actor = actor;
    ev
}

/// Opens a campaign in the caller's transaction: the snapshot of every enabled workforce
/// account (role, memberships, last sign-in, last message). `StoreError::State` when one is
/// already open.
async fn open_in(c: &mut Conn<'_>, org: OrgId, opened_by: Option<UserId>, origin: CampaignTrigger, meta: &RequestMeta) -> Result<Campaign> {
    let open = scalar!(
        fetch_optional,
        &mut *c,
        uuid::Uuid,
        "SELECT id FROM access_review_campaigns WHERE org_id = $1 AND status = 'open'",
        org.0
    )?;
    if open.is_some() {
        return Err(StoreError::State("a campaign is already open: close it first"));
    }
    let schedule = schedule_of(c, org).await?;
    let now = now_ms();
    let id = CampaignId::new();
    let due_at = schedule.due_at(now);
    // DO NOTHING rather than catching the unique-index error: on PostgreSQL a failed statement
    // aborts the transaction, which the writer shares with other jobs.
    let inserted = exec!(
        &mut *c,
        "INSERT INTO access_review_campaigns (id, org_id, status, origin, opened_at, opened_by, due_at) VALUES ($1, $2, 'open', $3, $4, $5, $6) \
         ON CONFLICT DO NOTHING",
        id.0,
        org.0,
        origin.as_str(),
        now,
        opened_by.map(|u| u.0),
        due_at
    )?;
    if inserted == 0 {
        // Another node opened one at the same moment.
        return Err(StoreError::State("a campaign is already open: close it first"));
    }

    let mut memberships: HashMap<uuid::Uuid, Vec<Membership>> = HashMap::new();
    let rows = fetch!(
        fetch_all,
        &mut *c,
        (uuid::Uuid, uuid::Uuid, String),
        "SELECT m.user_id, c.id, c.kind FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE c.org_id = $1 ORDER BY c.id",
        org.0
    )?;
    for (user, conv, kind) in rows {
        let kind = ConversationKind::parse(&kind).ok_or(StoreError::Corrupt("conversations.kind"))?;
        memberships.entry(user).or_default().push(Membership { conversation_id: ConversationId(conv), kind });
    }
    let sign_ins: HashMap<uuid::Uuid, i64> = fetch!(
        fetch_all,
        &mut *c,
        (uuid::Uuid, i64),
        "SELECT user_id, MAX(created_at) FROM sessions WHERE org_id = $1 GROUP BY user_id",
        org.0
    )?
    .into_iter()
    .collect();
    let messages: HashMap<uuid::Uuid, i64> = fetch!(
        fetch_all,
        &mut *c,
        (uuid::Uuid, i64),
        "SELECT m.sender_id, MAX(m.created_at) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE c.org_id = $1 GROUP BY m.sender_id",
        org.0
    )?
    .into_iter()
    .collect();

    // The campaign before this one, whose delegations carry over.
    let previous = scalar!(
        fetch_optional,
        &mut *c,
        uuid::Uuid,
        "SELECT id FROM access_review_campaigns WHERE org_id = $1 AND id <> $2 ORDER BY opened_at DESC, id DESC LIMIT 1",
        org.0,
        id.0
    )?;
    let people = enabled_workforce(c, org).await?;
    let mut items = 0i64;
    for u in people.into_iter().filter(|u| in_scope(u.role, u.disabled)) {
        let mine = memberships.remove(&u.id.0).unwrap_or_default();
        let json = serde_json::to_string(&mine).map_err(|_| StoreError::Corrupt("access_review_items.memberships"))?;
        exec!(
            &mut *c,
            "INSERT INTO access_review_items (campaign_id, user_id, login, display_name, role, mfa_enabled, memberships, \
             membership_count, last_sign_in_at, last_message_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            id.0,
            u.id.0,
            u.login.as_str(),
            u.display_name.as_str(),
            u.role.as_str(),
            u.mfa_enabled,
            json.as_str(),
            mine.len() as i64,
            sign_ins.get(&u.id.0).copied(),
            messages.get(&u.id.0).copied()
        )?;
        items += 1;
    }
    if let Some(previous) = previous {
        // A manager keeps their people from one campaign to the next, while they are still an
        // enabled workforce account (never a delegation of one's own item: that was refused).
        exec!(
            &mut *c,
            "UPDATE access_review_items SET reviewer_id = (SELECT p.reviewer_id FROM access_review_items p \
             JOIN users r ON r.id = p.reviewer_id \
             WHERE p.campaign_id = $2 AND p.user_id = access_review_items.user_id AND r.disabled_at IS NULL \
             AND r.role <> 'patient' AND r.id <> access_review_items.user_id) \
             WHERE campaign_id = $1 AND role NOT IN ('admin', 'compliance_officer')",
            id.0,
            previous
        )?;
    }
    let carried = scalar!(
        fetch_one,
        &mut *c,
        i64,
        "SELECT COUNT(*) FROM access_review_items WHERE campaign_id = $1 AND reviewer_id IS NOT NULL",
        id.0
    )?;
    let ev = event(AuditAction::AccessReviewOpen, Outcome::Success, org, opened_by, id)
        .detail("trigger", DetailValue::Code(origin.as_str()))
        .detail("items", DetailValue::Int(items))
        .detail("delegated", DetailValue::Int(carried))
        .detail("due_at", DetailValue::Int(due_at));
    audit::append(c, &ev, meta).await?;
    campaign_of(c, org, id).await
}

impl Store {
    /// The organisation's review cadence (the default, quarterly, until changed).
    pub async fn access_review_schedule(&self, org: OrgId) -> Result<ReviewSchedule> {
        self.read(move |mut c| Box::pin(async move { schedule_of(&mut c, org).await })).await
    }

    /// Changes the organisation's review cadence (audited `access_review.schedule`). An open
    /// campaign keeps its deadline.
    pub async fn set_access_review_schedule(
        &self,
        org: OrgId,
        actor: UserId,
        s: ReviewSchedule,
        meta: RequestMeta,
    ) -> Result<ReviewSchedule> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let (cadence, window) = (i64::from(s.cadence_days), i64::from(s.window_days));
                // One statement, so two nodes saving at once cannot collide on the key.
                exec!(
                    &mut c,
                    "INSERT INTO access_review_settings (org_id, cadence_days, window_days, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (org_id) DO UPDATE SET cadence_days = excluded.cadence_days, window_days = excluded.window_days, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    org.0,
                    cadence,
                    window,
                    now,
                    actor.0
                )?;
                let mut ev = AuditEvent::new(AuditAction::AccessReviewSchedule, Outcome::Success)
                    .detail("cadence_days", DetailValue::Int(cadence))
                    .detail("window_days", DetailValue::Int(window));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(s)
            })
        })
        .await
    }

    /// When the organisation's next scheduled campaign opens (Unix ms), from its cadence and
    /// its last campaign (or its creation).
    pub async fn next_access_review_at(&self, org: OrgId) -> Result<i64> {
        self.read(move |mut c| {
            Box::pin(async move {
                let schedule = schedule_of(&mut c, org).await?;
                let created = scalar!(fetch_one, &mut c, i64, "SELECT created_at FROM organizations WHERE id = $1", org.0)?;
                let last =
                    scalar!(fetch_one, &mut c, Option<i64>, "SELECT MAX(opened_at) FROM access_review_campaigns WHERE org_id = $1", org.0)?;
                Ok(schedule.next_opening(last, created))
            })
        })
        .await
    }

    /// Opens a campaign now (audited `access_review.open`); `opened_by` is the admin or
    /// compliance officer. `StoreError::State` when one is already open.
    pub async fn open_access_review(&self, org: OrgId, opened_by: UserId, meta: RequestMeta) -> Result<Campaign> {
        self.write(move |mut c| Box::pin(async move { open_in(&mut c, org, Some(opened_by), CampaignTrigger::Manual, &meta).await })).await
    }

    /// Opens a campaign in every organisation whose cadence has come due at `now` and that has
    /// none open. Safe to run on every node: the check is repeated in the opening's
    /// transaction, and at most one campaign per organisation can be open. Returns how many
    /// opened.
    pub async fn open_due_access_reviews(&self, now: i64, meta: RequestMeta) -> Result<usize> {
        let mut opened = 0;
        for org in self.orgs().await? {
            let o = org.id;
            let created = org.created_at;
            let meta = meta.clone();
            let done = self
                .write(move |mut c| {
                    Box::pin(async move {
                        let schedule = schedule_of(&mut c, o).await?;
                        let (last, open) = fetch!(
                            fetch_one,
                            &mut c,
                            (Option<i64>, i64),
                            "SELECT MAX(opened_at), COUNT(CASE WHEN status = 'open' THEN 1 END) FROM access_review_campaigns WHERE org_id = $1",
                            o.0
                        )?;
                        if open > 0 || !schedule.due(last, created, now) {
                            return Ok(false);
                        }
                        match open_in(&mut c, o, None, CampaignTrigger::Schedule, &meta).await {
                            Ok(_) => Ok(true),
                            Err(StoreError::State(_)) => Ok(false),
                            Err(e) => Err(e),
                        }
                    })
                })
                .await?;
            opened += usize::from(done);
        }
        Ok(opened)
    }

    /// The organisation's campaigns, newest first.
    pub async fn access_review_campaigns(&self, org: OrgId) -> Result<Vec<Campaign>> {
        self.read(move |mut c| Box::pin(async move { campaigns_of(&mut c, org, None).await })).await
    }

    /// One campaign of the organisation (NotFound for another's).
    pub async fn access_review_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        self.read(move |mut c| Box::pin(async move { campaign_of(&mut c, org, id).await })).await
    }

    /// A campaign's items, by login name.
    pub async fn access_review_items(&self, org: OrgId, id: CampaignId) -> Result<Vec<ReviewItem>> {
        self.read(move |mut c| {
            Box::pin(async move {
                campaign_of(&mut c, org, id).await?;
                fetch!(
                    fetch_all,
                    &mut c,
                    ItemRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {ITEM_COLUMNS} FROM access_review_items WHERE campaign_id = $1 ORDER BY login, user_id"
                    )),
                    id.0
                )?
                .into_iter()
                .map(ItemRow::into_item)
                .collect()
            })
        })
        .await
    }

    /// Records a reviewer's decision on one account of an open campaign (audited
    /// `access_review.decide`). A revocation disables the account in the same transaction:
    /// sessions revoked, wipes queued, `admin.user_disable` audited with `via`
    /// `access_review`. A certification may be changed to a revocation while the campaign is
    /// open; a revocation is final. Refused: the reviewer's own access (`Denied`), a closed
    /// campaign or a final revocation, and the organisation's last active admin (`State`).
    pub async fn decide_access_review(
        &self,
        actor: Actor,
        id: CampaignId,
        subject: UserId,
        decision: ItemDecision,
        meta: RequestMeta,
    ) -> Result<Decided> {
        self.write(move |mut c| {
            Box::pin(async move {
                let org = actor.org_id;
                let campaign = campaign_of(&mut c, org, id).await?;
                let item = item_of(&mut c, id, subject).await?;
                may_decide(&actor, subject, item.reviewer)?;
                if may_review(&actor).is_err() {
                    // A delegate never judges an admin or compliance officer, even one promoted
                    // after the item was delegated.
                    let now_role = user_in_org(&mut c, org, subject).await?.role;
                    if matches!(now_role, Role::Admin | Role::ComplianceOfficer) {
                        return Err(StoreError::Denied(ward_domain::policy::Denial::RoleNotPermitted));
                    }
                }
                if campaign.status != CampaignStatus::Open {
                    return Err(StoreError::State("the campaign is closed"));
                }
                if item.decision == Some(Decision::Revoke) {
                    return Err(StoreError::State(
                        "this access was already revoked; re-enable the account from Users if that was a mistake",
                    ));
                }
                let now = now_ms();
                let (reason, note) = match &decision {
                    ItemDecision::Certify => (None, None),
                    ItemDecision::Revoke { reason, note } => (Some(*reason), note.clone()),
                };
                // Conditional, and before the account is touched: a revocation another reviewer
                // recorded meanwhile stays final, and a campaign closed meanwhile takes nothing.
                let recorded = exec!(
                    &mut c,
                    "UPDATE access_review_items SET decision = $3, reason = $4, note = $5, decided_by = $6, decided_at = $7 \
                     WHERE campaign_id = $1 AND user_id = $2 AND (decision IS NULL OR decision = 'certify') \
                     AND EXISTS (SELECT 1 FROM access_review_campaigns WHERE id = $1 AND status = 'open') \
                     AND ($8 OR reviewer_id = $6)",
                    id.0,
                    subject.0,
                    decision.decision().as_str(),
                    reason.map(RevokeReason::as_str),
                    note.as_deref(),
                    actor.user_id.0,
                    now,
                    may_review(&actor).is_ok()
                )?;
                if recorded == 0 {
                    return Err(StoreError::State(
                        "the item was revoked, given to another reviewer or the campaign closed meanwhile: reload it",
                    ));
                }
                let mut revoked_sessions = Vec::new();
                let mut disabled = false;
                if reason.is_some() {
                    let account = user_in_org(&mut c, org, subject).await?;
                    if !account.disabled {
                        if account.role == Role::Admin {
                            keep_another_admin(&mut c, org, subject).await?;
                        }
                        revoked_sessions = disable_account(&mut c, org, subject, Some(actor.user_id), Some("access_review"), &meta).await?;
                        disabled = true;
                    }
                }
                let mut ev = event(AuditAction::AccessReviewDecide, Outcome::Success, org, Some(actor.user_id), id)
                    .detail("user", DetailValue::Id(subject.0))
                    .detail("decision", DetailValue::Code(decision.decision().as_str()));
                if may_review(&actor).is_err() {
                    ev = ev.detail("delegated", DetailValue::Bool(true));
                }
                if let Some(r) = reason {
                    ev = ev
                        .detail("reason", DetailValue::Code(r.as_str()))
                        .detail("disabled", DetailValue::Bool(disabled))
                        .detail("sessions_revoked", DetailValue::Int(revoked_sessions.len() as i64));
                }
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Decided { item: item_of(&mut c, id, subject).await?, revoked_sessions, disabled })
            })
        })
        .await
    }

    /// Open campaigns with items delegated to `reviewer` (a delegate's part ends at the close;
    /// the results are the reviewers'), newest first; the counts are of those items only.
    pub async fn delegated_access_reviews(&self, org: OrgId, reviewer: UserId) -> Result<Vec<Campaign>> {
        self.read(move |mut c| Box::pin(async move { campaigns_of(&mut c, org, Some(reviewer)).await })).await
    }

    /// One open campaign with only the items delegated to `reviewer` (counts of those items);
    /// `NotFound` when none is, when it is closed, or when it is another organisation's.
    pub async fn delegated_access_review(&self, org: OrgId, id: CampaignId, reviewer: UserId) -> Result<(Campaign, Vec<ReviewItem>)> {
        self.read(move |mut c| {
            Box::pin(async move {
                let mut campaign = campaign_of(&mut c, org, id).await?;
                if campaign.status != CampaignStatus::Open {
                    return Err(StoreError::NotFound);
                }
                let items = fetch!(
                    fetch_all,
                    &mut c,
                    ItemRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {ITEM_COLUMNS} FROM access_review_items WHERE campaign_id = $1 AND reviewer_id = $2 ORDER BY login, user_id"
                    )),
                    id.0,
                    reviewer.0
                )?
                .into_iter()
                .map(ItemRow::into_item)
                .collect::<Result<Vec<_>>>()?;
                if items.is_empty() {
                    return Err(StoreError::NotFound);
                }
                campaign.counts = counts_of(&mut c, id.0, Some(reviewer)).await?;
                Ok((campaign, items))
            })
        })
        .await
    }

    /// How many undecided items of open campaigns are delegated to `reviewer` (what the app
    /// shows as "access reviews to decide").
    pub async fn access_reviews_to_decide(&self, org: OrgId, reviewer: UserId) -> Result<u32> {
        self.read(move |mut c| {
            Box::pin(async move {
                let n = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM access_review_items i JOIN access_review_campaigns c ON c.id = i.campaign_id \
                     WHERE c.org_id = $1 AND c.status = 'open' AND i.reviewer_id = $2 AND i.decision IS NULL",
                    org.0,
                    reviewer.0
                )?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            })
        })
        .await
    }

    /// Delegates items of an open campaign to `reviewer`, or gives them back to the
    /// organisation's reviewers (`None`). Audited `access_review.assign`. Refused: a closed
    /// campaign (`State`), an account not in the campaign (`NotFound`), a reviewer who is not
    /// an enabled workforce account of the organisation or is one of the accounts (`Denied`).
    pub async fn assign_access_review_items(
        &self,
        actor: Actor,
        id: CampaignId,
        reviewer: Option<UserId>,
        users: Vec<UserId>,
        meta: RequestMeta,
    ) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let org = actor.org_id;
                may_review(&actor)?;
                let campaign = campaign_of(&mut c, org, id).await?;
                if campaign.status != CampaignStatus::Open {
                    return Err(StoreError::State("the campaign is closed"));
                }
                let delegate = match reviewer {
                    Some(r) => Some(user_in_org(&mut c, org, r).await?),
                    None => None,
                };
                let mut users = users;
                users.sort_unstable_by_key(|u| u.0);
                users.dedup();
                for u in &users {
                    let item = item_of(&mut c, id, *u).await?;
                    if let Some(d) = &delegate {
                        may_delegate(actor.user_id, (d.id, d.role, d.disabled), (*u, item.role))?;
                    }
                    exec!(
                        &mut c,
                        "UPDATE access_review_items SET reviewer_id = $3 WHERE campaign_id = $1 AND user_id = $2",
                        id.0,
                        u.0,
                        reviewer.map(|r| r.0)
                    )?;
                }
                let mut ev = event(AuditAction::AccessReviewAssign, Outcome::Success, org, Some(actor.user_id), id)
                    .detail("items", DetailValue::Int(users.len() as i64));
                if let Some(r) = reviewer {
                    ev = ev.detail("reviewer", DetailValue::Id(r.0));
                }
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Closes an open campaign: every undecided item becomes `not_reviewed` (never
    /// certified). Audited `access_review.close` with the counts. `StoreError::State` when it
    /// is already closed.
    pub async fn close_access_review(&self, org: OrgId, actor: UserId, id: CampaignId, meta: RequestMeta) -> Result<Campaign> {
        self.write(move |mut c| {
            Box::pin(async move {
                let campaign = campaign_of(&mut c, org, id).await?;
                if campaign.status != CampaignStatus::Open {
                    return Err(StoreError::State("the campaign is already closed"));
                }
                let now = now_ms();
                exec!(
                    &mut c,
                    "UPDATE access_review_items SET decision = 'not_reviewed', decided_at = $2 WHERE campaign_id = $1 AND decision IS NULL",
                    id.0,
                    now
                )?;
                exec!(
                    &mut c,
                    "UPDATE access_review_campaigns SET status = 'closed', closed_at = $3, closed_by = $4 WHERE id = $1 AND org_id = $2",
                    id.0,
                    org.0,
                    now,
                    actor.0
                )?;
                let closed = campaign_of(&mut c, org, id).await?;
                let n = closed.counts;
                let ev = event(AuditAction::AccessReviewClose, Outcome::Success, org, Some(actor), id)
                    .detail("certified", DetailValue::Int(i64::from(n.certified)))
                    .detail("revoked", DetailValue::Int(i64::from(n.revoked)))
                    .detail("not_reviewed", DetailValue::Int(i64::from(n.not_reviewed)));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(closed)
            })
        })
        .await
    }
}
