//! Messages: idempotent sends with gapless per-conversation sequence numbers, paged reads
//! (audited), recall, corrections and receipts.

use ward_crypto::{Keyring, SealContext};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::{Priority, ReceiptKind};
use ward_domain::ids::{ConversationId, DeviceId, MessageId, OrgId, UserId};
use ward_domain::policy::{self, Actor};

use crate::attachments::{check_message_attachments, join_ids, split_ids};
use crate::conversations::{append_event, insert_event, member_ids, membership, membership_if_any};
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{open_field, purpose};
use crate::stream::load_event;
use crate::{Fanout, Message, NewMessage, RequestMeta, Sent, Store, audit, now_ms};

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: uuid::Uuid,
    pub(crate) conversation_id: uuid::Uuid,
    pub(crate) seq: i64,
    pub(crate) sender_id: uuid::Uuid,
    pub(crate) client_txn_id: String,
    pub(crate) priority: String,
    pub(crate) body: String,
    pub(crate) body_sealed: Option<Vec<u8>>,
    pub(crate) attachment_ids: String,
    pub(crate) corrects_id: Option<uuid::Uuid>,
    pub(crate) created_at: i64,
    pub(crate) recalled_at: Option<i64>,
    pub(crate) shredded_at: Option<i64>,
}

impl MessageRow {
    /// The message as members see it, its body opened under the conversation's data key. A
    /// recalled message keeps its sealed text for retention and legal hold, but no member ever
    /// sees it again (and it is not even decrypted).
    pub(crate) async fn open(self, c: &mut Conn<'_>, ring: &Keyring, org: OrgId) -> Result<Message> {
        // A shredded message is a tombstone: there is no body left to open.
        let body = if self.recalled_at.is_some() || self.shredded_at.is_some() { None } else { Some(self.body_text(c, ring, org).await?) };
        Ok(Message {
            id: MessageId(self.id),
            conversation_id: ConversationId(self.conversation_id),
            seq: self.seq,
            sender_id: UserId(self.sender_id),
            client_txn_id: self.client_txn_id,
            priority: Priority::parse(&self.priority).ok_or(StoreError::Corrupt("messages.priority"))?,
            body,
            corrects: self.corrects_id.map(MessageId),
            attachments: if self.recalled_at.is_some() || self.shredded_at.is_some() {
                Vec::new()
            } else {
                split_ids(&self.attachment_ids)?
            },
            created_at: self.created_at,
            recalled_at: self.recalled_at,
            shredded_at: self.shredded_at,
        })
    }

    /// The plaintext body. Rows written before encryption at rest keep plaintext in `body`
    /// until the store seals them.
    async fn body_text(&self, c: &mut Conn<'_>, ring: &Keyring, org: OrgId) -> Result<String> {
        match &self.body_sealed {
            Some(sealed) => open_field(c, ring, &body_context(org, ConversationId(self.conversation_id), MessageId(self.id)), sealed).await,
            None => Ok(self.body.clone()),
        }
    }
}

/// Where a message body is sealed: under its conversation's key, bound to its id.
pub(crate) fn body_context(org: OrgId, conv: ConversationId, id: MessageId) -> SealContext<'static> {
    SealContext { purpose: purpose::MESSAGE_BODY, org: org.0, scope: conv.0, record: id.0 }
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, sender_id, client_txn_id, priority, body, body_sealed, attachment_ids, corrects_id, created_at, recalled_at, shredded_at";

pub(crate) async fn message_in(c: &mut Conn<'_>, conv: ConversationId, id: MessageId) -> Result<MessageRow> {
    fetch!(
        fetch_optional,
        c,
        MessageRow,
        sqlx::AssertSqlSafe(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND id = $2")),
        conv.0,
        id.0
    )?
    .ok_or(StoreError::NotFound)
}

/// Which page of messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages with sequence greater than this, oldest first.
    After(i64),
    /// Messages with sequence less than this, newest first.
    Before(i64),
}

