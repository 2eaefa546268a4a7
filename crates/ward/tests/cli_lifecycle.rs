//! `ward retention run|status` and `ward patient export` as an operator runs them: the built
//! binary on a temporary data directory. The conversations are written through the store
//! (the CLI has no command to send messages), with the same key file the binary uses.

mod support;

use std::io::Read as _;
use std::path::Path;

use support::{fails, ok, ward_with};
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{DeviceId, PatientId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::testing::{meta, msg};
use ward_store::{MemberSpec, NewConversation, NewUser};

const DAY_MS: i64 = 86_400_000;
const CANARY: &str = "CANARY-cli-lifecycle-5e01";

/// Writes a group conversation (canary text) and a patient conversation; returns the patient.
async fn seed(dir: &Path) -> PatientId {
    let config = ward_server::Config { data_dir: dir.join("data"), ..ward_server::Config::default() };
    let store = ward_server::open_store(&config).await.unwrap();
    let org = store.org_by_slug("acme").await.unwrap();
    let mut actors = Vec::new();
    for (login, name, role) in [("dr@acme", "Dr Jones", Role::Clinician), ("rn@acme", "Nurse Lee", Role::Nurse)] {
        let u = store
            .create_user(
                NewUser {
                    org_id: org.id,
                    login: login.into(),
                    display_name: name.into(),
                    role,
                    password_hash: "$argon2id$placeholder".into(),
                    password_must_change: false,
                    patient_id: None,
                },
                None,
                meta(),
            )
            .await
            .unwrap();
        actors.push(Actor { user_id: u.id, org_id: org.id, role });
    }
    let (dr, rn) = (actors[0], actors[1]);
    let group = NewConversation {
        kind: ConversationKind::Group,
        title: Some("Night shift".into()),
        patient_id: None,
        members: vec![MemberSpec { user_id: rn.user_id, reason: None }],
        creator_reason: None,
    };
    let g = store.create_conversation(dr, group, meta()).await.unwrap().id;
    store.send_message(rn, DeviceId::new(), msg(g, "g1", CANARY), meta()).await.unwrap();
    let patient = store
        .create_patient(org.id, dr.user_id, "MRN-CLI-1".into(), "Pat Example".into(), vec![dr.user_id, rn.user_id], meta())
        .await
        .unwrap();
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: Some("Wound care".into()),
        patient_id: Some(patient.id),
        members: vec![MemberSpec { user_id: rn.user_id, reason: None }],
        creator_reason: None,
    };
    let p = store.create_conversation(dr, spec, meta()).await.unwrap().id;
    store.send_message(dr, DeviceId::new(), msg(p, "p1", "Dressing changed, healing well"), meta()).await.unwrap();
    store.send_message(rn, DeviceId::new(), msg(p, "p2", "Next change on Friday"), meta()).await.unwrap();
    patient.id
}

fn entries(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut a = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        out.insert(f.name().to_owned(), s);
    }
    out
}

#[test]
fn retention_run_shreds_what_expired_and_patient_export_writes_a_readable_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(ward_with(d, &["org", "create", "--slug", "acme", "--name", "Acme"], &[]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let patient = rt.block_on(seed(d)).to_string();

    let status = ok(ward_with(d, &["retention", "status"], &[]));
    assert!(status.contains("acme: direct 365 days, group 365 days, patient 2192 days; 0 legal hold(s) standing"), "{status}");
    assert!(status.contains("shred records: 0"), "{status}");
    let out = ok(ward_with(d, &["retention", "run"], &[]));
    assert!(out.contains("shredded 0 ("), "{out}");

    // The export before anything expired: every message readable.
    let first = d.join("first.zip");
    let out = ok(ward_with(d, &["patient", "export", "--patient", &patient, "--out", first.to_str().unwrap()], &[]));
    assert!(out.contains("1 conversation(s), 2 message(s)"), "{out}");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&first).unwrap().permissions()) & 0o777, 0o600);
    let files = entries(&first);
    assert!(files["index.txt"].contains("Pat Example") && files["index.txt"].contains("Wound care"), "{:?}", files["index.txt"]);
    let t = &files["conversations/001.txt"];
    assert!(t.contains("Dr Jones") && t.contains("Dressing changed, healing well") && t.contains("Nurse Lee"), "{t}");
    assert!(files.contains_key("export.json"));
    fails(ward_with(d, &["patient", "export", "--patient", &patient, "--out", first.to_str().unwrap()], &[]), "must not exist");
    let nobody = uuid::Uuid::now_v7().to_string();
    fails(ward_with(d, &["patient", "export", "--patient", &nobody, "--out", d.join("x.zip").to_str().unwrap()], &[]), "no patient");

    // 400 days on: the staff conversation (365 days) is shredded, the patient's (2192) kept.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let later = (now + 400 * DAY_MS).to_string();
    let out = ok(ward_with(d, &["retention", "run"], &[("WARD_TEST_NOW_MS", later.as_str())]));
    assert!(out.contains("shredded 1 (1 key version(s), 1 message(s))"), "{out}");
    let status = ok(ward_with(d, &["retention", "status"], &[]));
    assert!(status.contains("shred records: 1; destroyed key versions: 1; shredded messages: 1"), "{status}");
    let raw: Vec<u8> = ["data/ward.db", "data/ward.db-wal"].iter().filter_map(|f| std::fs::read(d.join(f)).ok()).flatten().collect();
    assert!(!raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));

    // Seven years on, the patient's conversation goes too; the export shows tombstones.
    let much_later = (now + 7 * 366 * DAY_MS).to_string();
    let out = ok(ward_with(d, &["retention", "run"], &[("WARD_TEST_NOW_MS", much_later.as_str())]));
    assert!(out.contains("shredded 1 (1 key version(s), 2 message(s))"), "{out}");
    let second = d.join("second.zip");
    ok(ward_with(d, &["patient", "export", "--patient", &patient, "--out", second.to_str().unwrap()], &[]));
    let files = entries(&second);
    let t = &files["conversations/001.txt"];
    assert!(!t.contains("Dressing changed") && !t.contains("Wound care"), "{t}");
    assert_eq!(t.matches("[removed at the end of its retention period").count(), 2, "{t}");
    assert!(t.contains("Dr Jones") && t.contains("Nurse Lee"), "senders stay on the tombstones: {t}");
}
