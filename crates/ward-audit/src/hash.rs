//! SHA-256 hashes and the RFC 9162 §2.1.1 hashing of leaves and interior nodes.
//!
//! The one-byte prefixes (0x00 for leaves, 0x01 for nodes) separate the two domains, so no
//! leaf can be passed off as an interior node (second-preimage attack on unprefixed trees).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{Context, SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Length of a hash in bytes.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
///
/// `Display`, `FromStr` and serde use standard padded base64 (as in checkpoints and proofs);
/// `Debug` uses hex, which is what test vectors and humans compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_LEN]);

/// The root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
    0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// Why a string or byte slice is not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The text is not standard padded base64.
    #[error("hash is not standard padded base64")]
    Base64,
    /// The bytes are not exactly 32 long.
    #[error("hash has {0} bytes, expected 32")]
    Length(usize),
}

impl Hash {
    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = HashError;

    fn try_from(bytes: &[u8]) -> Result<Self, HashError> {
        bytes.try_into().map(Hash).map_err(|_| HashError::Length(bytes.len()))
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Hash {
    /// Decodes standard padded base64 without allocating (the verifier's hot path reads one
    /// per export line). The STANDARD engine demands canonical padding and zero trailing bits,
    /// so each hash has exactly one text form.
    pub fn from_base64(text: &[u8]) -> Result<Self, HashError> {
        // A 44-character text decodes to at most 33 bytes by the engine's estimate, and a
        // shorter or longer text to another length: decode into room for one byte more.
        let mut out = [0u8; HASH_LEN + 1];
        match STANDARD.decode_slice(text, &mut out) {
            Ok(n) => Hash::try_from(&out[..n]),
            // Too long for a hash: decode it all only to say how long it is.
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                Err(HashError::Length(STANDARD.decode(text).map_err(|_| HashError::Base64)?.len()))
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => Err(HashError::Base64),
        }
    }
}

impl FromStr for Hash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, HashError> {
        Hash::from_base64(s.as_bytes())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64Hash;
        impl Visitor<'_> for Base64Hash {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 SHA-256 hash")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Hash, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Base64Hash)
    }
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    parts.iter().for_each(|p| ctx.update(p));
    // SHA-256 always yields 32 bytes.
    Hash::try_from(ctx.finish().as_ref()).expect("SHA-256 digest is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, sha256(&[]));
    }

    #[test]
    fn base64_round_trip_and_strictness() {
        let h = leaf_hash(b"x");
        assert_eq!(h.to_string().parse::<Hash>(), Ok(h));
        assert_eq!("AAAA".parse::<Hash>(), Err(HashError::Length(3)));
        // Longer than a hash: decoded (into a 33-byte buffer, then in full) only to say so.
        let long = STANDARD.encode([7u8; 36]);
        assert_eq!(Hash::from_base64(long.as_bytes()), Err(HashError::Length(36)));
        assert_eq!(Hash::from_base64(&long.as_bytes()[..44]), Err(HashError::Length(33)), "44 characters of 33 bytes");
        assert_eq!(Hash::from_base64(b"not base64 at all, and forty-four bytes long!"), Err(HashError::Base64));
        // Unpadded and non-canonical forms are refused.
        let unpadded = h.to_string().trim_end_matches('=').to_owned();
        assert_eq!(unpadded.parse::<Hash>(), Err(HashError::Base64));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut concat = a.0.to_vec();
        concat.extend_from_slice(&b.0);
        assert_ne!(node_hash(&a, &b), leaf_hash(&concat));
    }
}
