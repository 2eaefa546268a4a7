//! Breach incidents: the four-factor risk assessment of 45 CFR 164.402 and the notification
//! deadline calculator of 164.404–408 plus the stricter state clocks.
//!
//! State clocks are dated data (`data/breach_state_rules.csv`, with an `as_of` date and a
//! source per row), embedded at build time and parsed once; the test suite parses them too, so
//! a malformed row fails CI rather than a breach response. Where several rules apply to the
//! same recipient the earliest deadline wins. No clock: the caller passes dates in.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, Weekday};

use crate::DomainError;

/// The embedded state-rules table.
pub const STATE_RULES_CSV: &str = include_str!("../data/breach_state_rules.csv");

/// HIPAA: individuals no later than 60 calendar days after discovery (164.404(b)); media in the
/// same window (164.406(b)); HHS contemporaneously when 500 or more (164.408(b)).
pub const FEDERAL_DAYS: i64 = 60;
/// HHS is told "contemporaneously" from this many affected individuals on (164.408(b)).
pub const HHS_IMMEDIATE_THRESHOLD: u64 = 500;
/// Media notice is due when MORE than this many residents of one state are affected (164.406(a)).
pub const MEDIA_THRESHOLD: u64 = 500;
/// The largest affected count accepted (bounds arithmetic and catches typos).
pub const MAX_AFFECTED: u64 = 1_000_000_000;

const FEDERAL_SOURCE: &str = "45 CFR 164.400-414; 74 FR 42740 (2009); getpocketlaw.com (164.408 text); complydome.com";

/// Every USPS code a resident's state may carry: the 50 states, DC and the territories.
pub const STATE_CODES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI",
    "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// A validated two-letter state or territory code (upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StateCode([u8; 2]);

impl StateCode {
    /// Parses a code, accepting any case; unknown codes are refused.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let upper = raw.trim().to_ascii_uppercase();
        if STATE_CODES.contains(&upper.as_str()) {
            let b = upper.as_bytes();
            Ok(Self([b[0], b[1]]))
        } else {
            Err(DomainError::invalid("state", "must be a US state, DC or territory code"))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from an entry of STATE_CODES, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl TryFrom<String> for StateCode {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<StateCode> for String {
    fn from(s: StateCode) -> String {
        s.as_str().to_owned()
    }
}

impl std::fmt::Display for StateCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Four-factor risk assessment (164.402(2))
// ---------------------------------------------------------------------------------------------

/// How much one factor raises the probability that PHI was compromised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactorRisk {
    /// Little or no added risk.
    Low,
    /// Some added risk.
    Medium,
    /// Substantial added risk.
    High,
}

impl FactorRisk {
    /// Stable storage code.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorRisk::Low => "low",
            FactorRisk::Medium => "medium",
            FactorRisk::High => "high",
        }
    }
    /// Parses a storage code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(FactorRisk::Low),
            "medium" => Some(FactorRisk::Medium),
            "high" => Some(FactorRisk::High),
            _ => None,
        }
    }
}

/// The result of the assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentOutcome {
    /// A low probability that the PHI has been compromised was demonstrated: not a
    /// reportable breach (164.402(2)). Only allowed when every factor is rated low.
    LowProbabilityOfCompromise,
    /// A breach: notifications are due.
    Breach,
}

impl AssessmentOutcome {
    /// Stable storage code.
    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentOutcome::LowProbabilityOfCompromise => "low_probability_of_compromise",
            AssessmentOutcome::Breach => "breach",
        }
    }
    /// Parses a storage code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low_probability_of_compromise" => Some(AssessmentOutcome::LowProbabilityOfCompromise),
            "breach" => Some(AssessmentOutcome::Breach),
            _ => None,
        }
    }
}

/// The four factors of 164.402(2), each rated, and the outcome the signer chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskAssessment {
    /// (i) The nature and extent of the PHI involved (identifiers, likelihood of re-identification).
    pub nature_and_extent: FactorRisk,
    /// (ii) The unauthorized person who used the PHI or to whom it was disclosed.
    pub unauthorized_recipient: FactorRisk,
    /// (iii) Whether the PHI was actually acquired or viewed.
    pub acquired_or_viewed: FactorRisk,
    /// (iv) The extent to which the risk has been mitigated.
    pub mitigation: FactorRisk,
    /// The conclusion.
    pub outcome: AssessmentOutcome,
}

