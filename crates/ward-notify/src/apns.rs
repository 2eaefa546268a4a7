//! APNs over HTTP/2 with token-based authentication: an ES256 JWT (key id in the header, team
//! id as issuer) renewed every 50 minutes (Apple refuses one older than an hour and asks not to
//! renew more often than every 20 minutes).

use std::sync::Mutex;

use crate::jwt::{check_ec_key, es256_jwt};
use crate::{ConfigError, HttpOptions, PushMessage, PushPlatform, PushProvider, SendError, http_client, now_secs};

/// How long a provider token is reused.
const TOKEN_REUSE_SECS: u64 = 50 * 60;

/// APNs settings. Its `Debug` leaves out the key.
#[derive(Clone)]
pub struct ApnsConfig {
    /// `https://api.push.apple.com` (or the sandbox, or a test server).
    pub base_url: String,
    /// The 10-character key id of the .p8 key.
    pub key_id: String,
    /// The 10-character team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// The .p8 key (PKCS#8 P-256, PEM).
    pub key_pem: Vec<u8>,
    /// HTTP settings.
    pub http: HttpOptions,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("base_url", &self.base_url)
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("key_pem", &crate::REDACTED)
            .field("http", &self.http)
            .finish()
    }
}

/// The APNs client.
pub struct Apns {
    cfg: ApnsConfig,
    http: reqwest::Client,
    token: Mutex<Option<(u64, String)>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns").field("base_url", &self.cfg.base_url).field("topic", &self.cfg.topic).finish_non_exhaustive()
    }
}

impl Apns {
    /// Builds the client (HTTP/2 only, as APNs requires); checks the key loads.
    pub fn new(cfg: ApnsConfig) -> Result<Self, ConfigError> {
        check_ec_key(&cfg.key_pem)?;
        if cfg.key_id.is_empty() || cfg.team_id.is_empty() || cfg.topic.is_empty() {
            return Err(ConfigError::Invalid("apns key_id, team_id and topic are required"));
        }
        let http = http_client(&cfg.http, true)?;
        Ok(Apns { cfg, http, token: Mutex::new(None) })
    }

    fn provider_token(&self) -> Result<String, SendError> {
        let now = now_secs();
        let mut slot = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((iat, t)) = slot.as_ref()
            && now.saturating_sub(*iat) < TOKEN_REUSE_SECS
        {
            return Ok(t.clone());
        }
        let claims = serde_json::json!({"iss": self.cfg.team_id, "iat": now});
        let t = es256_jwt(&self.cfg.key_pem, &self.cfg.key_id, &claims).map_err(|_| SendError::permanent("apns_key"))?;
        *slot = Some((now, t.clone()));
        Ok(t)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// The APNs payload: the generic alert and ids, nothing else.
pub(crate) fn apns_payload(msg: &PushMessage) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("aps".into(), serde_json::json!({"alert": {"body": msg.alert.text()}, "sound": "default"}));
    for (k, v) in &msg.data {
        body.insert((*k).into(), serde_json::Value::String(v.to_string()));
    }
    serde_json::Value::Object(body)
}

#[async_trait::async_trait]
impl PushProvider for Apns {
    fn platform(&self) -> PushPlatform {
        PushPlatform::Apns
    }

    async fn push(&self, token: &str, msg: &PushMessage) -> Result<(), SendError> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SendError::Unregistered { code: "apns_bad_token".into() });
        }
        let jwt = self.provider_token()?;
        let url = format!("{}/3/device/{token}", self.cfg.base_url.trim_end_matches('/'));
        let res = self
            .http
            .post(url)
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.cfg.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if msg.high_priority { "10" } else { "5" })
            .json(&apns_payload(msg))
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let reason = res.json::<serde_json::Value>().await.ok().and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned));
        Err(match (status, reason.as_deref()) {
            (410, _) | (400, Some("BadDeviceToken" | "DeviceTokenNotForTopic")) => {
                SendError::Unregistered { code: "apns_unregistered".into() }
            }
            (403, Some("ExpiredProviderToken")) => {
                self.forget_token();
                SendError::retry("apns_expired_provider_token")
            }
            _ => SendError::from_status(status),
        })
    }
}
