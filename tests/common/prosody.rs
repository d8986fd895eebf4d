//! A real Prosody for one test or benchmark: its own temporary directory (data, pid, log,
//! certificates, config) owned by the `prosody` user, a self-signed CA and a
//! leaf certificate for its domain (`localhost` unless told) made with
//! `openssl`, a free port on 127.0.0.1, accounts registered with `prosodyctl`.
//! It can be stopped and restarted on the same port (reconnection tests) and is
//! stopped on `Drop` (SIGTERM, then SIGKILL), also when the test fails.
//!
//! [`ProsodyOptions`] chooses the version (Debian's 0.12 or Prosody 13 unpacked
//! in /opt/prosody-13), the domain, a CA shared with other servers and s2s
//! (tests/common/federation.rs runs two servers that federate).
//!
//! Requires root (Prosody runs as its own user through `runuser`), the Debian
//! `prosody` package and, for [`ProsodyVersion::V13`], /opt/prosody-13
//! (`scripts/setup-system.sh` installs both).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The XMPP domain every test server serves.
pub const DOMAIN: &str = "localhost";

/// Which Prosody runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProsodyVersion {
    /// Debian bookworm's package (`prosody`, `prosodyctl` on the PATH).
    V012,
    /// bookworm-backports' 13.0.1 unpacked next to it by scripts/setup-system.sh
    /// (`$PROSODY13_DIR`, default /opt/prosody-13). Advertises XEP-0478 limits.
    V13,
}

impl ProsodyVersion {
    fn program(self, name: &str) -> PathBuf {
        match self {
            ProsodyVersion::V012 => PathBuf::from(name),
            ProsodyVersion::V13 => {
                let dir = std::env::var_os("PROSODY13_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/opt/prosody-13"));
                let program = dir.join("bin").join(name);
                assert!(
                    program.is_file(),
                    "Prosody 13 is not installed at {}: run scripts/setup-system.sh",
                    program.display()
                );
                program
            }
        }
    }
}

/// Server-to-server settings of a server that federates (see federation.rs).
#[derive(Debug, Clone)]
pub struct S2s {
    /// The loopback address the server listens on for s2s, port 5269; the other
    /// servers find it through `hosts_file`.
    pub address: Ipv4Addr,
    /// A hosts file mapping every test domain to its s2s address (libunbound's
    /// `hoststxt`).
    pub hosts_file: PathBuf,
    /// The resolver configuration libunbound reads instead of /etc/resolv.conf.
    pub resolv_conf: PathBuf,
}

/// How a test server is set up.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Offer STARTTLS with the test CA's certificate (and require it).
    pub tls: bool,
    /// Keep `mod_offline` (off by default: stanzas to offline JIDs bounce).
    pub offline: bool,
    pub version: ProsodyVersion,
    /// The one `VirtualHost`, also the leaf certificate's SAN.
    pub domain: String,
    /// A directory holding `ca.pem` and `ca.key` ([`make_ca`]) that signs this
    /// server's leaf; `None`: a CA of its own in its directory.
    pub ca_dir: Option<PathBuf>,
    /// Federate (s2s with verified certificates); `None`: s2s disabled.
    pub s2s: Option<S2s>,
    /// Lines added to the global section, e.g. `c2s_stanza_size_limit = 10000`.
    pub extra_config: String,
    /// The lowest level written to its log: `debug` for the tests (read on
    /// failure), `warn` for the benchmarks (as in production).
    pub log_level: String,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            tls: true,
            offline: false,
            version: ProsodyVersion::V012,
            domain: DOMAIN.to_owned(),
            ca_dir: None,
            s2s: None,
            extra_config: String::new(),
            log_level: "debug".to_owned(),
        }
    }
}

