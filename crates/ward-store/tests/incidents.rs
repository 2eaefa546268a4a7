//! Breach incidents on both backends: create (with bad input refused, audited and nothing
//! kept), the signed assessment, the notification plan and records, closing, the one-step
//! report of a misdirected message, and the description never reaching the audit log.

use std::collections::BTreeMap;

use time::macros::date;
use ward_domain::breach::{AssessmentOutcome, FactorRisk, RiskAssessment, StateCode, StateRules};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::PatientId;
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, sign_in, user};
use ward_store::{
    Backend, IncidentSource, IncidentStatus, MemberSpec, NewConversation, NewIncident, NewMessage, PlanBasis, Store, StoreError,
    on_both_backends,
};

on_both_backends!(
    incidents_are_recorded_assessed_notified_and_closed,
    bad_input_is_refused_audited_and_not_kept,
    a_misdirected_message_opens_an_incident,
    reminders_are_raised_once_per_stage,
    the_plan_is_kept_as_computed_when_rules_change,
    a_close_cannot_race_a_new_assessment,
    a_new_assessment_cannot_undo_a_notification,
);

/// The embedded rules with Florida's individual notice at 20 days instead of 30, reviewed on
/// another date: a change of the rules after an incident was assessed.
fn changed_rules() -> &'static StateRules {
    let text = include_str!("../../ward-domain/data/breach_state_rules.csv");
    let as_of = format!("# as_of: {}", StateRules::embedded().as_of);
    let text = text
        .replace(&as_of, "# as_of: 2026-01-15")
        .replace("FL,2018-04-01,individuals,,discovery,30,", "FL,2018-04-01,individuals,,discovery,20,");
    Box::leak(Box::new(StateRules::parse(&text).expect("changed rules parse")))
}

async fn the_plan_is_kept_as_computed_when_rules_change(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let today = date!(2026 - 03 - 20);
    let old = changed_rules();
    assert_eq!(old.as_of, date!(2026 - 01 - 15));
    let due = |i: &ward_store::Incident| i.plan.iter().find(|o| o.key == "individuals:FL").map(|o| o.due);
    // Opened and assessed under the old rules (discovered 2026-03-10): Florida's 20 days.
    let i = s.create_incident(co, new_incident(&[("FL", 1)], 1, vec![]), today, old, meta()).await.unwrap();
    assert_eq!((due(&i), i.plan_basis), (Some(date!(2026 - 03 - 30)), PlanBasis::Presumed));
    let a = s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), old, meta()).await.unwrap();
    assert_eq!(due(&a), Some(date!(2026 - 03 - 30)));
    assert_eq!(a.plan_rules_as_of, Some(date!(2026 - 01 - 15)));
    assert!(a.plan_computed_at.is_some());
    // The rules change (the embedded ones say 30 days): reads still show what applied.
    let read = s.incident(co, i.id, meta()).await.unwrap();
    assert_eq!(
        (due(&read), read.plan_basis, read.plan_rules_as_of),
        (Some(date!(2026 - 03 - 30)), PlanBasis::Assessed, Some(date!(2026 - 01 - 15)))
    );
    let listed = s.incidents(o.id).await.unwrap();
    assert_eq!(due(&listed[0]), Some(date!(2026 - 03 - 30)));
    // Notifications are recorded against the stored plan.
    let n = s.record_notification(co, i.id, "individuals:FL".into(), today, today, meta()).await.unwrap();
    assert!(!n.notifications.is_empty());
    // A new signed assessment computes the plan again under the rules of its day.
    let again =
        s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), StateRules::embedded(), meta()).await.unwrap();
    assert_eq!(due(&again), Some(date!(2026 - 04 - 09)));
    assert_eq!(again.plan_rules_as_of, Some(StateRules::embedded().as_of));
}

async fn a_close_cannot_race_a_new_assessment(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let today = date!(2026 - 03 - 20);
    let rules = StateRules::embedded();
    for _ in 0..15 {
        // Assessed as not a breach (closable); then a breach assessment and a close at once.
        let i = s.create_incident(co, new_incident(&[], 1, vec![]), today, rules, meta()).await.unwrap();
        s.assess_incident(co, i.id, assessment(AssessmentOutcome::LowProbabilityOfCompromise, FactorRisk::Low), rules, meta())
            .await
            .unwrap();
        let (assessed, closed) = tokio::join!(
            s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), rules, meta()),
            s.close_incident(co, i.id, meta())
        );
        assert!(assessed.is_ok() != closed.is_ok(), "exactly one wins: {assessed:?} {closed:?}");
        let end = s.incident(co, i.id, meta()).await.unwrap();
        let breach = end.assessment.is_some_and(|a| a.assessment.outcome == AssessmentOutcome::Breach);
        assert!(!(end.status == IncidentStatus::Closed && breach), "a breach was closed without its notifications");
    }
}

