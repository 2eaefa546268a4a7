//! Sealing rows written before encryption at rest: message bodies, conversation titles,
//! stated-reason notes and patient identifiers that a database of an earlier version holds in
//! plaintext.

use ward_domain::ids::{ConversationId, MessageId, OrgId, PatientId, UserId};

use crate::Store;
use crate::conversations::{reason_note_context, title_context};
use crate::db::{exec, fetch};
use crate::error::Result;
use crate::keys::{ScopeKind, purpose};
use crate::messages::body_context;
use crate::patients::{mrn_index, patient_context};

/// How many rows one pass sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacySealed {
    /// Message bodies.
    pub messages: u64,
    /// Conversation titles.
    pub titles: u64,
    /// Notes of members' stated reasons.
    pub reason_notes: u64,
    /// Patient records (MRN and name).
    pub patients: u64,
}

#[derive(sqlx::FromRow)]
struct PlainMessage {
    id: uuid::Uuid,
    conversation_id: uuid::Uuid,
    org_id: uuid::Uuid,
    body: String,
}

#[derive(sqlx::FromRow)]
struct PlainTitle {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    title: String,
}

#[derive(sqlx::FromRow)]
struct PlainNote {
    conversation_id: uuid::Uuid,
    user_id: uuid::Uuid,
    org_id: uuid::Uuid,
    reason_note: String,
}

#[derive(sqlx::FromRow)]
struct PlainPatient {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    mrn: String,
    display_name: String,
}

const BATCH: i64 = 500;

impl Store {
    /// Seals every plaintext row left from before encryption at rest, in batches; safe to run
    /// while serving and again after an interruption (a row is sealed once).
    pub async fn seal_legacy_rows(&self) -> Result<LegacySealed> {
        let mut done = LegacySealed::default();
        loop {
            let rows = self
                .read(|mut c| {
                    Box::pin(async move {
                        Ok(fetch!(
                            fetch_all,
                            &mut c,
                            PlainMessage,
                            "SELECT m.id, m.conversation_id, c.org_id, m.body FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                             WHERE m.body_sealed IS NULL AND m.body <> '' LIMIT $1",
                            BATCH
                        )?)
                    })
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut sealed = Vec::with_capacity(rows.len());
            for r in rows {
                let (org, conv) = (OrgId(r.org_id), ConversationId(r.conversation_id));
                let key = self.current_key(org, ScopeKind::Conversation, conv.0).await?;
                sealed.push((r.id, key.seal(&body_context(org, conv, MessageId(r.id)), r.body.as_bytes())));
            }
            done.messages += sealed.len() as u64;
            self.write(move |mut c| {
                Box::pin(async move {
                    for (id, blob) in &sealed {
                        exec!(
                            &mut c,
                            "UPDATE messages SET body_sealed = $2, body = '' WHERE id = $1 AND body_sealed IS NULL",
                            *id,
                            blob.as_slice()
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        loop {
            let rows = self
                .read(|mut c| {
                    Box::pin(async move {
                        Ok(fetch!(
                            fetch_all,
                            &mut c,
                            PlainTitle,
                            "SELECT id, org_id, title FROM conversations WHERE title IS NOT NULL AND title_sealed IS NULL LIMIT $1",
                            BATCH
                        )?)
                    })
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut sealed = Vec::with_capacity(rows.len());
            for r in rows {
                let (org, conv) = (OrgId(r.org_id), ConversationId(r.id));
                let key = self.current_key(org, ScopeKind::Conversation, conv.0).await?;
                sealed.push((r.id, key.seal(&title_context(org, conv), r.title.as_bytes())));
            }
            done.titles += sealed.len() as u64;
            self.write(move |mut c| {
                Box::pin(async move {
                    for (id, blob) in &sealed {
                        exec!(
                            &mut c,
                            "UPDATE conversations SET title_sealed = $2, title = NULL WHERE id = $1 AND title_sealed IS NULL",
                            *id,
                            blob.as_slice()
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        loop {
            let rows = self
                .read(|mut c| {
                    Box::pin(async move {
                        Ok(fetch!(
                            fetch_all,
                            &mut c,
                            PlainNote,
                            "SELECT m.conversation_id, m.user_id, c.org_id, m.reason_note FROM conversation_members m \
                             JOIN conversations c ON c.id = m.conversation_id WHERE m.reason_note IS NOT NULL LIMIT $1",
                            BATCH
                        )?)
                    })
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut sealed = Vec::with_capacity(rows.len());
            for r in rows {
                let (org, conv) = (OrgId(r.org_id), ConversationId(r.conversation_id));
                let key = self.current_key(org, ScopeKind::Conversation, conv.0).await?;
                sealed.push((
                    r.conversation_id,
                    r.user_id,
                    key.seal(&reason_note_context(org, conv, UserId(r.user_id)), r.reason_note.as_bytes()),
                ));
            }
            done.reason_notes += sealed.len() as u64;
            self.write(move |mut c| {
                Box::pin(async move {
                    for (conv, user, blob) in &sealed {
                        exec!(
                            &mut c,
                            "UPDATE conversation_members SET reason_note_sealed = $3, reason_note = NULL \
                             WHERE conversation_id = $1 AND user_id = $2 AND reason_note IS NOT NULL",
                            *conv,
                            *user,
                            blob.as_slice()
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        loop {
            let rows = self
                .read(|mut c| {
                    Box::pin(async move {
                        Ok(fetch!(
                            fetch_all,
                            &mut c,
                            PlainPatient,
                            "SELECT id, org_id, mrn, display_name FROM patients WHERE mrn_sealed IS NULL LIMIT $1",
                            BATCH
                        )?)
                    })
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut sealed = Vec::with_capacity(rows.len());
            for r in rows {
                let (org, id) = (OrgId(r.org_id), PatientId(r.id));
                let index = mrn_index(&*self.index_key(org).await?, &r.mrn);
                let key = self.current_key(org, ScopeKind::Patient, id.0).await?;
                let mrn = key.seal(&patient_context(purpose::PATIENT_MRN, org, id), r.mrn.as_bytes());
                let name = key.seal(&patient_context(purpose::PATIENT_NAME, org, id), r.display_name.as_bytes());
                sealed.push((r.id, index, mrn, name));
            }
            done.patients += sealed.len() as u64;
            self.write(move |mut c| {
                Box::pin(async move {
                    for (id, index, mrn, name) in &sealed {
                        exec!(
                            &mut c,
                            "UPDATE patients SET mrn = $2, display_name = '', mrn_sealed = $3, name_sealed = $4 WHERE id = $1 AND mrn_sealed IS NULL",
                            *id,
                            index.as_str(),
                            mrn.as_slice(),
                            name.as_slice()
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
        Ok(done)
    }
}
