//! Anomaly alert rules: per-organisation configuration and the pure evaluation of audit events
//! against it (sliding windows, thresholds, working hours). No I/O and no clock: every time is
//! the audited event's own time in Unix milliseconds, so replaying the same events gives the
//! same alerts (the server relies on this to rebuild its state after a restart).
//!
//! Serves 164.308(a)(1)(ii)(D) information system activity review. Findings carry ids, codes
//! and counts only, never names or content.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::audit::{AuditAction, Outcome};
use crate::ids::{OrgId, PatientId, UserId};
use crate::role::Role;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The longest window or repeat interval a rule may use, in minutes (one day). It bounds the
/// history the server replays to rebuild its windows after a restart.
pub const MAX_WINDOW_MINUTES: u32 = 1440;
/// The largest threshold a rule may use; it bounds the memory one subject's window takes.
pub const MAX_THRESHOLD: u32 = 10_000;
/// How many subjects (users, accounts, organisations) each window table tracks at most; past
/// this, expired entries are dropped and then the least recently active subject.
pub const MAX_TRACKED: usize = 100_000;

/// Which rule raised an alert. The codes are stable: they appear in audit events and frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleCode {
    /// One user read more distinct patients' records than allowed within the window.
    BulkPatientAccess,
    /// A workforce user acted outside the organisation's working hours.
    OffHoursAccess,
    /// Someone accessed the records of a patient flagged as restricted.
    RestrictedPatientAccess,
    /// Too many failed sign-ins on one account within the window.
    FailedLoginsAccount,
    /// Too many failed sign-ins across the organisation within the window.
    FailedLoginsOrg,
    /// The audit log was read or exported by a role other than compliance officer.
    AuditAccessByNonCompliance,
    /// A clinician was granted break-glass (emergency) access to a patient's conversations.
    /// Always raised, for every grant: it cannot be switched off.
    BreakGlassAccess,
    /// A breach-notification deadline is a week or a day away, or passed, with the notice not
    /// recorded (`incident.reminder`). Always raised: it cannot be switched off.
    IncidentDeadline,
    /// A business associate agreement in the vendor register is within its warning window
    /// of renewal, or past it (`vendor.baa_expiring`). Always raised, once per vendor,
    /// renewal date and stage.
    BaaExpiring,
}

impl RuleCode {
    /// Every rule.
    pub const ALL: [RuleCode; 9] = [
        RuleCode::BulkPatientAccess,
        RuleCode::OffHoursAccess,
        RuleCode::RestrictedPatientAccess,
        RuleCode::FailedLoginsAccount,
        RuleCode::FailedLoginsOrg,
        RuleCode::AuditAccessByNonCompliance,
        RuleCode::BreakGlassAccess,
        RuleCode::IncidentDeadline,
        RuleCode::BaaExpiring,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleCode::BulkPatientAccess => "bulk_patient_access",
            RuleCode::OffHoursAccess => "off_hours_access",
            RuleCode::RestrictedPatientAccess => "restricted_patient_access",
            RuleCode::FailedLoginsAccount => "failed_logins_account",
            RuleCode::FailedLoginsOrg => "failed_logins_org",
            RuleCode::AuditAccessByNonCompliance => "audit_access_by_non_compliance",
            RuleCode::BreakGlassAccess => "break_glass_access",
            RuleCode::IncidentDeadline => "incident_deadline",
            RuleCode::BaaExpiring => "baa_expiring",
        }
    }

    /// Parses a stable code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    const ORDER: [Weekday; 7] = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

    /// The weekday of a day counted from 1970-01-01 (a Thursday).
    fn of_epoch_day(day: i64) -> Weekday {
        Self::ORDER[(day + 3).rem_euclid(7) as usize]
    }
}

/// An organisation's anomaly rules. Every rule can be switched off on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRules {
    /// (a) one user reading many distinct patients' records.
    pub bulk_access: BulkAccessRule,
    /// (b) activity outside working hours.
    pub working_hours: WorkingHoursRule,
    /// (c) any access to a restricted patient's records.
    pub restricted_patient: RestrictedPatientRule,
    /// (d) bursts of failed sign-ins.
    pub failed_logins: FailedLoginsRule,
    /// (e) audit log reads and exports by roles other than compliance officer.
    pub audit_access: AuditAccessRule,
}

/// One user reading more than `max_patients` distinct patients' records (patient records,
/// conversations, messages) within `window_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAccessRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Distinct patients allowed within the window (1 to 10000); one more raises an alert.
    pub max_patients: u32,
    /// The sliding window in minutes (1 to 1440). After an alert, the same user raises no
    /// other of this kind for one window.
    pub window_minutes: u32,
}

/// Working hours: activity by workforce users outside them raises an alert. Times are local
/// to a fixed offset from UTC (no daylight-saving rules: adjust the offset when clocks change).
/// A start after the end is an overnight shift, belonging to the day it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHoursRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// The working days (at least one, no repeats).
    pub days: Vec<Weekday>,
    /// Start of work, `HH:MM` (24-hour).
    pub start: String,
    /// End of work, `HH:MM` (24-hour; `24:00` for midnight); not equal to `start`.
    pub end: String,
    /// Offset of local time from UTC in minutes (-840 to 840; e.g. -300 for UTC-05:00).
    pub utc_offset_minutes: i32,
    /// After an alert, the same user raises no other of this kind for this many minutes (0 to 1440).
    pub repeat_after_minutes: u32,
}

