//! `ward keys rotate`, `ward keys inventory` and `ward keys retire` as an operator runs them,
//! on a data directory with the local key file and content written through the store.

mod support;

use std::path::Path;

use ward_domain::audit::AuditAction;
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::Page;
use ward_store::testing::{group_titled, meta, msg, org, user};

use support::{fails, ok, open_store, ward};

/// Three conversations with a message each, and a patient: five data keys with the
/// organisation's index key.
async fn content(data: &Path) -> (Actor, Vec<ConversationId>) {
    let store = open_store(data).await;
    let org = org(&store, "acme").await;
    let doc = user(&store, &org, "doc@acme", Role::Clinician).await;
    let nurse = user(&store, &org, "nurse@acme", Role::Nurse).await;
    let mut convs = Vec::new();
    for i in 0..3 {
        let conv = group_titled(&store, doc, &[nurse], &format!("room {i}")).await;
        store.send_message(doc, DeviceId::new(), msg(conv, &format!("t{i}"), &format!("secret {i}")), meta()).await.unwrap();
        convs.push(conv);
    }
    store.create_patient(org.id, doc.user_id, "MRN-1".into(), "P One".into(), vec![], meta()).await.unwrap();
    (doc, convs)
}

fn inventory(d: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(ward(d, &["keys", "inventory", "--format", "json"]))).expect("inventory JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_rewraps_every_key_and_retire_destroys_the_old_kek() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let (doc, convs) = content(&data).await;
    let before = inventory(d);
    assert_eq!(before["provider"], "file");
    assert_eq!(before["keks"].as_array().unwrap().len(), 1);
    assert_eq!(before["keks"][0]["kek_id"], "file:v1");
    assert_eq!(before["keks"][0]["data_keys"], 5);
    let kinds: Vec<(String, u64)> = before["data_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["scope_kind"].as_str().unwrap().to_owned(), s["live"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds, [("conversation".to_owned(), 3), ("org".to_owned(), 1), ("patient".to_owned(), 1)]);
    let text = std::fs::read_to_string(data.join("keys").join("kek.json")).unwrap();
    let inventory_text = ok(ward(d, &["keys", "inventory", "--all"]));
    assert!(inventory_text.contains("file:v1") && inventory_text.contains("conversation"), "{inventory_text}");
    // Never key material: no base64 key from the key file appears.
    let key_file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kek = key_file["keys"][0]["key"].as_str().unwrap();
    assert!(!inventory_text.contains(kek) && !before.to_string().contains(kek));

    // The current KEK cannot be retired, nor one that still wraps keys, nor an unknown one.
    fails(ward(d, &["keys", "retire", "file:v1"]), "current KEK");
    let out = ok(ward(d, &["keys", "rotate"]));
    assert!(out.contains("file:v2") && out.contains("5 data key(s) rewrapped"), "{out}");
    fails(ward(d, &["keys", "retire", "file:v2"]), "current KEK");
    fails(ward(d, &["keys", "retire", "file:v9"]), "has no KEK");
    let after = inventory(d);
    let keks: Vec<(String, u64)> = after["keks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kek_id"].as_str().unwrap().to_owned(), k["data_keys"].as_u64().unwrap()))
        .collect();
    assert_eq!(keks, [("file:v1".to_owned(), 0), ("file:v2".to_owned(), 5)]);
    // Resuming finds nothing left to do.
    assert!(ok(ward(d, &["keys", "rotate", "--resume"])).contains("0 data key(s) rewrapped"));
    ok(ward(d, &["keys", "retire", "file:v1"]));
    assert_eq!(inventory(d)["keks"].as_array().unwrap().len(), 1);

    // Everything still opens with a cold cache, through the new KEK only.
    let store = open_store(&data).await;
    for (i, conv) in convs.iter().enumerate() {
        let page = store.messages(doc, *conv, Page::After(0), 10, meta()).await.unwrap();
        assert_eq!(page[0].body.as_deref(), Some(format!("secret {i}").as_str()));
    }
    // Rotation, inventory and retirement are audited.
    let actions: Vec<String> = store.audit_events(0, 10_000).await.unwrap().into_iter().map(|e| e.action).collect();
    for a in [AuditAction::KeyRotate, AuditAction::KeyInventory, AuditAction::KeyRetire] {
        assert!(actions.iter().any(|x| x == a.as_str()), "{} not audited", a.as_str());
    }
}

#[test]
fn a_damaged_key_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("data").join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("kek.json"), "{not json").unwrap();
    fails(ward(dir.path(), &["keys", "inventory"]), "is not valid");
}
