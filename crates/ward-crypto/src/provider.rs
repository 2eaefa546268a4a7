//! Key providers: where key-encryption keys (KEKs) live. Data keys are stored only wrapped
//! by a KEK; the KEK itself never leaves its provider (the local key file being the exception
//! that proves the rule: it is the provider for a single machine without an HSM).

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{KEY_LEN, random_array};

/// Which key a wrapped data key belongs to. Goes into the wrapping's additional data, so a
/// wrapped key moved to another conversation or version does not unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrapContext {
    /// The tenant.
    pub org: Uuid,
    /// The conversation, patient or organisation the data key serves.
    pub scope: Uuid,
    /// The data key's version within that scope.
    pub version: u32,
}

impl WrapContext {
    /// The additional authenticated data of the wrapping:
    /// `"ward-dek-v1" ‖ 0x00 ‖ org ‖ scope (16 bytes each) ‖ version (u32, big-endian)`.
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 32 + 4);
        out.extend_from_slice(b"ward-dek-v1\0");
        out.extend_from_slice(self.org.as_bytes());
        out.extend_from_slice(self.scope.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// A data key as stored: the KEK that wrapped it and the provider's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The provider's name for the KEK version used, such as `file:v2`.
    pub kek_id: String,
    /// Opaque to everyone but the provider.
    pub blob: Vec<u8>,
}

/// One KEK version, as the key inventory shows it (never key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekInfo {
    /// The provider's name for this version.
    pub kek_id: String,
    /// Unix milliseconds, where the provider knows it.
    pub created_at: Option<i64>,
    /// Whether new wraps use it.
    pub current: bool,
}

/// Raw data key bytes crossing the provider boundary; cleared when dropped.
pub type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

/// A place that holds KEKs and wraps and unwraps data keys with them.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// A short name: `file`, `pkcs11`, `kms`.
    fn kind(&self) -> &'static str;

    /// Wraps `key` under the current KEK.
    async fn wrap(&self, ctx: &WrapContext, key: &KeyBytes) -> Result<WrappedKey, CryptoError>;

    /// Unwraps a key wrapped by any KEK version this provider still holds.
    async fn unwrap(&self, ctx: &WrapContext, wrapped: &WrappedKey) -> Result<KeyBytes, CryptoError>;

    /// Creates a new KEK version and makes it current; returns its id. Keys wrapped under
    /// older versions still unwrap until those versions are destroyed.
    async fn rotate(&self) -> Result<String, CryptoError>;

    /// Every KEK version the provider holds, for the inventory.
    async fn keks(&self) -> Result<Vec<KekInfo>, CryptoError>;

    /// The id new wraps use.
    async fn current_kek(&self) -> Result<String, CryptoError>;

    /// Destroys a KEK version that is not current (retirement). Every data key still wrapped
    /// under it becomes unrecoverable, in the database and in every backup: callers check that
    /// none is left in the live database first.
    async fn destroy(&self, kek_id: &str) -> Result<(), CryptoError>;
}

/// The error for an attempt to destroy the current KEK.
pub(crate) fn current_kek_refused() -> CryptoError {
    CryptoError::Provider("the current KEK cannot be retired; rotate to a new one first".into())
}

/// Wraps with AES-256-GCM under a locally held KEK: `nonce ‖ ciphertext ‖ tag` with the
/// [`WrapContext`] as additional data. Shared by the file and in-memory providers.
pub(crate) fn wrap_locally(kek: &[u8], ctx: &WrapContext, key: &KeyBytes) -> Result<Vec<u8>, CryptoError> {
    let k = crate::aead::DataKey::from_bytes(0, kek)?;
    Ok(k.seal_with_aad(&ctx.aad(), key.as_ref()))
}

/// The inverse of [`wrap_locally`].
pub(crate) fn unwrap_locally(kek: &[u8], ctx: &WrapContext, blob: &[u8]) -> Result<KeyBytes, CryptoError> {
    let k = crate::aead::DataKey::from_bytes(0, kek)?;
    let plain = Zeroizing::new(k.open_with_aad(&ctx.aad(), blob)?);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    if plain.len() != KEY_LEN {
        return Err(CryptoError::Format("an unwrapped data key is 32 bytes"));
    }
    out.copy_from_slice(&plain);
    Ok(out)
}

