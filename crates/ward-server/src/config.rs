//! Configuration: one doc-commented struct, read from a TOML file and then `WARD_*`
//! environment variables (nested keys joined by `__`, e.g. `WARD_SESSIONS__IDLE_TIMEOUT_SECS`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `ward serve` can be told. Its `Debug` is [`Config::redacted_toml`]: no secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the SQLite database, the TLS certificate and every other file Ward keeps.
    pub data_dir: PathBuf,
    /// Address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Database URL: `sqlite://...` or `postgres://...`. Default: `ward.db` in the data directory.
    pub database_url: Option<String>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Session and token lifetimes.
    pub sessions: SessionConfig,
    /// Request and connection limits.
    pub limits: LimitConfig,
    /// Logging.
    pub log: LogConfig,
    /// The tamper-evident audit log.
    pub audit: AuditConfig,
    /// Encryption at rest: the key provider and data key rotation.
    pub keys: KeysConfig,
    /// The retention job: crypto-shreds conversation content past its organisation's
    /// retention period (periods are set per organisation through the API).
    pub retention: RetentionConfig,
    /// Encrypted attachments: size limit, accepted types and where the sealed content is kept.
    pub attachments: AttachmentsConfig,
    /// The outbound content policy that checks patient notices.
    pub outbound: OutboundConfig,
    /// Device trust: when unacknowledged wipes count as overdue (the posture policy itself is
    /// set per organisation through the API).
    pub devices: DevicesConfig,
    /// Break-glass (emergency) access: how long a grant lasts.
    pub break_glass: BreakGlassConfig,
    /// Delivery of PHI-free push, SMS and email through outside providers (all off by
    /// default: notices and codes then stay queued).
    pub notify: NotifyConfig,
    /// Escalation of urgent and STAT messages left unread (PHI-free re-notification, then
    /// the care team's on-call members).
    pub escalation: EscalationConfig,
    /// WebAuthn (security keys and passkeys): the relying party and ceremony lifetime.
    pub webauthn: WebAuthnConfig,
    /// Webhooks for messages patients send in by SMS or email, answered with a PHI-free
    /// redirect to the portal.
    pub inbound: InboundConfig,
    /// Patient portal one-time sign-in links.
    pub portal: PortalConfig,
    /// Single sign-on with OpenID Connect (providers are set per organisation through the API).
    pub oidc: OidcConfig,
}

/// `[inbound]`: the SMS gateway's and the mail provider's webhooks
/// (`POST /api/v1/inbound/{org}/sms`, `.../email`). A patient's verified contact that writes
/// in gets `redirect_text` back on the same channel, at most once per `redirect_every_minutes`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// The portal link put into `{portal_link}` (https). Required when an organisation is set.
    pub portal_link: String,
    /// The reply: a notice template (docs/consent.md) that may use `{portal_link}` only,
    /// checked by the outbound content policy.
    pub redirect_text: String,
    /// At most one redirect per sender and channel within this many minutes.
    pub redirect_every_minutes: u32,
    /// Requests with a bad or missing signature allowed per source address (IPv6 by /64) and
    /// minute, across organisations: past it, every webhook request from that address answers
    /// `rate_limited` until the minute ends, without an audit event each.
    pub bad_signatures_per_minute_per_address: u32,
    /// The organisations whose webhooks are on, each with its signing secret.
    pub orgs: Vec<InboundOrg>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            portal_link: String::new(),
            redirect_text: "Messages sent here are not read. Please use the secure portal: {portal_link}".into(),
            redirect_every_minutes: 60,
            bad_signatures_per_minute_per_address: 10,
            orgs: Vec::new(),
        }
    }
}

impl std::fmt::Debug for InboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundConfig")
            .field("portal_link", &self.portal_link)
            .field("redirect_every_minutes", &self.redirect_every_minutes)
            .field("bad_signatures_per_minute_per_address", &self.bad_signatures_per_minute_per_address)
            .field("orgs", &self.orgs)
            .finish_non_exhaustive()
    }
}

/// `[[inbound.orgs]]`: one organisation's webhooks.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct InboundOrg {
    /// The organisation's slug (the `{org}` of the webhook URLs).
    pub org: String,
    /// The HMAC-SHA256 key the provider signs each body with (shown redacted; or
    /// `secret_file`).
    pub secret: Option<String>,
    /// A file holding the key.
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for InboundOrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundOrg")
            .field("org", &self.org)
            .field("secret", &self.secret.as_ref().map(|_| "****"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl InboundConfig {
    /// Checks the webhook settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError(what.to_owned()));
        if !(1..=10_080).contains(&self.redirect_every_minutes) {
            return bad("inbound.redirect_every_minutes must be between 1 and 10080");
        }
        if !(1..=10_000).contains(&self.bad_signatures_per_minute_per_address) {
            return bad("inbound.bad_signatures_per_minute_per_address must be between 1 and 10000");
        }
        if self.redirect_text.is_empty() || self.redirect_text.len() > 320 {
            return bad("inbound.redirect_text must be 1 to 320 bytes");
        }
        if !self.orgs.is_empty() && !self.portal_link.starts_with("https://") {
            return bad("inbound.portal_link must be an https link when inbound.orgs is set");
        }
        for o in &self.orgs {
            if o.org.is_empty() {
                return bad("inbound.orgs[].org must name an organisation slug");
            }
            if o.secret.is_none() == o.secret_file.is_none() {
                return bad("inbound.orgs[] needs exactly one of secret and secret_file");
            }
            if o.secret.as_ref().is_some_and(|s| s.len() < 16) {
                return bad("inbound.orgs[].secret must be at least 16 bytes");
            }
        }
        Ok(())
    }
}

/// Single sign-on (`[oidc]`): how Ward talks to the organisations' OpenID Connect providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The address browsers reach Ward at (`https://ward.example.org`): the redirect URI
    /// registered at providers is `<public_url>/api/v1/auth/oidc/callback`, and the web app is
    /// sent to `<public_url>/#/sso/...` afterwards. Default: `portal.public_url`, then the first
    /// `webauthn.origins` entry; with none, the request's own host only when it is loopback
    /// (`localhost`, `127.0.0.1`, `[::1]`, optional port: a demo on one's own machine), else
    /// single sign-on answers `503 oidc_public_url_required` (the caller chooses `Host`).
    pub public_url: Option<String>,
    /// How long a sign-in may take at the provider, in seconds (60 to 3600). Default 600.
    pub state_ttl_secs: u64,
    /// Allows `http://` issuers on loopback addresses (127.0.0.1, ::1, localhost) only: for a
    /// provider run next to Ward in tests. Every other issuer must use https. Default false.
    pub allow_http_loopback: bool,
    /// Timeout of each call to a provider (discovery, keys, token), in seconds (1 to 60).
    pub http_timeout_secs: u64,
    /// Anonymous sign-in starts (`GET /api/v1/auth/oidc/{org}/start`) allowed per source
    /// address and minute; each one calls the provider. 0 is unlimited. Default 30.
    pub starts_per_minute_per_address: u32,
    /// Refused back-channel logout tokens allowed per organisation and source address and
    /// minute before that address is stopped (for that organisation only). Default 30.
    pub failed_logouts_per_minute_per_address: u32,
    /// A PEM bundle of CA certificates added to the trusted roots for calls to providers
    /// (an on-premises provider behind a private CA). Each certificate must parse as a trust
    /// anchor, else Ward does not start. Default none.
    pub ca_file: Option<PathBuf>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            state_ttl_secs: 600,
            allow_http_loopback: false,
            http_timeout_secs: 10,
            starts_per_minute_per_address: 30,
            failed_logouts_per_minute_per_address: 30,
            ca_file: None,
        }
    }
}

