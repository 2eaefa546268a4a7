//! The organisation's posture policy: the baseline's items, each with the action the
//! organisation chose for a failure and the grace period before blocking.
//!
//! The items, their requirements and which are supervised-only come from the hardened iPhone
//! baseline (`shared/spec/device-baseline.md`, Apple's device-management schemas at commit
//! b6202ca2, MIT-licensed). The default policy is that baseline.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::report::OsVersion;

/// One posture item, by its stable id (the JSON name is the id and never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemId {
    /// A passcode is set.
    PasscodePresent,
    /// The passcode has at least 6 characters.
    PasscodeLength,
    /// The passcode is alphanumeric.
    PasscodeAlphanumeric,
    /// The device erases itself after 10 failed attempts (or fewer).
    EraseAfterFailedAttempts,
    /// Auto-Lock after 5 minutes or less.
    AutoLock,
    /// iCloud Backup is off.
    IcloudBackupOff,
    /// iCloud Photos is off.
    IcloudPhotosOff,
    /// Siri does not answer while locked.
    SiriWhileLockedOff,
    /// Ward's notifications show their previews only when unlocked (or never).
    NotificationPreviews,
    /// Backups are encrypted.
    EncryptedBackups,
    /// No jailbreak detected.
    NotJailbroken,
    /// The app passed attestation.
    AppAttestation,
    /// The OS is at least the policy's minimum version.
    OsMinimum,
    /// The device reported recently enough.
    RecentReport,
}

/// What one item requires, where Apple enforces it, and whether it is judged only on
/// supervised devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ItemSpec {
    /// The item.
    pub id: ItemId,
    /// The requirement, in words.
    pub requirement: &'static str,
    /// The configuration-profile key that enforces it (payload type and key), if any.
    pub apple_key: Option<&'static str>,
    /// Judged only on supervised devices (the baseline's caveat: not reliable otherwise).
    pub supervised_only: bool,
    /// Only meaningful on Apple platforms (iCloud).
    pub apple_only: bool,
}

/// Every item, in the order reports and documents list them.
pub const ITEMS: [ItemSpec; 14] = [
    spec(ItemId::PasscodePresent, "a passcode is set", Some("com.apple.mobiledevice.passwordpolicy forcePIN = true"), false, false),
    spec(
        ItemId::PasscodeLength,
        "the passcode has at least 6 characters",
        Some("com.apple.mobiledevice.passwordpolicy minLength = 6"),
        false,
        false,
    ),
    spec(
        ItemId::PasscodeAlphanumeric,
        "the passcode has letters as well as digits",
        Some("com.apple.mobiledevice.passwordpolicy requireAlphanumeric = true"),
        false,
        false,
    ),
    spec(
        ItemId::EraseAfterFailedAttempts,
        "the device erases itself after at most 10 failed passcode attempts",
        Some("com.apple.mobiledevice.passwordpolicy maxFailedAttempts = 10"),
        false,
        false,
    ),
    spec(
        ItemId::AutoLock,
        "Auto-Lock after 5 minutes or less",
        Some("com.apple.mobiledevice.passwordpolicy maxInactivity = 5"),
        false,
        false,
    ),
    spec(ItemId::IcloudBackupOff, "iCloud Backup is off", Some("com.apple.applicationaccess allowCloudBackup = false"), true, true),
    spec(ItemId::IcloudPhotosOff, "iCloud Photos is off", Some("com.apple.applicationaccess allowCloudPhotoLibrary = false"), true, true),
    spec(
        ItemId::SiriWhileLockedOff,
        "Siri does not answer while the device is locked",
        Some("com.apple.applicationaccess allowAssistantWhileLocked = false"),
        false,
        false,
    ),
    spec(
        ItemId::NotificationPreviews,
        "Ward's notification previews show only when unlocked (or never)",
        Some("com.apple.notificationsettings PreviewType = 1"),
        true,
        false,
    ),
    spec(ItemId::EncryptedBackups, "backups are encrypted", Some("com.apple.applicationaccess forceEncryptedBackup = true"), false, false),
    spec(ItemId::NotJailbroken, "no jailbreak (root) is detected", None, false, false),
    spec(ItemId::AppAttestation, "the app passes attestation (App Attest)", None, false, false),
    spec(ItemId::OsMinimum, "the OS is at least the policy's minimum version", None, false, false),
    spec(ItemId::RecentReport, "the device has reported within the policy's staleness limit", None, false, false),
];

