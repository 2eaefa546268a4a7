//! Device trust records: registration facts, every posture report with its evaluation, the
//! organisation's posture policy, spot-check samples and selective remote wipes.
//!
//! Judging is `ward_device`'s; this module keeps what it needs between evaluations (the last
//! evaluation, whose `failing_since` the next one continues) and, beside it, the time from
//! which the device is blocked from PHI, so a message read compares a time instead of
//! evaluating again.

use std::collections::BTreeMap;

use ward_device::report::{Ownership, Platform};
use ward_device::{
    DeviceFacts, DeviceRegistration, DeviceState, Evaluation, FailingSince, ItemId, PosturePolicy, PostureReport, ReceivedReport,
    StateKind, blocked_from, evaluate,
};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, OrgId, SessionId, UserId};
use ward_domain::policy::Actor;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, audit, now_ms};

/// A device of the organisation with what it stated and how it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Id.
    pub id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// The name given at sign-in.
    pub name: String,
    /// The platform claimed at sign-in.
    pub platform: String,
    /// First sign-in (Unix ms).
    pub first_seen_at: i64,
    /// Latest sign-in or report (Unix ms).
    pub last_seen_at: i64,
    /// When it was revoked (wiped or otherwise).
    pub revoked_at: Option<i64>,
    /// Why (`wiped`, ...).
    pub revoke_reason: Option<String>,
    /// What it stated at registration; `None` until it registers.
    pub registration: Option<DeviceRegistration>,
    /// When it first registered.
    pub registered_at: Option<i64>,
    /// When its latest posture report arrived.
    pub last_report_at: Option<i64>,
    /// Its evaluation now (live devices are judged again at read time, so staleness and
    /// ended grace periods show); `None` for a device that never registered.
    pub evaluation: Option<Evaluation>,
}

/// One stored posture report and the evaluation made when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct PostureRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// The device.
    pub device_id: DeviceId,
    /// When the server received it (Unix ms).
    pub received_at: i64,
    /// The report as the device sent it (parsed and checked).
    pub report: PostureReport,
    /// The evaluation at receipt.
    pub evaluation: Evaluation,
}

/// A recorded spot-check sample: the seed and population it was drawn from, so anyone can
/// draw it again with `ward_device::spot_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotCheck {
    /// Id.
    pub id: uuid::Uuid,
    /// Organisation.
    pub org_id: OrgId,
    /// When it was drawn (Unix ms).
    pub created_at: i64,
    /// Who drew it.
    pub created_by: UserId,
    /// The generator's seed.
    pub seed: u64,
    /// The share sampled, 10 to 100.
    pub percent: u8,
    /// Every live registered device at the time, ascending.
    pub population: Vec<DeviceId>,
    /// The devices to check by hand, ascending.
    pub sample: Vec<DeviceId>,
}

/// Who asked for a wipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeSource {
    /// An administrator.
    Admin,
    /// The device's own user, reporting it lost.
    LostByUser,
    /// The user's account was disabled (by an admin, the command line or roster
    /// remediation).
    Deprovisioned,
}

impl WipeSource {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            WipeSource::Admin => "admin",
            WipeSource::LostByUser => "lost_by_user",
            WipeSource::Deprovisioned => "deprovisioned",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(WipeSource::Admin),
            "lost_by_user" => Some(WipeSource::LostByUser),
            "deprovisioned" => Some(WipeSource::Deprovisioned),
            _ => None,
        }
    }
}

/// A selective wipe of Ward's data on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWipe {
    /// Id.
    pub id: uuid::Uuid,
    /// Organisation.
    pub org_id: OrgId,
    /// The device.
    pub device_id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// Who asked (the nil id: the command-line operator).
    pub requested_by: UserId,
    /// When (Unix ms).
    pub requested_at: i64,
    /// Why, as stated.
    pub reason: String,
    /// Admin or the user.
    pub source: WipeSource,
    /// When the device fetched the command.
    pub delivered_at: Option<i64>,
    /// When the device confirmed the erasure.
    pub acknowledged_at: Option<i64>,
    /// Why the wipe was closed without an acknowledgement: `no_wipe_channel` for a device
    /// that never registered (it holds no wipe secret, so it can never fetch the command; its
    /// sessions were revoked, which is all a wipe can do for it). Closed wipes are never
    /// overdue.
    pub closed_reason: Option<String>,
}

/// Closed reason of a wipe of a device that never registered.
pub const NO_WIPE_CHANNEL: &str = "no_wipe_channel";

/// A wipe requested: the record, the device's user and the sessions revoked.
#[derive(Debug, Clone)]
pub struct WipeRequested {
    /// The record.
    pub wipe: DeviceWipe,
    /// Sessions of the device revoked now (their connections should close).
    pub revoked_sessions: Vec<SessionId>,
}

