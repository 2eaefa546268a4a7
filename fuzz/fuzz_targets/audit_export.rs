//! A whole audit export through the offline verifier: arbitrary bytes are refused with an
//! error, never a panic, and no forged text verifies without the checkpoint key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ward_audit::note::{Signer, Verifier};
use ward_audit::verify::verify_export;

fn verifier() -> &'static Verifier {
    static KEY: OnceLock<Verifier> = OnceLock::new();
    KEY.get_or_init(|| Signer::from_seed("ward.fuzz/audit", &[7; 32]).expect("a valid key name").verifier())
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_export(data, verifier().clone());
});
