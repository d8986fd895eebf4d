//! Active/standby instances on one PostgreSQL: which one leads.
//!
//! Several instances share one database and one configuration. Exactly one,
//! the leader, holds the XMPP session and calls Enedis; the others (standbys)
//! serve the consent pages, `/healthz` and `/metrics`, and wait. Leadership is
//! the PostgreSQL advisory lock `(LOCK_CLASS, LOCK_LEADER)`, held by a session
//! on a connection of its own (`Postgres::dedicated_connection`, outside the
//! pool): the lock lives exactly as long as that session, so a leader that dies
//! (kill -9, power cut, `pg_terminate_backend`, a server restart) releases it
//! with its session, and a standby blocked in `pg_advisory_lock` gets it at
//! that instant. With SQLite nothing of this runs: the agent always leads.
//!
//! Fencing. Two leaders must never answer. A leader learns that it lost its
//! session when the connection ends (the server closed it) or when the
//! heartbeat (`SELECT 1` every [`HEARTBEAT_EVERY`], answered within
//! [`HEARTBEAT_TIMEOUT`]) fails, so at most [`FENCE_WITHIN`] after the server
//! ended the session; it then stops serving XMPP and Enedis at once (every
//! running command abandoned, the stream dropped, pushes and housekeeping
//! aborted: `daemon::run`) and waits for the lock again, a standby. The
//! server may end the session without the leader knowing at once (a network
//! partition, a PostgreSQL failover): so a standby that takes the lock waits
//! [`TAKEOVER_GRACE`]
//! (longer than [`FENCE_WITHIN`]) before it serves, unless the previous leader
//! said it handed over cleanly (below). The lock connection also asks the
//! server to drop it within about ten seconds of silence (TCP keepalives and
//! `tcp_user_timeout`), so that a partitioned leader, fenced by its heartbeat
//! within [`FENCE_WITHIN`], does not keep the lock for the kernel's default two
//! hours.
//!
//! Clean handover. On SIGTERM (or when its store writes fail while a standby
//! waits) the leader finishes its running commands, closes its XMPP stream,
//! writes its quota ledger, then sends `NOTIFY` on
//! [`CHANNEL`] ([`HANDED_OVER`]) and closes the lock connection. A standby
//! LISTENs on its lock connection before it waits for the lock; notifications
//! reach it in commit order, and every new leader sends [`TAKEN`] as soon as it
//! holds the lock: so when the last notification a standby received before
//! getting the lock is [`HANDED_OVER`], the previous leader stopped serving
//! before it let go, and the standby serves at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::metrics::Metrics;
use crate::store::postgres::{LOCK_CLASS, LOCK_LEADER, Postgres, message};
use crate::store::{Probe, Store};

/// How often the leader checks that its lock connection still answers.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a heartbeat may take before the leader counts its lock as lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a leader serves after the server ended its lock session: a
/// heartbeat sent just after the end times out this much later.
pub const FENCE_WITHIN: Duration = Duration::from_secs(3);
/// How long a new leader waits before serving when it cannot tell that the
/// previous one stopped ([`FENCE_WITHIN`] and a margin).
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);
/// Pause before a standby connects again after its lock connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// The NOTIFY channel of leadership changes.
pub const CHANNEL: &str = "quoalise_agent_leader";
/// Sent by a leader that stopped serving and is about to release the lock.
pub const HANDED_OVER: &str = "handed over";
/// Sent by a leader as soon as it holds the lock.
pub const TAKEN: &str = "taken";
/// Exit status (EX_TEMPFAIL) of a leader that stopped leading but could not
/// stand by in the same process (its XMPP session did not stop as asked):
/// systemd (`Restart=on-failure`) starts it again, as a standby.
pub const EXIT_NOT_LEADING: u8 = 75;

/// What this instance is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the XMPP session and calls Enedis.
    Leader,
    /// Serves the web pages and waits for the lock.
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// The instance's role, shared by `/healthz`, `/metrics` (`quoalise_agent_leader`)
/// and the consent notifier. Cheap to clone.
#[derive(Clone)]
pub struct RoleCell {
    leading: Arc<AtomicBool>,
    metrics: Metrics,
}

impl RoleCell {
    pub fn new(role: Role, metrics: Metrics) -> RoleCell {
        let cell = RoleCell {
            leading: Arc::new(AtomicBool::new(false)),
            metrics,
        };
        cell.set(role);
        cell
    }

