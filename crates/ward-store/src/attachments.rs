//! Attachment records: who uploaded what to which conversation, with the attachment's own
//! content key sealed under the conversation's data key (so shredding the conversation's key
//! shreds its attachments) and the file name sealed the same way. The content itself lives in
//! the attachment store, sealed chunk by chunk with `ward_crypto::stream` (see ward-server).

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{AttachmentId, ConversationId, OrgId, UserId};
use ward_domain::policy::Actor;
use zeroize::Zeroizing;

use crate::conversations::membership_if_any;
use crate::db::{Conn, exec, fetch};
use crate::error::{Result, StoreError};
use crate::keys::{key_version, purpose};
use crate::{RequestMeta, Store, audit, now_ms};

/// Content types the store can name in audit details; anything else is recorded as `other`.
const KNOWN_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "image/heic", "image/gif", "application/pdf"];

/// The most attachments one message may refer to.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;

fn audit_type(content_type: &str) -> &'static str {
    KNOWN_TYPES.iter().copied().find(|t| *t == content_type).unwrap_or("other")
}

/// An attachment as members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Id.
    pub id: AttachmentId,
    /// The conversation it was uploaded to.
    pub conversation_id: ConversationId,
    /// Who uploaded it.
    pub uploader_id: UserId,
    /// The content type, as sniffed from the content.
    pub content_type: String,
    /// Size of the plaintext in bytes.
    pub size: u64,
    /// The file name given at upload, if any.
    pub file_name: Option<String>,
    /// Unix ms.
    pub created_at: i64,
}

/// A new attachment's id and content key, made before its content is written; stored (sealed)
/// by [`Store::save_attachment`] once the content is in the attachment store.
pub struct AttachmentDraft {
    /// The new attachment's id.
    pub id: AttachmentId,
    /// Its organisation.
    pub org_id: OrgId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    key: Zeroizing<[u8; ward_crypto::aead::KEY_LEN]>,
}

impl std::fmt::Debug for AttachmentDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentDraft").field("id", &self.id).field("conversation_id", &self.conversation_id).finish_non_exhaustive()
    }
}

impl AttachmentDraft {
    /// The content key (32 bytes) for `ward_crypto::stream::Encryptor`.
    pub fn key(&self) -> &[u8] {
        &self.key[..]
    }

    /// The stream context for `ward_crypto::stream::Encryptor`.
    pub fn stream_context(&self) -> Vec<u8> {
        stream_context(self.org_id, self.conversation_id, self.id)
    }

    /// Where the content is kept in the attachment store.
    pub fn object_key(&self) -> String {
        object_key(self.org_id, self.conversation_id, self.id)
    }
}

/// What the upload learned about the content.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// The sniffed content type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// The file name the client gave, if any (sealed before it is stored).
    pub file_name: Option<String>,
}

/// An attachment opened for download: its record, where its content is and its content key.
pub struct OpenedAttachment {
    /// The record.
    pub attachment: Attachment,
    /// Where the content is kept in the attachment store.
    pub object_key: String,
    org_id: OrgId,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedAttachment").field("id", &self.attachment.id).finish_non_exhaustive()
    }
}

impl OpenedAttachment {
    /// The content key for `ward_crypto::stream::Decryptor`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The stream context for `ward_crypto::stream::Decryptor`.
    pub fn stream_context(&self) -> Vec<u8> {
        stream_context(self.org_id, self.attachment.conversation_id, self.attachment.id)
    }
}

/// The context that names an attachment's content stream: organisation ‖ conversation ‖
/// attachment id (16 bytes each), so sealed content moved to another attachment fails to open.
pub fn stream_context(org: OrgId, conv: ConversationId, id: AttachmentId) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(48);
    ctx.extend_from_slice(org.0.as_bytes());
    ctx.extend_from_slice(conv.0.as_bytes());
    ctx.extend_from_slice(id.0.as_bytes());
    ctx
}

/// Where an attachment's content is kept in the attachment store: ids only, never names.
pub fn object_key(org: OrgId, conv: ConversationId, id: AttachmentId) -> String {
    format!("{org}/{conv}/{id}")
}

fn key_context(org: OrgId, conv: ConversationId, id: AttachmentId) -> SealContext<'static> {
    SealContext { purpose: purpose::ATTACHMENT_KEY, org: org.0, scope: conv.0, record: id.0 }
}

