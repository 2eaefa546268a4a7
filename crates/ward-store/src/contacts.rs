//! The verified contact directory: phone numbers and email addresses of users and patient
//! records, sealed under the owner's data key and found by a blind index; one-time-code
//! verification through the outbox; suppression from delivery feedback; and the check the
//! notice outbox makes before anything is sent to a contact (`ward_domain::contact`).

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::NoticeChannel;
use ward_domain::contact::{
    CODE_TTL_MS, CODE_WINDOW_MS, ContactFacts, ContactKind, ContactStatus, DEFAULT_REVERIFY_DAYS, MAX_CODE_ATTEMPTS, MAX_CODES_PER_ACTOR,
    MAX_CODES_PER_WINDOW, MAX_CONTACTS_PER_OWNER, SuppressReason, status, verification_text,
};
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::patients::patient_id_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// Prefix of a stored contact blind index (a version, should the scheme ever change).
const INDEX_PREFIX: &str = "ci1:";

/// Whose contact it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactOwner {
    /// A user's own (workforce or patient account).
    User(UserId),
    /// A patient record's: where notices to the patient go.
    Patient(PatientId),
}

impl ContactOwner {
    fn as_str(self) -> &'static str {
        match self {
            ContactOwner::User(_) => "user",
            ContactOwner::Patient(_) => "patient",
        }
    }
}

/// A contact with its value opened and its status now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// Whose it is.
    pub owner: ContactOwner,
    /// Phone or email.
    pub kind: ContactKind,
    /// The normal form (E.164, or the lowercased address).
    pub value: String,
    /// Unix ms.
    pub created_at: i64,
    /// Who added it.
    pub created_by: UserId,
    /// When it was last verified (Unix ms).
    pub verified_at: Option<i64>,
    /// When delivery feedback last suppressed it (Unix ms).
    pub suppressed_at: Option<i64>,
    /// Why.
    pub suppressed_reason: Option<SuppressReason>,
    /// Whether another person of the organisation claims the same value.
    pub conflict: bool,
    /// Where it stands now.
    pub status: ContactStatus,
    /// When the pending code expires (Unix ms), if one is pending.
    pub code_expires_at: Option<i64>,
    /// Wrong codes entered against the pending code.
    pub code_attempts: i64,
}

/// A contact claimed by more than one person, as admins see it: no value, only ids and a
/// group label shared by the contacts with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactConflict {
    /// The contact.
    pub id: uuid::Uuid,
    /// Whose it is.
    pub owner: ContactOwner,
    /// Phone or email.
    pub kind: ContactKind,
    /// The same for every contact with the same value (a prefix of its blind index; reveals
    /// nothing about the value).
    pub group: String,
    /// Unix ms.
    pub created_at: i64,
    /// When it was last verified.
    pub verified_at: Option<i64>,
}

/// A message to a contact in the outbox (verification codes; notices sent to a contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactMessage {
    /// Id.
    pub id: uuid::Uuid,
    /// `verification` or `notice`.
    pub kind: String,
    /// The medium.
    pub channel: NoticeChannel,
    /// `contact:<id>`.
    pub destination: String,
    /// The text (opened).
    pub body: String,
    /// `queued` until a provider takes it.
    pub status: String,
    /// Unix ms.
    pub created_at: i64,
}

/// What asking for a verification code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationStart {
    /// A code was queued for the contact.
    Sent {
        /// The outbox entry.
        message_id: uuid::Uuid,
        /// When the code expires (Unix ms).
        expires_at: i64,
    },
    /// Too many codes were sent to the contact lately; retry after this many seconds.
    RateLimited {
        /// Seconds.
        retry_after_secs: u64,
    },
}

