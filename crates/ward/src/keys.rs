//! `ward keys rotate`, `ward keys inventory` and `ward keys retire`: the key hierarchy from the
//! command line. Key material is never printed; only ids, versions and dates.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde::Serialize;
use ward_crypto::KekInfo;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_server::audit_archive::format_ms;
use ward_server::keys::Rotated;
use ward_server::provision::operator_meta;
use ward_store::{DataKeyInfo, Store};

/// How `ward keys inventory` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum InventoryFormat {
    /// Aligned columns for reading.
    Table,
    /// One JSON document.
    Json,
}

/// Keys read per query.
const BATCH: u32 = 1000;

/// `ward keys rotate`: [`ward_server::keys::rotate`] with a progress bar.
pub(crate) async fn rotate(store: &Store, resume: bool) -> anyhow::Result<Rotated> {
    let bar = crate::progress::entries("rewrapping data keys", 0);
    let rotated = ward_server::keys::rotate(store, resume, operator_meta(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    Ok(rotated)
}

/// Destroys a KEK version, refusing the current one and one any live data key still uses.
pub(crate) async fn retire(store: &Store, kek_id: &str) -> anyhow::Result<()> {
    let provider = store.keyring().provider().clone();
    let keks = provider.keks().await?;
    let Some(kek) = keks.iter().find(|k| k.kek_id == kek_id) else {
        bail!("the {} key provider has no KEK {kek_id:?} (see `ward keys inventory`)", provider.kind());
    };
    if kek.current {
        bail!("{kek_id} is the current KEK: run `ward keys rotate` first");
    }
    let using = store.data_keys_under(kek_id.to_owned()).await?;
    if using > 0 {
        bail!("{using} data key(s) are still wrapped under {kek_id}: run `ward keys rotate --resume` first");
    }
    provider.destroy(kek_id).await.with_context(|| format!("destroying {kek_id}"))?;
    let event = AuditEvent::new(AuditAction::KeyRetire, Outcome::Success).detail("provider", DetailValue::Code(provider.kind()));
    store.record(event, operator_meta()).await?;
    Ok(())
}

/// The inventory: the provider's KEKs and the data keys' metadata.
#[derive(Debug, Serialize)]
pub(crate) struct Inventory {
    /// The key provider kind.
    pub provider: &'static str,
    /// Every KEK version the provider holds.
    pub keks: Vec<KekRow>,
    /// Data keys summarised per scope kind.
    pub data_keys: Vec<ScopeSummary>,
    /// Every data key, with `--all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<DataKeyInfo>>,
}

/// One KEK with how many live data keys it wraps.
#[derive(Debug, Serialize)]
pub(crate) struct KekRow {
    #[serde(flatten)]
    pub kek: KekInfo,
    /// Live data keys wrapped under it.
    pub data_keys: u64,
}

/// Data keys of one scope kind.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ScopeSummary {
    /// `conversation`, `patient` or `org`.
    pub scope_kind: String,
    /// Scopes with at least one key.
    pub scopes: u64,
    /// Live key versions.
    pub live: u64,
    /// Destroyed (crypto-shredded) key versions.
    pub destroyed: u64,
    /// The highest version of any scope.
    pub max_version: i32,
    /// The oldest live key's creation (Unix ms).
    pub oldest_created_at: Option<i64>,
    /// The latest wrap (creation or KEK rotation), Unix ms.
    pub last_wrapped_at: Option<i64>,
}

/// Reads the inventory; `all` also lists every data key. Recorded as `keys.inventory`.
pub(crate) async fn inventory(store: &Store, all: bool) -> anyhow::Result<Inventory> {
    let provider = store.keyring().provider().clone();
    let kek_infos = provider.keks().await?;
    let mut per_kek: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_kind: BTreeMap<String, ScopeSummary> = BTreeMap::new();
    let mut last_scope: Option<uuid::Uuid> = None;
    let mut keys = all.then(Vec::new);
    let mut cursor = None;
    loop {
        let page = store.data_key_inventory(cursor, BATCH).await?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.scope_id, last.version));
        for k in page {
            let s = per_kind
                .entry(k.scope_kind.clone())
                .or_insert_with(|| ScopeSummary { scope_kind: k.scope_kind.clone(), ..Default::default() });
            // Keys come ordered by scope, so a new scope id is a new scope.
            if last_scope != Some(k.scope_id) {
                s.scopes += 1;
                last_scope = Some(k.scope_id);
            }
            s.max_version = s.max_version.max(k.version);
            s.last_wrapped_at = s.last_wrapped_at.max(Some(k.wrapped_at));
            if k.destroyed_at.is_some() {
                s.destroyed += 1;
            } else {
                s.live += 1;
                s.oldest_created_at = Some(s.oldest_created_at.map_or(k.created_at, |o| o.min(k.created_at)));
            }
            if let Some(kek) = &k.kek_id {
                *per_kek.entry(kek.clone()).or_default() += 1;
            }
            if let Some(list) = keys.as_mut() {
                list.push(k);
            }
        }
    }
    let mut keks: Vec<KekRow> =
        kek_infos.into_iter().map(|kek| KekRow { data_keys: per_kek.remove(&kek.kek_id).unwrap_or(0), kek }).collect();
    // Keys under a KEK the provider no longer lists (retired, or another provider's): shown so
    // that nobody mistakes them for readable.
    keks.extend(per_kek.into_iter().map(|(kek_id, n)| KekRow { kek: KekInfo { kek_id, created_at: None, current: false }, data_keys: n }));
    store
        .record(AuditEvent::new(AuditAction::KeyInventory, Outcome::Success).detail("all", DetailValue::Bool(all)), operator_meta())
        .await?;
    Ok(Inventory { provider: provider.kind(), keks, data_keys: per_kind.into_values().collect(), keys })
}

fn date(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), format_ms)
}

/// The inventory as text tables.
pub(crate) fn print_inventory(inv: &Inventory) {
    println!("key provider: {}", inv.provider);
    println!();
    println!("{:<60} {:<8} {:<25} {:>10}", "KEK", "current", "created", "data keys");
    for k in &inv.keks {
        println!("{:<60} {:<8} {:<25} {:>10}", k.kek.kek_id, if k.kek.current { "yes" } else { "" }, date(k.kek.created_at), k.data_keys);
    }
    println!();
    println!(
        "{:<14} {:>8} {:>8} {:>10} {:>12} {:<25} {:<25}",
        "scope kind", "scopes", "live", "destroyed", "max version", "oldest live", "last wrapped"
    );
    for s in &inv.data_keys {
        println!(
            "{:<14} {:>8} {:>8} {:>10} {:>12} {:<25} {:<25}",
            s.scope_kind,
            s.scopes,
            s.live,
            s.destroyed,
            s.max_version,
            date(s.oldest_created_at),
            date(s.last_wrapped_at)
        );
    }
    if let Some(keys) = &inv.keys {
        println!();
        println!(
            "{:<13} {:<36} {:>7} {:<40} {:<25} {:<25} {:<25}",
            "scope kind", "scope", "version", "KEK", "created", "wrapped", "destroyed"
        );
        for k in keys {
            println!(
                "{:<13} {:<36} {:>7} {:<40} {:<25} {:<25} {:<25}",
                k.scope_kind,
                k.scope_id,
                k.version,
                k.kek_id.as_deref().unwrap_or("-"),
                date(Some(k.created_at)),
                date(Some(k.wrapped_at)),
                date(k.destroyed_at)
            );
        }
    }
}
