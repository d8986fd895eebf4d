//! The Enedis quota survives a restart (issue 19, item 3), through the REAL
//! agent binary, a real Prosody and the REAL `enedis-sim`: with
//! `enedis.calls_per_hour = 5`, a peer's requests spend the five calls of the
//! hour; the agent is restarted (SIGTERM, then the same binary on the same
//! store); its next request is refused AT ONCE with `service-unavailable` and a
//! `<retry-after limit="hourly-quota"/>` an hour after the first call, Enedis
//! never sees a sixth call, and `/metrics` says the hour is spent.
//!
//! No assertion on wall-clock time: the instant the agent states is compared
//! with the instants the test recorded around the first call.

use crate::common;
use crate::common::agent_harness;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use xmpp_parsers::stanza_error::{ErrorType, StanzaError};

const DAILY: &str = "consumption/energy/active/daily";
const PER_HOUR: u64 = 5;

/// `get_history` of `prm`'s daily consumption on the one Paris day `day`.
fn one_day(prm: &str, day: Date) -> Command {
    Command::execute(
        "get_history",
        Some(submit(&[
            ("identifier", &format!("urn:dev:prm:{prm}_{DAILY}")),
            ("start_time", &midnight(day)),
            ("end_time", &midnight(day.tomorrow().unwrap())),
        ])),
    )
}

fn days_ago(n: i64) -> Date {
    today().checked_sub(n.days()).unwrap()
}

/// The `<retry-after xmlns="urn:quoalise:0" at=… limit=…/>` of a refusal.
fn retry_after(e: &StanzaError) -> (jiff::Timestamp, String) {
    let child = e
        .other
        .as_ref()
        .filter(|o| o.is("retry-after", NS_QUOALISE))
        .unwrap_or_else(|| panic!("no <retry-after/> in {e:?}"));
    let at = child
        .attr("at")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("<retry-after/> without an instant: {child:?}"));
    let limit = child
        .attr("limit")
        .unwrap_or_else(|| panic!("<retry-after/> without limit: {child:?}"))
        .to_owned();
    (at, limit)
}

/// The value of the metric line that is exactly `name`.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
}

const USED: &str = "quoalise_agent_quota_used_this_hour";

/// Instants around the first call of the hour, as the test saw them.
struct FirstCall {
    before: jiff::Timestamp,
    after: jiff::Timestamp,
}

/// Spends the hour's calls with distinct days (nothing cached), each a data
/// call, the first also the application's token; returns when the first call
/// was made and the next day not asked yet.
async fn spend_the_hour(d: &Deployment, app: &Peer) -> (FirstCall, i64) {
    let admin = d.sim.admin();
    let before = jiff::Timestamp::now();
    let mut after = None;
    let mut n = 2;
    while admin.total_calls().await < PER_HOUR {
        assert!(n < 2 + PER_HOUR as i64, "more requests than calls");
        let day = days_ago(n);
        app.command(one_day(PRM, day))
            .await
            .unwrap_or_else(|e| panic!("{day}: {:?}", condition(&e)));
        after.get_or_insert_with(jiff::Timestamp::now);
        n += 1;
    }
    assert_eq!(admin.total_calls().await, PER_HOUR);
    assert_eq!(
        metric(&d.agent.metrics().await, USED),
        Some(PER_HOUR as f64)
    );
    let first = FirstCall {
        before,
        after: after.unwrap(),
    };
    (first, n)
}

/// After the restart: `/metrics` says the hour is spent before anyone asks;
/// the next request is refused at once (its deadline is minutes away, the slot
/// an hour), told to come back an hour after `first`, and Enedis is not asked.
async fn the_hour_is_still_spent(d: &Deployment, app: &Peer, first: &FirstCall, day: Date) {
    let metrics = d.agent.metrics().await;
    assert_eq!(metric(&metrics, USED), Some(PER_HOUR as f64), "{metrics}");
    assert_eq!(
        metric(&metrics, "quoalise_agent_quota_per_hour"),
        Some(PER_HOUR as f64)
    );
    let refused = app
        .command(one_day(PRM, day))
        .await
        .expect_err("the hour's five calls were spent before the restart");
    let (cond, text) = condition(&refused);
    assert_eq!(cond, "service-unavailable", "{text}");
    assert_eq!(refused.type_, ErrorType::Wait, "{text}");
    let (at, limit) = retry_after(&refused);
    assert_eq!(limit, "hourly-quota", "{text}");
    // An hour after the first call, which left between `before` and `after`;
    // `at` is rounded up to the second, the ledger keeps milliseconds.
    let hour = jiff::SignedDuration::from_secs(3_600);
    let earliest = first.before.checked_add(hour).unwrap();
    let latest = first
        .after
        .checked_add(hour + jiff::SignedDuration::from_secs(1))
        .unwrap();
    assert!(
        earliest <= at && at <= latest,
        "retry at {at}, expected an hour after the first call: {earliest} to {latest}"
    );
    assert_eq!(d.sim.admin().total_calls().await, PER_HOUR, "no sixth call");
    assert_eq!(
        metric(&d.agent.metrics().await, USED),
        Some(PER_HOUR as f64)
    );
    // And the log says where the count came from.
    let log = d.agent.log();
    assert!(
        log.contains("the calls of the last hour recorded in the store count against this hour"),
        "{log}"
    );
}

fn settings() -> AgentSettings {
    let mut settings = AgentSettings::with_peers(vec![peer("app", &[PRM])]);
    settings.calls_per_hour = PER_HOUR as u32;
    settings.quota_wait_secs = 600;
    settings.request_timeout_secs = 120;
    settings
}

/// A clean restart (SIGTERM, as systemd or an upgrade does): the agent writes
/// what is left of its journal before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_remembers_the_calls_of_its_hour() {
    let mut d = Deployment::start(settings()).await;
    let app = Peer::login(&d.prosody, "app@localhost/a").await;
    d.sim.admin().clear_calls().await;
    let (first, n) = spend_the_hour(&d, &app).await;
    d.agent.restart().await;
    the_hour_is_still_spent(&d, &app, &first, days_ago(n)).await;
    d.agent.stop().await;
}

/// A crash (SIGKILL): nothing is written at exit, so what counts is what the
/// agent wrote behind its calls while it ran, a batch a second. The test waits
/// (without a time limit of its own) until the store holds the five calls, as
/// it does a second after them, then kills the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_remembers_the_calls_it_wrote_behind() {
    let mut d = Deployment::start(settings()).await;
    let app = Peer::login(&d.prosody, "app@localhost/a").await;
    d.sim.admin().clear_calls().await;
    let (first, n) = spend_the_hour(&d, &app).await;
    let db = d.dir.path().join("agent.db");
    let recorded = || -> i64 {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        conn.query_row(
            "SELECT count(*) FROM quota_calls WHERE platform = 'data-connect'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    // A guard against a hang, not a measure: the writes come a second apart.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while recorded() < PER_HOUR as i64 {
        assert!(d.agent.try_status().is_none(), "the agent died");
        assert!(
            std::time::Instant::now() < give_up,
            "the calls never reached the store's ledger"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(recorded(), PER_HOUR as i64);
    d.agent.signal("-KILL");
    let status = d.agent.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(!status.success(), "killed: {status}");
    d.agent = AgentProcess::spawn(&d.files.path(), d.dir.path(), d.files.web_port, &[]);
    d.agent
        .wait_healthy(std::time::Duration::from_secs(60))
        .await;
    the_hour_is_still_spent(&d, &app, &first, days_ago(n)).await;
    d.agent.stop().await;
}
