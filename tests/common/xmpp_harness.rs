//! Agents and peers for the XMPP integration tests, built from the library's
//! public API only: a running agent with a test-only command set (echo, slow,
//! fail, panic, admin_only), a Rust peer (an `XmppAgent` with no commands that
//! sends iqs), a slixmpp peer (tests/interop/adhoc.py), and a log capture.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use quoalise_agent::config::{Secret, XmppConfig};
use quoalise_agent::xmpp::forms::{fixed, list_single, text_multi, text_single};
use quoalise_agent::xmpp::{
    AdHocCommand, AllowList, Command, CommandError, CommandFuture, CommandSet, FieldExt,
    FormBuilder, IqError, Outcome, Request, XmppAgent, XmppHandle,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::stanza_error::StanzaError;

use super::prosody::{DOMAIN, Prosody};

pub const AGENT: &str = "agent";
pub const PASSWORD: &str = "s3cret-pw";

/// Config of an account on the test server (its domain), trusting the test CA.
pub fn xmpp_config(prosody: &Prosody, user: &str, resource: &str) -> XmppConfig {
    XmppConfig {
        jid: format!("{user}@{}/{resource}", prosody.domain()),
        password: Secret::new(PASSWORD),
        server: Some(prosody.server()),
        ca_file: Some(prosody.ca_file()),
        allow_plaintext: false,
        request_timeout_secs: 10,
        ping_interval_secs: 60,
        first_session_deadline_secs: 10,
        max_stanza_bytes: quoalise_agent::config::DEFAULT_MAX_STANZA_BYTES,
    }
}

/// The agent's full JID in the tests.
pub fn agent_jid() -> Jid {
    agent_jid_at(DOMAIN)
}

/// The agent's full JID when its server serves `domain`.
pub fn agent_jid_at(domain: &str) -> Jid {
    Jid::new(&format!("{AGENT}@{domain}/agent")).unwrap()
}

/// State shared by the test commands: proves the context reaches them.
#[derive(Default)]
pub struct TestContext {
    pub executions: AtomicUsize,
    /// The only bare JID allowed to run `admin_only`.
    pub admin: Option<BareJid>,
}

/// `echo`: returns every submitted field in a result form, plus a payload
/// naming the requester.
pub struct Echo;

impl AdHocCommand<TestContext> for Echo {
    fn node(&self) -> &str {
        "echo"
    }

    fn name(&self) -> &str {
        "Echo the form"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("Echo")
            .instructions("Sends back what you submit")
            .field(text_single("text", "Text").required())
            .field(text_multi("lines", "Several lines"))
            .field(
                list_single(
                    "direction",
                    "Direction",
                    &[("consumption", "Consumption"), ("production", "Production")],
                )
                .value("consumption"),
            )
            .build()
    }

    fn execute<'a>(&'a self, ctx: &'a TestContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            ctx.executions.fetch_add(1, Ordering::SeqCst);
            let text = request.form.required("text")?;
            let direction = request
                .form
                .choice(
                    "direction",
                    &["consumption", "production"],
                    Some("consumption"),
                )?
                .unwrap_or_default();
            let mut form = FormBuilder::result("Echo")
                .field(fixed(Some("result"), Some("Echo"), "Success"))
                .field(text_single("text", "Text").value(&text))
                .field(text_single("direction", "Direction").value(&direction));
            if let Some(lines) = request.form.text_multi("lines") {
                form = form.field(text_multi("lines", "Lines").lines(&lines));
            }
            let mut payload = Element::bare("echo", "urn:test:echo");
            payload.append_text(request.requester.to_string());
            Ok(Outcome::new().with_form(form.build()).with_payload(payload))
        })
    }
}

/// `slow`: sleeps `seconds` (default 2), then answers.
pub struct Slow;

impl AdHocCommand<TestContext> for Slow {
    fn node(&self) -> &str {
        "slow"
    }

    fn name(&self) -> &str {
        "Take your time"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("Slow")
            .field(text_single("seconds", "Seconds").value("2"))
            .build()
    }

    fn execute<'a>(&'a self, _ctx: &'a TestContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            let seconds: f64 = match request.form.optional("seconds")? {
                Some(s) => s
                    .parse()
                    .map_err(|_| CommandError::bad_request("field 'seconds' is not a number"))?,
                None => 2.0,
            };
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok(Outcome::new().with_form(
                FormBuilder::result("Slow")
                    .field(fixed(Some("slept"), None, &seconds.to_string()))
                    .build(),
            ))
        })
    }
}

/// `fail`: fails the way field `kind` says (upstream, unavailable, bad-request).
pub struct Fail;

