//! `ward backup`, `ward backup verify` and `ward restore` through the built binary: a data
//! directory with the file key provider, a backup taken while a store has it open and writes
//! to it, a restore into a new directory whose audit log verifies, and one-line failures.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use ward_crypto::{FileKeyProvider, Keyring};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::{NewConversation, NewMessage, NewUser, Page, RequestMeta, Store, StoreOptions};

const CANARY: &str = "CANARYCLIBACKUPz81";

/// Runs `ward` with `args` in `dir`, data directory `data`, and no other `WARD_*` variables.
fn ward(dir: &Path, data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARD_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).env("WARD_DATA_DIR", data).args(args).output().expect("run the ward binary")
}

/// Starts `ward serve` on `data` (127.0.0.1, port 0) and stops it once it reports serving;
/// false if it exits first.
fn serves(dir: &Path, data: &Path) -> bool {
    use std::io::BufRead as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARD_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .current_dir(dir)
        .env("WARD_DATA_DIR", data)
        .env("WARD_LISTEN", "127.0.0.1:0")
        .env("WARD_LOG__LEVEL", "warn")
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ward serve");
    let stdout = child.stdout.take().expect("stdout");
    let served = std::io::BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("Ward is serving at"));
    let _ = child.kill();
    let _ = child.wait();
    served
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "ward failed ({}):\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

#[track_caller]
fn fails(o: Output, mentions: &str) {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "ward should have failed: {err}");
    assert!(!err.contains("panicked"), "ward panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("ward: ") && lines[0].contains(mentions), "stderr should mention {mentions:?}: {err:?}");
}

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("cli-backup".into()) }
}

async fn open(data: &Path) -> Store {
    let provider = Arc::new(FileKeyProvider::open_or_create(&data.join("keys/kek.json")).unwrap());
    let url = format!("sqlite://{}", data.join("ward.db").display());
    Store::open(StoreOptions::new(url, Arc::new(Keyring::new(provider, 64)))).await.unwrap()
}

async fn populate(s: &Store) -> (Actor, ConversationId) {
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let u = s
        .create_user(
            NewUser {
                org_id: org.id,
                login: "a@acme".into(),
                display_name: "A".into(),
                role: Role::Clinician,
                password_hash: "$argon2id$placeholder".into(),
                password_must_change: false,
                patient_id: None,
            },
            None,
            meta(),
        )
        .await
        .unwrap();
    let a = Actor { user_id: u.id, org_id: org.id, role: Role::Clinician };
    let spec = NewConversation {
        kind: ConversationKind::Group,
        title: Some(format!("Title {CANARY}")),
        patient_id: None,
        members: vec![],
        creator_reason: None,
    };
    let conv = s.create_conversation(a, spec, meta()).await.unwrap().id;
    for i in 0..20 {
        send(s, a, conv, &format!("m{i}")).await;
    }
    (a, conv)
}

async fn send(s: &Store, a: Actor, conv: ConversationId, txn: &str) {
    let m = NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse(txn.into()).unwrap(),
        body: MessageText::parse(format!("body {txn} {CANARY}")).unwrap(),
        priority: Priority::Routine,
        corrects: None,
        attachments: Vec::new(),
    };
    s.send_message(a, DeviceId::new(), m, meta()).await.unwrap();
}

