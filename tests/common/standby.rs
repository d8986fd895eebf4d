//! Two agent instances on one PostgreSQL (issue 19), for the failover tests
//! (tests/agent/failover.rs) and the failover benchmark (benches/failover.rs):
//! two REAL agent binaries on one database and one configuration (only
//! `web.listen`, and the public URL with it, differ), one real Prosody, the
//! real `enedis-sim`; what each instance's `/healthz` and PostgreSQL say about
//! who leads, and what Prosody's log says about the agent's sessions.

use std::time::Duration;

use crate::common;
use crate::common::agent_harness;

use agent_harness::*;
use common::postgres;
use common::prosody::{Prosody, ProsodyOptions};
use common::sim::Sim;
use common::xmpp_harness::{AGENT, PASSWORD, Peer, condition, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::xmpp::Command;

pub const DAILY: &str = "consumption/energy/active/daily";
pub const LOCK_CONNECTION: &str = "quoalise-agent leader lock";

/// One instance: its process, its files.
pub struct Instance {
    pub process: AgentProcess,
    pub files: ConfigFiles,
    _dir: tempfile::TempDir,
}

/// Two instances on one database; Prosody and the simulator.
pub struct Pair {
    // Drop order: the agents first (they say goodbye to Prosody).
    pub first: Instance,
    pub second: Instance,
    pub sim: Sim,
    pub prosody: Prosody,
    pub url: String,
}

/// Writes the configuration of one instance and starts it.
pub fn launch(prosody: &Prosody, sim: &Sim, settings: &AgentSettings) -> Instance {
    let dir = tempfile::Builder::new()
        .prefix("agent-failover-")
        .tempdir()
        .unwrap();
    let files = ConfigFiles {
        dir: dir.path().to_owned(),
        xmpp_server: prosody.server(),
        ca_file: prosody.ca_file(),
        sim_base: sim.base_url().to_owned(),
        web_port: free_port(),
        sge: None,
    };
    files.write(settings);
    let process = AgentProcess::spawn(&files.path(), dir.path(), files.web_port, &[]);
    Instance {
        process,
        files,
        _dir: dir,
    }
}

/// Waits until `agent`'s `/healthz` answers 200 with `role: <role>`.
pub async fn wait_role(agent: &mut AgentProcess, role: &str, within: Duration) -> String {
    let line = format!("\nrole: {role}\n");
    agent
        .wait_healthz(role, within, |body| body.contains(&line))
        .await
}

impl Pair {
    /// Prosody, the simulator, a fresh database; the first instance, once it
    /// leads; the second, once it stands by.
    pub async fn start(settings: AgentSettings) -> Pair {
        Pair::start_as(settings, false).await
    }

    /// [`Pair::start`]; with `roles`, each instance connects as a PostgreSQL
    /// role of its own (`<database>_first`, `<database>_second`, superusers),
    /// so that a test can break one instance's store and not the other's.
    pub async fn start_as(mut settings: AgentSettings, roles: bool) -> Pair {
        let prosody = Prosody::start_with(ProsodyOptions::default()).await;
        settings.xmpp_domain = prosody.domain().to_owned();
        prosody.register(AGENT, PASSWORD).await;
        for p in &settings.peers {
            prosody.register(&p.user, PASSWORD).await;
        }
        let sim = Sim::start(&["--quota-per-second", "0"]);
        let url = tokio::task::spawn_blocking(|| postgres::shared().fresh_database())
            .await
            .unwrap();
        let as_role = |which: &str| {
            if !roles {
                return url.clone();
            }
            let database = url.rsplit('/').next().unwrap();
            url.replacen("postgres@", &format!("{database}_{which}@"), 1)
        };
        if roles {
            let database = url.rsplit('/').next().unwrap().to_owned();
            tokio::task::spawn_blocking(move || {
                postgres::shared().execute(
                    "postgres",
                    &format!(
                        "CREATE ROLE {database}_first LOGIN SUPERUSER; \
                         CREATE ROLE {database}_second LOGIN SUPERUSER"
                    ),
                )
            })
            .await
            .unwrap();
        }
        settings.store_url = Some(as_role("first"));
        let mut first = launch(&prosody, &sim, &settings);
        wait_role(&mut first.process, "leader", Duration::from_secs(60)).await;
        settings.store_url = Some(as_role("second"));
        let mut second = launch(&prosody, &sim, &settings);
        wait_role(&mut second.process, "standby", Duration::from_secs(60)).await;
        assert!(
            second
                .process
                .wait_log(
                    "standby: waiting for the leader's lock",
                    Duration::from_secs(10)
                )
                .await,
            "{}",
            second.process.log()
        );
        Pair {
            first,
            second,
            sim,
            prosody,
            url,
        }
    }

    /// Runs `f` with a superuser client on the agents' database (the blocking
    /// driver, on the blocking pool).
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ::postgres::Client) -> T + Send + 'static,
    ) -> T {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || f(&mut postgres::shared().client_of(&url)))
            .await
            .unwrap()
    }

    /// The `count(*)` of `sql`.
    pub async fn count(&self, sql: &'static str) -> i64 {
        self.db(move |db| db.query_one(sql, &[]).unwrap().get(0))
            .await
    }

    /// The server process of the session holding the leader's lock.
    pub async fn leader_lock_pid(&self) -> i32 {
        let rows = self
            .db(|db| {
                db.query(
                    "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                     WHERE a.application_name = $1 AND a.datname = current_database() \
                     AND l.locktype = 'advisory' \
                     AND l.objid = 2 AND l.objsubid = 2 AND l.granted",
                    &[&LOCK_CONNECTION],
                )
                .unwrap()
            })
            .await;
        assert_eq!(rows.len(), 1, "one session holds the leader's lock");
        rows[0].get(0)
    }

    /// Sessions waiting for the leader's lock.
    pub async fn waiting_for_the_lock(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
             WHERE a.application_name = 'quoalise-agent leader lock' \
             AND a.datname = current_database() \
             AND l.locktype = 'advisory' AND l.objid = 2 AND l.objsubid = 2 AND NOT l.granted",
        )
        .await
    }
}

