//! What only the PostgreSQL store has: its connection, TLS, schema bookkeeping,
//! migrations run once by instances starting together, and its health: a
//! server out of reach, a database that refuses writes.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use quoalise_agent::config::Secret;
use quoalise_agent::metrics::Metrics;
use quoalise_agent::store::migrations::latest_version;
use quoalise_agent::store::{Probe, Store, StoreError};

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

/// A server stopped under the store: the probe fails within seconds, saying
/// the server is unreachable (without the password), counted as such, and so
/// does any operation; the server back, the next probe clears the failure and
/// the pool serves again, without reopening the store.
#[test]
fn a_stopped_server_is_an_unreachable_store_until_it_is_back() {
    let server = postgres::PgServer::start();
    let url = server
        .fresh_database()
        .replacen("postgres@", "postgres:hunter2-secret@", 1);
    let store = Store::connect(&Secret::new(url), None).unwrap();
    let metrics = Metrics::new();
    store.set_metrics(&metrics);
    assert_eq!(store.probe_writes(), Probe::Written);

    server.stop("immediate");
    let started = Instant::now();
    assert_eq!(store.probe_writes(), Probe::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the probe took {:?}",
        started.elapsed()
    );
    let failure = store.write_failure().expect("remembered");
    assert_eq!(failure.kind, "unreachable");
    let expected = format!(
        "PostgreSQL unreachable: postgres://postgres@127.0.0.1:{}/",
        server.port
    );
    assert!(failure.reason.starts_with(&expected), "{failure}");
    assert!(!failure.to_string().contains("hunter2"), "{failure}");
    // An operation fails the same way, and is counted.
    let err = block_on(store.call(|s| s.live_oauth_states(0))).unwrap_err();
    assert_eq!(
        err.store_failure(),
        Some(("unreachable", "connect")),
        "{err}"
    );
    let text = metrics.render();
    for operation in ["probe", "connect"] {
        assert!(
            text.contains(&format!(
                "\nquoalise_agent_store_write_failures_total{{kind=\"unreachable\",operation=\"{operation}\"}} 1\n"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("\nquoalise_agent_store_writable 0\n"),
        "{text}"
    );

    server.restart();
    assert_eq!(store.probe_writes(), Probe::Written);
    assert_eq!(store.write_failure(), None);
    assert_eq!(store.live_oauth_states(0).unwrap(), 0);
    assert!(
        metrics
            .render()
            .contains("\nquoalise_agent_store_writable 1\n")
    );
}

/// A database that refuses writes (a standby, `default_transaction_read_only`)
/// is a `read_only` store, by SQLSTATE 25006; writable again, the probe says so.
#[test]
fn a_read_only_database_is_a_read_only_store() {
    let url = postgres::shared().fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = Store::connect(&Secret::new(url.clone()), None).unwrap();
    let mut admin = postgres::shared().client("postgres");
    // New sessions of the database are read-only; the pool's current ones end.
    // pg_terminate_backend only signals: wait until they are gone, or one of
    // them could still take the probe's write under the old setting.
    let set = |admin: &mut ::postgres::Client, setting: &str| {
        admin
            .batch_execute(&format!("ALTER DATABASE {database} {setting}"))
            .unwrap();
        let ended: Vec<i32> = admin
            .query(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&ended],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            assert!(Instant::now() < deadline, "the sessions did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    set(&mut admin, "SET default_transaction_read_only = on");
    assert_eq!(store.probe_writes(), Probe::Failed);
    let failure = store.write_failure().expect("remembered");
    assert_eq!(failure.kind, "read_only", "{failure}");
    assert!(failure.reason.contains("(25006)"), "{failure}");
    // A read still works.
    assert_eq!(store.live_oauth_states(0).unwrap(), 0);

    set(&mut admin, "RESET default_transaction_read_only");
    assert_eq!(store.probe_writes(), Probe::Written);
    assert_eq!(store.write_failure(), None);
}

/// Runs a future to its end on a runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The last handle of a PostgreSQL store dropped in async code (a daemon's
/// context at shutdown): its connections close without a panic (the blocking
/// driver runs a runtime of its own to close them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_handle_may_be_dropped_in_async_code() {
    let url = tokio::task::spawn_blocking(|| postgres::shared().fresh_database())
        .await
        .unwrap();
    let store = tokio::task::spawn_blocking(move || Store::connect(&Secret::new(url), None))
        .await
        .unwrap()
        .unwrap();
    // Several connections in the pool, returned to it.
    let versions =
        futures::future::join_all((0..4).map(|_| store.call(|s| s.schema_version()))).await;
    assert!(versions.into_iter().all(|v| v.unwrap() == latest_version()));
    // On one of the runtime's worker threads, as a task's state is.
    tokio::spawn(async move { drop(store) }).await.unwrap();
}