pub struct Prosody {
    dir: tempfile::TempDir,
    port: u16,
    options: ProsodyOptions,
    child: Option<Child>,
    /// Prosody's own pid (the child is `runuser`).
    pid: Option<u32>,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A port on 127.0.0.1 for a server a test starts (Prosody, the agent's web server).
///
/// Ports come from a counter of this test process, below the kernel's ephemeral
/// range (32768 and up on Linux): so no two tests of one run get the same port, and
/// no outgoing connection of another test (which takes an ephemeral port) can take
/// it between this call and the server's bind. The counter starts at an offset of
/// the process id, so that two runs on one machine are unlikely to meet, and each
/// port is checked free by binding it. So it also serves as a port nothing listens
/// on, for tests of an unreachable server.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const LAST: u32 = 32_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 64) * 300;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + n) % (LAST - FIRST);
        let port = u16::try_from(port).expect("a port below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn run(program: &str, args: &[&str], cwd: &Path) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a signal with the `kill` program (no unsafe code in tests either).
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Prosody {
    /// A TLS-only server.
    pub async fn start() -> Self {
        Prosody::start_with(ProsodyOptions::default()).await
    }

    pub async fn start_with(options: ProsodyOptions) -> Self {
        let _ = options.version.program("prosody"); // a clear message when missing
        for program in ["prosody", "prosodyctl", "runuser", "openssl"] {
            assert!(
                find_program(program).is_some(),
                "'{program}' is not installed: run scripts/setup-system.sh (Debian packages prosody, openssl, util-linux)"
            );
        }
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert_eq!(
            uid, "0",
            "the Prosody tests run Prosody as its own user with runuser, which needs root"
        );

        let dir = tempfile::Builder::new()
            .prefix("prosody-test-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path();
        std::fs::create_dir(path.join("data")).unwrap();
        std::fs::create_dir(path.join("certs")).unwrap();
        let ca_dir = match &options.ca_dir {
            Some(ca) => ca.clone(),
            None => {
                make_ca(path);
                path.to_owned()
            }
        };
        issue_leaf(&ca_dir, path, &options.domain);

        let mut prosody = Prosody {
            port: free_port(),
            dir,
            options,
            child: None,
            pid: None,
        };
        std::fs::write(prosody.config_path(), prosody.config()).unwrap();
        // Prosody must read its config and certificates and write data, pid and log.
        run("chown", &["-R", "prosody:prosody", "."], prosody.dir.path());
        run("chmod", &["755", "."], prosody.dir.path());
        prosody.launch().await;
        prosody
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("prosody.pid")
    }

    /// Its `data_path` (accounts, offline messages: `DOMAIN%2etest/offline/USER.list`).
    pub fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    /// The CA that signed the server's certificate (for `xmpp.ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.options
            .ca_dir
            .as_deref()
            .unwrap_or(self.dir.path())
            .join("ca.pem")
    }

    /// The XMPP domain it serves.
    pub fn domain(&self) -> &str {
        &self.options.domain
    }

    pub fn version(&self) -> ProsodyVersion {
        self.options.version
    }

    /// Prosody's own process (not `runuser`'s) while it runs: for /proc readings.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` for `xmpp.server`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let tls_modules = if self.options.tls { "\"tls\";" } else { "" };
        let mut disabled = String::new();
        if !self.options.offline {
            disabled.push_str("\"offline\"; ");
        }
        let s2s = match &self.options.s2s {
            // Certificates only: no dialback, so s2s works through SASL EXTERNAL
            // with the test CA or not at all.
            Some(s2s) => format!(
                r#"s2s_interfaces = {{ "{address}" }}
s2s_ports = {{ 5269 }}
s2s_direct_tls_ports = {{ }}
s2s_require_encryption = true
s2s_secure_auth = true
unbound = {{ hoststxt = "{hosts}"; resolvconf = "{resolv}" }}
ssl = {{ cafile = "{ca}" }}
"#,
                address = s2s.address,
                hosts = s2s.hosts_file.display(),
                resolv = s2s.resolv_conf.display(),
                ca = self.ca_file().display(),
            ),
            None => {
                disabled.push_str("\"s2s\"; ");
                String::new()
            }
        };
        disabled.push_str("\"dialback\";");
        let ssl = if self.options.tls {
            format!("  ssl = {{ certificate = \"{dir}/leaf.pem\"; key = \"{dir}/leaf.key\" }}\n")
        } else {
            String::new()
        };
        format!(
            r#"-- Written by tests/common/prosody.rs for one test.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {level} = "{dir}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_settings = {{ nagle = false }}
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; {tls_modules} "disco"; "ping"; "smacks"; "posix" }}
modules_disabled = {{ {disabled} }}
c2s_require_encryption = {require}
allow_unencrypted_plain_auth = false
{s2s}{extra}
VirtualHost "{domain}"
{ssl}"#,
            port = self.port,
            require = self.options.tls,
            extra = self.options.extra_config,
            level = self.options.log_level,
            domain = self.options.domain,
        )
    }

