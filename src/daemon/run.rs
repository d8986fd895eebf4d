//! `quoalise-agent run`: start-up, the running agent, reload and shutdown.
//!
//! Start-up, in order, each phase logging one line: configuration (invalid →
//! exit 1 with every problem), logging, the store, the upstream client, the
//! XMPP settings, the web socket (`web.listen`). Then READY goes to systemd (so
//! READY means: configuration valid, store open, web port bound), the web
//! server and the XMPP session start, and the main loop waits for signals:
//!
//! - SIGTERM / SIGINT: stop taking requests, let running ones finish (bounded),
//!   send unavailable presence, close the stream and the web server, exit 0;
//! - SIGHUP: reload peers and grants ([`super::reload`]), keeping the session.
//!
//! The XMPP session reconnects forever: a wrong password or an unreachable
//! server is logged clearly and retried, never fatal. `run` exits non-zero only
//! when it cannot start (invalid configuration, store or port unusable), or if
//! its web server or XMPP task ever ended on its own (so systemd restarts it).
//!
//! With a PostgreSQL store, several instances run on one database: each serves
//! the web pages, and only the one holding the leader's lock runs the XMPP
//! session and calls Enedis ([`super::leader`]). A leader that loses its lock
//! stops both at once and stands by again; should its session not stop as
//! asked, the process exits with status 75 ([`leader::EXIT_NOT_LEADING`]).
//!
//! To serve another command, add it in [`commands`]; to serve other web pages,
//! merge their router in [`web_router`]. Both receive the shared
//! [`AgentContext`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::leader::{self, EXIT_NOT_LEADING, Lock, Role, RoleCell};
use super::outbox::{self, RoleNotifier};
use super::reload::{Reloaded, reload};
use crate::agent::AgentContext;
use crate::commands::{
    GET_DAILY, GET_LOAD_CURVE, GetAuthorizeUri, GetContract, GetHistory, ListUsagePoints,
    Subscribe, Unsubscribe,
};
use crate::config::Config;
use crate::health::{Health, check_fn, check_fn_noted};
use crate::metrics::Metrics;
use crate::push::Scheduler;
use crate::quoalise::Scopes;
use crate::store::postgres::Postgres;
use crate::store::{ConsentState, QuotaCall, Store, StoreError, now_seconds};
use crate::systemd::{self, Heartbeat, Watchdog};
use crate::upstream::cache::CachedUpstream;
use crate::upstream::{self, EnedisClient, QuotaLimiter, Upstream, UpstreamError, quota_ledger};
use crate::web::{PeerDirectory, WebSettings, WebState};
use crate::xmpp::{
    CommandSet, InvalidPeerJid, SessionControl, SessionEnd, SessionState, SetupError, XmppAgent,
};

/// How often consents past their validity are marked expired and the consent
/// gauge refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Most SGE access services one housekeeping pass stops (one SGE call per PRM):
/// the rest waits for the next pass.
const STOPS_PER_PASS: usize = 20;
/// Longest wait in SGE's quota of a pass's stop calls; a call that would start
/// later fails (recorded) and is tried again at the next pass.
const STOP_QUOTA_WAIT: Duration = Duration::from_secs(20);
/// Heartbeat of the main loop when systemd runs no watchdog (nothing reads it
/// then; the loop stays the same).
const DEFAULT_BEAT: Duration = Duration::from_secs(10);
/// Longest wait for the web server to finish its connections at shutdown.
const WEB_CLOSE: Duration = Duration::from_secs(5);

/// Every ad-hoc command the agent serves, in the order disco lists them.
/// Register a new command here.
pub fn commands(ctx: Arc<AgentContext>) -> CommandSet<AgentContext> {
    CommandSet::with_shared(ctx)
        .with(GetHistory)
        .with(GET_LOAD_CURVE)
        .with(GET_DAILY)
        .with(ListUsagePoints)
        .with(GetContract)
        .with(GetAuthorizeUri)
        .with(Subscribe)
        .with(Unsubscribe)
}

/// The web server's routes (`/healthz`, `/metrics`, the consent pages). Merge
/// other routers here. `role` says whether this instance leads
/// ([`super::leader`]).
pub fn web_router(ctx: &Arc<AgentContext>, role: &RoleCell) -> Router {
    Router::new()
        .merge(health(ctx, role).router())
        .merge(crate::web::router(web_state(ctx, role)))
}

/// The running agent's peers, as its last reload left them.
impl PeerDirectory for AgentContext {
    fn redirect_uris(&self, jid: &str) -> Option<Vec<Url>> {
        self.settings().config.peers.redirect_uris(jid)
    }

    fn scopes(&self, jid: &str) -> Option<Scopes> {
        self.settings().config.peers.scopes(jid)
    }
}

