//! Signed evidence bundles for auditors (docs/evidence.md): one zip archive holding the HIPAA
//! control map, the live export that evidences each control, the latest signed audit
//! checkpoint with its verifier key, and `manifest.json` (every file's SHA-256 and size) with
//! a detached Ed25519 signature, `manifest.sig`, by the deployment's audit signing key, whose
//! public key is `public-key.pem`.
//!
//! The signature covers [`SIGNATURE_CONTEXT`] followed by the bytes of `manifest.json`. The
//! context holds a NUL byte, which no signed note (checkpoint) text may contain, so the same
//! key's evidence signatures and checkpoint signatures can never stand for one another.
//!
//! [`verify`] works offline on the archive alone: it checks the signature (against the key in
//! the archive, or one the auditor obtained separately), every file's size and hash, and that
//! the archive holds exactly the manifest's files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::UserId;
use ward_domain::role::Role;
use ward_store::{Org, RequestMeta, Store};

use crate::api::dto::ts;
use crate::audit_log::AuditLog;
use crate::config::Config;

/// The manifest's `format`.
pub const FORMAT: &str = "ward-evidence/1";
/// What the signature covers before the manifest's bytes.
pub const SIGNATURE_CONTEXT: &[u8] = b"ward-evidence-manifest-v1\0";
/// The manifest's name in the archive.
pub const MANIFEST: &str = "manifest.json";
/// The detached signature (64 raw bytes).
pub const SIGNATURE: &str = "manifest.sig";
/// The signing key's public key (SubjectPublicKeyInfo PEM).
pub const PUBLIC_KEY: &str = "public-key.pem";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The signed list of the archive's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The organisation.
    pub org: ManifestOrg,
    /// When the bundle was made (RFC 3339).
    pub generated_at: String,
    /// The Ward version that made it.
    pub ward_version: String,
    /// SHA-256 (hex) of the signing key's raw 32-byte public key: its fingerprint.
    pub public_key_sha256: String,
    /// Every file but the manifest, its signature and the public key, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// The organisation a bundle is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestOrg {
    /// Id.
    pub id: uuid::Uuid,
    /// Short name.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its path in the archive.
    pub path: String,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Manifest {
    /// The manifest for `files`, sorted by path.
    pub fn new(org: ManifestOrg, generated_at: String, public_key: &[u8; 32], files: &BTreeMap<String, Vec<u8>>) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            org,
            generated_at,
            ward_version: env!("CARGO_PKG_VERSION").to_owned(),
            public_key_sha256: fingerprint(public_key),
            files: files
                .iter()
                .map(|(path, bytes)| ManifestFile { path: path.clone(), sha256: sha256_hex(bytes), size: bytes.len() as u64 })
                .collect(),
        }
    }

    /// The signed bytes: pretty JSON ending with a newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        v.push(b'\n');
        v
    }

    /// Parses a manifest (unknown fields refused).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, EvidenceError> {
        serde_json::from_slice(bytes).map_err(|_| EvidenceError::Malformed("manifest.json is not a Ward evidence manifest"))
    }
}

/// Why a bundle does not verify. Each displays as one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// Not a readable archive, or a part of it is malformed.
    #[error("malformed bundle: {0}")]
    Malformed(&'static str),
    /// A file the bundle needs is absent.
    #[error("missing file: {0}")]
    Missing(String),
    /// A file not in the manifest.
    #[error("file not in the manifest: {0}")]
    Extra(String),
    /// A file whose size or hash differs from the manifest's.
    #[error("file does not match the manifest: {0}")]
    Mismatch(String),
    /// The manifest's signature does not verify.
    #[error("the manifest signature does not verify with key {0}")]
    BadSignature(String),
    /// The bundle was signed by another key than the one given.
    #[error("the bundle is signed by key {found}, not the expected key {expected}")]
    WrongKey {
        /// The key in the bundle.
        found: String,
        /// The key the auditor gave.
        expected: String,
    },
    /// A public key that cannot be read.
    #[error("not an Ed25519 public key (PEM or 64 hex digits)")]
    BadPublicKey,
}

/// What a verified bundle holds.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// The signing key's fingerprint.
    pub fingerprint: String,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A public key's fingerprint: SHA-256 of its 32 raw bytes, hex.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    sha256_hex(public_key)
}

/// The public key as SubjectPublicKeyInfo PEM (as `openssl pkey -pubin` reads it).
pub fn public_key_pem(public_key: &[u8; 32]) -> String {
    let der = [&SPKI_PREFIX[..], public_key].concat();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
}

/// Reads an Ed25519 public key given as SubjectPublicKeyInfo PEM or as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], EvidenceError> {
    let t = text.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| EvidenceError::BadPublicKey)?;
        }
        return Ok(key);
    }
    let body = t
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|r| r.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or(EvidenceError::BadPublicKey)?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| EvidenceError::BadPublicKey)?;
    match der.strip_prefix(&SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.try_into().map_err(|_| EvidenceError::BadPublicKey)?),
        _ => Err(EvidenceError::BadPublicKey),
    }
}

