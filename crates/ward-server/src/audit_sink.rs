//! Streams the audit log and its signed checkpoints to a SIEM as RFC 5424 syslog messages
//! over TLS 1.3 (RFC 5425), so that a copy leaves the database as events commit.
//!
//! The task follows committed audit events by index (the database is the queue: the sink
//! holds a cursor and one batch, never a backlog). A checkpoint of tree size N is sent right
//! after event N−1, so a receiver has seen every event a checkpoint commits to before it.
//!
//! **Delivery: at least once, in order.** TCP and RFC 5425 have no application
//! acknowledgement, and a successful write only means the bytes reached the local kernel. So
//! messages written on a connection count as *unconfirmed* until that connection is closed
//! in the way RFC 5425 §4.4 prescribes: Ward sends TLS `close_notify`, and the receiver,
//! having read everything before it, answers with its own `close_notify` (or a clean close).
//! A receiver that dies with data unread resets the connection instead. Ward does this every
//! `confirm_every_entries` messages or `confirm_interval_secs` seconds, then saves the cursor
//! (the next index and the last checkpoint size, table `audit_sinks`) and reconnects when
//! there is more to send. If a connection fails in any other way — a write error, a reset, the
//! receiver closing on its own, a timeout — everything since the last confirmation is sent
//! again on the next connection. A Ward restart resumes from the saved cursor, so it too
//! resends at most one unconfirmed window. Receivers de-duplicate by the `idx` parameter.
//!
//! Connection changes are logged (never content); `ward_audit_syslog_*` metrics show the
//! lag, messages sent, reconnects and whether a connection is up.

pub mod rfc5424;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use ward_store::{SinkCursor, Store, StoredCheckpoint};

use crate::config::SyslogConfig;
use crate::metrics::{Metrics, SyslogMessageLabels};

/// The sink's name in `audit_sinks`.
pub const SINK_NAME: &str = "syslog";

/// How often an idle sink looks for new events (and whether the receiver hung up).
const POLL: Duration = Duration::from_millis(200);
/// Limits on connecting, on writing one batch, and on the closing exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first reconnection delay; it doubles up to `reconnect_max_secs`.
const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Splits `host:port` or `[v6]:port`; `None` if it is not of that form.
pub fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}

/// The syslog sink. Build it with [`SyslogSink::new`], run it with [`SyslogSink::spawn`].
pub struct SyslogSink {
    store: Store,
    address: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    header: rfc5424::Header,
    batch: i64,
    confirm_every: u64,
    confirm_interval: Duration,
    reconnect_max: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink").field("address", &self.address).finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// Prepares the sink for a validated configuration: reads the CA and client certificate
    /// files (errors name the setting).
    pub fn new(config: &SyslogConfig, store: Store) -> anyhow::Result<Self> {
        config.validate()?;
        let (host, _) = split_address(&config.address).ok_or_else(|| anyhow!("audit.syslog.address must be host:port"))?;
        let name = config.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(name).map_err(|_| anyhow!("audit.syslog.server_name is not a DNS name or IP address"))?;
        let facility = rfc5424::facility_code(&config.facility).ok_or_else(|| anyhow!("audit.syslog.facility is unknown"))?;
        let hostname = config.hostname.clone().unwrap_or_else(system_hostname);
        Ok(Self {
            store,
            address: config.address.clone(),
            server_name,
            connector: TlsConnector::from(client_config(config)?),
            header: rfc5424::Header::new(facility, hostname, config.app_name.clone(), config.enterprise_number),
            batch: i64::from(config.batch_size),
            confirm_every: config.confirm_every_entries,
            confirm_interval: Duration::from_secs(config.confirm_interval_secs),
            reconnect_max: Duration::from_secs(config.reconnect_max_secs),
            metrics: Metrics::new(),
        })
    }

