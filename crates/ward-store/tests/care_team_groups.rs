//! Care teams from SCIM groups in the store (docs/identity.md, "Care teams from groups"): two
//! PostgreSQL nodes racing an attach against the identity provider's member removal or group
//! delete; every Ward-side way an account stops counting (disable, roster remediation, an
//! access-review revocation) takes it off the care teams it was on through a group, and enable
//! puts it back; attach and detach audit their own group's counts; a rename touches no care team.

use ward_domain::access_review::{ItemDecision, RevokeReason};
use ward_domain::ids::UserId;
use ward_domain::role::Role;
use ward_domain::roster::FlagReason;
use ward_store::testing::{TestDb, meta, org, user};
use ward_store::{Backend, Patient, ScimClient, ScimGroupFields, Store, on_both_backends};

on_both_backends!(ward_side_changes_move_group_members, attach_and_detach_count_their_own_group);

fn fields(name: &str, members: Vec<UserId>) -> ScimGroupFields {
    ScimGroupFields { display_name: name.into(), external_id: None, role: None, members }
}

async fn client(s: &Store, o: &ward_store::Org, admin: UserId, n: u8) -> ScimClient {
    let t = s.create_scim_token(o.id, "idp".into(), vec![n; 32], None, admin, meta()).await.unwrap();
    ScimClient { token: t.id, org: o.id }
}

/// The record's care team is exactly its direct members plus the active members of its
/// attached groups: no group-derived row without a group behind it, none missing.
fn consistent(p: &Patient) {
    let mut want: Vec<UserId> = p.direct_care_team.clone();
    for g in &p.care_team_groups {
        want.extend(g.members.iter().copied());
    }
    want.sort();
    want.dedup();
    let mut have = p.care_team.clone();
    have.sort();
    assert_eq!(have, want, "care team = direct + attached groups' members: {p:?}");
}

/// Two nodes on one PostgreSQL database: node 1 attaches group G to patient P while node 2
/// (the identity provider's request) removes member X from G, or deletes G. Write batches of
/// all nodes are serialized by the audit append lock taken first, so whichever commits second
/// sees the other: X is never left on P's care team through G, and no group-derived row
/// outlives its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_attach_while_the_idp_removes() {
    let Some(db) = TestDb::open(Backend::Postgres).await else { return };
    let node2 = db.another_node().await.expect("PostgreSQL");
    let s = &db.store;
    for round in 0..8u8 {
        let o = org(s, &format!("acme{round}")).await;
        let admin = user(s, &o, &format!("admin@acme{round}"), Role::Admin).await;
        let doc = user(s, &o, &format!("doc@acme{round}"), Role::Clinician).await;
        let x = user(s, &o, &format!("x@acme{round}"), Role::Nurse).await;
        let y = user(s, &o, &format!("y@acme{round}"), Role::Staff).await;
        let idp = client(s, &o, admin.user_id, round).await;
        let g = s.scim_create_group(idp, fields("Ward 3", vec![x.user_id, y.user_id]), meta()).await.unwrap();
        let p = s.create_patient(o.id, doc.user_id, format!("MRN-{round}"), "Pat".into(), vec![doc.user_id], meta()).await.unwrap();
        let delete = round % 2 == 1;
        let removal = async {
            if delete {
                node2.scim_delete_group(idp, g.id, None, meta()).await
            } else {
                node2.scim_update_group(idp, g.clone(), fields("Ward 3", vec![y.user_id]), "patch", meta()).await.map(|_| ())
            }
        };
        let (attached, removed) = tokio::join!(s.set_care_team_groups(o.id, doc.user_id, p.id, vec![g.id], meta()), removal);
        removed.unwrap_or_else(|e| panic!("round {round}: the identity provider's change: {e:?}"));
        // The attach loses only to a delete that committed first (the group is gone).
        if let Err(e) = &attached {
            assert!(delete, "round {round}: attach refused without a delete: {e:?}");
        }
        let after = s.read_patient(o.id, doc.user_id, p.id, meta()).await.unwrap();
        consistent(&after);
        assert!(!after.care_team.contains(&x.user_id), "round {round}: X left G, so not on P's care team: {after:?}");
        if delete {
            assert!(after.care_team_groups.is_empty() && after.care_team == vec![doc.user_id], "round {round}: {after:?}");
        } else {
            assert!(after.care_team.contains(&y.user_id), "round {round}: Y is still in the attached group");
        }
        // Same race, the other order of requests: removal sent first.
        let q = s.create_patient(o.id, doc.user_id, format!("MRN-{round}b"), "Pat".into(), vec![doc.user_id], meta()).await.unwrap();
        if !delete {
            let g2 = s.scim_group(o.id, g.id).await.unwrap();
            let (removed, attached) = tokio::join!(
                node2.scim_update_group(idp, g2, fields("Ward 3", vec![]), "replace", meta()),
                s.set_care_team_groups(o.id, doc.user_id, q.id, vec![g.id], meta()),
            );
            removed.unwrap();
            attached.unwrap();
            let after = s.read_patient(o.id, doc.user_id, q.id, meta()).await.unwrap();
            consistent(&after);
            assert_eq!(after.care_team, vec![doc.user_id], "round {round}: the group is empty");
        }
    }
}