impl RiskAssessment {
    /// Checks the outcome follows from the factors: a breach is presumed (164.402(2)) unless
    /// every factor shows low risk. Declaring a breach despite low factors is allowed (the
    /// cautious choice); declaring "low probability" with any factor above low is refused.
    pub fn validate(&self) -> Result<(), DomainError> {
        let all_low = [self.nature_and_extent, self.unauthorized_recipient, self.acquired_or_viewed, self.mitigation]
            .iter()
            .all(|f| *f == FactorRisk::Low);
        if self.outcome == AssessmentOutcome::LowProbabilityOfCompromise && !all_low {
            return Err(DomainError::invalid("outcome", "low_probability_of_compromise requires every factor to be rated low"));
        }
        Ok(())
    }

    /// Whether notifications are due.
    pub fn is_breach(&self) -> bool {
        self.outcome == AssessmentOutcome::Breach
    }
}

// ---------------------------------------------------------------------------------------------
// State rules data
// ---------------------------------------------------------------------------------------------

/// Who a state rule makes the organisation notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRecipient {
    /// Affected individuals.
    Individuals,
    /// A state regulator (attorney general, health department, police).
    Regulator,
}

/// What a state clock runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The discovery date. Statutes that start at "determination" or "confirmation" cannot
    /// start earlier than discovery, so reading them from discovery is the strict reading.
    Discovery,
    /// The state's individual-notice deadline (0 days = no later than individuals).
    Individuals,
    /// The HHS notice.
    Hhs,
}

/// Calendar or business days (Monday to Friday; public holidays are not modelled, which can
/// only make a business-day deadline earlier, never later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Calendar days.
    Calendar,
    /// Business days.
    Business,
}

/// When a rule applies, by the number of residents of its state affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Any number of residents (at least one).
    Any,
    /// At least this many residents.
    AtLeast(u64),
    /// More than this many residents.
    MoreThan(u64),
}

impl Threshold {
    fn met(self, residents: u64) -> bool {
        match self {
            Threshold::Any => residents > 0,
            Threshold::AtLeast(n) => residents >= n && residents > 0,
            Threshold::MoreThan(n) => residents > n,
        }
    }
}

/// One row of the state table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRule {
    /// The state whose law this is.
    pub state: StateCode,
    /// The first discovery date the row applies to.
    pub effective_from: Date,
    /// Who is told.
    pub recipient: RuleRecipient,
    /// The regulator's name (regulator rows).
    pub regulator: String,
    /// What the clock runs from.
    pub anchor: Anchor,
    /// How many days.
    pub days: i64,
    /// Which days count.
    pub day_kind: DayKind,
    /// When the row applies.
    pub threshold: Threshold,
    /// Whether the source deems HIPAA-compliant notice enough (`yes`, `no`, `partial`, `unknown`).
    pub hipaa_deemed: String,
    /// Whether the row was checked against the statute text.
    pub verified: bool,
    /// The statute cited.
    pub statute: String,
    /// Where the row comes from.
    pub source: String,
}

/// The parsed state table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRules {
    /// The date the table was last reviewed.
    pub as_of: Date,
    /// The rows.
    pub rules: Vec<StateRule>,
}

/// The state table is malformed (a defect in the repository, caught by tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breach state rules: line {line}: {rule}")]
pub struct StateRulesError {
    /// The 1-based line of the file (0 when not about one line).
    pub line: u64,
    /// The rule the line broke.
    pub rule: String,
}

#[derive(Deserialize)]
struct RawRule {
    state: String,
    effective_from: String,
    recipient: String,
    regulator: String,
    anchor: String,
    days: i64,
    day_kind: String,
    threshold_op: String,
    threshold: u64,
    hipaa_deemed: String,
    verified: String,
    statute: String,
    source: String,
}

fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).ok()
}

