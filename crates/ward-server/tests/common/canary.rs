//! Canary checks shared by the PHI-canary tests: where a forbidden string shows up in some
//! output (letter case ignored), and the refusal bodies kept for the final sweep.

use super::Reply;

/// Where `needle` first appears in `haystack` (letter case ignored), with 200 characters of
/// context each side.
pub fn find(haystack: &str, needle: &str) -> Option<String> {
    let lower = haystack.to_ascii_lowercase();
    let at = lower.find(&needle.to_ascii_lowercase())?;
    let start = lower[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
    let end = lower[at..].char_indices().nth(200).map_or(lower.len(), |(i, _)| at + i);
    Some(haystack[start..end].to_owned())
}

/// Fails, showing the context, if any of `needles` reached `what`.
#[track_caller]
pub fn assert_absent(what: &str, haystack: &str, needles: &[&str]) {
    for needle in needles {
        if let Some(context) = find(haystack, needle) {
            panic!("`{needle}` reached {what}: …{context}…");
        }
    }
}

/// Fails unless `needle` is in `haystack` (letter case ignored): proves a check looked where
/// the canary does belong.
#[track_caller]
pub fn assert_present(what: &str, haystack: &str, needle: &str) {
    assert!(find(haystack, needle).is_some(), "`{needle}` should be in {what}: {haystack}");
}

/// Keeps every refusal's body for the final check.
pub struct Errors(pub Vec<String>);

impl Errors {
    #[track_caller]
    pub fn problem(&mut self, r: Reply, status: u16, code: &str) -> Reply {
        let r = r.expect_problem(status, code);
        self.0.push(r.body.to_string());
        r
    }
}
