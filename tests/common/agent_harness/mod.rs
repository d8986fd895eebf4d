//! A whole deployment for the agent's integration tests: a real Prosody
//! (tests/common/prosody.rs), the Enedis simulator (tests/common/sim.rs)
//! and the REAL `quoalise-agent` binary running `run` with a configuration
//! written here from [`AgentSettings`] (through tests/common/config.rs), all on
//! 127.0.0.1 with free ports and temporary directories.
//! Everything is stopped on Drop (SIGTERM, then kill), also when a test fails;
//! the agent's log is printed then.
//!
//! Peers: Rust ones from tests/common/xmpp_harness.rs (`Peer`), slixmpp ones
//! through tests/interop/quoalise_peer.py ([`Deployment::python`]), and the
//! `query` command line ([`Deployment::query`]).
//!
//! [`Federated`] is the same deployment with the agent on one Prosody and its
//! peers on another that federates with it (tests/common/federation.rs): peers
//! in `[[peers]]` may be on any domain ([`peer_at`]).

pub mod paging;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::config::{AgentConfig, write_secret};
use crate::common::federation::Federation;
use crate::common::prosody::{DOMAIN, Prosody, ProsodyOptions};
pub use crate::common::prosody::{free_port, signal};
use crate::common::sim::Sim;
use crate::common::xmpp_harness::{AGENT, PASSWORD, agent_jid_at};
use xmpp_parsers::jid::Jid;

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");

/// Profile-0 PRM (consumption, 30-minute load curve, no gaps).
pub const PRM: &str = "22516914714270";
/// `sge.login` of an agent that reads the simulator's SGE.
pub const SGE_LOGIN: &str = "ops@agent.example.org";
/// `sge.contract_id` of an agent that reads the simulator's SGE.
pub const SGE_CONTRACT: &str = "1234567";
/// Profile 1: commissioned 2019-08-27 (ADAM-ERR0123 before).
pub const PRM_PROFILE_1: &str = "11453290002823";
/// The 10-minute meter.
pub const PRM_PT10M: &str = "30000000000010";

/// One `[[peers]]` entry.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Local part (`alice` → `alice@localhost`).
    pub user: String,
    /// Its server's domain: the test domain unless [`peer_at`] says otherwise.
    pub domain: String,
    pub usage_points: Vec<String>,
    /// Its `scopes` (not written when `None`: the default, every scope but
    /// `identity`).
    pub scopes: Option<Vec<String>>,
    /// `weight` (not written when `None`: the agent's default, 1).
    pub weight: Option<u32>,
    /// `calls_per_hour` (not written when `None`: no cap of its own).
    pub calls_per_hour: Option<u32>,
}

impl PeerSpec {
    /// The bare JID written in `[[peers]]`.
    pub fn jid(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }

