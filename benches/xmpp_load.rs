//! Load generator: N concurrent peers through one Prosody against the REAL
//! agent and the REAL simulator (release builds), as `cargo bench --bench
//! xmpp_load` builds them.
//!
//! For each level of concurrency it prints requests/s, p50/p99 latency, and the
//! CPU seconds the agent, Prosody, the simulator and this generator spent in
//! the measured window (from /proc/<pid>/stat), with the agent's CPU as a share
//! of Prosody's: the goal is that the agent is not the bottleneck (under 25 %
//! of Prosody's CPU at saturation).
//!
//! Requests: `get_history` of ONE day of a 30-minute load curve (48 records,
//! days 2 to 60 days old, served from the agent's cache after the first pass:
//! docs/operations.md), or with
//! `BENCH_COMMAND=list_usage_points` the agent-only path (no upstream).
//!
//! Knobs (environment): `BENCH_PEERS` (default 20 peer accounts),
//! `BENCH_LEVELS` (in-flight requests per level, default "20,100,200"),
//! `BENCH_SECS` (measured seconds per level, default 10), `BENCH_LOG` (the
//! agent's log.level, default "info": one request line per request, as in
//! production).
//!
//! Needs root (Prosody runs as its own user) and the Debian `prosody` package.
//! Prosody runs with a minimal config: no debug log, no mod_limits, Nagle off.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quoalise_agent::config::{Secret, XmppConfig};
use quoalise_agent::xmpp::{
    AllowList, Command as AdHoc, CommandSet, IqError, XmppAgent, XmppHandle,
};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const SIM_BIN: &str = env!("CARGO_BIN_EXE_enedis-sim");
const PASSWORD: &str = "bench-password";
const PRM: &str = "22516914714270";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(program: &str, args: &[&str], cwd: &Path) {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child on drop (SIGTERM, then SIGKILL).
struct Proc {
    child: Child,
    pid: u32,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop; killing it", self.name);
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.child.kill();
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
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

fn clock_ticks() -> f64 {
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

/// Prosody for the load test, in `dir`, as its own user.
fn start_prosody(dir: &Path, port: u16) -> (Proc, u32) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
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
        ],
        dir,
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
        dir,
    );
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
    let child = Command::new("runuser")
        .args(["-u", "prosody", "--", "prosody", "-F", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prosody (needs root and the prosody package)");
    let runner = child.id();
    // Until Prosody writes its pid, signals go to runuser; Drop stops it either way.
    let mut proc = Proc {
        child,
        pid: runner,
        name: "prosody",
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pid = std::fs::read_to_string(dir.join("prosody.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            // Stop Prosody itself on drop (runuser would sleep before forwarding).
            proc.pid = pid;
            return (proc, pid);
        }
        assert!(Instant::now() < deadline, "prosody did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn register(dir: &Path, user: &str) {
    run(
        "prosodyctl",
        &[
            "--config",
            dir.join("prosody.cfg.lua").to_str().unwrap(),
            "register",
            user,
            "localhost",
            PASSWORD,
        ],
        dir,
    );
}

fn start_sim() -> (Proc, String) {
    use std::io::BufRead;
    let mut child = Command::new(SIM_BIN)
        .args(["--listen", "127.0.0.1:0", "--quota-per-second", "0"])
        .args(["--quota-per-hour", "1000000000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start enedis-sim");
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("enedis-sim prints its address")
        .to_owned();
    let pid = child.id();
    (
        Proc {
            child,
            pid,
            name: "enedis-sim",
        },
        format!("http://{addr}"),
    )
}

fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn start_agent(dir: &Path, xmpp_port: u16, sim: &str, peers: usize, log: &str) -> (Proc, u16) {
    let web = free_port();
    write_secret(&dir.join("xmpp_password"), PASSWORD);
    write_secret(&dir.join("client_secret"), "sim-secret");
    let mut config = format!(
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
    );
    for i in 0..peers {
        config.push_str(&format!(
            "[[peers]]\njid = \"peer{i}@localhost\"\nusage_points = [\"{PRM}\"]\n"
        ));
    }
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let log_file = std::fs::File::create(dir.join("agent.log")).unwrap();
    let child = Command::new(AGENT_BIN)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start quoalise-agent");
    let pid = child.id();
    (
        Proc {
            child,
            pid,
            name: "quoalise-agent",
        },
        web,
    )
}

fn wait_healthy(web: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", web)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the agent is not healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One logged-in peer.
struct Peer {
    handle: XmppHandle,
    stop: CancellationToken,
}

async fn connect(port: u16, ca: &Path, user: &str) -> Peer {
    let config = XmppConfig {
        jid: format!("{user}@localhost/load"),
        password: Secret::new(PASSWORD),
        server: Some(format!("127.0.0.1:{port}")),
        ca_file: Some(ca.to_owned()),
        allow_plaintext: false,
        request_timeout_secs: 60,
        ping_interval_secs: 60,
        first_session_deadline_secs: 30,
    };
    let agent = XmppAgent::new(&config).expect("peer config");
    let handle = agent.handle();
    let stop = CancellationToken::new();
    tokio::spawn(agent.run(CommandSet::new(()), AllowList::default(), stop.clone()));
    assert!(
        handle.wait_until_up(Duration::from_secs(30)).await,
        "{user} cannot log in"
    );
    Peer { handle, stop }
}

fn request(command: &str, day: usize) -> AdHoc {
    if command == "list_usage_points" {
        return AdHoc::execute("list_usage_points", None);
    }
    // Days from 2 to 60 days ago, so that successive requests differ.
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let first = quoalise_agent::time::add_days(today, -2 - (day % 59) as i64).unwrap();
    let next = first.tomorrow().unwrap();
    let at = |d| {
        let s = quoalise_agent::time::day_start(d).unwrap();
        let ts = jiff::Timestamp::from_second(s).unwrap();
        ts.display_with_offset(quoalise_agent::time::PARIS.to_offset(ts))
            .to_string()
    };
    let form = DataForm {
        type_: DataFormType::Submit,
        title: None,
        instructions: None,
        fields: vec![
            Field::text_single(
                "identifier",
                &format!("urn:dev:prm:{PRM}_consumption/power/active/raw"),
            ),
            Field::text_single("start_time", &at(first)),
            Field::text_single("end_time", &at(next)),
        ],
    };
    AdHoc::execute("get_history", Some(form))
}

struct LevelResult {
    in_flight: usize,
    completed: usize,
    errors: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    cpu: [f64; 4],
}

async fn level(
    peers: &[Peer],
    in_flight: usize,
    secs: f64,
    command: &str,
    pids: [u32; 4],
) -> LevelResult {
    let agent = Jid::new("agent@localhost/agent").unwrap();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let handle = peers[worker % peers.len()].handle.clone();
        let agent = agent.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let command = command.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let element = request(&command, n).to_element();
                n += in_flight;
                let started = Instant::now();
                let answer = handle
                    .send_iq(
                        Some(agent.clone()),
                        IqRequestPayload::Set(element),
                        Duration::from_secs(60),
                    )
                    .await;
                let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                match answer {
                    Ok(_) if counted => latencies.push(started.elapsed()),
                    Ok(_) => {}
                    Err(IqError::Error(e)) => {
                        if counted {
                            errors += 1;
                        }
                        if errors == 1 {
                            eprintln!("error answer: {:?}", e.texts);
                        }
                    }
                    Err(e) => {
                        if counted {
                            errors += 1;
                        }
                        eprintln!("no answer: {e}");
                    }
                }
            }
            (latencies, errors)
        }));
    }
    // Warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = pids.map(cpu_seconds);
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = pids.map(cpu_seconds);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut cpu = [0.0; 4];
    for i in 0..4 {
        cpu[i] = cpu_after[i] - cpu_before[i];
    }
    LevelResult {
        in_flight,
        completed: latencies.len(),
        errors,
        seconds,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful:
    // only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("xmpp_load: run with `cargo bench --bench xmpp_load`");
        return;
    }
    let peers_n: usize = env_or("BENCH_PEERS", 20);
    let secs: f64 = env_or("BENCH_SECS", 10.0);
    let command: String = env_or("BENCH_COMMAND", "get_history".to_owned());
    let log: String = env_or("BENCH_LOG", "info".to_owned());
    let levels: Vec<usize> = env_or("BENCH_LEVELS", "20,100,200".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let dir = tempfile::Builder::new()
        .prefix("xmpp-load-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(dir.path().join("prosody")).unwrap();
    let xmpp_port = free_port();
    let (prosody, prosody_pid) = start_prosody(&dir.path().join("prosody"), xmpp_port);
    register(&dir.path().join("prosody"), "agent");
    for i in 0..peers_n {
        register(&dir.path().join("prosody"), &format!("peer{i}"));
    }
    let (sim, sim_url) = start_sim();
    let (agent, web) = start_agent(dir.path(), xmpp_port, &sim_url, peers_n, &log);
    wait_healthy(web);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca: PathBuf = dir.path().join("prosody/ca.pem");
    let pids = [agent.pid, prosody_pid, sim.pid, std::process::id()];
    println!(
        "xmpp_load: {command} ({}), {peers_n} peers, {secs} s per level, agent log.level={log}",
        if command == "get_history" {
            "1 day of 30-min load curve, 48 records, cached after the first pass"
        } else {
            "no upstream call"
        }
    );
    println!(
        "{:>9} {:>9} {:>7} {:>9} {:>9} | {:>8} {:>8} {:>8} {:>8} | {:>12}",
        "in-flight",
        "req/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "agent s",
        "prosody",
        "sim s",
        "loadgen",
        "agent/prosody"
    );
    runtime.block_on(async {
        let mut peers = Vec::new();
        for i in 0..peers_n {
            peers.push(connect(xmpp_port, &ca, &format!("peer{i}")).await);
        }
        for in_flight in &levels {
            let r = level(&peers, *in_flight, secs, &command, pids).await;
            println!(
                "{:>9} {:>9.0} {:>7} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>11.0}%",
                r.in_flight,
                r.completed as f64 / r.seconds,
                r.errors,
                r.p50.as_secs_f64() * 1000.0,
                r.p99.as_secs_f64() * 1000.0,
                r.cpu[0],
                r.cpu[1],
                r.cpu[2],
                r.cpu[3],
                100.0 * r.cpu[0] / r.cpu[1].max(1e-9)
            );
        }
        for p in &peers {
            p.stop.cancel();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    drop(agent);
    drop(sim);
    drop(prosody);
}
