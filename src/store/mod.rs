//! The agent's durable state, in one SQLite file (`store.path`).
//!
//! What a crash must not lose lives here: consents, and for the v3/v4 generations each
//! consent's refresh token. The file runs in WAL mode with `synchronous=FULL`, so a
//! committed transaction survives a power cut (audit rows and cached readings, written
//! on every request, are the exception: see [`without_fsync`]), and every write is one
//! transaction, so
//! a crash at any instant leaves either the old or the new state. The schema is
//! versioned ([`migrations`]); other parts of the agent add their tables there.
//!
//! [`Store`] is a cheap-to-clone handle. Its methods are synchronous (the admin command
//! line calls them directly); async code goes through [`Store::call`], which runs them
//! on tokio's blocking pool so the runtime never waits on the disk, or, for the short
//! statements of every request, through [`Store::call_now`], which runs them at once
//! on a second connection that never waits for a lock.

pub mod access_services;
pub mod audit;
pub mod backup;
pub mod consents;
pub mod health;
pub mod ledger;
pub mod migrations;
pub mod oauth;
mod operations;
pub mod outbox;
pub mod postgres;
pub mod readings;
mod sql_row;
pub mod subscriptions;

pub use access_services::{AccessService, NewAccessService, SgeDataType};
pub use audit::{
    Access, AccessBasis, AccessError, AccessOutcome, AuditError, AuditFilter, AuditRecord, Subject,
};
pub use consents::{
    Civility, Consent, ConsentState, ConsentUpstream, NewConsent, NewSgeConsent, PrmUpstream,
    SgeDeclaration, SgeHolder, StoredTokens, TokenSet,
};
pub use health::{Probe, WriteFailure};
pub use ledger::{QuotaCall, QuotaLedger};
pub use outbox::QueuedNotification;
pub use subscriptions::{SubscribeError, Subscription};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use crate::config::Secret;

/// How long a write waits for another process holding the database lock (e.g. the
/// admin command line while the agent runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a store operation failed. Messages name the operation and never hold token
/// values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("store: cannot {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store: migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the store has schema version {found}, newer than this build knows ({known}): run a newer quoalise-agent or restore a backup"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("store: {0}")]
    Invalid(String),
    #[error("store: cannot {op}: {}", postgres::message(source))]
    Postgres {
        op: &'static str,
        #[source]
        source: ::postgres::Error,
    },
    #[error(
        "store: migration {version} ({name}) failed: {}",
        postgres::message(source)
    )]
    PostgresMigration {
        version: i64,
        name: &'static str,
        #[source]
        source: ::postgres::Error,
    },
    /// No connection to the PostgreSQL server within a few seconds.
    #[error("store: PostgreSQL unreachable: {0}")]
    Unreachable(String),
    #[error("store: no consent with id {0}")]
    NoSuchConsent(i64),
    #[error("store: the blocking task failed: {0}")]
    Task(String),
    #[error("store: cannot {0}")]
    Write(String),
    /// The file system refuses to open `path` for writing (read-only mount,
    /// immutable file, permissions): the open connections may still write, but a
    /// restart could not.
    #[error("store: {path} cannot be opened for writing: {reason}")]
    NotWritable { path: PathBuf, reason: String },
}

impl StoreError {
    /// A mapper for `map_err` that names the operation.
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { op, source }
    }

    /// SQLite refused because another connection holds a lock it needs (only
    /// [`Store::call_now`]'s connection, which does not wait, gets this in practice).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
}

/// A handle on the store; clones share its connections. One interface, two
/// databases: the SQLite file of `store.path` ([`Sqlite`], the default) or the
/// PostgreSQL of `store.url` ([`postgres::Postgres`]). Each operation is written
/// once per database and listed once in [`dispatch!`]; the same test suite
/// (tests/store) runs against both.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Whether writes succeed ([`health`]), shared by every handle.
    health: Arc<health::WriteHealth>,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(Sqlite),
    Postgres(postgres::Postgres),
}

/// The SQLite store: one file, WAL, its own connections.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
    /// This handle's statements use the connection of [`Store::call_now`].
    now: bool,
}