impl OidcConfig {
    /// Checks the lifetimes and the address.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=3600).contains(&self.state_ttl_secs) {
            return Err(ConfigError("oidc.state_ttl_secs must be between 60 and 3600".into()));
        }
        if !(1..=60).contains(&self.http_timeout_secs) {
            return Err(ConfigError("oidc.http_timeout_secs must be between 1 and 60".into()));
        }
        if let Some(u) = &self.public_url
            && !u.starts_with("https://")
        {
            return Err(ConfigError("oidc.public_url must start with https://".into()));
        }
        if let Some(path) = &self.ca_file {
            crate::oidc::read_ca_file(path).map_err(ConfigError)?;
        }
        Ok(())
    }
}

/// Patient portal (`[portal]`): one-time sign-in links sent in PHI-free notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// How long a one-time link stays usable, in seconds (60 to 2592000). Default 72 hours.
    pub link_ttl_secs: u64,
    /// The web app's address that links start with (`https://ward.example.org`). Default: the
    /// first `webauthn.origins` entry; with neither, links are answered as a path
    /// (`/#/link/...`) for the caller to prefix.
    pub public_url: Option<String>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self { link_ttl_secs: 72 * 3600, public_url: None }
    }
}

impl PortalConfig {
    /// Checks the lifetime and the address.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=2_592_000).contains(&self.link_ttl_secs) {
            return Err(ConfigError("portal.link_ttl_secs must be between 60 and 2592000".into()));
        }
        if let Some(u) = &self.public_url
            && !u.starts_with("https://")
        {
            return Err(ConfigError("portal.public_url must start with https://".into()));
        }
        Ok(())
    }
}

/// Escalation (`[escalation]`): how long an urgent or STAT message may stay unread before
/// its recipients are pushed again (step 1), and, after as long again, the on-call members
/// of the patient's care team (step 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Run the escalation task on this node (every node may: steps are claimed once).
    pub enabled: bool,
    /// Seconds a STAT message may stay unread before each step (1 to 86400).
    pub stat_renotify_secs: u64,
    /// Seconds an urgent message may stay unread before each step (1 to 86400).
    pub urgent_renotify_secs: u64,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self { enabled: true, stat_renotify_secs: 120, urgent_renotify_secs: 600 }
    }
}

impl EscalationConfig {
    /// Checks the delays.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=86_400).contains(&self.stat_renotify_secs) {
            return Err(ConfigError("escalation.stat_renotify_secs must be between 1 and 86400".into()));
        }
        if !(1..=86_400).contains(&self.urgent_renotify_secs) {
            return Err(ConfigError("escalation.urgent_renotify_secs must be between 1 and 86400".into()));
        }
        Ok(())
    }
}

/// Notification delivery (`[notify]`): the worker and its providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// How often the worker looks for due entries, in milliseconds (50 to 60000).
    pub poll_interval_ms: u64,
    /// Provider calls per entry before it is marked failed (1 to 20).
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long, at most an hour
    /// (milliseconds, 0 to 3600000).
    pub retry_base_ms: u64,
    /// How long a node holds an entry it is sending before another node may take it
    /// (seconds, 10 to 3600).
    pub lease_secs: u64,
    /// The subject line of every email (generic: no PHI).
    pub email_subject: String,
    /// Apple Push Notification service.
    pub apns: ApnsSettings,
    /// Firebase Cloud Messaging HTTP v1.
    pub fcm: FcmSettings,
    /// The HTTP SMS gateway.
    pub sms: SmsSettings,
    /// SMTP email.
    pub email: EmailSettings,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 2000,
            max_attempts: 5,
            retry_base_ms: 30_000,
            lease_secs: 120,
            email_subject: "A message from your care team".into(),
            apns: ApnsSettings::default(),
            fcm: FcmSettings::default(),
            sms: SmsSettings::default(),
            email: EmailSettings::default(),
        }
    }
}

/// `[notify.apns]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsSettings {
    /// Send through APNs.
    pub enabled: bool,
    /// `https://api.push.apple.com` (production) or `https://api.sandbox.push.apple.com`.
    pub base_url: String,
    /// The key id of the .p8 signing key.
    pub key_id: String,
    /// The Apple developer team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// The .p8 key file (PKCS#8 P-256, PEM).
    pub key_file: Option<PathBuf>,
    /// PEM roots to trust instead of the system's (a private relay; tests).
    pub ca_file: Option<PathBuf>,
}

impl Default for ApnsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.push.apple.com".into(),
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            key_file: None,
            ca_file: None,
        }
    }
}

