//! The PKCS#11 key provider: KEKs are AES keys inside an HSM token and never leave it.

use serde::{Deserialize, Serialize};

use crate::CryptoError;

/// How to reach the HSM (`[keys.pkcs11]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Options {
    /// The PKCS#11 module (shared library) to load.
    pub module: std::path::PathBuf,
    /// The label of the token holding Ward's KEKs.
    pub token_label: String,
    /// The user PIN. Prefer the environment (`WARD_KEYS__PKCS11__PIN`) to the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// KEK objects are labelled `<key_label>-v<N>`.
    pub key_label: String,
}

impl Default for Pkcs11Options {
    fn default() -> Self {
        Pkcs11Options {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "ward".into(),
            pin: None,
            key_label: "ward-kek".into(),
        }
    }
}

/// Connects to the HSM the options name.
pub fn connect(_options: &Pkcs11Options) -> Result<std::sync::Arc<dyn crate::KeyProvider>, CryptoError> {
    Err(CryptoError::Provider("the PKCS#11 provider is not built yet".into()))
}