const fn spec(id: ItemId, requirement: &'static str, apple_key: Option<&'static str>, supervised_only: bool, apple_only: bool) -> ItemSpec {
    ItemSpec { id, requirement, apple_key, supervised_only, apple_only }
}

impl ItemId {
    /// The stable id as text (the JSON name).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemId::PasscodePresent => "passcode_present",
            ItemId::PasscodeLength => "passcode_length",
            ItemId::PasscodeAlphanumeric => "passcode_alphanumeric",
            ItemId::EraseAfterFailedAttempts => "erase_after_failed_attempts",
            ItemId::AutoLock => "auto_lock",
            ItemId::IcloudBackupOff => "icloud_backup_off",
            ItemId::IcloudPhotosOff => "icloud_photos_off",
            ItemId::SiriWhileLockedOff => "siri_while_locked_off",
            ItemId::NotificationPreviews => "notification_previews",
            ItemId::EncryptedBackups => "encrypted_backups",
            ItemId::NotJailbroken => "not_jailbroken",
            ItemId::AppAttestation => "app_attestation",
            ItemId::OsMinimum => "os_minimum",
            ItemId::RecentReport => "recent_report",
        }
    }

    /// What the item requires and where Apple enforces it.
    pub fn spec(self) -> &'static ItemSpec {
        // ITEMS lists every variant once; the test below keeps it so.
        ITEMS.iter().find(|s| s.id == self).unwrap_or(&ITEMS[0])
    }
}

/// What a failing item does to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Kept in the posture history only.
    RecordOnly,
    /// The user is told which settings to fix.
    WarnUser,
    /// After the grace period the device receives no message content, only a notice naming the
    /// settings to fix.
    BlockPhi,
}

/// The organisation's choice for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRule {
    /// The item.
    pub item: ItemId,
    /// What a failure does.
    pub action: Action,
    /// For `block_phi`: how long, in milliseconds from the first failing evaluation, the
    /// device is only warned before it is blocked.
    #[serde(default)]
    pub grace_ms: i64,
}

