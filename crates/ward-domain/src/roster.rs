//! HR roster reconciliation (docs/devices.md, "Roster reconciliation"): parsing the roster CSV
//! and comparing it with the organisation's workforce accounts, their sessions and devices.
//!
//! A roster holds staff names and emails: personal data. Nothing here logs, and errors name
//! the line and column, never a value.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::ids::{DeviceId, UserId};
use crate::login::LoginName;
use crate::role::Role;

/// Most people one roster may hold.
pub const MAX_ROSTER_ROWS: usize = 100_000;

/// Employment status on the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RosterStatus {
    /// Employed.
    Active,
    /// Left the organisation.
    Terminated,
}

/// One person on the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterPerson {
    /// The line of the CSV file (the header is line 1).
    pub line: u64,
    /// HR's id for the person.
    pub employee_id: String,
    /// The Ward login name the person's account has (case-folded).
    pub login: LoginName,
    /// As HR states it.
    pub status: RosterStatus,
    /// `YYYY-MM-DD`, when given.
    pub termination_date: Option<String>,
}

impl RosterPerson {
    /// Whether the person has left by `today` (`YYYY-MM-DD`): terminated, or active with a
    /// termination date that has come.
    pub fn terminated_by(&self, today: &str) -> bool {
        self.status == RosterStatus::Terminated || self.termination_date.as_deref().is_some_and(|d| d <= today)
    }
}

/// A parsed roster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roster {
    /// Its people, in file order.
    pub people: Vec<RosterPerson>,
}

/// Why a roster was refused. Lines count from 1 (the header); no variant carries a value
/// from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// The file is empty or has no header line.
    #[error("the roster has no header line (expected employee_id,login,status[,termination_date])")]
    NoHeader,
    /// A required column is missing from the header.
    #[error("the header has no {0} column")]
    MissingColumn(&'static str),
    /// A column appears twice in the header.
    #[error("the header names the {0} column twice")]
    DuplicateColumn(&'static str),
    /// The file is not CSV that can be read (quoting, encoding, ragged rows).
    #[error("line {line}: not readable as CSV (quoting, UTF-8 or number of fields)")]
    Unreadable {
        /// Line.
        line: u64,
    },
    /// A field breaks its rule.
    #[error("line {line}: {column} {rule}")]
    BadField {
        /// Line.
        line: u64,
        /// Column.
        column: &'static str,
        /// What is wrong.
        rule: &'static str,
    },
    /// The same person (login or employee id) is on two lines.
    #[error("line {line}: {column} repeats line {first}")]
    Duplicate {
        /// Line.
        line: u64,
        /// The repeated column.
        column: &'static str,
        /// Where it first appeared.
        first: u64,
    },
    /// More than `MAX_ROSTER_ROWS` people.
    #[error("the roster has more than {MAX_ROSTER_ROWS} people")]
    TooLarge,
}

const COLUMNS: [&str; 4] = ["employee_id", "login", "status", "termination_date"];

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits =
        |r: std::ops::Range<usize>| -> Option<u32> { b[r.clone()].iter().all(u8::is_ascii_digit).then(|| s[r].parse().ok()).flatten() };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else { return false };
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1900 && (1..=days).contains(&d)
}

/// Line numbers (from 1) of increasing byte offsets in one text, counted incrementally.
struct LineCounter<'a> {
    text: &'a [u8],
    byte: usize,
    line: u64,
}

impl LineCounter<'_> {
    fn at(&mut self, byte: u64) -> u64 {
        let byte = usize::try_from(byte).unwrap_or(usize::MAX).min(self.text.len());
        if byte > self.byte {
            self.line += self.text[self.byte..byte].iter().filter(|&&b| b == b'\n').count() as u64;
            self.byte = byte;
        }
        // A record's position is where the reader started, before the blank lines it skipped.
        while let Some(&b) = self.text.get(self.byte).filter(|b| matches!(b, b'\n' | b'\r')) {
            self.line += u64::from(b == b'\n');
            self.byte += 1;
        }
        self.line
    }
}

