//! The keyring: a key provider plus a bounded cache of unwrapped data keys, so that an HSM or
//! KMS round trip is paid once per key, not once per message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::CryptoError;
use crate::aead::{DataKey, new_key_bytes};
use crate::provider::{KeyProvider, MemoryKeyProvider, WrapContext, WrappedKey};

/// Unwrapped keys kept by default. Each is a few hundred bytes of expanded AES key.
pub const DEFAULT_CACHE_KEYS: usize = 65_536;

struct Cache {
    keys: HashMap<WrapContext, Arc<DataKey>>,
    order: VecDeque<WrapContext>,
    capacity: usize,
}

/// Wraps, unwraps and caches data keys. Cheap to share behind an `Arc`.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("provider", &self.provider.kind()).finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring over `provider`, caching up to `capacity` unwrapped keys.
    pub fn new(provider: Arc<dyn KeyProvider>, capacity: usize) -> Keyring {
        Keyring { provider, cache: Mutex::new(Cache { keys: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }) }
    }

    /// A keyring whose KEK lives only in this process: for tests and scratch stores.
    pub fn ephemeral() -> Arc<Keyring> {
        Arc::new(Keyring::new(Arc::new(MemoryKeyProvider::default()), DEFAULT_CACHE_KEYS))
    }

    /// The provider behind this keyring.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Creates a data key for `ctx`: fresh random bytes, wrapped by the current KEK. The
    /// unwrapped key is cached, so the first use costs no unwrap.
    pub async fn create(&self, ctx: WrapContext) -> Result<(Arc<DataKey>, WrappedKey), CryptoError> {
        let bytes = new_key_bytes();
        let wrapped = self.provider.wrap(&ctx, &bytes).await?;
        let key = Arc::new(DataKey::from_bytes(ctx.version, bytes.as_ref())?);
        self.insert(ctx, key.clone());
        Ok((key, wrapped))
    }

    /// The data key for `ctx`, from the cache or by unwrapping `wrapped`.
    pub async fn open(&self, ctx: WrapContext, wrapped: &WrappedKey) -> Result<Arc<DataKey>, CryptoError> {
        if let Some(k) = self.cached(ctx) {
            return Ok(k);
        }
        let bytes = self.provider.unwrap(&ctx, wrapped).await?;
        let key = Arc::new(DataKey::from_bytes(ctx.version, bytes.as_ref())?);
        self.insert(ctx, key.clone());
        Ok(key)
    }

    /// Unwraps `wrapped` and wraps the same key again under the current KEK (rotation: the
    /// content it protects is not touched).
    pub async fn rewrap(&self, ctx: WrapContext, wrapped: &WrappedKey) -> Result<WrappedKey, CryptoError> {
        let bytes = self.provider.unwrap(&ctx, wrapped).await?;
        self.provider.wrap(&ctx, &bytes).await
    }

    /// A cached key, if present. Looked up by the whole context, tenant included, so a scope
    /// id can never reach another tenant's key through the cache.
    pub fn cached(&self, ctx: WrapContext) -> Option<Arc<DataKey>> {
        self.cache.lock().ok()?.keys.get(&ctx).cloned()
    }

    /// Drops every cached version of `scope`'s key (after shredding it).
    pub fn forget(&self, scope: Uuid) {
        if let Ok(mut c) = self.cache.lock() {
            c.keys.retain(|k, _| k.scope != scope);
            c.order.retain(|k| k.scope != scope);
        }
    }

    /// Drops one cached version (a key created but not stored).
    pub fn forget_version(&self, scope: Uuid, version: u32) {
        if let Ok(mut c) = self.cache.lock() {
            c.keys.retain(|k, _| (k.scope, k.version) != (scope, version));
            c.order.retain(|k| (k.scope, k.version) != (scope, version));
        }
    }

    fn insert(&self, ctx: WrapContext, key: Arc<DataKey>) {
        let Ok(mut c) = self.cache.lock() else { return };
        if c.keys.insert(ctx, key).is_none() {
            c.order.push_back(ctx);
        }
        while c.keys.len() > c.capacity {
            match c.order.pop_front() {
                Some(old) => {
                    c.keys.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::SealContext;

    #[tokio::test]
    async fn create_then_open_after_eviction() {
        let ring = Keyring::new(Arc::new(MemoryKeyProvider::default()), 1);
        let a = WrapContext { org: Uuid::from_u128(1), scope: Uuid::from_u128(2), version: 1 };
        let (key, wrapped) = ring.create(a).await.unwrap();
        let ctx = SealContext { purpose: "t", org: a.org, scope: a.scope, record: a.scope };
        let sealed = key.seal(&ctx, b"hello");
        // A second key evicts the first (capacity 1); the first comes back by unwrapping.
        ring.create(WrapContext { scope: Uuid::from_u128(3), ..a }).await.unwrap();
        assert!(ring.cached(a).is_none());
        assert!(ring.cached(WrapContext { scope: Uuid::from_u128(3), ..a }).is_some());
        assert!(
            ring.cached(WrapContext { org: Uuid::from_u128(9), scope: Uuid::from_u128(3), ..a }).is_none(),
            "the tenant is part of the cache key"
        );
        let again = ring.open(a, &wrapped).await.unwrap();
        assert_eq!(again.open(&ctx, &sealed).unwrap(), b"hello");
        // The wrapping is bound to its scope and version.
        ring.forget(a.scope);
        assert!(ring.open(WrapContext { version: 2, ..a }, &wrapped).await.is_err());
        // Rotation rewraps under the new KEK; the key itself is unchanged.
        ring.provider().rotate().await.unwrap();
        let rewrapped = ring.rewrap(a, &wrapped).await.unwrap();
        assert_ne!(rewrapped.kek_id, wrapped.kek_id);
        ring.forget(a.scope);
        assert_eq!(ring.open(a, &rewrapped).await.unwrap().open(&ctx, &sealed).unwrap(), b"hello");
    }
}
