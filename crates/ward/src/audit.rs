//! `ward audit export` and `ward audit verify`: the whole audit log as NDJSON, and its offline
//! verification against the log's public key (format in `ward_audit::verify`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use ward_audit::{ExportLine, Hash, LogVerifier, Summary, Verifier};
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_server::provision::operator_meta;
use ward_store::Store;

/// Rows read per query.
const PAGE: u64 = 10_000;

/// Writes every event (with the leaf hash the tree holds for it) and every checkpoint.
pub(crate) async fn export(store: &Store, out: &Path) -> anyhow::Result<(u64, u64)> {
    // The export is itself an audited action, and the first line it covers is its own record.
    store.record(AuditEvent::new(AuditAction::AuditExport, Outcome::Success), operator_meta()).await?;
    let size = store.audit_size().await?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let mut progress = Progress::new("exporting", size);
    // A pruned log starts with its base: where it starts, and the hashes of what was archived.
    let (mut from, base) = store.audit_base().await?;
    if from > 0 {
        line(&mut w, &ExportLine::Base { tree_size: from, hashes: base })?;
    }
    while from < size {
        let rows = store.audit_events(from as i64, PAGE.min(size - from) as i64).await?;
        if rows.is_empty() {
            break;
        }
        let integrated = store.integrated_leaf_hashes(from, rows.len() as u64).await?;
        let mut integrated = integrated.into_iter().peekable();
        for r in rows {
            let idx = r.idx as u64;
            let leaf_hash = match integrated.peek() {
                Some((i, h)) if *i == idx => {
                    let h = *h;
                    integrated.next();
                    Some(h)
                }
                _ => None,
            };
            line(&mut w, &ExportLine::Event { event: Box::new(r.leaf()), leaf_hash })?;
            from = idx + 1;
        }
        progress.set(from);
    }
    let mut checkpoints = 0;
    let mut next = 0;
    loop {
        let page = store.checkpoints(next, 1000).await?;
        let Some(last) = page.last() else { break };
        next = last.tree_size as u64 + 1;
        for cp in page {
            line(&mut w, &ExportLine::Checkpoint { tree_size: cp.tree_size as u64, note: cp.note })?;
            checkpoints += 1;
        }
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    progress.done();
    Ok((from, checkpoints))
}

fn line(w: &mut impl Write, l: &ExportLine) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *w, l)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// Reads a verifier key file (`<name>+<hex id>+<base64>`).
pub(crate) fn read_vkey(path: &Path) -> anyhow::Result<Verifier> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim().parse().map_err(|e| anyhow::anyhow!("{}: not a verifier key: {e}", path.display()))
}

/// Verifies an export file: checkpoints first (one pass), then the events in order.
pub(crate) fn verify_export(path: &Path, vkey: Verifier) -> anyhow::Result<Summary> {
    let open = || -> anyhow::Result<_> { Ok(BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)) };
    let mut v = LogVerifier::new(vkey);
    let mut events = 0u64;
    for (n, l) in open()?.lines().enumerate() {
        match parse(&l?, n)? {
            ExportLine::Checkpoint { tree_size, note } => v.add_checkpoint(tree_size, &note)?,
            ExportLine::Base { tree_size, hashes } => v.start_at(tree_size, hashes)?,
            ExportLine::Event { .. } => events += 1,
        }
    }
    let mut progress = Progress::new("verifying", events);
    let mut done = 0;
    for (n, l) in open()?.lines().enumerate() {
        if let ExportLine::Event { event, leaf_hash } = parse(&l?, n)? {
            v.push(&event, leaf_hash)?;
            done += 1;
            if done % 65_536 == 0 {
                progress.set(done);
            }
        }
    }
    progress.done();
    Ok(v.finish()?)
}

fn parse(l: &str, n: usize) -> anyhow::Result<ExportLine> {
    serde_json::from_str(l).map_err(|e| anyhow::anyhow!("export line {}: not an export record: {e}", n + 1))
}

/// Verifies the log in the database directly.
pub(crate) async fn verify_database(store: &Store, vkey: Verifier) -> anyhow::Result<Summary> {
    let mut v = LogVerifier::new(vkey);
    let mut next = 0;
    loop {
        let page = store.checkpoints(next, 1000).await?;
        let Some(last) = page.last() else { break };
        next = last.tree_size as u64 + 1;
        for cp in page {
            v.add_checkpoint(cp.tree_size as u64, &cp.note)?;
        }
    }
    let size = store.audit_size().await?;
    let mut progress = Progress::new("verifying", size);
    let (mut from, base) = store.audit_base().await?;
    if from > 0 {
        v.start_at(from, base)?;
    }
    loop {
        let rows = store.audit_events(from as i64, PAGE as i64).await?;
        if rows.is_empty() {
            break;
        }
        let integrated: std::collections::HashMap<u64, Hash> = store.integrated_leaf_hashes(from, PAGE).await?.into_iter().collect();
        for r in &rows {
            v.push(&r.leaf(), integrated.get(&(r.idx as u64)).copied())?;
        }
        // Continue after the last row read, so a gap shows as a sequence error, not a loop.
        from = rows.last().map_or(from, |r| r.idx as u64 + 1);
        progress.set(from);
    }
    progress.done();
    Ok(v.finish()?)
}

/// A progress line on stderr, drawn only when stderr is a terminal (so scripts and logs get
/// nothing but the result).
struct Progress {
    what: &'static str,
    total: u64,
    shown: bool,
    started: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        Progress { what, total, shown: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    fn set(&mut self, done: u64) {
        if self.shown {
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            let pct = if self.total == 0 { 100.0 } else { done as f64 * 100.0 / self.total as f64 };
            eprint!("\r{} {done}/{} entries ({pct:.0}%, {rate:.0}/s)   ", self.what, self.total);
        }
    }

    fn done(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}
