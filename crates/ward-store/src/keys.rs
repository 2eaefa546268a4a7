//! Data keys: each conversation, patient and organisation has versioned data keys, stored only
//! wrapped by the key provider's KEK. This module finds, creates, rotates and opens them.

use std::sync::Arc;

use ward_crypto::{DataKey, Keyring, SealContext, WrapContext, WrappedKey};
use ward_domain::ids::{ConversationId, OrgId};

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{Store, now_ms};

/// What a data key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// A conversation's messages, title and attachments.
    Conversation,
    /// A patient's identifying fields.
    Patient,
    /// Organisation-wide values, such as the blind-index key for MRN lookups.
    Org,
}

impl ScopeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Conversation => "conversation",
            ScopeKind::Patient => "patient",
            ScopeKind::Org => "org",
        }
    }
}

/// Seal-context purposes, one per sealed column.
pub(crate) mod purpose {
    pub(crate) const MESSAGE_BODY: &str = "message.body";
    pub(crate) const CONVERSATION_TITLE: &str = "conversation.title";
    pub(crate) const REASON_NOTE: &str = "member.reason_note";
    pub(crate) const PATIENT_MRN: &str = "patient.mrn";
    pub(crate) const PATIENT_NAME: &str = "patient.name";
    pub(crate) const MRN_INDEX: &str = "patient.mrn.index";
    pub(crate) const ATTACHMENT_KEY: &str = "attachment.key";
    pub(crate) const ATTACHMENT_NAME: &str = "attachment.name";
    pub(crate) const OUTBOX_BODY: &str = "outbox.body";
    pub(crate) const BREAK_GLASS_REASON: &str = "break_glass.reason";
    pub(crate) const BREAK_GLASS_NOTE: &str = "break_glass.review_note";
    pub(crate) const CONTACT_VALUE: &str = "contact.value";
    pub(crate) const CONTACT_INDEX: &str = "contact.value.index";
    pub(crate) const CONTACT_CODE: &str = "contact.code";
    pub(crate) const AUTHORIZATION_RECIPIENT: &str = "authorization.recipient";
    pub(crate) const AUTHORIZATION_PURPOSE: &str = "authorization.purpose";
    pub(crate) const INCIDENT_TITLE: &str = "incident.title";
    pub(crate) const INCIDENT_DESCRIPTION: &str = "incident.description";
    pub(crate) const PUSH_TOKEN: &str = "push.token";
    pub(crate) const INBOUND_SENDER: &str = "inbound.sender";
    pub(crate) const OIDC_CLIENT_SECRET: &str = "oidc.client_secret";
    pub(crate) const OIDC_SUBJECT: &str = "oidc.subject";
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    version: i32,
    kek_id: Option<String>,
    wrapped: Option<Vec<u8>>,
    created_at: i64,
}

impl KeyRow {
    fn wrapped(self) -> Result<WrappedKey> {
        match (self.kek_id, self.wrapped) {
            (Some(kek_id), Some(blob)) => Ok(WrappedKey { kek_id, blob }),
            _ => Err(StoreError::KeyDestroyed),
        }
    }
}

fn wrap_ctx(org: uuid::Uuid, scope: uuid::Uuid, version: i32) -> WrapContext {
    WrapContext { org, scope, version: version as u32 }
}

/// Version `version` of `scope`'s data key, from the keyring's cache or unwrapped.
pub(crate) async fn key_version(
    c: &mut Conn<'_>,
    ring: &Keyring,
    org: uuid::Uuid,
    scope: uuid::Uuid,
    version: u32,
) -> Result<Arc<DataKey>> {
    if let Some(k) = ring.cached(wrap_ctx(org, scope, version as i32)) {
        return Ok(k);
    }
    let row = fetch!(
        fetch_optional,
        c,
        KeyRow,
        "SELECT version, kek_id, wrapped, created_at FROM data_keys WHERE scope_id = $1 AND version = $2 AND org_id = $3",
        scope,
        version as i32,
        org
    )?
    .ok_or(StoreError::Corrupt("sealed content names a data key that does not exist"))?;
    let v = row.version;
    Ok(ring.open(wrap_ctx(org, scope, v), &row.wrapped()?).await?)
}

