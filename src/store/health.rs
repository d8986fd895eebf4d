//! Whether the store can be written, told truthfully.
//!
//! A store on a full disk, a file turned read-only or a failing device still
//! answers reads: only writes show it. So every failed statement of the store is
//! looked at where all of them pass ([`Store::call`], [`Store::call_now`], the
//! checkpoint thread): a failure for a reason of the store itself (full, read-only,
//! I/O error, corrupt; not a constraint or a busy lock) is counted in the metrics
//! and remembered, with its instant and SQLite's reason (never data: SQLite's
//! messages for these codes are fixed sentences). The store stays failing until a
//! write succeeds: the write probe ([`Store::probe_writes`]), which `/healthz` and a
//! periodic task run, so a quiet agent notices too and a repaired one recovers
//! without a restart.
//!
//! What the probe does, measured on a full tmpfs and on a file made immutable
//! (`chattr +i`) under a running agent (docs/operations.md):
//!
//! - `BEGIN IMMEDIATE; ROLLBACK`, even with an insert in between, never touches the
//!   disk and succeeds on a full disk: useless.
//! - A committed write succeeds on a full disk as long as the WAL file has room it
//!   already owns (after a checkpoint, SQLite writes the WAL again from its start);
//!   real writes do too, then both fail together once the WAL must grow. So a
//!   committed write is the truth about writes.
//! - A file made read-only under a running process (`chattr +i`): its open
//!   connections keep writing (the kernel checks at open), a new process cannot.
//!   A new connection in the same process does not see it either (SQLite reuses
//!   the descriptors it kept open for its locks), so the probe first asks the
//!   kernel whether the file and its directory may be written (`access(2)`),
//!   which sees what a restart would see.
//!
//! Then the probe commits `PRAGMA user_version` set to its own value inside `BEGIN
//! IMMEDIATE`: a real write of the header page (one WAL frame), with no table of
//! its own and no change to the data.
//!
//! On PostgreSQL the probe commits an update of the one row of `store_probe`
//! (the server syncs the commit), waiting a couple of seconds at most for a
//! connection: a server stopped or out of reach is the failure `unreachable`,
//! reported as "PostgreSQL unreachable: host:port/database: …" (the URL's
//! password is never part of it), and the server's own refusals (disk full, a
//! read-only standby, corruption) are classified by SQLSTATE
//! ([`StoreError::store_failure`]). The pool finds and drops connections the
//! server closed, so once it is back the next probe succeeds and clears the
//! failure, without a restart.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::{Db, Sqlite, Store, StoreError, lock};
use crate::metrics::Metrics;

/// How long the probe waits for another writer's lock before giving up without a
/// verdict (a busy lock is not an unwritable store).
const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the store is failing, as `/healthz` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// The first failure of the current run of failures.
    pub since: jiff::Timestamp,
    /// The last failure's kind (`disk_full`, `read_only`…).
    pub kind: &'static str,
    /// The last failure: the operation and the database's reason.
    pub reason: String,
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = jiff::Timestamp::from_second(self.since.as_second()).unwrap_or(self.since);
        write!(f, "writes failing since {since}: {}", self.reason)
    }
}

/// The write health of one store, shared by its handles.
#[derive(Default)]
pub(super) struct WriteHealth {
    failing: Mutex<Option<WriteFailure>>,
    metrics: OnceLock<Metrics>,
    last_probe: Mutex<Option<Instant>>,
}

impl WriteHealth {
    /// Looks at the outcome of a store operation: a failure of the store itself is
    /// counted and remembered. Successes change nothing (a read succeeds on a full
    /// disk); only a write known to be one clears the failure ([`Self::succeeded`]).
    pub(super) fn observe<T>(&self, result: &Result<T, StoreError>) {
        if let Err(e) = result
            && let Some((kind, operation)) = e.store_failure()
        {
            self.failed(kind, operation, e);
        }
    }

    /// Records a failed write.
    pub(super) fn failed(
        &self,
        kind: &'static str,
        operation: &'static str,
        error: &dyn std::fmt::Display,
    ) {
        let reason = error.to_string();
        let reason = reason
            .strip_prefix("store: ")
            .unwrap_or(&reason)
            .replace(['\r', '\n'], "; ");
        if let Some(metrics) = self.metrics.get() {
            metrics.store_write_failure(kind, operation);
            metrics.set_store_writable(false);
        }
        let mut failing = lock(&self.failing);
        match failing.as_mut() {
            Some(current) => {
                current.kind = kind;
                current.reason = reason;
            }
            None => {
                tracing::error!(kind, %reason, "store writes are failing: /healthz reports the store until a write succeeds");
                *failing = Some(WriteFailure {
                    since: jiff::Timestamp::now(),
                    kind,
                    reason,
                });
            }
        }
    }

