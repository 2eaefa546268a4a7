//! Offline verification of a whole audit log: the export format and the verifier.
//!
//! An export is NDJSON, one object per line, each with a `type`:
//!
//! - `{"type":"checkpoint","tree_size":N,"note":"…signed note…"}`: every stored checkpoint,
//!   first (so a file cut short loses events, never the checkpoints that reveal the cut).
//! - `{"type":"event","event":{…AuditLeaf…},"leaf_hash":"base64"|null}`: one per event, in
//!   index order. The `event` object is the event's canonical encoding, byte for byte.
//!   `leaf_hash` is the hash the server put into its tree when it integrated the event
//!   (`null` if it had not yet), so a row changed after integration shows as a mismatch at its
//!   exact index even where the row's own encoding is self-consistent.
//! - `{"type":"base","tree_size":A,"hashes":["base64",…]}`: only in the export of a log whose
//!   oldest entries were archived (`crate::segment`), after the checkpoints and before the
//!   events. The entries below `A` are gone; `hashes` are the roots of the perfect subtrees covering them (their compact
//!   range, [`crate::tree::root_plan`]`(A)`), so the tree can be continued from `A`. The base
//!   is not trusted on its own word: [`LogVerifier::finish`] fails unless the events after it
//!   reproduce the root of a signed checkpoint at a size of `A` or more.
//!
//! Each line must be exactly the text [`ExportLine::to_line`] writes for the record it holds
//! (no other spacing, key order, escaping or number spelling), so no byte of an export can
//! change without the verifier noticing, even where JSON would read the same values.
//!
//! [`LogVerifier`] takes every checkpoint first (checking its signature), then the events in
//! order. It recomputes each leaf hash from the event, compares it with the recorded one,
//! checks that indexes run 0, 1, 2, … without gaps, and at each checkpoint's size compares the
//! recomputed root with the signed one. This also establishes consistency between successive
//! checkpoints, more strongly than an RFC 9162 consistency proof would: both roots are
//! recomputed from one and the same sequence of leaves, so the older tree is a prefix of the
//! newer. (Consistency proofs are for a verifier holding only two checkpoints; the API serves
//! them.) A checkpoint larger than the log means the log was truncated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::event::{AuditLeaf, canonical_index};
use crate::hash::{Hash, leaf_hash};
use crate::note::Verifier;
use crate::tree::Frontier;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// An audit event with the leaf hash the server's tree holds for it.
    Event {
        /// The event.
        event: Box<AuditLeaf>,
        /// The integrated leaf hash, if the event was integrated.
        leaf_hash: Option<Hash>,
    },
    /// Where a pruned log starts: its first index and the compact range of the entries before.
    Base {
        /// The number of archived entries: the index of the first event that follows.
        tree_size: u64,
        /// The roots of the perfect subtrees covering the archived entries, largest first.
        hashes: Vec<Hash>,
    },
    /// A signed checkpoint.
    Checkpoint {
        /// The tree size it commits to.
        tree_size: u64,
        /// The signed note, verbatim.
        note: String,
    },
}

/// The start of every event line.
const EVENT_PREFIX: &[u8] = br#"{"type":"event","event":"#;
/// The start of every checkpoint line.
const CHECKPOINT_PREFIX: &[u8] = br#"{"type":"checkpoint","#;
/// The start of the base line of a pruned log.
const BASE_PREFIX: &[u8] = br#"{"type":"base","#;
/// What follows the event object of a line without a recorded leaf hash.
const NULL_LEAF_TAIL: &[u8] = br#","leaf_hash":null}"#;
/// What precedes the base64 leaf hash after the event object.
const LEAF_TAIL: &[u8] = br#","leaf_hash":""#;
/// Length of a base64 SHA-256 hash.
const B64_HASH_LEN: usize = 44;