/// `[notify.fcm]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmSettings {
    /// Send through FCM.
    pub enabled: bool,
    /// `https://fcm.googleapis.com`.
    pub base_url: String,
    /// The service-account JSON key file.
    pub service_account_file: Option<PathBuf>,
    /// Overrides the key file's `token_uri`.
    pub token_uri: Option<String>,
    /// PEM roots to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for FcmSettings {
    fn default() -> Self {
        Self { enabled: false, base_url: "https://fcm.googleapis.com".into(), service_account_file: None, token_uri: None, ca_file: None }
    }
}

/// `[notify.sms]`. Its `Debug` leaves out the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// Send SMS through the gateway.
    pub enabled: bool,
    /// The gateway's send URL (https, or http to the loopback interface).
    pub url: String,
    /// The bearer token (shown redacted; or `token_file`, or `WARD_NOTIFY__SMS__TOKEN`).
    pub token: Option<String>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Sender id or number, if the gateway takes one.
    pub from: Option<String>,
    /// PEM roots to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// `[notify.email]`. Its `Debug` leaves out the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// Send email through the SMTP relay.
    pub enabled: bool,
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// `starttls`, `implicit` or `none` (`none` only to a relay on the loopback interface).
    pub tls: String,
    /// Login, if the relay wants one.
    pub username: Option<String>,
    /// Password (shown redacted; or `password_file`, or `WARD_NOTIFY__EMAIL__PASSWORD`).
    pub password: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// The From address.
    pub from: String,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            host: String::new(),
            port: 587,
            tls: "starttls".into(),
            username: None,
            password: None,
            password_file: None,
            from: String::new(),
        }
    }
}

/// What `Debug` shows for a secret that is set.
fn hidden(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "****")
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("enabled", &self.enabled)
            .field("url", &self.url)
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("from", &self.from)
            .finish()
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .finish_non_exhaustive()
    }
}

fn loopback_host(h: &str) -> bool {
    matches!(h, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

impl NotifyConfig {
    /// Checks the delivery settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError(what.to_owned()));
        if !(50..=60_000).contains(&self.poll_interval_ms) {
            return bad("notify.poll_interval_ms must be between 50 and 60000");
        }
        if !(1..=20).contains(&self.max_attempts) {
            return bad("notify.max_attempts must be between 1 and 20");
        }
        if self.retry_base_ms > 3_600_000 {
            return bad("notify.retry_base_ms must be at most 3600000");
        }
        // Above one provider send (HTTP 15 s, SMTP 20 s): the lease is renewed before each.
        if !(60..=3600).contains(&self.lease_secs) {
            return bad("notify.lease_secs must be between 60 and 3600");
        }
        if self.email_subject.is_empty() || self.email_subject.len() > 120 || self.email_subject.chars().any(char::is_control) {
            return bad("notify.email_subject must be 1 to 120 characters on one line");
        }
        let a = &self.apns;
        if a.enabled && (a.key_id.is_empty() || a.team_id.is_empty() || a.topic.is_empty() || a.key_file.is_none()) {
            return bad("notify.apns needs key_id, team_id, topic and key_file when enabled");
        }
        if a.enabled && !a.base_url.starts_with("https://") {
            return bad("notify.apns.base_url must be https (APNs is HTTP/2 over TLS)");
        }
        let f = &self.fcm;
        if f.enabled && f.service_account_file.is_none() {
            return bad("notify.fcm needs service_account_file when enabled");
        }
        let s = &self.sms;
        if s.enabled {
            if s.token.is_none() && s.token_file.is_none() {
                return bad("notify.sms needs token or token_file when enabled");
            }
            let local = s.url.strip_prefix("http://").and_then(|r| r.split([':', '/']).next()).is_some_and(loopback_host);
            if !(s.url.starts_with("https://") || local) {
                return bad("notify.sms.url must be https (or http to the loopback interface)");
            }
        }
        let e = &self.email;
        if e.enabled {
            if e.host.is_empty() || e.from.is_empty() {
                return bad("notify.email needs host and from when enabled");
            }
            match e.tls.as_str() {
                "starttls" | "implicit" => {}
                "none" if loopback_host(&e.host) => {}
                "none" => return bad("notify.email.tls = \"none\" is only allowed to a relay on the loopback interface"),
                _ => return bad("notify.email.tls must be starttls, implicit or none"),
            }
        }
        Ok(())
    }
}

/// WebAuthn relying party (`[webauthn]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebAuthnConfig {
    /// The relying party id: the domain credentials are bound to (`ward.example.org`). Default
    /// `localhost`. Changing it later makes every registered credential unusable.
    pub rp_id: Option<String>,
    /// The name authenticators show for the relying party.
    pub rp_name: String,
    /// The web origins allowed to run ceremonies (`https://ward.example.org`). Default:
    /// `https://<rp_id>` on any port.
    pub origins: Vec<String>,
    /// How long a registration or sign-in challenge stays answerable, in seconds (1 to 600).
    pub challenge_ttl_secs: u32,
}

impl Default for WebAuthnConfig {
    fn default() -> Self {
        Self { rp_id: None, rp_name: "Ward".into(), origins: Vec::new(), challenge_ttl_secs: 120 }
    }
}

impl WebAuthnConfig {
    /// The relying party id in force.
    pub fn rp_id(&self) -> &str {
        self.rp_id.as_deref().unwrap_or("localhost")
    }

    /// Builds the webauthn-rs relying party.
    pub fn relying_party(&self) -> Result<webauthn_rs::Webauthn, ConfigError> {
        let bad = |what: String| ConfigError(what);
        let rp_id = self.rp_id();
        let parse = |o: &str| webauthn_rs::prelude::Url::parse(o).map_err(|_| bad(format!("webauthn.origins: {o:?} is not a URL")));
        let (first, rest, any_port) = match self.origins.split_first() {
            Some((first, rest)) => (parse(first)?, rest.iter().map(|o| parse(o)).collect::<Result<Vec<_>, _>>()?, false),
            None => (parse(&format!("https://{rp_id}"))?, Vec::new(), true),
        };
        let mut b = webauthn_rs::WebauthnBuilder::new(rp_id, &first)
            .map_err(|e| bad(format!("webauthn.rp_id {rp_id:?} does not fit origin {first}: {e}")))?
            .rp_name(&self.rp_name)
            .allow_any_port(any_port)
            .timeout(std::time::Duration::from_secs(u64::from(self.challenge_ttl_secs)));
        for o in &rest {
            b = b.append_allowed_origin(o);
        }
        b.build().map_err(|e| bad(format!("webauthn settings are not usable: {e}")))
    }
}

