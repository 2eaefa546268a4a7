//! The audit sinks' persisted cursors, on both backends.

use ward_store::testing::TestDb;
use ward_store::{Backend, SinkCursor, on_both_backends};

on_both_backends!(sink_cursors_are_saved_per_sink_and_overwritten, sink_cursor_updates_record_no_audit_event);

async fn sink_cursors_are_saved_per_sink_and_overwritten(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let store = &db.store;
    assert_eq!(store.audit_sink_cursor("syslog").await.unwrap(), None);
    store.save_audit_sink_cursor("syslog", SinkCursor { next_idx: 5, checkpoint_size: None }).await.unwrap();
    assert_eq!(store.audit_sink_cursor("syslog").await.unwrap(), Some(SinkCursor { next_idx: 5, checkpoint_size: None }));
    store.save_audit_sink_cursor("syslog", SinkCursor { next_idx: 9_000_000_000, checkpoint_size: Some(8_999_999_999) }).await.unwrap();
    assert_eq!(
        store.audit_sink_cursor("syslog").await.unwrap(),
        Some(SinkCursor { next_idx: 9_000_000_000, checkpoint_size: Some(8_999_999_999) })
    );
    // Another sink has a cursor of its own.
    assert_eq!(store.audit_sink_cursor("other").await.unwrap(), None);
    store.save_audit_sink_cursor("other", SinkCursor { next_idx: 1, checkpoint_size: Some(1) }).await.unwrap();
    assert_eq!(store.audit_sink_cursor("syslog").await.unwrap().unwrap().next_idx, 9_000_000_000);
}

async fn sink_cursor_updates_record_no_audit_event(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let before = db.store.audit_size().await.unwrap();
    for i in 0..3 {
        db.store.save_audit_sink_cursor("syslog", SinkCursor { next_idx: i, checkpoint_size: None }).await.unwrap();
    }
    assert_eq!(db.store.audit_size().await.unwrap(), before);
}