    /// Overrides the confirmation interval (tests use fractions of a second).
    pub fn with_confirm_interval(mut self, interval: Duration) -> Self {
        self.confirm_interval = interval;
        self
    }

    /// Runs the sink for ever, reporting to `metrics`.
    pub fn spawn(mut self, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        self.metrics = metrics;
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let mut cursor = loop {
            match self.store.audit_sink_cursor(SINK_NAME).await {
                Ok(c) => break c.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "audit syslog: cannot read the sink cursor; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        tracing::info!(address = %self.address, next_index = cursor.next_idx, "audit syslog: streaming");
        let mut backoff = Backoff::new(self.reconnect_max);
        let mut failing = false;
        loop {
            self.wait_for_work(&cursor).await;
            let stream = match self.connect().await {
                Ok(s) => s,
                Err(e) => {
                    // Log the change to a failing state once; repeats only at debug level.
                    if failing {
                        tracing::debug!(error = %format!("{e:#}"), "audit syslog: still cannot connect");
                    } else {
                        tracing::warn!(error = %format!("{e:#}"), address = %self.address, "audit syslog: cannot connect; retrying with backoff");
                    }
                    failing = true;
                    self.metrics.audit_syslog_reconnects.inc();
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            if failing {
                tracing::info!(address = %self.address, "audit syslog: connected again");
            } else {
                tracing::debug!(address = %self.address, "audit syslog: connected");
            }
            failing = false;
            self.metrics.audit_syslog_connected.set(1);
            let ended = self.session(stream, &mut cursor).await;
            self.metrics.audit_syslog_connected.set(0);
            match ended {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        resend_from = cursor.next_idx,
                        "audit syslog: connection lost; unconfirmed messages will be sent again"
                    );
                    failing = true;
                    self.metrics.audit_syslog_reconnects.inc();
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Returns once an event or checkpoint past the cursor is committed.
    async fn wait_for_work(&self, cursor: &SinkCursor) {
        loop {
            match self.pending(cursor).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "audit syslog: cannot read the audit log"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn pending(&self, cursor: &SinkCursor) -> Result<bool, ward_store::StoreError> {
        let size = self.store.audit_size().await?;
        self.set_lag(size, cursor.next_idx);
        Ok(size > cursor.next_idx as u64 || !self.store.checkpoints(next_checkpoint(cursor), 1).await?.is_empty())
    }

    fn set_lag(&self, size: u64, next: i64) {
        self.metrics.audit_syslog_lag.set(i64::try_from(size).unwrap_or(i64::MAX).saturating_sub(next).max(0));
    }

    async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| anyhow!("connecting timed out"))?
            .context("TCP connect")?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake timed out"))?
            .context("TLS handshake")
    }

    /// Sends on one connection until a confirmation (`Ok`, cursor advanced and saved) or a
    /// failure (`Err`, cursor unchanged: the next connection starts from it again).
    async fn session(&self, stream: TlsStream<TcpStream>, cursor: &mut SinkCursor) -> anyhow::Result<()> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut pos = *cursor;
        let started = Instant::now();
        let mut written = 0u64;
        let mut buf = Vec::new();
        loop {
            let events = self.store.audit_events(pos.next_idx, self.batch).await?;
            // Indexes are dense; stop before a gap should one ever show (it is read again later).
            let contiguous = events.iter().zip(pos.next_idx..).take_while(|(e, want)| e.idx == *want).count();
            let events = &events[..contiguous];
            let end = events.last().map_or(pos.next_idx, |e| e.idx + 1);
            let checkpoints: Vec<StoredCheckpoint> = self
                .store
                .checkpoints(next_checkpoint(&pos), self.batch as u64)
                .await?
                .into_iter()
                .take_while(|c| c.tree_size <= end)
                .collect();
            if events.is_empty() && checkpoints.is_empty() {
                if written > 0 && started.elapsed() >= self.confirm_interval {
                    return self.confirm(reader, writer, cursor, pos).await;
                }
                self.set_lag(self.store.audit_size().await?, pos.next_idx);
                idle(&mut reader).await?;
                continue;
            }
            buf.clear();
            let (mut n_events, mut n_checkpoints) = (0u64, 0u64);
            let mut checkpoints = checkpoints.into_iter().peekable();
            for e in events {
                while let Some(cp) = checkpoints.next_if(|c| c.tree_size <= e.idx) {
                    rfc5424::frame(&mut buf, &self.header.checkpoint(&cp));
                    pos.checkpoint_size = Some(cp.tree_size);
                    n_checkpoints += 1;
                }
                rfc5424::frame(&mut buf, &self.header.event(e));
                pos.next_idx = e.idx + 1;
                n_events += 1;
            }
            for cp in checkpoints {
                rfc5424::frame(&mut buf, &self.header.checkpoint(&cp));
                pos.checkpoint_size = Some(cp.tree_size);
                n_checkpoints += 1;
            }
            tokio::time::timeout(WRITE_TIMEOUT, async {
                writer.write_all(&buf).await?;
                writer.flush().await
            })
            .await
            .map_err(|_| anyhow!("writing timed out"))?
            .context("write")?;
            self.metrics.audit_syslog_messages.get_or_create(&SyslogMessageLabels { kind: "event" }).inc_by(n_events);
            self.metrics.audit_syslog_messages.get_or_create(&SyslogMessageLabels { kind: "checkpoint" }).inc_by(n_checkpoints);
            written += n_events + n_checkpoints;
            if written >= self.confirm_every || started.elapsed() >= self.confirm_interval {
                return self.confirm(reader, writer, cursor, pos).await;
            }
        }
    }

    /// The RFC 5425 §4.4 closing exchange: our `close_notify`, then the receiver's. Its answer
    /// comes after it has read everything we wrote, so the window is delivered; the cursor
    /// moves to `pos` and is saved.
    async fn confirm(
        &self,
        mut reader: ReadHalf<TlsStream<TcpStream>>,
        mut writer: WriteHalf<TlsStream<TcpStream>>,
        cursor: &mut SinkCursor,
        pos: SinkCursor,
    ) -> anyhow::Result<()> {
        tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await.map_err(|_| anyhow!("sending close_notify timed out"))??;
        let answer = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let mut probe = [0u8; 512];
            loop {
                match reader.read(&mut probe).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // A clean TCP close without close_notify: the receiver read everything (a
                    // socket closed with unread data is reset instead, which is an error here).
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("the receiver did not confirm delivery")),
            Err(_) => {
                // Not what RFC 5425 §4.4 requires; treating it as a failure would resend the
                // same window for ever, so the messages count as delivered, loudly.
                tracing::warn!("audit syslog: the receiver did not answer close_notify (RFC 5425 §4.4); delivery is unconfirmed");
                self.metrics.audit_syslog_unconfirmed.inc();
            }
        }
        *cursor = pos;
        if let Err(e) = self.store.save_audit_sink_cursor(SINK_NAME, pos).await {
            // Delivered all the same; the next confirmation saves it. A restart before then
            // sends the window again, which the guarantee allows.
            tracing::warn!(error = %e, "audit syslog: cannot save the sink cursor");
        }
        tracing::debug!(next_index = pos.next_idx, "audit syslog: delivery confirmed");
        Ok(())
    }
}

/// Waits one poll interval, failing if the receiver closed or reset the connection meanwhile
/// (receivers never send data on an RFC 5425 connection; anything that arrives is ignored).
async fn idle<R: AsyncRead + Unpin>(reader: &mut R) -> anyhow::Result<()> {
    let mut probe = [0u8; 512];
    tokio::select! {
        () = tokio::time::sleep(POLL) => Ok(()),
        read = reader.read(&mut probe) => match read {
            Ok(0) => bail!("the receiver closed the connection"),
            Ok(_) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("the receiver closed the connection")),
        },
    }
}

fn next_checkpoint(cursor: &SinkCursor) -> u64 {
    cursor.checkpoint_size.map_or(0, |s| s.max(-1) as u64 + 1)
}

/// Capped exponential backoff with jitter: each delay is drawn from [d/2, d], and d doubles
/// up to the cap, so many Ward nodes do not reconnect to a restarted receiver in lockstep.
struct Backoff {
    next: Duration,
    max: Duration,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { next: BACKOFF_MIN.min(max), max, rng: aws_lc_rs::rand::SystemRandom::new() }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let mut b = [0u8; 4];
        let r = if aws_lc_rs::rand::SecureRandom::fill(&self.rng, &mut b).is_ok() { u32::from_le_bytes(b) } else { u32::MAX / 2 };
        d / 2 + (d / 2).mul_f64(f64::from(r) / f64::from(u32::MAX))
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN.min(self.max);
    }
}

/// This machine's host name for the HOSTNAME field, or the NILVALUE `-`.
fn system_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| rfc5424::is_header_field(s, 255))
        .unwrap_or_else(|| "-".into())
}

