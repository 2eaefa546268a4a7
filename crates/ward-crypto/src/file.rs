//! The local key file: KEK versions in `<data_dir>/keys/kek.json`, mode 0600.
//!
//! For one machine without an HSM or KMS. Back the file up apart from the database: whoever
//! holds both holds the data. The file is re-read when another process (`ward keys rotate`)
//! changes it, so a running server picks up a new KEK version without a restart.
//!
//! ```json
//! {"format": "ward-kek-file-v1", "keys": [{"version": 1, "created_at": 1700000000000, "key": "<base64>"}]}
//! ```
//! The last entry is current.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{KEY_LEN, random_array};
use crate::provider::{KekInfo, KeyBytes, KeyProvider, WrapContext, WrappedKey, unwrap_locally, wrap_locally};

const FORMAT: &str = "ward-kek-file-v1";

#[derive(Serialize, Deserialize)]
struct FileBody {
    format: String,
    keys: Vec<FileKek>,
}

#[derive(Serialize, Deserialize)]
struct FileKek {
    version: u32,
    created_at: i64,
    key: String,
}

struct Kek {
    version: u32,
    created_at: i64,
    key: Zeroizing<[u8; KEY_LEN]>,
}

struct Loaded {
    keks: Vec<Kek>,
    stamp: Option<FileStamp>,
}

/// KEKs kept in a local file.
pub struct FileKeyProvider {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl FileKeyProvider {
    /// Opens the key file at `path`, creating it with one fresh KEK (mode 0600) if missing.
    pub fn open_or_create(path: &Path) -> Result<FileKeyProvider, CryptoError> {
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_error(path, e))?;
            }
            let first = Kek { version: 1, created_at: now_ms(), key: Zeroizing::new(random_array()) };
            write_file(path, &[first], true)?;
        }
        let loaded = read_file(path)?;
        Ok(FileKeyProvider { path: path.to_owned(), loaded: Mutex::new(loaded) })
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the KEKs, re-reading the file first if another process changed it.
    fn with_keks<T>(&self, f: impl FnOnce(&[Kek]) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        let mut loaded = self.loaded.lock().map_err(|_| CryptoError::Provider("key file lock poisoned".into()))?;
        if file_stamp(&self.path) != loaded.stamp {
            *loaded = read_file(&self.path)?;
        }
        f(&loaded.keks)
    }
}

/// What tells that the key file changed: its inode (every write renames a new file into
/// place), size and modification time. The time alone is not enough: two writes within one
/// tick of the file system's clock share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode })
}

fn io_error(path: &Path, e: std::io::Error) -> CryptoError {
    CryptoError::Provider(format!("key file {}: {e}", path.display()))
}

fn read_file(path: &Path) -> Result<Loaded, CryptoError> {
    let stamp = file_stamp(path);
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io_error(path, e))?);
    let body: FileBody = serde_json::from_str(&text).map_err(|e| {
        CryptoError::Provider(format!("key file {} is not valid: line {}, column {}", path.display(), e.line(), e.column()))
    })?;
    if body.format != FORMAT {
        return Err(CryptoError::Provider(format!("key file {} has format {:?}, expected {FORMAT:?}", path.display(), body.format)));
    }
    let mut keks = Vec::with_capacity(body.keys.len());
    for k in body.keys {
        let raw = Zeroizing::new(
            STANDARD
                .decode(k.key.as_bytes())
                .map_err(|_| CryptoError::Provider(format!("key file {}: KEK v{} is not base64", path.display(), k.version)))?,
        );
        if raw.len() != KEY_LEN {
            return Err(CryptoError::Provider(format!("key file {}: KEK v{} is not 32 bytes", path.display(), k.version)));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&raw);
        keks.push(Kek { version: k.version, created_at: k.created_at, key });
    }
    if keks.is_empty() {
        return Err(CryptoError::Provider(format!("key file {} holds no KEK", path.display())));
    }
    Ok(Loaded { keks, stamp })
}