impl StateRules {
    /// Parses the table: `#` comment lines (one must read `# as_of: YYYY-MM-DD`), then a CSV
    /// header and rows. Every field is checked; a bad row names its line.
    pub fn parse(text: &str) -> Result<Self, StateRulesError> {
        let err = |line: u64, rule: &str| StateRulesError { line, rule: rule.to_owned() };
        let as_of = text
            .lines()
            .filter_map(|l| l.strip_prefix("# as_of:"))
            .map(|d| parse_date(d).ok_or_else(|| err(0, "as_of is not a YYYY-MM-DD date")))
            .next()
            .ok_or_else(|| err(0, "missing `# as_of: YYYY-MM-DD` line"))??;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).comment(Some(b'#')).trim(csv::Trim::All).from_reader(text.as_bytes());
        let mut rules = Vec::new();
        let headers = reader.headers().map_err(|_| err(1, "unreadable header"))?.clone();
        for record in reader.records() {
            let record = record.map_err(|e| err(e.position().map_or(0, |p| p.line()), "unreadable row"))?;
            let line = record.position().map_or(0, |p| p.line());
            let raw: RawRule =
                record.deserialize(Some(&headers)).map_err(|_| err(line, "row does not match the header or a number is malformed"))?;
            let rule = StateRule {
                state: StateCode::parse(&raw.state).map_err(|_| err(line, "unknown state code"))?,
                effective_from: parse_date(&raw.effective_from).ok_or_else(|| err(line, "effective_from is not a YYYY-MM-DD date"))?,
                recipient: match raw.recipient.as_str() {
                    "individuals" => RuleRecipient::Individuals,
                    "regulator" => RuleRecipient::Regulator,
                    _ => return Err(err(line, "recipient must be individuals or regulator")),
                },
                regulator: raw.regulator,
                anchor: match raw.anchor.as_str() {
                    "discovery" => Anchor::Discovery,
                    "individuals" => Anchor::Individuals,
                    "hhs" => Anchor::Hhs,
                    _ => return Err(err(line, "anchor must be discovery, individuals or hhs")),
                },
                days: if (0..=365).contains(&raw.days) { raw.days } else { return Err(err(line, "days out of range")) },
                day_kind: match raw.day_kind.as_str() {
                    "calendar" => DayKind::Calendar,
                    "business" => DayKind::Business,
                    _ => return Err(err(line, "day_kind must be calendar or business")),
                },
                threshold: match raw.threshold_op.as_str() {
                    "any" => Threshold::Any,
                    "ge" => Threshold::AtLeast(raw.threshold),
                    "gt" => Threshold::MoreThan(raw.threshold),
                    _ => return Err(err(line, "threshold_op must be any, ge or gt")),
                },
                hipaa_deemed: match raw.hipaa_deemed.as_str() {
                    "yes" | "no" | "partial" | "unknown" => raw.hipaa_deemed,
                    _ => return Err(err(line, "hipaa_deemed must be yes, no, partial or unknown")),
                },
                verified: match raw.verified.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(err(line, "verified must be yes or no")),
                },
                statute: raw.statute,
                source: raw.source,
            };
            if rule.statute.is_empty() || rule.source.is_empty() {
                return Err(err(line, "every row needs a statute and a source"));
            }
            if rule.recipient == RuleRecipient::Individuals && rule.anchor != Anchor::Discovery {
                return Err(err(line, "individual clocks must run from discovery"));
            }
            if rule.recipient == RuleRecipient::Regulator && rule.regulator.is_empty() {
                return Err(err(line, "regulator rows must name the regulator"));
            }
            rules.push(rule);
        }
        if rules.is_empty() {
            return Err(err(0, "no rules"));
        }
        Ok(StateRules { as_of, rules })
    }

    /// The embedded table, parsed once.
    pub fn embedded() -> &'static StateRules {
        static RULES: OnceLock<StateRules> = OnceLock::new();
        RULES.get_or_init(|| {
            // The embedded file is checked by `embedded_table_parses` in the test suite; an
            // empty table (federal rules only) is the fallback should that ever be bypassed.
            StateRules::parse(STATE_RULES_CSV).unwrap_or(StateRules { as_of: Date::MIN, rules: Vec::new() })
        })
    }

    /// The rules in force for a discovery date: for each (state, recipient, regulator,
    /// statute) the row with the latest `effective_from` not after the date.
    fn in_force(&self, discovered: Date) -> Vec<&StateRule> {
        let mut latest: BTreeMap<(StateCode, bool, &str, &str), &StateRule> = BTreeMap::new();
        for r in self.rules.iter().filter(|r| r.effective_from <= discovered) {
            let key = (r.state, r.recipient == RuleRecipient::Individuals, r.regulator.as_str(), r.statute.as_str());
            match latest.get(&key) {
                Some(prev) if prev.effective_from >= r.effective_from => {}
                _ => {
                    latest.insert(key, r);
                }
            }
        }
        latest.into_values().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Deadline calculator
// ---------------------------------------------------------------------------------------------

/// Who must be notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    /// Affected individuals (164.404, and the state's own clock where stricter).
    Individuals,
    /// The Secretary of HHS (164.408).
    Hhs,
    /// Prominent media outlets serving a state (164.406).
    Media,
    /// A state regulator (attorney general, health department, police).
    StateRegulator,
}

impl ObligationKind {
    /// Stable storage code.
    pub fn as_str(self) -> &'static str {
        match self {
            ObligationKind::Individuals => "individuals",
            ObligationKind::Hhs => "hhs",
            ObligationKind::Media => "media",
            ObligationKind::StateRegulator => "state_regulator",
        }
    }
}