struct Inner {
    path: PathBuf,
    /// The connection of the process. A std `Mutex` is right here: it is only ever
    /// taken on a blocking thread (or in the command line), never across an `.await`,
    /// and SQLite serialises writers anyway.
    conn: Mutex<Connection>,
    /// The connection of [`Store::call_now`], opened on first use (`None`: it could
    /// not be opened, and everything goes through `conn`). Its busy timeout is zero:
    /// a statement that would wait for a lock fails at once instead.
    now: OnceLock<Option<Mutex<Connection>>>,
    /// Checkpoints run on their own thread: no connection checkpoints in a commit.
    background_checkpoints: AtomicBool,
    /// Cached days read through `now`, in memory ([`readings::HotDays`]).
    hot_days: Mutex<readings::HotDays>,
    /// Whether writes succeed ([`health`]); the same as the [`Store`]'s.
    health: Arc<health::WriteHealth>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.db {
            Db::Sqlite(db) => f
                .debug_struct("Store")
                .field("path", &db.inner.path)
                .finish(),
            Db::Postgres(db) => f
                .debug_struct("Store")
                .field("postgres", &db.describe())
                .finish(),
        }
    }
}

impl Store {
    /// Open (creating if needed) the SQLite store at `path` and bring its schema up
    /// to date. A new file is created readable by its owner only: it holds refresh
    /// tokens.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let health = Arc::new(health::WriteHealth::default());
        let db = Sqlite::open(path.as_ref(), Arc::clone(&health))?;
        Ok(Store {
            db: Db::Sqlite(db),
            health,
        })
    }

    /// Connects to the PostgreSQL of `url` (TLS as its `sslmode` says, trusting
    /// the system roots and `ca_file`) and brings its schema up to date.
    pub fn connect(url: &Secret, ca_file: Option<&Path>) -> Result<Store, StoreError> {
        let db = postgres::Postgres::connect(url, ca_file)?;
        Ok(Store {
            db: Db::Postgres(db),
            health: Arc::new(health::WriteHealth::default()),
        })
    }

    /// The store the configuration names: PostgreSQL when `store.url` is set,
    /// otherwise the SQLite file of `store.path`.
    pub fn open_config(config: &crate::config::StoreConfig) -> Result<Store, StoreError> {
        match &config.url {
            Some(url) => Store::connect(url, config.ca_file.as_deref()),
            None => Store::open(&config.path),
        }
    }

    /// The SQLite store, if this is one.
    pub fn sqlite(&self) -> Option<&Sqlite> {
        match &self.db {
            Db::Sqlite(db) => Some(db),
            Db::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if this is one.
    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        match &self.db {
            Db::Postgres(db) => Some(db),
            Db::Sqlite(_) => None,
        }
    }

    /// Where the store is, for messages: the file, or the PostgreSQL server and
    /// database (never the password).
    pub fn describe(&self) -> String {
        match &self.db {
            Db::Sqlite(db) => db.path().display().to_string(),
            Db::Postgres(db) => db.describe(),
        }
    }

    /// The database file of a SQLite store.
    pub fn path(&self) -> Option<&Path> {
        self.sqlite().map(Sqlite::path)
    }

    /// See [`Sqlite::checkpoint_in_background`]; PostgreSQL checkpoints itself.
    pub fn checkpoint_in_background(&self, every: Duration) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(db) => db.checkpoint_in_background(every),
            Db::Postgres(_) => Ok(()),
        }
    }

    /// Run `f` on tokio's blocking pool, for async callers.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        self.health.observe(&result);
        result
    }

    /// Runs `f` at once, on the calling thread, when SQLite can do it without
    /// waiting; otherwise as [`Store::call`] does. For the short statements of the
    /// request path, from async code: a cached `get_history` reads the cache and
    /// writes an audit row, each in tens of microseconds, and handing each to the
    /// blocking pool and back cost more CPU than the statement (thread wake-ups on
    /// both sides: docs/agent.md).
    ///
    /// `f` runs first on a second connection whose busy timeout is zero: when another
    /// connection or process holds a lock it needs (a consent being written, the
    /// admin command line, a backup), SQLite fails at once and `f` runs again on the
    /// blocking pool, where it may wait. So `f` may run twice: when it returns a
    /// [`StoreError::is_busy`] error, nothing it did may have been committed (a
    /// statement that failed busy changed nothing; make `f` one write, or one
    /// transaction). Reads see every commit, whichever connection made it (WAL).
    ///
    /// On PostgreSQL every statement is a round trip to the server: `f` goes to
    /// the blocking pool, as with [`Store::call`].
    pub async fn call_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        if let Db::Sqlite(db) = &self.db
            && let Some(now) = db.now_handle()
        {
            let now = Store {
                db: Db::Sqlite(now),
                health: Arc::clone(&self.health),
            };
            match f(&now) {
                Err(e) if e.is_busy() => {
                    tracing::debug!(error = %e, "store busy: statement moved to the blocking pool");
                }
                done => {
                    self.health.observe(&done);
                    return done;
                }
            }
        }
        self.call(f).await
    }

    /// SQLite's own consistency check (`Ok("ok")` when the file is sound). A
    /// PostgreSQL server checks its own pages; asking it here is an error.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        match &self.db {
            Db::Sqlite(db) => db.integrity_check(),
            Db::Postgres(db) => Err(StoreError::Invalid(format!(
                "{}: integrity_check reads SQLite files; PostgreSQL checks its own pages",
                db.describe()
            ))),
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite(db) => db.schema_version(),
            Db::Postgres(db) => db.schema_version(),
        }
    }

    /// The connection of a SQLite store, for tests of its schema.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.sqlite().expect("a SQLite store").conn()
    }

    #[cfg(test)]
    fn now_handle(&self) -> Option<Store> {
        let now = self.sqlite()?.now_handle()?;
        Some(Store {
            db: Db::Sqlite(now),
            health: Arc::clone(&self.health),
        })
    }
}

