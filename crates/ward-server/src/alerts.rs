//! The anomaly alert evaluator: follows committed audit events by index, feeds them to the
//! rules (`ward_domain::alerts`), records what they find, and pushes each alert to the
//! organisation's compliance officers over the fan-out.
//!
//! The cursor (the next index to read) lives in the database and moves in the same
//! transaction that records the alerts found before it, so after a restart no event is
//! evaluated twice and none is skipped. The sliding windows live in memory; on start they are
//! rebuilt by replaying, without raising anything, the events of the longest window before
//! the cursor (the rules are deterministic in the events' own times, so the replay reaches the
//! state the windows had). Several nodes may run the task: the cursor only moves from where a
//! node read it, and a node that loses the race rebuilds from the new position.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ward_domain::alerts::{AlertEngine, AlertRules, MAX_WINDOW_MINUTES, Observation, ObservedKind};
use ward_domain::audit::{AuditAction, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};
use ward_domain::role::Role;
use ward_fanout::{AlertNotice, FanOut, Signal};
use ward_store::{Alert, AuditRecord, NewAlert, Store, StoreError};

/// Events read per step.
const BATCH: i64 = 500;
/// How often the task looks for new events.
const POLL: Duration = Duration::from_millis(200);

/// The evaluator's state.
pub struct AlertTask {
    store: Store,
    fanout: Arc<dyn FanOut>,
    engine: AlertEngine,
    rules: HashMap<OrgId, AlertRules>,
    /// The restricted flag of every patient whose flag was set or cleared before the cursor
    /// (learnt from `patient.restrict` events in log order, so an access is judged by the flag
    /// as it stood then, not as it stands when the evaluator gets to it).
    restricted: HashMap<PatientId, bool>,
    cursor: i64,
    last_prune_ms: i64,
}

/// Lookups shared by the events of one batch.
#[derive(Default)]
struct Lookups {
    roles: HashMap<UserId, Option<Role>>,
    /// Patients whose flag was never set before the batch.
    never_restricted: std::collections::HashSet<PatientId>,
}

impl AlertTask {
    /// Reads the cursor and rebuilds the windows from the events before it.
    pub async fn start(store: Store, fanout: Arc<dyn FanOut>) -> Result<AlertTask, StoreError> {
        let mut task = AlertTask {
            store,
            fanout,
            engine: AlertEngine::new(),
            rules: HashMap::new(),
            restricted: HashMap::new(),
            cursor: 0,
            last_prune_ms: 0,
        };
        task.rebuild().await?;
        Ok(task)
    }

    /// The next audit index the task will read.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Forgets the windows and replays the events of the longest window before the cursor.
    async fn rebuild(&mut self) -> Result<(), StoreError> {
        self.engine = AlertEngine::new();
        self.rules.clear();
        self.restricted.clear();
        self.cursor = self.store.alert_cursor().await?;
        let Some(last) = self.store.audit_events(self.cursor - 1, 1).await?.pop().filter(|_| self.cursor > 0) else { return Ok(()) };
        let horizon = last.occurred_at - i64::from(MAX_WINDOW_MINUTES) * 60_000;
        let mut from = self.first_index_at(horizon).await?;
        while from < self.cursor {
            let events = self.store.audit_events(from, BATCH.min(self.cursor - from)).await?;
            let Some(end) = events.last().map(|e| e.idx + 1) else { break };
            // Replayed findings were raised before the restart (or fell in a quiet period): drop them.
            self.evaluate(&events).await?;
            from = end;
        }
        Ok(())
    }