/// One notification the organisation owes, with the rule that set its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Obligation {
    /// Stable key within a plan (e.g. `individuals:CA`, `hhs`, `media:TX`,
    /// `state_regulator:CA:California Department of Public Health`); notifications are recorded
    /// against it.
    pub key: String,
    /// What kind of recipient.
    pub kind: ObligationKind,
    /// The state, for per-state obligations.
    #[schema(value_type = Option<String>)]
    pub state: Option<StateCode>,
    /// Who is told (regulators), or a short label.
    pub recipient: String,
    /// The last day (inclusive) on which the notice is on time.
    #[schema(value_type = String, format = Date)]
    pub due: Date,
    /// The rule that produced the deadline (the earliest of those that apply).
    pub rule: String,
    /// Where that rule comes from.
    pub source: String,
    /// Whether that rule was checked against the statute text (`false`: shown as unconfirmed).
    pub verified: bool,
}

/// What the calculator needs to know about an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachFacts {
    /// The discovery date (164.404(a)(2)).
    pub discovered: Date,
    /// Individuals affected in total.
    pub affected: u64,
    /// Affected residents per state (may cover fewer than `affected` when residence is unknown).
    pub residents: BTreeMap<StateCode, u64>,
}

impl BreachFacts {
    /// Checks the counts: at least one individual, and no more residents than affected.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.affected == 0 || self.affected > MAX_AFFECTED {
            return Err(DomainError::invalid("affected_count", "must be between 1 and 1000000000"));
        }
        let mut sum: u64 = 0;
        for n in self.residents.values() {
            if *n == 0 {
                return Err(DomainError::invalid("residents", "each state count must be at least 1"));
            }
            sum = sum.saturating_add(*n);
        }
        if sum > self.affected {
            return Err(DomainError::invalid("residents", "per-state counts exceed the affected count"));
        }
        Ok(())
    }
}

/// Adds days of a kind to a date (saturating at the calendar's end).
pub fn add_days(from: Date, days: i64, kind: DayKind) -> Date {
    match kind {
        DayKind::Calendar => from.checked_add(Duration::days(days)).unwrap_or(Date::MAX),
        DayKind::Business => {
            let mut d = from;
            let mut left = days;
            while left > 0 {
                d = match d.next_day() {
                    Some(n) => n,
                    None => return Date::MAX,
                };
                if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                    left -= 1;
                }
            }
            d
        }
    }
}

struct Candidate {
    due: Date,
    rule: String,
    source: String,
    verified: bool,
}

fn federal(due: Date, rule: &str) -> Candidate {
    Candidate { due, rule: rule.to_owned(), source: FEDERAL_SOURCE.to_owned(), verified: true }
}

fn from_state(due: Date, r: &StateRule) -> Candidate {
    let unit = if r.day_kind == DayKind::Business { "business days" } else { "days" };
    let rule = match r.anchor {
        Anchor::Discovery => format!("{}: {} {unit} after discovery", r.statute, r.days),
        Anchor::Individuals if r.days == 0 => format!("{}: no later than notice to individuals", r.statute),
        Anchor::Individuals => format!("{}: {} {unit} after notice to individuals", r.statute, r.days),
        Anchor::Hhs => format!("{}: {} {unit} after notice to HHS", r.statute, r.days),
    };
    Candidate { due, rule, source: r.source.clone(), verified: r.verified }
}

/// Earliest wins; on a tie the federal (first pushed) rule is kept.
fn earliest(cands: Vec<Candidate>) -> Option<Candidate> {
    cands.into_iter().reduce(|best, c| if c.due < best.due { c } else { best })
}

