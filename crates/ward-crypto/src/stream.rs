//! Chunked encryption for attachments and backups: content of any size is sealed in 64 KiB
//! chunks, so it never sits whole in memory, and a truncated, reordered, dropped or spliced
//! chunk fails to open.
//!
//! Each stream has its own random 256-bit key (wrapped by the caller, for example under the
//! conversation's data key), so nonces can be a counter: chunk `i` uses the nonce
//! `0x00000000 ‖ i (u64, big-endian)`. The additional data of chunk `i` is
//! `"ward-stream-v1" ‖ 0x00 ‖ context ‖ i (u64, big-endian) ‖ last (one byte, 0 or 1)`, where
//! `context` names the stream (attachment id, backup id). This is the STREAM construction of
//! Hoang, Reyhanitabar, Rogaway and Vizár (2015), with the final flag in the additional data.
//!
//! On disk the sealed chunks follow each other without framing: every chunk but the last
//! holds exactly [`CHUNK_LEN`] plaintext bytes (so [`SEALED_CHUNK_LEN`] sealed bytes); the
//! last holds fewer, possibly none, and is flagged last.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::CryptoError;
use crate::aead::{KEY_LEN, TAG_LEN};

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Sealed bytes per full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

struct ChunkKey {
    key: LessSafeKey,
    aad_prefix: Vec<u8>,
}

impl ChunkKey {
    fn new(key: &[u8], context: &[u8]) -> Result<ChunkKey, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::Format("a stream key is 32 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Format("a stream key is 32 bytes"))?;
        let mut aad_prefix = b"ward-stream-v1\0".to_vec();
        aad_prefix.extend_from_slice(context);
        Ok(ChunkKey { key: LessSafeKey::new(unbound), aad_prefix })
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut a = Vec::with_capacity(self.aad_prefix.len() + 9);
        a.extend_from_slice(&self.aad_prefix);
        a.extend_from_slice(&index.to_be_bytes());
        a.push(u8::from(last));
        a
    }
}

/// Seals a stream chunk by chunk: feed bytes with [`Encryptor::update`], end with
/// [`Encryptor::finish`].
pub struct Encryptor {
    key: ChunkKey,
    index: u64,
    pending: Vec<u8>,
}

impl Encryptor {
    /// A stream under `key` (32 bytes), named by `context`.
    pub fn new(key: &[u8], context: &[u8]) -> Result<Encryptor, CryptoError> {
        Ok(Encryptor { key: ChunkKey::new(key, context)?, index: 0, pending: Vec::with_capacity(CHUNK_LEN) })
    }

    /// Seals `chunk` straight into `out`: the plaintext is copied once, encrypted in place
    /// there, and followed by its tag (no allocation per chunk).
    fn seal_into(&mut self, chunk: &[u8], last: bool, out: &mut Vec<u8>) {
        let aad = self.key.aad(self.index, last);
        let start = out.len();
        out.extend_from_slice(chunk);
        // Only inputs over GCM's 64 GiB limit fail; a chunk is 64 KiB.
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce(self.index), Aad::from(&aad), &mut out[start..])
            .expect("AES-GCM input within limits");
        out.extend_from_slice(tag.as_ref());
        self.index += 1;
    }

    /// Seals the pending full chunk (not the last) into `out`, keeping its buffer.
    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) {
        let mut chunk = std::mem::take(&mut self.pending);
        self.seal_into(&chunk, last, out);
        chunk.clear();
        self.pending = chunk;
    }

    /// Takes more plaintext; returns the sealed chunks it completed (possibly none).
    pub fn update(&mut self, mut data: &[u8]) -> Vec<u8> {
        let chunks = (self.pending.len() + data.len()) / CHUNK_LEN;
        let mut out = Vec::with_capacity(chunks * SEALED_CHUNK_LEN);
        while !data.is_empty() {
            // A full chunk is sealed only once more data proves it is not the last.
            if self.pending.is_empty() && data.len() > CHUNK_LEN {
                self.seal_into(&data[..CHUNK_LEN], false, &mut out);
                data = &data[CHUNK_LEN..];
                continue;
            }
            let take = (CHUNK_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK_LEN && !data.is_empty() {
                self.seal_pending(false, &mut out);
            }
        }
        out
    }

    /// Seals what is left as the last chunk.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pending.len() + 2 * TAG_LEN);
        if self.pending.len() == CHUNK_LEN {
            // A full final chunk is sealed as a normal one, then an empty last chunk ends
            // the stream, so a reader can tell "ends here" from "cut here".
            self.seal_pending(false, &mut out);
            self.seal_into(&[], true, &mut out);
        } else {
            self.seal_pending(true, &mut out);
        }
        out
    }
}

/// Opens a stream sealed by [`Encryptor`]: feed sealed bytes with [`Decryptor::update`], end
/// with [`Decryptor::finish`], which fails if the stream was cut short.
pub struct Decryptor {
    key: ChunkKey,
    index: u64,
    pending: Vec<u8>,
}

