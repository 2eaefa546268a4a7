//! The Apple configuration profile (`.mobileconfig`) that enforces the baseline: passcode
//! policy, restrictions, and notification previews for Ward's app.
//!
//! Keys and values are those of `shared/spec/device-baseline.md` §1, §2 and §5, which cite
//! Apple's device-management schemas (github.com/apple/device-management at b6202ca2, MIT).
//! Payload identifiers are stable (derived from the organisation's reverse-DNS prefix), so
//! installing a newer profile replaces the old one; payload UUIDs are fresh each time.
//! The profile is unsigned: sign it with the organisation's certificate (or let the MDM
//! deliver it) where a signed profile is wanted.

use plist::{Dictionary, Value};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::RngCore;
use uuid::Uuid;

/// The suffix of every identifier under the organisation's prefix.
const IDENTIFIER_ROOT: &str = "ward.baseline";

/// The default bundle id for the notification settings: a placeholder until Ward ships an iOS
/// app (organisations give their build's id).
pub const DEFAULT_BUNDLE_ID: &str = "org.ward.app";

/// A profile could not be generated from the options given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A reverse-DNS identifier (organisation prefix or bundle id) is malformed.
    #[error("{field} must be reverse-DNS: two or more dot-separated labels of letters, digits and hyphens")]
    Identifier {
        /// The option's name.
        field: &'static str,
    },
    /// The organisation name is empty, longer than 128 characters or has control characters.
    #[error("organisation must be 1 to 128 characters without control characters")]
    Organisation,
    /// The plist writer failed.
    #[error("cannot write the profile: {0}")]
    Write(String),
}

/// What Ward's notifications may show on the lock screen (`PreviewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreviewSetting {
    /// Previews only when unlocked (`PreviewType` 1, the baseline).
    #[default]
    WhenUnlocked,
    /// Never any preview (`PreviewType` 2, stricter).
    Never,
}

/// The organisation's choices for the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOptions {
    org_prefix: String,
    bundle_id: String,
    organisation: Option<String>,
    previews: PreviewSetting,
}

impl ProfileOptions {
    /// Options for the organisation whose reverse-DNS prefix is `org_prefix` (such as
    /// `org.example.hospital`), with the default bundle id and previews.
    pub fn new(org_prefix: &str) -> Result<Self, ProfileError> {
        Ok(ProfileOptions {
            org_prefix: reverse_dns("org_prefix", org_prefix)?,
            bundle_id: DEFAULT_BUNDLE_ID.to_owned(),
            organisation: None,
            previews: PreviewSetting::default(),
        })
    }

    /// The bundle id of Ward's app (for a rebranded build).
    pub fn bundle_id(mut self, bundle_id: &str) -> Result<Self, ProfileError> {
        self.bundle_id = reverse_dns("bundle_id", bundle_id)?;
        Ok(self)
    }

    /// The organisation's name, shown on the device as the profile's organisation.
    pub fn organisation(mut self, name: &str) -> Result<Self, ProfileError> {
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(ProfileError::Organisation);
        }
        self.organisation = Some(name.to_owned());
        Ok(self)
    }

    /// The notification preview setting.
    pub fn previews(mut self, previews: PreviewSetting) -> Self {
        self.previews = previews;
        self
    }

    /// The profile's own `PayloadIdentifier`.
    pub fn profile_identifier(&self) -> String {
        format!("{}.{IDENTIFIER_ROOT}", self.org_prefix)
    }
}

/// Where fresh payload UUIDs come from: random in use, fixed in tests.
pub trait UuidSource {
    /// The next UUID.
    fn next_uuid(&mut self) -> Uuid;
}

/// Random version 4 UUIDs from the operating system's generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomUuids;

impl UuidSource for RandomUuids {
    fn next_uuid(&mut self) -> Uuid {
        Uuid::new_v4()
    }
}

/// Version 4 UUIDs drawn from ChaCha20 keyed by a seed: the same seed gives the same UUIDs.
/// For tests and reproducible builds of a profile, never for profiles one seed would repeat.
#[derive(Debug, Clone)]
pub struct SeededUuids(ChaCha20Rng);

impl SeededUuids {
    /// The sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededUuids(crate::sample::rng(seed))
    }
}

