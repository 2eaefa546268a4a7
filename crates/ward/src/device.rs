//! `ward device profile`: the unsigned Apple configuration profile enforcing the device
//! baseline (the profile itself is `ward_device::profile`).

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
    let xml = profile_xml(&options, &mut RandomUuids)?;
    match req.out {
        Some(path) => {
            std::fs::write(path, &xml).with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote the unsigned profile {} to {}", options.profile_identifier(), path.display());
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&xml)?;
        }
    }
    Ok(())
}