/// The web state of the running agent: its store and upstream client, its XMPP
/// session for the notifications (queued in the store for the leader while this
/// instance is a standby), its (reloadable) peers, and the settings of its
/// configuration.
fn web_state(ctx: &Arc<AgentContext>, role: &RoleCell) -> WebState {
    let settings = WebSettings::from_config(&ctx.settings().config);
    WebState::new(
        ctx.store.clone(),
        ctx.upstream.clone(),
        Arc::new(RoleNotifier {
            xmpp: ctx.xmpp.clone(),
            store: ctx.store.clone(),
            role: role.clone(),
        }),
        ctx.clone(),
        settings,
    )
}

/// `/healthz`: the store answers and accepts writes, and the XMPP session is up
/// (on the leader: a standby has none by design); then the instance's role.
fn health(ctx: &Arc<AgentContext>, role: &RoleCell) -> Health {
    let store = ctx.store.clone();
    let xmpp = ctx.xmpp.clone();
    let xmpp_role = role.clone();
    let role = role.clone();
    Health::new(
        ctx.metrics.clone(),
        vec![
            // On tokio's blocking pool, with a deadline (crate::health): on
            // PostgreSQL both statements are round trips to the server.
            check_fn("store", move || {
                // A write first, at most once a second however often monitors
                // ask: it finds a store that cannot be written, or a PostgreSQL
                // server out of reach (within the probe's own wait, shorter than
                // the check's deadline), and records why; until a write
                // succeeds, the answer is that reason, without another wait.
                store.probe_writes_at_most_every(HEALTHZ_PROBE_GAP);
                if let Some(failure) = store.write_failure() {
                    return Err(failure.to_string());
                }
                match store.schema_version() {
                    Ok(_) => Ok(()),
                    // The line already says "store: FAILED: ".
                    Err(e) => Err(e.to_string().trim_start_matches("store: ").to_owned()),
                }
            }),
            check_fn_noted("xmpp", move || {
                if xmpp_role.get() == Role::Standby {
                    return Ok(Some(
                        "standby: the leader holds the XMPP session".to_owned(),
                    ));
                }
                match xmpp.state() {
                    SessionState::Up => Ok(None),
                    SessionState::Connecting => Err(
                        "no session yet: still connecting (the log says why, e.g. a wrong password)"
                            .to_owned(),
                    ),
                    SessionState::Suspended => Err("connection lost; reconnecting".to_owned()),
                    SessionState::Stopped => Err("stopped".to_owned()),
                }
            }),
        ],
    )
    .with_info("role", move || role.get().as_str().to_owned())
}

/// `/healthz` probes the store's writes at most this often.
const HEALTHZ_PROBE_GAP: Duration = Duration::from_secs(1);

/// How often the store's writes are probed when nothing asks `/healthz`.
const STORE_PROBE_EVERY: Duration = Duration::from_secs(10);

/// How often the store's WAL is checkpointed, off the request path.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("enedis: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Xmpp(#[from] SetupError),
    #[error("peers: {0}")]
    Peers(#[from] InvalidPeerJid),
    #[error("web.listen {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the main loop is asked to do (from signals, or a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Shut down gracefully (SIGTERM, SIGINT).
    Shutdown,
}

/// SIGHUP → [`Control::Reload`]; SIGTERM and SIGINT → [`Control::Shutdown`].
pub fn signals() -> std::io::Result<mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                Some(()) = hup.recv() => Control::Reload,
                Some(()) = term.recv() => { tracing::info!("SIGTERM received"); Control::Shutdown }
                Some(()) = int.recv() => { tracing::info!("SIGINT received"); Control::Shutdown }
                else => return,
            };
            if tx.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// An agent that has opened everything it needs and is ready to serve.
pub struct Agent {
    ctx: Arc<AgentContext>,
    /// The upstream in `ctx`, as the cache it is (for its housekeeping); none
    /// without `[enedis]`.
    cache: Option<Arc<CachedUpstream>>,
    xmpp: XmppAgent,
    listener: tokio::net::TcpListener,
    config_path: PathBuf,
    /// Each Enedis quota and its name in the store's ledger.
    ledgers: Vec<(Arc<QuotaLimiter>, &'static str)>,
    /// Leader or standby, as `/healthz`, `/metrics` and the notifier see it.
    role: RoleCell,
    /// The PostgreSQL store whose advisory lock decides who leads; `None` with
    /// SQLite, where the agent always leads.
    leadership: Option<Postgres>,
}

/// How [`Agent::serve`] ended, which the process's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shut down as asked (SIGTERM, SIGINT): exit 0.
    Stopped,
    /// The web server, the XMPP session or the wait for the lead ended on its
    /// own (a bug): exit 1, so that systemd restarts it.
    Failed,
    /// A leader stopped leading (fenced, or a handover) but its XMPP session
    /// did not give its agent back, so it could not lead again: exit
    /// [`EXIT_NOT_LEADING`], so that systemd starts it again as a standby.
    NotLeading,
}

