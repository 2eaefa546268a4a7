//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, in the key encodings of Go's
//! `golang.org/x/mod/sumdb/note`, so Ward's keys and notes interoperate with Go tooling,
//! witnesses and other transparency-log clients.
//!
//! A note is `text` (ending in `\n`), a blank line, then signature lines
//! `— <key name> <base64(4-byte key ID || signature)>\n`.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Signature type byte of Ed25519 note keys.
pub const ALG_ED25519: u8 = 0x01;

/// Most signatures [`open`] reads before giving up (c2sp requires at least 16; Go allows 100).
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of every signature line: EM DASH (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, a text or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains a space, a `+` or a control character.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A verifier key is not `<name>+<8 hex digits>+<base64(type || key)>`.
    #[error("malformed verifier key")]
    MalformedVerifierKey,
    /// A private key is not `PRIVATE+KEY+<name>+<8 hex digits>+<base64(type || seed)>`.
    #[error("malformed private key")]
    MalformedPrivateKey,
    /// A key is of a signature type other than Ed25519.
    #[error("unsupported signature type {0:#04x}")]
    UnsupportedAlgorithm(u8),
    /// The key ID written in a key does not match the one computed from its name and key.
    #[error("key ID does not match the key")]
    KeyIdMismatch,
    /// The system could not generate a key pair.
    #[error("key generation failed")]
    KeyGeneration,
    /// Text to sign is empty, does not end in a newline, or contains control characters.
    #[error("text to sign must be non-empty, end in a newline and contain no control characters but newline")]
    InvalidText,
    /// A note breaks the signed-note syntax; the reason says which rule.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// Two trusted verifiers share a key name and ID, so a signature cannot be attributed.
    #[error("ambiguous key {name}+{id:08x}")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The key ID.
        id: u32,
    },
    /// A signature by a trusted key does not verify.
    #[error("invalid signature for key {name}+{id:08x}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key ID.
        id: u32,
    },
    /// No signature in the note is by a trusted key.
    #[error("note has no signature by a trusted key")]
    NoTrustedSignature,
}

/// An Ed25519 note signing key with its name.
///
/// `Debug` shows the name and key ID only, never the private key.
pub struct Signer {
    name: String,
    id: u32,
    key_pair: Ed25519KeyPair,
}

impl Signer {
    /// Generates a new key named `name` from the system's secure random source.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        check_name(name)?;
        let key_pair = Ed25519KeyPair::generate().map_err(|_| NoteError::KeyGeneration)?;
        Ok(Signer::with_key_pair(name, key_pair))
    }

    /// The key named `name` with the given 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::MalformedPrivateKey)?;
        Ok(Signer::with_key_pair(name, key_pair))
    }

    /// Parses Go's private key string `PRIVATE+KEY+<name>+<hex ID>+<base64(0x01 || seed)>`,
    /// checking that the ID matches the key.
    pub fn from_private_key(skey: &str) -> Result<Self, NoteError> {
        let rest = skey.strip_prefix("PRIVATE+KEY+").ok_or(NoteError::MalformedPrivateKey)?;
        let (name, id, key) = split_key(rest).ok_or(NoteError::MalformedPrivateKey)?;
        let seed = ed25519_key(&key, NoteError::MalformedPrivateKey)?;
        let signer = Signer::from_seed(name, &seed)?;
        if signer.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The private key in Go's encoding (see [`Signer::from_private_key`]). This is the
    /// secret: store it like one.
    pub fn private_key(&self) -> String {
        // aws-lc always exposes the seed of a key pair it built.
        let seed = self.key_pair.seed().and_then(|s| s.as_be_bytes()).expect("Ed25519 seed is exportable");
        let key = [&[ALG_ED25519], seed.as_ref()].concat();
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, STANDARD.encode(key))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), id: self.id, public_key: public_key_of(&self.key_pair) }
    }

    /// Signs `text` and returns the whole note: `text`, a blank line and one signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }

    /// A bare Ed25519 signature of `message` (64 bytes), for detached signatures outside the
    /// note format. Callers must domain-separate `message` (a fixed prefix that no note text
    /// can start with) so that such a signature can never pass as a note signature.
    pub fn sign_detached(&self, message: &[u8]) -> [u8; 64] {
        let sig = self.key_pair.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        out
    }

    /// The signature line for `text` (which must already be valid note text), newline included.
    fn signature_line(&self, text: &str) -> String {
        let signature = self.key_pair.sign(text.as_bytes());
        let payload = [&self.id.to_be_bytes()[..], signature.as_ref()].concat();
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(payload))
    }

    fn with_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Self {
        let id = key_id(name, &public_key_of(&key_pair));
        Signer { name: name.to_owned(), id, key_pair }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}+{:08x})", self.name, self.id)
    }
}