/// Break-glass emergency access (`[break_glass]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakGlassConfig {
    /// How long a grant's read access lasts, in minutes (5 to 720).
    pub access_minutes: u32,
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        Self { access_minutes: 60 }
    }
}

/// The outbound content policy (`[outbound]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Build the policy on a background thread when the server starts, so the first notice
    /// does not wait for it (about 0.5 s in a release build); off, the first request that
    /// needs it builds it.
    pub build_at_start: bool,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self { build_at_start: true }
    }
}

/// Device trust (`[devices]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// A wipe the device has not acknowledged this many hours after it was requested is listed
    /// as overdue (1 to 8760).
    pub wipe_ack_overdue_hours: u32,
    /// Requests to the unauthenticated wipe endpoints (`/api/v1/device-wipe/command` and
    /// `/ack`, counted together) one source address may make per minute (1 to 100000).
    pub wipe_requests_per_minute_per_address: u32,
    /// Failed requests to the same endpoints naming one device id, per minute (1 to 100000).
    pub wipe_requests_per_minute_per_device: u32,
    /// PEM certificate that signs configuration profiles (`GET /api/v1/org/device-profile?signed=true`);
    /// give `profile_sign_key` with it. Unset: profiles are only served unsigned.
    pub profile_sign_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, SEC 1 or PKCS#1; ECDSA P-256 or RSA).
    pub profile_sign_key: Option<PathBuf>,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            wipe_ack_overdue_hours: 72,
            wipe_requests_per_minute_per_address: 30,
            wipe_requests_per_minute_per_device: 10,
            profile_sign_cert: None,
            profile_sign_key: None,
        }
    }
}

/// Content types an attachment may have; `allowed_types` picks from these.
pub const SUPPORTED_ATTACHMENT_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "image/heic", "image/gif", "application/pdf"];

/// Encrypted attachments (`[attachments]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// Largest attachment in bytes, enforced while the upload streams in.
    pub max_bytes: u64,
    /// Content types accepted, checked against the content itself (not only the declared
    /// type). JPEG, PNG and WebP images have their EXIF and XMP metadata (GPS location
    /// included) removed; HEIC and GIF are stored as uploaded, so they are off by default.
    pub allowed_types: Vec<String>,
    /// `fs` (a directory, the default) or `s3` (an S3-compatible object store).
    pub store: AttachmentStoreKind,
    /// The directory for `store = "fs"`. Default: `<data_dir>/attachments`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The bucket for `store = "s3"`.
    pub s3: S3Config,
}

/// Where attachment content is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentStoreKind {
    /// A local directory.
    Fs,
    /// An S3-compatible object store.
    S3,
}

/// An S3-compatible bucket (`[attachments.s3]`). Its `Debug` leaves out the secret key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The bucket name.
    pub bucket: String,
    /// The region, such as `eu-west-1`.
    pub region: String,
    /// An endpoint other than AWS's own (an S3-compatible server); `http://` is allowed only
    /// for a loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The access key id. Without it, the standard `AWS_*` environment variables are used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret access key (shown redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        AttachmentsConfig {
            max_bytes: 25 * 1024 * 1024,
            allowed_types: ["image/jpeg", "image/png", "image/webp", "application/pdf"].map(String::from).to_vec(),
            store: AttachmentStoreKind::Fs,
            path: None,
            s3: S3Config::default(),
        }
    }
}

impl AttachmentsConfig {
    /// The attachment directory in force for data directory `data_dir` (`store = "fs"`).
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| data_dir.join("attachments"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError(what.to_owned()));
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_bytes) {
            return bad("attachments.max_bytes must be between 1 KiB and 1 GiB");
        }
        if self.allowed_types.is_empty() {
            return bad("attachments.allowed_types must name at least one type");
        }
        if let Some(t) = self.allowed_types.iter().find(|t| !SUPPORTED_ATTACHMENT_TYPES.contains(&t.as_str())) {
            return Err(ConfigError(format!(
                "attachments.allowed_types: {t} is not supported (choose from {})",
                SUPPORTED_ATTACHMENT_TYPES.join(", ")
            )));
        }
        if self.store == AttachmentStoreKind::S3 {
            let s3 = &self.s3;
            if s3.bucket.is_empty() || s3.region.is_empty() {
                return bad("attachments.s3.bucket and attachments.s3.region are needed for store = \"s3\"");
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                return bad("attachments.s3.access_key_id and attachments.s3.secret_access_key must be given together");
            }
            if let Some(e) = &s3.endpoint
                && !(e.starts_with("https://")
                    || e.starts_with("http://127.")
                    || e.starts_with("http://localhost")
                    || e.starts_with("http://[::1]"))
            {
                return bad("attachments.s3.endpoint must be https:// (or http:// on a loopback address)");
            }
        }
        Ok(())
    }
}

/// The scheduled retention job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run the job in this server. With several nodes, enable it on one (it is safe on more:
    /// each shredding decides again inside its transaction).
    pub enabled: bool,
    /// Seconds between runs (the first run one interval after start); 60 to 604800.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { enabled: true, interval_secs: 3600 }
    }
}

/// Where key-encryption keys live, and how data keys rotate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `file` (the default: a local key file), `pkcs11` (an HSM) or `kms` (AWS KMS or a
    /// KMS-compatible server).
    pub provider: KeyProviderKind,
    /// The key file for `provider = "file"`. Default: `<data_dir>/keys/kek.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// New content gets a new data key version once its scope's current key is this old.
    pub data_key_rotation_days: u32,
    /// Unwrapped data keys kept in memory, so the provider is asked once per key.
    pub cache_keys: usize,
    /// The HSM, for `provider = "pkcs11"`.
    pub pkcs11: ward_crypto::pkcs11::Pkcs11Options,
    /// KMS, for `provider = "kms"`.
    pub kms: ward_crypto::kms::KmsOptions,
}