    pub fn get(&self) -> Role {
        if self.leading.load(Ordering::SeqCst) {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    pub fn set(&self, role: Role) {
        let leading = role == Role::Leader;
        self.leading.store(leading, Ordering::SeqCst);
        self.metrics.set_leader(leading);
    }
}

type Client = Arc<tokio_postgres::Client>;
type Lost = Arc<watch::Sender<Option<String>>>;

/// The leader's lock: a session holding `(LOCK_CLASS, LOCK_LEADER)`. Dropping
/// it closes the connection, which releases the lock.
pub struct Lock {
    /// `None` once handed over.
    client: Option<Client>,
    /// Drives the connection; says why in `lost` when it ends.
    connection: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    /// Turns to why the lock is (or may be) lost: the first reason only.
    lost: watch::Receiver<Option<String>>,
    /// The server process of the session (`pg_stat_activity.pid`), for the logs.
    pub pid: i32,
    /// Whether the previous leader said it had handed over cleanly.
    pub handed_over: bool,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        // The client goes with the heartbeat's handle, which ends the
        // connection and the lock; should anything hold on, this ends it.
        self.connection.abort();
    }
}

impl Lock {
    /// Waits until the lock is lost (the connection ended, or the heartbeat
    /// failed); why. Cancellation-safe.
    pub async fn lost(&mut self) -> String {
        lost(&mut self.lost).await
    }

    /// How many instances wait for the lock now (standbys), from `pg_locks`.
    pub async fn standbys_waiting(&self) -> Result<i64, String> {
        let client = self.client.as_ref().ok_or("the lock was handed over")?;
        let count = client.query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2 \
             AND NOT granted",
            &[&LOCK_CLASS, &LOCK_LEADER],
        );
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, count).await {
            Ok(Ok(row)) => row.try_get(0).map_err(|e| message(&e)),
            Ok(Err(e)) => Err(message(&e)),
            Err(_) => Err(format!(
                "no answer within {} s",
                HEARTBEAT_TIMEOUT.as_secs()
            )),
        }
    }

    /// Says on [`CHANNEL`] that this leader stopped serving ([`HANDED_OVER`]),
    /// then closes the connection, which releases the lock: call it once the
    /// XMPP stream is closed and the quota ledger written.
    pub async fn hand_over(mut self) {
        self.heartbeat.abort();
        let _ = (&mut self.heartbeat).await;
        if let Some(client) = self.client.take() {
            let sql = format!("SELECT pg_notify('{CHANNEL}', '{HANDED_OVER}')");
            let notify = client.simple_query(&sql);
            match tokio::time::timeout(HEARTBEAT_TIMEOUT, notify).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %message(&e), "leader: cannot say that it hands over; the standby waits for the grace period")
                }
                Err(_) => tracing::warn!(
                    "leader: the lock connection did not answer; the standby waits for the grace period"
                ),
            }
            // The last handle: the driver sends Terminate and the session ends.
            drop(client);
        }
        if tokio::time::timeout(HEARTBEAT_TIMEOUT, &mut self.connection)
            .await
            .is_err()
        {
            self.connection.abort();
        }
        tracing::info!(
            pid = self.pid,
            "leader: lock released; a standby takes over"
        );
    }
}

/// Waits until `rx` holds a reason.
async fn lost(rx: &mut watch::Receiver<Option<String>>) -> String {
    match rx.wait_for(Option::is_some).await {
        Ok(why) => why.clone().unwrap_or_default(),
        Err(_) => "the lock connection's tasks ended".to_owned(),
    }
}

/// Records `why` unless a reason is there already.
fn set_lost(tx: &Lost, why: String) {
    tx.send_if_modified(|current| {
        if current.is_some() {
            return false;
        }
        *current = Some(why);
        true
    });
}

/// Drives a connection: forwards the payloads of [`CHANNEL`]'s notifications
/// to `notifications`, and says why in `lost` when it ends.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notifications: mpsc::UnboundedSender<String>,
    lost: Lost,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let why = loop {
        match futures::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                let _ = notifications.send(n.payload().to_owned());
            }
            Some(Ok(AsyncMessage::Notice(notice))) => {
                tracing::debug!(
                    severity = notice.severity(),
                    message = notice.message(),
                    "lock connection: notice from PostgreSQL"
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("the lock connection ended: {}", message(&e)),
            None => break "the lock connection was closed".to_owned(),
        }
    };
    set_lost(&lost, why);
}

/// Checks that the lock connection answers, every [`HEARTBEAT_EVERY`]; says
/// why in `lost` when it does not.
async fn heartbeat(client: Client, lost: Lost) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let why =
            match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => format!("the lock connection failed: {}", message(&e)),
                Err(_) => format!(
                    "the lock connection did not answer within {} s",
                    HEARTBEAT_TIMEOUT.as_secs()
                ),
            };
        set_lost(&lost, why);
        return;
    }
}

