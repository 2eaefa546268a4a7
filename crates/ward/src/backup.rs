//! `ward backup`, `ward backup verify` and `ward restore`: encrypted, integrity-checked
//! backups of the database and the data directory's Ward files (see docs/backup.md).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use ward_crypto::Keyring;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_server::Config;
use ward_server::config::KeyProviderKind;
use ward_server::provision::operator_meta;
use ward_store::backup::{BackupFiles, BackupSummary, RestoreTarget, restore_backup, verify_backup};
use ward_store::{Backend, StoreOptions};

/// The data directory's Ward files a backup carries (relative to it): the audit log's
/// checkpoints, signing key and archive segments, and the attachment store. Never `keys/`.
const DATA_DIRS: [&str; 2] = ["audit", "attachments"];

/// The key provider the configuration names, without ever creating a key file: a backup
/// opened with a fresh KEK could only fail later, and less clearly.
async fn existing_provider(config: &Config) -> anyhow::Result<Arc<dyn ward_crypto::KeyProvider>> {
    if config.keys.provider == KeyProviderKind::File {
        let path = config.keys.key_file(&config.data_dir);
        if !path.exists() {
            bail!(
                "no key file at {}: copy the key directory of the installation that made the backup there (or set keys.file); a backup never carries its KEK",
                path.display()
            );
        }
    }
    ward_server::keys::provider(config).await
}

fn bytes_count(total: u64) -> indicatif::ProgressBar {
    crate::progress::bytes("reading the backup", total)
}

/// Writes a backup of the configured store and data directory to `out` (through
/// `<out>.partial`, renamed once complete). The server may keep running.
pub(crate) async fn backup(config: &Config, out: &Path) -> anyhow::Result<BackupSummary> {
    if out.exists() {
        bail!("{} already exists: choose a new file name", out.display());
    }
    existing_provider(config).await?;
    let store = ward_server::open_store(config).await?;
    let started = Instant::now();
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let scratch = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let file = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&partial).with_context(|| format!("cannot create {}", partial.display()))?
    };
    let estimate = match store.backend() {
        Backend::Sqlite => std::fs::metadata(config.data_dir.join("ward.db")).map_or(0, |m| m.len()),
        Backend::Postgres => 0,
    };
    let bar = crate::progress::bytes("backing up", estimate);
    let files = BackupFiles { data_dir: config.data_dir.clone(), dirs: DATA_DIRS.iter().map(PathBuf::from).collect() };
    let result = {
        let bar = bar.clone();
        store.write_backup(BufWriter::with_capacity(1 << 20, file), &files, &scratch, &move |n| bar.inc(n)).await
    };
    bar.finish_and_clear();
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    File::open(&partial).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    let event = AuditEvent::new(AuditAction::BackupCreate, Outcome::Success)
        .detail("backup", DetailValue::Id(summary.header.backup_id))
        .detail("backend", DetailValue::Code(if store.backend() == Backend::Sqlite { "sqlite" } else { "postgres" }))
        .detail("entries", DetailValue::Int(summary.entries as i64))
        .detail("files", DetailValue::Int(summary.files as i64))
        .detail("bytes", DetailValue::Int(summary.bytes as i64))
        .detail("messages", DetailValue::Int(summary.rows("messages") as i64))
        .detail("conversations", DetailValue::Int(summary.rows("conversations") as i64))
        .detail("audit_events", DetailValue::Int(summary.rows("audit_events") as i64))
        .detail("ms", DetailValue::Int(started.elapsed().as_millis() as i64));
    store.record(event, operator_meta()).await?;
    Ok(summary)
}

/// Decrypts a backup and checks every digest, restoring nothing.
pub(crate) async fn verify(config: &Config, from: &Path) -> anyhow::Result<BackupSummary> {
    let file = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let len = file.metadata().map_or(0, |m| m.len());
    let provider = existing_provider(config).await?;
    let bar = bytes_count(len);
    let progress = {
        let bar = bar.clone();
        Box::new(move |n| bar.inc(n))
    };
    let result = verify_backup(BufReader::with_capacity(1 << 20, file), provider.as_ref(), Some(progress)).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Rebuilds `data_dir` (and the database `database_url` names, by default SQLite in it) from
/// a backup; records `backup.restore` in the restored audit log.
pub(crate) async fn restore(config: &Config, from: &Path, data_dir: &Path, database_url: Option<String>) -> anyhow::Result<BackupSummary> {
    let file = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let len = file.metadata().map_or(0, |m| m.len());
    let mut config = config.clone();
    config.data_dir = data_dir.to_path_buf();
    config.database_url = database_url;
    let provider = existing_provider(&config).await?;
    let started = Instant::now();
    let mut options = StoreOptions::new(config.database_url(), Arc::new(Keyring::new(provider, config.keys.cache_keys)));
    options.read_connections = config.limits.db_read_connections;
    options.data_key_rotation_days = config.keys.data_key_rotation_days;
    let bar = bytes_count(len);
    let progress = {
        let bar = bar.clone();
        Box::new(move |n| bar.inc(n))
    };
    let target = RestoreTarget { options, data_dir: data_dir.to_path_buf() };
    let result = restore_backup(BufReader::with_capacity(1 << 20, file), target, Some(progress)).await;
    bar.finish_and_clear();
    let (store, summary) = result?;
    let event = AuditEvent::new(AuditAction::BackupRestore, Outcome::Success)
        .detail("backup", DetailValue::Id(summary.header.backup_id))
        .detail("entries", DetailValue::Int(summary.entries as i64))
        .detail("files", DetailValue::Int(summary.files as i64))
        .detail("messages", DetailValue::Int(summary.rows("messages") as i64))
        .detail("ms", DetailValue::Int(started.elapsed().as_millis() as i64));
    store.record(event, operator_meta()).await?;
    Ok(summary)
}

/// One line describing a backup's contents.
pub(crate) fn describe(s: &BackupSummary) -> String {
    format!(
        "backup {} of {} ({} database, migration {}): {} messages, {} conversations, {} audit events, {} data-directory files, {} bytes",
        s.header.backup_id,
        ward_server::audit_archive::format_ms(s.header.created_at),
        s.header.backend,
        s.header.migration_version,
        s.rows("messages"),
        s.rows("conversations"),
        s.rows("audit_events"),
        s.files,
        s.bytes
    )
}