    /// The same peer with these `scopes` (`&[]`: none).
    pub fn scopes(mut self, scopes: &[&str]) -> PeerSpec {
        self.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// The same peer with `weight` in its entry.
    pub fn with_weight(mut self, weight: u32) -> PeerSpec {
        self.weight = Some(weight);
        self
    }

    /// The same peer with its own `calls_per_hour` cap.
    pub fn with_calls_per_hour(mut self, calls: u32) -> PeerSpec {
        self.calls_per_hour = Some(calls);
        self
    }
}

/// A peer on the test domain (`localhost`).
pub fn peer(user: &str, usage_points: &[&str]) -> PeerSpec {
    PeerSpec {
        user: user.to_owned(),
        domain: DOMAIN.to_owned(),
        usage_points: usage_points.iter().map(|s| (*s).to_owned()).collect(),
        scopes: None,
        weight: None,
        calls_per_hour: None,
    }
}

/// A peer by bare JID, on any server (`app@remote.test`).
pub fn peer_at(bare_jid: &str, usage_points: &[&str]) -> PeerSpec {
    let (user, domain) = bare_jid
        .split_once('@')
        .unwrap_or_else(|| panic!("{bare_jid:?} is not a bare JID user@domain"));
    PeerSpec {
        domain: domain.to_owned(),
        ..peer(user, usage_points)
    }
}

/// What the written configuration says, beyond the addresses.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub peers: Vec<PeerSpec>,
    /// `xmpp.request_timeout_secs`.
    pub request_timeout_secs: u64,
    /// `enedis.max_retries`.
    pub max_retries: u32,
    /// `enedis.calls_per_second`.
    pub calls_per_second: u32,
    /// `enedis.calls_per_hour`.
    pub calls_per_hour: u32,
    /// `enedis.quota_wait_secs`: the longest a call waits for its quota slot.
    pub quota_wait_secs: u64,
    /// `enedis.interactive_reserve_percent` (not written when `None`: the
    /// agent's default, 20).
    pub interactive_reserve_percent: Option<u32>,
    /// The agent's password as configured (the account has [`PASSWORD`]).
    pub xmpp_password: String,
    /// `xmpp.first_session_deadline_secs`.
    pub first_session_deadline_secs: u64,
    /// `log.level`.
    pub log_level: String,
    /// The domain of the agent's JID (`agent@DOMAIN/agent`).
    pub xmpp_domain: String,
    /// `xmpp.max_stanza_bytes` (not written when `None`: the agent's default).
    pub max_stanza_bytes: Option<usize>,
    /// `enedis.api`: `2026` unless a test speaks another generation.
    pub api: &'static str,
    /// Whether the agent also reads Enedis SGE: the simulator then serves it
    /// over mutual TLS and `[sge]` points at it, with the simulator's test CA
    /// as extra root and its `agent.pem`/`agent.key` as the client identity.
    pub sge: bool,
    /// Whether the configuration has `[enedis]` (Data Connect, the default);
    /// false with `sge` writes an SGE-only agent.
    pub data_connect: bool,
    /// `store.url`: the store in this PostgreSQL database rather than the
    /// SQLite file `agent.db` of the agent's directory.
    pub store_url: Option<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            peers: Vec::new(),
            request_timeout_secs: 30,
            max_retries: 1,
            calls_per_second: 50,
            calls_per_hour: 100_000,
            quota_wait_secs: 5,
            interactive_reserve_percent: None,
            xmpp_password: PASSWORD.to_owned(),
            first_session_deadline_secs: 30,
            log_level: "info,quoalise_agent=debug".to_owned(),
            xmpp_domain: DOMAIN.to_owned(),
            max_stanza_bytes: None,
            api: "2026",
            sge: false,
            data_connect: true,
            store_url: None,
        }
    }
}

impl AgentSettings {
    pub fn with_peers(peers: Vec<PeerSpec>) -> Self {
        AgentSettings {
            peers,
            ..AgentSettings::default()
        }
    }
}

/// Writes the files of an agent configuration in `dir`.
pub struct ConfigFiles {
    pub dir: PathBuf,
    pub xmpp_server: String,
    pub ca_file: PathBuf,
    pub sim_base: String,
    pub web_port: u16,
    /// The simulator's SGE base URL and its TLS directory, when it serves SGE.
    pub sge: Option<(String, PathBuf)>,
}

