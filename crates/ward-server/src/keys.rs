//! Builds the key provider and keyring the configuration names, and rotates the KEK.

use std::sync::Arc;
use std::time::Instant;

use ward_crypto::{FileKeyProvider, KeyProvider, Keyring};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_store::{RequestMeta, Store};

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
