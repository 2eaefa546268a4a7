//! Typed identifiers: a user id can never be passed where a conversation id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id, so that ids sort by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

id_type!(
    /// An organisation (tenant).
    OrgId,
    /// A user account.
    UserId,
    /// A device registered at login.
    DeviceId,
    /// A login session: one refresh-token family on one device.
    SessionId,
    /// A conversation.
    ConversationId,
    /// A message.
    MessageId,
    /// A patient record (the opaque id that stands for the patient everywhere, so the MRN itself need not).
    PatientId,
    /// An attachment: a file uploaded to a conversation.
    AttachmentId,
);

id_type!(
    /// A published organisation policy (device checklist, BYOD agreement, acceptable use, ...).
    PolicyId,
    /// A vendor in the business associate (BAA) register.
    VendorId,
    /// A risk in the HIPAA risk register.
    RiskId,
    /// An access review campaign.
    CampaignId,
);
