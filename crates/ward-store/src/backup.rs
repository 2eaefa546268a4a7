//! Online, consistent, encrypted backups of the database and of the data directory's Ward
//! files, and their restore.
//!
//! A backup file is a header followed by one sealed stream (see docs/backup.md):
//!
//! ```text
//! "WARD-BACKUP\0" (12 bytes) ‖ format version (u16, big-endian, 1) ‖ header length (u32, big-endian)
//! ‖ header (JSON: backup id, creation time, backend, migration version, key provider, KEK id,
//!   the wrapped backup key)
//! ‖ sealed stream (ward_crypto::stream, 64 KiB chunks, context = every header byte above)
//! ```
//!
//! The backup key is a fresh 32-byte key wrapped by the configured key provider with the
//! wrapping context `{org: nil, scope: backup id, version: 1}`. The KEK never goes into a
//! backup: restoring needs the same key provider. Since the whole header is the stream's
//! context, an altered header fails to open like an altered chunk.
//!
//! The stream holds a tar archive: the database (`db/sqlite/ward.db`, a `VACUUM INTO`
//! snapshot; or `db/postgres/<table>/<part>`, binary `COPY` output of one REPEATABLE READ
//! transaction, in parts of at most 8 MiB), then the data directory's Ward files
//! (`files/<path relative to the data directory>`), then `manifest.json` with the size and
//! SHA-256 of every other entry and the row count of every table.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnectOptions;
use uuid::Uuid;
use ward_crypto::stream::{Decryptor, Encryptor, SEALED_CHUNK_LEN};
use ward_crypto::{KeyProvider, WrapContext, WrappedKey};

use crate::{Backend, ReadPool, Store, StoreError, StoreOptions};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 12] = b"WARD-BACKUP\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The largest header accepted.
const MAX_HEADER: usize = 64 * 1024;
/// The largest database part: PostgreSQL `COPY` output is cut into entries of this size.
const PART_LEN: usize = 8 * 1024 * 1024;
/// The tar entry of the SQLite snapshot.
const SQLITE_ENTRY: &str = "db/sqlite/ward.db";
/// The last tar entry.
const MANIFEST_ENTRY: &str = "manifest.json";

/// Why a backup, verification or restore failed. Messages name files and tables, never content.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// The file is not a Ward backup, or one of a format this build does not read.
    #[error("not a Ward backup: {0}")]
    NotABackup(String),
    /// The key provider cannot unwrap the backup key.
    #[error(
        "cannot unwrap the backup key with the {provider} key provider ({detail}): restore needs the key provider that made the backup, with the KEK {kek_id}"
    )]
    Key {
        /// The provider in use.
        provider: &'static str,
        /// The KEK the backup names.
        kek_id: String,
        /// The provider's error.
        detail: String,
    },
    /// The sealed stream or the manifest does not check out.
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    /// The backup does not fit this build or this target.
    #[error("{0}")]
    Incompatible(String),
    /// The restore target is not empty or not usable.
    #[error("{0}")]
    Target(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Store(e.into())
    }
}

impl From<sqlx::migrate::MigrateError> for BackupError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        BackupError::Store(e.into())
    }
}

fn io_at(what: &str, path: &Path, e: &io::Error) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

/// The clear part of a backup file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupHeader {
    /// A fresh id per backup; the stream's and the key wrapping's context.
    pub backup_id: Uuid,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The latest database migration applied when the backup was taken.
    pub migration_version: i64,
    /// The key provider kind that wrapped the backup key (`file`, `pkcs11`, `kms`).
    pub key_provider: String,
    /// The KEK version that wrapped it.
    pub kek_id: String,
    /// The wrapped backup key (hex).
    pub wrapped_key: String,
}

impl BackupHeader {
    fn wrap_context(&self) -> WrapContext {
        WrapContext { org: Uuid::nil(), scope: self.backup_id, version: 1 }
    }