impl ConfigFiles {
    pub fn path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Writes config.toml (and the secret files, 0600).
    pub fn write(&self, settings: &AgentSettings) {
        let mut config = AgentConfig::new()
            .comment("Written by tests/common/agent_harness.")
            .set(
                "xmpp.jid",
                format!("{AGENT}@{}/agent", settings.xmpp_domain),
            )
            .xmpp_password(&settings.xmpp_password)
            .xmpp_server(&self.xmpp_server, &self.ca_file)
            .set("xmpp.request_timeout_secs", settings.request_timeout_secs)
            .set(
                "xmpp.first_session_deadline_secs",
                settings.first_session_deadline_secs,
            );
        if let Some(n) = settings.max_stanza_bytes {
            config = config.set("xmpp.max_stanza_bytes", n);
        }
        config = config
            .set("enedis.api", settings.api)
            .simulator(&self.sim_base)
            .set("enedis.calls_per_second", settings.calls_per_second)
            .set("enedis.calls_per_hour", settings.calls_per_hour)
            .set("enedis.max_retries", settings.max_retries)
            .set("enedis.connect_timeout_secs", 2)
            .set("enedis.quota_wait_secs", settings.quota_wait_secs)
            .web_port(self.web_port)
            .set("log.level", settings.log_level.as_str());
        if let Some(percent) = settings.interactive_reserve_percent {
            config = config.set("enedis.interactive_reserve_percent", percent);
        }
        if let Some((endpoint, tls)) = &self.sge {
            config = config
                .set("sge.endpoint", endpoint.as_str())
                .set("sge.certificate_file", tls.join("agent.pem").as_path())
                .set("sge.key_file", tls.join("agent.key").as_path())
                .set("sge.ca_file", tls.join("ca.pem").as_path())
                .set("sge.login", SGE_LOGIN)
                .set("sge.contract_id", SGE_CONTRACT)
                .set("sge.calls_per_second", settings.calls_per_second)
                .set("sge.max_retries", settings.max_retries);
        }
        if !settings.data_connect {
            config = config.without("enedis");
        }
        if let Some(url) = &settings.store_url {
            config = config.postgres_store(url);
        }
        for p in &settings.peers {
            let points: Vec<&str> = p.usage_points.iter().map(String::as_str).collect();
            config = config.peer(&p.jid(), &points);
            if let Some(scopes) = &p.scopes {
                config = config.peer_set("scopes", scopes.clone());
            }
            if let Some(weight) = p.weight {
                config = config.peer_set("weight", weight);
            }
            if let Some(calls) = p.calls_per_hour {
                config = config.peer_set("calls_per_hour", calls);
            }
        }
        config.write(&self.dir);
    }
}

/// The REAL agent binary running `run`.
pub struct AgentProcess {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    pub web_port: u16,
    http: reqwest::Client,
    /// What it was started with, to start it again ([`AgentProcess::restart`]).
    bin: String,
    config: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl AgentProcess {
    /// Starts `quoalise-agent --config CONFIG run`, stderr to `dir/agent.log`.
    pub fn spawn(config: &Path, dir: &Path, web_port: u16, env: &[(&str, &str)]) -> AgentProcess {
        AgentProcess::spawn_bin(AGENT_BIN, config, dir, web_port, env)
    }

    /// [`AgentProcess::spawn`] of another build of the agent (a benchmark
    /// comparing two).
    pub fn spawn_bin(
        bin: &str,
        config: &Path,
        dir: &Path,
        web_port: u16,
        env: &[(&str, &str)],
    ) -> AgentProcess {
        let log = dir.join("agent.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent log file");
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn quoalise-agent");
        let pid = child.id().expect("pid");
        AgentProcess {
            child: Some(child),
            pid,
            log,
            web_port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            bin: bin.to_owned(),
            config: config.to_owned(),
            dir: dir.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The configuration file it runs on.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// SIGTERM, then a clean exit (status 0) within 30 s, or the test fails.
    pub async fn stop(&mut self) {
        self.signal("-TERM");
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "the agent did not exit cleanly ({status}):\n{}",
            self.log()
        );
    }

    /// [`AgentProcess::stop`], then the same build on the same files again
    /// (its log goes on in the same file), once healthy.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.respawn().await;
        self.wait_healthy(Duration::from_secs(60)).await;
    }

    /// Starts the agent again on the same configuration (after it stopped or
    /// was killed), without waiting for anything: a standby never turns
    /// healthy as a leader does.
    pub async fn respawn(&mut self) {
        if self.try_status().is_none() {
            self.stop().await;
        }
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        *self = AgentProcess::spawn_bin(&self.bin, &self.config, &self.dir, self.web_port, &env);
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Panics unless the agent kept its first XMPP session all along: one
    /// "session up", no lost connection, no resumption, no new session (what a
    /// stanza refused by the server would cause: it closes the stream).
    #[track_caller]
    pub fn assert_session_untouched(&self) {
        let log = self.log();
        let ups = log
            .lines()
            .filter(|l| l.contains("XMPP: session up"))
            .count();
        let breaks: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("XMPP: connection lost")
                    || l.contains("XMPP: new session")
                    || l.contains("XMPP: session resumed")
                    || l.contains("XMPP: not sending a stanza larger")
                    || l.contains("stream ended unexpectedly")
            })
            .collect();
        assert!(
            ups == 1 && breaks.is_empty(),
            "the agent's XMPP session did not stay up ({ups} \"session up\"): {breaks:#?}\n{log}"
        );
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.log().contains(needle)
    }

