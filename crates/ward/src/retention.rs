//! `ward audit archive` and `ward audit verify-segment`: audit retention from the command line
//! (the work itself is `ward_server::audit_archive` and `ward_audit::segment`).

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ward_audit::{SegmentSummary, Verifier};
use ward_server::Config;
use ward_server::audit_archive::{self, format_ms, horizon_ms};
use ward_server::provision::operator_meta;

/// The variable that moves the archiving clock, honoured only by debug builds (the test
/// suite's): nothing is six years old in a test, and a release build must never be talked
/// into archiving entries younger than the retention period.
const TEST_NOW_VAR: &str = "WARD_TEST_NOW_MS";

/// The time archiving takes as now, in Unix ms.
fn now_ms() -> anyhow::Result<i64> {
    if cfg!(debug_assertions)
        && let Ok(v) = std::env::var(TEST_NOW_VAR)
    {
        return v.parse().map_err(|_| anyhow::anyhow!("{TEST_NOW_VAR} must be Unix milliseconds"));
    }
    Ok(ward_store::now_ms())
}

/// A progress bar on stderr over `total` entries, drawn only when stderr is a terminal.
fn bar(what: &'static str, total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} entries ({per_sec}, {eta} left)") {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

/// Archives every segment due: entries older than the retention horizon (moved earlier by
/// `before`, never later) that a signed checkpoint covers.
pub(crate) async fn archive(config: &Config, before: Option<&str>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let retention = horizon_ms(now_ms()?, config.audit.retention_days);
    let horizon = match before {
        Some(s) => {
            let asked = audit_archive::parse_time_ms(s).context("--before")?;
            if asked > retention {
                anyhow::bail!(
                    "--before {s} is after the retention horizon {} (audit.retention_days = {}); entries are kept at least that long",
                    format_ms(retention),
                    config.audit.retention_days
                );
            }
            asked
        }
        None => retention,
    };
    let dir = dir.unwrap_or_else(|| config.audit.archive_dir(&config.data_dir));
    let store = ward_server::open_store(config).await?;
    let log = ward_server::audit_log::AuditLog::open(config, store.clone())?;
    let progress = bar("archiving", 0);
    let mut report = |done: u64, total: u64| {
        progress.set_length(total);
        progress.set_position(done);
    };
    let done = audit_archive::archive_due(&store, &log.verifier(), &dir, horizon, operator_meta, &mut report).await;
    progress.finish_and_clear();
    let done = done?;
    if done.is_empty() {
        println!("nothing to archive: no checkpointed entries before {}", format_ms(horizon));
    }
    for a in done {
        println!("archived entries {}..{} (checkpoint {}) to {} sha256 {}", a.start, a.end, a.tree_size, a.path.display(), a.sha256);
    }
    Ok(())
}

/// Verifies a segment file offline against the log's verifier key.
pub(crate) fn verify_segment(path: &Path, vkey: &Verifier) -> anyhow::Result<SegmentSummary> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let progress = bar("verifying", 0);
    let result = ward_audit::segment::verify_segment(BufReader::new(file), vkey, |done, total| {
        progress.set_length(total);
        progress.set_position(done);
    });
    progress.finish_and_clear();
    result.map_err(|e| anyhow::anyhow!("segment {} does not verify: {e}", path.display()))
}