/// `get_history` of `prm`'s daily consumption on the one Paris day `day`.
pub fn one_day(prm: &str, day: Date) -> Command {
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{prm}_{DAILY}")),
            ("start_time", &midnight(day)),
            ("end_time", &midnight(day.tomorrow().unwrap())),
        ])),
    )
}

pub fn days_ago(n: i64) -> Date {
    today().checked_sub(n.days()).unwrap()
}

/// The peer's request for day `n` days ago is answered.
pub async fn answered(app: &Peer, n: i64) {
    let day = days_ago(n);
    app.command(one_day(PRM, day))
        .await
        .unwrap_or_else(|e| panic!("{day}: {:?}", condition(&e)));
}

/// The value of the metric line that is exactly `name`.
pub fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Prosody's c2s sessions of the agent's account, in the order they were
/// authenticated: (session id, line of its authentication, line of its end).
pub fn agent_sessions(prosody: &Prosody) -> Vec<(String, usize, Option<usize>)> {
    let log = prosody.log();
    let lines: Vec<&str> = log.lines().collect();
    let id_of = |line: &str| {
        line.split_whitespace()
            .find(|w| w.starts_with("c2s"))
            .map(str::to_owned)
    };
    let mut sessions = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(&format!("Authenticated as {AGENT}@"))
            && let Some(id) = id_of(line)
        {
            let end = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, l)| {
                    id_of(l).as_deref() == Some(id.as_str()) && l.contains("Client disconnected")
                })
                .map(|(j, _)| j);
            sessions.push((id, i, end));
        }
    }
    sessions
}

/// Prosody saw each session of the agent end before the next one was
/// authenticated (at least `n` sessions): never two agents on the stream.
#[track_caller]
pub fn sessions_did_not_overlap(prosody: &Prosody, n: usize) {
    let sessions = agent_sessions(prosody);
    assert!(
        sessions.len() >= n,
        "{n} sessions of the agent expected: {sessions:?}\n{}",
        prosody.log()
    );
    for pair in sessions.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let ended = old
            .2
            .unwrap_or_else(|| panic!("a session never ended: {sessions:?}\n{}", prosody.log()));
        assert!(
            ended < new.1,
            "a leader's session ended (line {ended}) after the next one was authenticated (line {}):\n{}",
            new.1,
            prosody.log()
        );
    }
}
