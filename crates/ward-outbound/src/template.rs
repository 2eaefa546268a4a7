//! Patient notice and reminder templates: literal text and a small set of allowed fields,
//! checked by the content policy when saved and again when rendered.

use std::fmt;

use crate::category::Category;
use crate::policy::{ContentPolicy, Finding, Verdict};

/// The longest template source, in bytes (ten SMS segments).
pub const MAX_TEMPLATE_LEN: usize = 1600;
/// The longest value substituted for a field, in characters.
pub const MAX_VALUE_CHARS: usize = 200;
const MAX_FIELD_NAME_LEN: usize = 40;

/// A field a template may use. Nothing else is allowed: a notice names when and where, and
/// who it is for by first name only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `{first_name}`: the recipient's first name (exempt from the content policy).
    FirstName,
    /// `{date}`: the appointment date as the organisation formats it.
    Date,
    /// `{time}`: the appointment time.
    Time,
    /// `{location_name}`: the clinic or site name.
    LocationName,
    /// `{portal_link}`: an `https://` link to the patient portal.
    PortalLink,
}

impl Field {
    /// Every allowed field.
    pub const ALL: [Field; 5] = [Field::FirstName, Field::Date, Field::Time, Field::LocationName, Field::PortalLink];

    /// The name written between braces.
    pub fn name(self) -> &'static str {
        match self {
            Field::FirstName => "first_name",
            Field::Date => "date",
            Field::Time => "time",
            Field::LocationName => "location_name",
            Field::PortalLink => "portal_link",
        }
    }

    /// The field with this name, if it is allowed.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Field names that someone may well try and that carry PHI or clinical detail; named in
/// the error so the author learns why, not just that the name is unknown.
const DISALLOWED_FIELDS: &[&str] = &[
    "last_name",
    "surname",
    "family_name",
    "full_name",
    "name",
    "patient_name",
    "dob",
    "date_of_birth",
    "birth_date",
    "birthday",
    "age",
    "mrn",
    "patient_id",
    "ssn",
    "diagnosis",
    "condition",
    "conditions",
    "problem",
    "medication",
    "medications",
    "drug",
    "prescription",
    "dose",
    "procedure",
    "test",
    "test_name",
    "result",
    "results",
    "lab",
    "labs",
    "reason",
    "visit_reason",
    "appointment_type",
    "visit_type",
    "department",
    "specialty",
    "provider",
    "provider_name",
    "clinician",
    "doctor",
    "address",
    "phone",
    "email",
    "insurance",
    "notes",
];

/// Why a template cannot be saved. Offsets are bytes into the template source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template has no text.
    #[error("the template is empty")]
    Empty,
    /// The template is longer than [`MAX_TEMPLATE_LEN`] bytes.
    #[error("the template is longer than {MAX_TEMPLATE_LEN} bytes")]
    TooLong,
    /// A `{` has no matching `}` (write `{{` for a literal brace).
    #[error("unclosed `{{` at byte {offset} (write `{{{{` for a literal brace)")]
    UnclosedBrace {
        /// Where the `{` is.
        offset: usize,
    },
    /// A `}` closes nothing (write `}}` for a literal brace).
    #[error("unmatched `}}` at byte {offset} (write `}}}}` for a literal brace)")]
    UnmatchedCloseBrace {
        /// Where the `}` is.
        offset: usize,
    },
    /// `{}` names no field.
    #[error("empty field `{{}}` at byte {offset}")]
    EmptyField {
        /// Where the `{` is.
        offset: usize,
    },
    /// The text between braces is not a field name (lower-case letters, digits, `_`).
    #[error("malformed field at byte {offset}: use one of {}", allowed_list())]
    MalformedField {
        /// Where the `{` is.
        offset: usize,
    },
    /// A field that would carry PHI or clinical detail.
    #[error("the field `{name}` at byte {offset} is not allowed in patient notices: use one of {}", allowed_list())]
    DisallowedField {
        /// The field name as written.
        name: String,
        /// Where the `{` is.
        offset: usize,
    },
    /// A field name that is not one of the allowed fields.
    #[error("unknown field `{name}` at byte {offset}: use one of {}", allowed_list())]
    UnknownField {
        /// The field name as written.
        name: String,
        /// Where the `{` is.
        offset: usize,
    },
    /// The template's own text contains clinical detail.
    #[error("the template text contains clinical detail ({})", categories(findings))]
    Blocked {
        /// What was found, with spans into the template source.
        findings: Vec<Finding>,
    },
}

/// Why a notice could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The template uses a field that was given no value.
    #[error("no value for the field `{0}`")]
    MissingValue(Field),
    /// A value has control characters (line breaks included) or is too long.
    #[error("the value for `{0}` has control characters or is longer than {MAX_VALUE_CHARS} characters")]
    InvalidValue(Field),
    /// The portal link is not a plain `https://` link.
    #[error("the portal link must be an https:// link without spaces")]
    InvalidPortalLink,
    /// The rendered text contains clinical detail (from a value: the template was checked
    /// when saved). The error's text names only the categories; the findings say what.
    #[error("the rendered notice contains clinical detail ({})", categories(findings))]
    Blocked {
        /// What was found, with spans into the rendered text.
        findings: Vec<Finding>,
    },
}

/// Values for a template's fields; a field the template does not use may be left `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateValues<'a> {
    /// The recipient's first name.
    pub first_name: Option<&'a str>,
    /// The appointment date, formatted.
    pub date: Option<&'a str>,
    /// The appointment time, formatted.
    pub time: Option<&'a str>,
    /// The location's name.
    pub location_name: Option<&'a str>,
    /// The patient portal link.
    pub portal_link: Option<&'a str>,
}

