//! Signed notes and checkpoints (C2SP signed-note and tlog-checkpoint): opening and parsing
//! arbitrary bytes never panics, and nothing verifies without the key's signature.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ward_audit::checkpoint::Checkpoint;
use ward_audit::note::{Signer, Verifier, open};

const ORIGIN: &str = "ward.fuzz/audit";

fn verifier() -> &'static Verifier {
    static KEY: OnceLock<Verifier> = OnceLock::new();
    KEY.get_or_init(|| Signer::from_seed(ORIGIN, &[7; 32]).expect("a valid key name").verifier())
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    if let Ok(note) = open(data, std::slice::from_ref(v)) {
        assert!(!note.verified().is_empty(), "an opened note carries a verified signature");
    }
    if let Ok(cp) = Checkpoint::parse(data, ORIGIN, v) {
        assert_eq!(cp.origin(), ORIGIN);
    }
});
