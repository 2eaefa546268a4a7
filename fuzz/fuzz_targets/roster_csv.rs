//! The HR roster CSV import: any text is either a roster or an error naming the problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_domain::roster::Roster;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Roster::parse_csv(text);
    }
});
