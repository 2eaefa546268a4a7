//! Validation failures of domain values.

/// A value supplied from outside did not satisfy a domain rule.
///
/// Messages name the rule, never the offending value: values can carry PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// A field was empty, too long, or used characters outside its alphabet.
    #[error("{field} is invalid: {rule}")]
    Invalid {
        /// The field's name as the API spells it.
        field: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, rule: &'static str) -> Self {
        Self::Invalid { field, rule }
    }
}
