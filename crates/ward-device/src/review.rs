//! The quarterly review: how many devices are in each state and how often each item fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluation, Outcome, StateKind};
use crate::policy::{ITEMS, ItemId};

/// How often one item failed, was unknown or did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemCounts {
    /// Devices on which it counts as failing.
    pub failing: usize,
    /// Devices that did not report it.
    pub unknown: usize,
    /// Devices on which it does not apply.
    pub not_applicable: usize,
}

/// Counts over the devices' latest evaluations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSummary {
    /// Devices counted.
    pub devices: usize,
    /// Devices per state (every state listed, zeros included).
    pub by_state: BTreeMap<StateKind, usize>,
    /// Counts per item (every item listed).
    pub by_item: BTreeMap<ItemId, ItemCounts>,
}

/// Summarises the latest evaluation of each device.
pub fn review_summary<'a>(latest: impl IntoIterator<Item = &'a Evaluation>) -> ReviewSummary {
    let mut by_state: BTreeMap<StateKind, usize> =
        [StateKind::Compliant, StateKind::Warn, StateKind::InGrace, StateKind::BlockPhi].into_iter().map(|k| (k, 0)).collect();
    let mut by_item: BTreeMap<ItemId, ItemCounts> = ITEMS.iter().map(|s| (s.id, ItemCounts::default())).collect();
    let mut devices = 0;
    for e in latest {
        devices += 1;
        *by_state.entry(e.state.kind()).or_default() += 1;
        for r in &e.items {
            let c = by_item.entry(r.item).or_default();
            c.failing += usize::from(r.failing);
            c.unknown += usize::from(r.outcome == Outcome::Unknown);
            c.not_applicable += usize::from(r.outcome == Outcome::NotApplicable);
        }
    }
    ReviewSummary { devices, by_state, by_item }
}
