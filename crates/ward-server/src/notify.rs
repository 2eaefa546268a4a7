//! The delivery worker: drains the notice outbox (patient notices and contact verification
//! codes by SMS, email and push) and the new-message push queue to the configured providers
//! (`ward_notify`). Every node runs one; the store's leased claims keep two nodes from sending
//! the same entry. Nothing is sent on a channel without a provider: those entries stay queued.
//!
//! What leaves is PHI-free by construction: a push carries ids and "New message" / "New
//! notice" only; SMS and email carry text that passed the outbound content policy. Logs and
//! audit entries carry codes only (see docs/notifications.md).

use std::sync::Arc;
use std::time::Duration;

use ward_domain::consent::NoticeChannel;
use ward_notify::{EmailProvider, PushAlert, PushMessage, PushPlatform, PushProvider, SendError, SmsProvider, TextMessage};
use ward_store::{Attempt, ClaimedNotice, ClaimedPush, PushTarget, Store};

use crate::config::{EscalationConfig, NotifyConfig};

/// The providers configured on this node, and the worker's wake-up.
#[derive(Default)]
pub struct Notifier {
    apns: Option<Arc<dyn PushProvider>>,
    fcm: Option<Arc<dyn PushProvider>>,
    sms: Option<Arc<dyn SmsProvider>>,
    email: Option<Arc<dyn EmailProvider>>,
    wake: tokio::sync::Notify,
}

fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    // The error names the setting and the path, never the content.
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

fn http_options(ca_file: Option<&std::path::Path>) -> anyhow::Result<ward_notify::HttpOptions> {
    let ca_pem = match ca_file {
        Some(p) => Some(read_secret(p, "CA file")?),
        None => None,
    };
    Ok(ward_notify::HttpOptions { ca_pem, timeout: None })
}

impl Notifier {
    /// Builds the enabled providers; a bad key or file stops the start.
    pub fn from_config(cfg: &NotifyConfig) -> anyhow::Result<Notifier> {
        let mut n = Notifier::default();
        let a = &cfg.apns;
        if a.enabled {
            let key_pem = read_secret(a.key_file.as_deref().unwrap_or_else(|| std::path::Path::new("")), "notify.apns.key_file")?;
            n.apns = Some(Arc::new(ward_notify::Apns::new(ward_notify::ApnsConfig {
                base_url: a.base_url.clone(),
                key_id: a.key_id.clone(),
                team_id: a.team_id.clone(),
                topic: a.topic.clone(),
                key_pem,
                http: http_options(a.ca_file.as_deref())?,
            })?));
        }
        let f = &cfg.fcm;
        if f.enabled {
            let raw = read_secret(
                f.service_account_file.as_deref().unwrap_or_else(|| std::path::Path::new("")),
                "notify.fcm.service_account_file",
            )?;
            let mut account: ward_notify::ServiceAccount = serde_json::from_slice(&raw)
                .map_err(|_| anyhow::anyhow!("notify.fcm.service_account_file is not a service-account key"))?;
            if let Some(uri) = &f.token_uri {
                account.token_uri = uri.clone();
            }
            n.fcm = Some(Arc::new(ward_notify::Fcm::new(ward_notify::FcmConfig {
                base_url: f.base_url.clone(),
                account,
                http: http_options(f.ca_file.as_deref())?,
            })?));
        }
        let s = &cfg.sms;
        if s.enabled {
            let token = match (&s.token, &s.token_file) {
                (Some(t), _) => t.clone(),
                (None, Some(p)) => String::from_utf8(read_secret(p, "notify.sms.token_file")?)
                    .map_err(|_| anyhow::anyhow!("notify.sms.token_file is not text"))?
                    .trim()
                    .to_owned(),
                (None, None) => anyhow::bail!("notify.sms needs token or token_file"),
            };
            n.sms = Some(Arc::new(ward_notify::SmsGateway::new(ward_notify::SmsGatewayConfig {
                url: s.url.clone(),
                token,
                from: s.from.clone(),
                http: http_options(s.ca_file.as_deref())?,
            })?));
        }
        let e = &cfg.email;
        if e.enabled {
            let password = match (&e.password, &e.password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(p)) => Some(
                    String::from_utf8(read_secret(p, "notify.email.password_file")?)
                        .map_err(|_| anyhow::anyhow!("notify.email.password_file is not text"))?
                        .trim()
                        .to_owned(),
                ),
                (None, None) => None,
            };
            let tls = match e.tls.as_str() {
                "implicit" => ward_notify::SmtpTls::Implicit,
                "none" => ward_notify::SmtpTls::None,
                _ => ward_notify::SmtpTls::StartTls,
            };
            n.email = Some(Arc::new(ward_notify::Smtp::new(ward_notify::SmtpConfig {
                host: e.host.clone(),
                port: e.port,
                tls,
                username: e.username.clone(),
                password,
                from: e.from.clone(),
            })?));
        }
        Ok(n)
    }

    /// Whether any push provider is configured (new-message pushes are queued only then).
    pub fn push_enabled(&self) -> bool {
        self.apns.is_some() || self.fcm.is_some()
    }

    /// The outbox channels this node can deliver.
    pub fn channels(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.sms.is_some() {
            v.push("sms");
        }
        if self.email.is_some() {
            v.push("email");
        }
        if self.push_enabled() {
            v.push("push");
        }
        v
    }

    /// Whether anything is configured at all.
    pub fn any(&self) -> bool {
        !self.channels().is_empty()
    }

    /// Wakes the worker (something was just queued).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    fn push_provider(&self, platform: &str) -> Option<&Arc<dyn PushProvider>> {
        match PushPlatform::parse(platform)? {
            PushPlatform::Apns => self.apns.as_ref(),
            PushPlatform::Fcm => self.fcm.as_ref(),
        }
    }

    async fn push_one(&self, target: &PushTarget, msg: &PushMessage) -> Result<(), SendError> {
        match self.push_provider(&target.platform) {
            Some(p) => p.push(&target.token, msg).await,
            None => Err(SendError::Permanent { code: "no_provider".into() }),
        }
    }
}

