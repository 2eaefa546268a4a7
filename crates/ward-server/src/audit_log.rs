//! The audit log's integrator and signer: sequences committed audit events into the Merkle
//! tree, stores the completed perfect subtrees, and issues signed checkpoints.
//!
//! The events themselves are written (and indexed) by the store in the transaction of the
//! change they record; this task only follows them. It restores its [`Frontier`] from the
//! stored nodes, so a restart (or a crash half-way through storing nodes, which are written
//! idempotently) resumes where the stored tree ends.
//!
//! Checkpoints are issued every `audit.checkpoint_every_entries` new entries, at least every
//! `audit.checkpoint_interval_secs` while entries arrive, and on demand. Each is stored and
//! appended to `<data_dir>/audit/checkpoints.log`, a publication outside the database: whoever
//! rewrites the whole database cannot make it consistent with checkpoints already copied out.
//! The signing key is `<data_dir>/audit/signing.key` (Go `note` private key format, mode 0600,
//! created on first start); its verifier key is written to `<data_dir>/audit/verifier.vkey`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use ward_audit::{Checkpoint, Frontier, Signer, Verifier, tree};
use ward_store::{Store, StoreError, StoredCheckpoint};

use crate::config::Config;

/// How many leaves one integration step reads and stores at most.
const BATCH: u64 = 4096;

/// The integrator and signer. Cheap to share behind an `Arc`.
pub struct AuditLog {
    store: Store,
    signer: Signer,
    origin: String,
    every_entries: u64,
    interval: Duration,
    dir: PathBuf,
    /// The in-memory frontier at the stored tree size (`None` until first restored); the lock
    /// also serialises integration and signing within this process.
    frontier: Mutex<Option<Frontier>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Loads the signing key from `dir/signing.key`, creating it (mode 0600) if missing, and
/// (re)writes `dir/verifier.vkey`.
pub fn load_or_create_key(dir: &Path, origin: &str) -> anyhow::Result<Signer> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let key_path = dir.join("signing.key");
    let signer = if key_path.exists() {
        let text = std::fs::read_to_string(&key_path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_path.display()))?;
        let signer = Signer::from_private_key(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        if signer.name() != origin {
            anyhow::bail!(
                "the audit signing key {} is for origin {:?}, but audit.origin is {origin:?}; a log keeps its origin",
                key_path.display(),
                signer.name()
            );
        }
        signer
    } else {
        let signer = Signer::generate(origin).map_err(|e| anyhow::anyhow!("cannot create the audit signing key: {e}"))?;
        crate::tls::write_private(&key_path, format!("{}\n", signer.private_key()).as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", key_path.display()))?;
        tracing::info!(path = %key_path.display(), "created the audit log signing key");
        signer
    };
    let vkey_path = dir.join("verifier.vkey");
    std::fs::write(&vkey_path, format!("{}\n", signer.verifier()))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", vkey_path.display()))?;
    Ok(signer)
}

impl AuditLog {
    /// Opens the log for this configuration: loads or creates the signing key.
    pub fn open(config: &Config, store: Store) -> anyhow::Result<Arc<AuditLog>> {
        let dir = config.data_dir.join("audit");
        let signer = load_or_create_key(&dir, &config.audit.origin)?;
        Ok(Arc::new(AuditLog {
            store,
            signer,
            origin: config.audit.origin.clone(),
            every_entries: config.audit.checkpoint_every_entries,
            interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
            dir,
            frontier: Mutex::new(None),
        }))
    }

    /// The log's origin (first checkpoint line, and the key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key that checks this log's checkpoints.
    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    /// A detached Ed25519 signature by the log's signing key (the deployment's key, also
    /// used for evidence bundles); `message` must be domain-separated (see
    /// [`ward_audit::Signer::sign_detached`]).
    pub fn sign_detached(&self, message: &[u8]) -> [u8; 64] {
        self.signer.sign_detached(message)
    }

    /// Extends the stored tree to every committed audit event; returns the new tree size.
    pub async fn integrate(&self) -> Result<u64, StoreError> {
        let mut guard = self.frontier.lock().await;
        self.integrate_locked(&mut guard).await
    }