    fn encode(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(18 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// Reads the header from the start of a backup file; returns it with its raw bytes (the
    /// stream's context).
    pub fn read(r: &mut impl Read) -> Result<(BackupHeader, Vec<u8>), BackupError> {
        let mut fixed = [0u8; 18];
        r.read_exact(&mut fixed).map_err(|_| BackupError::NotABackup("the file is too short".into()))?;
        if &fixed[..12] != MAGIC {
            return Err(BackupError::NotABackup("the file does not start with the Ward backup magic".into()));
        }
        let version = u16::from_be_bytes([fixed[12], fixed[13]]);
        if version != FORMAT_VERSION {
            return Err(BackupError::NotABackup(format!("format version {version}; this build reads version {FORMAT_VERSION}")));
        }
        let len = u32::from_be_bytes([fixed[14], fixed[15], fixed[16], fixed[17]]) as usize;
        if len > MAX_HEADER {
            return Err(BackupError::NotABackup("the header is too long".into()));
        }
        let mut json = vec![0u8; len];
        r.read_exact(&mut json).map_err(|_| BackupError::NotABackup("the header is cut short".into()))?;
        let header: BackupHeader = serde_json::from_slice(&json)
            .map_err(|_| BackupError::NotABackup("the header is not valid JSON of the expected shape".into()))?;
        let mut raw = fixed.to_vec();
        raw.extend_from_slice(&json);
        Ok((header, raw))
    }

    async fn unwrap_key(&self, provider: &dyn KeyProvider) -> Result<ward_crypto::provider::KeyBytes, BackupError> {
        let key_err = |detail: String| BackupError::Key { provider: provider.kind(), kek_id: self.kek_id.clone(), detail };
        let blob = from_hex(&self.wrapped_key).ok_or_else(|| BackupError::NotABackup("the wrapped key is not hex".into()))?;
        let wrapped = WrappedKey { kek_id: self.kek_id.clone(), blob };
        provider.unwrap(&self.wrap_context(), &wrapped).await.map_err(|e| key_err(e.to_string()))
    }
}

/// One entry of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The tar path.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the content (hex).
    pub sha256: String,
}

/// The last entry of the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The header's backup id, repeated under the seal.
    pub backup_id: Uuid,
    /// The header's migration version, repeated under the seal.
    pub migration_version: i64,
    /// Rows per table at the snapshot (tables in restore order for PostgreSQL).
    pub tables: Vec<TableRows>,
    /// Every other entry, in archive order.
    pub entries: Vec<ManifestEntry>,
}

/// A table and its row count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableRows {
    /// The table name.
    pub table: String,
    /// Rows in the snapshot.
    pub rows: u64,
}

/// What a backup, a verification or a restore saw.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The backup's header.
    pub header: BackupHeader,
    /// Rows per table.
    pub tables: Vec<TableRows>,
    /// Archive entries besides the manifest (database parts and files).
    pub entries: u64,
    /// Data-directory files among them.
    pub files: u64,
    /// Plaintext bytes of all entries.
    pub bytes: u64,
}

impl BackupSummary {
    /// Rows of one table (0 if absent).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|t| t.table == table).map_or(0, |t| t.rows)
    }
}

/// Called with the number of bytes just processed (for a progress bar).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn plain_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The newest migration this build carries for a backend.
pub fn latest_migration(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").iter().map(|m| m.version).max().unwrap_or(0),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres").iter().map(|m| m.version).max().unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Seals everything written to it into the backup stream.
struct SealingWriter<W: Write> {
    enc: Encryptor,
    out: W,
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sealed = self.enc.update(buf);
        self.out.write_all(&sealed)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> SealingWriter<W> {
    fn finish(self) -> io::Result<W> {
        let SealingWriter { enc, mut out } = self;
        out.write_all(&enc.finish())?;
        out.flush()?;
        Ok(out)
    }
}

/// Reads `inner` while hashing and counting what passes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Adds entries to the tar stream and remembers their digests.
struct ArchiveWriter<'p, W: Write> {
    tar: tar::Builder<SealingWriter<W>>,
    entries: Vec<ManifestEntry>,
    files: u64,
    bytes: u64,
    progress: Progress<'p>,
}

fn entry_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    h
}

impl<W: Write> ArchiveWriter<'_, W> {
    fn add_bytes(&mut self, path: &str, data: &[u8]) -> Result<(), BackupError> {
        let mut h = entry_header(data.len() as u64);
        self.tar.append_data(&mut h, path, data).map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        self.entries.push(ManifestEntry { path: path.to_owned(), size: data.len() as u64, sha256: to_hex(&Sha256::digest(data)) });
        self.bytes += data.len() as u64;
        (self.progress)(data.len() as u64);
        Ok(())
    }

    /// Adds a file of the given size; fails if it changes size while being read.
    fn add_file(&mut self, path: &str, file: &Path) -> Result<(), BackupError> {
        let f = std::fs::File::open(file).map_err(|e| io_at("cannot read", file, &e))?;
        let size = f.metadata().map_err(|e| io_at("cannot read", file, &e))?.len();
        let mut reader = Hashing { inner: f.take(size), hash: Sha256::new(), len: 0 };
        let mut h = entry_header(size);
        self.tar.append_data(&mut h, path, &mut reader).map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        if reader.len != size {
            return Err(BackupError::Io(format!("{} shrank while it was being backed up; run the backup again", file.display())));
        }
        self.entries.push(ManifestEntry { path: path.to_owned(), size, sha256: to_hex(&reader.hash.finalize()) });
        self.bytes += size;
        (self.progress)(size);
        Ok(())
    }
}