    /// `GET /healthz`: status and body (`None` when nothing answers).
    pub async fn healthz(&self) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}/healthz", self.web_port))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://127.0.0.1:{}/metrics", self.web_port))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap_or_default()
    }

    /// Waits for `/healthz` to answer 200 (store usable, XMPP session up) as
    /// the leader: a standby (PostgreSQL store) answers 200 too, with no
    /// session, until it takes the lead.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        self.wait_healthz("healthy", timeout, |body| {
            !body.contains("\nrole: standby\n")
        })
        .await;
    }

    /// Waits for `/healthz` to answer 200 with a body `accept`s; returns the
    /// body. Fails the test, with the agent's log, when the agent exits first
    /// or `timeout` passes (`what` says what it was waiting to be).
    pub async fn wait_healthz(
        &mut self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, body)) = self.healthz().await
                && accept(&body)
            {
                return body;
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "the agent exited ({status}) before being {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the agent is not {what} within {timeout:?}: {:?}\n{}",
                self.healthz().await,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid, sig);
    }

    /// Waits for the process to end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the agent was started");
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.expect("wait for the agent"),
            Err(_) => panic!("the agent did not exit within {timeout:?}:\n{}", self.log()),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            if std::thread::panicking() {
                eprintln!("--- agent log ---\n{}", self.log());
            }
            return;
        }
        signal(self.pid, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.start_kill();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log());
        }
    }
}

/// Prosody + enedis-sim + the agent, with a config in a temporary directory.
pub struct Deployment {
    // Drop order: the agent first (it says goodbye to Prosody), then the others.
    pub agent: AgentProcess,
    pub sim: Sim,
    pub prosody: Prosody,
    pub files: ConfigFiles,
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// Starts everything with these settings and waits until the agent is healthy.
    /// Peer accounts are registered (password [`PASSWORD`]).
    pub async fn start(settings: AgentSettings) -> Deployment {
        let mut d = Deployment::launch(settings, &[], &[]).await;
        d.agent.wait_healthy(Duration::from_secs(60)).await;
        d
    }

    /// [`Deployment::start`] on a Prosody started by the caller (its options:
    /// version, `c2s_stanza_size_limit`…).
    pub async fn start_on(prosody: Prosody, settings: AgentSettings) -> Deployment {
        let mut d = Deployment::launch_on(prosody, settings, &[], &[]).await;
        d.agent.wait_healthy(Duration::from_secs(60)).await;
        d
    }

    /// Starts everything without waiting for the agent: extra `enedis-sim`
    /// arguments, extra environment of the agent.
    pub async fn launch(
        settings: AgentSettings,
        sim_args: &[&str],
        env: &[(&str, &str)],
    ) -> Deployment {
        let prosody = Prosody::start_with(ProsodyOptions::default()).await;
        Deployment::launch_on(prosody, settings, sim_args, env).await
    }

