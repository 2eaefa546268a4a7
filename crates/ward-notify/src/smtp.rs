//! Email over SMTP through `lettre` (rustls on aws-lc-rs): implicit TLS, STARTTLS, or plain
//! (only for a relay on the same host; the configuration refuses it elsewhere).

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{ConfigError, EmailProvider, SendError, TextMessage};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS, required (port 587).
    StartTls,
    /// None: a relay on the loopback interface only.
    None,
}

/// SMTP settings. Its `Debug` leaves out the password.
#[derive(Clone)]
pub struct SmtpConfig {
    /// The relay's host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Connection protection.
    pub tls: SmtpTls,
    /// Login, if the relay wants one.
    pub username: Option<String>,
    /// Password (from a file or the environment).
    pub password: Option<String>,
    /// The From address.
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| crate::REDACTED))
            .field("from", &self.from)
            .finish()
    }
}

/// The SMTP client.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    /// Builds the transport (connections are made per send).
    pub fn new(cfg: SmtpConfig) -> Result<Self, ConfigError> {
        let from = cfg.from.parse().map_err(|_| ConfigError::Invalid("smtp from"))?;
        let mut b = match cfg.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            SmtpTls::Implicit | SmtpTls::StartTls => {
                let params = TlsParameters::new(cfg.host.clone()).map_err(|_| ConfigError::Invalid("smtp tls"))?;
                let tls = if cfg.tls == SmtpTls::Implicit { Tls::Wrapper(params) } else { Tls::Required(params) };
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host).tls(tls)
            }
        }
        .port(cfg.port)
        .timeout(Some(std::time::Duration::from_secs(20)));
        if let (Some(u), Some(p)) = (cfg.username, cfg.password) {
            b = b.credentials(Credentials::new(u, p));
        }
        Ok(Smtp { transport: b.build(), from })
    }
}

#[async_trait::async_trait]
impl EmailProvider for Smtp {
    async fn email(&self, msg: &TextMessage) -> Result<(), SendError> {
        let to = msg.to.parse().map_err(|_| SendError::Unregistered { code: "smtp_bad_address".into() })?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone())
            .map_err(|_| SendError::permanent("smtp_build"))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.status().map(|c| format!("smtp_{c}"));
                if e.is_permanent() {
                    Err(SendError::permanent(code.unwrap_or_else(|| "smtp_permanent".into())))
                } else {
                    Err(SendError::retry(
                        code.unwrap_or_else(|| if e.is_transient() { "smtp_transient".into() } else { "smtp_transport".into() }),
                    ))
                }
            }
        }
    }
}