/// Every regular file under `dir` (sorted, recursively), as paths relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at("cannot list", dir, &e)),
    };
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io_at("cannot read", &p, &e))?;
        if meta.is_dir() {
            walk(base, &p, out)?;
        } else if meta.is_file()
            && let Ok(rel) = p.strip_prefix(base)
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// What to back up besides the database.
#[derive(Debug, Clone)]
pub struct BackupFiles {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Directories under it whose every file goes into the backup (such as `audit`,
    /// `attachments`); missing ones are skipped. Never the key directory.
    pub dirs: Vec<PathBuf>,
}

impl Store {
    /// Writes a backup of the database (an online, consistent snapshot) and of `files` to
    /// `out`, sealed under a fresh key wrapped by the store's key provider. `scratch` is a
    /// directory for the SQLite snapshot (on the same disk as the output, ideally); the
    /// snapshot is removed afterwards. Memory use stays bounded whatever the database size.
    pub async fn write_backup<W: Write + Send>(
        &self,
        out: W,
        files: &BackupFiles,
        scratch: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupSummary, BackupError> {
        let migration_version = self.migration_version().await?;
        let provider = self.keyring().provider().clone();
        let backup_id = Uuid::new_v4();
        let key = ward_crypto::aead::new_key_bytes();
        let mut header = BackupHeader {
            backup_id,
            created_at: crate::now_ms(),
            backend: backend_name(self.backend()).into(),
            migration_version,
            key_provider: provider.kind().into(),
            kek_id: String::new(),
            wrapped_key: String::new(),
        };
        let wrapped = provider.wrap(&header.wrap_context(), &key).await.map_err(|e| BackupError::Key {
            provider: provider.kind(),
            kek_id: "(current)".into(),
            detail: e.to_string(),
        })?;
        header.kek_id = wrapped.kek_id;
        header.wrapped_key = to_hex(&wrapped.blob);
        let raw = header.encode();
        let mut out = out;
        out.write_all(&raw).map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        let enc = Encryptor::new(key.as_ref(), &raw).map_err(|e| BackupError::Io(e.to_string()))?;
        let mut tar = tar::Builder::new(SealingWriter { enc, out });
        tar.mode(tar::HeaderMode::Deterministic);
        let mut w = ArchiveWriter { tar, entries: Vec::new(), files: 0, bytes: 0, progress };

        let tables = match &self.inner.read {
            ReadPool::Sqlite(pool) => snapshot_sqlite(pool, scratch, &mut w).await?,
            ReadPool::Pg(pool) => snapshot_pg(pool, &mut w).await?,
        };
        // Files after the database: every row of the snapshot finds its file.
        for dir in &files.dirs {
            let root = files.data_dir.join(dir);
            let mut found = Vec::new();
            walk(&files.data_dir, &root, &mut found)?;
            for rel in found {
                let name = rel.to_str().ok_or_else(|| BackupError::Io(format!("{} is not a UTF-8 path", rel.display())))?;
                let name = format!("files/{}", name.replace('\\', "/"));
                w.add_file(&name, &files.data_dir.join(&rel))?;
                w.files += 1;
            }
        }
        let manifest = Manifest { backup_id, migration_version, tables: tables.clone(), entries: w.entries.clone() };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io(e.to_string()))?;
        let mut h = entry_header(json.len() as u64);
        w.tar.append_data(&mut h, MANIFEST_ENTRY, json.as_slice()).map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        let sealing = w.tar.into_inner().map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        sealing.finish().map_err(|e| BackupError::Io(format!("writing the backup: {e}")))?;
        Ok(BackupSummary { header, tables, entries: w.entries.len() as u64, files: w.files, bytes: w.bytes })
    }

    /// The latest applied migration.
    pub async fn migration_version(&self) -> crate::Result<i64> {
        let v = match &self.inner.read {
            ReadPool::Sqlite(p) => {
                sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(p).await?
            }
            ReadPool::Pg(p) => {
                sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(p).await?
            }
        };
        Ok(v.unwrap_or(0))
    }
}

async fn sqlite_counts(conn: &mut sqlx::SqliteConnection) -> Result<Vec<TableRows>, BackupError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for table in names {
        if !plain_identifier(&table) {
            return Err(BackupError::Incompatible(format!("unexpected table name {table:?}")));
        }
        // Checked above to be a plain identifier.
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\""));
        let rows: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        out.push(TableRows { table, rows: rows as u64 });
    }
    Ok(out)
}