/// Session settings of a lock connection: waiting for the lock is never
/// cancelled by a timeout of the database or role, and the server drops the
/// session within about ten seconds of silence from the agent (keepalives
/// every 2 s after 5 s, 3 missed; `tcp_user_timeout` for unacknowledged data).
const SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3";

/// Waits until this instance holds the leader's lock and may serve: connects
/// (again after a pause whenever the connection fails), waits in
/// `pg_advisory_lock`, then, unless the previous leader handed over cleanly,
/// waits [`TAKEOVER_GRACE`] with the lock. Does not ask while `store`'s writes
/// fail, and gives the lock back when its write probe fails: an instance that
/// cannot write would not lead for long.
pub async fn acquire(pg: Postgres, store: Store) -> Lock {
    let mut said_failing = false;
    loop {
        if let Some(failure) = store.write_failure() {
            if !said_failing {
                said_failing = true;
                tracing::warn!(store = %failure, "standby: not asking for the leader's lock while the store's writes fail");
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        said_failing = false;
        let mut lock = match wait_for_lock(&pg).await {
            Ok(lock) => lock,
            Err(why) => {
                tracing::warn!(error = %why, retry_secs = RECONNECT_PAUSE.as_secs(), "standby: the lock connection failed; connecting again");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if !lock.handed_over {
            tracing::info!(
                pid = lock.pid,
                grace_secs = TAKEOVER_GRACE.as_secs(),
                "leader: lock taken; the previous leader did not say it handed over: waiting the grace period before serving, so that it has stopped"
            );
            tokio::select! {
                () = tokio::time::sleep(TAKEOVER_GRACE) => {}
                why = lock.lost() => {
                    tracing::warn!(error = %why, "leader: lock lost before serving; waiting again");
                    drop(lock);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let probe = store.call(|s| Ok(s.probe_writes())).await;
        if !matches!(probe, Ok(Probe::Written | Probe::Busy)) {
            let failure = store
                .write_failure()
                .map_or_else(|| format!("{probe:?}"), |f| f.to_string());
            tracing::warn!(store = %failure, "leader: the store refuses writes; giving the lock back");
            drop(lock);
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        return lock;
    }
}

/// One connection's wait for the lock: the lock, or why the connection failed.
async fn wait_for_lock(pg: &Postgres) -> Result<Lock, String> {
    let (client, connection) = pg.dedicated_connection().await.map_err(|e| e.to_string())?;
    let client: Client = Arc::new(client);
    let (lost_tx, mut lost_rx) = watch::channel(None::<String>);
    let lost_tx: Lost = Arc::new(lost_tx);
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel();
    let connection = tokio::spawn(drive(connection, notify_tx, lost_tx.clone()));
    // From here on, an early return drops the client: the connection ends.
    let on_connection = |e: tokio_postgres::Error| message(&e);
    let setup = async {
        client.batch_execute(SESSION).await.map_err(on_connection)?;
        // PostgreSQL 12 and later; older servers keep the keepalives only.
        if let Err(e) = client.batch_execute("SET tcp_user_timeout = 10000").await {
            tracing::debug!(error = %message(&e), "lock connection: no tcp_user_timeout");
        }
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(on_connection)
    };
    tokio::select! {
        r = setup => r?,
        why = lost(&mut lost_rx) => { connection.abort(); return Err(why) }
    }
    tracing::info!("standby: waiting for the leader's lock");
    let take = client.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_LEADER],
    );
    tokio::select! {
        r = take => { r.map_err(on_connection)?; }
        why = lost(&mut lost_rx) => { connection.abort(); return Err(why) }
    }
    // A round trip: the notifications sent before the lock was ours have been
    // forwarded once its answer is here (the connection reads in order).
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(on_connection)?;
    let mut last = None;
    while let Ok(payload) = notify_rx.try_recv() {
        last = Some(payload);
    }
    let handed_over = last.as_deref() == Some(HANDED_OVER);
    client
        .simple_query(&format!("SELECT pg_notify('{CHANNEL}', '{TAKEN}')"))
        .await
        .map_err(on_connection)?;
    tracing::info!(
        pid,
        previous_handed_over = handed_over,
        "leader: lock taken"
    );
    let heartbeat = tokio::spawn(heartbeat(client.clone(), lost_tx));
    Ok(Lock {
        client: Some(client),
        connection,
        heartbeat,
        lost: lost_rx,
        pid,
        handed_over,
    })
}
