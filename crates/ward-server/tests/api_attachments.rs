//! Encrypted attachments over real HTTPS: upload and download of a multi-chunk file, the size
//! limit, the type allow-list (checked on the content), location metadata removed from images,
//! membership, tampering with the stored object, messages that refer to attachments, and a
//! canary (content and file name) that must not appear in any file Ward keeps.

mod common;

use std::path::{Path, PathBuf};

use common::{Harness, Session};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends, on_sqlite};

on_both_backends!(a_multi_chunk_file_round_trips_encrypted_and_messages_refer_to_it);
on_sqlite!(the_size_limit_refuses_large_uploads, only_allowed_types_recognised_from_the_content_are_accepted);
on_sqlite!(gps_exif_is_removed_from_jpeg_images, a_truncated_or_reordered_object_is_refused, an_s3_compatible_store_round_trips);

const CANARY: &str = "canary-attach-5d21";
const NAME_CANARY: &str = "canary-name-88ce";

/// A PDF-looking body of `len` bytes carrying the canary.
fn pdf(len: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    let mut i = 0u32;
    while b.len() < len {
        b.extend_from_slice(format!("% {CANARY} line {i}\n").as_bytes());
        i += 1;
    }
    b.truncate(len);
    b
}

async fn upload(h: &Harness, s: &Session, conv: &str, content_type: &str, name: Option<&str>, bytes: Vec<u8>) -> common::Reply {
    let mut req = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/attachments", h.url))
        .bearer_auth(&s.access)
        .header("content-type", content_type)
        .body(bytes);
    if let Some(n) = name {
        req = req.header("x-file-name", utf8_percent_encode(n, NON_ALPHANUMERIC).to_string());
    }
    let res = req.send().await.expect("request reaches the server");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    common::Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// Downloads raw bytes: status, headers, body.
async fn download(h: &Harness, s: &Session, conv: &str, id: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = h
        .http
        .get(format!("{}/api/v1/conversations/{conv}/attachments/{id}", h.url))
        .bearer_auth(&s.access)
        .send()
        .await
        .expect("request reaches the server");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    (status, headers, body)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { todo.push(p) } else { out.push(p) }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct Setup {
    h: Harness,
    owner: Session,
    member: Session,
    outsider: Session,
    foreign: Session,
    org: ward_store::Org,
    conv: String,
}

async fn setup(backend: Backend, adjust: impl FnOnce(&mut ward_server::Config)) -> Option<Setup> {
    let h = Harness::start_with(backend, adjust).await?;
    let org = h.org("attach", vec![]).await;
    let other_org = h.org("elsewhere", vec![]).await;
    let owner = h.account(&org, "owner", Role::Clinician).await;
    let member = h.account(&org, "member", Role::Nurse).await;
    let outsider = h.account(&org, "outsider", Role::Clinician).await;
    let foreign = h.account(&other_org, "foreign", Role::Clinician).await;
    let (owner, member, outsider, foreign) =
        (h.login(&owner).await, h.login(&member).await, h.login(&outsider).await, h.login(&foreign).await);
    let conv = h.conversation(&owner, "group", &[&member.account]).await;
    Some(Setup { h, owner, member, outsider, foreign, org, conv })
}

async fn a_multi_chunk_file_round_trips_encrypted_and_messages_refer_to_it(backend: Backend) {
    let Some(Setup { h, owner, member, outsider, foreign, conv, .. }) = setup(backend, |_| {}).await else { return };
    let content = pdf(3 * 64 * 1024 + 1234);
    let name = format!("Scan {NAME_CANARY} é.pdf");
    let r = upload(&h, &owner, &conv, "application/pdf", Some(&name), content.clone()).await.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["content_type"], "application/pdf");
    assert_eq!(r.body["size"], content.len());
    assert_eq!(r.body["file_name"], name);

    // Any member reads it back whole, with headers that keep it out of caches and browsers.
    let (status, headers, body) = download(&h, &member, &conv, &id).await;
    assert_eq!(status, 200);
    assert!(body == content, "the downloaded content differs");
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains(&utf8_percent_encode(&name, NON_ALPHANUMERIC).to_string()), "{disposition}");

    // Outsiders and other tenants learn nothing: 404 exactly like an attachment that does not exist.
    for s in [&outsider, &foreign] {
        let (status, _, body) = download(&h, s, &conv, &id).await;
        assert_eq!(status, 404);
        assert!(!contains(&body, CANARY.as_bytes()));
        upload(&h, s, &conv, "application/pdf", None, pdf(100)).await.expect_problem(404, "not_found");
    }
    let (status, _, _) = download(&h, &owner, &conv, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(status, 404);

    // A message refers to it; a retry must repeat the same attachments.
    let path = format!("/api/v1/conversations/{conv}/messages");
    let m = h.post(&path, &owner.access, json!({"client_txn_id": "att-1", "body": "see scan", "attachments": [id]})).await.expect(201);
    assert_eq!(m.body["attachments"], json!([id]));
    h.post(&path, &owner.access, json!({"client_txn_id": "att-1", "body": "see scan", "attachments": [id]})).await.expect(200);
    h.post(&path, &owner.access, json!({"client_txn_id": "att-1", "body": "see scan"})).await.expect_problem(409, "client_txn_id_reused");
    let page = h.get(&path, &member.access).await.expect(200);
    assert_eq!(page.body["items"][0]["attachments"], json!([id]));
    // Only one's own uploads of this conversation, each once, at most ten.
    h.post(&path, &member.access, json!({"client_txn_id": "att-2", "body": "x", "attachments": [id]}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(&path, &owner.access, json!({"client_txn_id": "att-3", "body": "x", "attachments": [uuid::Uuid::now_v7()]}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(&path, &owner.access, json!({"client_txn_id": "att-4", "body": "x", "attachments": [id, id]}))
        .await
        .expect_problem(422, "validation_failed");
    let eleven: Vec<String> = (0..11).map(|_| id.clone()).collect();
    h.post(&path, &owner.access, json!({"client_txn_id": "att-5", "body": "x", "attachments": eleven}))
        .await
        .expect_problem(422, "validation_failed");
    let other_conv = h.conversation(&owner, "group", &[&member.account]).await;
    h.post(
        &format!("/api/v1/conversations/{other_conv}/messages"),
        &owner.access,
        json!({"client_txn_id": "att-6", "body": "x", "attachments": [id]}),
    )
    .await
    .expect_problem(422, "validation_failed");

    // Uploads and downloads are audited, without the file name.
    let events = h.store.audit_events(0, 10_000).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"attachment.upload") && actions.contains(&"attachment.download"), "{actions:?}");
    for e in &events {
        assert!(!e.detail.contains(NAME_CANARY) && !e.detail.contains(CANARY));
    }

    // Neither the content nor the file name is in any file Ward keeps (database, WAL, the
    // attachment store, keys).
    let files = files_under(h.db.dir.path());
    assert!(files.iter().any(|f| f.components().any(|c| c.as_os_str() == "attachments")), "no attachment store in {files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!contains(&bytes, CANARY.as_bytes()), "the content canary is in {}", f.display());
        assert!(!contains(&bytes, NAME_CANARY.as_bytes()), "the file name canary is in {}", f.display());
    }
}

async fn the_size_limit_refuses_large_uploads(backend: Backend) {
    let Some(Setup { h, owner, conv, .. }) = setup(backend, |c| c.attachments.max_bytes = 100 * 1024).await else { return };
    upload(&h, &owner, &conv, "application/pdf", None, pdf(100 * 1024 + 1)).await.expect_problem(413, "attachment_too_large");
    let r = upload(&h, &owner, &conv, "application/pdf", None, pdf(100 * 1024)).await.expect(201);
    assert_eq!(r.body["size"], 100 * 1024);
    // Nothing of the refused upload is left behind: exactly one object.
    let store = files_under(&h.db.dir.path().join("attachments"));
    assert_eq!(store.len(), 1, "{store:?}");
}

async fn only_allowed_types_recognised_from_the_content_are_accepted(backend: Backend) {
    let Some(Setup { h, owner, conv, .. }) = setup(backend, |_| {}).await else { return };
    // A text file renamed and declared as PNG.
    let text = b"just some text pretending to be a picture\n".repeat(10);
    upload(&h, &owner, &conv, "image/png", Some("photo.png"), text.clone()).await.expect_problem(415, "attachment_type_not_allowed");
    // A real PDF declared as something else.
    upload(&h, &owner, &conv, "image/png", None, pdf(2000)).await.expect_problem(415, "attachment_type_not_allowed");
    // No declared type.
    let r = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/attachments", h.url))
        .bearer_auth(&owner.access)
        .body(pdf(2000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // A recognised type that is not on the list (GIF is off by default).
    upload(&h, &owner, &conv, "image/gif", None, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec())
        .await
        .expect_problem(415, "attachment_type_not_allowed");
    // Empty body.
    upload(&h, &owner, &conv, "application/pdf", None, Vec::new()).await.expect_problem(415, "attachment_type_not_allowed");
    // The declared type may carry parameters and any letter case.
    upload(&h, &owner, &conv, "Application/PDF; charset=binary", None, pdf(2000)).await.expect(201);
    assert_eq!(files_under(&h.db.dir.path().join("attachments")).len(), 1);
}

/// A small JPEG with GPS coordinates and a description in its EXIF block.
fn jpeg_with_gps() -> Vec<u8> {
    use little_exif::exif_tag::ExifTag;
    use little_exif::filetype::FileExtension;
    use little_exif::metadata::Metadata;
    use little_exif::rational::uR64;
    let (w, h) = (32u16, 24u16);
    let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h)).flat_map(|i| [(i % 251) as u8, (i % 13) as u8 * 19, 200]).collect();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 85).encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    let r = |n, d| uR64 { nominator: n, denominator: d };
    let mut meta = Metadata::new();
    meta.set_tag(ExifTag::ImageDescription(format!("taken at {CANARY}")));
    meta.set_tag(ExifTag::GPSLatitudeRef("N".into()));
    meta.set_tag(ExifTag::GPSLatitude(vec![r(51, 1), r(30, 1), r(2634, 100)]));
    meta.set_tag(ExifTag::GPSLongitudeRef("W".into()));
    meta.set_tag(ExifTag::GPSLongitude(vec![r(0, 1), r(7, 1), r(3960, 100)]));
    meta.write_to_vec(&mut jpeg, FileExtension::JPEG).unwrap();
    jpeg
}

fn has_gps(jpeg: &[u8]) -> bool {
    use little_exif::filetype::FileExtension;
    use little_exif::metadata::Metadata;
    Metadata::new_from_vec(&jpeg.to_vec(), FileExtension::JPEG)
        .map(|m| (&m).into_iter().any(|t| format!("{t:?}").starts_with("GPS")))
        .unwrap_or(false)
}

async fn gps_exif_is_removed_from_jpeg_images(backend: Backend) {
    let Some(Setup { h, owner, member, conv, .. }) = setup(backend, |_| {}).await else { return };
    let original = jpeg_with_gps();
    assert!(
        has_gps(&original) && contains(&original, b"Exif\0\0") && contains(&original, CANARY.as_bytes()),
        "the fixture lacks its GPS EXIF"
    );
    let r = upload(&h, &owner, &conv, "image/jpeg", Some("ward.jpg"), original.clone()).await.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let (status, headers, back) = download(&h, &member, &conv, &id).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(r.body["size"], back.len());
    assert!(!has_gps(&back), "GPS tags survived");
    assert!(!contains(&back, b"Exif\0\0") && !contains(&back, CANARY.as_bytes()), "the EXIF block survived");
    // Still the same picture: every segment but the metadata is intact.
    let parsed = img_parts::jpeg::Jpeg::from_bytes(back.clone().into()).expect("still a JPEG");
    let orig = img_parts::jpeg::Jpeg::from_bytes(original.into()).unwrap();
    assert_eq!(parsed.dimensions(), orig.dimensions());
    assert_eq!(parsed.segments().len() + 1, orig.segments().len());
}

async fn a_truncated_or_reordered_object_is_refused(backend: Backend) {
    let Some(Setup { h, owner, org, conv, .. }) = setup(backend, |_| {}).await else { return };
    const SEALED_CHUNK: usize = 64 * 1024 + 16;
    let mut objects = Vec::new();
    for _ in 0..4 {
        let r = upload(&h, &owner, &conv, "application/pdf", None, pdf(3 * 64 * 1024 + 77)).await.expect(201);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let file = h.db.dir.path().join("attachments").join(org.id.to_string()).join(&conv).join(&id);
        assert!(file.is_file(), "no object at {}", file.display());
        objects.push((id, file));
    }
    let read = |f: &PathBuf| std::fs::read(f).unwrap();
    // Truncated at a chunk boundary (the length no longer matches).
    let (id, f) = &objects[0];
    let sealed = read(f);
    std::fs::write(f, &sealed[..2 * SEALED_CHUNK]).unwrap();
    let tampered = [id.clone()];
    // The first two chunks swapped (same length).
    let (id1, f) = &objects[1];
    let sealed = read(f);
    let mut swapped = sealed[SEALED_CHUNK..2 * SEALED_CHUNK].to_vec();
    swapped.extend_from_slice(&sealed[..SEALED_CHUNK]);
    swapped.extend_from_slice(&sealed[2 * SEALED_CHUNK..]);
    std::fs::write(f, swapped).unwrap();
    // A later chunk swapped with the one before it.
    let (id2, f) = &objects[2];
    let sealed = read(f);
    let mut late = sealed[..SEALED_CHUNK].to_vec();
    late.extend_from_slice(&sealed[2 * SEALED_CHUNK..3 * SEALED_CHUNK]);
    late.extend_from_slice(&sealed[SEALED_CHUNK..2 * SEALED_CHUNK]);
    late.extend_from_slice(&sealed[3 * SEALED_CHUNK..]);
    std::fs::write(f, late).unwrap();
    // One bit flipped in the last chunk.
    let (id3, f) = &objects[3];
    let mut flipped = read(f);
    let last = flipped.len() - 5;
    flipped[last] ^= 1;
    std::fs::write(f, flipped).unwrap();
    for id in tampered.iter().chain([id1, id2, id3]) {
        let (status, headers, body) = download(&h, &owner, &conv, id).await;
        assert_eq!(status, 500, "tampered object {id} was served");
        assert_eq!(headers["content-type"], "application/problem+json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "attachment_damaged");
        assert!(!contains(&body, CANARY.as_bytes()));
    }
    // A missing object is damaged too.
    std::fs::remove_file(&objects[0].1).unwrap();
    let (status, _, _) = download(&h, &owner, &conv, &objects[0].0).await;
    assert_eq!(status, 500);
}

/// The same round trip against an S3-compatible store (moto's server on 127.0.0.1), with a file
/// large enough for a multipart upload of several parts; the stored object holds no plaintext
/// and a truncated one is refused.
async fn an_s3_compatible_store_round_trips(backend: Backend) {
    let Some(moto) = ward_crypto::testing::MotoServer::start() else { return };
    let endpoint = moto.endpoint().to_owned();
    let bucket = "ward-attachments";
    let plain = reqwest::Client::new();
    let r = plain.put(format!("{endpoint}/{bucket}")).send().await.expect("moto answers");
    assert!(r.status().is_success(), "cannot create the bucket: {}", r.status());
    let ep = endpoint.clone();
    let Some(Setup { h, owner, member, outsider, org, conv, .. }) = setup(backend, move |c| {
        c.attachments.store = ward_server::config::AttachmentStoreKind::S3;
        c.attachments.s3 = ward_server::config::S3Config {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: Some(ep),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
        };
    })
    .await
    else {
        return;
    };
    let content = pdf(9 * 1024 * 1024 + 4321);
    let r = upload(&h, &owner, &conv, "application/pdf", Some(NAME_CANARY), content.clone()).await.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let (status, headers, body) = download(&h, &member, &conv, &id).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(body == content, "the content read back from S3 differs");
    let (status, _, _) = download(&h, &outsider, &conv, &id).await;
    assert_eq!(status, 404);

    // In the bucket: sealed bytes only, under ids only.
    let url = format!("{endpoint}/{bucket}/{}/{conv}/{id}", org.id);
    let sealed = plain.get(&url).send().await.unwrap().bytes().await.unwrap().to_vec();
    assert_eq!(sealed.len() as u64, ward_crypto::stream::sealed_len(content.len() as u64));
    assert!(!contains(&sealed, CANARY.as_bytes()));
    let listing = plain.get(format!("{endpoint}/{bucket}")).send().await.unwrap().text().await.unwrap();
    assert!(listing.contains(&id) && !listing.contains(NAME_CANARY), "{listing}");
    // Nothing on local disk either.
    assert!(!h.db.dir.path().join("attachments").exists() || files_under(&h.db.dir.path().join("attachments")).is_empty());

    // A truncated object is refused.
    let r = plain.put(&url).body(sealed[..sealed.len() - 100].to_vec()).send().await.unwrap();
    assert!(r.status().is_success());
    let (status, _, body) = download(&h, &member, &conv, &id).await;
    assert_eq!(status, 500);
    assert!(!contains(&body, CANARY.as_bytes()));
    drop(moto);
}
