//! The same tests on both databases: [`on_both!`] turns one test into two,
//! `<name>::sqlite` (a SQLite file in a temporary directory) and
//! `<name>::postgres` (a fresh database of the shared test server,
//! tests/common/postgres.rs).

use quoalise_agent::config::Secret;
use quoalise_agent::store::Store;

use crate::common::postgres;

/// Which database a test runs on.
#[allow(dead_code)] // read by some tests only
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A store of one test, and how to open it again.
#[allow(dead_code)] // each test uses part of it
pub struct TestStore {
    pub kind: Kind,
    pub store: Store,
    /// The SQLite file's directory.
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database's URL.
    pub url: Option<String>,
}

#[allow(dead_code)]
impl TestStore {
    pub fn new(kind: Kind) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sqlite => TestStore {
                kind,
                store: Store::open(dir.path().join("agent.db")).unwrap(),
                dir,
                url: None,
            },
            Kind::Postgres => {
                let url = postgres::shared().fresh_database();
                TestStore {
                    kind,
                    store: Store::connect(&Secret::new(url.clone()), None).unwrap(),
                    dir,
                    url: Some(url),
                }
            }
        }
    }

    /// Another handle on the same data, opened anew (as a restarted agent, or
    /// a second instance, would).
    pub fn reopen(&self) -> Store {
        match &self.url {
            None => Store::open(self.dir.path().join("agent.db")).unwrap(),
            Some(url) => Store::connect(&Secret::new(url.clone()), None).unwrap(),
        }
    }

    /// A superuser client on the PostgreSQL database (to break rules the agent
    /// cannot); `None` on SQLite.
    pub fn postgres_client(&self) -> Option<::postgres::Client> {
        self.url
            .as_deref()
            .map(|url| postgres::shared().client_of(url))
    }
}

/// `on_both! { fn name(t: &TestStore) { … } }`: the test, once per database.
macro_rules! on_both {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($t:ident: &TestStore) $body:block
    )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::backends::{Kind, TestStore};

            fn body($t: &TestStore) $body

            #[test]
            fn sqlite() {
                body(&TestStore::new(Kind::Sqlite));
            }

            #[test]
            fn postgres() {
                body(&TestStore::new(Kind::Postgres));
            }
        }
    )*};
}
