//! Patient notice templates: allowed fields only, typed errors, the policy on save and on
//! render.

use ward_outbound::{Category, ContentPolicy, Field, RenderError, Template, TemplateError, TemplateValues};

fn policy() -> ContentPolicy {
    ContentPolicy::standard()
}

fn values<'a>(first_name: &'a str) -> TemplateValues<'a> {
    TemplateValues {
        first_name: Some(first_name),
        date: Some("Tuesday 3/14"),
        time: Some("3 PM"),
        location_name: Some("Riverside Family Clinic"),
        portal_link: Some("https://portal.example.org/visits"),
    }
}

#[test]
fn renders_the_issue_example() {
    let t = Template::parse("See you {date} at {time}, {first_name}", &policy()).unwrap();
    assert_eq!(t.fields(), vec![Field::Date, Field::Time, Field::FirstName]);
    assert_eq!(t.render(&values("Jamie")).unwrap(), "See you Tuesday 3/14 at 3 PM, Jamie");
}

#[test]
fn every_field_and_literal_braces() {
    let source = "{first_name}: {date} {time} at {location_name}. {{Portal}}: {portal_link}";
    let t = Template::parse(source, &policy()).unwrap();
    assert_eq!(t.source(), source);
    assert_eq!(
        t.render(&values("Ana")).unwrap(),
        "Ana: Tuesday 3/14 3 PM at Riverside Family Clinic. {Portal}: https://portal.example.org/visits"
    );
}

#[test]
fn clinical_template_text_is_rejected_when_saved() {
    let err = Template::parse("See you {date} for your depression follow-up", &policy()).unwrap_err();
    let TemplateError::Blocked { findings } = &err else { panic!("{err:?}") };
    assert_eq!(findings[0].category, Category::MentalHealth);
    // Offsets point into the source as written.
    assert_eq!(&"See you {date} for your depression follow-up"[findings[0].span.clone()], "depression");
    // The error's text names the category only.
    assert_eq!(err.to_string(), "the template text contains clinical detail (mental health)");
}

#[test]
fn disallowed_and_unknown_fields_are_typed_errors() {
    let p = policy();
    assert_eq!(
        Template::parse("Hi {first_name}, about your {diagnosis}", &p).unwrap_err(),
        TemplateError::DisallowedField { name: "diagnosis".into(), offset: 28 }
    );
    assert_eq!(Template::parse("{last_name}", &p).unwrap_err(), TemplateError::DisallowedField { name: "last_name".into(), offset: 0 });
    let err = Template::parse("Hi {nickname}", &p).unwrap_err();
    assert_eq!(err, TemplateError::UnknownField { name: "nickname".into(), offset: 3 });
    assert!(err.to_string().contains("{first_name}, {date}, {time}, {location_name}, {portal_link}"));
    assert_eq!(Template::parse("Hi {First_Name}", &p).unwrap_err(), TemplateError::MalformedField { offset: 3 });
    assert_eq!(Template::parse("Hi {first_name", &p).unwrap_err(), TemplateError::UnclosedBrace { offset: 3 });
    assert_eq!(Template::parse("Hi first_name}", &p).unwrap_err(), TemplateError::UnmatchedCloseBrace { offset: 13 });
    assert_eq!(Template::parse("Hi {}", &p).unwrap_err(), TemplateError::EmptyField { offset: 3 });
    assert_eq!(Template::parse("   ", &p).unwrap_err(), TemplateError::Empty);
    assert_eq!(Template::parse(&"a".repeat(1601), &p).unwrap_err(), TemplateError::TooLong);
}

#[test]
fn first_name_is_exempt_but_other_values_are_checked() {
    let t = Template::parse("Hi {first_name}, see you {date} at {location_name}", &policy()).unwrap();
    // "Lyrica" is a drug brand and a first name.
    assert!(t.render(&values("Lyrica")).is_ok());
    let elsewhere = TemplateValues { location_name: Some("Lyrica House"), ..values("Jamie") };
    assert!(t.render(&elsewhere).is_err());
    let clinical_location = TemplateValues { location_name: Some("Methadone Clinic"), ..values("Jamie") };
    let err = t.render(&clinical_location).unwrap_err();
    let RenderError::Blocked { findings } = &err else { panic!("{err:?}") };
    assert_eq!(findings[0].category, Category::SubstanceUse);
    assert_eq!(err.to_string(), "the rendered notice contains clinical detail (substance use)");
    // A value smuggling clinical detail into the date field.
    let smuggled = TemplateValues { date: Some("Tuesday (bring your Zoloft)"), ..values("Jamie") };
    assert!(matches!(t.render(&smuggled), Err(RenderError::Blocked { .. })));
}

#[test]
fn organisation_allowed_terms_apply_to_rendering() {
    let p = ContentPolicy::builder().allow_term("Mercy Cancer Center").unwrap().build().unwrap();
    let t = Template::parse("See you {date} at {location_name}", &p).unwrap();
    let v = TemplateValues { location_name: Some("Mercy Cancer Center"), ..values("Jamie") };
    assert!(t.render(&v).is_ok());
    let t = Template::parse("See you {date} at {location_name}", &policy()).unwrap();
    assert!(t.render(&v).is_err());
}

#[test]
fn bad_values_are_typed_errors() {
    let t = Template::parse("{first_name}, {date}, {portal_link}", &policy()).unwrap();
    let missing = TemplateValues { date: None, ..values("Jamie") };
    assert_eq!(t.render(&missing).unwrap_err(), RenderError::MissingValue(Field::Date));
    let newline = TemplateValues { first_name: Some("Jamie\nsecond line"), ..values("Jamie") };
    assert_eq!(t.render(&newline).unwrap_err(), RenderError::InvalidValue(Field::FirstName));
    let long = "x".repeat(201);
    let too_long = TemplateValues { date: Some(&long), ..values("Jamie") };
    assert_eq!(t.render(&too_long).unwrap_err(), RenderError::InvalidValue(Field::Date));
    for link in ["http://portal.example.org", "https://", "https://a b", "javascript:alert(1)"] {
        let bad = TemplateValues { portal_link: Some(link), ..values("Jamie") };
        assert_eq!(t.render(&bad).unwrap_err(), RenderError::InvalidPortalLink, "{link}");
    }
}
