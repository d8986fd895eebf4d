//! The subscription scheduler when Enedis publishes late, driven with an injected
//! clock and on-demand passes, in a whole agent context built in-process from the
//! library (real Prosody, real `enedis-sim` told to lag a day behind, real store):
//!
//! - before the publish time only the day before yesterday is due; after it,
//!   yesterday; a day the simulator does not have yet leaves the subscription
//!   pending, and the pass that finds it delivers it, once;
//! - the scheduler's own loop retries with backoff while the data is late and stops
//!   asking once it was delivered;
//! - the message goes to the subscriber's bare JID, carrying the Quoalise payload;
//! - a subscriber weeks behind gets every day, a week per message at most.

use crate::common;
use crate::common::agent_harness;
use crate::common::sim;

use std::sync::Arc;
use std::time::Duration;

use agent_harness::{ConfigFiles, PRM, free_port};
use common::prosody::{DOMAIN, Prosody};
use common::xmpp_harness::{AGENT, PASSWORD, Peer};
use jiff::civil::{Date, time};
use jiff::{Timestamp, ToSpan};
use quoalise_agent::agent::AgentContext;
use quoalise_agent::config::Config;
use quoalise_agent::daemon::commands;
use quoalise_agent::metrics::Metrics;
use quoalise_agent::push::{Delivery, RetryPolicy, Scheduler};
use quoalise_agent::quoalise::{Identifier, Series, decode_element};
use quoalise_agent::store::{AccessBasis, Store};
use quoalise_agent::time::{PARIS, day_start, paris_today};
use quoalise_agent::upstream::cache::{CachedUpstream, Clock};
use quoalise_agent::upstream::{EnedisClient, Upstream};
use quoalise_agent::xmpp::{NS_QUOALISE, XmppAgent};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;

const LOAD_CURVE: &str = "GET /mesure_synchrone_auto/v2/courbe_de_charge_consommation";

fn today() -> Date {
    paris_today(Timestamp::now())
}

fn day(offset: i64) -> Date {
    today().checked_add(offset.days()).unwrap()
}

/// `hh:mm` Paris on day `date`.
fn paris(date: Date, hh: i8, mm: i8) -> Timestamp {
    PARIS
        .to_ambiguous_timestamp(date.to_datetime(time(hh, mm, 0, 0)))
        .compatible()
        .unwrap()
}

