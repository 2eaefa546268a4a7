//! The content policy on the issue's examples, each category, exempt names, organisation
//! terms and ICD-10-CM codes in context.

use ward_outbound::{Category, ContentPolicy, PolicyError, Verdict};

fn policy() -> ContentPolicy {
    ContentPolicy::standard()
}

/// The categories found in `text`, in order.
fn found(text: &str, exempt: &[&str]) -> Vec<(Category, String)> {
    policy().check(text, exempt).findings().iter().map(|f| (f.category, f.term.clone())).collect()
}

#[test]
fn the_issue_examples() {
    let p = policy();
    assert_eq!(p.check("See you Tuesday at 3, Jamie", &["Jamie"]), Verdict::Allowed);
    let verdict = p.check("See you Tuesday at 3 for your depression follow-up", &[]);
    let findings = verdict.findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].category, Category::MentalHealth);
    assert_eq!(findings[0].term, "depression");
    assert_eq!(findings[0].to_string(), "matched `depression` [mental health]");
}

#[test]
fn finding_display_names_term_and_category() {
    let v = policy().check("Your sertraline refill is ready", &[]);
    assert_eq!(v.findings()[0].to_string(), "matched `sertraline` [medication]");
}

#[test]
fn every_category_is_detected() {
    let cases: &[(&str, Category, &str)] = &[
        ("Your diabetes check is due", Category::Condition, "diabetes"),
        ("Coded as E11.9 at your last visit", Category::IcdCode, "E11.9"),
        ("Please pick up your metformin", Category::Medication, "metformin"),
        ("Remember to take 20 mg tonight", Category::Medication, "20 mg"),
        ("Your glucose was 180 mg/dL", Category::LabValue, "glucose"),
        ("Result: 7.8 mmol/L, call us", Category::LabValue, "7.8 mmol/L"),
        ("BP 150/95 at the last visit", Category::LabValue, "BP"),
        ("Your colonoscopy is on Friday", Category::Procedure, "colonoscopy"),
        ("Your therapist will see you Monday", Category::MentalHealth, "therapist"),
        ("Your viral load draw is Monday", Category::Hiv, "viral load"),
        ("Dx B20 noted", Category::Hiv, "B20"),
        ("Your methadone clinic slot moved", Category::SubstanceUse, "methadone clinic"),
        ("Your prenatal visit is at 9", Category::ReproductiveHealth, "prenatal"),
        ("Your chlamydia results are ready", Category::Sti, "chlamydia"),
        ("Reminder about F32.1 billing", Category::MentalHealth, "F32.1"),
        ("Your Zoloft refill is ready", Category::Medication, "Zoloft"),
    ];
    for (text, category, term) in cases {
        let got = found(text, &[]);
        assert!(got.iter().any(|(c, t)| c == category && t == term), "{text:?}: expected {term:?} [{category:?}], got {got:?}");
    }
}

#[test]
fn blood_pressure_reading_is_found_but_dates_are_not() {
    let got = found("BP 150/95 at the last visit", &[]);
    assert!(got.contains(&(Category::LabValue, "150/95".into())), "{got:?}");
    assert_eq!(found("See you 2/20 at 10, Kay", &["Kay"]), vec![]);
    assert_eq!(found("Your visit is 3/14 at 9:15 in room A12", &[]), vec![]);
}

#[test]
fn exempt_names_are_never_flagged() {
    let p = policy();
    // "Lyrica" and "Evista" are drug brands and first names: flagged unless exempt.
    for name in ["Lyrica", "Evista"] {
        let text = format!("Hi {name}, see you Monday");
        assert_eq!(p.check(&text, &[]).findings()[0].category, Category::Medication);
        assert_eq!(p.check(&text, &[name]), Verdict::Allowed);
    }
    // "Allegra" collides too, and the generator's first-name stop-list drops it.
    assert_eq!(p.check("Hi Allegra, see you Monday", &[]), Verdict::Allowed);
    for name in ["Addison", "Grace", "Kay", "Hope", "Chase", "Lyrica", "Evista"] {
        let text = format!("Hi {name}, see you Tuesday at 3 with Dr Rose Grant");
        assert_eq!(p.check(&text, &[name, "Dr Rose Grant"]), Verdict::Allowed, "{text}");
    }
    // Only the name is exempt: the rest of the text is still checked.
    let v = p.check("Hi Lyrica, your Lyrica refill is ready", &["Lyrica"]);
    assert!(v.is_allowed(), "both occurrences are the exempt word: {v:?}");
    let v = p.check("Hi Jamie, your sertraline refill is ready", &["Jamie"]);
    assert_eq!(v.findings().len(), 1);
}

