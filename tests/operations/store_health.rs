//! `/healthz` tells the truth about the store (issue 19, item 6): the REAL agent
//! with its SQLite store on a tiny tmpfs that fills up, then on a file made
//! immutable (`chattr +i`).
//!
//! - Disk full: `/healthz` answers 503 naming the store and SQLite's reason,
//!   `/metrics` counts the failed writes (the probe's and a peer's audit row),
//!   systemd's `STATUS=` says so, the peer's data request is refused (no audit
//!   row, no data) and the agent keeps running; once space is freed, `/healthz`
//!   is 200 again and the peer is served, without a restart.
//! - Read-only file: the running agent's open connections still write (the
//!   kernel checks at open), but a restart could not: the probe, on a connection
//!   of its own, reports it; `chattr -i` and health is back.
//!
//! - PostgreSQL (`store.url`) stopped under the running agent: `/healthz`
//!   answers 503 within seconds, saying "PostgreSQL unreachable" with the
//!   server's address and never the URL's password, each answer within the
//!   probe's wait (not the check's deadline), and `/metrics` counts the
//!   `unreachable` failures; the server started again, `/healthz` is 200 and
//!   the peer is served, without a restart of the agent.
//!
//! Mounting a tmpfs, `chattr` and running PostgreSQL as its own user need root
//! (CI runs as root); elsewhere the tests say so and do nothing.

use crate::common::agent_harness;
use crate::common::postgres::PgServer;
use crate::common::xmpp_harness::{Peer, submit};

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use agent_harness::*;
use quoalise_agent::xmpp::Command;

/// A `NOTIFY_SOCKET` the agent reports to, as systemd would read it.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket { socket, path }
    }

    /// Reads messages until one contains `needle` (the agent sends its store
    /// status from a task that probes every 10 s); returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        tokio::task::block_in_place(|| {
            while Instant::now() < deadline {
                if let Ok(n) = self.socket.recv(&mut buf) {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if message.contains(needle) {
                        return message;
                    }
                }
            }
            panic!("no notification with {needle:?}");
        })
    }
}

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("store-health-")
            .tempdir()
            .unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            Some(dir.path()),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the agent (dropped after) may still hold the files open.
        let _ = Process::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn run(program: &str, args: &[&str], path: Option<&Path>) {
    let mut command = Process::new(program);
    command.args(args);
    if let Some(path) = path {
        command.arg(path);
    }
    let status = command.status().unwrap();
    assert!(status.success(), "{program} {args:?} {path:?}: {status}");
}

fn is_root() -> bool {
    Process::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes zeros to `filler` until the file system is full.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .unwrap();
    let block = [0u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", filler.display()),
        }
    }
}

