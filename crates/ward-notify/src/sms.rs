//! An HTTP SMS gateway: one JSON POST (`{"to": "+E164", "text": "..."}`) with a bearer token
//! to a configured URL. 2xx is accepted; 410 means the number is gone (suppress it); 429 and
//! 5xx are retried; any other status is permanent.

use crate::{ConfigError, HttpOptions, SendError, SmsProvider, TextMessage, http_client};

/// Gateway settings. Its `Debug` leaves out the token.
#[derive(Clone)]
pub struct SmsGatewayConfig {
    /// The URL the message is posted to.
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// The sender id or number the gateway sends from, if it takes one.
    pub from: Option<String>,
    /// HTTP settings.
    pub http: HttpOptions,
}

impl std::fmt::Debug for SmsGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsGatewayConfig")
            .field("url", &self.url)
            .field("token", &crate::REDACTED)
            .field("from", &self.from)
            .field("http", &self.http)
            .finish()
    }
}

/// The gateway client.
pub struct SmsGateway {
    cfg: SmsGatewayConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for SmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsGateway").field("url", &self.cfg.url).finish_non_exhaustive()
    }
}

impl SmsGateway {
    /// Builds the client.
    pub fn new(cfg: SmsGatewayConfig) -> Result<Self, ConfigError> {
        if cfg.url.is_empty() || cfg.token.is_empty() {
            return Err(ConfigError::Invalid("sms url and token are required"));
        }
        let http = http_client(&cfg.http, false)?;
        Ok(SmsGateway { cfg, http })
    }
}

#[async_trait::async_trait]
impl SmsProvider for SmsGateway {
    async fn sms(&self, msg: &TextMessage) -> Result<(), SendError> {
        let mut body = serde_json::json!({"to": msg.to, "text": msg.body});
        if let Some(from) = &self.cfg.from {
            body["from"] = serde_json::Value::String(from.clone());
        }
        let res =
            self.http.post(&self.cfg.url).bearer_auth(&self.cfg.token).json(&body).send().await.map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        match status {
            200..=299 => Ok(()),
            410 => Err(SendError::Unregistered { code: "sms_disconnected".into() }),
            _ => Err(SendError::from_status(status)),
        }
    }
}