impl Decryptor {
    /// A reader for the stream under `key`, named by `context`.
    pub fn new(key: &[u8], context: &[u8]) -> Result<Decryptor, CryptoError> {
        Ok(Decryptor { key: ChunkKey::new(key, context)?, index: 0, pending: Vec::with_capacity(SEALED_CHUNK_LEN) })
    }

    fn open(&mut self, mut chunk: Vec<u8>, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let aad = self.key.aad(self.index, last);
        let n = self.key.key.open_in_place(nonce(self.index), Aad::from(&aad), &mut chunk).map_err(|_| CryptoError::Decrypt)?.len();
        chunk.truncate(n);
        self.index += 1;
        out.extend_from_slice(&chunk);
        Ok(())
    }

    /// Takes more sealed bytes; returns the plaintext of every chunk it could open. A full
    /// chunk is held back until more bytes show it is not the last.
    pub fn update(&mut self, mut data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let take = (SEALED_CHUNK_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == SEALED_CHUNK_LEN && !data.is_empty() {
                let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(SEALED_CHUNK_LEN));
                self.open(chunk, false, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Opens the last chunk. Fails if the stream was truncated: its last chunk must carry the
    /// final flag.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        let chunk = std::mem::take(&mut self.pending);
        if chunk.len() == SEALED_CHUNK_LEN {
            // A full chunk at the end is never last: the writer adds an empty last chunk.
            return Err(CryptoError::Decrypt);
        }
        self.open(chunk, true, &mut out)?;
        Ok(out)
    }
}

/// Seals a whole buffer (tests and small content).
pub fn seal_all(key: &[u8], context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut e = Encryptor::new(key, context)?;
    let mut out = e.update(plaintext);
    out.extend(e.finish());
    Ok(out)
}

/// Opens a whole sealed buffer.
pub fn open_all(key: &[u8], context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut d = Decryptor::new(key, context)?;
    let mut out = d.update(sealed)?;
    out.extend(d.finish()?);
    Ok(out)
}

/// Sealed size of `n` plaintext bytes.
pub fn sealed_len(n: u64) -> u64 {
    let chunks = n / CHUNK_LEN as u64 + 1;
    n + chunks * TAG_LEN as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [9u8; 32];

    #[test]
    fn sizes_around_chunk_boundaries_round_trip() {
        for n in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
            let plain: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let sealed = seal_all(&KEY, b"ctx", &plain).unwrap();
            assert_eq!(sealed.len() as u64, sealed_len(n as u64), "n={n}");
            assert_eq!(open_all(&KEY, b"ctx", &sealed).unwrap(), plain, "n={n}");
            assert!(open_all(&KEY, b"other", &sealed).is_err());
        }
    }

    #[test]
    fn dropping_or_swapping_chunks_is_detected() {
        let plain = vec![1u8; 3 * CHUNK_LEN + 5];
        let sealed = seal_all(&KEY, b"a", &plain).unwrap();
        // Cut at a chunk boundary: the remaining last chunk is not flagged last.
        assert!(open_all(&KEY, b"a", &sealed[..2 * SEALED_CHUNK_LEN]).is_err());
        // Drop the second chunk.
        let mut dropped = sealed[..SEALED_CHUNK_LEN].to_vec();
        dropped.extend_from_slice(&sealed[2 * SEALED_CHUNK_LEN..]);
        assert!(open_all(&KEY, b"a", &dropped).is_err());
        // Swap the first two chunks.
        let mut swapped = sealed[SEALED_CHUNK_LEN..2 * SEALED_CHUNK_LEN].to_vec();
        swapped.extend_from_slice(&sealed[..SEALED_CHUNK_LEN]);
        swapped.extend_from_slice(&sealed[2 * SEALED_CHUNK_LEN..]);
        assert!(open_all(&KEY, b"a", &swapped).is_err());
    }

    proptest! {
        #[test]
        fn any_split_of_the_input_gives_the_same_stream(len in 0usize..(2 * CHUNK_LEN + 100), cuts in proptest::collection::vec(0usize..(2 * CHUNK_LEN + 100), 0..4)) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            bounds.sort_unstable();
            let mut e = Encryptor::new(&KEY, b"p").unwrap();
            let mut sealed = Vec::new();
            let mut at = 0;
            for b in bounds { sealed.extend(e.update(&plain[at..b])); at = b; }
            sealed.extend(e.update(&plain[at..]));
            sealed.extend(e.finish());
            // Decrypt in odd-sized pieces too.
            let mut d = Decryptor::new(&KEY, b"p").unwrap();
            let mut back = Vec::new();
            for piece in sealed.chunks(1000) { back.extend(d.update(piece).unwrap()); }
            back.extend(d.finish().unwrap());
            prop_assert_eq!(back, plain);
        }

        #[test]
        fn truncation_anywhere_is_detected(len in 1usize..(2 * CHUNK_LEN + 100), cut in 1usize..(2 * CHUNK_LEN)) {
            let plain = vec![3u8; len];
            let sealed = seal_all(&KEY, b"t", &plain).unwrap();
            let keep = sealed.len().saturating_sub(cut);
            prop_assert!(open_all(&KEY, b"t", &sealed[..keep]).is_err());
        }
    }
}