/// The wait before retry `attempt` (1-based): base, doubling, at most an hour.
fn backoff_ms(cfg: &NotifyConfig, attempt: i64) -> i64 {
    let factor = 1i64 << attempt.clamp(1, 20).saturating_sub(1);
    (cfg.retry_base_ms as i64).saturating_mul(factor).min(3_600_000)
}

fn outcome(cfg: &NotifyConfig, attempt: i64, r: Result<(), SendError>) -> Attempt {
    match r {
        Ok(()) => Attempt::Sent,
        Err(SendError::Retryable { code }) => Attempt::Retry { code, after_ms: backoff_ms(cfg, attempt) },
        Err(SendError::Permanent { code }) => Attempt::Failed { code },
        Err(SendError::Unregistered { code }) => Attempt::Unregistered { code, device: None },
    }
}

/// Delivers one claimed outbox entry; returns how its attempt ended.
async fn deliver_notice(store: &Store, n: &Notifier, cfg: &NotifyConfig, c: &ClaimedNotice) -> Attempt {
    let text = |to: &str| TextMessage { to: to.to_owned(), subject: cfg.email_subject.clone(), body: c.body.clone() };
    match (c.channel, c.to.as_deref()) {
        (NoticeChannel::Sms, Some(to)) => match &n.sms {
            Some(p) => outcome(cfg, c.attempt, p.sms(&text(to)).await),
            None => Attempt::Retry { code: "no_provider".into(), after_ms: backoff_ms(cfg, c.attempt) },
        },
        (NoticeChannel::Email, Some(to)) => match &n.email {
            Some(p) => outcome(cfg, c.attempt, p.email(&text(to)).await),
            None => Attempt::Retry { code: "no_provider".into(), after_ms: backoff_ms(cfg, c.attempt) },
        },
        (NoticeChannel::Push, _) => {
            // The app fetches the notice over TLS: the push names it, nothing more.
            let msg = PushMessage { alert: PushAlert::NewNotice, data: vec![("notice_id", c.id)], high_priority: false };
            if c.devices.is_empty() {
                return Attempt::Failed { code: "no_device".into() };
            }
            let mut results = Vec::new();
            for d in &c.devices {
                let r = n.push_one(d, &msg).await;
                if let Err(SendError::Unregistered { .. }) = &r {
                    let _ = store.remove_push_token(c.org_id, None, d.device_id, "unregistered", ward_store::RequestMeta::default()).await;
                }
                results.push(r);
            }
            if results.iter().any(Result::is_ok) {
                Attempt::Sent
            } else if let Some(Err(e)) = results.iter().find(|r| matches!(r, Err(e) if e.is_retryable())) {
                Attempt::Retry { code: e.code().to_owned(), after_ms: backoff_ms(cfg, c.attempt) }
            } else {
                let code = results.iter().find_map(|r| r.as_ref().err()).map_or("no_device".to_owned(), |e| e.code().to_owned());
                Attempt::Failed { code }
            }
        }
        (_, None) => Attempt::Failed { code: "no_device".into() },
    }
}

async fn deliver_push(n: &Notifier, cfg: &NotifyConfig, p: &ClaimedPush) -> Attempt {
    let mut data = vec![("conversation_id", p.conversation_id)];
    if let Some(m) = p.message_id {
        data.push(("message_id", m));
    }
    let alert = if p.escalation { PushAlert::UrgentUnread } else { PushAlert::NewMessage };
    let msg = PushMessage { alert, data, high_priority: p.high_priority };
    outcome(cfg, p.attempt, n.push_one(&p.target, &msg).await)
}

