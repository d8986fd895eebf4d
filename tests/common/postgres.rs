//! A real PostgreSQL server for the tests, from Debian's `postgresql` package,
//! started by the test itself as the `postgres` user (like Prosody, through
//! `runuser`), in a temporary directory, listening on 127.0.0.1 on a port of its
//! own. Never the package's system cluster.
//!
//! - [`shared`]: one server per test process, started on first use; each test
//!   takes a database of its own ([`PgServer::fresh_database`]), so tests run in
//!   parallel. A watchdog stops it and removes its directory when the test
//!   process ends (statics are never dropped).
//! - [`PgServer::start`]: a server of the test's own, stopped on `Drop`, for
//!   tests that kill or restart it.
//!
//! `fsync` is off: the tests kill agents, not the machine, and a commit still
//! goes through PostgreSQL's WAL and locks exactly as in production.
//!
//! Requires root and the `postgresql` package (scripts/setup-system.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::prosody::free_port;

/// A running PostgreSQL server.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Stop and remove on drop (not for the shared server).
    owned: bool,
    /// TLS only ([`PgServer::start_tls`]).
    tls: bool,
}

/// The server of this test process.
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut server = PgServer::launch();
        server.owned = false;
        server.watch_this_process();
        server
    })
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<N>/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run \
             scripts/setup-system.sh (Debian package postgresql)"
        )
    })
}

impl PgServer {
    /// A server of the test's own, stopped and removed on drop.
    pub fn start() -> PgServer {
        PgServer::launch()
    }

    /// A server of the test's own that accepts TCP connections over TLS only
    /// (`hostssl` in pg_hba.conf), with a certificate for `localhost` and
    /// 127.0.0.1 issued by a CA of its own ([`PgServer::ca_file`]).
    pub fn start_tls() -> PgServer {
        let mut server = PgServer::init();
        let certs = server.dir.join("certs");
        std::fs::create_dir(&certs).unwrap();
        super::prosody::make_ca(&certs);
        openssl(
            &certs,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            certs.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &certs,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "1",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        let data = server.dir.join("data");
        std::fs::copy(certs.join("server.pem"), data.join("server.crt")).unwrap();
        std::fs::copy(certs.join("server.key"), data.join("server.key")).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        for file in ["server.crt", "server.key", "pg_hba.conf"] {
            run("chown", &["postgres:postgres", path_str(&data.join(file))]);
            run("chmod", &["600", path_str(&data.join(file))]);
        }
        server.tls = true;
        server.start_on_a_free_port();
        server
    }

    /// The CA of a [`PgServer::start_tls`] server, in PEM.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.pem")
    }

    fn launch() -> PgServer {
        let mut server = PgServer::init();
        server.start_on_a_free_port();
        server
    }

    /// A new data directory, the server not started.
    fn init() -> PgServer {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert_eq!(
            uid, "0",
            "the PostgreSQL tests run the server as its own user with runuser, which needs root"
        );
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("postgres-test-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        run("chown", &["postgres:postgres", path_str(&dir)]);
        run("chmod", &["700", path_str(&dir)]);
        let data = dir.join("data");
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        PgServer {
            dir,
            bin,
            port: 0,
            owned: true,
            tls: false,
        }
    }

    fn start_on_a_free_port(&mut self) {
        // A port taken between free_port and the bind: try another.
        for _ in 0..5 {
            self.port = free_port();
            if self.try_start() {
                return;
            }
        }
        let server = self;
        panic!(
            "PostgreSQL did not start; its log:\n{}",
            std::fs::read_to_string(server.log_path()).unwrap_or_default()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn try_start(&self) -> bool {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=32MB",
            self.port,
            path_str(&self.dir)
        );
        if self.tls {
            options.push_str(" -c ssl=on");
        }
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", path_str(&self.dir.join("data"))])
            .args(["-l", path_str(&self.log_path())])
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        status.success()
    }

    /// Stops the server at once (as a crash would), then starts it again on the
    /// same port and data.
    pub fn restart(&self) {
        self.stop("immediate");
        assert!(self.try_start(), "PostgreSQL did not start again");
    }

    /// `pg_ctl stop -m mode` (`fast`, `immediate`).
    pub fn stop(&self, mode: &str) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", path_str(&self.dir.join("data"))])
            .args(["-m", mode, "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The URL of `database` for the `postgres` user.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database of this test's own; its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// A client on `database`, as the superuser, through the server's Unix
    /// socket (so also on a TLS-only server).
    pub fn client(&self, database: &str) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut config = postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(database);
        loop {
            match config.connect(postgres::NoTls) {
                Ok(client) => return client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot connect to the test PostgreSQL: {e}"),
            }
        }
    }

    /// A client on the database of `url` (from [`Self::fresh_database`]).
    pub fn client_of(&self, url: &str) -> postgres::Client {
        let database = url.rsplit('/').next().expect("a database in the URL");
        self.client(database)
    }

    /// Runs `sql` on `database`.
    pub fn execute(&self, database: &str, sql: &str) {
        self.client(database)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Stops the shared server and removes its directory once this process is
    /// gone (checked each second by a detached shell).
    // The watchdog outlives this process by design: never waited for.
    #[allow(clippy::zombie_processes)]
    fn watch_this_process(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             runuser -u postgres -- {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; \
             rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = path_str(&self.bin.join("pg_ctl")),
            data = path_str(&self.dir.join("data")),
            dir = path_str(&self.dir),
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the watchdog starts");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.owned {
            self.stop("immediate");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("runuser runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}
