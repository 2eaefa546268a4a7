//! Each provider client against a local fake that records what it receives.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use ward_notify::fake::{FakeHttp, FakeSmtp};
use ward_notify::{
    Apns, ApnsConfig, EmailProvider, Fcm, FcmConfig, HttpOptions, PushAlert, PushMessage, PushProvider, SendError, ServiceAccount,
    SmsGateway, SmsGatewayConfig, SmsProvider, Smtp, SmtpConfig, SmtpTls, TextMessage,
};

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
}

/// Splits a JWT, checks its signature with `verify`, returns (header, claims).
fn check_jwt(jwt: &str, verify: impl Fn(&[u8], &[u8]) -> bool) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert!(verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig), "the signature verifies with the test key");
    let dec = |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(parts[0]), dec(parts[1]))
}

fn msg(high: bool) -> PushMessage {
    PushMessage {
        alert: PushAlert::NewMessage,
        data: vec![("conversation_id", uuid::Uuid::from_u128(1)), ("message_id", uuid::Uuid::from_u128(2))],
        high_priority: high,
    }
}

const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

async fn apns() -> (FakeHttp, Apns, Vec<u8>) {
    let fake = FakeHttp::start_tls_h2().await;
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let client = Apns::new(ApnsConfig {
        base_url: fake.url.clone(),
        key_id: "KEYID12345".into(),
        team_id: "TEAMID6789".into(),
        topic: "org.example.ward".into(),
        key_pem: pem("PRIVATE KEY", doc.as_ref()).into_bytes(),
        http: HttpOptions { ca_pem: fake.ca_pem.clone(), timeout: None },
    })
    .unwrap();
    (fake, client, public)
}

#[tokio::test]
async fn apns_sends_over_http2_with_token_auth_and_an_id_only_payload() {
    let (fake, client, public) = apns().await;
    client.push(TOKEN, &msg(true)).await.unwrap();
    client.push(TOKEN, &msg(false)).await.unwrap();
    let got = fake.sends();
    assert_eq!(got.len(), 2);
    let r = &got[0];
    assert_eq!(r.version, "HTTP/2.0");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/3/device/{TOKEN}"));
    assert_eq!(r.header("apns-topic"), Some("org.example.ward"));
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(got[1].header("apns-priority"), Some("5"));
    let jwt = r.header("authorization").unwrap().strip_prefix("bearer ").unwrap();
    let (header, claims) = check_jwt(jwt, |m, s| UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public).verify(m, s).is_ok());
    assert_eq!(header, json!({"alg": "ES256", "kid": "KEYID12345"}));
    assert_eq!(claims["iss"], "TEAMID6789");
    assert!(claims["iat"].as_u64().unwrap() > 1_700_000_000);
    // The provider token is reused, not signed per push.
    assert_eq!(got[1].header("authorization"), r.header("authorization"));
    assert_eq!(
        r.json(),
        json!({"aps": {"alert": {"body": "New message"}, "sound": "default"},
               "conversation_id": "00000000-0000-0000-0000-000000000001", "message_id": "00000000-0000-0000-0000-000000000002"})
    );
}

#[tokio::test]
async fn apns_errors_map_to_unregistered_retryable_and_permanent() {
    let (fake, client, _) = apns().await;
    fake.script(&[
        (410, r#"{"reason":"Unregistered"}"#),
        (503, "{}"),
        (400, r#"{"reason":"BadDeviceToken"}"#),
        (400, r#"{"reason":"PayloadEmpty"}"#),
    ]);
    assert!(matches!(client.push(TOKEN, &msg(false)).await, Err(SendError::Unregistered { .. })));
    let e = client.push(TOKEN, &msg(false)).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.code(), "http_503");
    assert!(matches!(client.push(TOKEN, &msg(false)).await, Err(SendError::Unregistered { .. })));
    assert!(matches!(client.push(TOKEN, &msg(false)).await, Err(SendError::Permanent { .. })));
    // A token that is not hex never reaches the wire (it would change the path).
    assert!(matches!(client.push("../x", &msg(false)).await, Err(SendError::Unregistered { .. })));
    assert_eq!(fake.sends().len(), 4);
}

async fn fcm() -> (FakeHttp, Fcm, Vec<u8>) {
    let fake = FakeHttp::start().await;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = key.as_der().unwrap();
    let public = key.public_key().as_ref().to_vec();
    let client = Fcm::new(FcmConfig {
        base_url: fake.url.clone(),
        account: ServiceAccount {
            project_id: "ward-test".into(),
            client_email: "push@ward-test.example".into(),
            private_key: pem("PRIVATE KEY", der.as_ref()),
            token_uri: format!("{}/token", fake.url),
        },
        http: HttpOptions::default(),
    })
    .unwrap();
    (fake, client, public)
}

#[tokio::test]
async fn fcm_gets_a_token_with_a_signed_grant_then_sends_a_v1_message() {
    let (fake, client, public) = fcm().await;
    client.push("fcm-device-token", &msg(true)).await.unwrap();
    client.push("fcm-device-token", &msg(false)).await.unwrap();
    let all = fake.requests();
    assert_eq!(all.len(), 3, "one grant, two sends: the access token is reused");
    let grant = &all[0];
    assert_eq!(grant.path, "/token");
    assert_eq!(grant.header("content-type"), Some("application/x-www-form-urlencoded"));
    let assertion = grant.body.strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=").unwrap();
    let (header, claims) = check_jwt(assertion, |m, s| UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public).verify(m, s).is_ok());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "push@ward-test.example");
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/firebase.messaging");
    assert_eq!(claims["aud"], format!("{}/token", fake.url));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
    let send = &all[1];
    assert_eq!(send.path, "/v1/projects/ward-test/messages:send");
    assert_eq!(send.header("authorization"), Some("Bearer fake-access-token"));
    assert_eq!(
        send.json(),
        json!({"message": {"token": "fcm-device-token", "notification": {"body": "New message"},
            "data": {"conversation_id": "00000000-0000-0000-0000-000000000001", "message_id": "00000000-0000-0000-0000-000000000002"},
            "android": {"priority": "HIGH"}}})
    );
    assert_eq!(all[2].json()["message"]["android"]["priority"], "NORMAL");
}