/// What entering a verification code came to (every outcome is audited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationResult {
    /// The code matched: the contact is verified now.
    Verified(Contact),
    /// Wrong code; this many attempts remain before the code is locked.
    WrongCode {
        /// Attempts left (0: locked now).
        attempts_left: i64,
    },
    /// Too many wrong codes: this code is locked; ask for a new one.
    Locked,
    /// No code is pending, or it expired; ask for a new one.
    Expired,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    user_id: Option<uuid::Uuid>,
    patient_id: Option<uuid::Uuid>,
    kind: String,
    value_sealed: Vec<u8>,
    value_index: String,
    created_at: i64,
    created_by: uuid::Uuid,
    verified_at: Option<i64>,
    suppressed_at: Option<i64>,
    suppressed_reason: Option<String>,
    code_hash: Option<Vec<u8>>,
    code_expires_at: Option<i64>,
    code_attempts: i64,
    codes_window_start: Option<i64>,
    codes_in_window: i64,
    conflict: bool,
}

/// The columns of a contact row and whether another person claims its value.
const CONTACT_COLUMNS: &str = "c.id, c.org_id, c.user_id, c.patient_id, c.kind, c.value_sealed, c.value_index, c.created_at, c.created_by, \
     c.verified_at, c.suppressed_at, c.suppressed_reason, c.code_hash, c.code_expires_at, c.code_attempts, c.codes_window_start, \
     c.codes_in_window, EXISTS (SELECT 1 FROM contacts o WHERE o.org_id = c.org_id AND o.kind = c.kind AND o.value_index = c.value_index \
     AND o.person_id <> c.person_id) AS conflict";

impl ContactRow {
    fn owner(&self) -> Result<ContactOwner> {
        match (self.user_id, self.patient_id) {
            (Some(u), None) => Ok(ContactOwner::User(UserId(u))),
            (None, Some(p)) => Ok(ContactOwner::Patient(PatientId(p))),
            _ => Err(StoreError::Corrupt("contacts.owner")),
        }
    }

    fn kind(&self) -> Result<ContactKind> {
        ContactKind::parse(&self.kind).ok_or(StoreError::Corrupt("contacts.kind"))
    }

    fn facts(&self) -> ContactFacts {
        ContactFacts { verified_at: self.verified_at, suppressed_at: self.suppressed_at, conflict: self.conflict }
    }
}

/// Where a contact's value and its messages are sealed: a patient's contacts under the
/// patient's key (shredding the patient reaches them), a user's under the organisation's.
fn seal_scope(org: OrgId, owner: ContactOwner) -> (ScopeKind, uuid::Uuid) {
    match owner {
        ContactOwner::Patient(p) => (ScopeKind::Patient, p.0),
        ContactOwner::User(_) => (ScopeKind::Org, org.0),
    }
}

fn value_context(org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose: purpose::CONTACT_VALUE, org: org.0, scope: seal_scope(org, owner).1, record: id }
}

fn message_context(org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose: purpose::OUTBOX_BODY, org: org.0, scope: seal_scope(org, owner).1, record: id }
}

/// What a notice or code to a contact names as its destination: the delivery provider looks
/// the address up, so none is copied into the outbox.
pub(crate) fn contact_destination(id: uuid::Uuid) -> String {
    format!("contact:{id}")
}

/// The channel that reaches a contact of this kind.
fn channel_of(kind: ContactKind) -> NoticeChannel {
    match kind {
        ContactKind::Phone => NoticeChannel::Sms,
        ContactKind::Email => NoticeChannel::Email,
    }
}

/// The contact kind a notice channel needs, if it needs one (push goes to the patient's app).
pub(crate) fn kind_for(channel: NoticeChannel) -> Option<ContactKind> {
    match channel {
        NoticeChannel::Sms => Some(ContactKind::Phone),
        NoticeChannel::Email => Some(ContactKind::Email),
        NoticeChannel::Push => None,
    }
}