/// Fills the file system with the WAL emptied first: SQLite writes a checkpointed
/// WAL again from its start, so a WAL that keeps its size would keep accepting
/// small writes on a full disk (measured); an empty one must grow for any write.
fn fill_with_empty_wal(db: &Path, filler: &Path) {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        fill(filler);
        // The agent may have written between the two (its probe): then again.
        let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if busy == 0 && wal_len == 0 {
            return;
        }
        std::fs::remove_file(filler).unwrap();
        assert!(
            Instant::now() < deadline,
            "the WAL is not empty: busy {busy}, {wal_len} bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn history() -> Command {
    let day = |n: i64| midnight(today().checked_sub(jiff::ToSpan::days(n)).unwrap());
    Command::execute(
        "get_history",
        Some(submit(&[
            (
                "identifier",
                &format!("urn:dev:prm:{PRM}_consumption/energy/active/daily"),
            ),
            ("start_time", &day(10)),
            ("end_time", &day(7)),
        ])),
    )
}

/// Polls `/healthz` until `want(status, body)`, or panics with the last answer.
async fn wait_health(
    agent: &mut AgentProcess,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = agent.healthz().await;
        if let Some((status, body)) = &answer
            && want(*status, body)
        {
            return body.clone();
        }
        assert!(
            agent.try_status().is_none(),
            "the agent exited:\n{}",
            agent.log()
        );
        assert!(
            Instant::now() < deadline,
            "{what}: last /healthz {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The samples of `quoalise_agent_store_write_failures_total` for `kind`:
/// (operation, count).
fn failures(metrics: &str, kind: &str) -> Vec<(String, u64)> {
    let prefix = format!("quoalise_agent_store_write_failures_total{{kind=\"{kind}\",operation=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (operation, count) = rest.split_once("\"} ")?;
            Some((operation.to_owned(), count.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_written_is_unhealthy_until_it_can() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs and chattr need root");
        return;
    }
    let disk = Tmpfs::mount("8m");
    let db = disk.path().join("agent.db");
    let filler = disk.path().join("filler");
    let db_env = db.display().to_string();
    let sockets = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(sockets.path());
    let socket = notify.path.display().to_string();
    let mut d = Deployment::launch(
        AgentSettings::with_peers(vec![peer("alice", &[PRM])]),
        &[],
        &[
            ("QUOALISE_AGENT__STORE__PATH", &db_env),
            ("NOTIFY_SOCKET", &socket),
        ],
    )
    .await;
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    alice
        .command(history())
        .await
        .expect("served on a store with room");
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains("\nquoalise_agent_store_writable 1\n"),
        "{metrics}"
    );
    assert_eq!(failures(&metrics, "disk_full"), vec![]);

    // The disk fills up.
    fill_with_empty_wal(&db, &filler);
    let body = wait_health(&mut d.agent, "503 for a full disk", |status, _| {
        status == 503
    })
    .await;
    assert!(
        body.contains("store: FAILED: writes failing since ")
            && body.contains("database or disk is full"),
        "{body}"
    );
    // A peer's request is refused: its audit row cannot be written.
    let refused = alice.command(history()).await;
    assert!(refused.is_err(), "served without an audit row: {refused:?}");
    let metrics = d.agent.metrics().await;
    let full = failures(&metrics, "disk_full");
    assert!(
        full.iter().any(|(op, n)| op == "probe" && *n >= 1)
            && full
                .iter()
                .any(|(op, n)| op != "probe" && op != "checkpoint" && *n >= 1),
        "the probe's and the request's failures are counted: {full:?}\n{metrics}"
    );
    assert!(
        metrics.contains("\nquoalise_agent_store_writable 0\n"),
        "{metrics}"
    );
    assert!(
        d.agent.try_status().is_none(),
        "the agent exited:\n{}",
        d.agent.log()
    );
    let status = notify.wait_for("STATUS=store: writes failing since ");
    assert!(status.contains("database or disk is full"), "{status}");

    // Space is freed: healthy again, without a restart, and the peer is served.
    std::fs::remove_file(&filler).unwrap();
    let body = wait_health(&mut d.agent, "200 once space is freed", |status, _| {
        status == 200
    })
    .await;
    assert!(body.starts_with("store: ok\n"), "{body}");
    alice
        .command(history())
        .await
        .expect("served once space is freed");
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains("\nquoalise_agent_store_writable 1\n"),
        "{metrics}"
    );
    notify.wait_for("STATUS=serving; store writes work again");

    // The file is made read-only under the running agent.
    run("chattr", &["+i"], Some(&db));
    let body = wait_health(&mut d.agent, "503 for a read-only file", |status, _| {
        status == 503
    })
    .await;
    run("chattr", &["-i"], Some(&db));
    assert!(
        body.contains("store: FAILED: writes failing since ")
            && body.contains("agent.db cannot be opened for writing: Operation not permitted"),
        "{body}"
    );
    let metrics = d.agent.metrics().await;
    assert!(
        failures(&metrics, "read_only")
            .iter()
            .any(|(op, n)| op == "probe" && *n >= 1),
        "{metrics}"
    );
    wait_health(
        &mut d.agent,
        "200 once the file is writable",
        |status, _| status == 200,
    )
    .await;
    assert!(d.agent.try_status().is_none());
    alice.command(history()).await.expect("still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_postgresql_is_unhealthy_while_its_server_is_down() {
    if !is_root() {
        eprintln!("skipped: the test's PostgreSQL runs as the postgres user (runuser needs root)");
        return;
    }
    const PASSWORD: &str = "hunter2-store-secret";
    // The test server trusts local connections: the password is only there to
    // be kept out of every message. (The harness's client is blocking.)
    let (server, url) = tokio::task::block_in_place(|| {
        let server = PgServer::start();
        let url =
            server
                .fresh_database()
                .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
        (server, url)
    });
    let described = format!("postgres://postgres@127.0.0.1:{}/", server.port);
    let mut d = Deployment::launch(
        AgentSettings {
            store_url: Some(url),
            ..AgentSettings::with_peers(vec![peer("alice", &[PRM])])
        },
        &[],
        &[],
    )
    .await;
    d.agent.wait_healthy(Duration::from_secs(60)).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/a").await;
    alice
        .command(history())
        .await
        .expect("served from PostgreSQL");
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains("\nquoalise_agent_store_writable 1\n"),
        "{metrics}"
    );
    assert_eq!(failures(&metrics, "unreachable"), vec![]);

    // The server stops (as a crash would).
    tokio::task::block_in_place(|| server.stop("immediate"));
    let stopped = Instant::now();
    let reason = format!("PostgreSQL unreachable: {described}");
    let failing = "store: FAILED: writes failing since ";
    // The first answer is the schema version's (when the probe ran less than
    // a second ago) or the probe's; then the probe's, remembered.
    let body = wait_health(&mut d.agent, "503 for a stopped server", |status, body| {
        status == 503
            && (body.contains(&format!("store: FAILED: {reason}"))
                || body.contains(failing) && body.contains(&reason))
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "noticed after {:?}",
        stopped.elapsed()
    );
    assert!(!body.contains(PASSWORD), "the password leaked: {body}");
    let body = wait_health(&mut d.agent, "the probe's failure", |status, body| {
        status == 503 && body.contains(failing)
    })
    .await;
    assert!(body.contains(&format!("Z: {reason}")), "{body}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "recorded after {:?}",
        stopped.elapsed()
    );
    // Each answer within the probe's wait for a connection (2 s), not the
    // check's deadline (5 s), whether the probe runs or not.
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, body) = d.agent.healthz().await.expect("/healthz answers");
        assert!(
            asked.elapsed() < Duration::from_millis(4_000),
            "answered in {:?}: {body}",
            asked.elapsed()
        );
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("PostgreSQL unreachable"), "{body}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let metrics = d.agent.metrics().await;
    assert!(
        failures(&metrics, "unreachable")
            .iter()
            .any(|(op, n)| op == "probe" && *n >= 1),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nquoalise_agent_store_writable 0\n"),
        "{metrics}"
    );
    assert!(
        d.agent.try_status().is_none(),
        "the agent exited:\n{}",
        d.agent.log()
    );

    // The server is back: healthy again without a restart, and the peer served.
    // The server's restart ended the leader's lock session: the agent stood
    // by (its XMPP session dropped) and leads again once it has the lock.
    tokio::task::block_in_place(|| server.restart());
    let body = wait_health(
        &mut d.agent,
        "200 once the server is back",
        |status, body| status == 200 && body.contains("\nrole: leader\n"),
    )
    .await;
    assert!(body.starts_with("store: ok\n"), "{body}");
    alice
        .command(history())
        .await
        .expect("served once the server is back");
    assert!(
        d.agent
            .metrics()
            .await
            .contains("\nquoalise_agent_store_writable 1\n")
    );
    let log = d.agent.log();
    assert!(!log.contains(PASSWORD), "the password is in the log");
    assert!(log.contains("PostgreSQL unreachable"), "the log says why");
}