    /// Records a write that succeeded: the store is writable again.
    pub(super) fn succeeded(&self) {
        if let Some(metrics) = self.metrics.get() {
            metrics.set_store_writable(true);
        }
        if let Some(was) = lock(&self.failing).take() {
            tracing::info!(since = %was.since, "store writes work again");
        }
    }
}

impl StoreError {
    /// The kind of failure and the operation when this error says the store itself
    /// cannot be written (or read back): full, read-only, I/O error, corrupt.
    /// `None` for everything else (a constraint, a busy lock, bad input).
    ///
    /// On PostgreSQL: the server out of reach (no connection within the pool's
    /// wait, a connection lost, the server shutting down or starting) is
    /// `unreachable`; the server's own verdicts by SQLSTATE are `disk_full`
    /// (53100), `insufficient_resources` (the rest of class 53: memory,
    /// connections), `read_only` (25006: a standby, or
    /// `default_transaction_read_only`) and `corrupt` (XX001, XX002).
    pub fn store_failure(&self) -> Option<(&'static str, &'static str)> {
        let (source, op) = match self {
            StoreError::Sqlite { op, source } => (source, *op),
            StoreError::Migration { source, .. } => (source, "migrate"),
            StoreError::NotWritable { .. } => return Some(("read_only", "probe")),
            StoreError::Unreachable(_) => return Some(("unreachable", "connect")),
            StoreError::Postgres { op, source } => {
                return postgres_failure_kind(source).map(|kind| (kind, *op));
            }
            StoreError::PostgresMigration { source, .. } => {
                return postgres_failure_kind(source).map(|kind| (kind, "migrate"));
            }
            _ => return None,
        };
        let rusqlite::Error::SqliteFailure(e, _) = source else {
            return None;
        };
        failure_kind(e.code).map(|kind| (kind, op))
    }
}

/// The label of an SQLite result code that says the store is unusable.
fn failure_kind(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::DiskFull => "disk_full",
        ErrorCode::ReadOnly => "read_only",
        ErrorCode::SystemIoFailure => "io_error",
        ErrorCode::CannotOpen => "cannot_open",
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => "corrupt",
        ErrorCode::PermissionDenied => "permission_denied",
        _ => return None,
    })
}

/// The label of a PostgreSQL error that says the store is unusable (see
/// [`StoreError::store_failure`]).
fn postgres_failure_kind(error: &postgres::Error) -> Option<&'static str> {
    if is_connection_lost(error) {
        return Some("unreachable");
    }
    let code = error.as_db_error()?.code().code();
    Some(match code {
        "53100" => "disk_full",
        _ if code.starts_with("53") => "insufficient_resources",
        "25006" => "read_only",
        "XX001" | "XX002" => "corrupt",
        _ => return None,
    })
}

/// Whether a PostgreSQL error says the server is out of reach rather than
/// refusing a statement: the connection closed or failed (I/O), or the server
/// shutting down (57P01 admin, 57P02 crash) or not accepting connections yet
/// (57P03).
pub(crate) fn is_connection_lost(error: &postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        return matches!(db.code().code(), "57P01" | "57P02" | "57P03");
    }
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A write was committed.
    Written,
    /// Another connection held the write lock for [`PROBE_BUSY_TIMEOUT`]: no
    /// verdict, the state is unchanged.
    Busy,
    /// The write failed; the failure is recorded.
    Failed,
}

impl Store {
    /// Counts the store's write failures in `metrics` from now on.
    pub fn set_metrics(&self, metrics: &Metrics) {
        let health = &self.health;
        if health.metrics.set(metrics.clone()).is_ok() {
            metrics.set_store_writable(lock(&health.failing).is_none());
        }
    }

    /// Why writes are failing, or `None` when the last write (or probe) succeeded.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        lock(&self.health.failing).clone()
    }

    /// Commits a write on a connection of its own (see the module's notes),
    /// recording the outcome: a success clears a failure, a failure is counted
    /// (operation `probe`) and remembered. Blocks for at most a few seconds.
    pub fn probe_writes(&self) -> Probe {
        *lock(&self.health.last_probe) = Some(Instant::now());
        match self.probe_once() {
            Ok(()) => {
                self.health.succeeded();
                Probe::Written
            }
            Err(e) if e.is_busy() => Probe::Busy,
            Err(e) => {
                let kind = e.store_failure().map_or("other", |(kind, _)| kind);
                self.health.failed(kind, "probe", &e);
                Probe::Failed
            }
        }
    }

    /// [`Store::probe_writes`] unless one ran less than `gap` ago (so that a
    /// monitor polling `/healthz` does not turn into a stream of commits).
    pub fn probe_writes_at_most_every(&self, gap: Duration) -> Option<Probe> {
        let recent = lock(&self.health.last_probe).is_some_and(|at| at.elapsed() < gap);
        (!recent).then(|| self.probe_writes())
    }

    fn probe_once(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(db) => db.probe_once(),
            Db::Postgres(db) => db.probe_once(),
        }
    }
}