/// A trusted Ed25519 note verifier key with its name.
///
/// Parsed from and displayed as `<name>+<8 hex ID>+<base64(0x01 || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    public_key: [u8; 32],
}

impl Verifier {
    /// The verifier for the Ed25519 `public_key` named `name`.
    pub fn from_ed25519(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Verifier { name: name.to_owned(), id: key_id(name, &public_key), public_key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key).verify(message, signature).is_ok()
    }
}

impl FromStr for Verifier {
    type Err = NoteError;

    fn from_str(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_key(vkey).ok_or(NoteError::MalformedVerifierKey)?;
        let verifier = Verifier::from_ed25519(name, ed25519_key(&key, NoteError::MalformedVerifierKey)?)?;
        if verifier.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(verifier)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = [&[ALG_ED25519], &self.public_key[..]].concat();
        write!(f, "{}+{:08x}+{}", self.name, self.id, STANDARD.encode(key))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub id: u32,
    /// `base64(key ID || signature)`, as it appears in the note.
    pub base64: String,
}

/// A note whose signature by at least one trusted key has been verified. Only [`open`]
/// makes one, so holding a `Note` means its text was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    verified: Vec<Signature>,
    unverified: Vec<Signature>,
}

impl Note {
    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures by trusted keys, all verified, one per key.
    pub fn verified(&self) -> &[Signature] {
        &self.verified
    }

    /// The signatures by keys the caller did not trust (witness cosignatures, rotated keys),
    /// kept so the note can be passed on whole; they were not checked.
    pub fn unverified(&self) -> &[Signature] {
        &self.unverified
    }
}

/// Parses a signed note and verifies it against the trusted `verifiers`.
///
/// Signatures by unknown (name, ID) pairs are kept unchecked; the note is refused if a
/// trusted key's signature fails or if no trusted key signed it.
pub fn open(message: &[u8], verifiers: &[Verifier]) -> Result<Note, NoteError> {
    let message = std::str::from_utf8(message).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    if message.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed("control character"));
    }
    // The text may itself contain blank lines; the signatures start after the last one.
    let split = message.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signatures) = (&message[..=split], &message[split + 2..]);
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(NoteError::Malformed("signature block must end in a newline"));
    }

    let mut note = Note { text: text.to_owned(), verified: Vec::new(), unverified: Vec::new() };
    for (count, line) in signatures.lines().enumerate() {
        if count == MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let signature = parse_signature_line(line)?;
        let mut known = verifiers.iter().filter(|v| v.name == signature.name && v.id == signature.id);
        let Some(verifier) = known.next() else {
            if !note.unverified.contains(&signature) {
                note.unverified.push(signature);
            }
            continue;
        };
        if known.next().is_some() {
            return Err(NoteError::AmbiguousKey { name: signature.name, id: signature.id });
        }
        // Checked by parse_signature_line: valid base64 of more than 4 bytes.
        let raw = STANDARD.decode(&signature.base64).expect("signature base64 was checked");
        if !verifier.verify(text.as_bytes(), &raw[4..]) {
            return Err(NoteError::InvalidSignature { name: signature.name, id: signature.id });
        }
        // Every signature by a trusted key is checked, but each key is listed once.
        if !note.verified.iter().any(|s| s.name == signature.name && s.id == signature.id) {
            note.verified.push(signature);
        }
    }
    if note.verified.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(note)
}

