//! `ward audit prove` and `ward audit check-proof`: an inclusion bundle for one event, written
//! from the database, and its offline check by a third party (format in `ward_audit::bundle`).

use std::path::Path;

use anyhow::Context;
use ward_audit::tree::inclusion_plan;
use ward_audit::{ExportLine, Held, Included, InclusionBundle, InclusionProof, Verifier, verify_bundle};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_server::provision::operator_meta;
use ward_store::Store;

/// The inclusion bundle of event `index` against the checkpoint at `size` (default: the latest
/// checkpoint). Checked against the stored checkpoint's root before it is returned, so a
/// damaged database yields an error, not a bundle that cannot verify.
pub(crate) async fn prove(store: &Store, index: u64, size: Option<u64>) -> anyhow::Result<InclusionBundle> {
    // Reading the audit log is itself audited, as through the API.
    let read = AuditEvent::new(AuditAction::AuditLogRead, Outcome::Success).detail("op", DetailValue::Code("prove"));
    store.record(read, operator_meta()).await?;
    let cp = match size {
        Some(s) => store.checkpoint(s).await?.ok_or_else(|| {
            anyhow::anyhow!("no signed checkpoint at tree size {s} (give the size of an issued checkpoint, or leave out --size)")
        })?,
        None => store
            .latest_checkpoint()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no signed checkpoint yet; sign one with `ward audit checkpoint`"))?,
    };
    let size = cp.tree_size as u64;
    if index >= size {
        anyhow::bail!("index {index} is not covered by the checkpoint at tree size {size}");
    }
    let row = store.audit_events(index as i64, 1).await?.into_iter().next().filter(|r| r.idx as u64 == index);
    let leaf = row.ok_or_else(|| anyhow::anyhow!("entry {index} is missing from the database; run `ward audit verify`"))?.leaf();
    let recorded = store.integrated_leaf_hashes(index, 1).await?.into_iter().find(|(i, _)| *i == index).map(|(_, h)| h);
    let plan = inclusion_plan(index, size)?;
    let nodes = store
        .tree_node_hashes(plan.nodes())
        .await
        .map_err(|e| anyhow::anyhow!("the stored tree lacks nodes for tree size {size} ({e}); run `ward audit verify`"))?;
    let proof = InclusionProof { leaf_index: index, tree_size: size, hashes: plan.assemble(&nodes)? };
    proof.verify(&leaf.leaf_hash(), &cp.root()?).map_err(|e| {
        anyhow::anyhow!(
            "the database does not prove entry {index} against its checkpoint at tree size {size} ({e}); run `ward audit verify`"
        )
    })?;
    Ok(InclusionBundle::new(leaf, recorded, cp.note, proof))
}

/// Writes a bundle as pretty JSON (to `out`, or stdout).
pub(crate) fn write_bundle(bundle: &InclusionBundle, out: Option<&Path>) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(bundle)?;
    json.push('\n');
    match out {
        Some(path) => std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display())),
        None => {
            print!("{json}");
            Ok(())
        }
    }
}

/// Checks a bundle offline with the log's verifier key, using the caller's own checkpoint note
/// and export line (instead of the bundle's, which must match them) where given.
pub(crate) fn check_proof(bundle: &Path, vkey: Verifier, checkpoint: Option<&Path>, event: Option<&Path>) -> anyhow::Result<Included> {
    let text = read(bundle)?;
    let bundle: InclusionBundle =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not an inclusion bundle: {e}", bundle.display()))?;
    let held_checkpoint = checkpoint.map(read_note).transpose()?;
    let held_entry = event.map(read_export_line).transpose()?;
    let held = Held { checkpoint: held_checkpoint.as_deref(), entry: held_entry.as_ref() };
    Ok(verify_bundle(&bundle, &vkey, held)?)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A signed note as saved from `ward audit checkpoint`, the API or `checkpoints.log`: extra
/// trailing newlines (a copy from the log keeps the empty line after each note) are dropped.
fn read_note(path: &Path) -> anyhow::Result<String> {
    let text = read(path)?;
    let note = text.trim_end_matches(['\n', '\r']);
    if note.is_empty() {
        anyhow::bail!("{}: empty checkpoint file", path.display());
    }
    Ok(format!("{note}\n"))
}

/// The one export line in `path`, exactly as the export wrote it (a final newline is allowed).
fn read_export_line(path: &Path) -> anyhow::Result<ExportLine> {
    let text = read(path)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    if line.contains('\n') {
        anyhow::bail!("{}: expected exactly one export line", path.display());
    }
    ExportLine::parse_line(line.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
