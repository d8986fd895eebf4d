//! The SGE access services the agent ordered, in the store, on both databases:
//! recorded per consent, listed, found when their consent ended (revoked, expired,
//! past its validity) and not before, stopped or failing to stop (failures tried
//! again after those never tried), refused for a Data Connect consent, and
//! keeping their consent from being deleted.

use jiff::civil::date;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::Prm;
use quoalise_agent::store::{
    Civility, ConsentState, NewAccessService, NewConsent, NewSgeConsent, SgeDataType,
    SgeDeclaration, SgeHolder, Store, now_seconds,
};

const PEER: &str = "app@example.org";
const P1: &str = "30001610071843";
const P2: &str = "22516914714270";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn sge_consent(store: &Store, prms: &[&str], valid_until: i64) -> i64 {
    store
        .add_sge_consent(&NewSgeConsent {
            owner: PEER.into(),
            prms: prms.iter().map(|p| prm(p)).collect(),
            valid_from: now_seconds() - 86_400,
            valid_until,
            declaration: SgeDeclaration {
                holder: SgeHolder::Person {
                    civility: Some(Civility::Mme),
                    last_name: "Dupont".into(),
                    first_name: Some("Jeanne".into()),
                },
                mandate: "MANDAT-1".into(),
            },
        })
        .unwrap()
        .id
}

fn service(consent_id: i64, p: &str, data: SgeDataType, id: &str) -> NewAccessService {
    NewAccessService {
        consent_id,
        prm: prm(p),
        data,
        service_id: id.into(),
        affair_id: Some(format!("A{id}")),
        end: date(2027, 6, 1),
    }
}

fn ids(services: &[quoalise_agent::store::AccessService]) -> Vec<&str> {
    services.iter().map(|s| s.service_id.as_str()).collect()
}

