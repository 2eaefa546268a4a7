//! What kind of clinical detail a finding is.

use std::fmt;

/// The kind of clinical detail a finding names. The five sensitive categories take
/// precedence: a term or ICD-10-CM code in a sensitive block is reported as that category,
/// not as a plain condition or code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// A diagnosis or condition ("diabetes", "pneumonia").
    Condition,
    /// An ICD-10-CM code outside the sensitive blocks ("E11.9").
    IcdCode,
    /// A medication name or a dose ("metformin", "50 mg").
    Medication,
    /// A laboratory analyte or a measured value ("A1c", "7.2 mmol/L", "BP 150/95").
    LabValue,
    /// A procedure, test or treatment ("colonoscopy", "MRI").
    Procedure,
    /// Mental health (ICD-10-CM F01-F99 apart from F10-F19).
    MentalHealth,
    /// HIV (B20, Z21, R75).
    Hiv,
    /// Substance use (F10-F19).
    SubstanceUse,
    /// Reproductive health (O00-O9A, Z30-Z39, N96-N98).
    ReproductiveHealth,
    /// Sexually transmitted infections (A50-A64).
    Sti,
    /// A term the organisation added to its own block list.
    OrganisationTerm,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 11] = [
        Category::Condition,
        Category::IcdCode,
        Category::Medication,
        Category::LabValue,
        Category::Procedure,
        Category::MentalHealth,
        Category::Hiv,
        Category::SubstanceUse,
        Category::ReproductiveHealth,
        Category::Sti,
        Category::OrganisationTerm,
    ];

    /// A stable identifier, safe for logs and metrics (`mental_health`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Condition => "condition",
            Category::IcdCode => "icd_code",
            Category::Medication => "medication",
            Category::LabValue => "lab_value",
            Category::Procedure => "procedure",
            Category::MentalHealth => "mental_health",
            Category::Hiv => "hiv",
            Category::SubstanceUse => "substance_use",
            Category::ReproductiveHealth => "reproductive_health",
            Category::Sti => "sti",
            Category::OrganisationTerm => "organisation_term",
        }
    }

    /// Parses [`Category::as_str`]'s identifiers.
    pub fn from_id(id: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == id)
    }

    /// Whether this is one of the sensitive categories that some laws protect beyond HIPAA.
    pub fn is_sensitive(self) -> bool {
        matches!(self, Category::MentalHealth | Category::Hiv | Category::SubstanceUse | Category::ReproductiveHealth | Category::Sti)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::Condition => "condition",
            Category::IcdCode => "ICD-10 code",
            Category::Medication => "medication",
            Category::LabValue => "lab value",
            Category::Procedure => "procedure",
            Category::MentalHealth => "mental health",
            Category::Hiv => "HIV",
            Category::SubstanceUse => "substance use",
            Category::ReproductiveHealth => "reproductive health",
            Category::Sti => "STI",
            Category::OrganisationTerm => "organisation term",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::from_id(c.as_str()), Some(c));
        }
        assert_eq!(Category::from_id("nope"), None);
    }
}
