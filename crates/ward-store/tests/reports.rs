//! The audit reports on both SQLite and PostgreSQL: the accounting of disclosures (including
//! scans across many events and audit exports that cover a patient) and the access report.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::{AccessReason, ConversationKind, MemberRole, StatedReason};
use ward_domain::disclosure::Recipient;
use ward_domain::ids::{PatientId, UserId};
use ward_domain::role::Role;
use ward_store::testing::TestDb;
use ward_store::testing::{meta, user};
use ward_store::{AuditQuery, Backend, MemberSpec, NewConversation, Org, Store, TimeRange, on_both_backends};

on_both_backends!(disclosures_are_classified_scanned_and_paged, access_reports_count_and_page);

/// `n` reads of the patient's record by `who`, appended concurrently (group commit keeps it quick).
async fn reads(store: &Store, org: &Org, who: UserId, patient: PatientId, n: usize) {
    let all = (0..n).map(|_| {
        let mut ev = AuditEvent::new(AuditAction::PatientRead, Outcome::Success).target("patient", patient).patient(Some(patient));
        ev.org_id = Some(org.id);
        ev.actor = Some(who);
        store.record(ev, meta())
    });
    for r in futures_util::future::join_all(all).await {
        r.unwrap();
    }
}

/// An audit export event as the API or the CLI records it.
async fn export(store: &Store, org: Option<&Org>, actor: Option<UserId>, outcome: Outcome, detail: &[(&'static str, DetailValue)]) -> i64 {
    let mut ev = AuditEvent::new(AuditAction::AuditExport, outcome).detail("format", DetailValue::Code("csv"));
    for (k, v) in detail {
        ev = ev.detail(k, v.clone());
    }
    ev.org_id = org.map(|o| o.id);
    ev.actor = actor;
    store.record(ev, meta()).await.unwrap()
}

async fn disclosures_are_classified_scanned_and_paged(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let other = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let outsider = user(s, &o, "out@acme", Role::Clinician).await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta()).await.unwrap().id;
    let q = s.create_patient(o.id, doc.user_id, "MRN-2".into(), "Quinn".into(), vec![doc.user_id], meta()).await.unwrap().id;
    assert_eq!(s.patient_org(p).await.unwrap(), Some(o.id));
    assert_eq!(s.patient_org(PatientId::new()).await.unwrap(), None);

    // A care-team member joining is not a disclosure; an outsider with a reason is.
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p),
        members: vec![MemberSpec { user_id: nurse.user_id, reason: None }],
        creator_reason: None,
    };
    let conv = s.create_conversation(doc, spec, meta()).await.unwrap().id;
    let reason = StatedReason::parse(AccessReason::Coverage, Some("night cover".into())).unwrap();
    s.add_member(doc, conv, outsider.user_id, MemberRole::Member, Some(reason), meta()).await.unwrap();
    // More than one scan's worth of the patient's events before the next disclosure.
    reads(s, &o, nurse.user_id, p, 1_100).await;
    let whole_log = export(s, None, None, Outcome::Success, &[]).await;
    // Exports that do not cover P: refused, filtered to a user who never touched P, ending before
    // P existed, another organisation's.
    export(s, Some(&o), Some(co.user_id), Outcome::Denied, &[]).await;
    export(s, Some(&o), Some(co.user_id), Outcome::Success, &[("user", DetailValue::Id(co.user_id.0))]).await;
    export(s, Some(&o), Some(co.user_id), Outcome::Success, &[("to", DetailValue::Int(0))]).await;
    export(s, Some(&other), None, Outcome::Success, &[]).await;
    // One that does: the nurse's events.
    let nurse_events = export(s, Some(&o), Some(co.user_id), Outcome::Success, &[("user", DetailValue::Id(nurse.user_id.0))]).await;

    let all = s.disclosures(o.id, p, TimeRange::default(), None, 200).await.unwrap();
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.items.len(), 3, "{:?}", all.items);
    let add = &all.items[0];
    assert_eq!((add.action.as_str(), add.purpose.as_str()), ("member.add", "coverage"));
    assert_eq!(add.recipient, Recipient::User(outsider.user_id.0));
    assert_eq!(add.disclosed_by, Some(doc.user_id.0));
    assert_eq!(add.target_id.as_deref(), Some(conv.to_string().as_str()));
    assert_eq!((all.items[1].idx, all.items[1].recipient, all.items[1].purpose.as_str()), (whole_log, Recipient::Operator, "audit_export"));
    assert_eq!((all.items[2].idx, all.items[2].recipient), (nurse_events, Recipient::User(co.user_id.0)));

    // Paging: one at a time, continuing from each cursor, gives the same list.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.disclosures(o.id, p, TimeRange::default(), after, 1).await.unwrap();
        paged.extend(page.items);
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, all.items);
    // The time range bounds the disclosures listed.
    let none = s.disclosures(o.id, p, TimeRange { from: None, to: Some(0) }, None, 200).await.unwrap();
    assert!(none.items.is_empty());
    // Q: only the whole-log export covered Q (the nurse never touched Q); P's events are not Q's.
    let for_q = s.disclosures(o.id, q, TimeRange::default(), None, 200).await.unwrap();
    assert_eq!(for_q.items.iter().map(|d| d.idx).collect::<Vec<_>>(), [whole_log]);
    // Another organisation sees none of it.
    assert!(s.disclosures(other.id, p, TimeRange::default(), None, 200).await.unwrap().items.is_empty());
}

