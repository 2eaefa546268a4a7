//! One line of an audit export: parsing never panics, and what parses writes back to exactly
//! the bytes it came from (the format admits one spelling per record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_audit::verify::ExportLine;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = ExportLine::parse_line(data) {
        assert_eq!(line.to_line(), data, "a parsed line must re-serialise to its own bytes");
    }
});