async fn team(s: &Store, o: &ward_store::Org, actor: UserId, p: &Patient) -> Vec<UserId> {
    let p = s.read_patient(o.id, actor, p.id, meta()).await.unwrap();
    consistent(&p);
    p.care_team
}

async fn ward_side_changes_move_group_members(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let clerk = user(s, &o, "clerk@acme", Role::Staff).await;
    let porter = user(s, &o, "porter@acme", Role::Staff).await;
    let idp = client(s, &o, admin.user_id, 1).await;
    let g = s.scim_create_group(idp, fields("Ward 3", vec![nurse.user_id, clerk.user_id, porter.user_id]), meta()).await.unwrap();
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id], meta()).await.unwrap();
    s.set_care_team_groups(o.id, doc.user_id, p.id, vec![g.id], meta()).await.unwrap();
    assert!(team(s, &o, doc.user_id, &p).await.contains(&nurse.user_id));

    // An admin disables the account in Ward: off the team; enabled again: back on it.
    s.set_user_disabled(o.id, nurse.user_id, true, Some(admin.user_id), meta()).await.unwrap();
    assert!(!team(s, &o, doc.user_id, &p).await.contains(&nurse.user_id));
    s.set_user_disabled(o.id, nurse.user_id, false, Some(admin.user_id), meta()).await.unwrap();
    assert!(team(s, &o, doc.user_id, &p).await.contains(&nurse.user_id));
    // Enabling an enabled account changes nothing.
    s.set_user_disabled(o.id, nurse.user_id, false, Some(admin.user_id), meta()).await.unwrap();
    assert!(team(s, &o, doc.user_id, &p).await.contains(&nurse.user_id));

    // Roster remediation disables: off the team.
    s.remediate_roster_account(o.id, clerk.user_id, FlagReason::Terminated, Some(admin.user_id), meta()).await.unwrap();
    assert!(!team(s, &o, doc.user_id, &p).await.contains(&clerk.user_id));

    // An access review's revocation disables: off the team.
    let c = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    let revoke = ItemDecision::Revoke { reason: RevokeReason::NotNeeded, note: None };
    s.decide_access_review(co, c.id, porter.user_id, revoke, meta()).await.unwrap();
    let t = team(s, &o, doc.user_id, &p).await;
    assert!(!t.contains(&porter.user_id) && t.contains(&nurse.user_id), "{t:?}");
    // ...and enabling restores it.
    s.set_user_disabled(o.id, porter.user_id, false, Some(admin.user_id), meta()).await.unwrap();
    assert!(team(s, &o, doc.user_id, &p).await.contains(&porter.user_id));
    // The identity provider removes the nurse from the group: off the team.
    let before = s.scim_group(o.id, g.id).await.unwrap();
    s.scim_update_group(idp, before, fields("Ward 3", vec![clerk.user_id, porter.user_id]), "patch", meta()).await.unwrap();
    assert!(!team(s, &o, doc.user_id, &p).await.contains(&nurse.user_id));

    // Each of those joins and leaves is in the log for the patient: op, user id, cause.
    let events: Vec<_> = s.audit_events(0, 100_000).await.unwrap().into_iter().filter(|e| e.action == "patient.care_team").collect();
    let has = |op: &str, who: UserId, via: &str| {
        events.iter().any(|e| {
            e.patient_id == Some(p.id.0)
                && e.detail.contains(&format!("\"{op}\""))
                && e.detail.contains(&who.0.to_string())
                && e.detail.contains(&format!("\"{via}\""))
        })
    };
    assert!(has("member_leave", nurse.user_id, "user_disable"), "{events:?}");
    assert!(has("member_join", nurse.user_id, "user_enable"), "{events:?}");
    assert!(has("member_leave", clerk.user_id, "roster"), "{events:?}");
    assert!(has("member_leave", porter.user_id, "access_review"), "{events:?}");
    assert!(has("member_join", porter.user_id, "user_enable"), "{events:?}");
    assert!(has("member_leave", nurse.user_id, "scim_group"), "{events:?}");
    // The no-op enable of an enabled account recorded no second join.
    let joins = events.iter().filter(|e| e.detail.contains("member_join") && e.detail.contains(&nurse.user_id.0.to_string())).count();
    assert_eq!(joins, 1, "{events:?}");
    assert!(events.iter().all(|e| !e.detail.contains("MRN-1") && !e.detail.contains("Ward 3")));
}

