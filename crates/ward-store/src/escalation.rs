//! Escalation of urgent and STAT messages left unread (docs/notifications.md).
//!
//! Step 1: once a message has waited its delay (by priority) with a recipient who has not read
//! it, each such recipient's devices get a PHI-free "Urgent message needs attention" push.
//! Step 2: after the same delay again, if it is still unread, the on-call members of the
//! patient's care team get the same push. Each step is one row in `escalations` (the primary
//! key is the claim: of two nodes only one inserts it), written with its pushes and its audit
//! event in one transaction. A step that finds nobody is recorded as such.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::ConsentChannel;
use ward_domain::ids::{ConversationId, OrgId, PatientId, UserId};

use crate::consents::current_consent;
use crate::contacts::{contact_destination, sendable_user_phone};
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, audit, now_ms};

/// Messages older than this are never escalated (a server that was down for a day does not
/// wake everyone for old traffic).
const HORIZON_MS: i64 = 24 * 3_600_000;

/// The waits before each step, by priority, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct EscalationDelays {
    /// STAT messages.
    pub stat_ms: i64,
    /// Urgent messages.
    pub urgent_ms: i64,
    /// Step 2 also texts each on-call user's verified phone (an SMS provider is configured).
    pub sms: bool,
}

/// The only text an escalation SMS carries: no patient, sender, conversation or message.
pub const ESCALATION_SMS_TEXT: &str = "Ward: an urgent message needs your attention. Please open the Ward app.";

/// One recorded escalation step.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EscalationRecord {
    /// The message.
    pub message_id: uuid::Uuid,
    /// 1 (re-notify the recipients) or 2 (the care team's on-call members).
    pub step: i64,
    /// `notified`, `no_one` or `no_device`.
    pub outcome: String,
    /// How many people the step addressed.
    pub people: i64,
    /// How many pushes it queued.
    pub devices: i64,
    /// When (ms).
    pub created_at: i64,
}

struct Candidate {
    id: uuid::Uuid,
    conversation: uuid::Uuid,
    org: uuid::Uuid,
    seq: i64,
    sender: uuid::Uuid,
}

/// The members (not the sender) who have not read up to `seq`; members who left are no
/// longer rows, disabled users are skipped.
async fn unread_by(c: &mut Conn<'_>, m: &Candidate) -> Result<Vec<uuid::Uuid>> {
    Ok(scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT cm.user_id FROM conversation_members cm JOIN users u ON u.id = cm.user_id WHERE cm.conversation_id = $1 \
         AND cm.user_id <> $2 AND cm.read_seq < $3 AND u.disabled_at IS NULL ORDER BY cm.user_id",
        m.conversation,
        m.sender,
        m.seq
    )?)
}

/// The devices a PHI-free push may go to for `user`: live devices with a token; a patient's
/// only under a current portal consent.
async fn push_devices(c: &mut Conn<'_>, org: OrgId, user: uuid::Uuid) -> Result<Vec<uuid::Uuid>> {
    let patient = scalar!(fetch_optional, c, Option<uuid::Uuid>, "SELECT patient_id FROM users WHERE id = $1", user)?.flatten();
    if let Some(p) = patient
        && current_consent(c, org, PatientId(p), ConsentChannel::Portal).await?.is_none()
    {
        return Ok(Vec::new());
    }
    Ok(scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT t.device_id FROM device_push_tokens t JOIN devices d ON d.id = t.device_id WHERE t.user_id = $1 AND t.org_id = $2 \
         AND d.revoked_at IS NULL ORDER BY t.device_id",
        user,
        org.0
    )?)
}