/// Writes the bundle: `files`, then the manifest, its signature (`sign` over
/// [`SIGNATURE_CONTEXT`] and the manifest's bytes) and the public key. Stored entries (no
/// compression), in path order.
pub fn seal(
    files: &BTreeMap<String, Vec<u8>>,
    org: ManifestOrg,
    generated_at: String,
    public_key: &[u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> anyhow::Result<Vec<u8>> {
    let manifest = Manifest::new(org, generated_at, public_key, files).encode();
    let signature = sign(&[SIGNATURE_CONTEXT, &manifest].concat());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, bytes) in files {
        zip.start_file(path.as_str(), opts)?;
        zip.write_all(bytes)?;
    }
    zip.start_file(MANIFEST, opts)?;
    zip.write_all(&manifest)?;
    zip.start_file(SIGNATURE, opts)?;
    zip.write_all(&signature)?;
    zip.start_file(PUBLIC_KEY, opts)?;
    zip.write_all(public_key_pem(public_key).as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

/// Largest file read from a bundle (a bundle is a few megabytes at most).
const MAX_ENTRY: u64 = 64 << 20;
/// Largest total read from a bundle.
const MAX_TOTAL: u64 = 256 << 20;

/// Whether `name` is a plain relative path of segments `[A-Za-z0-9._-]+` joined by `/`, none
/// of them `.` or `..` (upper case is allowed for `README.txt`; names differing only in case
/// are refused by [`verify`]).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// The end-of-central-directory record's total entry count, read from the raw bytes. The
/// record must close the archive with no comment (a bundle never has one), so it is the last
/// 22 bytes.
fn eocd_entries(archive: &[u8]) -> Result<u64, EvidenceError> {
    const EOCD: [u8; 4] = 0x0605_4b50u32.to_le_bytes();
    let n = archive.len();
    if n < 22 {
        return Err(EvidenceError::Malformed("not a zip archive"));
    }
    let rec = &archive[n - 22..];
    if rec[..4] != EOCD {
        // Either trailing bytes or an archive comment.
        return Err(EvidenceError::Malformed("the archive has a comment or trailing data"));
    }
    let entries = u16::from_le_bytes([rec[10], rec[11]]);
    if entries == u16::MAX {
        return Err(EvidenceError::Malformed("zip64 archives are not Ward evidence bundles"));
    }
    Ok(u64::from(entries))
}

/// Checks a bundle offline: the manifest's signature (by the key in the bundle, which must be
/// `expected` when given), each file's size and SHA-256, and that the archive holds exactly the
/// manifest's files plus the manifest, signature and public key.
///
/// The archive's shape is checked first, so that every zip tool shows the files this function
/// hashes: no two entries with one name (the zip reader keeps only one of them, so the count
/// in the end-of-central-directory record must equal the distinct entries read), no archive
/// comment, no bytes before the first entry, only plain relative lower-case names.
pub fn verify(archive: &[u8], expected: Option<&[u8; 32]>) -> Result<Verified, EvidenceError> {
    let declared = eocd_entries(archive)?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).map_err(|_| EvidenceError::Malformed("not a zip archive"))?;
    if !zip.comment().is_empty() {
        return Err(EvidenceError::Malformed("the archive has a comment or trailing data"));
    }
    if zip.offset() != 0 {
        return Err(EvidenceError::Malformed("the archive has data before its first entry"));
    }
    if zip.len() as u64 != declared {
        return Err(EvidenceError::Malformed("the archive holds two entries with one name"));
    }
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut first_header = u64::MAX;
    // Names as a case-insensitive file system would see them.
    let mut folded = BTreeSet::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|_| EvidenceError::Malformed("unreadable archive entry"))?;
        let name = f.name().to_owned();
        if !plain_name(&name) {
            return Err(EvidenceError::Malformed("an entry name is not a plain relative path"));
        }
        if f.is_dir() {
            return Err(EvidenceError::Extra(name));
        }
        first_header = first_header.min(f.header_start());
        let mut bytes = Vec::new();
        // A changed byte fails the entry's CRC-32 here: report it as that file's mismatch.
        if f.by_ref().take(MAX_ENTRY + 1).read_to_end(&mut bytes).is_err() || bytes.len() as u64 > MAX_ENTRY {
            return Err(EvidenceError::Mismatch(name));
        }
        total += bytes.len() as u64;
        if total > MAX_TOTAL {
            return Err(EvidenceError::Malformed("the archive is larger than any evidence bundle"));
        }
        if !folded.insert(name.to_ascii_lowercase()) || entries.insert(name.clone(), bytes).is_some() {
            return Err(EvidenceError::Malformed("the archive holds two entries with one name"));
        }
    }
    if first_header != 0 {
        return Err(EvidenceError::Malformed("the archive has data before its first entry"));
    }
    let take =
        |entries: &mut BTreeMap<String, Vec<u8>>, name: &str| entries.remove(name).ok_or_else(|| EvidenceError::Missing(name.to_owned()));
    let manifest_bytes = take(&mut entries, MANIFEST)?;
    let signature = take(&mut entries, SIGNATURE)?;
    let pem = take(&mut entries, PUBLIC_KEY)?;
    let key = parse_public_key(std::str::from_utf8(&pem).map_err(|_| EvidenceError::Malformed("public-key.pem is not text"))?)
        .map_err(|_| EvidenceError::Malformed("public-key.pem is not an Ed25519 public key"))?;
    let found = fingerprint(&key);
    if let Some(expected) = expected
        && expected != &key
    {
        return Err(EvidenceError::WrongKey { found, expected: fingerprint(expected) });
    }
    let message = [SIGNATURE_CONTEXT, &manifest_bytes].concat();
    let ok = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &key).verify(&message, &signature).is_ok();
    if !ok {
        return Err(EvidenceError::BadSignature(found));
    }
    let manifest = Manifest::decode(&manifest_bytes)?;
    if manifest.format != FORMAT {
        return Err(EvidenceError::Malformed("unknown manifest format"));
    }
    if manifest.public_key_sha256 != found {
        return Err(EvidenceError::Mismatch(PUBLIC_KEY.to_owned()));
    }
    let mut listed = BTreeSet::new();
    for f in &manifest.files {
        if !listed.insert(f.path.as_str()) {
            return Err(EvidenceError::Malformed("a file is listed twice in the manifest"));
        }
        let bytes = entries.get(&f.path).ok_or_else(|| EvidenceError::Missing(f.path.clone()))?;
        if bytes.len() as u64 != f.size || sha256_hex(bytes) != f.sha256 {
            return Err(EvidenceError::Mismatch(f.path.clone()));
        }
    }
    if let Some(extra) = entries.keys().find(|k| !listed.contains(k.as_str())) {
        return Err(EvidenceError::Extra(extra.clone()));
    }
    Ok(Verified { manifest, fingerprint: found })
}

