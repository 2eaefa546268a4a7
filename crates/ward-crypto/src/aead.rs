//! AES-256-GCM sealing of one field, bound to where it belongs.
//!
//! A sealed field is `0x01 ‖ key version (u32, big-endian) ‖ nonce (12 bytes) ‖ ciphertext ‖
//! tag (16 bytes)`. The additional authenticated data is never stored: it is rebuilt from the
//! row being read (see [`SealContext::aad`]), so a ciphertext copied into another row, another
//! conversation, another tenant or another column fails to open.
//!
//! Nonces are 96 random bits. NIST SP 800-38D bounds random-nonce use to 2^32 messages per
//! key; data keys are per conversation and rotate on a schedule, far below that.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{hkdf, hmac};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::CryptoError;

/// First byte of every sealed field: the format version.
const FORMAT_V1: u8 = 0x01;
/// Header: format byte, key version, nonce.
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// The GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed field adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Length of a data key.
pub const KEY_LEN: usize = 32;

/// What a sealed field is, and where it lives. Every part goes into the additional
/// authenticated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext<'a> {
    /// The kind of field, such as `message.body` (a short ASCII name; one per column).
    pub purpose: &'a str,
    /// The tenant.
    pub org: Uuid,
    /// What the data key belongs to: a conversation, a patient, or the organisation.
    pub scope: Uuid,
    /// The row: a message id, a conversation id, a patient id.
    pub record: Uuid,
}

impl SealContext<'_> {
    /// The additional authenticated data for this context under data key `version`:
    /// `"ward-aead-v1" ‖ 0x00 ‖ len(purpose) (u8) ‖ purpose ‖ org ‖ scope ‖ record (16 bytes
    /// each) ‖ version (u32, big-endian)`.
    pub fn aad(&self, version: u32) -> Vec<u8> {
        let purpose = self.purpose.as_bytes();
        let purpose = &purpose[..purpose.len().min(255)];
        let mut out = Vec::with_capacity(13 + 1 + purpose.len() + 48 + 4);
        out.extend_from_slice(b"ward-aead-v1\0");
        out.push(purpose.len() as u8);
        out.extend_from_slice(purpose);
        out.extend_from_slice(self.org.as_bytes());
        out.extend_from_slice(self.scope.as_bytes());
        out.extend_from_slice(self.record.as_bytes());
        out.extend_from_slice(&version.to_be_bytes());
        out
    }
}

/// An unwrapped data key, ready to seal and open. The raw bytes are not kept: aws-lc holds the
/// expanded key and clears it when this is dropped.
pub struct DataKey {
    version: u32,
    key: LessSafeKey,
    /// HMAC key for blind indexes, derived from the data key with HKDF so that the AES key is
    /// used for nothing else.
    index: hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("version", &self.version).finish_non_exhaustive()
    }
}

impl DataKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<DataKey, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::Format("a data key is 32 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::Format("a data key is 32 bytes"))?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ward-blind-index-v1").extract(bytes);
        let okm = prk.expand(&[b"hmac-sha256"], hmac::HMAC_SHA256).map_err(|_| CryptoError::Format("HKDF output length"))?;
        Ok(DataKey { version, key: LessSafeKey::new(unbound), index: hmac::Key::from(okm) })
    }

    /// A keyed, deterministic index of `value` (HMAC-SHA256 under a key derived from this
    /// one), for finding sealed values by equality without storing them: equal inputs give
    /// equal indexes, and nothing else can be learned without the key.
    pub fn blind_index(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(&(purpose.len() as u32).to_be_bytes());
        ctx.update(purpose.as_bytes());
        ctx.update(value);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `expected` is the blind index of `value` under `purpose`, compared in constant
    /// time (by aws-lc's HMAC verification): for secrets kept only as their keyed hash, such
    /// as one-time codes, where an early-exit comparison would leak how much matched.
    pub fn verify_blind_index(&self, purpose: &str, value: &[u8], expected: &[u8]) -> bool {
        let mut msg = Vec::with_capacity(4 + purpose.len() + value.len());
        msg.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
        msg.extend_from_slice(purpose.as_bytes());
        msg.extend_from_slice(value);
        hmac::verify(&self.index, &msg, expected).is_ok()
    }

    /// The key's version within its scope.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` for `ctx`.
    pub fn seal(&self, ctx: &SealContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with_aad(&ctx.aad(self.version), plaintext)
    }

    /// Seals `plaintext` with caller-built additional data (for formats with their own AAD,
    /// such as attachment chunks). The output has the same layout as [`DataKey::seal`].
    pub fn seal_with_aad(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_array::<NONCE_LEN>();
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&nonce);
        let body_start = out.len();
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(body_start);
        // Sealing only fails for inputs over GCM's 64 GiB limit, which no field approaches.
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .expect("AES-GCM input within limits");
        out.extend_from_slice(&body);
        out
    }

    /// Opens a field sealed for `ctx`. Any change to the ciphertext, or a context other than
    /// the one it was sealed for, is [`CryptoError::Decrypt`].
    pub fn open(&self, ctx: &SealContext<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_with_aad(&ctx.aad(self.version), sealed)
    }

    /// Opens a field sealed by [`DataKey::seal_with_aad`].
    pub fn open_with_aad(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < OVERHEAD || sealed[0] != FORMAT_V1 {
            return Err(CryptoError::Format("not a sealed field"));
        }
        if sealed_key_version(sealed)? != self.version {
            return Err(CryptoError::Decrypt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain =
            self.key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body).map_err(|_| CryptoError::Decrypt)?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_string(&self, ctx: &SealContext<'_>, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(ctx, sealed)?).map_err(|_| CryptoError::Format("sealed text is not UTF-8"))
    }
}

/// The data key version a sealed field names in its header.
pub fn sealed_key_version(sealed: &[u8]) -> Result<u32, CryptoError> {
    if sealed.len() < OVERHEAD || sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Format("not a sealed field"));
    }
    Ok(u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Without a working system RNG nothing can be sealed safely; there is no fallback.
    SystemRandom::new().fill(&mut b).expect("system random number generator failed");
    b
}

