//! The field parsers behind request bodies (login names, organisation slugs, passwords, labels,
//! dates, state codes, verification codes): any text is accepted or refused, never a panic,
//! and an accepted value parses again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_domain::breach::{StateCode, parse_day};
use ward_domain::contact::parse_code;
use ward_domain::login::{LoginName, NewPassword, OrgSlug, parse_label};
use ward_domain::registers::{parse_date, parse_text};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(login) = LoginName::parse(raw) {
        assert_eq!(LoginName::parse(&login.to_string()).ok(), Some(login));
    }
    if let Ok(slug) = OrgSlug::parse(raw) {
        assert_eq!(OrgSlug::parse(&String::from(slug.clone())).ok(), Some(slug));
    }
    let _ = NewPassword::parse(raw);
    if let Ok(label) = parse_label("display_name", raw, 200) {
        assert!(label.chars().count() <= 200);
    }
    let _ = parse_text("notes", raw, 2_000);
    let _ = parse_date("review_on", raw);
    let _ = parse_day("discovered_on", raw);
    if let Ok(code) = StateCode::parse(raw) {
        assert_eq!(StateCode::parse(&code.to_string()).ok(), Some(code));
    }
    let _ = parse_code(raw);
});