#[tokio::test]
async fn fcm_unregistered_and_retryable_errors() {
    let (fake, client, _) = fcm().await;
    let unreg = r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
    fake.script(&[
        (404, unreg),
        (404, r#"{"error":{"code":404,"status":"NOT_FOUND"}}"#),
        (500, "{}"),
        (400, r#"{"error":{"code":400,"status":"INVALID_ARGUMENT"}}"#),
    ]);
    assert!(matches!(client.push("t", &msg(false)).await, Err(SendError::Unregistered { .. })));
    // A 404 without FCM's UNREGISTERED (a wrong project id, say) keeps the token.
    assert!(matches!(client.push("t", &msg(false)).await, Err(SendError::Permanent { .. })));
    assert!(client.push("t", &msg(false)).await.unwrap_err().is_retryable());
    assert!(matches!(client.push("t", &msg(false)).await, Err(SendError::Permanent { .. })));
}

#[tokio::test]
async fn sms_gateway_posts_json_with_a_bearer_token() {
    let fake = FakeHttp::start().await;
    let client = SmsGateway::new(SmsGatewayConfig {
        url: format!("{}/sms/send", fake.url),
        token: "gateway-secret".into(),
        from: Some("WARD".into()),
        http: HttpOptions::default(),
    })
    .unwrap();
    let m = TextMessage { to: "+15555550100".into(), subject: String::new(), body: "Your code is 123456".into() };
    fake.script(&[(500, "{}"), (202, "{}"), (410, "{}"), (400, "{}")]);
    assert!(client.sms(&m).await.unwrap_err().is_retryable());
    client.sms(&m).await.unwrap();
    assert!(matches!(client.sms(&m).await, Err(SendError::Unregistered { .. })));
    assert!(matches!(client.sms(&m).await, Err(SendError::Permanent { .. })));
    let r = &fake.sends()[1];
    assert_eq!(r.path, "/sms/send");
    assert_eq!(r.header("authorization"), Some("Bearer gateway-secret"));
    assert_eq!(r.json(), json!({"to": "+15555550100", "text": "Your code is 123456", "from": "WARD"}));
}

#[tokio::test]
async fn smtp_delivers_through_lettre_and_maps_reply_codes() {
    let fake = FakeSmtp::start().await;
    let client = Smtp::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port: fake.port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Ward <noreply@ward.example>".into(),
    })
    .unwrap();
    let m =
        TextMessage { to: "pat@example.org".into(), subject: "A message from your care team".into(), body: "Your code is 654321".into() };
    client.email(&m).await.unwrap();
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].commands.iter().any(|c| c == "MAIL FROM:<noreply@ward.example>"), "{:?}", got[0].commands);
    assert!(got[0].commands.iter().any(|c| c == "RCPT TO:<pat@example.org>"));
    assert!(got[0].data.contains("Subject: A message from your care team"));
    assert!(got[0].data.contains("Your code is 654321"));
    fake.script_rcpt(&[451, 550]);
    assert!(client.email(&m).await.unwrap_err().is_retryable());
    assert!(matches!(client.email(&m).await, Err(SendError::Permanent { .. })));
}