/// Opens a sealed field, finding the key version its header names.
pub(crate) async fn open_field(c: &mut Conn<'_>, ring: &Keyring, ctx: &SealContext<'_>, sealed: &[u8]) -> Result<String> {
    let version = ward_crypto::aead::sealed_key_version(sealed)?;
    let key = key_version(c, ring, ctx.org, ctx.scope, version).await?;
    Ok(key.open_string(ctx, sealed)?)
}

/// Stores a freshly created wrapped key (inside the transaction that creates its scope).
pub(crate) async fn insert_key(
    c: &mut Conn<'_>,
    org: uuid::Uuid,
    kind: ScopeKind,
    scope: uuid::Uuid,
    version: u32,
    wrapped: &WrappedKey,
) -> Result<bool> {
    let now = now_ms();
    let n = exec!(
        c,
        "INSERT INTO data_keys (scope_id, version, org_id, scope_kind, kek_id, wrapped, created_at, wrapped_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (scope_id, version) DO NOTHING",
        scope,
        version as i32,
        org,
        kind.as_str(),
        wrapped.kek_id.as_str(),
        wrapped.blob.as_slice(),
        now
    )?;
    Ok(n == 1)
}

/// Whether `scope` is a conversation, patient or the organisation itself, of `org`.
async fn scope_in_org(c: &mut Conn<'_>, org: OrgId, kind: ScopeKind, scope: uuid::Uuid) -> Result<bool> {
    let sql = match kind {
        ScopeKind::Conversation => "SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2",
        ScopeKind::Patient => "SELECT 1 FROM patients WHERE id = $1 AND org_id = $2",
        ScopeKind::Org => return Ok(scope == org.0),
    };
    Ok(scalar!(fetch_optional, c, i32, sql, scope, org.0)?.is_some())
}

/// A data key made ready before a write: created and wrapped outside the single writer (an
/// HSM or KMS round trip must not hold up other writes), stored inside it.
pub(crate) struct PreparedKey {
    pub(crate) key: Arc<DataKey>,
    pub(crate) wrapped: WrappedKey,
}

impl Store {
    /// Creates version 1 of a new scope's data key (not yet stored).
    pub(crate) async fn prepare_key(&self, org: OrgId, scope: uuid::Uuid) -> Result<PreparedKey> {
        let (key, wrapped) = self.keyring().create(wrap_ctx(org.0, scope, 1)).await?;
        Ok(PreparedKey { key, wrapped })
    }