async fn snapshot_sqlite<W: Write>(
    pool: &sqlx::SqlitePool,
    scratch: &Path,
    w: &mut ArchiveWriter<'_, W>,
) -> Result<Vec<TableRows>, BackupError> {
    let dir = tempfile::Builder::new()
        .prefix(".ward-backup-")
        .tempdir_in(scratch)
        .map_err(|e| io_at("cannot create a scratch directory in", scratch, &e))?;
    let snap = dir.path().join("ward.db");
    let snap_str = snap.to_str().ok_or_else(|| BackupError::Io("the scratch directory is not a UTF-8 path".into()))?;
    // VACUUM INTO reads in one transaction: a consistent snapshot while writers go on.
    sqlx::query("VACUUM INTO $1").bind(snap_str).execute(pool).await?;
    let mut conn = sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&snap).read_only(true)).await?;
    let tables = sqlite_counts(&mut conn).await?;
    conn.close().await?;
    w.add_file(SQLITE_ENTRY, &snap)?;
    Ok(tables)
}

/// The schema's tables (without the migrations table), parents before children.
async fn pg_tables(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, BackupError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace \
         AND c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations' ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.relname::text FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_class p ON p.oid = k.confrelid WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await?;
    for n in &names {
        if !plain_identifier(n) {
            return Err(BackupError::Incompatible(format!("unexpected table name {n:?}")));
        }
    }
    // Depth-first order: every table after the tables it references.
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (child, parent) in &edges {
        if child != parent {
            parents.entry(child.as_str()).or_default().insert(parent.as_str());
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    fn visit<'a>(
        t: &'a str,
        parents: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        done: &mut BTreeSet<&'a str>,
        order: &mut Vec<String>,
        depth: usize,
    ) {
        if done.contains(t) || depth > 256 {
            return;
        }
        if let Some(ps) = parents.get(t) {
            for p in ps {
                visit(p, parents, done, order, depth + 1);
            }
        }
        if done.insert(t) {
            order.push(t.to_owned());
        }
    }
    for n in &names {
        visit(n, &parents, &mut done, &mut order, 0);
    }
    order.retain(|t| names.contains(t));
    Ok(order)
}

async fn snapshot_pg<W: Write>(pool: &sqlx::PgPool, w: &mut ArchiveWriter<'_, W>) -> Result<Vec<TableRows>, BackupError> {
    let mut conn = pool.acquire().await?;
    // One snapshot for every table; read-only, so it never blocks or aborts writers.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *conn).await?;
    let result = async {
        let tables = pg_tables(&mut conn).await?;
        let mut counts = Vec::new();
        for table in &tables {
            let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\""));
            let rows: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
            counts.push(TableRows { table: table.clone(), rows: rows as u64 });
            let mut stream = conn.copy_out_raw(&format!("COPY \"{table}\" TO STDOUT (FORMAT binary)")).await?;
            let mut part = Vec::with_capacity(PART_LEN.min(1 << 20));
            let mut n = 0u32;
            while let Some(bytes) = stream.try_next().await? {
                part.extend_from_slice(&bytes);
                if part.len() >= PART_LEN {
                    n += 1;
                    w.add_bytes(&format!("db/postgres/{table}/{n:06}"), &part)?;
                    part.clear();
                }
            }
            if !part.is_empty() || n == 0 {
                n += 1;
                w.add_bytes(&format!("db/postgres/{table}/{n:06}"), &part)?;
            }
        }
        Ok::<_, BackupError>(counts)
    }
    .await;
    let end = sqlx::query("COMMIT").execute(&mut *conn).await;
    let counts = result?;
    end?;
    Ok(counts)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Opens the sealed stream as it is read; remembers whether authentication failed.
struct OpeningReader<R: Read> {
    inner: R,
    dec: Option<Decryptor>,
    buf: Vec<u8>,
    pos: usize,
    failed: Arc<AtomicBool>,
    progress: Option<Box<dyn Fn(u64) + Sync + 'static>>,
}