/// How long a leader's store writes may fail before it hands over to a
/// waiting standby.
const HANDOVER_AFTER_SECS: i64 = 30;
/// How often a leader looks at its store's writes for that.
const HANDOVER_CHECK: Duration = Duration::from_secs(5);
/// Longest wait for the quota ledger's last write when the process exits
/// without a graceful shutdown ([`Ended::NotLeading`]).
const FENCED_LEDGER_WRITE: Duration = Duration::from_secs(1);
/// Pause before waiting for the lock again after a take-over failed or the
/// lead was lost.
const RETAKE_PAUSE: Duration = Duration::from_secs(5);

/// What a leader runs besides what every instance runs (web server, store
/// probe, ledger writer): the XMPP session, the pushes, the notifications a
/// standby queued, the housekeeping that calls Enedis, and the lock.
struct Leading {
    session: JoinHandle<SessionEnd>,
    /// Stops this session: `pause` gracefully (a handover), `fence` at once.
    control: SessionControl,
    pushes: JoinHandle<()>,
    outbox: JoinHandle<()>,
    /// Housekeeping passes that call Enedis.
    enedis: JoinSet<()>,
    /// The leader's lock; `None` with SQLite.
    lock: Option<Lock>,
    /// Whether the log said that no standby waits to take over a failing store.
    said_no_standby: bool,
}

impl Leading {
    fn start(
        ctx: &Arc<AgentContext>,
        xmpp: XmppAgent,
        lock: Option<Lock>,
        shutdown: &CancellationToken,
    ) -> Leading {
        let control = SessionControl {
            shutdown: shutdown.clone(),
            ..SessionControl::default()
        };
        Leading {
            session: tokio::spawn(xmpp.run_until(
                commands(ctx.clone()),
                ctx.peers.clone(),
                control.clone(),
            )),
            control,
            pushes: tokio::spawn(Scheduler::new(ctx.clone()).run(shutdown.clone())),
            outbox: tokio::spawn(outbox::drain(ctx.store.clone(), ctx.xmpp.clone())),
            enedis: JoinSet::new(),
            lock,
            said_no_standby: false,
        }
    }

    /// Stops the pushes, the queued notifications and the housekeeping.
    fn stop_background(&mut self) {
        self.pushes.abort();
        self.outbox.abort();
        self.enedis.abort_all();
    }

    /// Stops leading: with `fence`, at once (the lock is lost: every command
    /// abandoned, the stream dropped, pushes and housekeeping aborted, before
    /// this returns its task); otherwise gracefully (a handover: running
    /// commands finish and the stream closes first). The task gives back the
    /// XMPP agent, to lead again, and the lock, to release.
    fn demote(mut self, fence: bool) -> JoinHandle<Demoted> {
        if fence {
            self.control.fence.cancel();
            self.stop_background();
        } else {
            self.control.pause.cancel();
        }
        tokio::spawn(async move {
            let end = (&mut self.session).await;
            self.stop_background();
            let lock = self.lock.take();
            Demoted {
                xmpp: match end {
                    Ok(SessionEnd::Stopped(agent)) => Some(*agent),
                    _ => None,
                },
                // A lost lock is closed here, once nothing serves any more
                // (if the server still held it, a standby gets it now and
                // waits the grace period: no handover is announced).
                lock: if fence { None } else { lock },
            }
        })
    }
}

/// What a leader that stopped leading gives back.
struct Demoted {
    /// `None` when its session ended otherwise (then it cannot lead again).
    xmpp: Option<XmppAgent>,
    /// The lock, when it was not lost (a handover releases it).
    lock: Option<Lock>,
}

/// What a leader must react to.
enum LeaderEvent {
    /// Its lock is lost: why.
    LockLost(String),
    /// Its XMPP session task ended on its own.
    SessionEnded,
}

/// The next [`LeaderEvent`]; never, on a standby.
async fn leader_event(leading: &mut Option<Leading>) -> LeaderEvent {
    let Some(leading) = leading else {
        return std::future::pending().await;
    };
    let lost = async {
        match leading.lock.as_mut() {
            Some(lock) => lock.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = lost => LeaderEvent::LockLost(why),
        _ = &mut leading.session => LeaderEvent::SessionEnded,
    }
}

/// `task`'s outcome; never, without one.
async fn join_some<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// The quota ledger's writers, one per quota: every instance writes its own
/// calls (a standby resolves consents on its pages).
struct Keepers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Vec<QuotaCall>>>,
}

