//! The store in PostgreSQL (`store.url`), for agents that must survive the loss
//! of their machine: several instances share one database, one of them leads
//! (`crate::daemon::leader`), and a standby takes over with everything the
//! leader committed.
//!
//! Same tables, same migrations in the same order as SQLite's (their PostgreSQL
//! dialect is in each table's module here), and the same guarantees enforced by
//! the database itself: triggers refuse an allowed audit row without a valid
//! basis at its instant and any update of the trail, or delete but by a
//! retention job that says so (docs/operations.md); every write is one
//! transaction, committed (PostgreSQL syncs each commit; audit rows, as SQLite's,
//! without waiting for it: `audit.rs`) before the agent acknowledges it.
//!
//! The driver is `postgres`, the blocking face of `tokio-postgres`: the store's
//! interface is synchronous (the command line calls it directly; async code
//! goes through [`super::Store::call`], on tokio's blocking pool), with an r2d2
//! pool of connections. TLS is rustls, as everywhere in the agent: `sslmode` of
//! the URL says whether it is required, and the server's certificate is checked
//! against the system roots and `store.ca_file`.

mod access_services;
mod audit;
mod consents;
mod ledger;
pub mod migrations;
mod oauth;
mod outbox;
mod readings;
mod subscriptions;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::StoreError;
use crate::config::Secret;

/// Connections of one process. Requests hold one for a statement or a
/// transaction; the leader's lock has its own, outside the pool.
const POOL_SIZE: u32 = 8;

/// How long an operation waits for a connection (the server is down, or every
/// connection is busy) before failing with a store error.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the statements of `/healthz` (the write probe, the schema version)
/// wait for a connection: it must say that the server is unreachable well
/// within its checks' deadline ([`crate::health::DEFAULT_CHECK_TIMEOUT`]), not
/// time out itself.
const HEALTH_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The advisory lock class of the agent: `pg_advisory_lock(LOCK_CLASS, …)`.
/// ASCII "QUOA".
pub const LOCK_CLASS: i32 = 0x5155_4f41;
/// Taken around each migration, so that instances starting together migrate once.
pub const LOCK_MIGRATIONS: i32 = 1;
/// Held by the leader for as long as it leads (`crate::daemon::leader`).
pub const LOCK_LEADER: i32 = 2;

pub(crate) type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
pub(crate) type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// A PostgreSQL store; clones share the pool.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while the last handle drops ([`Inner`]'s `Drop`).
    pool: Option<Pool>,
    /// `host:port/database`, never the user's password.
    described: String,
    /// What a connection of the leader's lock needs: the same server, the same TLS.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl StoreError {
    /// A mapper for `map_err` that names the operation.
    pub(crate) fn postgres(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
        move |source| StoreError::Postgres { op, source }
    }
}

