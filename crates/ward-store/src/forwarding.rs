//! Forwarding: a message copied into another conversation, which is a new disclosure when a
//! patient's message reaches people outside the patient's care team (HIPAA 164.502(b)), made
//! under a permitted purpose or a recorded patient authorization (164.508), and accounted for
//! (164.528): one `message.forward` audit event per recipient outside the care team.
//!
//! An authorization's free text (recipient, purpose) may carry PHI: it is sealed under the
//! patient's data key and never copied into the audit log, which keeps its id.

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::break_glass::ReasonText;
use ward_domain::conversation::{ClientTxnId, DisclosurePurpose, MessageText};
use ward_domain::disclosure::{PURPOSE_AUTHORIZATION, PURPOSE_KEY, RECIPIENT_KEY};
use ward_domain::ids::{ConversationId, DeviceId, MessageId, OrgId, PatientId, UserId};
use ward_domain::policy::{self, Actor, Denial};

use crate::conversations::{ConvRow, member_ids, membership};
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, purpose};
use crate::messages::message_in;
use crate::patients::{on_care_team, patient_id_in_org};
use crate::{NewMessage, RequestMeta, Sent, Store, audit, now_ms};

/// What a forward outside the care team is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardBasis {
    /// A purpose permitted without the patient's authorization.
    Purpose(DisclosurePurpose),
    /// A recorded patient authorization, by id.
    Authorization(uuid::Uuid),
}

impl ForwardBasis {
    fn code(self) -> &'static str {
        match self {
            ForwardBasis::Purpose(p) => p.as_str(),
            ForwardBasis::Authorization(_) => PURPOSE_AUTHORIZATION,
        }
    }
}

/// What a forward did.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The new message in the target conversation (or the earlier one, on a retry).
    pub sent: Sent,
    /// The message it copies.
    pub source: MessageId,
}

/// A recorded patient authorization (its texts opened only for whoever recorded it).
#[derive(Debug, Clone)]
pub struct PatientAuthorization {
    /// Id, to give when forwarding.
    pub id: uuid::Uuid,
    /// The patient.
    pub patient_id: PatientId,
    /// Unix ms after which it no longer authorizes anything.
    pub expires_at: i64,
    /// Who recorded it.
    pub recorded_by: UserId,
    /// When (Unix ms).
    pub recorded_at: i64,
}

/// The forward a send carries: checked and recorded in the send's transaction.
#[derive(Debug, Clone)]
pub(crate) struct ForwardLink {
    source_conv: ConversationId,
    source_msg: MessageId,
    basis: Option<ForwardBasis>,
}

/// The outcome of checking a forward: the source's patient and who outside the care team
/// receives the message.
pub(crate) struct ForwardCheck {
    patient: Option<PatientId>,
    recipients: Vec<UserId>,
}

/// Where an authorization's free text is sealed: under the patient's key, bound to its id.
fn text_context(purpose: &'static str, org: OrgId, patient: PatientId, id: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose, org: org.0, scope: patient.0, record: id }
}

/// Whether `user` is the patient's own account.
async fn is_the_patient(c: &mut Conn<'_>, user: UserId, patient: PatientId) -> Result<bool> {
    Ok(scalar!(fetch_optional, c, i32, "SELECT 1 FROM users WHERE id = $1 AND patient_id = $2", user.0, patient.0)?.is_some())
}

