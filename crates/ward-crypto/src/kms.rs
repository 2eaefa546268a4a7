//! The AWS KMS key provider: KEKs are KMS keys; data keys are wrapped with Encrypt and
//! unwrapped with Decrypt, bound to their context by the encryption context.
//!
//! `key_id` is normally an alias (`alias/ward-kek`): new wraps go to whatever key the alias
//! names, so a rotation done by another process (`ward keys rotate`) takes effect for a running
//! server at once. Rotation creates a new symmetric KMS key, tags it `ward-kek=<alias>` and
//! moves the alias to it; the inventory lists the keys carrying that tag. Older keys keep
//! decrypting until they are retired (scheduled for deletion with the shortest window KMS
//! allows). A wrapped key's id is `kms:<key ARN>`.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::KEY_LEN;
use crate::provider::{KekInfo, KeyBytes, KeyProvider, WrapContext, WrappedKey, current_kek_refused};

/// The tag marking the keys an alias has named: `ward-kek=<alias>`.
pub const KEK_TAG: &str = "ward-kek";

/// The shortest deletion window KMS allows, used when a KEK is retired.
pub const DELETION_WINDOW_DAYS: i32 = 7;

/// How to reach KMS (`[keys.kms]` in the configuration).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmsOptions {
    /// The region, such as `eu-west-1`.
    pub region: String,
    /// An endpoint other than AWS's own (a KMS-compatible server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The key id or alias of the current KEK.
    pub key_id: String,
    /// A static access key id; without one the standard AWS credential chain is used
    /// (environment, profile, web identity, container and instance roles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret for `access_key_id`. Prefer the environment
    /// (`WARD_KEYS__KMS__SECRET_ACCESS_KEY`) to the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for KmsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsOptions")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("key_id", &self.key_id)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "****"))
            .finish()
    }
}

/// Connects to KMS as the options say. When `key_id` is an alias that does not exist yet, a
/// key is created and the alias made to name it.
pub async fn connect(options: &KmsOptions) -> Result<Arc<dyn KeyProvider>, CryptoError> {
    Ok(Arc::new(KmsKeyProvider::connect(options).await?))
}

/// KEKs in AWS KMS (or a server speaking its API).
pub struct KmsKeyProvider {
    client: Client,
    key_id: String,
}

fn kms_err<E>(what: &str, e: aws_sdk_kms::error::SdkError<E>) -> CryptoError
where
    E: std::error::Error + 'static,
    aws_sdk_kms::error::SdkError<E>: std::error::Error,
{
    CryptoError::Provider(format!("KMS {what}: {}", DisplayErrorContext(&e)))
}