/// TLS 1.3 only, on aws-lc-rs, trusting the configured CA file; with a client certificate
/// when one is configured.
fn client_config(c: &SyslogConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let ca = c.ca_file.as_ref().ok_or_else(|| anyhow!("audit.syslog.ca_file is required"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca, "audit.syslog.ca_file")? {
        roots.add(cert).map_err(|e| anyhow!("audit.syslog.ca_file {}: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "audit.syslog.client_cert")?;
            let read = || -> anyhow::Result<Option<PrivateKeyDer<'static>>> {
                Ok(rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?)
            };
            let k = read()
                .map_err(|e| anyhow!("audit.syslog.client_key {}: {e}", key.display()))?
                .ok_or_else(|| anyhow!("audit.syslog.client_key {}: no private key in the file", key.display()))?;
            builder.with_client_auth_cert(chain, k).map_err(|e| anyhow!("audit.syslog.client_cert/client_key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &std::path::Path, setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{setting} {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{setting} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{setting} {}: no PEM certificate in the file", path.display());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split() {
        assert_eq!(split_address("siem.example:6514"), Some(("siem.example", 6514)));
        assert_eq!(split_address("[::1]:6514"), Some(("::1", 6514)));
        assert_eq!(split_address("127.0.0.1:1"), Some(("127.0.0.1", 1)));
        for bad in ["", "host", "host:", ":6514", "host:0", "host:65536", "::1:6514", "[::1]6514"] {
            assert_eq!(split_address(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn unreadable_tls_files_name_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let db = ward_store::testing::TestDb::open(ward_store::Backend::Sqlite).await.unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let base = SyslogConfig {
            enabled: true,
            address: "127.0.0.1:6514".into(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..SyslogConfig::default()
        };
        let err = |c: &SyslogConfig| format!("{:#}", SyslogSink::new(c, db.store.clone()).unwrap_err());
        assert!(err(&base).contains("audit.syslog.ca_file"), "{}", err(&base));
        let c = SyslogConfig { ca_file: Some(empty.clone()), ..base.clone() };
        assert!(err(&c).contains("no PEM certificate"), "{}", err(&c));
        let c = SyslogConfig { enabled: true, address: "nowhere".into(), ..base };
        assert!(err(&c).contains("audit.syslog.address"), "{}", err(&c));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for _ in 0..10 {
            let cap = b.next;
            let d = b.next_delay();
            assert!(d >= cap / 2 && d <= cap, "{d:?} not within [{:?}, {cap:?}]", cap / 2);
            assert!(cap >= last_cap && cap <= Duration::from_secs(2));
            last_cap = cap;
        }
        assert_eq!(last_cap, Duration::from_secs(2));
        b.reset();
        assert_eq!(b.next, BACKOFF_MIN);
    }
}
