//! The `ward` command as an operator runs it: the built binary, a temporary data directory
//! (`WARD_DATA_DIR`) with embedded SQLite, and nothing else. Every failure must be a single
//! `ward: ...` line on stderr and a non-zero exit, never a panic.

mod support;

use std::path::{Path, PathBuf};

use support::{fails, ok, ward, ward_with};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// The one-time password at the end of a `user add` / `user reset-password` line.
fn one_time_password(out: &str) -> String {
    let (_, pw) = out.trim().rsplit_once("one-time password: ").unwrap_or_else(|| panic!("no one-time password in {out:?}"));
    assert!(pw.len() >= 12 && pw.chars().all(|c| c.is_ascii_alphanumeric()), "odd one-time password {pw:?}");
    pw.to_owned()
}

/// `login -> (role, state)` from `ward user list`.
fn listed_users(dir: &Path, org: &str) -> Vec<(String, String, String)> {
    ok(ward(dir, &["user", "list", "--org", org]))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "user list line {l:?}");
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ward.example.toml")
}

#[test]
fn org_create_then_list() {
    let d = tempdir();
    let out = ok(ward(d.path(), &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    assert!(out.starts_with("created organisation acme ("), "{out}");
    ok(ward(d.path(), &["org", "create", "--slug", "north-wing", "--name", "North Wing"]));
    let list = ok(ward(d.path(), &["org", "list"]));
    let slugs: Vec<(&str, &str)> = list
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "org list line {l:?}");
            (f[0], f[2])
        })
        .collect();
    assert!(slugs.contains(&("acme", "Acme Clinic")), "{list}");
    assert!(slugs.contains(&("north-wing", "North Wing")), "{list}");
    assert!(d.path().join("data/ward.db").exists(), "the SQLite file lives in WARD_DATA_DIR");
}

