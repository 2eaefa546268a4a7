//! Messages patients send in over a channel Ward does not secure (SMS, email), as far as the
//! store sees them: only the sender. The message itself never reaches the store. A sender
//! that is a patient's verified contact gets one fixed, PHI-free redirect to the portal
//! through the outbox, under the patient's current consent for the channel and at most once
//! per sender within the configured window; anyone else gets nothing. Every call is audited
//! as `inbound.receive` with a keyed hash of the sender, never the number or address.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::NoticeChannel;
use ward_domain::contact::ContactKind;
use ward_domain::ids::{OrgId, PatientId};

use crate::consents::current_consent;
use crate::contacts::{contact_destination, hex, sendable_patient_contact_by_index, value_index};
use crate::db::{exec, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, purpose};
use crate::notices::outbox_context;
use crate::{RequestMeta, Store, audit, now_ms};

/// One message that came in: who sent it and what to answer.
#[derive(Clone)]
pub struct Inbound {
    /// `sms` or `email`: the channel it came in on, and the one the reply goes out on.
    pub channel: NoticeChannel,
    /// The sender's normalised number (E.164) or address. Never stored or audited.
    pub sender: String,
    /// The redirect text, already checked by the outbound content policy; `None` if the
    /// configured text did not pass it (nothing is sent then).
    pub reply: Option<String>,
    /// At most one redirect per sender and channel within this many ms.
    pub every_ms: i64,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sender is a phone number or email address: PHI.
        f.debug_struct("Inbound").field("channel", &self.channel).finish_non_exhaustive()
    }
}

/// What came of an inbound message (the webhook answers the same whatever it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// A redirect was queued to the sender's verified contact.
    RedirectQueued {
        /// The outbox entry.
        notice_id: uuid::Uuid,
        /// The patient whose contact it is.
        patient_id: PatientId,
    },
    /// The sender is not a patient's sendable contact: nothing is sent.
    UnknownSender,
    /// The patient has no current consent for the channel: nothing is sent.
    NoConsent,
    /// A redirect went to this sender within the window: nothing more is sent.
    RateLimited,
    /// The configured redirect text did not pass the content policy: nothing is sent.
    RedirectBlocked,
}

impl InboundOutcome {
    /// The audit `result` code.
    pub fn code(&self) -> &'static str {
        match self {
            InboundOutcome::RedirectQueued { .. } => "redirect_queued",
            InboundOutcome::UnknownSender => "unknown_sender",
            InboundOutcome::NoConsent => "no_consent",
            InboundOutcome::RateLimited => "rate_limited",
            InboundOutcome::RedirectBlocked => "redirect_blocked",
        }
    }
}

impl Store {
    /// Handles one inbound message's sender: looks it up among the patients' verified
    /// contacts and, if found and allowed, queues the redirect (sealed under the patient's
    /// key like any notice). Audited either way, in the same transaction.
    pub async fn receive_inbound(&self, org: OrgId, msg: Inbound, meta: RequestMeta) -> Result<InboundOutcome> {
        let kind = match msg.channel {
            NoticeChannel::Sms => ContactKind::Phone,
            NoticeChannel::Email => ContactKind::Email,
            NoticeChannel::Push => return Err(StoreError::State("inbound messages come by SMS or email")),
        };
        let ikey = self.index_key(org).await?;
        let index = value_index(&ikey, kind, &msg.sender);
        let mac = ikey.blind_index(purpose::INBOUND_SENDER, format!("{}:{}", kind.as_str(), msg.sender).as_bytes());
        let sender_hash = hex(&mac);
        let mut first = [0u8; 16];
        first.copy_from_slice(&mac[..16]);
        let sender_id = uuid::Uuid::from_bytes(first);
        // Find the patient first (a read), so the reply can be sealed under their key outside
        // the write; the write looks again and drops the reply if the answer changed.
        let idx = index.clone();
        let found =
            self.read(move |mut c| Box::pin(async move { sendable_patient_contact_by_index(&mut c, org, kind, &idx).await })).await?;
        let id = uuid::Uuid::now_v7();
        let sealed = match (&found, &msg.reply) {
            (Some((patient, _)), Some(text)) => {
                let key = self.current_key(org, ScopeKind::Patient, patient.0).await?;
                Some(key.seal(&outbox_context(org, *patient, id), text.as_bytes()))
            }
            _ => None,
        };
        let channel = msg.channel;
        let every_ms = msg.every_ms;
        let blocked = msg.reply.is_none();
        drop(msg);
        self.write(move |mut c| {
            Box::pin(async move {
                let mut ev = AuditEvent::new(AuditAction::InboundReceive, Outcome::Success)
                    .detail("channel", DetailValue::Code(channel.as_str()))
                    .detail("sender", DetailValue::Id(sender_id));
                ev.org_id = Some(org);
                let now = now_ms();
                let outcome = 'decide: {
                    let Some((patient, contact)) = sendable_patient_contact_by_index(&mut c, org, kind, &index).await? else {
                        break 'decide InboundOutcome::UnknownSender;
                    };
                    ev = ev.patient(Some(patient)).detail("contact", DetailValue::Id(contact));
                    if found != Some((patient, contact)) {
                        // Changed between the read and now: answer nothing this time.
                        break 'decide InboundOutcome::UnknownSender;
                    }
                    let Some(consent) = current_consent(&mut c, org, patient, channel.required_consent()).await? else {
                        break 'decide InboundOutcome::NoConsent;
                    };
                    let (true, Some(sealed)) = (!blocked, sealed.as_ref()) else {
                        break 'decide InboundOutcome::RedirectBlocked;
                    };
                    // The claim on the sender's window: a conditional upsert, so of two nodes
                    // (or two quick messages) only one gets to reply.
                    let claimed = exec!(
                        &mut c,
                        "INSERT INTO inbound_senders (org_id, channel, sender_hash, last_redirect_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (org_id, channel, sender_hash) DO UPDATE SET last_redirect_at = excluded.last_redirect_at \
                         WHERE inbound_senders.last_redirect_at <= $5",
                        org.0,
                        channel.as_str(),
                        sender_hash.as_str(),
                        now,
                        now - every_ms
                    )?;
                    if claimed == 0 {
                        break 'decide InboundOutcome::RateLimited;
                    }
                    exec!(
                        &mut c,
                        "INSERT INTO notice_outbox (id, org_id, kind, patient_id, contact_id, channel, destination, consent_id, \
                         body_sealed, status, created_at) VALUES ($1, $2, 'redirect', $3, $4, $5, $6, $7, $8, 'queued', $9)",
                        id,
                        org.0,
                        patient.0,
                        contact,
                        channel.as_str(),
                        contact_destination(contact),
                        consent.id,
                        sealed.as_slice(),
                        now
                    )?;
                    ev = ev.target("notice", id).detail("notice", DetailValue::Id(id)).detail("consent", DetailValue::Id(consent.id));
                    InboundOutcome::RedirectQueued { notice_id: id, patient_id: patient }
                };
                ev = ev.detail("result", DetailValue::Code(outcome.code()));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(outcome)
            })
        })
        .await
    }

    /// How many redirects are in the outbox for a patient (tests and the operator's checks).
    pub async fn redirect_count(&self, org: OrgId, patient: PatientId) -> Result<i64> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM notice_outbox WHERE org_id = $1 AND patient_id = $2 AND kind = 'redirect'",
                    org.0,
                    patient.0
                )?)
            })
        })
        .await
    }
}
