//! The command framework: the [`AdHocCommand`] trait each command implements,
//! the [`CommandSet`] the agent serves, and the router that answers every
//! incoming `<iq/>` (XEP-0050 commands, XEP-0030 disco, XEP-0199 ping).
//!
//! - Authorisation first: a JID outside the allow-list gets `not-authorized` on
//!   every command and sees no command in disco; a command an allowed JID may not
//!   run ([`AdHocCommand::allowed`]: the agent's data commands follow the peer's
//!   scopes) is hidden from it in disco and answered by
//!   [`AdHocCommand::refused`].
//! - Both XEP-0050 flows: the programmatic single-stage `execute` carrying a
//!   filled form, and the multi-stage flow of Gajim/Psi (empty `execute` → form
//!   with a `sessionid` → `complete`/`execute`/`next` with the form, or `cancel`).
//! - Each command request runs in its own task, bounded in number, with a deadline:
//!   one slow command never delays another peer, and every request is answered.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use minidom::Element;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoItemsQuery};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;

use super::auth::AllowList;
use super::command::{Action, Actions, Command, Note, Status};
use super::disco;
use super::errors::CommandError;
use super::forms::SubmittedForm;
use super::handle::{SendError, XmppHandle, new_id};
use super::ns::NS_COMMANDS;
use super::wire::Splice;

/// A boxed, sendable future: what [`AdHocCommand`] methods return, so that
/// commands of different types can live in one [`CommandSet`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a command's handlers return: an [`Outcome`] (or a form) or the error to
/// answer with.
pub type CommandFuture<'a, T = Outcome> = BoxFuture<'a, Result<T, CommandError>>;

/// One command request, as a command's `execute` receives it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The requester's bare JID, normalised: what authorisation decisions use.
    pub requester: BareJid,
    /// The full JID that sent the request (the one the answer goes to).
    pub from: Jid,
    /// The command's node.
    pub node: String,
    /// The submitted form (empty when the peer sent none).
    pub form: SubmittedForm,
    /// Child elements of `<command/>` other than the form, if a peer sends any.
    pub payloads: Vec<Element>,
    /// When the request's answer is due; budget upstream calls against it.
    pub deadline: tokio::time::Instant,
    /// To send other stanzas (e.g. messages) on the agent's stream.
    pub xmpp: XmppHandle,
    /// The request's iq id (the answer carries it).
    pub id: String,
    /// The XEP-0050 session of the answer.
    pub sessionid: String,
}

impl Request {
    /// The largest stanza the agent may send now.
    pub fn max_stanza_bytes(&self) -> usize {
        self.xmpp.max_stanza_bytes()
    }

    /// The exact size of this request's answer carrying `outcome`, WITHOUT the
    /// bytes of `outcome.data` (the data payload is what the caller sizes to fit
    /// what is left of [`Request::max_stanza_bytes`]).
    pub fn envelope_bytes(&self, outcome: &Outcome) -> Result<usize, CommandError> {
        self.xmpp
            .envelope_bytes(|placeholder| {
                let answer = answer_command(
                    self.node.clone(),
                    self.sessionid.clone(),
                    outcome.clone(),
                    Some(placeholder),
                );
                result_iq(
                    Some(self.from.clone()),
                    self.id.clone(),
                    Some(answer.into_element()),
                )
                .into()
            })
            .map_err(|e| CommandError::internal(format!("cannot size the answer: {e}")))
    }
}

/// A command's answer: a result form, notes, payloads such as
/// `<quoalise xmlns="urn:quoalise:0">` as elements or as bytes, and, for an
/// answer in several stages (pages), what the next stage needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub form: Option<DataForm>,
    pub notes: Vec<Note>,
    pub payloads: Vec<Element>,
    /// One payload already serialised (one XML element), sent after `payloads`
    /// as bytes, without a tree (see [`super::wire`]).
    pub data: Option<bytes::Bytes>,
    /// Set when this answer is one stage of several: the answer is
    /// `executing` with a `next` action, and the peer's `next` (or `execute`)
    /// on the same session runs [`AdHocCommand::next`] with this.
    pub more: Option<Continuation>,
}

/// What a command keeps between two stages of one answer (e.g. the readings
/// still to page), opaque to the framework.
#[derive(Clone)]
pub struct Continuation(Arc<dyn Any + Send + Sync>);

impl Continuation {
    pub fn new<T: Any + Send + Sync>(state: T) -> Self {
        Continuation(Arc::new(state))
    }

    /// The state, if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for Continuation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Continuation")
    }
}

impl PartialEq for Continuation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Outcome {
    pub fn new() -> Self {
        Outcome::default()
    }

    pub fn with_form(mut self, form: DataForm) -> Self {
        self.form = Some(form);
        self
    }

    pub fn with_note(mut self, note: Note) -> Self {
        self.notes.push(note);
        self
    }

    pub fn with_payload(mut self, payload: Element) -> Self {
        self.payloads.push(payload);
        self
    }
}

