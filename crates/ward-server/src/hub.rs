//! This node's registry of WebSocket connections, fed by the fan-out subscription.
//!
//! Dispatch never waits on a connection: each has a bounded buffer, and one that is full is
//! told to catch up from the database instead (so a slow client never delays others and the
//! server's memory stays bounded).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, broadcast, mpsc};
use ward_domain::ids::{SessionId, UserId};
use ward_fanout::{Delivery, FanOut, Signal};

use crate::metrics::Metrics;

/// Signals from the hub to one connection.
#[derive(Debug, Default)]
pub struct Control {
    /// The session ended: close.
    pub end: Notify,
    /// Live events were dropped: catch up from the database.
    pub resync: Notify,
}

/// Alert frames one connection may hold unsent; past this they are dropped (the console
/// lists every alert from the database).
const ALERT_BUFFER: usize = 64;

struct Entry {
    id: u64,
    session: SessionId,
    tx: mpsc::Sender<Arc<Delivery>>,
    alerts: mpsc::Sender<Arc<str>>,
    control: Arc<Control>,
}

/// Connections of this node by user.
pub struct Hub {
    conns: RwLock<HashMap<UserId, Vec<Entry>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A registered connection; unregisters when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
    /// Live events for this connection.
    pub rx: mpsc::Receiver<Arc<Delivery>>,
    /// Anomaly alert frames for this connection (compliance officers only receive any).
    pub alerts: mpsc::Receiver<Arc<str>>,
    /// Signals for this connection.
    pub control: Arc<Control>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut conns = self.hub.conns.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = conns.get_mut(&self.user) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                conns.remove(&self.user);
            }
        }
        self.hub.metrics.ws_connections.dec();
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { conns: RwLock::new(HashMap::new()), next_id: AtomicU64::new(1), metrics })
    }

    /// Registers a connection of `user` in `session` with a buffer of `buffer` events.
    pub fn register(self: &Arc<Self>, user: UserId, session: SessionId, buffer: usize) -> Registration {
        let (tx, rx) = mpsc::channel(buffer);
        let (alerts_tx, alerts) = mpsc::channel(ALERT_BUFFER);
        let control = Arc::new(Control::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.write().unwrap_or_else(|p| p.into_inner()).entry(user).or_default().push(Entry {
            id,
            session,
            tx,
            alerts: alerts_tx,
            control: control.clone(),
        });
        self.metrics.ws_connections.inc();
        Registration { hub: self.clone(), user, id, rx, alerts, control }
    }

    /// Delivers a signal to the local connections it concerns.
    pub fn dispatch(&self, signal: &Signal) {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        match signal {
            Signal::Deliver(d) => {
                for user in &d.recipients {
                    for e in conns.get(user).into_iter().flatten() {
                        if e.tx.try_send(d.clone()).is_err() {
                            self.metrics.ws_resyncs.inc();
                            e.control.resync.notify_one();
                        }
                    }
                }
            }
            Signal::EndSessions { user, sessions } => {
                for e in conns.get(user).into_iter().flatten() {
                    if sessions.as_ref().is_none_or(|s| s.contains(&e.session)) {
                        e.control.end.notify_one();
                    }
                }
            }
            Signal::Alert(a) => {
                for user in &a.recipients {
                    for e in conns.get(user).into_iter().flatten() {
                        if e.alerts.try_send(a.frame.clone()).is_err() {
                            tracing::warn!("alert frame dropped for a slow connection; the alert list has it");
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Tells every local connection to catch up from the database.
    pub fn resync_all(&self) {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        for e in conns.values().flatten() {
            e.control.resync.notify_one();
        }
    }

    /// Number of open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.conns.read().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }

    /// Feeds the hub from the fan-out subscription until the transport closes.
    pub fn spawn(self: &Arc<Self>, fanout: &Arc<dyn FanOut>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let mut rx = fanout.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(signal) => hub.dispatch(&signal),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "fan-out subscriber lagged; connections catch up from the database");
                        hub.resync_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }
}