/// `— <name> <base64>` without its newline.
fn parse_signature_line(line: &str) -> Result<Signature, NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed("signature line must start with an em dash and a space"))?;
    let (name, base64) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line has no space after the key name"))?;
    if !valid_name(name) {
        return Err(NoteError::Malformed("invalid key name in signature line"));
    }
    let raw = STANDARD.decode(base64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
    let id_bytes: [u8; 4] = raw.get(..4).and_then(|b| b.try_into().ok()).ok_or(NoteError::Malformed("signature too short"))?;
    if raw.len() == 4 {
        return Err(NoteError::Malformed("signature too short"));
    }
    Ok(Signature { name: name.to_owned(), id: u32::from_be_bytes(id_bytes), base64: base64.to_owned() })
}

/// Checks the note text rules for text about to be signed.
fn check_text(text: &str) -> Result<(), NoteError> {
    let controls = text.bytes().any(|b| b < 0x20 && b != b'\n');
    if text.is_empty() || !text.ends_with('\n') || controls {
        return Err(NoteError::InvalidText);
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if valid_name(name) { Ok(()) } else { Err(NoteError::InvalidKeyName(name.to_owned())) }
}

/// Key names are non-empty, without Unicode spaces or `+`. Control characters are refused
/// too: a note containing one could not be opened anyway.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Splits `<name>+<8 hex>+<base64>` on the first two `+` only (base64 may contain `+`), and
/// decodes the ID and key. The name is not checked here.
fn split_key(s: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, rest) = s.split_once('+')?;
    let (hex, key) = rest.split_once('+')?;
    // from_str_radix would accept a sign, so insist on exactly eight hex digits.
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(hex, 16).ok()?;
    Some((name, id, STANDARD.decode(key).ok()?))
}

/// The 32 key bytes after the Ed25519 type byte.
fn ed25519_key(key: &[u8], malformed: NoteError) -> Result<[u8; 32], NoteError> {
    match key.split_first() {
        Some((&ALG_ED25519, rest)) => rest.try_into().map_err(|_| malformed),
        Some((&other, _)) => Err(NoteError::UnsupportedAlgorithm(other)),
        None => Err(malformed),
    }
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]` as a big-endian integer.
fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut ctx = Context::new(&SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[b'\n', ALG_ED25519]);
    ctx.update(public_key);
    let digest = ctx.finish();
    let d = digest.as_ref();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn public_key_of(key_pair: &Ed25519KeyPair) -> [u8; 32] {
    // An Ed25519 public key is always 32 bytes.
    key_pair.public_key().as_ref().try_into().expect("Ed25519 public key is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let signer = Signer::generate("audit.ward.example/test").unwrap();
        let again = Signer::from_private_key(&signer.private_key()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let vkey = signer.verifier().to_string();
        assert_eq!(vkey.parse::<Verifier>().unwrap(), signer.verifier());
        let note = signer.sign("hello\n").unwrap();
        assert_eq!(open(note.as_bytes(), &[signer.verifier()]).unwrap().text(), "hello\n");
        assert!(!format!("{signer:?}").contains(&signer.private_key()[20..]));
    }

    #[test]
    fn names_and_texts_are_checked() {
        for name in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\u{7}b"] {
            assert_eq!(Signer::generate(name).unwrap_err(), NoteError::InvalidKeyName(name.to_owned()));
        }
        let signer = Signer::generate("k").unwrap();
        for text in ["", "no newline", "tab\there\n", "cr\r\n"] {
            assert_eq!(signer.sign(text), Err(NoteError::InvalidText), "{text:?}");
        }
        // Blank lines inside the text are fine: the split is at the last one.
        let note = signer.sign("a\n\nb\n\n").unwrap();
        assert_eq!(open(note.as_bytes(), &[signer.verifier()]).unwrap().text(), "a\n\nb\n\n");
    }

    #[test]
    fn hex_id_must_be_eight_plain_digits() {
        assert!(split_key("n+c74f20a3+AA==").is_some());
        assert!(split_key("n+C74F20A3+AA==").is_some());
        assert!(split_key("n++74f20a3+AA==").is_none());
        assert!(split_key("n+c74f20a+AA==").is_none());
        assert!(split_key("n+c74f20a3").is_none());
    }
}