/// Runs one step for one message: claims it (the insert), queues the pushes, audits. Returns
/// whether this call did the step (false: another node already had).
async fn run_step(c: &mut Conn<'_>, m: &Candidate, step: i64, people: &[uuid::Uuid], now: i64, sms: bool) -> Result<bool> {
    let org = OrgId(m.org);
    let mut targets = Vec::new();
    let mut phones = Vec::new();
    for u in people {
        for d in push_devices(c, org, *u).await? {
            targets.push((*u, d));
        }
        if sms && let Some(contact) = sendable_user_phone(c, org, *u).await? {
            phones.push(contact);
        }
    }
    let outcome = if people.is_empty() {
        "no_one"
    } else if targets.is_empty() && phones.is_empty() {
        "no_device"
    } else {
        "notified"
    };
    let won = exec!(
        c,
        "INSERT INTO escalations (message_id, step, org_id, conversation_id, outcome, people, devices, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        m.id,
        step,
        m.org,
        m.conversation,
        outcome,
        people.len() as i64,
        targets.len() as i64,
        now
    )?;
    if won != 1 {
        return Ok(false);
    }
    for (u, d) in &targets {
        exec!(
            c,
            "INSERT INTO push_outbox (id, org_id, user_id, device_id, conversation_id, message_id, high_priority, status, created_at, alert) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, 'escalation')",
            uuid::Uuid::now_v7(),
            m.org,
            *u,
            *d,
            m.conversation,
            m.id,
            true,
            now
        )?;
    }
    for contact in &phones {
        // The text is fixed (ESCALATION_SMS_TEXT): nothing to seal, the body stays empty.
        exec!(
            c,
            "INSERT INTO notice_outbox (id, org_id, kind, contact_id, channel, destination, body_sealed, status, created_at) \
             VALUES ($1, $2, 'escalation', $3, 'sms', $4, $5, 'queued', $6)",
            uuid::Uuid::now_v7(),
            m.org,
            *contact,
            contact_destination(*contact),
            Vec::<u8>::new(),
            now
        )?;
    }
    let mut ev = AuditEvent::new(AuditAction::MessageEscalate, Outcome::Success)
        .target("message", m.id)
        .detail("conversation", DetailValue::Id(m.conversation))
        .detail("step", DetailValue::Int(step))
        .detail("result", DetailValue::Code(outcome))
        .detail("people", DetailValue::Int(people.len() as i64))
        .detail("devices", DetailValue::Int(targets.len() as i64))
        .detail("sms", DetailValue::Int(phones.len() as i64));
    ev.org_id = Some(org);
    audit::append(c, &ev, &RequestMeta::default()).await?;
    Ok(true)
}

type Row = (uuid::Uuid, uuid::Uuid, uuid::Uuid, i64, uuid::Uuid);

fn candidate((id, conversation, org, seq, sender): Row) -> Candidate {
    Candidate { id, conversation, org, seq, sender }
}

