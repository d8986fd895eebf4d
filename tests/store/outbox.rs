//! The queue of consent notifications a standby leaves for the leader: queued on
//! one instance, read and removed on another (the same database opened anew),
//! oldest first, and bad input refused before anything is written.

use quoalise_agent::store::QueuedNotification;

on_both! {
    fn notifications_queued_on_one_instance_are_read_and_removed_on_another(t: &TestStore) {
        let standby = &t.store;
        let prms = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        let first = standby
            .queue_notification(
                "app@example.org",
                &prms(&["22516914714270", "30001610071843"]),
                Some("peer <state>"),
                1_000,
            )
            .unwrap();
        let second = standby
            .queue_notification("other@example.org", &prms(&["22516914714270"]), None, 1_001)
            .unwrap();
        assert_ne!(first, second);

        let leader = t.reopen();
        let queued = leader.queued_notifications(10).unwrap();
        assert_eq!(
            queued,
            vec![
                QueuedNotification {
                    id: first,
                    peer: "app@example.org".into(),
                    usage_points: prms(&["22516914714270", "30001610071843"]),
                    peer_state: Some("peer <state>".into()),
                    queued_at: 1_000,
                },
                QueuedNotification {
                    id: second,
                    peer: "other@example.org".into(),
                    usage_points: prms(&["22516914714270"]),
                    peer_state: None,
                    queued_at: 1_001,
                },
            ]
        );
        // A batch is the oldest first.
        assert_eq!(leader.queued_notifications(1).unwrap(), queued[..1]);

        assert!(leader.remove_notification(first).unwrap());
        assert!(!leader.remove_notification(first).unwrap(), "already removed");
        assert_eq!(standby.queued_notifications(10).unwrap(), queued[1..]);

        // What is not a notification is refused, and nothing is queued.
        for bad in [prms(&[]), prms(&["2251691471427"]), prms(&["22516914714270,1"])] {
            let err = standby
                .queue_notification("app@example.org", &bad, None, 1_002)
                .unwrap_err();
            assert!(err.to_string().contains("queue a consent notification"), "{err}");
        }
        assert_eq!(leader.queued_notifications(10).unwrap().len(), 1);
    }
}
