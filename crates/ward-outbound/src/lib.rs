//! The outbound content policy: keeps clinical detail out of text that leaves Ward.
//!
//! Everything that goes to a channel Ward does not control (push, SMS, email) is checked by
//! a [`ContentPolicy`]: an Aho-Corasick automaton over embedded vocabularies (ICD-10-CM
//! head terms, a drug dictionary, curated lay lexicons for conditions, procedures, lab
//! analytes and the sensitive categories) plus patterns for ICD-10-CM codes, lab values,
//! blood pressure readings and doses. Patient notices come from a [`Template`] whose fields
//! are limited to first name, date, time, location name and portal link. Pure: no I/O, no
//! async. See `docs/outbound-policy.md`.
#![forbid(unsafe_code)]

mod category;
mod lexicon;
mod patterns;
mod policy;
mod template;

pub use category::Category;
pub use policy::{ContentPolicy, ContentPolicyBuilder, Finding, MAX_TERM_LEN, PolicyError, Verdict};
pub use template::{Field, MAX_TEMPLATE_LEN, MAX_VALUE_CHARS, RenderError, Template, TemplateError, TemplateValues};