#[test]
fn user_add_prints_a_one_time_password_and_list_shows_the_user() {
    let d = tempdir();
    ok(ward(d.path(), &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    let out =
        ok(ward(d.path(), &["user", "add", "--org", "acme", "--login", "dr.who@acme.test", "--name", "Dr Who", "--role", "clinician"]));
    assert!(out.starts_with("created dr.who@acme.test ("), "{out}");
    assert!(out.contains(" as clinician;"), "{out}");
    one_time_password(&out);
    let users = listed_users(d.path(), "acme");
    assert_eq!(users, vec![("dr.who@acme.test".to_owned(), "clinician".to_owned(), "active".to_owned())]);
}

#[test]
fn disabled_users_are_listed_as_disabled_until_enabled() {
    let d = tempdir();
    ok(ward(d.path(), &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    ok(ward(d.path(), &["user", "add", "--org", "acme", "--login", "nurse@acme.test", "--name", "N", "--role", "nurse"]));
    let out = ok(ward(d.path(), &["user", "disable", "nurse@acme.test"]));
    assert!(out.starts_with("disabled nurse@acme.test; ended 0 session(s)"), "{out}");
    assert_eq!(listed_users(d.path(), "acme")[0].2, "disabled");
    ok(ward(d.path(), &["user", "enable", "nurse@acme.test"]));
    assert_eq!(listed_users(d.path(), "acme")[0].2, "active");
}

#[test]
fn reset_password_prints_a_new_one_time_password() {
    let d = tempdir();
    ok(ward(d.path(), &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    let first = one_time_password(&ok(ward(
        d.path(),
        &["user", "add", "--org", "acme", "--login", "admin@acme.test", "--name", "A", "--role", "admin"],
    )));
    let out = ok(ward(d.path(), &["user", "reset-password", "admin@acme.test"]));
    assert!(out.starts_with("reset admin@acme.test; ended 0 session(s)"), "{out}");
    let second = one_time_password(&out);
    assert_ne!(first, second);
}

#[test]
fn config_print_redacts_the_database_password() {
    let d = tempdir();
    let out = ok(ward_with(
        d.path(),
        &["config", "print"],
        &[("WARD_DATABASE_URL", "postgres://ward:hunter2-s3cret@127.0.0.1:5432/ward?sslmode=disable&password=other-s3cret")],
    ));
    assert!(!out.contains("s3cret"), "a password leaked: {out}");
    assert!(out.contains("postgres://ward:****@127.0.0.1:5432/ward"), "{out}");
    assert!(out.contains("password=****"), "{out}");
    // Nothing was opened: printing the configuration needs no database.
    assert!(!d.path().join("data").exists());
}

#[test]
fn config_print_shows_file_and_environment_over_defaults() {
    let d = tempdir();
    let defaults = ok(ward(d.path(), &["config", "print"]));
    assert!(defaults.contains("listen = \"127.0.0.1:8443\""), "{defaults}");
    assert!(defaults.contains("idle_timeout_secs = 900"), "{defaults}");
    std::fs::write(d.path().join("ward.toml"), "listen = \"127.0.0.1:9443\"\n[sessions]\nidle_timeout_secs = 600\n").unwrap();
    let out = ok(ward_with(d.path(), &["-c", "ward.toml", "config", "print"], &[("WARD_SESSIONS__IDLE_TIMEOUT_SECS", "1200")]));
    assert!(out.contains("listen = \"127.0.0.1:9443\""), "the file sets listen: {out}");
    assert!(out.contains("idle_timeout_secs = 1200"), "the environment wins over the file: {out}");
}

/// `ward.example.toml` must stay loadable, list every setting, and show the defaults.
#[test]
fn example_config_is_valid_complete_and_shows_the_defaults() {
    let d = tempdir();
    let example = example_config();
    let text = std::fs::read_to_string(&example).expect("ward.example.toml at the workspace root");
    let with_example = ok(ward(d.path(), &["-c", example.to_str().unwrap(), "config", "print"]));
    let defaults = ok(ward(d.path(), &["config", "print"]));
    assert_eq!(with_example, defaults, "ward.example.toml should set every value to its default");
    // Every setting `config print` knows appears in the example, under its table.
    let mut table = String::new();
    for line in defaults.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            table = line.to_owned();
            assert!(text.lines().any(|l| l.trim() == table), "ward.example.toml lacks {table}");
        } else if let Some((key, _)) = line.split_once(" = ") {
            let documented = text.lines().any(|l| {
                let l = l.trim().trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            });
            assert!(documented, "ward.example.toml lacks {table} {key}");
        }
    }
    for key in ["cert", "key"] {
        assert!(text.contains(&format!("# {key} = ")), "ward.example.toml should show tls.{key} (commented out)");
    }
}

#[test]
fn migrate_applies_the_embedded_migrations_once() {
    let d = tempdir();
    let out = ok(ward(d.path(), &["migrate"]));
    let n: u32 = out
        .trim()
        .strip_prefix("applied ")
        .and_then(|r| r.strip_suffix(" migration(s)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected migrate output {out:?}"));
    assert!(n >= 1, "a fresh database needs migrations: {out}");
    assert_eq!(ok(ward(d.path(), &["migrate"])).trim(), "applied 0 migration(s)");
    // The migrated database works.
    ok(ward(d.path(), &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
}

#[test]
fn bad_input_fails_with_one_line_and_no_panic() {
    let d = tempdir();
    let p = d.path();
    ok(ward(p, &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    ok(ward(p, &["user", "add", "--org", "acme", "--login", "taken@acme.test", "--name", "T", "--role", "staff"]));

    fails(ward(p, &["user", "add", "--org", "acme", "--login", "x@acme.test", "--name", "X", "--role", "root"]), "role");
    fails(ward(p, &["org", "create", "--slug", "Not A Slug", "--name", "Bad"]), "slug");
    fails(ward(p, &["org", "create", "--slug", "acme", "--name", "Again"]), "exists");
    fails(ward(p, &["user", "add", "--org", "nowhere", "--login", "x@acme.test", "--name", "X", "--role", "nurse"]), "nowhere");
    fails(ward(p, &["user", "list", "--org", "nowhere"]), "nowhere");
    fails(ward(p, &["user", "add", "--org", "acme", "--login", "taken@acme.test", "--name", "T", "--role", "staff"]), "exists");
    fails(ward(p, &["user", "add", "--org", "acme", "--login", "has space", "--name", "X", "--role", "nurse"]), "login");
    fails(ward(p, &["user", "add", "--org", "acme", "--login", "pat@acme.test", "--name", "P", "--role", "patient"]), "patient");
    for cmd in ["disable", "enable", "reset-password"] {
        fails(ward(p, &["user", cmd, "nobody@acme.test"]), "nobody@acme.test");
    }

    std::fs::write(p.join("unknown-key.toml"), "listen = \"127.0.0.1:8443\"\nno_such_setting = 1\n").unwrap();
    fails(ward(p, &["-c", "unknown-key.toml", "config", "print"]), "no_such_setting");
    fails(ward(p, &["-c", "unknown-key.toml", "org", "list"]), "no_such_setting");
    fails(ward(p, &["-c", "missing.toml", "config", "print"]), "missing.toml");
    fails(ward(p, &["-c", "missing.toml", "migrate"]), "missing.toml");
    fails(ward_with(p, &["config", "print"], &[("WARD_SESSIONS__IDLE_TIMEOUT_SECS", "5")]), "idle_timeout_secs");
    fails(ward_with(p, &["config", "print"], &[("WARD_DATABASE_URL", "mysql://127.0.0.1/ward")]), "database_url");
    fails(ward_with(p, &["config", "print"], &[("WARD_LISTEN", "not-an-address")]), "LISTEN");
}

/// The export lines of `path`, parsed.
fn export_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Writes export lines in the exact form an export uses (the verifier refuses any other).
fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let mut text = Vec::new();
    for l in lines {
        let line: ward_audit::ExportLine = serde_json::from_value(l.clone()).unwrap();
        text.extend(line.to_line());
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The raw text of the export line of event `idx`, newline included.
fn event_line(export: &Path, idx: u64) -> String {
    let text = std::fs::read_to_string(export).unwrap();
    let found = text.lines().find(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["type"] == "event" && v["event"]["idx"] == idx
    });
    format!("{}\n", found.unwrap_or_else(|| panic!("no event {idx} in the export")))
}

/// `ward audit checkpoint`, `export` and `verify`: an intact log verifies offline and in the
/// database; every kind of tampering with an export is found and named by its first bad index.
#[test]
fn audit_export_verifies_and_tampering_is_detected() {
    let dir = tempdir();
    let d = dir.path();
    ok(ward(d, &["org", "create", "--slug", "acme", "--name", "Acme"]));
    for i in 0..3 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    let note = ok(ward(d, &["audit", "checkpoint"]));
    assert!(note.starts_with("ward.local/audit\n4\n"), "{note}");
    for i in 3..6 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    ok(ward(d, &["audit", "checkpoint"]));
    ok(ward(d, &["user", "add", "--org", "acme", "--login", "late@acme", "--name", "U", "--role", "nurse"]));

    let vkey = d.join("data/audit/verifier.vkey");
    let vkey = vkey.to_str().unwrap();
    let export = d.join("audit.ndjson");
    let out = ok(ward(d, &["audit", "export", "--out", export.to_str().unwrap()]));
    assert!(out.contains("exported 9 entries and 2 checkpoints"), "{out}");
    let out = ok(ward(d, &["audit", "verify", "--export", export.to_str().unwrap(), "--vkey", vkey]));
    assert!(out.contains("verified 9 entries and 2 checkpoints") && out.contains("(2 entries after the last checkpoint)"), "{out}");
    let out = ok(ward(d, &["audit", "verify", "--vkey", vkey]));
    assert!(out.contains("verified 9 entries and 2 checkpoints"), "{out}");

    let lines = export_lines(&export);
    assert_eq!(lines.iter().filter(|l| l["type"] == "event").count(), 9);
    // Checkpoints first (a cut-short file keeps them), then the events by index.
    assert!(lines[..2].iter().all(|l| l["type"] == "checkpoint") && lines[2..].iter().all(|l| l["type"] == "event"));
    assert!((0..9).all(|i| lines[i + 2]["event"]["idx"] == i as u64));
    let bad = d.join("bad.ndjson");
    let check = |lines: &[serde_json::Value], mentions: &str| {
        write_lines(&bad, lines);
        fails(ward(d, &["audit", "verify", "--export", bad.to_str().unwrap(), "--vkey", vkey]), mentions)
    };
    // Rewriting the lines unchanged keeps them verifiable (so the failures below are the edits').
    write_lines(&bad, &lines);
    ok(ward(d, &["audit", "verify", "--export", bad.to_str().unwrap(), "--vkey", vkey]));
    let ev = |i: usize| i + 2;

    // Modified (its integrated leaf hash kept): found at its index.
    let mut l = lines.clone();
    l[ev(2)]["event"]["outcome"] = "denied".into();
    check(&l, "at index 2");
    // Modified with the leaf hash dropped: found within its checkpoint range.
    l[ev(2)]["leaf_hash"] = serde_json::Value::Null;
    check(&l, "at index 0");
    // Deleted.
    let mut l = lines.clone();
    l.remove(ev(5));
    check(&l, "at index 5");
    // Inserted.
    let mut l = lines.clone();
    l.insert(ev(3), lines[ev(2)].clone());
    check(&l, "at index 3");
    // Reordered.
    let mut l = lines.clone();
    l.swap(ev(6), ev(7));
    check(&l, "at index 6");
    // Truncated below the last checkpoint (size 7).
    let mut l = lines.clone();
    l.truncate(ev(5));
    check(&l, "at index 5");
    // A forged checkpoint: another root under the genuine signature.
    let mut l = lines.clone();
    let genuine = l[1]["note"].as_str().unwrap().to_owned();
    let mut parts: Vec<&str> = genuine.split('\n').collect();
    let forged_root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    parts[2] = forged_root;
    l[1]["note"] = parts.join("\n").into();
    check(&l, "does not verify");
    // One byte changed where JSON would read the same record (an escaped character): the
    // line is refused and the entry named.
    let text = std::fs::read_to_string(&export).unwrap();
    let respelled = text.replacen(r#""outcome":"success""#, r#""outcome":"succes\u0073""#, 1);
    std::fs::write(&bad, respelled).unwrap();
    fails(ward(d, &["audit", "verify", "--export", bad.to_str().unwrap(), "--vkey", vkey]), "at index 0");
    // A key that is not the log's.
    let other_dir = tempdir();
    ok(ward(other_dir.path(), &["audit", "checkpoint"]));
    let other = other_dir.path().join("data/audit/verifier.vkey");
    assert_ne!(std::fs::read(&other).unwrap(), std::fs::read(vkey).unwrap());
    fails(ward(d, &["audit", "verify", "--export", export.to_str().unwrap(), "--vkey", other.to_str().unwrap()]), "does not verify");
}

/// Retention: `ward audit archive` moves checkpointed entries older than the retention period
/// into a segment that verifies offline (and fails when tampered with), and the pruned live
/// log still exports and verifies from its base.
#[test]
fn audit_archive_writes_verifiable_segments_and_the_pruned_log_still_verifies() {
    const DAY_MS: i64 = 86_400_000;
    let dir = tempdir();
    let d = dir.path();
    ok(ward(d, &["org", "create", "--slug", "acme", "--name", "Acme"]));
    for i in 0..3 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    ok(ward(d, &["audit", "checkpoint"]));
    for i in 3..5 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    let vkey = d.join("data/audit/verifier.vkey");
    let vkey = vkey.to_str().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let later = (now + 7 * 365 * DAY_MS).to_string();
    let in_seven_years = [("WARD_TEST_NOW_MS", later.as_str())];

    // Nothing is six years old yet; less than six years of retention is refused; --before can
    // only move the horizon earlier.
    assert!(ok(ward(d, &["audit", "archive"])).contains("nothing to archive"));
    fails(ward_with(d, &["audit", "archive"], &[("WARD_AUDIT__RETENTION_DAYS", "2000")]), "at least six years");
    fails(ward(d, &["audit", "archive", "--before", "2999-01-01"]), "after the retention horizon");
    fails(ward(d, &["audit", "archive", "--before", "soon"]), "YYYY-MM-DD");
    let out = ok(ward_with(d, &["audit", "archive", "--before", "2000-01-01"], &in_seven_years));
    assert!(out.contains("nothing to archive"), "{out}");

    // Seven years on, the entries the checkpoint covers (0..4) go; the uncovered ones stay.
    let out = ok(ward_with(d, &["audit", "archive"], &in_seven_years));
    assert!(out.contains("archived entries 0..4 (checkpoint 4)"), "{out}");
    let segment = d.join("data/audit/archive/segment-000000000000-000000000004.ndjson");
    let seg = segment.to_str().unwrap();
    let out = ok(ward(d, &["audit", "verify-segment", "--segment", seg, "--vkey", vkey]));
    assert!(out.contains("verified segment of entries 0..4 against the signed checkpoint at tree size 4"), "{out}");
    assert!(ok(ward_with(d, &["audit", "archive"], &in_seven_years)).contains("nothing to archive"));

    // Tampering with the segment is found.
    let text = std::fs::read_to_string(&segment).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "a header and four events");
    let bad = d.join("bad-segment.ndjson");
    let check = |content: String, mentions: &str| {
        std::fs::write(&bad, content).unwrap();
        fails(ward(d, &["audit", "verify-segment", "--segment", bad.to_str().unwrap(), "--vkey", vkey]), mentions)
    };
    let mut bytes = text.clone().into_bytes();
    let at = text.find("nurse").or_else(|| text.find("success")).unwrap();
    bytes[at] ^= 0x20;
    check(String::from_utf8(bytes).unwrap(), "does not verify");
    check(text.replacen("\"outcome\":\"success\"", "\"outcome\":\"denied\"", 1), "does not match its recorded leaf hash");
    let dropped: String = lines.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| format!("{l}\n")).collect();
    check(dropped, "expected index 1, found index 2");
    let truncated: String = lines[..4].iter().map(|l| format!("{l}\n")).collect();
    check(truncated, "ends before entry 3");

    // The pruned live log exports with its base first, and verifies from the export and the database.
    let export = d.join("pruned.ndjson");
    ok(ward(d, &["audit", "checkpoint"]));
    ok(ward(d, &["audit", "export", "--out", export.to_str().unwrap()]));
    let exported = export_lines(&export);
    // Checkpoints first, then the base, then the events from the base on.
    let base_at = exported.iter().position(|l| l["type"] == "base").expect("a base line");
    assert!(exported[..base_at].iter().all(|l| l["type"] == "checkpoint"));
    assert_eq!(exported[base_at]["tree_size"], 4);
    assert_eq!(exported[base_at + 1]["event"]["idx"], 4);
    let out = ok(ward(d, &["audit", "verify", "--export", export.to_str().unwrap(), "--vkey", vkey]));
    assert!(out.contains("entries below 4 were archived"), "{out}");
    let out = ok(ward(d, &["audit", "verify", "--vkey", vkey]));
    assert!(out.contains("entries below 4 were archived"), "{out}");
    // A forged base does not reproduce the signed roots.
    // (Replaced in the text: the export's lines must keep Ward's exact spelling.)
    let first_hash = exported[base_at]["hashes"][0].as_str().unwrap().to_owned();
    let raw = std::fs::read_to_string(&export).unwrap();
    let forged: String = raw
        .lines()
        .enumerate()
        .map(|(i, l)| if i == base_at { l.replacen(&first_hash, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1) } else { l.to_owned() } + "\n")
        .collect();
    std::fs::write(&bad, forged).unwrap();
    fails(ward(d, &["audit", "verify", "--export", bad.to_str().unwrap(), "--vkey", vkey]), "at index 4");

    // A wrong checkpoint in the segment header: a genuine later one.
    let later_note = exported.iter().rev().find(|l| l["type"] == "checkpoint").unwrap()["note"].clone();
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    // Replaced in place: the segment's lines must keep Ward's exact spelling.
    let note_json = serde_json::to_string(&header["checkpoint"]).unwrap();
    check(text.replacen(&note_json, &later_note.to_string(), 1), "checkpoint does not verify");

    // The next run continues where the last segment ended, into another directory.
    let elsewhere = d.join("elsewhere");
    let out = ok(ward_with(d, &["audit", "archive", "--dir", elsewhere.to_str().unwrap()], &in_seven_years));
    assert!(out.contains("archived entries 4.."), "{out}");
    let segments: Vec<PathBuf> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let second = &segments[0];
    assert!(second.file_name().unwrap().to_str().unwrap().starts_with("segment-000000000004-"), "{second:?}");
    ok(ward(d, &["audit", "verify-segment", "--segment", second.to_str().unwrap(), "--vkey", vkey]));
    let out = ok(ward(d, &["audit", "verify", "--vkey", vkey]));
    assert!(!out.contains("entries below 4 were"), "the base moved on: {out}");
}

/// `ward audit prove` and `ward audit check-proof`: a bundle for one event verifies offline
/// with only the verifier key, also against a checkpoint and an export line the checker
/// already holds; every tampering, mismatch, forgery or wrong key fails with one line.
#[test]
fn audit_prove_and_check_proof() {
    let dir = tempdir();
    let d = dir.path();
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();
    ok(ward(d, &["org", "create", "--slug", "acme", "--name", "Acme"]));
    fails(ward(d, &["audit", "prove", "--index", "0"]), "no signed checkpoint yet");
    for i in 0..4 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    let early = ok(ward(d, &["audit", "checkpoint"]));
    // The refused prove recorded its audit.read event too: 1 + 1 + 4 entries.
    assert!(early.starts_with("ward.local/audit\n6\n"), "{early}");
    for i in 4..7 {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", &format!("u{i}@acme"), "--name", "U", "--role", "nurse"]));
    }
    let latest = ok(ward(d, &["audit", "checkpoint"]));
    assert!(latest.starts_with("ward.local/audit\n9\n"), "{latest}");
    std::fs::write(path("latest.note"), &latest).unwrap();
    std::fs::write(path("early.note"), &early).unwrap();
    let vkey = path("data/audit/verifier.vkey");
    let export = path("audit.ndjson");
    ok(ward(d, &["audit", "export", "--out", &export]));
    let lines = export_lines(Path::new(&export));
    std::fs::write(path("entry3.ndjson"), event_line(Path::new(&export), 3)).unwrap();
    std::fs::write(path("entry4.ndjson"), event_line(Path::new(&export), 4)).unwrap();

    // Against the latest checkpoint (the default), written to a file.
    let out = ok(ward(d, &["audit", "prove", "--index", "3", "--out", &path("b3.json")]));
    assert!(out.contains("entry 3 at tree size 9"), "{out}");
    let bundle: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path("b3.json")).unwrap()).unwrap();
    assert_eq!(bundle["format"], "ward-audit-inclusion/v1");
    assert_eq!(bundle["entry"], lines[2 + 3], "the bundle's entry is the export line");
    assert_eq!(bundle["checkpoint"], latest.as_str());
    assert_eq!((bundle["proof"]["leaf_index"].as_u64(), bundle["proof"]["tree_size"].as_u64()), (Some(3), Some(9)));
    let check = |extra: &[&str]| ward(d, &[&["audit", "check-proof", "--vkey", &vkey][..], extra].concat());
    let out = ok(check(&["--bundle", &path("b3.json")]));
    assert!(out.starts_with("entry 3 is included in ward.local/audit at tree size 9 (root "), "{out}");
    ok(check(&["--bundle", &path("b3.json"), "--checkpoint", &path("latest.note"), "--event", &path("entry3.ndjson")]));
    // The published copy in checkpoints.log (note plus an empty line) works as a held checkpoint.
    let published = std::fs::read_to_string(path("data/audit/checkpoints.log")).unwrap();
    let last = published.trim_end().rsplit("\n\nward.local/audit").next().unwrap();
    std::fs::write(path("published.note"), format!("ward.local/audit{last}\n\n")).unwrap();
    ok(check(&["--bundle", &path("b3.json"), "--checkpoint", &path("published.note")]));

    // Against an older checkpoint, on standard output.
    let b = ok(ward(d, &["audit", "prove", "--index", "2", "--size", "6"]));
    std::fs::write(path("b2.json"), &b).unwrap();
    assert!(ok(check(&["--bundle", &path("b2.json"), "--checkpoint", &path("early.note")])).contains("at tree size 6"));

    // prove refuses what it cannot prove.
    fails(ward(d, &["audit", "prove", "--index", "2", "--size", "7"]), "no signed checkpoint at tree size 7");
    fails(ward(d, &["audit", "prove", "--index", "9"]), "index 9 is not covered");
    fails(ward(d, &["audit", "prove", "--index", "6", "--size", "6"]), "index 6 is not covered");

    // Held files that do not match the bundle.
    fails(check(&["--bundle", &path("b3.json"), "--checkpoint", &path("early.note")]), "is not the held checkpoint");
    fails(check(&["--bundle", &path("b3.json"), "--event", &path("entry4.ndjson")]), "is not the held event");

    let bad = path("bad.json");
    let tampered = |edit: &dyn Fn(&mut serde_json::Value), mentions: &str| {
        let mut b = bundle.clone();
        edit(&mut b);
        std::fs::write(&bad, b.to_string()).unwrap();
        fails(check(&["--bundle", &bad]), mentions)
    };
    // A tampered event: its recorded leaf hash kept, or recomputed/dropped.
    tampered(&|b| b["entry"]["event"]["outcome"] = "denied".into(), "does not match its recorded leaf hash");
    tampered(
        &|b| {
            b["entry"]["event"]["outcome"] = "denied".into();
            b["entry"]["leaf_hash"] = serde_json::Value::Null;
        },
        "not proven included",
    );
    // A wrong index, in the proof or in the event.
    tampered(&|b| b["proof"]["leaf_index"] = 4.into(), "the proof is for index 4, but the event has index 3");
    tampered(
        &|b| {
            b["entry"]["event"]["idx"] = 4.into();
            b["proof"]["leaf_index"] = 4.into();
            b["entry"]["leaf_hash"] = serde_json::Value::Null;
        },
        "not proven included",
    );
    // A changed proof hash, a forged checkpoint root, another format, garbage.
    tampered(
        &|b| {
            let h = b["proof"]["hashes"][0].as_str().unwrap().to_owned();
            b["proof"]["hashes"][0] = format!("{}{}", if h.starts_with('A') { "B" } else { "A" }, &h[1..]).into();
        },
        "not proven included",
    );
    tampered(
        &|b| {
            let note = b["checkpoint"].as_str().unwrap().to_owned();
            let mut parts: Vec<&str> = note.split('\n').collect();
            parts[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
            b["checkpoint"] = parts.join("\n").into();
        },
        "the checkpoint does not verify",
    );
    tampered(&|b| b["format"] = "something/v9".into(), "unsupported bundle format");
    std::fs::write(&bad, "{not json").unwrap();
    fails(check(&["--bundle", &bad]), "not an inclusion bundle");
    fails(check(&["--bundle", &path("missing.json")]), "missing.json");
    fails(check(&["--bundle", &path("b3.json"), "--event", &export]), "exactly one export line");

    // A key that is not the log's (same origin, another key).
    let other_dir = tempdir();
    ok(ward(other_dir.path(), &["audit", "checkpoint"]));
    let other = other_dir.path().join("data/audit/verifier.vkey");
    fails(
        ward(d, &["audit", "check-proof", "--bundle", &path("b3.json"), "--vkey", other.to_str().unwrap()]),
        "the checkpoint does not verify with this key",
    );
}
