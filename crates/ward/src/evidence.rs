//! `ward evidence export` and `ward evidence verify`: the signed evidence bundle for an auditor
//! (the work is `ward_server::evidence`; docs/evidence.md).

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use ward_server::Config;
use ward_server::evidence::{self, STEPS};
use ward_server::provision::operator_meta;

/// Writes an organisation's bundle to `out` (created new), with a progress bar.
pub(crate) async fn export(config: &Config, org: &str, out: &Path) -> anyhow::Result<()> {
    // Only the deployment's existing key signs: a wrong data_dir must not make a new key and
    // sign a checkpoint with it into the shared audit log.
    let key = config.data_dir.join("audit").join("signing.key");
    if !key.is_file() {
        anyhow::bail!("no audit signing key at {} (is data_dir right? the server creates it at first start)", key.display());
    }
    let store = ward_server::open_store(config).await?;
    let org = store.org_by_slug(org).await.map_err(|_| anyhow::anyhow!("no organisation {org}"))?;
    let log = ward_server::audit_log::AuditLog::open(config, store.clone())?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    let bar = crate::progress::steps("collecting evidence", STEPS + 1);
    let result =
        evidence::export(&store, config, &log, &org, evidence::Audience::Operator, operator_meta(), |step| bar.set_position(step)).await;
    bar.finish_and_clear();
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            drop(f);
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    f.write_all(&done.archive)?;
    f.sync_all()?;
    println!(
        "wrote {} file(s) to {} ({} piece(s) of evidence not available, listed in control-map.json); audit checkpoint at tree size {}",
        done.files,
        out.display(),
        done.not_available,
        done.tree_size
    );
    println!("signing key fingerprint (SHA-256 of the Ed25519 public key): {}", done.fingerprint);
    println!("the auditor should compare it with one obtained separately, then run `ward evidence verify`");
    Ok(())
}

/// Checks a bundle offline; `public_key` is a PEM file or 64 hex digits.
pub(crate) fn verify(file: &Path, public_key: Option<&str>) -> anyhow::Result<()> {
    let expected = match public_key {
        None => None,
        Some(k) => {
            let text =
                if Path::new(k).is_file() { std::fs::read_to_string(k).with_context(|| format!("cannot read {k}"))? } else { k.to_owned() };
            Some(evidence::parse_public_key(&text)?)
        }
    };
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let v = evidence::verify(&bytes, expected.as_ref()).map_err(|e| anyhow::anyhow!("evidence bundle verification failed: {e}"))?;
    println!(
        "verified the evidence bundle of {} ({}) made {} by Ward {}: signature and {} file(s) intact, nothing missing or added",
        v.manifest.org.slug,
        v.manifest.org.id,
        v.manifest.generated_at,
        v.manifest.ward_version,
        v.manifest.files.len()
    );
    println!("signing key fingerprint: {}", v.fingerprint);
    if expected.is_none() {
        println!("note: checked against the key inside the bundle; pass --public-key to pin the organisation's key");
    }
    Ok(())
}
