//! Patients who write in over SMS or email (docs/notifications.md, "Patients who write in"),
//! over real HTTP on both backends, with the fake SMS gateway and SMTP relay: a patient's
//! verified number gets one PHI-free redirect to the portal on the same channel, a second
//! message within the window none; an unknown number, and a patient without consent for the
//! channel, get nothing; a bad signature is `401 invalid_signature`. The message text carries
//! canaries that must reach no provider, no log, no audit entry and no database table. Also:
//! a patient fetches a notice by the id a push carried; nobody else can.

mod common;

use std::time::Duration;

use common::{Harness, captured, logs};
use reqwest::Method;
use serde_json::json;
use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::ContactKind;
use ward_domain::role::Role;
use ward_notify::fake::{FakeHttp, FakeSmtp, Recorded};
use ward_server::config::InboundOrg;
use ward_store::testing::contains_bytes;
use ward_store::{Backend, ContactOwner, NoticeDraft, NoticeOutcome, on_both_backends};

on_both_backends!(
    inbound_messages_get_the_portal_redirect,
    bad_signatures_are_rate_limited_per_address,
    stale_and_replayed_requests_are_refused
);

/// What patients write: never to be stored, logged, audited or sent anywhere.
const CANARIES: &[&str] = &["INBOUNDCANARY-chest-pain-4417", "Quillfeather-inbound", "metformin-inbound-canary"];
const SECRET: &str = "inbound-webhook-secret-0042";
const PORTAL: &str = "https://portal.example.org/login";
const REDIRECT: &str = "Messages sent here are not read. Please use the secure portal: https://portal.example.org/login";

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn now_secs() -> i64 {
    ward_store::now_ms() / 1000
}

/// Posts a webhook body signed now (`signature` overrides the right one).
async fn webhook(h: &Harness, path: &str, body: &serde_json::Value, signature: Option<&str>) -> common::Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    let ts = now_secs();
    let sig = signature.map_or_else(|| ward_server::inbound::sign(SECRET.as_bytes(), ts, &bytes), str::to_owned);
    post_signed(h, path, bytes, &ts.to_string(), &sig).await
}

/// Posts `bytes` with exactly these timestamp and signature headers.
async fn post_signed(h: &Harness, path: &str, bytes: Vec<u8>, timestamp: &str, sig: &str) -> common::Reply {
    let res = h
        .http
        .request(Method::POST, format!("{}{path}", h.url))
        .header("content-type", "application/json")
        .header("x-ward-timestamp", timestamp)
        .header("x-ward-signature", sig)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    common::Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null) }
}

fn sms_body(from: &str) -> serde_json::Value {
    json!({"from": from, "to": "+14155550000", "text": format!("{} {} {}", CANARIES[0], CANARIES[1], CANARIES[2])})
}

