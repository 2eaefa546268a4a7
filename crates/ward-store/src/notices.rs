//! Organisation notice templates and the outbox of rendered notices waiting for a delivery
//! provider. Checking a template or a rendered text against the outbound content policy is the
//! caller's job (`ward_outbound`); the store keeps what passed, and refuses to queue a notice
//! unless the patient has a current consent for its channel and, for SMS and email, a
//! verified, fresh, unsuppressed contact to send it to, in the same transaction.

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::NoticeChannel;
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::consents::current_consent;
use crate::contacts::{contact_destination, kind_for, sendable_contact};
use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::patients::patient_id_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// A notice template of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTemplate {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// Unique name within the organisation.
    pub name: String,
    /// The medium it is written for.
    pub channel: NoticeChannel,
    /// The template text with `{field}` placeholders.
    pub body: String,
    /// Unix ms.
    pub created_at: i64,
    /// Who created it.
    pub created_by: UserId,
    /// Unix ms.
    pub updated_at: i64,
    /// Who last changed it.
    pub updated_by: UserId,
}

#[derive(sqlx::FromRow)]
struct TemplateRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    name: String,
    channel: String,
    body: String,
    created_at: i64,
    created_by: uuid::Uuid,
    updated_at: i64,
    updated_by: uuid::Uuid,
}

const TEMPLATE_COLUMNS: &str = "id, org_id, name, channel, body, created_at, created_by, updated_at, updated_by";

impl TemplateRow {
    fn into_template(self) -> Result<NoticeTemplate> {
        Ok(NoticeTemplate {
            id: self.id,
            org_id: OrgId(self.org_id),
            name: self.name,
            channel: NoticeChannel::parse(&self.channel).ok_or(StoreError::Corrupt("notice_templates.channel"))?,
            body: self.body,
            created_at: self.created_at,
            created_by: UserId(self.created_by),
            updated_at: self.updated_at,
            updated_by: UserId(self.updated_by),
        })
    }
}

/// A template's name, channel and text, already checked by the caller.
#[derive(Debug, Clone)]
pub struct TemplateDraft {
    /// Unique name within the organisation.
    pub name: String,
    /// The medium.
    pub channel: NoticeChannel,
    /// The text.
    pub body: String,
}

/// A rendered notice in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// The recipient.
    pub patient_id: PatientId,
    /// The medium.
    pub channel: NoticeChannel,
    /// What the provider resolves to an address: `contact:<id>` for SMS and email (the
    /// verified contact it goes to), `patient:<id>` for push.
    pub destination: String,
    /// The contact it goes to (SMS and email).
    pub contact_id: Option<uuid::Uuid>,
    /// The template it was rendered from.
    pub template_id: uuid::Uuid,
    /// The consent grant it was sent under.
    pub consent_id: uuid::Uuid,
    /// The rendered text (opened).
    pub body: String,
    /// `queued` until a provider takes it.
    pub status: String,
    /// Unix ms.
    pub created_at: i64,
    /// Who sent it.
    pub created_by: UserId,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    patient_id: uuid::Uuid,
    channel: String,
    destination: String,
    contact_id: Option<uuid::Uuid>,
    template_id: Option<uuid::Uuid>,
    consent_id: Option<uuid::Uuid>,
    body_sealed: Vec<u8>,
    status: String,
    created_at: i64,
    created_by: uuid::Uuid,
}

/// A notice to queue: the text passed the content policy.
#[derive(Debug, Clone)]
pub struct NoticeDraft {
    /// The recipient.
    pub patient_id: PatientId,
    /// The template it was rendered from.
    pub template_id: uuid::Uuid,
    /// The medium.
    pub channel: NoticeChannel,
    /// The rendered text.
    pub text: String,
}

/// What queuing a notice came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Queued for delivery.
    Queued(OutboxEntry),
    /// Refused: the patient has no current consent for the channel (the refusal is audited).
    ConsentRequired,
    /// Refused: the patient has no contact for the channel that is verified, within the
    /// re-verification period, unsuppressed and unclaimed by anyone else (audited).
    VerifiedContactRequired,
}

pub(crate) fn outbox_context(org: OrgId, patient: PatientId, id: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose: purpose::OUTBOX_BODY, org: org.0, scope: patient.0, record: id }
}

/// The destination reference for a push notice: the patient's app (no address involved).
fn destination(patient: PatientId) -> String {
    format!("patient:{}", patient.0)
}

async fn template_in_org(c: &mut Conn<'_>, org: OrgId, id: uuid::Uuid) -> Result<NoticeTemplate> {
    let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM notice_templates WHERE id = $1 AND org_id = $2");
    fetch!(fetch_one, c, TemplateRow, sqlx::AssertSqlSafe(sql), id, org.0)?.into_template()
}

