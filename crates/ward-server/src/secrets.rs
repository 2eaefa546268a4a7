//! Secrets: random tokens, their hashes, passwords (argon2id) and TOTP (RFC 6238).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Prefix of access tokens (lets secret scanners recognise a leaked one).
pub const ACCESS_PREFIX: &str = "wat_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "wrt_";
/// Prefix of second-factor challenge tokens.
pub const CHALLENGE_PREFIX: &str = "wmc_";
/// Prefix of patient portal one-time link tokens.
pub const PORTAL_LINK_PREFIX: &str = "wpl_";
/// Prefix of single sign-on hand-over tokens (callback to web app).
pub const SSO_HANDOFF_PREFIX: &str = "wsh_";

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG failing is not recoverable: nothing secure can be issued.
    SystemRandom::new().fill(&mut b).expect("system random number generator failed");
    b
}

/// A new bearer token with the given prefix: 256 random bits, base64url.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// SHA-256 of a token: what the database stores. Tokens carry 256 random bits, so a fast hash
/// suffices (no dictionary to attack).
pub fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

/// Argon2id with the OWASP Password Storage Cheat Sheet's first recommended setting:
/// m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    // Constant, valid parameters: construction cannot fail.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"))
}

/// Threads that run argon2. Each hash takes 19 MiB and tens of milliseconds; a small fixed
/// pool bounds both the memory (every thread's allocator keeps what it once used) and the CPU
/// that a flood of sign-ins can take, and queues the rest.
const HASHING_THREADS: usize = 2;

type HashJob = Box<dyn FnOnce() + Send>;

static HASHING_POOL: std::sync::LazyLock<std::sync::Mutex<std::sync::mpsc::Sender<HashJob>>> = std::sync::LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for i in 0..HASHING_THREADS {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("ward-argon2-{i}")).spawn(move || {
            loop {
                // Hold the lock only to take a job, not while running it.
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password hashing thread");
        }
    }
    std::sync::Mutex::new(tx)
});

/// Runs `f` on the password-hashing pool.
async fn on_hashing_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = tx.send(f());
    });
    HASHING_POOL
        .lock()
        .map_err(|_| anyhow::anyhow!("password hashing pool poisoned"))?
        .send(job)
        .map_err(|_| anyhow::anyhow!("password hashing pool stopped"))?;
    Ok(rx.await?)
}

/// Hashes a password (PHC string) on the hashing pool.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    on_hashing_pool(move || {
        let salt = random_bytes::<16>();
        argon2()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

/// A valid hash of a random password, verified against when the login name does not exist so
/// that unknown names take as long as known ones.
pub static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    argon2().hash_password_with_salt(&random_bytes::<16>(), &random_bytes::<16>()).map(|h| h.to_string()).unwrap_or_default()
});

/// Checks a password against a PHC hash (constant work whatever the outcome), on the hashing pool.
pub async fn verify_password(password: String, hash: String) -> bool {
    on_hashing_pool(move || argon2().verify_password(password.as_bytes(), hash.as_str()).is_ok()).await.unwrap_or(false)
}

/// A one-time password for a new or reset account: 20 characters from an unambiguous alphabet
/// (about 100 bits).
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    random_bytes::<20>().iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// Ten recovery codes (`xxxxx-xxxxx`, 50 bits each) and their hashes.
pub fn recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = (0..10)
        .map(|_| {
            let r = random_bytes::<10>();
            let s: String = r.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// Hash of a recovery code as typed (case and surrounding spaces ignored).
pub fn recovery_hash(code: &str) -> Vec<u8> {
    token_hash(&code.trim().to_ascii_lowercase())
}

/// TOTP per RFC 6238 with the parameters every authenticator app supports: SHA-1, 6 digits,
/// 30-second steps, one step of clock skew either way.
pub fn totp(secret: &[u8], account: &str) -> anyhow::Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_issuer(Some("Ward"))
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow::anyhow!("totp: {e}"))
}

/// The time step at which `code` is valid now, if it is.
pub fn totp_step(secret: &[u8], account: &str, code: &str) -> Option<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, account).ok()?.check(code, now).and_then(|s| i64::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_with_the_right_text() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery".into(), h.clone()).await);
        assert!(!verify_password("wrong horse battery".into(), h).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token(ACCESS_PREFIX);
        assert!(a.starts_with("wat_") && a.len() == 4 + 43);
        assert_ne!(a, new_token(ACCESS_PREFIX));
        assert_eq!(token_hash(&a).len(), 32);
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(recovery_hash(&format!(" {} ", codes[3].to_uppercase())), hashes[3]);
    }

    #[test]
    fn totp_matches_rfc_6238_vectors() {
        // RFC 6238 Appendix B, SHA-1 seed, truncated to 6 digits.
        let t = totp(b"12345678901234567890", "x").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.generate(1_111_111_109).to_string(), "081804");
        assert_eq!(t.generate(2_000_000_000).to_string(), "279037");
        assert!(totp_step(b"12345678901234567890", "x", "abc").is_none());
    }
}