/// Checks a forward inside the send's transaction: the actor still reads the source message,
/// and a patient's message reaching anyone outside the care team (or another conversation than
/// the patient's own) carries a purpose or a valid authorization for that patient.
pub(crate) async fn check_forward(c: &mut Conn<'_>, actor: &Actor, f: &ForwardLink, target: &ConvRow) -> Result<ForwardCheck> {
    let (source, _) = membership(c, actor, f.source_conv).await?;
    let msg = message_in(c, f.source_conv, f.source_msg).await?;
    if msg.recalled_at.is_some() {
        return Err(StoreError::State("a recalled message cannot be forwarded"));
    }
    if msg.shredded_at.is_some() {
        return Err(StoreError::State("a shredded message cannot be forwarded"));
    }
    let Some(patient) = source.patient() else { return Ok(ForwardCheck { patient: None, recipients: Vec::new() }) };
    let mut recipients = Vec::new();
    for u in member_ids(c, ConversationId(target.id)).await? {
        if u != actor.user_id && !on_care_team(c, patient, u).await? && !is_the_patient(c, u, patient).await? {
            recipients.push(u);
        }
    }
    let discloses = !recipients.is_empty() || target.patient() != Some(patient);
    match f.basis {
        None if discloses => return Err(Denial::DisclosurePurposeRequired.into()),
        Some(ForwardBasis::Authorization(id)) => {
            let found = fetch!(
                fetch_optional,
                c,
                (uuid::Uuid, i64),
                "SELECT patient_id, expires_at FROM patient_authorizations WHERE id = $1 AND org_id = $2",
                id,
                actor.org_id.0
            )?;
            match found {
                Some((p, expires)) if p == patient.0 && expires > now_ms() => {}
                _ => return Err(Denial::AuthorizationNotValid.into()),
            }
        }
        _ => {}
    }
    Ok(ForwardCheck { patient: Some(patient), recipients })
}

/// Links the new message to its source and audits the forward: one event per recipient outside
/// the care team (each a disclosure in the patient's accounting), or one naming no recipient.
#[allow(clippy::too_many_arguments, reason = "the send's parts, each distinct")]
pub(crate) async fn record_forward(
    c: &mut Conn<'_>,
    actor: &Actor,
    device: DeviceId,
    id: MessageId,
    conv: ConversationId,
    f: &ForwardLink,
    check: &ForwardCheck,
    meta: &RequestMeta,
    now: i64,
) -> Result<()> {
    let (purpose, authorization) = match f.basis {
        Some(ForwardBasis::Purpose(p)) => (Some(p.as_str()), None),
        Some(ForwardBasis::Authorization(a)) => (None, Some(a)),
        None => (None, None),
    };
    exec!(
        c,
        "INSERT INTO message_forwards (message_id, source_message_id, source_conversation_id, purpose, authorization_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        id.0,
        f.source_msg.0,
        f.source_conv.0,
        purpose,
        authorization,
        now
    )?;
    let base = || {
        let mut ev = AuditEvent::new(AuditAction::MessageForward, Outcome::Success)
            .target("message", id)
            .patient(check.patient)
            .detail("source", DetailValue::Id(f.source_msg.0))
            .detail("conversation", DetailValue::Id(conv.0));
        if let Some(a) = authorization {
            ev = ev.detail("authorization", DetailValue::Id(a));
        }
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        ev.device = Some(device);
        ev
    };
    if check.recipients.is_empty() {
        let mut ev = base();
        if let Some(b) = f.basis {
            ev = ev.detail(PURPOSE_KEY, DetailValue::Code(b.code()));
        }
        audit::append(c, &ev, meta).await?;
    }
    for r in &check.recipients {
        // A recipient implies a basis (check_forward refused the forward otherwise).
        let code = f.basis.map_or("unknown", ForwardBasis::code);
        let ev = base().detail(RECIPIENT_KEY, DetailValue::Id(r.0)).detail(PURPOSE_KEY, DetailValue::Code(code));
        audit::append(c, &ev, meta).await?;
    }
    Ok(())
}

