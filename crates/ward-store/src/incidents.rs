//! Breach incidents (45 CFR 164.400–414, 164.308(a)(6)): the record, the signed four-factor
//! assessment and the notifications made against the computed plan.
//!
//! The title and description may carry PHI: they are sealed under the organisation's data key,
//! bound to the incident, and never copied into the audit log (which keeps codes and counts).
//! Bad input is refused before anything is written, and the refusal is audited.

use std::collections::BTreeMap;

use time::Date;
use ward_crypto::{Keyring, SealContext};
use ward_domain::DomainError;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::breach::{self, AssessmentOutcome, BreachFacts, FactorRisk, Obligation, RiskAssessment, StateCode, StateRules};
use ward_domain::ids::{ConversationId, MessageId, OrgId, PatientId, UserId};
use ward_domain::policy::Actor;

use crate::conversations::membership;
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{ScopeKind, open_field, purpose};
use crate::patients::patient_id_in_org;
use crate::{RequestMeta, Store, audit, now_ms};

/// The longest title, in characters.
pub(crate) const MAX_TITLE_CHARS: usize = 200;
/// The longest description, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// The most patients one incident lists by id (larger breaches give a count instead).
pub(crate) const MAX_PATIENTS: usize = 10_000;

/// Where an incident came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentSource {
    /// Opened by a compliance officer.
    Manual,
    /// Opened from a message reported as sent to the wrong recipients.
    MisdirectedMessage,
}

impl IncidentSource {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSource::Manual => "manual",
            IncidentSource::MisdirectedMessage => "misdirected_message",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [IncidentSource::Manual, IncidentSource::MisdirectedMessage].into_iter().find(|x| x.as_str() == s)
    }
}

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    /// Recorded, not yet assessed.
    Open,
    /// The assessment is signed.
    Assessed,
    /// Every obligation of the plan is recorded as done.
    Notified,
    /// Closed: no further changes.
    Closed,
}

impl IncidentStatus {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Assessed => "assessed",
            IncidentStatus::Notified => "notified",
            IncidentStatus::Closed => "closed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [IncidentStatus::Open, IncidentStatus::Assessed, IncidentStatus::Notified, IncidentStatus::Closed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// On what footing the stored plan was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanBasis {
    /// At opening: an impermissible use or disclosure is presumed a breach (164.402) until
    /// the assessment shows otherwise, so the clocks run from discovery.
    Presumed,
    /// At the signed assessment (empty when it found a low probability of compromise).
    Assessed,
    /// An incident from before plans were stored: computed now from the current rules.
    Recomputed,
}

impl PlanBasis {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanBasis::Presumed => "presumed",
            PlanBasis::Assessed => "assessed",
            PlanBasis::Recomputed => "recomputed",
        }
    }
}

/// The plan for an incident with these facts: every obligation while no assessment is signed
/// (presumed breach) or when it found a breach; none when it found a low probability.
pub fn plan_for(facts: &BreachFacts, assessment: Option<&RiskAssessment>, rules: &StateRules) -> Result<Vec<Obligation>> {
    match assessment {
        Some(a) if !a.is_breach() => Ok(Vec::new()),
        _ => Ok(breach::plan(facts, rules)?),
    }
}

/// A new incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    /// A short title (PHI-capable, sealed).
    pub title: String,
    /// What happened (PHI-capable, sealed).
    pub description: String,
    /// When the breach was discovered (starts the clocks).
    pub discovered_on: Date,
    /// When it happened, if known.
    pub occurred_on: Option<Date>,
    /// Individuals affected in total.
    pub affected_count: u64,
    /// Affected residents per state.
    pub residents: BTreeMap<StateCode, u64>,
    /// Affected patients known to Ward.
    pub patients: Vec<PatientId>,
}

/// A signed assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedAssessment {
    /// The factors and outcome.
    pub assessment: RiskAssessment,
    /// Who signed it.
    pub signed_by: UserId,
    /// When (Unix ms).
    pub signed_at: i64,
}

/// A notification recorded as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// The plan obligation's key.
    pub obligation_key: String,
    /// The day it was made.
    pub done_on: Date,
    /// Who recorded it.
    pub recorded_by: UserId,
    /// When (Unix ms).
    pub recorded_at: i64,
}