/// A page of a conversation's messages, opened (no membership check: the caller's).
pub(crate) async fn message_page(
    c: &mut Conn<'_>,
    ring: &Keyring,
    org: OrgId,
    conv: ConversationId,
    page: Page,
    limit: u32,
) -> Result<Vec<Message>> {
    let (sql, bound) = match page {
        Page::Latest => ("seq > $2 ORDER BY seq DESC", 0),
        Page::After(n) => ("seq > $2 ORDER BY seq ASC", n),
        Page::Before(n) => ("seq < $2 ORDER BY seq DESC", n),
    };
    let rows = fetch!(
        fetch_all,
        c,
        MessageRow,
        sqlx::AssertSqlSafe(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND {sql} LIMIT $3")),
        conv.0,
        bound,
        i64::from(limit)
    )?;
    let mut msgs = Vec::with_capacity(rows.len());
    for r in rows {
        msgs.push(r.open(c, ring, org).await?);
    }
    Ok(msgs)
}

impl Store {
    /// Sends a message. A retry with the same client transaction id returns the first message
    /// (`created: false`); reusing the id for different content is a conflict.
    pub async fn send_message(&self, actor: Actor, device: DeviceId, new: NewMessage, meta: RequestMeta) -> Result<Sent> {
        // The retention job may destroy the key version this body was sealed under between
        // sealing and writing; then the body is sealed again under the next version.
        match self.send_message_once(actor, device, new.clone(), meta.clone(), None).await {
            Err(StoreError::KeyDestroyed) => self.send_message_once(actor, device, new, meta, None).await,
            other => other,
        }
    }

    /// Sends `new`; a forward also checks and records its disclosure in the same transaction
    /// (crate::forwarding).
    pub(crate) async fn send_message_once(
        &self,
        actor: Actor,
        device: DeviceId,
        new: NewMessage,
        meta: RequestMeta,
        forward: Option<crate::forwarding::ForwardLink>,
    ) -> Result<Sent> {
        let conv = new.conversation_id;
        // Sealed before the write, so the single writer never waits on a key provider.
        let key = self.conversation_key(actor.org_id, conv).await?;
        let id = MessageId::new();
        let sealed = key.seal(&body_context(actor.org_id, conv, id), new.body.as_str().as_bytes());
        let key_version = key.version() as i32;
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let (row, _) = membership(&mut c, &actor, conv).await?;
                let existing = fetch!(
                    fetch_optional,
                    &mut c,
                    MessageRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_txn_id = $3"
                    )),
                    conv.0,
                    actor.user_id.0,
                    new.client_txn_id.as_str()
                )?;
                if let Some(prev) = existing {
                    let same = prev.body_text(&mut c, &ring, actor.org_id).await? == new.body.as_str()
                        && prev.priority == new.priority.as_str()
                        && prev.corrects_id == new.corrects.map(|m| m.0)
                        && prev.attachment_ids == join_ids(&new.attachments);
                    if !same {
                        return Err(StoreError::Conflict("client_txn_id"));
                    }
                    return Ok(Sent { message: prev.open(&mut c, &ring, actor.org_id).await?, created: false, event: None });
                }
                check_message_attachments(&mut c, conv, actor.user_id, &new.attachments).await?;
                let disclosure = match &forward {
                    Some(f) => Some(crate::forwarding::check_forward(&mut c, &actor, f, &row).await?),
                    None => None,
                };
                if let Some(corrected) = new.corrects {
                    let target = message_in(&mut c, conv, corrected).await?;
                    policy::may_amend_message(&actor, UserId(target.sender_id))?;
                    if target.recalled_at.is_some() {
                        return Err(StoreError::State("a recalled message cannot be corrected"));
                    }
                    if target.shredded_at.is_some() {
                        return Err(StoreError::State("a shredded message cannot be corrected"));
                    }
                }
                let now = now_ms();
                // The key the body was sealed under may have been destroyed (crypto-shredded)
                // since it was fetched: then no row is updated and the send is retried under a
                // new key. Checked in this statement, which every send runs anyway, so the
                // single writer gets no extra round trip.
                let seqs = fetch!(
                    fetch_optional,
                    &mut c,
                    (i64, i64),
                    "UPDATE conversations SET last_message_seq = last_message_seq + 1, last_event_seq = last_event_seq + 1 \
                     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM data_keys WHERE scope_id = $1 AND version = $2 AND destroyed_at IS NOT NULL) \
                     RETURNING last_message_seq, last_event_seq",
                    conv.0,
                    key_version
                )?;
                let (seq, event_seq) = seqs.ok_or(StoreError::KeyDestroyed)?;
                exec!(
                    &mut c,
                    "INSERT INTO messages (id, conversation_id, seq, sender_id, sender_device_id, client_txn_id, priority, body, body_sealed, corrects_id, created_at, attachment_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8, $9, $10, $11)",
                    id.0,
                    conv.0,
                    seq,
                    actor.user_id.0,
                    device.0,
                    new.client_txn_id.as_str(),
                    new.priority.as_str(),
                    sealed.as_slice(),
                    new.corrects.map(|m| m.0),
                    now,
                    join_ids(&new.attachments)
                )?;
                insert_event(&mut c, conv, event_seq, "message", Some(id.0), Some(actor.user_id), "{}", now).await?;
                // Sending implies the sender has seen everything up to their own message.
                exec!(
                    &mut c,
                    "UPDATE conversation_members SET delivered_seq = $3, read_seq = $3 WHERE conversation_id = $1 AND user_id = $2",
                    conv.0,
                    actor.user_id.0,
                    seq
                )?;
                let mut ev = AuditEvent::new(AuditAction::MessageSend, Outcome::Success)
                    .target("message", id)
                    .patient(row.patient())
                    .detail("conversation", DetailValue::Id(conv.0))
                    .detail("seq", DetailValue::Int(seq))
                    .detail("priority", DetailValue::Code(new.priority.as_str()));
                if let Some(m) = new.corrects {
                    ev = ev.detail("corrects", DetailValue::Id(m.0));
                }
                if !new.attachments.is_empty() {
                    ev = ev.detail("attachments", DetailValue::Int(new.attachments.len() as i64));
                }
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                ev.device = Some(device);
                audit::append(&mut c, &ev, &meta).await?;
                if let (Some(f), Some(d)) = (&forward, &disclosure) {
                    crate::forwarding::record_forward(&mut c, &actor, device, id, conv, f, d, &meta, now).await?;
                }
                let message = Message {
                    id,
                    conversation_id: conv,
                    seq,
                    sender_id: actor.user_id,
                    client_txn_id: new.client_txn_id.as_str().to_owned(),
                    priority: new.priority,
                    body: Some(new.body.into_string()),
                    corrects: new.corrects,
                    attachments: new.attachments,
                    created_at: now,
                    recalled_at: None,
                    shredded_at: None,
                };
                let recipients = member_ids(&mut c, conv).await?;
                let event = crate::ConversationEvent {
                    conversation_id: conv,
                    seq: event_seq,
                    created_at: now,
                    actor_id: Some(actor.user_id),
                    kind: crate::EventKind::Message(message.clone()),
                };
                Ok(Sent { message, created: true, event: Some(Fanout { event, recipients }) })
            })
        })
        .await
    }

    /// A page of messages, if the actor is a member. The read is audited before content is
    /// returned; a refused read is audited as denied.
    pub async fn messages(&self, actor: Actor, conv: ConversationId, page: Page, limit: u32, meta: RequestMeta) -> Result<Vec<Message>> {
        let ring = self.keyring().clone();
        let found = self
            .read(|mut c| {
                Box::pin(async move {
                    let Some((row, _)) = membership_if_any(&mut c, &actor, conv).await? else { return Ok(None) };
                    let msgs = message_page(&mut c, &ring, actor.org_id, conv, page, limit).await?;
                    Ok(Some((row.patient(), msgs)))
                })
            })
            .await?;
        let Some((patient, msgs)) = found else {
            self.record_denied(actor, AuditAction::MessageRead, conv, meta).await?;
            return Err(StoreError::NotFound);
        };
        let (lo, hi) = msgs.iter().fold((i64::MAX, 0), |(lo, hi), m| (lo.min(m.seq), hi.max(m.seq)));
        let mut ev = AuditEvent::new(AuditAction::MessageRead, Outcome::Success)
            .target("conversation", conv)
            .patient(patient)
            .detail("count", DetailValue::Int(msgs.len() as i64));
        if !msgs.is_empty() {
            ev = ev.detail("from_seq", DetailValue::Int(lo)).detail("to_seq", DetailValue::Int(hi));
        }
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        self.record(ev, meta).await?;
        Ok(msgs)
    }

    /// Recalls a message: its text disappears for every member; the record stays. Only the
    /// sender may recall. Recalling twice changes nothing more (`None`).
    pub async fn recall(&self, actor: Actor, conv: ConversationId, id: MessageId, meta: RequestMeta) -> Result<Option<Fanout>> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let (row, _) = membership(&mut c, &actor, conv).await?;
                let msg = message_in(&mut c, conv, id).await?;
                policy::may_amend_message(&actor, UserId(msg.sender_id))?;
                if msg.recalled_at.is_some() {
                    return Ok(None);
                }
                let now = now_ms();
                exec!(&mut c, "UPDATE messages SET recalled_at = $2, recalled_by = $3 WHERE id = $1", id.0, now, actor.user_id.0)?;
                let seq = append_event(&mut c, conv, "recall", Some(id.0), Some(actor.user_id), "{}", now).await?;
                let mut ev = AuditEvent::new(AuditAction::MessageRecall, Outcome::Success)
                    .target("message", id)
                    .patient(row.patient())
                    .detail("conversation", DetailValue::Id(conv.0));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                let event = load_event(&mut c, &ring, conv, seq).await?;
                let recipients = member_ids(&mut c, conv).await?;
                Ok(Some(Fanout { event, recipients }))
            })
        })
        .await
    }

    /// Moves the actor's delivered or read watermark up to `up_to_seq` (never down; read
    /// implies delivered). Returns the event to fan out, or `None` if nothing moved.
    pub async fn receipt(&self, actor: Actor, conv: ConversationId, kind: ReceiptKind, up_to_seq: i64) -> Result<Option<Fanout>> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let (row, _) = membership(&mut c, &actor, conv).await?;
                if up_to_seq < 0 || up_to_seq > row.last_message_seq {
                    return Err(StoreError::State("up_to_seq is beyond the newest message"));
                }
                let sql = match kind {
                    ReceiptKind::Delivered => {
                        "UPDATE conversation_members SET delivered_seq = $3 WHERE conversation_id = $1 AND user_id = $2 AND delivered_seq < $3"
                    }
                    ReceiptKind::Read => {
                        "UPDATE conversation_members SET read_seq = $3, \
                         delivered_seq = CASE WHEN delivered_seq < $3 THEN $3 ELSE delivered_seq END \
                         WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3"
                    }
                };
                if exec!(&mut c, sql, conv.0, actor.user_id.0, up_to_seq)? == 0 {
                    return Ok(None);
                }
                let name = match kind {
                    ReceiptKind::Delivered => "delivered",
                    ReceiptKind::Read => "read",
                };
                let data = format!(r#"{{"kind":"{name}","up_to_seq":{up_to_seq}}}"#);
                let seq = append_event(&mut c, conv, "receipt", Some(actor.user_id.0), Some(actor.user_id), &data, now_ms()).await?;
                let event = load_event(&mut c, &ring, conv, seq).await?;
                let recipients = member_ids(&mut c, conv).await?;
                Ok(Some(Fanout { event, recipients }))
            })
        })
        .await
    }

    /// One message, if the actor is a member (audited as a read).
    pub async fn message(&self, actor: Actor, conv: ConversationId, id: MessageId, meta: RequestMeta) -> Result<Message> {
        let ring = self.keyring().clone();
        let found = self
            .read(|mut c| {
                Box::pin(async move {
                    let Some((row, _)) = membership_if_any(&mut c, &actor, conv).await? else { return Ok(None) };
                    let msg = message_in(&mut c, conv, id).await?;
                    Ok(Some((row.patient(), msg.open(&mut c, &ring, actor.org_id).await?)))
                })
            })
            .await?;
        let Some((patient, msg)) = found else {
            self.record_denied(actor, AuditAction::MessageRead, conv, meta).await?;
            return Err(StoreError::NotFound);
        };
        let mut ev = AuditEvent::new(AuditAction::MessageRead, Outcome::Success)
            .target("message", id)
            .patient(patient)
            .detail("conversation", DetailValue::Id(conv.0))
            .detail("count", DetailValue::Int(1));
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        self.record(ev, meta).await?;
        Ok(msg)
    }

    /// How many messages a conversation holds (test and benchmark helper).
    pub async fn message_count(&self, conv: ConversationId) -> Result<i64> {
        self.read(|mut c| {
            Box::pin(
                async move { Ok(scalar!(fetch_one, &mut c, i64, "SELECT COUNT(*) FROM messages WHERE conversation_id = $1", conv.0)?) },
            )
        })
        .await
    }
}