    /// The first index whose event happened at or after `at_ms`, by binary search over the
    /// indexes before the cursor (event times grow with the index).
    async fn first_index_at(&self, at_ms: i64) -> Result<i64, StoreError> {
        let (mut lo, mut hi) = (0i64, self.cursor);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.store.audit_events(mid, 1).await?.first() {
                Some(e) if e.occurred_at < at_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    async fn rules_of(&mut self, org: OrgId) -> Result<AlertRules, StoreError> {
        if let Some(r) = self.rules.get(&org) {
            return Ok(r.clone());
        }
        let r = self.store.alert_rules(org).await?;
        self.rules.insert(org, r.clone());
        Ok(r)
    }

    async fn observation(&mut self, e: &AuditRecord, l: &mut Lookups) -> Result<Option<Observation>, StoreError> {
        let (Some(org), Some(action)) = (e.org_id.map(OrgId), AuditAction::parse(&e.action)) else { return Ok(None) };
        let outcome = match e.outcome.as_str() {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            _ => Outcome::Denied,
        };
        let kind = ObservedKind::classify(action, outcome, e.patient_id.is_some());
        if kind == ObservedKind::Ignored {
            return Ok(None);
        }
        let actor = e.actor_user_id.map(UserId);
        let actor_role = match actor {
            Some(u) => match l.roles.get(&u) {
                Some(r) => *r,
                None => {
                    let r = self.store.user_role(u).await?;
                    l.roles.insert(u, r);
                    r
                }
            },
            None => None,
        };
        let patient = e.patient_id.map(PatientId);
        let patient_restricted = match patient {
            Some(p) if l.never_restricted.contains(&p) => false,
            Some(p) => match self.restricted.get(&p) {
                Some(r) => *r,
                None => match self.store.patient_restricted_before(p, e.idx).await? {
                    Some(r) => {
                        self.restricted.insert(p, r);
                        r
                    }
                    None => {
                        l.never_restricted.insert(p);
                        false
                    }
                },
            },
            None => false,
        };
        // Sign-in events name the account tried as their target.
        let account = (kind == ObservedKind::FailedLogin)
            .then(|| {
                e.target_id.as_deref().filter(|_| e.target_type.as_deref() == Some("user")).and_then(|t| uuid::Uuid::parse_str(t).ok())
            })
            .flatten()
            .map(UserId);
        Ok(Some(Observation { at_ms: e.occurred_at, org, actor, actor_role, kind, patient, patient_restricted, account }))
    }

    /// Feeds the events to the rules; returns the alerts to raise.
    async fn evaluate(&mut self, events: &[AuditRecord]) -> Result<Vec<NewAlert>, StoreError> {
        let mut lookups = Lookups::default();
        let mut found = Vec::new();
        for e in events {
            if e.action == AuditAction::OrgPolicy.as_str()
                && e.detail.contains("\"alert_rules\"")
                && let Some(org) = e.org_id
            {
                // The organisation changed its rules: they apply from the next event on.
                self.rules.remove(&OrgId(org));
            }
            if e.action == AuditAction::PatientRestrict.as_str()
                && e.outcome == "success"
                && let Some(p) = e.patient_id
            {
                let restricted = e.detail.contains("\"restricted\":true");
                self.restricted.insert(PatientId(p), restricted);
                lookups.never_restricted.remove(&PatientId(p));
            }
            let Some(o) = self.observation(e, &mut lookups).await? else { continue };
            let rules = self.rules_of(o.org).await?;
            for finding in self.engine.observe(&rules, &o) {
                found.push(NewAlert { finding, trigger_idx: e.idx });
            }
        }
        Ok(found)
    }

    /// Evaluates the next batch of events; returns how many were read.
    pub async fn step(&mut self) -> Result<usize, StoreError> {
        let events = self.store.audit_events(self.cursor, BATCH).await?;
        let Some(end) = events.last().map(|e| e.idx + 1) else { return Ok(0) };
        let found = match self.evaluate(&events).await {
            Ok(f) => f,
            Err(e) => {
                // The windows saw part of the batch: start over from the stored cursor.
                self.rebuild().await?;
                return Err(e);
            }
        };
        match self.store.raise_alerts(self.cursor, end, found).await {
            Ok(raised) => {
                self.cursor = end;
                for alert in raised {
                    self.publish(&alert).await;
                }
            }
            Err(e) => {
                // Another node moved the cursor, or the write failed: the windows are ahead
                // of the stored cursor, so rebuild them from it.
                self.rebuild().await?;
                if !matches!(e, StoreError::Conflict(_)) {
                    return Err(e);
                }
            }
        }
        let now = ward_store::now_ms();
        if now - self.last_prune_ms > 60_000 {
            self.engine.prune(now);
            self.last_prune_ms = now;
        }
        Ok(events.len())
    }

    async fn publish(&self, alert: &Alert) {
        let recipients = match self.store.compliance_officers(alert.org_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not look up who receives an alert; it is in the alert list");
                return;
            }
        };
        tracing::info!(rule = alert.rule.as_str(), alert_id = %alert.id, "anomaly alert raised");
        if recipients.is_empty() {
            return;
        }
        let frame = render_alert(alert);
        if let Err(e) = self.fanout.publish(Signal::Alert(Arc::new(AlertNotice { recipients, frame: frame.into() }))).await {
            tracing::warn!(error = %e, "could not publish an alert; it is in the alert list");
        }
    }

    /// Runs for ever: a step whenever events are waiting, else a short sleep.
    pub async fn run(mut self) {
        loop {
            match self.step().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "alert evaluation failed; retrying"),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The WebSocket frame of an alert: ids, the rule code, counts and the time; no names.
pub fn render_alert(a: &Alert) -> String {
    let frame = crate::api::alerts::AlertFrame { kind: "alert", alert: crate::api::alerts::AlertView::from(a.clone()) };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// Starts the evaluator, retrying until the database answers.
pub fn spawn(store: Store, fanout: Arc<dyn FanOut>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let task = loop {
            match AlertTask::start(store.clone(), fanout.clone()).await {
                Ok(t) => break t,
                Err(e) => {
                    tracing::warn!(error = %e, "alert evaluator cannot start yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        task.run().await;
    })
}
