//! Configuration: one doc-commented struct, read from a TOML file and then `WARD_*`
//! environment variables (nested keys joined by `__`, e.g. `WARD_SESSIONS__IDLE_TIMEOUT_SECS`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `ward serve` can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        }
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
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { access_ttl_secs: 600, session_ttl_secs: 12 * 3600, idle_timeout_secs: 900, mfa_challenge_ttl_secs: 300 }
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
        if a.retention_days < MIN_AUDIT_RETENTION_DAYS {
            return Err(ConfigError(format!(
                "audit.retention_days is {}, but audit entries must be kept at least six years \
                 ({MIN_AUDIT_RETENTION_DAYS} days, HIPAA 164.316(b)(2)(i))",
                a.retention_days
            )));
        }
        Ok(())
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ward.db").display()))
    }

    /// The configuration as TOML with secrets (database passwords) redacted.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(redact_url(&self.database_url()));
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
}
