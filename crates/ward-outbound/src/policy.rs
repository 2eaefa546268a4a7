//! The content policy: one automaton over every term plus the patterns, built once.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use aho_corasick::{AhoCorasick, Anchored, Input, Match, MatchKind};

use crate::category::Category;
use crate::lexicon::{self, LexiconTerm};
use crate::patterns::{PatternHit, Patterns};

/// The longest term an organisation may add, in bytes.
pub const MAX_TERM_LEN: usize = 100;

/// Checks outgoing text for clinical detail. Built once from the embedded vocabularies
/// (and an organisation's own terms); cloning is cheap, as the automaton sits behind an
/// [`Arc`].
#[derive(Clone)]
pub struct ContentPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    automaton: AhoCorasick,
    /// Per pattern id: what a whole-word match of it means.
    entries: Vec<Entry>,
    patterns: Patterns,
}

struct Entry {
    /// `None` for an organisation's allowed term: its matches shield what they cover.
    category: Option<Category>,
    /// For terms that match only in the case written ("AIDS", not "hearing aids").
    exact_case: Option<Box<str>>,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// No clinical detail found.
    Allowed,
    /// Clinical detail found; the findings are in text order and do not overlap.
    Blocked(Vec<Finding>),
}

impl Verdict {
    /// Whether the text may be sent.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The findings (empty when allowed).
    pub fn findings(&self) -> &[Finding] {
        match self {
            Verdict::Allowed => &[],
            Verdict::Blocked(findings) => findings,
        }
    }
}

/// One piece of clinical detail in the checked text.
///
/// Its `Display` shows the matched text ("matched `sertraline` [medication]"): that is for
/// the person who wrote the message, never for logs. Log [`Category::as_str`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of clinical detail it is.
    pub category: Category,
    /// Byte offsets into the checked text; always on `char` boundaries.
    pub span: Range<usize>,
    /// The matched text as written.
    pub term: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "matched `{}` [{}]", self.term, self.category)
    }
}

/// An organisation term that cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The term is empty or only whitespace.
    #[error("a policy term is empty")]
    EmptyTerm,
    /// The term is longer than [`MAX_TERM_LEN`] bytes.
    #[error("a policy term is longer than {MAX_TERM_LEN} bytes")]
    TermTooLong,
    /// The term has no letter or digit, so it could never be a whole word.
    #[error("a policy term has no letter or digit")]
    TermWithoutWord,
    /// The automaton could not be built (more patterns than it supports).
    #[error("the content policy automaton could not be built")]
    Automaton,
}

/// Adds an organisation's own terms to the embedded vocabularies.
#[derive(Debug, Default, Clone)]
pub struct ContentPolicyBuilder {
    allowed: Vec<String>,
    blocked: Vec<(String, Category)>,
}

impl ContentPolicyBuilder {
    /// Blocks `term` as `category` (use [`Category::OrganisationTerm`] when no other fits).
    pub fn block_term(mut self, term: &str, category: Category) -> Result<Self, PolicyError> {
        self.blocked.push((validate_term(term)?, category));
        Ok(self)
    }

    /// Allows `term`: it is taken out of the vocabularies, and where it occurs in a text it
    /// shields what it covers ("Mercy Cancer Center" as a location, "flu shot" where an
    /// organisation treats that as harmless).
    pub fn allow_term(mut self, term: &str) -> Result<Self, PolicyError> {
        self.allowed.push(validate_term(term)?);
        Ok(self)
    }

    /// Builds the automaton and patterns (tens of milliseconds: do it once and share).
    pub fn build(self) -> Result<ContentPolicy, PolicyError> {
        let allowed = self.allowed.iter().map(|t| (t.as_str(), None, false));
        let blocked = self.blocked.iter().map(|(t, c)| (t.as_str(), Some(*c), false));
        let embedded = lexicon::embedded_terms().map(|LexiconTerm { term, category, exact_case }| (term, Some(category), exact_case));

        let mut seen = HashSet::new();
        let mut terms = Vec::new();
        let mut entries = Vec::new();
        for (term, category, exact_case) in allowed.chain(blocked).chain(embedded) {
            // First one wins: allowed beats blocked beats the embedded lists' priority order.
            if seen.insert(term.to_ascii_lowercase()) {
                terms.push(term);
                let exact_case = exact_case.then(|| term.into());
                entries.push(Entry { category, exact_case });
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&terms)
            .map_err(|_| PolicyError::Automaton)?;
        let patterns = Patterns::new(lexicon::embedded_codes());
        Ok(ContentPolicy { inner: Arc::new(Inner { automaton, entries, patterns }) })
    }
}

fn validate_term(term: &str) -> Result<String, PolicyError> {
    let term = term.trim();
    if term.is_empty() {
        return Err(PolicyError::EmptyTerm);
    }
    if term.len() > MAX_TERM_LEN {
        return Err(PolicyError::TermTooLong);
    }
    if !term.chars().any(char::is_alphanumeric) {
        return Err(PolicyError::TermWithoutWord);
    }
    Ok(term.to_owned())
}

static STANDARD: LazyLock<ContentPolicy> = LazyLock::new(|| {
    // The embedded data is fixed and covered by tests, so this cannot fail in practice.
    ContentPolicyBuilder::default().build().expect("the embedded vocabularies build")
});

impl ContentPolicy {
    /// A builder for a policy with an organisation's own terms.
    pub fn builder() -> ContentPolicyBuilder {
        ContentPolicyBuilder::default()
    }

