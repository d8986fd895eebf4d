//! Subscriptions in a real SQLite store: they need a valid basis to exist, keep
//! their progress, follow a renewed consent, and end with their consent or grant,
//! all enforced by the schema (triggers), whoever changes the consents.

use jiff::civil::{Date, date};
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Identifier, Prm, Series};
use quoalise_agent::store::{AccessBasis, ConsentState, NewConsent, Store, SubscribeError};

const PEER: &str = "app@example.org";
const OTHER: &str = "other@example.org";
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn id(p: &str, series: Series) -> Identifier {
    Identifier::new(prm(p), series)
}

fn consent(store: &Store, owner: &str, prms: &[&str], until: i64) -> i64 {
    store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: owner.into(),
                prms: prms.iter().map(|p| prm(p)).collect(),
                autorisation_id: None,
                valid_from: now() - 86_400,
                valid_until: until,
            },
            None,
        )
        .unwrap()
        .id
}

const DAY: Date = date(2026, 11, 27);

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    (dir, store)
}

#[test]
fn a_subscription_needs_a_valid_basis() {
    let (_dir, store) = store();
    let c = consent(&store, PEER, &[P1], now() + 86_400);
    let other = consent(&store, OTHER, &[P2], now() + 86_400);
    let power = id(P1, Series::ConsumptionPower);

    let refused =
        |basis, who: &str, what: &Identifier| match store.subscribe(who, what, basis, DAY, now()) {
            Err(SubscribeError::NoBasis(m)) => assert!(m.contains("cannot subscribe"), "{m}"),
            other => panic!("expected NoBasis, got {other:?}"),
        };
    refused(AccessBasis::Consent(other), PEER, &power);
    refused(AccessBasis::Consent(c), OTHER, &power);
    refused(
        AccessBasis::Consent(c),
        PEER,
        &id(P2, Series::ConsumptionPower),
    );
    refused(AccessBasis::Grant, PEER, &power);
    store.sync_grants([(PEER, &[prm(P2)][..])]).unwrap();
    let (sub, new) = store
        .subscribe(
            PEER,
            &id(P2, Series::ProductionPower),
            AccessBasis::Grant,
            DAY,
            now(),
        )
        .unwrap();
    assert!(new);
    assert_eq!(sub.basis, AccessBasis::Grant);
    let (sub, new) = store
        .subscribe(PEER, &power, AccessBasis::Consent(c), DAY, now())
        .unwrap();
    assert!(new);
    assert_eq!(sub.delivered_through, DAY);

    // Subscribing again keeps the progress.
    assert!(store.mark_delivered(sub.id, date(2026, 11, 28)).unwrap());
    assert!(
        !store.mark_delivered(sub.id, DAY).unwrap(),
        "never backwards"
    );
    let (again, new) = store
        .subscribe(PEER, &power, AccessBasis::Consent(c), DAY, now())
        .unwrap();
    assert!(!new);
    assert_eq!(again.id, sub.id);
    assert_eq!(again.delivered_through, date(2026, 11, 28));
    assert_eq!(store.subscriptions_of(PEER).unwrap().len(), 2);
    assert!(store.subscriptions_of(OTHER).unwrap().is_empty());

    assert!(store.unsubscribe(PEER, &power).unwrap());
    assert!(!store.unsubscribe(PEER, &power).unwrap());
    assert_eq!(store.subscriptions().unwrap().len(), 1);
}

#[test]
fn a_subscription_ends_with_its_consent_or_follows_a_renewed_one() {
    let (_dir, store) = store();
    let old = consent(&store, PEER, &[P1, P2], now() + 86_400);
    let power = id(P1, Series::ConsumptionPower);
    let daily = id(P2, Series::ConsumptionEnergyDaily);
    store
        .subscribe(PEER, &power, AccessBasis::Consent(old), DAY, now())
        .unwrap();
    store
        .subscribe(PEER, &daily, AccessBasis::Consent(old), DAY, now())
        .unwrap();
    // A renewed consent covering P1 only: revoking the old one moves P1's
    // subscription to it and ends P2's.
    let renewed = consent(&store, PEER, &[P1], now() + 365 * 86_400);
    store.set_consent_state(old, ConsentState::Revoked).unwrap();
    let subs = store.subscriptions_of(PEER).unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].identifier, power);
    assert_eq!(subs[0].basis, AccessBasis::Consent(renewed));

    // Expiry through the housekeeping ends it too.
    store.expire_consents(now() + 400 * 86_400).unwrap();
    assert!(store.subscriptions().unwrap().is_empty());

    // Deleting a consent (`consents remove`) as well.
    let c = consent(&store, PEER, &[P1], now() + 86_400);
    store
        .subscribe(PEER, &power, AccessBasis::Consent(c), DAY, now())
        .unwrap();
    assert!(store.remove_consent(c).unwrap());
    assert!(store.subscriptions().unwrap().is_empty());
}

#[test]
fn a_grant_removed_from_the_configuration_ends_its_subscriptions() {
    let (_dir, store) = store();
    store
        .sync_grants([(PEER, &[prm(P1), prm(P2)][..])])
        .unwrap();
    let power = id(P1, Series::ConsumptionPower);
    let daily = id(P2, Series::ConsumptionEnergyDaily);
    store
        .subscribe(PEER, &power, AccessBasis::Grant, DAY, now())
        .unwrap();
    store
        .subscribe(PEER, &daily, AccessBasis::Grant, DAY, now())
        .unwrap();
    // The peer also holds a consent for P2: its subscription moves to it.
    let c = consent(&store, PEER, &[P2], now() + 86_400);
    store.sync_grants(std::iter::empty()).unwrap();
    let subs = store.subscriptions().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].identifier, daily);
    assert_eq!(subs[0].basis, AccessBasis::Consent(c));
}
