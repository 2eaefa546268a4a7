//! Data lifecycle: retention policies per conversation kind, legal holds, and the planner
//! that decides which conversation data-key versions have expired and may be destroyed
//! (crypto-shredding). Pure: the store gathers the facts and carries the plan out.
//!
//! Why keys and not rows: a conversation's content is sealed under versioned data keys that
//! rotate by age. Destroying a version makes everything sealed under it unreadable
//! everywhere, backups included, while the row metadata stays as a tombstone. A version may
//! go once every message sealed under it is past the retention horizon and no legal hold
//! covers the conversation.
//!
//! What a hold covers: a hold on a conversation covers it; on a patient, every conversation
//! about that patient; on a user, every conversation the user is, was or sent as a member of
//! (the whole conversation, since the user's messages make sense only with the replies).

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::conversation::ConversationKind;

/// One day in milliseconds, the unit stored times use.
pub const DAY_MS: i64 = 86_400_000;

/// A retention period in days: 1 to 36,500 (100 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "u32", into = "u32")]
#[schema(value_type = u32)]
pub struct RetentionDays(u32);

impl RetentionDays {
    /// The shortest period.
    pub const MIN: u32 = 1;
    /// The longest period.
    pub const MAX: u32 = 36_500;
    /// Default for patient-linked conversations: six years (HIPAA 164.316(b)(2)(i)), 2192 days.
    pub const PATIENT_DEFAULT: RetentionDays = RetentionDays(2192);
    /// Default for other conversations (staff chatter): one year.
    pub const OTHER_DEFAULT: RetentionDays = RetentionDays(365);

    /// Checks a period.
    pub fn parse(days: u32) -> Result<Self, DomainError> {
        if (Self::MIN..=Self::MAX).contains(&days) {
            Ok(Self(days))
        } else {
            Err(DomainError::invalid("days", "must be between 1 and 36500"))
        }
    }

    /// The number of days.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The time before which content has expired at `now` (Unix ms).
    pub fn horizon(self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::from(self.0) * DAY_MS)
    }
}

impl TryFrom<u32> for RetentionDays {
    type Error = DomainError;
    fn try_from(days: u32) -> Result<Self, DomainError> {
        Self::parse(days)
    }
}

impl From<RetentionDays> for u32 {
    fn from(d: RetentionDays) -> u32 {
        d.0
    }
}

/// An organisation's retention policy: one period per conversation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Direct conversations.
    pub direct: RetentionDays,
    /// Group conversations.
    pub group: RetentionDays,
    /// Patient-linked conversations.
    pub patient: RetentionDays,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { direct: RetentionDays::OTHER_DEFAULT, group: RetentionDays::OTHER_DEFAULT, patient: RetentionDays::PATIENT_DEFAULT }
    }
}

impl RetentionPolicy {
    /// The period for a kind.
    pub fn days_for(&self, kind: ConversationKind) -> RetentionDays {
        match kind {
            ConversationKind::Direct => self.direct,
            ConversationKind::Group => self.group,
            ConversationKind::Patient => self.patient,
        }
    }

    /// Sets the period for a kind.
    pub fn set(&mut self, kind: ConversationKind, days: RetentionDays) {
        match kind {
            ConversationKind::Direct => self.direct = days,
            ConversationKind::Group => self.group = days,
            ConversationKind::Patient => self.patient = days,
        }
    }
}

/// What a legal hold is placed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldSubject {
    /// A user: every conversation they are, were or sent as a member of.
    User,
    /// One conversation.
    Conversation,
    /// A patient: every conversation about them, and their identifying fields.
    Patient,
}

impl HoldSubject {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Conversation => "conversation",
            Self::Patient => "patient",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Conversation, Self::Patient].into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a hold was placed (a matter or case reference): 1 to 500 characters, no control
/// characters. It names a legal matter, never patient information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldReason(String);

