//! The readings cache on both databases: a day is written only while a consent
//! of its generation or a grant covers its PRM, read back by range and by any
//! handle, replaced when written again, and deleted by the database itself as
//! soon as nothing covers its PRM any more (a consent revoked or removed, a
//! grant removed), or by the housekeeping purge once a consent has run out.

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{Prm, Reading, Series, Step};
use quoalise_agent::store::readings::{CacheStats, encode_day};
use quoalise_agent::store::{NewConsent, Store};

use jiff::civil::{Date, date};

use crate::backends::TestStore;

const P1: &str = "30001610071843";
const P2: &str = "22516914714270";
const GEN: ApiGeneration = ApiGeneration::Api2026;
const SERIES: Series = Series::ConsumptionPower;
const DAY: i64 = 86_400;

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A consent of `generation` for `prms`, valid from yesterday for a year.
fn consent(store: &Store, generation: ApiGeneration, prms: &[&str]) -> i64 {
    store
        .add_consent(
            &NewConsent {
                generation,
                owner: "app@example.org".into(),
                prms: prms.iter().map(|p| prm(p)).collect(),
                autorisation_id: None,
                valid_from: now() - DAY,
                valid_until: now() + 365 * DAY,
            },
            None,
        )
        .unwrap()
        .id
}

/// `n` half-hours of `day`, one of them missing, values starting at `base`.
fn readings(day: Date, base: f64) -> Vec<Reading> {
    let start = day.in_tz("Europe/Paris").unwrap().timestamp().as_second();
    (0..48)
        .map(|i| Reading {
            start: start + i * 1800,
            step: Step::PT30M,
            value: (i != 7).then_some(base + i as f64),
        })
        .collect()
}

fn days(from: Date, n: i16, base: f64) -> Vec<(Date, Vec<Reading>)> {
    (0..n)
        .map(|i| {
            let day = from.checked_add(jiff::ToSpan::days(i)).unwrap();
            (day, readings(day, base + f64::from(i)))
        })
        .collect()
}

/// The cached days of `prm` (generation 2026, consumption power) in
/// `[from, to[`, with their readings.
fn cached(store: &Store, prm_: &str, from: Date, to: Date) -> Vec<(Date, Vec<Reading>)> {
    store
        .cached_days(GEN, &prm(prm_), SERIES, from, to)
        .unwrap()
        .into_iter()
        .map(|(day, readings)| (day, readings.to_vec()))
        .collect()
}

fn cache_rows(t: &TestStore) -> i64 {
    t.store.cache_stats().unwrap().days as i64
}

const OCT1: Date = date(2026, 10, 1);