/// Any access to the records of a patient flagged as restricted (staff member, VIP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictedPatientRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Accesses by the same user to the same patient within this many minutes after an
    /// alert are folded into it (0 to 1440; 0 alerts on every access).
    pub repeat_after_minutes: u32,
}

/// `per_account` failed sign-ins on one account, or `per_org` across the organisation, within
/// `window_minutes`. Sign-ins with a login name that does not exist belong to no organisation
/// and are not counted (lockout still applies to them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedLoginsRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Failures on one account that raise an alert (1 to 10000).
    pub per_account: u32,
    /// Failures across the organisation that raise an alert (1 to 10000).
    pub per_org: u32,
    /// The sliding window in minutes (1 to 1440); also the quiet time after an alert.
    pub window_minutes: u32,
}

/// Audit log reads (checkpoints, proofs, searches, alert lists) and exports by any role other
/// than compliance officer, including refused attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditAccessRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// After an alert, the same user raises no other of this kind for this many minutes (0 to 1440).
    pub repeat_after_minutes: u32,
}

impl Default for AlertRules {
    /// The rules of an organisation that has not configured any: everything on except
    /// working hours, which need the organisation's own hours and offset.
    fn default() -> Self {
        AlertRules {
            bulk_access: BulkAccessRule { enabled: true, max_patients: 20, window_minutes: 60 },
            working_hours: WorkingHoursRule {
                enabled: false,
                days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
                start: "07:00".into(),
                end: "19:00".into(),
                utc_offset_minutes: 0,
                repeat_after_minutes: 60,
            },
            restricted_patient: RestrictedPatientRule { enabled: true, repeat_after_minutes: 10 },
            failed_logins: FailedLoginsRule { enabled: true, per_account: 10, per_org: 50, window_minutes: 5 },
            audit_access: AuditAccessRule { enabled: true, repeat_after_minutes: 60 },
        }
    }
}

fn in_range(field: &'static str, rule: &'static str, ok: bool) -> Result<(), DomainError> {
    if ok { Ok(()) } else { Err(DomainError::invalid(field, rule)) }
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
fn parse_clock(field: &'static str, s: &str) -> Result<u32, DomainError> {
    let err = || DomainError::invalid(field, "must be HH:MM between 00:00 and 24:00");
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(err());
    }
    let (h, m) = (u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'), u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0'));
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

impl AlertRules {
    /// Checks every value; the error names the field and the rule it broke.
    pub fn validate(&self) -> Result<(), DomainError> {
        let window = |w: u32| (1..=MAX_WINDOW_MINUTES).contains(&w);
        let threshold = |n: u32| (1..=MAX_THRESHOLD).contains(&n);
        let b = &self.bulk_access;
        in_range("bulk_access.max_patients", "must be between 1 and 10000", threshold(b.max_patients))?;
        in_range("bulk_access.window_minutes", "must be between 1 and 1440", window(b.window_minutes))?;
        let w = &self.working_hours;
        in_range("working_hours.days", "must name at least one day", !w.days.is_empty())?;
        let mut seen = w.days.clone();
        seen.sort_by_key(|d| *d as u8);
        seen.dedup();
        in_range("working_hours.days", "must not repeat a day", seen.len() == w.days.len())?;
        let (start, end) = (parse_clock("working_hours.start", &w.start)?, parse_clock("working_hours.end", &w.end)?);
        in_range("working_hours.start", "must be before 24:00", start < 24 * 60)?;
        in_range("working_hours.end", "must differ from start", start != end)?;
        in_range("working_hours.utc_offset_minutes", "must be between -840 and 840", (-840..=840).contains(&w.utc_offset_minutes))?;
        in_range("working_hours.repeat_after_minutes", "must be between 0 and 1440", w.repeat_after_minutes <= MAX_WINDOW_MINUTES)?;
        let r = &self.restricted_patient;
        in_range("restricted_patient.repeat_after_minutes", "must be between 0 and 1440", r.repeat_after_minutes <= MAX_WINDOW_MINUTES)?;
        let f = &self.failed_logins;
        in_range("failed_logins.per_account", "must be between 1 and 10000", threshold(f.per_account))?;
        in_range("failed_logins.per_org", "must be between 1 and 10000", threshold(f.per_org))?;
        in_range("failed_logins.window_minutes", "must be between 1 and 1440", window(f.window_minutes))?;
        let a = &self.audit_access;
        in_range("audit_access.repeat_after_minutes", "must be between 0 and 1440", a.repeat_after_minutes <= MAX_WINDOW_MINUTES)?;
        Ok(())
    }

    /// How many rules are switched on (for the audit detail of a change).
    pub fn enabled_count(&self) -> i64 {
        [
            self.bulk_access.enabled,
            self.working_hours.enabled,
            self.restricted_patient.enabled,
            self.failed_logins.enabled,
            self.audit_access.enabled,
        ]
        .into_iter()
        .filter(|e| *e)
        .count() as i64
    }
}

