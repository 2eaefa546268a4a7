//! Delivery provider clients for everything that leaves Ward on a channel Ward does not
//! control: push (APNs, FCM HTTP v1), SMS (an HTTP gateway) and email (SMTP). No storage: the
//! server's delivery worker decides what to send and records the outcome.
//!
//! What these clients carry is PHI-free by construction: a push carries ids and a generic
//! alert, never a title, sender or body; SMS and email carry text that already passed the
//! outbound content policy (`ward_outbound`). Errors carry stable codes and HTTP statuses
//! only, never a destination, a token or a body, so they can be logged and audited.

mod apns;
mod fcm;
mod jwt;
mod sms;
mod smtp;

#[cfg(feature = "test-support")]
pub mod fake;

pub use apns::{Apns, ApnsConfig};
pub use fcm::{FCM_SCOPE, Fcm, FcmConfig, ServiceAccount};
pub use jwt::{JwtError, es256_jwt, rs256_jwt};
pub use sms::{SmsGateway, SmsGatewayConfig};
pub use smtp::{Smtp, SmtpConfig, SmtpTls};

use std::time::Duration;

/// What a `Debug` output shows instead of a secret.
pub(crate) const REDACTED: &str = "****";

/// The address in an email `From` value (`Name <user@host>` or a bare address), parsed by
/// `lettre`; `None` if it is not one. For inbound mail webhooks: only the sender is read.
pub fn mailbox_address(from: &str) -> Option<String> {
    from.parse::<lettre::message::Mailbox>().ok().map(|m| m.email.to_string())
}

/// The push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushPlatform {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
}

impl PushPlatform {
    /// The stable name (`apns`, `fcm`).
    pub fn as_str(self) -> &'static str {
        match self {
            PushPlatform::Apns => "apns",
            PushPlatform::Fcm => "fcm",
        }
    }

    /// Parses [`PushPlatform::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "apns" => Some(PushPlatform::Apns),
            "fcm" => Some(PushPlatform::Fcm),
            _ => None,
        }
    }
}

/// The only alert texts a push may carry: generic, no PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushAlert {
    /// "New message".
    NewMessage,
    /// "New notice" (a patient notice: the app fetches its text over TLS).
    NewNotice,
    /// "Urgent message needs attention" (an urgent or STAT message left unread: escalation).
    UrgentUnread,
}

impl PushAlert {
    /// The text shown on the lock screen.
    pub fn text(self) -> &'static str {
        match self {
            PushAlert::NewMessage => "New message",
            PushAlert::NewNotice => "New notice",
            PushAlert::UrgentUnread => "Urgent message needs attention",
        }
    }
}

/// A PHI-free push: a generic alert and ids for the app to fetch the content with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// The generic alert.
    pub alert: PushAlert,
    /// Ids only (`conversation_id`, `message_id`, `notice_id`): fixed keys, UUID values.
    pub data: Vec<(&'static str, uuid::Uuid)>,
    /// Deliver at once (urgent and STAT messages) rather than when convenient.
    pub high_priority: bool,
}

/// A text message (SMS, or an email's body) that passed the outbound content policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// E.164 phone number or email address.
    pub to: String,
    /// Email subject (ignored for SMS): generic, e.g. "A message from your care team".
    pub subject: String,
    /// The text.
    pub body: String,
}

/// Why a delivery failed, in codes only (never a destination, token or body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later (network error, 429, 5xx, an expired provider credential).
    #[error("retryable provider error: {code}")]
    Retryable {
        /// Stable code, e.g. `http_503`, `connect`, `timeout`.
        code: String,
    },
    /// Will never succeed as it is (bad request, bad credentials, rejected recipient).
    #[error("permanent provider error: {code}")]
    Permanent {
        /// Stable code, e.g. `http_400`, `smtp_550`.
        code: String,
    },
    /// The device token or number is no longer valid: remove it (APNs 410 Unregistered,
    /// FCM UNREGISTERED).
    #[error("destination unregistered: {code}")]
    Unregistered {
        /// Stable code, e.g. `apns_unregistered`.
        code: String,
    },
}