#[test]
fn exempt_names_match_case_insensitively_and_as_whole_words() {
    let p = ContentPolicy::builder().block_term("rosewood", Category::OrganisationTerm).unwrap().build().unwrap();
    // "Rose" does not shield "rosewood".
    assert!(!p.check("Dr ROSE at rosewood", &["Dr Rose Grant"]).is_allowed());
    assert!(p.check("Dr ROSE at noon", &["Dr Rose Grant"]).is_allowed());
}

#[test]
fn matches_are_whole_words() {
    // "hiv" inside a word, "ecg" inside a word, "flu" in "fluent", "stroke" in "strokes".
    assert_eq!(found("Archive your shivers; fluent staff; Greco-ecgian", &[]), vec![]);
    // Case-sensitive terms: AIDS the condition, not hearing aids.
    assert_eq!(found("Bring your hearing aids and visual aids", &[]), vec![]);
    assert_eq!(found("Your AIDS clinic visit", &[]).len(), 1);
}

#[test]
fn icd_codes_in_context() {
    let p = policy();
    assert!(p.is_icd10cm_code("F32.1") && p.is_icd10cm_code("F321") && p.is_icd10cm_code("B20"));
    assert!(!p.is_icd10cm_code("A12"));
    // Not a code at all.
    assert_eq!(found("Please go to room A12", &[]), vec![]);
    // A real category, but bare and without a word saying it is a code: a room or a suite.
    assert_eq!(found("Check in at suite F32 on floor 2", &[]), vec![]);
    assert_eq!(found("Check in at suite F32 on floor 2", &[]), vec![]);
    // The same with a code word before it, or written with its dot.
    assert_eq!(found("ICD code F32 on file", &[]), vec![(Category::MentalHealth, "F32".into())]);
    assert_eq!(found("Updated: Z34.00", &[]), vec![(Category::ReproductiveHealth, "Z34.00".into())]);
    // Lower case is not read as a code.
    assert_eq!(found("Updated: z34.00", &[]), vec![]);
}

#[test]
fn organisation_terms() {
    let p = ContentPolicy::builder()
        .block_term("Project Bluebird", Category::OrganisationTerm)
        .unwrap()
        .allow_term("Mercy Cancer Center")
        .unwrap()
        .allow_term("flu shot")
        .unwrap()
        .build()
        .unwrap();
    let v = p.check("Your Project Bluebird visit", &[]);
    assert_eq!(v.findings()[0].category, Category::OrganisationTerm);
    assert!(p.check("See you at Mercy Cancer Center at 3", &[]).is_allowed());
    assert!(p.check("Time for your flu shot", &[]).is_allowed());
    // Still blocked where the allowed phrase does not cover it.
    assert!(!p.check("Your cancer follow-up at Mercy Cancer Center", &[]).is_allowed());
    // The standard policy blocks both.
    assert!(!policy().check("See you at Mercy Cancer Center at 3", &[]).is_allowed());
    assert!(!policy().check("Time for your flu shot", &[]).is_allowed());
}

#[test]
fn organisation_terms_are_validated() {
    let b = ContentPolicy::builder();
    assert_eq!(b.clone().block_term("  ", Category::OrganisationTerm).unwrap_err(), PolicyError::EmptyTerm);
    assert_eq!(b.clone().allow_term("!!!").unwrap_err(), PolicyError::TermWithoutWord);
    assert_eq!(b.allow_term(&"x".repeat(101)).unwrap_err(), PolicyError::TermTooLong);
}

#[test]
fn findings_are_ordered_and_disjoint() {
    let v = policy().check("HIV viral load 200 copies/mL, PrEP, Truvada 200 mg, F10.20", &[]);
    let f = v.findings();
    assert!(f.len() >= 5, "{f:?}");
    for pair in f.windows(2) {
        assert!(pair[0].span.end <= pair[1].span.start, "{f:?}");
    }
}
