//! Checking never panics, and findings always point at valid text, whatever the input.

use proptest::prelude::*;
use ward_outbound::{ContentPolicy, Template, TemplateValues};

/// Text mixing clinical words, names, codes, numbers, punctuation and non-ASCII letters
/// (including ones whose case mapping changes their length).
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("depression".to_owned()),
        Just("Sertraline".to_owned()),
        Just("AIDS".to_owned()),
        Just("F32.1".to_owned()),
        Just("B20".to_owned()),
        Just("150/95".to_owned()),
        Just("BP".to_owned()),
        Just("7 mmol/L".to_owned()),
        Just("20 mg".to_owned()),
        Just("Jamie".to_owned()),
        Just("İstanbul".to_owned()),
        Just("ǅemal".to_owned()),
        Just("ß".to_owned()),
        Just("Ω".to_owned()),
        Just("allergy shots".to_owned()),
        "[ ,./:;'()\\-\n{}]{0,3}",
        "\\PC{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn checking_never_panics_and_spans_are_valid(text in text(), name in "\\PC{0,12}") {
        let policy = ContentPolicy::standard();
        let verdict = policy.check(&text, &[name.as_str(), "Dr Rose Grant"]);
        let mut last_end = 0;
        for f in verdict.findings() {
            prop_assert!(f.span.start < f.span.end && f.span.end <= text.len());
            prop_assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
            prop_assert_eq!(&text[f.span.clone()], f.term.as_str());
            prop_assert!(f.span.start >= last_end, "findings overlap");
            last_end = f.span.end;
        }
    }

    #[test]
    fn template_parsing_and_rendering_never_panic(source in text(), value in "\\PC{0,20}") {
        let policy = ContentPolicy::standard();
        if let Ok(template) = Template::parse(&source, &policy) {
            let values = TemplateValues {
                first_name: Some(&value),
                date: Some(&value),
                time: Some("3 PM"),
                location_name: Some(&value),
                portal_link: Some("https://portal.example/x"),
            };
            let _ = template.render(&values);
        }
    }
}
