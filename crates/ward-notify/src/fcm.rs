//! FCM HTTP v1: an OAuth2 access token from a service account (the JWT-bearer grant of
//! RFC 7523, signed RS256, posted to the account's token URI), then one POST per device to
//! `/v1/projects/{project}/messages:send`.

use tokio::sync::Mutex;

use crate::jwt::{check_rsa_key, rs256_jwt};
use crate::{ConfigError, HttpOptions, PushMessage, PushPlatform, PushProvider, SendError, http_client, now_secs};

/// The OAuth2 scope FCM sends need.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a service-account JSON key file that FCM needs. Its `Debug` leaves out
/// the private key.
#[derive(Clone, serde::Deserialize)]
pub struct ServiceAccount {
    /// The project (`project_id`).
    pub project_id: String,
    /// The account (`client_email`): the JWT issuer.
    pub client_email: String,
    /// PKCS#8 RSA key, PEM.
    pub private_key: String,
    /// Where the grant is posted.
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &crate::REDACTED)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

/// FCM settings (`Debug` through [`ServiceAccount`]'s, without the key).
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// `https://fcm.googleapis.com` (or a test server).
    pub base_url: String,
    /// The service account; its `token_uri` may be overridden by the configuration.
    pub account: ServiceAccount,
    /// HTTP settings.
    pub http: HttpOptions,
}

/// The FCM client.
pub struct Fcm {
    cfg: FcmConfig,
    http: reqwest::Client,
    token: Mutex<Option<(u64, String)>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm").field("base_url", &self.cfg.base_url).field("project", &self.cfg.account.project_id).finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Fcm {
    /// Builds the client; checks the key loads.
    pub fn new(cfg: FcmConfig) -> Result<Self, ConfigError> {
        check_rsa_key(cfg.account.private_key.as_bytes())?;
        if cfg.account.project_id.is_empty() || cfg.account.client_email.is_empty() || cfg.account.token_uri.is_empty() {
            return Err(ConfigError::Invalid("fcm project_id, client_email and token_uri are required"));
        }
        let http = http_client(&cfg.http, false)?;
        Ok(Fcm { cfg, http, token: Mutex::new(None) })
    }

    async fn access_token(&self) -> Result<String, SendError> {
        let now = now_secs();
        let mut slot = self.token.lock().await;
        if let Some((until, t)) = slot.as_ref()
            && now < *until
        {
            return Ok(t.clone());
        }
        let a = &self.cfg.account;
        let claims = serde_json::json!({"iss": a.client_email, "scope": FCM_SCOPE, "aud": a.token_uri, "iat": now, "exp": now + 3600});
        let assertion = rs256_jwt(a.private_key.as_bytes(), &claims).map_err(|_| SendError::permanent("fcm_key"))?;
        let res = self
            .http
            .post(&a.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            // The assertion is base64url and dots: nothing in it needs escaping.
            .body(format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"))
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(match SendError::from_status(status) {
                SendError::Permanent { .. } => SendError::permanent(format!("fcm_token_http_{status}")),
                _ => SendError::retry(format!("fcm_token_http_{status}")),
            });
        }
        let reply: TokenReply = res.json().await.map_err(|_| SendError::retry("fcm_token_decode"))?;
        // Renew a minute early.
        let until = now + reply.expires_in.unwrap_or(3600).saturating_sub(60);
        *slot = Some((until, reply.access_token.clone()));
        Ok(reply.access_token)
    }
}

/// The FCM v1 message: a body-only notification (no title), ids as data.
pub(crate) fn fcm_payload(token: &str, msg: &PushMessage) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> =
        msg.data.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.to_string()))).collect();
    serde_json::json!({"message": {
        "token": token,
        "notification": {"body": msg.alert.text()},
        "data": data,
        "android": {"priority": if msg.high_priority { "HIGH" } else { "NORMAL" }},
    }})
}

fn fcm_error_code(v: &serde_json::Value) -> Option<String> {
    let details = v.get("error")?.get("details")?.as_array()?;
    details.iter().find_map(|d| d.get("errorCode").and_then(|c| c.as_str()).map(str::to_owned))
}

#[async_trait::async_trait]
impl PushProvider for Fcm {
    fn platform(&self) -> PushPlatform {
        PushPlatform::Fcm
    }

    async fn push(&self, token: &str, msg: &PushMessage) -> Result<(), SendError> {
        let access = self.access_token().await?;
        let url = format!("{}/v1/projects/{}/messages:send", self.cfg.base_url.trim_end_matches('/'), self.cfg.account.project_id);
        let res =
            self.http.post(url).bearer_auth(access).json(&fcm_payload(token, msg)).send().await.map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let code = res.json::<serde_json::Value>().await.ok().as_ref().and_then(fcm_error_code);
        Err(match (status, code.as_deref()) {
            // Only FCM's own verdict says the token is dead. A bare 404 is as likely a wrong
            // project id or base URL, and taking it for "unregistered" would delete every token.
            (_, Some("UNREGISTERED")) => SendError::Unregistered { code: "fcm_unregistered".into() },
            (401, _) => {
                *self.token.lock().await = None;
                SendError::retry("fcm_http_401")
            }
            (_, Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL")) => SendError::retry(format!("fcm_http_{status}")),
            _ => match SendError::from_status(status) {
                SendError::Retryable { .. } => SendError::retry(format!("fcm_http_{status}")),
                _ => SendError::permanent(format!("fcm_http_{status}")),
            },
        })
    }
}
