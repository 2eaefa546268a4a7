//! Property-based fuzzing of the served API from its own OpenAPI document, by an independent
//! tool: schemathesis (from PyPI; `scripts/test` installs it into target/schemathesis-venv and
//! exports `WARD_TEST_SCHEMATHESIS`). Every operation the document describes is called with
//! generated valid and invalid data as a stepped-up administrator; the run fails on any 5xx,
//! any status code or content type the document does not declare, any response body that does
//! not match its schema, and any invalid request that is accepted.
//!
//! Not checked: `positive_data_acceptance` (a schema-valid request must succeed). Ward checks
//! more than a JSON Schema states (text non-empty once trimmed and free of control characters,
//! E.164 numbers, date order, a template's content policy, integers written without a
//! fraction), and refuses the rest with a 400 or 422 problem naming the field, which the
//! document declares; the authorization checks are `authz_matrix.rs`'s job.
//!
//! Excluded operations end or disable the very session the fuzzer uses (sign-out, revoking
//! sessions, disabling accounts); their bad-input handling is covered in `bad_input.rs`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Harness;
use ward_domain::role::Role;
use ward_store::Backend;

/// Seconds schemathesis may spend in all (`WARD_SCHEMATHESIS_SECONDS` overrides; the full run
/// in docs/reliability.md uses more).
const DEFAULT_SECONDS: u64 = 90;

fn schemathesis() -> Option<String> {
    match std::env::var("WARD_TEST_SCHEMATHESIS") {
        Ok(path) => Some(path),
        Err(_) => {
            assert!(
                !ward_store::testing::pg_required(),
                "WARD_TEST_SCHEMATHESIS must name the schemathesis command when CI=true (scripts/test installs it)"
            );
            eprintln!("SKIPPED: schemathesis is not installed (set WARD_TEST_SCHEMATHESIS; scripts/test does)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document_under_generated_input() {
    let Some(st) = schemathesis() else { return };
    let h = Harness::start(Backend::Sqlite).await.expect("SQLite always starts");
    let org = h.org("fuzzed", vec![]).await;
    let admin = h.account(&org, "admin", Role::Admin).await;
    let session = h.login_stepped_up(&admin).await;
    let cert = h.running.as_ref().unwrap().cert_path.clone();
    let seconds = std::env::var("WARD_SCHEMATHESIS_SECONDS").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(DEFAULT_SECONDS);
    // Kept after the run (target/tmp/schemathesis/) for whoever reads a failure.
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");

    std::fs::create_dir_all(&report).unwrap();
    let mut cmd = Command::new(st);
    // Its cache (.schemathesis/) goes to the working directory: keep it out of the source tree.
    cmd.current_dir(&report)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", h.url))
        .args(["--tls-verify", cert.to_str().unwrap()])
        .args(["-H", &format!("Authorization: Bearer {}", session.access)])
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,ignored_auth,use_after_free,ensure_resource_availability,object_level_authorization",
        ])
        .args([
            "--exclude-path-regex",
            "^/api/v1/(auth/logout|me/sessions/.*|users/\\{user_id\\}/(disable|sessions|password-reset)|me/password)$",
        ])
        .args(["--workers", "1", "--max-time", &seconds.to_string(), "--request-timeout", "30"])
        .args(["--report", "junit", "--report-dir", report.to_str().unwrap()])
        .args(["--no-color", "--continue-on-failure"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let out = tokio::time::timeout(Duration::from_secs(seconds + 300), tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("schemathesis finishes within its time budget")
        .unwrap()
        .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(report.join("last-run.txt"), format!("{stdout}\n{stderr}")).unwrap();
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    // A run that tested nothing would also succeed: the summary must name tested operations.
    assert!(stdout.contains("passed"), "schemathesis ran no operation:\n{stdout}");
}