async fn access_reports_count_and_page(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let p1 = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "A".into(), vec![], meta()).await.unwrap().id;
    let p2 = s.create_patient(o.id, doc.user_id, "MRN-2".into(), "B".into(), vec![], meta()).await.unwrap().id;
    reads(s, &o, nurse.user_id, p1, 30).await;
    // The first reads are in the tree, so in the per-user index; the rest are newer than the
    // tree and found by scanning. The report must not tell the two apart.
    integrate(s).await;
    let middle = ward_store::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    reads(s, &o, nurse.user_id, p2, 20).await;
    let mut failed = AuditEvent::new(AuditAction::PatientRead, Outcome::Failure).detail("reason", DetailValue::Code("no_match"));
    failed.org_id = Some(o.id);
    failed.actor = Some(nurse.user_id);
    s.record(failed, meta()).await.unwrap();
    check_access_report(s, &o, doc.user_id, nurse.user_id, middle).await;
    // Everything integrated: the same answers, now all from the index.
    integrate(s).await;
    assert_eq!(s.tree_size().await.unwrap(), s.audit_size().await.unwrap());
    check_access_report(s, &o, doc.user_id, nurse.user_id, middle).await;

    // The unscoped search (the operator's export) sees every organisation; the scoped one only its own.
    let q = AuditQuery { patient: Some(p2.0), ..AuditQuery::default() };
    assert_eq!(s.search_audit_scoped(None, q.clone(), 1000).await.unwrap().len(), 21);
    assert_eq!(s.search_audit_scoped(Some(o.id), q, 1000).await.unwrap().len(), 21);
    let other = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    assert!(s.search_audit_scoped(Some(other.id), AuditQuery::default(), 1000).await.unwrap().iter().all(|e| e.org_id == Some(other.id.0)));
    assert!(s.search_audit_scoped(None, AuditQuery::default(), 100_000).await.unwrap().iter().any(|e| e.org_id == Some(other.id.0)));
}

/// The access report of `nurse` (30 reads of one patient, then, after `middle`, 20 of another
/// and a failed read) and of `doc` (who created the patients).
async fn check_access_report(s: &Store, o: &Org, doc: UserId, nurse: UserId, middle: i64) {
    let all = s.user_activity_summary(o.id, nurse, TimeRange::default()).await.unwrap();
    assert_eq!((all.total, all.patients), (51, 2));
    let counts: Vec<(&str, &str, i64)> = all.by_action.iter().map(|a| (a.action.as_str(), a.outcome.as_str(), a.count)).collect();
    assert_eq!(counts, [("patient.read", "failure", 1), ("patient.read", "success", 50)]);
    let early = s.user_activity_summary(o.id, nurse, TimeRange { from: None, to: Some(middle + 1) }).await.unwrap();
    assert_eq!((early.total, early.patients), (30, 1));
    // The doctor's own events are theirs alone.
    let doc_summary = s.user_activity_summary(o.id, doc, TimeRange::default()).await.unwrap();
    assert_eq!(doc_summary.by_action.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["patient.create"]);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let rows = s.user_activity(o.id, nurse, TimeRange::default(), after, 16).await.unwrap();
        assert!(rows.iter().all(|r| r.actor_user_id == Some(nurse.0)));
        seen.extend(rows.iter().map(|r| r.idx));
        if rows.len() < 16 {
            break;
        }
        after = rows.last().map(|r| r.idx);
    }
    assert_eq!(seen.len(), 51);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let later = s.user_activity(o.id, nurse, TimeRange { from: Some(middle + 1), to: None }, None, 100).await.unwrap();
    assert_eq!(later.len(), 21);
}

/// What the server's integrator does: every event not yet in the stored tree becomes a leaf.
async fn integrate(s: &Store) {
    let size = s.tree_size().await.unwrap();
    let plan = ward_audit::tree::root_plan(size);
    let mut frontier = ward_audit::Frontier::restore(size, s.tree_node_hashes(plan.nodes()).await.unwrap()).unwrap();
    let mut nodes = Vec::new();
    for leaf in s.audit_leaf_hashes(size, 1_000_000).await.unwrap() {
        frontier.append(leaf, |id, h| nodes.push((id, *h)));
    }
    s.store_tree_nodes(nodes).await.unwrap();
}