impl Keepers {
    /// Starts a writer per quota of `ledgers`, each writing its `pending` first.
    fn start(
        ledgers: &[(Arc<QuotaLimiter>, &'static str)],
        store: &Store,
        pending: Vec<Vec<QuotaCall>>,
    ) -> Keepers {
        let stop = CancellationToken::new();
        let mut pending = pending.into_iter();
        let tasks = ledgers
            .iter()
            .map(|(limiter, platform)| {
                tokio::spawn(quota_ledger::keep_from(
                    limiter.clone(),
                    store.clone(),
                    platform,
                    stop.clone(),
                    pending.next().unwrap_or_default(),
                ))
            })
            .collect();
        Keepers { stop, tasks }
    }

    /// Writes what is left and stops, each writer within `within`; the calls
    /// each could not write.
    async fn stop(self, within: Duration) -> Vec<Vec<QuotaCall>> {
        self.stop.cancel();
        let mut unwritten = Vec::new();
        for mut task in self.tasks {
            match tokio::time::timeout(within, &mut task).await {
                Ok(Ok(calls)) => unwritten.push(calls),
                Ok(Err(_)) => unwritten.push(Vec::new()),
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        "the quota ledger was not written in time: a restart within the hour may count fewer calls than were made"
                    );
                    unwritten.push(Vec::new());
                }
            }
        }
        unwritten
    }
}

