//! What the CLI tests share: running the built `ward` binary on a temporary data directory,
//! checking its exit and output, and opening that directory's store as the server would.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use ward_store::{Store, StoreOptions};

/// The built `ward` binary as a command in `dir`, without the caller's own `WARD_*` variables
/// (such as the test runner's `WARD_TEST_PYTHON`), so they cannot change the configuration.
pub(crate) fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARD_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir);
    cmd
}

/// Runs `ward` with `args` in `dir`, its data directory `dir/data`, and only the `WARD_*`
/// variables given in `env`.
pub(crate) fn ward_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(dir);
    cmd.env("WARD_DATA_DIR", dir.join("data")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the ward binary")
}

/// Runs `ward` with `args` in `dir` on the data directory `data`.
pub(crate) fn ward_in(dir: &Path, data: &Path, args: &[&str]) -> Output {
    command(dir).env("WARD_DATA_DIR", data).args(args).output().expect("run the ward binary")
}

/// [`ward_with`] without extra variables.
pub(crate) fn ward(dir: &Path, args: &[&str]) -> Output {
    ward_with(dir, args, &[])
}

/// The command's standard output.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command's standard error.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub(crate) fn ok(o: Output) -> String {
    assert!(o.status.success(), "ward failed ({}):\nstdout: {}\nstderr: {}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Asserts a clean failure: non-zero exit, one `ward: ...` line on stderr mentioning
/// `mentions`, no panic. Returns the message.
pub(crate) fn fails(o: Output, mentions: &str) -> String {
    let err = stderr(&o);
    assert!(!o.status.success(), "ward should have failed:\nstdout: {}\nstderr: {err}", stdout(&o));
    assert!(!err.contains("panicked"), "ward panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("ward: "), "stderr should start with `ward: `: {err:?}");
    assert!(lines[0].contains(mentions), "stderr should mention {mentions:?}: {err:?}");
    lines[0].to_owned()
}

/// The store of data directory `data` (embedded SQLite, the local key file), opened as the
/// server opens it.
pub(crate) async fn open_store(data: &Path) -> Store {
    let url = format!("sqlite://{}", data.join("ward.db").display());
    let provider = ward_crypto::FileKeyProvider::open_or_create(&data.join("keys").join("kek.json")).expect("key file");
    let keyring = Arc::new(ward_crypto::Keyring::new(Arc::new(provider), 1024));
    Store::open(StoreOptions::new(url, keyring)).await.expect("open the store")
}