/// The encryption context a data key is wrapped under.
fn encryption_context(ctx: &WrapContext) -> [(&'static str, String); 3] {
    [("ward:org", ctx.org.to_string()), ("ward:scope", ctx.scope.to_string()), ("ward:version", ctx.version.to_string())]
}

fn usable(meta: &KeyMetadata) -> bool {
    matches!(meta.key_state(), Some(KeyState::Enabled | KeyState::Disabled))
}

fn created_ms(meta: &KeyMetadata) -> Option<i64> {
    meta.creation_date().and_then(|d| d.to_millis().ok())
}

impl KmsKeyProvider {
    /// Builds the client and checks that `key_id` names a key (creating it and the alias when
    /// `key_id` is an alias that does not exist yet).
    pub async fn connect(options: &KmsOptions) -> Result<KmsKeyProvider, CryptoError> {
        if options.region.is_empty() {
            return Err(CryptoError::Provider("keys.kms.region is not set".into()));
        }
        if options.key_id.is_empty() {
            return Err(CryptoError::Provider("keys.kms.key_id is not set (an alias such as alias/ward-kek)".into()));
        }
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(options.region.clone()));
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&options.access_key_id, &options.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(id, secret, None, None, "ward-config"));
            }
            (None, None) => {}
            _ => {
                return Err(CryptoError::Provider(
                    "keys.kms.access_key_id and keys.kms.secret_access_key go together: set both or neither".into(),
                ));
            }
        }
        let client = Client::new(&loader.load().await);
        let provider = KmsKeyProvider { client, key_id: options.key_id.clone() };
        match provider.client.describe_key().key_id(&provider.key_id).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found_exception()) && provider.alias().is_some() => {
                let arn = provider.create_key().await?;
                provider
                    .client
                    .create_alias()
                    .alias_name(&provider.key_id)
                    .target_key_id(&arn)
                    .send()
                    .await
                    .map_err(|e| kms_err("creating the alias", e))?;
            }
            Err(e) => return Err(kms_err(&format!("describing {}", provider.key_id), e)),
        }
        Ok(provider)
    }

    fn alias(&self) -> Option<&str> {
        self.key_id.starts_with("alias/").then_some(self.key_id.as_str())
    }

    /// Creates a symmetric key tagged with the alias; returns its ARN.
    async fn create_key(&self) -> Result<String, CryptoError> {
        let tag =
            Tag::builder().tag_key(KEK_TAG).tag_value(&self.key_id).build().map_err(|e| CryptoError::Provider(format!("KMS tag: {e}")))?;
        let out = self
            .client
            .create_key()
            .description(format!("Ward key-encryption key ({})", self.key_id))
            .key_usage(KeyUsageType::EncryptDecrypt)
            .key_spec(KeySpec::SymmetricDefault)
            .tags(tag)
            .send()
            .await
            .map_err(|e| kms_err("creating a key", e))?;
        out.key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_owned)
            .ok_or_else(|| CryptoError::Provider("KMS created a key without an ARN".into()))
    }

    async fn describe(&self, key_id: &str) -> Result<KeyMetadata, CryptoError> {
        let out = self.client.describe_key().key_id(key_id).send().await.map_err(|e| kms_err("describing a key", e))?;
        out.key_metadata().cloned().ok_or_else(|| CryptoError::Provider("KMS described a key without metadata".into()))
    }

    async fn current_arn(&self) -> Result<String, CryptoError> {
        self.describe(&self.key_id)
            .await?
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| CryptoError::Provider("KMS described a key without an ARN".into()))
    }

    /// Whether the key carries `ward-kek=<key_id>`.
    async fn is_ours(&self, key_id: &str) -> Result<bool, CryptoError> {
        let mut marker = None;
        loop {
            let out =
                self.client.list_resource_tags().key_id(key_id).set_marker(marker).send().await.map_err(|e| kms_err("listing tags", e))?;
            if out.tags().iter().any(|t| t.tag_key() == KEK_TAG && t.tag_value() == self.key_id) {
                return Ok(true);
            }
            match (out.truncated(), out.next_marker()) {
                (true, Some(m)) => marker = Some(m.to_owned()),
                _ => return Ok(false),
            }
        }
    }
}

