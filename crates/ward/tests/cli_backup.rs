//! `ward backup`, `ward backup verify` and `ward restore` through the built binary: a data
//! directory with the file key provider, a backup taken while a store has it open and writes
//! to it, a restore into a new directory whose audit log verifies, and one-line failures.

mod support;

use std::path::Path;

use support::{fails, ok, open_store as open, ward_in as ward};
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::testing::{meta, msg, user};
use ward_store::{NewConversation, Page, Store};

const CANARY: &str = "CANARYCLIBACKUPz81";

/// Starts `ward serve` on `data` (127.0.0.1, port 0) and stops it once it reports serving;
/// false if it exits first.
fn serves(dir: &Path, data: &Path) -> bool {
    use std::io::BufRead as _;
    let mut child = support::command(dir)
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

async fn populate(s: &Store) -> (Actor, ConversationId) {
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let a = user(s, &org, "a@acme", Role::Clinician).await;
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
    s.send_message(a, DeviceId::new(), msg(conv, txn, &format!("body {txn} {CANARY}")), meta()).await.unwrap();
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
    drop(ward_crypto::FileKeyProvider::open_or_create(&other.join("keys/kek.json")).unwrap());
    fails(
        ward(d, &other, &["restore", "--from", file.to_str().unwrap(), "--data-dir", other.to_str().unwrap()]),
        "cannot unwrap the backup key",
    );
    fails(ward(d, &data, &["backup"]), "--out");
}
