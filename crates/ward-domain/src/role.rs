//! The roles a user can hold inside an organisation.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A user's role. Roles are enforced on the server for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, sessions and organisation policy.
    Admin,
    /// Reviews audit records and compliance evidence.
    ComplianceOfficer,
    /// A physician or other licensed prescriber.
    Clinician,
    /// A nurse.
    Nurse,
    /// Other staff (front desk, scheduling).
    Staff,
    /// A patient using the portal.
    Patient,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 6] = [Role::Admin, Role::ComplianceOfficer, Role::Clinician, Role::Nurse, Role::Staff, Role::Patient];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ComplianceOfficer => "compliance_officer",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Staff => "staff",
            Role::Patient => "patient",
        }
    }

    /// True for every role that works for the organisation (everyone but patients).
    pub fn is_workforce(self) -> bool {
        self != Role::Patient
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(DomainError::invalid("role", "must be one of admin, compliance_officer, clinician, nurse, staff, patient"))
    }
}

/// The roles that must use multi-factor authentication unless an organisation says otherwise.
pub const DEFAULT_MFA_REQUIRED: [Role; 2] = [Role::Admin, Role::ComplianceOfficer];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