impl Roster {
    /// Parses a roster CSV. The header is required and names the columns `employee_id`,
    /// `login`, `status` (`active` or `terminated`) and optionally `termination_date`
    /// (`YYYY-MM-DD`), in any order and any case; other columns (names, departments) are
    /// ignored and never kept. Blank lines are skipped.
    pub fn parse_csv(text: &str) -> Result<Roster, RosterError> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|_| RosterError::Unreadable { line: 1 })?.clone();
        if headers.is_empty() || headers.iter().all(str::is_empty) {
            return Err(RosterError::NoHeader);
        }
        let mut index: [Option<usize>; 4] = [None; 4];
        for (i, h) in headers.iter().enumerate() {
            if let Some(k) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h)) {
                if index[k].is_some() {
                    return Err(RosterError::DuplicateColumn(COLUMNS[k]));
                }
                index[k] = Some(i);
            }
        }
        let required = |k: usize| index[k].ok_or(RosterError::MissingColumn(COLUMNS[k]));
        let (emp, login, status) = (required(0)?, required(1)?, required(2)?);
        let date = index[3];
        let mut people = Vec::new();
        let mut by_login: HashMap<String, u64> = HashMap::new();
        let mut by_emp: HashMap<String, u64> = HashMap::new();
        // The csv crate's own line count leaves out blank lines; count from byte offsets
        // instead, so a refusal names the line an editor shows.
        let mut lines = LineCounter { text: text.as_bytes(), byte: 0, line: 1 };
        for record in reader.records() {
            let record = record.map_err(|e| RosterError::Unreadable { line: e.position().map_or(0, |p| lines.at(p.byte())) })?;
            let line = record.position().map_or(0, |p| lines.at(p.byte()));
            if record.iter().all(str::is_empty) {
                continue;
            }
            if people.len() == MAX_ROSTER_ROWS {
                return Err(RosterError::TooLarge);
            }
            let field = |i: usize| record.get(i).unwrap_or("");
            let bad = |column, rule| RosterError::BadField { line, column, rule };
            let employee_id = field(emp);
            if employee_id.is_empty() || employee_id.len() > 64 || employee_id.chars().any(char::is_control) {
                return Err(bad("employee_id", "must be 1 to 64 characters"));
            }
            let login_name = LoginName::parse(field(login)).map_err(|_| bad("login", "is not a Ward login name"))?;
            let status = match field(status).to_ascii_lowercase().as_str() {
                "active" => RosterStatus::Active,
                "terminated" => RosterStatus::Terminated,
                "" => return Err(bad("status", "is required (active or terminated)")),
                _ => return Err(bad("status", "must be active or terminated")),
            };
            let termination_date = match date.map(field) {
                None | Some("") => None,
                Some(d) if valid_date(d) => Some(d.to_owned()),
                Some(_) => return Err(bad("termination_date", "must be a date YYYY-MM-DD")),
            };
            if let Some(&first) = by_login.get(login_name.as_str()) {
                return Err(RosterError::Duplicate { line, column: "login", first });
            }
            if let Some(&first) = by_emp.get(employee_id) {
                return Err(RosterError::Duplicate { line, column: "employee_id", first });
            }
            by_login.insert(login_name.as_str().to_owned(), line);
            by_emp.insert(employee_id.to_owned(), line);
            people.push(RosterPerson { line, employee_id: employee_id.to_owned(), login: login_name, status, termination_date });
        }
        Ok(Roster { people })
    }
}

/// A device of an account, as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// Id.
    pub id: DeviceId,
    /// Revoked (wiped or otherwise): nothing left to do.
    pub revoked: bool,
    /// Registered with a wipe secret, so a wipe can be delivered and acknowledged.
    pub wipe_channel: bool,
    /// A wipe was requested and is not yet acknowledged (or closed).
    pub wipe_pending: bool,
}

