//! Drift: when a device went from compliant to not (and back), and which items changed.

use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluation, Outcome, StateKind};
use crate::policy::ItemId;

/// Which way a device crossed the compliance line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// It was compliant and no longer is.
    LeftCompliance,
    /// It was not compliant and now is.
    Regained,
}

/// One item whose result differs across a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemChange {
    /// The item.
    pub item: ItemId,
    /// Its result before.
    pub before: Outcome,
    /// Its result after.
    pub after: Outcome,
}

/// A transition across the compliance line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// The time of the evaluation that crossed it, in Unix ms.
    pub at_ms: i64,
    /// The time of the evaluation before it.
    pub previous_at_ms: i64,
    /// Which way.
    pub direction: Direction,
    /// The state before.
    pub from: StateKind,
    /// The state after.
    pub to: StateKind,
    /// The items whose result or failing status changed, in the catalogue's order.
    pub changed: Vec<ItemChange>,
}

/// The transitions in one device's evaluations. They are taken in time order (equal times
/// keep the order given), so the caller may pass them as stored.
pub fn drift(evaluations: &[Evaluation]) -> Vec<DriftEvent> {
    let mut ordered: Vec<&Evaluation> = evaluations.iter().collect();
    ordered.sort_by_key(|e| e.evaluated_at_ms);
    ordered
        .windows(2)
        .filter(|w| w[0].state.is_compliant() != w[1].state.is_compliant())
        .map(|w| {
            let (before, after) = (w[0], w[1]);
            let changed = after
                .items
                .iter()
                .filter_map(|a| {
                    let b = before.item(a.item);
                    let same = b.is_some_and(|b| b.outcome == a.outcome && b.failing == a.failing);
                    (!same).then(|| ItemChange { item: a.item, before: b.map_or(Outcome::Unknown, |b| b.outcome), after: a.outcome })
                })
                .collect();
            DriftEvent {
                at_ms: after.evaluated_at_ms,
                previous_at_ms: before.evaluated_at_ms,
                direction: if after.state.is_compliant() { Direction::Regained } else { Direction::LeftCompliance },
                from: before.state.kind(),
                to: after.state.kind(),
                changed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{DeviceState, ItemResult};
    use crate::policy::Action;

    fn eval(at: i64, failing: &[ItemId]) -> Evaluation {
        let items = [ItemId::PasscodeLength, ItemId::AutoLock, ItemId::SiriWhileLockedOff]
            .into_iter()
            .map(|item| {
                let fails = failing.contains(&item);
                ItemResult {
                    item,
                    outcome: if fails { Outcome::Fail } else { Outcome::Pass },
                    action: Action::WarnUser,
                    failing: fails,
                    failing_since_ms: fails.then_some(at),
                }
            })
            .collect();
        let state = if failing.is_empty() { DeviceState::Compliant } else { DeviceState::Warn { fix: failing.to_vec() } };
        Evaluation { evaluated_at_ms: at, report_received_at_ms: Some(at), items, state }
    }

    #[test]
    fn transitions_name_what_changed_and_when() {
        let history = [
            eval(30, &[ItemId::AutoLock, ItemId::SiriWhileLockedOff]),
            eval(10, &[]),
            eval(20, &[]),
            eval(40, &[ItemId::AutoLock]),
            eval(50, &[]),
        ];
        let events = drift(&history);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].at_ms, 30);
        assert_eq!(events[0].previous_at_ms, 20);
        assert_eq!(events[0].direction, Direction::LeftCompliance);
        assert_eq!((events[0].from, events[0].to), (StateKind::Compliant, StateKind::Warn));
        assert_eq!(
            events[0].changed,
            [
                ItemChange { item: ItemId::AutoLock, before: Outcome::Pass, after: Outcome::Fail },
                ItemChange { item: ItemId::SiriWhileLockedOff, before: Outcome::Pass, after: Outcome::Fail }
            ]
        );
        // 30 -> 40 stays non-compliant: no event.
        assert_eq!(events[1].at_ms, 50);
        assert_eq!(events[1].direction, Direction::Regained);
        assert_eq!(events[1].changed, [ItemChange { item: ItemId::AutoLock, before: Outcome::Fail, after: Outcome::Pass }]);
    }

    #[test]
    fn no_history_no_drift() {
        assert!(drift(&[]).is_empty());
        assert!(drift(&[eval(1, &[ItemId::AutoLock])]).is_empty());
    }
}