impl AdHocCommand<TestContext> for Fail {
    fn node(&self) -> &str {
        "fail"
    }

    fn name(&self) -> &str {
        "Fail on purpose"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("Fail")
            .field(text_single("kind", "Kind").required())
            .build()
    }

    fn execute<'a>(&'a self, _ctx: &'a TestContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            Err(match request.form.required("kind")?.as_str() {
                "upstream" => CommandError::enedis(
                    "ADAM-ERR0123",
                    "The requested period cannot be anterior to the meter's last activation date",
                ),
                "unavailable" => CommandError::unavailable("Enedis cannot be reached"),
                other => CommandError::bad_request(format!("field 'kind': unknown kind '{other}'")),
            })
        })
    }
}

/// `panic`: a bug in a command; the agent must survive and answer.
pub struct Panic;

impl AdHocCommand<TestContext> for Panic {
    fn node(&self) -> &str {
        "panic"
    }

    fn name(&self) -> &str {
        "Panic"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("Panic").build()
    }

    fn needs_input(&self) -> bool {
        false
    }

    fn execute<'a>(&'a self, _ctx: &'a TestContext, _request: Request) -> CommandFuture<'a> {
        Box::pin(async move { panic!("a test command panics on purpose") })
    }
}

/// `admin_only`: runnable only by the context's admin; needs no input.
pub struct AdminOnly;

impl AdHocCommand<TestContext> for AdminOnly {
    fn node(&self) -> &str {
        "admin_only"
    }

    fn name(&self) -> &str {
        "Admin only"
    }

    fn form(&self) -> DataForm {
        FormBuilder::form("Admin only").build()
    }

    fn needs_input(&self) -> bool {
        false
    }

    fn allowed(&self, ctx: &TestContext, requester: &BareJid) -> bool {
        ctx.admin.as_ref() == Some(requester)
    }

    fn execute<'a>(&'a self, _ctx: &'a TestContext, request: Request) -> CommandFuture<'a> {
        Box::pin(async move {
            Ok(Outcome::new().with_form(
                FormBuilder::result("Admin only")
                    .field(fixed(Some("who"), None, request.requester.as_str()))
                    .build(),
            ))
        })
    }
}

pub fn test_commands(ctx: TestContext) -> CommandSet<TestContext> {
    CommandSet::new(ctx)
        .with(Echo)
        .with(Slow)
        .with(Fail)
        .with(Panic)
        .with(AdminOnly)
}

