//! `ward-loadgen`: drives a Ward server over HTTPS and WebSocket and reports throughput, latency and server memory.
//!
//! Accounts are provisioned straight into the server's database through the store library (a
//! fresh organisation without MFA, so each account signs in with one request); everything
//! measured then goes over real TLS 1.3 connections on 127.0.0.1, exactly as a client would.
//! Every loop is bounded in count and in time.

mod auditbench;
mod client;
mod crash;
mod keybench;
mod load;
mod logintiming;
mod procfs;
mod provision;
mod report;
mod soak;
mod storebench;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::watch;
use ward_store::{Store, StoreOptions};

use crate::client::Endpoint;
use crate::load::{Plan, Shared};
use crate::report::Report;

/// Load generator for Ward: HTTPS senders, WebSocket receivers, a latency and memory table.
///
/// Against a running server (recommended: the server's RSS is then its own):
///   ward-loadgen --url https://127.0.0.1:8443 --data-dir DIR --server-pid PID
/// (add --database-url for PostgreSQL). Or self-contained: ward-loadgen --spawn-server.
#[derive(Parser, Debug)]
#[command(name = "ward-loadgen", version, about, long_about = None)]
struct Args {
    /// Start a server inside this process on a temporary data directory (SQLite unless
    /// --database-url). Its RSS is then this process's, clients included.
    #[arg(long, conflicts_with = "url")]
    spawn_server: bool,
    /// No server at all: call the store library's send_message directly (SQLite in a temporary
    /// directory unless --database-url), to measure the durable write path alone.
    #[arg(long, conflicts_with_all = ["url", "spawn_server"])]
    store_only: bool,
    /// No server: the audit log's figures. --messages audit events appended through
    /// Store::record by --concurrency tasks (SQLite in a temporary directory unless
    /// --database-url), bytes stored per event, then a tree of --tree-leaves leaves and the
    /// latency of --proofs inclusion proofs.
    #[arg(long, conflicts_with_all = ["url", "spawn_server", "store_only"])]
    audit: bool,
    /// No server: KEK rotation figures. Stores this many wrapped data keys (SQLite in a
    /// temporary directory unless --database-url; the local key file), then times the
    /// rotation `ward keys rotate` runs over them.
    #[arg(long, conflicts_with_all = ["url", "spawn_server", "store_only", "audit"])]
    keys: Option<u64>,
    /// No load figures: crash consistency. Runs `ward serve` (--ward-bin) as a child, sends
    /// from --crash-senders clients, kills the server with SIGKILL this many times at random
    /// moments and restarts it, then checks every acknowledged message is stored exactly once
    /// with gapless sequence numbers and that `ward audit verify` passes. SQLite in --data-dir
    /// (default: a temporary directory); with --database-url (a PostgreSQL server), a database
    /// of its own is created on it. Exits non-zero on any finding.
    #[arg(long, conflicts_with_all = ["url", "spawn_server", "store_only", "audit", "keys"])]
    crash: Option<u32>,
    /// No load figures: whether sign-in answers reveal which names exist. This many failed
    /// sign-ins per case (unknown name, malformed name, existing name with a wrong password),
    /// interleaved against a server in this process (SQLite unless --database-url); prints
    /// their latencies with a Mann-Whitney test and exits non-zero if the answers differ.
    #[arg(long, conflicts_with_all = ["url", "spawn_server", "store_only", "audit", "keys", "crash"])]
    login_timing: Option<usize>,
    /// The `ward` binary for --crash (default: `ward` beside this program).
    #[arg(long)]
    ward_bin: Option<PathBuf>,
    /// Concurrent senders for --crash, each in a conversation of its own.
    #[arg(long, default_value_t = 8)]
    crash_senders: usize,
    /// Shortest time the server runs between restart and the next kill (--crash), in ms.
    #[arg(long, default_value_t = 200)]
    crash_min_uptime_ms: u64,
    /// Longest time the server runs between restart and the next kill (--crash), in ms.
    #[arg(long, default_value_t = 2000)]
    crash_max_uptime_ms: u64,
    /// Leaves of the stored tree for the inclusion proof figures (--audit).
    #[arg(long, default_value_t = 10_000_000)]
    tree_leaves: u64,
    /// Inclusion proofs to time (--audit).
    #[arg(long, default_value_t = 10_000)]
    proofs: u64,
    /// While appending (--audit), integrate new events into the tree this often, as `ward
    /// serve` does every second; 0 integrates only after the appends.
    #[arg(long, default_value_t = 1000)]
    integrate_every_ms: u64,
    /// Base URL of a running server, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    url: Option<String>,
    /// The server's certificate (PEM); default DATA_DIR/tls/cert.pem.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The server's process id, to read its memory and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory (its SQLite database and certificate live there).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's database URL (sqlite://... or postgres://...), to provision accounts into;
    /// default sqlite://DATA_DIR/ward.db.
    #[arg(long)]
    database_url: Option<String>,
    /// Accounts to create and sign in.
    #[arg(long, default_value_t = 128)]
    users: usize,
    /// Group conversations.
    #[arg(long, default_value_t = 64)]
    conversations: usize,
    /// Members per conversation (the owner included).
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// WebSocket streams held open (accounts 0..N); default: one per account.
    #[arg(long)]
    receivers: Option<usize>,
    /// Concurrent senders.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Messages to send in all.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Fixed target rate in messages per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Bound on the sending phase, in seconds. Every session's tokens are refreshed each
    /// --refresh-secs, so runs may outlast the access-token lifetime.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// A soak of this many seconds: sends at --rate (default 200 messages/s) for the whole
    /// time, sampling the server's memory, open files, latencies and errors every
    /// --sample-secs, and prints the samples with their trend. Sets --messages and --timeout.
    #[arg(long)]
    soak: Option<u64>,
    /// Sampling interval of a soak, in seconds.
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// How often every session's tokens are refreshed, in seconds (below the server's
    /// access-token lifetime, 600 s by default).
    #[arg(long, default_value_t = 240)]
    refresh_secs: u64,
    /// Of the WebSocket receivers, this many never read their stream (slow clients): the
    /// server must keep its memory bounded and the others' deliveries on time. Their
    /// deliveries are not expected.
    #[arg(long, default_value_t = 0)]
    slow_receivers: usize,
    /// How long to wait for outstanding deliveries after the last send, in seconds.
    #[arg(long, default_value_t = 15)]
    drain: u64,
    /// HTTP client connection pools the senders share (default: one per sender).
    #[arg(long)]
    connections: Option<usize>,
    /// Use HTTP/1.1 only (default: HTTP/2 when the server offers it).
    #[arg(long)]
    http1: bool,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Concurrent sign-ins while setting up (each costs the server an argon2id verification).
    #[arg(long, default_value_t = 2)]
    login_concurrency: usize,
    /// A label for the report.
    #[arg(long)]
    label: Option<String>,
    /// Also print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if self.keys.is_some_and(|k| k == 0 || k > 100_000_000) {
            bail!("--keys must be between 1 and 100000000");
        }
        if self.login_timing.is_some_and(|n| !(10..=100_000).contains(&n)) {
            bail!("--login-timing must be between 10 and 100000");
        }
        if self.crash.is_some_and(|k| k == 0 || k > 100_000) {
            bail!("--crash must be between 1 and 100000");
        }
        if self.crash_senders == 0 || self.crash_senders > 1_000 {
            bail!("--crash-senders must be between 1 and 1000");
        }
        if self.crash_min_uptime_ms > self.crash_max_uptime_ms {
            bail!("--crash-min-uptime-ms must not exceed --crash-max-uptime-ms");
        }
        if !self.spawn_server
            && !self.store_only
            && !self.audit
            && self.keys.is_none()
            && self.crash.is_none()
            && self.login_timing.is_none()
            && self.url.is_none()
        {
            bail!("give --url (with --data-dir or --database-url, and --server-pid), --spawn-server or --store-only");
        }
        if self.members < 2 || self.members > self.users {
            bail!("--members must be between 2 and --users");
        }
        if self.users == 0 || self.users > 100_000 || self.conversations == 0 || self.conversations > 100_000 {
            bail!("--users and --conversations must be between 1 and 100000");
        }
        if self.concurrency == 0 || self.concurrency > 10_000 || self.login_concurrency == 0 {
            bail!("--concurrency and --login-concurrency must be positive (at most 10000)");
        }
        if self.messages == 0 || self.messages > 10_000_000 {
            bail!("--messages must be between 1 and 10000000");
        }
        if self.receivers.is_some_and(|r| r > self.users) {
            bail!("--receivers must not exceed --users");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number");
        }
        if self.connections == Some(0) {
            bail!("--connections must be positive");
        }
        if self.timeout == 0 {
            bail!("--timeout must be positive");
        }
        if self.soak.is_some_and(|s| s == 0 || s > 7 * 24 * 3600) {
            bail!("--soak must be between 1 and 604800 seconds");
        }
        if self.sample_secs == 0 || self.refresh_secs == 0 {
            bail!("--sample-secs and --refresh-secs must be positive");
        }
        if self.slow_receivers > self.receivers.unwrap_or(self.users) {
            bail!("--slow-receivers must not exceed the receivers");
        }
        Ok(())
    }
}

