//! Crash safety of per-consent tokens: `quoalise-agent consents refresh --loop`
//! (the real binary) refreshes v4 consents against the simulator, whose refresh
//! tokens work once, and is killed with SIGKILL at random instants, many times.
//! After each kill the store must pass `PRAGMA integrity_check` and every consent
//! must still refresh.
//!
//! The simulator rotates refresh tokens and keeps the previous one valid only until its
//! successor is first used, as OAuth servers with rotation do: a process killed after
//! Enedis answered and before its own commit still holds a working token, so no kill,
//! wherever it lands, may lose a consent. The loop prints `consent N: refreshing` before
//! and `consent N: refreshed` after each durable commit, and the simulator counts its
//! 200 answers, so the test also reports how many kills landed in that window.

use crate::common::config::AgentConfig;
use crate::common::upstream_sim;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::store::Store;
use quoalise_agent::upstream::{EnedisClient, Upstream};
use upstream_sim::{REDIRECT_URI, Sim, config, give_consent};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const KILLS: usize = 40;
const CONSENTS: usize = 3;
const TOKEN: &str = "POST /v1/oauth2/token";

fn write_config(dir: &Path, sim: &Sim) -> PathBuf {
    AgentConfig::new()
        .xmpp_password("unused")
        .set("enedis.api", "v4")
        .simulator(&sim.url)
        .set("enedis.redirect_uri", REDIRECT_URI)
        .set("enedis.calls_per_second", 1000)
        .write(dir)
}

/// The refresh loop's output so far, filled by a reader thread.
struct Loop {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

fn start_loop(config: &Path, interval_ms: u64) -> Loop {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["consents", "refresh", "--loop", "--interval-ms"])
        .arg(interval_ms.to_string())
        .env_remove("QUOALISE_AGENT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => sink.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    Loop {
        child,
        lines,
        reader,
    }
}

/// The consent whose refresh was in flight: its last line says `refreshing`.
fn in_flight(lines: &[String]) -> Option<i64> {
    let last = lines.iter().rev().find(|l| l.starts_with("consent "))?;
    let rest = last.strip_prefix("consent ")?;
    let (id, what) = rest.split_once(": ")?;
    (what == "refreshing").then(|| id.parse().ok()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_refresh_loops_never_loses_a_committed_token() {
    let sim = Sim::start(&["--quota-per-second", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), &sim);
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let mut cfg = config(ApiGeneration::V4, &sim);
    cfg.calls_per_second = 1000;
    let client = EnedisClient::new(&cfg, store.clone()).unwrap();
    for i in 0..CONSENTS {
        give_consent(&sim, &client, &format!("crash{i}0"), "peer@example.org").await;
    }

    let mut refreshes = 0usize;
    let mut unacknowledged_total = 0u64;
    for kill in 0..KILLS {
        let before = sim.calls_with(TOKEN, 200).await;
        // Vary the loop's pace so kills land in every phase: idle, reading the
        // store, waiting for Enedis, committing.
        let interval = rand::random_range(0..20u64);
        let mut refresher = start_loop(&config_path, interval);
        let started = Instant::now();
        while !refresher
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.ends_with("refreshed") || l.contains("refreshed, "))
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the refresh loop makes no progress: {:?}",
                refresher.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..120u64))).await;
        refresher.child.kill().unwrap(); // SIGKILL
        refresher.child.wait().unwrap();
        refresher.reader.join().unwrap();
        let lines = refresher.lines.lock().unwrap().clone();
        assert!(
            !lines.iter().any(|l| l.contains("failed")),
            "kill {kill}: a refresh failed inside the loop: {lines:?}"
        );
        let acknowledged = lines.iter().filter(|l| l.contains(": refreshed")).count();
        refreshes += acknowledged;
        let answered = sim.calls_with(TOKEN, 200).await - before;
        let unacknowledged = answered - acknowledged as u64;
        assert!(
            unacknowledged <= 1,
            "kill {kill}: {answered} answers for {acknowledged} acknowledged refreshes"
        );
        unacknowledged_total += unacknowledged;

        assert_eq!(store.integrity_check().unwrap(), "ok", "kill {kill}");
        let flight = in_flight(&lines);
        let now = jiff::Timestamp::now().as_second();
        let consents: Vec<_> = store
            .list_consents()
            .unwrap()
            .into_iter()
            .filter(|c| c.is_usable_at(now))
            .collect();
        assert_eq!(consents.len(), CONSENTS, "kill {kill}");
        for consent in consents {
            if let Err(e) = client.refresh_consent(consent.id).await {
                panic!(
                    "kill {kill}: consent {} lost (in flight at the kill: {flight:?}, \
                     unacknowledged answers: {unacknowledged}): {e}\n{lines:?}",
                    consent.id
                );
            }
        }
    }
    println!(
        "{KILLS} SIGKILLs during `consents refresh --loop`: {refreshes} refreshes acknowledged, \
         integrity_check ok every time, every consent refreshed after every kill; \
         {unacknowledged_total} kills landed between Enedis's answer and the commit"
    );
    assert!(
        refreshes >= KILLS,
        "the loop barely ran: {refreshes} refreshes"
    );
}

/// A TCP relay in front of the simulator that holds each answer back for `delay`
/// once the simulator has sent it: the simulator has acted (spent a refresh token
/// or a code), the client has not heard yet.
struct SlowRelay {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SlowRelay {
    async fn start(upstream: &str, delay: Duration) -> SlowRelay {
        let target = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(delay).await;
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SlowRelay { url, task }
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_giving_up_does_not_lose_the_new_tokens() {
    let sim = Sim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let direct = EnedisClient::new(&config(ApiGeneration::V4, &sim), store.clone()).unwrap();
    let relay = SlowRelay::start(&sim.url, Duration::from_millis(700)).await;
    let mut slow_cfg = config(ApiGeneration::V4, &sim);
    slow_cfg.base_url = relay.url.clone();
    let slow = EnedisClient::new(&slow_cfg, store.clone()).unwrap();

    // The code exchange: the caller gives up after Enedis spent the code.
    let url = slow
        .authorize_url("giveup0", &upstream_sim::one_year())
        .unwrap();
    let callback = quoalise_agent::upstream::Callback::from_query(&sim.accept(&url).await);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        slow.resolve_consent("peer@example.org", &callback, &upstream_sim::one_year()),
    )
    .await;
    assert!(gave_up.is_err(), "the relay should have delayed the answer");
    let consents = wait_for(|| {
        let consents = store.list_consents().unwrap();
        (!consents.is_empty()).then_some(consents)
    })
    .await
    .expect("the consent is stored all the same");
    assert_eq!(consents.len(), 1);
    let id = consents[0].id;

    // A refresh: the caller gives up after Enedis spent the old refresh token.
    for _ in 0..3 {
        let before = store.tokens(id).unwrap().unwrap().tokens.refresh_token;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(200), slow.refresh_consent(id)).await;
        assert!(gave_up.is_err());
        wait_for(|| {
            let now = store.tokens(id).unwrap().unwrap().tokens.refresh_token;
            (now != before).then_some(())
        })
        .await
        .expect("the abandoned refresh still stores the new pair");
        // The new pair was committed: the consent refreshes again.
        direct
            .refresh_consent(id)
            .await
            .unwrap_or_else(|e| panic!("consent lost after an abandoned refresh: {e}"));
    }
}

/// Poll `check` every 50 ms for up to 20 s.
async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(value) = check() {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
