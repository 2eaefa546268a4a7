//! Where each outside publication of the audit log (the syslog stream) has got to.
//!
//! A cursor update is bookkeeping, not a change to protected data, so it records no audit
//! event (one would itself have to be published, and so on for ever).

use crate::db::{exec, fetch};
use crate::error::Result;
use crate::{Store, now_ms};

/// A sink's persisted progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct SinkCursor {
    /// The oldest audit index not yet known to have reached the receiver.
    pub next_idx: i64,
    /// The tree size of the largest checkpoint known to have reached it, if any.
    pub checkpoint_size: Option<i64>,
}

impl Store {
    /// The named sink's cursor; `None` before it first saved one.
    pub async fn audit_sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>> {
        let name = name.to_owned();
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(fetch!(fetch_optional, &mut c, SinkCursor, "SELECT next_idx, checkpoint_size FROM audit_sinks WHERE name = $1", name)?)
            })
        })
        .await
    }

    /// Saves the named sink's cursor (creating its row on first use).
    pub async fn save_audit_sink_cursor(&self, name: &str, cursor: SinkCursor) -> Result<()> {
        let name = name.to_owned();
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO audit_sinks (name, next_idx, checkpoint_size, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET next_idx = excluded.next_idx, checkpoint_size = excluded.checkpoint_size, \
                     updated_at = excluded.updated_at",
                    name,
                    cursor.next_idx,
                    cursor.checkpoint_size,
                    now_ms()
                )?;
                Ok(())
            })
        })
        .await
    }
}
