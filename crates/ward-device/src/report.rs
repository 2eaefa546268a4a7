//! What a device tells Ward: its registration facts and its posture reports, parsed from JSON
//! into checked types.
//!
//! Every field of a posture report is optional: a device reports what it can read (an app in
//! its sandbox sees less than an MDM query does), and a field it leaves out is judged
//! "unknown", never "pass". Values no iPhone can have are refused with a [`ReportError`].
//!
//! The JSON written by `Serialize` is the same shape `from_json` reads, so a store can keep
//! each report as JSON and recompute evaluations from it later.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A posture report or registration was refused.
///
/// Messages name the field and the rule; posture settings carry no PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not a JSON object of the expected fields: a syntax error, a field of the wrong type, an
    /// unknown field or a missing required one.
    #[error("not a valid document: {0}")]
    Malformed(String),
    /// A whole number outside the range the platform allows.
    #[error("{field} must be from {min} to {max}")]
    OutOfRange {
        /// The field's JSON name.
        field: &'static str,
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// `auto_lock_minutes` is not a setting iOS offers.
    #[error("auto_lock_minutes must be one of 0.5, 1, 2, 3, 4, 5, 10, 15 or \"never\"")]
    AutoLockNotOffered,
    /// `erase_after_failed_attempts` is neither a count nor `"off"`.
    #[error("erase_after_failed_attempts must be a whole number from 2 to 11 or \"off\"")]
    EraseNotCountOrOff,
    /// A passcode detail was given while `passcode_present` is false.
    #[error("{field} cannot be reported when passcode_present is false")]
    ContradictsNoPasscode {
        /// The field's JSON name.
        field: &'static str,
    },
    /// A text field is empty, too long or holds characters outside its alphabet.
    #[error("{field} is invalid: {rule}")]
    Text {
        /// The field's JSON name.
        field: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
    /// An OS version is not `major[.minor[.patch]]`.
    #[error("{field} is invalid: {source}")]
    OsVersion {
        /// The field's JSON name.
        field: &'static str,
        /// What is wrong with it.
        source: OsVersionError,
    },
}

/// An operating system version, `major.minor.patch` (a missing part is 0).
///
/// Ordered numerically, so `17.10` is newer than `17.9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OsVersion {
    /// The major version (17 in 17.5.1).
    pub major: u16,
    /// The minor version (5 in 17.5.1).
    pub minor: u16,
    /// The patch version (1 in 17.5.1).
    pub patch: u16,
}

/// An OS version string that is not `major[.minor[.patch]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OsVersionError {
    /// Not one to three dot-separated parts of decimal digits.
    #[error("expected major[.minor[.patch]] in decimal digits")]
    Shape,
    /// A part has more than four digits, or the major version is 0.
    #[error("a part is 0 where it cannot be, or longer than four digits")]
    Absurd,
}

impl OsVersion {
    /// A version from its parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        OsVersion { major, minor, patch }
    }
}

impl FromStr for OsVersion {
    type Err = OsVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(OsVersionError::Shape);
        }
        // Four digits is generous for any part of an Apple or Android version; more is noise.
        if parts.iter().any(|p| p.len() > 4) {
            return Err(OsVersionError::Absurd);
        }
        let num = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<u16>().map_err(|_| OsVersionError::Absurd));
        let version = OsVersion { major: num(0)?, minor: num(1)?, patch: num(2)? };
        if version.major == 0 {
            return Err(OsVersionError::Absurd);
        }
        Ok(version)
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

impl Serialize for OsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// When the device wipes itself after failed passcode attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EraseAfterFailures {
    /// Never ("Erase Data" off, or Apple's default of 11 attempts with no erase policy).
    Off,
    /// After more than this many failed attempts (Apple's `maxFailedAttempts`, 2–11).
    After(u8),
}

/// The Auto-Lock setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoLock {
    /// Locks after this many seconds of inactivity (one of the offered settings).
    AfterSeconds(u16),
    /// Never locks by itself.
    Never,
}

impl AutoLock {
    /// The settings iOS and iPadOS offer, in seconds: 30 s, 1–5 min (iPhone), 10 and 15 min
    /// (iPad). Apple's `maxInactivity` caps them at 15 minutes.
    pub const OFFERED_SECONDS: [u16; 8] = [30, 60, 120, 180, 240, 300, 600, 900];
}

