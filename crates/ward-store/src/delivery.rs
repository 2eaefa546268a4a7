//! Delivery state for what leaves Ward through an outside provider: device push tokens, the
//! new-message push queue, and the claim / finish cycle the delivery worker runs over both
//! queues (`notice_outbox`, `push_outbox`). A claim is a conditional update (`queued`, or
//! `sending` with a lapsed lease, to `sending` under this node's lease), so two nodes never
//! both take an entry; only the lease holder can finish it. Every step is audited with codes
//! only: never a destination, a token or a text.

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::{ConsentChannel, NoticeChannel};
use ward_domain::ids::{DeviceId, OrgId, PatientId, UserId};

use crate::consents::current_consent;
use crate::contacts::{ContactOwner, contact_for_delivery, contact_message_context};
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::notices::outbox_context;
use crate::{RequestMeta, Store, audit, now_ms};

/// A device's registered push token, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// The device.
    pub device_id: DeviceId,
    /// `apns` or `fcm`.
    pub platform: String,
    /// The provider's token.
    pub token: String,
}

/// What a device's push registration looks like to its owner (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    /// The device.
    pub device_id: DeviceId,
    /// `apns` or `fcm`.
    pub platform: String,
    /// Unix ms.
    pub created_at: i64,
}

/// An outbox entry claimed for delivery, with what the provider needs opened.
#[derive(Debug, Clone)]
pub struct ClaimedNotice {
    /// The entry.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// `notice`, `verification` or `redirect` (the reply to a patient who wrote in).
    pub kind: String,
    /// The medium.
    pub channel: NoticeChannel,
    /// The attempt this is (1 for the first).
    pub attempt: i64,
    /// SMS and email: the phone number or address.
    pub to: Option<String>,
    /// SMS and email: the text. Push: empty (a push carries only the notice id).
    pub body: String,
    /// Push: the patient's app devices.
    pub devices: Vec<PushTarget>,
    /// The contact it goes to.
    pub contact_id: Option<uuid::Uuid>,
}

/// A new-message push claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedPush {
    /// The queue entry.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// The device and its token.
    pub target: PushTarget,
    /// Ids the app fetches the message with.
    pub conversation_id: uuid::Uuid,
    /// The message.
    pub message_id: Option<uuid::Uuid>,
    /// Urgent or STAT.
    pub high_priority: bool,
    /// An escalation ("Urgent message needs attention") rather than a new-message push.
    pub escalation: bool,
    /// The attempt this is.
    pub attempt: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The provider accepted it.
    Sent,
    /// Try again after this many ms (unless attempts ran out: then failed).
    Retry {
        /// Provider error code.
        code: String,
        /// Backoff.
        after_ms: i64,
    },
    /// Will never succeed.
    Failed {
        /// Provider error code.
        code: String,
    },
    /// The destination is gone (push token removed; SMS number suppressed as disconnected).
    Unregistered {
        /// Provider error code.
        code: String,
        /// The device whose token the provider refused (push).
        device: Option<DeviceId>,
    },
}

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Notices,
    Pushes,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Queue::Notices => "notice_outbox",
            Queue::Pushes => "push_outbox",
        }
    }
}

fn token_context(org: OrgId, device: DeviceId) -> SealContext<'static> {
    SealContext { purpose: purpose::PUSH_TOKEN, org: org.0, scope: org.0, record: device.0 }
}

/// Provider error codes the audit log takes (fixed codes only): a code ending in a status
/// number (`http_503`, `smtp_550`) is split into its fixed prefix and the number.
const KNOWN_CODES: &[&str] = &[
    "timeout",
    "connect",
    "decode",
    "transport",
    "http",
    "fcm_http",
    "fcm_token_http",
    "smtp",
    "apns_unregistered",
    "apns_bad_token",
    "apns_expired_provider_token",
    "apns_key",
    "fcm_unregistered",
    "fcm_key",
    "fcm_token_decode",
    "sms_disconnected",
    "smtp_bad_address",
    "smtp_build",
    "smtp_permanent",
    "smtp_transient",
    "smtp_transport",
    "no_provider",
    "no_device",
    "shutdown",
];