/// What became of a wipe acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WipeAck {
    /// Recorded now.
    Acknowledged(DeviceWipe),
    /// This wipe was already acknowledged; nothing changed.
    Replayed,
    /// No wipe of that id for a device with that secret; nothing changed.
    Unknown,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: uuid::Uuid,
    user_id: uuid::Uuid,
    name: String,
    platform: String,
    created_at: i64,
    last_seen_at: i64,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
    registration: Option<String>,
    registered_at: Option<i64>,
    posture_evaluation: Option<String>,
    latest_report: Option<String>,
    latest_received_at: Option<i64>,
}

const DEVICE_SELECT: &str = "SELECT d.id, d.user_id, d.name, d.platform, d.created_at, d.last_seen_at, d.revoked_at, d.revoke_reason, \
     d.registration, d.registered_at, d.posture_evaluation, \
     (SELECT r.report FROM posture_reports r WHERE r.device_id = d.id ORDER BY r.received_at DESC, r.id DESC LIMIT 1) AS latest_report, \
     (SELECT r.received_at FROM posture_reports r WHERE r.device_id = d.id ORDER BY r.received_at DESC, r.id DESC LIMIT 1) AS latest_received_at \
     FROM devices d JOIN users u ON u.id = d.user_id";

/// What an evaluation needs of a stored device.
struct Judged {
    facts: DeviceFacts,
    latest: Option<ReceivedReport>,
    previous: Option<Evaluation>,
}

fn corrupt<E>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |_| StoreError::Corrupt(what)
}