/// A re-assessment racing the last notification: the incident ends `notified` whichever wins
/// (the assessment locks the row first and writes only an open or assessed incident; a new plan
/// whose obligations are all recorded is notified at once).
async fn a_new_assessment_cannot_undo_a_notification(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let today = date!(2026 - 03 - 20);
    let rules = StateRules::embedded();
    for _ in 0..15 {
        let i = s.create_incident(co, new_incident(&[("FL", 1)], 1, vec![]), today, rules, meta()).await.unwrap();
        let a = s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), rules, meta()).await.unwrap();
        let keys: Vec<String> = a.plan.iter().map(|o| o.key.clone()).collect();
        let (last, rest) = keys.split_last().expect("a breach has obligations");
        for k in rest {
            s.record_notification(co, i.id, k.clone(), today, today, meta()).await.unwrap();
        }
        let (assessed, notified) = tokio::join!(
            s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), rules, meta()),
            s.record_notification(co, i.id, last.clone(), today, today, meta())
        );
        notified.unwrap();
        let end = s.incident(co, i.id, meta()).await.unwrap();
        assert_eq!(end.status, IncidentStatus::Notified, "assessment {:?}", assessed.map(|i| i.status));
    }
}

/// The free text of every incident here: it must never reach the audit log.
const DESCRIPTION: &str = "Discharge summary for Pat Doe faxed to the wrong clinic (INC-CANARY-5521)";

fn new_incident(residents: &[(&str, u64)], affected: u64, patients: Vec<PatientId>) -> NewIncident {
    NewIncident {
        title: "Fax to wrong clinic".into(),
        description: DESCRIPTION.into(),
        discovered_on: date!(2026 - 03 - 10),
        occurred_on: Some(date!(2026 - 03 - 09)),
        affected_count: affected,
        residents: residents.iter().map(|(s, n)| (StateCode::parse(s).unwrap(), *n)).collect::<BTreeMap<_, _>>(),
        patients,
    }
}

fn assessment(outcome: AssessmentOutcome, viewed: FactorRisk) -> RiskAssessment {
    RiskAssessment {
        nature_and_extent: FactorRisk::Low,
        unauthorized_recipient: FactorRisk::Low,
        acquired_or_viewed: viewed,
        mitigation: FactorRisk::Low,
        outcome,
    }
}

async fn assert_no_canary(s: &Store) {
    for e in s.audit_events(0, 100_000).await.unwrap() {
        let row = format!("{e:?}");
        assert!(!row.contains("INC-CANARY-5521"), "the description reached the audit log: {row}");
    }
}