/// A standby took the lock: the quota's hour becomes the ledger's (the
/// previous leader's calls and this instance's own, each once), and the
/// ledger's writers start again. On failure the instance must not lead.
async fn take_over(
    store: &Store,
    ledgers: &[(Arc<QuotaLimiter>, &'static str)],
    keepers: Keepers,
) -> (Keepers, Result<(), StoreError>) {
    let unwritten = keepers.stop(WEB_CLOSE).await;
    let mut result = Ok(());
    for ((limiter, platform), unwritten) in ledgers.iter().zip(&unwritten) {
        match quota_ledger::take_over(limiter, store, platform, unwritten).await {
            Ok(restored) => tracing::info!(
                platform,
                calls = restored.calls,
                pause_secs = restored.pause.map(|p| p.as_secs_f64().ceil()),
                "Enedis quota: the calls of the last hour recorded in the store count against this hour"
            ),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    (Keepers::start(ledgers, store, unwritten), result)
}

/// Why a leader whose store writes fail should hand over: they have failed for
/// [`HANDOVER_AFTER_SECS`] and a standby waits for the lock. Without a
/// standby it keeps the lead (said once): nobody would serve otherwise.
async fn should_hand_over(store: &Store, leading: &mut Leading) -> Option<String> {
    let failure = store.write_failure()?;
    let failing_secs = jiff::Timestamp::now().as_second() - failure.since.as_second();
    if failing_secs < HANDOVER_AFTER_SECS {
        return None;
    }
    let lock = leading.lock.as_ref()?;
    match lock.standbys_waiting().await {
        Ok(n) if n > 0 => Some(format!(
            "store writes failing for {failing_secs} s ({failure}); {n} standby waiting"
        )),
        Ok(_) => {
            if !leading.said_no_standby {
                leading.said_no_standby = true;
                tracing::warn!(failing_secs, store = %failure, "leader: store writes failing, but no standby waits for the lock: keeping the lead");
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "leader: cannot count the standbys waiting for the lock");
            None
        }
    }
}

impl Agent {
    /// Opens the store, builds the upstream client, validates the XMPP settings
    /// and binds `web.listen`. `config_path` is where a reload reads from. With
    /// SQLite the quota's hour is restored from the ledger here; with
    /// PostgreSQL when this instance takes the lead.
    pub async fn start(config: Config, config_path: PathBuf) -> Result<Agent, StartupError> {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %config_path.display(),
            jid = %config.xmpp.jid,
            api = config.enedis.as_ref().map_or("none", |e| e.api.as_str()),
            sge = config.sge.is_some(),
            peers = config.peers.len(),
            "starting"
        );
        let store_config = config.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open_config(&store_config))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        store.checkpoint_in_background(CHECKPOINT_EVERY)?;
        tracing::info!(store = %store.describe(), "store open");
        sync_grants(&store, &config.peers).await?;
        let metrics = Metrics::new();
        store.set_metrics(&metrics);
        // Without [enedis] (SGE only): no Data Connect client, cache, token or
        // quota ledger; the upstream refuses whatever would go to Data Connect,
        // saying why.
        let mut ledgers = Vec::new();
        let (upstream, cache): (Arc<dyn Upstream>, _) = match &config.enedis {
            Some(enedis) => {
                let client = Arc::new(EnedisClient::with_metrics(
                    enedis,
                    store.clone(),
                    metrics.clone(),
                )?);
                ledgers.push((client.limiter().clone(), quota_ledger::DATA_CONNECT));
                let client: Arc<dyn Upstream> = client;
                // Every read goes through the cache and coalescing (crate::upstream::cache).
                let cache = Arc::new(
                    CachedUpstream::new(client, store.clone()).with_metrics(metrics.clone()),
                );
                tracing::info!(base_url = %enedis.base_url, api = enedis.api.as_str(), "Enedis client ready");
                (cache.clone(), Some(cache))
            }
            None => {
                tracing::info!(
                    "no [enedis] section: Enedis Data Connect is not read, only Enedis SGE"
                );
                (Arc::new(upstream::WithoutDataConnect), None)
            }
        };
        let sge = match &config.sge {
            Some(sge) => {
                let client = upstream::sge::connect(
                    sge,
                    config.quota_wait_secs(),
                    config.interactive_reserve_percent(),
                    metrics.clone(),
                )
                .map_err(UpstreamError::from)?;
                tracing::info!(endpoint = %sge.endpoint, login = %sge.login, "Enedis SGE client ready");
                ledgers.push((client.limiter().clone(), quota_ledger::SGE));
                Some(Arc::new(client))
            }
            None => None,
        };
        // With PostgreSQL the quota is restored when this instance takes the
        // lead (leader.rs); with SQLite it always leads, from now.
        let leadership = store.postgres().cloned();
        if leadership.is_none() {
            for (limiter, platform) in &ledgers {
                restore_quota(limiter, &store, platform).await?;
            }
        }
        let role = RoleCell::new(
            if leadership.is_some() {
                Role::Standby
            } else {
                Role::Leader
            },
            metrics.clone(),
        );
        let xmpp = XmppAgent::new(&config.xmpp)?;
        let listen = config.web.listen;
        let mut ctx = AgentContext::new(config, store, upstream, metrics, xmpp.handle())?;
        if let Some(sge) = sge {
            ctx = ctx.with_sge(sge);
        }
        let ctx = Arc::new(ctx);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: listen,
                source,
            })?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(listen), "web server listening");
        Ok(Agent {
            ctx,
            cache,
            xmpp,
            listener,
            config_path,
            ledgers,
            role,
            leadership,
        })
    }

    /// The shared context, as commands and web handlers will see it.
    pub fn context(&self) -> &Arc<AgentContext> {
        &self.ctx
    }

    /// The address the web server is bound to.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until [`Control::Shutdown`] (or `control` closing), then shuts
    /// down gracefully.
    ///
    /// Every instance serves the web pages (consent pages, `/healthz`,
    /// `/metrics`) at once. With SQLite the agent leads from the start; with
    /// PostgreSQL it is a standby until it holds the leader's lock
    /// ([`leader::acquire`]), then restores the quota's hour from the ledger
    /// and leads: the XMPP session, the pushes, the notifications standbys
    /// queued, the housekeeping that calls Enedis. A leader that loses its lock
    /// stops all of that at once (fencing) and stands by again; one whose store
    /// writes have failed for 30 s while a standby waits
    /// hands over as on SIGTERM (running commands finish, the stream closes,
    /// the ledger is written, then the lock is released) and stands by.
    pub async fn serve(self, mut control: mpsc::Receiver<Control>) -> Ended {
        let Agent {
            ctx,
            cache,
            xmpp,
            listener,
            config_path,
            ledgers,
            role,
            leadership,
        } = self;
        let shutdown = CancellationToken::new();
        // Stopped last, once running requests are done: their calls are written.
        let mut keepers = Keepers::start(&ledgers, &ctx.store, Vec::new());

        let router = web_router(&ctx, &role);
        let web_stop = shutdown.clone();
        let mut web = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(web_stop.cancelled_owned())
                .await
        });
        let watcher = tokio::spawn(watch_session(ctx.clone()));
        let store_watcher = tokio::spawn(watch_store(ctx.store.clone()));
        // Exactly one of these holds at a time (with PostgreSQL): leading,
        // stepping down (`demoting`), or waiting for the lock.
        let mut xmpp = Some(xmpp);
        let mut leading = None;
        let mut demoting: Option<JoinHandle<Demoted>> = None;
        let mut waiting = None;
        let wait_for_lock = |pause: Duration| {
            let pg = leadership.clone();
            let store = ctx.store.clone();
            pg.map(|pg| {
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    leader::acquire(pg, store).await
                })
            })
        };
        match &leadership {
            None => {
                leading = xmpp
                    .take()
                    .map(|x| Leading::start(&ctx, x, None, &shutdown))
            }
            Some(_) => waiting = wait_for_lock(Duration::ZERO),
        }

        let settings = ctx.settings();
        systemd::ready(&match role.get() {
            Role::Leader => format!(
                "serving {} peers as {}; web on {}",
                settings.config.peers.len(),
                settings.config.xmpp.jid,
                settings.config.web.listen
            ),
            Role::Standby => format!(
                "standby: web on {}; waiting for the leader's lock",
                settings.config.web.listen
            ),
        });
        drop(settings);
        let heartbeat = Heartbeat::new();
        let watchdog = Watchdog::from_env();
        let beat_every = watchdog.map_or(DEFAULT_BEAT, |w| w.beat_interval());
        let watchdog = watchdog.map(|w| w.spawn(heartbeat.clone()));
        let mut beat = tokio::time::interval(beat_every);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        let mut store_check = tokio::time::interval(HANDOVER_CHECK);
        // One pass of SGE stops at a time: a slow one makes the next tick skip.
        let stopping = Arc::new(tokio::sync::Mutex::new(()));

        let mut ended = Ended::Stopped;
        loop {
            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Reload) => on_reload(&ctx, &config_path).await,
                    Some(Control::Shutdown) | None => break,
                },
                _ = beat.tick() => heartbeat.beat(),
                _ = housekeeping.tick() => {
                    tokio::spawn(count_consents(ctx.clone()));
                    if let Some(leading) = &mut leading {
                        while leading.enedis.try_join_next().is_some() {}
                        leading
                            .enedis
                            .spawn(stop_ended_access_services(ctx.clone(), stopping.clone()));
                        if let Some(cache) = &cache {
                            leading.enedis.spawn(purge_contracts(cache.clone()));
                        }
                    }
                }
                r = &mut web => {
                    // axum only returns on shutdown; anything else is an I/O failure.
                    tracing::error!(result = ?r.map(|r| r.map_err(|e| e.to_string())), "the web server stopped unexpectedly");
                    ended = Ended::Failed;
                    break;
                }
                lock = join_some(&mut waiting) => {
                    waiting = None;
                    let lock = match lock {
                        Ok(lock) => lock,
                        Err(e) => {
                            tracing::error!(error = %e, "the wait for the leader's lock ended unexpectedly");
                            ended = Ended::Failed;
                            break;
                        }
                    };
                    let (restarted, restored) = take_over(&ctx.store, &ledgers, keepers).await;
                    keepers = restarted;
                    let (Ok(()), Some(agent)) = (&restored, xmpp.take()) else {
                        tracing::error!(
                            error = %restored.err().map_or_else(|| "no XMPP session to start".to_owned(), |e| e.to_string()),
                            "leader: cannot take over; giving the lock back"
                        );
                        drop(lock);
                        waiting = wait_for_lock(RETAKE_PAUSE);
                        continue;
                    };
                    role.set(Role::Leader);
                    let settings = ctx.settings();
                    tracing::info!(pid = lock.pid, "leader: serving XMPP and Enedis");
                    systemd::status(&format!(
                        "leader: serving {} peers as {}; web on {}",
                        settings.config.peers.len(),
                        settings.config.xmpp.jid,
                        settings.config.web.listen
                    ));
                    drop(settings);
                    leading = Some(Leading::start(&ctx, agent, Some(lock), &shutdown));
                }
                event = leader_event(&mut leading) => match event {
                    LeaderEvent::LockLost(why) => {
                        // Fencing, before anything else.
                        let Some(fenced) = leading.take() else { continue };
                        demoting = Some(fenced.demote(true));
                        role.set(Role::Standby);
                        tracing::error!(
                            reason = %why,
                            "leadership lost: XMPP and Enedis stopped at once; standing by"
                        );
                        systemd::status("standby: leadership lost; waiting for the leader's lock");
                    }
                    LeaderEvent::SessionEnded => {
                        tracing::error!("the XMPP session task ended unexpectedly");
                        ended = Ended::Failed;
                        break;
                    }
                },
                demoted = join_some(&mut demoting) => {
                    demoting = None;
                    let Ok(Demoted { xmpp: Some(agent), lock }) = demoted else {
                        tracing::error!(
                            "leader: the XMPP session did not stop as asked; exiting (status {EXIT_NOT_LEADING}) to start again as a standby"
                        );
                        ended = Ended::NotLeading;
                        break;
                    };
                    xmpp = Some(agent);
                    if let Some(lock) = lock {
                        // A handover: the stream is closed; the calls made
                        // are written before the lock goes.
                        let unwritten = keepers.stop(WEB_CLOSE).await;
                        keepers = Keepers::start(&ledgers, &ctx.store, unwritten);
                        role.set(Role::Standby);
                        lock.hand_over().await;
                        systemd::status("standby: handed over; waiting for the leader's lock");
                    }
                    waiting = wait_for_lock(RETAKE_PAUSE);
                }
                _ = store_check.tick(), if leading.as_ref().is_some_and(|l| l.lock.is_some()) => {
                    let Some(l) = &mut leading else { continue };
                    if let Some(why) = should_hand_over(&ctx.store, l).await {
                        tracing::warn!(
                            reason = %why,
                            "leader: handing over to a standby: finishing running requests, closing the XMPP session, then releasing the lock"
                        );
                        if let Some(l) = leading.take() {
                            demoting = Some(l.demote(false));
                        }
                    }
                }
            }
        }

        if ended == Ended::NotLeading {
            // Nothing graceful: the process exits now. The calls of the last
            // second go to the ledger if the store answers at once.
            let _ = keepers.stop(FENCED_LEDGER_WRITE).await;
            return ended;
        }
        tracing::info!("shutting down");
        systemd::stopping("shutting down: finishing running requests");
        shutdown.cancel();
        // A standby's wait ends (and with it a lock taken, not yet served).
        if let Some(wait) = waiting.take() {
            wait.abort();
            let _ = wait.await;
        }
        // Keep beating while running requests finish, so the watchdog does not
        // kill a clean shutdown. The lock goes last: the standby takes over
        // once the stream is closed and the ledger written.
        let finish = async {
            let mut lock = None;
            if let Some(mut leading) = leading.take() {
                if !leading.session.is_finished() {
                    let _ = (&mut leading.session).await;
                }
                leading.stop_background();
                lock = leading.lock.take();
            }
            if let Some(demoted) = demoting.take()
                && let Ok(demoted) = demoted.await
            {
                lock = demoted.lock;
            }
            keepers.stop(WEB_CLOSE).await;
            if let Some(lock) = lock {
                role.set(Role::Standby);
                lock.hand_over().await;
            }
            if !web.is_finished() && tokio::time::timeout(WEB_CLOSE, &mut web).await.is_err() {
                tracing::warn!("the web server did not close its connections in time");
                web.abort();
            }
        };
        tokio::pin!(finish);
        loop {
            tokio::select! {
                _ = &mut finish => break,
                _ = beat.tick() => heartbeat.beat(),
            }
        }
        watcher.abort();
        store_watcher.abort();
        if let Some(w) = watchdog {
            w.abort();
        }
        tracing::info!("stopped");
        ended
    }
}

