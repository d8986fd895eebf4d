//! The agent's XMPP session: one [`StanzaStream`] that reconnects forever and
//! the task driving it, which hands command requests to the [`Router`] and
//! feeds the outgoing queue of every [`XmppHandle`] (defined in
//! [`super::handle`]) to the stream.
//!
//! Why `StanzaStream` driven by one task, and not tokio-xmpp's `Client`: the
//! `Client`'s receive half can lose a wakeup under load and stop reading for good
//! (see `docs/xmpp-notes.md`). Here one task owns the stream and `select!`s over
//! incoming events and an outgoing queue fed by every [`XmppHandle`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tokio_xmpp::stanzastream::{Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use xmpp_parsers::iq::{Iq, IqRequestPayload};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::presence::{self, Presence};

use super::auth::AllowList;
use super::connector::{ConnectError, Connector, SetupError, Transport};
use super::handle::{IqError, Outgoing, SessionState, XmppHandle};
use super::router::{CommandSet, Router, RouterSettings};
use crate::config::XmppConfig;

/// Stanzas buffered between the handles and the stream, and inside the stream.
const QUEUE_DEPTH: usize = 1024;
/// Backoff between connection attempts: 1 s doubling up to this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// How long a clean close of the stream may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Timings of the session, from `XmppConfig`.
#[derive(Debug, Clone)]
struct SessionSettings {
    ping_interval: Duration,
    ping_timeout: Duration,
    first_session_deadline: Duration,
}

/// What the reconnect loop last saw, for logging once per change and for the
/// first-session deadline message.
#[derive(Default)]
struct Diagnostics {
    last_failure: Option<(&'static str, String, &'static str)>,
    /// When the last connection logged in.
    last_login: Option<std::time::Instant>,
    /// Whether a session was established (bound or resumed) since that login: a
    /// login lost before (a failed resumption) is not a fight over the resource.
    established_since_login: bool,
    /// Sessions in a row that died within `FLAP_WINDOW` of their login.
    short_sessions: u32,
    /// Pause before reconnecting when sessions keep dying young.
    flap_delay: Duration,
}

/// A connection lost sooner than this after its login counts as flapping (e.g.
/// two instances with the same JID and resource kicking each other out).
const FLAP_WINDOW: Duration = Duration::from_secs(10);

/// The agent's XMPP side, ready to run. Create it, hand [`XmppAgent::handle`]
/// to whoever needs to send stanzas, then [`XmppAgent::run`] it.
pub struct XmppAgent {
    connector: Connector,
    handle: XmppHandle,
    out_rx: mpsc::Receiver<Outgoing>,
    inbound: Option<mpsc::Sender<Stanza>>,
    session: SessionSettings,
    router: RouterSettings,
}

impl XmppAgent {
    /// Validates the XMPP configuration (JID, server address, CA file).
    pub fn new(config: &XmppConfig) -> Result<Self, SetupError> {
        let ping_interval = Duration::from_secs(config.ping_interval_secs.max(1));
        // Long enough for a loaded server, short enough to notice a dead link
        // within one interval.
        let ping_timeout =
            (ping_interval / 2).clamp(Duration::from_secs(5), Duration::from_secs(30));
        // The stream itself probes after `read_timeout` of silence (XEP-0198 <r/>
        // or a ping) and declares the link dead `response_timeout` later.
        let timeouts = Timeouts {
            read_timeout: ping_interval,
            response_timeout: ping_timeout * 2,
        };
        let connector = Connector::new(config, timeouts)?;
        let (out_tx, out_rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = XmppHandle::new(
            connector.jid().clone(),
            out_tx,
            connector.splices().clone(),
            connector.limit().clone(),
        );
        Ok(XmppAgent {
            connector,
            handle,
            out_rx,
            inbound: None,
            session: SessionSettings {
                ping_interval,
                ping_timeout,
                first_session_deadline: Duration::from_secs(
                    config.first_session_deadline_secs.max(1),
                ),
            },
            router: RouterSettings::new(Duration::from_secs(config.request_timeout_secs.max(1))),
        })
    }

    pub fn handle(&self) -> XmppHandle {
        self.handle.clone()
    }

    /// Messages and presences the agent receives, for whoever needs them (a
    /// peer built on this crate; subscription handling). At most `capacity` wait
    /// unread; beyond that new ones are dropped (logged at debug) rather than
    /// stalling the session.
    pub fn inbound(&mut self, capacity: usize) -> mpsc::Receiver<Stanza> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inbound = Some(tx);
        rx
    }