impl<R: Read> OpeningReader<R> {
    fn fail(&self) -> io::Error {
        self.failed.store(true, Ordering::Relaxed);
        io::Error::new(io::ErrorKind::InvalidData, "the sealed stream fails authentication")
    }
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some(dec) = self.dec.as_mut() else { return Ok(0) };
            let mut sealed = vec![0u8; SEALED_CHUNK_LEN];
            let mut got = 0;
            while got < sealed.len() {
                match self.inner.read(&mut sealed[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(p) = &self.progress {
                p(got as u64);
            }
            self.pos = 0;
            if got == 0 {
                let dec = self.dec.take().ok_or_else(|| self.fail())?;
                self.buf = dec.finish().map_err(|_| self.fail())?;
                if self.buf.is_empty() {
                    return Ok(0);
                }
            } else {
                self.buf = dec.update(&sealed[..got]).map_err(|_| self.fail())?;
            }
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Where an archive entry goes.
enum EntryKind {
    Sqlite,
    PgPart { table: String },
    File(PathBuf),
    Manifest,
}

fn pg_table_of(path: &str) -> Option<&str> {
    path.strip_prefix("db/postgres/").and_then(|r| r.split_once('/')).map(|(t, _)| t)
}

fn classify(path: &str) -> Result<EntryKind, BackupError> {
    if path == SQLITE_ENTRY {
        return Ok(EntryKind::Sqlite);
    }
    if path == MANIFEST_ENTRY {
        return Ok(EntryKind::Manifest);
    }
    if let Some(rest) = path.strip_prefix("db/postgres/")
        && let Some((table, part)) = rest.split_once('/')
        && plain_identifier(table)
        && !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(EntryKind::PgPart { table: table.to_owned() });
    }
    if let Some(rel) = path.strip_prefix("files/") {
        let p = Path::new(rel);
        let safe = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
        // The key directory never goes into a backup, and never comes out of one.
        let keys = p.components().next().is_some_and(|c| c.as_os_str() == "keys");
        if safe && !keys {
            return Ok(EntryKind::File(p.to_path_buf()));
        }
    }
    Err(BackupError::Damaged(format!("unexpected entry {path:?}")))
}

/// Checks entries against the manifest as they pass.
#[derive(Default)]
struct Seen {
    entries: Vec<ManifestEntry>,
    files: u64,
    bytes: u64,
    manifest: Option<Manifest>,
}

impl Seen {
    fn check(&self, header: &BackupHeader) -> Result<&Manifest, BackupError> {
        let m = self.manifest.as_ref().ok_or_else(|| BackupError::Damaged("the manifest is missing".into()))?;
        if m.backup_id != header.backup_id || m.migration_version != header.migration_version {
            return Err(BackupError::Damaged("the manifest does not match the header".into()));
        }
        if m.entries.len() != self.entries.len() {
            return Err(BackupError::Damaged(format!(
                "the manifest lists {} entries, the archive holds {}",
                m.entries.len(),
                self.entries.len()
            )));
        }
        for (want, got) in m.entries.iter().zip(&self.entries) {
            if want != got {
                return Err(BackupError::Damaged(format!("entry {} does not match its manifest digest", got.path)));
            }
        }
        Ok(m)
    }
}

fn entry_path<R: Read>(e: &tar::Entry<'_, R>) -> Result<String, BackupError> {
    let p = e.path().map_err(|_| BackupError::Damaged("an entry has an unreadable path".into()))?;
    p.to_str().map(str::to_owned).ok_or_else(|| BackupError::Damaged("an entry has a non-UTF-8 path".into()))
}

/// Maps a read failure to the clearest error: authentication failures mean damage.
fn read_error(failed: &AtomicBool, e: &io::Error) -> BackupError {
    if failed.load(Ordering::Relaxed) {
        BackupError::Damaged("the sealed stream fails authentication (altered, truncated or reordered)".into())
    } else {
        BackupError::Damaged(format!("the archive cannot be read: {e}"))
    }
}

/// The SHA-256 and size of an entry, as its bytes go by.
#[derive(Default)]
struct EntryDigest {
    hash: Sha256,
    size: u64,
}

impl EntryDigest {
    fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn finish(self, path: &str) -> ManifestEntry {
        ManifestEntry { path: path.to_owned(), size: self.size, sha256: to_hex(&self.hash.finalize()) }
    }
}

/// Reads the next piece of a tar entry into `buf`; `None` at the entry's end.
fn read_piece<R: Read>(entry: &mut tar::Entry<'_, R>, buf: &mut [u8], failed: &AtomicBool) -> Result<Option<usize>, BackupError> {
    loop {
        match entry.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(failed, &e)),
        }
    }
}

/// Copies an entry to `sink` in pieces, hashing it; returns its manifest entry.
fn copy_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    failed: &AtomicBool,
    mut sink: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<ManifestEntry, BackupError> {
    let mut digest = EntryDigest::default();
    let mut buf = vec![0u8; 1 << 20];
    while let Some(n) = read_piece(entry, &mut buf, failed)? {
        digest.update(&buf[..n]);
        sink(&buf[..n])?;
    }
    Ok(digest.finish(path))
}

fn open_archive<R: Read>(
    input: R,
    key: &[u8],
    raw: &[u8],
    progress: Option<Box<dyn Fn(u64) + Sync + 'static>>,
) -> Result<(OpeningReader<R>, Arc<AtomicBool>), BackupError> {
    let dec = Decryptor::new(key, raw).map_err(|e| BackupError::NotABackup(e.to_string()))?;
    let failed = Arc::new(AtomicBool::new(false));
    Ok((OpeningReader { inner: input, dec: Some(dec), buf: Vec::new(), pos: 0, failed: failed.clone(), progress }, failed))
}

/// Reads the stream to its end after the archive's end marker, so its last chunk is opened and
/// a stream cut or altered after the marker fails too.
fn drain<R: Read>(reader: &mut OpeningReader<R>, failed: &AtomicBool) -> Result<(), BackupError> {
    io::copy(reader, &mut io::sink()).map(|_| ()).map_err(|e| read_error(failed, &e))
}

/// Decrypts a whole backup and checks every entry against the manifest, restoring nothing.
pub async fn verify_backup<R: Read>(
    mut input: R,
    provider: &dyn KeyProvider,
    progress: Option<Box<dyn Fn(u64) + Sync + 'static>>,
) -> Result<BackupSummary, BackupError> {
    let (header, raw) = BackupHeader::read(&mut input)?;
    let key = header.unwrap_key(provider).await?;
    let (mut reader, failed) = open_archive(input, key.as_ref(), &raw, progress)?;
    let mut archive = tar::Archive::new(&mut reader);
    let mut seen = Seen::default();
    let entries = archive.entries().map_err(|e| read_error(&failed, &e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(&failed, &e))?;
        let path = entry_path(&entry)?;
        if seen.manifest.is_some() {
            return Err(BackupError::Damaged(format!("entry {path:?} after the manifest")));
        }
        let kind = classify(&path)?;
        if let EntryKind::Manifest = kind {
            let mut json = Vec::new();
            entry.read_to_end(&mut json).map_err(|e| read_error(&failed, &e))?;
            seen.manifest = Some(serde_json::from_slice(&json).map_err(|_| BackupError::Damaged("the manifest is not valid".into()))?);
            continue;
        }
        let m = copy_entry(&mut entry, &path, &failed, |_| Ok(()))?;
        if let EntryKind::File(_) = kind {
            seen.files += 1;
        }
        seen.bytes += m.size;
        seen.entries.push(m);
    }
    drain(&mut reader, &failed)?;
    let manifest = seen.check(&header)?;
    let summary =
        BackupSummary { tables: manifest.tables.clone(), header, entries: seen.entries.len() as u64, files: seen.files, bytes: seen.bytes };
    Ok(summary)
}

/// Where a restore goes.
pub struct RestoreTarget {
    /// The database to rebuild (an SQLite file that does not exist yet, or an empty
    /// PostgreSQL database or schema) and the keyring whose provider unwraps the backup.
    pub options: StoreOptions,
    /// The data directory to rebuild: missing, empty, or holding only the key directory
    /// `keys/`.
    pub data_dir: PathBuf,
}

fn check_data_dir(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|e| io_at("cannot list", dir, &e))?;
                if e.file_name() != "keys" {
                    return Err(BackupError::Target(format!(
                        "the data directory {} is not empty: restore into a new directory (it may hold only keys/)",
                        dir.display()
                    )));
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at("cannot list", dir, &e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io_at("cannot create", dir, &e))
}

fn create_private_file(path: &Path) -> Result<std::fs::File, BackupError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(|e| io_at("cannot create", path, &e))
}