impl WorkingHoursRule {
    /// Whether the instant `at_ms` (Unix ms) falls inside working hours. Call only on
    /// validated rules; an unparsable clock counts as never working.
    pub fn is_working_time(&self, at_ms: i64) -> bool {
        let (Ok(start), Ok(end)) = (parse_clock("start", &self.start), parse_clock("end", &self.end)) else { return false };
        let local = at_ms + i64::from(self.utc_offset_minutes) * MINUTE_MS;
        let day = local.div_euclid(DAY_MS);
        let minute = (local.rem_euclid(DAY_MS) / MINUTE_MS) as u32;
        let works = |d: i64| self.days.contains(&Weekday::of_epoch_day(d));
        if start < end {
            works(day) && (start..end).contains(&minute)
        } else {
            // Overnight: the evening part belongs to today, the morning part to yesterday's shift.
            (works(day) && minute >= start) || (works(day - 1) && minute < end)
        }
    }
}

/// What an audit event means to the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedKind {
    /// An access to a patient's records (`read`: the content was read, not written).
    PatientRecord {
        /// Whether it was a read (counts towards bulk access).
        read: bool,
    },
    /// Other activity a person chose to do (counts towards working hours).
    Activity,
    /// A failed sign-in or second-factor check on the given account.
    FailedLogin,
    /// A read or export of the audit log, allowed or refused.
    AuditAccess,
    /// A break-glass grant: emergency access to a patient's conversations.
    BreakGlass,
    /// A breach-notification deadline approaching or passed.
    IncidentDeadline,
    /// A BAA nearing or past its renewal date.
    BaaExpiry,
    /// Background or bookkeeping events (token refresh, alerts themselves): never alert.
    Ignored,
}

impl ObservedKind {
    /// Classifies an audit action. Alerts and their acknowledgements are `Ignored`, so an
    /// alert never raises another.
    pub fn classify(action: AuditAction, outcome: Outcome, has_patient: bool) -> ObservedKind {
        use AuditAction as A;
        match action {
            A::AlertRaised | A::AlertAcknowledge => ObservedKind::Ignored,
            A::TokenRefresh | A::RefreshReuse | A::Logout | A::SessionRevoke | A::SessionIdleTimeout | A::StreamReplay => {
                ObservedKind::Ignored
            }
            A::Login | A::MfaVerify | A::StepUp if outcome == Outcome::Failure => ObservedKind::FailedLogin,
            A::AuditLogRead | A::AuditExport => ObservedKind::AuditAccess,
            _ if outcome != Outcome::Success => ObservedKind::Ignored,
            // Flagging a patient is administration of the record, not access to it.
            A::PatientRestrict => ObservedKind::Activity,
            A::BreakGlassRequest => ObservedKind::BreakGlass,
            A::IncidentReminder => ObservedKind::IncidentDeadline,
            A::VendorBaaExpiring => ObservedKind::BaaExpiry,
            A::PatientRead | A::ConversationRead | A::MessageRead | A::AttachmentDownload | A::BreakGlassRead if has_patient => {
                ObservedKind::PatientRecord { read: true }
            }
            _ if has_patient => ObservedKind::PatientRecord { read: false },
            _ => ObservedKind::Activity,
        }
    }
}

/// One audit event as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The event's time (Unix ms).
    pub at_ms: i64,
    /// The organisation.
    pub org: OrgId,
    /// The acting user, if any.
    pub actor: Option<UserId>,
    /// The acting user's current role, if known.
    pub actor_role: Option<Role>,
    /// What the event means.
    pub kind: ObservedKind,
    /// The patient involved.
    pub patient: Option<PatientId>,
    /// Whether that patient is flagged as restricted.
    pub patient_restricted: bool,
    /// For failed sign-ins: the account tried.
    pub account: Option<UserId>,
}

/// An alert to raise: which rule, about whom, with the numbers that tripped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: RuleCode,
    /// The organisation.
    pub org: OrgId,
    /// The time of the event that tripped it (Unix ms).
    pub at_ms: i64,
    /// The user concerned (the actor, or the account attacked).
    pub subject_user: Option<UserId>,
    /// The patient concerned.
    pub subject_patient: Option<PatientId>,
    /// The count observed in the window (distinct patients, failures), if the rule counts.
    pub count: Option<u32>,
    /// The threshold in force.
    pub threshold: Option<u32>,
    /// The window in minutes, if the rule has one.
    pub window_minutes: Option<u32>,
}

/// A sliding window of event times (non-decreasing), keeping at most `cap` of them.
#[derive(Debug, Default)]
struct Times(VecDeque<i64>);

impl Times {
    /// Adds `at`, drops what left the window, and returns how many remain.
    fn push(&mut self, at: i64, window_ms: i64, cap: usize) -> usize {
        while self.0.front().is_some_and(|&t| t <= at - window_ms) {
            self.0.pop_front();
        }
        self.0.push_back(at);
        while self.0.len() > cap {
            self.0.pop_front();
        }
        self.0.len()
    }

    fn last(&self) -> i64 {
        self.0.back().copied().unwrap_or(i64::MIN)
    }
}

/// Distinct patients one user read within a sliding window.
#[derive(Debug, Default)]
struct Patients {
    /// Reads in time order; an entry is stale when `last` has a later time for its patient.
    order: VecDeque<(i64, PatientId)>,
    last: HashMap<PatientId, i64>,
}