on_both! {
    fn days_are_cached_only_while_a_consent_or_grant_covers_their_prm(t: &TestStore) {
        let store = &t.store;
        let week = days(OCT1, 7, 100.0);
        // Nothing covers P1: nothing is written.
        assert!(!store.is_covered(GEN, &prm(P1), now()).unwrap());
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &week, now()).unwrap(), 0);
        assert_eq!(store.cache_stats().unwrap(), CacheStats::default());

        // A consent of another generation does not cover it either.
        consent(store, ApiGeneration::V5, &[P1]);
        assert!(!store.is_covered(GEN, &prm(P1), now()).unwrap());
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &week, now()).unwrap(), 0);

        // One of this generation does, at the instants of its validity only.
        consent(store, GEN, &[P1]);
        assert!(store.is_covered(GEN, &prm(P1), now()).unwrap());
        assert!(!store.is_covered(GEN, &prm(P1), now() - 2 * DAY).unwrap());
        assert!(!store.is_covered(GEN, &prm(P2), now()).unwrap());
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &week, now() - 2 * DAY).unwrap(), 0);
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &week, now()).unwrap(), 7);

        // Read back by range, [from, to[, by this handle and another.
        let oct = |d| date(2026, 10, d);
        assert_eq!(cached(store, P1, oct(2), oct(5)), week[1..4].to_vec());
        assert_eq!(cached(&t.reopen(), P1, oct(1), oct(31)), week);
        assert!(cached(store, P1, oct(8), oct(31)).is_empty());
        assert!(cached(store, P2, oct(1), oct(31)).is_empty());
        assert!(store
            .cached_days(GEN, &prm(P1), Series::ProductionPower, oct(1), oct(31))
            .unwrap()
            .is_empty());
        assert!(store
            .cached_days(ApiGeneration::V5, &prm(P1), SERIES, oct(1), oct(31))
            .unwrap()
            .is_empty());

        // A grant covers P2 for every generation.
        store.sync_grants([("app@example.org", &[prm(P2)][..])]).unwrap();
        assert!(store.is_covered(ApiGeneration::V4, &prm(P2), 0).unwrap());
        assert_eq!(store.cache_days(ApiGeneration::V4, &prm(P2), SERIES, &week[..2], 0).unwrap(), 2);
        let bytes: usize = week.iter().map(|(_, r)| encode_day(r).len()).sum::<usize>()
            + week[..2].iter().map(|(_, r)| encode_day(r).len()).sum::<usize>();
        assert_eq!(
            store.cache_stats().unwrap(),
            CacheStats { days: 9, bytes: bytes as u64 }
        );
    }

    /// A day written again replaces the first (each day given counts as
    /// written, the last of a key winning); several series go in one write.
    fn days_written_again_replace_the_first(t: &TestStore) {
        let store = &t.store;
        consent(store, GEN, &[P1]);
        let first = days(OCT1, 3, 1.0);
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &first, now()).unwrap(), 3);
        let mut again = days(OCT1, 2, 50.0);
        again.push((OCT1, readings(OCT1, 99.0)));
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &again, now()).unwrap(), 3);
        let all = cached(store, P1, OCT1, date(2026, 11, 1));
        assert_eq!(
            all,
            vec![again[2].clone(), again[1].clone(), first[2].clone()],
            "the last written of each day"
        );
        assert_eq!(store.cache_stats().unwrap().days, 3);

        // An answer of several series: each series' days, together.
        let daily = vec![(OCT1, vec![Reading { start: 1_790_000_000, step: Step::Day, value: Some(12.5) }])];
        let written = store
            .cache_series_days(
                GEN,
                &prm(P1),
                &[(Series::ConsumptionEnergyDaily, daily.clone()), (Series::ProductionPower, first.clone())],
                now(),
            )
            .unwrap();
        assert_eq!(written, 4);
        let read = |series| {
            t.reopen()
                .cached_days(GEN, &prm(P1), series, OCT1, date(2026, 11, 1))
                .unwrap()
                .into_iter()
                .map(|(d, r)| (d, r.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(read(Series::ConsumptionEnergyDaily), daily);
        assert_eq!(read(Series::ProductionPower), first);
        assert_eq!(read(SERIES), all, "the other series untouched");
        // Uncovered, nothing of any series.
        assert_eq!(
            store
                .cache_series_days(GEN, &prm(P2), &[(SERIES, first.clone()), (Series::ProductionPower, first)], now())
                .unwrap(),
            0
        );
        assert_eq!(store.cache_stats().unwrap().days, 7);
    }

    /// The database deletes the cached days of a PRM when its last consent of
    /// their generation ends or is removed, or its last grant is removed; not
    /// while another consent or a grant still covers it.
    fn days_go_with_the_last_consent_or_grant_of_their_prm(t: &TestStore) {
        let store = &t.store;
        let a = consent(store, GEN, &[P1, P2]);
        let b = consent(store, GEN, &[P1]);
        let week = days(OCT1, 7, 1.0);
        for p in [P1, P2] {
            assert_eq!(store.cache_days(GEN, &prm(p), SERIES, &week, now()).unwrap(), 7);
        }
        let end = date(2026, 11, 1);

        // Revoked on another handle: P2 had only `a`, P1 still has `b`.
        t.reopen().revoke_consent(a).unwrap();
        assert!(cached(store, P2, OCT1, end).is_empty());
        assert_eq!(cached(store, P1, OCT1, end), week);

        // A grant keeps P1's days when `b` is removed…
        store.sync_grants([("app@example.org", &[prm(P1)][..])]).unwrap();
        assert!(store.remove_consent(b).unwrap());
        assert_eq!(cached(store, P1, OCT1, end), week);
        // …until the grant goes too.
        store.sync_grants(std::iter::empty::<(&str, &[Prm])>()).unwrap();
        assert!(cached(store, P1, OCT1, end).is_empty());
        assert_eq!(cache_rows(t), 0);

        // A consent removed while it is the only one covers nothing any more.
        let c = consent(store, GEN, &[P2]);
        assert_eq!(store.cache_days(GEN, &prm(P2), SERIES, &week, now()).unwrap(), 7);
        assert!(store.remove_consent(c).unwrap());
        assert_eq!(cache_rows(t), 0);
    }

    /// A consent that merely runs past its end changes no row: housekeeping's
    /// purge deletes the days nothing covers at its instant.
    fn the_purge_takes_the_days_of_consents_run_out(t: &TestStore) {
        let store = &t.store;
        consent(store, GEN, &[P1]);
        consent(store, ApiGeneration::V5, &[P2]);
        store.sync_grants([("app@example.org", &[prm(P2)][..])]).unwrap();
        let week = days(OCT1, 7, 1.0);
        assert_eq!(store.cache_days(GEN, &prm(P1), SERIES, &week, now()).unwrap(), 7);
        assert_eq!(store.cache_days(ApiGeneration::V5, &prm(P2), SERIES, &week[..3], now()).unwrap(), 3);
        assert_eq!(store.purge_cache(now()).unwrap(), 0, "everything covered now");
        let in_two_years = now() + 2 * 365 * DAY;
        assert!(!store.is_covered(GEN, &prm(P1), in_two_years).unwrap());
        assert_eq!(store.purge_cache(in_two_years).unwrap(), 7, "P2 has its grant");
        assert!(cached(store, P1, OCT1, date(2026, 11, 1)).is_empty());
        assert_eq!(cache_rows(t), 3);
    }

    /// A stored day that cannot be decoded is left out, and the others served
    /// (it will be fetched again).
    fn an_unreadable_day_is_left_out(t: &TestStore) {
        let store = &t.store;
        consent(store, GEN, &[P1]);
        let week = days(OCT1, 3, 1.0);
        store.cache_days(GEN, &prm(P1), SERIES, &week, now()).unwrap();
        let sql = "UPDATE cache_days SET readings = substr(readings, 1, 5) WHERE day = '2026-10-02'";
        match t.postgres_client() {
            Some(mut client) => assert_eq!(client.execute(sql, &[]).unwrap(), 1),
            None => assert_eq!(
                rusqlite::Connection::open(t.dir.path().join("agent.db"))
                    .unwrap()
                    .execute(sql, [])
                    .unwrap(),
                1
            ),
        }
        assert_eq!(
            cached(store, P1, OCT1, date(2026, 11, 1)),
            vec![week[0].clone(), week[2].clone()]
        );
    }
}

on_both! {
    /// A revocation on one agent racing a cache write on another: once both
    /// are done, no day of the revoked consent's PRM is left (the write saw
    /// the consent and its days are purged by the revocation, or it saw the
    /// revocation and wrote nothing).
    fn a_revocation_racing_a_cache_write_leaves_no_day(t: &TestStore) {
        let writer = t.reopen();
        for round in 0..20 {
            let id = consent(&t.store, GEN, &[P1]);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let write = {
                let barrier = std::sync::Arc::clone(&barrier);
                let writer = writer.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    writer
                        .cache_days(GEN, &prm(P1), SERIES, &days(OCT1, 30, 1.0), now())
                        .unwrap()
                })
            };
            barrier.wait();
            t.store.revoke_consent(id).unwrap();
            let written = write.join().unwrap();
            assert_eq!(cache_rows(t), 0, "round {round}: {written} days written, left behind");
        }
    }
}