/// When notification previews show their content (Apple's `PreviewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationPreview {
    /// Always, even on the locked screen (`PreviewType` 0).
    Always,
    /// Only when the device is unlocked (`PreviewType` 1).
    WhenUnlocked,
    /// Never (`PreviewType` 2).
    Never,
}

/// The result of the app's attestation with the platform (App Attest on iOS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attestation {
    /// The platform vouched for a genuine, unmodified app.
    Passed,
    /// The attestation failed: a modified app or an emulated device.
    Failed,
    /// The platform could not attest (not supported, or the service did not answer).
    Unavailable,
}

/// A checked posture report: what a device says about its security settings.
///
/// `None` means the device did not report that setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostureReport {
    /// The OS version at the time of the report.
    pub os_version: OsVersion,
    /// Whether a passcode is set.
    pub passcode_present: Option<bool>,
    /// The passcode's length in characters (1–64; only with a passcode).
    pub passcode_length: Option<u8>,
    /// Whether the passcode has letters as well as digits (only with a passcode).
    pub passcode_alphanumeric: Option<bool>,
    /// When the device erases itself after failed attempts.
    pub erase_after_failed_attempts: Option<EraseAfterFailures>,
    /// The Auto-Lock setting.
    pub auto_lock: Option<AutoLock>,
    /// Whether iCloud Backup is on.
    pub icloud_backup_enabled: Option<bool>,
    /// Whether iCloud Photos is on.
    pub icloud_photos_enabled: Option<bool>,
    /// Whether Siri answers while the device is locked.
    pub siri_while_locked: Option<bool>,
    /// Ward's notification preview setting.
    pub notification_preview: Option<NotificationPreview>,
    /// Whether backups are forced to be encrypted.
    pub encrypted_backups: Option<bool>,
    /// Whether a jailbreak (root) was detected.
    pub jailbreak_detected: Option<bool>,
    /// The app attestation result.
    pub app_attestation: Option<Attestation>,
}

impl PostureReport {
    /// A report of `os_version` with nothing else reported.
    pub fn new(os_version: OsVersion) -> Self {
        PostureReport {
            os_version,
            passcode_present: None,
            passcode_length: None,
            passcode_alphanumeric: None,
            erase_after_failed_attempts: None,
            auto_lock: None,
            icloud_backup_enabled: None,
            icloud_photos_enabled: None,
            siri_while_locked: None,
            notification_preview: None,
            encrypted_backups: None,
            jailbreak_detected: None,
            app_attestation: None,
        }
    }

    /// Parses and checks a report. Unknown fields are refused.
    pub fn from_json(json: &str) -> Result<Self, ReportError> {
        let wire: ReportWire = serde_json::from_str(json).map_err(|e| ReportError::Malformed(e.to_string()))?;
        PostureReport::try_from(wire)
    }

    /// The report as the JSON [`PostureReport::from_json`] reads (fields not reported are left
    /// out).
    pub fn to_json(&self) -> String {
        // A struct of plain values always serialises.
        serde_json::to_string(&ReportWire::from(self.clone())).unwrap_or_default()
    }
}

/// The JSON shape of a posture report. Numbers are read wide and enumerations as raw values
/// so that range errors are ours, not the JSON parser's.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportWire {
    os_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passcode_present: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passcode_length: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passcode_alphanumeric: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erase_after_failed_attempts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto_lock_minutes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icloud_backup_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icloud_photos_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    siri_while_locked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notification_preview: Option<NotificationPreview>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted_backups: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jailbreak_detected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_attestation: Option<Attestation>,
}

/// The longest passcode length taken as real; longer is a broken report.
const MAX_PASSCODE_LENGTH: i64 = 64;
/// Apple's `maxFailedAttempts` range.
const ERASE_ATTEMPTS: (i64, i64) = (2, 11);

impl TryFrom<ReportWire> for PostureReport {
    type Error = ReportError;