/// One ad-hoc command. `C` is the context every command of a [`CommandSet`]
/// shares (store, upstream client, configuration… whatever the agent wires in).
///
/// ```ignore
/// struct GetHistory;
/// impl AdHocCommand<AgentContext> for GetHistory {
///     fn node(&self) -> &str { "get_history" }
///     fn name(&self) -> &str { "Get history" }
///     fn form(&self) -> DataForm { FormBuilder::form("Get history")/* … */.build() }
///     fn execute<'a>(&'a self, ctx: &'a AgentContext, req: Request)
///         -> CommandFuture<'a> {
///         Box::pin(async move { /* … */ })
///     }
/// }
/// ```
pub trait AdHocCommand<C>: Send + Sync + 'static {
    /// The XEP-0050 node, e.g. `get_history`.
    fn node(&self) -> &str;

    /// Human-readable name, shown in disco and by Gajim/Psi.
    fn name(&self) -> &str;

    /// The form a human gets on an empty `execute`, with sensible defaults.
    fn form(&self) -> DataForm;

    /// The form for this requester; override to tailor it (e.g. list the PRMs
    /// the peer may read). Defaults to [`AdHocCommand::form`].
    fn form_for<'a>(&'a self, _ctx: &'a C, _requester: &'a BareJid) -> CommandFuture<'a, DataForm> {
        Box::pin(async move { Ok(self.form()) })
    }

    /// Whether an empty `execute` first shows the form (true), or runs at once
    /// with no input (false: commands without fields).
    fn needs_input(&self) -> bool {
        true
    }

    /// Whether this (allow-listed) requester may run this command at all; those
    /// that may not do not see it in disco, and their requests are answered by
    /// [`AdHocCommand::refused`]. Read on every disco query and request: keep it
    /// cheap and synchronous.
    fn allowed(&self, _ctx: &C, _requester: &BareJid) -> bool {
        true
    }

    /// The answer to a request of a requester that may not run this command
    /// ([`AdHocCommand::allowed`] is false), at any stage (`cancel` of its own
    /// session aside): `not-authorized` naming the requester and the command.
    /// Override to say why, or to put the refusal on record; `request.form` is the
    /// form the peer sent, if it was well-formed (else empty). Runs in the
    /// request's task, like [`AdHocCommand::execute`].
    fn refused<'a>(&'a self, _ctx: &'a C, request: Request) -> BoxFuture<'a, CommandError> {
        Box::pin(async move {
            CommandError::NotAuthorized(format!(
                "{} may not run '{}'",
                request.requester,
                self.node()
            ))
        })
    }

    /// Runs the command. Errors map to stanza errors (see [`CommandError`]).
    fn execute<'a>(&'a self, ctx: &'a C, request: Request) -> CommandFuture<'a>;

    /// The next stage of an answer whose previous stage set
    /// [`Outcome::more`]; `request.form` is whatever the peer sent with its
    /// `next` (usually nothing).
    fn next<'a>(
        &'a self,
        _ctx: &'a C,
        _request: Request,
        _more: Continuation,
    ) -> CommandFuture<'a> {
        Box::pin(async move {
            Err(CommandError::BadAction(format!(
                "'{}' has a single stage",
                self.node()
            )))
        })
    }
}

/// The commands the agent serves, with their shared context.
pub struct CommandSet<C> {
    ctx: Arc<C>,
    commands: Vec<Arc<dyn AdHocCommand<C>>>,
}

impl<C: Send + Sync + 'static> CommandSet<C> {
    pub fn new(ctx: C) -> Self {
        CommandSet::with_shared(Arc::new(ctx))
    }

    /// A set sharing a context the caller also holds.
    pub fn with_shared(ctx: Arc<C>) -> Self {
        CommandSet {
            ctx,
            commands: Vec::new(),
        }
    }

    /// Adds a command. Disco lists commands in this order.
    ///
    /// # Panics
    /// If a command with the same node is already in the set (a programming
    /// error that any test of the set reveals).
    pub fn with(mut self, command: impl AdHocCommand<C>) -> Self {
        assert!(
            self.get(command.node()).is_none(),
            "two commands with node '{}'",
            command.node()
        );
        self.commands.push(Arc::new(command));
        self
    }

    pub fn get(&self, node: &str) -> Option<&Arc<dyn AdHocCommand<C>>> {
        self.commands.iter().find(|c| c.node() == node)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.commands.iter().map(|c| c.node())
    }

    pub fn context(&self) -> &Arc<C> {
        &self.ctx
    }
}