/// A workforce account with what is live of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSnapshot {
    /// Id.
    pub user_id: UserId,
    /// Login name.
    pub login: String,
    /// Role (patient accounts are never reconciled).
    pub role: Role,
    /// Disabled.
    pub disabled: bool,
    /// Sessions not revoked and not expired.
    pub live_sessions: u32,
    /// The account's devices.
    pub devices: Vec<DeviceSnapshot>,
}

/// Why an account is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    /// The roster says the person left.
    Terminated,
    /// The person is not on the roster.
    NotOnRoster,
}

/// A workforce account of someone who left or is not on the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FlaggedAccount {
    /// The account.
    pub user_id: UserId,
    /// Its login.
    pub login: String,
    /// Its role.
    pub role: Role,
    /// Why.
    pub reason: FlagReason,
    /// The account is still enabled.
    pub active: bool,
    /// Live sessions.
    pub live_sessions: u32,
    /// Devices not yet revoked (each would get a wipe).
    pub live_devices: Vec<DeviceId>,
    /// Of those, devices that never registered, so a wipe cannot reach them (their sessions
    /// are revoked, and the wipe is closed as `no_wipe_channel`).
    pub no_wipe_channel: Vec<DeviceId>,
    /// Wipes requested and not yet acknowledged.
    pub pending_wipes: u32,
}

impl FlaggedAccount {
    /// Whether remediation has anything left to do for this account.
    pub fn needs_action(&self) -> bool {
        self.active || self.live_sessions > 0 || !self.live_devices.is_empty()
    }
}

/// An active person on the roster with no Ward account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MissingAccount {
    /// The roster line.
    pub line: u64,
    /// HR's id.
    pub employee_id: String,
    /// The login the roster gives.
    pub login: String,
}

/// The outcome of comparing a roster with the accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default, utoipa::ToSchema)]
pub struct RosterReport {
    /// People on the roster.
    pub roster_people: usize,
    /// Of them, terminated (or past their termination date).
    pub roster_terminated: usize,
    /// Workforce accounts compared.
    pub accounts: usize,
    /// Accounts of people who left or are not on the roster with something live: an enabled
    /// account, sessions or devices. Remediation acts on these.
    pub needs_action: Vec<FlaggedAccount>,
    /// Accounts of people who left or are not on the roster that are already disabled with
    /// nothing live: no action needed.
    pub already_disabled: Vec<FlaggedAccount>,
    /// The acting administrator's own account, were it flagged: never remediated (an admin
    /// cannot lock themself out).
    pub excluded_self: Option<FlaggedAccount>,
    /// Active roster people with no account.
    pub missing_accounts: Vec<MissingAccount>,
}

impl RosterReport {
    /// Why remediating this report is refused, if it is: a roster that lists nobody, or one
    /// that would act on more than half of the workforce (and more than five accounts)
    /// without `allow_mass`. Both are the marks of a truncated or wrong file, and disabling
    /// and wiping are not undone by enabling the accounts again.
    pub fn remediation_refusal(&self, allow_mass: bool) -> Option<&'static str> {
        let n = self.needs_action.len();
        if self.roster_people == 0 {
            Some("the roster lists nobody: remediation would disable every account")
        } else if !allow_mass && n > 5 && n * 2 > self.accounts {
            Some("remediation would disable more than half of the workforce: check the roster, or repeat with the mass override")
        } else {
            None
        }
    }
}