    /// Starts Prosody in the foreground as its own user and waits for its port.
    async fn launch(&mut self) {
        let _ = std::fs::remove_file(self.pidfile());
        let output = std::fs::File::create(self.dir.path().join("prosody.out")).unwrap();
        let child = Command::new("runuser")
            .args(["-u", "prosody", "--"])
            .arg(self.options.version.program("prosody"))
            .args(["-F", "--config"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start prosody through runuser");
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "prosody exited at startup ({status}):\n{}\n{}",
                    self.read("prosody.out"),
                    self.read("prosody.log")
                );
            }
            let mut listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if let Some(s2s) = &self.options.s2s {
                listening &= tokio::net::TcpStream::connect((s2s.address, 5269))
                    .await
                    .is_ok();
            }
            let pid = std::fs::read_to_string(self.pidfile())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if listening && pid.is_some() {
                self.pid = pid;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prosody did not listen on port {} within 15 s:\n{}",
                self.port,
                self.read("prosody.log")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Prosody's log so far (for assertions and failure messages).
    pub fn log(&self) -> String {
        self.read("prosody.log")
    }

    /// Creates an account `user@DOMAIN` (its own domain).
    pub async fn register(&self, user: &str, password: &str) {
        let out = Command::new(self.options.version.program("prosodyctl"))
            .arg("--config")
            .arg(self.config_path())
            .args(["register", user, &self.options.domain, password])
            .output()
            .await
            .expect("run prosodyctl");
        assert!(
            out.status.success(),
            "prosodyctl register {user} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops Prosody (SIGTERM, SIGKILL after 5 s) and waits for it.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Signal Prosody itself: runuser would forward SIGTERM but then sleep 2 s.
        match self.pid.take() {
            Some(pid) => signal(pid, "-TERM"),
            None => signal(child.id().unwrap_or_default(), "-TERM"),
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Stops and starts again on the same port, with the same accounts.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = self.pid.take() {
            signal(pid, "-TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = self.pid {
            signal(pid, "-KILL");
        }
        let _ = child.start_kill();
    }
}

/// A CA (`basicConstraints CA:TRUE`): `ca.pem` and `ca.key` in `dir`.
pub fn make_ca(dir: &Path) {
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
            "/CN=quoalise-agent test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
}

/// `leaf.pem` and `leaf.key` in `dir` for `DNS:domain`, signed by the CA in
/// `ca_dir`; usable by a server and, on s2s, as a client.
fn issue_leaf(ca_dir: &Path, dir: &Path, domain: &str) {
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
            &format!("/CN={domain}"),
        ],
        dir,
    );
    std::fs::write(
        dir.join("leaf.ext"),
        format!(
            "subjectAltName=DNS:{domain}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )
    .unwrap();
    // A random serial, not -CAcreateserial: servers sharing a CA issue in parallel.
    let serial = format!("{}", rand::random::<u64>() >> 1);
    let ca_pem = ca_dir.join("ca.pem");
    let ca_key = ca_dir.join("ca.key");
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            ca_pem.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-set_serial",
            &serial,
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
        dir,
    );
}
