//! The read side of conversation event streams: loading events, where a session's stream
//! stands in each conversation, replay after a reconnect, and acknowledgements.
//!
//! A session's position in a conversation is the last event sequence it acknowledged. With
//! no acknowledgement yet, it starts at whichever is later: just before the member joined, or
//! the last event before the session was created (a new device does not replay history; it
//! fetches what it wants over the paged API).

use ward_crypto::Keyring;
use ward_domain::conversation::{MemberRole, ReceiptKind};
use ward_domain::ids::{ConversationId, MessageId, OrgId, SessionId, UserId};

use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::messages::MessageRow;
use crate::{ConversationEvent, EventKind, Store};

#[derive(sqlx::FromRow)]
struct EventRow {
    conversation_id: uuid::Uuid,
    org_id: uuid::Uuid,
    seq: i64,
    kind: String,
    subject_id: Option<uuid::Uuid>,
    actor_id: Option<uuid::Uuid>,
    data: String,
    created_at: i64,
    m_id: Option<uuid::Uuid>,
    m_seq: Option<i64>,
    m_sender_id: Option<uuid::Uuid>,
    m_client_txn_id: Option<String>,
    m_priority: Option<String>,
    m_body: Option<String>,
    m_body_sealed: Option<Vec<u8>>,
    m_attachment_ids: Option<String>,
    m_corrects_id: Option<uuid::Uuid>,
    m_created_at: Option<i64>,
    m_recalled_at: Option<i64>,
    m_shredded_at: Option<i64>,
}

const EVENT_SELECT: &str = "SELECT e.conversation_id, cv.org_id, e.seq, e.kind, e.subject_id, e.actor_id, e.data, e.created_at, \
     msg.id AS m_id, msg.seq AS m_seq, msg.sender_id AS m_sender_id, msg.client_txn_id AS m_client_txn_id, \
     msg.priority AS m_priority, msg.body AS m_body, msg.body_sealed AS m_body_sealed, msg.attachment_ids AS m_attachment_ids, msg.corrects_id AS m_corrects_id, \
     msg.created_at AS m_created_at, msg.recalled_at AS m_recalled_at, msg.shredded_at AS m_shredded_at \
     FROM conversation_events e JOIN conversations cv ON cv.id = e.conversation_id \
     LEFT JOIN messages msg ON e.kind = 'message' AND msg.id = e.subject_id ";

#[derive(serde::Deserialize)]
struct ReceiptData {
    kind: String,
    up_to_seq: i64,
}

#[derive(serde::Deserialize)]
struct MemberData {
    role: String,
}

#[derive(serde::Deserialize)]
struct BeyondData {
    members: i64,
}

impl EventRow {
    async fn open(self, c: &mut Conn<'_>, ring: &Keyring) -> Result<ConversationEvent> {
        let corrupt = || StoreError::Corrupt("conversation_events");
        let subject = self.subject_id.ok_or_else(corrupt)?;
        let kind = match self.kind.as_str() {
            "message" => EventKind::Message(
                MessageRow {
                    id: self.m_id.ok_or_else(corrupt)?,
                    conversation_id: self.conversation_id,
                    seq: self.m_seq.ok_or_else(corrupt)?,
                    sender_id: self.m_sender_id.ok_or_else(corrupt)?,
                    client_txn_id: self.m_client_txn_id.ok_or_else(corrupt)?,
                    priority: self.m_priority.ok_or_else(corrupt)?,
                    body: self.m_body.ok_or_else(corrupt)?,
                    body_sealed: self.m_body_sealed,
                    attachment_ids: self.m_attachment_ids.unwrap_or_default(),
                    corrects_id: self.m_corrects_id,
                    created_at: self.m_created_at.ok_or_else(corrupt)?,
                    recalled_at: self.m_recalled_at,
                    shredded_at: self.m_shredded_at,
                }
                .open(c, ring, OrgId(self.org_id))
                .await?,
            ),
            "recall" => EventKind::Recall { message_id: MessageId(subject) },
            "receipt" => {
                let d: ReceiptData = serde_json::from_str(&self.data).map_err(|_| corrupt())?;
                let kind = match d.kind.as_str() {
                    "delivered" => ReceiptKind::Delivered,
                    "read" => ReceiptKind::Read,
                    _ => return Err(corrupt()),
                };
                EventKind::Receipt { user_id: UserId(subject), kind, up_to_seq: d.up_to_seq }
            }
            "member_added" => {
                let d: MemberData = serde_json::from_str(&self.data).map_err(|_| corrupt())?;
                EventKind::MemberAdded { user_id: UserId(subject), role: MemberRole::parse(&d.role).ok_or_else(corrupt)? }
            }
            "member_removed" => EventKind::MemberRemoved { user_id: UserId(subject) },
            "beyond_care_team" => {
                let d: BeyondData = serde_json::from_str(&self.data).map_err(|_| corrupt())?;
                EventKind::BeyondCareTeam { user_id: UserId(subject), members: d.members }
            }
            _ => return Err(corrupt()),
        };
        Ok(ConversationEvent {
            conversation_id: ConversationId(self.conversation_id),
            seq: self.seq,
            created_at: self.created_at,
            actor_id: self.actor_id.map(UserId),
            kind,
        })
    }
}

