//! Signed checkpoints (c2sp.org/tlog-checkpoint): a signed note whose text is
//! `<origin>\n<tree size>\n<base64 root>\n`, optionally followed by extension lines.

use crate::hash::Hash;
use crate::note::{self, NoteError, Signer, Verifier};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note itself did not open (syntax, or no valid signature by the log's key).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The note text breaks the checkpoint syntax; the reason says which rule.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The checkpoint is from another log.
    #[error("checkpoint origin {found:?} is not {expected:?}")]
    OriginMismatch {
        /// The origin the caller trusts.
        expected: String,
        /// The origin the checkpoint names.
        found: String,
    },
    /// An origin to sign is empty or contains a control character.
    #[error("invalid origin {0:?}")]
    InvalidOrigin(String),
}

/// A checkpoint whose signature by the log's key has been verified, or that was just signed.
/// There is no other way to make one, so an unverified checkpoint cannot be mistaken for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    note: String,
}

impl Checkpoint {
    /// Opens a signed checkpoint from the log `origin`, trusting only `verifier`'s signature
    /// (other signatures, such as witness cosignatures, are kept unchecked in the note).
    /// The signature is checked before the text is read.
    pub fn parse(note: &[u8], origin: &str, verifier: &Verifier) -> Result<Self, CheckpointError> {
        let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        let opened = note::open(note.as_bytes(), std::slice::from_ref(verifier))?;
        let body = parse_body(opened.text())?;
        if body.origin != origin {
            return Err(CheckpointError::OriginMismatch { expected: origin.to_owned(), found: body.origin.to_owned() });
        }
        Ok(Checkpoint { origin: origin.to_owned(), size: body.size, root: body.root, note: note.to_owned() })
    }

    /// Signs the checkpoint of the tree of `size` leaves with root `root` in log `origin`.
    /// The signer's key name should equal the origin.
    pub fn sign(origin: &str, size: u64, root: Hash, signer: &Signer) -> Result<Self, CheckpointError> {
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(CheckpointError::InvalidOrigin(origin.to_owned()));
        }
        let note = signer.sign(&format!("{origin}\n{size}\n{root}\n"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root, note })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash at that size.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The whole signed note, byte for byte as signed or received: what to publish.
    pub fn note(&self) -> &str {
        &self.note
    }
}

/// The three mandatory lines of a checkpoint text.
#[derive(Debug, PartialEq, Eq)]
struct Body<'a> {
    origin: &'a str,
    size: u64,
    root: Hash,
}

/// Parses the text of a checkpoint. Extension lines are allowed (and ignored) if non-empty.
fn parse_body(text: &str) -> Result<Body<'_>, CheckpointError> {
    let lines = text.strip_suffix('\n').ok_or(CheckpointError::Malformed("text must end in a newline"))?;
    let mut lines = lines.split('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(CheckpointError::Malformed("fewer than three lines"));
    };
    if origin.is_empty() {
        return Err(CheckpointError::Malformed("empty origin"));
    }
    if lines.any(str::is_empty) {
        return Err(CheckpointError::Malformed("empty extension line"));
    }
    Ok(Body {
        origin,
        size: parse_size(size)?,
        root: root.parse().map_err(|_| CheckpointError::Malformed("root is not base64 of 32 bytes"))?,
    })
}

/// ASCII decimal without leading zeroes (`0` only for the empty tree), so each size has one
/// spelling and a signature cannot be replayed under another.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let size = if canonical { s.parse().ok() } else { None };
    size.ok_or(CheckpointError::Malformed("tree size is not a canonical decimal number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golang_tlog_golden_body_parses() {
        // golang.org/x/mod sumdb/tlog note_test.go.
        let body = parse_body("go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n").unwrap();
        assert_eq!(body.origin, "go.sum database tree");
        assert_eq!(body.size, 123_456_789_012);
        assert_eq!(body.root.to_string(), "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=");
    }

    #[test]
    fn body_rules() {
        let root = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=";
        assert!(parse_body(&format!("o\n0\n{root}\n")).is_ok());
        assert!(parse_body(&format!("o\n5\n{root}\next\n")).is_ok());
        for bad in [
            format!("o\n5\n{root}"),
            "o\n5\n".to_owned(),
            format!("\n5\n{root}\n"),
            format!("o\n05\n{root}\n"),
            format!("o\n+5\n{root}\n"),
            format!("o\n-5\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n5\nAAAA\n".to_owned(),
            format!("o\n5\n{root}\n\n"),
            format!("o\n5\n{root}\next\n\n"),
        ] {
            assert!(matches!(parse_body(&bad), Err(CheckpointError::Malformed(_))), "{bad:?}");
        }
    }
}