/// A member just admitted to `conv` can read every patient message forwarded into it before:
/// each is a new disclosure to them when they are outside that patient's care team (and not the
/// patient). Records one `message.forward` event per such message, in the admission's
/// transaction, with the forward's basis (the actor is whoever added the member; detail `cause`
/// `member_added`). A forward made without a basis stayed inside the patient's own
/// conversations: there, admitting an outsider is already accounted as the membership change.
pub(crate) async fn disclose_forwards_to_new_member(
    c: &mut Conn<'_>,
    actor: &Actor,
    conv: ConversationId,
    user: UserId,
    meta: &RequestMeta,
) -> Result<usize> {
    #[derive(sqlx::FromRow)]
    struct Fwd {
        message_id: uuid::Uuid,
        sender_id: uuid::Uuid,
        source_message_id: uuid::Uuid,
        patient_id: uuid::Uuid,
        purpose: Option<String>,
        authorization_id: Option<uuid::Uuid>,
    }
    let rows = fetch!(
        fetch_all,
        c,
        Fwd,
        "SELECT f.message_id, m.sender_id, f.source_message_id, s.patient_id, f.purpose, f.authorization_id FROM message_forwards f \
         JOIN messages m ON m.id = f.message_id JOIN conversations s ON s.id = f.source_conversation_id \
         WHERE m.conversation_id = $1 AND s.patient_id IS NOT NULL AND m.recalled_at IS NULL AND m.shredded_at IS NULL ORDER BY m.seq",
        conv.0
    )?;
    let mut recorded = 0;
    for r in rows {
        let patient = PatientId(r.patient_id);
        // The forwarder disclosed it, they were not disclosed to.
        if r.sender_id == user.0 || on_care_team(c, patient, user).await? || is_the_patient(c, user, patient).await? {
            continue;
        }
        // Disclosed to them already (at the forward, or when they joined before): a member
        // removed and added again learns nothing new.
        let already = fetch!(
            fetch_optional,
            c,
            (i64,),
            "SELECT idx FROM audit_events WHERE action = 'message.forward' AND target_type = 'message' AND target_id = $1 \
             AND outcome = 'success' AND detail LIKE $2 LIMIT 1",
            r.message_id.to_string(),
            format!("%\"{RECIPIENT_KEY}\":\"{}\"%", user.0)
        )?;
        if already.is_some() {
            continue;
        }
        let code = match (r.purpose.as_deref(), r.authorization_id) {
            (Some(p), _) => [DisclosurePurpose::Treatment, DisclosurePurpose::Payment, DisclosurePurpose::Operations]
                .into_iter()
                .map(DisclosurePurpose::as_str)
                .find(|c| *c == p)
                .ok_or(StoreError::Corrupt("message_forwards.purpose"))?,
            (None, Some(_)) => PURPOSE_AUTHORIZATION,
            (None, None) => continue,
        };
        let mut ev = AuditEvent::new(AuditAction::MessageForward, Outcome::Success)
            .target("message", MessageId(r.message_id))
            .patient(Some(patient))
            .detail("source", DetailValue::Id(r.source_message_id))
            .detail("conversation", DetailValue::Id(conv.0))
            .detail("cause", DetailValue::Code("member_added"))
            .detail(RECIPIENT_KEY, DetailValue::Id(user.0))
            .detail(PURPOSE_KEY, DetailValue::Code(code));
        if let Some(a) = r.authorization_id {
            ev = ev.detail("authorization", DetailValue::Id(a));
        }
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        audit::append(c, &ev, meta).await?;
        recorded += 1;
    }
    Ok(recorded)
}

/// The forwarded text: a header naming the original sender, the optional note, the original.
fn forwarded_text(sender: &str, note: Option<&str>, original: &str) -> Result<MessageText> {
    let mut text = String::new();
    if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
        text.push_str(n);
        text.push_str("\n\n");
    }
    text.push_str(&format!("---------- Forwarded from {sender} ----------\n"));
    text.push_str(original);
    Ok(MessageText::parse(text)?)
}