    /// The command framework's settings (deadline, sessions, limits), to adjust
    /// before [`XmppAgent::run`].
    pub fn router_settings_mut(&mut self) -> &mut RouterSettings {
        &mut self.router
    }

    /// Connects (and reconnects forever), serves `commands` to the peers in
    /// `peers`, and returns after a graceful shutdown once `shutdown` is
    /// cancelled: new commands refused, running ones finished (bounded),
    /// unavailable presence sent, stream closed.
    pub async fn run<C: Send + Sync + 'static>(
        self,
        commands: CommandSet<C>,
        peers: AllowList,
        shutdown: CancellationToken,
    ) {
        let control = SessionControl {
            shutdown,
            ..SessionControl::default()
        };
        let _ = self.run_until(commands, peers, control).await;
    }

    /// [`XmppAgent::run`], stopped as `control` says; a session stopped by
    /// [`SessionControl::pause`] or [`SessionControl::fence`] gives the agent
    /// back, to run again later with the same handle (a standby agent that
    /// takes the lead again). Stanzas queued through the handle while no
    /// session ran are dropped when it starts: they were answers of a stopped
    /// session.
    pub async fn run_until<C: Send + Sync + 'static>(
        self,
        commands: CommandSet<C>,
        peers: AllowList,
        control: SessionControl,
    ) -> SessionEnd {
        let XmppAgent {
            connector,
            handle,
            mut out_rx,
            inbound,
            session,
            router,
        } = self;
        let mut stale = 0usize;
        while out_rx.try_recv().is_ok() {
            stale += 1;
        }
        if stale > 0 {
            tracing::debug!(stale, "XMPP: stanzas queued while no session ran dropped");
        }
        handle.set_state(SessionState::Connecting);
        let router_settings = router.clone();
        let router = Router::new(commands, peers, router, handle.clone());
        let diagnostics = Arc::new(Mutex::new(Diagnostics::default()));
        tracing::info!(jid = %connector.jid(), server = %connector.target(), "XMPP: connecting");
        let stream = StanzaStream::new(
            reconnector(connector.clone(), diagnostics.clone()),
            QUEUE_DEPTH,
        );
        Driver {
            stream,
            handle,
            out_rx,
            inbound,
            router,
            session,
            diagnostics,
            connector,
            established: None,
            failed_resumptions: 0,
        }
        .run(control, router_settings)
        .await
    }
}

/// How the owner of a session ([`XmppAgent::run_until`]) stops it.
#[derive(Debug, Clone, Default)]
pub struct SessionControl {
    /// Stop for good, gracefully: new commands refused, running ones finished
    /// (bounded), unavailable presence sent, stream closed.
    pub shutdown: CancellationToken,
    /// The same graceful stop, the agent given back to run again.
    pub pause: CancellationToken,
    /// Stop at once, the agent given back: running commands abandoned without
    /// an answer, the stream closed without waiting for anything queued.
    pub fence: CancellationToken,
}

/// How [`XmppAgent::run_until`] ended.
pub enum SessionEnd {
    /// Shut down for good ([`SessionControl::shutdown`]).
    Shutdown,
    /// Paused or fenced: the agent, ready to run again.
    Stopped(Box<XmppAgent>),
    /// The stanza stream ended on its own (a bug; logged).
    Failed,
}

/// Longest wait, when fenced, for the abandoned commands to end.
const FENCE_WAIT: Duration = Duration::from_secs(1);

/// Connects, serves and shuts down as [`XmppAgent::run`] describes. Errors only
/// on an unusable configuration (the caller exits non-zero).
pub async fn run_xmpp<C: Send + Sync + 'static>(
    config: &XmppConfig,
    commands: CommandSet<C>,
    peers: AllowList,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    XmppAgent::new(config)?.run(commands, peers, shutdown).await;
    Ok(())
}