impl Postgres {
    /// Connects (failing within a few seconds when the server cannot be reached)
    /// and brings the schema up to date.
    pub fn connect(url: &Secret, ca_file: Option<&Path>) -> Result<Postgres, StoreError> {
        let config: tokio_postgres::Config =
            url.expose().parse().map_err(|e: tokio_postgres::Error| {
                StoreError::Invalid(format!("store.url is not a usable PostgreSQL URL: {e}"))
            })?;
        let described = crate::config::postgres_description(url.expose());
        let tls =
            MakeRustlsConnect::new(tls_config(ca_file).map_err(|reason| StoreError::Open {
                path: described.clone().into(),
                reason,
            })?);
        let manager =
            PostgresConnectionManager::new(postgres::Config::from(config.clone()), tls.clone());
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECTION_TIMEOUT)
            // A connection the server closed (restart, failover) is found before
            // it is handed out, not by the statement that uses it.
            .test_on_check_out(true)
            .build(manager)
            .map_err(|e| StoreError::Open {
                path: described.clone().into(),
                reason: format!(
                    "cannot connect to PostgreSQL: {}",
                    why_not(&config, &tls).unwrap_or_else(|| e.to_string())
                ),
            })?;
        let store = Postgres {
            inner: Arc::new(Inner {
                pool: Some(pool),
                described,
                config,
                tls,
            }),
        };
        migrations::run(&mut *store.conn()?)?;
        Ok(store)
    }

    /// `postgres://user@host:port/database`, without the password.
    pub fn describe(&self) -> String {
        self.inner.described.clone()
    }

    /// A connection of the pool, for one statement or one transaction.
    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        self.conn_within(CONNECTION_TIMEOUT)
    }

    /// A connection of the pool, waiting at most `wait` for one.
    fn conn_within(&self, wait: Duration) -> Result<Conn, StoreError> {
        let pool = self.inner.pool.as_ref().ok_or_else(|| {
            StoreError::Invalid(format!("{}: the store is closed", self.inner.described))
        })?;
        pool.get_timeout(wait)
            .map_err(|e| StoreError::Unreachable(format!("{}: {e}", self.inner.described)))
    }

    /// A new connection outside the pool, with its driver task, for the leader's
    /// advisory lock: the lock lives exactly as long as this connection.
    pub async fn dedicated_connection(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        StoreError,
    > {
        let mut config = self.inner.config.clone();
        config.application_name("quoalise-agent leader lock");
        // A peer gone silent (a partition) is noticed within seconds.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.connect_timeout(CONNECTION_TIMEOUT);
        config
            .connect(self.inner.tls.clone())
            .await
            .map_err(|e| StoreError::Unreachable(format!("{}: {e}", self.inner.described)))
    }

    /// The schema version (the last migration applied). Waits at most
    /// [`HEALTH_CONNECTION_TIMEOUT`] for a connection: `/healthz` asks it.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        migrations::current_version(&mut *self.conn_within(HEALTH_CONNECTION_TIMEOUT)?)
    }

    /// Commits a write, for [`super::health`]: the server accepts writes. Waits
    /// at most [`HEALTH_CONNECTION_TIMEOUT`] for a connection. A connection lost
    /// on the way (the server stopped between the pool's check and the write)
    /// is reported as the server being unreachable, as a refused one is.
    pub(crate) fn probe_once(&self) -> Result<(), StoreError> {
        let op = "probe writes";
        let mut conn = self.conn_within(HEALTH_CONNECTION_TIMEOUT)?;
        let written = conn.transaction().and_then(|mut tx| {
            tx.execute(
                "UPDATE store_probe SET probed_at = $1",
                &[&super::now_seconds()],
            )?;
            tx.commit()
        });
        written.map_err(|e| {
            if super::health::is_connection_lost(&e) {
                StoreError::Unreachable(format!("{}: {op}: {}", self.inner.described, message(&e)))
            } else {
                StoreError::postgres(op)(e)
            }
        })
    }
}

impl Drop for Inner {
    /// The blocking driver closes a connection by running its own small
    /// runtime, which panics inside an async context; the last handle of a
    /// store may well be dropped there (a daemon's context at shutdown, a
    /// test's handle). So the pool, and every connection it holds, is dropped
    /// on a thread of its own, waited for.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let closed = std::thread::Builder::new()
                .name("store-close".into())
                .spawn(move || drop(pool))
                .map(|thread| thread.join());
            if !matches!(closed, Ok(Ok(()))) {
                tracing::warn!("the PostgreSQL connections could not be closed cleanly");
            }
        }
    }
}

/// What went wrong, with the server's own message (the driver's `Display` says
/// only "db error"). Never holds a parameter's value.
pub fn message(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let mut text = format!("{} ({code})", db.message());
        // The detail of a constraint's violation (class 23) quotes the row or
        // the key ("Failing row contains (…)", "Key (state)=(…)"): a token, an
        // OAuth state. The message names the constraint; that is enough.
        if let Some(detail) = db.detail().filter(|_| !code.starts_with("23")) {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a connection fails, with its causes (the pool keeps only the driver's
/// one-line summary, such as "error performing TLS handshake"); `None` if a
/// connection now succeeds.
fn why_not(config: &tokio_postgres::Config, tls: &MakeRustlsConnect) -> Option<String> {
    let mut config = postgres::Config::from(config.clone());
    config.connect_timeout(CONNECTION_TIMEOUT);
    config.connect(tls.clone()).err().map(|e| message(&e))
}

/// rustls with the system roots and `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot use is skipped, as the XMPP client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("store.ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("store.ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("store.ca_file {}: {e}", path.display()))?;
        }
    }
    Ok(ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