/// The kinds of key provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyProviderKind {
    /// A local key file (mode 0600) in the data directory.
    File,
    /// A PKCS#11 HSM.
    Pkcs11,
    /// AWS KMS or a KMS-compatible server.
    Kms,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            provider: KeyProviderKind::File,
            file: None,
            data_key_rotation_days: 90,
            cache_keys: ward_crypto::keyring::DEFAULT_CACHE_KEYS,
            pkcs11: Default::default(),
            kms: Default::default(),
        }
    }
}

impl KeysConfig {
    /// The key file in force for data directory `data_dir`.
    pub fn key_file(&self, data_dir: &Path) -> PathBuf {
        self.file.clone().unwrap_or_else(|| data_dir.join("keys").join("kek.json"))
    }
}

/// The audit log's Merkle tree and signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's identity: first line of every checkpoint and the signing key's name. A
    /// scheme-less URL; never change it for a running log.
    pub origin: String,
    /// Sign a checkpoint once this many entries are not yet covered by one.
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint at least this often while new entries arrive.
    pub checkpoint_interval_secs: u64,
    /// Keep audit entries in the live database at least this many days; older ones may be
    /// archived (`ward audit archive`). HIPAA 164.316(b)(2)(i) asks for six years, so less than
    /// [`MIN_AUDIT_RETENTION_DAYS`] is refused.
    pub retention_days: u32,
    /// Where archive segments are written. Default: `<data_dir>/audit/archive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_dir: Option<PathBuf>,
    /// Streaming the log and its checkpoints to a SIEM as RFC 5424 syslog over TLS.
    pub syslog: SyslogConfig,
}

/// Six years of days, leap days included: 6 × 365 = 2190, plus 2 because any six consecutive
/// years contain at most two 29ths of February. So a retention of this many days is six years
/// or longer, whichever six years are meant.
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 2192;

impl AuditConfig {
    /// The archive directory in force for data directory `data_dir`.
    pub fn archive_dir(&self, data_dir: &Path) -> PathBuf {
        self.archive_dir.clone().unwrap_or_else(|| data_dir.join("audit").join("archive"))
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: "ward.local/audit".into(),
            checkpoint_every_entries: 1000,
            checkpoint_interval_secs: 10,
            retention_days: MIN_AUDIT_RETENTION_DAYS,
            archive_dir: None,
            syslog: SyslogConfig::default(),
        }
    }
}

/// The audit log's syslog stream (RFC 5424 messages over TLS, RFC 5425). Off by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// Stream the audit log to the receiver below.
    pub enabled: bool,
    /// The receiver as `host:port` (`[v6]:port` for an IPv6 address); 6514 is the RFC 5425 port.
    pub address: String,
    /// The name the receiver's certificate must carry. Default: the host part of `address`.
    pub server_name: Option<String>,
    /// PEM file of the certificate authorities that the receiver's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain Ward presents to the receiver (mutual TLS); with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The syslog facility, by name (`authpriv`, `local0`…`local7`, `auth`, `audit`, …).
    pub facility: String,
    /// The APP-NAME field.
    pub app_name: String,
    /// The HOSTNAME field. Default: this machine's host name.
    pub hostname: Option<String>,
    /// The private enterprise number in the structured-data ids (`ward-audit@N`). 32473 is the
    /// number reserved for documentation (RFC 5612); an organisation that owns one sets its own.
    pub enterprise_number: u32,
    /// Audit events read from the database and written per batch.
    pub batch_size: u32,
    /// Confirm delivery (TLS close_notify exchange, then a new connection) after this many
    /// messages on one connection.
    pub confirm_every_entries: u64,
    /// Confirm delivery at least this often while messages are unconfirmed.
    pub confirm_interval_secs: u64,
    /// Longest wait between reconnection attempts (the backoff doubles up to this).
    pub reconnect_max_secs: u64,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: String::new(),
            server_name: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            facility: "authpriv".into(),
            app_name: "ward".into(),
            hostname: None,
            enterprise_number: 32473,
            batch_size: 500,
            confirm_every_entries: 10_000,
            confirm_interval_secs: 10,
            reconnect_max_secs: 60,
        }
    }
}

impl SyslogConfig {
    /// Checks the settings; only when enabled.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let bad = |what: String| Err(ConfigError(what));
        let Some((host, _port)) = crate::audit_sink::split_address(&self.address) else {
            return bad(format!("audit.syslog.address must be host:port (e.g. siem.example:6514), not {:?}", self.address));
        };
        let server_name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
            return bad(format!("audit.syslog.server_name {server_name:?} is not a DNS name or IP address"));
        }
        if self.ca_file.is_none() {
            return bad("audit.syslog.ca_file is required: the CA file that the receiver's certificate chains to".into());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return bad("audit.syslog.client_cert and audit.syslog.client_key must be given together".into());
        }
        if crate::audit_sink::rfc5424::facility_code(&self.facility).is_none() {
            return bad(format!(
                "audit.syslog.facility {:?} is not a syslog facility (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, \
                 cron, authpriv, ftp, ntp, audit, alert, clock, local0 to local7)",
                self.facility
            ));
        }
        if !crate::audit_sink::rfc5424::is_header_field(&self.app_name, 48) {
            return bad("audit.syslog.app_name must be 1 to 48 printable ASCII characters without spaces".into());
        }
        if let Some(h) = &self.hostname
            && !crate::audit_sink::rfc5424::is_header_field(h, 255)
        {
            return bad("audit.syslog.hostname must be 1 to 255 printable ASCII characters without spaces".into());
        }
        if self.enterprise_number == 0 {
            return bad("audit.syslog.enterprise_number must be positive".into());
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return bad("audit.syslog.batch_size must be between 1 and 10000".into());
        }
        if self.confirm_every_entries == 0 || !(1..=3600).contains(&self.confirm_interval_secs) {
            return bad("audit.syslog.confirm_every_entries must be positive and confirm_interval_secs between 1 and 3600".into());
        }
        if !(1..=3600).contains(&self.reconnect_max_secs) {
            return bad("audit.syslog.reconnect_max_secs must be between 1 and 3600".into());
        }
        Ok(())
    }
}