/// One pass: claims and delivers what is due; returns how many entries were attempted.
///
/// A batch is claimed under one lease, but sent one entry at a time, and slow providers can
/// outlast it: another node may then reclaim an entry and send it. So each entry's lease is
/// renewed (conditionally: still ours, still sending, not yet lapsed) right before its send,
/// and an entry whose lease is gone is skipped. One send (HTTP 15 s, SMTP 20 s) stays well
/// under the minimum lease of 60 s (`notify.lease_secs`).
pub async fn run_once(store: &Store, n: &Notifier, cfg: &NotifyConfig, node: &str) -> usize {
    let lease_ms = (cfg.lease_secs * 1000) as i64;
    let max = i64::from(cfg.max_attempts);
    let mut done = 0;
    let channels = n.channels();
    if !channels.is_empty() {
        match store.claim_notices(node.to_owned(), channels, lease_ms, 50, max).await {
            Ok(claimed) => {
                for c in claimed {
                    if !still_ours(store.renew_notice_lease(node.to_owned(), c.id, lease_ms).await, c.id) {
                        continue;
                    }
                    let result = deliver_notice(store, n, cfg, &c).await;
                    if let Attempt::Retry { code, .. } | Attempt::Failed { code } | Attempt::Unregistered { code, .. } = &result {
                        tracing::info!(entry = %c.id, channel = c.channel.as_str(), attempt = c.attempt, code = %code, "delivery attempt failed");
                    }
                    if let Err(e) = store.finish_notice(node.to_owned(), c, result, max).await {
                        tracing::warn!(error = %e, "could not record a delivery attempt");
                    }
                    done += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox claim failed"),
        }
    }
    if n.push_enabled() {
        match store.claim_pushes(node.to_owned(), lease_ms, 100, max).await {
            Ok(claimed) => {
                for p in claimed {
                    if !still_ours(store.renew_push_lease(node.to_owned(), p.id, lease_ms).await, p.id) {
                        continue;
                    }
                    let result = deliver_push(n, cfg, &p).await;
                    if let Err(e) = store.finish_push(node.to_owned(), p, result, max).await {
                        tracing::warn!(error = %e, "could not record a push attempt");
                    }
                    done += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "push claim failed"),
        }
    }
    done
}

/// Whether a lease renewal left the entry with this node; a failed renewal is treated as lost
/// (the entry is sent later by whoever holds it, never twice).
fn still_ours(r: ward_store::Result<bool>, id: uuid::Uuid) -> bool {
    match r {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!(entry = %id, "lease lapsed before sending; left to the node that holds it");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, entry = %id, "could not renew a delivery lease");
            false
        }
    }
}

/// Spawns the worker if any provider is configured.
pub fn spawn(store: Store, n: Arc<Notifier>, cfg: NotifyConfig) -> Option<tokio::task::JoinHandle<()>> {
    if !n.any() {
        return None;
    }
    let node = format!("node-{}", uuid::Uuid::new_v4());
    Some(tokio::spawn(async move {
        let interval = Duration::from_millis(cfg.poll_interval_ms);
        loop {
            // A full batch: look again at once.
            if run_once(&store, &n, &cfg, &node).await >= 50 {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = n.wake.notified() => {}
            }
        }
    }))
}

/// Spawns the escalation task (`[escalation]`, with a push provider configured): every pass
/// runs the steps that are due and wakes the delivery worker when it queued pushes. Safe on
/// every node: each step is claimed by inserting its record, so two nodes never run the same
/// step of the same message.
pub fn spawn_escalation(store: Store, n: Arc<Notifier>, cfg: EscalationConfig) -> Option<tokio::task::JoinHandle<()>> {
    // Without a push provider there is nobody to page: the task does not run (its pushes would
    // otherwise wait in the queue and go out stale once a provider is configured). With an SMS
    // provider as well, step 2 also texts the on-call users' verified phones.
    if !cfg.enabled || !n.push_enabled() {
        return None;
    }
    let delays = ward_store::EscalationDelays {
        stat_ms: (cfg.stat_renotify_secs * 1000) as i64,
        urgent_ms: (cfg.urgent_renotify_secs * 1000) as i64,
        sms: n.sms.is_some(),
    };
    // A quarter of the shorter delay, between a quarter second and fifteen seconds.
    let every = Duration::from_millis((cfg.stat_renotify_secs.min(cfg.urgent_renotify_secs) * 250).clamp(250, 15_000));
    Some(tokio::spawn(async move {
        loop {
            match store.escalate_due(delays, 100).await {
                Ok(k) if k > 0 => {
                    tracing::info!(steps = k, "escalation steps recorded");
                    n.nudge();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "escalation pass failed"),
            }
            tokio::time::sleep(every).await;
        }
    }))
}