/// Fresh key material for a data key, cleared from memory when dropped.
pub fn new_key_bytes() -> Zeroizing<[u8; KEY_LEN]> {
    Zeroizing::new(random_array::<KEY_LEN>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(record: Uuid) -> SealContext<'static> {
        SealContext { purpose: "message.body", org: Uuid::from_u128(1), scope: Uuid::from_u128(2), record }
    }

    #[test]
    fn blind_index_verifies_only_its_own_value() {
        let key = DataKey::from_bytes(1, &[7u8; 32]).unwrap();
        let mac = key.blind_index("contact.code", b"123456");
        assert!(key.verify_blind_index("contact.code", b"123456", &mac));
        assert!(!key.verify_blind_index("contact.code", b"123457", &mac));
        assert!(!key.verify_blind_index("contact.other", b"123456", &mac));
        assert!(!key.verify_blind_index("contact.code", b"123456", &mac[..31]));
    }

    #[test]
    fn round_trip_and_overhead() {
        let key = DataKey::from_bytes(3, &[7u8; 32]).unwrap();
        let sealed = key.seal(&ctx(Uuid::from_u128(9)), b"canary-1234");
        assert_eq!(sealed.len(), b"canary-1234".len() + OVERHEAD);
        assert_eq!(sealed_key_version(&sealed).unwrap(), 3);
        assert_eq!(key.open(&ctx(Uuid::from_u128(9)), &sealed).unwrap(), b"canary-1234");
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
    }

    #[test]
    fn another_row_or_key_version_fails() {
        let key = DataKey::from_bytes(1, &[7u8; 32]).unwrap();
        let sealed = key.seal(&ctx(Uuid::from_u128(9)), b"x");
        assert!(matches!(key.open(&ctx(Uuid::from_u128(10)), &sealed), Err(CryptoError::Decrypt)));
        let other_purpose = SealContext { purpose: "conversation.title", ..ctx(Uuid::from_u128(9)) };
        assert!(matches!(key.open(&other_purpose, &sealed), Err(CryptoError::Decrypt)));
        let v2 = DataKey::from_bytes(2, &[7u8; 32]).unwrap();
        assert!(matches!(v2.open(&ctx(Uuid::from_u128(9)), &sealed), Err(CryptoError::Decrypt)));
    }

    proptest::proptest! {
        #[test]
        fn any_flipped_bit_is_detected(plain in proptest::collection::vec(proptest::num::u8::ANY, 0..64), pos in 0usize..1000, bit in 0u8..8) {
            let key = DataKey::from_bytes(1, &[42u8; 32]).unwrap();
            let c = ctx(Uuid::from_u128(5));
            let mut sealed = key.seal(&c, &plain);
            let pos = pos % sealed.len();
            sealed[pos] ^= 1 << bit;
            proptest::prop_assert!(key.open(&c, &sealed).is_err());
        }

        #[test]
        fn truncation_is_detected(plain in proptest::collection::vec(proptest::num::u8::ANY, 0..64), cut in 1usize..100) {
            let key = DataKey::from_bytes(1, &[42u8; 32]).unwrap();
            let c = ctx(Uuid::from_u128(5));
            let sealed = key.seal(&c, &plain);
            let keep = sealed.len().saturating_sub(cut);
            proptest::prop_assert!(key.open(&c, &sealed[..keep]).is_err());
        }
    }
}