/// Applies a reload and says what happened (log, systemd status).
async fn on_reload(ctx: &Arc<AgentContext>, path: &Path) {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
    systemd::reloading();
    let ctx2 = ctx.clone();
    let path = path.to_owned();
    let outcome = match tokio::task::spawn_blocking(move || reload(&ctx2, &path)).await {
        Ok(outcome) => outcome,
        Err(e) => Reloaded::Rejected(format!("the reload task failed: {e}")),
    };
    match &outcome {
        Reloaded::Applied {
            peers,
            restart_needed,
        } => {
            if restart_needed.is_empty() {
                tracing::info!(
                    peers,
                    "configuration reloaded: peers, grants and scopes in force"
                );
            } else {
                tracing::warn!(
                    peers,
                    restart_needed = %restart_needed.join(", "),
                    "configuration reloaded: peers, grants and scopes in force; other changes need a restart"
                );
            }
            systemd::reloaded(&outcome.status());
        }
        Reloaded::Rejected(reasons) => {
            for line in reasons.lines() {
                tracing::error!(problem = %line, "reload rejected: the old configuration stays in force");
            }
            systemd::reload_rejected(reasons);
        }
    }
}

/// Probes the store's writes every [`STORE_PROBE_EVERY`], so that a quiet agent
/// notices a full disk too (and the metrics and log say so), and tells systemd
/// (`STATUS=`) when the store starts or stops failing.
async fn watch_store(store: Store) {
    let mut every = tokio::time::interval(STORE_PROBE_EVERY);
    let mut failing = false;
    loop {
        every.tick().await;
        let probed = store.call(|s| Ok(s.probe_writes())).await;
        if let Err(e) = probed {
            tracing::warn!(error = %e, "the store probe did not run");
        }
        match store.write_failure() {
            Some(failure) if !failing => {
                failing = true;
                systemd::status(&format!("store: {failure}"));
            }
            None if failing => {
                failing = false;
                systemd::status("serving; store writes work again");
            }
            _ => {}
        }
    }
}