/// Computes the notification plan for a breach: individuals (per state of residence, the
/// earlier of HIPAA's 60 days and the state clock), HHS (with the individual notice when 500 or
/// more are affected, else 60 days after the end of the discovery year), media per state with
/// more than 500 residents affected, and state regulators whose thresholds are met.
pub fn plan(facts: &BreachFacts, rules: &StateRules) -> Result<Vec<Obligation>, DomainError> {
    facts.validate()?;
    let d = facts.discovered;
    let federal_due = add_days(d, FEDERAL_DAYS, DayKind::Calendar);
    let in_force = rules.in_force(d);
    let mut out = Vec::new();

    // Individuals, per state of residence; the unattributed remainder gets the federal clock.
    let mut individual_due: BTreeMap<StateCode, Date> = BTreeMap::new();
    for state in facts.residents.keys() {
        let mut cands = vec![federal(federal_due, "45 CFR 164.404(b): 60 calendar days after discovery")];
        for r in in_force.iter().filter(|r| r.state == *state && r.recipient == RuleRecipient::Individuals) {
            cands.push(from_state(add_days(d, r.days, r.day_kind), r));
        }
        if let Some(best) = earliest(cands) {
            individual_due.insert(*state, best.due);
            out.push(obligation(format!("individuals:{state}"), ObligationKind::Individuals, Some(*state), "Affected individuals", best));
        }
    }
    let attributed: u64 = facts.residents.values().sum();
    if attributed < facts.affected {
        let best = federal(federal_due, "45 CFR 164.404(b): 60 calendar days after discovery");
        out.push(obligation("individuals".to_owned(), ObligationKind::Individuals, None, "Affected individuals", best));
    }
    let earliest_individual = individual_due.values().copied().chain(std::iter::once(federal_due)).min().unwrap_or(federal_due);

    // HHS.
    let hhs_due = if facts.affected >= HHS_IMMEDIATE_THRESHOLD {
        // "Contemporaneously with" the individual notice, so with the earliest of them.
        let c = federal(earliest_individual, "45 CFR 164.408(b): 500 or more affected, with the notice to individuals");
        let due = c.due;
        out.push(obligation("hhs".to_owned(), ObligationKind::Hhs, None, "Secretary of HHS", c));
        due
    } else {
        let year_end = Date::from_calendar_date(d.year(), Month::December, 31).unwrap_or(Date::MAX);
        let c = federal(
            add_days(year_end, FEDERAL_DAYS, DayKind::Calendar),
            "45 CFR 164.408(c): fewer than 500 affected, annual log within 60 days after the end of the calendar year",
        );
        let due = c.due;
        out.push(obligation("hhs".to_owned(), ObligationKind::Hhs, None, "Secretary of HHS (annual log)", c));
        due
    };

    // Media, per state with more than 500 residents affected.
    for (state, n) in &facts.residents {
        if *n > MEDIA_THRESHOLD {
            let c = federal(federal_due, "45 CFR 164.406(b): more than 500 residents of a state, 60 calendar days after discovery");
            out.push(obligation(
                format!("media:{state}"),
                ObligationKind::Media,
                Some(*state),
                "Prominent media outlets serving the state",
                c,
            ));
        }
    }

    // State regulators, grouped by (state, regulator); earliest of their rows wins.
    let mut regulators: BTreeMap<(StateCode, &str), Vec<Candidate>> = BTreeMap::new();
    for r in in_force.iter().filter(|r| r.recipient == RuleRecipient::Regulator) {
        let residents = facts.residents.get(&r.state).copied().unwrap_or(0);
        if !r.threshold.met(residents) {
            continue;
        }
        let base = match r.anchor {
            Anchor::Discovery => d,
            Anchor::Individuals => individual_due.get(&r.state).copied().unwrap_or(federal_due),
            Anchor::Hhs => hhs_due,
        };
        regulators.entry((r.state, r.regulator.as_str())).or_default().push(from_state(add_days(base, r.days, r.day_kind), r));
    }
    for ((state, regulator), cands) in regulators {
        if let Some(best) = earliest(cands) {
            out.push(obligation(
                format!("state_regulator:{state}:{regulator}"),
                ObligationKind::StateRegulator,
                Some(state),
                regulator,
                best,
            ));
        }
    }
    Ok(out)
}

fn obligation(key: String, kind: ObligationKind, state: Option<StateCode>, recipient: &str, c: Candidate) -> Obligation {
    Obligation { key, kind, state, recipient: recipient.to_owned(), due: c.due, rule: c.rule, source: c.source, verified: c.verified }
}

// ---------------------------------------------------------------------------------------------
// Reminders
// ---------------------------------------------------------------------------------------------

/// How close an open obligation is to its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// More than 7 days left.
    Pending,
    /// 7 days or fewer left.
    DueWithinWeek,
    /// Due today or tomorrow.
    DueWithinDay,
    /// Past its deadline.
    Overdue,
}

impl Urgency {
    /// Stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Pending => "pending",
            Urgency::DueWithinWeek => "due_within_week",
            Urgency::DueWithinDay => "due_within_day",
            Urgency::Overdue => "overdue",
        }
    }
}

/// The urgency of an open obligation due on `due`, seen on `today`.
pub fn urgency(due: Date, today: Date) -> Urgency {
    let left = (due - today).whole_days();
    if left < 0 {
        Urgency::Overdue
    } else if left <= 1 {
        Urgency::DueWithinDay
    } else if left <= 7 {
        Urgency::DueWithinWeek
    } else {
        Urgency::Pending
    }
}

/// Parses a calendar day given as `YYYY-MM-DD` in the request field `field`.
pub fn parse_day(field: &'static str, raw: &str) -> Result<Date, DomainError> {
    parse_date(raw).ok_or(DomainError::invalid(field, "must be a date as YYYY-MM-DD"))
}

