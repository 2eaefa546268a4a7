//! The short crash-consistency run (the full one is in docs/reliability.md): `ward serve` is
//! killed with SIGKILL three times under load, on SQLite and on PostgreSQL, and the harness
//! must find every acknowledged message exactly once and the audit log verified.

use std::path::PathBuf;
use std::process::Command;

/// `ward`, built beside this package's binary by the same test build (the `ward` package has
/// integration tests, so cargo builds its binary).
fn ward_bin() -> PathBuf {
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_ward-loadgen"));
    loadgen.with_file_name("ward")
}

fn crash_run(extra: &[&str]) {
    let ward = ward_bin();
    assert!(ward.is_file(), "no ward binary at {}", ward.display());
    let out = Command::new(env!("CARGO_BIN_EXE_ward-loadgen"))
        .args(["--crash", "3", "--crash-senders", "4", "--crash-max-uptime-ms", "1000", "--ward-bin"])
        .arg(&ward)
        .args(extra)
        .output()
        .expect("ward-loadgen runs");
    let table = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "crash run failed:\n{table}\n{log}");
    for line in [
        "| SIGKILLs (each followed by a restart) | 3 |",
        "| acknowledged but missing | 0 |",
        "| stored more than once (same client_txn_id) | 0 |",
        "| sequence gaps | 0 |",
        "| `ward audit verify` | verified |",
        "| result | PASS |",
    ] {
        assert!(table.contains(line), "missing {line:?} in:\n{table}");
    }
    let acknowledged: u64 = table
        .lines()
        .find_map(|l| l.strip_prefix("| messages acknowledged to senders | ")?.strip_suffix(" |")?.parse().ok())
        .expect("an acknowledged count");
    assert!(acknowledged > 0, "nothing was sent:\n{table}");
}

#[test]
fn sqlite_survives_sigkill() {
    crash_run(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill() {
    let url = ward_store::testing::pg_url();
    let reachable = tokio::time::timeout(std::time::Duration::from_secs(3), <sqlx::PgConnection as sqlx::Connection>::connect(&url))
        .await
        .is_ok_and(|r| r.is_ok());
    if !reachable {
        assert!(!ward_store::testing::pg_required(), "PostgreSQL at {url} is required in CI (CI=true) but does not answer");
        eprintln!("SKIPPED: no PostgreSQL answers at {url} (set WARD_TEST_PG_URL; required when CI=true)");
        return;
    }
    tokio::task::spawn_blocking(move || crash_run(&["--database-url", &url])).await.expect("the run finishes");
}
