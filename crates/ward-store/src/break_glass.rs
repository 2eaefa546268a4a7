//! Break-glass (emergency access) grants: a clinician or nurse outside a patient's
//! conversations reads them for a short window, every read audited as a disclosure, and a
//! compliance officer reviews each use.
//!
//! The free-text reason and review note may carry PHI: they are sealed under the patient's data
//! key, bound to the grant, and never copied into the audit log (which keeps the category).

use ward_crypto::{Keyring, SealContext};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::break_glass::{ReasonCategory, ReasonText, ReviewStatus};
use ward_domain::conversation::ConversationKind;
use ward_domain::disclosure::{PURPOSE_BREAK_GLASS, PURPOSE_KEY, RECIPIENT_KEY};
use ward_domain::ids::{ConversationId, DeviceId, OrgId, PatientId, UserId};
use ward_domain::policy::Actor;

use crate::conversations::title_context;
use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::messages::message_page;
use crate::patients::patient_id_in_org;
use crate::{Message, Page, RequestMeta, Store, audit, now_ms};

/// One break-glass grant. `reason` and `review_note` are opened only for the review queue.
#[derive(Debug, Clone)]
pub struct BreakGlassGrant {
    /// Id.
    pub id: uuid::Uuid,
    /// The organisation.
    pub org_id: OrgId,
    /// The patient whose conversations it opens.
    pub patient_id: PatientId,
    /// Who asked (and may read).
    pub requester_id: UserId,
    /// The stated category.
    pub reason_category: ReasonCategory,
    /// The free-text reason (PHI), when opened.
    pub reason: Option<String>,
    /// When it was granted (Unix ms).
    pub granted_at: i64,
    /// When the window closes (Unix ms).
    pub expires_at: i64,
    /// When it was ended early, and by whom.
    pub revoked_at: Option<i64>,
    /// Who ended it early.
    pub revoked_by: Option<UserId>,
    /// The compliance review.
    pub review_status: ReviewStatus,
    /// Who reviewed it.
    pub reviewed_by: Option<UserId>,
    /// When.
    pub reviewed_at: Option<i64>,
    /// The reviewer's note (PHI-capable), when opened.
    pub review_note: Option<String>,
}

impl BreakGlassGrant {
    /// Whether reads are allowed at `now`.
    pub fn active_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A conversation about the patient, as a break-glass reader sees it (no membership state).
#[derive(Debug, Clone)]
pub struct BreakGlassConversation {
    /// Id.
    pub id: ConversationId,
    /// Title, opened.
    pub title: Option<String>,
    /// When it started.
    pub created_at: i64,
    /// The newest message's sequence number.
    pub last_message_seq: i64,
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    patient_id: uuid::Uuid,
    requester_id: uuid::Uuid,
    reason_category: String,
    reason_sealed: Vec<u8>,
    granted_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    revoked_by: Option<uuid::Uuid>,
    review_status: String,
    reviewed_by: Option<uuid::Uuid>,
    reviewed_at: Option<i64>,
    review_note_sealed: Option<Vec<u8>>,
}

const GRANT_COLUMNS: &str = "id, org_id, patient_id, requester_id, reason_category, reason_sealed, granted_at, expires_at, revoked_at, \
     revoked_by, review_status, reviewed_by, reviewed_at, review_note_sealed";

impl GrantRow {
    async fn into_grant(self, c: &mut Conn<'_>, ring: Option<&Keyring>) -> Result<BreakGlassGrant> {
        let org = OrgId(self.org_id);
        let patient = PatientId(self.patient_id);
        let (reason, review_note) = match ring {
            Some(ring) => {
                let reason =
                    open_field(c, ring, &text_context(purpose::BREAK_GLASS_REASON, org, patient, self.id), &self.reason_sealed).await?;
                let note = match &self.review_note_sealed {
                    Some(s) => Some(open_field(c, ring, &text_context(purpose::BREAK_GLASS_NOTE, org, patient, self.id), s).await?),
                    None => None,
                };
                (Some(reason), note)
            }
            None => (None, None),
        };
        Ok(BreakGlassGrant {
            id: self.id,
            org_id: org,
            patient_id: patient,
            requester_id: UserId(self.requester_id),
            reason_category: ReasonCategory::parse(&self.reason_category)
                .ok_or(StoreError::Corrupt("break_glass_grants.reason_category"))?,
            reason,
            granted_at: self.granted_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            revoked_by: self.revoked_by.map(UserId),
            review_status: ReviewStatus::parse(&self.review_status).ok_or(StoreError::Corrupt("break_glass_grants.review_status"))?,
            reviewed_by: self.reviewed_by.map(UserId),
            reviewed_at: self.reviewed_at,
            review_note,
        })
    }
}

/// Where a grant's free text is sealed: under the patient's key, bound to the grant.
fn text_context(purpose: &'static str, org: OrgId, patient: PatientId, grant: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose, org: org.0, scope: patient.0, record: grant }
}

async fn grant_row(c: &mut Conn<'_>, org: OrgId, id: uuid::Uuid) -> Result<Option<GrantRow>> {
    Ok(fetch!(
        fetch_optional,
        c,
        GrantRow,
        sqlx::AssertSqlSafe(format!("SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE id = $1 AND org_id = $2")),
        id,
        org.0
    )?)
}

fn event(action: AuditAction, outcome: Outcome, actor: &Actor, device: Option<DeviceId>, grant: uuid::Uuid) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome).target("break_glass", grant);
    ev.org_id = Some(actor.org_id);
    ev.actor = Some(actor.user_id);
    ev.device = device;
    ev
}