/// Checks the dates of a new incident against today: discovery cannot lie in the future, and
/// the breach cannot have occurred after it was discovered.
pub fn validate_dates(discovered: Date, occurred: Option<Date>, today: Date) -> Result<(), DomainError> {
    if discovered > today {
        return Err(DomainError::invalid("discovered_on", "cannot be in the future"));
    }
    if occurred.is_some_and(|o| o > discovered) {
        return Err(DomainError::invalid("occurred_on", "cannot be after the discovery date"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn st(s: &str) -> StateCode {
        StateCode::parse(s).unwrap()
    }

    fn facts(discovered: Date, affected: u64, residents: &[(&str, u64)]) -> BreachFacts {
        BreachFacts { discovered, affected, residents: residents.iter().map(|(s, n)| (st(s), *n)).collect() }
    }

    fn find<'a>(plan: &'a [Obligation], key: &str) -> &'a Obligation {
        plan.iter().find(|o| o.key == key).unwrap_or_else(|| panic!("no obligation {key} in {plan:#?}"))
    }

    #[test]
    fn embedded_table_parses_with_sources_and_as_of() {
        let rules = StateRules::parse(STATE_RULES_CSV).expect("embedded table parses");
        assert_eq!(rules.as_of, date!(2026 - 12 - 07));
        assert!(rules.rules.len() >= 40);
        assert!(rules.rules.iter().all(|r| !r.source.is_empty() && !r.statute.is_empty()));
        for s in ["FL", "CA", "NY", "CO", "WA", "ME"] {
            let r = rules.rules.iter().find(|r| r.state.as_str() == s && r.recipient == RuleRecipient::Individuals);
            assert!(r.is_some_and(|r| r.days == 30 || r.day_kind == DayKind::Business), "{s}");
        }
        assert_eq!(StateRules::embedded(), &rules);
    }

    #[test]
    fn malformed_tables_are_refused_with_the_line() {
        let head = "# as_of: 2026-12-07\nstate,effective_from,recipient,regulator,anchor,days,day_kind,threshold_op,threshold,hipaa_deemed,verified,statute,source\n";
        let bad_state = format!("{head}ZZ,2020-01-01,individuals,,discovery,30,calendar,any,0,no,no,X,Y\n");
        let e = StateRules::parse(&bad_state).unwrap_err();
        assert_eq!(e.rule, "unknown state code");
        assert_eq!(e.line, 3);
        let no_source = format!("{head}CA,2020-01-01,individuals,,discovery,30,calendar,any,0,no,no,X,\n");
        assert!(StateRules::parse(&no_source).unwrap_err().rule.contains("source"));
        let bad_kind = format!("{head}CA,2020-01-01,individuals,,discovery,30,weeks,any,0,no,no,X,Y\n");
        assert!(StateRules::parse(&bad_kind).unwrap_err().rule.contains("day_kind"));
        assert!(StateRules::parse(&head.replace("# as_of: 2026-12-07\n", "")).unwrap_err().rule.contains("as_of"));
    }

    #[test]
    fn unknown_state_codes_are_refused() {
        assert!(StateCode::parse("ZZ").is_err());
        assert!(StateCode::parse("").is_err());
        assert!(StateCode::parse("CAL").is_err());
        assert_eq!(st("ca").as_str(), "CA");
        assert!(serde_json::from_str::<StateCode>("\"XX\"").is_err());
    }

    #[test]
    fn federal_only_small_breach() {
        let p = plan(&facts(date!(2026 - 03 - 10), 3, &[]), StateRules::embedded()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(find(&p, "individuals").due, date!(2026 - 05 - 09));
        // Fewer than 500: the annual log, 60 days after 31 December.
        assert_eq!(find(&p, "hhs").due, date!(2027 - 03 - 01));
        let leap = plan(&facts(date!(2027 - 06 - 01), 3, &[]), StateRules::embedded()).unwrap();
        assert_eq!(find(&leap, "hhs").due, date!(2028 - 02 - 29));
    }

    #[test]
    fn stricter_state_clock_wins_and_names_its_source() {
        let p = plan(&facts(date!(2026 - 03 - 10), 10, &[("NY", 4), ("OH", 6)]), StateRules::embedded()).unwrap();
        let ny = find(&p, "individuals:NY");
        assert_eq!(ny.due, date!(2026 - 04 - 09));
        assert!(ny.rule.contains("899-aa") && ny.source.contains("covington"));
        assert!(!ny.verified);
        assert_eq!(find(&p, "individuals:OH").due, date!(2026 - 04 - 24));
        // NY tells its regulators no later than the individuals.
        assert_eq!(find(&p, "state_regulator:NY:Attorney General, Department of State, State Police").due, ny.due);
    }

    #[test]
    fn rules_apply_by_discovery_date() {
        // California's 30-day clock starts with discoveries on or after 2026-01-01; before that
        // the H&S 15-business-day clock is the stricter one anyway.
        let p = plan(&facts(date!(2026 - 01 - 05), 1, &[("CA", 1)]), StateRules::embedded()).unwrap();
        let ca = find(&p, "individuals:CA");
        assert_eq!(ca.due, date!(2026 - 01 - 26)); // 15 business days after Monday 5 January
        assert!(ca.rule.contains("1280.15"));
        // New York before S2659B took effect: the federal 60 days.
        let old = plan(&facts(date!(2024 - 12 - 01), 1, &[("NY", 1)]), StateRules::embedded()).unwrap();
        assert!(find(&old, "individuals:NY").rule.contains("164.404"));
        // Texas AG: 30 days from 2023-09-01 on, only at 250 residents or more.
        let tx = plan(&facts(date!(2026 - 02 - 01), 300, &[("TX", 250)]), StateRules::embedded()).unwrap();
        assert_eq!(find(&tx, "state_regulator:TX:Attorney General (web form)").due, date!(2026 - 03 - 03));
        let tx_small = plan(&facts(date!(2026 - 02 - 01), 300, &[("TX", 249)]), StateRules::embedded()).unwrap();
        assert!(!tx_small.iter().any(|o| o.kind == ObligationKind::StateRegulator));
    }

    #[test]
    fn hhs_with_individuals_at_500_and_media_above_500_per_state() {
        let p = plan(&facts(date!(2026 - 03 - 10), 1200, &[("FL", 501), ("GA", 500)]), StateRules::embedded()).unwrap();
        // 500 or more: HHS with the earliest individual notice (Florida's 30 days).
        assert_eq!(find(&p, "hhs").due, date!(2026 - 04 - 09));
        assert!(find(&p, "hhs").rule.contains("164.408(b)"));
        assert_eq!(find(&p, "media:FL").due, date!(2026 - 05 - 09));
        // Exactly 500 residents is not "more than 500".
        assert!(!p.iter().any(|o| o.key == "media:GA"));
        assert_eq!(find(&p, "state_regulator:FL:Department of Legal Affairs (Attorney General)").due, date!(2026 - 04 - 09));
        // 499 in total: annual log.
        let small = plan(&facts(date!(2026 - 03 - 10), 499, &[]), StateRules::embedded()).unwrap();
        assert!(find(&small, "hhs").rule.contains("164.408(c)"));
    }

    #[test]
    fn relative_regulator_clocks() {
        // Illinois AG (HIPAA entity): 5 business days after the HHS notice, but no later than
        // individuals when more than 500 residents: the earliest wins.
        let p = plan(&facts(date!(2026 - 03 - 10), 600, &[("IL", 501)]), StateRules::embedded()).unwrap();
        assert_eq!(find(&p, "state_regulator:IL:Attorney General").due, date!(2026 - 05 - 09));
        let il2 = find(&p, "state_regulator:IL:Attorney General (HIPAA entity after HHS notice)");
        assert_eq!(il2.due, date!(2026 - 05 - 15)); // Sat 9 May + 5 business days
        // California AG sample notice: 15 days after the individual notice, above 500 residents.
        let ca = plan(&facts(date!(2026 - 03 - 10), 600, &[("CA", 600)]), StateRules::embedded()).unwrap();
        let ind = find(&ca, "individuals:CA").due;
        assert_eq!(find(&ca, "state_regulator:CA:Attorney General (sample notice)").due, ind + Duration::days(15));
    }

    #[test]
    fn bad_counts_are_refused() {
        let r = StateRules::embedded();
        assert!(plan(&facts(date!(2026 - 03 - 10), 0, &[]), r).is_err());
        assert!(plan(&facts(date!(2026 - 03 - 10), 2, &[("CA", 3)]), r).is_err());
        assert!(plan(&facts(date!(2026 - 03 - 10), 2, &[("CA", 0)]), r).is_err());
    }

    #[test]
    fn assessment_outcome_must_follow_the_factors() {
        let low = RiskAssessment {
            nature_and_extent: FactorRisk::Low,
            unauthorized_recipient: FactorRisk::Low,
            acquired_or_viewed: FactorRisk::Low,
            mitigation: FactorRisk::Low,
            outcome: AssessmentOutcome::LowProbabilityOfCompromise,
        };
        assert!(low.validate().is_ok() && !low.is_breach());
        let viewed = RiskAssessment { acquired_or_viewed: FactorRisk::High, ..low };
        assert!(viewed.validate().is_err());
        let breach = RiskAssessment { outcome: AssessmentOutcome::Breach, ..viewed };
        assert!(breach.validate().is_ok() && breach.is_breach());
        // The cautious call is always allowed.
        assert!(RiskAssessment { outcome: AssessmentOutcome::Breach, ..low }.validate().is_ok());
        for o in [AssessmentOutcome::Breach, AssessmentOutcome::LowProbabilityOfCompromise] {
            assert_eq!(AssessmentOutcome::parse(o.as_str()), Some(o));
        }
        for f in [FactorRisk::Low, FactorRisk::Medium, FactorRisk::High] {
            assert_eq!(FactorRisk::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn urgency_bands_and_dates() {
        let due = date!(2026 - 05 - 09);
        assert_eq!(urgency(due, date!(2026 - 04 - 01)), Urgency::Pending);
        assert_eq!(urgency(due, date!(2026 - 05 - 02)), Urgency::DueWithinWeek);
        assert_eq!(urgency(due, date!(2026 - 05 - 08)), Urgency::DueWithinDay);
        assert_eq!(urgency(due, due), Urgency::DueWithinDay);
        assert_eq!(urgency(due, date!(2026 - 05 - 10)), Urgency::Overdue);
        let today = date!(2026 - 05 - 10);
        assert!(validate_dates(date!(2026 - 05 - 11), None, today).is_err());
        assert!(validate_dates(date!(2026 - 05 - 01), Some(date!(2026 - 05 - 02)), today).is_err());
        assert!(validate_dates(date!(2026 - 05 - 01), Some(date!(2026 - 04 - 02)), today).is_ok());
    }

    fn any_state() -> impl Strategy<Value = StateCode> {
        (0..STATE_CODES.len()).prop_map(|i| st(STATE_CODES[i]))
    }

    proptest! {
        #[test]
        fn deadlines_hold_their_invariants(
            day in 0i64..3650,
            residents in proptest::collection::btree_map(any_state(), 1u64..2000, 0..8),
            extra in 0u64..2000,
        ) {
            let discovered = date!(2020 - 01 - 01) + Duration::days(day);
            let affected = residents.values().sum::<u64>() + extra;
            prop_assume!(affected > 0);
            let f = BreachFacts { discovered, affected, residents: residents.clone() };
            let p = plan(&f, StateRules::embedded()).unwrap();
            let federal_due = discovered + Duration::days(60);
            for o in &p {
                prop_assert!(o.due >= discovered);
                if o.kind == ObligationKind::Individuals {
                    // Never later than HIPAA's 60 days.
                    prop_assert!(o.due <= federal_due);
                }
            }
            // Every state with residents has an individuals obligation; keys are unique.
            for s in residents.keys() {
                let key = format!("individuals:{s}");
                prop_assert!(p.iter().any(|o| o.key == key));
            }
            let mut keys: Vec<_> = p.iter().map(|o| o.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assert_eq!(keys.len(), p.len());
            // HHS: with the earliest individual notice at 500+, else after year end.
            let hhs = p.iter().find(|o| o.kind == ObligationKind::Hhs).unwrap();
            let first_individual = p.iter().filter(|o| o.kind == ObligationKind::Individuals).map(|o| o.due).min().unwrap();
            if affected >= 500 {
                prop_assert_eq!(hhs.due, first_individual.min(federal_due));
            } else {
                prop_assert!(hhs.due.year() == discovered.year() + 1);
            }
            // Media exactly for states above 500.
            for (s, n) in &residents {
                let key = format!("media:{s}");
                prop_assert_eq!(p.iter().any(|o| o.key == key), *n > 500);
            }
        }

        #[test]
        fn earliest_wins(day in 0i64..3650, state in any_state()) {
            let discovered = date!(2020 - 01 - 01) + Duration::days(day);
            let rules = StateRules::embedded();
            let f = BreachFacts { discovered, affected: 1, residents: [(state, 1)].into_iter().collect() };
            let p = plan(&f, rules).unwrap();
            let got = p.iter().find(|o| o.kind == ObligationKind::Individuals).unwrap().due;
            let state_min = rules
                .in_force(discovered)
                .into_iter()
                .filter(|r| r.state == state && r.recipient == RuleRecipient::Individuals)
                .map(|r| add_days(discovered, r.days, r.day_kind))
                .min();
            let expect = state_min.map_or(discovered + Duration::days(60), |m| m.min(discovered + Duration::days(60)));
            prop_assert_eq!(got, expect);
        }
    }
}
