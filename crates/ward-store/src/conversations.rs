//! Conversations and their membership, with the minimum-necessary rule for patient
//! conversations checked in the same transaction that changes the membership.

use ward_crypto::{Keyring, SealContext};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::{AccessReason, ConversationKind, MemberRole, Priority, StatedReason};
use ward_domain::ids::{ConversationId, OrgId, PatientId, UserId};
use ward_domain::policy::{self, Actor, Admission, Candidate, Target};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, insert_key, open_field, purpose};
use crate::patients::{on_care_team, patient_id_in_org, patient_in_org};
use crate::stream::load_event;
use crate::users::user_in_org;
use crate::{ConversationDetail, ConversationSummary, EventKind, Fanout, Member, NewConversation, RequestMeta, Store, audit, now_ms};

#[derive(sqlx::FromRow)]
pub(crate) struct ConvRow {
    pub(crate) id: uuid::Uuid,
    pub(crate) kind: String,
    pub(crate) title: Option<String>,
    pub(crate) title_sealed: Option<Vec<u8>>,
    pub(crate) patient_id: Option<uuid::Uuid>,
    pub(crate) created_at: i64,
    pub(crate) last_message_seq: i64,
    pub(crate) last_event_seq: i64,
}

impl ConvRow {
    pub(crate) fn kind(&self) -> Result<ConversationKind> {
        ConversationKind::parse(&self.kind).ok_or(StoreError::Corrupt("conversations.kind"))
    }

    pub(crate) fn patient(&self) -> Option<PatientId> {
        self.patient_id.map(PatientId)
    }
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    conv: ConvRow,
    my_role: String,
    my_read_seq: i64,
    // Only the list and the detail read it (BEYOND_CARE_TEAM); membership checks do not.
    #[sqlx(default)]
    beyond_care_team: i64,
    // Only the list and the detail read it (UNREAD_PRIORITY): 0 routine, 1 urgent, 2 STAT;
    // none when nothing from others is unread.
    #[sqlx(default)]
    unread_priority: Option<i64>,
}

impl SummaryRow {
    async fn open(self, c: &mut Conn<'_>, ring: &Keyring, org: OrgId) -> Result<ConversationSummary> {
        let title = match &self.conv.title_sealed {
            Some(sealed) => Some(open_field(c, ring, &title_context(org, ConversationId(self.conv.id)), sealed).await?),
            // Written before encryption at rest (sealed later by the store), or no title.
            None => self.conv.title.clone(),
        };
        Ok(ConversationSummary {
            id: ConversationId(self.conv.id),
            kind: self.conv.kind()?,
            title,
            patient_id: self.conv.patient_id.map(PatientId),
            created_at: self.conv.created_at,
            last_message_seq: self.conv.last_message_seq,
            last_event_seq: self.conv.last_event_seq,
            my_role: MemberRole::parse(&self.my_role).ok_or(StoreError::Corrupt("conversation_members.role"))?,
            my_read_seq: self.my_read_seq,
            beyond_care_team: self.beyond_care_team,
            unread_priority: self.unread_priority.map(|p| match p {
                2 => Priority::Stat,
                1 => Priority::Urgent,
                _ => Priority::Routine,
            }),
        })
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: uuid::Uuid,
    display_name: String,
    user_role: String,
    role: String,
    joined_at: i64,
    delivered_seq: i64,
    read_seq: i64,
    reason_code: Option<String>,
}

/// Where a conversation title is sealed: under the conversation's key, bound to its id.
pub(crate) fn title_context(org: OrgId, conv: ConversationId) -> SealContext<'static> {
    SealContext { purpose: purpose::CONVERSATION_TITLE, org: org.0, scope: conv.0, record: conv.0 }
}

/// The seal context of the free-text note of a member's stated reason (it can name a patient).
pub(crate) fn reason_note_context(org: OrgId, conv: ConversationId, member: UserId) -> SealContext<'static> {
    SealContext { purpose: purpose::REASON_NOTE, org: org.0, scope: conv.0, record: member.0 }
}

const SUMMARY_SELECT: &str = "SELECT c.id, c.org_id, c.kind, c.title, c.title_sealed, c.patient_id, c.created_at, c.last_message_seq, \
     c.last_event_seq, m.role AS my_role, m.read_seq AS my_read_seq \
     FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id ";