impl UuidSource for SeededUuids {
    fn next_uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.0.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The profile as a plist value.
pub fn profile(options: &ProfileOptions, uuids: &mut dyn UuidSource) -> Value {
    let root = options.profile_identifier();
    let payloads = vec![
        payload(&root, "passcode", "com.apple.mobiledevice.passwordpolicy", "Passcode", passcode_keys(), uuids),
        payload(&root, "restrictions", "com.apple.applicationaccess", "Restrictions", restriction_keys(), uuids),
        payload(&root, "notifications", "com.apple.notificationsettings", "Ward notifications", notification_keys(options), uuids),
    ];
    let mut top = Dictionary::new();
    top.insert("PayloadContent".into(), Value::Array(payloads.into_iter().map(Value::Dictionary).collect()));
    top.insert("PayloadDisplayName".into(), "Ward clinician device baseline".into());
    top.insert(
        "PayloadDescription".into(),
        "Passcode, restriction and notification settings required to use Ward with patient information.".into(),
    );
    top.insert("PayloadIdentifier".into(), root.into());
    if let Some(name) = &options.organisation {
        top.insert("PayloadOrganization".into(), name.clone().into());
    }
    top.insert("PayloadType".into(), "Configuration".into());
    top.insert("PayloadUUID".into(), uuid_text(uuids).into());
    top.insert("PayloadVersion".into(), 1.into());
    // iPhone and iPad (iOS 12.2+; the baseline needs iOS 15 anyway).
    top.insert("TargetDeviceType".into(), 1.into());
    Value::Dictionary(top)
}

/// The profile as an unsigned XML `.mobileconfig`.
pub fn profile_xml(options: &ProfileOptions, uuids: &mut dyn UuidSource) -> Result<Vec<u8>, ProfileError> {
    let mut out = Vec::new();
    profile(options, uuids).to_writer_xml(&mut out).map_err(|e| ProfileError::Write(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Baseline items 2–4: a 6+ character alphanumeric passcode, erase after 10 failures,
/// Auto-Lock within 5 minutes and the passcode asked for at once.
fn passcode_keys() -> Vec<(&'static str, Value)> {
    vec![
        ("forcePIN", true.into()),
        ("allowSimple", false.into()),
        ("minLength", 6.into()),
        ("requireAlphanumeric", true.into()),
        ("maxFailedAttempts", 10.into()),
        ("maxInactivity", 5.into()),
        ("maxGracePeriod", 0.into()),
    ]
}

/// Baseline items 5–9 and the other hardened restrictions of §2.
fn restriction_keys() -> Vec<(&'static str, Value)> {
    let off = |k: &'static str| (k, Value::Boolean(false));
    let on = |k: &'static str| (k, Value::Boolean(true));
    vec![
        off("allowCloudBackup"),
        off("allowCloudPhotoLibrary"),
        off("allowSharedStream"),
        off("allowPhotoStream"),
        off("allowAssistant"),
        off("allowAssistantWhileLocked"),
        on("forceEncryptedBackup"),
        off("allowOpenFromManagedToUnmanaged"),
        on("requireManagedPasteboard"),
        on("forceAirDropUnmanaged"),
        off("allowCloudDocumentSync"),
        off("allowCloudKeychainSync"),
        off("allowLockScreenNotificationsView"),
        off("allowLockScreenTodayView"),
        off("allowLockScreenControlCenter"),
        off("allowScreenShot"),
        off("allowAirDrop"),
        off("allowOpenFromUnmanagedToManaged"),
        off("allowManagedAppsCloudSync"),
        off("allowUnmanagedToReadManagedContacts"),
    ]
}

/// Baseline item 1: Ward's previews only when unlocked (supervised devices only).
fn notification_keys(options: &ProfileOptions) -> Vec<(&'static str, Value)> {
    let preview_type = match options.previews {
        PreviewSetting::WhenUnlocked => 1,
        PreviewSetting::Never => 2,
    };
    let mut app = Dictionary::new();
    app.insert("BundleIdentifier".into(), options.bundle_id.clone().into());
    app.insert("PreviewType".into(), preview_type.into());
    vec![("NotificationSettings", Value::Array(vec![Value::Dictionary(app)]))]
}

fn payload(
    root: &str,
    suffix: &str,
    payload_type: &str,
    display_name: &str,
    keys: Vec<(&'static str, Value)>,
    uuids: &mut dyn UuidSource,
) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("PayloadDisplayName".into(), display_name.into());
    d.insert("PayloadIdentifier".into(), format!("{root}.{suffix}").into());
    d.insert("PayloadType".into(), payload_type.into());
    d.insert("PayloadUUID".into(), uuid_text(uuids).into());
    d.insert("PayloadVersion".into(), 1.into());
    for (k, v) in keys {
        d.insert(k.into(), v);
    }
    d
}

/// Profiles conventionally carry upper-case UUIDs, as Apple's tools write them.
fn uuid_text(uuids: &mut dyn UuidSource) -> String {
    uuids.next_uuid().hyphenated().encode_upper(&mut Uuid::encode_buffer()).to_owned()
}

/// Room left for Ward's suffixes under Apple's identifiers.
const MAX_PREFIX_LEN: usize = 155;

fn reverse_dns(field: &'static str, s: &str) -> Result<String, ProfileError> {
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.len() > MAX_PREFIX_LEN || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(ProfileError::Identifier { field });
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(v: &Value) -> &Dictionary {
        v.as_dictionary().expect("a dictionary")
    }

    #[test]
    fn identifiers_are_stable_and_uuids_fresh() {
        let opts = ProfileOptions::new("org.example.hospital").unwrap();
        let a = profile(&opts, &mut RandomUuids);
        let b = profile(&opts, &mut RandomUuids);
        let ids = |p: &Value| -> (Vec<String>, Vec<String>) {
            let mut ids = vec![dict(p)["PayloadIdentifier"].as_string().unwrap().to_owned()];
            let mut uuids = vec![dict(p)["PayloadUUID"].as_string().unwrap().to_owned()];
            for c in dict(p)["PayloadContent"].as_array().unwrap() {
                ids.push(dict(c)["PayloadIdentifier"].as_string().unwrap().to_owned());
                uuids.push(dict(c)["PayloadUUID"].as_string().unwrap().to_owned());
            }
            (ids, uuids)
        };
        let (ids_a, uuids_a) = ids(&a);
        let (ids_b, uuids_b) = ids(&b);
        assert_eq!(ids_a, ids_b);
        assert_eq!(
            ids_a,
            [
                "org.example.hospital.ward.baseline",
                "org.example.hospital.ward.baseline.passcode",
                "org.example.hospital.ward.baseline.restrictions",
                "org.example.hospital.ward.baseline.notifications"
            ]
        );
        for u in uuids_a.iter().chain(&uuids_b) {
            let parsed = Uuid::parse_str(u).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(u, &u.to_uppercase());
        }
        let all: std::collections::BTreeSet<&String> = uuids_a.iter().chain(&uuids_b).collect();
        assert_eq!(all.len(), 8, "every UUID differs");
    }

    #[test]
    fn seeded_uuids_repeat_and_the_xml_round_trips() {
        let opts = ProfileOptions::new("org.example").unwrap().organisation("Example & Co <Clinic>").unwrap();
        let one = profile_xml(&opts, &mut SeededUuids::new(7)).unwrap();
        assert_eq!(one, profile_xml(&opts, &mut SeededUuids::new(7)).unwrap());
        assert_ne!(one, profile_xml(&opts, &mut SeededUuids::new(8)).unwrap());
        let text = String::from_utf8(one.clone()).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist"), "{text}");
        assert!(text.contains("Example &amp; Co &lt;Clinic&gt;"));
        let back = Value::from_reader_xml(one.as_slice()).unwrap();
        assert_eq!(back, profile(&opts, &mut SeededUuids::new(7)));
    }

    #[test]
    fn options_are_checked() {
        for bad in ["", "example", "org..example", "org.-example", "org.exa mple", "org.example.", "org.ex_ample", "org.ëxample"] {
            assert_eq!(ProfileOptions::new(bad), Err(ProfileError::Identifier { field: "org_prefix" }), "{bad:?}");
        }
        let long = format!("org.{}", "a".repeat(160));
        assert!(ProfileOptions::new(&long).is_err());
        let opts = ProfileOptions::new("org.example").unwrap();
        assert_eq!(opts.clone().bundle_id("ward"), Err(ProfileError::Identifier { field: "bundle_id" }));
        assert_eq!(opts.clone().organisation(""), Err(ProfileError::Organisation));
        assert_eq!(opts.organisation("a\nb"), Err(ProfileError::Organisation));
    }

    #[test]
    fn previews_never_is_preview_type_2() {
        let opts = ProfileOptions::new("org.example").unwrap().previews(PreviewSetting::Never).bundle_id("com.example.ward").unwrap();
        let p = profile(&opts, &mut SeededUuids::new(1));
        let notif = dict(&dict(&p)["PayloadContent"].as_array().unwrap()[2]);
        let app = dict(&notif["NotificationSettings"].as_array().unwrap()[0]);
        assert_eq!(app["BundleIdentifier"].as_string(), Some("com.example.ward"));
        assert_eq!(app["PreviewType"].as_signed_integer(), Some(2));
    }
}