/// The server under test.
enum Target {
    /// Started here; stopped at the end, its temporary directory removed.
    InProcess { running: Box<ward_server::Running>, temp: Option<PathBuf> },
    /// Another process.
    External,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ward-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("ward-loadgen: {}", msg.as_ref());
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    args.check()?;
    if let Some(secs) = args.soak {
        let rate = *args.rate.get_or_insert(200.0);
        args.messages = ((rate * secs as f64).ceil() as u64).clamp(1, 10_000_000);
        args.timeout = secs;
    }
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    if args.store_only {
        return store_only(&args, &tag).await;
    }
    if args.audit {
        return audit(&args, &tag).await;
    }
    if let Some(n) = args.keys {
        return keys(&args, &tag, n).await;
    }
    if let Some(attempts) = args.login_timing {
        let timing = logintiming::TimingArgs { attempts, database_url: args.database_url.clone() };
        return logintiming::run(&timing, &tag).await;
    }
    if let Some(kills) = args.crash {
        let ward_bin = match &args.ward_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.parent().context("the directory of this program")?.join("ward"),
        };
        if !ward_bin.is_file() {
            bail!("no ward binary at {} (build it with cargo build -p ward, or give --ward-bin)", ward_bin.display());
        }
        let crash_args = crash::CrashArgs {
            kills,
            ward_bin,
            senders: args.crash_senders,
            database_url: args.database_url.clone(),
            data_dir: args.data_dir.clone(),
            min_uptime_ms: args.crash_min_uptime_ms,
            max_uptime_ms: args.crash_max_uptime_ms,
        };
        let report = crash::run(&crash_args, &tag).await?;
        report.print();
        if !report.passed() {
            bail!("crash consistency check failed (table above)");
        }
        return Ok(());
    }

    // The server and a store on its database.
    let (target, store, endpoint, server_pid) = if args.spawn_server {
        let temp = args.data_dir.is_none().then(|| std::env::temp_dir().join(format!("ward-loadgen-{tag}")));
        let dir = args.data_dir.clone().or_else(|| temp.clone()).context("a data directory")?;
        let config = ward_server::Config {
            data_dir: dir,
            listen: "127.0.0.1:0".parse()?,
            database_url: args.database_url.clone(),
            ..ward_server::Config::default()
        };
        let store = ward_server::open_store(&config).await?;
        let running = ward_server::start(config, store.clone()).await?;
        let pem = std::fs::read(&running.cert_path)?;
        let ep = Endpoint::new(&running.url, pem, args.http1)?;
        say(format!("started a server in this process at {}", running.url));
        (Target::InProcess { running: Box::new(running), temp }, store, ep, Some(std::process::id()))
    } else {
        let url = args.url.clone().context("--url")?;
        let db = match (&args.database_url, &args.data_dir) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => format!("sqlite://{}", d.join("ward.db").display()),
            (None, None) => bail!("give --database-url or --data-dir so accounts can be provisioned"),
        };
        let cert = match (&args.cert, &args.data_dir) {
            (Some(c), _) => c.clone(),
            (None, Some(d)) => d.join("tls").join("cert.pem"),
            (None, None) => bail!("give --cert or --data-dir"),
        };
        let pem = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
        // Provisioning seals conversation content under the server's own KEKs: its key file.
        let key_file = args
            .data_dir
            .as_ref()
            .map(|d| d.join("keys").join("kek.json"))
            .context("give --data-dir: provisioning needs the server's key file")?;
        let provider = ward_crypto::FileKeyProvider::open_or_create(&key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let keyring = std::sync::Arc::new(ward_crypto::Keyring::new(std::sync::Arc::new(provider), 4096));
        let mut opts = StoreOptions::new(db, keyring);
        // The server has migrated its own database; never change its schema from here.
        opts.migrate = false;
        opts.read_connections = 2;
        let store = Store::open(opts).await.context("opening the server's database")?;
        if args.server_pid.is_none() {
            say("no --server-pid: server memory and CPU will not be reported");
        }
        (Target::External, store, Endpoint::new(&url, pem, args.http1)?, args.server_pid)
    };

    let result = measure(&args, &tag, store, &endpoint, server_pid, matches!(target, Target::InProcess { .. })).await;

    if let Target::InProcess { running, temp } = target {
        running.stop().await;
        if let Some(t) = temp {
            let _ = std::fs::remove_dir_all(t);
        }
    }
    let report = result?;
    report.print(args.json);
    Ok(())
}

