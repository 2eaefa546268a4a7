//! `GET /api/v1/stream`: the real-time stream of a session over WebSocket.
//!
//! Authenticate with an `Authorization: Bearer` header, or (browsers cannot set headers) with
//! a first frame `{"type":"auth","access_token":"..."}` within 10 seconds; tokens never go in
//! the URL. The server then sends `{"type":"ready"}`, replays what the session has not
//! acknowledged, and streams live events. Each event carries its conversation's gapless `seq`;
//! the client acknowledges with `{"type":"ack","conversation_id":"...","seq":N}` and, after a
//! reconnect, resumes after the last acknowledged event: no gaps, no duplicates.
//!
//! Compliance officers also receive `{"type":"alert",...}` frames for their organisation's
//! anomaly alerts as they are raised (ids and codes only; `GET /api/v1/audit/alerts` lists them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::ConversationId;
use ward_fanout::Delivery;
use ward_store::RequestMeta;

use crate::api::dto::{PhiWithheld, render_event, withhold_frame};
use crate::app::AppState;
use crate::auth::{AnySession, Meta, authenticate};
use crate::problem::{ApiError, Problem};

/// Close code sent when the session ends (revoked, idle, disabled).
pub const CLOSE_SESSION_ENDED: u16 = 4001;
/// Close code: the server could not check what this connection may receive; reconnect later
/// (1013, "Try Again Later", RFC 6455 §7.4.1 registry).
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code sent when authentication fails.
pub const CLOSE_UNAUTHENTICATED: u16 = 4401;
/// How many events to load per database page when catching up.
const CATCH_UP_PAGE: u32 = 500;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Auth { access_token: String },
    Ack { conversation_id: ConversationId, seq: i64 },
    Ping,
}

/// Opens the session's event stream.
#[utoipa::path(get, path = "/api/v1/stream", tag = "stream",
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 401, body = Problem),
        (status = 426, body = Problem, description = "Not a WebSocket upgrade request")))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // axum's own rejection is plain text; every error Ward sends is problem+json.
    let Ok(ws) = ws else {
        let mut res = ApiError::websocket_required().into_response();
        res.headers_mut().insert(axum::http::header::UPGRADE, axum::http::HeaderValue::from_static("websocket"));
        return res;
    };
    let pre = match crate::auth::bearer_header(&headers) {
        Ok(Some(token)) => match authenticate(&state, token, meta.clone()).await.and_then(full_access) {
            Ok(s) => Some(s),
            Err(e) => return e.into_response(),
        },
        Ok(None) => None,
        Err(e) => return e.into_response(),
    };
    ws.max_message_size(64 * 1024).on_upgrade(move |socket| async move {
        if let Err(e) = run(state, socket, pre, meta).await {
            tracing::debug!(error = %e, "stream ended");
        }
    })
}