#[test]
fn backup_while_open_restore_to_a_new_directory_and_the_audit_log_verifies() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = rt.block_on(open(&data));
    let (a, conv) = rt.block_on(populate(&store));
    // The audit log's signing key, verifier key and a checkpoint.
    ok(ward(d, &data, &["audit", "checkpoint"]));
    std::fs::create_dir_all(data.join("attachments/01")).unwrap();
    std::fs::write(data.join("attachments/01/blob"), b"sealed attachment bytes").unwrap();

    // The store stays open, and writes continue, while the backup runs.
    let writing = {
        let s = store.clone();
        rt.spawn(async move {
            for i in 0..20 {
                send(&s, a, conv, &format!("late{i}")).await;
            }
        })
    };
    let file = d.join("ward.wardbak");
    let out = ok(ward(d, &data, &["backup", "--out", file.to_str().unwrap()]));
    assert!(out.starts_with("wrote backup ") && out.contains("1 conversations"), "{out}");
    rt.block_on(writing).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "the canary appears in the backup");
    assert!(!d.join("ward.wardbak.partial").exists());
    // backup.create is in the source's audit log.
    let events = rt.block_on(store.audit_events(0, 10_000)).unwrap();
    assert!(events.iter().any(|e| e.action == "backup.create"));

    let out = ok(ward(d, &data, &["backup", "verify", "--from", file.to_str().unwrap()]));
    assert!(out.starts_with("verified backup ") && out.contains("4 data-directory files"), "{out}");

    // Restore into a new data directory holding only the key directory.
    let new = d.join("restored");
    std::fs::create_dir_all(new.join("keys")).unwrap();
    std::fs::copy(data.join("keys/kek.json"), new.join("keys/kek.json")).unwrap();
    let out = ok(ward(d, &new, &["restore", "--from", file.to_str().unwrap(), "--data-dir", new.to_str().unwrap()]));
    assert!(out.starts_with("restored backup "), "{out}");
    assert_eq!(std::fs::read(new.join("attachments/01/blob")).unwrap(), b"sealed attachment bytes");
    let vkey = new.join("audit/verifier.vkey");
    let out = ok(ward(d, &new, &["audit", "verify", "--vkey", vkey.to_str().unwrap()]));
    assert!(out.starts_with("verified "), "{out}");
    ok(ward(d, &new, &["org", "list"]));
    assert!(serves(d, &new), "ward serve did not start on the restored data directory");

    // Everything the snapshot held reads back.
    let restored = rt.block_on(open(&new));
    let got = rt.block_on(restored.messages(a, conv, Page::After(0), 1000, meta())).unwrap();
    let want = rt.block_on(store.messages(a, conv, Page::After(0), 1000, meta())).unwrap();
    assert!(got.len() >= 20 && got.as_slice() == &want[..got.len()]);
    let events = rt.block_on(restored.audit_events(0, 10_000)).unwrap();
    assert!(events.iter().any(|e| e.action == "backup.restore"), "backup.restore is recorded in the restored log");

    // Bad input: one line, non-zero exit.
    fails(ward(d, &new, &["restore", "--from", file.to_str().unwrap(), "--data-dir", new.to_str().unwrap()]), "not empty");
    fails(ward(d, &data, &["backup", "--out", file.to_str().unwrap()]), "already exists");
    fails(ward(d, &data, &["backup", "verify", "--from", d.join("missing").to_str().unwrap()]), "cannot open");
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    let bad_file = d.join("bad.wardbak");
    std::fs::write(&bad_file, &bad).unwrap();
    fails(ward(d, &data, &["backup", "verify", "--from", bad_file.to_str().unwrap()]), "damaged");
    std::fs::write(&bad_file, &bytes[..bytes.len() - 100]).unwrap();
    fails(ward(d, &data, &["backup", "verify", "--from", bad_file.to_str().unwrap()]), "damaged");
    std::fs::write(&bad_file, b"not a backup").unwrap();
    fails(ward(d, &data, &["backup", "verify", "--from", bad_file.to_str().unwrap()]), "not a Ward backup");
    // Without the key file, and with another one.
    let other = d.join("other");
    fails(ward(d, &other, &["restore", "--from", file.to_str().unwrap(), "--data-dir", other.to_str().unwrap()]), "no key file");
    std::fs::create_dir_all(&other).unwrap();
    drop(FileKeyProvider::open_or_create(&other.join("keys/kek.json")).unwrap());
    fails(
        ward(d, &other, &["restore", "--from", file.to_str().unwrap(), "--data-dir", other.to_str().unwrap()]),
        "cannot unwrap the backup key",
    );
    fails(ward(d, &data, &["backup"]), "--out");
}