fn audit_code(code: &str) -> (&'static str, Option<i64>) {
    let (prefix, status) = match code.rsplit_once('_') {
        Some((p, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (p, n.parse::<i64>().ok()),
        _ => (code, None),
    };
    match KNOWN_CODES.iter().find(|k| **k == prefix) {
        Some(k) => (k, status),
        None => ("other", None),
    }
}

fn system_event(action: AuditAction, org: OrgId, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = Some(org);
    ev
}

/// Takes due entries of `queue` under this node's lease: up to `limit` ids. An entry whose
/// lease lapsed (its node died mid-send) is taken again only while it has attempts left.
#[allow(clippy::too_many_arguments)]
async fn claim_ids(
    c: &mut Conn<'_>,
    queue: Queue,
    channels: &[&'static str],
    node: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
    max_attempts: i64,
) -> Result<Vec<uuid::Uuid>> {
    let t = queue.table();
    // Only the channels this node has a provider for: the rest stay queued.
    let filter = match queue {
        Queue::Notices => {
            let list: Vec<String> =
                channels.iter().filter(|ch| ["sms", "email", "push"].contains(ch)).map(|ch| format!("'{ch}'")).collect();
            if list.is_empty() {
                return Ok(Vec::new());
            }
            format!("channel IN ({}) AND ", list.join(", "))
        }
        Queue::Pushes => String::new(),
    };
    let sql = format!(
        "SELECT id FROM {t} WHERE {filter}((status = 'queued' AND next_attempt_at <= $1) \
         OR (status = 'sending' AND lease_until < $1 AND attempts < $3)) \
         ORDER BY created_at, id LIMIT $2"
    );
    let candidates = scalar!(fetch_all, c, uuid::Uuid, sqlx::AssertSqlSafe(sql), now, limit, max_attempts)?;
    let mut won = Vec::new();
    for id in candidates {
        // The condition is checked again on the row itself: a node that lost the race to a
        // concurrent claim updates nothing.
        let sql = format!(
            "UPDATE {t} SET status = 'sending', lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
             WHERE id = $1 AND ((status = 'queued' AND next_attempt_at <= $4) OR (status = 'sending' AND lease_until < $4 AND attempts < $5))"
        );
        if exec!(c, sqlx::AssertSqlSafe(sql), id, node, now + lease_ms, now, max_attempts)? == 1 {
            won.push(id);
        }
    }
    Ok(won)
}

/// Whether the account exists in the organisation and is not disabled.
async fn user_active(c: &mut Conn<'_>, org: OrgId, user: UserId) -> Result<bool> {
    let found =
        scalar!(fetch_optional, c, i32, "SELECT 1 FROM users WHERE id = $1 AND org_id = $2 AND disabled_at IS NULL", user.0, org.0)?;
    Ok(found.is_some())
}

/// The live push targets of a set of users' devices (device not revoked, user not disabled).
async fn targets_of_users(c: &mut Conn<'_>, ring: &ward_crypto::Keyring, org: OrgId, users: &[uuid::Uuid]) -> Result<Vec<PushTarget>> {
    let mut out = Vec::new();
    for u in users {
        let rows = fetch!(
            fetch_all,
            c,
            (uuid::Uuid, String, Vec<u8>),
            "SELECT t.device_id, t.platform, t.token_sealed FROM device_push_tokens t JOIN devices d ON d.id = t.device_id \
             JOIN users u ON u.id = t.user_id WHERE t.user_id = $1 AND t.org_id = $2 AND d.revoked_at IS NULL AND u.disabled_at IS NULL \
             ORDER BY t.device_id",
            *u,
            org.0
        )?;
        for (device, platform, sealed) in rows {
            let token = open_field(c, ring, &token_context(org, DeviceId(device)), &sealed).await?;
            out.push(PushTarget { device_id: DeviceId(device), platform, token });
        }
    }
    Ok(out)
}

async fn cancel(c: &mut Conn<'_>, queue: Queue, org: OrgId, id: uuid::Uuid, reason: &'static str, channel: &'static str) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET status = 'cancelled', lease_owner = NULL, lease_until = NULL, finished_at = $2 WHERE id = $1",
        queue.table()
    );
    exec!(c, sqlx::AssertSqlSafe(sql), id, now_ms())?;
    let ev = system_event(AuditAction::NoticeCancel, org, Outcome::Success)
        .target(if queue == Queue::Notices { "notice" } else { "push" }, id)
        .detail("reason", DetailValue::Code(reason))
        .detail("channel", DetailValue::Code(channel));
    audit::append(c, &ev, &RequestMeta::default()).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct NoticeRow {
    org_id: uuid::Uuid,
    kind: String,
    patient_id: Option<uuid::Uuid>,
    contact_id: Option<uuid::Uuid>,
    channel: String,
    body_sealed: Vec<u8>,
    attempts: i64,
}

impl Store {
    /// Registers (or replaces) the push token of the caller's device, sealed under the
    /// organisation's key. A token already held by another device moves to this one. Audited.
    pub async fn register_push_token(
        &self,
        org: OrgId,
        user: UserId,
        device: DeviceId,
        platform: &'static str,
        token: String,
        meta: RequestMeta,
    ) -> Result<PushRegistration> {
        let key = self.current_key(org, ScopeKind::Org, org.0).await?;
        let sealed = key.seal(&token_context(org, device), token.as_bytes());
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let owner = scalar!(
                    fetch_optional,
                    &mut c,
                    uuid::Uuid,
                    "SELECT d.user_id FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1 AND u.org_id = $2 AND d.revoked_at IS NULL",
                    device.0,
                    org.0
                )?;
                if owner != Some(user.0) {
                    return Err(StoreError::NotFound);
                }
                // One device per token: the same phone re-registered under a new device id
                // must not be pushed twice (nor keep getting the old account's pushes).
                let others = fetch!(
                    fetch_all,
                    &mut c,
                    (uuid::Uuid, Vec<u8>),
                    "SELECT device_id, token_sealed FROM device_push_tokens WHERE org_id = $1 AND platform = $2 AND device_id <> $3",
                    org.0,
                    platform,
                    device.0
                )?;
                for (other, other_sealed) in others {
                    if open_field(&mut c, &ring, &token_context(org, DeviceId(other)), &other_sealed).await? == token {
                        exec!(&mut c, "DELETE FROM device_push_tokens WHERE device_id = $1", other)?;
                        let mut ev = system_event(AuditAction::PushTokenRemove, org, Outcome::Success)
                            .target("device", other)
                            .detail("reason", DetailValue::Code("moved"));
                        ev.actor = Some(user);
                        audit::append(&mut c, &ev, &meta).await?;
                    }
                }
                let now = now_ms();
                exec!(&mut c, "DELETE FROM device_push_tokens WHERE device_id = $1", device.0)?;
                exec!(
                    &mut c,
                    "INSERT INTO device_push_tokens (device_id, org_id, user_id, platform, token_sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    device.0,
                    org.0,
                    user.0,
                    platform,
                    sealed.as_slice(),
                    now
                )?;
                let mut ev =
                    system_event(AuditAction::PushTokenRegister, org, Outcome::Success).target("device", device.0).detail("platform", DetailValue::Code(platform));
                ev.actor = Some(user);
                ev.device = Some(device);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(PushRegistration { device_id: device, platform: platform.to_owned(), created_at: now })
            })
        })
        .await
    }

    /// The caller's device's push registration, if any.
    pub async fn push_registration(&self, org: OrgId, device: DeviceId) -> Result<Option<PushRegistration>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    (String, i64),
                    "SELECT platform, created_at FROM device_push_tokens WHERE device_id = $1 AND org_id = $2",
                    device.0,
                    org.0
                )?;
                Ok(row.map(|(platform, created_at)| PushRegistration { device_id: device, platform, created_at }))
            })
        })
        .await
    }

    /// Removes a device's push token (`reason`: `user` or `unregistered`); false if it had
    /// none. Audited when one was removed.
    pub async fn remove_push_token(
        &self,
        org: OrgId,
        actor: Option<UserId>,
        device: DeviceId,
        reason: &'static str,
        meta: RequestMeta,
    ) -> Result<bool> {
        self.write(move |mut c| {
            Box::pin(async move {
                let n = exec!(&mut c, "DELETE FROM device_push_tokens WHERE device_id = $1 AND org_id = $2", device.0, org.0)?;
                if n > 0 {
                    let mut ev = system_event(AuditAction::PushTokenRemove, org, Outcome::Success)
                        .target("device", device.0)
                        .detail("reason", DetailValue::Code(reason));
                    ev.actor = actor;
                    audit::append(&mut c, &ev, &meta).await?;
                }
                Ok(n > 0)
            })
        })
        .await
    }

    /// Queues a PHI-free new-message push to each registered device of each recipient, except
    /// the sender's own devices (they wrote it) and a patient account's without a current
    /// portal consent. Returns how many were queued. Audited as one
    /// `push.deliver` event (`result` `queued`, `devices`), with ids only.
    pub async fn enqueue_message_push(
        &self,
        sender: UserId,
        conversation: uuid::Uuid,
        message: Option<uuid::Uuid>,
        high_priority: bool,
        recipients: Vec<UserId>,
    ) -> Result<usize> {
        self.write(move |mut c| {
            Box::pin(async move {
                let Some(org) = scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT org_id FROM conversations WHERE id = $1", conversation)? else {
                    return Ok(0);
                };
                let org = OrgId(org);
                let mut n = 0usize;
                let now = now_ms();
                for r in recipients.iter().filter(|r| **r != sender) {
                    // A patient's app is pushed only under a current portal consent.
                    let patient = scalar!(fetch_optional, &mut c, Option<uuid::Uuid>, "SELECT patient_id FROM users WHERE id = $1", r.0)?.flatten();
                    if let Some(p) = patient
                        && current_consent(&mut c, org, PatientId(p), ConsentChannel::Portal).await?.is_none()
                    {
                        continue;
                    }
                    let devices = scalar!(
                        fetch_all,
                        &mut c,
                        uuid::Uuid,
                        "SELECT t.device_id FROM device_push_tokens t JOIN devices d ON d.id = t.device_id WHERE t.user_id = $1 AND t.org_id = $2 \
                         AND d.revoked_at IS NULL ORDER BY t.device_id",
                        r.0,
                        org.0
                    )?;
                    for d in devices {
                        exec!(
                            &mut c,
                            "INSERT INTO push_outbox (id, org_id, user_id, device_id, conversation_id, message_id, high_priority, status, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8)",
                            uuid::Uuid::now_v7(),
                            org.0,
                            r.0,
                            d,
                            conversation,
                            message,
                            high_priority,
                            now
                        )?;
                        n += 1;
                    }
                }
                if n > 0 {
                    let mut ev = system_event(AuditAction::PushDeliver, org, Outcome::Success)
                        .target("conversation", conversation)
                        .detail("result", DetailValue::Code("queued"))
                        .detail("devices", DetailValue::Int(n as i64));
                    if let Some(m) = message {
                        ev = ev.detail("message", DetailValue::Id(m));
                    }
                    ev.actor = Some(sender);
                    audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                }
                Ok(n)
            })
        })
        .await
    }

    /// Claims due outbox entries for this node (lease `lease_ms`), re-checking each against
    /// the patient's consent and the contact: an entry that may no longer go is cancelled
    /// (audited). Returns what to deliver, opened.
    pub async fn claim_notices(
        &self,
        node: String,
        channels: Vec<&'static str>,
        lease_ms: i64,
        limit: i64,
        max_attempts: i64,
    ) -> Result<Vec<ClaimedNotice>> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let ids = claim_ids(&mut c, Queue::Notices, &channels, &node, now, lease_ms, limit, max_attempts).await?;
                let mut out = Vec::new();
                for id in ids {
                    let r = fetch!(
                        fetch_one,
                        &mut c,
                        NoticeRow,
                        "SELECT org_id, kind, patient_id, contact_id, channel, body_sealed, attempts FROM notice_outbox WHERE id = $1",
                        id
                    )?;
                    let org = OrgId(r.org_id);
                    let channel = NoticeChannel::parse(&r.channel).ok_or(StoreError::Corrupt("notice_outbox.channel"))?;
                    // Notices and inbound redirects go to a patient under a consent and need a
                    // sendable contact; only a verification code goes to an unverified one.
                    let notice = r.kind != "verification";
                    let escalation = r.kind == "escalation";
                    if notice && !escalation {
                        let patient = PatientId(r.patient_id.ok_or(StoreError::Corrupt("notice_outbox.patient_id"))?);
                        if current_consent(&mut c, org, patient, channel.required_consent()).await?.is_none() {
                            cancel(&mut c, Queue::Notices, org, id, "consent_revoked", channel.as_str()).await?;
                            continue;
                        }
                    }
                    let mut claimed = ClaimedNotice {
                        id,
                        org_id: org,
                        kind: r.kind.clone(),
                        channel,
                        attempt: r.attempts,
                        to: None,
                        body: String::new(),
                        devices: Vec::new(),
                        contact_id: r.contact_id,
                    };
                    match (channel, r.contact_id) {
                        (NoticeChannel::Push, _) => {
                            let patient = r.patient_id.ok_or(StoreError::Corrupt("notice_outbox.patient_id"))?;
                            let users = scalar!(
                                fetch_all,
                                &mut c,
                                uuid::Uuid,
                                "SELECT id FROM users WHERE org_id = $1 AND patient_id = $2 ORDER BY id",
                                org.0,
                                patient
                            )?;
                            claimed.devices = targets_of_users(&mut c, &ring, org, &users).await?;
                        }
                        (_, Some(contact)) => {
                            let Some((owner, to)) = contact_for_delivery(&mut c, &ring, org, contact, notice).await? else {
                                cancel(&mut c, Queue::Notices, org, id, "contact_unsendable", channel.as_str()).await?;
                                continue;
                            };
                            if escalation {
                                // Someone deprovisioned after the SMS was queued gets nothing:
                                // an ex-employee's phone is no longer a work channel.
                                if let ContactOwner::User(u) = owner
                                    && !user_active(&mut c, org, u).await?
                                {
                                    cancel(&mut c, Queue::Notices, org, id, "recipient_disabled", channel.as_str()).await?;
                                    continue;
                                }
                                // Fixed in the program: nothing was sealed.
                                claimed.body = crate::escalation::ESCALATION_SMS_TEXT.to_owned();
                            } else {
                                let ctx = if notice {
                                    outbox_context(org, PatientId(r.patient_id.ok_or(StoreError::Corrupt("notice_outbox.patient_id"))?), id)
                                } else {
                                    contact_message_context(org, owner, id)
                                };
                                claimed.body = open_field(&mut c, &ring, &ctx, &r.body_sealed).await?;
                            }
                            claimed.to = Some(to);
                        }
                        (_, None) => {
                            cancel(&mut c, Queue::Notices, org, id, "contact_unsendable", channel.as_str()).await?;
                            continue;
                        }
                    }
                    out.push(claimed);
                }
                Ok(out)
            })
        })
        .await
    }

    /// Renews this node's lease on a claimed outbox entry just before sending it: true only if
    /// the node still holds an unexpired lease. A false answer means another node may have
    /// taken the entry (the lease lapsed during a slow batch), so it must not be sent.
    pub async fn renew_notice_lease(&self, node: String, id: uuid::Uuid, lease_ms: i64) -> Result<bool> {
        self.renew_lease(Queue::Notices, node, id, lease_ms).await
    }

    /// As `renew_notice_lease`, for a claimed push.
    pub async fn renew_push_lease(&self, node: String, id: uuid::Uuid, lease_ms: i64) -> Result<bool> {
        self.renew_lease(Queue::Pushes, node, id, lease_ms).await
    }

    async fn renew_lease(&self, queue: Queue, node: String, id: uuid::Uuid, lease_ms: i64) -> Result<bool> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let sql = format!(
                    "UPDATE {} SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'sending' AND lease_until > $4",
                    queue.table()
                );
                Ok(exec!(&mut c, sqlx::AssertSqlSafe(sql), id, node, now + lease_ms, now)? == 1)
            })
        })
        .await
    }

    /// Claims due new-message pushes for this node; a push whose device lost its token (or was
    /// revoked, or whose user was disabled) is cancelled.
    pub async fn claim_pushes(&self, node: String, lease_ms: i64, limit: i64, max_attempts: i64) -> Result<Vec<ClaimedPush>> {
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let ids = claim_ids(&mut c, Queue::Pushes, &[], &node, now, lease_ms, limit, max_attempts).await?;
                let mut out = Vec::new();
                for id in ids {
                    let (org, user, device, conversation_id, message_id, high_priority, attempts, alert) = fetch!(
                        fetch_one,
                        &mut c,
                        (uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid, Option<uuid::Uuid>, bool, i64, String),
                        "SELECT org_id, user_id, device_id, conversation_id, message_id, high_priority, attempts, alert FROM push_outbox WHERE id = $1",
                        id
                    )?;
                    let org = OrgId(org);
                    // A patient's app: the portal consent may have been revoked since queueing.
                    let patient = scalar!(fetch_optional, &mut c, Option<uuid::Uuid>, "SELECT patient_id FROM users WHERE id = $1", user)?.flatten();
                    if let Some(p) = patient
                        && current_consent(&mut c, org, PatientId(p), ConsentChannel::Portal).await?.is_none()
                    {
                        cancel(&mut c, Queue::Pushes, org, id, "consent_revoked", "push").await?;
                        continue;
                    }
                    let targets = targets_of_users(&mut c, &ring, org, &[user]).await?;
                    let Some(target) = targets.into_iter().find(|t| t.device_id.0 == device) else {
                        cancel(&mut c, Queue::Pushes, org, id, "no_token", "push").await?;
                        continue;
                    };
                    out.push(ClaimedPush {
                        id,
                        org_id: org,
                        target,
                        conversation_id,
                        message_id,
                        high_priority,
                        escalation: alert == "escalation",
                        attempt: attempts,
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    /// Records how a claimed outbox entry's attempt ended (only while this node holds the
    /// lease: false otherwise). Retries past `max_attempts` fail. An unregistered SMS number
    /// is suppressed (`disconnected`); an unregistered push token is removed. Audited.
    pub async fn finish_notice(&self, node: String, n: ClaimedNotice, result: Attempt, max_attempts: i64) -> Result<bool> {
        self.finish(Queue::Notices, node, n.id, n.org_id, n.attempt, n.kind, n.channel.as_str(), n.contact_id, result, max_attempts).await
    }

    /// Records how a claimed push's attempt ended (see [`Store::finish_notice`]).
    pub async fn finish_push(&self, node: String, p: ClaimedPush, result: Attempt, max_attempts: i64) -> Result<bool> {
        let result = match result {
            Attempt::Unregistered { code, device: None } => Attempt::Unregistered { code, device: Some(p.target.device_id) },
            other => other,
        };
        self.finish(Queue::Pushes, node, p.id, p.org_id, p.attempt, "message".into(), "push", None, result, max_attempts).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        queue: Queue,
        node: String,
        id: uuid::Uuid,
        org: OrgId,
        attempt: i64,
        kind: String,
        channel: &'static str,
        contact: Option<uuid::Uuid>,
        result: Attempt,
        max_attempts: i64,
    ) -> Result<bool> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let (status, label, code, next) = match &result {
                    Attempt::Sent => ("sent", "sent", None, 0),
                    Attempt::Retry { code, after_ms } if attempt < max_attempts => ("queued", "retry", Some(code.clone()), now + after_ms),
                    Attempt::Retry { code, .. } | Attempt::Failed { code } => ("failed", "failed", Some(code.clone()), 0),
                    Attempt::Unregistered { code, .. } => ("failed", "unregistered", Some(code.clone()), 0),
                };
                let finished = (status != "queued").then_some(now);
                let sql = format!(
                    "UPDATE {} SET status = $3, lease_owner = NULL, lease_until = NULL, last_code = $4, next_attempt_at = $5, finished_at = $6 \
                     WHERE id = $1 AND status = 'sending' AND lease_owner = $2",
                    queue.table()
                );
                if exec!(&mut c, sqlx::AssertSqlSafe(sql), id, node.as_str(), status, code.as_deref(), next, finished)? == 0 {
                    return Ok(false);
                }
                let action = if queue == Queue::Notices { AuditAction::NoticeDeliver } else { AuditAction::PushDeliver };
                let outcome = if status == "sent" || status == "queued" { Outcome::Success } else { Outcome::Failure };
                let mut ev = system_event(action, org, outcome)
                    .target(if queue == Queue::Notices { "notice" } else { "push" }, id)
                    .detail("kind", DetailValue::Code(match kind.as_str() {
                        "verification" => "verification",
                        "notice" => "notice",
                        "redirect" => "redirect",
                        "escalation" => "escalation",
                        _ => "message",
                    }))
                    .detail("channel", DetailValue::Code(channel))
                    .detail("attempt", DetailValue::Int(attempt))
                    .detail("result", DetailValue::Code(label));
                if let Some(code) = &code {
                    let (name, status) = audit_code(code);
                    ev = ev.detail("code", DetailValue::Code(name));
                    if let Some(s) = status {
                        ev = ev.detail("status", DetailValue::Int(s));
                    }
                }
                audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                if let Attempt::Unregistered { device, .. } = &result {
                    if let Some(d) = device {
                        if exec!(&mut c, "DELETE FROM device_push_tokens WHERE device_id = $1", d.0)? > 0 {
                            let ev = system_event(AuditAction::PushTokenRemove, org, Outcome::Success)
                                .target("device", d.0)
                                .detail("reason", DetailValue::Code("unregistered"));
                            audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                        }
                    } else if let (Some(contact), "sms") = (contact, channel) {
                        let index = scalar!(fetch_optional, &mut c, String, "SELECT value_index FROM contacts WHERE id = $1", contact)?;
                        if let Some(index) = index {
                            let n = exec!(
                                &mut c,
                                "UPDATE contacts SET suppressed_at = $3, suppressed_reason = 'disconnected', code_hash = NULL, code_expires_at = NULL \
                                 WHERE org_id = $1 AND kind = 'phone' AND value_index = $2",
                                org.0,
                                index.as_str(),
                                now
                            )?;
                            let ev = system_event(AuditAction::ContactSuppress, org, Outcome::Success)
                                .target("contact", contact)
                                .detail("kind", DetailValue::Code("phone"))
                                .detail("reason", DetailValue::Code("disconnected"))
                                .detail("contacts", DetailValue::Int(n as i64));
                            audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                        }
                    }
                }
                Ok(true)
            })
        })
        .await
    }
}

