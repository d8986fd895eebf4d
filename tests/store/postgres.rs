//! What only the PostgreSQL store has: its connection, TLS, schema bookkeeping,
//! migrations run once by instances starting together.

use std::sync::{Arc, Barrier};

use quoalise_agent::config::Secret;
use quoalise_agent::store::migrations::latest_version;
use quoalise_agent::store::{Store, StoreError};

use crate::common::postgres;

#[test]
fn instances_starting_together_migrate_once() {
    let url = postgres::shared().fresh_database();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                Store::connect(&Secret::new(url), None).map(|s| s.schema_version())
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap().unwrap(), latest_version());
    }
    let mut client = postgres::shared().client_of(&url);
    let rows = client
        .query(
            "SELECT version, name FROM store_migrations ORDER BY version",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len() as i64, latest_version(), "each migration once");
    let names: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    let sqlite: Vec<&str> = quoalise_agent::store::migrations::MIGRATIONS
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, sqlite);
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let port = crate::common::prosody::free_port();
    let url = format!("postgres://agent:hunter2-secret@127.0.0.1:{port}/agent");
    let started = std::time::Instant::now();
    let err = Store::connect(&Secret::new(url), None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}/agent")), "{text}");
    assert!(text.contains("connect"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    assert!(
        !format!("{err:?}").contains("hunter2"),
        "the password leaked: {err:?}"
    );
    // Within the connection timeout, not a hang.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_database_of_a_newer_build_is_refused() {
    let url = postgres::shared().fresh_database();
    drop(Store::connect(&Secret::new(url.clone()), None).unwrap());
    let mut client = postgres::shared().client_of(&url);
    client
        .execute(
            "INSERT INTO store_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)",
            &[&(latest_version() + 1)],
        )
        .unwrap();
    let err = Store::connect(&Secret::new(url), None).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found, known } if found == latest_version() + 1 && known == latest_version()),
        "{err:?}"
    );
}

on_both! {
    /// Reopened (a restarted agent, a second instance), the store is at the
    /// latest version and runs no migration again.
    fn reopened_at_the_latest_version(t: &TestStore) {
        assert_eq!(t.store.schema_version().unwrap(), latest_version());
        assert_eq!(t.reopen().schema_version().unwrap(), latest_version());
    }
}

/// A server that accepts TLS only: the store connects with `sslmode=require`
/// and `store.ca_file`; without the CA the certificate is refused, saying so;
/// without TLS the server refuses.
#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let server = postgres::PgServer::start_tls();
    let url = server.fresh_database();
    let ca = server.ca_file();

    let store = Store::connect(&Secret::new(format!("{url}?sslmode=require")), Some(&ca)).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());

    let unknown = Store::connect(&Secret::new(format!("{url}?sslmode=require")), None).unwrap_err();
    let text = unknown.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("Unknown"),
        "{text}"
    );

    let plain =
        Store::connect(&Secret::new(format!("{url}?sslmode=disable")), Some(&ca)).unwrap_err();
    let text = plain.to_string();
    assert!(
        text.contains("pg_hba.conf") || text.contains("SSL"),
        "{text}"
    );
}
