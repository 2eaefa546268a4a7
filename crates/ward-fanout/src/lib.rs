//! Real-time fan-out: carries committed conversation events and session terminations to every
//! server node, each of which delivers them to its own WebSocket connections.
//!
//! Nothing here assumes one process. Delivery is at-most-once and unordered across
//! publishers; receivers order by the per-conversation sequence number and fill gaps from the
//! database, so a lost or late signal delays delivery but never loses or duplicates it.
//! The in-process implementation serves a single node; a NATS JetStream one slots in beside it.

#![forbid(unsafe_code)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use ward_domain::ids::{ConversationId, SessionId, UserId};

/// A committed conversation event, rendered once for every recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Users who should receive it.
    pub recipients: Vec<UserId>,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The event's sequence number in the conversation.
    pub seq: i64,
    /// The WebSocket frame (JSON text) to send as is.
    pub frame: Arc<str>,
}

/// An anomaly alert for the compliance officers of an organisation: a PHI-free frame (ids,
/// codes and counts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNotice {
    /// The compliance officers who should receive it.
    pub recipients: Vec<UserId>,
    /// The WebSocket frame (JSON text) to send as is.
    pub frame: Arc<str>,
}

/// What travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Signal {
    /// Deliver an event.
    Deliver(Arc<Delivery>),
    /// Close a user's connections: all of them, or those of the listed sessions.
    EndSessions {
        /// The user.
        user: UserId,
        /// Only these sessions; `None` means every session of the user.
        sessions: Option<Vec<SessionId>>,
    },
    /// Deliver an anomaly alert to compliance officers' connections.
    Alert(Arc<AlertNotice>),
}

/// Why a signal could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FanOutError {
    /// The transport is down; the receivers will catch up from the database.
    #[error("fan-out transport unavailable")]
    Unavailable,
}

/// A fan-out transport shared by all nodes of a deployment.
#[async_trait::async_trait]
pub trait FanOut: Send + Sync + 'static {
    /// Sends a signal to every node (including this one).
    async fn publish(&self, signal: Signal) -> Result<(), FanOutError>;

    /// Signals arriving at this node. A receiver that falls behind gets
    /// `RecvError::Lagged` and must resynchronise its connections from the database.
    fn subscribe(&self) -> broadcast::Receiver<Signal>;
}

/// Fan-out within one process.
#[derive(Debug, Clone)]
pub struct InProcess {
    tx: broadcast::Sender<Signal>,
}

impl InProcess {
    /// A channel holding up to `capacity` signals for slow subscribers before they lag.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity.max(16)).0 }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new(65_536)
    }
}

#[async_trait::async_trait]
impl FanOut for InProcess {
    async fn publish(&self, signal: Signal) -> Result<(), FanOutError> {
        // No subscriber yet is not an error: nobody is connected to hear it.
        let _ = self.tx.send(signal);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_sees_every_signal() {
        let f = InProcess::new(16);
        let mut a = f.subscribe();
        let mut b = f.subscribe();
        let user = UserId::new();
        f.publish(Signal::EndSessions { user, sessions: None }).await.unwrap();
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.unwrap(), Signal::EndSessions { user, sessions: None });
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged() {
        let f = InProcess::new(16);
        let mut rx = f.subscribe();
        for _ in 0..40 {
            f.publish(Signal::EndSessions { user: UserId::new(), sessions: None }).await.unwrap();
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(_))));
    }
}