    fn try_from(w: ReportWire) -> Result<Self, ReportError> {
        let os_version = w.os_version.parse().map_err(|source| ReportError::OsVersion { field: "os_version", source })?;
        let passcode_length = w
            .passcode_length
            .map(|n| match u8::try_from(n) {
                Ok(len) if (1..=MAX_PASSCODE_LENGTH).contains(&n) => Ok(len),
                _ => Err(ReportError::OutOfRange { field: "passcode_length", min: 1, max: MAX_PASSCODE_LENGTH }),
            })
            .transpose()?;
        if w.passcode_present == Some(false) {
            if passcode_length.is_some() {
                return Err(ReportError::ContradictsNoPasscode { field: "passcode_length" });
            }
            if w.passcode_alphanumeric == Some(true) {
                return Err(ReportError::ContradictsNoPasscode { field: "passcode_alphanumeric" });
            }
        }
        Ok(PostureReport {
            os_version,
            passcode_present: w.passcode_present,
            passcode_length,
            passcode_alphanumeric: w.passcode_alphanumeric,
            erase_after_failed_attempts: w.erase_after_failed_attempts.map(erase_from_json).transpose()?,
            auto_lock: w.auto_lock_minutes.map(auto_lock_from_json).transpose()?,
            icloud_backup_enabled: w.icloud_backup_enabled,
            icloud_photos_enabled: w.icloud_photos_enabled,
            siri_while_locked: w.siri_while_locked,
            notification_preview: w.notification_preview,
            encrypted_backups: w.encrypted_backups,
            jailbreak_detected: w.jailbreak_detected,
            app_attestation: w.app_attestation,
        })
    }
}

impl From<PostureReport> for ReportWire {
    fn from(r: PostureReport) -> Self {
        ReportWire {
            os_version: r.os_version.to_string(),
            passcode_present: r.passcode_present,
            passcode_length: r.passcode_length.map(i64::from),
            passcode_alphanumeric: r.passcode_alphanumeric,
            erase_after_failed_attempts: r.erase_after_failed_attempts.map(|e| match e {
                EraseAfterFailures::Off => Value::from("off"),
                EraseAfterFailures::After(n) => Value::from(n),
            }),
            auto_lock_minutes: r.auto_lock.map(|a| match a {
                AutoLock::Never => Value::from("never"),
                AutoLock::AfterSeconds(s) if s % 60 == 0 => Value::from(s / 60),
                AutoLock::AfterSeconds(s) => Value::from(f64::from(s) / 60.0),
            }),
            icloud_backup_enabled: r.icloud_backup_enabled,
            icloud_photos_enabled: r.icloud_photos_enabled,
            siri_while_locked: r.siri_while_locked,
            notification_preview: r.notification_preview,
            encrypted_backups: r.encrypted_backups,
            jailbreak_detected: r.jailbreak_detected,
            app_attestation: r.app_attestation,
        }
    }
}

fn erase_from_json(v: Value) -> Result<EraseAfterFailures, ReportError> {
    match v {
        Value::String(s) if s == "off" => Ok(EraseAfterFailures::Off),
        Value::Number(n) => match n.as_i64() {
            Some(count) if (ERASE_ATTEMPTS.0..=ERASE_ATTEMPTS.1).contains(&count) => {
                // The range check above keeps it well inside u8.
                Ok(EraseAfterFailures::After(count as u8))
            }
            Some(_) => Err(ReportError::OutOfRange { field: "erase_after_failed_attempts", min: ERASE_ATTEMPTS.0, max: ERASE_ATTEMPTS.1 }),
            None => Err(ReportError::EraseNotCountOrOff),
        },
        _ => Err(ReportError::EraseNotCountOrOff),
    }
}

fn auto_lock_from_json(v: Value) -> Result<AutoLock, ReportError> {
    match v {
        Value::String(s) if s == "never" => Ok(AutoLock::Never),
        Value::Number(n) => {
            let minutes = n.as_f64().ok_or(ReportError::AutoLockNotOffered)?;
            AutoLock::OFFERED_SECONDS
                .into_iter()
                .find(|&s| f64::from(s) == minutes * 60.0)
                .map(AutoLock::AfterSeconds)
                .ok_or(ReportError::AutoLockNotOffered)
        }
        _ => Err(ReportError::AutoLockNotOffered),
    }
}

impl Serialize for PostureReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReportWire::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PostureReport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = ReportWire::deserialize(d)?;
        PostureReport::try_from(wire).map_err(serde::de::Error::custom)
    }
}

/// A posture report as the server received it: the time comes from the server's clock, not
/// the device's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedReport {
    /// When the server received it, in Unix milliseconds.
    pub received_at_ms: i64,
    /// The report.
    pub report: PostureReport,
}

/// The device's operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// iPhone.
    Ios,
    /// iPad.
    Ipados,
    /// Android.
    Android,
}