/// Cancels the patient's queued notices on a channel whose consent was just revoked, in the
/// revoking transaction; returns how many. Each is audited.
pub(crate) async fn cancel_for_revoked_consent(
    c: &mut Conn<'_>,
    org: OrgId,
    patient: PatientId,
    consent: ward_domain::consent::ConsentChannel,
) -> Result<u64> {
    let channels: Vec<&'static str> = [NoticeChannel::Sms, NoticeChannel::Email, NoticeChannel::Push]
        .into_iter()
        .filter(|ch| ch.required_consent() == consent)
        .map(NoticeChannel::as_str)
        .collect();
    let mut n = 0;
    for ch in channels {
        let ids = scalar!(
            fetch_all,
            c,
            uuid::Uuid,
            "SELECT id FROM notice_outbox WHERE org_id = $1 AND patient_id = $2 AND channel = $3 AND kind IN ('notice', 'redirect') \
             AND status = 'queued'",
            org.0,
            patient.0,
            ch
        )?;
        for id in ids {
            cancel(c, Queue::Notices, org, id, "consent_revoked", ch).await?;
            n += 1;
        }
    }
    // The patient's own app gets new-message pushes only under the portal consent.
    if consent == ward_domain::consent::ConsentChannel::Portal {
        let ids = scalar!(
            fetch_all,
            c,
            uuid::Uuid,
            "SELECT id FROM push_outbox WHERE status = 'queued' AND org_id = $1 \
             AND user_id IN (SELECT id FROM users WHERE org_id = $1 AND patient_id = $2)",
            org.0,
            patient.0
        )?;
        for id in ids {
            cancel(c, Queue::Pushes, org, id, "consent_revoked", "push").await?;
            n += 1;
        }
    }
    Ok(n)
}