/// Compares the roster with the organisation's accounts on `today` (`YYYY-MM-DD`). Patient
/// accounts are not workforce and are skipped. `acting` is the administrator running it.
pub fn reconcile(roster: &Roster, accounts: &[AccountSnapshot], today: &str, acting: Option<UserId>) -> RosterReport {
    let people: BTreeMap<&str, &RosterPerson> = roster.people.iter().map(|p| (p.login.as_str(), p)).collect();
    let mut report = RosterReport {
        roster_people: roster.people.len(),
        roster_terminated: roster.people.iter().filter(|p| p.terminated_by(today)).count(),
        ..RosterReport::default()
    };
    let mut workforce: Vec<&AccountSnapshot> = accounts.iter().filter(|a| a.role.is_workforce()).collect();
    workforce.sort_by(|a, b| a.login.cmp(&b.login));
    report.accounts = workforce.len();
    let mut seen = std::collections::BTreeSet::new();
    for a in workforce {
        let key = a.login.to_ascii_lowercase();
        let reason = match people.get(key.as_str()) {
            Some(p) if p.terminated_by(today) => FlagReason::Terminated,
            Some(_) => {
                seen.insert(key);
                continue;
            }
            None => FlagReason::NotOnRoster,
        };
        seen.insert(key);
        let live: Vec<&DeviceSnapshot> = a.devices.iter().filter(|d| !d.revoked).collect();
        let flagged = FlaggedAccount {
            user_id: a.user_id,
            login: a.login.clone(),
            role: a.role,
            reason,
            active: !a.disabled,
            live_sessions: a.live_sessions,
            live_devices: live.iter().map(|d| d.id).collect(),
            no_wipe_channel: live.iter().filter(|d| !d.wipe_channel).map(|d| d.id).collect(),
            pending_wipes: a.devices.iter().filter(|d| d.wipe_pending).count() as u32,
        };
        if Some(a.user_id) == acting {
            report.excluded_self = Some(flagged);
        } else if flagged.needs_action() {
            report.needs_action.push(flagged);
        } else {
            report.already_disabled.push(flagged);
        }
    }
    // Patient accounts share the login namespace; a roster line naming one is still no
    // workforce account.
    report.missing_accounts = roster
        .people
        .iter()
        .filter(|p| !p.terminated_by(today) && !seen.contains(p.login.as_str()))
        .map(|p| MissingAccount { line: p.line, employee_id: p.employee_id.clone(), login: p.login.as_str().to_owned() })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "employee_id,login,status,termination_date\n";

    fn account(login: &str, role: Role, disabled: bool, sessions: u32, devices: Vec<DeviceSnapshot>) -> AccountSnapshot {
        AccountSnapshot { user_id: UserId::new(), login: login.into(), role, disabled, live_sessions: sessions, devices }
    }

    fn device(revoked: bool, channel: bool) -> DeviceSnapshot {
        DeviceSnapshot { id: DeviceId::new(), revoked, wipe_channel: channel, wipe_pending: revoked && channel }
    }

    #[test]
    fn parses_documented_columns_in_any_order_and_ignores_others() {
        let r = Roster::parse_csv("Full Name,STATUS,login,employee_id\n\"Adams, Jo\",Active,Dr.Adams@Clinic,E1\n\nX,terminated,bob,E2\n")
            .unwrap();
        assert_eq!(r.people.len(), 2);
        assert_eq!(r.people[0].login.as_str(), "dr.adams@clinic");
        assert_eq!(r.people[0].status, RosterStatus::Active);
        assert_eq!(r.people[0].line, 2);
        assert_eq!(r.people[1].line, 4);
        assert_eq!(r.people[1].status, RosterStatus::Terminated);
        assert_eq!(r.people[1].termination_date, None);
    }

    #[test]
    fn refusals_name_line_and_column_never_the_value() {
        let cases: Vec<(String, RosterError)> = vec![
            (String::new(), RosterError::NoHeader),
            ("login,status\nabc,active\n".into(), RosterError::MissingColumn("employee_id")),
            ("employee_id,login,status,Login\n".into(), RosterError::DuplicateColumn("login")),
            (
                format!("{HEADER}E1,abc,retired,\n"),
                RosterError::BadField { line: 2, column: "status", rule: "must be active or terminated" },
            ),
            (
                format!("{HEADER}E1,abc,,\n"),
                RosterError::BadField { line: 2, column: "status", rule: "is required (active or terminated)" },
            ),
            (format!("{HEADER}E1,a b,active,\n"), RosterError::BadField { line: 2, column: "login", rule: "is not a Ward login name" }),
            (
                format!("{HEADER},abc,active,\n"),
                RosterError::BadField { line: 2, column: "employee_id", rule: "must be 1 to 64 characters" },
            ),
            (
                format!("{HEADER}E1,abc,active,2026-02-30\n"),
                RosterError::BadField { line: 2, column: "termination_date", rule: "must be a date YYYY-MM-DD" },
            ),
            (format!("{HEADER}E1,abc,active,\nE2,ABC,active,\n"), RosterError::Duplicate { line: 3, column: "login", first: 2 }),
            (format!("{HEADER}E1,abc,active,\nE1,abd,active,\n"), RosterError::Duplicate { line: 3, column: "employee_id", first: 2 }),
            (format!("{HEADER}E1,abc,active\n"), RosterError::Unreadable { line: 2 }),
            (
                format!("{HEADER}\n\nE1,abc,gone,\n"),
                RosterError::BadField { line: 4, column: "status", rule: "must be active or terminated" },
            ),
        ];
        for (text, want) in cases {
            let got = Roster::parse_csv(&text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
            assert!(!got.to_string().contains("abc") && !got.to_string().contains("retired"), "{got}");
        }
    }

    #[test]
    fn dates_are_checked_for_real_days() {
        assert!(valid_date("2024-02-29"));
        assert!(!valid_date("2023-02-29"));
        assert!(!valid_date("2023-13-01"));
        assert!(!valid_date("2023-1-01"));
        assert!(!valid_date("２０２３-01-01"));
    }

    #[test]
    fn reconcile_flags_leavers_and_strangers_and_finds_missing_accounts() {
        let roster = Roster::parse_csv(&format!(
            "{HEADER}E1,ann,active,\nE2,bob,terminated,\nE3,cat,active,2026-01-01\nE4,dan,active,2099-01-01\nE5,eve,active,\nE6,pat,active,\n"
        ))
        .unwrap();
        let admin = account("admin", Role::Admin, false, 1, vec![]);
        let accounts = vec![
            account("ann", Role::Clinician, false, 1, vec![device(false, true)]),
            account("bob", Role::Clinician, false, 2, vec![device(false, true), device(false, false), device(true, true)]),
            account("cat", Role::Nurse, true, 0, vec![]),
            account("dan", Role::Nurse, false, 0, vec![]),
            account("zed", Role::Clinician, true, 0, vec![device(false, true)]),
            account("pat", Role::Patient, false, 1, vec![]),
            admin.clone(),
        ];
        let r = reconcile(&roster, &accounts, "2026-06-01", Some(admin.user_id));
        assert_eq!((r.roster_people, r.roster_terminated, r.accounts), (6, 2, 6));
        let logins = |v: &[FlaggedAccount]| v.iter().map(|f| f.login.clone()).collect::<Vec<_>>();
        assert_eq!(logins(&r.needs_action), ["bob", "zed"]);
        assert_eq!(r.needs_action[0].reason, FlagReason::Terminated);
        assert_eq!(r.needs_action[0].live_devices.len(), 2);
        assert_eq!(r.needs_action[0].no_wipe_channel.len(), 1);
        assert_eq!(r.needs_action[0].pending_wipes, 1);
        assert_eq!(r.needs_action[1].reason, FlagReason::NotOnRoster);
        assert!(!r.needs_action[1].active);
        assert_eq!(logins(&r.already_disabled), ["cat"]);
        assert_eq!(r.excluded_self.as_ref().map(|f| f.login.as_str()), Some("admin"));
        // eve has no account; pat's account is a patient's, not workforce.
        let missing: Vec<&str> = r.missing_accounts.iter().map(|m| m.login.as_str()).collect();
        assert_eq!(missing, ["eve", "pat"]);
        assert_eq!(r.remediation_refusal(false), None);
    }

    #[test]
    fn remediation_of_an_empty_or_mostly_missing_roster_is_refused() {
        let accounts: Vec<AccountSnapshot> = (0..10).map(|i| account(&format!("u{i}@acme"), Role::Nurse, false, 1, vec![])).collect();
        let empty = reconcile(&Roster::parse_csv(HEADER).unwrap(), &accounts, "2026-06-01", None);
        assert_eq!(empty.needs_action.len(), 10);
        assert!(empty.remediation_refusal(true).is_some(), "an empty roster is never acted on");
        // Six of ten leave: more than half and more than five, so only with the override.
        let four: String = (0..4).map(|i| format!("E{i},u{i}@acme,active,\n")).collect();
        let most = reconcile(&Roster::parse_csv(&format!("{HEADER}{four}")).unwrap(), &accounts, "2026-06-01", None);
        assert_eq!(most.needs_action.len(), 6);
        assert!(most.remediation_refusal(false).is_some());
        assert_eq!(most.remediation_refusal(true), None);
        // Five of ten: acted on.
        let five: String = (0..5).map(|i| format!("E{i},u{i}@acme,active,\n")).collect();
        let half = reconcile(&Roster::parse_csv(&format!("{HEADER}{five}")).unwrap(), &accounts, "2026-06-01", None);
        assert_eq!(half.remediation_refusal(false), None);
    }

    proptest! {
        #[test]
        fn every_workforce_account_lands_in_exactly_one_place(
            specs in proptest::collection::vec((0u8..3, any::<bool>(), 0u32..3, any::<bool>()), 0..20),
        ) {
            let mut csv = String::from(HEADER);
            let mut accounts = Vec::new();
            for (i, (on_roster, disabled, sessions, device_live)) in specs.iter().enumerate() {
                let login = format!("user{i}");
                match on_roster {
                    0 => {}
                    1 => csv.push_str(&format!("E{i},{login},active,\n")),
                    _ => csv.push_str(&format!("E{i},{login},terminated,\n")),
                }
                accounts.push(account(&login, Role::Clinician, *disabled, *sessions, vec![device(!device_live, true)]));
            }
            let roster = Roster::parse_csv(&csv).unwrap();
            let r = reconcile(&roster, &accounts, "2026-06-01", None);
            let flagged = r.needs_action.len() + r.already_disabled.len();
            let expected = specs.iter().filter(|s| s.0 != 1).count();
            prop_assert_eq!(flagged, expected);
            prop_assert!(r.missing_accounts.is_empty());
            for f in &r.needs_action {
                prop_assert!(f.needs_action());
            }
            for f in &r.already_disabled {
                prop_assert!(!f.needs_action());
            }
        }

        #[test]
        fn lines_are_the_lines_an_editor_shows(blanks in proptest::collection::vec(0usize..3, 1..10), crlf in any::<bool>()) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("employee_id,login,status{nl}");
            let mut line = 1u64;
            let mut expected = Vec::new();
            for (i, b) in blanks.iter().enumerate() {
                text.push_str(&nl.repeat(*b));
                line += *b as u64 + 1;
                text.push_str(&format!("E{i},user{i},active{nl}"));
                expected.push(line);
            }
            let r = Roster::parse_csv(&text).unwrap();
            prop_assert_eq!(r.people.iter().map(|p| p.line).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn parsing_any_text_gives_people_or_a_located_error(text in "[a-z0-9,\"\n -]{0,200}") {
            match Roster::parse_csv(&text) {
                Ok(r) => prop_assert!(r.people.iter().all(|p| p.line >= 2)),
                Err(RosterError::BadField { line, .. } | RosterError::Duplicate { line, .. }) => prop_assert!(line >= 2),
                Err(_) => {}
            }
        }
    }
}
