//! Single sign-on (OpenID Connect) rules that need no network: which Ward role a provider's
//! claim values give a new account, and which provider settings are acceptable.
//!
//! Privilege escalation is the risk here: a provider (or whoever can edit group names there)
//! must never make someone an admin or compliance officer by accident. So a privileged role
//! comes only from a mapping entry that names it explicitly, the fallback role for
//! just-in-time accounts may only be a clinical or staff role, and patient accounts are never
//! created by single sign-on (they belong to a patient record).

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::role::Role;

/// One entry of a claim-to-role mapping: a value the provider puts in the role claim, and
/// the Ward role it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// The claim value (a group or role name at the provider), compared exactly.
    pub value: String,
    /// The Ward role.
    pub role: Role,
}

/// At most this many mapping entries.
pub const MAX_MAPPINGS: usize = 50;

/// Checks a mapping and the just-in-time fallback role.
pub fn validate_mapping(map: &[RoleMapping], default_role: Option<Role>) -> Result<(), DomainError> {
    if map.len() > MAX_MAPPINGS {
        return Err(DomainError::invalid("role_map", "may have at most 50 entries"));
    }
    for m in map {
        if m.value.is_empty() || m.value.len() > 200 || m.value.chars().any(char::is_control) {
            return Err(DomainError::invalid("role_map.value", "must be 1 to 200 characters without control characters"));
        }
        if m.role == Role::Patient {
            return Err(DomainError::invalid("role_map.role", "single sign-on does not create patient accounts"));
        }
    }
    if let Some(r) = default_role
        && !is_unprivileged(r)
    {
        return Err(DomainError::invalid("jit_default_role", "must be clinician, nurse or staff"));
    }
    Ok(())
}

/// Roles a fallback may give: neither administrative nor a patient's.
pub fn is_unprivileged(r: Role) -> bool {
    matches!(r, Role::Clinician | Role::Nurse | Role::Staff)
}

/// The role a new account gets: the first mapping entry (in the configured order) whose value
/// the provider asserted, else the fallback. `None` means no role applies and the sign-in is
/// refused.
pub fn role_for(claim_values: &[String], map: &[RoleMapping], default_role: Option<Role>) -> Option<Role> {
    map.iter()
        .find(|m| claim_values.contains(&m.value))
        .map(|m| m.role)
        .filter(|r| *r != Role::Patient)
        .or(default_role.filter(|r| is_unprivileged(*r)))
}

/// Values of a role claim: a string or an array of strings; anything else yields none.
pub fn claim_values(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Vec<RoleMapping> {
        vec![RoleMapping { value: "ward-admins".into(), role: Role::Admin }, RoleMapping { value: "nurses".into(), role: Role::Nurse }]
    }

    #[test]
    fn the_first_matching_entry_wins() {
        assert_eq!(role_for(&["nurses".into(), "ward-admins".into()], &map(), None), Some(Role::Admin));
        assert_eq!(role_for(&["nurses".into()], &map(), Some(Role::Staff)), Some(Role::Nurse));
    }

    #[test]
    fn an_unmapped_value_falls_back_and_never_to_a_privileged_role() {
        assert_eq!(role_for(&["admin".into()], &map(), Some(Role::Staff)), Some(Role::Staff));
        assert_eq!(role_for(&["admin".into()], &map(), None), None);
        assert_eq!(role_for(&[], &map(), Some(Role::Admin)), None);
        assert_eq!(role_for(&["compliance_officer".into()], &[], Some(Role::ComplianceOfficer)), None);
    }

    #[test]
    fn values_match_exactly() {
        assert_eq!(role_for(&["Ward-Admins".into(), "ward-admins ".into()], &map(), None), None);
    }

    #[test]
    fn privileged_fallbacks_and_patient_mappings_are_refused() {
        assert!(validate_mapping(&map(), Some(Role::Staff)).is_ok());
        assert!(validate_mapping(&map(), Some(Role::Admin)).is_err());
        assert!(validate_mapping(&map(), Some(Role::Patient)).is_err());
        let patient = vec![RoleMapping { value: "p".into(), role: Role::Patient }];
        assert!(validate_mapping(&patient, None).is_err());
        let empty = vec![RoleMapping { value: String::new(), role: Role::Staff }];
        assert!(validate_mapping(&empty, None).is_err());
    }

    #[test]
    fn claim_values_take_strings_and_string_arrays() {
        assert_eq!(claim_values(Some(&serde_json::json!("a"))), vec!["a".to_owned()]);
        assert_eq!(claim_values(Some(&serde_json::json!(["a", 1, "b"]))), vec!["a".to_owned(), "b".to_owned()]);
        assert!(claim_values(Some(&serde_json::json!({"a": 1}))).is_empty());
        assert!(claim_values(None).is_empty());
    }
}
