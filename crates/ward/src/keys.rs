//! `ward keys rotate`, `ward keys inventory` and `ward keys retire`: the key hierarchy from the
//! command line. Key material is never printed; only ids, versions and dates.

use anyhow::{Context as _, bail};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_server::audit_archive::format_ms;
use ward_server::keys::Rotated;
use ward_server::provision::operator_meta;
use ward_store::Store;

/// How `ward keys inventory` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum InventoryFormat {
    /// Aligned columns for reading.
    Table,
    /// One JSON document.
    Json,
}

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

pub(crate) use ward_server::keys::Inventory;

/// Reads the inventory ([`ward_server::keys::inventory`]); `all` also lists every data key.
/// Recorded as `keys.inventory`.
pub(crate) async fn inventory(store: &Store, all: bool) -> anyhow::Result<Inventory> {
    let inv = ward_server::keys::inventory(store, all).await?;
    store
        .record(AuditEvent::new(AuditAction::KeyInventory, Outcome::Success).detail("all", DetailValue::Bool(all)), operator_meta())
        .await?;
    Ok(inv)
}

fn date(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), format_ms)
}

/// The inventory as text tables.
pub(crate) fn print_inventory(inv: &Inventory) {
    println!("key provider: {}", inv.provider);
    println!();
    println!("{:<60} {:<17} {:<8} {:<25} {:>10}", "KEK", "label", "current", "created", "data keys");
    for k in &inv.keks {
        let current = if k.kek.current { "yes" } else { "" };
        println!("{:<60} {:<17} {:<8} {:<25} {:>10}", k.kek.kek_id, k.label, current, date(k.kek.created_at), k.data_keys);
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
