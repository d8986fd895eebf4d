//! Subscriptions, on both stores (a SQLite file and a PostgreSQL database): they
//! need a valid basis to exist, keep their progress, follow a renewed consent,
//! and end with their consent or grant, all enforced by the schema (triggers),
//! whoever changes the consents.

use jiff::civil::{Date, date};
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Identifier, Prm, Series};
use quoalise_agent::store::{AccessBasis, ConsentState, NewConsent, Store, SubscribeError};

use crate::backends::{Kind, TestStore};

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

on_both! {
    fn a_subscription_needs_a_valid_basis(t: &TestStore) {
        let store = &t.store;
        let c = consent(store, PEER, &[P1], now() + 86_400);
        let other = consent(store, OTHER, &[P2], now() + 86_400);
        let power = id(P1, Series::ConsumptionPower);

        let refused = |basis, who: &str, what: &Identifier| match store.subscribe(
            who,
            what,
            basis,
            DAY,
            now(),
        ) {
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

    fn a_subscription_ends_with_its_consent_or_follows_a_renewed_one(t: &TestStore) {
        let store = &t.store;
        let old = consent(store, PEER, &[P1, P2], now() + 86_400);
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
        let renewed = consent(store, PEER, &[P1], now() + 365 * 86_400);
        store.set_consent_state(old, ConsentState::Revoked).unwrap();
        let subs = store.subscriptions_of(PEER).unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].identifier, power);
        assert_eq!(subs[0].basis, AccessBasis::Consent(renewed));

        // Expiry through the housekeeping ends it too.
        store.expire_consents(now() + 400 * 86_400).unwrap();
        assert!(store.subscriptions().unwrap().is_empty());

        // Deleting a consent (`consents remove`) as well.
        let c = consent(store, PEER, &[P1], now() + 86_400);
        store
            .subscribe(PEER, &power, AccessBasis::Consent(c), DAY, now())
            .unwrap();
        assert!(store.remove_consent(c).unwrap());
        assert!(store.subscriptions().unwrap().is_empty());
    }

    fn a_grant_removed_from_the_configuration_ends_its_subscriptions(t: &TestStore) {
        let store = &t.store;
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
        let c = consent(store, PEER, &[P2], now() + 86_400);
        store.sync_grants(std::iter::empty()).unwrap();
        let subs = store.subscriptions().unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].identifier, daily);
        assert_eq!(subs[0].basis, AccessBasis::Consent(c));
    }

    /// Subscribing again checks the basis again: refused, the subscription
    /// stays as it was, progress and basis.
    fn subscribing_again_without_a_basis_keeps_the_subscription(t: &TestStore) {
        let store = &t.store;
        store.sync_grants([(PEER, &[prm(P1)][..])]).unwrap();
        let power = id(P1, Series::ConsumptionPower);
        let (sub, _) = store
            .subscribe(PEER, &power, AccessBasis::Grant, DAY, now())
            .unwrap();
        assert!(store.mark_delivered(sub.id, date(2026, 12, 31)).unwrap());
        match store.subscribe(PEER, &power, AccessBasis::Consent(999), DAY, now()) {
            Err(SubscribeError::NoBasis(m)) => assert!(m.contains("cannot subscribe"), "{m}"),
            other => panic!("expected NoBasis, got {other:?}"),
        }
        let subs = t.reopen().subscriptions().unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].id, sub.id);
        assert_eq!(subs[0].basis, AccessBasis::Grant);
        assert_eq!(subs[0].delivered_through, date(2026, 12, 31));
        assert_eq!(subs[0].created_at, sub.created_at);
        // A new subscription after it gets a new id.
        let (other, new) = store
            .subscribe(
                PEER,
                &id(P1, Series::ConsumptionEnergyDaily),
                AccessBasis::Grant,
                DAY,
                now(),
            )
            .unwrap();
        assert!(new);
        assert!(other.id > sub.id);
        // Ended by id, once.
        assert!(store.end_subscription(sub.id).unwrap());
        assert!(!store.end_subscription(sub.id).unwrap());
        assert!(
            !store.mark_delivered(sub.id, date(2027, 1, 1)).unwrap(),
            "gone"
        );
        assert_eq!(store.subscriptions().unwrap(), vec![other]);
    }

    /// A deleted consent hands its subscriptions to the peer's renewed consent;
    /// consents that end together in one housekeeping pass end what has no
    /// other basis.
    fn deleted_or_expired_together_consents_hand_over_or_end(t: &TestStore) {
        let store = &t.store;
        let power = id(P1, Series::ConsumptionPower);
        let daily = id(P2, Series::ConsumptionEnergyDaily);
        let old = consent(store, PEER, &[P1, P2], now() + 86_400);
        let renewed = consent(store, PEER, &[P1], now() + 3 * 86_400);
        let longest = consent(store, PEER, &[P1], now() + 365 * 86_400);
        store
            .subscribe(PEER, &power, AccessBasis::Consent(old), DAY, now())
            .unwrap();
        store
            .subscribe(PEER, &daily, AccessBasis::Consent(old), DAY, now())
            .unwrap();
        assert!(store.remove_consent(old).unwrap());
        let subs = store.subscriptions().unwrap();
        assert_eq!(subs.len(), 1, "{subs:?}");
        assert_eq!(subs[0].identifier, power);
        assert_eq!(
            subs[0].basis,
            AccessBasis::Consent(longest),
            "the usable consent valid longest"
        );

        // Two consents of the peer expire in one statement: the subscription
        // on one of them cannot move to the other.
        store
            .set_consent_state(longest, ConsentState::Revoked)
            .unwrap();
        assert_eq!(
            store.subscriptions().unwrap()[0].basis,
            AccessBasis::Consent(renewed)
        );
        let spare = consent(store, PEER, &[P1], now() + 2 * 86_400);
        assert_eq!(store.expire_consents(now() + 4 * 86_400).unwrap(), 2);
        assert!(store.subscriptions().unwrap().is_empty(), "{spare}");
    }
}

/// PostgreSQL: instances subscribing the same peer to the same identifier at
/// the same moment make one subscription (the others find it and keep it).
#[test]
fn subscribing_from_several_instances_at_once_makes_one_subscription() {
    let t = TestStore::new(Kind::Postgres);
    t.store.sync_grants([(PEER, &[prm(P1)][..])]).unwrap();
    let power = id(P1, Series::ConsumptionPower);
    for _ in 0..5 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = t.reopen();
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    store
                        .subscribe(PEER, &power, AccessBasis::Grant, DAY, now())
                        .map(|(sub, new)| (sub.id, new))
                })
            })
            .collect();
        let results: Vec<(i64, bool)> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let subs = t.store.subscriptions().unwrap();
        assert_eq!(subs.len(), 1, "{results:?}");
        assert!(
            results.iter().all(|(id, _)| *id == subs[0].id),
            "{results:?}"
        );
        assert!(
            results.iter().filter(|(_, new)| *new).count() <= 1,
            "{results:?}"
        );
        assert!(t.store.unsubscribe(PEER, &power).unwrap());
    }
}
