//! Builds the key provider and keyring the configuration names.

use std::sync::Arc;

use ward_crypto::{FileKeyProvider, KeyProvider, Keyring};

use crate::config::{Config, KeyProviderKind};

/// The key provider the configuration names, checked with a wrap/unwrap round trip.
pub async fn provider(config: &Config) -> anyhow::Result<Arc<dyn KeyProvider>> {
    let k = &config.keys;
    let provider: Arc<dyn KeyProvider> = match k.provider {
        KeyProviderKind::File => {
            let path = k.key_file(&config.data_dir);
            Arc::new(FileKeyProvider::open_or_create(&path).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        KeyProviderKind::Pkcs11 => ward_crypto::pkcs11::connect(&k.pkcs11).map_err(|e| anyhow::anyhow!("keys.pkcs11: {e}"))?,
        KeyProviderKind::Kms => ward_crypto::kms::connect(&k.kms).await.map_err(|e| anyhow::anyhow!("keys.kms: {e}"))?,
    };
    ward_crypto::provider::self_test(provider.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("the {} key provider failed its self-test: {e}", provider.kind()))?;
    Ok(provider)
}

/// The keyring over the configured provider.
pub async fn keyring(config: &Config) -> anyhow::Result<Arc<Keyring>> {
    Ok(Arc::new(Keyring::new(provider(config).await?, config.keys.cache_keys)))
}