/// Rebuilds a database and data directory from a backup, checking every digest and row count
/// before declaring success (a PostgreSQL restore commits only then; an SQLite file gets its
/// final name only then). Applies the migrations this build has beyond the backup's. Returns
/// the restored store, open.
pub async fn restore_backup<R: Read>(
    mut input: R,
    target: RestoreTarget,
    progress: Option<Box<dyn Fn(u64) + Sync + 'static>>,
) -> Result<(Store, BackupSummary), BackupError> {
    let (header, raw) = BackupHeader::read(&mut input)?;
    let url = target.options.url.clone();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(BackupError::Target("the database url must start with sqlite: or postgres:".into()));
    };
    if header.backend != backend_name(backend) {
        return Err(BackupError::Incompatible(format!(
            "this is a {} backup; it restores only into {} (the target is {})",
            header.backend,
            header.backend,
            backend_name(backend)
        )));
    }
    let latest = latest_migration(backend);
    if header.migration_version > latest {
        return Err(BackupError::Incompatible(format!(
            "the backup is at database migration {}, newer than this build's {latest}: restore it with a newer ward",
            header.migration_version
        )));
    }
    check_data_dir(&target.data_dir)?;
    let provider = target.options.keyring.provider().clone();
    let key = header.unwrap_key(provider.as_ref()).await?;
    let (mut reader, failed) = open_archive(input, key.as_ref(), &raw, progress)?;
    let mut archive = tar::Archive::new(&mut reader);
    create_private_dir(&target.data_dir)?;

    let mut seen = Seen::default();
    let entries = archive.entries().map_err(|e| read_error(&failed, &e))?;
    match backend {
        Backend::Sqlite => {
            let db_path = SqliteConnectOptions::from_str(&url).map_err(StoreError::from)?.get_filename().to_path_buf();
            if db_path.exists() {
                return Err(BackupError::Target(format!("{} already exists: restore into a new database", db_path.display())));
            }
            if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_private_dir(parent)?;
            }
            let staging = db_path.with_extension("db.restoring");
            let _ = std::fs::remove_file(&staging);
            let mut got_db = false;
            for entry in entries {
                let mut entry = entry.map_err(|e| read_error(&failed, &e))?;
                let path = entry_path(&entry)?;
                match restore_entry(&mut entry, &path, &target.data_dir, &failed, &mut seen)? {
                    Some(EntryKind::Sqlite) => {
                        if got_db {
                            return Err(BackupError::Damaged("two database snapshots".into()));
                        }
                        got_db = true;
                        let mut f = create_private_file(&staging)?;
                        let m =
                            copy_entry(&mut entry, &path, &failed, |b| f.write_all(b).map_err(|e| io_at("cannot write", &staging, &e)))?;
                        f.sync_all().map_err(|e| io_at("cannot write", &staging, &e))?;
                        seen.bytes += m.size;
                        seen.entries.push(m);
                    }
                    Some(EntryKind::PgPart { .. }) => return Err(BackupError::Damaged("PostgreSQL data in an SQLite backup".into())),
                    _ => {}
                }
            }
            drain(&mut reader, &failed)?;
            let manifest = seen.check(&header)?.clone();
            if !got_db {
                return Err(BackupError::Damaged("the database snapshot is missing".into()));
            }
            let mut conn = sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&staging).read_only(true)).await?;
            let counts = sqlite_counts(&mut conn).await?;
            conn.close().await?;
            compare_counts(&manifest.tables, &counts)?;
            std::fs::rename(&staging, &db_path).map_err(|e| io_at("cannot rename into", &db_path, &e))?;
            let store = Store::open(target.options).await?;
            let summary =
                BackupSummary { tables: manifest.tables, header, entries: seen.entries.len() as u64, files: seen.files, bytes: seen.bytes };
            Ok((store, summary))
        }
        Backend::Postgres => {
            let mut opts = target.options.clone();
            opts.migrate = false;
            let store = Store::open(opts).await?;
            let ReadPool::Pg(pool) = &store.inner.read else {
                return Err(BackupError::Target("the target is not PostgreSQL".into()));
            };
            let mut conn = pool.acquire().await?;
            let existing: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')",
            )
            .fetch_one(&mut *conn)
            .await?;
            if existing > 0 {
                return Err(BackupError::Target(
                    "the target PostgreSQL schema already has tables: restore into an empty database or schema".into(),
                ));
            }
            sqlx::migrate!("./migrations/postgres").run_to(header.migration_version, &mut *conn).await?;
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            // Migrations seed some rows (singletons, defaults); the backup holds their state.
            // Only tables holding rows are emptied (the audit tables refuse TRUNCATE and DELETE).
            for t in pg_tables(&mut conn).await? {
                // Names checked by pg_tables to be plain identifiers.
                let any: bool =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM \"{t}\")"))).fetch_one(&mut *conn).await?;
                if any {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM \"{t}\""))).execute(&mut *conn).await?;
                }
            }
            let loaded = async {
                let mut entries = entries.peekable();
                while let Some(entry) = entries.next() {
                    let mut entry = entry.map_err(|e| read_error(&failed, &e))?;
                    let path = entry_path(&entry)?;
                    match restore_entry(&mut entry, &path, &target.data_dir, &failed, &mut seen)? {
                        Some(EntryKind::PgPart { table }) => {
                            let mut copy = conn.copy_in_raw(&format!("COPY \"{table}\" FROM STDIN (FORMAT binary)")).await?;
                            // This part and every following part of the same table go into one COPY.
                            let mut current = Some((entry, path));
                            while let Some((mut e, p)) = current.take() {
                                let m = copy_pg_part(&mut e, &p, &failed, &mut copy).await?;
                                seen.bytes += m.size;
                                seen.entries.push(m);
                                drop(e);
                                let same = match entries.peek() {
                                    Some(Ok(next)) => entry_path(next).ok().is_some_and(|n| pg_table_of(&n) == Some(table.as_str())),
                                    _ => false,
                                };
                                if same && let Some(next) = entries.next() {
                                    let next = next.map_err(|e| read_error(&failed, &e))?;
                                    if next.header().entry_type() != tar::EntryType::Regular {
                                        return Err(BackupError::Damaged("a database part is not a regular file".into()));
                                    }
                                    let np = entry_path(&next)?;
                                    current = Some((next, np));
                                }
                            }
                            copy.finish().await?;
                        }
                        Some(EntryKind::Sqlite) => return Err(BackupError::Damaged("an SQLite snapshot in a PostgreSQL backup".into())),
                        _ => {}
                    }
                }
                Ok::<_, BackupError>(())
            }
            .await;
            let loaded = match loaded.and_then(|()| drain(&mut reader, &failed)) {
                Err(e) => Err(e),
                Ok(()) => {
                    async {
                        let manifest = seen.check(&header)?.clone();
                        let mut counts = Vec::new();
                        for t in &manifest.tables {
                            if !plain_identifier(&t.table) {
                                return Err(BackupError::Damaged(format!("unexpected table name {:?}", t.table)));
                            }
                            let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{}\"", t.table));
                            let rows: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
                            counts.push(TableRows { table: t.table.clone(), rows: rows as u64 });
                        }
                        compare_counts(&manifest.tables, &counts)?;
                        Ok::<_, BackupError>(manifest)
                    }
                    .await
                }
            };
            let manifest = match loaded {
                Ok(m) => m,
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            };
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            drop(conn);
            store.migrate().await?;
            let summary =
                BackupSummary { tables: manifest.tables, header, entries: seen.entries.len() as u64, files: seen.files, bytes: seen.bytes };
            Ok((store, summary))
        }
    }
}