impl Patients {
    /// Adds a read; returns the number of distinct patients read within the window.
    fn push(&mut self, at: i64, patient: PatientId, window_ms: i64, cap: usize) -> usize {
        while let Some(&(t, p)) = self.order.front() {
            if t > at - window_ms {
                break;
            }
            self.order.pop_front();
            if self.last.get(&p) == Some(&t) {
                self.last.remove(&p);
            }
        }
        self.last.insert(patient, at);
        self.order.push_back((at, patient));
        if self.order.len() > 4 * cap {
            // Repeated reads of the same patients left stale entries: rebuild from `last`.
            let mut fresh: Vec<_> = self.last.iter().map(|(p, t)| (*t, *p)).collect();
            fresh.sort_by_key(|(t, _)| *t);
            self.order = fresh.into();
        }
        while self.last.len() > cap {
            if let Some((t, p)) = self.order.pop_front()
                && self.last.get(&p) == Some(&t)
            {
                self.last.remove(&p);
            }
        }
        self.last.len()
    }

    fn last_time(&self) -> i64 {
        self.order.back().map_or(i64::MIN, |(t, _)| *t)
    }
}

type QuietKey = (RuleCode, OrgId, Option<UserId>, Option<PatientId>);

/// The sliding-window state of every rule, fed one observation at a time in log order.
/// Memory is bounded by [`MAX_TRACKED`] subjects per table and each subject's threshold.
#[derive(Debug, Default)]
pub struct AlertEngine {
    bulk: HashMap<UserId, Patients>,
    account_failures: HashMap<UserId, Times>,
    org_failures: HashMap<OrgId, Times>,
    /// Until when (Unix ms) a given rule and subject stays quiet after an alert.
    quiet: HashMap<QuietKey, i64>,
}

/// Makes room for one more key: drops the entry with the oldest activity (rarely needed:
/// [`AlertEngine::prune`] drops expired entries first).
fn make_room<K: Copy + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, last: impl Fn(&V) -> i64) {
    if map.len() < MAX_TRACKED {
        return;
    }
    if let Some(k) = map.iter().min_by_key(|(_, v)| last(v)).map(|(k, _)| *k) {
        map.remove(&k);
    }
}

impl AlertEngine {
    /// An engine with empty windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluates one observation against the organisation's rules; returns the alerts it raises.
    pub fn observe(&mut self, rules: &AlertRules, o: &Observation) -> Vec<Finding> {
        let mut out = Vec::new();
        let base = Finding {
            rule: RuleCode::BulkPatientAccess,
            org: o.org,
            at_ms: o.at_ms,
            subject_user: o.actor,
            subject_patient: None,
            count: None,
            threshold: None,
            window_minutes: None,
        };
        let workforce_actor = o.actor.is_some() && o.actor_role != Some(Role::Patient);
        match o.kind {
            ObservedKind::Ignored => return out,
            ObservedKind::PatientRecord { read } => {
                if rules.restricted_patient.enabled
                    && o.patient_restricted
                    && let Some(p) = o.patient
                {
                    let f = Finding { rule: RuleCode::RestrictedPatientAccess, subject_patient: Some(p), ..base.clone() };
                    self.raise(f, rules.restricted_patient.repeat_after_minutes, &mut out);
                }
                if read
                    && rules.bulk_access.enabled
                    && let (Some(user), Some(p)) = (o.actor, o.patient)
                {
                    let b = &rules.bulk_access;
                    let window_ms = i64::from(b.window_minutes) * MINUTE_MS;
                    if !self.bulk.contains_key(&user) {
                        make_room(&mut self.bulk, Patients::last_time);
                    }
                    let n = self.bulk.entry(user).or_default().push(o.at_ms, p, window_ms, b.max_patients as usize + 1);
                    if n > b.max_patients as usize {
                        let f = Finding {
                            rule: RuleCode::BulkPatientAccess,
                            count: Some(n as u32),
                            threshold: Some(b.max_patients),
                            window_minutes: Some(b.window_minutes),
                            ..base.clone()
                        };
                        self.raise(f, b.window_minutes, &mut out);
                    }
                }
            }
            ObservedKind::FailedLogin => {
                let f = &rules.failed_logins;
                if f.enabled {
                    let window_ms = i64::from(f.window_minutes) * MINUTE_MS;
                    if let Some(account) = o.account {
                        if !self.account_failures.contains_key(&account) {
                            make_room(&mut self.account_failures, Times::last);
                        }
                        let n = self.account_failures.entry(account).or_default().push(o.at_ms, window_ms, f.per_account as usize);
                        if n >= f.per_account as usize {
                            let finding = Finding {
                                rule: RuleCode::FailedLoginsAccount,
                                subject_user: Some(account),
                                count: Some(n as u32),
                                threshold: Some(f.per_account),
                                window_minutes: Some(f.window_minutes),
                                ..base.clone()
                            };
                            self.raise(finding, f.window_minutes, &mut out);
                        }
                    }
                    if !self.org_failures.contains_key(&o.org) {
                        make_room(&mut self.org_failures, Times::last);
                    }
                    let n = self.org_failures.entry(o.org).or_default().push(o.at_ms, window_ms, f.per_org as usize);
                    if n >= f.per_org as usize {
                        let finding = Finding {
                            rule: RuleCode::FailedLoginsOrg,
                            subject_user: None,
                            count: Some(n as u32),
                            threshold: Some(f.per_org),
                            window_minutes: Some(f.window_minutes),
                            ..base.clone()
                        };
                        self.raise(finding, f.window_minutes, &mut out);
                    }
                }
                // A failed sign-in is not activity of the account's owner.
                return out;
            }
            ObservedKind::AuditAccess => {
                if rules.audit_access.enabled && o.actor_role != Some(Role::ComplianceOfficer) && o.actor.is_some() {
                    let f = Finding { rule: RuleCode::AuditAccessByNonCompliance, ..base.clone() };
                    self.raise(f, rules.audit_access.repeat_after_minutes, &mut out);
                }
            }
            ObservedKind::BreakGlass => {
                // Every grant alerts at once, whatever the rules say: no quiet period.
                let f = Finding { rule: RuleCode::BreakGlassAccess, subject_patient: o.patient, ..base.clone() };
                self.raise(f, 0, &mut out);
            }
            ObservedKind::IncidentDeadline => {
                // Each reminder is recorded once per obligation and stage: alert every one.
                let f = Finding { rule: RuleCode::IncidentDeadline, ..base.clone() };
                self.raise(f, 0, &mut out);
            }
            ObservedKind::BaaExpiry => {
                // The register check records each stage once: every event alerts.
                let f = Finding { rule: RuleCode::BaaExpiring, subject_user: None, ..base };
                self.raise(f, 0, &mut out);
                return out;
            }
            ObservedKind::Activity => {}
        }
        let w = &rules.working_hours;
        if w.enabled && workforce_actor && !w.is_working_time(o.at_ms) {
            let f = Finding { rule: RuleCode::OffHoursAccess, ..base };
            self.raise(f, w.repeat_after_minutes, &mut out);
        }
        out
    }

