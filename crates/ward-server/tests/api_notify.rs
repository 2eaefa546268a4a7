//! Notification delivery end to end, against local fake providers that record what they
//! receive: an APNs fake (HTTP/2 over TLS with a test certificate), an FCM fake (with its token
//! endpoint), an HTTP SMS gateway fake and an SMTP fake, all on 127.0.0.1. A new message pushes
//! ids and "New message" only to the recipients' registered devices (not the sender's); a STAT
//! message goes at high priority; verification codes and notices go by SMS and email with
//! retries, permanent failures and unregistered tokens handled; three workers (the server's and
//! two more) never send one entry twice. Canary: message bodies, patient names, first names and
//! diagnosis words reach no provider request, no log and no audit entry.

mod common;

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use common::{Harness, captured, logs};
use reqwest::Method;
use serde_json::json;
use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::ContactKind;
use ward_domain::role::Role;
use ward_notify::fake::{FakeHttp, FakeSmtp, Recorded};
use ward_store::{Backend, ContactOwner, NoticeDraft, NoticeOutcome, on_both_backends};

on_both_backends!(delivery_through_fake_providers);

/// Never to leave Ward on an outside channel, nor reach a log or an audit entry.
const CANARIES: &[&str] = &["Quillfeather", "Ottoline", "ketoacidosis", "canary-body-7731"];
const APNS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", base64::engine::general_purpose::STANDARD.encode(der))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn delivery_through_fake_providers(backend: Backend) {
    captured();
    let apns = FakeHttp::start_tls_h2().await;
    let fcm = FakeHttp::start().await;
    let sms = FakeHttp::start().await;
    let smtp = FakeSmtp::start().await;
    let keys = tempfile::tempdir().unwrap();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    std::fs::write(keys.path().join("apns.p8"), pem("PRIVATE KEY", ec.as_ref())).unwrap();
    std::fs::write(keys.path().join("apns-ca.pem"), apns.ca_pem.clone().unwrap()).unwrap();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let account = json!({"type": "service_account", "project_id": "ward-test", "client_email": "push@ward-test.example",
        "private_key": pem("PRIVATE KEY", rsa.as_der().unwrap().as_ref()), "token_uri": format!("{}/token", fcm.url)});
    std::fs::write(keys.path().join("fcm.json"), account.to_string()).unwrap();
    std::fs::write(keys.path().join("sms-token"), "gateway-secret-9\n").unwrap();
    let kp = keys.path().to_path_buf();
    let (apns_url, fcm_url, sms_url, smtp_port) = (apns.url.clone(), fcm.url.clone(), format!("{}/send", sms.url), smtp.port);
    let Some(h) = Harness::start_with(backend, move |c| {
        let n = &mut c.notify;
        common::notify::fast(n);
        n.retry_base_ms = 10;
        n.max_attempts = 3;
        n.apns.enabled = true;
        n.apns.base_url = apns_url;
        n.apns.key_id = "KEYID12345".into();
        n.apns.team_id = "TEAMID6789".into();
        n.apns.topic = "org.example.ward".into();
        n.apns.key_file = Some(kp.join("apns.p8"));
        n.apns.ca_file = Some(kp.join("apns-ca.pem"));
        common::notify::fake_fcm(n, fcm_url, &kp);
        common::notify::fake_sms(n, sms_url);
        n.sms.token_file = Some(kp.join("sms-token"));
        common::notify::fake_email(n, smtp_port);
    })
    .await
    else {
        return;
    };
    let org = h.org("acme", vec![]).await;
    let doc = h.account(&org, "doc", Role::Clinician).await;
    let nurse = h.account(&org, "nurse", Role::Nurse).await;
    let (ds, ns) = (h.login(&doc).await, h.login(&nurse).await);

    // Devices register their tokens; bad tokens and platforms are refused.
    let put = |s: &common::Session, body: serde_json::Value| {
        let access = s.access.clone();
        let h = &h;
        async move { h.call(Method::PUT, "/api/v1/me/device/push-token", Some(&access), Some(body)).await }
    };
    put(&ns, json!({"platform": "apns", "token": "not hex!"})).await.expect_problem(400, "invalid_body");
    put(&ns, json!({"platform": "webpush", "token": "abcdef0123456789"})).await.expect(400);
    let r = put(&ns, json!({"platform": "apns", "token": APNS_TOKEN})).await.expect(200);
    assert_eq!(r.body["platform"], "apns");
    assert!(!r.body.to_string().contains(APNS_TOKEN));
    put(&ds, json!({"platform": "fcm", "token": "fcm-doc-token-1"})).await.expect(200);

    // A STAT message: one push to the nurse's phone, none to the sender's own.
    let conv = h.conversation(&ds, "group", &[&nurse]).await;
    let body = "Ottoline Quillfeather: ketoacidosis, canary-body-7731";
    let r = h
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            &ds.access,
            json!({"client_txn_id": "t1", "body": body, "priority": "stat"}),
        )
        .await
        .expect(201);
    let message_id = r.body["id"].as_str().unwrap().to_owned();
    wait_for("the APNs push", || apns.sends().len() == 1).await;
    let got = &apns.sends()[0];
    assert_eq!(got.version, "HTTP/2.0");
    assert_eq!(got.path, format!("/3/device/{APNS_TOKEN}"));
    assert_eq!(
        (got.header("apns-topic"), got.header("apns-push-type"), got.header("apns-priority")),
        (Some("org.example.ward"), Some("alert"), Some("10"))
    );
    assert!(got.header("authorization").unwrap().starts_with("bearer "));
    assert_eq!(
        got.json(),
        json!({"aps": {"alert": {"body": "New message"}, "sound": "default"}, "conversation_id": conv, "message_id": message_id})
    );
    // The nurse answers (routine): the doctor's FCM phone gets it at normal priority.
    h.send(&ns, &conv, "t2", "Ottoline stable, canary-body-7731").await.expect(201);
    wait_for("the FCM push", || fcm.sends().len() == 1).await;
    let f = fcm.sends()[0].json();
    assert_eq!(f["message"]["notification"], json!({"body": "New message"}));
    assert_eq!(f["message"]["android"]["priority"], "NORMAL");
    assert_eq!(f["message"]["token"], "fcm-doc-token-1");
    assert_eq!(f["message"]["data"]["conversation_id"], conv.as_str());
    assert_eq!(fcm.requests()[0].path, "/token");
    assert_eq!(apns.sends().len(), 1, "the sender's own device got nothing");

    // APNs calls the nurse's token unregistered: it is removed, and later messages queue nothing.
    apns.script(&[(410, r#"{"reason":"Unregistered"}"#)]);
    h.send(&ds, &conv, "t3", "canary-body-7731").await.expect(201);
    wait_for("the unregistered answer", || apns.sends().len() == 2).await;
    let nurse_device = ward_domain::ids::DeviceId(ns.device_id.parse().unwrap());
    for _ in 0..100 {
        if h.store.push_registration(org.id, nurse_device).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h.store.push_registration(org.id, nurse_device).await.unwrap().is_none(), "an unregistered token is removed");
    h.send(&ds, &conv, "t4", "canary-body-7731").await.expect(201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(apns.sends().len(), 2);

    // SMS: the verification code goes through the gateway (500 first: retried); a notice too.
    let s = &h.store;
    let meta = Harness::meta();
    let p = s.create_patient(org.id, doc.id, "MRN-77".into(), "Ottoline Quillfeather".into(), vec![doc.id], meta.clone()).await.unwrap();
    let pp = ContactOwner::Patient(p.id);
    s.record_consent(org.id, doc.id, p.id, ConsentGrant::new(ConsentChannel::SmsNotices, None, false).unwrap(), meta.clone())
        .await
        .unwrap();
    s.record_consent(org.id, doc.id, p.id, ConsentGrant::new(ConsentChannel::EmailNotices, None, false).unwrap(), meta.clone())
        .await
        .unwrap();
    sms.script(&[(500, "{}")]);
    s.test_verified_contact(org.id, doc.id, pp, ContactKind::Phone, "+14155550142").await;
    wait_for("the code by SMS, retried", || sms.sends().len() == 2).await;
    let code = sms.sends()[1].clone();
    assert_eq!(code.header("authorization"), Some("Bearer gateway-secret-9"));
    assert_eq!(code.json()["to"], "+14155550142");
    assert!(code.json()["text"].as_str().unwrap().contains("246810"));
    let draft = NoticeDraft {
        patient_id: p.id,
        template_id: uuid::Uuid::now_v7(),
        channel: NoticeChannel::Sms,
        text: "Your appointment is on Tuesday. Reply STOP to opt out.".into(),
    };
    let NoticeOutcome::Queued(n) = s.enqueue_notice(org.id, doc.id, draft, meta.clone()).await.unwrap() else { panic!("queued") };
    wait_for("the notice by SMS", || sms.sends().len() == 3).await;
    assert_eq!(sms.sends()[2].json(), json!({"to": "+14155550142", "text": "Your appointment is on Tuesday. Reply STOP to opt out."}));
    for _ in 0..100 {
        if s.notice_outbox(org.id, p.id).await.unwrap().iter().all(|e| e.status == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.notice_outbox(org.id, p.id).await.unwrap()[0].id, n.id);
    assert_eq!(s.notice_outbox(org.id, p.id).await.unwrap()[0].status, "sent");

    // Email: the relay refuses the recipient for good (550): the code is failed, not retried.
    smtp.script_rcpt(&[550]);
    let mail = s.add_contact(org.id, doc.id, pp, ContactKind::Email, "ottoline@example.org".into(), meta.clone()).await.unwrap();
    s.start_contact_verification(org.id, doc.id, pp, mail.id, "135790".into(), meta.clone()).await.unwrap();
    let mut status = String::new();
    for _ in 0..100 {
        status = s.contact_outbox(org.id, pp, mail.id).await.unwrap()[0].status.clone();
        if status != "queued" && status != "sending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "failed");
    assert!(smtp.received().is_empty());

    // Two more workers beside the server's: twenty pushes, each sent once.
    put(&ns, json!({"platform": "apns", "token": APNS_TOKEN})).await.expect(200);
    let notifier =
        std::sync::Arc::new(ward_server::notify::Notifier::from_config(&h.running.as_ref().unwrap().state.config.notify).unwrap());
    let cfg = h.running.as_ref().unwrap().state.config.notify.clone();
    let before = apns.sends().len();
    for i in 0..20 {
        h.send(&ds, &conv, &format!("burst-{i}"), "canary-body-7731").await.expect(201);
    }
    let (s1, s2) = (s.clone(), s.clone());
    let (n1, n2, c1, c2) = (notifier.clone(), notifier.clone(), cfg.clone(), cfg.clone());
    let w1 = tokio::spawn(async move {
        for _ in 0..20 {
            ward_server::notify::run_once(&s1, &n1, &c1, "extra-1").await;
        }
    });
    let w2 = tokio::spawn(async move {
        for _ in 0..20 {
            ward_server::notify::run_once(&s2, &n2, &c2, "extra-2").await;
        }
    });
    let _ = tokio::join!(w1, w2);
    wait_for("twenty pushes", || apns.sends().len() >= before + 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<Recorded> = apns.sends().into_iter().skip(before).collect();
    let mut ids: Vec<String> = sent.iter().map(|r| r.json()["message_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((sent.len(), ids.len()), (20, 20), "each push sent exactly once");

    // Canary: nothing of the content left Ward, nor reached a log or the audit log.
    let mut outside: Vec<String> = Vec::new();
    for f in [&apns, &fcm, &sms] {
        outside.extend(f.requests().iter().map(Recorded::all_text));
    }
    outside.extend(smtp.received().iter().map(|m| format!("{:?}{}", m.commands, m.data)));
    let log = logs();
    let audit = s.audit_events(0, 100_000).await.unwrap();
    for canary in CANARIES {
        for o in &outside {
            assert!(!o.contains(canary), "{canary} sent to a provider: {o}");
        }
        assert!(!log.contains(canary), "{canary} in the logs");
        for e in &audit {
            assert!(!e.detail.contains(canary), "{canary} in {}", e.detail);
        }
    }
    for secret in [APNS_TOKEN, "fcm-doc-token-1", "gateway-secret-9", "+14155550142", "246810"] {
        assert!(!log.contains(secret), "{secret} in the logs");
        assert!(audit.iter().all(|e| !e.detail.contains(secret)), "{secret} in the audit log");
    }
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for a in ["push_token.register", "push_token.remove", "push.deliver", "notice.deliver"] {
        assert!(actions.contains(&a), "{a} audited");
    }
    assert!(audit.iter().any(|e| e.action == "notice.deliver" && e.detail.contains(r#""result":"retry""#)));
    assert!(audit.iter().any(|e| e.action == "notice.deliver" && e.detail.contains(r#""result":"failed""#) && e.detail.contains("smtp")));
}