    /// Starts the simulator and the agent on `prosody` (the agent's server):
    /// registers the agent and the peers of its domain. `settings.xmpp_domain`
    /// is set to the server's domain.
    pub async fn launch_on(
        prosody: Prosody,
        mut settings: AgentSettings,
        sim_args: &[&str],
        env: &[(&str, &str)],
    ) -> Deployment {
        settings.xmpp_domain = prosody.domain().to_owned();
        prosody.register(AGENT, PASSWORD).await;
        for p in settings
            .peers
            .iter()
            .filter(|p| p.domain == prosody.domain())
        {
            prosody.register(&p.user, PASSWORD).await;
        }
        // Quotas off at the simulator: tests count calls, they do not wait for slots.
        let mut args = vec!["--quota-per-second", "0"];
        args.extend_from_slice(sim_args);
        let sim = if settings.sge {
            Sim::start_sge(&args)
        } else {
            Sim::start(&args)
        };
        let dir = tempfile::Builder::new()
            .prefix("agent-test-")
            .tempdir()
            .expect("temp dir");
        let files = ConfigFiles {
            dir: dir.path().to_owned(),
            xmpp_server: prosody.server(),
            ca_file: prosody.ca_file(),
            sim_base: sim.base_url().to_owned(),
            web_port: free_port(),
            sge: settings
                .sge
                .then(|| (sim.sge_url(""), sim.sge_tls_dir().to_owned())),
        };
        files.write(&settings);
        let agent = AgentProcess::spawn(&files.path(), dir.path(), files.web_port, env);
        Deployment {
            agent,
            sim,
            prosody,
            files,
            dir,
        }
    }

    /// The agent's full JID.
    pub fn agent_jid(&self) -> Jid {
        agent_jid_at(self.prosody.domain())
    }

    /// Runs tests/interop/quoalise_peer.py as `user@localhost/resource`.
    pub async fn python(&self, jid: &str, action: &str, args: &[&str]) -> Value {
        python_peer(&self.prosody, &self.agent_jid(), jid, action, args).await
    }

    /// Runs `quoalise-agent query` as `user@localhost`: (exit code, stdout, stderr).
    pub async fn query(&self, user: &str, args: &[&str]) -> (i32, String, String) {
        let password = self.dir.path().join(format!("{user}.password"));
        if !password.exists() {
            write_secret(&password, PASSWORD);
        }
        let out = Command::new(AGENT_BIN)
            .arg("query")
            .args(["--jid", &format!("{user}@{}", self.prosody.domain())])
            .arg("--password-file")
            .arg(&password)
            .args(["--to", self.agent_jid().as_str()])
            .args(["--server", &self.prosody.server()])
            .arg("--ca-file")
            .arg(self.prosody.ca_file())
            .args(["--timeout", "60"])
            .args(args)
            .output()
            .await
            .expect("run quoalise-agent query");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Rewrites the configuration (the agent reads it again on SIGHUP).
    pub fn rewrite(&self, settings: &AgentSettings) {
        self.files.write(settings);
    }
}

/// Runs tests/interop/quoalise_peer.py (slixmpp) as `jid`, logged in on
/// `server`, against `agent`; its JSON answer.
pub async fn python_peer(
    server: &Prosody,
    agent: &Jid,
    jid: &str,
    action: &str,
    args: &[&str],
) -> Value {
    let python = venv_python();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python)
        .arg(root.join("tests/interop/quoalise_peer.py"))
        .args(["--jid", jid, "--password", PASSWORD])
        .args(["--server", &server.server()])
        .arg("--ca-file")
        .arg(server.ca_file())
        .args(["--agent", agent.as_str()])
        .arg(action)
        .args(args)
        .output()
        .await
        .expect("run quoalise_peer.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quoalise_peer.py {action} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("quoalise_peer.py printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// The slixmpp venv of scripts/setup-python.sh at the repository root.
fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.is_file(),
        "no Python venv with slixmpp at {}: run scripts/setup-python.sh first",
        python.display()
    );
    python
}

/// The agent on the federation's home server, its peers on the remote one
/// (tests/common/federation.rs). Drops the agent, the simulator and the home
/// server first, then the remote server.
pub struct Federated {
    pub d: Deployment,
    pub remote: Prosody,
    _shared: tempfile::TempDir,
}

