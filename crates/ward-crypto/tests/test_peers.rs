//! The test peers themselves: moto's server starts on a port of its own and answers.

use std::io::{Read, Write};

use ward_crypto::testing::MotoServer;

#[test]
fn moto_server_starts_answers_and_stops() {
    let Some(moto) = MotoServer::start() else { return };
    let addr = moto.endpoint().trim_start_matches("http://").to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut s = std::net::TcpStream::connect(&addr).expect("connect to moto");
    s.write_all(format!("GET /moto-api/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{}", out.lines().next().unwrap_or_default());
    drop(moto);
    assert!(std::net::TcpStream::connect(&addr).is_err(), "moto still answers after drop");
}