impl ExportLine {
    /// The line as an export holds it, without the final newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_line(&mut out);
        out
    }

    /// Appends the line (without the final newline) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        match self {
            ExportLine::Event { event, leaf_hash } => {
                out.extend_from_slice(EVENT_PREFIX);
                out.extend_from_slice(&event.canonical_bytes());
                match leaf_hash {
                    Some(h) => {
                        out.extend_from_slice(LEAF_TAIL);
                        out.extend_from_slice(h.to_string().as_bytes());
                        out.extend_from_slice(b"\"}");
                    }
                    None => out.extend_from_slice(NULL_LEAF_TAIL),
                }
            }
            // Checkpoint and base lines have no hot path: serde's text is the form.
            ExportLine::Checkpoint { .. } | ExportLine::Base { .. } => {
                serde_json::to_writer(&mut *out, self).expect("a checkpoint line serialises");
            }
        }
    }

    /// Parses one export line (without its newline), refusing any text other than exactly
    /// what [`ExportLine::to_line`] writes for the record.
    pub fn parse_line(line: &[u8]) -> Result<ExportLine, LineError> {
        match kind(line) {
            LineKind::Event => {
                let (event, _, leaf_hash) = parse_event(line)?;
                Ok(ExportLine::Event { event: Box::new(event), leaf_hash })
            }
            LineKind::Checkpoint | LineKind::Base => parse_record(line),
            LineKind::Unknown => Err(LineError::UnknownType),
        }
    }
}

/// Why a line is not an export record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is neither an event nor a checkpoint line.
    #[error("not an export record")]
    UnknownType,
    /// The line does not parse as the record its type names.
    #[error("not a valid export record: {0}")]
    Syntax(String),
    /// The line parses, but is not written exactly as Ward writes that record.
    #[error("not in the canonical form of the record it holds")]
    NotCanonical,
}

enum LineKind {
    Event,
    Checkpoint,
    Base,
    Unknown,
}

fn kind(line: &[u8]) -> LineKind {
    if line.starts_with(EVENT_PREFIX) {
        LineKind::Event
    } else if line.starts_with(CHECKPOINT_PREFIX) {
        LineKind::Checkpoint
    } else if line.starts_with(BASE_PREFIX) {
        LineKind::Base
    } else {
        LineKind::Unknown
    }
}

/// An event line's index, leaf hash and recorded leaf hash, or why it is not one.
type HashedLine = Result<(u64, Hash, Option<Hash>), LineError>;

/// What [`LogVerifier::push_line`] needs of a line; `None` for a checkpoint or base line.
fn hash_line(line: &[u8]) -> Option<HashedLine> {
    match kind(line) {
        LineKind::Checkpoint | LineKind::Base => None,
        LineKind::Unknown => Some(Err(LineError::UnknownType)),
        LineKind::Event => Some(hash_event(line)),
    }
}