impl Sqlite {
    fn open(path: &Path, health: Arc<health::WriteHealth>) -> Result<Sqlite, StoreError> {
        let path = path.to_path_buf();
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(open_err(format!(
                "the directory {} does not exist",
                parent.display()
            )));
        }
        create_private(&path).map_err(|e| open_err(e.to_string()))?;
        let mut conn = Connection::open(&path).map_err(|e| open_err(e.to_string()))?;
        configure(&conn).map_err(|e| open_err(e.to_string()))?;
        migrations::run(&mut conn)?;
        Ok(Sqlite {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                now: OnceLock::new(),
                background_checkpoints: AtomicBool::new(false),
                hot_days: Mutex::new(readings::HotDays::default()),
                health,
            }),
            now: false,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Moves WAL checkpoints off the request path, for the long-running agent.
    ///
    /// By default SQLite checkpoints inside the commit that fills the WAL past
    /// 1,000 pages: with an audit row per request that is one request in a couple
    /// of hundred, and it waits 4 to 25 ms for the copy and its fsyncs (measured
    /// here). Instead, automatic checkpoints are turned off on the store's
    /// connection and a thread with a connection of its own runs a `PASSIVE`
    /// checkpoint every `every`, which never blocks readers or writers. The thread
    /// ends with the last handle of this store.
    pub fn checkpoint_in_background(&self, every: Duration) -> Result<(), StoreError> {
        let checkpointer = Connection::open(self.path()).map_err(|e| StoreError::Open {
            path: self.path().to_path_buf(),
            reason: e.to_string(),
        })?;
        configure(&checkpointer).map_err(StoreError::sqlite("configure the checkpointer"))?;
        let store = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    std::thread::sleep(every);
                    let Some(inner) = store.upgrade() else {
                        break;
                    };
                    let checkpoint = checkpointer
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            r.get::<_, i64>(0)
                        })
                        .map_err(StoreError::sqlite("checkpoint"));
                    // A checkpoint that cannot grow the database file is a
                    // failed write like any other.
                    inner.health.observe(&checkpoint);
                    drop(inner);
                    match checkpoint {
                        Ok(_) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "store checkpoint failed; the WAL file grows until one succeeds");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| StoreError::Write(format!("start the checkpoint thread: {e}")))?;
        self.inner
            .background_checkpoints
            .store(true, Ordering::SeqCst);
        let main = self.conn();
        main.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(StoreError::sqlite("turn automatic checkpoints off"))?;
        if let Some(Some(now)) = self.inner.now.get() {
            lock(now)
                .pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(StoreError::sqlite("turn automatic checkpoints off"))?;
        }
        Ok(())
    }

    /// A handle whose statements use the connection of [`Store::call_now`], if it
    /// can be opened.
    fn now_handle(&self) -> Option<Sqlite> {
        let opened = self.inner.now.get_or_init(|| match self.open_now() {
            Ok(conn) => Some(Mutex::new(conn)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the store's second connection: every statement goes through the blocking pool");
                None
            }
        });
        opened.as_ref().map(|_| Sqlite {
            inner: Arc::clone(&self.inner),
            now: true,
        })
    }

    /// The connection of [`Store::call_now`]. Its commits are not synced
    /// (`synchronous = NORMAL`): it writes audit rows, which [`without_fsync`] allows
    /// to lose on a power cut, and SQLite refuses it any other write
    /// ([`audit_rows_only`]), so a consent or a token can never be written unsynced
    /// through it. Setting `synchronous` per write, as on the other connection,
    /// re-prepares two statements per audit row.
    fn open_now(&self) -> rusqlite::Result<Connection> {
        let mut conn = Connection::open(self.path())?;
        configure(&conn)?;
        conn.busy_timeout(Duration::ZERO)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        if self.inner.background_checkpoints.load(Ordering::SeqCst) {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        conn.authorizer(Some(audit_rows_only))?;
        Ok(conn)
    }

    /// Runs `write` on this handle's connection, for rows that may be lost on a
    /// power cut ([`without_fsync`]): audit rows and cached readings.
    pub(crate) fn relaxed_write<T, E: From<StoreError>>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self.conn();
        if self.now {
            // Never synced, and only audit rows (open_now).
            write(&conn)
        } else {
            without_fsync(&conn, || write(&conn))
        }
    }

    /// The connection of this handle (see [`lock`]), for the table modules.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        match (self.now, self.inner.now.get()) {
            (true, Some(Some(now))) => lock(now),
            _ => lock(&self.inner.conn),
        }
    }

    /// SQLite's own consistency check; `Ok("ok")` when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(StoreError::sqlite("check integrity"))?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(StoreError::sqlite("check integrity"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("check integrity"))?;
        Ok(lines.join("\n"))
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(StoreError::sqlite("read the schema version"))
    }
}

