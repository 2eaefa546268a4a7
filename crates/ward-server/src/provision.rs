//! Provisioning used by the command line and tests: organisations, accounts with one-time
//! passwords, and the demo organisation.

use ward_domain::login::{LoginName, parse_label};
use ward_domain::role::Role;
use ward_store::{NewUser, Org, RequestMeta, Store, User};

use crate::secrets::{hash_password, one_time_password};

/// The command line acts as the local operator: audit events it causes carry this request id.
pub fn operator_meta() -> RequestMeta {
    RequestMeta { source_ip: Some("local-cli".into()), request_id: Some(format!("cli-{}", uuid::Uuid::now_v7())) }
}

/// Creates an account with a one-time password; returns it with the password.
pub async fn add_user(
    store: &Store,
    org: &Org,
    login: &str,
    display_name: &str,
    role: Role,
    patient_id: Option<ward_domain::ids::PatientId>,
) -> anyhow::Result<(User, String)> {
    let login = LoginName::parse(login)?;
    let display_name = parse_label("display_name", display_name, 200)?;
    let password = one_time_password();
    let new = NewUser {
        org_id: org.id,
        login: login.to_string(),
        display_name,
        role,
        password_hash: hash_password(password.clone()).await?,
        password_must_change: true,
        patient_id,
    };
    let user = store.create_user(new, None, operator_meta()).await?;
    Ok((user, password))
}

/// One demo account and its one-time password.
pub struct DemoAccount {
    /// The account.
    pub user: User,
    /// Its one-time password.
    pub password: String,
}

/// The demo organisation's slug.
pub const DEMO_SLUG: &str = "demo";

/// Creates the demo organisation: an admin, a compliance officer, two clinicians, a nurse and
/// a patient (with a patient record and care team), plus a patient conversation. Returns
/// `None` if it already exists.
pub async fn demo(store: &Store, idle_timeout_secs: i64) -> anyhow::Result<Option<(Org, Vec<DemoAccount>)>> {
    if store.org_by_slug(DEMO_SLUG).await.is_ok() {
        return Ok(None);
    }
    let org = store.create_org(DEMO_SLUG, "Demo Clinic", idle_timeout_secs, None, operator_meta()).await?;
    let mut accounts = Vec::new();
    for (login, name, role) in [
        ("admin@demo.ward", "Ada Admin", Role::Admin),
        ("compliance@demo.ward", "Cory Compliance", Role::ComplianceOfficer),
        ("dr.adams@demo.ward", "Dr Alex Adams", Role::Clinician),
        ("dr.baker@demo.ward", "Dr Blair Baker", Role::Clinician),
        ("nurse.chen@demo.ward", "Nurse Casey Chen", Role::Nurse),
    ] {
        let (user, password) = add_user(store, &org, login, name, role, None).await?;
        accounts.push(DemoAccount { user, password });
    }
    let care_team = vec![accounts[2].user.id, accounts[4].user.id];
    let patient =
        store.create_patient(org.id, accounts[2].user.id, "DEMO-0001".into(), "Pat Demo".into(), care_team, operator_meta()).await?;
    let (user, password) = add_user(store, &org, "pat.demo@demo.ward", "Pat Demo", Role::Patient, Some(patient.id)).await?;
    accounts.push(DemoAccount { user, password });
    let actor = ward_domain::policy::Actor { user_id: accounts[2].user.id, org_id: org.id, role: Role::Clinician };
    let spec = ward_store::NewConversation {
        kind: ward_domain::conversation::ConversationKind::Patient,
        title: Some("Care team: Pat Demo".into()),
        patient_id: Some(patient.id),
        members: [4, 5].iter().map(|&i| ward_store::MemberSpec { user_id: accounts[i].user.id, reason: None }).collect(),
        creator_reason: None,
    };
    store.create_conversation(actor, spec, operator_meta()).await?;
    Ok(Some((org, accounts)))
}
