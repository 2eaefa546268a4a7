//! `ward device profile`: the Apple configuration profile enforcing the device baseline (the
//! profile itself is `ward_device::profile`), unsigned or CMS-signed
//! (`ward_crypto::signed_data`).

use std::path::Path;

use anyhow::Context as _;
use ward_device::profile::{PreviewSetting, ProfileOptions, RandomUuids, profile_xml};

/// The placeholder organisation prefix used when none is given (a warning says so).
pub(crate) const DEFAULT_ORG_PREFIX: &str = "com.example";

/// What `ward device profile` was asked for.
pub(crate) struct ProfileRequest<'a> {
    pub(crate) org_prefix: &'a str,
    pub(crate) bundle_id: &'a str,
    pub(crate) organisation: Option<&'a str>,
    pub(crate) no_previews: bool,
    pub(crate) out: Option<&'a Path>,
    /// The PEM certificate and private key to sign with.
    pub(crate) sign: Option<(&'a Path, &'a Path)>,
}

/// The signer for a PEM certificate and key file.
pub(crate) fn signer(cert: &Path, key: &Path) -> anyhow::Result<ward_crypto::signed_data::CmsSigner> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    Ok(ward_crypto::signed_data::CmsSigner::from_pem(&cert_pem, &key_pem)?)
}

/// Writes the profile to `out`, or to standard output.
pub(crate) fn profile(req: &ProfileRequest<'_>) -> anyhow::Result<()> {
    let mut options = ProfileOptions::new(req.org_prefix)?.bundle_id(req.bundle_id)?;
    if let Some(name) = req.organisation {
        options = options.organisation(name)?;
    }
    if req.no_previews {
        options = options.previews(PreviewSetting::Never);
    }
    if req.org_prefix == DEFAULT_ORG_PREFIX {
        eprintln!(
            "ward: warning: using the placeholder prefix {DEFAULT_ORG_PREFIX}; give --org-prefix with your organisation's reverse DNS"
        );
    }
    // The signer first: a bad certificate or key fails before anything is written.
    let signer = req.sign.map(|(cert, key)| signer(cert, key)).transpose()?;
    let xml = profile_xml(&options, &mut RandomUuids)?;
    let (bytes, what) = match &signer {
        Some(s) => (s.sign_attached(&xml, std::time::SystemTime::now())?, "signed"),
        None => (xml, "unsigned"),
    };
    match req.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote the {what} profile {} to {}", options.profile_identifier(), path.display());
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}