async fn incidents_are_recorded_assessed_notified_and_closed(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let p = s.create_patient(o.id, co.user_id, "MRN-1".into(), "Pat".into(), vec![co.user_id], meta()).await.unwrap().id;
    let today = date!(2026 - 03 - 20);

    let i = s.create_incident(co, new_incident(&[("NY", 1)], 1, vec![p]), today, StateRules::embedded(), meta()).await.unwrap();
    assert_eq!(i.status, IncidentStatus::Open);
    assert_eq!(i.source, IncidentSource::Manual);
    assert_eq!(i.patients, vec![p]);
    assert_eq!(i.title, None, "texts are not opened on write");
    let listed = s.incidents(o.id).await.unwrap();
    assert_eq!(listed.iter().map(|x| x.id).collect::<Vec<_>>(), vec![i.id]);
    let read = s.incident(co, i.id, meta()).await.unwrap();
    assert_eq!(read.description.as_deref(), Some(DESCRIPTION));
    assert_eq!(read.title.as_deref(), Some("Fax to wrong clinic"));

    // Another organisation sees nothing.
    let other = org(s, "other").await;
    let stranger = user(s, &other, "co@other", Role::ComplianceOfficer).await;
    assert!(matches!(s.incident(stranger, i.id, meta()).await, Err(StoreError::NotFound)));
    assert!(s.incidents(other.id).await.unwrap().is_empty());

    // Before the assessment the incident is presumed a breach (164.402): its plan runs from
    // discovery and is stored; notifying is refused until it is assessed.
    assert_eq!(read.plan_basis, PlanBasis::Presumed);
    assert_eq!(read.plan_rules_as_of, Some(StateRules::embedded().as_of));
    assert!(read.plan.iter().any(|o| o.key == "individuals:NY"), "{:?}", read.plan);
    let r = s.record_notification(co, i.id, "individuals:NY".into(), today, today, meta()).await;
    assert!(matches!(r, Err(StoreError::State(_))), "{r:?}");

    // "Low probability" with a factor above low is refused; a breach is signed.
    let r = s
        .assess_incident(
            co,
            i.id,
            assessment(AssessmentOutcome::LowProbabilityOfCompromise, FactorRisk::High),
            StateRules::embedded(),
            meta(),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let a =
        s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), StateRules::embedded(), meta()).await.unwrap();
    assert_eq!(a.status, IncidentStatus::Assessed);
    let signed = a.assessment.unwrap();
    assert_eq!(signed.signed_by, co.user_id);
    assert_eq!(a.plan_basis, PlanBasis::Assessed);
    let plan = a.plan.clone();
    let keys: Vec<_> = plan.iter().map(|o| o.key.as_str()).collect();
    assert!(keys.contains(&"individuals:NY") && keys.contains(&"hhs"), "{keys:?}");

    // A breach is not closed before the notifications.
    assert!(matches!(s.close_incident(co, i.id, meta()).await, Err(StoreError::State(_))));
    // Dates in the future or before discovery, and unknown obligations, are refused.
    let r = s.record_notification(co, i.id, "individuals:NY".into(), date!(2026 - 03 - 21), today, meta()).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let r = s.record_notification(co, i.id, "individuals:NY".into(), date!(2026 - 03 - 01), today, meta()).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let r = s.record_notification(co, i.id, "media:NY".into(), today, today, meta()).await;
    assert!(matches!(r, Err(StoreError::State(_))), "{r:?}");
    let mut last = None;
    for k in &keys {
        last = Some(s.record_notification(co, i.id, (*k).into(), today, today, meta()).await.unwrap());
    }
    let notified = last.unwrap();
    assert_eq!(notified.status, IncidentStatus::Notified);
    assert_eq!(notified.notifications.len(), keys.len());
    // Recording the same obligation twice is a conflict.
    let r = s.record_notification(co, i.id, "hhs".into(), today, today, meta()).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let closed = s.close_incident(co, i.id, meta()).await.unwrap();
    assert_eq!(closed.status, IncidentStatus::Closed);
    assert_eq!(closed.closed_by, Some(co.user_id));
    // Closed is final.
    let r = s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), StateRules::embedded(), meta()).await;
    assert!(matches!(r, Err(StoreError::State(_))), "{r:?}");

    // A low-probability assessment closes at once, with no plan.
    let j = s.create_incident(co, new_incident(&[], 1, vec![]), today, StateRules::embedded(), meta()).await.unwrap();
    let j = s
        .assess_incident(
            co,
            j.id,
            assessment(AssessmentOutcome::LowProbabilityOfCompromise, FactorRisk::Low),
            StateRules::embedded(),
            meta(),
        )
        .await
        .unwrap();
    assert!(j.plan.is_empty());
    assert_eq!(s.close_incident(co, j.id, meta()).await.unwrap().status, IncidentStatus::Closed);

    let events = s.audit_events(0, 100_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("incident.create", "success"), 2);
    assert_eq!(count("incident.read", "success"), 1);
    assert_eq!(count("incident.assess", "success"), 2);
    assert_eq!(count("incident.assess", "denied"), 2);
    assert_eq!(count("incident.notify", "success"), keys.len());
    assert!(count("incident.notify", "denied") >= 4);
    assert_eq!(count("incident.close", "success"), 2);
    assert_eq!(count("incident.close", "denied"), 1);
    assert!(events.iter().any(|e| e.action == "incident.assess" && e.detail.contains("breach")));
    assert_no_canary(s).await;
}

