//! `--crash N`: crash consistency. Runs `ward serve` as a child process, keeps senders busy
//! against it, kills it with SIGKILL N times at random moments and starts it again, then checks
//! that every message a sender saw acknowledged is stored exactly once, that each
//! conversation's sequence numbers run 1..n without a gap, and that `ward audit verify` accepts
//! the audit log.
//!
//! Senders retry an unacknowledged send with the same `client_txn_id` until it is acknowledged,
//! as a real client does across a server restart; so a send whose answer the kill swallowed is
//! found once, not twice. On PostgreSQL the run creates its own database on the server given
//! and drops it at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use ward_store::{Store, StoreOptions};

use crate::client::{self, Endpoint};
use crate::provision;

/// What `--crash` needs from the command line.
pub(crate) struct CrashArgs {
    /// Kills to perform.
    pub(crate) kills: u32,
    /// The `ward` binary.
    pub(crate) ward_bin: PathBuf,
    /// Sender tasks (each with its own conversation and partner).
    pub(crate) senders: usize,
    /// A PostgreSQL server URL (a database is created on it for the run); SQLite without.
    pub(crate) database_url: Option<String>,
    /// Data directory (default: a temporary one, removed after a passing run).
    pub(crate) data_dir: Option<PathBuf>,
    /// Bounds of the random time between a restart and the next kill, in milliseconds.
    pub(crate) min_uptime_ms: u64,
    pub(crate) max_uptime_ms: u64,
}

/// What the run found.
pub(crate) struct CrashReport {
    backend: &'static str,
    kills: u32,
    acknowledged: u64,
    stored: u64,
    lost: u64,
    duplicated: u64,
    mismatched: u64,
    seq_gaps: u64,
    send_retries: u64,
    audit: String,
    restart: Vec<Duration>,
    wall: Duration,
}