struct World {
    ctx: Arc<AgentContext>,
    sim: sim::Sim,
    erin: Peer,
    shutdown: CancellationToken,
    _prosody: Prosody,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An agent context with its XMPP session up, the configuration's publish time
/// at `publish`, and erin (granted PRM) online.
async fn world(publish: &str) -> World {
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    prosody.register("erin", PASSWORD).await;
    let sim = sim::Sim::start(&["--quota-per-second", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let files = ConfigFiles {
        dir: dir.path().to_owned(),
        xmpp_server: prosody.server(),
        ca_file: prosody.ca_file(),
        sim_base: sim.base_url().to_owned(),
        web_port: free_port(),
        sge: None,
    };
    files.write(&agent_harness::AgentSettings::with_peers(vec![
        agent_harness::peer("erin", &[PRM]),
    ]));
    let mut text = std::fs::read_to_string(files.path()).unwrap();
    text.push_str(&format!(
        "\n[subscriptions]\npublish_time = \"{publish}\"\n"
    ));
    std::fs::write(files.path(), text).unwrap();
    let config = Config::load(&files.path()).unwrap();

    let store = Store::open(&config.store.path).unwrap();
    store.sync_peer_grants(&config.peers).unwrap();
    let raw: Arc<dyn Upstream> =
        Arc::new(EnedisClient::new(config.data_connect().unwrap(), store.clone()).unwrap());
    let upstream = Arc::new(CachedUpstream::new(raw, store.clone()));
    let xmpp = XmppAgent::new(&config.xmpp).unwrap();
    let ctx = Arc::new(
        AgentContext::new(config, store, upstream, Metrics::new(), xmpp.handle()).unwrap(),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(xmpp.run(commands(ctx.clone()), ctx.peers.clone(), shutdown.clone()));
    assert!(ctx.xmpp.wait_until_up(Duration::from_secs(30)).await);
    let erin = Peer::login(&prosody, "erin@localhost/phone").await;
    World {
        ctx,
        sim,
        erin,
        shutdown,
        _prosody: prosody,
        _dir: dir,
    }
}

/// The next Quoalise message to erin: (its `to`, the days it covers).
async fn next_push(erin: &mut Peer, within: Duration) -> Option<(String, Vec<i64>)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stanza = tokio::time::timeout_at(deadline, erin.inbound.recv())
            .await
            .ok()??;
        let Stanza::Message(message) = stanza else {
            continue;
        };
        let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
        else {
            continue;
        };
        let series = decode_element(payload).unwrap()[0]
            .to_time_series()
            .unwrap();
        let starts = series.readings.iter().map(|r| r.start).collect();
        let to = message.to.map(|j| j.to_string()).unwrap_or_default();
        return Some((to, starts));
    }
}

/// Make the simulator lag: its "today" is our yesterday, so yesterday is not there.
async fn lag(sim: &sim::Sim, lagging: bool) {
    let today = if lagging {
        serde_json::Value::String(day(-1).to_string())
    } else {
        serde_json::Value::Null
    };
    sim.admin()
        .config(serde_json::json!({ "today": today }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_is_delivered_by_the_pass_that_finds_it_and_only_once() {
    let mut w = world("08:00").await;
    let identifier = Identifier::new(PRM.parse().unwrap(), Series::ConsumptionEnergyDaily);
    let (sub, _) = w
        .ctx
        .store
        .subscribe(
            "erin@localhost",
            &identifier,
            AccessBasis::Grant,
            day(-3),
            Timestamp::now().as_second(),
        )
        .unwrap();
    lag(&w.sim, true).await;

    // 07:00: only the day before yesterday is due, and the simulator has it.
    let early = Scheduler::new(w.ctx.clone()).with_clock(Clock::fixed(paris(today(), 7, 0)));
    let pass = early.run_once().await;
    assert_eq!(
        pass.deliveries,
        vec![(
            sub.id,
            Delivery::Sent {
                from: day(-2),
                to: day(-1)
            }
        )]
    );
    let (to, starts) = next_push(&mut w.erin, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(to, format!("erin@{DOMAIN}"), "sent to the bare JID");
    assert_eq!(starts, vec![day_start(day(-2)).unwrap()]);

    // 08:30: yesterday is due, Enedis does not have it yet.
    let late = Scheduler::new(w.ctx.clone()).with_clock(Clock::fixed(paris(today(), 8, 30)));
    let pass = late.run_once().await;
    assert!(pass.pending(), "{pass:?}");
    assert_eq!(pass.sent(), 0);
    assert!(
        next_push(&mut w.erin, Duration::from_millis(300))
            .await
            .is_none()
    );

    // Enedis catches up: the next pass delivers yesterday, the one after nothing.
    lag(&w.sim, false).await;
    let pass = late.run_once().await;
    assert_eq!(
        pass.deliveries,
        vec![(
            sub.id,
            Delivery::Sent {
                from: day(-1),
                to: day(0)
            }
        )]
    );
    let (_, starts) = next_push(&mut w.erin, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(starts, vec![day_start(day(-1)).unwrap()]);
    let pass = late.run_once().await;
    assert_eq!(pass.deliveries, vec![(sub.id, Delivery::UpToDate)]);
    assert_eq!(
        w.ctx.store.subscriptions().unwrap()[0].delivered_through,
        day(-1)
    );

    // After four weeks away, every day is caught up, none skipped: oldest first,
    // at most a week in one message, the progress stored through the latest day.
    w.ctx
        .store
        .unsubscribe("erin@localhost", &identifier)
        .unwrap();
    let (sub, _) = w
        .ctx
        .store
        .subscribe(
            "erin@localhost",
            &identifier,
            AccessBasis::Grant,
            day(-30),
            Timestamp::now().as_second(),
        )
        .unwrap();
    let pass = late.run_once().await;
    assert_eq!(
        pass.deliveries,
        vec![(
            sub.id,
            Delivery::Sent {
                from: day(-29),
                to: day(0)
            }
        )]
    );
    let mut messages: Vec<Vec<i64>> = Vec::new();
    while messages.iter().map(Vec::len).sum::<usize>() < 29 {
        let (_, starts) = next_push(&mut w.erin, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the catch-up stopped after {messages:?}"));
        messages.push(starts);
    }
    assert!(
        next_push(&mut w.erin, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing more than the missing days"
    );
    let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![7, 7, 7, 7, 1], "days per message");
    let expected: Vec<i64> = (1..=29)
        .rev()
        .map(|n| day_start(day(-n)).unwrap())
        .collect();
    assert_eq!(messages.concat(), expected, "every day, in order");
    assert_eq!(
        w.ctx.store.subscriptions().unwrap()[0].delivered_through,
        day(-1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_retries_with_backoff_while_data_is_late_then_stops() {
    // Publishing at midnight: yesterday is due whatever the time of the test.
    let mut w = world("00:00").await;
    let identifier = Identifier::new(PRM.parse().unwrap(), Series::ConsumptionPower);
    w.ctx
        .store
        .subscribe(
            "erin@localhost",
            &identifier,
            AccessBasis::Grant,
            day(-2),
            Timestamp::now().as_second(),
        )
        .unwrap();
    lag(&w.sim, true).await;
    w.sim.admin().clear_calls().await;
    let scheduler = Scheduler::new(w.ctx.clone()).with_retry(RetryPolicy {
        first: Duration::from_millis(200),
        max: Duration::from_millis(800),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(stop.clone()));

    // Attempts at about 0, 0.2, 0.6, 1.4, 2.2 s: several in 2.5 s, not dozens.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = w.sim.admin().call_count(LOAD_CURVE).await;
    assert!((3..=8).contains(&attempts), "{attempts} attempts in 2.5 s");
    assert!(
        next_push(&mut w.erin, Duration::from_millis(10))
            .await
            .is_none()
    );

    lag(&w.sim, false).await;
    let (_, starts) = next_push(&mut w.erin, Duration::from_secs(10))
        .await
        .expect("delivered once Enedis has it");
    assert_eq!(starts.first(), Some(&day_start(day(-1)).unwrap()));
    // Delivered: the scheduler now sleeps until the next publication.
    let after = w.sim.admin().call_count(LOAD_CURVE).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.sim.admin().call_count(LOAD_CURVE).await, after);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
}