impl Store {
    /// Forwards a message into another conversation the actor is a member of, as a new message
    /// linked to the source. A patient's message reaching anyone outside the patient's care team
    /// needs `basis`; the disclosure is audited with the message in one transaction.
    /// Attachments are not forwarded.
    #[allow(clippy::too_many_arguments, reason = "the request's fields, each distinct")]
    pub async fn forward_message(
        &self,
        actor: Actor,
        device: DeviceId,
        source_conv: ConversationId,
        source_msg: MessageId,
        target: ConversationId,
        client_txn_id: ClientTxnId,
        note: Option<String>,
        basis: Option<ForwardBasis>,
        meta: RequestMeta,
    ) -> Result<Forwarded> {
        policy::may_forward_message(&actor)?;
        let ring = self.keyring().clone();
        // The source text is read (and the sender's name looked up) before the write, so the
        // new body can be sealed outside the single writer; the write checks the source again.
        let (original, sender) = self
            .read(move |mut c| {
                Box::pin(async move {
                    membership(&mut c, &actor, source_conv).await?;
                    let msg = message_in(&mut c, source_conv, source_msg).await?;
                    let sender = scalar!(fetch_one, &mut c, String, "SELECT display_name FROM users WHERE id = $1", msg.sender_id)?;
                    let msg = msg.open(&mut c, &ring, actor.org_id).await?;
                    Ok((msg.body, sender))
                })
            })
            .await?;
        let Some(original) = original else {
            return Err(StoreError::State("a recalled or shredded message cannot be forwarded"));
        };
        let body = forwarded_text(&sender, note.as_deref(), &original)?;
        let new = NewMessage {
            conversation_id: target,
            client_txn_id,
            body,
            priority: ward_domain::conversation::Priority::Routine,
            corrects: None,
            attachments: Vec::new(),
        };
        let link = ForwardLink { source_conv, source_msg, basis };
        let sent = match self.send_message_once(actor, device, new.clone(), meta.clone(), Some(link.clone())).await {
            Err(StoreError::KeyDestroyed) => self.send_message_once(actor, device, new, meta, Some(link)).await,
            other => other,
        }?;
        Ok(Forwarded { sent, source: source_msg })
    }

    /// Records a patient's authorization to disclose their information to `recipient` for
    /// `purpose` until `expires_at` (Unix ms, in the future). Admins and the patient's care
    /// team record them; the texts are sealed, the audit event keeps the id.
    #[allow(clippy::too_many_arguments, reason = "the record's fields, each distinct")]
    pub async fn record_authorization(
        &self,
        actor: Actor,
        patient: PatientId,
        recipient: ReasonText,
        purpose_text: ReasonText,
        expires_at: i64,
        meta: RequestMeta,
    ) -> Result<PatientAuthorization> {
        let org = actor.org_id;
        // Roles that may never record one are refused before the patient is looked up, so the
        // answer reveals nothing about which patients exist.
        policy::may_record_consent(&actor, true, false)?;
        let on_team = self
            .read(move |mut c| {
                Box::pin(async move {
                    patient_id_in_org(&mut c, org, patient).await?;
                    on_care_team(&mut c, patient, actor.user_id).await
                })
            })
            .await?;
        policy::may_record_consent(&actor, on_team, false)?;
        if expires_at <= now_ms() {
            return Err(StoreError::State("an authorization must expire in the future"));
        }
        let key = self.current_key(org, ScopeKind::Patient, patient.0).await?;
        let id = uuid::Uuid::now_v7();
        let recipient_sealed = key.seal(&text_context(purpose::AUTHORIZATION_RECIPIENT, org, patient, id), recipient.expose().as_bytes());
        let purpose_sealed = key.seal(&text_context(purpose::AUTHORIZATION_PURPOSE, org, patient, id), purpose_text.expose().as_bytes());
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO patient_authorizations (id, org_id, patient_id, recipient_sealed, purpose_sealed, expires_at, recorded_by, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    id,
                    org.0,
                    patient.0,
                    recipient_sealed.as_slice(),
                    purpose_sealed.as_slice(),
                    expires_at,
                    actor.user_id.0,
                    now
                )?;
                let mut ev = AuditEvent::new(AuditAction::AuthorizationRecord, Outcome::Success)
                    .target("authorization", id)
                    .patient(Some(patient))
                    .detail("expires_at", DetailValue::Int(expires_at));
                ev.org_id = Some(org);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(PatientAuthorization { id, patient_id: patient, expires_at, recorded_by: actor.user_id, recorded_at: now })
            })
        })
        .await
    }
}