fn full_access(s: AnySession) -> Result<AnySession, ApiError> {
    match s.restriction {
        None => Ok(s),
        Some(ward_store::Restriction::PasswordChange) => Err(ApiError::password_change_required()),
        Some(ward_store::Restriction::MfaEnrollment) => Err(ApiError::mfa_enrollment_required()),
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await;
}

async fn send(socket: &mut WebSocket, text: impl Into<Utf8Bytes>) -> anyhow::Result<()> {
    socket.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Sends a conversation event, without message content while the device is blocked from PHI.
async fn send_event(socket: &mut WebSocket, frame: &str, withheld: Option<&PhiWithheld>) -> anyhow::Result<()> {
    match withheld {
        Some(notice) => send(socket, withhold_frame(frame, notice)).await,
        None => send(socket, frame.to_owned()).await,
    }
}

async fn first_frame_auth(state: &AppState, socket: &mut WebSocket, meta: &RequestMeta) -> Result<AnySession, &'static str> {
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await.map_err(|_| "authentication timed out")?;
    let Some(Ok(Message::Text(text))) = frame else { return Err("expected an auth frame") };
    let Ok(ClientFrame::Auth { access_token }) = serde_json::from_str::<ClientFrame>(&text) else {
        return Err("expected an auth frame");
    };
    if !access_token.starts_with(crate::secrets::ACCESS_PREFIX) || access_token.len() > 128 {
        return Err("invalid token");
    }
    authenticate(state, &access_token, meta.clone()).await.and_then(full_access).map_err(|e| e.code)
}

/// Where this connection stands in each conversation, with live events that arrived ahead of
/// a missing one.
///
/// Events of one conversation are committed in order but can be published out of order (the
/// handlers of one committed batch finish together; several nodes publish independently).
/// An early event waits here briefly for the ones before it; only a gap that persists is
/// filled from the database.
#[derive(Default)]
struct Positions {
    at: HashMap<ConversationId, i64>,
    early: HashMap<ConversationId, std::collections::BTreeMap<i64, Arc<Delivery>>>,
    gap_since: Option<tokio::time::Instant>,
    /// Set while the device is blocked from PHI: message events go out without content.
    withheld: Option<PhiWithheld>,
}

/// How long an early event waits for the events before it before they are read from the database.
const REORDER_WAIT: Duration = Duration::from_millis(100);

async fn run(state: AppState, mut socket: WebSocket, pre: Option<AnySession>, meta: RequestMeta) -> anyhow::Result<()> {
    let session = match pre {
        Some(s) => s,
        None => match first_frame_auth(&state, &mut socket, &meta).await {
            Ok(s) => s,
            Err(why) => {
                let _ = send(&mut socket, format!(r#"{{"type":"error","code":"{why}"}}"#)).await;
                close(socket, CLOSE_UNAUTHENTICATED, "authentication failed").await;
                return Ok(());
            }
        },
    };
    let user = session.actor.user_id;
    // Register before reading positions so nothing committed in between is missed: it is
    // either in the catch-up read or queued here (duplicates are dropped by sequence).
    let mut reg = state.hub.register(user, session.session, state.config.limits.ws_send_buffer);
    let mut pos = Positions::default();
    send(&mut socket, format!(r#"{{"type":"ready","session_id":"{}"}}"#, session.session)).await?;
    // Fail closed: without knowing the device's standing, send nothing (the client reconnects).
    pos.withheld = match crate::api::devices::phi_withheld(&state, &session).await {
        Ok(w) => w,
        Err(_) => {
            close(socket, CLOSE_TRY_AGAIN, "try again later").await;
            return Ok(());
        }
    };
    catch_up(&state, &mut socket, &session, &mut pos, &meta).await?;

    let mut pending_acks: HashMap<ConversationId, i64> = HashMap::new();
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    let mut check = tokio::time::interval(Duration::from_secs(5));
    check.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = reg.control.end.notified() => {
                let _ = send(&mut socket, r#"{"type":"session_ended"}"#).await;
                flush_acks(&state, &session, &mut pending_acks).await;
                close(socket, CLOSE_SESSION_ENDED, "session ended").await;
                return Ok(());
            }
            _ = reg.control.resync.notified() => {
                while reg.rx.try_recv().is_ok() {}
                catch_up(&state, &mut socket, &session, &mut pos, &meta).await?;
            }
            d = reg.rx.recv() => {
                let Some(d) = d else { return Ok(()) };
                deliver(&state, &mut socket, &session, &mut pos, d).await?;
            }
            Some(frame) = reg.alerts.recv() => send(&mut socket, frame.as_ref()).await?,
            () = gap_deadline(pos.gap_since) => fill_gaps(&state, &mut socket, &session, &mut pos).await?,
            frame = socket.recv() => {
                match frame {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(&text) {
                        Ok(ClientFrame::Ack { conversation_id, seq }) => {
                            let e = pending_acks.entry(conversation_id).or_insert(seq);
                            *e = (*e).max(seq);
                        }
                        Ok(ClientFrame::Ping) => send(&mut socket, r#"{"type":"pong"}"#).await?,
                        Ok(ClientFrame::Auth { .. }) | Err(_) => {
                            send(&mut socket, r#"{"type":"error","code":"invalid_frame"}"#).await?;
                        }
                    },
                    Some(Ok(Message::Binary(_))) => send(&mut socket, r#"{"type":"error","code":"invalid_frame"}"#).await?,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        flush_acks(&state, &session, &mut pending_acks).await;
                        return Ok(());
                    }
                }
            }
            _ = flush.tick() => flush_acks(&state, &session, &mut pending_acks).await,
            _ = check.tick() => {
                // Covers a missed end signal and the idle timeout.
                if !state.store.session_alive(session.session).await.unwrap_or(true) {
                    let _ = send(&mut socket, r#"{"type":"session_ended"}"#).await;
                    close(socket, CLOSE_SESSION_ENDED, "session ended").await;
                    return Ok(());
                }
                // A posture report or policy change may block or unblock the device.
                if let Ok(w) = crate::api::devices::phi_withheld(&state, &session).await {
                    pos.withheld = w;
                }
            }
        }
    }
}

async fn flush_acks(state: &AppState, session: &AnySession, pending: &mut HashMap<ConversationId, i64>) {
    if pending.is_empty() {
        return;
    }
    let acks: Vec<_> = pending.drain().collect();
    if let Err(e) = state.store.ack(session.session, acks).await {
        tracing::warn!(error = %e, "could not record stream acknowledgements");
    }
}

/// Sends a live event in order: at once if it is the next one, after the events before it if
/// it is early (see [`Positions`]), never if it was already sent.
async fn deliver(state: &AppState, socket: &mut WebSocket, s: &AnySession, pos: &mut Positions, d: Arc<Delivery>) -> anyhow::Result<()> {
    let conv = d.conversation_id;
    let Some(at) = pos.at.get(&conv).copied() else {
        // A conversation this connection has not seen (the user was just added): read it
        // from the database up to this event.
        let reached = fill(state, socket, s, conv, 0, Some(d.seq), pos.withheld.as_ref()).await?;
        if reached < d.seq {
            // Not readable any more (the user was just removed): the event is still theirs.
            send_event(socket, d.frame.as_ref(), pos.withheld.as_ref()).await?;
        }
        pos.at.insert(conv, d.seq);
        return Ok(());
    };
    if d.seq <= at {
        return Ok(());
    }
    if d.seq > at + 1 {
        pos.early.entry(conv).or_default().insert(d.seq, d);
        pos.gap_since.get_or_insert_with(tokio::time::Instant::now);
        return Ok(());
    }
    send_event(socket, d.frame.as_ref(), pos.withheld.as_ref()).await?;
    state.metrics.ws_events.inc();
    let mut at = d.seq;
    if let Some(early) = pos.early.get_mut(&conv) {
        while let Some(next) = early.remove(&(at + 1)) {
            send_event(socket, next.frame.as_ref(), pos.withheld.as_ref()).await?;
            state.metrics.ws_events.inc();
            at = next.seq;
        }
        if early.is_empty() {
            pos.early.remove(&conv);
        }
    }
    pos.at.insert(conv, at);
    if pos.early.is_empty() {
        pos.gap_since = None;
    }
    Ok(())
}

async fn gap_deadline(since: Option<tokio::time::Instant>) {
    match since {
        Some(t) => tokio::time::sleep_until(t + REORDER_WAIT).await,
        None => std::future::pending().await,
    }
}

/// Fills every gap that outlasted the reorder wait from the database, then sends what was
/// waiting behind it.
async fn fill_gaps(state: &AppState, socket: &mut WebSocket, s: &AnySession, pos: &mut Positions) -> anyhow::Result<()> {
    for (conv, early) in std::mem::take(&mut pos.early) {
        let Some(&last) = early.keys().next_back() else { continue };
        let at = pos.at.get(&conv).copied().unwrap_or(0);
        let mut reached = fill(state, socket, s, conv, at, Some(last), pos.withheld.as_ref()).await?;
        // Whatever the database could not give (the user was removed meanwhile) is sent as received.
        for (seq, d) in early.range(reached + 1..) {
            send_event(socket, d.frame.as_ref(), pos.withheld.as_ref()).await?;
            reached = *seq;
        }
        pos.at.insert(conv, reached.max(at));
    }
    pos.gap_since = None;
    Ok(())
}

/// Sends the conversation's events after `after` (up to `until`) from the database; returns
/// the last sequence sent (or `after`).
async fn fill(
    state: &AppState,
    socket: &mut WebSocket,
    s: &AnySession,
    conv: ConversationId,
    after: i64,
    until: Option<i64>,
    withheld: Option<&PhiWithheld>,
) -> anyhow::Result<i64> {
    let mut last = after;
    loop {
        let page = state.store.events_after(s.actor.user_id, conv, last, CATCH_UP_PAGE).await?;
        let n = page.len();
        for e in page {
            if until.is_some_and(|u| e.seq > u) {
                return Ok(last);
            }
            last = e.seq;
            send_event(socket, &render_event(e), withheld).await?;
            state.metrics.ws_events.inc();
        }
        if n < CATCH_UP_PAGE as usize {
            return Ok(last);
        }
    }
}

/// Replays everything the session has not seen in each of the user's conversations, and
/// audits the delivery of message content.
async fn catch_up(state: &AppState, socket: &mut WebSocket, s: &AnySession, pos: &mut Positions, meta: &RequestMeta) -> anyhow::Result<()> {
    let positions = state.store.stream_positions(s.session, s.actor.user_id, s.created_at).await?;
    let mut replayed = 0i64;
    let mut conversations = 0i64;
    // Early events are covered by the full catch-up below.
    pos.early.clear();
    pos.gap_since = None;
    for p in positions {
        let from = pos.at.get(&p.conversation_id).copied().unwrap_or(p.position).max(p.position);
        if from < p.last_event_seq {
            let reached = fill(state, socket, s, p.conversation_id, from, None, pos.withheld.as_ref()).await?;
            replayed += reached - from;
            conversations += 1;
            pos.at.insert(p.conversation_id, reached);
        } else {
            pos.at.insert(p.conversation_id, from);
        }
    }
    if replayed > 0 {
        let mut ev = AuditEvent::new(AuditAction::StreamReplay, Outcome::Success)
            .target("session", s.session)
            .detail("events", DetailValue::Int(replayed))
            .detail("conversations", DetailValue::Int(conversations));
        ev.org_id = Some(s.actor.org_id);
        ev.actor = Some(s.actor.user_id);
        ev.device = Some(s.device);
        state.store.record(ev, meta.clone()).await?;
    }
    Ok(())
}