/// A fresh verification code: [`ward_domain::contact::CODE_DIGITS`] uniformly random digits
/// from the system's secure generator (rejection sampling, so no digit is likelier).
pub fn new_verification_code() -> String {
    loop {
        let n = u32::from_be_bytes(ward_crypto::aead::random_array::<4>());
        // 4_294_000_000 is the largest multiple of 10^6 below 2^32.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The message hashed for a code: the contact id binds the hash to its row.
fn code_input(id: uuid::Uuid, code: &str) -> Vec<u8> {
    let mut v = id.as_bytes().to_vec();
    v.extend_from_slice(code.as_bytes());
    v
}

/// The organisation's re-verification period in days (the default without a policy row).
pub(crate) async fn reverify_days(c: &mut Conn<'_>, org: OrgId) -> Result<u32> {
    let days = scalar!(fetch_optional, c, i64, "SELECT reverify_days FROM contact_policies WHERE org_id = $1", org.0)?;
    Ok(days.map_or(DEFAULT_REVERIFY_DAYS, |d| d.clamp(1, i64::from(u32::MAX)) as u32))
}

async fn contact_row(c: &mut Conn<'_>, org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> Result<ContactRow> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = $1 AND c.org_id = $2");
    let row = fetch!(fetch_optional, c, ContactRow, sqlx::AssertSqlSafe(sql), id, org.0)?.ok_or(StoreError::NotFound)?;
    // Someone else's contact is as invisible as one that does not exist.
    if row.owner()? != owner {
        return Err(StoreError::NotFound);
    }
    Ok(row)
}

async fn open_contact(c: &mut Conn<'_>, ring: &ward_crypto::Keyring, r: ContactRow, now: i64, days: u32) -> Result<Contact> {
    let owner = r.owner()?;
    let org = OrgId(r.org_id);
    let value = open_field(c, ring, &value_context(org, owner, r.id), &r.value_sealed).await?;
    let pending = r.code_expires_at.filter(|e| *e > now && r.code_attempts < MAX_CODE_ATTEMPTS);
    Ok(Contact {
        id: r.id,
        org_id: org,
        owner,
        kind: r.kind()?,
        value,
        created_at: r.created_at,
        created_by: UserId(r.created_by),
        verified_at: r.verified_at,
        suppressed_at: r.suppressed_at,
        suppressed_reason: match &r.suppressed_reason {
            None => None,
            Some(s) => Some(SuppressReason::parse(s).ok_or(StoreError::Corrupt("contacts.suppressed_reason"))?),
        },
        conflict: r.conflict,
        status: status(r.facts(), now, days),
        code_expires_at: pending,
        code_attempts: r.code_attempts,
    })
}

/// Checks that the owner is of the organisation; returns the person the contact belongs to
/// (a patient account's person is its patient record, so that the account and the record
/// sharing a number is no conflict).
async fn owner_person(c: &mut Conn<'_>, org: OrgId, owner: ContactOwner) -> Result<uuid::Uuid> {
    match owner {
        ContactOwner::Patient(p) => Ok(patient_id_in_org(c, org, p).await?.0),
        ContactOwner::User(u) => {
            let row =
                fetch!(fetch_optional, c, (Option<uuid::Uuid>,), "SELECT patient_id FROM users WHERE id = $1 AND org_id = $2", u.0, org.0)?;
            let (patient,) = row.ok_or(StoreError::NotFound)?;
            Ok(patient.unwrap_or(u.0))
        }
    }
}

fn contact_event(action: AuditAction, org: OrgId, actor: UserId, owner: ContactOwner, id: uuid::Uuid, kind: ContactKind) -> AuditEvent {
    let mut ev = AuditEvent::new(action, Outcome::Success)
        .target("contact", id)
        .detail("kind", DetailValue::Code(kind.as_str()))
        .detail("owner", DetailValue::Code(owner.as_str()));
    if let ContactOwner::Patient(p) = owner {
        ev = ev.patient(Some(p));
    }
    ev.org_id = Some(org);
    ev.actor = Some(actor);
    ev
}

/// The patient's contact of `kind` that may receive a message now, if any: verified within
/// the organisation's period, not suppressed since, claimed by no one else. The most recently
/// verified wins.
pub(crate) async fn sendable_contact(c: &mut Conn<'_>, org: OrgId, patient: PatientId, kind: ContactKind) -> Result<Option<uuid::Uuid>> {
    let days = reverify_days(c, org).await?;
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.org_id = $1 AND c.patient_id = $2 AND c.kind = $3 \
         AND c.verified_at IS NOT NULL ORDER BY c.verified_at DESC, c.id"
    );
    let rows = fetch!(fetch_all, c, ContactRow, sqlx::AssertSqlSafe(sql), org.0, patient.0, kind.as_str())?;
    let now = now_ms();
    Ok(rows.into_iter().find(|r| status(r.facts(), now, days).sendable()).map(|r| r.id))
}

impl Store {
    /// The organisation's re-verification period in days.
    pub async fn contact_reverify_days(&self, org: OrgId) -> Result<u32> {
        self.read(move |mut c| Box::pin(async move { reverify_days(&mut c, org).await })).await
    }

    /// Sets the organisation's re-verification period (checked by the caller). Audited.
    pub async fn set_contact_reverify_days(&self, org: OrgId, actor: UserId, days: u32, meta: RequestMeta) -> Result<u32> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO contact_policies (org_id, reverify_days, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id) DO UPDATE SET reverify_days = excluded.reverify_days, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by",
                    org.0,
                    i64::from(days),
                    now_ms(),
                    actor.0
                )?;
                let mut ev = AuditEvent::new(AuditAction::ContactPolicy, Outcome::Success)
                    .target("org", org)
                    .detail("reverify_days", DetailValue::Int(i64::from(days)));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                reverify_days(&mut c, org).await
            })
        })
        .await
    }

    /// Adds a contact (the value already normalised by [`ContactKind::normalize`]), sealed
    /// under the owner's key and indexed blindly. The same value twice for one owner is
    /// [`StoreError::Conflict`]; a value another person claims is stored and flagged on both
    /// (status `conflict`). Audited, with `conflict` when flagged.
    pub async fn add_contact(
        &self,
        org: OrgId,
        actor: UserId,
        owner: ContactOwner,
        kind: ContactKind,
        value: String,
        meta: RequestMeta,
    ) -> Result<Contact> {
        let index = value_index(&*self.index_key(org).await?, kind, &value);
        let (scope_kind, scope) = seal_scope(org, owner);
        if let ContactOwner::Patient(p) = owner {
            // current_key refuses another tenant's scope, but say NotFound before any key work.
            self.read(move |mut c| Box::pin(async move { patient_id_in_org(&mut c, org, p).await })).await?;
        }
        let key = self.current_key(org, scope_kind, scope).await?;
        let id = uuid::Uuid::now_v7();
        let sealed = key.seal(&value_context(org, owner, id), value.as_bytes());
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let person = owner_person(&mut c, org, owner).await?;
                let (user_id, patient_id) = match owner {
                    ContactOwner::User(u) => (Some(u.0), None),
                    ContactOwner::Patient(p) => (None, Some(p.0)),
                };
                let now = now_ms();
                let taken = scalar!(
                    fetch_optional,
                    &mut c,
                    i32,
                    "SELECT 1 FROM contacts WHERE org_id = $1 AND kind = $2 AND value_index = $3 AND (user_id = $4 OR patient_id = $5)",
                    org.0,
                    kind.as_str(),
                    index.as_str(),
                    user_id,
                    patient_id
                )?;
                if taken.is_some() {
                    return Err(StoreError::Conflict("this contact"));
                }
                let held = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM contacts WHERE org_id = $1 AND (user_id = $2 OR patient_id = $3)",
                    org.0,
                    user_id,
                    patient_id
                )?;
                if held >= MAX_CONTACTS_PER_OWNER {
                    return Err(StoreError::State("a user or patient has at most 20 contacts"));
                }
                exec!(
                    &mut c,
                    "INSERT INTO contacts (id, org_id, user_id, patient_id, person_id, kind, value_sealed, value_index, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    id,
                    org.0,
                    user_id,
                    patient_id,
                    person,
                    kind.as_str(),
                    sealed.as_slice(),
                    index.as_str(),
                    now,
                    actor.0
                )?;
                let days = reverify_days(&mut c, org).await?;
                let row = contact_row(&mut c, org, owner, id).await?;
                let mut ev = contact_event(AuditAction::ContactAdd, org, actor, owner, id, kind);
                if row.conflict {
                    ev = ev.detail("conflict", DetailValue::Bool(true));
                }
                audit::append(&mut c, &ev, &meta).await?;
                open_contact(&mut c, &ring, row, now, days).await
            })
        })
        .await
    }

    /// The owner's contacts with their status now, oldest first. A patient's are audited as a
    /// read by `actor`.
    pub async fn contacts(&self, org: OrgId, actor: UserId, owner: ContactOwner, meta: RequestMeta) -> Result<Vec<Contact>> {
        let ring = self.keyring().clone();
        let list = self
            .read(move |mut c| {
                Box::pin(async move {
                    owner_person(&mut c, org, owner).await?;
                    let days = reverify_days(&mut c, org).await?;
                    let (column, id) = match owner {
                        ContactOwner::User(u) => ("user_id", u.0),
                        ContactOwner::Patient(p) => ("patient_id", p.0),
                    };
                    let sql = format!(
                        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.org_id = $1 AND c.{column} = $2 ORDER BY c.created_at, c.id"
                    );
                    let rows = fetch!(fetch_all, &mut c, ContactRow, sqlx::AssertSqlSafe(sql), org.0, id)?;
                    let now = now_ms();
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        out.push(open_contact(&mut c, &ring, r, now, days).await?);
                    }
                    Ok(out)
                })
            })
            .await?;
        if let ContactOwner::Patient(p) = owner {
            let mut ev = AuditEvent::new(AuditAction::ContactRead, Outcome::Success)
                .target("patient", p)
                .patient(Some(p))
                .detail("records", DetailValue::Int(list.len() as i64));
            ev.org_id = Some(org);
            ev.actor = Some(actor);
            self.record(ev, meta).await?;
        }
        Ok(list)
    }

    /// One of the owner's contacts with its status now (NotFound for anyone else's).
    pub async fn contact(&self, org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> Result<Contact> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let days = reverify_days(&mut c, org).await?;
                let row = contact_row(&mut c, org, owner, id).await?;
                open_contact(&mut c, &ring, row, now_ms(), days).await
            })
        })
        .await
    }

    /// Removes one of the owner's contacts (messages already queued keep naming it). Audited.
    pub async fn remove_contact(&self, org: OrgId, actor: UserId, owner: ContactOwner, id: uuid::Uuid, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let row = contact_row(&mut c, org, owner, id).await?;
                exec!(&mut c, "DELETE FROM contacts WHERE id = $1", id)?;
                audit::append(&mut c, &contact_event(AuditAction::ContactRemove, org, actor, owner, id, row.kind()?), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Queues a verification message carrying `code` (from [`new_verification_code`]; the
    /// caller checked the text against the content policy) to one of the owner's contacts,
    /// replacing any pending code: only a keyed hash of the code is kept, valid for 10
    /// minutes. At most 5 codes per contact a day. Audited either way.
    pub async fn start_contact_verification(
        &self,
        org: OrgId,
        actor: UserId,
        owner: ContactOwner,
        id: uuid::Uuid,
        code: String,
        meta: RequestMeta,
    ) -> Result<VerificationStart> {
        let index_key = self.index_key(org).await?;
        let code_hash = index_key.blind_index(purpose::CONTACT_CODE, &code_input(id, &code)).to_vec();
        let (scope_kind, scope) = seal_scope(org, owner);
        if let ContactOwner::Patient(p) = owner {
            self.read(move |mut c| Box::pin(async move { patient_id_in_org(&mut c, org, p).await })).await?;
        }
        let key = self.current_key(org, scope_kind, scope).await?;
        let message_id = uuid::Uuid::now_v7();
        let body = key.seal(&message_context(org, owner, message_id), verification_text(&code).as_bytes());
        self.write(move |mut c| {
            Box::pin(async move {
                let row = contact_row(&mut c, org, owner, id).await?;
                let kind = row.kind()?;
                let mut ev = contact_event(AuditAction::ContactVerifyStart, org, actor, owner, id, kind);
                let now = now_ms();
                let window_open = row.codes_window_start.is_some_and(|s| now - s < CODE_WINDOW_MS);
                let (window_start, sent) = if window_open { (row.codes_window_start.unwrap_or(now), row.codes_in_window) } else { (now, 0) };
                let by_actor = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM notice_outbox WHERE created_by = $1 AND kind = 'verification' AND created_at > $2",
                    actor.0,
                    now - CODE_WINDOW_MS
                )?;
                if by_actor >= MAX_CODES_PER_ACTOR {
                    ev.outcome = Outcome::Failure;
                    ev = ev.detail("reason", DetailValue::Code("actor_rate_limited"));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(VerificationStart::RateLimited { retry_after_secs: 3600 });
                }
                if sent >= MAX_CODES_PER_WINDOW {
                    ev.outcome = Outcome::Failure;
                    ev = ev.detail("reason", DetailValue::Code("rate_limited"));
                    audit::append(&mut c, &ev, &meta).await?;
                    let retry_after_secs = ((window_start + CODE_WINDOW_MS - now).max(1000) / 1000) as u64;
                    return Ok(VerificationStart::RateLimited { retry_after_secs });
                }
                let expires_at = now + CODE_TTL_MS;
                exec!(
                    &mut c,
                    "UPDATE contacts SET code_hash = $2, code_expires_at = $3, code_attempts = 0, codes_window_start = $4, codes_in_window = $5 \
                     WHERE id = $1",
                    id,
                    code_hash.as_slice(),
                    expires_at,
                    window_start,
                    sent + 1
                )?;
                let patient_id = match owner {
                    ContactOwner::Patient(p) => Some(p.0),
                    ContactOwner::User(_) => None,
                };
                exec!(
                    &mut c,
                    "INSERT INTO notice_outbox (id, org_id, kind, patient_id, contact_id, channel, destination, body_sealed, status, created_at, \
                     created_by) VALUES ($1, $2, 'verification', $3, $4, $5, $6, $7, 'queued', $8, $9)",
                    message_id,
                    org.0,
                    patient_id,
                    id,
                    channel_of(kind).as_str(),
                    contact_destination(id),
                    body.as_slice(),
                    now,
                    actor.0
                )?;
                ev = ev.detail("message", DetailValue::Id(message_id));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(VerificationStart::Sent { message_id, expires_at })
            })
        })
        .await
    }

    /// Checks a code against the contact's pending one (constant-time, keyed hash): a match
    /// verifies the contact now and clears the code; a wrong code counts, and the fifth locks
    /// it. Every outcome is audited (never the code).
    pub async fn confirm_contact(
        &self,
        org: OrgId,
        actor: UserId,
        owner: ContactOwner,
        id: uuid::Uuid,
        code: String,
        meta: RequestMeta,
    ) -> Result<VerificationResult> {
        let index_key = self.index_key(org).await?;
        let ring = self.keyring().clone();
        self.write(move |mut c| {
            Box::pin(async move {
                let row = contact_row(&mut c, org, owner, id).await?;
                let kind = row.kind()?;
                let mut ev = contact_event(AuditAction::ContactVerify, org, actor, owner, id, kind);
                let now = now_ms();
                let refuse = |mut ev: AuditEvent, reason: &'static str, attempts: i64| {
                    ev.outcome = Outcome::Failure;
                    ev.detail("reason", DetailValue::Code(reason)).detail("attempts", DetailValue::Int(attempts))
                };
                let (Some(hash), Some(expires_at)) = (row.code_hash.as_deref(), row.code_expires_at) else {
                    audit::append(&mut c, &refuse(ev, "no_challenge", row.code_attempts), &meta).await?;
                    return Ok(VerificationResult::Expired);
                };
                if row.code_attempts >= MAX_CODE_ATTEMPTS {
                    audit::append(&mut c, &refuse(ev, "locked", row.code_attempts), &meta).await?;
                    return Ok(VerificationResult::Locked);
                }
                if now >= expires_at {
                    audit::append(&mut c, &refuse(ev, "expired", row.code_attempts), &meta).await?;
                    return Ok(VerificationResult::Expired);
                }
                if !index_key.verify_blind_index(purpose::CONTACT_CODE, &code_input(id, &code), hash) {
                    let attempts = row.code_attempts + 1;
                    exec!(&mut c, "UPDATE contacts SET code_attempts = $2 WHERE id = $1", id, attempts)?;
                    audit::append(&mut c, &refuse(ev, "wrong_code", attempts), &meta).await?;
                    return Ok(VerificationResult::WrongCode { attempts_left: MAX_CODE_ATTEMPTS - attempts });
                }
                exec!(
                    &mut c,
                    "UPDATE contacts SET verified_at = $2, code_hash = NULL, code_expires_at = NULL, code_attempts = 0 WHERE id = $1",
                    id,
                    now
                )?;
                ev = ev.detail("attempts", DetailValue::Int(row.code_attempts + 1));
                audit::append(&mut c, &ev, &meta).await?;
                let days = reverify_days(&mut c, org).await?;
                let row = contact_row(&mut c, org, owner, id).await?;
                Ok(VerificationResult::Verified(open_contact(&mut c, &ring, row, now, days).await?))
            })
        })
        .await
    }

    /// Delivery feedback: suppresses the contact's value at once, on every contact of the
    /// organisation holding it (a recycled number reaches a stranger, whoever's record names
    /// it). Verifying again lifts it. Returns how many contacts were suppressed. Audited.
    pub async fn suppress_contact(
        &self,
        org: OrgId,
        actor: UserId,
        id: uuid::Uuid,
        reason: SuppressReason,
        meta: RequestMeta,
    ) -> Result<u64> {
        self.write(move |mut c| {
            Box::pin(async move {
                let found = fetch!(
                    fetch_optional,
                    &mut c,
                    (String, String),
                    "SELECT kind, value_index FROM contacts WHERE id = $1 AND org_id = $2",
                    id,
                    org.0
                )?;
                let (kind, index) = found.ok_or(StoreError::NotFound)?;
                let kind = ContactKind::parse(&kind).ok_or(StoreError::Corrupt("contacts.kind"))?;
                let n = exec!(
                    &mut c,
                    "UPDATE contacts SET suppressed_at = $4, suppressed_reason = $5, code_hash = NULL, code_expires_at = NULL \
                     WHERE org_id = $1 AND kind = $2 AND value_index = $3",
                    org.0,
                    kind.as_str(),
                    index.as_str(),
                    now_ms(),
                    reason.as_str()
                )?;
                let mut ev = AuditEvent::new(AuditAction::ContactSuppress, Outcome::Success)
                    .target("contact", id)
                    .detail("kind", DetailValue::Code(kind.as_str()))
                    .detail("reason", DetailValue::Code(reason.as_str()))
                    .detail("contacts", DetailValue::Int(n as i64));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(n)
            })
        })
        .await
    }

    /// The organisation's contacts whose value another person also claims, grouped by value.
    pub async fn contact_conflicts(&self, org: OrgId) -> Result<Vec<ContactConflict>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT * FROM (SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.org_id = $1) x WHERE x.conflict \
                     ORDER BY x.kind, x.value_index, x.created_at, x.id"
                );
                let rows = fetch!(fetch_all, &mut c, ContactRow, sqlx::AssertSqlSafe(sql), org.0)?;
                rows.into_iter()
                    .map(|r| {
                        Ok(ContactConflict {
                            id: r.id,
                            owner: r.owner()?,
                            kind: r.kind()?,
                            group: r.value_index.chars().skip(INDEX_PREFIX.len()).take(12).collect(),
                            created_at: r.created_at,
                            verified_at: r.verified_at,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// The outbox entries addressed to a contact, oldest first, opened (for the delivery
    /// providers and for tests).
    pub async fn contact_outbox(&self, org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> Result<Vec<ContactMessage>> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                contact_row(&mut c, org, owner, id).await?;
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    (uuid::Uuid, String, String, String, Vec<u8>, String, i64),
                    "SELECT id, kind, channel, destination, body_sealed, status, created_at FROM notice_outbox \
                     WHERE org_id = $1 AND contact_id = $2 ORDER BY created_at, id",
                    org.0,
                    id
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for (mid, kind, channel, destination, sealed, status, created_at) in rows {
                    let body = if kind == "escalation" {
                        crate::escalation::ESCALATION_SMS_TEXT.to_owned()
                    } else {
                        open_field(&mut c, &ring, &message_context(org, owner, mid), &sealed).await?
                    };
                    let channel = NoticeChannel::parse(&channel).ok_or(StoreError::Corrupt("notice_outbox.channel"))?;
                    out.push(ContactMessage { id: mid, kind, channel, destination, body, status, created_at });
                }
                Ok(out)
            })
        })
        .await
    }
}