    async fn integrate_locked(&self, frontier: &mut Option<Frontier>) -> Result<u64, StoreError> {
        let stored = self.store.tree_size().await?;
        if frontier.as_ref().is_none_or(|f| f.size() != stored) {
            // First use, or another process extended the tree: restore from stored nodes.
            let plan = tree::root_plan(stored);
            let roots = self.store.tree_node_hashes(plan.nodes()).await?;
            *frontier = Some(Frontier::restore(stored, roots).map_err(|_| StoreError::Corrupt("audit tree frontier"))?);
        }
        let Some(f) = frontier.as_mut() else { unreachable!("restored above") };
        loop {
            let leaves = self.store.audit_leaf_hashes(f.size(), BATCH).await?;
            if leaves.is_empty() {
                return Ok(f.size());
            }
            let mut next = f.clone();
            let mut nodes = Vec::with_capacity(leaves.len() * 2);
            for leaf in leaves {
                next.append(leaf, |id, h| nodes.push((id, *h)));
            }
            self.store.store_tree_nodes(nodes).await?;
            *f = next;
        }
    }

    /// Integrates, then signs a checkpoint at the new size unless one exists there; returns
    /// the latest checkpoint.
    pub async fn checkpoint_now(&self) -> Result<StoredCheckpoint, StoreError> {
        let mut guard = self.frontier.lock().await;
        self.integrate_locked(&mut guard).await?;
        let Some(f) = guard.as_ref() else { unreachable!("integrated above") };
        self.sign_at(f).await
    }

    async fn sign_at(&self, f: &Frontier) -> Result<StoredCheckpoint, StoreError> {
        if let Some(existing) = self.store.checkpoint(f.size()).await? {
            return Ok(existing);
        }
        let cp =
            Checkpoint::sign(&self.origin, f.size(), f.root(), &self.signer).map_err(|_| StoreError::State("cannot sign checkpoint"))?;
        let stored = match self.store.insert_checkpoint(f.size(), f.root(), cp.note().to_owned()).await {
            Ok(s) => s,
            // Another process signed this size first.
            Err(StoreError::Conflict(_)) => return self.store.checkpoint(f.size()).await?.ok_or(StoreError::NotFound),
            Err(e) => return Err(e),
        };
        if let Err(e) = self.publish(&stored.note) {
            tracing::error!(error = %e, "could not append the checkpoint to checkpoints.log");
        }
        tracing::info!(tree_size = stored.tree_size, "audit checkpoint signed");
        Ok(stored)
    }

    /// Appends a note to `checkpoints.log`, followed by an empty line. (A note holds one empty
    /// line itself, between its text and its signatures; a note begins at a line that follows
    /// an empty line and does not start with `—`.)
    fn publish(&self, note: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("checkpoints.log"))?;
        f.write_all(format!("{note}\n").as_bytes())?;
        f.sync_data()
    }

    /// One round of the background task: integrate, and sign if enough entries or time
    /// passed since the last checkpoint.
    pub async fn tick(&self, last_signed: &mut Instant) -> Result<(), StoreError> {
        let mut guard = self.frontier.lock().await;
        let size = self.integrate_locked(&mut guard).await?;
        let signed = self.store.latest_checkpoint().await?.map_or(0, |c| c.tree_size as u64);
        let pending = size.saturating_sub(signed);
        if pending >= self.every_entries || (pending > 0 && last_signed.elapsed() >= self.interval) {
            let Some(f) = guard.as_ref() else { unreachable!("integrated above") };
            self.sign_at(f).await?;
            *last_signed = Instant::now();
        }
        Ok(())
    }

    /// Runs [`AuditLog::tick`] every second (or every interval, if shorter) for ever.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(log.interval.min(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_signed = Instant::now();
            loop {
                tick.tick().await;
                if let Err(e) = log.tick(&mut last_signed).await {
                    tracing::warn!(error = %e, "audit log integration failed");
                }
            }
        })
    }
}