/// A provider whose KEKs live only in memory: for tests and throw-away stores, never for data
/// that must outlive the process.
pub struct MemoryKeyProvider {
    /// Version N at index N-1; `None` once destroyed.
    keks: Mutex<Vec<Option<Zeroizing<[u8; KEY_LEN]>>>>,
}

impl Default for MemoryKeyProvider {
    fn default() -> Self {
        MemoryKeyProvider { keks: Mutex::new(vec![Some(Zeroizing::new(random_array()))]) }
    }
}

impl MemoryKeyProvider {
    fn kek(&self, kek_id: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let n: usize =
            kek_id.strip_prefix("memory:v").and_then(|v| v.parse().ok()).ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))?;
        let keks = self.keks.lock().map_err(|_| CryptoError::Provider("lock poisoned".into()))?;
        keks.get(n.wrapping_sub(1)).cloned().flatten().ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))
    }

    fn current(&self) -> Result<(String, Zeroizing<[u8; KEY_LEN]>), CryptoError> {
        let keks = self.keks.lock().map_err(|_| CryptoError::Provider("lock poisoned".into()))?;
        let last = keks.last().cloned().flatten().ok_or_else(|| CryptoError::Provider("no KEK".into()))?;
        Ok((format!("memory:v{}", keks.len()), last))
    }
}

#[async_trait]
impl KeyProvider for MemoryKeyProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn wrap(&self, ctx: &WrapContext, key: &KeyBytes) -> Result<WrappedKey, CryptoError> {
        let (kek_id, kek) = self.current()?;
        Ok(WrappedKey { kek_id, blob: wrap_locally(kek.as_ref(), ctx, key)? })
    }

    async fn unwrap(&self, ctx: &WrapContext, wrapped: &WrappedKey) -> Result<KeyBytes, CryptoError> {
        unwrap_locally(self.kek(&wrapped.kek_id)?.as_ref(), ctx, &wrapped.blob)
    }

    async fn rotate(&self) -> Result<String, CryptoError> {
        let mut keks = self.keks.lock().map_err(|_| CryptoError::Provider("lock poisoned".into()))?;
        keks.push(Some(Zeroizing::new(random_array())));
        Ok(format!("memory:v{}", keks.len()))
    }

    async fn keks(&self) -> Result<Vec<KekInfo>, CryptoError> {
        let keks = self.keks.lock().map_err(|_| CryptoError::Provider("lock poisoned".into()))?;
        let n = keks.len();
        Ok((1..=n)
            .filter(|v| keks[v - 1].is_some())
            .map(|v| KekInfo { kek_id: format!("memory:v{v}"), created_at: None, current: v == n })
            .collect())
    }

    async fn current_kek(&self) -> Result<String, CryptoError> {
        Ok(self.current()?.0)
    }

    async fn destroy(&self, kek_id: &str) -> Result<(), CryptoError> {
        let n: usize =
            kek_id.strip_prefix("memory:v").and_then(|v| v.parse().ok()).ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))?;
        let mut keks = self.keks.lock().map_err(|_| CryptoError::Provider("lock poisoned".into()))?;
        if n == keks.len() {
            return Err(current_kek_refused());
        }
        match keks.get_mut(n.wrapping_sub(1)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(CryptoError::UnknownKek(kek_id.to_owned())),
        }
    }
}

/// Checks a provider end to end: wraps a fresh key, unwraps it, and confirms that the wrapping
/// is bound to its context. Used by provider tests and at start-up.
pub async fn self_test(provider: &dyn KeyProvider) -> Result<(), CryptoError> {
    let ctx = WrapContext { org: Uuid::nil(), scope: Uuid::nil(), version: 1 };
    let key = crate::aead::new_key_bytes();
    let wrapped = provider.wrap(&ctx, &key).await?;
    let back = provider.unwrap(&ctx, &wrapped).await?;
    if back.as_ref() != key.as_ref() {
        return Err(CryptoError::Provider("the provider unwrapped a different key".into()));
    }
    let elsewhere = WrapContext { version: 2, ..ctx };
    if provider.unwrap(&elsewhere, &wrapped).await.is_ok() {
        return Err(CryptoError::Provider("the provider ignores the wrapping context".into()));
    }
    Ok(())
}