// ---------------------------------------------------------------------------------------------
// The control map and the evidence it points at.

/// Where one control's piece of evidence is.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// These files of the bundle.
    Files(&'static [&'static str]),
    /// Not produced by Ward yet, or not bundled: the reason.
    NotAvailable(&'static str),
}

const USERS: &str = "evidence/users.json";
const MFA: &str = "evidence/mfa-coverage.json";
const SESSIONS: &str = "evidence/session-policy.json";
const TRANSMISSION: &str = "evidence/transmission-security.json";
const KEYS: &str = "evidence/key-inventory.json";
const BREAK_GLASS: &str = "evidence/break-glass.json";
const ALERTS: &str = "evidence/alerts.json";
const DEVICES: &str = "evidence/devices.json";
const WIPES: &str = "evidence/device-wipes.json";
const SCIM_DEPROVISIONS: &str = "evidence/scim-deprovisions.json";
const RETENTION: &str = "evidence/retention.json";
const VENDORS: &str = "evidence/vendor-register.json";
const RISKS: &str = "evidence/risk-register.json";
const TRAINING: &str = "evidence/training-records.json";
const ACKS: &str = "evidence/policy-acknowledgments.json";
const INCIDENTS: &str = "evidence/incidents.json";
const ACCESS_REVIEW_RESULTS: &str = "evidence/access-reviews.json";
const CHECKPOINT: &str = "audit/checkpoint.txt";
const VKEY: &str = "audit/verifier.vkey";
/// The control map's path in the bundle.
pub const CONTROL_MAP: &str = "control-map.json";
const README: &str = "README.txt";

const AUDIT: &[&str] = &[CHECKPOINT, VKEY];
const ACCESS_REVIEWS: Source = Source::Files(&[ACCESS_REVIEW_RESULTS]);

/// One control: its citation (45 CFR), title and evidence (name, where).
type Control = (&'static str, &'static str, &'static [(&'static str, Source)]);

/// Each control, its title and its evidence, after the HIPAA control map of the specification.
const CONTROLS: &[Control] = &[
    ("164.312(a)(1)", "Access control", &[("authorization_decisions", Source::Files(AUDIT)), ("access_review_results", ACCESS_REVIEWS)]),
    ("164.312(a)(2)(i)", "Unique user identification", &[("user_roster", Source::Files(&[USERS]))]),
    ("164.312(a)(2)(ii)", "Emergency access procedure", &[("break_glass_grants_and_reviews", Source::Files(&[BREAK_GLASS]))]),
    ("164.312(a)(2)(iii)", "Automatic logoff", &[("session_policy", Source::Files(&[SESSIONS])), ("logoff_events", Source::Files(AUDIT))]),
    ("164.312(a)(2)(iv)", "Encryption and decryption", &[("key_inventory", Source::Files(&[KEYS]))]),
    (
        "164.312(b)",
        "Audit controls",
        &[
            ("signed_checkpoint", Source::Files(AUDIT)),
            (
                "fhir_audit_event_export",
                Source::NotAvailable(
                    "not bundled (it is the whole log): export it with `ward audit export --format fhir-ndjson` and check it against the checkpoint",
                ),
            ),
        ],
    ),
    (
        "164.312(c)(1)",
        "Integrity",
        &[(
            "integrity_verification_report",
            Source::NotAvailable(
                "Ward writes no separate report yet: `ward audit verify` against the bundled checkpoint and verifier key is the check",
            ),
        )],
    ),
    (
        "164.312(d)",
        "Person or entity authentication",
        &[("mfa_coverage", Source::Files(&[MFA])), ("failed_login_events", Source::Files(AUDIT))],
    ),
    ("164.312(e)(1)", "Transmission security", &[("tls_configuration", Source::Files(&[TRANSMISSION]))]),
    ("164.308(a)(1)(ii)(A)", "Risk analysis", &[("risk_register", Source::Files(&[RISKS]))]),
    ("164.308(a)(1)(ii)(B)", "Risk management", &[("risk_register", Source::Files(&[RISKS]))]),
    (
        "164.308(a)(1)(ii)(D)",
        "Information system activity review",
        &[
            ("alert_history", Source::Files(&[ALERTS])),
            (
                "review_records",
                Source::NotAvailable(
                    "Ward records no scheduled audit-log review yet: alert acknowledgments are in the alert history, and access review campaigns (evidence/access-reviews.json) cover each account's last activity",
                ),
            ),
        ],
    ),
    (
        "164.308(a)(3)(ii)(C)",
        "Termination procedures",
        &[
            ("wipe_records", Source::Files(&[WIPES])),
            ("deprovisioning_timelines", Source::Files(&[SCIM_DEPROVISIONS])),
            ("deprovisioning_events", Source::Files(AUDIT)),
        ],
    ),
    ("164.308(a)(4)", "Information access management", &[("access_review_results", ACCESS_REVIEWS)]),
    ("164.308(a)(5)", "Security awareness and training", &[("training_records", Source::Files(&[TRAINING]))]),
    ("164.308(a)(6)", "Security incident procedures", &[("incident_records", Source::Files(&[INCIDENTS]))]),
    ("164.308(b)(1)", "Business associate contracts", &[("vendor_register", Source::Files(&[VENDORS]))]),
    (
        "164.310(d)(1)",
        "Device and media controls",
        &[("device_inventory_and_posture", Source::Files(&[DEVICES])), ("wipe_records", Source::Files(&[WIPES]))],
    ),
    ("164.316(a)", "Policies and procedures", &[("policy_acknowledgments", Source::Files(&[ACKS]))]),
    ("164.316(b)(2)(i)", "Documentation retention", &[("retention_and_shredding_records", Source::Files(&[RETENTION]))]),
    (
        "164.528",
        "Accounting of disclosures",
        &[(
            "per_patient_disclosure_report",
            Source::NotAvailable(
                "per patient and naming them: not bundled; produced on request with `ward audit disclosures --patient ID`",
            ),
        )],
    ),
    ("164.402", "Breach risk assessment", &[("assessment_records", Source::Files(&[INCIDENTS]))]),
    ("164.404-164.410", "Breach notification", &[("notification_tracker", Source::Files(&[INCIDENTS]))]),
];