/// A break-glass read: a disclosure of the patient's information to the reader.
fn read_event(actor: &Actor, device: DeviceId, grant: &BreakGlassGrant, op: &'static str) -> AuditEvent {
    event(AuditAction::BreakGlassRead, Outcome::Success, actor, Some(device), grant.id)
        .patient(Some(grant.patient_id))
        .detail("op", DetailValue::Code(op))
        .detail(RECIPIENT_KEY, DetailValue::Id(actor.user_id.0))
        .detail(PURPOSE_KEY, DetailValue::Code(PURPOSE_BREAK_GLASS))
}

impl Store {
    /// Grants `actor` read access to the patient's conversations for `minutes`, with the reason
    /// sealed. Audited as `break_glass.request` (the category, never the text); the alert
    /// evaluator turns that event into an alert for the compliance officers. The role and the
    /// step-up are the caller's checks.
    #[allow(clippy::too_many_arguments, reason = "the request's fields, each distinct")]
    pub async fn request_break_glass(
        &self,
        actor: Actor,
        device: DeviceId,
        patient: PatientId,
        category: ReasonCategory,
        reason: ReasonText,
        minutes: u32,
        meta: RequestMeta,
    ) -> Result<BreakGlassGrant> {
        let org = actor.org_id;
        let exists = self.read(move |mut c| Box::pin(async move { patient_id_in_org(&mut c, org, patient).await })).await;
        if let Err(e) = exists {
            if matches!(e, StoreError::NotFound) {
                let mut ev =
                    AuditEvent::new(AuditAction::BreakGlassRequest, Outcome::Denied).detail("reason", DetailValue::Code("unknown_patient"));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                ev.device = Some(device);
                self.record(ev, meta).await?;
            }
            return Err(e);
        }
        let key = self.current_key(org, ScopeKind::Patient, patient.0).await?;
        let id = uuid::Uuid::now_v7();
        let sealed = key.seal(&text_context(purpose::BREAK_GLASS_REASON, org, patient, id), reason.expose().as_bytes());
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let expires = now + i64::from(minutes) * 60_000;
                exec!(
                    &mut c,
                    "INSERT INTO break_glass_grants (id, org_id, patient_id, requester_id, reason_category, reason_sealed, granted_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    id,
                    org.0,
                    patient.0,
                    actor.user_id.0,
                    category.as_str(),
                    sealed.as_slice(),
                    now,
                    expires
                )?;
                let ev = event(AuditAction::BreakGlassRequest, Outcome::Success, &actor, Some(device), id)
                    .patient(Some(patient))
                    .detail("reason_category", DetailValue::Code(category.as_str()))
                    .detail("minutes", DetailValue::Int(i64::from(minutes)));
                audit::append(&mut c, &ev, &meta).await?;
                let row = grant_row(&mut c, org, id).await?.ok_or(StoreError::NotFound)?;
                row.into_grant(&mut c, None).await
            })
        })
        .await
    }

    /// The actor's grants that are still open at `now`, newest first (texts not opened).
    pub async fn my_break_glass_grants(&self, actor: Actor, now: i64) -> Result<Vec<BreakGlassGrant>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    GrantRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE requester_id = $1 AND org_id = $2 \
                         AND revoked_at IS NULL AND expires_at > $3 ORDER BY granted_at DESC"
                    )),
                    actor.user_id.0,
                    actor.org_id.0,
                    now
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(r.into_grant(&mut c, None).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// The actor's grant if it is open at `now`; otherwise the attempt is audited as denied and
    /// the answer is NotFound, as for any conversation the actor is not a member of.
    async fn open_grant(&self, actor: Actor, device: DeviceId, id: uuid::Uuid, now: i64, meta: &RequestMeta) -> Result<BreakGlassGrant> {
        let grant = self
            .read(move |mut c| {
                Box::pin(async move {
                    match grant_row(&mut c, actor.org_id, id).await? {
                        Some(r) if r.requester_id == actor.user_id.0 => Ok(Some(r.into_grant(&mut c, None).await?)),
                        _ => Ok(None),
                    }
                })
            })
            .await?;
        // The role is checked at each read, not only at the request: someone moved out of a
        // clinical role loses the access with it.
        let role_ok = ward_domain::policy::may_request_break_glass(&actor).is_ok();
        match grant {
            Some(g) if g.active_at(now) && role_ok => Ok(g),
            other => {
                let why = match other {
                    None => "unknown_grant",
                    Some(_) if !role_ok => "role",
                    Some(ref g) if g.revoked_at.is_some() => "revoked",
                    Some(_) => "expired",
                };
                let ev = event(AuditAction::BreakGlassRead, Outcome::Denied, &actor, Some(device), id)
                    .patient(other.as_ref().map(|g| g.patient_id))
                    .detail("reason", DetailValue::Code(why));
                self.record(ev, meta.clone()).await?;
                Err(StoreError::NotFound)
            }
        }
    }

    /// The patient-linked conversations of the grant's patient, newest first, while the grant
    /// is open at `now`. Audited as a break-glass read (a disclosure).
    pub async fn break_glass_conversations(
        &self,
        actor: Actor,
        device: DeviceId,
        grant: uuid::Uuid,
        now: i64,
        meta: RequestMeta,
    ) -> Result<Vec<BreakGlassConversation>> {
        let g = self.open_grant(actor, device, grant, now, &meta).await?;
        let ring = self.keyring().clone();
        let (org, patient) = (g.org_id, g.patient_id);
        let list = self
            .read(move |mut c| {
                Box::pin(async move {
                    let rows = fetch!(
                        fetch_all,
                        &mut c,
                        crate::conversations::ConvRow,
                        "SELECT id, kind, title, title_sealed, patient_id, created_at, last_message_seq, last_event_seq FROM conversations \
                         WHERE org_id = $1 AND patient_id = $2 AND kind = $3 ORDER BY id DESC LIMIT 500",
                        org.0,
                        patient.0,
                        ConversationKind::Patient.as_str()
                    )?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let title = match &r.title_sealed {
                            Some(s) => Some(open_field(&mut c, &ring, &title_context(org, ConversationId(r.id)), s).await?),
                            None => r.title.clone(),
                        };
                        out.push(BreakGlassConversation {
                            id: ConversationId(r.id),
                            title,
                            created_at: r.created_at,
                            last_message_seq: r.last_message_seq,
                        });
                    }
                    Ok(out)
                })
            })
            .await?;
        let ev = read_event(&actor, device, &g, "conversations").detail("count", DetailValue::Int(list.len() as i64));
        self.record(ev, meta).await?;
        Ok(list)
    }

    /// A page of messages of one of the patient's conversations under the grant, while it is
    /// open at `now`. A conversation that is not about the grant's patient answers NotFound.
    /// Audited as a break-glass read (a disclosure) with the conversation and the sequence range.
    #[allow(clippy::too_many_arguments, reason = "the read's fields, each distinct")]
    pub async fn break_glass_messages(
        &self,
        actor: Actor,
        device: DeviceId,
        grant: uuid::Uuid,
        conv: ConversationId,
        page: Page,
        limit: u32,
        now: i64,
        meta: RequestMeta,
    ) -> Result<Vec<Message>> {
        let g = self.open_grant(actor, device, grant, now, &meta).await?;
        let ring = self.keyring().clone();
        let (org, patient) = (g.org_id, g.patient_id);
        let found = self
            .read(move |mut c| {
                Box::pin(async move {
                    let about = fetch!(
                        fetch_optional,
                        &mut c,
                        (uuid::Uuid,),
                        "SELECT id FROM conversations WHERE id = $1 AND org_id = $2 AND patient_id = $3 AND kind = $4",
                        conv.0,
                        org.0,
                        patient.0,
                        ConversationKind::Patient.as_str()
                    )?;
                    if about.is_none() {
                        return Ok(None);
                    }
                    Ok(Some(message_page(&mut c, &ring, org, conv, page, limit).await?))
                })
            })
            .await?;
        let Some(msgs) = found else {
            let ev = event(AuditAction::BreakGlassRead, Outcome::Denied, &actor, Some(device), g.id)
                .detail("conversation", DetailValue::Id(conv.0))
                .detail("reason", DetailValue::Code("not_about_patient"));
            self.record(ev, meta).await?;
            return Err(StoreError::NotFound);
        };
        let mut ev = read_event(&actor, device, &g, "messages")
            .detail("conversation", DetailValue::Id(conv.0))
            .detail("count", DetailValue::Int(msgs.len() as i64));
        if let (Some(lo), Some(hi)) = (msgs.iter().map(|m| m.seq).min(), msgs.iter().map(|m| m.seq).max()) {
            ev = ev.detail("from_seq", DetailValue::Int(lo)).detail("to_seq", DetailValue::Int(hi));
        }
        self.record(ev, meta).await?;
        Ok(msgs)
    }

    /// The organisation's grants for review: pending first, then newest first; with `status`
    /// only those. The reason and note are opened (the reviewer needs them).
    pub async fn break_glass_queue(&self, org: OrgId, status: Option<ReviewStatus>, limit: u32) -> Result<Vec<BreakGlassGrant>> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    GrantRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE org_id = $1 AND ($2 = '' OR review_status = $2) \
                         ORDER BY CASE WHEN review_status = 'pending' THEN 0 ELSE 1 END, granted_at DESC, id DESC LIMIT $3"
                    )),
                    org.0,
                    status.map_or("", ReviewStatus::as_str),
                    i64::from(limit)
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(r.into_grant(&mut c, Some(&ring)).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// Records a compliance officer's verdict on a grant (once: a reviewed grant is a conflict
    /// of state). The note is sealed; the audit event keeps the verdict only.
    pub async fn review_break_glass(
        &self,
        actor: Actor,
        id: uuid::Uuid,
        status: ReviewStatus,
        note: Option<ReasonText>,
        meta: RequestMeta,
    ) -> Result<BreakGlassGrant> {
        if status == ReviewStatus::Pending {
            return Err(StoreError::State("a review is justified or unjustified"));
        }
        let org = actor.org_id;
        let ring = self.keyring().clone();
        let patient = self
            .read(move |mut c| Box::pin(async move { Ok(grant_row(&mut c, org, id).await?.map(|r| PatientId(r.patient_id))) }))
            .await?
            .ok_or(StoreError::NotFound)?;
        let sealed = match &note {
            Some(n) => {
                let key = self.current_key(org, ScopeKind::Patient, patient.0).await?;
                Some(key.seal(&text_context(purpose::BREAK_GLASS_NOTE, org, patient, id), n.expose().as_bytes()))
            }
            None => None,
        };
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let n = exec!(
                    &mut c,
                    "UPDATE break_glass_grants SET review_status = $3, reviewed_by = $4, reviewed_at = $5, review_note_sealed = $6 \
                     WHERE id = $1 AND org_id = $2 AND review_status = 'pending'",
                    id,
                    org.0,
                    status.as_str(),
                    actor.user_id.0,
                    now,
                    sealed.as_deref()
                )?;
                if n == 0 {
                    return Err(StoreError::State("this break-glass use was already reviewed"));
                }
                let ev = event(AuditAction::BreakGlassReview, Outcome::Success, &actor, None, id)
                    .patient(Some(patient))
                    .detail("status", DetailValue::Code(status.as_str()))
                    .detail("note", DetailValue::Bool(note.is_some()));
                audit::append(&mut c, &ev, &meta).await?;
                grant_row(&mut c, org, id).await?.ok_or(StoreError::NotFound)?.into_grant(&mut c, Some(&ring)).await
            })
        })
        .await
    }

    /// Ends a grant early. A grant that already ended (expired or revoked) is a conflict of state.
    pub async fn revoke_break_glass(&self, actor: Actor, id: uuid::Uuid, meta: RequestMeta) -> Result<BreakGlassGrant> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let row = grant_row(&mut c, actor.org_id, id).await?.ok_or(StoreError::NotFound)?;
                let patient = PatientId(row.patient_id);
                let n = exec!(
                    &mut c,
                    "UPDATE break_glass_grants SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
                    id,
                    now,
                    actor.user_id.0
                )?;
                if n == 0 {
                    return Err(StoreError::State("this break-glass grant has already ended"));
                }
                let ev = event(AuditAction::BreakGlassRevoke, Outcome::Success, &actor, None, id).patient(Some(patient));
                audit::append(&mut c, &ev, &meta).await?;
                grant_row(&mut c, actor.org_id, id).await?.ok_or(StoreError::NotFound)?.into_grant(&mut c, None).await
            })
        })
        .await
    }
}