/// Knobs of the command framework. `request_timeout` comes from the config;
/// the others have defaults suited to production.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Deadline of one request, from receipt to answer.
    pub request_timeout: Duration,
    /// How long a multi-stage session waits for the filled form.
    pub session_ttl: Duration,
    /// Open multi-stage sessions, all peers together.
    pub max_sessions: usize,
    /// Open multi-stage sessions of one full JID; its oldest is dropped past this.
    pub max_sessions_per_jid: usize,
    /// Command requests running at once; more are answered `resource-constraint`.
    pub max_in_flight: usize,
    /// Command requests of ONE peer (bare JID) running at once; more of its
    /// requests are answered `resource-constraint`, so that a peer flooding the
    /// agent leaves room for the others (whose requests the quota scheduler then
    /// serves in turn with the flood's).
    pub max_in_flight_per_peer: usize,
    /// On shutdown, how long running requests may take to finish before they are
    /// answered `service-unavailable`.
    pub shutdown_grace: Duration,
    /// Name of the agent in disco.
    pub name: String,
}

impl RouterSettings {
    pub fn new(request_timeout: Duration) -> Self {
        RouterSettings {
            request_timeout,
            session_ttl: Duration::from_secs(600),
            max_sessions: 1000,
            max_sessions_per_jid: 20,
            max_in_flight: 512,
            max_in_flight_per_peer: 128,
            shutdown_grace: request_timeout.min(Duration::from_secs(30)),
            name: "Quoalise agent".to_owned(),
        }
    }
}

/// A multi-stage session waiting for its form, or for `next`.
#[derive(Debug)]
struct PendingSession {
    node: String,
    owner: Jid,
    created: Instant,
    /// Set for an answer in stages: what its next stage needs.
    more: Option<Continuation>,
}

/// Open multi-stage sessions. Expired ones are kept for another TTL so that a
/// late peer learns "expired" rather than "unknown".
#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<String, PendingSession>,
}

impl Sessions {
    fn purge(&mut self, ttl: Duration) {
        let now = Instant::now();
        self.map
            .retain(|_, s| now.duration_since(s.created) < ttl * 2);
    }

    fn open(
        &mut self,
        node: &str,
        owner: &Jid,
        settings: &RouterSettings,
    ) -> Result<String, CommandError> {
        self.purge(settings.session_ttl);
        let owned: Vec<(&String, Instant)> = self
            .map
            .iter()
            .filter(|(_, s)| &s.owner == owner)
            .map(|(id, s)| (id, s.created))
            .collect();
        if owned.len() >= settings.max_sessions_per_jid
            && let Some(oldest) = owned
                .iter()
                .min_by_key(|(_, t)| *t)
                .map(|(id, _)| (*id).clone())
        {
            self.map.remove(&oldest);
        }
        if self.map.len() >= settings.max_sessions {
            return Err(CommandError::ResourceConstraint(format!(
                "too many open command sessions ({}); try again in a few minutes",
                self.map.len()
            )));
        }
        let id = new_id();
        self.insert(id.clone(), node, owner, None);
        Ok(id)
    }

    /// Keeps session `id` open for the next stage of its answer; its time to
    /// live starts again. Counts towards the same limits as [`Sessions::open`].
    fn resume_later(
        &mut self,
        id: String,
        node: &str,
        owner: &Jid,
        more: Continuation,
        settings: &RouterSettings,
    ) -> Result<(), CommandError> {
        self.purge(settings.session_ttl);
        if !self.map.contains_key(&id) && self.map.len() >= settings.max_sessions {
            return Err(CommandError::ResourceConstraint(format!(
                "too many open command sessions ({}); try again in a few minutes",
                self.map.len()
            )));
        }
        self.insert(id, node, owner, Some(more));
        Ok(())
    }

    fn insert(&mut self, id: String, node: &str, owner: &Jid, more: Option<Continuation>) {
        self.map.insert(
            id,
            PendingSession {
                node: node.to_owned(),
                owner: owner.clone(),
                created: Instant::now(),
                more,
            },
        );
    }

    /// Whether `id` is an open session of `owner` waiting for `next`.
    fn is_staged(&self, id: &str, owner: &Jid) -> bool {
        self.map
            .get(id)
            .is_some_and(|s| &s.owner == owner && s.more.is_some())
    }

    /// Closes the session `id` of `owner` on `node`, or says why it cannot.
    fn take(
        &mut self,
        id: &str,
        node: &str,
        owner: &Jid,
        ttl: Duration,
    ) -> Result<Option<Continuation>, CommandError> {
        let unknown = || {
            CommandError::BadSessionId(format!(
                "there is no open session '{id}' for '{node}' (it completed, was canceled, or was never opened): start the command again"
            ))
        };
        let Some(session) = self.map.get(id) else {
            return Err(unknown());
        };
        // A session of another requester is "unknown" to this one: never confirm
        // that someone else has it.
        if &session.owner != owner {
            return Err(unknown());
        }
        if session.node != node {
            return Err(CommandError::BadRequest(format!(
                "session '{id}' belongs to command '{}', not '{node}'",
                session.node
            )));
        }
        let expired = session.created.elapsed() >= ttl;
        let more = self.map.remove(id).and_then(|s| s.more);
        if expired {
            let what = if more.is_some() {
                "the next page must be asked for"
            } else {
                "a form must be submitted"
            };
            return Err(CommandError::SessionExpired(format!(
                "session '{id}' expired: {what} within {} s; start the command again",
                ttl.as_secs()
            )));
        }
        Ok(more)
    }
}

