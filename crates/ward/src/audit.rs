//! `ward audit export` and `ward audit verify`: the whole audit log as NDJSON, and its offline
//! verification against the log's public key (format in `ward_audit::verify`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use ward_audit::{ExportLine, Hash, LogVerifier, Summary, Verifier};
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_server::provision::operator_meta;
use ward_store::Store;

/// Rows read per query.
const PAGE: u64 = 10_000;

/// Writes every checkpoint, then every event (with the leaf hash the tree holds for it).
pub(crate) async fn export(store: &Store, out: &Path) -> anyhow::Result<(u64, u64)> {
    // The export is itself an audited action, and the first line it covers is its own record.
    store.record(AuditEvent::new(AuditAction::AuditExport, Outcome::Success), operator_meta()).await?;
    // Checkpoints before the size: every checkpoint covers integrated, hence committed, events,
    // so none can reach past the events written below (a server may sign more meanwhile).
    let mut checkpoints = Vec::new();
    loop {
        let page = store.checkpoints(checkpoints.last().map_or(0, |c: &ExportLine| checkpoint_size(c) + 1), 1000).await?;
        if page.is_empty() {
            break;
        }
        checkpoints.extend(page.into_iter().map(|cp| ExportLine::Checkpoint { tree_size: cp.tree_size as u64, note: cp.note }));
    }
    let size = store.audit_size().await?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let mut buf = Vec::with_capacity(1024);
    for cp in &checkpoints {
        line(&mut w, &mut buf, cp)?;
    }
    let progress = crate::progress::entries("exporting", size);
    // A pruned log goes on from its base: where it starts, and the hashes of what was archived.
    let (mut from, base) = store.audit_base().await?;
    if from > 0 {
        line(&mut w, &mut buf, &ExportLine::Base { tree_size: from, hashes: base })?;
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
            line(&mut w, &mut buf, &ExportLine::Event { event: Box::new(r.leaf()), leaf_hash })?;
            from = idx + 1;
        }
        progress.set_position(from);
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    progress.finish_and_clear();
    Ok((from, checkpoints.len() as u64))
}

fn checkpoint_size(l: &ExportLine) -> u64 {
    match l {
        ExportLine::Checkpoint { tree_size, .. } => *tree_size,
        ExportLine::Event { .. } | ExportLine::Base { .. } => 0,
    }
}

fn line(w: &mut impl Write, buf: &mut Vec<u8>, l: &ExportLine) -> anyhow::Result<()> {
    buf.clear();
    l.write_line(buf);
    buf.push(b'\n');
    w.write_all(buf)?;
    Ok(())
}

/// Reads a verifier key file (`<name>+<hex id>+<base64>`).
pub(crate) fn read_vkey(path: &Path) -> anyhow::Result<Verifier> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim().parse().map_err(|e| anyhow::anyhow!("{}: not a verifier key: {e}", path.display()))
}

/// Verifies an export file: checkpoints first (one pass), then the events in order.
pub(crate) fn verify_export(path: &Path, vkey: Verifier) -> anyhow::Result<Summary> {
    let open = || -> anyhow::Result<_> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(BufReader::with_capacity(1 << 20, file))
    };
    let mut v = LogVerifier::new(vkey);
    for_each_line(open()?, |l, n| Ok(v.add_checkpoint_line(l, n)?))?;
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let progress = crate::progress::bytes("verifying", total);
    // Blocks of lines, so parsing and hashing run on every core (LogVerifier::push_lines).
    let (mut text, mut ends) = (Vec::with_capacity(32 << 20), Vec::with_capacity(ward_audit::verify::BLOCK_LINES));
    let (mut first, mut read) = (1u64, 0u64);
    let mut flush = |text: &mut Vec<u8>, ends: &mut Vec<usize>, first: &mut u64| -> anyhow::Result<()> {
        let starts = std::iter::once(0).chain(ends.iter().map(|e| e + 1));
        let lines: Vec<&[u8]> = starts.zip(ends.iter()).map(|(s, &e)| &text[s..e]).collect();
        v.push_lines(&lines, *first)?;
        *first += lines.len() as u64;
        read += text.len() as u64;
        progress.set_position(read);
        text.clear();
        ends.clear();
        Ok(())
    };
    for_each_line(open()?, |l, _| {
        text.extend_from_slice(l);
        ends.push(text.len());
        text.push(b'\n');
        if ends.len() == ward_audit::verify::BLOCK_LINES {
            flush(&mut text, &mut ends, &mut first)?;
        }
        Ok(())
    })?;
    flush(&mut text, &mut ends, &mut first)?;
    progress.finish_and_clear();
    Ok(v.finish()?)
}

/// Calls `f` with each line (without its newline) and its 1-based number.
fn for_each_line(mut r: impl BufRead, mut f: impl FnMut(&[u8], u64) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut n = 0;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        n += 1;
        f(buf.strip_suffix(b"\n").unwrap_or(&buf), n)?;
    }
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
    let progress = crate::progress::entries("verifying", size);
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
        progress.set_position(from);
    }
    progress.finish_and_clear();
    Ok(v.finish()?)
}