    /// The data key new content in `scope` is sealed under: the newest version, rotated to a
    /// new version once it is older than the configured age or destroyed (crypto-shredded;
    /// the new number is one above every earlier one), created if none exists.
    pub async fn current_key(&self, org: OrgId, kind: ScopeKind, scope: uuid::Uuid) -> Result<Arc<DataKey>> {
        let ring = self.keyring().clone();
        let newest = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(fetch!(
                        fetch_optional,
                        &mut c,
                        KeyRow,
                        "SELECT version, kek_id, wrapped, created_at FROM data_keys \
                         WHERE scope_id = $1 AND org_id = $2 ORDER BY version DESC LIMIT 1",
                        scope,
                        org.0
                    )?)
                })
            })
            .await?;
        let max_age = self.inner.data_key_max_age_ms;
        let next_version = match newest {
            // The newest version was destroyed (crypto-shredded): new content gets a new
            // version above every earlier one, never a reused number.
            Some(row) if row.wrapped.is_none() => row.version as u32 + 1,
            Some(row) if now_ms() - row.created_at < max_age => {
                let v = row.version;
                if let Some(k) = ring.cached(wrap_ctx(org.0, scope, v)) {
                    return Ok(k);
                }
                return Ok(ring.open(wrap_ctx(org.0, scope, v), &row.wrapped()?).await?);
            }
            Some(row) => row.version as u32 + 1,
            None => {
                // The first key of a scope: only for a scope of this organisation, so that no
                // one can claim another tenant's key space.
                let owned = self.read(move |mut c| Box::pin(async move { scope_in_org(&mut c, org, kind, scope).await })).await?;
                if !owned {
                    return Err(StoreError::NotFound);
                }
                1
            }
        };
        // Rotation: a new version for new content; older versions still open older content.
        let (key, wrapped) = ring.create(wrap_ctx(org.0, scope, next_version as i32)).await?;
        let stored =
            self.write(move |mut c| Box::pin(async move { insert_key(&mut c, org.0, kind, scope, next_version, &wrapped).await })).await?;
        if stored {
            Ok(key)
        } else {
            // Another request created this version first: use theirs.
            ring.forget_version(scope, next_version);
            let ring2 = ring.clone();
            self.read(move |mut c| Box::pin(async move { key_version(&mut c, &ring2, org.0, scope, next_version).await })).await
        }
    }

    /// The current data key of a conversation (see [`Store::current_key`]).
    pub async fn conversation_key(&self, org: OrgId, conv: ConversationId) -> Result<Arc<DataKey>> {
        self.current_key(org, ScopeKind::Conversation, conv.0).await
    }

    /// A given version of a conversation's data key, to open content sealed under it.
    pub async fn conversation_key_version(&self, org: OrgId, conv: ConversationId, version: u32) -> Result<Arc<DataKey>> {
        let ring = self.keyring().clone();
        self.read(move |mut c| Box::pin(async move { key_version(&mut c, &ring, org.0, conv.0, version).await })).await
    }

    /// The organisation's blind-index key: always version 1 of the organisation's scope, so
    /// that an index computed years ago still matches.
    pub(crate) async fn index_key(&self, org: OrgId) -> Result<Arc<DataKey>> {
        let ring = self.keyring().clone();
        let found = self
            .read(move |mut c| {
                Box::pin(async move {
                    match key_version(&mut c, &ring, org.0, org.0, 1).await {
                        Ok(k) => Ok(Some(k)),
                        Err(StoreError::Corrupt(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            })
            .await?;
        match found {
            Some(k) => Ok(k),
            None => self.current_key(org, ScopeKind::Org, org.0).await,
        }
    }
}

/// One stored data key, as the inventory shows it (never key material).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataKeyInfo {
    /// The organisation.
    pub org_id: uuid::Uuid,
    /// `conversation`, `patient` or `org`.
    pub scope_kind: String,
    /// The conversation, patient or organisation id.
    pub scope_id: uuid::Uuid,
    /// The version within the scope.
    pub version: i32,
    /// The KEK it is wrapped under; `None` once destroyed.
    pub kek_id: Option<String>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it was last wrapped: creation or the latest KEK rotation (Unix ms).
    pub wrapped_at: i64,
    /// When it was destroyed (crypto-shredded), if it was.
    pub destroyed_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RewrapRow {
    scope_id: uuid::Uuid,
    version: i32,
    org_id: uuid::Uuid,
    kek_id: Option<String>,
    wrapped: Option<Vec<u8>>,
}

/// A data key already wrapped, to store as it is (bulk loads: benchmarks, imports).
#[derive(Debug, Clone)]
pub struct WrappedDataKey {
    /// The organisation.
    pub org: OrgId,
    /// What the scope is.
    pub kind: ScopeKind,
    /// The conversation, patient or organisation id.
    pub scope: uuid::Uuid,
    /// The version within the scope.
    pub version: u32,
    /// The key, wrapped with the context `(org, scope, version)`.
    pub wrapped: WrappedKey,
}

/// What one [`Store::rewrap_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapBatch {
    /// Keys looked at (live, destroyed and already current).
    pub scanned: u64,
    /// Keys rewrapped under the current KEK (a key changed meanwhile is skipped; a rerun
    /// picks it up).
    pub rewrapped: u64,
    /// The cursor for the next batch.
    pub next: (uuid::Uuid, i32),
}

#[derive(sqlx::FromRow)]
struct InfoRow {
    org_id: uuid::Uuid,
    scope_kind: String,
    scope_id: uuid::Uuid,
    version: i32,
    kek_id: Option<String>,
    created_at: i64,
    wrapped_at: i64,
    destroyed_at: Option<i64>,
}

impl Store {
    /// How many live data keys are wrapped under a KEK other than `kek_id`.
    pub async fn data_keys_not_under(&self, kek_id: String) -> Result<u64> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1",
                    kek_id.as_str()
                )? as u64)
            })
        })
        .await
    }

    /// Stores already wrapped data keys in one transaction; keys whose scope and version
    /// exist are left as they are. Returns how many were stored.
    pub async fn store_wrapped_keys(&self, keys: Vec<WrappedDataKey>) -> Result<u64> {
        self.write(move |mut c| {
            Box::pin(async move {
                let mut n = 0;
                for k in &keys {
                    n += u64::from(insert_key(&mut c, k.org.0, k.kind, k.scope, k.version, &k.wrapped).await?);
                }
                Ok(n)
            })
        })
        .await
    }

    /// How many live data keys are wrapped under `kek_id` (a KEK may be retired only at 0).
    pub async fn data_keys_under(&self, kek_id: String) -> Result<u64> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL AND kek_id = $1",
                    kek_id.as_str()
                )? as u64)
            })
        })
        .await
    }

    /// Rewraps the live data keys not yet under the provider's current KEK, among the next
    /// `batch` keys after `after` in key order: unwrap with the old KEK, wrap with the new one,
    /// store only if the row is unchanged meanwhile. Content is never touched. Walking by
    /// cursor keeps a rotation over millions of keys linear. Returns `None` when no keys
    /// remain after the cursor.
    pub async fn rewrap_batch(&self, current_kek: String, after: Option<(uuid::Uuid, i32)>, batch: u32) -> Result<Option<RewrapBatch>> {
        let kek = current_kek.clone();
        let (after_scope, after_version) = after.unwrap_or((uuid::Uuid::nil(), -1));
        let rows = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(fetch!(
                        fetch_all,
                        &mut c,
                        RewrapRow,
                        "SELECT scope_id, version, org_id, kek_id, wrapped FROM data_keys \
                         WHERE scope_id > $1 OR (scope_id = $1 AND version > $2) ORDER BY scope_id, version LIMIT $3",
                        after_scope,
                        after_version,
                        i64::from(batch)
                    )?)
                })
            })
            .await?;
        let Some(last) = rows.last() else { return Ok(None) };
        let next = (last.scope_id, last.version);
        let scanned = rows.len() as u64;
        let ring = self.keyring().clone();
        let mut updates = Vec::with_capacity(rows.len());
        for r in rows {
            let (Some(old_kek), Some(blob)) = (r.kek_id, r.wrapped) else { continue };
            if old_kek == kek {
                continue;
            }
            let old = WrappedKey { kek_id: old_kek, blob };
            let new = ring.rewrap(wrap_ctx(r.org_id, r.scope_id, r.version), &old).await?;
            if new.kek_id != current_kek {
                return Err(StoreError::State("the key provider's current KEK changed during rotation; run it again"));
            }
            updates.push((r.scope_id, r.version, old, new));
        }
        let now = now_ms();
        let rewrapped = if updates.is_empty() {
            0
        } else {
            self.write(move |mut c| {
                Box::pin(async move {
                    let mut n = 0;
                    for (scope, version, old, new) in &updates {
                        n += exec!(
                            &mut c,
                            "UPDATE data_keys SET kek_id = $3, wrapped = $4, wrapped_at = $5 \
                             WHERE scope_id = $1 AND version = $2 AND kek_id = $6 AND wrapped = $7",
                            *scope,
                            *version,
                            new.kek_id.as_str(),
                            new.blob.as_slice(),
                            now,
                            old.kek_id.as_str(),
                            old.blob.as_slice()
                        )?;
                    }
                    Ok(n)
                })
            })
            .await?
        };
        Ok(Some(RewrapBatch { scanned, rewrapped, next }))
    }

    /// Every data key's metadata, oldest first, after the cursor `(scope_id, version)`.
    pub async fn data_key_inventory(&self, after: Option<(uuid::Uuid, i32)>, limit: u32) -> Result<Vec<DataKeyInfo>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let (scope, version) = after.unwrap_or((uuid::Uuid::nil(), -1));
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    InfoRow,
                    "SELECT org_id, scope_kind, scope_id, version, kek_id, created_at, wrapped_at, destroyed_at FROM data_keys \
                     WHERE scope_id > $1 OR (scope_id = $1 AND version > $2) ORDER BY scope_id, version LIMIT $3",
                    scope,
                    version,
                    i64::from(limit)
                )?;
                Ok(rows
                    .into_iter()
                    .map(|r| DataKeyInfo {
                        org_id: r.org_id,
                        scope_kind: r.scope_kind,
                        scope_id: r.scope_id,
                        version: r.version,
                        kek_id: r.kek_id,
                        created_at: r.created_at,
                        wrapped_at: r.wrapped_at,
                        destroyed_at: r.destroyed_at,
                    })
                    .collect())
            })
        })
        .await
    }
}