    /// Emits the finding unless the same rule and subject is still quiet after an earlier alert.
    fn raise(&mut self, f: Finding, quiet_minutes: u32, out: &mut Vec<Finding>) {
        let key = (f.rule, f.org, f.subject_user, f.subject_patient);
        if self.quiet.get(&key).is_some_and(|&until| f.at_ms < until) {
            return;
        }
        if quiet_minutes > 0 {
            if !self.quiet.contains_key(&key) {
                make_room(&mut self.quiet, |until| *until);
            }
            self.quiet.insert(key, f.at_ms + i64::from(quiet_minutes) * MINUTE_MS);
        }
        out.push(f);
    }

    /// Forgets every window and quiet period that ended before `now_ms` minus the longest
    /// window: call now and then to return memory of subjects that went quiet.
    pub fn prune(&mut self, now_ms: i64) {
        let horizon = now_ms - i64::from(MAX_WINDOW_MINUTES) * MINUTE_MS;
        self.bulk.retain(|_, p| p.last_time() > horizon);
        self.account_failures.retain(|_, t| t.last() > horizon);
        self.org_failures.retain(|_, t| t.last() > horizon);
        self.quiet.retain(|_, until| *until > now_ms);
    }

    /// How many subjects the engine tracks (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.bulk.len() + self.account_failures.len() + self.org_failures.len() + self.quiet.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_764_547_200_000; // 2025-12-01 00:00 UTC, a Monday

    fn obs(kind: ObservedKind, at_ms: i64, actor: UserId, patient: Option<PatientId>) -> Observation {
        Observation {
            at_ms,
            org: OrgId(uuid::Uuid::nil()),
            actor: Some(actor),
            actor_role: Some(Role::Clinician),
            kind,
            patient,
            patient_restricted: false,
            account: None,
        }
    }

    fn read(at_ms: i64, actor: UserId, patient: PatientId) -> Observation {
        obs(ObservedKind::PatientRecord { read: true }, at_ms, actor, Some(patient))
    }

    #[test]
    fn defaults_are_valid_and_enabled() {
        let r = AlertRules::default();
        r.validate().unwrap();
        assert_eq!((r.bulk_access.max_patients, r.bulk_access.window_minutes), (20, 60));
        assert_eq!((r.failed_logins.per_account, r.failed_logins.window_minutes), (10, 5));
        assert_eq!(r.enabled_count(), 4);
    }

    #[test]
    fn every_break_glass_grant_alerts_even_with_every_rule_off() {
        let mut rules = AlertRules::default();
        rules.bulk_access.enabled = false;
        rules.restricted_patient.enabled = false;
        rules.failed_logins.enabled = false;
        rules.audit_access.enabled = false;
        let mut e = AlertEngine::new();
        let (u, p) = (UserId::new(), PatientId::new());
        let kind = ObservedKind::classify(AuditAction::BreakGlassRequest, Outcome::Success, true);
        assert_eq!(kind, ObservedKind::BreakGlass);
        for i in 0..2 {
            let f = e.observe(&rules, &obs(kind, T0 + 12 * 3_600_000 + i, u, Some(p)));
            assert_eq!(f.len(), 1, "grant {i} alerts");
            assert_eq!((f[0].rule, f[0].subject_user, f[0].subject_patient), (RuleCode::BreakGlassAccess, Some(u), Some(p)));
        }
        assert_eq!(ObservedKind::classify(AuditAction::BreakGlassRequest, Outcome::Denied, true), ObservedKind::Ignored);
        assert_eq!(ObservedKind::classify(AuditAction::IncidentReminder, Outcome::Success, false), ObservedKind::IncidentDeadline);
        assert_eq!(ObservedKind::classify(AuditAction::BreakGlassRead, Outcome::Success, true), ObservedKind::PatientRecord { read: true });
        assert_eq!(ObservedKind::classify(AuditAction::StepUp, Outcome::Failure, false), ObservedKind::FailedLogin);
    }

