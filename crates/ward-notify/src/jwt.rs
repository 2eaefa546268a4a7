//! Compact JWS signing for the two provider credentials: ES256 (APNs token auth, RFC 7518
//! section 3.4: the raw r||s signature) and RS256 (the OAuth2 JWT-bearer grant of RFC 7523
//! that an FCM service account uses). Keys are PKCS#8, PEM or DER.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A key that would not load, or a signature that failed (no key material in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not PEM or not PKCS#8 of the expected kind.
    #[error("the key is not a PKCS#8 {0} private key")]
    BadKey(&'static str),
    /// Signing failed.
    #[error("signing failed")]
    Sign,
}

/// DER from PEM (the first block), or the bytes as they are if they are not PEM.
pub(crate) fn pem_to_der(input: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(input).ok();
    match text {
        Some(t) if t.contains("-----BEGIN") => {
            let body: String = t
                .lines()
                .skip_while(|l| !l.starts_with("-----BEGIN"))
                .skip(1)
                .take_while(|l| !l.starts_with("-----END"))
                .map(str::trim)
                .collect();
            STANDARD.decode(body).ok()
        }
        _ => Some(input.to_vec()),
    }
}

fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}")
}

/// An ES256 JWT with `kid` in its header.
pub fn es256_jwt(pkcs8: &[u8], kid: &str, claims: &serde_json::Value) -> Result<String, JwtError> {
    let der = pem_to_der(pkcs8).ok_or(JwtError::BadKey("P-256"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| JwtError::BadKey("P-256"))?;
    let input = signing_input(&serde_json::json!({"alg": "ES256", "kid": kid}), claims);
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| JwtError::Sign)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
}

/// An RS256 JWT.
pub fn rs256_jwt(pkcs8: &[u8], claims: &serde_json::Value) -> Result<String, JwtError> {
    let der = pem_to_der(pkcs8).ok_or(JwtError::BadKey("RSA"))?;
    let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| JwtError::BadKey("RSA"))?;
    let input = signing_input(&serde_json::json!({"alg": "RS256", "typ": "JWT"}), claims);
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).map_err(|_| JwtError::Sign)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Checks the key loads (at start-up, so a bad key is a config error, not a failed send).
pub(crate) fn check_ec_key(pkcs8: &[u8]) -> Result<(), JwtError> {
    let der = pem_to_der(pkcs8).ok_or(JwtError::BadKey("P-256"))?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map(|_| ()).map_err(|_| JwtError::BadKey("P-256"))
}

/// Checks the key loads.
pub(crate) fn check_rsa_key(pkcs8: &[u8]) -> Result<(), JwtError> {
    let der = pem_to_der(pkcs8).ok_or(JwtError::BadKey("RSA"))?;
    RsaKeyPair::from_pkcs8(&der).map(|_| ()).map_err(|_| JwtError::BadKey("RSA"))
}