fn template_event(org: OrgId, actor: UserId, id: uuid::Uuid, op: &'static str, channel: NoticeChannel) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::NoticeTemplate, Outcome::Success)
        .target("notice_template", id)
        .detail("op", DetailValue::Code(op))
        .detail("channel", DetailValue::Code(channel.as_str()));
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

impl Store {
    /// The organisation's notice templates, by name.
    pub async fn notice_templates(&self, org: OrgId) -> Result<Vec<NoticeTemplate>> {
        let rows = self
            .read(move |mut c| {
                Box::pin(async move {
                    let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM notice_templates WHERE org_id = $1 ORDER BY name, id");
                    Ok(fetch!(fetch_all, &mut c, TemplateRow, sqlx::AssertSqlSafe(sql), org.0)?)
                })
            })
            .await?;
        rows.into_iter().map(TemplateRow::into_template).collect()
    }

    /// One of the organisation's templates, or NotFound.
    pub async fn notice_template(&self, org: OrgId, id: uuid::Uuid) -> Result<NoticeTemplate> {
        self.read(move |mut c| Box::pin(async move { template_in_org(&mut c, org, id).await })).await
    }

    /// Saves a new template ([`StoreError::Conflict`] if the name is taken). Audited.
    pub async fn create_notice_template(
        &self,
        org: OrgId,
        actor: UserId,
        draft: TemplateDraft,
        meta: RequestMeta,
    ) -> Result<NoticeTemplate> {
        self.write(move |mut c| {
            Box::pin(async move {
                let (id, now) = (uuid::Uuid::now_v7(), now_ms());
                let n = exec!(
                    &mut c,
                    "INSERT INTO notice_templates (id, org_id, name, channel, body, created_at, created_by, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7) ON CONFLICT (org_id, name) DO NOTHING",
                    id,
                    org.0,
                    draft.name.as_str(),
                    draft.channel.as_str(),
                    draft.body.as_str(),
                    now,
                    actor.0
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict("a notice template with this name"));
                }
                audit::append(&mut c, &template_event(org, actor, id, "create", draft.channel), &meta).await?;
                template_in_org(&mut c, org, id).await
            })
        })
        .await
    }

    /// Replaces a template's name, channel and text. Audited.
    pub async fn update_notice_template(
        &self,
        org: OrgId,
        actor: UserId,
        id: uuid::Uuid,
        draft: TemplateDraft,
        meta: RequestMeta,
    ) -> Result<NoticeTemplate> {
        self.write(move |mut c| {
            Box::pin(async move {
                template_in_org(&mut c, org, id).await?;
                let taken = fetch!(
                    fetch_optional,
                    &mut c,
                    (uuid::Uuid,),
                    "SELECT id FROM notice_templates WHERE org_id = $1 AND name = $2 AND id <> $3",
                    org.0,
                    draft.name.as_str(),
                    id
                )?;
                if taken.is_some() {
                    return Err(StoreError::Conflict("a notice template with this name"));
                }
                exec!(
                    &mut c,
                    "UPDATE notice_templates SET name = $3, channel = $4, body = $5, updated_at = $6, updated_by = $7 WHERE id = $1 AND org_id = $2",
                    id,
                    org.0,
                    draft.name.as_str(),
                    draft.channel.as_str(),
                    draft.body.as_str(),
                    now_ms(),
                    actor.0
                )?;
                audit::append(&mut c, &template_event(org, actor, id, "update", draft.channel), &meta).await?;
                template_in_org(&mut c, org, id).await
            })
        })
        .await
    }

    /// Deletes a template (queued notices keep their rendered text). Audited.
    pub async fn delete_notice_template(&self, org: OrgId, actor: UserId, id: uuid::Uuid, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let t = template_in_org(&mut c, org, id).await?;
                exec!(&mut c, "DELETE FROM notice_templates WHERE id = $1 AND org_id = $2", id, org.0)?;
                audit::append(&mut c, &template_event(org, actor, id, "delete", t.channel), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Queues a rendered notice, sealed under the patient's data key, if the patient has a
    /// current consent for the channel; otherwise records the refusal. Either way audited as
    /// `notice.send`, in the same transaction as the consent check.
    pub async fn enqueue_notice(&self, org: OrgId, actor: UserId, draft: NoticeDraft, meta: RequestMeta) -> Result<NoticeOutcome> {
        let patient = draft.patient_id;
        let key = self.current_key(org, ScopeKind::Patient, patient.0).await?;
        let id = uuid::Uuid::now_v7();
        let sealed = key.seal(&outbox_context(org, patient, id), draft.text.as_bytes());
        self.write(move |mut c| {
            Box::pin(async move {
                patient_id_in_org(&mut c, org, patient).await?;
                let mut ev = AuditEvent::new(AuditAction::NoticeSend, Outcome::Success)
                    .target("patient", patient)
                    .patient(Some(patient))
                    .detail("channel", DetailValue::Code(draft.channel.as_str()))
                    .detail("template", DetailValue::Id(draft.template_id));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                let required = draft.channel.required_consent();
                let Some(consent) = current_consent(&mut c, org, patient, required).await? else {
                    ev.outcome = Outcome::Failure;
                    ev = ev.detail("reason", DetailValue::Code("consent_required")).detail("consent_channel", DetailValue::Code(required.as_str()));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(NoticeOutcome::ConsentRequired);
                };
                let contact_id = match kind_for(draft.channel) {
                    None => None,
                    Some(kind) => match sendable_contact(&mut c, org, patient, kind).await? {
                        Some(id) => Some(id),
                        None => {
                            ev.outcome = Outcome::Failure;
                            ev = ev.detail("reason", DetailValue::Code("verified_contact_required")).detail("contact_kind", DetailValue::Code(kind.as_str()));
                            audit::append(&mut c, &ev, &meta).await?;
                            return Ok(NoticeOutcome::VerifiedContactRequired);
                        }
                    },
                };
                let now = now_ms();
                let entry = OutboxEntry {
                    id,
                    org_id: org,
                    patient_id: patient,
                    channel: draft.channel,
                    destination: contact_id.map_or_else(|| destination(patient), contact_destination),
                    contact_id,
                    template_id: draft.template_id,
                    consent_id: consent.id,
                    body: draft.text,
                    status: "queued".into(),
                    created_at: now,
                    created_by: actor,
                };
                exec!(
                    &mut c,
                    "INSERT INTO notice_outbox (id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, \
                     body_sealed, status, created_at, created_by) VALUES ($1, $2, 'notice', $3, $11, $4, $5, $6, $7, $8, 'queued', $9, $10)",
                    id,
                    org.0,
                    patient.0,
                    entry.channel.as_str(),
                    entry.destination.as_str(),
                    entry.template_id,
                    consent.id,
                    sealed.as_slice(),
                    now,
                    actor.0,
                    contact_id
                )?;
                ev = ev.detail("notice", DetailValue::Id(id)).detail("consent", DetailValue::Id(consent.id));
                if let Some(contact) = contact_id {
                    ev = ev.detail("contact", DetailValue::Id(contact));
                }
                audit::append(&mut c, &ev, &meta).await?;
                Ok(NoticeOutcome::Queued(entry))
            })
        })
        .await
    }

    /// One notice of the patient's, with its text opened (the patient's app fetches it by the
    /// id a push carried). Another patient's notice, or one of another organisation, is
    /// [`StoreError::NotFound`], like one that does not exist.
    pub async fn patient_notice(&self, org: OrgId, patient: PatientId, id: uuid::Uuid) -> Result<OutboxEntry> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let r = fetch!(
                    fetch_optional,
                    &mut c,
                    OutboxRow,
                    "SELECT id, org_id, patient_id, channel, destination, contact_id, template_id, consent_id, body_sealed, status, created_at, \
                     created_by FROM notice_outbox WHERE id = $1 AND org_id = $2 AND patient_id = $3 AND kind = 'notice'",
                    id,
                    org.0,
                    patient.0
                )?
                .ok_or(StoreError::NotFound)?;
                let body = open_field(&mut c, &ring, &outbox_context(org, patient, r.id), &r.body_sealed).await?;
                Ok(OutboxEntry {
                    id: r.id,
                    org_id: OrgId(r.org_id),
                    patient_id: PatientId(r.patient_id),
                    channel: NoticeChannel::parse(&r.channel).ok_or(StoreError::Corrupt("notice_outbox.channel"))?,
                    destination: r.destination,
                    contact_id: r.contact_id,
                    template_id: r.template_id.ok_or(StoreError::Corrupt("notice_outbox.template_id"))?,
                    consent_id: r.consent_id.ok_or(StoreError::Corrupt("notice_outbox.consent_id"))?,
                    body,
                    status: r.status,
                    created_at: r.created_at,
                    created_by: UserId(r.created_by),
                })
            })
        })
        .await
    }

    /// The outbox entries for a patient, oldest first, with their text opened (for the
    /// delivery providers and for tests).
    pub async fn notice_outbox(&self, org: OrgId, patient: PatientId) -> Result<Vec<OutboxEntry>> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    OutboxRow,
                    "SELECT id, org_id, patient_id, channel, destination, contact_id, template_id, consent_id, body_sealed, status, created_at, \
                     created_by FROM notice_outbox WHERE org_id = $1 AND patient_id = $2 AND kind = 'notice' ORDER BY created_at, id",
                    org.0,
                    patient.0
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let body = open_field(&mut c, &ring, &outbox_context(org, patient, r.id), &r.body_sealed).await?;
                    out.push(OutboxEntry {
                        id: r.id,
                        org_id: OrgId(r.org_id),
                        patient_id: PatientId(r.patient_id),
                        channel: NoticeChannel::parse(&r.channel).ok_or(StoreError::Corrupt("notice_outbox.channel"))?,
                        destination: r.destination,
                        contact_id: r.contact_id,
                        template_id: r.template_id.ok_or(StoreError::Corrupt("notice_outbox.template_id"))?,
                        consent_id: r.consent_id.ok_or(StoreError::Corrupt("notice_outbox.consent_id"))?,
                        body,
                        status: r.status,
                        created_at: r.created_at,
                        created_by: UserId(r.created_by),
                    });
                }
                Ok(out)
            })
        })
        .await
    }
}
