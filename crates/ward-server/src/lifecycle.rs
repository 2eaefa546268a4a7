//! Data lifecycle in the server: the scheduled retention job (`[retention]` in the
//! configuration), the hook that deletes objects outside the database for shredded scopes, and
//! the readable archive of a patient export. The store does the shredding
//! (`ward_store::Store::enforce_retention`); see docs/retention.md.

use std::io::Write;
use std::time::Duration;

use ward_store::{PatientExport, RetentionRun, RunProgress, ShreddedScope, Store};

use crate::api::dto::ts;
use crate::attachments::Blobs;
use crate::config::RetentionConfig;

/// Runs retention once at `now`: shreds what expired, then deletes the attachment objects of
/// the shredded scopes.
pub async fn run_once(store: &Store, blobs: &Blobs, now: i64, progress: impl FnMut(RunProgress) + Send) -> anyhow::Result<RetentionRun> {
    let run = store.enforce_retention(now, progress).await?;
    delete_shredded_objects(store, blobs, &run.scopes).await?;
    Ok(run)
}

/// Deletes the attachment objects whose keys were sealed under a destroyed key version.
/// Destroying the key already made them unreadable; this gives the storage back. Returns the
/// number of objects deleted (a failed delete is logged and left for an operator: the object
/// stays unreadable either way).
pub async fn delete_shredded_objects(store: &Store, blobs: &Blobs, scopes: &[ShreddedScope]) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for scope in scopes {
        for key in store.attachment_objects_sealed_under(scope.conversation_id, scope.versions.clone(), scope.whole).await? {
            if blobs.remove(&key).await {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// The scheduled job: every `interval_secs` (the first run one interval after start).
pub fn spawn(store: Store, blobs: std::sync::Arc<Blobs>, config: &RetentionConfig) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled {
        return None;
    }
    let every = Duration::from_secs(config.interval_secs);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match run_once(&store, &blobs, ward_store::now_ms(), |_| {}).await {
                Ok(run) if run.versions_destroyed > 0 || run.held > 0 => tracing::info!(
                    conversations = run.shredded_conversations,
                    versions = run.versions_destroyed,
                    messages = run.messages_shredded,
                    held = run.held,
                    compacted = run.compacted,
                    "retention enforced"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
        }
    }))
}

/// The archive of a patient export (zip): `index.txt` listing the conversations,
/// `conversations/NNN.txt` with one readable transcript each (sender, time, text; shredded
/// and recalled messages shown as removed) and `export.json` with the same data.
pub fn patient_archive(export: &PatientExport) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut index = String::new();
    index.push_str(&format!(
        "Conversations of {} (MRN {})\nPatient id: {}\nExported: {}\n\n",
        export.patient_name,
        export.mrn,
        export.patient_id,
        ts(export.exported_at)
    ));
    for (i, c) in export.conversations.iter().enumerate() {
        let file = format!("conversations/{:03}.txt", i + 1);
        let title =
            c.title.as_deref().unwrap_or(if c.shredded_at.is_some() { "(title removed at end of retention)" } else { "(untitled)" });
        index.push_str(&format!("{file}  {title}  started {}  {} messages\n", ts(c.created_at), c.messages.len()));
        let mut t = format!("{title}\nConversation {}\nStarted {}\n\n", c.id, ts(c.created_at));
        for m in &c.messages {
            let text = match (&m.body, m.shredded_at, m.recalled_at) {
                (_, Some(at), _) => format!("[removed at the end of its retention period, {}]", ts(at)),
                (_, None, Some(at)) => format!("[recalled by the sender, {}]", ts(at)),
                (Some(b), None, None) => b.clone(),
                (None, None, None) => "[no text]".to_owned(),
            };
            t.push_str(&format!("#{} {} ({})\n{}\n\n", m.seq, m.sender_name, ts(m.created_at), text));
        }
        zip.start_file(file, opts)?;
        zip.write_all(t.as_bytes())?;
    }
    if export.conversations.is_empty() {
        index.push_str("No conversations.\n");
    }
    zip.start_file("index.txt", opts)?;
    zip.write_all(index.as_bytes())?;
    zip.start_file("export.json", opts)?;
    zip.write_all(&serde_json::to_vec_pretty(export)?)?;
    Ok(zip.finish()?.into_inner())
}
