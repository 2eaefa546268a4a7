//! Device registrations and posture reports as clients send them: any bytes parse to a
//! checked value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_device::report::{DeviceRegistration, PostureReport};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let _ = DeviceRegistration::from_json(json);
    if let Ok(report) = PostureReport::from_json(json) {
        // What parses serialises and parses back to the same report.
        let again = PostureReport::from_json(&report.to_json()).expect("a report's own JSON parses");
        assert_eq!(again, report);
    }
});