impl SendError {
    /// The stable code.
    pub fn code(&self) -> &str {
        match self {
            SendError::Retryable { code } | SendError::Permanent { code } | SendError::Unregistered { code } => code,
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }

    pub(crate) fn retry(code: impl Into<String>) -> Self {
        SendError::Retryable { code: code.into() }
    }

    pub(crate) fn permanent(code: impl Into<String>) -> Self {
        SendError::Permanent { code: code.into() }
    }

    /// From a transport error: its kind only (reqwest errors can name the URL, which for
    /// APNs holds the device token).
    pub(crate) fn from_reqwest(e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if e.is_decode() {
            "decode"
        } else {
            "transport"
        };
        SendError::retry(code)
    }

    /// From an HTTP status that no provider-specific rule matched.
    pub(crate) fn from_status(status: u16) -> Self {
        if status == 429 || status == 408 || status >= 500 {
            SendError::retry(format!("http_{status}"))
        } else {
            SendError::permanent(format!("http_{status}"))
        }
    }
}

/// Sends a push to one device token.
#[async_trait::async_trait]
pub trait PushProvider: Send + Sync {
    /// The platform whose tokens it takes.
    fn platform(&self) -> PushPlatform;
    /// Delivers to one token.
    async fn push(&self, token: &str, msg: &PushMessage) -> Result<(), SendError>;
}

/// Sends an SMS.
#[async_trait::async_trait]
pub trait SmsProvider: Send + Sync {
    /// Delivers the text to `msg.to`.
    async fn sms(&self, msg: &TextMessage) -> Result<(), SendError>;
}

/// Sends an email.
#[async_trait::async_trait]
pub trait EmailProvider: Send + Sync {
    /// Delivers the text to `msg.to`.
    async fn email(&self, msg: &TextMessage) -> Result<(), SendError>;
}

/// Settings shared by the HTTP providers.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// PEM roots to trust instead of the system's (a private gateway; tests).
    pub ca_pem: Option<Vec<u8>>,
    /// Request timeout (default 15 s).
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PEM roots are public, but long: their size is enough.
        f.debug_struct("HttpOptions").field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len)).field("timeout", &self.timeout).finish()
    }
}

/// Errors building a provider (bad key or configuration); never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key or credential would not parse.
    #[error("provider key: {0}")]
    Key(#[from] JwtError),
    /// Something else (a field named).
    #[error("provider configuration: {0}")]
    Invalid(&'static str),
}

pub(crate) fn http_client(opts: &HttpOptions, http2_only: bool) -> Result<reqwest::Client, ConfigError> {
    let mut b =
        reqwest::Client::builder().timeout(opts.timeout.unwrap_or(Duration::from_secs(15))).redirect(reqwest::redirect::Policy::none());
    if http2_only {
        b = b.http2_prior_knowledge();
    }
    if let Some(pem) = &opts.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| ConfigError::Invalid("ca_file"))?;
        b = b.tls_certs_only(certs);
    }
    b.build().map_err(|_| ConfigError::Invalid("http client"))
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No provider setting prints its secret in `Debug` (logs, panics, `{:?}` in errors).
    #[test]
    fn debug_output_hides_every_secret() {
        let http = HttpOptions::default();
        let apns = ApnsConfig {
            base_url: "https://apns.test".into(),
            key_id: "KEYID12345".into(),
            team_id: "TEAMID6789".into(),
            topic: "org.example.ward".into(),
            key_pem: b"-----BEGIN PRIVATE KEY-----secret-apns-key".to_vec(),
            http: http.clone(),
        };
        let fcm = FcmConfig {
            base_url: "https://fcm.test".into(),
            account: ServiceAccount {
                project_id: "p".into(),
                client_email: "e@x.test".into(),
                private_key: "secret-fcm-key".into(),
                token_uri: "https://t.test".into(),
            },
            http: http.clone(),
        };
        let sms = SmsGatewayConfig { url: "https://sms.test".into(), token: "secret-sms-token".into(), from: None, http };
        let smtp = SmtpConfig {
            host: "smtp.test".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: Some("ward".into()),
            password: Some("secret-smtp-password".into()),
            from: "w@x.test".into(),
        };
        let shown = format!("{apns:?} {fcm:?} {sms:?} {smtp:?} {:?}", fcm.account);
        for secret in ["secret-apns-key", "secret-fcm-key", "secret-sms-token", "secret-smtp-password", "BEGIN PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("KEYID12345") && shown.contains("smtp.test"), "the rest is still shown: {shown}");
    }
}
