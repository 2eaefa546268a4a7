//! The BAA vendor register on both backends: create, update, delete with tenancy and owner
//! checks, and the expiry check with an injected day: one `vendor.baa_expiring` event per
//! vendor, renewal date and stage, re-armed by a new renewal date; audited with codes only.

use ward_domain::registers::{BaaExpiry, BaaStatus, VendorDraft};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, user};
use ward_store::{Backend, StoreError, on_both_backends};

on_both_backends!(vendor_register_and_expiry_check);

fn signed(renewal: &str) -> VendorDraft {
    VendorDraft::parse(
        "Acme SMS Gateway",
        "Appointment reminders",
        "First names, phone numbers",
        BaaStatus::Signed,
        Some("2025-01-01"),
        Some(renewal),
    )
    .unwrap()
}

async fn vendor_register_and_expiry_check(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let patient = user(s, &o, "pat@acme", Role::Patient).await;
    let outsider = user(s, &other, "co@other", Role::ComplianceOfficer).await;

    let v = s.create_vendor(o.id, co.user_id, signed("2027-01-31"), Some(co.user_id), meta()).await.unwrap();
    assert_eq!((v.baa_status, v.owner_id, v.renewal_on.as_deref()), (BaaStatus::Signed, Some(co.user_id), Some("2027-01-31")));
    let far = s.create_vendor(o.id, co.user_id, signed("2028-01-01"), None, meta()).await.unwrap();
    let none = VendorDraft::parse("Paper shredder", "Shredding", "None", BaaStatus::Requested, None, Some("2026-12-02")).unwrap();
    s.create_vendor(o.id, co.user_id, none, None, meta()).await.unwrap();
    assert_eq!(s.vendors(o.id).await.unwrap().len(), 3);
    assert!(s.vendors(other.id).await.unwrap().is_empty());
    // The owner must be a workforce user of the organisation.
    for bad in [patient.user_id, outsider.user_id] {
        assert!(matches!(s.create_vendor(o.id, co.user_id, signed("2027-01-31"), Some(bad), meta()).await, Err(StoreError::State(_))));
    }
    // Another organisation can neither change nor delete it.
    let foreign = s.update_vendor(other.id, outsider.user_id, v.id, signed("2030-01-01"), None, meta()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));
    assert!(matches!(s.delete_vendor(other.id, outsider.user_id, v.id, meta()).await, Err(StoreError::NotFound)));

    // 2026-12-01: renewal in 61 days -> nothing; 2026-12-02: 60 days -> expiring soon, once.
    assert!(s.check_baa_expiry("2026-12-01", 60).await.unwrap().is_empty());
    let first = s.check_baa_expiry("2026-12-02", 60).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].vendor_id, first[0].expiry, first[0].days_left), (v.id, BaaExpiry::ExpiringSoon, 60));
    assert!(s.check_baa_expiry("2026-12-20", 60).await.unwrap().is_empty());
    // Past the renewal date: expired, once.
    let expired = s.check_baa_expiry("2027-02-01", 60).await.unwrap();
    assert_eq!(expired.iter().map(|n| (n.vendor_id, n.expiry, n.days_left)).collect::<Vec<_>>(), vec![(v.id, BaaExpiry::Expired, -1)]);
    assert!(s.check_baa_expiry("2027-02-02", 60).await.unwrap().is_empty());
    // Renewed: a new date re-arms the alerts.
    let renewed = s.update_vendor(o.id, co.user_id, v.id, signed("2027-03-01"), Some(co.user_id), meta()).await.unwrap();
    assert_eq!(renewed.renewal_on.as_deref(), Some("2027-03-01"));
    let again = s.check_baa_expiry("2027-02-02", 60).await.unwrap();
    assert_eq!(again.iter().map(|n| (n.vendor_id, n.expiry)).collect::<Vec<_>>(), vec![(v.id, BaaExpiry::ExpiringSoon)]);
    assert!(s.check_baa_expiry("not a day", 60).await.is_err());

    s.delete_vendor(o.id, co.user_id, far.id, meta()).await.unwrap();
    assert_eq!(s.vendors(o.id).await.unwrap().len(), 2);

    let events = s.audit_events(0, 10_000).await.unwrap();
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("vendor.change"), 5);
    assert_eq!(count("vendor.baa_expiring"), 3);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("Acme SMS") && !text.contains("phone numbers"), "register text in the audit log: {text}");
    }
}