/// TLS settings. Only TLS 1.3 is ever offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. Without it, a self-signed certificate is made in the data directory on first start.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
}

/// Session and token lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Lifetime of an access token in seconds.
    pub access_ttl_secs: i64,
    /// Absolute lifetime of a session (its refresh-token family) in seconds.
    pub session_ttl_secs: i64,
    /// Idle timeout given to new organisations, in seconds (each organisation can change its own).
    pub idle_timeout_secs: i64,
    /// How long a second-factor challenge stays open, in seconds.
    pub mfa_challenge_ttl_secs: i64,
    /// How recent (seconds) a second-factor verification must be for sensitive actions (audit
    /// export, role changes, admin wipes, break-glass): older, they answer `step_up_required`.
    pub step_up_max_age_secs: u32,
    /// Failed sign-ins allowed per source address (IPv6 by /64) and minute, across all login
    /// names: past it, sign-in from that address answers `rate_limited` until the minute ends.
    /// The per-name lockout stops guessing one password; this stops spraying many names.
    pub failed_logins_per_minute_per_address: u32,
}

/// Request and connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Largest request body in bytes (a 64 KiB message plus its JSON envelope fits).
    pub max_body_bytes: usize,
    /// Events buffered per WebSocket connection before it is switched to catch-up from the database.
    pub ws_send_buffer: usize,
    /// Connections kept open for reads.
    pub db_read_connections: u32,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `ward_server=debug,info`.
    pub level: String,
    /// `json` (structured, the default) or `text`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ward-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            database_url: None,
            tls: TlsConfig::default(),
            sessions: SessionConfig::default(),
            limits: LimitConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            keys: KeysConfig::default(),
            retention: RetentionConfig::default(),
            attachments: AttachmentsConfig::default(),
            outbound: OutboundConfig::default(),
            devices: DevicesConfig::default(),
            break_glass: BreakGlassConfig::default(),
            notify: NotifyConfig::default(),
            escalation: EscalationConfig::default(),
            portal: PortalConfig::default(),
            oidc: OidcConfig::default(),
            webauthn: WebAuthnConfig::default(),
            inbound: InboundConfig::default(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            access_ttl_secs: 600,
            session_ttl_secs: 12 * 3600,
            idle_timeout_secs: 900,
            mfa_challenge_ttl_secs: 300,
            step_up_max_age_secs: 300,
            failed_logins_per_minute_per_address: 30,
        }
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self { max_body_bytes: 128 * 1024, ws_send_buffer: 1024, db_read_connections: 8 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: "json".into() }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted_toml())
    }
}