type Reconnector = Box<
    dyn FnMut(Option<String>, oneshot::Sender<tokio_xmpp::stanzastream::Connection>)
        + Send
        + 'static,
>;

/// The `StanzaStream` calls this whenever it needs a new connection; we keep
/// trying, with backoff, until one logs in or the stream is gone.
fn reconnector(connector: Connector, diagnostics: Arc<Mutex<Diagnostics>>) -> Reconnector {
    Box::new(move |_preferred_location, mut slot| {
        let connector = connector.clone();
        let diagnostics = diagnostics.clone();
        tokio::spawn(async move {
            // A login succeeds but the session dies at once: do not reconnect in
            // a tight loop.
            let pause = {
                let mut d = lock(&diagnostics);
                match d.last_login {
                    // One short session is, say, a server restart; several in a
                    // row are a fight over the resource.
                    Some(at) if at.elapsed() < FLAP_WINDOW && !d.established_since_login => None,
                    Some(at) if at.elapsed() < FLAP_WINDOW => {
                        d.short_sessions += 1;
                        if d.short_sessions >= 2 {
                            d.flap_delay = (d.flap_delay * 2)
                                .clamp(Duration::from_secs(1), MAX_RECONNECT_DELAY);
                            Some(d.flap_delay)
                        } else {
                            None
                        }
                    }
                    _ => {
                        d.short_sessions = 0;
                        d.flap_delay = Duration::ZERO;
                        None
                    }
                }
            };
            if let Some(pause) = pause {
                tracing::warn!(
                    pause_secs = pause.as_secs(),
                    "XMPP: the session ended within seconds of logging in; pausing before reconnecting (is another client using the same JID and resource?)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = slot.closed() => return,
                }
            }
            let mut delay = Duration::from_secs(1);
            loop {
                let attempt = tokio::select! {
                    r = connector.login() => Some(r),
                    _ = slot.closed() => None,
                };
                match attempt {
                    None => return,
                    Some(Ok((connection, transport))) => {
                        let how = match transport {
                            Transport::Tls => "TLS",
                            Transport::Plaintext => "plaintext (xmpp.allow_plaintext)",
                        };
                        tracing::info!(server = %connector.target(), transport = how, "XMPP: connected and authenticated");
                        {
                            let mut d = lock(&diagnostics);
                            d.last_failure = None;
                            d.last_login = Some(std::time::Instant::now());
                            d.established_since_login = false;
                        }
                        // If the stream is gone, the fresh connection is dropped.
                        let _ = slot.send(connection);
                        return;
                    }
                    Some(Err(e)) => note_failure(&diagnostics, &connector, &e, delay),
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = slot.closed() => return,
                }
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
            }
        });
    })
}

fn lock(d: &Mutex<Diagnostics>) -> std::sync::MutexGuard<'_, Diagnostics> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs a failed attempt once per change of cause (repeats go to debug).
fn note_failure(
    diagnostics: &Mutex<Diagnostics>,
    connector: &Connector,
    e: &ConnectError,
    retry_in: Duration,
) {
    let mut d = lock(diagnostics);
    let message = e.to_string();
    let same = matches!(&d.last_failure, Some((kind, _, _)) if *kind == e.kind());
    if same {
        tracing::debug!(server = %connector.target(), error = %message, retry_in_secs = retry_in.as_secs(), "XMPP: connection attempt failed again");
    } else {
        tracing::warn!(server = %connector.target(), error = %message, likely_cause = e.likely_cause(), "XMPP: connection attempt failed; retrying with backoff (repeats are logged at debug)");
    }
    d.last_failure = Some((e.kind(), message, e.likely_cause()));
}

/// The task that owns the stream.
struct Driver<C> {
    stream: StanzaStream,
    handle: XmppHandle,
    out_rx: mpsc::Receiver<Outgoing>,
    inbound: Option<mpsc::Sender<Stanza>>,
    router: Arc<Router<C>>,
    session: SessionSettings,
    diagnostics: Arc<Mutex<Diagnostics>>,
    connector: Connector,
    /// When the last session was established (bound or resumed).
    established: Option<std::time::Instant>,
    /// Logins in a row that were lost before any session was established.
    failed_resumptions: u32,
}