pub(crate) async fn load_event(c: &mut Conn<'_>, ring: &Keyring, conv: ConversationId, seq: i64) -> Result<ConversationEvent> {
    fetch!(fetch_one, c, EventRow, sqlx::AssertSqlSafe(format!("{EVENT_SELECT} WHERE e.conversation_id = $1 AND e.seq = $2")), conv.0, seq)?
        .open(c, ring)
        .await
}

/// Where a session's stream stands in one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Events up to this sequence were delivered (or predate the session).
    pub position: i64,
    /// The conversation's newest event.
    pub last_event_seq: i64,
}

#[derive(sqlx::FromRow)]
struct PositionRow {
    conversation_id: uuid::Uuid,
    joined_event_seq: i64,
    last_event_seq: i64,
    acked_seq: Option<i64>,
    before_session: Option<i64>,
}

impl Store {
    /// The session's position in each of the user's conversations.
    pub async fn stream_positions(&self, session: SessionId, user: UserId, session_created_at: i64) -> Result<Vec<StreamPosition>> {
        self.read(|mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    PositionRow,
                    "SELECT m.conversation_id, m.joined_event_seq, c.last_event_seq, k.acked_seq, \
                     (SELECT MAX(e.seq) FROM conversation_events e WHERE e.conversation_id = m.conversation_id AND e.created_at < $3) AS before_session \
                     FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
                     LEFT JOIN stream_cursors k ON k.session_id = $1 AND k.conversation_id = m.conversation_id \
                     WHERE m.user_id = $2",
                    session.0,
                    user.0,
                    session_created_at
                )?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let floor = r.joined_event_seq - 1;
                        let position = match r.acked_seq {
                            Some(a) => a.max(floor),
                            None => floor.max(r.before_session.unwrap_or(0)),
                        };
                        StreamPosition {
                            conversation_id: ConversationId(r.conversation_id),
                            position,
                            last_event_seq: r.last_event_seq,
                        }
                    })
                    .collect())
            })
        })
        .await
    }

    /// Up to `limit` events of a conversation after `after_seq`, for a current member, never
    /// reaching back before the member joined.
    pub async fn events_after(&self, user: UserId, conv: ConversationId, after_seq: i64, limit: u32) -> Result<Vec<ConversationEvent>> {
        let ring = self.keyring().clone();
        self.read(|mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    EventRow,
                    sqlx::AssertSqlSafe(format!(
                        "{EVENT_SELECT} JOIN conversation_members m ON m.conversation_id = e.conversation_id AND m.user_id = $2 \
                         WHERE e.conversation_id = $1 AND e.seq > $3 AND e.seq >= m.joined_event_seq ORDER BY e.seq LIMIT $4"
                    )),
                    conv.0,
                    user.0,
                    after_seq,
                    i64::from(limit)
                )?;
                let mut events = Vec::with_capacity(rows.len());
                for r in rows {
                    events.push(r.open(&mut c, &ring).await?);
                }
                Ok(events)
            })
        })
        .await
    }

    /// Records that the session has received the conversation's events up to `seq`.
    pub async fn ack(&self, session: SessionId, acks: Vec<(ConversationId, i64)>) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                for (conv, seq) in acks {
                    exec!(
                        &mut c,
                        "INSERT INTO stream_cursors (session_id, conversation_id, acked_seq) VALUES ($1, $2, $3) \
                         ON CONFLICT (session_id, conversation_id) DO UPDATE SET acked_seq = \
                         CASE WHEN excluded.acked_seq > stream_cursors.acked_seq THEN excluded.acked_seq ELSE stream_cursors.acked_seq END",
                        session.0,
                        conv.0,
                        seq
                    )?;
                }
                Ok(())
            })
        })
        .await
    }
}