/// One incident. `title` and `description` are opened only for a single-incident read.
#[derive(Debug, Clone)]
pub struct Incident {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// Where it came from.
    pub source: IncidentSource,
    /// The conversation of a reported message.
    pub conversation_id: Option<ConversationId>,
    /// The reported message.
    pub message_id: Option<MessageId>,
    /// Who opened it.
    pub reported_by: UserId,
    /// When (Unix ms).
    pub reported_at: i64,
    /// Title, when opened.
    pub title: Option<String>,
    /// Description, when opened.
    pub description: Option<String>,
    /// Discovery date.
    pub discovered_on: Date,
    /// Occurrence date.
    pub occurred_on: Option<Date>,
    /// Individuals affected.
    pub affected_count: u64,
    /// Residents per state.
    pub residents: BTreeMap<StateCode, u64>,
    /// Patients known to Ward.
    pub patients: Vec<PatientId>,
    /// Status.
    pub status: IncidentStatus,
    /// The signed assessment.
    pub assessment: Option<SignedAssessment>,
    /// Notifications recorded.
    pub notifications: Vec<NotificationRecord>,
    /// Who closed it.
    pub closed_by: Option<UserId>,
    /// When (Unix ms).
    pub closed_at: Option<i64>,
    /// The notification plan as computed and stored (at opening, then at each assessment).
    pub plan: Vec<Obligation>,
    /// On what footing it was computed.
    pub plan_basis: PlanBasis,
    /// The review date (`as_of`) of the state rules that applied; `None` for a recomputed plan.
    pub plan_rules_as_of: Option<Date>,
    /// When it was computed (Unix ms); `None` for a recomputed plan.
    pub plan_computed_at: Option<i64>,
}

impl Incident {
    /// The facts the deadline calculator needs.
    pub fn facts(&self) -> BreachFacts {
        BreachFacts { discovered: self.discovered_on, affected: self.affected_count, residents: self.residents.clone() }
    }
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    source: String,
    conversation_id: Option<uuid::Uuid>,
    message_id: Option<uuid::Uuid>,
    reported_by: uuid::Uuid,
    reported_at: i64,
    title_sealed: Vec<u8>,
    description_sealed: Vec<u8>,
    discovered_on: String,
    occurred_on: Option<String>,
    affected_count: i64,
    status: String,
    nature_and_extent: Option<String>,
    unauthorized_recipient: Option<String>,
    acquired_or_viewed: Option<String>,
    mitigation: Option<String>,
    outcome: Option<String>,
    assessed_by: Option<uuid::Uuid>,
    assessed_at: Option<i64>,
    closed_by: Option<uuid::Uuid>,
    closed_at: Option<i64>,
    plan_json: Option<String>,
    plan_basis: Option<String>,
    plan_rules_as_of: Option<String>,
    plan_computed_at: Option<i64>,
}

const COLUMNS: &str = "id, org_id, source, conversation_id, message_id, reported_by, reported_at, title_sealed, description_sealed, \
     discovered_on, occurred_on, affected_count, status, nature_and_extent, unauthorized_recipient, acquired_or_viewed, mitigation, \
     outcome, assessed_by, assessed_at, closed_by, closed_at, plan_json, plan_basis, plan_rules_as_of, plan_computed_at";

/// The stored form of a plan and the columns that say how it was made.
struct StoredPlan {
    json: String,
    basis: &'static str,
    rules_as_of: String,
    computed_at: i64,
}

fn stored_plan(plan: &[Obligation], basis: PlanBasis, rules: &StateRules) -> Result<StoredPlan> {
    Ok(StoredPlan {
        json: serde_json::to_string(plan).map_err(|_| StoreError::Corrupt("incident plan"))?,
        basis: basis.as_str(),
        rules_as_of: day_text(rules.as_of),
        computed_at: now_ms(),
    })
}

#[derive(sqlx::FromRow)]
struct ResidentRow {
    state: String,
    residents: i64,
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    obligation_key: String,
    done_on: String,
    recorded_by: uuid::Uuid,
    recorded_at: i64,
}

fn day(s: &str, what: &'static str) -> Result<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).map_err(|_| StoreError::Corrupt(what))
}

fn day_text(d: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&format).unwrap_or_default()
}

