//! Builds the key provider and keyring the configuration names, and rotates the KEK.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use ward_crypto::{FileKeyProvider, KekInfo, KeyProvider, Keyring};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_store::{DataKeyInfo, RequestMeta, Store};

use crate::config::{Config, KeyProviderKind};

/// The key provider the configuration names, checked with a wrap/unwrap round trip.
pub async fn provider(config: &Config) -> anyhow::Result<Arc<dyn KeyProvider>> {
    let k = &config.keys;
    let provider: Arc<dyn KeyProvider> = match k.provider {
        KeyProviderKind::File => {
            let path = k.key_file(&config.data_dir);
            Arc::new(FileKeyProvider::open_or_create(&path).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        KeyProviderKind::Pkcs11 => ward_crypto::pkcs11::connect(&k.pkcs11).map_err(|e| anyhow::anyhow!("keys.pkcs11: {e}"))?,
        KeyProviderKind::Kms => ward_crypto::kms::connect(&k.kms).await.map_err(|e| anyhow::anyhow!("keys.kms: {e}"))?,
    };
    ward_crypto::provider::self_test(provider.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("the {} key provider failed its self-test: {e}", provider.kind()))?;
    Ok(provider)
}

/// The keyring over the configured provider.
pub async fn keyring(config: &Config) -> anyhow::Result<Arc<Keyring>> {
    Ok(Arc::new(Keyring::new(provider(config).await?, config.keys.cache_keys)))
}

/// Keys read or rewrapped per query during a rotation.
const REWRAP_BATCH: u32 = 1000;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The KEK now current.
    pub kek_id: String,
    /// Data keys rewrapped under it.
    pub rewrapped: u64,
    /// Data keys still under another KEK (created during the run by a process that had not
    /// seen the new KEK yet; a rerun with `resume` picks them up).
    pub remaining: u64,
}

/// Creates a new KEK version (unless `resume`) and rewraps every live data key under it, in
/// batches, while servers keep running: content is never re-encrypted, and servers pick up
/// the new KEK for new keys on their own (see each provider). `progress(done, total)` is
/// called after each batch. Recorded as `keys.rotate`.
pub async fn rotate(store: &Store, resume: bool, meta: RequestMeta, mut progress: impl FnMut(u64, u64)) -> anyhow::Result<Rotated> {
    let provider = store.keyring().provider().clone();
    let kek_id = if resume { provider.current_kek().await? } else { provider.rotate().await? };
    let started = Instant::now();
    let mut rewrapped = 0;
    // Two passes: keys created by a server that had not yet seen the new KEK during the
    // first pass are caught by the second.
    for _ in 0..2 {
        let todo = store.data_keys_not_under(kek_id.clone()).await?;
        if todo == 0 {
            break;
        }
        let (mut cursor, mut done) = (None, 0);
        while let Some(batch) = store.rewrap_batch(kek_id.clone(), cursor, REWRAP_BATCH).await? {
            cursor = Some(batch.next);
            done += batch.rewrapped;
            progress(done, todo);
        }
        rewrapped += done;
    }
    let remaining = store.data_keys_not_under(kek_id.clone()).await?;
    let event = AuditEvent::new(AuditAction::KeyRotate, if remaining == 0 { Outcome::Success } else { Outcome::Failure })
        .detail("provider", DetailValue::Code(provider.kind()))
        .detail("rewrapped", DetailValue::Int(rewrapped as i64))
        .detail("remaining", DetailValue::Int(remaining as i64))
        .detail("resumed", DetailValue::Bool(resume))
        .detail("ms", DetailValue::Int(started.elapsed().as_millis() as i64));
    store.record(event, meta).await?;
    Ok(Rotated { kek_id, rewrapped, remaining })
}

/// Keys read per inventory query.
const INVENTORY_BATCH: u32 = 1000;

/// The inventory: the provider's KEKs and the data keys' metadata.
#[derive(Debug, Serialize)]
pub struct Inventory {
    /// The key provider kind.
    pub provider: &'static str,
    /// Every KEK version the provider holds.
    pub keks: Vec<KekRow>,
    /// Data keys summarised per scope kind.
    pub data_keys: Vec<ScopeSummary>,
    /// Every data key, with `--all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<DataKeyInfo>>,
}

/// The label organisations see for a KEK instead of its id, which for a KMS key is an ARN
/// naming the operator's cloud account and region: `kek-` and the first 12 hex digits of the
/// id's SHA-256.
pub fn kek_label(kek_id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, kek_id.as_bytes());
    let hex: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("kek-{hex}")
}