async fn copy_pg_part<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    failed: &AtomicBool,
    copy: &mut sqlx::postgres::PgCopyIn<&mut sqlx::PgConnection>,
) -> Result<ManifestEntry, BackupError> {
    let mut digest = EntryDigest::default();
    let mut buf = vec![0u8; 1 << 20];
    while let Some(n) = read_piece(entry, &mut buf, failed)? {
        digest.update(&buf[..n]);
        copy.send(&buf[..n]).await?;
    }
    Ok(digest.finish(path))
}

/// Handles the entries both backends treat alike (files, the manifest); returns the kind of
/// a database entry for the caller.
fn restore_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    data_dir: &Path,
    failed: &AtomicBool,
    seen: &mut Seen,
) -> Result<Option<EntryKind>, BackupError> {
    if seen.manifest.is_some() {
        return Err(BackupError::Damaged(format!("entry {path:?} after the manifest")));
    }
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(BackupError::Damaged(format!("entry {path:?} is not a regular file")));
    }
    match classify(path)? {
        EntryKind::Manifest => {
            let mut json = Vec::new();
            entry.read_to_end(&mut json).map_err(|e| read_error(failed, &e))?;
            seen.manifest = Some(serde_json::from_slice(&json).map_err(|_| BackupError::Damaged("the manifest is not valid".into()))?);
            Ok(None)
        }
        EntryKind::File(rel) => {
            let dest = data_dir.join(&rel);
            if let Some(parent) = dest.parent() {
                create_private_dir(parent)?;
            }
            let mut f = create_private_file(&dest)?;
            let m = copy_entry(entry, path, failed, |b| f.write_all(b).map_err(|e| io_at("cannot write", &dest, &e)))?;
            f.sync_all().map_err(|e| io_at("cannot write", &dest, &e))?;
            seen.files += 1;
            seen.bytes += m.size;
            seen.entries.push(m);
            Ok(None)
        }
        other => Ok(Some(other)),
    }
}

fn compare_counts(want: &[TableRows], got: &[TableRows]) -> Result<(), BackupError> {
    for w in want {
        let g = got.iter().find(|g| g.table == w.table).map_or(0, |g| g.rows);
        if g != w.rows {
            return Err(BackupError::Damaged(format!("table {} has {g} rows after the restore; the backup recorded {}", w.table, w.rows)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&b)).unwrap(), b);
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }

    #[test]
    fn entry_paths_cannot_escape_the_data_directory() {
        assert!(classify("files/audit/checkpoints.log").is_ok());
        assert!(classify("files/../etc/passwd").is_err());
        assert!(classify("files//abs").is_ok() || classify("files//abs").is_err());
        assert!(classify("files/keys/kek.json").is_err());
        assert!(classify("db/postgres/messages/000001").is_ok());
        assert!(classify("db/postgres/Messages;drop/000001").is_err());
        assert!(classify("other").is_err());
    }
}
