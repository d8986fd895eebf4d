//! The consent flow's state on both databases: descriptions peers register (one
//! per distinct content and owner), and OAuth states, consumed once whoever
//! races for them (threads of one agent, or two agents on one database), never
//! honoured once expired, recognised as used for a day, capped in number.

use std::sync::{Arc, Barrier};

use quoalise_agent::store::Store;
use quoalise_agent::store::oauth::{
    Consumed, MAX_LIVE_STATES, NewDescription, OAuthState, STATE_RETENTION_SECS,
};

fn description(owner: &str, text: &str) -> NewDescription {
    NewDescription {
        owner: owner.into(),
        name: "Mon appli".into(),
        logo_url: None,
        description: text.into(),
    }
}

fn state(value: &str, now: i64) -> OAuthState {
    OAuthState {
        state: value.into(),
        description_id: "d1".into(),
        owner: "app@example.org".into(),
        duration: "P1Y".into(),
        peer_state: Some("peer-42".into()),
        redirect_uri: Some("https://app.example.org/linky/".into()),
        created_at: now,
        expires_at: now + 1800,
    }
}

/// Runs `f` on each store at once (threads released together); the results in
/// the stores' order.
fn at_once<T: Send + 'static>(
    stores: Vec<Store>,
    f: impl Fn(&Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(stores.len()));
    let f = Arc::new(f);
    let handles: Vec<_> = stores
        .into_iter()
        .map(|store| {
            let barrier = Arc::clone(&barrier);
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                barrier.wait();
                f(&store)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

on_both! {
    fn identical_descriptions_of_one_owner_share_their_id(t: &TestStore) {
        let store = &t.store;
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("id{n}")
        };
        let a = store
            .save_description(&description("app@example.org", "<p>x</p>"), &mut next, 10)
            .unwrap();
        let again = store
            .save_description(&description("app@example.org", "<p>x</p>"), &mut next, 20)
            .unwrap();
        assert_eq!(a, again);
        let other_owner = store
            .save_description(&description("b@example.org", "<p>x</p>"), &mut next, 30)
            .unwrap();
        assert_ne!(other_owner.id, a.id);
        let mut with_logo = description("app@example.org", "<p>x</p>");
        with_logo.logo_url = Some("https://app.example.org/logo.png".into());
        let with_logo = store.save_description(&with_logo, &mut next, 40).unwrap();
        assert_ne!(with_logo.id, a.id);
        // The same with a logo is found again too (a NULL and a value compared
        // as values).
        let mut same_logo = description("app@example.org", "<p>x</p>");
        same_logo.logo_url = Some("https://app.example.org/logo.png".into());
        assert_eq!(
            store.save_description(&same_logo, &mut next, 50).unwrap(),
            with_logo
        );
        assert_eq!(store.description(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(store.description("nope").unwrap(), None);
        assert_eq!(
            store.descriptions_of("app@example.org").unwrap(),
            vec![a, with_logo],
            "oldest first"
        );
        // Seen by another handle (a restarted agent, another instance).
        assert_eq!(t.reopen().descriptions_of("b@example.org").unwrap(), vec![other_owner]);
    }

    /// Descriptions of one instant are listed by id, byte by byte (upper case
    /// before lower case), whatever the database's collation.
    fn descriptions_of_one_instant_are_ordered_by_id(t: &TestStore) {
        for (id, text) in [("b", "1"), ("B", "2"), ("a", "3"), ("_", "4"), ("A", "5")] {
            t.store
                .save_description(&description("app@example.org", text), || id.into(), 10)
                .unwrap();
        }
        let ids: Vec<String> = t
            .store
            .descriptions_of("app@example.org")
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["A", "B", "_", "a", "b"]);
    }

    /// Two agents saving the same description at once make one.
    fn descriptions_saved_at_once_are_one(t: &TestStore) {
        for round in 0..10 {
            let text = format!("<p>{round}</p>");
            let ids = at_once(vec![t.store.clone(), t.reopen()], move |store| {
                let id = format!("{:?}", std::thread::current().id());
                store
                    .save_description(&description("app@example.org", &text), || id, 10)
                    .unwrap()
                    .id
            });
            assert_eq!(ids[0], ids[1], "round {round}");
        }
        assert_eq!(t.store.descriptions_of("app@example.org").unwrap().len(), 10);
    }

    fn a_state_is_consumed_once_and_then_recognised_as_used(t: &TestStore) {
        let store = &t.store;
        assert!(store
            .create_oauth_state(&state("s1", 1_000), MAX_LIVE_STATES)
            .unwrap());
        assert_eq!(store.live_oauth_states(1_000).unwrap(), 1);
        match store.consume_oauth_state("s1", 1_010).unwrap() {
            Consumed::Fresh(s) => assert_eq!(s, state("s1", 1_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.consume_oauth_state("s1", 1_020).unwrap(),
            Consumed::AlreadyUsed { consumed_at: 1_010 }
        );
        // On another handle too.
        assert_eq!(
            t.reopen().consume_oauth_state("s1", 1_030).unwrap(),
            Consumed::AlreadyUsed { consumed_at: 1_010 }
        );
        assert_eq!(
            store.consume_oauth_state("s2", 1_020).unwrap(),
            Consumed::Unknown
        );
        assert_eq!(store.live_oauth_states(1_020).unwrap(), 0);
        // A state is created once.
        assert!(store
            .create_oauth_state(&state("s1", 1_040), MAX_LIVE_STATES)
            .is_err());
    }

    fn a_state_that_ends_before_it_starts_is_refused(t: &TestStore) {
        let mut bad = state("s1", 1_000);
        bad.expires_at = bad.created_at;
        assert!(t.store.create_oauth_state(&bad, MAX_LIVE_STATES).is_err());
        assert_eq!(
            t.store.consume_oauth_state("s1", 1_000).unwrap(),
            Consumed::Unknown
        );
    }

    fn an_expired_state_is_not_honoured(t: &TestStore) {
        let store = &t.store;
        store
            .create_oauth_state(&state("s1", 1_000), MAX_LIVE_STATES)
            .unwrap();
        assert_eq!(
            store.consume_oauth_state("s1", 2_800).unwrap(),
            Consumed::Expired { expires_at: 2_800 }
        );
        // Still not usable afterwards.
        assert_eq!(
            store.consume_oauth_state("s1", 2_801).unwrap(),
            Consumed::Expired { expires_at: 2_800 }
        );
    }

    fn dead_states_are_purged_after_a_day(t: &TestStore) {
        let store = &t.store;
        store
            .create_oauth_state(&state("old", 1_000), MAX_LIVE_STATES)
            .unwrap();
        store
            .create_oauth_state(&state("used", 1_000), MAX_LIVE_STATES)
            .unwrap();
        store.consume_oauth_state("used", 1_100).unwrap();
        let later = 1_000 + 1800 + STATE_RETENTION_SECS + 1;
        store
            .create_oauth_state(&state("new", later), MAX_LIVE_STATES)
            .unwrap();
        assert_eq!(
            store.consume_oauth_state("old", later).unwrap(),
            Consumed::Unknown
        );
        assert_eq!(
            store.consume_oauth_state("used", later).unwrap(),
            Consumed::Unknown
        );
    }

    fn racing_consumers_get_one_fresh_state(t: &TestStore) {
        t.store
            .create_oauth_state(&state("s1", 1_000), MAX_LIVE_STATES)
            .unwrap();
        let outcomes = at_once(vec![t.store.clone(); 8], |store| {
            store.consume_oauth_state("s1", 1_001).unwrap()
        });
        let fresh = outcomes
            .iter()
            .filter(|c| matches!(c, Consumed::Fresh(_)))
            .count();
        assert_eq!(fresh, 1, "{outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|c| matches!(c, Consumed::Fresh(_) | Consumed::AlreadyUsed { consumed_at: 1_001 })));
    }

    /// Two agents on one database (the redirect replayed to both, at once):
    /// one of them gets the state, the other is told it was used.
    fn two_agents_racing_for_a_state_get_it_once(t: &TestStore) {
        let other = t.reopen();
        for round in 0..20 {
            let value = format!("state-{round}");
            t.store
                .create_oauth_state(&state(&value, 1_000), MAX_LIVE_STATES)
                .unwrap();
            let outcomes = at_once(vec![t.store.clone(), other.clone()], move |store| {
                store.consume_oauth_state(&value, 1_001).unwrap()
            });
            let fresh = outcomes
                .iter()
                .filter(|c| matches!(c, Consumed::Fresh(_)))
                .count();
            assert_eq!(fresh, 1, "round {round}: {outcomes:?}");
            assert!(
                outcomes.contains(&Consumed::AlreadyUsed { consumed_at: 1_001 }),
                "round {round}: {outcomes:?}"
            );
        }
    }

    fn live_states_are_capped(t: &TestStore) {
        let store = &t.store;
        assert!(store.create_oauth_state(&state("a", 1_000), 2).unwrap());
        assert!(store.create_oauth_state(&state("b", 1_000), 2).unwrap());
        assert!(!store.create_oauth_state(&state("c", 1_000), 2).unwrap());
        assert_eq!(
            store.consume_oauth_state("c", 1_001).unwrap(),
            Consumed::Unknown
        );
        // A consumed one frees its place.
        store.consume_oauth_state("a", 1_001).unwrap();
        assert!(store.create_oauth_state(&state("c", 1_001), 2).unwrap());
    }

    /// Agents creating states at once never pass the cap together.
    fn the_cap_holds_for_agents_creating_at_once(t: &TestStore) {
        let stores = vec![t.store.clone(), t.reopen(), t.store.clone(), t.reopen()];
        let created = at_once(stores, |store| {
            (0..10)
                .filter(|i| {
                    let value = format!("{:?}-{i}", std::thread::current().id());
                    store.create_oauth_state(&state(&value, 1_000), 15).unwrap()
                })
                .count()
        });
        assert_eq!(created.iter().sum::<usize>(), 15, "{created:?}");
        assert_eq!(t.store.live_oauth_states(1_000).unwrap(), 15);
    }
}