/// One stage of a command request, as the router hands it to a task.
struct Stage {
    from: Jid,
    requester: BareJid,
    id: String,
    node: String,
    sessionid: String,
    form: SubmittedForm,
    payloads: Vec<Element>,
    more: Option<Continuation>,
}

/// What a request task answers.
enum Answer {
    /// A ready `<command/>` (the form of the multi-stage flow).
    Command(Command),
    /// A command's outcome, to put in its `<command/>`.
    Outcome {
        node: String,
        sessionid: String,
        outcome: Outcome,
    },
}

impl Answer {
    /// The `<command/>` to send, and the payload to splice into it.
    fn into_command(self, xmpp: &XmppHandle) -> (Command, Option<Splice>) {
        match self {
            Answer::Command(command) => (command, None),
            Answer::Outcome {
                node,
                sessionid,
                mut outcome,
            } => {
                let splice = outcome.data.take().map(|data| xmpp.prepare(data));
                let placeholder = splice.as_ref().map(Splice::placeholder);
                (
                    answer_command(node, sessionid, outcome, placeholder),
                    splice,
                )
            }
        }
    }
}

/// The `<command/>` answering with `outcome`: `completed`, or `executing` with a
/// `next` action when more follows; the data's placeholder after the payloads.
fn answer_command(
    node: String,
    sessionid: String,
    outcome: Outcome,
    placeholder: Option<Element>,
) -> Command {
    let status = if outcome.more.is_some() {
        Status::Executing
    } else {
        Status::Completed
    };
    let mut answer = Command::answer(node, Some(sessionid), status);
    if outcome.more.is_some() {
        answer.actions = Some(Actions {
            execute: Some(Action::Next),
            next: true,
            ..Actions::default()
        });
    }
    answer.form = outcome.form;
    answer.notes = outcome.notes;
    answer.payloads = outcome.payloads;
    answer.payloads.extend(placeholder);
    answer
}

/// The iq dispatcher; one per running agent.
pub(crate) struct Router<C> {
    commands: CommandSet<C>,
    peers: AllowList,
    settings: RouterSettings,
    sessions: Mutex<Sessions>,
    accepting: AtomicBool,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    /// Requests running per peer (bare JID), for `max_in_flight_per_peer`.
    per_peer: Arc<Mutex<HashMap<BareJid, usize>>>,
    /// Cancelled when the shutdown grace is over: running requests answer at once.
    abort: CancellationToken,
    xmpp: XmppHandle,
}

/// One running request of a peer, counted against `max_in_flight_per_peer`
/// until dropped.
struct PeerSlot {
    counts: Arc<Mutex<HashMap<BareJid, usize>>>,
    peer: BareJid,
}

impl PeerSlot {
    fn take(
        counts: &Arc<Mutex<HashMap<BareJid, usize>>>,
        peer: BareJid,
        max: usize,
    ) -> Result<PeerSlot, CommandError> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let running = map.entry(peer.clone()).or_default();
        if *running >= max {
            return Err(CommandError::ResourceConstraint(format!(
                "you already have {running} requests running at this agent (at most {max} \
                 per peer); wait for their answers before sending more"
            )));
        }
        *running += 1;
        Ok(PeerSlot {
            counts: counts.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = map.get_mut(&self.peer) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

fn result_iq(to: Option<Jid>, id: String, payload: Option<Element>) -> Iq {
    Iq::Result {
        from: None,
        to,
        id,
        payload,
    }
}

fn error_iq(to: Option<Jid>, id: String, error: &CommandError) -> Iq {
    Iq::Error {
        from: None,
        to,
        id,
        error: error.to_stanza_error(),
        payload: None,
    }
}

impl<C: Send + Sync + 'static> Router<C> {
    pub(crate) fn new(
        commands: CommandSet<C>,
        peers: AllowList,
        settings: RouterSettings,
        xmpp: XmppHandle,
    ) -> Arc<Self> {
        Arc::new(Router {
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            per_peer: Arc::default(),
            commands,
            peers,
            settings,
            sessions: Mutex::new(Sessions::default()),
            accepting: AtomicBool::new(true),
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            xmpp,
        })
    }

    pub(crate) fn peers(&self) -> &AllowList {
        &self.peers
    }

    /// Answers an `<iq type="get"/>` or `<iq type="set"/>`. Quick answers (ping,
    /// disco, errors) come back at once; commands run in their own task, which
    /// sends the answer itself, and `None` is returned.
    pub(crate) fn handle_request(self: &Arc<Self>, iq: Iq) -> Option<Iq> {
        let (from, id, payload, is_get) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, payload, true),
            Iq::Set {
                from, id, payload, ..
            } => (from, id, payload, false),
            // Never answer an answer.
            Iq::Result { .. } | Iq::Error { .. } => return None,
        };
        let ns = payload.ns();
        let name = payload.name().to_owned();
        let outcome: Result<Option<Element>, CommandError> = match (ns.as_str(), name.as_str()) {
            (ns::PING, "ping") if is_get => Ok(None),
            (ns::DISCO_INFO, "query") if is_get => self.disco_info(from.as_ref(), payload),
            (ns::DISCO_ITEMS, "query") if is_get => self.disco_items(from.as_ref(), payload),
            (NS_COMMANDS, "command") if !is_get => {
                return self.handle_command(from, id, payload);
            }
            (NS_COMMANDS, "command") => Err(CommandError::BadRequest(
                "ad-hoc commands are sent in an <iq type='set'/>, not 'get'".to_owned(),
            )),
            (ns::PING, "ping") | (ns::DISCO_INFO, "query") | (ns::DISCO_ITEMS, "query") => {
                Err(CommandError::BadRequest(format!(
                    "<{name} xmlns='{ns}'/> is sent in an <iq type='get'/>, not 'set'"
                )))
            }
            _ => Err(CommandError::ServiceUnavailable {
                text: format!("this agent does not handle <{name} xmlns='{ns}'/>"),
                retry: false,
            }),
        };
        Some(match outcome {
            Ok(payload) => result_iq(from, id, payload),
            Err(e) => error_iq(from, id, &e),
        })
    }

