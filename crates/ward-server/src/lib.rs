//! Ward's server: the HTTPS JSON API and WebSocket stream on axum and rustls, with
//! authentication extractors, the fan-out hub, problem+json errors and the OpenAPI document.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod attachments;
pub mod audit_archive;
pub mod audit_export;
pub mod audit_log;
pub mod audit_sink;
pub mod auth;
pub mod config;
pub mod evidence;
pub mod extract;
pub mod hub;
pub mod inbound;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod outbound;
pub mod problem;
pub mod provision;
pub mod rate_limit;
pub mod scim;
pub(crate) mod scim_groups;
pub mod secrets;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use ward_fanout::{FanOut, InProcess};
use ward_store::{Store, StoreOptions};

pub use app::AppState;
pub use config::Config;

/// A running server.
pub struct Running {
    /// The bound address (port 0 in the config becomes the real port here).
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The shared state (tests inspect the store through it).
    pub state: AppState,
    /// SHA-256 fingerprint of the TLS certificate.
    pub fingerprint: String,
    /// Whether the certificate was generated on this start.
    pub generated_cert: bool,
    /// The certificate file.
    pub cert_path: std::path::PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    audit_task: tokio::task::JoinHandle<()>,
    alert_task: tokio::task::JoinHandle<()>,
    syslog_task: Option<tokio::task::JoinHandle<()>>,
    notify_task: Option<tokio::task::JoinHandle<()>>,
    escalation_task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections and waits for the listener to close.
    pub async fn stop(mut self) {
        self.audit_task.abort();
        self.alert_task.abort();
        if let Some(t) = &self.syslog_task {
            t.abort();
        }
        if let Some(t) = &self.notify_task {
            t.abort();
        }
        if let Some(t) = &self.escalation_task {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Waits until the listener ends (it only ends on error or stop).
    pub async fn wait(mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

/// Opens the store named by the configuration (creating the data directory).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    let mut opts = StoreOptions::new(config.database_url(), keys::keyring(config).await?);
    opts.read_connections = config.limits.db_read_connections;
    opts.data_key_rotation_days = config.keys.data_key_rotation_days;
    let store = Store::open(opts).await?;
    // A database from before encryption at rest holds plaintext: seal it before serving.
    let sealed = store.seal_legacy_rows().await?;
    if sealed != ward_store::LegacySealed::default() {
        tracing::info!(
            messages = sealed.messages,
            titles = sealed.titles,
            reason_notes = sealed.reason_notes,
            patients = sealed.patients,
            "sealed rows written before encryption at rest"
        );
    }
    Ok(store)
}

/// Starts the server on an open store with in-process fan-out.
pub async fn start(config: Config, store: Store) -> anyhow::Result<Running> {
    start_with(config, store, Arc::new(InProcess::default())).await
}

/// Starts the server with the given fan-out transport.
pub async fn start_with(config: Config, store: Store, fanout: Arc<dyn FanOut>) -> anyhow::Result<Running> {
    let cert = tls::load_or_generate(config.tls.cert.as_deref(), config.tls.key.as_deref(), &config.data_dir)?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    // Built before anything is spawned, so a bad CA or key file stops the start.
    let syslog = if config.audit.syslog.enabled { Some(audit_sink::SyslogSink::new(&config.audit.syslog, store.clone())?) } else { None };
    let audit = audit_log::AuditLog::open(&config, store.clone())?;
    let audit_task = audit.spawn();
    audit_archive::spawn_daily(store.clone(), audit.verifier(), config.audit.archive_dir(&config.data_dir), config.audit.retention_days);
    let blobs = Arc::new(attachments::Blobs::from_config(&config)?);
    // Built before anything is spawned, so a bad provider key or file stops the start.
    let notifier = Arc::new(notify::Notifier::from_config(&config.notify)?);
    inbound::InboundKeys::from_config(&config.inbound)?;
    // A bad `ca_file` stops the start. Without one, a host with no CA certificates at all can
    // still run Ward: single sign-on's provider calls then fail (logged when the state is built).
    if let Err(e) = oidc::OidcHttp::new(&config.oidc)
        && config.oidc.ca_file.is_some()
    {
        return Err(anyhow::anyhow!(e));
    }
    let notify_task = notify::spawn(store.clone(), notifier.clone(), config.notify.clone());
    let escalation_task = notify::spawn_escalation(store.clone(), notifier.clone(), config.escalation.clone());
    let config = Arc::new(config);
    let _retention_task = lifecycle::spawn(store.clone(), blobs.clone(), &config.retention);
    let alert_task = alerts::spawn(store.clone(), fanout.clone());
    let _incident_reminders = api::incidents::spawn_reminders(store.clone());
    let _access_reviews = api::access_reviews::spawn_scheduler(store.clone());
    let (state, router) = app::build(store.clone(), fanout, config, audit, blobs, notifier);
    let syslog_task = syslog.map(|s| s.spawn(state.metrics.clone()));
    spawn_housekeeping(store);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve_tls(listener, cert.server_config.clone(), router, async move {
        let _ = rx.await;
    }));
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(Running {
        addr,
        url: format!("https://{host}:{}", addr.port()),
        state,
        fingerprint: cert.fingerprint,
        generated_cert: cert.generated,
        cert_path: cert.cert_path,
        shutdown: Some(tx),
        task: Some(task),
        audit_task,
        alert_task,
        syslog_task,
        notify_task,
        escalation_task,
    })
}

fn spawn_housekeeping(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Err(e) = store.purge_expired_tokens().await {
                tracing::warn!(error = %e, "token purge failed");
            }
            // The BAA register's expiry check: each stage is recorded once, so running it every
            // few minutes (and on every node) raises each alert once.
            let today = api::dto::ts(ward_store::now_ms()).get(..10).unwrap_or_default().to_owned();
            if let Err(e) = store.check_baa_expiry(&today, ward_domain::registers::BAA_WARN_DAYS).await {
                tracing::warn!(error = %e, "BAA expiry check failed");
            }
        }
    });
}
