//! `ward retention run|status` and `ward patient export`: data lifecycle from the command line
//! (the work itself is `ward_store`'s lifecycle and `ward_server::lifecycle`). Not to be
//! confused with `retention.rs`, which archives the audit log.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use ward_domain::ids::PatientId;
use ward_server::Config;
use ward_server::provision::operator_meta;

/// The variable that moves the retention clock, honoured only by debug builds (the test
/// suite's): nothing in a test is years old, and a release build must never be talked into
/// shredding content before its time.
const TEST_NOW_VAR: &str = "WARD_TEST_NOW_MS";

fn now_ms() -> anyhow::Result<i64> {
    if cfg!(debug_assertions)
        && let Ok(v) = std::env::var(TEST_NOW_VAR)
    {
        return v.parse().map_err(|_| anyhow::anyhow!("{TEST_NOW_VAR} must be Unix milliseconds"));
    }
    Ok(ward_store::now_ms())
}

/// Enforces every organisation's retention policy now, with a progress bar.
pub(crate) async fn run(config: &Config) -> anyhow::Result<()> {
    let now = now_ms()?;
    let store = ward_server::open_store(config).await?;
    let bar = crate::progress::entries("shredding expired content", 0);
    let blobs = ward_server::attachments::Blobs::from_config(config)?;
    let result = ward_server::lifecycle::run_once(&store, &blobs, now, |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    })
    .await;
    bar.finish_and_clear();
    let run = result?;
    println!(
        "checked {} conversation(s): shredded {} ({} key version(s), {} message(s)); {} kept by a legal hold; {} changed meanwhile (next run)",
        run.checked, run.shredded_conversations, run.versions_destroyed, run.messages_shredded, run.held, run.changed
    );
    if run.versions_destroyed > 0 && !run.compacted {
        println!("note: the database could not be compacted now (busy); freed pages are reclaimed by the next run");
    }
    Ok(())
}

/// Prints the retention periods of every organisation and the lifecycle counts.
pub(crate) async fn status(config: &Config) -> anyhow::Result<()> {
    let store = ward_server::open_store(config).await?;
    for org in store.orgs().await? {
        let p = store.retention_policy(org.id).await?;
        let holds = store.legal_holds(org.id, true).await?.len();
        println!(
            "{}: direct {} days, group {} days, patient {} days; {} legal hold(s) standing",
            org.slug,
            p.direct.get(),
            p.group.get(),
            p.patient.get(),
            holds
        );
    }
    let s = store.lifecycle_status().await?;
    let last = s.last_shred_at.map_or_else(|| "never".to_owned(), ward_server::api::dto::ts);
    println!(
        "shred records: {}; destroyed key versions: {}; shredded messages: {}; last shredding: {last}",
        s.shred_records, s.destroyed_versions, s.shredded_messages
    );
    Ok(())
}

/// Writes a patient's conversations to a zip archive (created new, mode 0600: it holds PHI).
pub(crate) async fn export(config: &Config, patient: PatientId, out: &Path) -> anyhow::Result<()> {
    let store = ward_server::open_store(config).await?;
    let export = store.patient_export_by_operator(patient, operator_meta()).await.map_err(|e| match e {
        ward_store::StoreError::NotFound => anyhow::anyhow!("no patient {patient}"),
        other => other.into(),
    })?;
    let zip = ward_server::lifecycle::patient_archive(&export)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    f.write_all(&zip)?;
    f.sync_all()?;
    let messages: usize = export.conversations.iter().map(|c| c.messages.len()).sum();
    println!("{} conversation(s), {messages} message(s) written to {}", export.conversations.len(), out.display());
    Ok(())
}
