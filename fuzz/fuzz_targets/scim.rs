//! The SCIM filter language and PATCH requests (RFC 7644 §3.4.2.2 and §3.5.2), which arrive
//! from identity providers: any text is a filter or a refusal, never a panic or a hang; an
//! accepted filter prints to text that parses to the same filter and evaluates without
//! panicking; any JSON is a list of operations or a SCIM error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_domain::scim::filter::{AttrPath, AttrValue, Filter, FilterError, Resource, Value};
use ward_domain::scim::patch::parse_request;

/// A resource where every attribute has one string and one boolean value, so evaluation
/// reaches every comparison.
struct Anything;

impl Resource for Anything {
    fn values(&self, _path: &AttrPath) -> Vec<AttrValue> {
        vec![
            AttrValue { value: Value::Str("Work@Example.org".into()), case_exact: false },
            AttrValue { value: Value::Bool(true), case_exact: true },
        ]
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(filter) = Filter::parse(raw) {
        let printed = filter.to_string();
        match Filter::parse(&printed) {
            Ok(again) => assert_eq!(again, filter, "printing and parsing changed the filter"),
            // Printing parenthesises every group and spells values out, so a filter near the
            // nesting or length limit can print past it; refusing that is the limit working.
            Err(FilterError::TooDeep | FilterError::TooLong) => {}
            Err(e) => panic!("a printed filter does not parse: {e:?}"),
        }
        let _ = filter.matches(&Anything);
    }
    if let Ok(path) = AttrPath::parse(raw) {
        assert_eq!(AttrPath::parse(&path.to_string()).ok(), Some(path));
    }
    if let Ok(body) = serde_json::from_str::<serde_json::Value>(raw) {
        let _ = parse_request(&body);
    }
});