fn parse_evaluation(json: &str) -> Result<Evaluation> {
    serde_json::from_str(json).map_err(corrupt("devices.posture_evaluation"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|_| StoreError::Corrupt("device JSON"))
}

impl DeviceRow {
    fn judged(&self) -> Result<Option<Judged>> {
        let (Some(reg), Some(at)) = (&self.registration, self.registered_at) else { return Ok(None) };
        let registration = DeviceRegistration::from_json(reg).map_err(corrupt("devices.registration"))?;
        let latest = match (&self.latest_report, self.latest_received_at) {
            (Some(r), Some(t)) => {
                Some(ReceivedReport { received_at_ms: t, report: PostureReport::from_json(r).map_err(corrupt("posture_reports.report"))? })
            }
            _ => None,
        };
        let previous = self.posture_evaluation.as_deref().map(parse_evaluation).transpose()?;
        Ok(Some(Judged { facts: DeviceFacts { registration, registered_at_ms: at }, latest, previous }))
    }

    fn into_record(self, policy: &PosturePolicy, now: i64) -> Result<DeviceRecord> {
        let judged = self.judged()?;
        let evaluation = match judged {
            // A revoked device is no longer judged: its last evaluation stands.
            Some(j) if self.revoked_at.is_some() => j.previous,
            Some(j) => {
                let since = j.previous.as_ref().map(Evaluation::failing_since).unwrap_or_default();
                Some(evaluate(policy, &j.facts, j.latest.as_ref(), now, &since))
            }
            None => None,
        };
        Ok(DeviceRecord {
            id: DeviceId(self.id),
            user_id: UserId(self.user_id),
            name: self.name,
            platform: self.platform,
            first_seen_at: self.created_at,
            last_seen_at: self.last_seen_at,
            revoked_at: self.revoked_at,
            revoke_reason: self.revoke_reason,
            registration: judged_registration(self.registration.as_deref())?,
            registered_at: self.registered_at,
            last_report_at: self.latest_received_at,
            evaluation,
        })
    }
}

fn judged_registration(json: Option<&str>) -> Result<Option<DeviceRegistration>> {
    json.map(|j| DeviceRegistration::from_json(j).map_err(corrupt("devices.registration"))).transpose()
}

#[derive(sqlx::FromRow)]
struct PostureRow {
    id: uuid::Uuid,
    device_id: uuid::Uuid,
    received_at: i64,
    report: String,
    evaluation: String,
}

impl PostureRow {
    fn into_record(self) -> Result<PostureRecord> {
        Ok(PostureRecord {
            id: self.id,
            device_id: DeviceId(self.device_id),
            received_at: self.received_at,
            report: PostureReport::from_json(&self.report).map_err(corrupt("posture_reports.report"))?,
            evaluation: serde_json::from_str(&self.evaluation).map_err(corrupt("posture_reports.evaluation"))?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SpotCheckRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    created_at: i64,
    created_by: uuid::Uuid,
    seed: String,
    percent: i64,
    population: String,
    sample: String,
}

impl SpotCheckRow {
    fn into_spot_check(self) -> Result<SpotCheck> {
        let ids = |json: &str| -> Result<Vec<DeviceId>> {
            let v: Vec<uuid::Uuid> = serde_json::from_str(json).map_err(corrupt("device_spot_checks"))?;
            Ok(v.into_iter().map(DeviceId).collect())
        };
        Ok(SpotCheck {
            id: self.id,
            org_id: OrgId(self.org_id),
            created_at: self.created_at,
            created_by: UserId(self.created_by),
            seed: self.seed.parse().map_err(corrupt("device_spot_checks.seed"))?,
            percent: u8::try_from(self.percent).map_err(corrupt("device_spot_checks.percent"))?,
            population: ids(&self.population)?,
            sample: ids(&self.sample)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct WipeRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    device_id: uuid::Uuid,
    user_id: uuid::Uuid,
    requested_by: uuid::Uuid,
    requested_at: i64,
    reason: String,
    source: String,
    delivered_at: Option<i64>,
    acknowledged_at: Option<i64>,
    closed_reason: Option<String>,
}

const WIPE_COLUMNS: &str = "w.id, w.org_id, w.device_id, w.user_id, w.requested_by, w.requested_at, w.reason, w.source, w.delivered_at, \
     w.acknowledged_at, w.closed_reason";

impl WipeRow {
    fn into_wipe(self) -> Result<DeviceWipe> {
        Ok(DeviceWipe {
            id: self.id,
            org_id: OrgId(self.org_id),
            device_id: DeviceId(self.device_id),
            user_id: UserId(self.user_id),
            requested_by: UserId(self.requested_by),
            requested_at: self.requested_at,
            reason: self.reason,
            source: WipeSource::parse(&self.source).ok_or(StoreError::Corrupt("device_wipes.source"))?,
            delivered_at: self.delivered_at,
            acknowledged_at: self.acknowledged_at,
            closed_reason: self.closed_reason,
        })
    }
}

fn state_name(k: StateKind) -> &'static str {
    match k {
        StateKind::Compliant => "compliant",
        StateKind::Warn => "warn",
        StateKind::InGrace => "in_grace",
        StateKind::BlockPhi => "block_phi",
    }
}

fn device_event(action: AuditAction, outcome: Outcome, org: OrgId, actor: Option<UserId>, device: DeviceId) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome).target("device", device);
    ev.org_id = Some(org);
    ev.actor = actor;
    ev.device = Some(device);
    ev
}

async fn policy_of(c: &mut Conn<'_>, org: OrgId) -> Result<PosturePolicy> {
    let stored = scalar!(fetch_optional, c, String, "SELECT policy FROM posture_policies WHERE org_id = $1", org.0)?;
    match stored {
        Some(json) => PosturePolicy::from_json(&json).map_err(|_| StoreError::Corrupt("posture_policies.policy")),
        None => Ok(PosturePolicy::default()),
    }
}

async fn device_row(c: &mut Conn<'_>, org: OrgId, device: DeviceId) -> Result<DeviceRow> {
    let sql = sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE d.id = $1 AND u.org_id = $2"));
    fetch!(fetch_optional, c, DeviceRow, sql, device.0, org.0)?.ok_or(StoreError::NotFound)
}

/// Stores an evaluation as the device's latest, with the time from which it blocks PHI.
async fn save_evaluation(c: &mut Conn<'_>, device: DeviceId, policy: &PosturePolicy, j: &Judged, e: &Evaluation) -> Result<()> {
    let block_at = blocked_from(policy, &j.facts, j.latest.as_ref(), e);
    exec!(
        c,
        "UPDATE devices SET posture_evaluation = $2, posture_state = $3, posture_block_at = $4 WHERE id = $1",
        device.0,
        to_json(e)?,
        state_name(e.state.kind()),
        block_at
    )?;
    Ok(())
}

/// Judges a stored device again at `now` (after a policy change or registration) and saves it.
async fn reevaluate(c: &mut Conn<'_>, org: OrgId, device: DeviceId, policy: &PosturePolicy, now: i64) -> Result<Option<Evaluation>> {
    let row = device_row(c, org, device).await?;
    let Some(j) = row.judged()? else { return Ok(None) };
    let since = j.previous.as_ref().map(Evaluation::failing_since).unwrap_or_default();
    let e = evaluate(policy, &j.facts, j.latest.as_ref(), now, &since);
    save_evaluation(c, device, policy, &j, &e).await?;
    Ok(Some(e))
}

/// Revokes a device and its live sessions; returns the sessions. With `delete_tokens`, the
/// sessions' access tokens are deleted too.
pub(crate) async fn revoke_device(
    c: &mut Conn<'_>,
    device: DeviceId,
    reason: &'static str,
    now: i64,
    delete_tokens: bool,
) -> Result<Vec<SessionId>> {
    exec!(c, "UPDATE devices SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL", device.0, now, reason)?;
    // A revoked device gets no more pushes (docs/notifications.md).
    exec!(c, "DELETE FROM device_push_tokens WHERE device_id = $1", device.0)?;
    let ids = scalar!(fetch_all, c, uuid::Uuid, "SELECT id FROM sessions WHERE device_id = $1 AND revoked_at IS NULL", device.0)?;
    exec!(c, "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE device_id = $1 AND revoked_at IS NULL", device.0, now, reason)?;
    if delete_tokens {
        // The tokens die with the sessions; deleting them leaves nothing to present.
        exec!(c, "DELETE FROM access_tokens WHERE session_id IN (SELECT id FROM sessions WHERE device_id = $1)", device.0)?;
    }
    Ok(ids.into_iter().map(SessionId).collect())
}

/// The organisation's live registered devices (the ones judged and sampled), ascending.
async fn live_registered(c: &mut Conn<'_>, org: OrgId) -> Result<Vec<uuid::Uuid>> {
    let mut ids = scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id \
         WHERE u.org_id = $1 AND d.registration IS NOT NULL AND d.revoked_at IS NULL",
        org.0
    )?;
    ids.sort();
    Ok(ids)
}

async fn wipe_by_device(c: &mut Conn<'_>, device: DeviceId) -> Result<Option<DeviceWipe>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {WIPE_COLUMNS} FROM device_wipes w WHERE w.device_id = $1"));
    fetch!(fetch_optional, c, WipeRow, sql, device.0)?.map(WipeRow::into_wipe).transpose()
}

/// The device (with its organisation) whose wipe secret hashes to `secret_hash`.
async fn device_by_secret(c: &mut Conn<'_>, device: DeviceId, secret_hash: &[u8]) -> Result<Option<OrgId>> {
    let org = scalar!(
        fetch_optional,
        c,
        uuid::Uuid,
        "SELECT u.org_id FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1 AND d.wipe_secret_hash = $2",
        device.0,
        secret_hash
    )?;
    Ok(org.map(OrgId))
}

/// The organisation a device belongs to, whatever secret was presented: a failed attempt on
/// a real device is its organisation's business (audited there); one on an id that does not
/// exist is noise, and is not audited (anyone can send those, and each would cost a
/// permanent row in the log).
async fn org_of_device(c: &mut Conn<'_>, device: DeviceId) -> Result<Option<OrgId>> {
    let org = scalar!(
        fetch_optional,
        c,
        uuid::Uuid,
        "SELECT u.org_id FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1",
        device.0
    )?;
    Ok(org.map(OrgId))
}

/// What a wipe is for: one device of one user.
pub(crate) struct WipeOrder {
    pub(crate) org: OrgId,
    pub(crate) device: DeviceId,
    pub(crate) user: UserId,
    /// `None`: the command-line operator (stored as the nil id).
    pub(crate) requested_by: Option<UserId>,
    pub(crate) source: WipeSource,
    pub(crate) now: i64,
}

/// Writes a wipe record, revokes the device and its sessions and audits `device.wipe`, in the
/// caller's transaction. A device that never registered has no wipe secret, so it can never
/// fetch or acknowledge the command: its wipe is closed at once as `no_wipe_channel` (the
/// sessions are still revoked, which is all a wipe can do there) rather than left to be
/// flagged overdue forever.
pub(crate) async fn queue_wipe(c: &mut Conn<'_>, order: &WipeOrder, reason: &str, meta: &RequestMeta) -> Result<WipeRequested> {
    let has_channel = scalar!(fetch_one, c, bool, "SELECT wipe_secret_hash IS NOT NULL FROM devices WHERE id = $1", order.device.0)?;
    let closed = (!has_channel).then_some(NO_WIPE_CHANNEL);
    let id = uuid::Uuid::now_v7();
    let by = order.requested_by.map_or(uuid::Uuid::nil(), |u| u.0);
    exec!(
        c,
        "INSERT INTO device_wipes (id, org_id, device_id, user_id, requested_by, requested_at, reason, source, closed_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        order.org.0,
        order.device.0,
        order.user.0,
        by,
        order.now,
        reason,
        order.source.as_str(),
        closed
    )?;
    // A deprovisioned person's tokens are kept until they expire (the sessions are revoked, so
    // they open nothing): presented, they answer 403 account_disabled, which tells the client
    // why, rather than a bare 401.
    let delete_tokens = order.source != WipeSource::Deprovisioned;
    let revoked_sessions = revoke_device(c, order.device, "wiped", order.now, delete_tokens).await?;
    let ev = device_event(AuditAction::DeviceWipe, Outcome::Success, order.org, order.requested_by, order.device)
        .detail("wipe", DetailValue::Id(id))
        .detail("source", DetailValue::Code(order.source.as_str()))
        .detail("user", DetailValue::Id(order.user.0))
        .detail("sessions_revoked", DetailValue::Int(revoked_sessions.len() as i64))
        .detail("no_wipe_channel", DetailValue::Bool(!has_channel));
    audit::append(c, &ev, meta).await?;
    let wipe = wipe_by_device(c, order.device).await?.ok_or(StoreError::NotFound)?;
    Ok(WipeRequested { wipe, revoked_sessions })
}

/// Queues a wipe (source `deprovisioned`) for each of the user's devices not yet revoked, in
/// the caller's transaction; returns the wipes with the sessions each revoked.
pub(crate) async fn wipe_user_devices(
    c: &mut Conn<'_>,
    org: OrgId,
    user: UserId,
    requested_by: Option<UserId>,
    reason: &str,
    now: i64,
    meta: &RequestMeta,
) -> Result<Vec<WipeRequested>> {
    let mut devices = scalar!(
        fetch_all,
        c,
        uuid::Uuid,
        "SELECT d.id FROM devices d WHERE d.user_id = $1 AND d.revoked_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM device_wipes w WHERE w.device_id = d.id)",
        user.0
    )?;
    devices.sort();
    let mut wipes = Vec::with_capacity(devices.len());
    for d in devices {
        let order = WipeOrder { org, device: DeviceId(d), user, requested_by, source: WipeSource::Deprovisioned, now };
        wipes.push(queue_wipe(c, &order, reason, meta).await?);
    }
    Ok(wipes)
}

impl Store {
    /// Records what the actor's device states about itself (with the hash of a wipe secret,
    /// kept only if the device has none yet: see the body), and judges it. The device must be the actor's own
    /// and not revoked.
    pub async fn register_device(
        &self,
        actor: Actor,
        device: DeviceId,
        registration: DeviceRegistration,
        wipe_secret_hash: Vec<u8>,
        meta: RequestMeta,
    ) -> Result<(DeviceRecord, bool)> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                // The wipe secret is issued once, at the first registration: were a session
                // token enough to replace it, whoever stole one could keep the real device from
                // ever fetching its wipe, and acknowledge the wipe themselves.
                let had_secret = scalar!(
                    fetch_optional,
                    &mut c,
                    bool,
                    "SELECT wipe_secret_hash IS NOT NULL FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                    device.0,
                    actor.user_id.0
                )?
                .ok_or(StoreError::NotFound)?;
                let n = exec!(
                    &mut c,
                    "UPDATE devices SET registration = $3, model = $4, os_version = $5, app_version = $6, ownership = $7, \
                     supervised = $8, mdm_enrolled = $9, registered_at = COALESCE(registered_at, $10), \
                     wipe_secret_hash = COALESCE(wipe_secret_hash, $11), \
                     last_seen_at = $10 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                    device.0,
                    actor.user_id.0,
                    to_json(&registration)?,
                    registration.model.as_str(),
                    registration.os_version.to_string(),
                    registration.app_version.as_str(),
                    ownership_name(registration.ownership),
                    registration.supervised,
                    registration.mdm_enrolled,
                    now,
                    wipe_secret_hash.as_slice()
                )?;
                if n != 1 {
                    return Err(StoreError::NotFound);
                }
                let policy = policy_of(&mut c, actor.org_id).await?;
                reevaluate(&mut c, actor.org_id, device, &policy, now).await?;
                let ev = device_event(AuditAction::DeviceRegister, Outcome::Success, actor.org_id, Some(actor.user_id), device)
                    .detail("platform", DetailValue::Code(platform_name(registration.platform)))
                    .detail("ownership", DetailValue::Code(ownership_name(registration.ownership)))
                    .detail("supervised", DetailValue::Bool(registration.supervised))
                    .detail("mdm_enrolled", DetailValue::Bool(registration.mdm_enrolled))
                    .detail("wipe_secret_issued", DetailValue::Bool(!had_secret));
                audit::append(&mut c, &ev, &meta).await?;
                Ok((device_row(&mut c, actor.org_id, device).await?.into_record(&policy, now)?, !had_secret))
            })
        })
        .await
    }

    /// Stores a posture report from the actor's session device and evaluates it, continuing
    /// the previous evaluation's `failing_since`. Another device id (another user's, another
    /// tenant's, or the actor's other device) is not found; the refusal is audited.
    pub async fn record_posture(
        &self,
        actor: Actor,
        session_device: DeviceId,
        device: DeviceId,
        report: PostureReport,
        meta: RequestMeta,
    ) -> Result<PostureRecord> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let row = if device == session_device {
                    match device_row(&mut c, actor.org_id, device).await {
                        Ok(r) => Some(r),
                        Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                let Some(row) = row.filter(|r| r.user_id == actor.user_id.0 && r.revoked_at.is_none()) else {
                    let mut ev = device_event(AuditAction::DevicePosture, Outcome::Denied, actor.org_id, Some(actor.user_id), device)
                        .detail("reason", DetailValue::Code("not_the_session_device"));
                    // The probe came from the session's device; the probed one is the target.
                    ev.device = Some(session_device);
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(Err(StoreError::NotFound));
                };
                let Some(mut j) = row.judged()? else {
                    return Ok(Err(StoreError::State("register the device first (PUT /api/v1/me/device)")));
                };
                let policy = policy_of(&mut c, actor.org_id).await?;
                let since: FailingSince = j.previous.as_ref().map(Evaluation::failing_since).unwrap_or_default();
                j.latest = Some(ReceivedReport { received_at_ms: now, report: report.clone() });
                let e = evaluate(&policy, &j.facts, j.latest.as_ref(), now, &since);
                let id = uuid::Uuid::now_v7();
                exec!(
                    &mut c,
                    "INSERT INTO posture_reports (id, org_id, device_id, received_at, report, evaluation, state) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    id,
                    actor.org_id.0,
                    device.0,
                    now,
                    report.to_json(),
                    to_json(&e)?,
                    state_name(e.state.kind())
                )?;
                save_evaluation(&mut c, device, &policy, &j, &e).await?;
                exec!(
                    &mut c,
                    "UPDATE devices SET os_version = $2, last_seen_at = $3 WHERE id = $1",
                    device.0,
                    report.os_version.to_string(),
                    now
                )?;
                let ev = device_event(AuditAction::DevicePosture, Outcome::Success, actor.org_id, Some(actor.user_id), device)
                    .detail("report", DetailValue::Id(id))
                    .detail("state", DetailValue::Code(state_name(e.state.kind())));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Ok(PostureRecord { id, device_id: device, received_at: now, report, evaluation: e }))
            })
        })
        .await?
    }

    /// Audits a posture report or registration refused before reaching the store (unknown
    /// keys, impossible values, another device's id); nothing else is written.
    #[allow(clippy::too_many_arguments, reason = "an audit record's fields, each distinct")]
    pub async fn device_refused(
        &self,
        actor: Actor,
        session_device: DeviceId,
        device: DeviceId,
        action: AuditAction,
        outcome: Outcome,
        reason: &'static str,
        meta: RequestMeta,
    ) -> Result<()> {
        let mut ev = device_event(action, outcome, actor.org_id, Some(actor.user_id), device).detail("reason", DetailValue::Code(reason));
        // Who acted, from which device; `device` (the target) may be someone else's.
        ev.device = Some(session_device);
        self.record(ev, meta).await.map(|_| ())
    }

    /// The organisation's devices (or one user's), newest first, each judged now.
    pub async fn devices(&self, org: OrgId, user: Option<UserId>) -> Result<Vec<DeviceRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let policy = policy_of(&mut c, org).await?;
                let sql = sqlx::AssertSqlSafe(format!(
                    "{DEVICE_SELECT} WHERE u.org_id = $1 AND ($2 OR d.user_id = $3) ORDER BY d.created_at DESC, d.id DESC"
                ));
                let rows = fetch!(fetch_all, &mut c, DeviceRow, sql, org.0, user.is_none(), user.map_or(uuid::Uuid::nil(), |u| u.0))?;
                rows.into_iter().map(|r| r.into_record(&policy, now)).collect()
            })
        })
        .await
    }

    /// One device of the organisation, judged now.
    pub async fn device(&self, org: OrgId, device: DeviceId) -> Result<DeviceRecord> {
        self.read(move |mut c| {
            Box::pin(async move {
                let policy = policy_of(&mut c, org).await?;
                device_row(&mut c, org, device).await?.into_record(&policy, now_ms())
            })
        })
        .await
    }

    /// The organisation's posture policy (the baseline's until one is set).
    pub async fn posture_policy(&self, org: OrgId) -> Result<PosturePolicy> {
        self.read(move |mut c| Box::pin(async move { policy_of(&mut c, org).await })).await
    }

    /// Replaces the organisation's posture policy and judges every live registered device
    /// again under it; returns how many were judged.
    pub async fn set_posture_policy(&self, org: OrgId, actor: UserId, policy: PosturePolicy, meta: RequestMeta) -> Result<usize> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let json = to_json(&policy)?;
                exec!(
                    &mut c,
                    "INSERT INTO posture_policies (org_id, policy, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by",
                    org.0,
                    json,
                    now,
                    actor.0
                )?;
                let ids = live_registered(&mut c, org).await?;
                for id in &ids {
                    reevaluate(&mut c, org, DeviceId(*id), &policy, now).await?;
                }
                let mut ev = AuditEvent::new(AuditAction::DevicePosturePolicy, Outcome::Success)
                    .detail("devices_reevaluated", DetailValue::Int(ids.len() as i64));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(ids.len())
            })
        })
        .await
    }

    /// A device's posture reports, newest first, at most `limit`.
    pub async fn posture_history(&self, org: OrgId, device: DeviceId, limit: i64) -> Result<Vec<PostureRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    PostureRow,
                    "SELECT id, device_id, received_at, report, evaluation FROM posture_reports \
                     WHERE org_id = $1 AND device_id = $2 ORDER BY received_at DESC, id DESC LIMIT $3",
                    org.0,
                    device.0,
                    limit
                )?;
                if rows.is_empty() {
                    // Tell an unknown device from one without reports.
                    device_row(&mut c, org, device).await?;
                }
                rows.into_iter().map(PostureRow::into_record).collect()
            })
        })
        .await
    }

    /// Every stored evaluation of the organisation's devices received from `from` (Unix ms),
    /// oldest first per device, with each live device's evaluation now appended (so a device
    /// that went silent shows its fall to stale).
    pub async fn posture_timelines(&self, org: OrgId, from: i64) -> Result<BTreeMap<DeviceId, Vec<Evaluation>>> {
        let devices = self.devices(org, None).await?;
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    PostureRow,
                    "SELECT id, device_id, received_at, report, evaluation FROM posture_reports \
                     WHERE org_id = $1 AND received_at >= $2 ORDER BY received_at, id",
                    org.0,
                    from
                )?;
                let mut out: BTreeMap<DeviceId, Vec<Evaluation>> = BTreeMap::new();
                for r in rows {
                    let r = r.into_record()?;
                    out.entry(r.device_id).or_default().push(r.evaluation);
                }
                for d in devices {
                    if let (Some(e), None) = (d.evaluation, d.revoked_at) {
                        out.entry(d.id).or_default().push(e);
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// Draws and records a spot-check sample of `percent` of the organisation's live
    /// registered devices with `seed`.
    pub async fn create_spot_check(&self, org: OrgId, actor: UserId, seed: u64, percent: u8, meta: RequestMeta) -> Result<SpotCheck> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let population = live_registered(&mut c, org).await?;
                let sample = ward_device::spot_check(&population, seed, percent)
                    .map_err(|_| StoreError::State("a spot check samples from 10 to 100 percent of devices"))?;
                let id = uuid::Uuid::now_v7();
                exec!(
                    &mut c,
                    "INSERT INTO device_spot_checks (id, org_id, created_at, created_by, seed, percent, population, sample) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    id,
                    org.0,
                    now,
                    actor.0,
                    seed.to_string(),
                    i64::from(percent),
                    to_json(&population)?,
                    to_json(&sample)?
                )?;
                let mut ev = AuditEvent::new(AuditAction::DeviceSpotCheck, Outcome::Success)
                    .target("spot_check", id)
                    .detail("seed", DetailValue::Int(i64::try_from(seed).map_err(|_| StoreError::State("the seed is too large"))?))
                    .detail("percent", DetailValue::Int(i64::from(percent)))
                    .detail("population", DetailValue::Int(population.len() as i64))
                    .detail("sampled", DetailValue::Int(sample.len() as i64));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(SpotCheck {
                    id,
                    org_id: org,
                    created_at: now,
                    created_by: actor,
                    seed,
                    percent,
                    population: population.into_iter().map(DeviceId).collect(),
                    sample: sample.into_iter().map(DeviceId).collect(),
                })
            })
        })
        .await
    }

    /// The organisation's spot checks, newest first (one when `id` is given).
    pub async fn spot_checks(&self, org: OrgId, id: Option<uuid::Uuid>) -> Result<Vec<SpotCheck>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    SpotCheckRow,
                    "SELECT id, org_id, created_at, created_by, seed, percent, population, sample FROM device_spot_checks \
                     WHERE org_id = $1 AND ($2 OR id = $3) ORDER BY created_at DESC, id DESC LIMIT 200",
                    org.0,
                    id.is_none(),
                    id.unwrap_or_default()
                )?;
                rows.into_iter().map(SpotCheckRow::into_spot_check).collect()
            })
        })
        .await
    }

    /// Asks for a selective wipe of a device of the organisation: the device and its sessions
    /// are revoked at once and the command waits for the device. `owner` limits it to that
    /// user's devices (a user reporting their own device lost). One wipe per device.
    #[allow(clippy::too_many_arguments)]
    pub async fn request_wipe(
        &self,
        org: OrgId,
        device: DeviceId,
        owner: Option<UserId>,
        requested_by: UserId,
        reason: String,
        source: WipeSource,
        meta: RequestMeta,
    ) -> Result<WipeRequested> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let row = device_row(&mut c, org, device).await?;
                if owner.is_some_and(|o| o.0 != row.user_id) {
                    return Err(StoreError::NotFound);
                }
                if wipe_by_device(&mut c, device).await?.is_some() {
                    return Err(StoreError::Conflict("wipe of this device"));
                }
                let order = WipeOrder { org, device, user: UserId(row.user_id), requested_by: Some(requested_by), source, now };
                queue_wipe(&mut c, &order, &reason, &meta).await
            })
        })
        .await
    }

    /// The wipe command for a device presenting its wipe secret: recorded as delivered on
    /// first fetch. `None` when the secret does not match or no wipe was requested.
    pub async fn fetch_wipe(&self, device: DeviceId, secret_hash: Vec<u8>, meta: RequestMeta) -> Result<Option<DeviceWipe>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let Some(org) = device_by_secret(&mut c, device, &secret_hash).await? else {
                    if let Some(owner) = org_of_device(&mut c, device).await? {
                        let ev = device_event(AuditAction::DeviceWipeDelivered, Outcome::Failure, owner, None, device)
                            .detail("reason", DetailValue::Code("wrong_secret"));
                        audit::append(&mut c, &ev, &meta).await?;
                    }
                    return Ok(None);
                };
                let Some(wipe) = wipe_by_device(&mut c, device).await? else { return Ok(None) };
                if wipe.delivered_at.is_none() {
                    let now = now_ms();
                    let n =
                        exec!(&mut c, "UPDATE device_wipes SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL", wipe.id, now)?;
                    if n == 1 {
                        let ev = device_event(AuditAction::DeviceWipeDelivered, Outcome::Success, org, None, device)
                            .detail("wipe", DetailValue::Id(wipe.id));
                        audit::append(&mut c, &ev, &meta).await?;
                        return Ok(Some(DeviceWipe { delivered_at: Some(now), ..wipe }));
                    }
                }
                Ok(Some(wipe))
            })
        })
        .await
    }

    /// Records a device's confirmation that it erased Ward's data. A replay, a wrong secret
    /// or another wipe's id changes nothing and is audited as a failure.
    pub async fn acknowledge_wipe(
        &self,
        device: DeviceId,
        secret_hash: Vec<u8>,
        wipe_id: uuid::Uuid,
        meta: RequestMeta,
    ) -> Result<WipeAck> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let org = device_by_secret(&mut c, device, &secret_hash).await?;
                let wipe = match org {
                    Some(_) => wipe_by_device(&mut c, device).await?.filter(|w| w.id == wipe_id),
                    None => None,
                };
                let (outcome, reason) = match &wipe {
                    Some(w) if w.acknowledged_at.is_some() => (WipeAck::Replayed, "replayed"),
                    Some(w) => {
                        // Conditional, so two confirmations racing cannot both succeed.
                        let n = exec!(
                            &mut c,
                            "UPDATE device_wipes SET acknowledged_at = $2, delivered_at = COALESCE(delivered_at, $2) \
                             WHERE id = $1 AND acknowledged_at IS NULL",
                            w.id,
                            now
                        )?;
                        if n == 1 {
                            let done = DeviceWipe { acknowledged_at: Some(now), delivered_at: w.delivered_at.or(Some(now)), ..w.clone() };
                            (WipeAck::Acknowledged(done), "")
                        } else {
                            (WipeAck::Replayed, "replayed")
                        }
                    }
                    None => (WipeAck::Unknown, if org.is_some() { "unknown_wipe" } else { "wrong_secret" }),
                };
                // A failure is audited in the organisation that owns the device; an id that
                // belongs to no device is not audited at all (see `org_of_device`).
                let owner = match org {
                    Some(o) => Some(o),
                    None => org_of_device(&mut c, device).await?,
                };
                let Some(owner) = owner else { return Ok(outcome) };
                let mut ev = match &outcome {
                    WipeAck::Acknowledged(_) => AuditEvent::new(AuditAction::DeviceWipeAck, Outcome::Success),
                    _ => AuditEvent::new(AuditAction::DeviceWipeAck, Outcome::Failure).detail("reason", DetailValue::Code(reason)),
                }
                .target("device", device)
                .detail("wipe", DetailValue::Id(wipe_id));
                ev.org_id = Some(owner);
                // Only a caller holding the device's secret is taken to be the device.
                ev.device = org.map(|_| device);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(outcome)
            })
        })
        .await
    }

    /// The organisation's wipes, newest first; with `overdue_before`, only those requested
    /// before that time (Unix ms) and not acknowledged.
    pub async fn wipes(&self, org: OrgId, overdue_before: Option<i64>) -> Result<Vec<DeviceWipe>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {WIPE_COLUMNS} FROM device_wipes w WHERE w.org_id = $1 \
                     AND ($2 OR (w.acknowledged_at IS NULL AND w.closed_reason IS NULL AND w.requested_at < $3)) ORDER BY w.requested_at DESC, w.id DESC"
                ));
                let rows = fetch!(fetch_all, &mut c, WipeRow, sql, org.0, overdue_before.is_none(), overdue_before.unwrap_or(0))?;
                rows.into_iter().map(WipeRow::into_wipe).collect()
            })
        })
        .await
    }

    /// The settings to fix if the device is blocked from PHI now, else `None`. Cheap for
    /// devices that are not: one row, a time comparison.
    pub async fn phi_block(&self, org: OrgId, device: DeviceId) -> Result<Option<Vec<ItemId>>> {
        let now = now_ms();
        let quick = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(fetch!(
                        fetch_optional,
                        &mut c,
                        BlockRow,
                        "SELECT posture_state, posture_block_at FROM devices WHERE id = $1",
                        device.0
                    )?)
                })
            })
            .await?;
        let Some(q) = quick else { return Ok(None) };
        let maybe = q.posture_state.as_deref() == Some("block_phi") || q.posture_block_at.is_some_and(|t| t <= now);
        if !maybe {
            return Ok(None);
        }
        let current = self.device(org, device).await?;
        Ok(match current.evaluation.map(|e| e.state) {
            Some(DeviceState::BlockPhi { fix }) => Some(fix),
            _ => None,
        })
    }
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    posture_state: Option<String>,
    posture_block_at: Option<i64>,
}

fn platform_name(p: Platform) -> &'static str {
    match p {
        Platform::Ios => "ios",
        Platform::Ipados => "ipados",
        Platform::Android => "android",
    }
}

fn ownership_name(o: Ownership) -> &'static str {
    match o {
        Ownership::Corporate => "corporate",
        Ownership::Byod => "byod",
    }
}