impl Platform {
    /// Whether it is an Apple platform (iCloud settings exist only there).
    pub fn is_apple(self) -> bool {
        matches!(self, Platform::Ios | Platform::Ipados)
    }
}

/// Who owns the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// Issued by the organisation.
    Corporate,
    /// The person's own device (bring your own device).
    Byod,
}

/// What a device states when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistration {
    /// The OS family.
    pub platform: Platform,
    /// The hardware model identifier, such as `iPhone16,1`.
    pub model: String,
    /// The OS version at registration.
    pub os_version: OsVersion,
    /// Ward's app version, such as `1.4.2` or `1.4.2+417`.
    pub app_version: String,
    /// Corporate or personal.
    pub ownership: Ownership,
    /// Whether the device is supervised (Automated Device Enrollment or Apple Configurator):
    /// supervised-only items are judged only then.
    pub supervised: bool,
    /// Whether the device is enrolled in the organisation's MDM.
    pub mdm_enrolled: bool,
}

impl DeviceRegistration {
    /// Parses and checks a registration. Unknown fields are refused.
    pub fn from_json(json: &str) -> Result<Self, ReportError> {
        let reg: DeviceRegistration = serde_json::from_str(json).map_err(|e| ReportError::Malformed(e.to_string()))?;
        reg.check()?;
        Ok(reg)
    }

    /// Checks the free-text fields.
    pub fn check(&self) -> Result<(), ReportError> {
        check_text("model", &self.model, |c| c.is_ascii_alphanumeric() || " ,._-()".contains(c))?;
        check_text("app_version", &self.app_version, |c| c.is_ascii_alphanumeric() || ".+-".contains(c))
    }
}

/// Device-supplied labels are short identifiers, never prose.
const MAX_LABEL_LEN: usize = 64;

