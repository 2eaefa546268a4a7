//! `--keys N`: what a KEK rotation costs (docs/benchmarks.md, "Encryption at rest"). N data
//! keys, wrapped by the configured provider, are stored in batches; then the same rotation
//! `ward keys rotate` runs (new KEK version, every key unwrapped and wrapped again, stored with
//! a compare-and-swap) is timed, and finally a second pass that finds nothing to do.

use std::time::{Duration, Instant};

use ward_crypto::WrapContext;
use ward_crypto::aead::new_key_bytes;
use ward_store::{RequestMeta, ScopeKind, Store, WrappedDataKey};

/// Keys stored per transaction while loading.
const LOAD_BATCH: u64 = 10_000;

/// What a rotation run measured.
pub(crate) struct KeyReport {
    backend: &'static str,
    provider: &'static str,
    keys: u64,
    load: Duration,
    rotation: Duration,
    rewrapped: u64,
    resume: Duration,
}

impl KeyReport {
    /// Prints the table.
    pub(crate) fn print(&self) {
        let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        println!();
        println!("KEK rotation on {} with the {} key provider: {} data keys", self.backend, self.provider, self.keys);
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        println!("| storing the keys (wrap + insert) | {:.2} s ({:.0} keys/s) |", self.load.as_secs_f64(), per_sec(self.keys, self.load));
        println!(
            "| `ward keys rotate`: new KEK, rewrap every key | {:.2} s ({:.0} keys/s), {} rewrapped |",
            self.rotation.as_secs_f64(),
            per_sec(self.rewrapped, self.rotation),
            self.rewrapped
        );
        println!("| `ward keys rotate --resume` with nothing left | {:.3} s |", self.resume.as_secs_f64());
    }
}

/// Loads `n` keys under a fresh organisation, then rotates.
pub(crate) async fn run(store: &Store, backend: &'static str, n: u64, tag: &str) -> anyhow::Result<KeyReport> {
    let meta = || RequestMeta { source_ip: None, request_id: Some("loadgen".into()) };
    let org = store.create_org(&format!("keys-{tag}"), "Key rotation benchmark", 900, None, meta()).await?;
    let provider = store.keyring().provider().clone();
    crate::say(format!("storing {n} wrapped data keys"));
    let started = Instant::now();
    let mut stored = 0;
    while stored < n {
        let take = LOAD_BATCH.min(n - stored);
        let mut batch = Vec::with_capacity(take as usize);
        for _ in 0..take {
            let scope = uuid::Uuid::new_v4();
            let wrapped = provider.wrap(&WrapContext { org: org.id.0, scope, version: 1 }, &new_key_bytes()).await?;
            batch.push(WrappedDataKey { org: org.id, kind: ScopeKind::Conversation, scope, version: 1, wrapped });
        }
        stored += store.store_wrapped_keys(batch).await?;
    }
    let load = started.elapsed();
    crate::say("rotating");
    let started = Instant::now();
    let mut last_percent = 0;
    let rotated = ward_server::keys::rotate(store, false, meta(), |done, total| {
        let percent = done * 10 / total.max(1);
        if percent > last_percent {
            last_percent = percent;
            crate::say(format!("rewrapped {done} of {total}"));
        }
    })
    .await?;
    let rotation = started.elapsed();
    anyhow::ensure!(rotated.remaining == 0, "{} keys were left under the old KEK", rotated.remaining);
    let started = Instant::now();
    let again = ward_server::keys::rotate(store, true, meta(), |_, _| {}).await?;
    let resume = started.elapsed();
    anyhow::ensure!(again.rewrapped == 0, "a second pass found {} keys to rewrap", again.rewrapped);
    Ok(KeyReport { backend, provider: provider.kind(), keys: stored, load, rotation, rewrapped: rotated.rewrapped, resume })
}
