//! The embedded vocabularies and their parsing. The data files are described in
//! `data/NOTICE`; `tools/outbound-vocab/generate` rewrites the generated ones.

use crate::category::Category;

/// One term as read from a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexiconTerm<'a> {
    pub(crate) term: &'a str,
    pub(crate) category: Category,
    /// Matches only in the case written (terms that are also everyday words: "AIDS").
    pub(crate) exact_case: bool,
}

/// A curated or generated list and the category its untagged lines belong to.
struct Source {
    text: &'static str,
    category: Category,
}

/// In priority order: when two lists hold the same term, the earlier list's category wins,
/// so a sensitive category beats a plain condition or medication.
const SOURCES: &[Source] = &[
    Source { text: include_str!("../data/mental_health.txt"), category: Category::MentalHealth },
    Source { text: include_str!("../data/substance_use.txt"), category: Category::SubstanceUse },
    Source { text: include_str!("../data/hiv.txt"), category: Category::Hiv },
    Source { text: include_str!("../data/sti.txt"), category: Category::Sti },
    Source { text: include_str!("../data/reproductive_health.txt"), category: Category::ReproductiveHealth },
    Source { text: include_str!("../data/lab_analytes.txt"), category: Category::LabValue },
    Source { text: include_str!("../data/procedures.txt"), category: Category::Procedure },
    Source { text: include_str!("../data/conditions_lay.txt"), category: Category::Condition },
    Source { text: include_str!("../data/medications_extra.txt"), category: Category::Medication },
    Source { text: include_str!("../data/conditions.tsv"), category: Category::Condition },
    Source { text: include_str!("../data/medications.tsv"), category: Category::Medication },
];

/// Every ICD-10-CM code (dots removed), with its sensitive tag where it has one.
const ICD10CM_CODES: &str = include_str!("../data/icd10cm_codes.tsv");

/// Every embedded term, in priority order (duplicates included; the builder keeps the first).
pub(crate) fn embedded_terms() -> impl Iterator<Item = LexiconTerm<'static>> {
    SOURCES.iter().flat_map(|s| parse_list(s.text, s.category))
}

/// The embedded ICD-10-CM codes with the category a finding on each gets.
pub(crate) fn embedded_codes() -> impl Iterator<Item = (&'static str, Category)> {
    data_lines(ICD10CM_CODES).map(|line| {
        let mut cols = line.split('\t');
        let code = cols.next().unwrap_or_default();
        let category = cols.next().and_then(Category::from_id).unwrap_or(Category::IcdCode);
        (code, category)
    })
}

/// Lines of a list: `term` or `term<TAB>tag...`; `#` comments and blank lines skipped; a
/// leading `=` marks an exact-case term. A tag that names a category overrides `default`.
fn parse_list(text: &'static str, default: Category) -> impl Iterator<Item = LexiconTerm<'static>> {
    data_lines(text).filter_map(move |line| {
        let mut cols = line.split('\t');
        let raw = cols.next()?.trim();
        let category = cols.next().and_then(Category::from_id).unwrap_or(default);
        let (term, exact_case) = match raw.strip_prefix('=') {
            Some(rest) => (rest, true),
            None => (raw, false),
        };
        (!term.is_empty()).then_some(LexiconTerm { term, category, exact_case })
    })
}

fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim_end).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_tags_exact_case_and_comments() {
        let text = "# comment\nanxiety\n=AIDS\n\nmajor depressive disorder\tmental_health\nx\tnot_a_tag\n";
        let terms: Vec<_> = parse_list(text, Category::Condition).collect();
        assert_eq!(terms.len(), 4);
        assert_eq!(terms[0], LexiconTerm { term: "anxiety", category: Category::Condition, exact_case: false });
        assert_eq!(terms[1], LexiconTerm { term: "AIDS", category: Category::Condition, exact_case: true });
        assert_eq!(terms[2].category, Category::MentalHealth);
        assert_eq!(terms[3].category, Category::Condition);
    }

    #[test]
    fn embedded_data_is_present_and_ascii() {
        let terms: Vec<_> = embedded_terms().collect();
        assert!(terms.len() > 30_000, "only {} terms", terms.len());
        assert!(terms.iter().all(|t| t.term.is_ascii()));
        let codes: Vec<_> = embedded_codes().collect();
        assert!(codes.len() > 90_000);
        assert!(codes.contains(&("F329", Category::MentalHealth)));
        assert!(codes.contains(&("F1020", Category::SubstanceUse)));
        assert!(codes.contains(&("B20", Category::Hiv)));
        assert!(codes.contains(&("A530", Category::Sti)));
        assert!(codes.contains(&("O80", Category::ReproductiveHealth)));
        assert!(codes.contains(&("E119", Category::IcdCode)));
    }
}
