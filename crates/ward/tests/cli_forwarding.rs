//! `ward audit disclosures` lists a message forwarded outside the patient's care team (written
//! through the store, as the server would), with its purpose statement; a forward inside the
//! care team is not listed.

mod support;

use std::path::Path;

use support::{ok, open_store, ward};
use ward_domain::conversation::{ClientTxnId, ConversationKind, DisclosurePurpose, MessageText, Priority};
use ward_domain::ids::{DeviceId, PatientId};
use ward_domain::policy::Actor;
use ward_store::{ForwardBasis, MemberSpec, NewConversation, NewMessage, RequestMeta};

/// A patient conversation with one message, forwarded once to a group inside the care team's
/// reach (the same patient's other conversation) and once to billing for payment.
async fn forwards(data: &Path) -> PatientId {
    let store = open_store(data).await;
    let meta = || RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: None };
    let account = |login: &'static str| {
        let store = store.clone();
        async move {
            let u = store.credentials(login).await.unwrap().unwrap().user;
            Actor { user_id: u.id, org_id: u.org_id, role: u.role }
        }
    };
    let (doc, billing) = (account("doc@acme").await, account("billing@acme").await);
    let p = store.create_patient(doc.org_id, doc.user_id, "MRN-9".into(), "Pat".into(), vec![doc.user_id], meta()).await.unwrap();
    let conv = |kind: ConversationKind, members: Vec<MemberSpec>| NewConversation {
        kind,
        title: None,
        patient_id: (kind == ConversationKind::Patient).then_some(p.id),
        members,
        creator_reason: None,
    };
    let about = store.create_conversation(doc, conv(ConversationKind::Patient, vec![]), meta()).await.unwrap().id;
    let also = store.create_conversation(doc, conv(ConversationKind::Patient, vec![]), meta()).await.unwrap().id;
    let billing_group = store
        .create_conversation(doc, conv(ConversationKind::Group, vec![MemberSpec { user_id: billing.user_id, reason: None }]), meta())
        .await
        .unwrap()
        .id;
    let new = NewMessage {
        conversation_id: about,
        client_txn_id: ClientTxnId::parse("m1".into()).unwrap(),
        body: MessageText::parse("CLICANARY creatinine 2.1".into()).unwrap(),
        priority: Priority::Routine,
        corrects: None,
        attachments: vec![],
    };
    let src = store.send_message(doc, DeviceId::new(), new, meta()).await.unwrap().message.id;
    let txn = |t: &str| ClientTxnId::parse(t.into()).unwrap();
    store.forward_message(doc, DeviceId::new(), about, src, also, txn("f1"), None, None, meta()).await.unwrap();
    let payment = Some(ForwardBasis::Purpose(DisclosurePurpose::Payment));
    store.forward_message(doc, DeviceId::new(), about, src, billing_group, txn("f2"), None, payment, meta()).await.unwrap();
    p.id
}

#[test]
fn forwarded_messages_appear_in_the_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(ward(d, &["org", "create", "--slug", "acme", "--name", "Acme"]));
    for (login, role) in [("doc@acme", "clinician"), ("billing@acme", "staff")] {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", login, "--name", login, "--role", role]));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let patient = runtime.block_on(forwards(&d.join("data"))).to_string();

    let csv = ok(ward(d, &["audit", "disclosures", "--patient", &patient, "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "one disclosure, the forward to billing: {csv}");
    assert!(lines[1].contains(",message.forward,") && lines[1].contains(",payment,"), "{csv}");
    assert!(lines[1].contains("Payment for the patient's care"), "{csv}");
    assert!(!csv.contains("CLICANARY"), "the text stays out of the accounting");
}