async fn bad_input_is_refused_audited_and_not_kept(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let today = date!(2026 - 03 - 20);
    let mut future = new_incident(&[], 1, vec![]);
    future.discovered_on = date!(2026 - 03 - 21);
    let mut occurred_late = new_incident(&[], 1, vec![]);
    occurred_late.occurred_on = Some(date!(2026 - 03 - 11));
    let mut empty_title = new_incident(&[], 1, vec![]);
    empty_title.title = "   ".into();
    let cases = [
        (future, "discovered_on"),
        (occurred_late, "occurred_on"),
        (new_incident(&[("CA", 5)], 2, vec![]), "residents"),
        (new_incident(&[], 0, vec![]), "affected_count"),
        (empty_title, "title"),
    ];
    for (bad, reason) in cases {
        let r = s.create_incident(co, bad, today, StateRules::embedded(), meta()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{reason}: {r:?}");
        let events = s.audit_events(0, 100_000).await.unwrap();
        assert!(
            events.iter().any(|e| e.action == "incident.create" && e.outcome == "denied" && e.detail.contains(reason)),
            "{reason} not audited"
        );
    }
    // A patient of no one's (or another organisation's) is not found.
    let r = s.create_incident(co, new_incident(&[], 1, vec![PatientId::new()]), today, StateRules::embedded(), meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(s.incidents(o.id).await.unwrap().is_empty(), "nothing kept");
    assert_no_canary(s).await;
}

async fn a_misdirected_message_opens_an_incident(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let outsider = user(s, &o, "out@acme", Role::Clinician).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id], meta()).await.unwrap().id;
    let dev = sign_in(s, doc, "doc@acme", 1).await.1;
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: Some("Bed 4".into()),
        patient_id: Some(p),
        members: Vec::<MemberSpec>::new(),
        creator_reason: None,
    };
    let conv = s.create_conversation(doc, spec, meta()).await.unwrap().id;
    let msg = NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse("t-1".into()).unwrap(),
        priority: Priority::Routine,
        body: MessageText::parse("sodium 128".into()).unwrap(),
        corrects: None,
        attachments: vec![],
    };
    let m = s.send_message(doc, dev, msg, meta()).await.unwrap().message;
    let today = date!(2026 - 03 - 20);

    // Someone outside the conversation cannot report it (and learns nothing).
    let r = s.report_misdirected(outsider, conv, m.id, today, StateRules::embedded(), meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(matches!(
        s.report_misdirected(doc, conv, ward_domain::ids::MessageId::new(), today, StateRules::embedded(), meta()).await,
        Err(StoreError::NotFound)
    ));

    let i = s.report_misdirected(doc, conv, m.id, today, StateRules::embedded(), meta()).await.unwrap();
    assert_eq!(i.source, IncidentSource::MisdirectedMessage);
    assert_eq!(i.conversation_id, Some(conv));
    assert_eq!(i.message_id, Some(m.id));
    assert_eq!(i.patients, vec![p]);
    assert_eq!(i.discovered_on, today);
    assert_eq!(i.status, IncidentStatus::Open);
    let events = s.audit_events(0, 100_000).await.unwrap();
    let created = events.iter().find(|e| e.action == "incident.create" && e.outcome == "success").unwrap();
    assert_eq!(created.patient_id, Some(p.0));
    assert!(created.detail.contains("misdirected_message"));
    assert_eq!(events.iter().filter(|e| e.action == "incident.create" && e.outcome == "denied").count(), 2);
}

async fn reminders_are_raised_once_per_stage(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    // Discovered 2026-03-10, one affected: individuals due 2026-05-09, HHS (annual log) 2027-03-01.
    let i = s.create_incident(co, new_incident(&[], 1, vec![]), date!(2026 - 03 - 20), StateRules::embedded(), meta()).await.unwrap();
    let remind = async |today| s.send_incident_reminders(today, meta()).await.unwrap();
    // Not assessed yet: presumed a breach, so its deadline is reminded like an assessed one.
    assert_eq!(remind(date!(2026 - 04 - 20)).await, 0, "19 days left");
    assert_eq!(remind(date!(2026 - 05 - 02)).await, 1, "unassessed, a week left");
    s.assess_incident(co, i.id, assessment(AssessmentOutcome::Breach, FactorRisk::High), StateRules::embedded(), meta()).await.unwrap();
    // Assessed as not a breach: never reminded.
    let j = s.create_incident(co, new_incident(&[], 1, vec![]), date!(2026 - 03 - 20), StateRules::embedded(), meta()).await.unwrap();
    s.assess_incident(co, j.id, assessment(AssessmentOutcome::LowProbabilityOfCompromise, FactorRisk::Low), StateRules::embedded(), meta())
        .await
        .unwrap();

    assert_eq!(remind(date!(2026 - 05 - 02)).await, 0, "the same stage is reminded once, assessed or not");
    assert_eq!(remind(date!(2026 - 05 - 03)).await, 0, "the same stage is reminded once");
    assert_eq!(remind(date!(2026 - 05 - 08)).await, 1, "a day left");
    assert_eq!(remind(date!(2026 - 05 - 10)).await, 1, "overdue");
    assert_eq!(remind(date!(2026 - 05 - 11)).await, 0);
    // Once the notice is recorded, only HHS remains; a week before its date it is reminded.
    let today = date!(2026 - 05 - 11);
    s.record_notification(co, i.id, "individuals".into(), today, today, meta()).await.unwrap();
    assert_eq!(remind(date!(2027 - 02 - 22)).await, 1);

    let events = s.audit_events(0, 100_000).await.unwrap();
    let reminders: Vec<_> = events.iter().filter(|e| e.action == "incident.reminder").collect();
    assert_eq!(reminders.len(), 4);
    assert!(reminders.iter().all(|e| e.actor_user_id.is_none() && e.org_id == Some(o.id.0)));
    assert_eq!(reminders.iter().filter(|e| e.detail.contains("overdue")).count(), 1);
    assert!(reminders.last().unwrap().detail.contains("\"hhs\""));
    assert_no_canary(s).await;
}
