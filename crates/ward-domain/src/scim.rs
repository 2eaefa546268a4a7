//! SCIM 2.0 provisioning (RFC 7643 resources, RFC 7644 protocol), the pure parts: the filter
//! grammar Ward supports (RFC 7644 §3.4.2.2), its evaluation against a resource, and the PATCH
//! operation model (§3.5.2). No I/O; the HTTP service is `ward-server`'s `scim` module.
//!
//! Filters and patch values carry user names and emails: personal data. Errors here name the
//! position and the rule, never the offending text.

pub mod filter;
pub mod patch;

/// The core User schema URI.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URI.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The list response message URI.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The PATCH request message URI.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The error message URI.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` of an RFC 7644 §3.12 error: which rule the request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScimType {
    /// The filter does not parse or names an attribute it cannot apply to.
    InvalidFilter,
    /// The filter would return more results than the server allows.
    TooMany,
    /// An attribute value that must be unique is already taken.
    Uniqueness,
    /// The request would change an attribute that cannot be changed.
    Mutability,
    /// The request body is not well-formed or breaks the schema.
    InvalidSyntax,
    /// A PATCH path does not parse or names an unsupported attribute.
    InvalidPath,
    /// A PATCH path matched nothing to remove or replace.
    NoTarget,
    /// A value has the wrong type or is out of range, or a required one is missing.
    InvalidValue,
    /// The protocol version is not supported.
    InvalidVers,
}

impl ScimType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
        }
    }
}