/// The user's phone contact that may receive a message now (verified within the period,
/// unsuppressed, claimed by no one else), if any: where an escalation SMS goes.
pub(crate) async fn sendable_user_phone(c: &mut Conn<'_>, org: OrgId, user: uuid::Uuid) -> Result<Option<uuid::Uuid>> {
    let days = reverify_days(c, org).await?;
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.org_id = $1 AND c.user_id = $2 AND c.kind = 'phone' \
         AND c.verified_at IS NOT NULL ORDER BY c.verified_at DESC, c.id"
    );
    let rows = fetch!(fetch_all, c, ContactRow, sqlx::AssertSqlSafe(sql), org.0, user)?;
    let now = now_ms();
    Ok(rows.into_iter().find(|r| status(r.facts(), now, days).sendable()).map(|r| r.id))
}

/// The blind index a contact of `kind` with this normalised value is found by.
pub(crate) fn value_index(key: &ward_crypto::DataKey, kind: ContactKind, value: &str) -> String {
    let mac = key.blind_index(purpose::CONTACT_INDEX, format!("{}:{value}", kind.as_str()).as_bytes());
    format!("{INDEX_PREFIX}{}", hex(&mac))
}

/// The patient contact of `kind` whose value has this blind index and that may receive a
/// message now (verified within the period, unsuppressed, claimed by no one else), with its
/// patient. Contacts of user accounts do not count: replies go where notices go.
pub(crate) async fn sendable_patient_contact_by_index(
    c: &mut Conn<'_>,
    org: OrgId,
    kind: ContactKind,
    index: &str,
) -> Result<Option<(PatientId, uuid::Uuid)>> {
    let days = reverify_days(c, org).await?;
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.org_id = $1 AND c.kind = $2 AND c.value_index = $3 \
         AND c.patient_id IS NOT NULL AND c.verified_at IS NOT NULL ORDER BY c.verified_at DESC, c.id"
    );
    let rows = fetch!(fetch_all, c, ContactRow, sqlx::AssertSqlSafe(sql), org.0, kind.as_str(), index)?;
    let now = now_ms();
    Ok(rows.into_iter().find(|r| status(r.facts(), now, days).sendable()).and_then(|r| r.patient_id.map(|p| (PatientId(p), r.id))))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// For the delivery worker: the contact's owner and opened value if a message may still go to
/// it now. A notice needs the contact sendable (verified within the period, unsuppressed,
/// unclaimed by anyone else); a verification code only needs it to exist and be unsuppressed.
pub(crate) async fn contact_for_delivery(
    c: &mut Conn<'_>,
    ring: &ward_crypto::Keyring,
    org: OrgId,
    id: uuid::Uuid,
    notice: bool,
) -> Result<Option<(ContactOwner, String)>> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = $1 AND c.org_id = $2");
    let Some(row) = fetch!(fetch_optional, c, ContactRow, sqlx::AssertSqlSafe(sql), id, org.0)? else { return Ok(None) };
    let days = reverify_days(c, org).await?;
    let ok = if notice { status(row.facts(), now_ms(), days).sendable() } else { row.suppressed_at.is_none() };
    if !ok {
        return Ok(None);
    }
    let owner = row.owner()?;
    let value = open_field(c, ring, &value_context(org, owner, id), &row.value_sealed).await?;
    Ok(Some((owner, value)))
}

/// The seal context of an outbox entry addressed to a contact of `owner`.
pub(crate) fn contact_message_context(org: OrgId, owner: ContactOwner, id: uuid::Uuid) -> SealContext<'static> {
    message_context(org, owner, id)
}
