//! What the benchmarks through Prosody share: processes stopped on drop, a
//! Prosody with its own CA on 127.0.0.1 (as its own user), `enedis-sim`, peers on
//! the library's XMPP session, and /proc readings (CPU seconds, RSS).

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use clap::Parser;
use std::time::{Duration, Instant};

use quoalise_agent::config::{Secret, XmppConfig};
use quoalise_agent::xmpp::{AllowList, CommandSet, XmppAgent, XmppHandle};
use tokio_util::sync::CancellationToken;

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");

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

pub const PASSWORD: &str = "bench-password";

pub const PRM: &str = "22516914714270";

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn run(program: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process stopped on drop (SIGTERM, then SIGKILL); `pid` is the process
/// to signal (Prosody itself, not `runuser`).
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

// The child is waited for by `Proc`'s Drop, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn start_prosody(dir: &Path, port: u16) -> Proc {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bench CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run("openssl", &ca, dir);
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run("openssl", &leaf, dir);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
        dir,
    );
    // As in production: no debug log, no mod_limits, Nagle off.
    let config = format!(
        r#"pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ warn = "{d}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_settings = {{ nagle = false }}
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "posix" }}
modules_disabled = {{ "s2s"; "offline" }}
c2s_require_encryption = true
VirtualHost "localhost"
  ssl = {{ certificate = "{d}/leaf.pem"; key = "{d}/leaf.key" }}
"#
    );
    let cfg = dir.join("prosody.cfg.lua");
    std::fs::write(&cfg, config).unwrap();
    run("chown", &["-R", "prosody:prosody", "."], dir);
    run("chmod", &["755", "."], dir);
    let mut child = Command::new("runuser")
        .args(["-u", "prosody", "--", "prosody", "-F", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prosody (needs root and the prosody package)");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pid = std::fs::read_to_string(dir.join("prosody.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Proc { child, pid };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("prosody did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn register(dir: &Path, user: &str) {
    let cfg = dir.join("prosody.cfg.lua");
    run(
        "prosodyctl",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "register",
            user,
            "localhost",
            PASSWORD,
        ],
        dir,
    );
}

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

pub fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub struct Peer {
    pub handle: XmppHandle,
    pub stop: CancellationToken,
}

pub async fn connect(port: u16, ca: &Path, user: &str) -> Peer {
    let config = XmppConfig {
        jid: format!("{user}@localhost/bench"),
        password: Secret::new(PASSWORD),
        server: Some(format!("127.0.0.1:{port}")),
        ca_file: Some(ca.to_owned()),
        allow_plaintext: false,
        request_timeout_secs: 60,
        ping_interval_secs: 60,
        first_session_deadline_secs: 30,
        max_stanza_bytes: quoalise_agent::config::DEFAULT_MAX_STANZA_BYTES,
    };
    let agent = XmppAgent::new(&config).expect("peer config");
    let handle = agent.handle();
    let stop = CancellationToken::new();
    tokio::spawn(agent.run(CommandSet::new(()), AllowList::default(), stop.clone()));
    assert!(handle.wait_until_up(Duration::from_secs(30)).await);
    Peer { handle, stop }
}

/// The agent's configuration for a bench, without `[[peers]]`: secrets written
/// beside it, Prosody's CA in `dir/prosody`, the simulator at `sim`, no quota.
pub fn agent_config(dir: &Path, xmpp_port: u16, sim: &str, web: u16, log: &str) -> String {
    write_secret(&dir.join("xmpp_password"), PASSWORD);
    write_secret(&dir.join("client_secret"), "sim-secret");
    format!(
        r#"[xmpp]
jid = "agent@localhost/agent"
password_file = "xmpp_password"
server = "127.0.0.1:{xmpp_port}"
ca_file = "{ca}"
[enedis]
base_url = "{sim}"
client_id = "sim-client"
client_secret_file = "client_secret"
calls_per_second = 1000000
calls_per_hour = 4000000000
[web]
listen = "127.0.0.1:{web}"
public_url = "http://127.0.0.1:{web}"
[store]
path = "agent.db"
[log]
level = "{log}"
"#,
        ca = dir.join("prosody/ca.pem").display()
    )
}

/// The real agent on `dir/config.toml`, its log appended to `dir/agent.log`,
/// once `/healthz` on `web` answers 200.
pub fn start_agent(dir: &Path, web: u16) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .unwrap();
    let child = Command::new(agent_bin())
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start quoalise-agent");
    let pid = child.id();
    let agent = Proc { child, pid };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", web)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return agent;
            }
        }
        assert!(Instant::now() < deadline, "the agent is not healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
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
