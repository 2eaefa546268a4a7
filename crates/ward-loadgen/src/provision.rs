//! Accounts for a run, written straight into the server's database through the store library:
//! one fresh organisation whose policy requires no second factor, and clinicians whose
//! password is not one-time, so each can sign in over HTTPS with a single request.

use futures_util::StreamExt;
use ward_domain::ids::{OrgId, UserId};
use ward_domain::role::Role;
use ward_store::{NewUser, RequestMeta, Store};

/// One provisioned account.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// Its id (as the API spells it).
    pub(crate) id: String,
    /// Its id.
    pub(crate) user_id: UserId,
    /// Its login name.
    pub(crate) login: String,
}

/// What provisioning made.
#[derive(Debug)]
pub(crate) struct Provisioned {
    /// The organisation.
    pub(crate) org_id: OrgId,
    /// The accounts, in index order.
    pub(crate) accounts: Vec<Account>,
    /// Their shared password.
    pub(crate) password: String,
}

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("local-loadgen".into()), request_id: Some(format!("loadgen-{}", uuid::Uuid::now_v7())) }
}

/// Creates organisation `bench-TAG` with `users` clinicians `lgN@bench-TAG.ward`.
pub(crate) async fn provision(store: &Store, tag: &str, users: usize) -> anyhow::Result<Provisioned> {
    let slug = format!("bench-{tag}");
    let org = store.create_org(&slug, &format!("Load test {tag}"), 900, None, meta()).await?;
    // No role needs MFA, so sign-in is one request. The actor is a placeholder operator id,
    // as the command line uses for local changes.
    let org = store.set_org_policy(org.id, UserId::new(), Vec::new(), 900, meta()).await?;
    let password = format!("loadgen-{}", uuid::Uuid::new_v4().simple());
    // One argon2id hash serves every account: they share the password, and hashing 128 times
    // would only slow provisioning down.
    let hash = ward_server::secrets::hash_password(password.clone()).await?;
    // Created concurrently so the store's writer commits them in groups.
    let created: Vec<anyhow::Result<Account>> = futures_util::stream::iter(0..users)
        .map(|i| {
            let login = format!("lg{i}@{slug}.ward");
            let new = NewUser {
                org_id: org.id,
                login: login.clone(),
                display_name: format!("Load user {i}"),
                role: Role::Clinician,
                password_hash: hash.clone(),
                password_must_change: false,
                patient_id: None,
            };
            async move {
                let user = store.create_user(new, None, meta()).await?;
                Ok(Account { id: user.id.to_string(), user_id: user.id, login })
            }
        })
        .buffered(64)
        .collect()
        .await;
    let accounts = created.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Provisioned { org_id: org.id, accounts, password })
}