/// A policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not a JSON object of the policy's fields.
    #[error("not a valid posture policy: {0}")]
    Malformed(String),
    /// An item has two rules.
    #[error("item {0} has more than one rule")]
    DuplicateItem(&'static str),
    /// A grace period is negative or longer than a year.
    #[error("item {0}: grace_ms must be from 0 to one year")]
    Grace(&'static str),
    /// The staleness limit is not positive or longer than a year.
    #[error("stale_after_ms must be from one minute to one year")]
    Staleness,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const YEAR_MS: i64 = 366 * DAY_MS;

/// How an organisation judges device posture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PosturePolicy {
    /// A rule per item; an item without one uses its baseline default, so items added later
    /// apply with their defaults.
    pub rules: Vec<ItemRule>,
    /// A device that has not reported for this long (Unix ms) fails `recent_report`.
    pub stale_after_ms: i64,
    /// The oldest OS version `os_minimum` accepts.
    pub minimum_os: OsVersion,
    /// Whether an item the device did not report counts as failing (otherwise it is listed as
    /// unknown, for review, and triggers no action).
    #[serde(default)]
    pub unknown_fails: bool,
}

impl Default for PosturePolicy {
    /// The baseline: blocking for the settings that protect PHI on a lost or compromised
    /// phone, warnings for the rest.
    fn default() -> Self {
        PosturePolicy {
            rules: ITEMS.iter().map(|s| default_rule(s.id)).collect(),
            stale_after_ms: 7 * DAY_MS,
            // requireManagedPasteboard (baseline item 9) needs iOS 15.
            minimum_os: OsVersion::new(15, 0, 0),
            unknown_fails: false,
        }
    }
}

/// The baseline's rule for one item.
pub fn default_rule(item: ItemId) -> ItemRule {
    let (action, grace_ms) = match item {
        // A phone without a passcode, jailbroken or running a modified app exposes PHI now.
        ItemId::PasscodePresent | ItemId::NotJailbroken | ItemId::AppAttestation => (Action::BlockPhi, 0),
        // The staleness limit is its own grace.
        ItemId::RecentReport => (Action::BlockPhi, 0),
        ItemId::PasscodeLength
        | ItemId::PasscodeAlphanumeric
        | ItemId::EraseAfterFailedAttempts
        | ItemId::AutoLock
        | ItemId::IcloudBackupOff
        | ItemId::NotificationPreviews => (Action::BlockPhi, 7 * DAY_MS),
        ItemId::IcloudPhotosOff | ItemId::SiriWhileLockedOff | ItemId::EncryptedBackups | ItemId::OsMinimum => (Action::WarnUser, 0),
    };
    ItemRule { item, action, grace_ms }
}

impl PosturePolicy {
    /// Parses and checks a policy. Unknown fields and items are refused.
    pub fn from_json(json: &str) -> Result<Self, PolicyError> {
        let policy: PosturePolicy = serde_json::from_str(json).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// Checks the rules and limits.
    pub fn check(&self) -> Result<(), PolicyError> {
        let mut seen = BTreeSet::new();
        for rule in &self.rules {
            if !seen.insert(rule.item) {
                return Err(PolicyError::DuplicateItem(rule.item.as_str()));
            }
            if !(0..=YEAR_MS).contains(&rule.grace_ms) {
                return Err(PolicyError::Grace(rule.item.as_str()));
            }
        }
        if !(MINUTE_MS..=YEAR_MS).contains(&self.stale_after_ms) {
            return Err(PolicyError::Staleness);
        }
        Ok(())
    }

    /// The rule for `item`: the organisation's, or the baseline default.
    pub fn rule(&self, item: ItemId) -> ItemRule {
        self.rules.iter().find(|r| r.item == item).copied().unwrap_or_else(|| default_rule(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_every_item_once_under_its_json_name() {
        let ids: BTreeSet<ItemId> = ITEMS.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), ITEMS.len());
        for s in &ITEMS {
            assert_eq!(s.id.spec(), s);
            assert_eq!(serde_json::to_value(s.id).unwrap(), s.id.as_str());
        }
    }

    #[test]
    fn the_baseline_marks_notifications_and_icloud_supervised_only() {
        let supervised: Vec<ItemId> = ITEMS.iter().filter(|s| s.supervised_only).map(|s| s.id).collect();
        assert_eq!(supervised, [ItemId::IcloudBackupOff, ItemId::IcloudPhotosOff, ItemId::NotificationPreviews]);
    }

    #[test]
    fn policies_parse_and_are_checked() {
        let default = PosturePolicy::default();
        default.check().unwrap();
        assert_eq!(PosturePolicy::from_json(&serde_json::to_string(&default).unwrap()).unwrap(), default);
        let p = PosturePolicy::from_json(
            r#"{"rules":[{"item":"auto_lock","action":"warn_user"}],"stale_after_ms":86400000,"minimum_os":"17.0"}"#,
        )
        .unwrap();
        assert_eq!(p.rule(ItemId::AutoLock), ItemRule { item: ItemId::AutoLock, action: Action::WarnUser, grace_ms: 0 });
        assert_eq!(p.rule(ItemId::PasscodePresent), default_rule(ItemId::PasscodePresent));
        let dup = r#"{"rules":[{"item":"auto_lock","action":"warn_user"},{"item":"auto_lock","action":"block_phi"}],"stale_after_ms":86400000,"minimum_os":"17.0"}"#;
        assert_eq!(PosturePolicy::from_json(dup), Err(PolicyError::DuplicateItem("auto_lock")));
        let neg = r#"{"rules":[{"item":"auto_lock","action":"block_phi","grace_ms":-1}],"stale_after_ms":86400000,"minimum_os":"17.0"}"#;
        assert_eq!(PosturePolicy::from_json(neg), Err(PolicyError::Grace("auto_lock")));
        assert_eq!(PosturePolicy::from_json(r#"{"rules":[],"stale_after_ms":0,"minimum_os":"17.0"}"#), Err(PolicyError::Staleness));
        for bad in [
            r#"{"rules":[{"item":"bluetooth_off","action":"warn_user"}],"stale_after_ms":86400000,"minimum_os":"17.0"}"#,
            r#"{"rules":[],"stale_after_ms":86400000,"minimum_os":"17.0","extra":1}"#,
            r#"{"rules":[],"stale_after_ms":86400000,"minimum_os":"x"}"#,
        ] {
            assert!(matches!(PosturePolicy::from_json(bad), Err(PolicyError::Malformed(_))), "{bad}");
        }
    }
}