impl<C: Send + Sync + 'static> Driver<C> {
    /// A connection that logged in was lost before a session was established:
    /// after two in a row, start over with a new stream.
    ///
    /// Why: when the server lost our session (it crashed or restarted without
    /// closing the stream), it answers the resumption request with
    /// `<failed xmlns='urn:xmpp:sm:3'>` WITHOUT an `h` attribute (Prosody 0.12),
    /// which xmpp-parsers 0.23 refuses to parse; tokio-xmpp then treats it as an
    /// I/O error, keeps the stale stream-management state and tries to resume
    /// again on every reconnection, forever. A new stream has no state to resume.
    fn restart_if_resumption_fails(&mut self) {
        let login = lock(&self.diagnostics).last_login;
        let lost_before_session = match (login, self.established) {
            (Some(login), Some(established)) => login > established,
            (Some(_), None) => false,
            (None, _) => false,
        };
        if !lost_before_session {
            self.failed_resumptions = 0;
            return;
        }
        self.failed_resumptions += 1;
        if self.failed_resumptions >= 2 {
            tracing::warn!(
                "XMPP: the server cannot resume the previous session; starting a new one (stanzas queued meanwhile are dropped)"
            );
            self.failed_resumptions = 0;
            self.stream = StanzaStream::new(
                reconnector(self.connector.clone(), self.diagnostics.clone()),
                QUEUE_DEPTH,
            );
        }
    }

    async fn run(mut self, control: SessionControl, router: RouterSettings) -> SessionEnd {
        let mut ever_up = false;
        let mut failed = false;
        let mut fenced = false;
        let mut deadline_reported = false;
        let first_deadline = tokio::time::sleep(self.session.first_session_deadline);
        tokio::pin!(first_deadline);
        let mut ping = tokio::time::interval(self.session.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate
        let (drained_tx, mut drained_rx) = oneshot::channel::<()>();
        let mut drained_tx = Some(drained_tx);
        let mut draining = false;

        loop {
            tokio::select! {
                event = self.stream.next() => {
                    let Some(event) = event else {
                        tracing::error!("XMPP: the stanza stream ended unexpectedly");
                        failed = true;
                        break;
                    };
                    match event {
                        Event::Stream(StreamEvent::Reset { bound_jid, .. }) => {
                            if ever_up {
                                tracing::info!(jid = %bound_jid, "XMPP: new session (the previous one could not be resumed)");
                            } else {
                                tracing::info!(jid = %bound_jid, "XMPP: session up");
                            }
                            ever_up = true;
                            self.established = Some(std::time::Instant::now());
                            lock(&self.diagnostics).established_since_login = true;
                            if bound_jid != self.handle.jid().clone() {
                                tracing::warn!(configured = %self.handle.jid(), bound = %bound_jid, "XMPP: the server bound another resource than the configured one; peers addressing the configured JID will not reach the agent");
                            }
                            self.handle.set_state(SessionState::Up);
                            // Presence: peers with a subscription see the agent
                            // online, and the server routes to this resource.
                            self.stream.send(Box::new(Presence::available().into())).await;
                        }
                        Event::Stream(StreamEvent::Suspended) => {
                            tracing::warn!("XMPP: connection lost; reconnecting (stanzas are queued meanwhile)");
                            self.handle.set_state(SessionState::Suspended);
                            self.restart_if_resumption_fails();
                        }
                        Event::Stream(StreamEvent::Resumed) => {
                            tracing::info!("XMPP: session resumed");
                            self.established = Some(std::time::Instant::now());
                            lock(&self.diagnostics).established_since_login = true;
                            self.handle.set_state(SessionState::Up);
                        }
                        Event::Stanza(stanza) => {
                            if let Some(reply) = self.on_stanza(stanza) {
                                self.stream.send(Box::new(reply)).await;
                            }
                        }
                    }
                }
                Some(out) = self.out_rx.recv() => {
                    self.transmit(out).await;
                }
                _ = ping.tick(), if self.handle.is_up() => {
                    self.keepalive();
                }
                _ = &mut first_deadline, if !ever_up && !deadline_reported => {
                    deadline_reported = true;
                    self.report_first_session_missing();
                }
                _ = control.fence.cancelled() => {
                    fenced = true;
                    break;
                }
                _ = async { tokio::select! {
                    _ = control.shutdown.cancelled() => {}
                    _ = control.pause.cancelled() => {}
                } }, if !draining => {
                    draining = true;
                    tracing::info!("XMPP: shutting down: refusing new commands, finishing running ones");
                    self.router.stop_accepting();
                    let router = self.router.clone();
                    let tx = drained_tx.take();
                    tokio::spawn(async move {
                        router.drain().await;
                        if let Some(tx) = tx {
                            let _ = tx.send(());
                        }
                    });
                }
                _ = &mut drained_rx, if draining => break,
            }
        }
        if fenced {
            return SessionEnd::Stopped(Box::new(self.fence(router).await));
        }
        let keep = !failed && !control.shutdown.is_cancelled();
        match self.goodbye(keep, router).await {
            Some(agent) => SessionEnd::Stopped(Box::new(agent)),
            None if failed => SessionEnd::Failed,
            None => SessionEnd::Shutdown,
        }
    }

    /// Fencing: every running command abandoned (its future dropped, with the
    /// Enedis call it was making), the stream dropped (tokio-xmpp's worker
    /// closes it), nothing queued sent. The pieces, to run again.
    async fn fence(self, router: RouterSettings) -> XmppAgent {
        let Driver {
            stream,
            handle,
            mut out_rx,
            inbound,
            router: commands,
            session,
            connector,
            ..
        } = self;
        commands.abandon();
        handle.set_state(SessionState::Stopped);
        handle.abandon_pending();
        drop(stream);
        // The abandoned commands queue their refusals: none goes out.
        let idle = commands.idle();
        tokio::pin!(idle);
        let deadline = tokio::time::sleep(FENCE_WAIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut idle => break,
                () = &mut deadline => {
                    tracing::warn!("XMPP: fenced commands still running; their answers are dropped");
                    break;
                }
                Some(_) = out_rx.recv() => {}
            }
        }
        while out_rx.try_recv().is_ok() {}
        tracing::info!("XMPP: session dropped at once (fenced)");
        XmppAgent {
            connector,
            handle,
            out_rx,
            inbound,
            session,
            router,
        }
    }

    /// Hands a queued stanza to the stream. A spliced payload is made available
    /// to the connections until tokio-xmpp no longer holds the stanza: acked by
    /// the server (XEP-0198), failed, or dropped with a stream that is
    /// replaced; a stanza resent after a resumption is spliced again.
    async fn transmit(&mut self, out: Outgoing) {
        let Outgoing { stanza, splice } = out;
        match splice {
            None => {
                self.stream.send(stanza).await;
            }
            Some(splice) => {
                let splices = self.handle.splices().clone();
                splices.register(&splice);
                let mut token = self.stream.send(stanza).await;
                let id = splice.id();
                tokio::spawn(async move {
                    // Acked, Failed and Dropped all come after Acked; the
                    // token's channel closes when the stanza is dropped.
                    let _ = token
                        .wait_for(tokio_xmpp::stanzastream::StanzaStage::Acked)
                        .await;
                    splices.release(id);
                });
            }
        }
    }

    /// Dispatches one incoming stanza; returns a quick reply to send, if any.
    fn on_stanza(&self, stanza: Stanza) -> Option<Stanza> {
        match stanza {
            Stanza::Iq(iq) => match iq {
                Iq::Result { .. } | Iq::Error { .. } => {
                    if !self.handle.resolve(iq) {
                        tracing::debug!("XMPP: ignoring an unexpected iq answer");
                    }
                    None
                }
                request => self.router.handle_request(request).map(Stanza::Iq),
            },
            Stanza::Presence(presence) => {
                let reply = self.on_presence(&presence).map(Stanza::Presence);
                self.forward(Stanza::Presence(presence));
                reply
            }
            Stanza::Message(message) => {
                self.forward(Stanza::Message(message));
                None
            }
        }
    }

    /// Peers (Gajim/Psi users) may subscribe to the agent's presence to see it
    /// online; allowed peers are approved, others denied.
    fn forward(&self, stanza: Stanza) {
        match &self.inbound {
            Some(tx) => {
                if tx.try_send(stanza).is_err() {
                    tracing::debug!("XMPP: inbound queue full or closed; dropping a stanza");
                }
            }
            None => tracing::trace!("XMPP: ignoring an incoming message or presence"),
        }
    }

    fn on_presence(&self, presence: &Presence) -> Option<Presence> {
        let from = presence.from.clone()?;
        match presence.type_ {
            presence::Type::Subscribe => {
                let bare = Jid::from(from.to_bare());
                if self.router.peers().allows(&from) {
                    tracing::info!(peer = %bare, "XMPP: approving a presence subscription");
                    Some(Presence::subscribed().with_to(bare))
                } else {
                    tracing::debug!(jid = %bare, "XMPP: denying a presence subscription from a non-peer");
                    Some(Presence::new(presence::Type::Unsubscribed).with_to(bare))
                }
            }
            _ => None,
        }
    }

    /// Sends a XEP-0199 ping to the server in the background; a missing answer is
    /// logged (the stream's own timeouts then decide whether the link is dead).
    fn keepalive(&self) {
        let handle = self.handle.clone();
        let timeout = self.session.ping_timeout;
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let domain = Jid::from(handle.jid().domain().to_owned());
            match handle
                .send_iq(Some(domain), IqRequestPayload::Get(Ping.into()), timeout)
                .await
            {
                Ok(_) => tracing::debug!(
                    rtt_ms = started.elapsed().as_millis() as u64,
                    "XMPP: keepalive ping answered"
                ),
                // A server without XEP-0199 still proves the link is alive.
                Err(IqError::Error(_)) => {}
                Err(IqError::Stopped) | Err(IqError::Unsendable(_)) => {}
                Err(IqError::Timeout(t)) => {
                    tracing::warn!(
                        timeout_secs = t.as_secs(),
                        "XMPP: the server did not answer a keepalive ping"
                    );
                }
            }
        });
    }

    fn report_first_session_missing(&self) {
        let d = lock(&self.diagnostics);
        let secs = self.session.first_session_deadline.as_secs();
        match &d.last_failure {
            Some((_, error, cause)) => tracing::error!(
                jid = %self.handle.jid(),
                server = %self.connector.target(),
                last_error = %error,
                likely_cause = %cause,
                "XMPP: no session after {secs} s; still retrying"
            ),
            None => tracing::error!(
                jid = %self.handle.jid(),
                server = %self.connector.target(),
                likely_cause = "the server accepted the login but did not complete the session (resource binding); check the server's log",
                "XMPP: no session after {secs} s; still retrying"
            ),
        }
    }

    /// Flushes answers still queued, says goodbye and closes the stream; with
    /// `keep`, the pieces to run again (the queue left open), otherwise the
    /// queue is closed for good.
    async fn goodbye(mut self, keep: bool, router: RouterSettings) -> Option<XmppAgent> {
        if !keep {
            self.out_rx.close();
        }
        while let Ok(out) = self.out_rx.try_recv() {
            self.transmit(out).await;
        }
        if self.handle.is_up() {
            self.stream
                .send(Box::new(Presence::unavailable().into()))
                .await;
        }
        self.handle.set_state(SessionState::Stopped);
        // Wake every iq waiter: no answer will come.
        self.handle.abandon_pending();
        let Driver {
            stream,
            handle,
            out_rx,
            inbound,
            session,
            connector,
            ..
        } = self;
        if tokio::time::timeout(CLOSE_TIMEOUT, stream.close())
            .await
            .is_err()
        {
            tracing::warn!("XMPP: the stream did not close cleanly within {CLOSE_TIMEOUT:?}");
        }
        tracing::info!("XMPP: stopped");
        keep.then_some(XmppAgent {
            connector,
            handle,
            out_rx,
            inbound,
            session,
            router,
        })
    }
}
