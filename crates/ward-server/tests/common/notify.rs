//! Points Ward's notification channels at the fake providers of `ward_notify::fake`, the
//! settings several tests repeat.

use std::path::Path;

use ward_server::config::NotifyConfig;

/// Polls the outbox every 50 ms so tests do not wait.
pub fn fast(n: &mut NotifyConfig) {
    n.poll_interval_ms = 50;
}

/// SMS through a fake HTTP gateway at `url` (its send path included); the caller gives the
/// token (inline or as a file).
pub fn fake_sms(n: &mut NotifyConfig, url: String) {
    n.sms.enabled = true;
    n.sms.url = url;
}

/// Email through a fake SMTP server on 127.0.0.1 without TLS.
pub fn fake_email(n: &mut NotifyConfig, port: u16) {
    n.email.enabled = true;
    n.email.host = "127.0.0.1".into();
    n.email.port = port;
    n.email.tls = "none".into();
    n.email.from = "Ward <noreply@ward.example>".into();
}

/// FCM through a fake at `base_url`, with the service account file written in `keys`.
pub fn fake_fcm(n: &mut NotifyConfig, base_url: String, keys: &Path) {
    n.fcm.enabled = true;
    n.fcm.base_url = base_url;
    n.fcm.service_account_file = Some(keys.join("fcm.json"));
}
