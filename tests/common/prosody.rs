//! A real Prosody for one test: its own temporary directory (data, pid, log,
//! certificates, config) owned by the `prosody` user, a self-signed CA and a
//! leaf certificate for `localhost` made with `openssl`, a free port on
//! 127.0.0.1, accounts registered with `prosodyctl`. It can be stopped and
//! restarted on the same port (reconnection tests) and is stopped on `Drop`
//! (SIGTERM, then SIGKILL), also when the test fails.
//!
//! Requires root (Prosody runs as its own user through `runuser`) and the
//! Debian `prosody` package (`scripts/setup-system.sh`).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The XMPP domain every test server serves.
pub const DOMAIN: &str = "localhost";

/// How a test server is set up.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Offer STARTTLS with the test CA's certificate (and require it).
    pub tls: bool,
    /// Keep `mod_offline` (off by default: stanzas to offline JIDs bounce).
    pub offline: bool,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            tls: true,
            offline: false,
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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
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
fn signal(pid: u32, sig: &str) {
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
        make_certificates(path);

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

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    /// The CA that signed the server's certificate (for `xmpp.ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
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
        let disabled = if self.options.offline {
            "\"s2s\";"
        } else {
            "\"s2s\"; \"offline\";"
        };
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
log = {{ debug = "{dir}/prosody.log" }}
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
VirtualHost "{DOMAIN}"
{ssl}"#,
            port = self.port,
            require = self.options.tls,
        )
    }

    /// Starts Prosody in the foreground as its own user and waits for its port.
    async fn launch(&mut self) {
        let _ = std::fs::remove_file(self.pidfile());
        let output = std::fs::File::create(self.dir.path().join("prosody.out")).unwrap();
        let child = Command::new("runuser")
            .args(["-u", "prosody", "--", "prosody", "-F", "--config"])
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
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
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

    /// Creates an account `user@localhost`.
    pub async fn register(&self, user: &str, password: &str) {
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.config_path())
            .args(["register", user, DOMAIN, password])
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

/// A CA (`basicConstraints CA:TRUE`) and a leaf for `DNS:localhost` signed by it.
fn make_certificates(dir: &Path) {
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
}