fn check_text(field: &'static str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), ReportError> {
    if value.is_empty() || value.len() > MAX_LABEL_LEN {
        return Err(ReportError::Text { field, rule: "must be 1 to 64 characters" });
    }
    if !value.chars().all(allowed) {
        return Err(ReportError::Text { field, rule: "has characters outside its alphabet" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ReportError {
        PostureReport::from_json(json).unwrap_err()
    }

    #[test]
    fn a_full_report_parses_and_round_trips() {
        let json = r#"{"os_version":"17.5.1","passcode_present":true,"passcode_length":8,"passcode_alphanumeric":true,
            "erase_after_failed_attempts":10,"auto_lock_minutes":0.5,"icloud_backup_enabled":false,
            "icloud_photos_enabled":false,"siri_while_locked":false,"notification_preview":"when_unlocked",
            "encrypted_backups":true,"jailbreak_detected":false,"app_attestation":"passed"}"#;
        let r = PostureReport::from_json(json).unwrap();
        assert_eq!(r.os_version, OsVersion::new(17, 5, 1));
        assert_eq!(r.erase_after_failed_attempts, Some(EraseAfterFailures::After(10)));
        assert_eq!(r.auto_lock, Some(AutoLock::AfterSeconds(30)));
        assert_eq!(r.notification_preview, Some(NotificationPreview::WhenUnlocked));
        assert_eq!(PostureReport::from_json(&r.to_json()).unwrap(), r);
        let via_serde: PostureReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(via_serde, r);
    }

    #[test]
    fn absent_fields_are_not_reported() {
        let r = PostureReport::from_json(r#"{"os_version":"18"}"#).unwrap();
        assert_eq!(r, PostureReport::new(OsVersion::new(18, 0, 0)));
        assert_eq!(r.to_json(), r#"{"os_version":"18.0"}"#);
        let r = PostureReport::from_json(
            r#"{"os_version":"18.1","passcode_present":null,"auto_lock_minutes":"never","erase_after_failed_attempts":"off"}"#,
        )
        .unwrap();
        assert_eq!(r.passcode_present, None);
        assert_eq!(r.auto_lock, Some(AutoLock::Never));
        assert_eq!(r.erase_after_failed_attempts, Some(EraseAfterFailures::Off));
    }

    #[test]
    fn impossible_values_are_typed_errors() {
        assert!(matches!(err(r#"{"os_version":"17.0","passcode_lenght":6}"#), ReportError::Malformed(m) if m.contains("unknown field")));
        assert!(matches!(err(r#"{"passcode_present":true}"#), ReportError::Malformed(m) if m.contains("os_version")));
        assert!(matches!(err("[]"), ReportError::Malformed(_)));
        assert!(matches!(err(r#"{"os_version":"17.0","passcode_length":6.5}"#), ReportError::Malformed(_)));
        for len in ["-1", "0", "65", "99999999999"] {
            assert_eq!(
                err(&format!(r#"{{"os_version":"17.0","passcode_length":{len}}}"#)),
                ReportError::OutOfRange { field: "passcode_length", min: 1, max: 64 },
                "{len}"
            );
        }
        for n in ["1", "12", "-3", "0"] {
            assert_eq!(
                err(&format!(r#"{{"os_version":"17.0","erase_after_failed_attempts":{n}}}"#)),
                ReportError::OutOfRange { field: "erase_after_failed_attempts", min: 2, max: 11 }
            );
        }
        for v in [r#""on""#, "true", "10.5", "[]"] {
            assert_eq!(
                err(&format!(r#"{{"os_version":"17.0","erase_after_failed_attempts":{v}}}"#)),
                ReportError::EraseNotCountOrOff,
                "{v}"
            );
        }
        for v in ["0", "6", "-5", "0.25", "16", "30", r#""sometimes""#, "false"] {
            assert_eq!(err(&format!(r#"{{"os_version":"17.0","auto_lock_minutes":{v}}}"#)), ReportError::AutoLockNotOffered, "{v}");
        }
        assert!(matches!(err(r#"{"os_version":"17.0","notification_preview":"sometimes"}"#), ReportError::Malformed(_)));
        assert_eq!(
            err(r#"{"os_version":"17.0","passcode_present":false,"passcode_length":6}"#),
            ReportError::ContradictsNoPasscode { field: "passcode_length" }
        );
        assert_eq!(
            err(r#"{"os_version":"17.0","passcode_present":false,"passcode_alphanumeric":true}"#),
            ReportError::ContradictsNoPasscode { field: "passcode_alphanumeric" }
        );
    }

    #[test]
    fn os_versions() {
        assert_eq!("17.5.1".parse(), Ok(OsVersion::new(17, 5, 1)));
        assert_eq!("18".parse(), Ok(OsVersion::new(18, 0, 0)));
        assert!(OsVersion::new(17, 10, 0) > OsVersion::new(17, 9, 3));
        for bad in ["", "17.", ".5", "17.5.1.2", "v17", "17.5-beta", " 17", "１７", "+17"] {
            assert_eq!(bad.parse::<OsVersion>(), Err(OsVersionError::Shape), "{bad:?}");
        }
        for absurd in ["0.1", "17.99999", "70000", "0"] {
            assert_eq!(absurd.parse::<OsVersion>(), Err(OsVersionError::Absurd), "{absurd:?}");
        }
        assert!(matches!(err(r#"{"os_version":"seventeen"}"#), ReportError::OsVersion { field: "os_version", .. }));
    }

    #[test]
    fn registrations() {
        let json = r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.4.2+417",
            "ownership":"byod","supervised":false,"mdm_enrolled":false}"#;
        let reg = DeviceRegistration::from_json(json).unwrap();
        assert_eq!(reg.platform, Platform::Ios);
        assert_eq!(reg.ownership, Ownership::Byod);
        let back: DeviceRegistration = serde_json::from_str(&serde_json::to_string(&reg).unwrap()).unwrap();
        assert_eq!(back, reg);
        let bad = |j: &str| DeviceRegistration::from_json(j).unwrap_err();
        assert!(matches!(bad(&json.replace("\"byod\"", "\"borrowed\"")), ReportError::Malformed(_)));
        assert!(matches!(bad(&json.replace("\"mdm_enrolled\"", "\"rooted\":false,\"mdm_enrolled\"")), ReportError::Malformed(_)));
        assert_eq!(bad(&json.replace("iPhone16,1", "")), ReportError::Text { field: "model", rule: "must be 1 to 64 characters" });
        assert!(matches!(bad(&json.replace("iPhone16,1", "iPhone\\n16")), ReportError::Text { field: "model", .. }));
        assert!(matches!(bad(&json.replace("1.4.2+417", "1.4 beta")), ReportError::Text { field: "app_version", .. }));
        assert!(matches!(bad(&json.replace("\"18.1\"", "\"18.x\"")), ReportError::Malformed(_)));
    }
}