/// One KEK with how many live data keys it wraps.
#[derive(Debug, Serialize)]
pub struct KekRow {
    /// The KEK.
    #[serde(flatten)]
    pub kek: KekInfo,
    /// The opaque label organisations see for it (`GET /api/v1/keys`).
    pub label: String,
    /// Live data keys wrapped under it.
    pub data_keys: u64,
}

/// Data keys of one scope kind.
#[derive(Debug, Default, Serialize)]
pub struct ScopeSummary {
    /// `conversation`, `patient` or `org`.
    pub scope_kind: String,
    /// Scopes with at least one key.
    pub scopes: u64,
    /// Live key versions.
    pub live: u64,
    /// Destroyed (crypto-shredded) key versions.
    pub destroyed: u64,
    /// The highest version of any scope.
    pub max_version: i32,
    /// The oldest live key's creation (Unix ms).
    pub oldest_created_at: Option<i64>,
    /// The latest wrap (creation or KEK rotation), Unix ms.
    pub last_wrapped_at: Option<i64>,
}

/// Reads the inventory (deployment-wide; ids, versions and dates, never key material); `all`
/// also lists every data key. The caller records the read.
pub async fn inventory(store: &Store, all: bool) -> anyhow::Result<Inventory> {
    let provider = store.keyring().provider().clone();
    let kek_infos = provider.keks().await?;
    let mut per_kek: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_kind: BTreeMap<String, ScopeSummary> = BTreeMap::new();
    let mut last_scope: Option<uuid::Uuid> = None;
    let mut keys = all.then(Vec::new);
    let mut cursor = None;
    loop {
        let page = store.data_key_inventory(cursor, INVENTORY_BATCH).await?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.scope_id, last.version));
        for k in page {
            let s = per_kind
                .entry(k.scope_kind.clone())
                .or_insert_with(|| ScopeSummary { scope_kind: k.scope_kind.clone(), ..Default::default() });
            // Keys come ordered by scope, so a new scope id is a new scope.
            if last_scope != Some(k.scope_id) {
                s.scopes += 1;
                last_scope = Some(k.scope_id);
            }
            s.max_version = s.max_version.max(k.version);
            s.last_wrapped_at = s.last_wrapped_at.max(Some(k.wrapped_at));
            if k.destroyed_at.is_some() {
                s.destroyed += 1;
            } else {
                s.live += 1;
                s.oldest_created_at = Some(s.oldest_created_at.map_or(k.created_at, |o| o.min(k.created_at)));
            }
            if let Some(kek) = &k.kek_id {
                *per_kek.entry(kek.clone()).or_default() += 1;
            }
            if let Some(list) = keys.as_mut() {
                list.push(k);
            }
        }
    }
    let mut keks: Vec<KekRow> = kek_infos
        .into_iter()
        .map(|kek| KekRow { data_keys: per_kek.remove(&kek.kek_id).unwrap_or(0), label: kek_label(&kek.kek_id), kek })
        .collect();
    // Keys under a KEK the provider no longer lists (retired, or another provider's): shown so
    // that nobody mistakes them for readable.
    keks.extend(per_kek.into_iter().map(|(kek_id, n)| KekRow {
        label: kek_label(&kek_id),
        kek: KekInfo { kek_id, created_at: None, current: false },
        data_keys: n,
    }));
    Ok(Inventory { provider: provider.kind(), keks, data_keys: per_kind.into_values().collect(), keys })
}