/// Conversation c has accounts c*m .. c*m+m-1 (wrapping), the first as owner.
fn groups(args: &Args) -> Vec<Vec<usize>> {
    (0..args.conversations)
        .map(|c| {
            let mut m: Vec<usize> = (0..args.members).map(|k| (c * args.members + k) % args.users).collect();
            m.dedup();
            m
        })
        .collect()
}

/// `--audit`: the audit log's append, storage and proof figures, in this process.
async fn audit(args: &Args, tag: &str) -> anyhow::Result<()> {
    let temp = args.data_dir.is_none().then(|| std::env::temp_dir().join(format!("ward-loadgen-{tag}")));
    let config = ward_server::Config {
        data_dir: args.data_dir.clone().or_else(|| temp.clone()).context("a data directory")?,
        database_url: args.database_url.clone(),
        ..ward_server::Config::default()
    };
    let sqlite = args.database_url.is_none().then(|| config.data_dir.join("ward.db"));
    let result = async {
        let store = ward_server::open_store(&config).await?;
        say(format!("appending {} audit events with {} callers of Store::record", args.messages, args.concurrency));
        auditbench::run(&config, &store, sqlite, args).await
    }
    .await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    result?.print();
    Ok(())
}

/// `--keys N`: KEK rotation over N data keys, in this process.
async fn keys(args: &Args, tag: &str, n: u64) -> anyhow::Result<()> {
    let temp = args.data_dir.is_none().then(|| std::env::temp_dir().join(format!("ward-loadgen-{tag}")));
    let config = ward_server::Config {
        data_dir: args.data_dir.clone().or_else(|| temp.clone()).context("a data directory")?,
        database_url: args.database_url.clone(),
        ..ward_server::Config::default()
    };
    let result = async {
        let store = ward_server::open_store(&config).await?;
        keybench::run(&store, if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" }, n, tag).await
    }
    .await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    result?.print();
    Ok(())
}

/// `--store-only`: provision and send through the store library in this process.
async fn store_only(args: &Args, tag: &str) -> anyhow::Result<()> {
    let temp = args.data_dir.is_none().then(|| std::env::temp_dir().join(format!("ward-loadgen-{tag}")));
    let config = ward_server::Config {
        data_dir: args.data_dir.clone().or_else(|| temp.clone()).context("a data directory")?,
        database_url: args.database_url.clone(),
        ..ward_server::Config::default()
    };
    let result = async {
        let store = ward_server::open_store(&config).await?;
        say(format!("provisioning {} accounts in organisation bench-{tag}", args.users));
        let prov = provision::provision(&store, tag, args.users).await?;
        say(format!("sending {} messages with {} callers of Store::send_message", args.messages, args.concurrency));
        storebench::run(&store, &prov, &groups(args), args.concurrency, args.messages, Duration::from_secs(args.timeout)).await
    }
    .await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    result?.print();
    Ok(())
}

async fn measure(args: &Args, tag: &str, store: Store, ep: &Endpoint, server_pid: Option<u32>, in_process: bool) -> anyhow::Result<Report> {
    let setup_bound = Duration::from_secs(300);
    let http = ep.http()?;
    let backend = match store.backend() {
        ward_store::Backend::Sqlite => "SQLite",
        ward_store::Backend::Postgres => "PostgreSQL",
    };
    tokio::time::timeout(Duration::from_secs(10), http.get(format!("{}/readyz", ep.url)).send())
        .await
        .context("the server did not answer /readyz within 10 s")?
        .context("the server does not answer")?
        .error_for_status()
        .context("the server is not ready")?;

    say(format!("provisioning {} accounts in organisation bench-{tag}", args.users));
    let prov =
        tokio::time::timeout(setup_bound, provision::provision(&store, tag, args.users)).await.context("provisioning timed out")??;
    // Provisioning is done: in external mode, let go of the server's database.
    drop(store);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mem_idle = server_pid.and_then(procfs::memory);

    say(format!("signing in {} accounts", args.users));
    let sessions: Vec<anyhow::Result<client::Session>> = tokio::time::timeout(
        setup_bound,
        futures_util::stream::iter(prov.accounts.iter())
            .map(|a| client::login(&http, ep, a, &prov.password))
            .buffered(args.login_concurrency)
            .collect(),
    )
    .await
    .context("signing in timed out")?;
    let sessions = sessions.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let mem_signed_in = server_pid.and_then(procfs::memory);

    let members = groups(args);
    say(format!("creating {} group conversations of {} members", args.conversations, args.members));
    let created: Vec<anyhow::Result<String>> = tokio::time::timeout(
        setup_bound,
        futures_util::stream::iter(members.iter().enumerate())
            .map(|(c, m)| {
                let others: Vec<&provision::Account> = m[1..].iter().map(|&i| &prov.accounts[i]).collect();
                let owner = &sessions[m[0]];
                let http = &http;
                async move { client::create_group(http, ep, owner, &format!("Load test {c}"), &others).await }
            })
            .buffered(16)
            .collect(),
    )
    .await
    .context("creating conversations timed out")?;
    let conversations = created.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let receivers = args.receivers.unwrap_or(args.users);
    say(format!("opening {receivers} WebSocket streams"));
    let streams: Vec<anyhow::Result<client::Ws>> = tokio::time::timeout(
        setup_bound,
        futures_util::stream::iter(sessions.iter().take(receivers))
            .map(|s| {
                let token = s.bearer();
                async move { ep.stream(&token).await }
            })
            .buffered(16)
            .collect(),
    )
    .await
    .context("opening streams timed out")?;
    let mut streams = streams.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    // Slow clients: held open, never read, until the end.
    let slow = args.slow_receivers;
    let slow_streams: Vec<client::Ws> = streams.drain(..slow).collect();
    let mem_streams = server_pid.and_then(procfs::memory);

    let expected: Vec<Vec<u64>> = members
        .iter()
        .map(|m| m.iter().map(|&from| m.iter().filter(|&&to| to != from && (slow..receivers).contains(&to)).count() as u64).collect())
        .collect();
    let plan = Arc::new(Plan {
        conversations,
        members,
        expected,
        sessions,
        messages: args.messages,
        rate: args.rate,
        body_bytes: args.body_bytes,
    });

    // Sender connections, warmed up (TLS handshakes happen before the clock starts).
    let pools = args.connections.unwrap_or(args.concurrency).min(args.concurrency);
    let mut clients = Vec::with_capacity(pools);
    let mut version = String::new();
    for _ in 0..pools {
        let c = ep.http()?;
        let res = c.get(format!("{}/healthz", ep.url)).send().await?.error_for_status()?;
        version = format!("{:?}", res.version());
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_connected = server_pid.and_then(procfs::memory);
    let metrics_before = client::metrics(&http, ep).await;

    let shared = Shared::new(tag, args.messages);
    let (stop_tx, stop_rx) = watch::channel(false);
    let me: Vec<String> = prov.accounts.iter().take(receivers).skip(slow).map(|a| a.id.clone()).collect();
    let receiver_tasks: Vec<_> =
        streams.into_iter().zip(me).map(|(ws, id)| tokio::spawn(load::receiver(shared.clone(), id, ws, stop_rx.clone()))).collect();

    say(format!(
        "sending {} messages with {} senders{}",
        args.messages,
        args.concurrency,
        args.rate.map(|r| format!(" at {r} messages/s")).unwrap_or_default()
    ));
    let cpu_server_0 = server_pid.and_then(procfs::cpu_seconds);
    let cpu_self_0 = procfs::cpu_seconds(std::process::id());
    let busy_0 = procfs::machine_busy_seconds();
    let started = tokio::time::Instant::now();
    let t0 = shared.elapsed();
    let deadline = started + Duration::from_secs(args.timeout);
    let refresher = tokio::spawn(soak::refresher(
        shared.clone(),
        plan.sessions.clone(),
        ep.clone(),
        http.clone(),
        Duration::from_secs(args.refresh_secs),
        stop_rx.clone(),
    ));
    let (sampling_tx, sampling_rx) = watch::channel(false);
    let sampler =
        args.soak.map(|_| tokio::spawn(soak::sampler(shared.clone(), server_pid, Duration::from_secs(args.sample_secs), sampling_rx)));
    let sender_tasks: Vec<_> = (0..args.concurrency)
        .map(|w| tokio::spawn(load::sender(shared.clone(), plan.clone(), ep.clone(), clients[w % pools].clone(), started, deadline)))
        .collect();
    let mut send_latency = load::histogram();
    let mut lag = load::histogram();
    for t in sender_tasks {
        let r = t.await?;
        send_latency.add(&r.latency)?;
        lag.add(&r.lag)?;
    }
    let send_wall = started.elapsed();
    let _ = sampling_tx.send(true);
    let samples = match sampler {
        Some(t) => t.await?,
        None => Vec::new(),
    };
    let cpu_server_1 = server_pid.and_then(procfs::cpu_seconds);
    let cpu_self_1 = procfs::cpu_seconds(std::process::id());
    let busy_1 = procfs::machine_busy_seconds();

    // Wait (bounded) for deliveries still in flight.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(args.drain);
    use std::sync::atomic::Ordering::Relaxed;
    while shared.delivered.load(Relaxed) < shared.expected.load(Relaxed) && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mem_end = server_pid.and_then(procfs::memory);
    let metrics_after = client::metrics(&http, ep).await;
    let _ = stop_tx.send(true);
    let mut delivery = load::histogram();
    for t in receiver_tasks {
        delivery.add(&t.await?)?;
    }
    refresher.await?;
    drop(slow_streams);

    let delta = |name: &str| -> Option<f64> {
        Some(client::counter(metrics_after.as_deref()?, name)? - client::counter(metrics_before.as_deref()?, name)?)
    };
    let errors = shared.error_samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Report {
        label: args.label.clone(),
        backend,
        in_process,
        users: args.users,
        conversations: args.conversations,
        members: args.members,
        receivers,
        concurrency: args.concurrency,
        connections: pools,
        http_version: version,
        rate: args.rate,
        messages: args.messages,
        acked: shared.acked.load(Relaxed),
        errors: shared.errors.load(Relaxed),
        error_samples: errors,
        send_wall,
        last_delivery: shared.last_delivery().saturating_sub(t0),
        send_latency,
        delivery,
        lag,
        delivered: shared.delivered.load(Relaxed),
        expected: shared.expected.load(Relaxed),
        duplicates: shared.duplicates.load(Relaxed),
        foreign: shared.foreign.load(Relaxed),
        receiver_failures: shared.receiver_failures.load(Relaxed),
        mem_idle,
        mem_signed_in,
        mem_streams,
        mem_connected,
        mem_end,
        cpu_server: cpu_server_0.zip(cpu_server_1).map(|(a, b)| b - a),
        cpu_self: cpu_self_0.zip(cpu_self_1).map(|(a, b)| b - a),
        cpu_machine: busy_0.zip(busy_1).map(|(a, b)| b - a),
        db_commits: delta("ward_db_write_transactions_total"),
        db_jobs: delta("ward_db_write_jobs_total"),
        ws_resyncs: delta("ward_ws_resyncs_total"),
        slow_receivers: slow,
        samples,
    })
}