async fn inbound_messages_get_the_portal_redirect(backend: Backend) {
    captured();
    let sms = FakeHttp::start().await;
    let smtp = FakeSmtp::start().await;
    let (sms_url, smtp_port) = (format!("{}/send", sms.url), smtp.port);
    let Some(h) = Harness::start_with(backend, move |c| {
        let n = &mut c.notify;
        common::notify::fast(n);
        common::notify::fake_sms(n, sms_url);
        n.sms.token = Some("gateway-token-inbound".into());
        common::notify::fake_email(n, smtp_port);
        c.inbound.portal_link = PORTAL.into();
        c.inbound.orgs = vec![InboundOrg { org: "acme".into(), secret: Some(SECRET.into()), secret_file: None }];
    })
    .await
    else {
        return;
    };
    let org = h.org("acme", vec![]).await;
    let doc = h.account(&org, "doc", Role::Clinician).await;
    let s = &h.store;
    let meta = Harness::meta();
    // Ottoline: verified phone and email, consents to both. Bram: verified phone, no consent.
    let p1 = s.create_patient(org.id, doc.id, "MRN-1".into(), "Ottoline Q".into(), vec![doc.id], meta.clone()).await.unwrap();
    let p2 = s.create_patient(org.id, doc.id, "MRN-2".into(), "Bram R".into(), vec![doc.id], meta.clone()).await.unwrap();
    for ch in [ConsentChannel::SmsNotices, ConsentChannel::EmailNotices, ConsentChannel::Portal] {
        s.record_consent(org.id, doc.id, p1.id, ConsentGrant::new(ch, None, false).unwrap(), meta.clone()).await.unwrap();
    }
    s.test_verified_contact(org.id, doc.id, ContactOwner::Patient(p1.id), ContactKind::Phone, "+14155550142").await;
    s.test_verified_contact(org.id, doc.id, ContactOwner::Patient(p1.id), ContactKind::Email, "ottoline@example.org").await;
    s.test_verified_contact(org.id, doc.id, ContactOwner::Patient(p2.id), ContactKind::Phone, "+14155550199").await;
    // The verification codes go out first.
    wait_for("the verification codes", || sms.sends().len() == 2 && smtp.received().len() == 1).await;
    let (sms0, mail0) = (sms.sends().len(), smtp.received().len());

    // A bad, missing or foreign signature, or an organisation without webhooks: 401, nothing done.
    let path = "/api/v1/inbound/acme/sms";
    webhook(&h, path, &sms_body("+14155550142"), Some("sha256=00")).await.expect_problem(401, "invalid_signature");
    let wrong =
        ward_server::inbound::sign(b"some-other-secret-entirely", now_secs(), &serde_json::to_vec(&sms_body("+14155550142")).unwrap());
    webhook(&h, path, &sms_body("+14155550142"), Some(&wrong)).await.expect_problem(401, "invalid_signature");
    webhook(&h, "/api/v1/inbound/nowhere/sms", &sms_body("+14155550142"), None).await.expect_problem(401, "invalid_signature");
    let other = h.org("other", vec![]).await;
    webhook(&h, "/api/v1/inbound/other/sms", &sms_body("+14155550142"), None).await.expect_problem(401, "invalid_signature");
    // Signed but not the expected shape: 400, and the detail quotes nothing of the body.
    let r = webhook(&h, path, &json!({"sender": CANARIES[0]}), None).await.expect_problem(400, "invalid_body");
    assert!(!r.body.to_string().contains(CANARIES[0]));
    let r = webhook(&h, path, &json!({"from": 7, "text": CANARIES[0]}), None).await.expect_problem(400, "invalid_body");
    assert!(!r.body.to_string().contains(CANARIES[0]));

    // Ottoline writes in (in another spelling of her number): one redirect, on SMS, to her number.
    webhook(&h, path, &sms_body("+1 (415) 555-0142"), None).await.expect(204);
    wait_for("the redirect by SMS", || sms.sends().len() == sms0 + 1).await;
    assert_eq!(sms.sends()[sms0].json(), json!({"to": "+14155550142", "text": REDIRECT}));
    assert_eq!(s.redirect_count(org.id, p1.id).await.unwrap(), 1);
    // Again within the window: nothing more.
    webhook(&h, path, &sms_body("+14155550142"), None).await.expect(204);
    // Bram has no SMS consent; a stranger is nobody's contact; a short code is no number.
    webhook(&h, path, &sms_body("+14155550199"), None).await.expect(204);
    webhook(&h, path, &sms_body("+14155550100"), None).await.expect(204);
    webhook(&h, path, &sms_body("72345"), None).await.expect(204);

    // Ottoline emails: the redirect by email, to her address, without her subject or text.
    let mail = json!({"from": "Ottoline Q <Ottoline@Example.org>", "to": "clinic@acme.example", "subject": CANARIES[1],
        "text": CANARIES[0], "html": format!("<p>{}</p>", CANARIES[2])});
    webhook(&h, "/api/v1/inbound/acme/email", &mail, None).await.expect(204);
    wait_for("the redirect by email", || smtp.received().len() == mail0 + 1).await;
    let got = smtp.received()[mail0].clone();
    assert!(got.commands.iter().any(|c| c.contains("<ottoline@example.org>")), "sent to her address: {:?}", got.commands);
    // Quoted-printable: undo the soft line breaks.
    let text = got.data.replace("=\r\n", "").replace("=\n", "");
    assert!(text.contains(REDIRECT), "the redirect: {}", got.data);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms.sends().len(), sms0 + 1, "no second redirect, none to Bram, none to strangers");
    assert_eq!(s.redirect_count(org.id, p2.id).await.unwrap(), 0);
    assert_eq!(s.redirect_count(org.id, p1.id).await.unwrap(), 2);

    // The audit trail: every inbound message, with its result and a hash of the sender only.
    let audit = s.audit_events(0, 100_000).await.unwrap();
    let inbound: Vec<_> = audit.iter().filter(|e| e.action == "inbound.receive").collect();
    let results: Vec<&str> = ["redirect_queued", "rate_limited", "no_consent", "unknown_sender"].to_vec();
    for r in results {
        assert!(inbound.iter().any(|e| e.detail.contains(&format!(r#""result":"{r}""#))), "{r} audited: {inbound:?}");
    }
    assert_eq!(inbound.iter().filter(|e| e.detail.contains("redirect_queued")).count(), 2);
    assert_eq!(inbound.iter().filter(|e| e.outcome == "denied").count(), 3, "the signature failures of known organisations");
    assert!(inbound.iter().any(|e| e.org_id == Some(other.id.0)));
    assert!(audit.iter().any(|e| e.action == "notice.deliver" && e.detail.contains(r#""kind":"redirect""#)));

    // A push notice: its patient fetches it by id; nobody else can.
    let otto = h.account_for_patient(&org, "ottoline", Role::Patient, Some(p1.id)).await;
    let bram = h.account_for_patient(&org, "bram", Role::Patient, Some(p2.id)).await;
    let (so, sb, sd) = (h.login(&otto).await, h.login(&bram).await, h.login(&doc).await);
    let draft = NoticeDraft {
        patient_id: p1.id,
        template_id: uuid::Uuid::now_v7(),
        channel: NoticeChannel::Push,
        text: "Your appointment is on Tuesday at 10:00, Ottoline.".into(),
    };
    let NoticeOutcome::Queued(n) = s.enqueue_notice(org.id, doc.id, draft, meta.clone()).await.unwrap() else { panic!("queued") };
    let r = h.get(&format!("/api/v1/me/notices/{}", n.id), &so.access).await.expect(200);
    assert_eq!(r.body["text"], "Your appointment is on Tuesday at 10:00, Ottoline.");
    assert_eq!(r.body["channel"], "push");
    h.get(&format!("/api/v1/me/notices/{}", n.id), &sb.access).await.expect_problem(404, "not_found");
    h.get(&format!("/api/v1/me/notices/{}", n.id), &sd.access).await.expect_problem(404, "not_found");
    h.get(&format!("/api/v1/me/notices/{}", uuid::Uuid::now_v7()), &so.access).await.expect_problem(404, "not_found");
    h.get("/api/v1/me/notices/not-an-id", &so.access).await.expect_problem(400, "invalid_parameter");
    let audit = s.audit_events(0, 100_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "notice.read").count(), 1);

    // Canary: the patients' words reached no provider, no log, no audit entry, no table.
    let mut outside: Vec<String> = sms.requests().iter().map(Recorded::all_text).collect();
    outside.extend(smtp.received().iter().map(|m| format!("{:?}{}", m.commands, m.data)));
    let log = logs();
    let stored = h.db.raw_contents().await;
    for canary in CANARIES {
        for o in &outside {
            assert!(!o.contains(canary), "{canary} sent to a provider: {o}");
        }
        assert!(!log.contains(canary), "{canary} in the logs");
        assert!(audit.iter().all(|e| !e.detail.contains(canary)), "{canary} in the audit log");
        assert!(!contains_bytes(&stored, canary.as_bytes()), "{canary} in the database");
    }
    for number in ["+14155550142", "4155550142", "+14155550199", "+14155550100", "ottoline@example.org", "Ottoline@Example.org", SECRET] {
        assert!(!log.contains(number), "{number} in the logs");
        assert!(audit.iter().all(|e| !e.detail.contains(number)), "{number} in the audit log");
    }
}

/// Badly signed requests from one address: the first `bad_signatures_per_minute_per_address`
/// get 401 and one `denied` audit event each; after that every request from the address, even
/// a well-signed one, gets 429 `rate_limited` with `Retry-After`, and adds no audit row.
async fn bad_signatures_are_rate_limited_per_address(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| {
        c.inbound.portal_link = PORTAL.into();
        c.inbound.bad_signatures_per_minute_per_address = 3;
        c.inbound.orgs = vec![InboundOrg { org: "acme".into(), secret: Some(SECRET.into()), secret_file: None }];
    })
    .await
    else {
        return;
    };
    h.org("acme", vec![]).await;
    let path = "/api/v1/inbound/acme/sms";
    let denied = || async {
        h.store
            .audit_events(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "inbound.receive" && e.outcome == "denied")
            .count()
    };
    // A well-signed request does not count towards the limit.
    webhook(&h, path, &sms_body("+14155550100"), None).await.expect(204);
    for _ in 0..3 {
        webhook(&h, path, &sms_body("+14155550100"), Some("sha256=00")).await.expect_problem(401, "invalid_signature");
    }
    assert_eq!(denied().await, 3);
    for _ in 0..20 {
        let r = webhook(&h, path, &sms_body("+14155550100"), Some("sha256=00")).await.expect_problem(429, "rate_limited");
        let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
    }
    // The unknown organisation and the well-signed request from the same address: refused too.
    webhook(&h, "/api/v1/inbound/nowhere/sms", &sms_body("+14155550100"), None).await.expect_problem(429, "rate_limited");
    webhook(&h, path, &sms_body("+14155550100"), None).await.expect_problem(429, "rate_limited");
    assert_eq!(denied().await, 3, "requests past the limit are not audited one by one");
}

/// Replay protection: the timestamp is part of what is signed, a timestamp more than five
/// minutes off is refused even when rightly signed, and a rightly signed request is accepted
/// once (the same bytes again get 401). Each refusal is audited with its reason, and counts
/// towards the per-address limit like a bad signature.
async fn stale_and_replayed_requests_are_refused(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| {
        c.inbound.portal_link = PORTAL.into();
        c.inbound.orgs = vec![InboundOrg { org: "acme".into(), secret: Some(SECRET.into()), secret_file: None }];
    })
    .await
    else {
        return;
    };
    h.org("acme", vec![]).await;
    let path = "/api/v1/inbound/acme/sms";
    let bytes = serde_json::to_vec(&sms_body("+14155550100")).unwrap();
    let sign = |ts: i64| ward_server::inbound::sign(SECRET.as_bytes(), ts, &bytes);
    let now = now_secs();

    // Signed now: accepted once; the very same request again is a replay.
    let sig = sign(now);
    post_signed(&h, path, bytes.clone(), &now.to_string(), &sig).await.expect(204);
    post_signed(&h, path, bytes.clone(), &now.to_string(), &sig).await.expect_problem(401, "invalid_signature");
    // The same body signed a second later is a new request.
    post_signed(&h, path, bytes.clone(), &(now + 1).to_string(), &sign(now + 1)).await.expect(204);
    // The timestamp is signed: moving it breaks the signature.
    post_signed(&h, path, bytes.clone(), &(now + 2).to_string(), &sig).await.expect_problem(401, "invalid_signature");
    // Rightly signed but ten minutes old, or ten minutes ahead: stale.
    for ts in [now - 600, now + 600] {
        post_signed(&h, path, bytes.clone(), &ts.to_string(), &sign(ts)).await.expect_problem(401, "invalid_signature");
    }
    // Four minutes old still passes (clock skew between the provider and Ward).
    post_signed(&h, path, bytes.clone(), &(now - 240).to_string(), &sign(now - 240)).await.expect(204);
    // No timestamp, or one that is no number: refused.
    let res = h
        .http
        .request(Method::POST, format!("{}{path}", h.url))
        .header("content-type", "application/json")
        .header("x-ward-signature", ward_server::inbound::sign(SECRET.as_bytes(), now, &bytes))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no timestamp");
    post_signed(&h, path, bytes.clone(), "soon", &sig).await.expect_problem(401, "invalid_signature");

    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    let reasons: Vec<String> = audit
        .iter()
        .filter(|e| e.action == "inbound.receive" && e.outcome == "denied")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.detail).unwrap()["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reasons.iter().filter(|r| *r == "replayed").count(), 1, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "stale_timestamp").count(), 2, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "bad_signature").count(), 3, "{reasons:?}");
    assert_eq!(audit.iter().filter(|e| e.action == "inbound.receive" && e.outcome != "denied").count(), 3);
}