    #[test]
    fn every_baa_expiry_event_alerts_with_no_subject() {
        let mut e = AlertEngine::new();
        let kind = ObservedKind::classify(AuditAction::VendorBaaExpiring, Outcome::Success, false);
        assert_eq!(kind, ObservedKind::BaaExpiry);
        for i in 0..2 {
            // At 03:00 UTC: the check is not activity of anyone, so no off-hours alert either.
            let f = e.observe(&AlertRules::default(), &obs(kind, T0 + 3 * 3_600_000 + i, UserId::new(), None));
            assert_eq!(f.len(), 1, "event {i} alerts");
            assert_eq!((f[0].rule, f[0].subject_user, f[0].subject_patient), (RuleCode::BaaExpiring, None, None));
        }
        assert_eq!(RuleCode::parse("baa_expiring"), Some(RuleCode::BaaExpiring));
    }

    #[test]
    fn validation_names_the_field() {
        let mut r = AlertRules::default();
        r.bulk_access.max_patients = 0;
        assert!(r.validate().unwrap_err().to_string().starts_with("bulk_access.max_patients"));
        let mut r = AlertRules::default();
        r.working_hours.start = "7:00".into();
        assert!(r.validate().unwrap_err().to_string().starts_with("working_hours.start"));
        let mut r = AlertRules::default();
        r.working_hours.end = r.working_hours.start.clone();
        assert!(r.validate().unwrap_err().to_string().starts_with("working_hours.end"));
        let mut r = AlertRules::default();
        r.working_hours.days = vec![Weekday::Mon, Weekday::Mon];
        assert!(r.validate().is_err());
        r.working_hours.days = vec![];
        assert!(r.validate().is_err());
        let mut r = AlertRules::default();
        r.working_hours.utc_offset_minutes = 900;
        assert!(r.validate().is_err());
        let mut r = AlertRules::default();
        r.failed_logins.window_minutes = 1441;
        assert!(r.validate().is_err());
        let mut r = AlertRules::default();
        r.working_hours.end = "24:00".into();
        r.validate().unwrap();
        r.working_hours.end = "24:01".into();
        assert!(r.validate().is_err());
    }

    #[test]
    fn working_hours_use_the_offset_and_overnight_shifts() {
        let mut w = AlertRules::default().working_hours;
        // Monday 12:00 UTC is working time; Saturday is not.
        assert!(w.is_working_time(T0 + 12 * 3_600_000));
        assert!(!w.is_working_time(T0 + 5 * DAY_MS + 12 * 3_600_000));
        assert!(!w.is_working_time(T0 + 6 * 3_600_000 + 59 * MINUTE_MS));
        assert!(w.is_working_time(T0 + 7 * 3_600_000));
        assert!(!w.is_working_time(T0 + 19 * 3_600_000));
        // At UTC-05:00, Monday 06:00 UTC is Sunday 01:00 local.
        w.utc_offset_minutes = -300;
        assert!(!w.is_working_time(T0 + 14 * 3_600_000 - DAY_MS));
        assert!(w.is_working_time(T0 + 14 * 3_600_000));
        // Night shift 22:00-06:00 starting Mondays only: Tuesday 03:00 is in, Monday 03:00 is not.
        let night = WorkingHoursRule { days: vec![Weekday::Mon], start: "22:00".into(), end: "06:00".into(), utc_offset_minutes: 0, ..w };
        assert!(night.is_working_time(T0 + 23 * 3_600_000));
        assert!(night.is_working_time(T0 + DAY_MS + 3 * 3_600_000));
        assert!(!night.is_working_time(T0 + 3 * 3_600_000));
        assert!(!night.is_working_time(T0 + DAY_MS + 23 * 3_600_000));
    }

