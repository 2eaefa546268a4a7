//! The outbound content policy over arbitrary text and exempt names: no panic, and every
//! finding's span lies on character boundaries inside the text and holds the reported term.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ward_outbound::ContentPolicy;

fn policy() -> &'static ContentPolicy {
    static POLICY: OnceLock<ContentPolicy> = OnceLock::new();
    POLICY.get_or_init(ContentPolicy::standard)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    // The first line, if any, lists exempt names separated by commas; the rest is the text.
    let (names, text) = input.split_once('\n').unwrap_or(("", input));
    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    let verdict = policy().check(text, &names);
    for f in verdict.findings() {
        assert_eq!(text.get(f.span.clone()), Some(f.term.as_str()), "a finding's span must hold its term");
    }
});