impl Federated {
    /// Starts both servers ([`Federation::start`]: 0.12 home, 13 remote), the
    /// simulator and the agent, and waits until the agent is healthy. Peers of
    /// either domain are registered on their server (password [`PASSWORD`]).
    pub async fn start(settings: AgentSettings) -> Federated {
        Federated::start_on(Federation::start().await, settings, &[]).await
    }

    /// The same on a federation started by the caller, with extra `enedis-sim`
    /// arguments.
    pub async fn start_on(
        federation: Federation,
        settings: AgentSettings,
        sim_args: &[&str],
    ) -> Federated {
        let Federation {
            home,
            remote,
            shared,
        } = federation;
        for p in settings
            .peers
            .iter()
            .filter(|p| p.domain == remote.domain())
        {
            remote.register(&p.user, PASSWORD).await;
        }
        let mut d = Deployment::launch_on(home, settings, sim_args, &[]).await;
        d.agent.wait_healthy(Duration::from_secs(60)).await;
        Federated {
            d,
            remote,
            _shared: shared,
        }
    }

    /// The agent's full JID (on the home server).
    pub fn agent_jid(&self) -> Jid {
        self.d.agent_jid()
    }

    /// quoalise_peer.py as `jid` on the remote server.
    pub async fn python(&self, jid: &str, action: &str, args: &[&str]) -> Value {
        python_peer(&self.remote, &self.agent_jid(), jid, action, args).await
    }
}

// --- dates -------------------------------------------------------------------

/// Today in Paris.
pub fn today() -> Date {
    quoalise_agent::time::paris_today(jiff::Timestamp::now())
}

/// `date` at Paris midnight, ISO 8601 with its offset.
pub fn midnight(date: Date) -> String {
    let seconds = quoalise_agent::time::day_start(date).unwrap();
    let ts = jiff::Timestamp::from_second(seconds).unwrap();
    ts.display_with_offset(quoalise_agent::time::PARIS.to_offset(ts))
        .to_string()
}

/// UTC seconds of Paris midnight starting `date`.
pub fn midnight_seconds(date: Date) -> i64 {
    quoalise_agent::time::day_start(date).unwrap()
}

/// Twelve whole months of Paris days, from the first of a month to the first
/// of the latest month whose days are all published (2025-12-01 to 2026-12-01
/// from 2026-12-04 to 2027-01-03): one spring and one autumn DST change
/// inside, 8,760 hours (8,784 with a 29 February).
pub fn last_full_year() -> (Date, Date) {
    let end = today()
        .checked_sub(jiff::ToSpan::days(3))
        .unwrap()
        .first_of_month();
    (end.checked_sub(jiff::ToSpan::years(1)).unwrap(), end)
}

/// Half-hours of the Paris days `[from, to[`.
pub fn half_hours(from: Date, to: Date) -> u64 {
    ((midnight_seconds(to) - midnight_seconds(from)) / 1800) as u64
}

/// The most recent day on or before `latest` that lasts `hours` hours in Paris
/// (23: spring forward, 25: fall back).
pub fn dst_day_on_or_before(latest: Date, hours: i64) -> Date {
    let mut day = latest;
    loop {
        let length = midnight_seconds(day.tomorrow().unwrap()) - midnight_seconds(day);
        if length == hours * 3600 {
            return day;
        }
        day = day.yesterday().unwrap();
    }
}

/// The most recent day before yesterday that lasts `hours` hours in Paris
/// (23: spring forward, 25: fall back).
pub fn last_dst_day(hours: i64) -> Date {
    let mut day = today().yesterday().unwrap().yesterday().unwrap();
    loop {
        let length = midnight_seconds(day.tomorrow().unwrap()) - midnight_seconds(day);
        if length == hours * 3600 {
            return day;
        }
        day = day.yesterday().unwrap();
    }
}