impl<'a> TemplateValues<'a> {
    fn get(&self, field: Field) -> Option<&'a str> {
        match field {
            Field::FirstName => self.first_name,
            Field::Date => self.date,
            Field::Time => self.time,
            Field::LocationName => self.location_name,
            Field::PortalLink => self.portal_link,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed template whose text passed the content policy. Exists only through
/// [`Template::parse`].
#[derive(Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    policy: ContentPolicy,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Template {
    /// Parses `source` (`{field}` placeholders, `{{` and `}}` for literal braces) and checks
    /// its literal text against `policy`.
    pub fn parse(source: &str, policy: &ContentPolicy) -> Result<Template, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let (parts, checked_text) = parse_parts(source)?;
        if let Verdict::Blocked(findings) = policy.check(&checked_text, &[]) {
            return Err(TemplateError::Blocked { findings });
        }
        Ok(Template { source: source.to_owned(), parts, policy: policy.clone() })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fields the template uses, in order of first use.
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Field(f) = part
                && !out.contains(f)
            {
                out.push(*f);
            }
        }
        out
    }

    /// Substitutes `values` and checks the result, with the first name exempt.
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 64);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(field) => {
                    let value = values.get(*field).ok_or(RenderError::MissingValue(*field))?;
                    check_value(*field, value)?;
                    out.push_str(value);
                }
            }
        }
        let exempt: Vec<&str> = values.first_name.into_iter().collect();
        match self.policy.check(&out, &exempt) {
            Verdict::Allowed => Ok(out),
            Verdict::Blocked(findings) => Err(RenderError::Blocked { findings }),
        }
    }
}

fn check_value(field: Field, value: &str) -> Result<(), RenderError> {
    if value.chars().any(char::is_control) || value.chars().count() > MAX_VALUE_CHARS {
        return Err(RenderError::InvalidValue(field));
    }
    if field == Field::PortalLink
        && (!value.starts_with("https://") || value.len() == "https://".len() || value.chars().any(char::is_whitespace))
    {
        return Err(RenderError::InvalidPortalLink);
    }
    Ok(())
}

/// Splits the source into parts, and returns the text the policy checks: the source with
/// each placeholder blanked to spaces, so finding offsets still point into the source.
fn parse_parts(source: &str) -> Result<(Vec<Part>, String), TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut checked = String::with_capacity(source.len());
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                literal.push('{');
                checked.push_str("{{");
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                literal.push('}');
                checked.push_str("}}");
            }
            '}' => return Err(TemplateError::UnmatchedCloseBrace { offset: i }),
            '{' => {
                let rest = &source[i + 1..];
                let close = rest.find('}').ok_or(TemplateError::UnclosedBrace { offset: i })?;
                let name = &rest[..close];
                if name.contains('{') {
                    return Err(TemplateError::UnclosedBrace { offset: i });
                }
                let field = field_named(name, i)?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(field));
                checked.extend(std::iter::repeat_n(' ', close + 2));
                // Skip the name and the closing brace (all ASCII, checked by field_named).
                for _ in 0..=close {
                    chars.next();
                }
            }
            c => {
                literal.push(c);
                checked.push(c);
            }
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok((parts, checked))
}

fn field_named(name: &str, offset: usize) -> Result<Field, TemplateError> {
    if name.is_empty() {
        return Err(TemplateError::EmptyField { offset });
    }
    let well_formed = name.len() <= MAX_FIELD_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(TemplateError::MalformedField { offset });
    }
    if let Some(field) = Field::from_name(name) {
        return Ok(field);
    }
    if DISALLOWED_FIELDS.contains(&name) {
        Err(TemplateError::DisallowedField { name: name.to_owned(), offset })
    } else {
        Err(TemplateError::UnknownField { name: name.to_owned(), offset })
    }
}

fn allowed_list() -> String {
    Field::ALL.iter().map(|f| format!("{{{}}}", f.name())).collect::<Vec<_>>().join(", ")
}

fn categories(findings: &[Finding]) -> String {
    let mut seen: Vec<Category> = Vec::new();
    for f in findings {
        if !seen.contains(&f.category) {
            seen.push(f.category);
        }
    }
    seen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_escapes() {
        let (parts, checked) = parse_parts("Hi {first_name}, {{not a field}} on {date}").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Literal("Hi ".into()),
                Part::Field(Field::FirstName),
                Part::Literal(", {not a field} on ".into()),
                Part::Field(Field::Date),
            ]
        );
        assert_eq!(checked.len(), "Hi {first_name}, {{not a field}} on {date}".len());
    }

    #[test]
    fn syntax_errors_are_typed() {
        assert_eq!(parse_parts("See you {date").unwrap_err(), TemplateError::UnclosedBrace { offset: 8 });
        assert_eq!(parse_parts("See you date}").unwrap_err(), TemplateError::UnmatchedCloseBrace { offset: 12 });
        assert_eq!(parse_parts("See you {}").unwrap_err(), TemplateError::EmptyField { offset: 8 });
        assert_eq!(parse_parts("See you { date }").unwrap_err(), TemplateError::MalformedField { offset: 8 });
        assert_eq!(parse_parts("{a{date}}").unwrap_err(), TemplateError::UnclosedBrace { offset: 0 });
        assert!(
            matches!(parse_parts("{diagnosis}").unwrap_err(), TemplateError::DisallowedField { ref name, offset: 0 } if name == "diagnosis")
        );
        assert!(
            matches!(parse_parts("x {weather}").unwrap_err(), TemplateError::UnknownField { ref name, offset: 2 } if name == "weather")
        );
    }
}