/// Writes the key file atomically: a 0600 temporary file, fsync, rename, fsync of the folder.
fn write_file(path: &Path, keks: &[Kek], create_new: bool) -> Result<(), CryptoError> {
    let body = FileBody {
        format: FORMAT.to_owned(),
        keys: keks.iter().map(|k| FileKek { version: k.version, created_at: k.created_at, key: STANDARD.encode(k.key.as_ref()) }).collect(),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&body).map_err(|e| CryptoError::Provider(e.to_string()))?);
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| io_error(&tmp, e))?;
    drop(f);
    if create_new && path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(CryptoError::Provider(format!("key file {} appeared while it was being created", path.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn kek_id(version: u32) -> String {
    format!("file:v{version}")
}

fn parse_kek_id(id: &str) -> Option<u32> {
    id.strip_prefix("file:v")?.parse().ok()
}

#[async_trait]
impl KeyProvider for FileKeyProvider {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn wrap(&self, ctx: &WrapContext, key: &KeyBytes) -> Result<WrappedKey, CryptoError> {
        self.with_keks(|keks| {
            let current = keks.last().ok_or_else(|| CryptoError::Provider("no KEK".into()))?;
            Ok(WrappedKey { kek_id: kek_id(current.version), blob: wrap_locally(current.key.as_ref(), ctx, key)? })
        })
    }

    async fn unwrap(&self, ctx: &WrapContext, wrapped: &WrappedKey) -> Result<KeyBytes, CryptoError> {
        let version = parse_kek_id(&wrapped.kek_id).ok_or_else(|| CryptoError::UnknownKek(wrapped.kek_id.clone()))?;
        self.with_keks(|keks| {
            let kek = keks.iter().find(|k| k.version == version).ok_or_else(|| CryptoError::UnknownKek(wrapped.kek_id.clone()))?;
            unwrap_locally(kek.key.as_ref(), ctx, &wrapped.blob)
        })
    }

    async fn rotate(&self) -> Result<String, CryptoError> {
        let mut loaded = self.loaded.lock().map_err(|_| CryptoError::Provider("key file lock poisoned".into()))?;
        // Always from the file as it is now: another process may have rotated meanwhile.
        let mut now = read_file(&self.path)?;
        let next = now.keks.iter().map(|k| k.version).max().unwrap_or(0) + 1;
        now.keks.push(Kek { version: next, created_at: now_ms(), key: Zeroizing::new(random_array()) });
        write_file(&self.path, &now.keks, false)?;
        *loaded = read_file(&self.path)?;
        Ok(kek_id(next))
    }

    async fn keks(&self) -> Result<Vec<KekInfo>, CryptoError> {
        self.with_keks(|keks| {
            let last = keks.last().map(|k| k.version);
            Ok(keks
                .iter()
                .map(|k| KekInfo { kek_id: kek_id(k.version), created_at: Some(k.created_at), current: Some(k.version) == last })
                .collect())
        })
    }

    async fn current_kek(&self) -> Result<String, CryptoError> {
        self.with_keks(|keks| keks.last().map(|k| kek_id(k.version)).ok_or_else(|| CryptoError::Provider("no KEK".into())))
    }

    async fn destroy(&self, id: &str) -> Result<(), CryptoError> {
        let version = parse_kek_id(id).ok_or_else(|| CryptoError::UnknownKek(id.to_owned()))?;
        let mut loaded = self.loaded.lock().map_err(|_| CryptoError::Provider("key file lock poisoned".into()))?;
        let mut now = read_file(&self.path)?;
        if now.keks.last().map(|k| k.version) == Some(version) {
            return Err(crate::provider::current_kek_refused());
        }
        let before = now.keks.len();
        now.keks.retain(|k| k.version != version);
        if now.keks.len() == before {
            return Err(CryptoError::UnknownKek(id.to_owned()));
        }
        // The file is rewritten whole and renamed over the old one: the retired key is gone
        // from the file (copies of the file kept elsewhere are the operator's to destroy).
        write_file(&self.path, &now.keks, false)?;
        *loaded = read_file(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::self_test;

    #[tokio::test]
    async fn creates_0600_file_rotates_and_unwraps_old_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("kek.json");
        let p = FileKeyProvider::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        self_test(&p).await.unwrap();
        let ctx = WrapContext { org: uuid::Uuid::from_u128(1), scope: uuid::Uuid::from_u128(2), version: 1 };
        let key = crate::aead::new_key_bytes();
        let w1 = p.wrap(&ctx, &key).await.unwrap();
        assert_eq!(w1.kek_id, "file:v1");
        // Another process rotates; this one notices the file changed.
        let other = FileKeyProvider::open_or_create(&path).unwrap();
        assert_eq!(other.rotate().await.unwrap(), "file:v2");
        assert_eq!(p.current_kek().await.unwrap(), "file:v2");
        let w2 = p.wrap(&ctx, &key).await.unwrap();
        assert_eq!(w2.kek_id, "file:v2");
        assert_eq!(p.unwrap(&ctx, &w1).await.unwrap().as_ref(), key.as_ref());
        assert_eq!(other.unwrap(&ctx, &w2).await.unwrap().as_ref(), key.as_ref());
        let inv = p.keks().await.unwrap();
        assert_eq!(inv.iter().map(|k| (k.kek_id.as_str(), k.current)).collect::<Vec<_>>(), [("file:v1", false), ("file:v2", true)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(FORMAT));
        // Retiring: never the current version; an old one, after which its keys are gone.
        assert!(p.destroy("file:v2").await.unwrap_err().to_string().contains("current KEK"));
        p.destroy("file:v1").await.unwrap();
        assert!(matches!(other.unwrap(&ctx, &w1).await, Err(CryptoError::UnknownKek(_))));
        assert_eq!(p.unwrap(&ctx, &w2).await.unwrap().as_ref(), key.as_ref());
        assert!(matches!(p.destroy("file:v1").await, Err(CryptoError::UnknownKek(_))));
        assert_eq!(p.keks().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = FileKeyProvider::open_or_create(&path).err().unwrap().to_string();
        assert!(err.contains("is not valid"), "{err}");
    }
}
