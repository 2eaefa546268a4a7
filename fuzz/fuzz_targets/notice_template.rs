//! Notice templates: parsing arbitrary text never panics, and a template that parses renders
//! allowed values into text the content policy still accepts.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ward_outbound::{ContentPolicy, Template, TemplateValues};

fn policy() -> &'static ContentPolicy {
    static POLICY: OnceLock<ContentPolicy> = OnceLock::new();
    POLICY.get_or_init(ContentPolicy::standard)
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(template) = Template::parse(source, policy()) else { return };
    let values = TemplateValues {
        first_name: Some("Jamie"),
        date: Some("Tuesday 3 March"),
        time: Some("3:00 pm"),
        location_name: Some("Riverside Clinic"),
        portal_link: Some("https://ward.example.test/p/abc"),
    };
    let _ = template.render(&values);
});