impl Sqlite {
    fn probe_once(&self) -> Result<(), StoreError> {
        // SQLite keeps, and reuses for a new connection, the descriptors of
        // connections closed while others hold locks on the file: a connection of
        // this process never sees a file made read-only since. The kernel's own
        // answer, without opening (closing a descriptor of the file would drop
        // SQLite's locks), for the file and the directory its WAL is created in.
        let dir = match self.path().parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        for path in [self.path(), dir] {
            rustix::fs::access(path, rustix::fs::Access::WRITE_OK).map_err(|e| {
                StoreError::NotWritable {
                    path: path.to_path_buf(),
                    reason: std::io::Error::from(e).to_string(),
                }
            })?;
        }
        let op = "probe writes";
        let conn = Connection::open(self.path()).map_err(StoreError::sqlite(op))?;
        conn.busy_timeout(PROBE_BUSY_TIMEOUT)
            .map_err(StoreError::sqlite(op))?;
        // Synced like a consent: an I/O error of the fsync shows here.
        conn.execute_batch("PRAGMA synchronous = FULL; BEGIN IMMEDIATE")
            .map_err(StoreError::sqlite(op))?;
        let written = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .and_then(|version| conn.execute_batch(&format!("PRAGMA user_version = {version}")))
            .and_then(|()| conn.execute_batch("COMMIT"));
        if written.is_err() {
            // Nothing to keep; dropping the connection would roll back too.
            let _ = conn.execute_batch("ROLLBACK");
        }
        written.map_err(StoreError::sqlite(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: &Metrics) -> String {
        metrics.render()
    }

    /// SQLite's own "database or disk is full", without a full disk: the
    /// connection may not grow the file (`max_page_count`).
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_write_is_counted_and_remembered_until_a_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let metrics = Metrics::new();
        store.set_metrics(&metrics);
        assert_eq!(store.write_failure(), None);
        assert_eq!(store.probe_writes(), Probe::Written);
        {
            let conn = store.conn();
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn.pragma_update(None, "max_page_count", pages).unwrap();
        }
        let write = |s: &Store| {
            s.conn()
                .execute_batch("CREATE TABLE filler (x)")
                .map_err(StoreError::sqlite("write the filler"))
        };
        let err = store.call(write).await.unwrap_err();
        assert!(
            err.to_string().contains("database or disk is full"),
            "{err}"
        );

        let failure = store.write_failure().expect("remembered");
        assert_eq!(failure.kind, "disk_full");
        assert!(
            failure.to_string().starts_with("writes failing since 20")
                && failure
                    .to_string()
                    .ends_with("Z: cannot write the filler: database or disk is full"),
            "{failure}"
        );
        let text = render(&metrics);
        assert!(text.contains(
            "\nquoalise_agent_store_write_failures_total{kind=\"disk_full\",operation=\"write the filler\"} 1\n"
        ), "{text}");
        assert!(text.contains("\nquoalise_agent_store_writable 0\n"));

        // A read succeeds on a full store: it says nothing about writes.
        store.call(|s| s.schema_version()).await.unwrap();
        // Neither does an error of the data (a constraint): not counted.
        let _ = store
            .call(|s| {
                s.conn()
                    .execute_batch("INSERT INTO no_such_table VALUES (1)")
                    .map_err(StoreError::sqlite("write nowhere"))
            })
            .await
            .unwrap_err();
        assert_eq!(store.write_failure().map(|f| f.since), Some(failure.since));
        assert!(!render(&metrics).contains("write nowhere"));

        // The probe's write (the header page, on its own connection) succeeds.
        assert_eq!(store.probe_writes(), Probe::Written);
        assert_eq!(store.write_failure(), None);
        assert!(render(&metrics).contains("\nquoalise_agent_store_writable 1\n"));
        // At most one probe per gap.
        assert_eq!(
            store.probe_writes_at_most_every(Duration::from_secs(3600)),
            None
        );
    }
}