fn text_context(purpose: &'static str, org: OrgId, id: uuid::Uuid) -> SealContext<'static> {
    SealContext { purpose, org: org.0, scope: org.0, record: id }
}

fn factor(s: Option<String>, what: &'static str) -> Result<FactorRisk> {
    s.as_deref().and_then(FactorRisk::parse).ok_or(StoreError::Corrupt(what))
}

async fn load(c: &mut Conn<'_>, ring: Option<&Keyring>, org: OrgId, id: uuid::Uuid) -> Result<Option<Incident>> {
    let Some(r) = fetch!(
        fetch_optional,
        c,
        IncidentRow,
        sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM incidents WHERE id = $1 AND org_id = $2")),
        id,
        org.0
    )?
    else {
        return Ok(None);
    };
    let (title, description) = match ring {
        Some(ring) => (
            Some(open_field(c, ring, &text_context(purpose::INCIDENT_TITLE, org, id), &r.title_sealed).await?),
            Some(open_field(c, ring, &text_context(purpose::INCIDENT_DESCRIPTION, org, id), &r.description_sealed).await?),
        ),
        None => (None, None),
    };
    let residents = fetch!(fetch_all, c, ResidentRow, "SELECT state, residents FROM incident_residents WHERE incident_id = $1", id)?
        .into_iter()
        .map(|x| {
            let s = StateCode::parse(&x.state).map_err(|_| StoreError::Corrupt("incident_residents.state"))?;
            Ok((s, u64::try_from(x.residents).map_err(|_| StoreError::Corrupt("incident_residents.residents"))?))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let patients =
        scalar!(fetch_all, c, uuid::Uuid, "SELECT patient_id FROM incident_patients WHERE incident_id = $1 ORDER BY patient_id", id)?
            .into_iter()
            .map(PatientId)
            .collect();
    let notifications = fetch!(
        fetch_all,
        c,
        NotificationRow,
        "SELECT obligation_key, done_on, recorded_by, recorded_at FROM incident_notifications WHERE incident_id = $1 ORDER BY obligation_key",
        id
    )?
    .into_iter()
    .map(|n| {
        Ok(NotificationRecord {
            done_on: day(&n.done_on, "incident_notifications.done_on")?,
            obligation_key: n.obligation_key,
            recorded_by: UserId(n.recorded_by),
            recorded_at: n.recorded_at,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let assessment = match (r.outcome.as_deref(), r.assessed_by, r.assessed_at) {
        (Some(o), Some(by), Some(at)) => Some(SignedAssessment {
            assessment: RiskAssessment {
                nature_and_extent: factor(r.nature_and_extent, "incidents.nature_and_extent")?,
                unauthorized_recipient: factor(r.unauthorized_recipient, "incidents.unauthorized_recipient")?,
                acquired_or_viewed: factor(r.acquired_or_viewed, "incidents.acquired_or_viewed")?,
                mitigation: factor(r.mitigation, "incidents.mitigation")?,
                outcome: AssessmentOutcome::parse(o).ok_or(StoreError::Corrupt("incidents.outcome"))?,
            },
            signed_by: UserId(by),
            signed_at: at,
        }),
        _ => None,
    };
    let facts = BreachFacts {
        discovered: day(&r.discovered_on, "incidents.discovered_on")?,
        affected: u64::try_from(r.affected_count).map_err(|_| StoreError::Corrupt("incidents.affected_count"))?,
        residents: residents.clone(),
    };
    let (plan, plan_basis, plan_rules_as_of) = match (r.plan_json.as_deref(), r.plan_basis.as_deref()) {
        (Some(json), Some(basis)) => (
            serde_json::from_str(json).map_err(|_| StoreError::Corrupt("incidents.plan_json"))?,
            match basis {
                "presumed" => PlanBasis::Presumed,
                "assessed" => PlanBasis::Assessed,
                _ => return Err(StoreError::Corrupt("incidents.plan_basis")),
            },
            r.plan_rules_as_of.as_deref().map(|d| day(d, "incidents.plan_rules_as_of")).transpose()?,
        ),
        // Opened before plans were stored.
        _ => (plan_for(&facts, assessment.as_ref().map(|a| &a.assessment), StateRules::embedded())?, PlanBasis::Recomputed, None),
    };
    Ok(Some(Incident {
        plan,
        plan_basis,
        plan_rules_as_of,
        plan_computed_at: r.plan_json.as_ref().and(r.plan_computed_at),
        id: r.id,
        org_id: OrgId(r.org_id),
        source: IncidentSource::parse(&r.source).ok_or(StoreError::Corrupt("incidents.source"))?,
        conversation_id: r.conversation_id.map(ConversationId),
        message_id: r.message_id.map(MessageId),
        reported_by: UserId(r.reported_by),
        reported_at: r.reported_at,
        title,
        description,
        discovered_on: day(&r.discovered_on, "incidents.discovered_on")?,
        occurred_on: r.occurred_on.as_deref().map(|d| day(d, "incidents.occurred_on")).transpose()?,
        affected_count: u64::try_from(r.affected_count).map_err(|_| StoreError::Corrupt("incidents.affected_count"))?,
        residents,
        patients,
        status: IncidentStatus::parse(&r.status).ok_or(StoreError::Corrupt("incidents.status"))?,
        assessment,
        notifications,
        closed_by: r.closed_by.map(UserId),
        closed_at: r.closed_at,
    }))
}

fn event(action: AuditAction, outcome: Outcome, actor: &Actor, id: Option<uuid::Uuid>) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    if let Some(id) = id {
        ev = ev.target("incident", id);
    }
    ev.org_id = Some(actor.org_id);
    ev.actor = Some(actor.user_id);
    ev
}

/// A refusal code for an invalid value (the field name, a fixed string).
fn invalid_code(e: &DomainError) -> &'static str {
    match e {
        DomainError::Invalid { field, .. } => field,
        _ => "invalid",
    }
}

fn check_text(field: &'static str, s: &str, max: usize) -> std::result::Result<(), DomainError> {
    let n = s.trim().chars().count();
    if n == 0 || n > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(match field {
            "title" => DomainError::Invalid { field: "title", rule: "must be 1 to 200 characters without control characters" },
            _ => DomainError::Invalid { field: "description", rule: "must be 1 to 20000 characters without control characters" },
        });
    }
    Ok(())
}

/// Checks a new incident's fields, naming the first that is wrong.
fn validate_new(new: &NewIncident, today: Date) -> std::result::Result<(), DomainError> {
    check_text("title", &new.title, MAX_TITLE_CHARS)?;
    check_text("description", &new.description, MAX_DESCRIPTION_CHARS)?;
    breach::validate_dates(new.discovered_on, new.occurred_on, today)?;
    BreachFacts { discovered: new.discovered_on, affected: new.affected_count, residents: new.residents.clone() }.validate()?;
    if new.patients.len() > MAX_PATIENTS || new.patients.len() as u64 > new.affected_count {
        return Err(DomainError::Invalid { field: "patients", rule: "more patients than affected individuals (or over 10000)" });
    }
    Ok(())
}

impl Store {
    async fn refuse<T>(
        &self,
        action: AuditAction,
        actor: &Actor,
        id: Option<uuid::Uuid>,
        reason: &'static str,
        meta: &RequestMeta,
        err: StoreError,
    ) -> Result<T> {
        let ev = event(action, Outcome::Denied, actor, id).detail("reason", DetailValue::Code(reason));
        self.record(ev, meta.clone()).await?;
        Err(err)
    }

    /// Opens an incident. `today` is the caller's calendar day (discovery may not be later).
    /// Invalid input is refused, audited as denied with the field at fault, and nothing is kept.
    /// Its notification plan is computed from `rules` now, on the presumption of a breach, and
    /// stored.
    pub async fn create_incident(
        &self,
        actor: Actor,
        new: NewIncident,
        today: Date,
        rules: &'static StateRules,
        meta: RequestMeta,
    ) -> Result<Incident> {
        self.insert_incident(actor, new, IncidentSource::Manual, None, today, rules, meta).await
    }

    /// Opens an incident for a message the actor (a member of its conversation) reports as
    /// sent to the wrong recipients: discovered today, the conversation's patient affected.
    pub async fn report_misdirected(
        &self,
        actor: Actor,
        conv: ConversationId,
        msg: MessageId,
        today: Date,
        rules: &'static StateRules,
        meta: RequestMeta,
    ) -> Result<Incident> {
        let found = self
            .read(move |mut c| {
                Box::pin(async move {
                    let (row, _) = match membership(&mut c, &actor, conv).await {
                        Ok(m) => m,
                        Err(StoreError::NotFound) => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    let exists = scalar!(
                        fetch_optional,
                        &mut c,
                        uuid::Uuid,
                        "SELECT id FROM messages WHERE id = $1 AND conversation_id = $2",
                        msg.0,
                        conv.0
                    )?;
                    Ok(exists.map(|_| row.patient_id.map(PatientId)))
                })
            })
            .await?;
        let Some(patient) = found else {
            return self.refuse(AuditAction::IncidentCreate, &actor, None, "unknown_message", &meta, StoreError::NotFound).await;
        };
        let new = NewIncident {
            title: "Message sent to the wrong recipients".to_owned(),
            description: "Reported from a conversation as sent to the wrong recipients.".to_owned(),
            discovered_on: today,
            occurred_on: None,
            affected_count: 1,
            residents: BTreeMap::new(),
            patients: patient.into_iter().collect(),
        };
        self.insert_incident(actor, new, IncidentSource::MisdirectedMessage, Some((conv, msg)), today, rules, meta).await
    }

    #[allow(clippy::too_many_arguments, reason = "the incident's parts, each distinct")]
    async fn insert_incident(
        &self,
        actor: Actor,
        new: NewIncident,
        source: IncidentSource,
        link: Option<(ConversationId, MessageId)>,
        today: Date,
        rules: &'static StateRules,
        meta: RequestMeta,
    ) -> Result<Incident> {
        let checked = validate_new(&new, today);
        if let Err(e) = checked {
            return self.refuse(AuditAction::IncidentCreate, &actor, None, invalid_code(&e), &meta, StoreError::Invalid(e)).await;
        }
        let org = actor.org_id;
        let mut patients = new.patients.clone();
        patients.sort_by_key(|p| p.0);
        patients.dedup();
        let check = patients.clone();
        let known = self
            .read(move |mut c| {
                Box::pin(async move {
                    for p in check {
                        match patient_id_in_org(&mut c, org, p).await {
                            Ok(_) => {}
                            Err(StoreError::NotFound) => return Ok(false),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(true)
                })
            })
            .await?;
        if !known {
            return self.refuse(AuditAction::IncidentCreate, &actor, None, "unknown_patient", &meta, StoreError::NotFound).await;
        }
        let key = self.current_key(org, ScopeKind::Org, org.0).await?;
        let id = uuid::Uuid::now_v7();
        let title = key.seal(&text_context(purpose::INCIDENT_TITLE, org, id), new.title.trim().as_bytes());
        let description = key.seal(&text_context(purpose::INCIDENT_DESCRIPTION, org, id), new.description.as_bytes());
        let discovered = day_text(new.discovered_on);
        let occurred = new.occurred_on.map(day_text);
        let affected = i64::try_from(new.affected_count).map_err(|_| StoreError::Corrupt("affected_count"))?;
        let residents = new.residents.clone();
        let facts = BreachFacts { discovered: new.discovered_on, affected: new.affected_count, residents: new.residents.clone() };
        let plan = stored_plan(&plan_for(&facts, None, rules)?, PlanBasis::Presumed, rules)?;
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO incidents (id, org_id, source, conversation_id, message_id, reported_by, reported_at, title_sealed, \
                     description_sealed, discovered_on, occurred_on, affected_count, plan_json, plan_basis, plan_rules_as_of, plan_computed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    id,
                    org.0,
                    source.as_str(),
                    link.map(|l| l.0.0),
                    link.map(|l| l.1.0),
                    actor.user_id.0,
                    now_ms(),
                    title.as_slice(),
                    description.as_slice(),
                    discovered.as_str(),
                    occurred.as_deref(),
                    affected,
                    plan.json.as_str(),
                    plan.basis,
                    plan.rules_as_of.as_str(),
                    plan.computed_at
                )?;
                for p in &patients {
                    exec!(&mut c, "INSERT INTO incident_patients (incident_id, patient_id) VALUES ($1, $2)", id, p.0)?;
                }
                for (s, n) in &residents {
                    let n = i64::try_from(*n).map_err(|_| StoreError::Corrupt("residents"))?;
                    exec!(&mut c, "INSERT INTO incident_residents (incident_id, state, residents) VALUES ($1, $2, $3)", id, s.as_str(), n)?;
                }
                let mut ev = event(AuditAction::IncidentCreate, Outcome::Success, &actor, Some(id))
                    .detail("source", DetailValue::Code(source.as_str()))
                    .detail("affected", DetailValue::Int(affected))
                    .detail("patients", DetailValue::Int(patients.len() as i64))
                    .detail("states", DetailValue::Int(residents.len() as i64));
                if let Some((conv, msg)) = link {
                    ev = ev.detail("conversation", DetailValue::Id(conv.0)).detail("message", DetailValue::Id(msg.0));
                }
                if patients.len() == 1 {
                    ev = ev.patient(Some(patients[0]));
                }
                audit::append(&mut c, &ev, &meta).await?;
                load(&mut c, None, org, id).await?.ok_or(StoreError::NotFound)
            })
        })
        .await
    }

    /// The organisation's incidents, newest first (texts not opened).
    pub async fn incidents(&self, org: OrgId) -> Result<Vec<Incident>> {
        self.incidents_up_to(org, 1000).await
    }

    /// The organisation's newest `limit` incidents, as [`Store::incidents`] (the evidence
    /// export reads one more than it holds, to fail rather than cut the list short).
    pub async fn incidents_up_to(&self, org: OrgId, limit: u32) -> Result<Vec<Incident>> {
        let limit = i64::from(limit);
        self.read(move |mut c| {
            Box::pin(async move {
                let ids = scalar!(
                    fetch_all,
                    &mut c,
                    uuid::Uuid,
                    "SELECT id FROM incidents WHERE org_id = $1 ORDER BY reported_at DESC, id DESC LIMIT $2",
                    org.0,
                    limit
                )?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(i) = load(&mut c, None, org, id).await? {
                        out.push(i);
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// One incident with its title and description opened; the read is audited.
    pub async fn incident(&self, actor: Actor, id: uuid::Uuid, meta: RequestMeta) -> Result<Incident> {
        let ring = self.keyring().clone();
        let org = actor.org_id;
        let found = self.read(move |mut c| Box::pin(async move { load(&mut c, Some(&ring), org, id).await })).await?;
        let Some(i) = found else { return Err(StoreError::NotFound) };
        self.record(event(AuditAction::IncidentRead, Outcome::Success, &actor, Some(id)), meta).await?;
        Ok(i)
    }

    /// Signs the four-factor assessment (again, while the incident is open or assessed: the
    /// latest signature stands and each is audited).
    /// The plan is computed again from `rules` and the assessment, and stored: the deadlines
    /// that applied at the signature stay on the record however the rules change later.
    pub async fn assess_incident(
        &self,
        actor: Actor,
        id: uuid::Uuid,
        a: RiskAssessment,
        rules: &'static StateRules,
        meta: RequestMeta,
    ) -> Result<Incident> {
        if let Err(e) = a.validate() {
            return self.refuse(AuditAction::IncidentAssess, &actor, Some(id), invalid_code(&e), &meta, StoreError::Invalid(e)).await;
        }
        let org = actor.org_id;
        let write_meta = meta.clone();
        let r = self
            .write(move |mut c| {
                Box::pin(async move {
                    // Takes the row lock (PostgreSQL) before anything is read, as
                    // `record_notification` and `close_incident` do.
                    exec!(&mut c, "UPDATE incidents SET status = status WHERE id = $1 AND org_id = $2", id, org.0)?;
                    let Some(cur) = load(&mut c, None, org, id).await? else { return Ok(Err("unknown_incident")) };
                    if !matches!(cur.status, IncidentStatus::Open | IncidentStatus::Assessed) {
                        return Ok(Err("not_open"));
                    }
                    let plan = stored_plan(&plan_for(&cur.facts(), Some(&a), rules)?, PlanBasis::Assessed, rules)?;
                    exec!(
                        &mut c,
                        "UPDATE incidents SET status = 'assessed', nature_and_extent = $1, unauthorized_recipient = $2, acquired_or_viewed = $3, \
                         mitigation = $4, outcome = $5, assessed_by = $6, assessed_at = $7, plan_json = $10, plan_basis = $11, \
                         plan_rules_as_of = $12, plan_computed_at = $13 WHERE id = $8 AND org_id = $9 AND status IN ('open', 'assessed')",
                        a.nature_and_extent.as_str(),
                        a.unauthorized_recipient.as_str(),
                        a.acquired_or_viewed.as_str(),
                        a.mitigation.as_str(),
                        a.outcome.as_str(),
                        actor.user_id.0,
                        now_ms(),
                        id,
                        org.0,
                        plan.json.as_str(),
                        plan.basis,
                        plan.rules_as_of.as_str(),
                        plan.computed_at
                    )?;
                    let ev = event(AuditAction::IncidentAssess, Outcome::Success, &actor, Some(id))
                        .detail("nature_and_extent", DetailValue::Code(a.nature_and_extent.as_str()))
                        .detail("unauthorized_recipient", DetailValue::Code(a.unauthorized_recipient.as_str()))
                        .detail("acquired_or_viewed", DetailValue::Code(a.acquired_or_viewed.as_str()))
                        .detail("mitigation", DetailValue::Code(a.mitigation.as_str()))
                        .detail("outcome", DetailValue::Code(a.outcome.as_str()));
                    audit::append(&mut c, &ev, &write_meta).await?;
                    // Notifications recorded under an earlier plan stay recorded: when they
                    // already meet every obligation of the new plan, the incident is notified.
                    let now = load(&mut c, None, org, id).await?.ok_or(StoreError::NotFound)?;
                    if !now.plan.is_empty() && now.plan.iter().all(|o| now.notifications.iter().any(|n| n.obligation_key == o.key)) {
                        exec!(&mut c, "UPDATE incidents SET status = 'notified' WHERE id = $1 AND org_id = $2", id, org.0)?;
                        return Ok(Ok(load(&mut c, None, org, id).await?.ok_or(StoreError::NotFound)?));
                    }
                    Ok(Ok(now))
                })
            })
            .await?;
        match r {
            Ok(i) => Ok(i),
            Err("unknown_incident") => {
                self.refuse(AuditAction::IncidentAssess, &actor, Some(id), "unknown_incident", &meta, StoreError::NotFound).await
            }
            Err(why) => {
                self.refuse(
                    AuditAction::IncidentAssess,
                    &actor,
                    Some(id),
                    why,
                    &meta,
                    StoreError::State("the incident is notified or closed"),
                )
                .await
            }
        }
    }

    /// Records that the stored plan's obligation `key` was met on `done_on` (not in the future,
    /// not before discovery). When every obligation is met the incident becomes `notified`.
    /// The checks run inside the write transaction, on the incident's row locked first, so a
    /// concurrent close, assessment or notification cannot slip between check and write.
    pub async fn record_notification(
        &self,
        actor: Actor,
        id: uuid::Uuid,
        key: String,
        done_on: Date,
        today: Date,
        meta: RequestMeta,
    ) -> Result<Incident> {
        let org = actor.org_id;
        let write_meta = meta.clone();
        let r = self
            .write(move |mut c| {
                Box::pin(async move {
                    // Takes the row lock (PostgreSQL) before anything is read.
                    exec!(&mut c, "UPDATE incidents SET status = status WHERE id = $1 AND org_id = $2", id, org.0)?;
                    let Some(cur) = load(&mut c, None, org, id).await? else { return Ok(Err(Refusal::UnknownIncident)) };
                    let Some(ob) = cur.plan.iter().find(|o| o.key == key) else { return Ok(Err(Refusal::UnknownObligation)) };
                    if !matches!(cur.status, IncidentStatus::Assessed | IncidentStatus::Notified) {
                        return Ok(Err(Refusal::NotAssessed));
                    }
                    if done_on > today || done_on < cur.discovered_on {
                        return Ok(Err(Refusal::DoneOn));
                    }
                    if cur.notifications.iter().any(|n| n.obligation_key == key) {
                        return Ok(Err(Refusal::AlreadyRecorded));
                    }
                    let kind = ob.kind.as_str();
                    let late = done_on > ob.due;
                    exec!(
                        &mut c,
                        "INSERT INTO incident_notifications (incident_id, obligation_key, done_on, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                        id,
                        key.as_str(),
                        day_text(done_on).as_str(),
                        actor.user_id.0,
                        now_ms()
                    )?;
                    let done = scalar!(fetch_all, &mut c, String, "SELECT obligation_key FROM incident_notifications WHERE incident_id = $1", id)?;
                    if cur.plan.iter().all(|o| done.contains(&o.key)) {
                        exec!(&mut c, "UPDATE incidents SET status = 'notified' WHERE id = $1 AND org_id = $2", id, org.0)?;
                    }
                    let ev = event(AuditAction::IncidentNotify, Outcome::Success, &actor, Some(id))
                        .detail("obligation", DetailValue::Code(kind))
                        .detail("late", DetailValue::Bool(late));
                    audit::append(&mut c, &ev, &write_meta).await?;
                    Ok(Ok(load(&mut c, None, org, id).await?.ok_or(StoreError::NotFound)?))
                })
            })
            .await?;
        let refusal = match r {
            Ok(i) => return Ok(i),
            Err(r) => r,
        };
        let (code, err) = match refusal {
            Refusal::UnknownIncident => ("unknown_incident", StoreError::NotFound),
            Refusal::UnknownObligation => ("unknown_obligation", StoreError::State("no such obligation in the incident's plan")),
            Refusal::NotAssessed => ("not_assessed", StoreError::State("the incident is not assessed")),
            Refusal::DoneOn => (
                "done_on",
                StoreError::Invalid(DomainError::Invalid { field: "done_on", rule: "must lie between the discovery date and today" }),
            ),
            Refusal::AlreadyRecorded => ("already_recorded", StoreError::Conflict("this obligation is already recorded")),
            Refusal::NotClosable => unreachable!("not a notification refusal"),
        };
        self.refuse(AuditAction::IncidentNotify, &actor, Some(id), code, &meta, err).await
    }

    /// Closes an incident: assessed as not a breach, or with every notification recorded. The
    /// check runs inside the write transaction on the locked row (see `record_notification`).
    pub async fn close_incident(&self, actor: Actor, id: uuid::Uuid, meta: RequestMeta) -> Result<Incident> {
        let org = actor.org_id;
        let write_meta = meta.clone();
        let r = self
            .write(move |mut c| {
                Box::pin(async move {
                    exec!(&mut c, "UPDATE incidents SET status = status WHERE id = $1 AND org_id = $2", id, org.0)?;
                    let Some(cur) = load(&mut c, None, org, id).await? else { return Ok(Err(Refusal::UnknownIncident)) };
                    let closable = match cur.status {
                        IncidentStatus::Notified => true,
                        IncidentStatus::Assessed => cur.assessment.is_some_and(|a| !a.assessment.is_breach()),
                        _ => false,
                    };
                    if !closable {
                        return Ok(Err(Refusal::NotClosable));
                    }
                    exec!(
                        &mut c,
                        "UPDATE incidents SET status = 'closed', closed_by = $1, closed_at = $2 WHERE id = $3 AND org_id = $4",
                        actor.user_id.0,
                        now_ms(),
                        id,
                        org.0
                    )?;
                    audit::append(&mut c, &event(AuditAction::IncidentClose, Outcome::Success, &actor, Some(id)), &write_meta).await?;
                    Ok(Ok(load(&mut c, None, org, id).await?.ok_or(StoreError::NotFound)?))
                })
            })
            .await?;
        match r {
            Ok(i) => Ok(i),
            Err(Refusal::UnknownIncident) => {
                self.refuse(AuditAction::IncidentClose, &actor, Some(id), "unknown_incident", &meta, StoreError::NotFound).await
            }
            Err(_) => {
                self.refuse(
                    AuditAction::IncidentClose,
                    &actor,
                    Some(id),
                    "not_closable",
                    &meta,
                    StoreError::State("an incident closes once assessed as not a breach, or once every notification is recorded"),
                )
                .await
            }
        }
    }
}

/// Why a checked write was refused (decided inside the transaction, audited after it).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownIncident,
    UnknownObligation,
    NotAssessed,
    DoneOn,
    AlreadyRecorded,
    NotClosable,
}

impl Store {
    /// The reminder check: for every incident not yet assessed (presumed a breach, 164.402) or
    /// assessed as a breach, and not yet notified, each
    /// open obligation whose deadline is a week or a day away, or passed, on `today` gets one
    /// `incident.reminder` audit event per stage (which the alert evaluator turns into an
    /// `incident_deadline` alert for the compliance officers). Recorded with the event in one
    /// transaction, so a stage is reminded once however often the check runs. Returns how many
    /// reminders it raised.
    pub async fn send_incident_reminders(&self, today: Date, meta: RequestMeta) -> Result<usize> {
        let candidates = self
            .read(move |mut c| {
                Box::pin(async move {
                    #[derive(sqlx::FromRow)]
                    struct Open {
                        id: uuid::Uuid,
                        org_id: uuid::Uuid,
                    }
                    let open = fetch!(
                        fetch_all,
                        &mut c,
                        Open,
                        "SELECT id, org_id FROM incidents WHERE status IN ('open', 'assessed') ORDER BY id LIMIT 10000"
                    )?;
                    let mut out = Vec::new();
                    for o in open {
                        if let Some(i) = load(&mut c, None, OrgId(o.org_id), o.id).await? {
                            out.push(i);
                        }
                    }
                    Ok(out)
                })
            })
            .await?;
        let mut due = Vec::new();
        for i in candidates {
            for ob in i.plan {
                if i.notifications.iter().any(|n| n.obligation_key == ob.key) {
                    continue;
                }
                let u = breach::urgency(ob.due, today);
                if u >= breach::Urgency::DueWithinWeek {
                    due.push((i.org_id, i.id, ob.key, ob.kind, u, (ob.due - today).whole_days()));
                }
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        self.write(move |mut c| {
            Box::pin(async move {
                let mut raised = 0;
                for (org, id, key, kind, u, days_left) in due {
                    let seen = scalar!(
                        fetch_optional,
                        &mut c,
                        String,
                        "SELECT stage FROM incident_reminders WHERE incident_id = $1 AND obligation_key = $2 AND stage = $3",
                        id,
                        key.as_str(),
                        u.as_str()
                    )?;
                    if seen.is_some() {
                        continue;
                    }
                    exec!(
                        &mut c,
                        "INSERT INTO incident_reminders (incident_id, obligation_key, stage, sent_at) VALUES ($1, $2, $3, $4)",
                        id,
                        key.as_str(),
                        u.as_str(),
                        now_ms()
                    )?;
                    let mut ev = AuditEvent::new(AuditAction::IncidentReminder, Outcome::Success)
                        .target("incident", id)
                        .detail("obligation", DetailValue::Code(kind.as_str()))
                        .detail("urgency", DetailValue::Code(u.as_str()))
                        .detail("days_left", DetailValue::Int(days_left));
                    ev.org_id = Some(org);
                    audit::append(&mut c, &ev, &meta).await?;
                    raised += 1;
                }
                Ok(raised)
            })
        })
        .await
    }
}