/// The control map document.
fn control_map(org: &ManifestOrg, generated_at: &str) -> serde_json::Value {
    let controls: Vec<serde_json::Value> = CONTROLS
        .iter()
        .map(|(control, title, evidence)| {
            let evidence: Vec<serde_json::Value> = evidence
                .iter()
                .map(|(name, source)| match source {
                    Source::Files(files) => serde_json::json!({"name": name, "status": "included", "files": files}),
                    Source::NotAvailable(reason) => serde_json::json!({"name": name, "status": "not_available", "reason": reason}),
                })
                .collect();
            serde_json::json!({"control": control, "title": title, "evidence": evidence})
        })
        .collect();
    serde_json::json!({"org": org, "generated_at": generated_at, "controls": controls})
}

/// How many pieces of evidence the control map lists as not available.
fn not_available() -> usize {
    CONTROLS.iter().flat_map(|(_, _, e)| e.iter()).filter(|(_, s)| matches!(s, Source::NotAvailable(_))).count()
}

fn json<T: Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

/// Rows a bundle holds at most per list (shred records, alerts, break-glass grants,
/// incidents). A longer list fails the export with [`ListTooLong`] instead of being cut short:
/// a bundle that silently left records out would be false evidence.
pub const LIST_CAP: u32 = 100_000;

/// A list had more rows than a bundle holds: the export fails, naming the list and the cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what} list has more than {cap} records, more than one evidence bundle holds; nothing was exported")]
pub struct ListTooLong {
    /// Which list (`alerts`, `break_glass`, `shred_records`, `incidents`).
    pub what: &'static str,
    /// The cap.
    pub cap: u32,
}

/// `rows`, or [`ListTooLong`] if it holds more than `cap` (read with a limit of `cap + 1`).
fn whole<T>(rows: Vec<T>, what: &'static str, cap: u32) -> anyhow::Result<Vec<T>> {
    if rows.len() > cap as usize {
        return Err(ListTooLong { what, cap }.into());
    }
    Ok(rows)
}

/// Who a bundle is for. The key inventory's per-scope counts and the audit archive segments
/// cover the whole deployment, every tenant's patients and conversations counted together:
/// the operator's export (`ward evidence export`) carries them, an organisation's own export
/// (the API) says where to get them instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The deployment's operator, on the command line.
    Operator,
    /// One organisation's compliance officer or admin (this user), through the API.
    Organisation(UserId),
}

/// What an organisation's bundle says instead of deployment-wide figures.
const DEPLOYMENT_WIDE: &str =
    "covers every organisation of this deployment: in the operator's bundle (ward evidence export), not in an organisation's";

/// The number of collection steps [`collect`] reports progress over.
pub const STEPS: u64 = 13;

/// How many of the newest campaigns the bundle carries item by item. A year of quarterly
/// reviews: what an auditor samples. Older campaigns are listed with their counts, so the
/// bundle stays bounded however many years of weekly reviews an organisation keeps (each
/// campaign's full results stay exportable on their own).
const ACCESS_REVIEWS_IN_FULL: usize = 4;

/// The access review results: the cadence, the newest campaigns with each item's snapshot and
/// decision, and every older campaign with its counts. The reviewers' notes are free text,
/// left out (the reason code stays).
async fn access_reviews(store: &Store, org: ward_domain::ids::OrgId, cap: u32) -> anyhow::Result<serde_json::Value> {
    let schedule = store.access_review_schedule(org).await?;
    // Newest first.
    let campaigns = store.access_review_campaigns(org).await?;
    let mut out = Vec::with_capacity(campaigns.len());
    let mut rows = 0usize;
    for (n, c) in campaigns.into_iter().enumerate() {
        let id = c.id;
        let view = crate::api::access_reviews::campaign_view(c);
        if n >= ACCESS_REVIEWS_IN_FULL {
            out.push(serde_json::json!({"campaign": view, "items_in_bundle": false}));
            continue;
        }
        let items = store.access_review_items(org, id).await?;
        rows += items.len();
        if rows > cap as usize {
            return Err(ListTooLong { what: "access_review_items", cap }.into());
        }
        let items: Vec<serde_json::Value> = items
            .into_iter()
            .map(|i| {
                let mut v = serde_json::to_value(crate::api::access_reviews::item_view(i))?;
                if let Some(m) = v.as_object_mut() {
                    m.remove("note");
                }
                Ok(v)
            })
            .collect::<anyhow::Result<_>>()?;
        out.push(serde_json::json!({"campaign": view, "items_in_bundle": true, "items": items}));
    }
    Ok(serde_json::json!({
        "cadence_days": schedule.cadence_days,
        "window_days": schedule.window_days,
        "campaigns": out,
        "note": format!("campaigns newest first; the newest {ACCESS_REVIEWS_IN_FULL} with every item, older ones with their counts (items_in_bundle false; their results: GET /api/v1/access-reviews/{{id}}/export); items are snapshots taken when each campaign opened; undecided items of a closed campaign are not_reviewed, never certified; reviewers' notes are left out (the reason code stays)"),
    }))
}

/// Reads every export of the organisation into bundle files (no audit checkpoint yet).
/// Ids, codes, dates and counts: no patient names, no message or free text that could carry
/// PHI (break-glass reasons, wipe reasons and incident titles are left out).
pub async fn collect(
    store: &Store,
    config: &Config,
    org: &Org,
    audience: Audience,
    progress: impl FnMut(u64),
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    collect_capped(store, config, org, audience, LIST_CAP, progress).await
}

