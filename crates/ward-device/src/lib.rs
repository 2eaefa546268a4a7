//! Device trust without I/O: posture reports, the baseline policy and its evaluation, drift, spot-check sampling, the quarterly review and the Apple configuration profile.

#![forbid(unsafe_code)]

pub mod drift;
pub mod evaluate;
pub mod policy;
pub mod profile;
pub mod report;
pub mod review;
pub mod sample;

pub use drift::{DriftEvent, drift};
pub use evaluate::{DeviceFacts, DeviceState, Evaluation, FailingSince, ItemResult, Outcome, StateKind, blocked_from, evaluate};
pub use policy::{Action, ITEMS, ItemId, ItemRule, PosturePolicy};
pub use profile::{ProfileOptions, UuidSource, profile_xml};
pub use report::{DeviceRegistration, PostureReport, ReceivedReport, ReportError};
pub use review::{ReviewSummary, review_summary};
pub use sample::spot_check;