/// A setting that cannot work, named.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the file (if given) and then the `WARD_*` environment, over the defaults.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!("config file {} does not exist", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        // WARD_CONFIG names the file itself, and WARD_TEST_* belong to the test suite.
        let env = Env::prefixed("WARD_").filter(|k| k != "config" && !k.as_str().to_ascii_lowercase().starts_with("test_")).split("__");
        let cfg: Config = fig.merge(env).extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every setting and names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.sessions;
        let bad = |what: &str| Err(ConfigError(what.to_owned()));
        if !(60..=3600).contains(&s.access_ttl_secs) {
            return bad("sessions.access_ttl_secs must be between 60 and 3600");
        }
        if !(60..=86_400).contains(&s.idle_timeout_secs) {
            return bad("sessions.idle_timeout_secs must be between 60 and 86400");
        }
        if s.session_ttl_secs < s.access_ttl_secs || s.session_ttl_secs > 30 * 86_400 {
            return bad("sessions.session_ttl_secs must be at least access_ttl_secs and at most 30 days");
        }
        if !(30..=900).contains(&s.mfa_challenge_ttl_secs) {
            return bad("sessions.mfa_challenge_ttl_secs must be between 30 and 900");
        }
        if !(30..=3600).contains(&s.step_up_max_age_secs) {
            return bad("sessions.step_up_max_age_secs must be between 30 and 3600");
        }
        if !(1..=100_000).contains(&s.failed_logins_per_minute_per_address) {
            return bad("sessions.failed_logins_per_minute_per_address must be between 1 and 100000");
        }
        if !(5..=720).contains(&self.break_glass.access_minutes) {
            return bad("break_glass.access_minutes must be between 5 and 720");
        }
        if !(1..=600).contains(&self.webauthn.challenge_ttl_secs) {
            return bad("webauthn.challenge_ttl_secs must be between 1 and 600");
        }
        if self.webauthn.rp_name.trim().is_empty() || self.webauthn.rp_name.len() > 64 {
            return bad("webauthn.rp_name must be 1 to 64 characters");
        }
        self.webauthn.relying_party()?;
        if !(1024..=16 * 1024 * 1024).contains(&self.limits.max_body_bytes) {
            return bad("limits.max_body_bytes must be between 1 KiB and 16 MiB");
        }
        if self.limits.ws_send_buffer == 0 || self.limits.db_read_connections == 0 {
            return bad("limits.ws_send_buffer and limits.db_read_connections must be positive");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls.cert and tls.key must be given together");
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:"))
        {
            return bad("database_url must start with sqlite:, postgres: or postgresql:");
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            return bad("log.format must be json or text");
        }
        let a = &self.audit;
        if a.origin.is_empty() || a.origin.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
            return bad("audit.origin must be non-empty, without spaces or '+'");
        }
        if a.checkpoint_every_entries == 0 || !(1..=86_400).contains(&a.checkpoint_interval_secs) {
            return bad("audit.checkpoint_every_entries must be positive and audit.checkpoint_interval_secs between 1 and 86400");
        }
        a.syslog.validate()?;
        if a.retention_days < MIN_AUDIT_RETENTION_DAYS {
            return Err(ConfigError(format!(
                "audit.retention_days is {}, but audit entries must be kept at least six years \
                 ({MIN_AUDIT_RETENTION_DAYS} days, HIPAA 164.316(b)(2)(i))",
                a.retention_days
            )));
        }
        let k = &self.keys;
        if !(1..=3650).contains(&k.data_key_rotation_days) {
            return bad("keys.data_key_rotation_days must be between 1 and 3650");
        }
        if k.cache_keys < 16 {
            return bad("keys.cache_keys must be at least 16");
        }
        if !(60..=604_800).contains(&self.retention.interval_secs) {
            return bad("retention.interval_secs must be between 60 and 604800");
        }
        if !(1..=8760).contains(&self.devices.wipe_ack_overdue_hours) {
            return bad("devices.wipe_ack_overdue_hours must be between 1 and 8760");
        }
        if !(1..=100_000).contains(&self.devices.wipe_requests_per_minute_per_address) {
            return bad("devices.wipe_requests_per_minute_per_address must be between 1 and 100000");
        }
        if !(1..=100_000).contains(&self.devices.wipe_requests_per_minute_per_device) {
            return bad("devices.wipe_requests_per_minute_per_device must be between 1 and 100000");
        }
        if self.devices.profile_sign_cert.is_some() != self.devices.profile_sign_key.is_some() {
            return bad("devices.profile_sign_cert and devices.profile_sign_key must be given together");
        }
        self.notify.validate()?;
        self.escalation.validate()?;
        self.inbound.validate()?;
        self.portal.validate()?;
        self.oidc.validate()?;
        self.attachments.validate()
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ward.db").display()))
    }

    /// The configuration as TOML with secrets (database passwords, the HSM PIN, KMS credentials)
    /// redacted.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(redact_url(&self.database_url()));
        if shown.keys.pkcs11.pin.is_some() {
            shown.keys.pkcs11.pin = Some("****".into());
        }
        if shown.keys.kms.access_key_id.is_some() {
            shown.keys.kms.access_key_id = Some("****".into());
        }
        if shown.keys.kms.secret_access_key.is_some() {
            shown.keys.kms.secret_access_key = Some("****".into());
        }
        if shown.notify.sms.token.is_some() {
            shown.notify.sms.token = Some("****".into());
        }
        if shown.notify.email.password.is_some() {
            shown.notify.email.password = Some("****".into());
        }
        for o in &mut shown.inbound.orgs {
            if o.secret.is_some() {
                o.secret = Some("****".into());
            }
        }
        if shown.attachments.s3.secret_access_key.is_some() {
            shown.attachments.s3.secret_access_key = Some("****".into());
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Replaces the password in `scheme://user:password@host/...` with `****`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}");
    if let Some(t) = tail {
        // Query parameters can carry passwords too.
        let t = match t.split_once('?') {
            Some((path, q)) => {
                let q: Vec<String> = q
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                        _ => kv.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", q.join("&"))
            }
            None => t.to_owned(),
        };
        out.push('/');
        out.push_str(&t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://ward:s3cret@db:5432/ward"), "postgres://ward:****@db:5432/ward");
        assert_eq!(redact_url("postgres://db/ward?user=x&password=s3cret"), "postgres://db/ward?user=x&password=****");
        assert_eq!(redact_url("sqlite:///var/ward/ward.db"), "sqlite:///var/ward/ward.db");
    }

    /// Every setting that holds a secret keeps it out of `Debug` (and `ward config`).
    #[test]
    fn debug_output_hides_every_secret() {
        let mut c = Config { database_url: Some("postgres://ward:db-canary-0@db/ward".into()), ..Config::default() };
        c.notify.sms.token = Some("sms-canary-1".into());
        c.notify.email.password = Some("smtp-canary-2".into());
        c.attachments.s3.secret_access_key = Some("s3-canary-3".into());
        c.inbound.orgs = vec![InboundOrg { org: "acme".into(), secret: Some("inbound-canary-4".into()), secret_file: None }];
        c.keys.pkcs11.pin = Some("pin-canary-5".into());
        c.keys.kms.secret_access_key = Some("kms-canary-6".into());
        let shown = format!("{c:?} {:?} {:?} {:?} {:?} {:?}", c.notify, c.notify.sms, c.notify.email, c.attachments.s3, c.inbound);
        let toml = c.redacted_toml();
        for canary in ["db-canary-0", "sms-canary-1", "smtp-canary-2", "s3-canary-3", "inbound-canary-4", "pin-canary-5", "kms-canary-6"] {
            assert!(!shown.contains(canary), "{canary} in Debug: {shown}");
            assert!(!toml.contains(canary), "{canary} in the redacted TOML");
        }
        assert!(shown.contains("acme"), "the rest is still shown");
    }

    #[test]
    fn key_provider_secrets_are_redacted() {
        let mut c = Config::default();
        c.keys.pkcs11.pin = Some("pin-canary-1".into());
        c.keys.kms.access_key_id = Some("AKIDCANARY2".into());
        c.keys.kms.secret_access_key = Some("secret-canary-3".into());
        let shown = c.redacted_toml();
        for canary in ["pin-canary-1", "AKIDCANARY2", "secret-canary-3"] {
            assert!(!shown.contains(canary), "{canary} in {shown}");
            assert!(!format!("{c:?}").contains(canary) || canary == "AKIDCANARY2", "{canary} in Debug");
        }
        assert!(shown.contains("secret_access_key = \"****\""), "{shown}");
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        Config::default().validate().unwrap();
        let mut c = Config::default();
        c.sessions.idle_timeout_secs = 5;
        assert!(c.validate().unwrap_err().to_string().contains("idle_timeout_secs"));
        let mut c = Config::default();
        c.tls.cert = Some("x".into());
        assert!(c.validate().unwrap_err().to_string().contains("tls.cert"));
        let mut c = Config::default();
        c.audit.retention_days = MIN_AUDIT_RETENTION_DAYS - 1;
        assert!(c.validate().unwrap_err().to_string().contains("audit.retention_days is 2191"));
        c.audit.retention_days = 3650;
        c.validate().unwrap();
        let mut c = Config::default();
        c.retention.interval_secs = 59;
        assert!(c.validate().unwrap_err().to_string().contains("retention.interval_secs"));
        c.retention.interval_secs = 604_800;
        c.validate().unwrap();
        let mut c = Config::default();
        c.sessions.step_up_max_age_secs = 29;
        assert!(c.validate().unwrap_err().to_string().contains("sessions.step_up_max_age_secs"));
        let mut c = Config::default();
        c.break_glass.access_minutes = 721;
        assert!(c.validate().unwrap_err().to_string().contains("break_glass.access_minutes"));
        c.break_glass.access_minutes = 5;
        c.validate().unwrap();
    }

    #[test]
    fn syslog_settings_are_checked_only_when_enabled() {
        let mut c = Config::default();
        c.audit.syslog.facility = "nonsense".into();
        c.validate().unwrap();
        c.audit.syslog =
            SyslogConfig { enabled: true, address: "siem.example:6514".into(), ca_file: Some("ca.pem".into()), ..SyslogConfig::default() };
        c.validate().unwrap();
        let named = |f: &dyn Fn(&mut SyslogConfig), setting: &str| {
            let mut c = c.clone();
            f(&mut c.audit.syslog);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(setting), "{e} does not name {setting}");
        };
        named(&|s| s.address = "siem.example".into(), "audit.syslog.address");
        named(&|s| s.address = "siem.example:0".into(), "audit.syslog.address");
        named(&|s| s.server_name = Some("not a name".into()), "audit.syslog.server_name");
        named(&|s| s.ca_file = None, "audit.syslog.ca_file");
        named(&|s| s.client_cert = Some("c.pem".into()), "audit.syslog.client_cert");
        named(&|s| s.facility = "local8".into(), "audit.syslog.facility");
        named(&|s| s.app_name = "ward app".into(), "audit.syslog.app_name");
        named(&|s| s.hostname = Some(String::new()), "audit.syslog.hostname");
        named(&|s| s.enterprise_number = 0, "audit.syslog.enterprise_number");
        named(&|s| s.batch_size = 0, "audit.syslog.batch_size");
        named(&|s| s.confirm_interval_secs = 0, "confirm_interval_secs");
        named(&|s| s.reconnect_max_secs = 0, "audit.syslog.reconnect_max_secs");
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("ward-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ward.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[sessions]\nidle_timeout_secs = 600\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.sessions.idle_timeout_secs, 600);
        std::fs::write(&f, "no_such_setting = 1\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
        assert!(Config::load(Some(&dir.join("missing.toml"))).is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn the_config_file_variable_and_test_variables_are_not_settings() {
        // Set in this test process only; other tests in the binary do not read these names.
        // figment's Jail restores the environment afterwards (set_var would need unsafe).
        figment::Jail::expect_with(|jail| {
            jail.set_env("WARD_CONFIG", "elsewhere.toml");
            jail.set_env("WARD_TEST_PYTHON", "/usr/bin/python3");
            jail.set_env("WARD_SESSIONS__IDLE_TIMEOUT_SECS", "600");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.sessions.idle_timeout_secs, 600);
            jail.set_env("WARD_NO_SUCH_SETTING", "1");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn attachment_settings_are_checked_and_the_s3_secret_redacted() {
        let mut c = Config::default();
        c.attachments.allowed_types.push("text/html".into());
        assert!(c.validate().unwrap_err().0.contains("text/html"));
        c.attachments = AttachmentsConfig { store: AttachmentStoreKind::S3, ..AttachmentsConfig::default() };
        assert!(c.validate().is_err(), "s3 needs a bucket and region");
        c.attachments.s3 = S3Config {
            bucket: "b".into(),
            region: "r".into(),
            endpoint: Some("http://10.0.0.1:9000".into()),
            access_key_id: Some("id".into()),
            secret_access_key: Some("s3cret-value".into()),
        };
        assert!(c.validate().is_err(), "plain http only to loopback");
        c.attachments.s3.endpoint = Some("http://127.0.0.1:9000".into());
        c.validate().unwrap();
        let shown = c.redacted_toml();
        assert!(!shown.contains("s3cret-value") && shown.contains("****"), "{shown}");
        c.attachments.max_bytes = 10;
        assert!(c.validate().is_err());
    }

    #[test]
    fn notify_settings_are_checked_and_their_secrets_redacted() {
        let named = |f: &dyn Fn(&mut NotifyConfig), what: &str| {
            let mut c = Config::default();
            f(&mut c.notify);
            let e = c.validate().expect_err(what).to_string();
            assert!(e.contains(what), "{e}");
        };
        named(&|n| n.max_attempts = 0, "notify.max_attempts");
        named(&|n| n.lease_secs = 1, "notify.lease_secs");
        named(&|n| n.apns.enabled = true, "notify.apns");
        named(&|n| n.fcm.enabled = true, "notify.fcm");
        named(
            &|n| {
                n.sms.enabled = true;
                n.sms.token = Some("t".into());
                n.sms.url = "http://gateway.example/send".into();
            },
            "notify.sms.url",
        );
        named(
            &|n| {
                n.email.enabled = true;
                n.email.host = "smtp.example.org".into();
                n.email.from = "a@example.org".into();
                n.email.tls = "none".into();
            },
            "notify.email.tls",
        );
        let mut c = Config::default();
        c.notify.sms.token = Some("sms-canary-4".into());
        c.notify.email.password = Some("smtp-canary-5".into());
        let shown = c.redacted_toml();
        assert!(!shown.contains("sms-canary-4") && !shown.contains("smtp-canary-5"), "{shown}");
        let example: Config = toml::from_str(include_str!("../../../ward.example.toml")).expect("the example parses");
        assert_eq!(example.notify, NotifyConfig::default());
        assert_eq!(example.portal, PortalConfig::default());
        assert_eq!(example.oidc, OidcConfig::default());
        let mut c = Config::default();
        c.oidc.state_ttl_secs = 10;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.portal.link_ttl_secs = 59;
        assert!(c.validate().is_err());
        c.portal.link_ttl_secs = 3600;
        c.portal.public_url = Some("http://ward.example.org".into());
        assert!(c.validate().is_err());
    }
}