/// The members of a patient conversation outside the patient's care team, other than the patient.
const BEYOND_CARE_TEAM: &str = "(SELECT COUNT(*) FROM conversation_members o JOIN users ou ON ou.id = o.user_id \
     WHERE o.conversation_id = c.id AND c.patient_id IS NOT NULL AND (ou.patient_id IS NULL OR ou.patient_id <> c.patient_id) \
     AND NOT EXISTS (SELECT 1 FROM care_team_members t WHERE t.patient_id = c.patient_id AND t.user_id = o.user_id))";

/// The highest priority among the caller's unread messages from others that are not recalled
/// (2 STAT, 1 urgent, 0 routine), NULL when there are none: the list's priority badge.
const UNREAD_PRIORITY: &str = "(SELECT CAST(MAX(CASE u.priority WHEN 'stat' THEN 2 WHEN 'urgent' THEN 1 ELSE 0 END) AS BIGINT) FROM messages u \
     WHERE u.conversation_id = c.id AND u.seq > m.read_seq AND u.sender_id <> m.user_id AND u.recalled_at IS NULL)";

/// A conversation as listed, with the minimum-necessary count and the unread priority.
fn summary_select_with_count() -> String {
    SUMMARY_SELECT.replacen(
        " FROM conversation_members m",
        &format!(", {BEYOND_CARE_TEAM} AS beyond_care_team, {UNREAD_PRIORITY} AS unread_priority FROM conversation_members m"),
        1,
    )
}

async fn beyond_care_team(c: &mut Conn<'_>, conv: ConversationId) -> Result<i64> {
    Ok(scalar!(fetch_one, c, i64, sqlx::AssertSqlSafe(format!("SELECT {BEYOND_CARE_TEAM} FROM conversations c WHERE c.id = $1")), conv.0)?)
}

/// The conversation if the actor is a member of it in their own organisation, with their
/// standing; NotFound otherwise, exactly as for a conversation that does not exist.
pub(crate) async fn membership(c: &mut Conn<'_>, actor: &Actor, conv: ConversationId) -> Result<(ConvRow, MemberRole)> {
    let row = fetch!(
        fetch_optional,
        c,
        SummaryRow,
        sqlx::AssertSqlSafe(format!("{SUMMARY_SELECT} WHERE m.conversation_id = $1 AND m.user_id = $2 AND c.org_id = $3")),
        conv.0,
        actor.user_id.0,
        actor.org_id.0
    )?
    .ok_or(StoreError::NotFound)?;
    let role = MemberRole::parse(&row.my_role).ok_or(StoreError::Corrupt("conversation_members.role"))?;
    Ok((row.conv, role))
}

