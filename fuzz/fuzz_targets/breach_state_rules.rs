//! The dated table of state breach-notification rules, and the deadline calculator over
//! whatever it accepts: no panic, and every deadline falls on or after the discovery date.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use ward_domain::breach::{BreachFacts, StateCode, StateRules, plan};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rules) = StateRules::parse(text) else { return };
    let discovered = time::Date::from_calendar_date(2026, time::Month::March, 2).expect("a valid date");
    let mut residents = BTreeMap::new();
    for code in ["CA", "NY", "TX", "FL", "WA"] {
        residents.insert(StateCode::parse(code).expect("a state code"), 600);
    }
    let facts = BreachFacts { discovered, affected: 5_000, residents };
    if let Ok(obligations) = plan(&facts, &rules) {
        for o in obligations {
            assert!(o.due >= discovered, "a deadline before discovery: {o:?}");
        }
    }
});
