//! What the benchmarks add to the tests' harness (tests/common, included in each
//! bench as `common`): the agent build to measure and knobs from the environment,
//! the deployment a bench through Prosody starts (Prosody logging as in
//! production, the simulator without quotas and quiet, with its pid for /proc
//! readings, the REAL agent on a configuration from tests/common/config.rs, peers
//! on the library's XMPP session), /proc readings (CPU seconds, RSS) and the
//! `get_history` request the benches send.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::common::agent_harness::{AGENT_BIN, AgentProcess};
use crate::common::config::AgentConfig;
use crate::common::prosody::{Prosody, ProsodyOptions, free_port};
use crate::common::xmpp_harness::{AGENT, PASSWORD, Peer, agent_jid};

/// The agent binary to measure: `BENCH_AGENT_BIN` when set (to compare two builds
/// under the same load), else the one cargo just built.
pub fn agent_bin() -> String {
    std::env::var("BENCH_AGENT_BIN").unwrap_or_else(|_| AGENT_BIN.to_owned())
}

/// Set in the environment of a copy of this bench started to be the simulator.
const SIM_CHILD: &str = "BENCH_ENEDIS_SIM_CHILD";

/// Call first in a bench's `main`: in the copy `start_sim` started, run the
/// simulator (`enedis_sim::cli::run`, the code of the `enedis-sim` binary) until
/// SIGTERM, then exit. The simulator is another package of the workspace, whose
/// binary cargo neither builds nor locates for this package's benches; running it
/// from this executable keeps it a separate process, built with the bench.
pub fn serve_sim_if_child() {
    if std::env::var_os(SIM_CHILD).is_none() {
        return;
    }
    let args = enedis_sim::cli::Args::parse_from(
        std::iter::once(std::ffi::OsString::from("enedis-sim")).chain(std::env::args_os().skip(1)),
    );
    let served = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(enedis_sim::cli::run(args)));
    if let Err(e) = served {
        eprintln!("enedis-sim: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process stopped on drop (SIGTERM, then SIGKILL).
pub struct Proc {
    pub child: Child,
    pub pid: u32,
}

impl Proc {
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            // Gone already is fine.
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / clock_ticks()
}

pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The simulator without quotas, logging warnings only (its CPU is measured
/// too), and its base URL; unlike the tests' `common::sim::Sim` (in this
/// process), it is a process of its own whose pid is known.
pub fn start_sim() -> (Proc, String) {
    use std::io::BufRead;
    // `BENCH_SIM_BIN` runs another build of the simulator; by default this very
    // executable serves as the simulator (`serve_sim_if_child`).
    let mut command = match std::env::var_os("BENCH_SIM_BIN") {
        Some(bin) => Command::new(bin),
        None => {
            let mut own = Command::new(std::env::current_exe().expect("the bench's own path"));
            own.env(SIM_CHILD, "1");
            own
        }
    };
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--quota-per-second", "0"])
        .args(["--quota-per-hour", "1000000000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start enedis-sim");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let pid = child.id();
    (Proc { child, pid }, format!("http://{addr}"))
}

/// Prosody as the benches need it (as in production: no debug log, Nagle off,
/// no mod_limits), with `users` registered (password [`PASSWORD`]).
pub async fn start_prosody(users: &[&str]) -> Prosody {
    let prosody = Prosody::start_with(ProsodyOptions {
        log_level: "warn".to_owned(),
        ..ProsodyOptions::default()
    })
    .await;
    for user in users {
        prosody.register(user, PASSWORD).await;
    }
    prosody
}

/// Prosody's own pid, for /proc readings.
pub fn prosody_pid(prosody: &Prosody) -> u32 {
    prosody.pid().expect("prosody runs")
}

/// The agent's configuration for a bench, without `[[peers]]`: Prosody's
/// server and CA, the simulator at `sim`, no quota, `log.level` = `log`.
pub fn agent_config(prosody: &Prosody, sim: &str, web: u16, log: &str) -> AgentConfig {
    AgentConfig::new()
        .set("xmpp.jid", format!("{AGENT}@{}/agent", prosody.domain()))
        .xmpp_password(PASSWORD)
        .xmpp_server(&prosody.server(), &prosody.ca_file())
        .simulator(sim)
        .set("enedis.calls_per_second", 1_000_000)
        .set("enedis.calls_per_hour", 4_000_000_000u64)
        .web_port(web)
        .set("log.level", log)
}

/// The runtime a bench runs its harness and peers on (the harness's processes are
/// tokio's: the caller enters it, so they start and stop in it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What a bench through Prosody measures: its working directory, Prosody with
/// its users, the simulator as a process of its own, and the REAL agent.
pub struct Stage {
    pub dir: tempfile::TempDir,
    pub prosody: Prosody,
    pub prosody_pid: u32,
    pub sim: Proc,
    pub sim_url: String,
    /// The agent's web port (`/healthz`), for a restart on the same configuration.
    pub web: u16,
    pub agent: AgentProcess,
}

/// Sets the stage of the bench `name`: Prosody with `users` registered, the
/// simulator, and the agent on [`agent_config`] (`log.level` = `log`) with what
/// `peers` adds to it, written to `dir/config.toml`.
pub fn stage(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    users: &[&str],
    log: &str,
    peers: impl FnOnce(AgentConfig) -> AgentConfig,
) -> Stage {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir()
        .expect("a working directory");
    let prosody = runtime.block_on(start_prosody(users));
    let prosody_pid = prosody_pid(&prosody);
    let (sim, sim_url) = start_sim();
    let web = free_port();
    peers(agent_config(&prosody, &sim_url, web, log)).write(dir.path());
    let agent = runtime.block_on(start_agent(dir.path(), web));
    Stage {
        dir,
        prosody,
        prosody_pid,
        sim,
        sim_url,
        web,
        agent,
    }
}

/// The agent to measure ([`agent_bin`]) on `dir/config.toml`, its log appended
/// to `dir/agent.log`, once `/healthz` on `web` answers 200.
pub async fn start_agent(dir: &Path, web: u16) -> AgentProcess {
    let mut agent = AgentProcess::spawn_bin(&agent_bin(), &dir.join("config.toml"), dir, web, &[]);
    agent.wait_healthy(Duration::from_secs(120)).await;
    agent
}

/// A peer `user@<domain>/bench` logged in on `prosody`, asking the agent.
pub async fn connect(prosody: &Prosody, user: &str) -> Peer {
    Peer::login(prosody, &format!("{user}@{}/bench", prosody.domain()))
        .await
        .to(agent_jid())
}

/// `get_history` of `prm`'s consumption load curve over the Paris days
/// `[start, end[`, as the Quoalise client sends it (with `paging=true` when
/// `paging`).
pub fn get_history(
    prm: &str,
    start: jiff::civil::Date,
    end: jiff::civil::Date,
    paging: bool,
) -> quoalise_agent::xmpp::Command {
    use quoalise_agent::commands::data::paris_midnight;
    use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
    let mut fields = vec![
        Field::text_single(
            "identifier",
            &format!("urn:dev:prm:{prm}_consumption/power/active/raw"),
        ),
        Field::text_single("start_time", &paris_midnight(start)),
        Field::text_single("end_time", &paris_midnight(end)),
    ];
    if paging {
        fields.push(Field::text_single("paging", "true"));
    }
    let form = DataForm {
        type_: DataFormType::Submit,
        title: None,
        instructions: None,
        fields,
    };
    quoalise_agent::xmpp::Command::execute("get_history", Some(form))
}