/// Like [`membership`], with "not a member" as `None` (for reads that audit a refusal).
pub(crate) async fn membership_if_any(c: &mut Conn<'_>, actor: &Actor, conv: ConversationId) -> Result<Option<(ConvRow, MemberRole)>> {
    match membership(c, actor, conv).await {
        Ok(m) => Ok(Some(m)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends an event to the conversation's stream; returns its sequence number.
pub(crate) async fn append_event(
    c: &mut Conn<'_>,
    conv: ConversationId,
    kind: &'static str,
    subject: Option<uuid::Uuid>,
    actor: Option<UserId>,
    data: &str,
    now: i64,
) -> Result<i64> {
    let seq = scalar!(
        fetch_one,
        c,
        i64,
        "UPDATE conversations SET last_event_seq = last_event_seq + 1 WHERE id = $1 RETURNING last_event_seq",
        conv.0
    )?;
    insert_event(c, conv, seq, kind, subject, actor, data, now).await?;
    Ok(seq)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_event(
    c: &mut Conn<'_>,
    conv: ConversationId,
    seq: i64,
    kind: &'static str,
    subject: Option<uuid::Uuid>,
    actor: Option<UserId>,
    data: &str,
    now: i64,
) -> Result<()> {
    exec!(
        c,
        "INSERT INTO conversation_events (conversation_id, seq, kind, subject_id, actor_id, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        conv.0,
        seq,
        kind,
        subject,
        actor.map(|a| a.0),
        data,
        now
    )?;
    Ok(())
}

pub(crate) async fn member_ids(c: &mut Conn<'_>, conv: ConversationId) -> Result<Vec<UserId>> {
    Ok(scalar!(fetch_all, c, uuid::Uuid, "SELECT user_id FROM conversation_members WHERE conversation_id = $1", conv.0)?
        .into_iter()
        .map(UserId)
        .collect())
}

async fn members(c: &mut Conn<'_>, conv: ConversationId) -> Result<Vec<Member>> {
    fetch!(
        fetch_all,
        c,
        MemberRow,
        "SELECT m.user_id, u.display_name, u.role AS user_role, m.role, m.joined_at, m.delivered_seq, m.read_seq, m.reason_code \
         FROM conversation_members m JOIN users u ON u.id = m.user_id WHERE m.conversation_id = $1 ORDER BY m.joined_at, m.user_id",
        conv.0
    )?
    .into_iter()
    .map(|r| {
        Ok(Member {
            user_id: UserId(r.user_id),
            display_name: r.display_name,
            user_role: r.user_role.parse::<Role>().map_err(|_| StoreError::Corrupt("users.role"))?,
            role: MemberRole::parse(&r.role).ok_or(StoreError::Corrupt("conversation_members.role"))?,
            joined_at: r.joined_at,
            delivered_seq: r.delivered_seq,
            read_seq: r.read_seq,
            reason: r.reason_code.as_deref().and_then(parse_reason),
        })
    })
    .collect()
}

fn parse_reason(s: &str) -> Option<AccessReason> {
    [AccessReason::Consult, AccessReason::Coverage, AccessReason::Handoff, AccessReason::Coordination, AccessReason::Other]
        .into_iter()
        .find(|r| r.as_str() == s)
}

/// Checks `user` may join (policy plus tenancy), inserts the membership and its event, and
/// audits it; a reason's note is sealed under `key`, the conversation's data key. Returns the
/// event's sequence number.
#[allow(clippy::too_many_arguments)]
async fn admit(
    c: &mut Conn<'_>,
    key: &ward_crypto::DataKey,
    actor: &Actor,
    adder_role: Option<MemberRole>,
    conv: ConversationId,
    target: Target,
    user: UserId,
    role: MemberRole,
    reason: Option<&StatedReason>,
    meta: &RequestMeta,
    now: i64,
) -> Result<Vec<i64>> {
    let candidate_user = user_in_org(c, actor.org_id, user).await?;
    let on_team = match target.patient_id {
        Some(p) => on_care_team(c, p, user).await?,
        None => false,
    };
    let candidate = Candidate {
        role: candidate_user.role,
        disabled: candidate_user.disabled,
        patient_id: candidate_user.patient_id,
        on_care_team: on_team,
    };
    let admission = policy::may_add_member(adder_role, target, candidate, reason.is_some())?;
    let reason = if admission == Admission::WithReason { reason } else { None };
    let seq = append_event(c, conv, "member_added", Some(user.0), Some(actor.user_id), &format!(r#"{{"role":"{}"}}"#, role.as_str()), now)
        .await?;
    let inserted = exec!(
        c,
        "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_event_seq, delivered_seq, read_seq, \
         added_by, reason_code, reason_note_sealed) VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7, $8) ON CONFLICT DO NOTHING",
        conv.0,
        user.0,
        role.as_str(),
        now,
        seq,
        actor.user_id.0,
        reason.map(|r| r.code.as_str()),
        reason.and_then(|r| r.note.as_deref()).map(|n| key.seal(&reason_note_context(actor.org_id, conv, user), n.as_bytes()))
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict("member"));
    }
    let mut ev = AuditEvent::new(AuditAction::MemberAdd, Outcome::Success)
        .target("conversation", conv)
        .patient(target.patient_id)
        .detail("member", DetailValue::Id(user.0))
        .detail("outside_care_team", DetailValue::Bool(admission == Admission::WithReason));
    if let Some(r) = reason {
        ev = ev.detail("reason", DetailValue::Code(r.code.as_str()));
    }
    ev.org_id = Some(actor.org_id);
    ev.actor = Some(actor.user_id);
    audit::append(c, &ev, meta).await?;
    // Patient messages forwarded here before are disclosed to the new member now.
    crate::forwarding::disclose_forwards_to_new_member(c, actor, conv, user, meta).await?;
    let mut seqs = vec![seq];
    if admission == Admission::WithReason {
        // Minimum necessary: every member hears that the group now reaches beyond the care team.
        let n = beyond_care_team(c, conv).await?;
        seqs.push(
            append_event(c, conv, "beyond_care_team", Some(user.0), Some(actor.user_id), &format!(r#"{{"members":{n}}}"#), now).await?,
        );
    }
    Ok(seqs)
}

async fn fanouts(c: &mut Conn<'_>, ring: &Keyring, conv: ConversationId, seqs: &[i64], extra: Option<UserId>) -> Result<Vec<Fanout>> {
    let mut recipients = member_ids(c, conv).await?;
    if let Some(u) = extra
        && !recipients.contains(&u)
    {
        recipients.push(u);
    }
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let event = load_event(c, ring, conv, seq).await?;
        out.push(Fanout { event, recipients: recipients.clone() });
    }
    Ok(out)
}

/// What creating a conversation did.
#[derive(Debug, Clone)]
pub struct Created {
    /// The conversation.
    pub id: ConversationId,
    /// False when an existing direct conversation between the same two people was returned.
    pub created: bool,
    /// Events to fan out.
    pub fanouts: Vec<Fanout>,
}

impl Store {
    /// Creates a conversation with the actor as owner. A direct conversation that already
    /// exists between the same two people is returned instead of a second one.
    pub async fn create_conversation(&self, actor: Actor, spec: NewConversation, meta: RequestMeta) -> Result<Created> {
        policy::may_create_conversation(&actor, spec.kind)?;
        // The conversation's first data key is made before the write (a key provider round
        // trip must not hold up the single writer) and stored with the conversation.
        let id = ConversationId::new();
        let prepared = self.prepare_key(actor.org_id, id.0).await?;
        let ring = self.keyring().clone();
        let created = self
            .write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let mut others: Vec<_> = spec.members.iter().filter(|m| m.user_id != actor.user_id).cloned().collect();
                others.dedup_by_key(|m| m.user_id);
                let direct_key = match spec.kind {
                    ConversationKind::Direct => {
                        let [other] = others.as_slice() else {
                            return Err(StoreError::State("a direct conversation has exactly one other member"));
                        };
                        let (a, b) = if actor.user_id < other.user_id { (actor.user_id, other.user_id) } else { (other.user_id, actor.user_id) };
                        let key = format!("{a}:{b}");
                        let existing =
                            scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT id FROM conversations WHERE direct_key = $1", key.as_str())?;
                        if let Some(id) = existing {
                            return Ok(Created { id: ConversationId(id), created: false, fanouts: Vec::new() });
                        }
                        Some(key)
                    }
                    _ => None,
                };
                let patient = match (spec.kind, spec.patient_id) {
                    (ConversationKind::Patient, Some(p)) => Some(patient_id_in_org(&mut c, actor.org_id, p).await?),
                    (ConversationKind::Patient, None) => return Err(StoreError::State("a patient conversation needs a patient_id")),
                    (_, Some(_)) => return Err(StoreError::State("only patient conversations have a patient_id")),
                    _ => None,
                };
                insert_key(&mut c, actor.org_id.0, ScopeKind::Conversation, id.0, 1, &prepared.wrapped).await?;
                let title_sealed = spec.title.as_deref().map(|t| prepared.key.seal(&title_context(actor.org_id, id), t.as_bytes()));
                exec!(
                    &mut c,
                    "INSERT INTO conversations (id, org_id, kind, title_sealed, patient_id, direct_key, created_by, created_at, last_message_seq, last_event_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0)",
                    id.0,
                    actor.org_id.0,
                    spec.kind.as_str(),
                    title_sealed,
                    patient.map(|p| p.0),
                    direct_key.as_deref(),
                    actor.user_id.0,
                    now
                )?;
                let target = Target { kind: spec.kind, patient_id: patient };
                let mut seqs = Vec::with_capacity(others.len() + 1);
                let creator = admit(&mut c, &prepared.key, &actor, None, id, target, actor.user_id, MemberRole::Owner, spec.creator_reason.as_ref(), &meta, now);
                seqs.extend(creator.await?);
                for m in &others {
                    seqs.extend(admit(&mut c, &prepared.key, &actor, None, id, target, m.user_id, MemberRole::Member, m.reason.as_ref(), &meta, now).await?);
                }
                let mut ev = AuditEvent::new(AuditAction::ConversationCreate, Outcome::Success)
                    .target("conversation", id)
                    .patient(patient)
                    .detail("kind", DetailValue::Code(spec.kind.as_str()))
                    .detail("members", DetailValue::Int(others.len() as i64 + 1));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                let fanouts = fanouts(&mut c, &ring, id, &seqs, None).await?;
                Ok(Created { id, created: true, fanouts })
            })
        })
        .await?;
        if !created.created {
            // An existing direct conversation was returned: the prepared key was never stored.
            self.keyring().forget(id.0);
        }
        Ok(created)
    }

    /// The actor's conversations, newest first, strictly before the cursor id.
    pub async fn conversations(&self, actor: Actor, before: Option<ConversationId>, limit: u32) -> Result<Vec<ConversationSummary>> {
        let ring = self.keyring().clone();
        self.read(|mut c| {
            Box::pin(async move {
                let before = before.map_or(uuid::Uuid::max(), |b| b.0);
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    SummaryRow,
                    sqlx::AssertSqlSafe(format!(
                        "{} WHERE m.user_id = $1 AND c.org_id = $2 AND c.id < $3 ORDER BY c.id DESC LIMIT $4",
                        summary_select_with_count()
                    )),
                    actor.user_id.0,
                    actor.org_id.0,
                    before,
                    i64::from(limit)
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(r.open(&mut c, &ring, actor.org_id).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// A conversation with members and receipts (and the patient, for patient conversations),
    /// if the actor is a member; audited as a read.
    pub async fn conversation(&self, actor: Actor, id: ConversationId, meta: RequestMeta) -> Result<ConversationDetail> {
        let ring = self.keyring().clone();
        let detail = self
            .read(|mut c| {
                Box::pin(async move {
                    let row = fetch!(
                        fetch_optional,
                        &mut c,
                        SummaryRow,
                        sqlx::AssertSqlSafe(format!(
                            "{} WHERE m.conversation_id = $1 AND m.user_id = $2 AND c.org_id = $3",
                            summary_select_with_count()
                        )),
                        id.0,
                        actor.user_id.0,
                        actor.org_id.0
                    )?;
                    let Some(row) = row else { return Ok(None) };
                    let summary = row.open(&mut c, &ring, actor.org_id).await?;
                    let members = members(&mut c, id).await?;
                    let patient = match summary.patient_id {
                        Some(p) => Some(patient_in_org(&mut c, &ring, actor.org_id, p).await?),
                        None => None,
                    };
                    Ok(Some(ConversationDetail { summary, members, patient }))
                })
            })
            .await?;
        let mut ev = AuditEvent::new(AuditAction::ConversationRead, Outcome::Success).target("conversation", id);
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        match detail {
            Some(d) => {
                ev.patient = d.summary.patient_id;
                self.record(ev, meta).await?;
                Ok(d)
            }
            None => {
                ev.outcome = Outcome::Denied;
                self.record(ev, meta).await?;
                Err(StoreError::NotFound)
            }
        }
    }

    /// Adds a member. Outside a patient's care team a stated reason is required and recorded.
    pub async fn add_member(
        &self,
        actor: Actor,
        conv: ConversationId,
        user: UserId,
        role: MemberRole,
        reason: Option<StatedReason>,
        meta: RequestMeta,
    ) -> Result<Vec<Fanout>> {
        let ring = self.keyring().clone();
        // For a reason's note; fetched first to keep key provider round trips out of the writer.
        let key = self.conversation_key(actor.org_id, conv).await?;
        self.write(move |mut c| {
            Box::pin(async move {
                let (row, my_role) = membership(&mut c, &actor, conv).await?;
                let target = Target { kind: row.kind()?, patient_id: row.patient() };
                policy::may_change_membership(my_role, target.kind)?;
                let already = scalar!(
                    fetch_optional,
                    &mut c,
                    i32,
                    "SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                    conv.0,
                    user.0
                )?;
                if already.is_some() {
                    return Err(StoreError::Conflict("member"));
                }
                let seqs = admit(&mut c, &key, &actor, Some(my_role), conv, target, user, role, reason.as_ref(), &meta, now_ms()).await?;
                fanouts(&mut c, &ring, conv, &seqs, None).await
            })
        })
        .await
    }

    /// Removes a member (owners remove anyone; members only themselves).
    pub async fn remove_member(&self, actor: Actor, conv: ConversationId, user: UserId, meta: RequestMeta) -> Result<Fanout> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let (row, my_role) = membership(&mut c, &actor, conv).await?;
                policy::may_remove_member(actor.user_id, my_role, user, row.kind()?)?;
                let n = exec!(&mut c, "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", conv.0, user.0)?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                let now = now_ms();
                let seq = append_event(&mut c, conv, "member_removed", Some(user.0), Some(actor.user_id), "{}", now).await?;
                let mut ev = AuditEvent::new(AuditAction::MemberRemove, Outcome::Success)
                    .target("conversation", conv)
                    .patient(row.patient())
                    .detail("member", DetailValue::Id(user.0));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                let out = fanouts(&mut c, &ring, conv, &[seq], Some(user)).await?.remove(0);
                debug_assert!(matches!(out.event.kind, EventKind::MemberRemoved { .. }));
                Ok(out)
            })
        })
        .await
    }

    /// Audits a request refused because the conversation is not the actor's (it was answered
    /// as not found).
    pub async fn record_denied(&self, actor: Actor, action: AuditAction, conv: ConversationId, meta: RequestMeta) -> Result<()> {
        let mut ev = AuditEvent::new(action, Outcome::Denied).target("conversation", conv);
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        self.record(ev, meta).await.map(|_| ())
    }
}