    /// The commands `from` may run, in set order.
    fn visible_commands(&self, from: Option<&Jid>) -> Vec<&Arc<dyn AdHocCommand<C>>> {
        let Some(from) = from else {
            return Vec::new();
        };
        if !self.peers.allows(from) {
            return Vec::new();
        }
        let requester = from.to_bare();
        let ctx = self.commands.context();
        self.commands
            .commands
            .iter()
            .filter(|c| c.allowed(ctx, &requester))
            .collect()
    }

    fn disco_info(
        &self,
        from: Option<&Jid>,
        payload: Element,
    ) -> Result<Option<Element>, CommandError> {
        let query = DiscoInfoQuery::try_from(payload)
            .map_err(|e| CommandError::BadRequest(format!("malformed disco#info query: {e}")))?;
        let info = match query.node.as_deref() {
            None => disco::agent_info(&self.settings.name),
            Some(NS_COMMANDS) => disco::command_list_info(),
            Some(node) => {
                let visible = self.visible_commands(from);
                let command = visible.iter().find(|c| c.node() == node).ok_or_else(|| {
                    CommandError::ItemNotFound(format!("there is no node '{node}' here"))
                })?;
                disco::command_info(command.node(), command.name())
            }
        };
        Ok(Some(info.into()))
    }

    fn disco_items(
        &self,
        from: Option<&Jid>,
        payload: Element,
    ) -> Result<Option<Element>, CommandError> {
        let query = DiscoItemsQuery::try_from(payload)
            .map_err(|e| CommandError::BadRequest(format!("malformed disco#items query: {e}")))?;
        let items = match query.node.as_deref() {
            None => disco::no_items(None),
            Some(NS_COMMANDS) => {
                let agent = Jid::from(self.xmpp.jid().clone());
                disco::command_items(
                    &agent,
                    self.visible_commands(from)
                        .into_iter()
                        .map(|c| (c.node(), c.name())),
                )
            }
            Some(node) => {
                return Err(CommandError::ItemNotFound(format!(
                    "there is no node '{node}' here"
                )));
            }
        };
        Ok(Some(items.into()))
    }