/// An agent (or a peer) running in the background.
pub struct Running {
    pub handle: XmppHandle,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub fn spawn<C: Send + Sync + 'static>(
        agent: XmppAgent,
        commands: CommandSet<C>,
        peers: AllowList,
    ) -> Self {
        let handle = agent.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run(commands, peers, shutdown.clone()));
        Running {
            handle,
            shutdown,
            task: Some(task),
        }
    }

    /// Cancels and waits for the graceful shutdown to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(40), task)
                .await
                .expect("the agent stops within 40 s")
                .expect("the agent task does not panic");
        }
    }

    /// Whether the run loop has returned.
    pub fn finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    pub async fn wait_up(&self) {
        assert!(
            self.handle.wait_until_up(Duration::from_secs(20)).await,
            "the session of {} is not up within 20 s",
            self.handle.jid()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the test agent (`agent@localhost/agent`) serving the test commands to
/// `peers`; `configure` may adjust the agent before it runs.
pub async fn start_agent(
    prosody: &Prosody,
    peers: &[&str],
    ctx: TestContext,
    configure: impl FnOnce(&mut XmppAgent),
) -> Running {
    prosody.register(AGENT, PASSWORD).await;
    let mut agent = XmppAgent::new(&xmpp_config(prosody, AGENT, "agent")).unwrap();
    configure(&mut agent);
    let running = Running::spawn(agent, test_commands(ctx), AllowList::new(peers).unwrap());
    running.wait_up().await;
    running
}

/// A peer built from the library: no commands, sends iqs, sees messages and
/// presences.
pub struct Peer {
    pub running: Running,
    pub inbound: mpsc::Receiver<Stanza>,
    /// Where its iqs go: [`agent_jid`] unless changed (an agent on another
    /// server of a federation).
    pub agent: Jid,
}

impl Peer {
    /// Registers `user` and logs in as `user@<its domain>/resource`.
    pub async fn connect(prosody: &Prosody, user: &str, resource: &str) -> Self {
        prosody.register(user, PASSWORD).await;
        Peer::login(prosody, &format!("{user}@{}/{resource}", prosody.domain())).await
    }

    /// Logs in with exactly this JID (letter case included), account existing,
    /// on `prosody` (its server).
    pub async fn login(prosody: &Prosody, jid: &str) -> Self {
        let (user, rest) = jid.split_once('@').unwrap();
        let (_, resource) = rest.split_once('/').unwrap();
        let mut config = xmpp_config(prosody, user, resource);
        config.jid = jid.to_owned();
        let mut agent = XmppAgent::new(&config).unwrap();
        let inbound = agent.inbound(64);
        let running = Running::spawn(agent, CommandSet::new(()), AllowList::default());
        running.wait_up().await;
        Peer {
            running,
            inbound,
            agent: agent_jid(),
        }
    }

    /// The same peer sending its iqs to `agent`.
    pub fn to(mut self, agent: Jid) -> Self {
        self.agent = agent;
        self
    }

    /// Sends `payload` in an iq set to the agent; the answer's payload or error.
    pub async fn set(&self, payload: Element) -> Result<Option<Element>, IqError> {
        self.running
            .handle
            .send_iq(
                Some(self.agent.clone()),
                IqRequestPayload::Set(payload),
                Duration::from_secs(30),
            )
            .await
    }

    pub async fn get(&self, payload: Element) -> Result<Option<Element>, IqError> {
        self.running
            .handle
            .send_iq(
                Some(self.agent.clone()),
                IqRequestPayload::Get(payload),
                Duration::from_secs(30),
            )
            .await
    }

    /// Runs a command request; the parsed answer or the stanza error.
    pub async fn command(&self, command: Command) -> Result<Command, StanzaError> {
        match self.set(command.to_element()).await {
            Ok(Some(element)) => Ok(Command::from_element(element).expect("a <command/> answer")),
            Ok(None) => panic!("a command answer without payload"),
            Err(IqError::Error(e)) => Err(*e),
            Err(other) => panic!("no answer to the command: {other}"),
        }
    }
}

/// The condition name and text of a stanza error, e.g. ("not-authorized", "…").
pub fn condition(error: &StanzaError) -> (String, String) {
    let condition = Element::from(error.defined_condition.clone());
    (
        condition.name().to_owned(),
        error.texts.get("en").cloned().unwrap_or_default(),
    )
}

/// A submitted form with these single-valued fields.
pub fn submit(fields: &[(&str, &str)]) -> DataForm {
    DataForm {
        type_: xmpp_parsers::data_forms::DataFormType::Submit,
        title: None,
        instructions: None,
        fields: fields
            .iter()
            .map(|(var, value)| xmpp_parsers::data_forms::Field::text_single(var, value))
            .collect(),
    }
}

/// The values of a field in a form.
pub fn field_values(form: &DataForm, var: &str) -> Vec<String> {
    form.fields
        .iter()
        .find(|f| f.var.as_deref() == Some(var))
        .map(|f| f.values.clone())
        .unwrap_or_default()
}

/// slixmpp, the independent implementation (tests/interop/adhoc.py).
pub struct Slix {
    pub jid: String,
    server: String,
    ca_file: PathBuf,
}

impl Slix {
    /// A slixmpp peer logging in as `jid` (the account must exist).
    pub fn new(prosody: &Prosody, jid: &str) -> Self {
        Slix {
            jid: jid.to_owned(),
            server: prosody.server(),
            ca_file: prosody.ca_file(),
        }
    }

    /// Runs one action of adhoc.py and parses its JSON.
    pub async fn run(&self, extra: &[&str], action: &str, args: &[&str]) -> serde_json::Value {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv/bin/python");
        assert!(
            python.is_file(),
            "no Python venv with slixmpp at {}: run scripts/setup-python.sh first",
            python.display()
        );
        let out = tokio::process::Command::new(&python)
            .arg(root.join("tests/interop/adhoc.py"))
            .args([
                "--jid",
                &self.jid,
                "--password",
                PASSWORD,
                "--server",
                &self.server,
            ])
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(["--agent", agent_jid().as_str()])
            .args(extra)
            .arg(action)
            .args(args)
            .output()
            .await
            .expect("run the slixmpp script");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "adhoc.py {action} {args:?} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("adhoc.py printed no JSON ({e}):\n{stdout}\n{stderr}"))
    }
}

/// Captures the log lines of the current thread (tests run the agent on a
/// current-thread runtime, so its tasks log here).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture for the current thread until the guard drops.
    ///
    /// tracing caches, per call site and for the whole process, whether anybody
    /// listens; a test thread without a subscriber that reaches a call site first
    /// would cache "nobody" and hide it from this capture. So an inert subscriber is
    /// the global default of the test process (every thread has one, and call sites
    /// stay of interest), and the cache is rebuilt once this capture is in place.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.text().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