    /// The policy with the embedded vocabularies only, built on first use and shared.
    pub fn standard() -> ContentPolicy {
        STANDARD.clone()
    }

    /// Whether `code` (e.g. "F32.1" or "F321") is an ICD-10-CM code in the embedded set.
    pub fn is_icd10cm_code(&self, code: &str) -> bool {
        self.inner.patterns.code_category(code).is_some()
    }

    /// Checks `text`. Matches that overlap a word of `exempt_names` (the recipient's and the
    /// clinician's names, e.g. "Jamie", "Dr Rose Grant") are ignored, as are matches covered
    /// by the organisation's allowed terms.
    pub fn check(&self, text: &str, exempt_names: &[&str]) -> Verdict {
        let mut shields = exempt_spans(text, exempt_names);
        let mut findings = Vec::new();
        self.find_terms(text, &mut shields, &mut findings);

        let mut hits = Vec::new();
        self.inner.patterns.find(text, &mut hits);
        for PatternHit { category, span } in hits {
            findings.push(Finding { category, term: text[span.clone()].to_owned(), span });
        }

        findings.retain(|f| !shields.iter().any(|s| overlaps(s, &f.span)));
        findings.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
        // A code or value inside a longer term (or vice versa) is reported once, widest first.
        let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
        for f in findings {
            if kept.last().is_none_or(|last| last.span.end <= f.span.start) {
                kept.push(f);
            }
        }
        if kept.is_empty() { Verdict::Allowed } else { Verdict::Blocked(kept) }
    }

    /// Whole-word term matches: blocked ones into `findings`, allowed ones into `shields`.
    fn find_terms(&self, text: &str, shields: &mut Vec<Range<usize>>, findings: &mut Vec<Finding>) {
        let mut at = 0;
        while at < text.len() {
            let Some(first) = self.find_from(text, at..text.len()) else { break };
            let start = first.start();
            let mut candidate = Some(first);
            while let Some(m) = candidate.take() {
                let span = m.range();
                let Some(entry) = self.accept(text, &m) else {
                    // The longest term here is not a whole word ("allergy shot" in "allergy
                    // shots"): a shorter term from the same start may be ("allergy").
                    if is_word_start(text, start) && span.end > start + 1 {
                        candidate = self.find_from(text, start..span.end - 1).filter(|m| m.start() == start);
                    }
                    continue;
                };
                match entry.category {
                    Some(category) => findings.push(Finding { category, span: span.clone(), term: text[span.clone()].to_owned() }),
                    None => shields.push(span.clone()),
                }
                at = span.end;
                break;
            }
            if at <= start {
                // Nothing whole-word starts here; a later word may still hold a term.
                at = next_word_start(text, start);
            }
        }
    }

    /// The leftmost-longest term match inside `range`.
    fn find_from(&self, text: &str, range: Range<usize>) -> Option<Match> {
        let input = Input::new(text).range(range).anchored(Anchored::No);
        self.inner.automaton.find(input)
    }

    /// The entry for a match, if the match is a whole word in the case its entry requires.
    fn accept(&self, text: &str, m: &Match) -> Option<&Entry> {
        if !is_word_start(text, m.start()) || !is_word_end(text, m.end()) {
            return None;
        }
        let entry = &self.inner.entries[m.pattern().as_usize()];
        let matched = &text[m.range()];
        entry.exact_case.as_deref().is_none_or(|exact| exact == matched).then_some(entry)
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

fn is_word_start(text: &str, at: usize) -> bool {
    !text[..at].chars().next_back().is_some_and(is_word_char)
}

fn is_word_end(text: &str, at: usize) -> bool {
    !text[at..].chars().next().is_some_and(is_word_char)
}

/// The first position after `from` where a word begins (or the end of the text).
fn next_word_start(text: &str, from: usize) -> usize {
    let mut prev_word = text[..from].chars().next_back().is_some_and(is_word_char);
    for (i, c) in text[from..].char_indices() {
        let word = is_word_char(c);
        if i > 0 && word && !prev_word {
            return from + i;
        }
        prev_word = word;
    }
    text.len()
}

/// Titles that are not part of what identifies a person.
const HONORIFICS: &[&str] = &["dr", "doctor", "mr", "mrs", "ms", "mx", "miss", "prof", "nurse", "np", "pa", "md", "rn", "do"];

/// Where the words of the exempt names occur in `text` as whole words (ASCII
/// case-insensitive).
fn exempt_spans(text: &str, exempt_names: &[&str]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let words = exempt_names
        .iter()
        .flat_map(|name| name.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-')))
        .map(|w| w.trim_matches(|c: char| c == '\'' || c == '-'))
        .filter(|w| w.chars().count() >= 2 && !HONORIFICS.iter().any(|h| w.eq_ignore_ascii_case(h)));
    for word in words {
        let needle = word.as_bytes();
        let hay = text.as_bytes();
        if needle.len() > hay.len() {
            continue;
        }
        for start in 0..=hay.len() - needle.len() {
            let end = start + needle.len();
            if text.is_char_boundary(start)
                && text.is_char_boundary(end)
                && hay[start..end].eq_ignore_ascii_case(needle)
                && is_word_start(text, start)
                && is_word_end(text, end)
            {
                spans.push(start..end);
            }
        }
    }
    spans
}