    /// An ad-hoc command request (`<iq type="set"><command/></iq>`).
    fn handle_command(
        self: &Arc<Self>,
        from: Option<Jid>,
        id: String,
        payload: Element,
    ) -> Option<Iq> {
        match self.route_command(from.clone(), id.clone(), payload) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(from = ?from.as_ref().map(Jid::as_str), error = %e, "command request refused");
                Some(error_iq(from, id, &e))
            }
        }
    }

    fn route_command(
        self: &Arc<Self>,
        from: Option<Jid>,
        id: String,
        payload: Element,
    ) -> Result<Option<Iq>, CommandError> {
        // Authorisation comes first, whatever the request looks like.
        let Some(from) = from else {
            return Err(CommandError::NotAuthorized(
                "requests without a sender address are not served".to_owned(),
            ));
        };
        if !self.peers.allows(&from) {
            return Err(CommandError::NotAuthorized(format!(
                "{} is not a peer of this agent; its operator must add it to [[peers]]",
                from.to_bare()
            )));
        }
        let requester = from.to_bare();
        let command = Command::from_element(payload).map_err(|e| {
            CommandError::MalformedAction(format!("malformed <command/> element: {e}"))
        })?;
        let node = match command.node.as_deref() {
            Some(node) if !node.is_empty() => node.to_owned(),
            _ => {
                return Err(CommandError::MalformedAction(
                    "the <command/> element has no 'node' attribute".to_owned(),
                ));
            }
        };
        let ctx = self.commands.context();
        let Some(handler) = self.commands.get(&node).cloned() else {
            let available: Vec<&str> = self
                .visible_commands(Some(&from))
                .iter()
                .map(|c| c.node())
                .collect();
            return Err(CommandError::ItemNotFound(format!(
                "there is no command '{node}' (available: {})",
                available.join(", ")
            )));
        };
        let action = command.action_or_default();
        // A requester may always cancel its own session, even of a command it
        // may no longer run (a reload took it away between two pages).
        let cancel = action == Action::Cancel && command.sessionid.is_some();
        if !cancel && !handler.allowed(ctx, &requester) {
            // The form, when well-formed, lets the command say what was asked.
            let form = command
                .form
                .and_then(|form| SubmittedForm::new(form).ok())
                .unwrap_or_else(SubmittedForm::empty);
            self.spawn_refusal(
                handler,
                Stage {
                    from,
                    requester,
                    id,
                    node,
                    sessionid: command.sessionid.unwrap_or_else(new_id),
                    form,
                    payloads: command.payloads,
                    more: None,
                },
            )?;
            return Ok(None);
        }
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(CommandError::ServiceUnavailable {
                text: "the agent is shutting down; try again in a moment".to_owned(),
                retry: true,
            });
        }

        let staged = |sid: &str| self.lock_sessions().is_staged(sid, &from);
        match (action, command.sessionid) {
            (Action::Cancel, Some(sid)) => {
                self.lock_sessions()
                    .take(&sid, &node, &from, self.settings.session_ttl)?;
                let answer = Command::answer(node, Some(sid), Status::Canceled);
                Ok(Some(result_iq(Some(from), id, Some(answer.into_element()))))
            }
            (Action::Cancel, None) => Err(CommandError::BadSessionId(
                "'cancel' needs the sessionid of an open command session".to_owned(),
            )),
            // An answer in pages is read forward; the session stays open.
            (Action::Prev | Action::Complete, Some(sid)) if staged(&sid) => {
                Err(CommandError::BadAction(format!(
                    "'{}' is not available here: this answer comes in pages, read in order; ask 'next' for the following page, or 'cancel'",
                    action.as_str()
                )))
            }
            (Action::Prev, _) => Err(CommandError::BadAction(format!(
                "'{node}' has a single stage: there is no previous stage"
            ))),
            (_, Some(sid)) => {
                // The next page of an answer, or the second stage of the
                // multi-stage flow: the filled form.
                let more =
                    self.lock_sessions()
                        .take(&sid, &node, &from, self.settings.session_ttl)?;
                let form = submitted(command.form)?;
                self.spawn_execute(
                    handler,
                    Stage {
                        from,
                        requester,
                        id,
                        node,
                        sessionid: sid,
                        form,
                        payloads: command.payloads,
                        more,
                    },
                )?;
                Ok(None)
            }
            (_, None) => {
                let form = match command.form {
                    // Single stage: the programmatic peer sends the filled form at once.
                    Some(form) => SubmittedForm::new(form)?,
                    None if handler.needs_input() => {
                        self.spawn_present_form(handler, from, requester, id, node)?;
                        return Ok(None);
                    }
                    None => SubmittedForm::empty(),
                };
                self.spawn_execute(
                    handler,
                    Stage {
                        from,
                        requester,
                        id,
                        node,
                        sessionid: new_id(),
                        form,
                        payloads: command.payloads,
                        more: None,
                    },
                )?;
                Ok(None)
            }
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Poisoning only follows a panic while holding the lock, which the
        // session code cannot do; keep serving with the data as is.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `handler.execute` (or `handler.next` for the next stage of an
    /// answer) in its own task and answers `completed`, or `executing` with a
    /// `next` action when the outcome says more follows.
    fn spawn_execute(
        self: &Arc<Self>,
        handler: Arc<dyn AdHocCommand<C>>,
        mut stage: Stage,
    ) -> Result<(), CommandError> {
        let ctx = self.commands.context().clone();
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let more = stage.more.take();
        let (from, id, node, sessionid) = (
            stage.from.clone(),
            stage.id.clone(),
            stage.node.clone(),
            stage.sessionid.clone(),
        );
        let request = self.request_of(stage, deadline);
        let this = self.clone();
        let owner = from.clone();
        let work = async move {
            let outcome = match more {
                None => handler.execute(&ctx, request).await?,
                Some(more) => handler.next(&ctx, request, more).await?,
            };
            if let Some(more) = &outcome.more {
                this.lock_sessions().resume_later(
                    sessionid.clone(),
                    &node,
                    &owner,
                    more.clone(),
                    &this.settings,
                )?;
            }
            Ok(Answer::Outcome {
                node,
                sessionid,
                outcome,
            })
        };
        self.spawn_answer(from, id, deadline, work)
    }

    /// Answers a request of a requester that may not run `handler` with its
    /// [`AdHocCommand::refused`], in a task like any request.
    fn spawn_refusal(
        self: &Arc<Self>,
        handler: Arc<dyn AdHocCommand<C>>,
        stage: Stage,
    ) -> Result<(), CommandError> {
        let ctx = self.commands.context().clone();
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let from = stage.from.clone();
        let id = stage.id.clone();
        let request = self.request_of(stage, deadline);
        let work = async move { Err(handler.refused(&ctx, request).await) };
        self.spawn_answer(from, id, deadline, work)
    }

    /// The [`Request`] a command's handlers get for `stage`.
    fn request_of(&self, stage: Stage, deadline: tokio::time::Instant) -> Request {
        Request {
            requester: stage.requester,
            from: stage.from,
            node: stage.node,
            form: stage.form,
            payloads: stage.payloads,
            deadline,
            xmpp: self.xmpp.clone(),
            id: stage.id,
            sessionid: stage.sessionid,
        }
    }

    /// First stage of the multi-stage flow: the form, a new session, `executing`.
    fn spawn_present_form(
        self: &Arc<Self>,
        handler: Arc<dyn AdHocCommand<C>>,
        from: Jid,
        requester: BareJid,
        id: String,
        node: String,
    ) -> Result<(), CommandError> {
        let ctx = self.commands.context().clone();
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let this = self.clone();
        let owner = from.clone();
        let work = async move {
            let form = handler.form_for(&ctx, &requester).await?;
            let sessionid = this.lock_sessions().open(&node, &owner, &this.settings)?;
            let mut answer = Command::answer(node, Some(sessionid), Status::Executing);
            answer.actions = Some(Actions {
                execute: Some(Action::Complete),
                complete: true,
                ..Actions::default()
            });
            answer.form = Some(form);
            Ok(Answer::Command(answer))
        };
        self.spawn_answer(from, id, deadline, work)
    }

    /// Spawns `work` with a permit, a deadline, panic containment and shutdown
    /// abort; whatever happens, the peer gets an answer.
    fn spawn_answer(
        self: &Arc<Self>,
        to: Jid,
        id: String,
        deadline: tokio::time::Instant,
        work: impl Future<Output = Result<Answer, CommandError>> + Send + 'static,
    ) -> Result<(), CommandError> {
        let peer_slot = PeerSlot::take(
            &self.per_peer,
            to.to_bare(),
            self.settings.max_in_flight_per_peer,
        )?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            CommandError::ResourceConstraint(format!(
                "the agent is already running {} requests; try again shortly",
                self.settings.max_in_flight
            ))
        })?;
        let this = self.clone();
        let timeout = self.settings.request_timeout;
        self.tracker.spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            let started = Instant::now();
            let guarded = AssertUnwindSafe(work).catch_unwind();
            let result = tokio::select! {
                r = tokio::time::timeout_at(deadline, guarded) => match r {
                    Ok(Ok(result)) => result,
                    Ok(Err(_panic)) => {
                        tracing::error!(to = %to, "a command panicked; answering internal-server-error");
                        Err(CommandError::internal("the command failed unexpectedly; the agent's operator can find details in its log"))
                    }
                    Err(_) => {
                        tracing::warn!(to = %to, timeout_secs = timeout.as_secs(), "request past its deadline");
                        Err(CommandError::ServiceUnavailable {
                            text: format!("the request did not complete within {} s; try again later, or ask for a shorter period", timeout.as_secs()),
                            retry: true,
                        })
                    }
                },
                _ = this.abort.cancelled() => Err(CommandError::unavailable(
                    "the agent is shutting down and abandoned this request; try again in a moment",
                )),
            };
            // A staged answer's session, to close if the answer cannot be sent:
            // a later `next` must not silently skip the page that was lost.
            let mut staged = None;
            let sent = match result {
                Ok(answer) => {
                    let (answer, splice) = answer.into_command(&this.xmpp);
                    if answer.status == Some(Status::Executing) && answer.actions.as_ref().is_some_and(|a| a.next) {
                        staged = answer.sessionid.clone();
                    }
                    tracing::debug!(to = %to, node = ?answer.node, status = ?answer.status, elapsed_ms = started.elapsed().as_millis() as u64, "command answered");
                    let reply = result_iq(Some(to.clone()), id.clone(), Some(answer.into_element()));
                    match splice {
                        Some(splice) => this.xmpp.send_spliced(reply, splice).await,
                        None => this.xmpp.send(reply).await,
                    }
                }
                Err(e) => {
                    tracing::debug!(to = %to, error = %e, "command failed");
                    this.xmpp.send(error_iq(Some(to.clone()), id.clone(), &e)).await
                }
            };
            match sent {
                Ok(()) => {}
                Err(SendError::Stopped) => tracing::debug!("answer dropped: the session has stopped"),
                Err(e @ (SendError::TooLarge { .. } | SendError::Unserialisable(_))) => {
                    // Never leave the peer waiting: a short error instead.
                    let error = match e {
                        SendError::TooLarge { size, limit } => CommandError::TooLarge(Box::new(super::errors::TooLarge {
                            text: format!("the answer would be {size} bytes, more than the {limit} bytes the agent's XMPP server accepts in one stanza; ask for less"),
                            records: 0,
                            max_bytes: limit as u64,
                            step: None,
                            max_days: None,
                        })),
                        other => CommandError::internal(format!("the agent could not send its answer: {other}")),
                    };
                    tracing::error!(to = %to, error = %error, "answer not sent; answering with an error");
                    if let Some(sessionid) = staged {
                        this.lock_sessions().map.remove(&sessionid);
                    }
                    if this.xmpp.send(error_iq(Some(to), id, &error)).await.is_err() {
                        tracing::debug!("error answer dropped");
                    }
                }
            }
        });
        Ok(())
    }

    /// Fencing: no new command, and every running one abandoned at once (its
    /// future dropped at its next wake-up; it queues a refusal).
    pub(crate) fn abandon(&self) {
        self.stop_accepting();
        self.abort.cancel();
    }

    /// Returns once no command runs (after [`Self::stop_accepting`]).
    pub(crate) async fn idle(&self) {
        self.tracker.wait().await;
    }

    /// Stops taking new commands; running ones carry on.
    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        self.tracker.close();
    }

    /// Waits for running requests, at most the shutdown grace; then makes the
    /// stragglers answer `service-unavailable` and waits for those answers.
    pub(crate) async fn drain(&self) {
        let running = self.tracker.len();
        if running > 0 {
            tracing::info!(
                running,
                grace_secs = self.settings.shutdown_grace.as_secs(),
                "waiting for running requests"
            );
        }
        if tokio::time::timeout(self.settings.shutdown_grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.tracker.len(),
                "requests still running after the shutdown grace; answering them service-unavailable"
            );
            self.abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        }
    }
}

