//! Test support (feature `test-support`): local peers for the key provider tests (moto's
//! server as KMS, SoftHSM 2 as PKCS#11 token). Never compiled into the server.
//!
//! Each peer is found through an environment variable that `scripts/test` exports. When it is
//! unset the test is skipped with a printed reason, except with `CI=true`, where it fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Whether tests that need a peer must run (in CI) rather than skip.
pub fn peers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns the value of `var`, or `None` after printing why the test is skipped; panics in CI.
pub fn peer_from_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(!peers_required(), "{what} is required in CI (CI=true) but {var} is not set: run scripts/test, which installs it");
            eprintln!("SKIPPED: {var} is not set, so there is no {what} to test against (scripts/test sets it; required when CI=true)");
            None
        }
    }
}

/// moto's server on 127.0.0.1 (a stand-in for AWS services such as KMS), on a port of its
/// own, stopped when dropped. `WARD_TEST_MOTO` names the `moto_server` program.
pub struct MotoServer {
    child: Child,
    endpoint: String,
}

impl MotoServer {
    /// Starts a server and waits until it accepts connections. `None` (after printing why)
    /// when `WARD_TEST_MOTO` is unset outside CI; panics when it is unset in CI or the server
    /// does not start.
    pub fn start() -> Option<MotoServer> {
        let program = peer_from_env("WARD_TEST_MOTO", "moto server (a local KMS)")?;
        let mut child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {program} (WARD_TEST_MOTO): {e}"));
        // Werkzeug announces the port it bound ("Running on http://127.0.0.1:PORT") on stderr
        // or stdout depending on the version; read both, and keep draining them so the server
        // never blocks on a full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        for stream in
            [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as _)]
                .into_iter()
                .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut server = MotoServer { child, endpoint: String::new() };
        let mut seen = Vec::new();
        let port = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(port) = announced_port(&line) {
                        break port;
                    }
                    seen.push(line);
                }
                Err(_) => panic!("moto server ({program}) did not announce its port; it printed:\n{}", seen.join("\n")),
            }
        };
        // Keep draining the pipes for the server's lifetime.
        std::thread::spawn(move || for _ in rx {});
        server.endpoint = format!("http://127.0.0.1:{port}");
        server.wait_until_answering();
        Some(server)
    }

    /// The URL to send requests to, such as `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn wait_until_answering(&mut self) {
        use std::io::{Read, Write};
        let addr: std::net::SocketAddr = self.endpoint.trim_start_matches("http://").parse().expect("moto address");
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto server exited early: {status}");
            }
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = format!("GET /moto-api/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto server at {} does not answer", self.endpoint);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a line like `* Running on http://127.0.0.1:40123` (colour codes around it are
/// ignored).
fn announced_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p != 0)
}

/// A SoftHSM 2 token of the test's own: its configuration and token directory in a temporary
/// directory.
///
/// SoftHSM reads `SOFTHSM2_CONF` from the environment when the module is first loaded, and a
/// test cannot change its own environment safely, so each test runs its HSM work in a child
/// process: [`SoftHsm::token`] called in the test (the parent) creates the token, runs the same
/// test again in a child with `SOFTHSM2_CONF` set, and reports its result; called in that child
/// it returns the token. Parallel test processes never share a token.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    /// The PKCS#11 module (`WARD_TEST_SOFTHSM_MODULE`).
    pub module: std::path::PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN.
    pub pin: String,
    /// The directory holding the configuration and the token.
    pub dir: std::path::PathBuf,
}

/// Set in the child process to the directory of the token its parent made.
const SOFTHSM_CHILD: &str = "WARD_TEST_SOFTHSM_DIR";

impl SoftHsm {
    /// The token label every test token has.
    pub const TOKEN_LABEL: &str = "ward-test";
    /// The user PIN every test token has.
    pub const PIN: &str = "1234-user";

    /// In the child: the token. In the parent: makes the token, runs `test` (the test's name as
    /// the test harness knows it, such as `round_trip` or `module::round_trip`) in a child
    /// process, panics if it failed, and returns `None`. Also `None`, after printing why, when
    /// SoftHSM is not installed outside CI (panics in CI).
    pub fn token(test: &str) -> Option<SoftHsm> {
        let module = peer_from_env("WARD_TEST_SOFTHSM_MODULE", "SoftHSM 2 PKCS#11 module")?;
        if let Ok(dir) = std::env::var(SOFTHSM_CHILD) {
            return Some(SoftHsm { module: module.into(), token_label: Self::TOKEN_LABEL.into(), pin: Self::PIN.into(), dir: dir.into() });
        }
        let util = peer_from_env("WARD_TEST_SOFTHSM_UTIL", "softhsm2-util")?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = Self::create_token(&util, dir.path());
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(SOFTHSM_CHILD, dir.path())
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("run the test in a child process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the test failed in its SoftHSM child process:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the child process did not run the test {test:?}:\n{stdout}\n{stderr}");
        None
    }

    /// Writes a SoftHSM configuration under `dir` and initialises a token labelled
    /// [`SoftHsm::TOKEN_LABEL`] with PIN [`SoftHsm::PIN`] in it, using the `softhsm2-util` at
    /// `util`; returns the configuration file's path (for `SOFTHSM2_CONF`).
    pub fn create_token(util: &str, dir: &std::path::Path) -> std::path::PathBuf {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()))
            .expect("write softhsm2.conf");
        let out = Command::new(util)
            .args(["--init-token", "--free", "--label", Self::TOKEN_LABEL, "--so-pin", "5678-so", "--pin", Self::PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap_or_else(|e| panic!("could not run {util}: {e}"));
        assert!(out.status.success(), "softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr));
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::announced_port;

    #[test]
    fn reads_the_announced_port() {
        assert_eq!(announced_port(" * Running on http://127.0.0.1:39643"), Some(39643));
        assert_eq!(announced_port("\u{1b}[33m * Running on http://127.0.0.1:5000/\u{1b}[0m"), Some(5000));
        assert_eq!(announced_port("Press CTRL+C to quit"), None);
    }
}