    #[test]
    fn bulk_access_counts_distinct_patients_and_stays_quiet_for_a_window() {
        let rules = AlertRules { bulk_access: BulkAccessRule { enabled: true, max_patients: 3, window_minutes: 10 }, ..Default::default() };
        let mut e = AlertEngine::new();
        let u = UserId::new();
        let ps: Vec<_> = (0..6).map(|_| PatientId::new()).collect();
        // Re-reading the same patient does not count twice.
        for i in 0..5 {
            assert!(e.observe(&rules, &read(T0 + i, u, ps[0])).is_empty());
        }
        assert!(e.observe(&rules, &read(T0 + 10, u, ps[1])).is_empty());
        assert!(e.observe(&rules, &read(T0 + 20, u, ps[2])).is_empty());
        let f = e.observe(&rules, &read(T0 + 30, u, ps[3]));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].rule, f[0].count, f[0].threshold, f[0].window_minutes), (RuleCode::BulkPatientAccess, Some(4), Some(3), Some(10)));
        assert_eq!(f[0].subject_user, Some(u));
        // Quiet for the window, then it may alert again.
        assert!(e.observe(&rules, &read(T0 + 40, u, ps[4])).is_empty());
        let later = T0 + 10 * MINUTE_MS + 41;
        for (i, p) in ps.iter().take(3).enumerate() {
            assert!(e.observe(&rules, &read(later + i as i64, u, *p)).is_empty());
        }
        assert_eq!(e.observe(&rules, &read(later + 5, u, ps[5])).len(), 1);
    }

    #[test]
    fn reads_by_others_or_writes_do_not_count_and_disabled_rules_are_silent() {
        let mut rules =
            AlertRules { bulk_access: BulkAccessRule { enabled: true, max_patients: 1, window_minutes: 10 }, ..Default::default() };
        let mut e = AlertEngine::new();
        let (a, b) = (UserId::new(), UserId::new());
        assert!(e.observe(&rules, &read(T0, a, PatientId::new())).is_empty());
        assert!(e.observe(&rules, &read(T0, b, PatientId::new())).is_empty());
        let write = obs(ObservedKind::PatientRecord { read: false }, T0, a, Some(PatientId::new()));
        assert!(e.observe(&rules, &write).is_empty());
        rules.bulk_access.enabled = false;
        assert!(e.observe(&rules, &read(T0, a, PatientId::new())).is_empty());
    }

    #[test]
    fn restricted_patients_alert_on_access_folding_repeats() {
        let rules = AlertRules::default();
        let mut e = AlertEngine::new();
        let (u, p) = (UserId::new(), PatientId::new());
        let mut o = obs(ObservedKind::PatientRecord { read: false }, T0, u, Some(p));
        o.patient_restricted = true;
        let f = e.observe(&rules, &o);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].rule, f[0].subject_user, f[0].subject_patient), (RuleCode::RestrictedPatientAccess, Some(u), Some(p)));
        o.at_ms += MINUTE_MS;
        assert!(e.observe(&rules, &o).is_empty(), "folded into the first alert");
        o.at_ms = T0 + 10 * MINUTE_MS;
        assert_eq!(e.observe(&rules, &o).len(), 1);
        o.actor = Some(UserId::new());
        assert_eq!(e.observe(&rules, &o).len(), 1, "another user alerts on its own");
    }

    #[test]
    fn failed_logins_alert_per_account_and_per_org() {
        let rules = AlertRules {
            failed_logins: FailedLoginsRule { enabled: true, per_account: 3, per_org: 5, window_minutes: 5 },
            ..Default::default()
        };
        let mut e = AlertEngine::new();
        let (x, y) = (UserId::new(), UserId::new());
        let fail = |at, account| Observation {
            kind: ObservedKind::FailedLogin,
            account: Some(account),
            actor: Some(account),
            ..obs(ObservedKind::FailedLogin, at, account, None)
        };
        assert!(e.observe(&rules, &fail(T0, x)).is_empty());
        assert!(e.observe(&rules, &fail(T0 + 1, x)).is_empty());
        let f = e.observe(&rules, &fail(T0 + 2, x));
        assert_eq!(f.iter().map(|f| f.rule).collect::<Vec<_>>(), vec![RuleCode::FailedLoginsAccount]);
        assert_eq!((f[0].subject_user, f[0].count), (Some(x), Some(3)));
        assert!(e.observe(&rules, &fail(T0 + 3, y)).is_empty());
        let f = e.observe(&rules, &fail(T0 + 4, y));
        assert_eq!(f.iter().map(|f| f.rule).collect::<Vec<_>>(), vec![RuleCode::FailedLoginsOrg]);
        assert_eq!((f[0].subject_user, f[0].count), (None, Some(5)));
        // Failures that left the window are forgotten.
        assert!(e.observe(&rules, &fail(T0 + 6 * MINUTE_MS, y)).is_empty());
    }

    #[test]
    fn audit_access_alerts_for_roles_other_than_compliance_officer() {
        let rules = AlertRules::default();
        let mut e = AlertEngine::new();
        let mut o = obs(ObservedKind::AuditAccess, T0, UserId::new(), None);
        o.actor_role = Some(Role::ComplianceOfficer);
        assert!(e.observe(&rules, &o).is_empty());
        o.actor_role = Some(Role::Admin);
        assert_eq!(e.observe(&rules, &o)[0].rule, RuleCode::AuditAccessByNonCompliance);
        o.at_ms += 1;
        assert!(e.observe(&rules, &o).is_empty(), "quiet for repeat_after_minutes");
    }

    #[test]
    fn off_hours_activity_alerts_for_workforce_only() {
        let mut rules = AlertRules::default();
        rules.working_hours.enabled = true;
        let mut e = AlertEngine::new();
        let night = T0 + 2 * 3_600_000;
        let mut o = obs(ObservedKind::Activity, night, UserId::new(), None);
        assert_eq!(e.observe(&rules, &o)[0].rule, RuleCode::OffHoursAccess);
        o.actor = Some(UserId::new());
        o.actor_role = Some(Role::Patient);
        assert!(e.observe(&rules, &o).is_empty(), "patients use the portal when they like");
        o.actor_role = Some(Role::Nurse);
        o.at_ms = T0 + 9 * 3_600_000;
        assert!(e.observe(&rules, &o).is_empty());
        o.kind = ObservedKind::Ignored;
        o.at_ms = night;
        assert!(e.observe(&rules, &o).is_empty());
    }

    #[test]
    fn alerts_never_trigger_alerts() {
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Denied] {
            for has_patient in [false, true] {
                assert_eq!(ObservedKind::classify(AuditAction::AlertRaised, outcome, has_patient), ObservedKind::Ignored);
                assert_eq!(ObservedKind::classify(AuditAction::AlertAcknowledge, outcome, has_patient), ObservedKind::Ignored);
            }
        }
        assert_eq!(ObservedKind::classify(AuditAction::MessageRead, Outcome::Success, true), ObservedKind::PatientRecord { read: true });
        assert_eq!(ObservedKind::classify(AuditAction::MessageSend, Outcome::Success, true), ObservedKind::PatientRecord { read: false });
        assert_eq!(ObservedKind::classify(AuditAction::Login, Outcome::Failure, false), ObservedKind::FailedLogin);
        assert_eq!(ObservedKind::classify(AuditAction::AuditLogRead, Outcome::Denied, false), ObservedKind::AuditAccess);
        assert_eq!(ObservedKind::classify(AuditAction::PatientRestrict, Outcome::Success, true), ObservedKind::Activity);
    }

    #[test]
    fn prune_forgets_quiet_subjects() {
        let rules = AlertRules::default();
        let mut e = AlertEngine::new();
        e.observe(&rules, &read(T0, UserId::new(), PatientId::new()));
        assert_eq!(e.tracked(), 1);
        e.prune(T0 + i64::from(MAX_WINDOW_MINUTES) * MINUTE_MS + 1);
        assert_eq!(e.tracked(), 0);
    }

    proptest! {
        /// The failure window agrees with a naive recount over the whole history.
        #[test]
        fn failure_window_matches_a_naive_count(gaps in proptest::collection::vec(0i64..120_000, 1..80), n in 1u32..6, w in 1u32..4) {
            let rules = AlertRules { failed_logins: FailedLoginsRule { enabled: true, per_account: n, per_org: MAX_THRESHOLD, window_minutes: w }, ..Default::default() };
            let mut e = AlertEngine::new();
            let account = UserId::new();
            let window_ms = i64::from(w) * MINUTE_MS;
            let mut times = Vec::new();
            let mut at = T0;
            let mut quiet_until = i64::MIN;
            for gap in gaps {
                at += gap;
                times.push(at);
                let in_window = times.iter().filter(|&&t| t > at - window_ms).count();
                let expect = in_window >= n as usize && at >= quiet_until;
                if expect { quiet_until = at + window_ms; }
                let o = Observation { kind: ObservedKind::FailedLogin, account: Some(account), ..obs(ObservedKind::FailedLogin, at, account, None) };
                let got = e.observe(&rules, &o).iter().any(|f| f.rule == RuleCode::FailedLoginsAccount);
                prop_assert_eq!(got, expect);
            }
        }

        /// The distinct-patient window agrees with a naive recount over the whole history.
        #[test]
        fn distinct_patient_window_matches_a_naive_count(reads in proptest::collection::vec((0i64..200_000, 0usize..8), 1..120), n in 1u32..6, w in 1u32..5) {
            let rules = AlertRules { bulk_access: BulkAccessRule { enabled: true, max_patients: n, window_minutes: w }, ..Default::default() };
            let mut e = AlertEngine::new();
            let user = UserId::new();
            let patients: Vec<_> = (0..8).map(|_| PatientId::new()).collect();
            let window_ms = i64::from(w) * MINUTE_MS;
            let mut history: Vec<(i64, usize)> = Vec::new();
            let mut at = T0;
            let mut quiet_until = i64::MIN;
            for (gap, p) in reads {
                at += gap;
                history.push((at, p));
                let distinct: std::collections::HashSet<_> = history.iter().filter(|(t, _)| *t > at - window_ms).map(|(_, p)| *p).collect();
                let expect = distinct.len() > n as usize && at >= quiet_until;
                if expect { quiet_until = at + window_ms; }
                let got = e.observe(&rules, &read(at, user, patients[p]));
                prop_assert_eq!(!got.is_empty(), expect);
                if let Some(f) = got.first() {
                    prop_assert_eq!(f.count, Some(distinct.len().min(n as usize + 1) as u32));
                }
            }
        }

        /// Working hours repeat every week, and a rule with every day and 00:00-24:00 always works.
        #[test]
        fn working_hours_repeat_weekly(at in -4_000_000_000_000i64..4_000_000_000_000, offset in -840i32..=840, start in 0u32..1440, len in 1u32..1440) {
            let end = (start + len) % 1440;
            let clock = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
            let w = WorkingHoursRule {
                enabled: true,
                days: vec![Weekday::Mon, Weekday::Wed, Weekday::Sat],
                start: clock(start),
                end: if end == 0 { "24:00".into() } else { clock(end) },
                utc_offset_minutes: offset,
                repeat_after_minutes: 0,
            };
            let rules = AlertRules { working_hours: w.clone(), ..Default::default() };
            prop_assert!(rules.validate().is_ok());
            prop_assert_eq!(w.is_working_time(at), w.is_working_time(at + 7 * DAY_MS));
            let always = WorkingHoursRule { days: Weekday::ORDER.to_vec(), start: "00:00".into(), end: "24:00".into(), ..w };
            prop_assert!(always.is_working_time(at));
        }
    }
}