on_both! {
    fn services_are_recorded_found_when_their_consent_ends_and_stopped(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let year = now + 365 * 86_400;
        let kept = sge_consent(store, &[P1, P2], year);
        let revoked = sge_consent(store, &[P1], year);
        let expired = sge_consent(store, &[P2], year);
        let past = sge_consent(store, &[P2], now + 3600);

        let recorded = store
            .record_access_service(&service(kept, P1, SgeDataType::LoadCurve, "101"))
            .unwrap();
        assert_eq!(recorded.prm, prm(P1));
        assert_eq!(recorded.data, SgeDataType::LoadCurve);
        assert_eq!(recorded.affair_id.as_deref(), Some("A101"));
        assert_eq!(recorded.end, date(2027, 6, 1));
        assert!(recorded.is_active() && recorded.stop_error.is_none());
        assert!((now..now + 60).contains(&recorded.ordered_at));
        store
            .record_access_service(&service(kept, P2, SgeDataType::Index, "102"))
            .unwrap();
        store
            .record_access_service(&service(revoked, P1, SgeDataType::LoadCurve, "201"))
            .unwrap();
        store
            .record_access_service(&service(revoked, P1, SgeDataType::Energy, "202"))
            .unwrap();
        store
            .record_access_service(&service(expired, P2, SgeDataType::MaxPower, "301"))
            .unwrap();
        store
            .record_access_service(&service(past, P2, SgeDataType::LoadCurve, "401"))
            .unwrap();
        // A serviceSouscritId is recorded once.
        assert!(
            store
                .record_access_service(&service(kept, P1, SgeDataType::Energy, "101"))
                .is_err()
        );
        assert_eq!(
            ids(&store.access_services_of_consent(kept).unwrap()),
            ["101", "102"]
        );
        assert!(
            store
                .has_active_access_service(kept, &prm(P1), SgeDataType::LoadCurve)
                .unwrap()
        );
        assert!(
            !store
                .has_active_access_service(kept, &prm(P1), SgeDataType::Index)
                .unwrap()
        );

        // While every consent is in force, nothing is to stop.
        assert!(store.access_services_to_stop(now, 10).unwrap().is_empty());
        store.revoke_consent(revoked).unwrap();
        store
            .set_consent_state(expired, ConsentState::Expired)
            .unwrap();
        // Revoked, expired, and (an hour later) past its validity though still active.
        assert_eq!(
            ids(&store.access_services_to_stop(now, 10).unwrap()),
            ["201", "202", "301"]
        );
        assert_eq!(
            ids(&store.access_services_to_stop(now + 7200, 10).unwrap()),
            ["201", "202", "301", "401"]
        );
        assert_eq!(
            ids(&store.access_services_to_stop(now + 7200, 2).unwrap()),
            ["201", "202"],
            "bounded"
        );

        // A failed stop stays to stop, after those never tried; a stop clears it.
        assert!(
            store
                .record_access_stop_failure("201", "SGE unreachable", now)
                .unwrap()
        );
        let again = store.access_services_to_stop(now + 7200, 10).unwrap();
        assert_eq!(ids(&again), ["202", "301", "401", "201"]);
        assert_eq!(again[3].stop_error.as_deref(), Some("SGE unreachable"));
        assert_eq!(again[3].stop_failed_at, Some(now));
        assert!(store.mark_access_service_stopped("201", now + 1).unwrap());
        assert!(
            !store.mark_access_service_stopped("201", now + 2).unwrap(),
            "stopped once"
        );
        let stopped = store.access_service("201").unwrap().unwrap();
        assert_eq!(stopped.stopped_at, Some(now + 1));
        assert!(stopped.stop_error.is_none() && !stopped.is_active());
        assert!(
            !store
                .record_access_stop_failure("201", "late", now + 3)
                .unwrap(),
            "a stopped service records no failure"
        );
        assert_eq!(
            ids(&store.access_services_to_stop(now + 7200, 10).unwrap()),
            ["202", "301", "401"]
        );
        assert_eq!(
            ids(&store.active_access_services().unwrap()),
            ["101", "102", "202", "301", "401"]
        );
        assert!(stopped.ended_by(date(2027, 6, 1)) && !stopped.ended_by(date(2027, 5, 31)));
    }

    fn only_sge_consents_have_services_and_keep_them_on_record(t: &TestStore) {
        let store = &t.store;
        let now = now_seconds();
        let data_connect = store
            .add_consent(
                &NewConsent {
                    generation: ApiGeneration::Api2026,
                    owner: PEER.into(),
                    prms: vec![prm(P1)],
                    autorisation_id: None,
                    valid_from: now,
                    valid_until: now + 86_400,
                },
                None,
            )
            .unwrap();
        let e = store
            .record_access_service(&service(data_connect.id, P1, SgeDataType::LoadCurve, "1"))
            .unwrap_err();
        assert!(
            e.to_string().contains("only a consent of generation sge"),
            "{e}"
        );
        let e = store
            .record_access_service(&service(999, P1, SgeDataType::LoadCurve, "1"))
            .unwrap_err();
        assert!(e.to_string().contains("sge"), "{e}");
        let e = store
            .record_access_service(&service(data_connect.id, P1, SgeDataType::LoadCurve, ""))
            .unwrap_err();
        assert!(e.to_string().contains("1 to 15 characters"), "{e}");

        let sge = sge_consent(store, &[P1], now + 86_400);
        store
            .record_access_service(&service(sge, P1, SgeDataType::LoadCurve, "7"))
            .unwrap();
        // The record of what was ordered at Enedis keeps its consent.
        assert!(store.remove_consent(sge).is_err());
        assert_eq!(store.access_services_of_consent(sge).unwrap().len(), 1);

        // The operator's names and SGE's codes.
        assert_eq!(
            SgeDataType::parse("load-curve"),
            Some(SgeDataType::LoadCurve)
        );
        assert_eq!(SgeDataType::parse("PMAX"), Some(SgeDataType::MaxPower));
        assert_eq!(SgeDataType::parse("energie"), Some(SgeDataType::Energy));
        assert_eq!(SgeDataType::parse("curve"), None);
        assert_eq!(
            SgeDataType::ALL.map(SgeDataType::code),
            ["CDC", "IDX", "PMAX", "ENERGIE"]
        );
    }
}
