//! TLS 1.3 only, with rustls on aws-lc-rs. Without a configured certificate, a self-signed one
//! is generated in the data directory on first start and reused afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate in use.
pub struct Certificate {
    /// The rustls configuration to accept connections with.
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as colon-separated hex (what browsers show).
    pub fingerprint: String,
    /// Whether it was generated just now.
    pub generated: bool,
    /// The certificate file (for clients that want to trust it).
    pub cert_path: PathBuf,
}

/// Loads the configured certificate, or the generated one in `data_dir/tls/`, making it if missing.
pub fn load_or_generate(cert: Option<&Path>, key: Option<&Path>, data_dir: &Path) -> anyhow::Result<Certificate> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        _ => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            let generated = if c.exists() && k.exists() {
                false
            } else {
                generate(&dir, &c, &k)?;
                true
            };
            (c, k, generated)
        }
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path).map_err(|e| anyhow::anyhow!("cannot open TLS certificate {}: {e}", cert_path.display()))?,
    ))
    .collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path).map_err(|e| anyhow::anyhow!("cannot open TLS key {}: {e}", key_path.display()))?,
    ))?
    .ok_or_else(|| anyhow::anyhow!("no private key in {}", key_path.display()))?;
    let leaf = certs.first().ok_or_else(|| anyhow::anyhow!("no certificate in {}", cert_path.display()))?;
    let fingerprint = fingerprint(leaf.as_ref());
    Ok(Certificate { server_config: server_config(certs, key)?, fingerprint, generated, cert_path })
}

/// A rustls server configuration that offers TLS 1.3 only (a TLS 1.2 client is refused) and
/// negotiates HTTP/2 or HTTP/1.1.
pub fn server_config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Ward (self-signed)");
    let cert = params.self_signed(&key)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem())?;
    Ok(())
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(bytes)
}

/// SHA-256 of DER bytes as upper-case colon-separated hex.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