async fn attach_and_detach_count_their_own_group(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let a = user(s, &o, "a@acme", Role::Nurse).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let c = user(s, &o, "c@acme", Role::Staff).await;
    let idp = client(s, &o, admin.user_id, 2).await;
    let small = s.scim_create_group(idp, fields("Small", vec![a.user_id]), meta()).await.unwrap();
    let big = s.scim_create_group(idp, fields("Big", vec![a.user_id, b.user_id, c.user_id, doc.user_id]), meta()).await.unwrap();
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id], meta()).await.unwrap();
    let from = s.audit_events(0, 100_000).await.unwrap().last().map_or(0, |e| e.idx + 1);

    // Both at once: each event counts who joined through its own group (the doctor is direct,
    // and whoever the first group brought is not counted again).
    s.set_care_team_groups(o.id, doc.user_id, p.id, vec![small.id, big.id], meta()).await.unwrap();
    assert_eq!(team(s, &o, doc.user_id, &p).await.len(), 4);
    // Both detached: the second detach counts everyone who left through it.
    s.set_care_team_groups(o.id, doc.user_id, p.id, vec![], meta()).await.unwrap();
    assert_eq!(team(s, &o, doc.user_id, &p).await, vec![doc.user_id]);
    let events: Vec<_> = s.audit_events(from, 100_000).await.unwrap().into_iter().filter(|e| e.action == "patient.care_team").collect();
    let count = |op: &str, g: uuid::Uuid, key: &str| -> i64 {
        let e = events.iter().find(|e| e.detail.contains(op) && e.detail.contains(&g.to_string())).expect(op);
        let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        v[key].as_i64().unwrap_or_else(|| panic!("{key} in {}", e.detail))
    };
    let joined = count("group_attach", small.id, "joined") + count("group_attach", big.id, "joined");
    assert_eq!(joined, 3, "a, b and c joined once each: {events:?}");
    assert!(count("group_attach", big.id, "joined") >= 2);
    let left = count("group_detach", small.id, "left") + count("group_detach", big.id, "left");
    assert_eq!(left, 3, "a, b and c left once each: {events:?}");

    // A rename of an attached group (no member change) touches no care team.
    s.set_care_team_groups(o.id, doc.user_id, p.id, vec![big.id], meta()).await.unwrap();
    let before = s.scim_group(o.id, big.id).await.unwrap();
    let members = before.members.iter().map(|m| m.user_id).collect();
    s.scim_update_group(idp, before, fields("Big ward", members), "replace", meta()).await.unwrap();
    let last = s.audit_events(0, 100_000).await.unwrap().into_iter().rfind(|e| e.action == "scim.group").unwrap();
    let v: serde_json::Value = serde_json::from_str(&last.detail).unwrap();
    assert_eq!(v["care_teams"], 1, "the care teams it is attached to: {}", last.detail);
    assert_eq!(team(s, &o, doc.user_id, &p).await.len(), 4);

    // Swapping one group for another that shares a member: that member never leaves, and
    // keeps being on call.
    s.set_on_call(o.id, doc.user_id, p.id, a.user_id, true, meta()).await.unwrap();
    let from = s.audit_events(0, 100_000).await.unwrap().last().map_or(0, |e| e.idx + 1);
    s.set_care_team_groups(o.id, doc.user_id, p.id, vec![small.id], meta()).await.unwrap();
    assert_eq!(team(s, &o, doc.user_id, &p).await, {
        let mut t = vec![doc.user_id, a.user_id];
        t.sort();
        t
    });
    assert!(s.on_call(o.id, p.id).await.unwrap().contains(&a.user_id), "still on call after the swap");
    let swap: Vec<_> = s.audit_events(from, 100_000).await.unwrap().into_iter().filter(|e| e.action == "patient.care_team").collect();
    let attach = swap.iter().find(|e| e.detail.contains("group_attach")).expect("attach");
    assert!(attach.detail.contains("\"joined\":0"), "a was already on the team: {}", attach.detail);
}