/// The form of a second-stage request (a missing form counts as empty, so that
/// the command names the missing fields).
fn submitted(form: Option<DataForm>) -> Result<SubmittedForm, CommandError> {
    match form {
        Some(form) => Ok(SubmittedForm::new(form)?),
        None => Ok(SubmittedForm::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_cannot_take_every_request_slot() {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let a: BareJid = "flood@example.org".parse().unwrap();
        let b: BareJid = "other@example.org".parse().unwrap();
        let first = PeerSlot::take(&counts, a.clone(), 2).unwrap();
        let second = PeerSlot::take(&counts, a.clone(), 2).unwrap();
        let refused = PeerSlot::take(&counts, a.clone(), 2).err().unwrap();
        assert!(matches!(refused, CommandError::ResourceConstraint(_)));
        assert!(
            refused.to_string().contains("at most 2 per peer"),
            "{refused}"
        );
        // Another peer still gets in.
        let other = PeerSlot::take(&counts, b, 2).unwrap();
        // An answered request frees its slot.
        drop(first);
        let third = PeerSlot::take(&counts, a, 2).unwrap();
        drop((second, third, other));
        assert!(counts.lock().unwrap().is_empty());
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    fn settings() -> RouterSettings {
        let mut s = RouterSettings::new(Duration::from_secs(5));
        s.max_sessions = 3;
        s.max_sessions_per_jid = 2;
        s
    }

    #[test]
    fn sessions_are_bound_to_owner_and_node() {
        let s = settings();
        let mut sessions = Sessions::default();
        let alice = jid("alice@example.org/gajim");
        let id = sessions.open("echo", &alice, &s).unwrap();

        let other = jid("alice@example.org/psi");
        assert!(matches!(
            sessions.take(&id, "echo", &other, s.session_ttl),
            Err(CommandError::BadSessionId(_))
        ));
        assert!(matches!(
            sessions.take(&id, "slow", &alice, s.session_ttl),
            Err(CommandError::BadRequest(_))
        ));
        assert!(sessions.take(&id, "echo", &alice, s.session_ttl).is_ok());
        // Consumed: a second completion is refused.
        assert!(matches!(
            sessions.take(&id, "echo", &alice, s.session_ttl),
            Err(CommandError::BadSessionId(_))
        ));
    }

    #[test]
    fn expired_sessions_say_so() {
        let s = settings();
        let mut sessions = Sessions::default();
        let alice = jid("alice@example.org/gajim");
        let id = sessions.open("echo", &alice, &s).unwrap();
        let err = sessions
            .take(&id, "echo", &alice, Duration::ZERO)
            .unwrap_err();
        assert!(matches!(err, CommandError::SessionExpired(_)), "{err:?}");
        assert!(err.to_string().contains("start the command again"));
    }

    #[test]
    fn sessions_are_bounded() {
        let s = settings();
        let mut sessions = Sessions::default();
        let alice = jid("alice@example.org/gajim");
        let first = sessions.open("echo", &alice, &s).unwrap();
        sessions.open("echo", &alice, &s).unwrap();
        // Per JID: the oldest is dropped.
        sessions.open("echo", &alice, &s).unwrap();
        assert!(!sessions.map.contains_key(&first));
        // In total: refused.
        sessions
            .open("echo", &jid("bob@example.org/x"), &s)
            .unwrap();
        assert!(matches!(
            sessions.open("echo", &jid("carol@example.org/x"), &s),
            Err(CommandError::ResourceConstraint(_))
        ));
    }
}