impl HoldReason {
    /// Checks a reason.
    pub fn parse(raw: String) -> Result<Self, DomainError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(DomainError::invalid("reason", "must not be empty"));
        }
        if t.chars().count() > 500 {
            return Err(DomainError::invalid("reason", "must be at most 500 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(DomainError::invalid("reason", "must not contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the store knows about one version of a conversation's data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyVersionFacts {
    /// The version.
    pub version: u32,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// Whether it is already destroyed.
    pub destroyed: bool,
    /// The newest message sealed under it, if any (Unix ms).
    pub newest_message_at: Option<i64>,
    /// How many not yet shredded messages are sealed under it.
    pub messages: u64,
}

/// What the store knows about one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationFacts {
    /// Its kind, which picks the retention period.
    pub kind: ConversationKind,
    /// Whether an active legal hold covers it.
    pub held: bool,
    /// Its key versions.
    pub versions: Vec<KeyVersionFacts>,
}

/// What to destroy in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShredPlan {
    /// Key versions to destroy, ascending.
    pub versions: Vec<u32>,
    /// Messages that become tombstones.
    pub messages: u64,
    /// Every key version goes: the title is shredded too, and later content gets a new version.
    pub whole: bool,
    /// The period applied.
    pub days: RetentionDays,
    /// Content older than this had expired.
    pub horizon: i64,
}

/// The planner's verdict on one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing has expired.
    Keep,
    /// Something has expired, but a legal hold keeps it.
    Held(ShredPlan),
    /// Destroy these versions.
    Shred(ShredPlan),
}