impl CrashReport {
    /// True when nothing was lost, doubled or out of order and the audit log verified.
    pub(crate) fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.mismatched == 0 && self.seq_gaps == 0 && self.audit == "verified"
    }

    /// A Markdown table (pasteable into docs/reliability.md).
    pub(crate) fn print(&self) {
        let mut r = self.restart.clone();
        r.sort();
        let pct = |p: f64| r.get(((r.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!("| measure | value |");
        println!("|---|---|");
        println!("| backend | {} |", self.backend);
        println!("| SIGKILLs (each followed by a restart) | {} |", self.kills);
        println!("| messages acknowledged to senders | {} |", self.acknowledged);
        println!("| messages stored | {} |", self.stored);
        println!("| acknowledged but missing | {} |", self.lost);
        println!("| stored more than once (same client_txn_id) | {} |", self.duplicated);
        println!("| stored with another id or sequence than acknowledged | {} |", self.mismatched);
        println!("| sequence gaps | {} |", self.seq_gaps);
        println!("| sends retried across a kill | {} |", self.send_retries);
        println!("| `ward audit verify` | {} |", self.audit);
        println!("| restart to healthy, median / max | {:.0} ms / {:.0} ms |", pct(0.5), pct(1.0));
        println!("| wall time | {:.1} s |", self.wall.as_secs_f64());
        println!("| result | {} |", if self.passed() { "PASS" } else { "FAIL" });
    }
}

/// A `ward serve` child process on a fixed port and data directory.
struct ServerProcess {
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Fails when the child has exited on its own (a crash at start, say).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("ward serve exited by itself ({status}); see {}", self.log.display());
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Polls `/healthz` until it answers 200 (at most 60 s).
async fn wait_healthy(server: &mut ServerProcess, http: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        server.check_alive()?;
        if let Ok(r) = http.get(format!("{url}/healthz")).timeout(Duration::from_secs(2)).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("ward serve did not become healthy within 60 s; see {}", server.log.display())
}

/// A pseudo-random number below `n` (not for secrets: it spreads the kills in time).
fn below(n: u64) -> u64 {
    if n == 0 { 0 } else { (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64 }
}

/// One acknowledged send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Ack {
    seq: i64,
    id: uuid::Uuid,
}

/// Runs the harness.
pub(crate) async fn run(a: &CrashArgs, tag: &str) -> anyhow::Result<CrashReport> {
    let started = Instant::now();
    let temp = a.data_dir.is_none();
    let dir = a.data_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("ward-crash-{tag}")));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let (db_url, pg) = match &a.database_url {
        None => (format!("sqlite://{}", dir.join("ward.db").display()), None),
        Some(server) => {
            let name = format!("ward_crash_{tag}");
            let url = pg_create(server, &name).await?;
            (url, Some((server.clone(), name)))
        }
    };
    let env = vec![
        ("WARD_DATA_DIR".to_owned(), dir.display().to_string()),
        ("WARD_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("WARD_DATABASE_URL".to_owned(), db_url.clone()),
        ("WARD_LOG__LEVEL".to_owned(), "warn".to_owned()),
    ];
    let mut server = ServerProcess { bin: a.ward_bin.clone(), env, log: dir.join("server.log"), child: None };
    let result = drive(a, tag, &dir, &db_url, port, &mut server).await;
    let _ = server.kill();
    let mut report = result?;
    report.backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    report.wall = started.elapsed();
    if report.passed() {
        if let Some((server_url, name)) = pg {
            pg_drop(&server_url, &name).await?;
        }
        if temp {
            let _ = std::fs::remove_dir_all(&dir);
        }
    } else {
        crate::say(format!("kept the data directory for inspection: {}", dir.display()));
    }
    Ok(report)
}

async fn drive(a: &CrashArgs, tag: &str, dir: &Path, db_url: &str, port: u16, server: &mut ServerProcess) -> anyhow::Result<CrashReport> {
    let url = format!("https://127.0.0.1:{port}");
    server.start()?;
    // The first start generates the certificate; poll for it before trusting it.
    let cert = dir.join("tls").join("cert.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cert.exists() {
        server.check_alive()?;
        if Instant::now() > deadline {
            bail!("no certificate at {} after 60 s", cert.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ep = Endpoint::new(&url, std::fs::read(&cert)?, false)?;
    let http = ep.http()?;
    wait_healthy(server, &http, &url).await?;

    // Accounts go straight into the database, sealed under the server's own key file.
    let provider = ward_crypto::FileKeyProvider::open_or_create(&dir.join("keys").join("kek.json")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keyring = Arc::new(ward_crypto::Keyring::new(Arc::new(provider), 64));
    let mut opts = StoreOptions::new(db_url, keyring);
    opts.migrate = false;
    opts.read_connections = 1;
    let store = Store::open(opts).await.context("opening the server's database")?;
    crate::say(format!("provisioning {} accounts", a.senders * 2));
    let prov = provision::provision(&store, tag, a.senders * 2).await?;
    drop(store);

    let mut pairs = Vec::new();
    for i in 0..a.senders {
        let (me, partner) = (&prov.accounts[2 * i], &prov.accounts[2 * i + 1]);
        let s = client::login(&http, &ep, me, &prov.password).await?;
        let conv = client::create_group(&http, &ep, &s, &format!("crash {i}"), &[partner]).await?;
        pairs.push((me.clone(), s, conv));
    }

    let acks: Arc<Mutex<HashMap<(String, String), Ack>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (who, session, conv)) in pairs.iter().cloned().enumerate() {
        let (http, ep, acks, stop, retries, password) =
            (ep.http()?, ep.clone(), acks.clone(), stop.clone(), retries.clone(), prov.password.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = session;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let txn = format!("crash-{i}-{n}");
                let mut tries = 0u32;
                // Until acknowledged: a kill only delays the answer.
                let ack = loop {
                    tries += 1;
                    if tries > 2_000 {
                        return Err(anyhow::anyhow!("send {txn} was never acknowledged"));
                    }
                    if tries > 1 {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let body = json!({"client_txn_id": txn, "body": format!("crash test message {n} from sender {i}")});
                    let Ok(res) = http
                        .post(format!("{}/api/v1/conversations/{conv}/messages", ep.url))
                        .bearer_auth(session.bearer())
                        .json(&body)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let status = res.status();
                    if status == reqwest::StatusCode::UNAUTHORIZED {
                        if let Ok(s) = client::login(&http, &ep, &who, &password).await {
                            session = s;
                        }
                        continue;
                    }
                    if !status.is_success() {
                        continue;
                    }
                    let Ok(v) = res.json::<Value>().await else { continue };
                    let (Some(seq), Some(id)) = (v["seq"].as_i64(), v["id"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok())) else {
                        return Err(anyhow::anyhow!("an acknowledgement without seq or id: {v}"));
                    };
                    break Ack { seq, id };
                };
                acks.lock().await.insert((conv.clone(), txn), ack);
                n += 1;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }

    let mut restart = Vec::new();
    for k in 0..a.kills {
        let uptime = a.min_uptime_ms + below(a.max_uptime_ms.saturating_sub(a.min_uptime_ms) + 1);
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        server.check_alive()?;
        server.kill()?;
        server.start()?;
        restart.push(wait_healthy(server, &http, &url).await?);
        if (k + 1) % 10 == 0 || k + 1 == a.kills {
            crate::say(format!("{} of {} kills, {} sends acknowledged", k + 1, a.kills, acks.lock().await.len()));
        }
    }
    // Let the senders finish against a healthy server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let acks = acks.lock().await.clone();

    // What the server holds, read over the API like any client.
    let (mut stored, mut duplicated, mut mismatched, mut seq_gaps, mut found) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (_, session, conv) in &pairs {
        let mut after = 0i64;
        let mut seen: HashMap<String, Ack> = HashMap::new();
        let mut expected_seq = 1i64;
        loop {
            let res = http
                .get(format!("{}/api/v1/conversations/{conv}/messages?after={after}&limit=200", ep.url))
                .bearer_auth(session.bearer())
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("reading conversation {conv} answered {}", res.status());
            }
            let page: Value = res.json().await?;
            let items = page["items"].as_array().context("a message page without items")?;
            if items.is_empty() {
                break;
            }
            for m in items {
                let seq = m["seq"].as_i64().context("a message without seq")?;
                let txn = m["client_txn_id"].as_str().context("a message without client_txn_id")?.to_owned();
                let id = m["id"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()).context("a message without id")?;
                stored += 1;
                if seq != expected_seq {
                    seq_gaps += 1;
                }
                expected_seq = seq + 1;
                after = after.max(seq);
                if seen.insert(txn.clone(), Ack { seq, id }).is_some() {
                    duplicated += 1;
                }
            }
        }
        for ((c, txn), ack) in &acks {
            if c != conv {
                continue;
            }
            match seen.get(txn) {
                Some(s) if s == ack => found += 1,
                Some(_) => {
                    found += 1;
                    mismatched += 1;
                }
                None => {}
            }
        }
    }
    let lost = acks.len() as u64 - found;

    // One last kill, then the offline verifier over the database.
    server.kill()?;
    let audit = verify_audit(&a.ward_bin, &server.env, dir)?;
    Ok(CrashReport {
        backend: "",
        kills: a.kills,
        acknowledged: acks.len() as u64,
        stored,
        lost,
        duplicated,
        mismatched,
        seq_gaps,
        send_retries: retries.load(Ordering::Relaxed),
        audit,
        restart,
        wall: Duration::ZERO,
    })
}

/// `ward audit verify` on the server's database: "verified", or what it printed.
fn verify_audit(bin: &Path, env: &[(String, String)], dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["audit", "verify", "--vkey"])
        .arg(dir.join("audit").join("verifier.vkey"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .context("running ward audit verify")?;
    if out.status.success() {
        Ok("verified".into())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        Ok(format!("FAILED: {}", text.lines().last().unwrap_or("no output")))
    }
}

/// Creates database `name` on the server `url` points at; returns its URL.
async fn pg_create(url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut c).await?;
    c.close().await?;
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

/// Drops database `name` (after a passing run).
async fn pg_drop(url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut c).await?;
    c.close().await?;
    Ok(())
}
