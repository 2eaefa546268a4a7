//! Test support (feature `test-support`): local peers for the key provider tests. Never
//! compiled into the server.
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
