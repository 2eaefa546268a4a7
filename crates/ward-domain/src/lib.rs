//! Ward's domain: ids, roles, the HR roster, conversations, messages, audit events and the authorization policy, as plain types and pure functions with no I/O.

#![forbid(unsafe_code)]

pub mod access_review;
pub mod alerts;
pub mod audit;
pub mod breach;
pub mod break_glass;
pub mod consent;
pub mod contact;
pub mod conversation;
pub mod disclosure;
pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod lockout;
pub mod login;
pub mod oidc;
pub mod page;
pub mod policy;
pub mod registers;
pub mod role;
pub mod roster;
pub mod scim;

pub use error::DomainError;