/// [`collect`] with another cap on each list's length (tests use a small one).
pub async fn collect_capped(
    store: &Store,
    config: &Config,
    org: &Org,
    audience: Audience,
    cap: u32,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let o = org.id;
    let mut step = 0;
    let mut tick = |progress: &mut dyn FnMut(u64)| {
        step += 1;
        progress(step);
    };

    // Users and MFA coverage (one read, two views).
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let page = store.users(o, after.clone(), 500).await?;
        let done = page.len() < 500;
        after = page.last().map(|u| u.login.clone());
        users.extend(page);
        if done {
            break;
        }
    }
    let workforce: Vec<_> = users.iter().filter(|u| u.role != Role::Patient).collect();
    let roster: Vec<serde_json::Value> = workforce
        .iter()
        .map(|u| {
            serde_json::json!({"user_id": u.id, "login": u.login, "role": u.role.as_str(), "provenance": "local",
                "disabled": u.disabled, "mfa_enabled": u.mfa_enabled, "created_at": ts(u.created_at)})
        })
        .collect();
    let patient_accounts = users.len() - workforce.len();
    files.insert(
        USERS.to_owned(),
        json(&serde_json::json!({"workforce": roster, "patient_accounts": patient_accounts,
        "note": "every account is local (Ward has no OIDC or SCIM provisioning yet); patient accounts are counted, not listed"}))?,
    );
    tick(&mut progress);

    let mut by_role: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut missing: Vec<UserId> = Vec::new();
    for u in users.iter().filter(|u| !u.disabled) {
        let e = by_role.entry(u.role.as_str()).or_default();
        e.0 += 1;
        if u.mfa_enabled {
            e.1 += 1;
        } else if org.mfa_required_roles.contains(&u.role) {
            missing.push(u.id);
        }
    }
    let roles: Vec<serde_json::Value> = by_role
        .iter()
        .map(|(role, (active, enrolled))| serde_json::json!({"role": role, "active": active, "mfa_enrolled": enrolled}))
        .collect();
    let required: Vec<&str> = org.mfa_required_roles.iter().map(|r| r.as_str()).collect();
    files.insert(
        MFA.to_owned(),
        json(&serde_json::json!({"mfa_required_roles": required, "by_role": roles, "required_but_not_enrolled": missing}))?,
    );
    tick(&mut progress);

    files.insert(
        SESSIONS.to_owned(),
        json(&serde_json::json!({
            "org_idle_timeout_secs": org.idle_timeout_secs,
            "access_token_ttl_secs": config.sessions.access_ttl_secs,
            "session_ttl_secs": config.sessions.session_ttl_secs,
            "step_up_max_age_secs": config.sessions.step_up_max_age_secs,
        }))?,
    );
    files.insert(
        TRANSMISSION.to_owned(),
        json(&serde_json::json!({
            "tls_versions": ["TLS1.3"],
            "plaintext_listener": false,
            "certificate": if config.tls.cert.is_some() { "configured" } else { "self_signed" },
            "listen": config.listen.to_string(),
        }))?,
    );
    tick(&mut progress);

    let keys = crate::keys::inventory(store, false).await?;
    let keys = match audience {
        Audience::Operator => serde_json::to_value(&keys)?,
        // The KEKs are the deployment's configuration; the data-key counts are other tenants'.
        Audience::Organisation(_) => serde_json::json!({"provider": keys.provider, "keks": keys.keks, "data_keys": DEPLOYMENT_WIDE}),
    };
    files.insert(KEYS.to_owned(), json(&keys)?);
    tick(&mut progress);

    let grants: Vec<_> = whole(store.break_glass_queue(o, None, cap.saturating_add(1)).await?, "break_glass", cap)?
        .into_iter()
        .map(|mut g| {
            // Free text: may name the patient or their condition.
            g.reason = None;
            g.review_note = None;
            crate::api::break_glass::view(g)
        })
        .collect();
    files.insert(BREAK_GLASS.to_owned(), json(&grants)?);
    tick(&mut progress);

    let alerts: Vec<_> = whole(store.alerts(o, None, false, i64::from(cap) + 1).await?, "alerts", cap)?
        .into_iter()
        .map(crate::api::alerts::AlertView::from)
        .collect();
    files.insert(ALERTS.to_owned(), json(&alerts)?);
    tick(&mut progress);

    // Patients' devices are counted, not listed; the names users give their devices and the
    // words of a revocation are free text, kept out.
    let patients: BTreeSet<UserId> = users.iter().filter(|u| u.role == Role::Patient).map(|u| u.id).collect();
    let (patient_devices, workforce_devices): (Vec<_>, Vec<_>) =
        store.devices(o, None).await?.into_iter().partition(|d| patients.contains(&d.user_id));
    let devices: Vec<serde_json::Value> = crate::api::devices::device_views(workforce_devices)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_iter()
        .map(|d| {
            let mut v = serde_json::to_value(d)?;
            if let Some(m) = v.as_object_mut() {
                m.remove("name");
                m.remove("revoke_reason");
            }
            Ok(v)
        })
        .collect::<anyhow::Result<_>>()?;
    files.insert(
        DEVICES.to_owned(),
        json(&serde_json::json!({"workforce_devices": devices, "patient_account_devices": patient_devices.len(),
            "note": "devices of patient accounts are counted, not listed; device names and revocation reasons are left out"}))?,
    );
    tick(&mut progress);

    let hours = config.devices.wipe_ack_overdue_hours;
    let wipes: Vec<serde_json::Value> = store
        .wipes(o, None)
        .await?
        .into_iter()
        .map(|w| {
            let mut v = serde_json::to_value(crate::api::devices::wipe_view(w, hours))?;
            // The requester's words: kept out, the source code says why.
            if let Some(m) = v.as_object_mut() {
                m.remove("reason");
            }
            Ok(v)
        })
        .collect::<anyhow::Result<_>>()?;
    files.insert(WIPES.to_owned(), json(&wipes)?);
    // SCIM deprovisioning timelines: ids, times and counts only.
    let timelines: Vec<crate::api::scim_admin::DeprovisionView> =
        store.scim_deprovisions(o, u32::MAX).await?.into_iter().map(Into::into).collect();
    files.insert(SCIM_DEPROVISIONS.to_owned(), json(&timelines)?);
    tick(&mut progress);

    let shred_records = whole(store.shred_records(o, cap.saturating_add(1)).await?, "shred_records", cap)?;
    files.insert(
        RETENTION.to_owned(),
        json(&serde_json::json!({
            "policy_days": store.retention_policy(o).await?,
            // The matter a hold serves is free text: left out.
            "legal_holds": store.legal_holds(o, false).await?.into_iter().map(|h| {
                let mut v = serde_json::to_value(h).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("reason");
                }
                v
            }).collect::<Vec<_>>(),
            "shred_records": shred_records,
            "audit_log_retention_days": config.audit.retention_days,
            "audit_archive_segments": match audience {
                Audience::Operator => serde_json::to_value(store.audit_archives().await?)?,
                Audience::Organisation(_) => serde_json::Value::from(DEPLOYMENT_WIDE),
            },
        }))?,
    );
    tick(&mut progress);

    let today = crate::api::vendors::today();
    let vendors: Vec<_> = store.vendors(o).await?.into_iter().map(|v| crate::api::vendors::view(v, &today)).collect();
    files.insert(VENDORS.to_owned(), json(&vendors)?);
    let risks: Vec<_> = store.risks(o).await?.into_iter().map(|r| crate::api::risks::view(r, &today)).collect();
    files.insert(RISKS.to_owned(), json(&risks)?);
    tick(&mut progress);

    let training: Vec<_> = store.training_records(o, None).await?.into_iter().map(crate::api::risks::training_view).collect();
    files.insert(TRAINING.to_owned(), json(&training)?);
    files.insert(ACKS.to_owned(), json(&crate::api::policies::ack_report(store.acknowledgment_report(o).await?))?);
    files.insert(ACCESS_REVIEW_RESULTS.to_owned(), json(&access_reviews(store, o, cap).await?)?);
    tick(&mut progress);

    // The list read opens no titles or descriptions.
    let incidents = whole(store.incidents_up_to(o, cap.saturating_add(1)).await?, "incidents", cap)?
        .into_iter()
        .map(|i| crate::api::incidents::view(i).map_err(|e| anyhow::anyhow!("{e:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    files.insert(INCIDENTS.to_owned(), json(&incidents)?);
    tick(&mut progress);
    Ok(files)
}

/// A written bundle.
#[derive(Debug)]
pub struct Exported {
    /// The zip archive.
    pub archive: Vec<u8>,
    /// Files in the manifest.
    pub files: usize,
    /// Evidence the control map lists as not available.
    pub not_available: usize,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// The tree size of the bundled checkpoint.
    pub tree_size: i64,
}

/// Makes an organisation's bundle: collects the evidence, records `evidence.export` (codes and
/// counts), signs a checkpoint that covers that event, and seals the archive with the audit
/// log's key. `progress` counts [`STEPS`] collection steps, then one for the checkpoint.
pub async fn export(
    store: &Store,
    config: &Config,
    audit: &AuditLog,
    org: &Org,
    audience: Audience,
    meta: RequestMeta,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Exported> {
    let mut files = collect(store, config, org, audience, &mut progress).await?;
    let generated_at = ts(ward_store::now_ms());
    let morg = ManifestOrg { id: org.id.0, slug: org.slug.clone(), name: org.name.clone() };
    files.insert(CONTROL_MAP.to_owned(), json(&control_map(&morg, &generated_at))?);
    files.insert(
        README.to_owned(),
        format!(
            "Ward evidence bundle for {} ({}), made {generated_at}.\n\ncontrol-map.json: each HIPAA control, its evidence files, and what is not available and why.\nmanifest.json: every file's SHA-256 and size; manifest.sig: Ed25519 signature over the bytes\n\"ward-evidence-manifest-v1\" NUL then manifest.json, by public-key.pem (fingerprint: SHA-256 of\nthe raw key). audit/: the latest signed audit checkpoint and its verifier key.\nCheck it with `ward evidence verify FILE --public-key KEY` (see docs/evidence.md).\n",
            morg.slug, morg.id
        )
        .into_bytes(),
    );
    let mut ev = AuditEvent::new(AuditAction::EvidenceExport, Outcome::Success)
        .detail("files", DetailValue::Int(files.len() as i64 + 2))
        .detail("not_available", DetailValue::Int(not_available() as i64));
    ev.org_id = Some(org.id);
    ev.actor = match audience {
        Audience::Operator => None,
        Audience::Organisation(user) => Some(user),
    };
    store.record(ev, meta).await?;
    let cp = audit.checkpoint_now().await?;
    files.insert(CHECKPOINT.to_owned(), cp.note.clone().into_bytes());
    let verifier = audit.verifier();
    files.insert(VKEY.to_owned(), format!("{verifier}\n").into_bytes());
    progress(STEPS + 1);
    let public_key = *verifier.public_key();
    let count = files.len();
    let archive = seal(&files, morg, generated_at, &public_key, |m| audit.sign_detached(m))?;
    Ok(Exported { archive, files: count, not_available: not_available(), fingerprint: fingerprint(&public_key), tree_size: cp.tree_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list longer than the cap fails the export, naming the list; none is cut short.
    #[tokio::test]
    async fn a_list_over_the_cap_fails_the_export_instead_of_being_cut() {
        for backend in [ward_store::Backend::Sqlite, ward_store::Backend::Postgres] {
            let Some(db) = ward_store::testing::TestDb::open(backend).await else { continue };
            let org = ward_store::testing::org(&db.store, "capped").await;
            for _ in 0..3 {
                db.store.test_insert_alert(org.id).await;
            }
            let config = Config::default();
            let err = collect_capped(&db.store, &config, &org, Audience::Operator, 2, |_| {}).await.unwrap_err();
            assert_eq!(err.downcast_ref::<ListTooLong>(), Some(&ListTooLong { what: "alerts", cap: 2 }), "{backend:?}: {err}");
            assert!(err.to_string().contains("more than 2"), "{err}");
            let files = collect_capped(&db.store, &config, &org, Audience::Operator, 3, |_| {}).await.unwrap();
            let alerts: Vec<serde_json::Value> = serde_json::from_slice(&files[ALERTS]).unwrap();
            assert_eq!(alerts.len(), 3, "{backend:?}: at the cap, every record is in the bundle");
        }
    }

    /// Years of campaigns: the newest four carry their items, older ones only their counts,
    /// so the bundle stays within its cap however many campaigns there were.
    #[tokio::test]
    async fn only_the_newest_access_reviews_carry_their_items() {
        for backend in [ward_store::Backend::Sqlite, ward_store::Backend::Postgres] {
            let Some(db) = ward_store::testing::TestDb::open(backend).await else { continue };
            let s = &db.store;
            let org = ward_store::testing::org(s, "reviews").await;
            let admin = ward_store::testing::user(s, &org, "admin@reviews", ward_domain::role::Role::Admin).await;
            for login in ["a@reviews", "b@reviews", "c@reviews"] {
                ward_store::testing::user(s, &org, login, ward_domain::role::Role::Nurse).await;
            }
            let meta = ward_store::testing::meta;
            for _ in 0..6 {
                let c = s.open_access_review(org.id, admin.user_id, meta()).await.unwrap();
                s.close_access_review(org.id, admin.user_id, c.id, meta()).await.unwrap();
            }
            // 6 campaigns of 4 items: 24 rows in all, 16 in the newest four.
            let json = access_reviews(s, org.id, 16).await.unwrap();
            let campaigns = json["campaigns"].as_array().unwrap();
            assert_eq!(campaigns.len(), 6, "{backend:?}: every campaign is listed");
            let full: Vec<bool> = campaigns.iter().map(|c| c["items_in_bundle"].as_bool().unwrap()).collect();
            assert_eq!(full, [true, true, true, true, false, false], "{backend:?}");
            assert_eq!(campaigns[0]["items"].as_array().unwrap().len(), 4);
            assert!(campaigns[5].get("items").is_none() && campaigns[5]["campaign"]["counts"]["not_reviewed"] == 4, "{}", campaigns[5]);
            // The cap still applies to what is carried in full.
            let err = access_reviews(s, org.id, 15).await.unwrap_err();
            assert!(err.downcast_ref::<ListTooLong>().is_some(), "{err}");
        }
    }

    fn signer() -> ward_audit::Signer {
        ward_audit::Signer::from_seed("test.example/log", &[7; 32]).unwrap()
    }

    fn org() -> ManifestOrg {
        ManifestOrg { id: uuid::Uuid::nil(), slug: "acme".into(), name: "Acme".into() }
    }

    fn bundle(files: &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, [u8; 32]) {
        let s = signer();
        let pk = *s.verifier().public_key();
        (seal(files, org(), "2026-12-07T00:00:00Z".into(), &pk, |m| s.sign_detached(m)).unwrap(), pk)
    }

    #[test]
    fn every_control_file_is_collected() {
        let named: BTreeSet<&str> = [
            USERS,
            MFA,
            SESSIONS,
            TRANSMISSION,
            KEYS,
            BREAK_GLASS,
            ALERTS,
            DEVICES,
            WIPES,
            SCIM_DEPROVISIONS,
            ACCESS_REVIEW_RESULTS,
            RETENTION,
            VENDORS,
            RISKS,
            TRAINING,
            ACKS,
            INCIDENTS,
            CHECKPOINT,
            VKEY,
        ]
        .into();
        for (_, _, ev) in CONTROLS {
            for (_, s) in *ev {
                if let Source::Files(f) = s {
                    for f in *f {
                        assert!(named.contains(f), "{f}");
                    }
                }
            }
        }
    }

    #[test]
    fn public_key_round_trips_as_pem_and_hex() {
        let pk = *signer().verifier().public_key();
        assert_eq!(parse_public_key(&public_key_pem(&pk)).unwrap(), pk);
        assert_eq!(parse_public_key(&hex(&pk)).unwrap(), pk);
        assert_eq!(parse_public_key("nonsense"), Err(EvidenceError::BadPublicKey));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The manifest encoding round-trips, a sealed bundle verifies, and changing any one
        /// byte of any file, adding or removing a file is caught.
        #[test]
        fn manifest_round_trips_and_tampering_is_caught(
            contents in proptest::collection::btree_map("[a-z]{1,8}\\.json", proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64), 1..5),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let files: BTreeMap<String, Vec<u8>> = contents.into_iter().map(|(k, v)| (format!("evidence/{k}"), v)).collect();
            let s = signer();
            let pk = *s.verifier().public_key();
            let m = Manifest::new(org(), "2026-12-07T00:00:00Z".into(), &pk, &files);
            proptest::prop_assert_eq!(Manifest::decode(&m.encode()).unwrap(), m.clone());
            let (archive, pk) = bundle(&files);
            let v = verify(&archive, Some(&pk)).unwrap();
            proptest::prop_assert_eq!(v.manifest.files.len(), files.len());

            let names: Vec<&String> = files.keys().collect();
            let victim = names[pick.index(names.len())].clone();
            let mut changed = files.clone();
            let bytes = changed.get_mut(&victim).unwrap();
            let i = pick.index(bytes.len());
            bytes[i] ^= flip;
            // Same manifest, changed file: reseal the files but keep the original manifest.
            let tampered = rebuild(&archive, |name, data| if name == victim { Some(changed[&victim].clone()) } else { Some(data) }, None);
            proptest::prop_assert!(verify(&tampered, Some(&pk)).is_err());
            let removed = rebuild(&archive, |name, data| (name != victim).then_some(data), None);
            proptest::prop_assert_eq!(verify(&removed, Some(&pk)).unwrap_err(), EvidenceError::Missing(victim.clone()));
            let added = rebuild(&archive, |_, data| Some(data), Some(("extra.txt", b"x".to_vec())));
            proptest::prop_assert_eq!(verify(&added, Some(&pk)).unwrap_err(), EvidenceError::Extra("extra.txt".into()));
        }
    }

    /// Copies an archive's entries through `keep` (None drops one), optionally adding one.
    fn rebuild(archive: &[u8], keep: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>, add: Option<(&str, Vec<u8>)>) -> Vec<u8> {
        let mut zin = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
        let mut zout = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for i in 0..zin.len() {
            let mut f = zin.by_index(i).unwrap();
            let name = f.name().to_owned();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            if let Some(data) = keep(&name, data) {
                zout.start_file(name, opts).unwrap();
                zout.write_all(&data).unwrap();
            }
        }
        if let Some((name, data)) = add {
            zout.start_file(name, opts).unwrap();
            zout.write_all(&data).unwrap();
        }
        zout.finish().unwrap().into_inner()
    }

    /// Replaces every occurrence of `from` with `to` (same length) in `bytes`.
    fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
        assert_eq!(from.len(), to.len());
        let mut n = 0;
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
                n += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        n
    }

    fn refused(archive: &[u8], pk: &[u8; 32]) -> String {
        let e = verify(archive, Some(pk)).expect_err("an odd archive verifies").to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn odd_archives_are_refused() {
        let files = BTreeMap::from([("evidence/a.json".to_owned(), b"{\"genuine\":1}".to_vec())]);
        let (archive, pk) = bundle(&files);
        verify(&archive, Some(&pk)).unwrap();

        // A forged copy under the same name: the reader keeps one entry per name.
        let mut dup = rebuild(&archive, |_, d| Some(d), Some(("evidence/b.json", b"{\"forged\":1}".to_vec())));
        assert_eq!(replace_all(&mut dup, b"evidence/b.json", b"evidence/a.json"), 2);
        assert!(refused(&dup, &pk).contains("two entries with one name"));
        // The forged copy first in the central directory.
        let mut first = rebuild(&archive, |_, _| None, Some(("evidence/b.json", b"{\"forged\":1}".to_vec())));
        first = rebuild(&first, |_, d| Some(d), None);
        let mut zin = zip::ZipArchive::new(std::io::Cursor::new(archive.clone())).unwrap();
        let mut zout = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let mut zfirst = zip::ZipArchive::new(std::io::Cursor::new(first)).unwrap();
        zout.raw_copy_file(zfirst.by_index(0).unwrap()).unwrap();
        for i in 0..zin.len() {
            zout.raw_copy_file(zin.by_index(i).unwrap()).unwrap();
        }
        let mut dup_first = zout.finish().unwrap().into_inner();
        assert_eq!(replace_all(&mut dup_first, b"evidence/b.json", b"evidence/a.json"), 2);
        assert!(refused(&dup_first, &pk).contains("two entries with one name"));
        // A comment.
        let mut commented = archive.clone();
        let n = commented.len();
        commented[n - 2..].copy_from_slice(&5u16.to_le_bytes());
        commented.extend_from_slice(b"hello");
        assert!(refused(&commented, &pk).contains("comment"));
        // Junk before the first entry.
        let prefixed = [&b"#!/bin/sh\nexit 0\n"[..], &archive].concat();
        refused(&prefixed, &pk);
        // A name outside the bundle's tree.
        let mut dotted = rebuild(&archive, |_, d| Some(d), Some(("evidence/zz", b"x".to_vec())));
        assert_eq!(replace_all(&mut dotted, b"evidence/zz", b"evidence/.."), 2);
        assert!(refused(&dotted, &pk).contains("plain relative"));
        let mut parent = rebuild(&archive, |_, d| Some(d), Some(("@@@x", b"x".to_vec())));
        assert_eq!(replace_all(&mut parent, b"@@@x", b"../x"), 2);
        refused(&parent, &pk);
        let mut absolute = rebuild(&archive, |_, d| Some(d), Some(("evidence/z.json", b"x".to_vec())));
        assert_eq!(replace_all(&mut absolute, b"evidence/z.json", b"/evidence/.json"), 2);
        refused(&absolute, &pk);
        // Two names one case-insensitive file system cannot tell apart.
        let mut cased = rebuild(&archive, |_, d| Some(d), Some(("evidence/b.json", b"{}".to_vec())));
        assert_eq!(replace_all(&mut cased, b"evidence/b.json", b"evidence/A.json"), 2);
        assert!(refused(&cased, &pk).contains("two entries with one name"));
    }

    #[test]
    fn another_key_is_refused() {
        let files = BTreeMap::from([("evidence/a.json".to_owned(), b"{}".to_vec())]);
        let (archive, _) = bundle(&files);
        let other = *ward_audit::Signer::from_seed("test.example/log", &[8; 32]).unwrap().verifier().public_key();
        assert!(matches!(verify(&archive, Some(&other)), Err(EvidenceError::WrongKey { .. })));
        // A key swapped inside the bundle does not verify the signature.
        let pem = public_key_pem(&other);
        let swapped = rebuild(&archive, |n, d| if n == PUBLIC_KEY { Some(pem.clone().into_bytes()) } else { Some(d) }, None);
        assert!(matches!(verify(&swapped, None), Err(EvidenceError::BadSignature(_))));
    }
}
