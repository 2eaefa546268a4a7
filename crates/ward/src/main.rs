//! The `ward` command: run the server, the demo, and administer organisations and users.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ward_domain::role::Role;
use ward_server::Config;
use ward_server::provision::{self, operator_meta};

mod audit;
mod audit_proof;
mod audit_reports;
mod backup;
mod device;
mod evidence;
mod keys;
mod lifecycle;
mod progress;
mod retention;
mod roster;

/// Ward: secure clinical messaging.
#[derive(Parser)]
#[command(name = "ward", version, about)]
struct Cli {
    /// TOML configuration file (settings can also come from WARD_* environment variables).
    #[arg(long, short, global = true, env = "WARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTPS server.
    Serve,
    /// Create a demo organisation with one account per role (first run), print their
    /// one-time passwords and serve it on embedded SQLite.
    Demo {
        /// Data directory for the demo.
        #[arg(long, default_value = "ward-demo")]
        data_dir: PathBuf,
        /// Port to listen on (127.0.0.1).
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// User accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encryption keys: KEK rotation and retirement, the key inventory (never key material).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Data retention: crypto-shred content past its retention period (legal holds respected).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Patient records.
    #[command(subcommand)]
    Patient(PatientCommand),
    /// The signed evidence bundle for an auditor: control map, live exports, audit checkpoint.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Device trust: the configuration profile enforcing the device baseline.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// HR roster reconciliation: accounts, sessions and devices of people who left.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Write an encrypted, integrity-checked backup of the database and the data directory's
    /// Ward files while the server keeps running (`ward backup verify` checks one).
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<BackupCommand>,
    },
    /// Rebuild a data directory (and its database) from a backup. Needs the key provider that
    /// made the backup (for the key file: copy keys/ into the new data directory first).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory: missing, empty, or holding only keys/.
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to rebuild (an empty PostgreSQL database or schema); default: SQLite
        /// in the new data directory.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Decrypt a backup and check every entry's digest, without restoring anything.
    Verify {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Enforce every organisation's retention policy now: destroy the data keys of expired
    /// content no legal hold covers, leaving tombstones and shred records.
    Run,
    /// Show the retention periods, standing legal holds and shredding counts.
    Status,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Write the Apple configuration profile (.mobileconfig) enforcing the device baseline:
    /// passcode policy, restrictions, and notification previews for Ward's app (supervised
    /// devices). Payload identifiers are stable, UUIDs fresh each time. Unsigned XML, or
    /// CMS-signed DER with --sign-cert and --sign-key.
    Profile {
        /// The organisation's reverse-DNS prefix for the payload identifiers (such as
        /// org.example.hospital); installing a profile with the same identifiers replaces it.
        #[arg(long, default_value = device::DEFAULT_ORG_PREFIX)]
        org_prefix: String,
        /// The bundle id of Ward's iOS app.
        #[arg(long, default_value = ward_device::profile::DEFAULT_BUNDLE_ID)]
        bundle_id: String,
        /// The organisation's name, shown on the device.
        #[arg(long)]
        organisation: Option<String>,
        /// Never show previews of Ward's notifications (stricter than "when unlocked").
        #[arg(long)]
        no_previews: bool,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sign the profile (CMS SignedData, DER) with this PEM certificate; needs --sign-key.
        #[arg(long, requires = "sign_key")]
        sign_cert: Option<PathBuf>,
        /// The certificate's PEM private key (PKCS#8, SEC 1 or PKCS#1; ECDSA P-256 or RSA).
        #[arg(long, requires = "sign_cert")]
        sign_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Compare an HR roster CSV (employee_id, login, status = active|terminated, optional
    /// termination_date = YYYY-MM-DD; other columns ignored) with the organisation's
    /// workforce accounts and print the accounts of people who left or are not on the roster
    /// (with live sessions and devices) and the roster people with no account.
    Reconcile {
        /// The organisation's short name.
        #[arg(long)]
        org: String,
        /// The roster CSV file.
        #[arg(long)]
        file: PathBuf,
        /// Also disable each flagged account, revoke its sessions and send its devices a wipe
        /// (each step audited; running it again changes nothing).
        #[arg(long)]
        remediate: bool,
        /// Remediate even when more than half of the workforce would be disabled (refused
        /// otherwise: the mark of a truncated or wrong roster).
        #[arg(long, requires = "remediate")]
        allow_mass: bool,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Write one organisation's evidence bundle: a zip with the HIPAA control map, each
    /// control's live export, the latest signed audit checkpoint and its verifier key, and a
    /// manifest of SHA-256 hashes signed with the deployment's audit key (audited).
    Export {
        /// The organisation's short name.
        #[arg(long)]
        org: String,
        /// The archive to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle offline: the manifest's signature, every file's hash and size, and that
    /// no file is missing or added. Exits non-zero with one line on any mismatch.
    Verify {
        /// The bundle.
        file: PathBuf,
        /// The organisation's public key, obtained separately: a PEM file, or 64 hex digits.
        /// Without it, the key inside the bundle is used (and its fingerprint printed).
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Export a patient's conversations for a right-of-access request, as a zip archive with
    /// a readable transcript per conversation (audited as patient.export).
    Export {
        /// The patient id.
        #[arg(long)]
        patient: ward_domain::ids::PatientId,
        /// The archive to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new KEK version in the key provider and rewrap every data key under it, online
    /// (content is not re-encrypted; the server keeps running).
    Rotate {
        /// Do not create a new KEK: finish rewrapping under the current one (after an
        /// interrupted rotation).
        #[arg(long)]
        resume: bool,
    },
    /// List the KEK versions and the data keys' versions, creation and rotation dates.
    Inventory {
        /// Also list every data key.
        #[arg(long)]
        all: bool,
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: keys::InventoryFormat,
    },
    /// Destroy an old KEK version no data key uses any more. Backups taken while it was
    /// current become unreadable, including any content shredded since.
    Retire {
        /// The KEK id, as `ward keys inventory` shows it (such as file:v1).
        kek_id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Integrate every committed event into the tree and sign a checkpoint now (with the key
    /// in the data directory, created on first use); prints the signed note.
    Checkpoint,
    /// Write the audit log to a file: by default every event (with its leaf hash) and every
    /// signed checkpoint as the verifiable NDJSON `ward audit verify` reads; or, with
    /// --format, the events (optionally filtered) as FHIR R4 AuditEvents or CSV.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// verifiable (complete, for `ward audit verify`), fhir-ndjson, fhir-bundle or csv.
        #[arg(long, default_value = "verifiable")]
        format: String,
        /// Only events from this time (Unix ms, RFC 3339 or YYYY-MM-DD; not with verifiable).
        #[arg(long)]
        from: Option<String>,
        /// Only events before this time (not with verifiable).
        #[arg(long)]
        to: Option<String>,
        /// Only events by this login name (not with verifiable).
        #[arg(long)]
        user: Option<String>,
        /// Only events naming this patient id (not with verifiable).
        #[arg(long)]
        patient: Option<ward_domain::ids::PatientId>,
    },
    /// The accounting of disclosures of one patient's information outside the care team
    /// (HIPAA 164.528): date, recipient, purpose and who disclosed.
    Disclosures {
        /// The patient record id.
        #[arg(long)]
        patient: ward_domain::ids::PatientId,
        /// From this time (Unix ms, RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        /// How to print it.
        #[arg(long, value_enum, default_value = "table")]
        format: audit_reports::ReportFormat,
    },
    /// Everything one user read and did over a period (HIPAA 164.308(a)(1)(ii)(D) activity
    /// review), with counts per action.
    AccessReport {
        /// The user's login name.
        #[arg(long)]
        user: String,
        /// From this time (Unix ms, RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        /// How to print it.
        #[arg(long, value_enum, default_value = "table")]
        format: audit_reports::ReportFormat,
    },
    /// Recompute every leaf and root, check every checkpoint's signature and the consistency
    /// of successive checkpoints; report the first bad index. Reads an export offline, or the
    /// database when no export is given.
    Verify {
        /// An export written by `ward audit export`.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The log's verifier key (`<data_dir>/audit/verifier.vkey`).
        #[arg(long)]
        vkey: PathBuf,
    },
    // Retention (archive segments).
    /// Move entries older than audit.retention_days, and covered by a signed checkpoint, out of
    /// the live database into verifiable segment files (oldest first).
    Archive {
        /// Archive only entries before this date (YYYY-MM-DD, UTC) or RFC 3339 time; it may
        /// only be earlier than the retention horizon.
        #[arg(long)]
        before: Option<String>,
        /// Where to write the segments (default: audit.archive_dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Verify an archive segment offline: its events, and the proof tying them to the signed
    /// checkpoint it carries.
    VerifySegment {
        /// A segment written by `ward audit archive`.
        #[arg(long)]
        segment: PathBuf,
        /// The log's verifier key (`<data_dir>/audit/verifier.vkey`).
        #[arg(long)]
        vkey: PathBuf,
    },
    /// Write a self-contained inclusion bundle for one event: the event, a signed checkpoint
    /// and the proof linking them, checkable offline with `ward audit check-proof`.
    Prove {
        /// The event's index.
        #[arg(long)]
        index: u64,
        /// The tree size of a signed checkpoint to prove against (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an inclusion bundle offline: recompute the event's leaf hash, check the
    /// checkpoint's signature and the inclusion proof.
    CheckProof {
        /// A bundle written by `ward audit prove`.
        #[arg(long)]
        bundle: PathBuf,
        /// The log's verifier key; its name is the log's origin.
        #[arg(long)]
        vkey: PathBuf,
        /// A signed checkpoint you already hold, used instead of the bundle's (which must match).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The event's export line you already hold, used instead of the bundle's (which must match).
        #[arg(long)]
        event: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation.
    Create {
        /// Short unique name (a-z, 0-9, -).
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List organisations.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; prints its one-time password.
    Add {
        /// Organisation slug.
        #[arg(long)]
        org: String,
        /// Unique login name.
        #[arg(long)]
        login: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// admin, compliance_officer, clinician, nurse or staff.
        #[arg(long)]
        role: String,
    },
    /// List an organisation's accounts.
    List {
        /// Organisation slug.
        #[arg(long)]
        org: String,
    },
    /// Disable an account and end its sessions.
    Disable {
        /// Login name.
        login: String,
    },
    /// Enable a disabled account.
    Enable {
        /// Login name.
        login: String,
    },
    /// Set a new one-time password and end the account's sessions.
    ResetPassword {
        /// Login name.
        login: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file, environment and defaults) with secrets redacted.
    Print,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ward: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `verify` works on the archive alone (an auditor's machine has no Ward configuration).
    if let Command::Evidence(EvidenceCommand::Verify { file, public_key }) = &cli.command {
        return evidence::verify(file, public_key.as_deref());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            ward_server::telemetry::init(&config.log.level, &config.log.format);
            serve(config, None).await
        }
        Command::Demo { data_dir, port } => {
            config.data_dir = data_dir;
            config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            ward_server::telemetry::init(&config.log.level, &config.log.format);
            let store = ward_server::open_store(&config).await?;
            let created = provision::demo(&store, config.sessions.idle_timeout_secs).await?;
            serve(config, Some((store, created))).await
        }
        Command::Migrate => {
            std::fs::create_dir_all(&config.data_dir)?;
            let mut opts = ward_store::StoreOptions::new(config.database_url(), ward_server::keys::keyring(&config).await?);
            opts.migrate = false;
            let store = ward_store::Store::open(opts).await?;
            let n = store.migrate().await?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::Org(cmd) => {
            let store = ward_server::open_store(&config).await?;
            match cmd {
                OrgCommand::Create { slug, name } => {
                    let org = store.create_org(&slug, &name, config.sessions.idle_timeout_secs, None, operator_meta()).await?;
                    println!("created organisation {} ({})", org.slug, org.id);
                }
                OrgCommand::List => {
                    for o in store.orgs().await? {
                        println!("{}\t{}\t{}", o.slug, o.id, o.name);
                    }
                }
            }
            Ok(())
        }
        Command::User(cmd) => user(cmd, &config).await,
        Command::Keys(cmd) => {
            let store = ward_server::open_store(&config).await?;
            match cmd {
                KeysCommand::Rotate { resume } => {
                    let r = keys::rotate(&store, resume).await?;
                    if r.remaining > 0 {
                        anyhow::bail!(
                            "{} data key(s) changed during the rotation and are not yet under {}: run `ward keys rotate --resume`",
                            r.remaining,
                            r.kek_id
                        );
                    }
                    println!("current KEK {}: {} data key(s) rewrapped", r.kek_id, r.rewrapped);
                }
                KeysCommand::Inventory { all, format } => {
                    let inv = keys::inventory(&store, all).await?;
                    match format {
                        keys::InventoryFormat::Json => println!("{}", serde_json::to_string_pretty(&inv)?),
                        keys::InventoryFormat::Table => keys::print_inventory(&inv),
                    }
                }
                KeysCommand::Retire { kek_id } => {
                    keys::retire(&store, &kek_id).await?;
                    println!("{kek_id} destroyed");
                }
            }
            Ok(())
        }
        Command::Retention(RetentionCommand::Run) => lifecycle::run(&config).await,
        Command::Retention(RetentionCommand::Status) => lifecycle::status(&config).await,
        Command::Device(DeviceCommand::Profile { org_prefix, bundle_id, organisation, no_previews, out, sign_cert, sign_key }) => {
            device::profile(&device::ProfileRequest {
                org_prefix: &org_prefix,
                bundle_id: &bundle_id,
                organisation: organisation.as_deref(),
                no_previews,
                out: out.as_deref(),
                sign: sign_cert.as_deref().zip(sign_key.as_deref()),
            })
        }
        Command::Roster(RosterCommand::Reconcile { org, file, remediate, allow_mass }) => {
            roster::reconcile_cmd(&config, &roster::ReconcileRequest { org: &org, file: &file, remediate, allow_mass }).await
        }
        Command::Patient(PatientCommand::Export { patient, out }) => lifecycle::export(&config, patient, &out).await,
        Command::Evidence(EvidenceCommand::Export { org, out }) => evidence::export(&config, &org, &out).await,
        Command::Evidence(EvidenceCommand::Verify { file, public_key }) => evidence::verify(&file, public_key.as_deref()),
        Command::Backup { out, command } => {
            match (out, command) {
                (_, Some(BackupCommand::Verify { from })) => {
                    let s = backup::verify(&config, &from).await?;
                    println!("verified {}", backup::describe(&s));
                }
                (Some(out), None) => {
                    let s = backup::backup(&config, &out).await?;
                    println!("wrote {} to {}", backup::describe(&s), out.display());
                }
                (None, None) => anyhow::bail!("give --out FILE to write a backup, or `ward backup verify --from FILE`"),
            }
            Ok(())
        }
        Command::Restore { from, data_dir, database_url } => {
            let s = backup::restore(&config, &from, &data_dir, database_url).await?;
            println!("restored {} into {}", backup::describe(&s), data_dir.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Print) => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::Audit(AuditCommand::Checkpoint) => {
            let store = ward_server::open_store(&config).await?;
            let log = ward_server::audit_log::AuditLog::open(&config, store)?;
            print!("{}", log.checkpoint_now().await?.note);
            Ok(())
        }
        Command::Audit(AuditCommand::Export { out, format, from, to, user, patient }) => {
            let filtered = from.is_some() || to.is_some() || user.is_some() || patient.is_some();
            if format == "verifiable" {
                if filtered {
                    anyhow::bail!("the verifiable export is always complete: --from, --to, --user and --patient need another --format");
                }
                let store = ward_server::open_store(&config).await?;
                let (entries, checkpoints) = audit::export(&store, &out).await?;
                println!("exported {entries} entries and {checkpoints} checkpoints to {}", out.display());
                return Ok(());
            }
            let format = ward_server::audit_export::ExportFormat::parse(&format)
                .ok_or_else(|| anyhow::anyhow!("--format must be verifiable, fhir-ndjson, fhir-bundle or csv"))?;
            let range = audit_reports::time_range(from.as_deref(), to.as_deref())?;
            let store = ward_server::open_store(&config).await?;
            let user = match user {
                Some(login) => Some(audit_reports::user_by_login(&store, &login).await?.id),
                None => None,
            };
            let filter = audit_reports::ExportFilter { range, user, patient };
            let n = audit_reports::export(&store, &config.audit.origin, &out, format, filter).await?;
            println!("exported {n} entries as {} to {}", format.as_str(), out.display());
            Ok(())
        }
        Command::Audit(AuditCommand::Disclosures { patient, from, to, format }) => {
            let range = audit_reports::time_range(from.as_deref(), to.as_deref())?;
            let store = ward_server::open_store(&config).await?;
            let out = audit_reports::disclosures(&store, patient, range, format).await?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
            Ok(())
        }
        Command::Audit(AuditCommand::AccessReport { user, from, to, format }) => {
            let range = audit_reports::time_range(from.as_deref(), to.as_deref())?;
            let store = ward_server::open_store(&config).await?;
            let out = audit_reports::access_report(&store, &user, range, format).await?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { export, vkey }) => {
            let vkey = audit::read_vkey(&vkey)?;
            let summary = match export {
                Some(path) => audit::verify_export(&path, vkey),
                None => audit::verify_database(&ward_server::open_store(&config).await?, vkey).await,
            }
            .map_err(|e| match e.downcast_ref::<ward_audit::VerifyError>().and_then(|v| v.first_bad_index()) {
                Some(i) => anyhow::anyhow!("audit log verification failed at index {i}: {e}"),
                None => anyhow::anyhow!("audit log verification failed: {e}"),
            })?;
            println!(
                "verified {} entries and {} checkpoints; root {} ({} entries after the last checkpoint)",
                summary.entries, summary.checkpoints, summary.root, summary.uncovered
            );
            if summary.archived > 0 {
                println!("entries below {} were archived; the signed checkpoints confirm the base they left", summary.archived);
            }
            Ok(())
        }
        // Retention (archive segments).
        Command::Audit(AuditCommand::Archive { before, dir }) => retention::archive(&config, before.as_deref(), dir).await,
        Command::Audit(AuditCommand::VerifySegment { segment, vkey }) => {
            let s = retention::verify_segment(&segment, &audit::read_vkey(&vkey)?)?;
            println!(
                "verified segment of entries {}..{} against the signed checkpoint at tree size {}; root {}",
                s.start, s.end, s.tree_size, s.root
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Prove { index, size, out }) => {
            let store = ward_server::open_store(&config).await?;
            let bundle = audit_proof::prove(&store, index, size).await?;
            audit_proof::write_bundle(&bundle, out.as_deref())?;
            if let Some(out) = out {
                println!("wrote the inclusion proof of entry {index} at tree size {} to {}", bundle.proof.tree_size, out.display());
            }
            Ok(())
        }
        Command::Audit(AuditCommand::CheckProof { bundle, vkey, checkpoint, event }) => {
            let vkey = audit::read_vkey(&vkey)?;
            let ok = audit_proof::check_proof(&bundle, vkey, checkpoint.as_deref(), event.as_deref())
                .map_err(|e| anyhow::anyhow!("inclusion proof check failed: {e:#}"))?;
            println!("entry {} is included in {} at tree size {} (root {})", ok.index, ok.origin, ok.tree_size, ok.root);
            Ok(())
        }
    }
}

async fn user(cmd: UserCommand, config: &Config) -> anyhow::Result<()> {
    let store = ward_server::open_store(config).await?;
    let by_login = |login: String| {
        let store = store.clone();
        async move {
            let login = ward_domain::login::LoginName::parse(&login)?;
            store.credentials(login.as_str()).await?.map(|c| c.user).ok_or_else(|| anyhow::anyhow!("no account named {login}"))
        }
    };
    match cmd {
        UserCommand::Add { org, login, name, role } => {
            let role: Role = role.parse()?;
            if role == Role::Patient {
                anyhow::bail!("patient accounts are created through the API, linked to a patient record");
            }
            let org = store.org_by_slug(&org).await.map_err(|_| anyhow::anyhow!("no organisation {org}"))?;
            let (u, password) = provision::add_user(&store, &org, &login, &name, role, None).await?;
            println!("created {} ({}) as {}; one-time password: {password}", u.login, u.id, u.role);
        }
        UserCommand::List { org } => {
            let org = store.org_by_slug(&org).await.map_err(|_| anyhow::anyhow!("no organisation {org}"))?;
            let mut after = None;
            loop {
                let page = store.users(org.id, after.clone(), 200).await?;
                for u in &page {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!("{}\t{}\t{}\t{}\t{}", u.login, u.role, state, if u.mfa_enabled { "mfa" } else { "-" }, u.id);
                }
                if page.len() < 200 {
                    break;
                }
                after = page.last().map(|u| u.login.clone());
            }
        }
        UserCommand::Disable { login } => {
            let u = by_login(login).await?;
            let revoked = store.set_user_disabled(u.org_id, u.id, true, None, operator_meta()).await?;
            println!("disabled {}; ended {} session(s)", u.login, revoked.len());
        }
        UserCommand::Enable { login } => {
            let u = by_login(login).await?;
            store.set_user_disabled(u.org_id, u.id, false, None, operator_meta()).await?;
            println!("enabled {}", u.login);
        }
        UserCommand::ResetPassword { login } => {
            let u = by_login(login).await?;
            let password = ward_server::secrets::one_time_password();
            let hash = ward_server::secrets::hash_password(password.clone()).await?;
            let revoked = store.reset_password(u.org_id, u.id, hash, None, operator_meta()).await?;
            println!("reset {}; ended {} session(s); one-time password: {password}", u.login, revoked.len());
        }
    }
    Ok(())
}

type Demo = (ward_store::Store, Option<(ward_store::Org, Vec<provision::DemoAccount>)>);

async fn serve(config: Config, demo: Option<Demo>) -> anyhow::Result<()> {
    let (store, created) = match demo {
        Some((store, created)) => (store, Some(created)),
        None => (ward_server::open_store(&config).await?, None),
    };
    let running = ward_server::start(config, store).await?;
    if running.generated_cert {
        println!("Generated a self-signed TLS certificate: {}", running.cert_path.display());
    }
    println!("TLS certificate SHA-256 fingerprint: {}", running.fingerprint);
    match created {
        Some(Some((org, accounts))) => {
            println!("\nCreated the demo organisation \"{}\". One-time passwords (each must be changed at first sign-in):", org.name);
            for a in &accounts {
                println!("  {:<19} {:<24} {}", a.user.role.as_str(), a.user.login, a.password);
            }
            println!();
        }
        Some(None) => println!(
            "The demo organisation already exists; its accounts keep their passwords (reset one with `ward user reset-password LOGIN`)."
        ),
        None => {}
    }
    println!("Ward is serving at {} (health: {}/healthz)", running.url, running.url);
    println!("Web app: {}/ (accept the self-signed certificate, then sign in with an account above)", running.url);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        r = running_wait(running) => r,
        () = stop => { println!("stopping"); Ok(()) }
    }
}

async fn running_wait(r: ward_server::Running) -> anyhow::Result<()> {
    r.wait().await.map_err(Into::into)
}
