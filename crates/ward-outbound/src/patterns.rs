//! Clinical detail that is a shape rather than a word: ICD-10-CM codes, values with
//! laboratory units, blood pressure readings and doses.

use std::collections::HashMap;
use std::ops::Range;

use regex::Regex;

use crate::category::Category;

/// A pattern hit before exempt spans are applied.
pub(crate) struct PatternHit {
    pub(crate) category: Category,
    pub(crate) span: Range<usize>,
}

/// The compiled patterns and the code set that ICD-shaped tokens are checked against.
pub(crate) struct Patterns {
    icd: Regex,
    icd_context: Regex,
    lab_value: Regex,
    blood_pressure: Regex,
    dose: Regex,
    codes: HashMap<&'static str, Category>,
}

/// How far before a bare code a context word ("Dx", "ICD-10", "diagnosis") may stand.
const CODE_CONTEXT_BYTES: usize = 40;

impl Patterns {
    pub(crate) fn new(codes: impl Iterator<Item = (&'static str, Category)>) -> Patterns {
        // The patterns are literals checked by the tests; failing to compile one is a bug.
        let compile = |re: &str| Regex::new(re).expect("built-in pattern compiles");
        Patterns {
            // Upper case only: codes are written that way, and "a12" or "b20" in running
            // text is far more often something else.
            icd: compile(r"\b([A-TV-Z][0-9][0-9A-Z])(?:(\.)([0-9A-Z]{1,4})|([0-9A-Z]{1,4}))?\b"),
            icd_context: compile(r"(?i)\b(?:icd(?:-?10(?:-?cm)?)?|dx|diagnos[ie]s|diag|code|codes)\b"),
            lab_value: compile(
                r"(?i)\b[0-9]+(?:[.,][0-9]+)?\s?(?:mg/dl|mmol/l|mmol/mol|miu/ml|miu/l|uiu/ml|µiu/ml|ng/ml|ng/dl|pg/ml|g/dl|g/l|mg/l|u/l|iu/l|meq/l|cells/mm3|cells/ul|cells/µl|copies/ml|mm ?hg|k/ul|x ?10\^9/l)(?:\b|$)",
            ),
            blood_pressure: compile(r"(?i)\b(?:bp|b/p|blood pressure)\b[^0-9\n]{0,20}\b([0-9]{2,3}/[0-9]{2,3})\b"),
            dose: compile(r"(?i)\b[0-9]+(?:\.[0-9]+)?\s?(?:mg|mcg|µg|ug|milligrams?|micrograms?)\b"),
            codes: codes.collect(),
        }
    }

    /// Whether `code` (with or without its dot) is an ICD-10-CM code, and its category.
    pub(crate) fn code_category(&self, code: &str) -> Option<Category> {
        let normalised: String = code.chars().filter(|c| *c != '.').collect();
        self.codes.get(normalised.as_str()).copied()
    }

    pub(crate) fn find(&self, text: &str, hits: &mut Vec<PatternHit>) {
        for caps in self.icd.captures_iter(text) {
            let (Some(whole), Some(head)) = (caps.get(0), caps.get(1)) else { continue };
            let dotted = caps.get(2).is_some();
            let tail = caps.get(3).or_else(|| caps.get(4)).map_or("", |m| m.as_str());
            let code = format!("{}{}", head.as_str(), tail);
            let Some(category) = self.codes.get(code.as_str()).copied() else { continue };
            // "F32.1" is unmistakable. A bare "B20" or "E119" could be a room, a bus or a
            // part number, so it counts only after a word that says a code follows.
            if dotted || self.has_code_context(text, whole.start()) {
                hits.push(PatternHit { category, span: whole.range() });
            }
        }
        for m in self.lab_value.find_iter(text) {
            hits.push(PatternHit { category: Category::LabValue, span: m.range() });
        }
        for caps in self.blood_pressure.captures_iter(text) {
            if let Some(reading) = caps.get(1) {
                hits.push(PatternHit { category: Category::LabValue, span: reading.range() });
            }
        }
        for m in self.dose.find_iter(text) {
            // "180 mg/dL" is a lab value, found above; a dose has no "/unit" after it.
            if text[m.end()..].starts_with('/') {
                continue;
            }
            hits.push(PatternHit { category: Category::Medication, span: m.range() });
        }
    }

    fn has_code_context(&self, text: &str, code_start: usize) -> bool {
        let mut from = code_start.saturating_sub(CODE_CONTEXT_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        self.icd_context.is_match(&text[from..code_start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns() -> Patterns {
        let codes = [("F321", Category::MentalHealth), ("B20", Category::Hiv), ("E119", Category::IcdCode)];
        Patterns::new(codes.into_iter())
    }

    fn hits(text: &str) -> Vec<(Category, &str)> {
        let mut out = Vec::new();
        patterns().find(text, &mut out);
        out.into_iter().map(|h| (h.category, &text[h.span])).collect()
    }

    #[test]
    fn dotted_codes_need_no_context_but_must_exist() {
        assert_eq!(hits("coded F32.1 today"), vec![(Category::MentalHealth, "F32.1")]);
        assert_eq!(hits("see F99.9 and Q12.3"), vec![]);
    }

    #[test]
    fn bare_codes_need_context() {
        assert_eq!(hits("Suite B20, second floor"), vec![]);
        assert_eq!(hits("Room A12"), vec![]);
        assert_eq!(hits("Dx: B20"), vec![(Category::Hiv, "B20")]);
        assert_eq!(hits("ICD-10 E119 on file"), vec![(Category::IcdCode, "E119")]);
    }

    #[test]
    fn lab_values_blood_pressure_and_doses() {
        assert_eq!(hits("glucose 180 mg/dL"), vec![(Category::LabValue, "180 mg/dL")]);
        assert_eq!(hits("BP was 150/95"), vec![(Category::LabValue, "150/95")]);
        assert_eq!(hits("See you 2/20 at 10"), vec![]);
        assert_eq!(hits("take 50 mg daily"), vec![(Category::Medication, "50 mg")]);
    }
}