/// Keeps the session gauge and reconnect counter of the metrics up to date.
async fn watch_session(ctx: Arc<AgentContext>) {
    let mut rx = ctx.xmpp.watch_state();
    let mut ever_up = false;
    let mut up = false;
    loop {
        let state = *rx.borrow_and_update();
        let now_up = state == SessionState::Up;
        if now_up && !up && ever_up {
            ctx.metrics.xmpp_reconnect();
        }
        ever_up |= now_up;
        up = now_up;
        ctx.metrics.set_xmpp_session_up(now_up);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Seeds `limiter` from the store's ledger of `platform`: the calls of the last
/// hour (made before a restart, or by another instance) count against this hour.
async fn restore_quota(
    limiter: &QuotaLimiter,
    store: &Store,
    platform: &'static str,
) -> Result<(), StoreError> {
    let restored = quota_ledger::restore(limiter, store, platform).await?;
    tracing::info!(
        platform,
        calls = restored.calls,
        pause_secs = restored.pause.map(|p| p.as_secs_f64().ceil()),
        "Enedis quota: the calls of the last hour recorded in the store count against this hour"
    );
    Ok(())
}

/// Mirrors the peers' `usage_points` into the store's grants, which the audit
/// trail and the cache check against (at start; [`super::reload`] on reload).
async fn sync_grants(store: &Store, peers: &[crate::config::PeerConfig]) -> Result<(), StoreError> {
    let peers = peers.to_vec();
    let changes = store.call(move |s| s.sync_peer_grants(&peers)).await?;
    tracing::info!(
        added = changes.added.len(),
        removed = changes.removed.len(),
        "grants mirrored from the configuration"
    );
    Ok(())
}

/// Drops the cached contracts past their lifetime or of PRMs nothing covers any more.
async fn purge_contracts(cache: Arc<CachedUpstream>) {
    let dropped = cache.purge_contracts().await;
    if dropped > 0 {
        tracing::info!(
            dropped,
            "cached contracts past their lifetime or without a consent or grant removed"
        );
    }
}

/// Marks consents past their validity expired and refreshes the consent gauge.
async fn count_consents(ctx: Arc<AgentContext>) {
    let counted = ctx
        .store
        .call(|s| {
            let now = now_seconds();
            let expired = s.expire_consents(now)?;
            // Cached days of PRMs no consent or grant covers any more (consents
            // that ended are purged at once by the store; this catches the rest).
            let purged = s.purge_cache(now)?;
            if purged > 0 {
                tracing::info!(purged, "cached days without a consent or grant removed");
            }
            Ok((expired, s.count_consents_by_state()?))
        })
        .await;
    match counted {
        Ok((expired, by_state)) => {
            if expired > 0 {
                tracing::info!(expired, "consents past their validity marked expired");
            }
            let states = [
                ConsentState::Active,
                ConsentState::Expired,
                ConsentState::Revoked,
            ];
            let counts: Vec<(&'static str, u64)> = states
                .iter()
                .map(|state| {
                    let n = by_state
                        .iter()
                        .find(|(s, _)| s == state)
                        .map_or(0, |&(_, n)| n);
                    (state.as_str(), n)
                })
                .collect();
            ctx.metrics.set_consents(&counts);
        }
        Err(e) => tracing::warn!(error = %e, "cannot count consents for the metrics"),
    }
}

/// Stops at Enedis the access services of SGE consents no longer usable (expired,
/// or revoked while SGE could not be reached), through the agent's SGE client:
/// at most [`STOPS_PER_PASS`], each stop logged (`info`), each failure logged
/// (`warn`) and recorded, then tried again at the next pass. Skipped while the
/// previous pass runs, and without `[sge]`.
async fn stop_ended_access_services(ctx: Arc<AgentContext>, stopping: Arc<tokio::sync::Mutex<()>>) {
    let Some(sge) = ctx.sge.clone() else {
        return;
    };
    let Ok(_pass) = stopping.try_lock() else {
        tracing::debug!("the previous pass still stops SGE access services");
        return;
    };
    let ask = upstream::Ask::agent()
        .with_class(upstream::Class::Background)
        .with_deadline(tokio::time::Instant::now() + STOP_QUOTA_WAIT);
    let tally = upstream::http::Tally::new(ask);
    let outcomes = upstream::sge::services::stop_ended_consents(
        &ctx.store,
        &sge,
        now_seconds(),
        STOPS_PER_PASS,
        &tally,
    )
    .await;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot stop the SGE access services of ended consents");
            return;
        }
    };
    use upstream::sge::services::StopResult;
    for o in outcomes {
        let s = &o.service;
        match &o.result {
            StopResult::Failed(why) => tracing::warn!(
                consent = s.consent_id,
                prm = %s.prm,
                data = s.data.code(),
                service = %s.service_id,
                error = %why,
                "SGE access service of an ended consent NOT stopped; tried again at the next pass"
            ),
            result => tracing::info!(
                consent = s.consent_id,
                prm = %s.prm,
                data = s.data.code(),
                service = %s.service_id,
                how = match result {
                    StopResult::Ended => "reached its end date",
                    StopResult::NotActiveAtEnedis => "not active at Enedis (SGT4G3)",
                    _ => "stopped by CommanderArretServicesAccesDonnees",
                },
                "SGE access service of an ended consent stopped"
            ),
        }
    }
}

/// `quoalise-agent run`: loads the configuration, sets up logging and runs the
/// agent until SIGTERM/SIGINT. Exit status 1 only when it cannot start.
pub fn main(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.problems.len();
            eprintln!(
                "quoalise-agent: invalid configuration ({n} problem{}), not starting",
                if n == 1 { "" } else { "s" }
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::logging::init(config.log.format, &config.log.level) {
        eprintln!("quoalise-agent: {e}");
        return ExitCode::FAILURE;
    }
    // One thread for the event loop, as Prosody has: the agent's work per request
    // is a fraction of a millisecond, and with a worker per core the workers kept
    // waking each other for every stanza (a fifth of the agent's CPU under load,
    // docs/agent.md). Disk work still runs on the blocking pool, except the short
    // statements that need no waiting (`Store::call_now`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("quoalise-agent")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let control = match signals() {
            Ok(control) => control,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return ExitCode::FAILURE;
            }
        };
        match Agent::start(config, config_path.to_owned()).await {
            Ok(agent) => match agent.serve(control).await {
                Ended::Stopped => ExitCode::SUCCESS,
                Ended::Failed => ExitCode::FAILURE,
                // At once: no runtime shutdown that would wait for tasks still
                // running (a command's Enedis call, a store statement).
                Ended::NotLeading => std::process::exit(i32::from(EXIT_NOT_LEADING)),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                systemd::status(&format!("cannot start: {e}"));
                ExitCode::FAILURE
            }
        }
    })
}
