//! The outbound content policy, shared by every request that sends text outside Ward.
//!
//! Building it takes a noticeable moment (one automaton over about 42,000 terms), so it is
//! built once, on a blocking thread started with the server, and requests that need it before
//! it is ready wait for that one build instead of delaying start-up.

use std::sync::Arc;

use tokio::sync::OnceCell;
use ward_outbound::ContentPolicy;

use crate::problem::{ApiError, ApiResult};

/// A handle to the shared content policy. Cheap to clone.
#[derive(Clone, Default)]
pub struct OutboundPolicy {
    cell: Arc<OnceCell<ContentPolicy>>,
}

impl OutboundPolicy {
    /// A handle whose policy starts building now in the background (when a Tokio runtime is
    /// running; otherwise on first use).
    pub fn warm() -> OutboundPolicy {
        let policy = OutboundPolicy::default();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let p = policy.clone();
            rt.spawn(async move {
                if let Err(e) = p.get().await {
                    tracing::error!(error = ?e.internal, "could not build the outbound content policy");
                }
            });
        }
        policy
    }

    /// The policy, built on first use.
    pub async fn get(&self) -> ApiResult<ContentPolicy> {
        self.cell
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(ContentPolicy::standard)
                    .await
                    .map_err(|e| ApiError::internal_cause(format!("policy build: {e}")))
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warmed_and_lazy_handles_give_the_standard_policy() {
        for handle in [OutboundPolicy::warm(), OutboundPolicy::default()] {
            let policy = handle.get().await.unwrap();
            assert!(policy.check("See you Tuesday at 3, Jamie", &["Jamie"]).is_allowed());
            assert!(!policy.check("See you Tuesday at 3 for your depression follow-up", &[]).is_allowed());
        }
    }
}