impl Store {
    /// Runs the escalation steps that are due: up to `limit` messages per step. Returns how
    /// many steps this call recorded (a step another node took first is not counted).
    pub async fn escalate_due(&self, delays: EscalationDelays, limit: i64) -> Result<usize> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let mut done = 0;
                // Step 1: unread past the delay, not recalled, the conversation not shredded.
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    Row,
                    "SELECT m.id, m.conversation_id, c.org_id, m.seq, m.sender_id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                     WHERE m.recalled_at IS NULL AND c.shredded_at IS NULL AND m.created_at > $1 \
                     AND ((m.priority = 'stat' AND m.created_at <= $2) OR (m.priority = 'urgent' AND m.created_at <= $3)) \
                     AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.message_id = m.id AND e.step = 1) \
                     AND EXISTS (SELECT 1 FROM conversation_members cm WHERE cm.conversation_id = m.conversation_id \
                                 AND cm.user_id <> m.sender_id AND cm.read_seq < m.seq) \
                     ORDER BY m.created_at, m.id LIMIT $4",
                    now - HORIZON_MS,
                    now - delays.stat_ms,
                    now - delays.urgent_ms,
                    limit
                )?;
                for r in rows {
                    let m = candidate(r);
                    let people = unread_by(&mut c, &m).await?;
                    if people.is_empty() {
                        continue;
                    }
                    if run_step(&mut c, &m, 1, &people, now, false).await? {
                        done += 1;
                    }
                }
                // Step 2: the same delay again after step 1, still unread by a member.
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    Row,
                    "SELECT m.id, m.conversation_id, c.org_id, m.seq, m.sender_id FROM escalations e JOIN messages m ON m.id = e.message_id \
                     JOIN conversations c ON c.id = m.conversation_id \
                     WHERE e.step = 1 AND m.recalled_at IS NULL AND c.shredded_at IS NULL \
                     AND ((m.priority = 'stat' AND e.created_at <= $1) OR (m.priority = 'urgent' AND e.created_at <= $2)) \
                     AND NOT EXISTS (SELECT 1 FROM escalations e2 WHERE e2.message_id = m.id AND e2.step = 2) \
                     AND EXISTS (SELECT 1 FROM conversation_members cm WHERE cm.conversation_id = m.conversation_id \
                                 AND cm.user_id <> m.sender_id AND cm.read_seq < m.seq) \
                     ORDER BY e.created_at, m.id LIMIT $3",
                    now - delays.stat_ms,
                    now - delays.urgent_ms,
                    limit
                )?;
                for r in rows {
                    let m = candidate(r);
                    if unread_by(&mut c, &m).await?.is_empty() {
                        continue;
                    }
                    // The on-call members of the patient's care team (patient-linked
                    // conversations only), active, not the sender.
                    let on_call = scalar!(
                        fetch_all,
                        &mut c,
                        uuid::Uuid,
                        "SELECT ct.user_id FROM conversations cv JOIN care_team_members ct ON ct.patient_id = cv.patient_id \
                         JOIN users u ON u.id = ct.user_id WHERE cv.id = $1 AND ct.on_call AND u.disabled_at IS NULL AND ct.user_id <> $2 \
                         ORDER BY ct.user_id",
                        m.conversation,
                        m.sender
                    )?;
                    if run_step(&mut c, &m, 2, &on_call, now, delays.sms).await? {
                        done += 1;
                    }
                }
                Ok(done)
            })
        })
        .await
    }

    /// The escalation steps recorded for a message (oldest first).
    pub async fn escalations(&self, org: OrgId, message: uuid::Uuid) -> Result<Vec<EscalationRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(fetch!(
                    fetch_all,
                    &mut c,
                    EscalationRecord,
                    "SELECT message_id, step, outcome, people, devices, created_at FROM escalations WHERE org_id = $1 AND message_id = $2 \
                     ORDER BY step",
                    org.0,
                    message
                )?)
            })
        })
        .await
    }

    /// The escalation steps recorded for a conversation's messages, oldest first (at most
    /// `limit`, the newest of them).
    pub async fn conversation_escalations(&self, org: OrgId, conversation: ConversationId, limit: i64) -> Result<Vec<EscalationRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let mut list = fetch!(
                    fetch_all,
                    &mut c,
                    EscalationRecord,
                    "SELECT message_id, step, outcome, people, devices, created_at FROM escalations WHERE org_id = $1 AND conversation_id = $2 \
                     ORDER BY created_at DESC, message_id, step DESC LIMIT $3",
                    org.0,
                    conversation.0,
                    limit
                )?;
                list.reverse();
                Ok(list)
            })
        })
        .await
    }

    /// Puts a care-team member on or off call. Audited (`patient.on_call`).
    pub async fn set_on_call(
        &self,
        org: OrgId,
        actor: UserId,
        patient: PatientId,
        user: UserId,
        on_call: bool,
        meta: RequestMeta,
    ) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let in_org =
                    scalar!(fetch_optional, &mut c, i32, "SELECT 1 FROM patients WHERE id = $1 AND org_id = $2", patient.0, org.0)?;
                if in_org.is_none() {
                    return Err(StoreError::NotFound);
                }
                let n = exec!(
                    &mut c,
                    "UPDATE care_team_members SET on_call = $3 WHERE patient_id = $1 AND user_id = $2",
                    patient.0,
                    user.0,
                    on_call
                )?;
                if n != 1 {
                    return Err(StoreError::State("only a member of the care team can be on call"));
                }
                let mut ev = AuditEvent::new(AuditAction::CareTeamOnCall, Outcome::Success)
                    .target("patient", patient.0)
                    .patient(Some(patient))
                    .detail("user", DetailValue::Id(user.0))
                    .detail("on_call", DetailValue::Bool(on_call));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// The on-call members of a patient's care team.
    pub async fn on_call(&self, org: OrgId, patient: PatientId) -> Result<Vec<UserId>> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_all,
                    &mut c,
                    uuid::Uuid,
                    "SELECT ct.user_id FROM care_team_members ct JOIN patients p ON p.id = ct.patient_id WHERE p.id = $1 AND p.org_id = $2 \
                     AND ct.on_call ORDER BY ct.user_id",
                    patient.0,
                    org.0
                )?
                .into_iter()
                .map(UserId)
                .collect())
            })
        })
        .await
    }
}