/// Decides what expires in one conversation at `now`.
///
/// A live version has expired when every message sealed under it is older than the horizon
/// (a version with no messages: when the key itself is). If every live version has expired,
/// all go (the whole conversation). Otherwise the expired ones go except the newest live
/// version, which keeps sealing new content and the title.
pub fn plan(policy: &RetentionPolicy, facts: &ConversationFacts, now_ms: i64) -> Decision {
    let days = policy.days_for(facts.kind);
    let horizon = days.horizon(now_ms);
    let live: Vec<&KeyVersionFacts> = facts.versions.iter().filter(|v| !v.destroyed).collect();
    let Some(newest) = live.iter().map(|v| v.version).max() else { return Decision::Keep };
    let expired = |v: &KeyVersionFacts| v.newest_message_at.unwrap_or(v.created_at) < horizon;
    let whole = live.iter().all(|v| expired(v));
    let mut chosen: Vec<&KeyVersionFacts> = live.into_iter().filter(|v| expired(v) && (whole || v.version != newest)).collect();
    if chosen.is_empty() {
        return Decision::Keep;
    }
    chosen.sort_by_key(|v| v.version);
    let shred = ShredPlan {
        versions: chosen.iter().map(|v| v.version).collect(),
        messages: chosen.iter().map(|v| v.messages).sum(),
        whole,
        days,
        horizon,
    };
    if facts.held { Decision::Held(shred) } else { Decision::Shred(shred) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 10_000 * DAY_MS;

    fn v(version: u32, created_days_ago: i64, newest_days_ago: Option<i64>) -> KeyVersionFacts {
        KeyVersionFacts {
            version,
            created_at: NOW - created_days_ago * DAY_MS,
            destroyed: false,
            newest_message_at: newest_days_ago.map(|d| NOW - d * DAY_MS),
            messages: u64::from(newest_days_ago.is_some()) * 3,
        }
    }

    fn facts(kind: ConversationKind, versions: Vec<KeyVersionFacts>) -> ConversationFacts {
        ConversationFacts { kind, held: false, versions }
    }

    #[test]
    fn days_are_bounded_and_defaults_follow_the_kind() {
        assert!(RetentionDays::parse(0).is_err());
        assert!(RetentionDays::parse(36_501).is_err());
        assert_eq!(RetentionDays::parse(1).unwrap().get(), 1);
        let p = RetentionPolicy::default();
        assert_eq!(p.days_for(ConversationKind::Patient).get(), 2192);
        assert_eq!(p.days_for(ConversationKind::Group).get(), 365);
        assert_eq!(p.days_for(ConversationKind::Direct).get(), 365);
        assert!(serde_json::from_str::<RetentionDays>("0").is_err());
    }

    #[test]
    fn reasons_are_checked() {
        assert!(HoldReason::parse("  ".into()).is_err());
        assert!(HoldReason::parse("a\u{7}".into()).is_err());
        assert!(HoldReason::parse("x".repeat(501)).is_err());
        assert_eq!(HoldReason::parse(" Matter 2026-17 ".into()).unwrap().as_str(), "Matter 2026-17");
    }

    #[test]
    fn old_versions_go_and_the_newest_stays_while_the_conversation_lives() {
        let f = facts(ConversationKind::Group, vec![v(1, 900, Some(800)), v(2, 700, Some(400)), v(3, 300, Some(1))]);
        let Decision::Shred(p) = plan(&RetentionPolicy::default(), &f, NOW) else { panic!("expected a shred") };
        assert_eq!(p.versions, vec![1, 2]);
        assert!(!p.whole);
        assert_eq!(p.messages, 6);
    }

    #[test]
    fn an_expired_conversation_goes_whole_and_patient_ones_last_longer() {
        let versions = vec![v(1, 900, Some(800)), v(2, 700, Some(400))];
        let Decision::Shred(p) = plan(&RetentionPolicy::default(), &facts(ConversationKind::Direct, versions.clone()), NOW) else {
            panic!("expected a shred")
        };
        assert!(p.whole);
        assert_eq!(p.versions, vec![1, 2]);
        assert_eq!(plan(&RetentionPolicy::default(), &facts(ConversationKind::Patient, versions), NOW), Decision::Keep);
    }

    #[test]
    fn holds_keep_everything_and_destroyed_versions_are_skipped() {
        let mut f = facts(ConversationKind::Group, vec![v(1, 900, Some(800))]);
        f.held = true;
        assert!(matches!(plan(&RetentionPolicy::default(), &f, NOW), Decision::Held(_)));
        f.held = false;
        f.versions[0].destroyed = true;
        assert_eq!(plan(&RetentionPolicy::default(), &f, NOW), Decision::Keep);
    }

    proptest! {
        #[test]
        fn plans_never_destroy_unexpired_content(
            days in 1u32..3000,
            raw in proptest::collection::vec((0i64..5000, proptest::option::of(0i64..5000), any::<bool>()), 0..6),
            held in any::<bool>(),
        ) {
            let versions: Vec<KeyVersionFacts> = raw
                .iter()
                .enumerate()
                .map(|(i, &(c, m, d))| KeyVersionFacts { destroyed: d, ..v(i as u32 + 1, c, m) })
                .collect();
            let mut policy = RetentionPolicy::default();
            policy.set(ConversationKind::Group, RetentionDays::parse(days).unwrap());
            let f = ConversationFacts { kind: ConversationKind::Group, held, versions: versions.clone() };
            let horizon = RetentionDays::parse(days).unwrap().horizon(NOW);
            match plan(&policy, &f, NOW) {
                Decision::Keep => {}
                Decision::Held(_) => prop_assert!(held),
                Decision::Shred(p) => {
                    prop_assert!(!held);
                    prop_assert!(!p.versions.is_empty());
                    let live: Vec<_> = versions.iter().filter(|x| !x.destroyed).collect();
                    for ver in &p.versions {
                        let kv = live.iter().find(|x| x.version == *ver).expect("only live versions are destroyed");
                        prop_assert!(kv.newest_message_at.unwrap_or(kv.created_at) < horizon);
                    }
                    let newest = live.iter().map(|x| x.version).max().unwrap();
                    prop_assert_eq!(p.whole, p.versions.len() == live.len());
                    if !p.whole {
                        prop_assert!(!p.versions.contains(&newest));
                    }
                }
            }
        }
    }
}