fn name_context(org: OrgId, conv: ConversationId, id: AttachmentId) -> SealContext<'static> {
    SealContext { purpose: purpose::ATTACHMENT_NAME, org: org.0, scope: conv.0, record: id.0 }
}

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: uuid::Uuid,
    conversation_id: uuid::Uuid,
    uploader_id: uuid::Uuid,
    content_type: String,
    size_bytes: i64,
    key_sealed: Vec<u8>,
    name_sealed: Option<Vec<u8>>,
    object_key: String,
    created_at: i64,
}

/// Opens a sealed value of a conversation, finding the key version its header names.
async fn open_bytes(c: &mut Conn<'_>, ring: &ward_crypto::Keyring, ctx: &SealContext<'_>, sealed: &[u8]) -> Result<Vec<u8>> {
    let version = ward_crypto::aead::sealed_key_version(sealed)?;
    let key = key_version(c, ring, ctx.org, ctx.scope, version).await?;
    Ok(key.open(ctx, sealed)?)
}

/// Checks that every attachment a message refers to exists in `conv` and was uploaded by
/// `sender`; the refusal does not say which rule failed for which id.
pub(crate) async fn check_message_attachments(c: &mut Conn<'_>, conv: ConversationId, sender: UserId, ids: &[AttachmentId]) -> Result<()> {
    let invalid = |rule| StoreError::Invalid(ward_domain::DomainError::Invalid { field: "attachments", rule });
    if ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(invalid("at most 10 attachments"));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(invalid("each attachment once"));
        }
        let owner = fetch!(
            fetch_optional,
            &mut *c,
            (uuid::Uuid, uuid::Uuid),
            "SELECT conversation_id, uploader_id FROM attachments WHERE id = $1",
            id.0
        )?;
        if owner != Some((conv.0, sender.0)) {
            return Err(invalid("attachments must be uploaded by the sender to this conversation"));
        }
    }
    Ok(())
}

/// Attachment ids as stored in `messages.attachment_ids`.
pub(crate) fn join_ids(ids: &[AttachmentId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
}

/// Attachment ids read back from `messages.attachment_ids`.
pub(crate) fn split_ids(s: &str) -> Result<Vec<AttachmentId>> {
    s.split_whitespace().map(|p| p.parse().map_err(|_| StoreError::Corrupt("messages.attachment_ids"))).collect()
}

#[derive(sqlx::FromRow)]
struct ShredCandidate {
    key_sealed: Vec<u8>,
    object_key: String,
}

impl Store {
    /// The object keys of a conversation's attachments whose own key is sealed under one of
    /// `versions` of the conversation's data key (every attachment when `whole`): after those
    /// versions are destroyed (crypto-shredding) their content can never be opened again, and
    /// the objects can go.
    pub async fn attachment_objects_sealed_under(&self, conv: ConversationId, versions: Vec<u32>, whole: bool) -> Result<Vec<String>> {
        let rows = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(fetch!(
                        fetch_all,
                        &mut c,
                        ShredCandidate,
                        "SELECT key_sealed, object_key FROM attachments WHERE conversation_id = $1",
                        conv.0
                    )?)
                })
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| whole || ward_crypto::aead::sealed_key_version(&r.key_sealed).is_ok_and(|v| versions.contains(&v)))
            .map(|r| r.object_key)
            .collect())
    }
}

impl Store {
    /// Makes a new attachment's id and content key, if the actor is a member of the
    /// conversation (a refusal is audited and answers NotFound). Nothing is stored yet.
    pub async fn prepare_attachment(&self, actor: Actor, conv: ConversationId, meta: RequestMeta) -> Result<AttachmentDraft> {
        let member = self.read(move |mut c| Box::pin(async move { Ok(membership_if_any(&mut c, &actor, conv).await?.is_some()) })).await?;
        if !member {
            self.record_denied(actor, AuditAction::AttachmentUpload, conv, meta).await?;
            return Err(StoreError::NotFound);
        }
        Ok(AttachmentDraft {
            id: AttachmentId::new(),
            org_id: actor.org_id,
            conversation_id: conv,
            key: ward_crypto::aead::new_key_bytes(),
        })
    }

