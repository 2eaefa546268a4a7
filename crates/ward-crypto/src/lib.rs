//! Envelope encryption for Ward: AES-256-GCM sealing bound to its context, data keys wrapped by a key provider, and the keyring that caches them.
//!
//! The hierarchy: a key provider (the local key file, a PKCS#11 HSM or a KMS) holds
//! key-encryption keys (KEKs), with versions. Each conversation, patient and organisation has
//! data keys, with versions, stored only wrapped by a KEK. Each field that can carry PHI is
//! sealed under its scope's current data key with additional data naming the tenant, scope,
//! row, field and key version ([`aead::SealContext`]). Rotating the KEK rewraps data keys
//! without touching content; destroying a data key (crypto-shredding) makes everything sealed
//! under it unreadable.

pub mod aead;
pub mod file;
pub mod keyring;
pub mod kms;
pub mod pkcs11;
pub mod provider;
pub mod signed_data;
pub mod stream;
#[cfg(feature = "test-support")]
pub mod testing;

pub use aead::{DataKey, SealContext};
pub use file::FileKeyProvider;
pub use keyring::Keyring;
pub use provider::{KekInfo, KeyProvider, MemoryKeyProvider, WrapContext, WrappedKey};

/// What can go wrong sealing, opening, wrapping or unwrapping. Messages never include key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: the ciphertext was altered, or belongs to another context or key.
    #[error("decryption failed: the data was altered or belongs elsewhere")]
    Decrypt,
    /// Bytes that are not in the expected format.
    #[error("malformed: {0}")]
    Format(&'static str),
    /// A wrapped key names a KEK the provider does not hold (destroyed, or another provider's).
    #[error("the key provider has no KEK {0:?}")]
    UnknownKek(String),
    /// The provider failed (I/O, HSM or KMS error).
    #[error("key provider: {0}")]
    Provider(String),
}
