//! The store's error type.

use ward_domain::DomainError;
use ward_domain::policy::Denial;

/// Why a store operation did not happen. Nothing here carries stored content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist, or the caller may not know that it does.
    #[error("not found")]
    NotFound,
    /// A unique name or id is already taken; the string names which one.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The authorization policy refused the operation.
    #[error(transparent)]
    Denied(#[from] Denial),
    /// A value broke a domain rule.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// The operation does not fit the record's current state; the string says why.
    #[error("{0}")]
    State(&'static str),
    /// The record changed since the version a conditional write was computed from: nothing
    /// was written (read it again).
    #[error("the record changed since it was read")]
    Changed,
    /// The database could not be reached or did not commit; nothing was acknowledged.
    #[error("database unavailable")]
    Unavailable,
    /// The database's disk is full: nothing was written; retry once space is freed.
    #[error("the database's storage is full")]
    StorageFull,
    /// The database failed in an unexpected way (details are logged, never returned).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data could not be read back as the program expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    /// Sealed content could not be opened or sealed: a key provider failure, or a ciphertext
    /// that fails authentication (altered, or moved from another row).
    #[error(transparent)]
    Crypto(#[from] ward_crypto::CryptoError),
    /// The data key this content was sealed under has been destroyed (crypto-shredded).
    #[error("the content's data key has been destroyed")]
    KeyDestroyed,
    /// A legal hold forbids destroying this content (refused by the store or, as a second
    /// line, by a database trigger).
    #[error("a legal hold forbids this")]
    LegalHold,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => StoreError::Unavailable,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("record"),
            // SQLITE_FULL (13), and PostgreSQL's disk_full (53100).
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("13" | "53100")) => StoreError::StorageFull,
            sqlx::Error::Database(db) if db.message().contains("ward_legal_hold") => StoreError::LegalHold,
            _ => StoreError::Database(e),
        }
    }
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