    /// Records an attachment whose content is in the attachment store: seals its content key
    /// and file name under the conversation's data key, and audits the upload. Fails with
    /// NotFound if the actor left the conversation meanwhile.
    pub async fn save_attachment(&self, actor: Actor, draft: AttachmentDraft, new: NewAttachment, meta: RequestMeta) -> Result<Attachment> {
        let conv = draft.conversation_id;
        let id = draft.id;
        if draft.org_id != actor.org_id {
            return Err(StoreError::NotFound);
        }
        let size = i64::try_from(new.size).map_err(|_| StoreError::State("attachment too large"))?;
        let key = self.conversation_key(actor.org_id, conv).await?;
        let key_sealed = key.seal(&key_context(actor.org_id, conv, id), draft.key());
        let name_sealed = new.file_name.as_ref().map(|n| key.seal(&name_context(actor.org_id, conv, id), n.as_bytes()));
        let object_key = draft.object_key();
        self.write(move |mut c| {
            Box::pin(async move {
                let Some((row, _)) = membership_if_any(&mut c, &actor, conv).await? else { return Err(StoreError::NotFound) };
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO attachments (id, org_id, conversation_id, uploader_id, content_type, size_bytes, key_sealed, name_sealed, object_key, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    id.0,
                    actor.org_id.0,
                    conv.0,
                    actor.user_id.0,
                    new.content_type.as_str(),
                    size,
                    key_sealed.as_slice(),
                    name_sealed.as_deref(),
                    object_key.as_str(),
                    now
                )?;
                let mut ev = AuditEvent::new(AuditAction::AttachmentUpload, Outcome::Success)
                    .target("attachment", id)
                    .patient(row.patient())
                    .detail("conversation", DetailValue::Id(conv.0))
                    .detail("content_type", DetailValue::Code(audit_type(&new.content_type)))
                    .detail("size", DetailValue::Int(size));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Attachment {
                    id,
                    conversation_id: conv,
                    uploader_id: actor.user_id,
                    content_type: new.content_type,
                    size: new.size,
                    file_name: new.file_name,
                    created_at: now,
                })
            })
        })
        .await
    }

    /// Opens an attachment for download, if the actor is a member of its conversation: its
    /// record, file name and content key. The download is audited before anything is
    /// returned; a refusal is audited as denied and answers NotFound, exactly like an
    /// attachment that does not exist.
    pub async fn open_attachment(
        &self,
        actor: Actor,
        conv: ConversationId,
        id: AttachmentId,
        meta: RequestMeta,
    ) -> Result<OpenedAttachment> {
        let ring = self.keyring().clone();
        let found = self
            .read(move |mut c| {
                Box::pin(async move {
                    let Some((conv_row, _)) = membership_if_any(&mut c, &actor, conv).await? else { return Ok(None) };
                    let row = fetch!(
                        fetch_optional,
                        &mut c,
                        AttachmentRow,
                        "SELECT id, conversation_id, uploader_id, content_type, size_bytes, key_sealed, name_sealed, object_key, created_at \
                         FROM attachments WHERE id = $1 AND conversation_id = $2 AND org_id = $3",
                        id.0,
                        conv.0,
                        actor.org_id.0
                    )?;
                    let Some(row) = row else { return Err(StoreError::NotFound) };
                    let key = Zeroizing::new(open_bytes(&mut c, &ring, &key_context(actor.org_id, conv, id), &row.key_sealed).await?);
                    let file_name = match &row.name_sealed {
                        Some(sealed) => {
                            let bytes = open_bytes(&mut c, &ring, &name_context(actor.org_id, conv, id), sealed).await?;
                            Some(String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("attachments.name_sealed"))?)
                        }
                        None => None,
                    };
                    let attachment = Attachment {
                        id: AttachmentId(row.id),
                        conversation_id: ConversationId(row.conversation_id),
                        uploader_id: UserId(row.uploader_id),
                        content_type: row.content_type,
                        size: u64::try_from(row.size_bytes).map_err(|_| StoreError::Corrupt("attachments.size_bytes"))?,
                        file_name,
                        created_at: row.created_at,
                    };
                    Ok(Some((conv_row.patient(), OpenedAttachment { attachment, object_key: row.object_key, org_id: actor.org_id, key })))
                })
            })
            .await?;
        let Some((patient, opened)) = found else {
            self.record_denied(actor, AuditAction::AttachmentDownload, conv, meta).await?;
            return Err(StoreError::NotFound);
        };
        let mut ev = AuditEvent::new(AuditAction::AttachmentDownload, Outcome::Success)
            .target("attachment", id)
            .patient(patient)
            .detail("conversation", DetailValue::Id(conv.0));
        ev.org_id = Some(actor.org_id);
        ev.actor = Some(actor.user_id);
        self.record(ev, meta).await?;
        Ok(opened)
    }
}