/// Whether a line of no known type holds a key only checkpoint lines have, so it is (part of)
/// a damaged checkpoint line. Inside JSON strings every `"` is escaped, so these byte sequences
/// can only be keys, and no event line has them; one changed byte cannot remove both (a
/// newline splitting the line leaves both in one part or one in each).
fn looks_like_checkpoint(line: &[u8]) -> bool {
    let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    has(br#""tree_size":"#) || has(br#""note":""#)
}

/// The event object and the recorded leaf hash of an event line.
fn split_event(line: &[u8]) -> Result<(&[u8], Option<Hash>), LineError> {
    let rest = &line[EVENT_PREFIX.len()..];
    if let Some(object) = rest.strip_suffix(NULL_LEAF_TAIL) {
        return Ok((object, None));
    }
    let body = rest.strip_suffix(b"\"}").ok_or(LineError::NotCanonical)?;
    let split = body.len().checked_sub(B64_HASH_LEN).ok_or(LineError::NotCanonical)?;
    let (object, hash) = body.split_at(split);
    let object = object.strip_suffix(LEAF_TAIL).ok_or(LineError::NotCanonical)?;
    let hash = Hash::from_base64(hash).map_err(|_| LineError::NotCanonical)?;
    Ok((object, Some(hash)))
}

/// The event, its leaf hash and the recorded leaf hash of an event line.
fn parse_event(line: &[u8]) -> Result<(AuditLeaf, Hash, Option<Hash>), LineError> {
    let (object, recorded) = split_event(line)?;
    let event: AuditLeaf = serde_json::from_slice(object).map_err(|e| LineError::Syntax(e.to_string()))?;
    let canonical = event.canonical_bytes();
    if canonical != object {
        return Err(LineError::NotCanonical);
    }
    Ok((event, leaf_hash(&canonical), recorded))
}

/// The verifier's hot path: what [`parse_event`] gives, without building the event. The
/// object is checked to be canonical in place and hashed as it stands.
fn hash_event(line: &[u8]) -> HashedLine {
    let (object, recorded) = split_event(line)?;
    let idx = canonical_index(object).ok_or(LineError::NotCanonical)?;
    Ok((idx, leaf_hash(object), recorded))
}

/// A checkpoint or base line, exactly as written.
fn parse_record(line: &[u8]) -> Result<ExportLine, LineError> {
    let parsed: ExportLine = serde_json::from_slice(line).map_err(|e| LineError::Syntax(e.to_string()))?;
    if matches!(parsed, ExportLine::Event { .. }) || parsed.to_line() != line {
        return Err(LineError::NotCanonical);
    }
    Ok(parsed)
}

/// Why verification failed: the first problem found, with the index it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A line of an export is not a record of a known type.
    #[error("export line {line}: {reason}")]
    Malformed {
        /// The 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: LineError,
    },
    /// An event line is damaged: it does not parse or is not in canonical form.
    #[error("entry {index} (export line {line}): {reason}")]
    MalformedEntry {
        /// The index the line stands at.
        index: u64,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: LineError,
    },
    /// A checkpoint's signature or format was refused: forged or damaged.
    #[error("checkpoint at tree size {size} does not verify: {reason}")]
    BadCheckpoint {
        /// The size it claims.
        size: u64,
        /// What was wrong.
        reason: String,
    },
    /// Two checkpoints claim the same size with different roots.
    #[error("two different checkpoints for tree size {size}")]
    ForkedCheckpoints {
        /// The size.
        size: u64,
    },
    /// Events are missing, duplicated, inserted or out of order.
    #[error("entry {index}: expected index {index}, found index {found}")]
    Sequence {
        /// The first index that is wrong.
        index: u64,
        /// The index found there.
        found: u64,
    },
    /// The event does not hash to the leaf the log integrated.
    #[error("entry {index}: the event does not match the leaf hash recorded in the tree")]
    LeafMismatch {
        /// The index.
        index: u64,
    },
    /// The recomputed root differs from a signed checkpoint's: an entry in the range was
    /// changed, inserted or removed (with its recorded leaf hash forged to match).
    #[error("entries {from}..{to}: the recomputed root at tree size {to} differs from the signed checkpoint")]
    RootMismatch {
        /// The size of the last checkpoint that matched (the first suspect index).
        from: u64,
        /// The checkpoint size that did not match.
        to: u64,
    },
    /// The base of a pruned log is malformed, or came after events.
    #[error("the log's base at tree size {size} is unusable: {reason}")]
    BadBase {
        /// The size it claims.
        size: u64,
        /// What was wrong.
        reason: String,
    },
    /// No signed checkpoint at or after the base of a pruned log matched, so nothing vouches
    /// for the base's hashes.
    #[error("entry {size}: no signed checkpoint at or after the archived base of {size} entries confirms it")]
    UnconfirmedBase {
        /// The base size.
        size: u64,
    },
    /// A checkpoint covers more entries than the log holds: the log was truncated.
    #[error("entry {index}: the log ends at {index} entries but a checkpoint covers {size}")]
    Truncated {
        /// The number of entries present (the first missing index).
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

impl VerifyError {
    /// The first index this failure implicates, if it is about entries.
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            VerifyError::Sequence { index, .. }
            | VerifyError::LeafMismatch { index }
            | VerifyError::Truncated { index, .. }
            | VerifyError::MalformedEntry { index, .. } => Some(*index),
            VerifyError::RootMismatch { from, .. } => Some(*from),
            VerifyError::UnconfirmedBase { size } => Some(*size),
            _ => None,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The root over every entry.
    pub root: Hash,
    /// Entries not yet covered by any checkpoint (verified for sequence and leaf hash only).
    pub uncovered: u64,
    /// Entries archived before the log's base (counted in `entries`; their events are not in
    /// the log, their hashes are proven through the base).
    pub archived: u64,
}

/// Verifies a whole export held in memory (two passes: checkpoints, then events).
pub fn verify_export(text: &[u8], verifier: Verifier) -> Result<Summary, VerifyError> {
    let mut v = LogVerifier::new(verifier);
    let all: Vec<&[u8]> = lines(text).collect();
    for (n, line) in (1..).zip(&all) {
        v.add_checkpoint_line(line, n)?;
    }
    v.push_lines(&all, 1)?;
    v.finish()
}

/// Lines a streaming reader hands to [`LogVerifier::push_lines`] at a time: enough to keep every core busy,
/// little enough memory (about 30 MB of export text).
pub const BLOCK_LINES: usize = 65_536;

/// The lines of an export, without their newlines; a final newline ends the last line
/// rather than starting an empty one.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut rest = (!text.is_empty()).then_some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(end) => {
                rest = Some(&current[end + 1..]);
                Some(&current[..end])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Streams a log through verification; see the module documentation.
#[derive(Debug)]
pub struct LogVerifier {
    verifier: Verifier,
    checkpoints: BTreeMap<u64, Checkpoint>,
    frontier: Frontier,
    /// The size of the last checkpoint that matched.
    last_good: u64,
    /// The size the log starts at (0 unless pruned).
    base: u64,
    /// Whether events were pushed (or a base checked): after that, no base can be set.
    started: bool,
    /// Whether a checkpoint at or after the base matched.
    base_confirmed: bool,
}

impl LogVerifier {
    /// A verifier for the log whose checkpoints `verifier` signs (its name is the origin).
    pub fn new(verifier: Verifier) -> Self {
        LogVerifier {
            verifier,
            checkpoints: BTreeMap::new(),
            frontier: Frontier::new(),
            last_good: 0,
            base: 0,
            started: false,
            base_confirmed: false,
        }
    }

    /// Starts a pruned log at `size` entries, from the compact range of the archived ones
    /// ([`ExportLine::Base`]). Must come before the first event; checkpoints may come before or
    /// after. The base only counts once a signed checkpoint at or after it matches.
    pub fn start_at(&mut self, size: u64, hashes: Vec<Hash>) -> Result<(), VerifyError> {
        if self.started || self.frontier.size() != 0 {
            return Err(VerifyError::BadBase { size, reason: "it must come before every event, once".into() });
        }
        self.frontier = Frontier::restore(size, hashes).map_err(|e| VerifyError::BadBase { size, reason: e.to_string() })?;
        self.base = size;
        self.last_good = size;
        Ok(())
    }

    /// Adds a checkpoint after checking its signature, origin and claimed size.
    pub fn add_checkpoint(&mut self, tree_size: u64, note: &str) -> Result<(), VerifyError> {
        let origin = self.verifier.name().to_owned();
        let cp = Checkpoint::parse(note.as_bytes(), &origin, &self.verifier)
            .map_err(|e| VerifyError::BadCheckpoint { size: tree_size, reason: e.to_string() })?;
        if cp.size() != tree_size {
            return Err(VerifyError::BadCheckpoint { size: tree_size, reason: format!("the note says size {}", cp.size()) });
        }
        if let Some(existing) = self.checkpoints.get(&tree_size)
            && existing.root() != cp.root()
        {
            return Err(VerifyError::ForkedCheckpoints { size: tree_size });
        }
        self.checkpoints.insert(tree_size, cp);
        Ok(())
    }

    /// Takes the checkpoint or the base of an export line (1-based number `number`), if it is
    /// one; event lines are left for [`LogVerifier::push_line`]. Call it for every line before
    /// pushing any: a line of no known type that holds a checkpoint's (or base's) keys is
    /// refused here, so a damaged checkpoint is never blamed on an entry.
    pub fn add_checkpoint_line(&mut self, line: &[u8], number: u64) -> Result<(), VerifyError> {
        match kind(line) {
            LineKind::Event => Ok(()),
            LineKind::Unknown if !looks_like_checkpoint(line) => Ok(()),
            LineKind::Unknown => Err(VerifyError::Malformed { line: number, reason: LineError::UnknownType }),
            LineKind::Checkpoint | LineKind::Base => match parse_record(line) {
                Ok(ExportLine::Checkpoint { tree_size, note }) => self.add_checkpoint(tree_size, &note),
                Ok(ExportLine::Base { tree_size, hashes }) => self.start_at(tree_size, hashes),
                Ok(ExportLine::Event { .. }) => unreachable!("parse_record never returns events"),
                Err(reason) => Err(VerifyError::Malformed { line: number, reason }),
            },
        }
    }

    /// Checks the event of an export line (1-based number `number`); checkpoint lines were
    /// taken by [`LogVerifier::add_checkpoint_line`] and are skipped. Any other line stands
    /// where the next entry should, so a failure names that entry's index.
    pub fn push_line(&mut self, line: &[u8], number: u64) -> Result<(), VerifyError> {
        match hash_line(line) {
            None => Ok(()),
            Some(Err(reason)) => Err(VerifyError::MalformedEntry { index: self.size(), line: number, reason }),
            Some(Ok((idx, leaf, recorded))) => self.push_hashed(idx, leaf, recorded),
        }
    }

    /// Checks a block of consecutive export lines, `first` being the 1-based number of the
    /// first, as [`LogVerifier::push_line`] does line by line. Parsing, the canonical form check
    /// and leaf hashing (nearly all the work) run on every core, in chunks; meanwhile this
    /// thread feeds the finished chunks to the tree in order, so the outcome (and the first
    /// error) is the same as line by line, and the tree's share of the work overlaps the rest.
    pub fn push_lines(&mut self, lines: &[&[u8]], first: u64) -> Result<(), VerifyError> {
        /// Lines a worker takes at a time.
        const CHUNK: usize = 2048;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if cores == 1 || lines.len() < 2 * CHUNK {
            return (first..).zip(lines).try_for_each(|(number, line)| self.push_line(line, number));
        }
        let chunks: Vec<&[&[u8]]> = lines.chunks(CHUNK).collect();
        let claimed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            // Bounded, so workers cannot run far ahead of the tree (each holds one chunk).
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Option<HashedLine>>)>(2 * cores);
            for _ in 0..cores {
                let (done_tx, claimed, chunks) = (done_tx.clone(), &claimed, &chunks);
                scope.spawn(move || {
                    loop {
                        let k = claimed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(k) else { break };
                        // The receiver is gone once an error was found: stop.
                        if done_tx.send((k, chunk.iter().map(|l| hash_line(l)).collect())).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut early = BTreeMap::new();
            for k in 0..chunks.len() {
                let hashed = loop {
                    if let Some(h) = early.remove(&k) {
                        break h;
                    }
                    // Only a panicking worker closes the channel early; the scope re-raises it.
                    let Ok((at, h)) = done_rx.recv() else { return Ok(()) };
                    early.insert(at, h);
                };
                for (number, h) in ((first + (k * CHUNK) as u64)..).zip(hashed) {
                    match h {
                        None => {}
                        Some(Err(reason)) => return Err(VerifyError::MalformedEntry { index: self.size(), line: number, reason }),
                        Some(Ok((idx, leaf, recorded))) => self.push_hashed(idx, leaf, recorded)?,
                    }
                }
            }
            Ok(())
        })
    }

    /// The number of events checked so far: the index the next one must have.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Checks the next event (its index, its leaf hash, and any checkpoint it completes).
    pub fn push(&mut self, event: &AuditLeaf, recorded: Option<Hash>) -> Result<(), VerifyError> {
        self.push_hashed(event.idx, event.leaf_hash(), recorded)
    }

    /// Checks the next event given its index and the leaf hash of its canonical encoding.
    pub fn push_hashed(&mut self, idx: u64, leaf: Hash, recorded: Option<Hash>) -> Result<(), VerifyError> {
        let index = self.frontier.size();
        if !self.started {
            // A checkpoint of the empty tree, or at exactly the base.
            self.started = true;
            self.at_size()?;
        }
        if idx != index {
            return Err(VerifyError::Sequence { index, found: idx });
        }
        if recorded.is_some_and(|r| r != leaf) {
            return Err(VerifyError::LeafMismatch { index });
        }
        self.frontier.push(leaf);
        self.at_size()
    }

    /// Checks a checkpoint at the current size, if there is one (also the empty tree's).
    fn at_size(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        let Some(cp) = self.checkpoints.get(&size) else { return Ok(()) };
        if *cp.root() != self.frontier.root() {
            return Err(VerifyError::RootMismatch { from: self.last_good, to: size });
        }
        self.last_good = size;
        self.base_confirmed = true;
        Ok(())
    }

    /// Ends verification: every checkpoint must have been reached.
    pub fn finish(mut self) -> Result<Summary, VerifyError> {
        if !self.started {
            self.at_size()?;
        }
        let entries = self.frontier.size();
        if let Some((&size, _)) = self.checkpoints.range(entries + 1..).next() {
            return Err(VerifyError::Truncated { index: entries, size });
        }
        if self.base > 0 && !self.base_confirmed {
            return Err(VerifyError::UnconfirmedBase { size: self.base });
        }
        let covered = self.checkpoints.keys().next_back().copied().unwrap_or(0).min(entries);
        Ok(Summary {
            entries,
            checkpoints: self.checkpoints.len() as u64,
            root: self.frontier.root(),
            uncovered: entries - covered,
            archived: self.base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Signer;
    use crate::tree::root;

    fn leaf(idx: u64) -> AuditLeaf {
        AuditLeaf {
            idx,
            occurred_at: 1_767_225_600_000 + idx as i64,
            org_id: Some(uuid::Uuid::from_u128(1)),
            actor_user_id: Some(uuid::Uuid::from_u128(100 + u128::from(idx % 3))),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: "success".into(),
            target_type: Some("conversation".into()),
            target_id: Some(format!("c{}", idx % 5)),
            patient_id: None,
            source_ip: Some("10.0.0.1".into()),
            request_id: None,
            detail: "{}".into(),
        }
    }

    /// A log of 20 events with checkpoints at 0, 5, 13 and 20.
    type Events = Vec<(AuditLeaf, Option<Hash>)>;

    fn log(signer: &Signer) -> (Events, Vec<(u64, String)>) {
        let events: Vec<_> = (0..20).map(|i| (leaf(i), Some(leaf(i).leaf_hash()))).collect();
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let cps = [0u64, 5, 13, 20]
            .iter()
            .map(|&n| (n, Checkpoint::sign(signer.name(), n, root(&hashes[..n as usize]), signer).unwrap().note().to_owned()))
            .collect();
        (events, cps)
    }

    fn run(v: &Verifier, events: &[(AuditLeaf, Option<Hash>)], cps: &[(u64, String)]) -> Result<Summary, VerifyError> {
        let mut lv = LogVerifier::new(v.clone());
        for (n, note) in cps {
            lv.add_checkpoint(*n, note)?;
        }
        for (e, h) in events {
            lv.push(e, *h)?;
        }
        lv.finish()
    }

    #[test]
    fn an_intact_log_verifies_and_every_tampering_is_found_at_its_index() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, cps) = log(&signer);
        let ok = run(&v, &events, &cps).unwrap();
        assert_eq!((ok.entries, ok.checkpoints, ok.uncovered), (20, 4, 0));

        // Modified, leaf hash left as integrated: exact index.
        let mut e = events.clone();
        e[7].0.outcome = "denied".into();
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::LeafMismatch { index: 7 }));
        // Modified with its leaf hash forged (or not recorded): the checkpoint range.
        e[7].1 = Some(e[7].0.leaf_hash());
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::RootMismatch { from: 5, to: 13 }));
        e[7].1 = None;
        assert_eq!(run(&v, &e, &cps).unwrap_err().first_bad_index(), Some(5));
        // Deleted.
        let mut e = events.clone();
        e.remove(9);
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 9, found: 10 }));
        // Inserted (a copy with the next index: the indexes no longer run).
        let mut e = events.clone();
        e.insert(4, events[3].clone());
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 4, found: 3 }));
        // Inserted and renumbered, leaf hashes recomputed: the root no longer matches.
        let mut e: Vec<_> = events.clone();
        let mut extra = leaf(4);
        extra.outcome = "failure".into();
        e.insert(4, (extra, None));
        for (i, (ev, h)) in e.iter_mut().enumerate() {
            ev.idx = i as u64;
            *h = Some(ev.leaf_hash());
        }
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::RootMismatch { from: 0, to: 5 }));
        // Reordered.
        let mut e = events.clone();
        e.swap(15, 16);
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 15, found: 16 }));
        // Truncated.
        let e = &events[..17];
        assert_eq!(run(&v, e, &cps), Err(VerifyError::Truncated { index: 17, size: 20 }));
        // Entries beyond the last checkpoint are reported as uncovered, not as errors.
        assert_eq!(run(&v, &events, &cps[..3]).unwrap().uncovered, 7);
    }

    #[test]
    fn forged_checkpoints_are_refused() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, mut cps) = log(&signer);
        // Another key under the same name.
        let forger = Signer::from_seed("audit.example/log", &[8; 32]).unwrap();
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let forged = Checkpoint::sign("audit.example/log", 13, root(&hashes[..13]), &forger).unwrap().note().to_owned();
        let mut c = cps.clone();
        c[2].1 = forged;
        assert!(matches!(run(&v, &events, &c), Err(VerifyError::BadCheckpoint { size: 13, .. })));
        // An edited root in a genuine note.
        let mut c = cps.clone();
        c[2].1 = c[2].1.replacen("\n", "\nX", 2).replacen("\nX", "\n", 1);
        assert!(matches!(run(&v, &events, &c), Err(VerifyError::BadCheckpoint { .. })));
        // A genuine note filed under another size.
        cps[2].0 = 14;
        assert!(matches!(run(&v, &events, &cps), Err(VerifyError::BadCheckpoint { size: 14, .. })));
    }

    #[test]
    fn a_pruned_log_verifies_from_its_base_only_when_a_checkpoint_confirms_it() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, cps) = log(&signer);
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let tree = crate::tree::MemoryTree::from_leaf_hashes(hashes.iter().copied());
        let base = |a: u64| tree.nodes(crate::tree::root_plan(a).nodes()).unwrap();
        let run_from = |a: u64, base: Vec<Hash>, cps: &[(u64, String)]| {
            let mut lv = LogVerifier::new(v.clone());
            for (n, note) in cps {
                lv.add_checkpoint(*n, note)?;
            }
            lv.start_at(a, base)?;
            for (e, h) in &events[a as usize..] {
                lv.push(e, *h)?;
            }
            lv.finish()
        };
        for a in [1, 5, 9, 13, 19] {
            let ok = run_from(a, base(a), &cps).unwrap();
            assert_eq!((ok.entries, ok.archived, ok.uncovered), (20, a, 0));
        }
        // A forged base (another hash) no longer reproduces the signed roots.
        let mut forged = base(9);
        forged[0] = hashes[0];
        assert_eq!(run_from(9, forged, &cps), Err(VerifyError::RootMismatch { from: 9, to: 13 }));
        // A base with the wrong number of hashes is refused outright.
        assert!(matches!(run_from(9, vec![], &cps), Err(VerifyError::BadBase { size: 9, .. })));
        // Without a checkpoint at or after the base, nothing vouches for it.
        assert_eq!(run_from(14, base(14), &cps[..3]), Err(VerifyError::UnconfirmedBase { size: 14 }));
        // A base after events is refused.
        let mut lv = LogVerifier::new(v.clone());
        lv.push(&events[0].0, None).unwrap();
        assert!(matches!(lv.start_at(1, base(1)), Err(VerifyError::BadBase { .. })));
    }

    #[test]
    fn export_lines_round_trip() {
        for leaf_hash in [Some(leaf(3).leaf_hash()), None] {
            let line = ExportLine::Event { event: Box::new(leaf(3)), leaf_hash };
            let text = line.to_line();
            assert_eq!(text, serde_json::to_vec(&line).unwrap(), "to_line is serde's text");
            let s = String::from_utf8(text.clone()).unwrap();
            assert!(s.starts_with(r#"{"type":"event","event":{"action":"message.read","#), "{s}");
            assert!(s.contains(&String::from_utf8(leaf(3).canonical_bytes()).unwrap()), "the event object is the canonical encoding");
            assert_eq!(serde_json::from_slice::<ExportLine>(&text).unwrap(), line);
            assert_eq!(ExportLine::parse_line(&text), Ok(line));
        }
        let base = ExportLine::Base { tree_size: 3, hashes: vec![leaf(0).leaf_hash(), leaf(1).leaf_hash()] };
        let text = String::from_utf8(base.to_line()).unwrap();
        assert!(text.starts_with(r#"{"type":"base","tree_size":3,"hashes":[""#), "{text}");
        assert_eq!(ExportLine::parse_line(text.as_bytes()), Ok(base));
        let cp = ExportLine::Checkpoint { tree_size: 5, note: "n\n".into() };
        assert_eq!(cp.to_line(), br#"{"type":"checkpoint","tree_size":5,"note":"n\n"}"#);
        assert_eq!(ExportLine::parse_line(&cp.to_line()), Ok(cp));
    }

    #[test]
    fn lines_must_be_exactly_canonical() {
        let line = ExportLine::Event { event: Box::new(leaf(3)), leaf_hash: Some(leaf(3).leaf_hash()) }.to_line();
        let s = String::from_utf8(line).unwrap();
        // Each of these reads as the same record to a lenient JSON parser.
        for variant in [
            s.replacen(r#""action":"message.read""#, r#""action": "message.read""#, 1),
            s.replacen(r#""source_ip":"10.0.0.1""#, r#""source_ip":"10.0.0\u002e1""#, 1),
            s.replacen(r#""patient_id":null,"#, "", 1),
            s.replacen(r#""action":"message.read","#, r#""action":"message.read","extra":1,"#, 1),
            s.replacen(
                r#"{"type":"event","event":{"action":"message.read","actor_device_id":null"#,
                r#"{"type":"event","event":{"actor_device_id":null,"action":"message.read""#,
                1,
            ),
            s.replacen(r#""idx":3"#, r#""idx":3.0"#, 1),
            format!("{s} "),
        ] {
            assert_ne!(variant, s);
            assert!(ExportLine::parse_line(variant.as_bytes()).is_err(), "{variant}");
        }
        assert_eq!(ExportLine::parse_line(b"{}"), Err(LineError::UnknownType));
        let cp = br#"{"type":"checkpoint", "tree_size":5,"note":"n\n"}"#;
        assert_eq!(ExportLine::parse_line(cp), Err(LineError::NotCanonical));
    }

    /// The parallel block path gives the same outcome as the line-by-line one, errors included.
    #[test]
    fn blocks_and_single_lines_agree() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let events: Vec<AuditLeaf> = (0..10_000).map(leaf).collect();
        let hashes: Vec<Hash> = events.iter().map(AuditLeaf::leaf_hash).collect();
        let cp = Checkpoint::sign(signer.name(), 10_000, root(&hashes), &signer).unwrap();
        let mut lines = vec![ExportLine::Checkpoint { tree_size: 10_000, note: cp.note().to_owned() }.to_line()];
        lines.extend(
            events.iter().zip(&hashes).map(|(e, h)| ExportLine::Event { event: Box::new(e.clone()), leaf_hash: Some(*h) }.to_line()),
        );
        let run_lines = |lines: &[Vec<u8>]| {
            let mut v = LogVerifier::new(signer.verifier());
            for (n, l) in (1..).zip(lines) {
                v.add_checkpoint_line(l, n)?;
            }
            for (n, l) in (1..).zip(lines) {
                v.push_line(l, n)?;
            }
            v.finish()
        };
        let run_block = |lines: &[Vec<u8>]| {
            let mut v = LogVerifier::new(signer.verifier());
            for (n, l) in (1..).zip(lines) {
                v.add_checkpoint_line(l, n)?;
            }
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            v.push_lines(&refs, 1)?;
            v.finish()
        };
        assert_eq!(run_block(&lines), run_lines(&lines));
        assert_eq!(run_block(&lines).unwrap().entries, 10_000);
        let mut damaged = lines.clone();
        damaged[7_001][40] ^= 1;
        damaged[9_000].push(b' ');
        assert_eq!(run_block(&damaged), run_lines(&damaged));
        assert_eq!(run_block(&damaged).unwrap_err().first_bad_index(), Some(7_000));
        let mut swapped = lines.clone();
        swapped.swap(5_000, 5_001);
        assert_eq!(run_block(&swapped), Err(VerifyError::Sequence { index: 4_999, found: 5_000 }));
    }

    #[test]
    fn verify_export_reads_lines_and_names_the_damaged_entry() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let (events, cps) = log(&signer);
        let mut text = Vec::new();
        for (n, note) in &cps {
            text.extend(ExportLine::Checkpoint { tree_size: *n, note: note.clone() }.to_line());
            text.push(b'\n');
        }
        let at = text.len();
        for (e, h) in &events {
            text.extend(ExportLine::Event { event: Box::new(e.clone()), leaf_hash: *h }.to_line());
            text.push(b'\n');
        }
        let ok = verify_export(&text, signer.verifier()).unwrap();
        assert_eq!((ok.entries, ok.checkpoints), (20, 4));
        // A space after the first event's first comma, in its type prefix or inside the event:
        // entry 0, the line after the checkpoints.
        let comma = at + text[at..].iter().position(|&b| b == b',').unwrap();
        let mut damaged = text.clone();
        damaged.insert(comma + 1, b' ');
        let err = verify_export(&damaged, signer.verifier()).unwrap_err();
        assert_eq!(err, VerifyError::MalformedEntry { index: 0, line: 5, reason: LineError::UnknownType });
        let comma = at + EVENT_PREFIX.len() + text[at + EVENT_PREFIX.len()..].iter().position(|&b| b == b',').unwrap();
        text.insert(comma + 1, b' ');
        let err = verify_export(&text, signer.verifier()).unwrap_err();
        assert_eq!(err, VerifyError::MalformedEntry { index: 0, line: 5, reason: LineError::NotCanonical });
        text.truncate(at);
        text.extend(b"garbage\n");
        let err = verify_export(&text, signer.verifier()).unwrap_err();
        assert_eq!(err, VerifyError::MalformedEntry { index: 0, line: 5, reason: LineError::UnknownType });
        // A damaged checkpoint line is not blamed on an entry.
        let mut text = ExportLine::Checkpoint { tree_size: 0, note: cps[0].1.clone() }.to_line();
        text[3] = b'T';
        let err = verify_export(&text, signer.verifier()).unwrap_err();
        assert_eq!(err, VerifyError::Malformed { line: 1, reason: LineError::UnknownType });
    }
}