/// Locks the store's connections and in-memory state. Each is held for one
/// statement or map operation, never across an await; a panic while one was held
/// left nothing half done (rusqlite rolls back on drop), so a poisoned lock is
/// taken over.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The authorizer of [`Store::call_now`]'s connection, checked when a statement is
/// compiled (not when it runs): reads, and inserts into `audit`; no other write,
/// no schema change.
fn audit_rows_only(context: rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization {
    use rusqlite::hooks::{AuthAction, Authorization};
    match context.action {
        AuthAction::Insert {
            table_name: "audit",
        }
        | AuthAction::Read { .. }
        | AuthAction::Select
        | AuthAction::Function { .. }
        | AuthAction::Pragma { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Recursive => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

/// Create the file with mode 0600 if it does not exist yet (SQLite would use 0644, and
/// gives its -wal and -shm files the database file's mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Connection settings: WAL so readers never block the writer, `synchronous=FULL` so
/// a commit is on disk before it returns (consents and refresh tokens must survive a
/// power cut), foreign keys for the cascades, and a busy timeout for other processes.
/// Compiled statements kept per connection.
const STATEMENT_CACHE: usize = 128;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "the store could not switch to WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    // Every statement of a request's path stays compiled (rusqlite keeps 16 by
    // default; the store has more than that, and some carry triggers).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Runs `write` with `synchronous = NORMAL`, then puts `FULL` back whatever
/// happened. Only for rows that may be lost on a power cut without harm to anyone's
/// consent: audit rows and cached readings (both are committed to the WAL, so they
/// survive a crash of the agent, and reach the disk with the next synced commit or
/// checkpoint). Consents and tokens are never written here: the fsync per commit is
/// most of the CPU of a cached request (see docs/operations.md).
pub(crate) fn without_fsync<T, E: From<StoreError>>(
    conn: &Connection,
    write: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    set_synchronous(conn, "PRAGMA synchronous = NORMAL")?;
    let result = write();
    // Every other write must reach the disk before it returns.
    let restored = set_synchronous(conn, "PRAGMA synchronous = FULL");
    let value = result?;
    restored?;
    Ok(value)
}

fn set_synchronous(conn: &Connection, pragma: &'static str) -> Result<(), StoreError> {
    conn.prepare_cached(pragma)
        .and_then(|mut stmt| stmt.execute([]).map(|_| ()))
        .map_err(StoreError::sqlite("set synchronous"))
}

/// Current UTC time in seconds, the unit of every stored instant.
pub fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(store: &Store) -> i64 {
        store
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// The store error inside an audit error, so that `call_now` sees busy as busy.
    pub(super) fn store_error(e: AuditError) -> StoreError {
        match e {
            AuditError::Store(e) => e,
            AuditError::NoBasis(why) => StoreError::Invalid(why),
        }
    }

    /// An allowed access on a grant of the configuration (which this adds).
    pub(super) fn granted_access(store: &Store) -> Access {
        let prm: crate::quoalise::Prm = "30001610071843".parse().unwrap();
        store
            .sync_grants([("app@example.org", &[prm][..])])
            .unwrap();
        Access {
            at: now_seconds(),
            peer: "app@example.org".into(),
            command: "get_history".into(),
            prm: Some(prm),
            series: Some(crate::quoalise::Series::ConsumptionPower.into()),
            range: Some((0, 86_400)),
            basis: Some(AccessBasis::Grant),
            outcome: AccessOutcome::Allowed { error: None },
            upstream_calls: 0,
            duration_ms: Some(3),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn call_now_runs_at_once_unless_sqlite_would_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let store = Store::open(&path).unwrap();
        let access = granted_access(&store);
        let insert = move |s: &Store| {
            s.record_access(&access).map_err(store_error)?;
            Ok(std::thread::current().id())
        };
        let here = std::thread::current().id();
        // Nothing holds a lock: on the caller's thread.
        assert_eq!(store.call_now(insert.clone()).await.unwrap(), here);

        // Another process holds the write lock: the statement fails busy at once
        // and runs again on the blocking pool, which waits for the lock.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waiting = tokio::spawn({
            let store = store.clone();
            let insert = insert.clone();
            async move { store.call_now(insert).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "it did not wait for the lock");
        other.execute_batch("COMMIT").unwrap();
        let ran_on = waiting.await.unwrap().unwrap();
        assert_ne!(ran_on, here);
        // Each insert happened once.
        let rows: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn the_second_connection_never_waits_nor_checkpoints_in_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let pragma = |store: &Store, name: &str| -> i64 {
            store
                .conn()
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        // Opened before and after the checkpoint thread starts.
        for opened_first in [true, false] {
            let store = Store::open(dir.path().join(format!("{opened_first}.db"))).unwrap();
            let early = opened_first.then(|| store.now_handle().expect("opens"));
            store
                .checkpoint_in_background(Duration::from_secs(3600))
                .unwrap();
            let now = early.unwrap_or_else(|| store.now_handle().expect("opens"));
            assert_eq!(pragma(&now, "wal_autocheckpoint"), 0);
            assert_eq!(pragma(&now, "busy_timeout"), 0);
            // The main connection waits for other processes.
            assert_eq!(pragma(&store, "busy_timeout"), 10_000);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_second_connection_writes_audit_rows_unsynced_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let access = granted_access(&store);
        let now = store.now_handle().expect("opens");
        const NORMAL: i64 = 1;
        assert_eq!(synchronous(&now), NORMAL);
        assert_eq!(synchronous(&store), 2, "the other connection syncs");

        let id = store
            .call_now(move |s| s.record_access(&access).map_err(store_error))
            .await
            .unwrap();
        assert_eq!(store.audit(&AuditFilter::default()).unwrap()[0].id, id);
        assert_eq!(synchronous(&now), NORMAL, "left as it was");

        // A consent (or anything but an audit row) cannot be written unsynced:
        // SQLite refuses to compile the statement, and it is not retried.
        for sql in [
            "INSERT INTO grants (peer, prm) VALUES ('x@example.org', '22516914714270')",
            "DELETE FROM grants",
            "UPDATE consents SET state = 'revoked'",
            "DELETE FROM audit",
            "CREATE TABLE t (x)",
        ] {
            let err = store
                .call_now(move |s| {
                    s.conn()
                        .execute(sql, [])
                        .map_err(StoreError::sqlite("write"))
                })
                .await
                .unwrap_err();
            assert!(!err.is_busy(), "{sql}: {err}");
            assert!(err.to_string().contains("not authorized"), "{sql}: {err}");
        }
        assert_eq!(store.grants().unwrap().len(), 1);
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn checkpoints_happen_in_the_background_not_in_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let store = Store::open(&path).unwrap();
        store
            .checkpoint_in_background(Duration::from_millis(200))
            .unwrap();
        // No commit checkpoints any more (SQLite's own rule with 0)…
        let automatic: i64 = store
            .conn()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(automatic, 0);
        // …and the thread does: pages written to the WAL reach the database file.
        let db_size = || std::fs::metadata(&path).unwrap().len();
        let before = db_size();
        {
            let conn = store.conn();
            conn.execute_batch("CREATE TABLE filler (x BLOB)").unwrap();
            for _ in 0..1_500 {
                conn.execute("INSERT INTO filler VALUES (zeroblob(4096))", [])
                    .unwrap();
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while db_size() < before + 1_500 * 4096 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint: {}",
                db_size()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn relaxed_writes_put_full_sync_back_even_when_they_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        const FULL: i64 = 2;
        const NORMAL: i64 = 1;
        assert_eq!(synchronous(&store), FULL);
        let conn = store.conn();
        let seen: Result<i64, StoreError> = without_fsync(&conn, || {
            Ok(conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap())
        });
        assert_eq!(seen.unwrap(), NORMAL);
        let failed: Result<(), StoreError> = without_fsync(&conn, || {
            conn.execute("INSERT INTO no_such_table VALUES (1)", [])
                .map(|_| ())
                .map_err(StoreError::sqlite("insert"))
        });
        assert!(failed.is_err());
        drop(conn);
        assert_eq!(
            synchronous(&store),
            FULL,
            "consents written next are synced"
        );
    }
}