fn parse_kek_id(kek_id: &str) -> Result<&str, CryptoError> {
    kek_id.strip_prefix("kms:").filter(|a| !a.is_empty()).ok_or_else(|| CryptoError::UnknownKek(kek_id.to_owned()))
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn kind(&self) -> &'static str {
        "kms"
    }

    async fn wrap(&self, ctx: &WrapContext, key: &KeyBytes) -> Result<WrappedKey, CryptoError> {
        let mut req = self.client.encrypt().key_id(&self.key_id).plaintext(Blob::new(key.to_vec()));
        for (k, v) in encryption_context(ctx) {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| kms_err("Encrypt", e))?;
        let arn = out.key_id().ok_or_else(|| CryptoError::Provider("KMS Encrypt named no key".into()))?;
        let blob = out.ciphertext_blob().ok_or_else(|| CryptoError::Provider("KMS Encrypt returned no ciphertext".into()))?;
        Ok(WrappedKey { kek_id: format!("kms:{arn}"), blob: blob.as_ref().to_vec() })
    }

    async fn unwrap(&self, ctx: &WrapContext, wrapped: &WrappedKey) -> Result<KeyBytes, CryptoError> {
        let arn = parse_kek_id(&wrapped.kek_id)?;
        let mut req = self.client.decrypt().key_id(arn).ciphertext_blob(Blob::new(wrapped.blob.clone()));
        for (k, v) in encryption_context(ctx) {
            req = req.encryption_context(k, v);
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                return Err(match e.as_service_error() {
                    Some(s) if s.is_invalid_ciphertext_exception() || s.is_incorrect_key_exception() => CryptoError::Decrypt,
                    Some(s) if s.is_not_found_exception() || s.is_kms_invalid_state_exception() => {
                        CryptoError::UnknownKek(wrapped.kek_id.clone())
                    }
                    _ => kms_err("Decrypt", e),
                });
            }
        };
        if out.key_id().is_some_and(|k| k != arn) {
            return Err(CryptoError::Decrypt);
        }
        let plain = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        if plain.len() != KEY_LEN {
            return Err(CryptoError::Format("an unwrapped data key is 32 bytes"));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    async fn rotate(&self) -> Result<String, CryptoError> {
        let Some(alias) = self.alias() else {
            return Err(CryptoError::Provider(format!(
                "keys.kms.key_id {:?} is not an alias: rotation makes a new key and moves an alias (alias/...) to it",
                self.key_id
            )));
        };
        // Tag the key the alias names now, so the inventory keeps it after the alias moves
        // (a key made outside Ward has no tag yet).
        let old = self.current_arn().await?;
        if !self.is_ours(&old).await? {
            let tag =
                Tag::builder().tag_key(KEK_TAG).tag_value(alias).build().map_err(|e| CryptoError::Provider(format!("KMS tag: {e}")))?;
            self.client.tag_resource().key_id(&old).tags(tag).send().await.map_err(|e| kms_err("tagging the current key", e))?;
        }
        let arn = self.create_key().await?;
        self.client.update_alias().alias_name(alias).target_key_id(&arn).send().await.map_err(|e| kms_err("moving the alias", e))?;
        Ok(format!("kms:{arn}"))
    }

    async fn keks(&self) -> Result<Vec<KekInfo>, CryptoError> {
        let current = self.current_arn().await?;
        let mut out = Vec::new();
        let mut seen_current = false;
        if self.alias().is_some() {
            let mut marker = None;
            loop {
                let page = self.client.list_keys().set_marker(marker).send().await.map_err(|e| kms_err("listing keys", e))?;
                for entry in page.keys() {
                    let Some(arn) = entry.key_arn() else { continue };
                    if !self.is_ours(arn).await? {
                        continue;
                    }
                    let meta = self.describe(arn).await?;
                    if !usable(&meta) {
                        continue;
                    }
                    seen_current |= arn == current;
                    out.push(KekInfo { kek_id: format!("kms:{arn}"), created_at: created_ms(&meta), current: arn == current });
                }
                match (page.truncated(), page.next_marker()) {
                    (true, Some(m)) => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
        }
        if !seen_current {
            let meta = self.describe(&current).await?;
            out.push(KekInfo { kek_id: format!("kms:{current}"), created_at: created_ms(&meta), current: true });
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.current.cmp(&b.current)).then(a.kek_id.cmp(&b.kek_id)));
        Ok(out)
    }

    async fn current_kek(&self) -> Result<String, CryptoError> {
        Ok(format!("kms:{}", self.current_arn().await?))
    }

    async fn destroy(&self, kek_id: &str) -> Result<(), CryptoError> {
        let arn = parse_kek_id(kek_id)?;
        if arn == self.current_arn().await? {
            return Err(current_kek_refused());
        }
        let meta = match self.client.describe_key().key_id(arn).send().await {
            Ok(out) => out.key_metadata().cloned(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found_exception()) => None,
            Err(e) => return Err(kms_err("describing a key", e)),
        };
        let Some(meta) = meta.filter(usable) else {
            return Err(CryptoError::UnknownKek(kek_id.to_owned()));
        };
        if !self.is_ours(arn).await? {
            return Err(CryptoError::Provider(format!(
                "{kek_id} is not tagged {KEK_TAG}={}: refusing to delete a key Ward did not make",
                self.key_id
            )));
        }
        self.client
            .schedule_key_deletion()
            // The bare key id: some KMS-compatible servers take no ARN here.
            .key_id(meta.key_id())
            .pending_window_in_days(DELETION_WINDOW_DAYS)
            .send()
            .await
            .map_err(|e| kms_err("scheduling the key's deletion", e))?;
        Ok(())
    }
}
