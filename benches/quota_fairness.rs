//! The Enedis quota shared between peers (issue 17), measured:
//!
//! 1. END TO END through Prosody, the REAL agent and the REAL simulator (release
//!    builds, as `cargo bench --bench quota_fairness` builds them), at the real
//!    Enedis pace (`enedis.calls_per_second` = 5: one call every 220 ms), the
//!    other settings at their defaults (`quota_wait_secs` 60,
//!    `xmpp.request_timeout_secs` 120): peer A floods the agent with one-day
//!    requests of distinct days (up to 1,000, `BENCH_IN_FLIGHT` in flight), and
//!    peer B asks for one day every `BENCH_PROBE_EVERY_MS`, `BENCH_PROBES` times,
//!    during the flood. Printed: B's round trips (p50, p99, max), its wait for a
//!    call slot as the agent counts it (`/metrics`), A's answers per second, the
//!    Enedis calls per second. Then the same with B sending from A's JID (another
//!    resource of the same account): B's requests join A's queue, which is what
//!    serving in arrival order would give every peer. Each run stops the flood
//!    once B's answers are in.
//! 2. VIRTUAL TIME, the scheduler alone (tests/common/quota_sim.rs): 2,000
//!    subscriptions of 40 subscribers pushed under 300 calls an hour (20 % kept
//!    for people), a person's call every 293 s for ten hours: the time to push
//!    them all, the busiest hour, the people's waits.
//!
//! Knobs (environment): `BENCH_FLOOD` (default 1000), `BENCH_IN_FLIGHT` (120: a backlog of 26 s, within
//! `quota_wait_secs`, also with B's requests in A's queue),
//! `BENCH_PROBES` (30), `BENCH_PROBE_EVERY_MS` (2000), `BENCH_CALLS_PER_SECOND` (5),
//! `BENCH_AGENT_BIN`. About 4 minutes.
//!
//! Needs root (Prosody runs as its own user) and the Debian `prosody` package.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;
#[path = "../tests/common/quota_sim.rs"]
mod quota_sim;

use common::agent_harness::{PRM, PRM_PT10M};
use common::xmpp_harness::Peer;
use measure::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use quoalise_agent::xmpp::{Command, IqError};
use xmpp_parsers::iq::IqRequestPayload;

const DAILY: &str = "consumption/energy/active/daily";

struct Knobs {
    flood: usize,
    in_flight: usize,
    samples: usize,
    every: Duration,
    calls_per_second: u32,
}

/// `get_history` of `prm`'s daily consumption on the Paris day `days` ago.
fn one_day(prm: &str, days: i64) -> Command {
    use quoalise_agent::commands::data::paris_midnight;
    use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let day: Date = quoalise_agent::time::add_days(today, -days).unwrap();
    let form = DataForm {
        type_: DataFormType::Submit,
        title: None,
        instructions: None,
        fields: vec![
            Field::text_single("identifier", &format!("urn:dev:prm:{prm}_{DAILY}")),
            Field::text_single("start_time", &paris_midnight(day)),
            Field::text_single("end_time", &paris_midnight(day.tomorrow().unwrap())),
        ],
    };
    Command::execute("get_history", Some(form))
}

/// An answer: `None` when served, else the refusal's condition and limit.
async fn ask(peer: &Peer, command: &Command) -> Option<String> {
    let answer = peer
        .running
        .handle
        .send_iq(
            Some(peer.agent.clone()),
            IqRequestPayload::Set(command.to_element()),
            Duration::from_secs(180),
        )
        .await;
    match answer {
        Ok(_) => None,
        Err(IqError::Error(e)) => {
            let limit = e
                .other
                .as_ref()
                .and_then(|o| o.attr("limit"))
                .unwrap_or("-")
                .to_owned();
            let condition = minidom::Element::from(e.defined_condition.clone());
            Some(format!("{} {limit}", condition.name()))
        }
        Err(e) => Some(format!("no answer: {e}")),
    }
}

/// The value of the metric line that is exactly `name` (labels included).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A peer's quota wait in `/metrics`: its mean, and the smallest bucket bound
/// holding 99 % of its calls.
fn quota_wait(metrics: &str, peer: &str) -> (f64, Option<f64>, f64) {
    let name = "quoalise_agent_peer_quota_wait_seconds";
    let labels = format!("peer=\"{peer}\",class=\"interactive\"");
    let count = metric(metrics, &format!("{name}_count{{{labels}}}"));
    let sum = metric(metrics, &format!("{name}_sum{{{labels}}}"));
    let p99 = quoalise_agent::metrics::LATENCY_BUCKETS
        .iter()
        .copied()
        .find(|le| {
            // As /metrics writes it: `{}` of the f64 (1.0 is "1").
            metric(metrics, &format!("{name}_bucket{{{labels},le=\"{le}\"}}")) >= 0.99 * count
        });
    (sum / count.max(1.0), p99, count)
}

struct Phase {
    /// B's round trips of the requests served, sorted.
    rtts: Vec<Duration>,
    /// B's refusals, e.g. "service-unavailable per-second-quota".
    refused: Vec<String>,
    /// B's quota wait from /metrics (mean s, p99 bound s, calls); `None` when B
    /// shares A's JID.
    wait: Option<(f64, Option<f64>, f64)>,
    /// A's answers (served, refused) while B asked, and over how long.
    a_served: usize,
    a_refused: usize,
    a_refusals: Vec<String>,
    seconds: f64,
    /// Enedis calls made while B asked.
    calls: f64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    quota_sim::quantile(sorted, p).as_secs_f64() * 1000.0
}

/// One run on a fresh deployment; B sends from A's JID when `shared`.
fn phase(runtime: &tokio::runtime::Runtime, knobs: &Knobs, shared: bool) -> Phase {
    let cps = knobs.calls_per_second;
    let Stage {
        dir: _dir,
        prosody,
        sim,
        agent,
        ..
    } = stage(
        runtime,
        "quota-fairness",
        &["agent", "flood", "single"],
        "info",
        |config| {
            config
                .set("enedis.calls_per_second", cps)
                .set("enedis.calls_per_hour", 10_000)
                .peer("flood@localhost", &[PRM, PRM_PT10M])
                .peer("single@localhost", &[PRM_PT10M])
        },
    );
    let phase = runtime.block_on(async {
        let flood = Arc::new(connect(&prosody, "flood").await);
        let single = if shared {
            Peer::login(&prosody, "flood@localhost/probe")
                .await
                .to(flood.agent.clone())
        } else {
            connect(&prosody, "single").await
        };
        let single = Arc::new(single);
        // The flood: distinct days, `in_flight` at a time, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(knobs.in_flight));
        let mut flood_tasks = Vec::new();
        for n in 0..knobs.flood {
            let (flood, stop, gate) = (flood.clone(), stop.clone(), gate.clone());
            flood_tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let refused = ask(&flood, &one_day(PRM, 2 + n as i64)).await;
                Some((Instant::now(), refused))
            }));
        }
        // Until the backlog is there (or 30 s).
        let building = Instant::now();
        while building.elapsed() < Duration::from_secs(30) {
            let waiting = metric(
                &agent.metrics().await,
                r#"quoalise_agent_quota_waiting_calls{class="interactive"}"#,
            );
            if waiting >= 0.9 * knobs.in_flight as f64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let calls_before = metric(
            &agent.metrics().await,
            "quoalise_agent_quota_used_this_hour",
        );
        // B's samples, spaced, each on its own.
        let started = Instant::now();
        let mut samples = Vec::new();
        for k in 0..knobs.samples {
            tokio::time::sleep_until((started + knobs.every * k as u32).into()).await;
            let single = single.clone();
            samples.push(tokio::spawn(async move {
                let sent = Instant::now();
                let refused = ask(&single, &one_day(PRM_PT10M, 2 + k as i64)).await;
                (sent.elapsed(), refused)
            }));
        }
        let mut rtts = Vec::new();
        let mut refused = Vec::new();
        for s in samples {
            match s.await.unwrap() {
                (rtt, None) => rtts.push(rtt),
                (_, Some(why)) => refused.push(why),
            }
        }
        rtts.sort();
        let ended = Instant::now();
        let seconds = (ended - started).as_secs_f64();
        let metrics = agent.metrics().await;
        let calls = metric(&metrics, "quoalise_agent_quota_used_this_hour") - calls_before;
        let wait = (!shared).then(|| quota_wait(&metrics, "single@localhost"));
        stop.store(true, Ordering::Relaxed);
        let (mut a_served, mut a_refused, mut a_refusals) = (0, 0, Vec::new());
        for t in flood_tasks {
            if !t.is_finished() {
                t.abort();
                continue;
            }
            if let Ok(Some((at, outcome))) = t.await
                && at >= started
                && at <= ended
            {
                match outcome {
                    None => a_served += 1,
                    Some(why) => {
                        a_refused += 1;
                        if !a_refusals.contains(&why) {
                            a_refusals.push(why);
                        }
                    }
                }
            }
        }
        flood.running.shutdown.cancel();
        single.running.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        Phase {
            rtts,
            refused,
            wait,
            a_served,
            a_refused,
            a_refusals,
            seconds,
            calls,
        }
    });
    drop(agent);
    drop(sim);
    drop(prosody);
    phase
}

fn main() {
    measure::serve_sim_if_child();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful:
    // only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("quota_fairness: run with `cargo bench --bench quota_fairness`");
        return;
    }
    let knobs = Knobs {
        flood: env_or("BENCH_FLOOD", 1_000),
        in_flight: env_or("BENCH_IN_FLIGHT", 120),
        samples: env_or("BENCH_PROBES", 30),
        every: Duration::from_millis(env_or("BENCH_PROBE_EVERY_MS", 2_000)),
        calls_per_second: env_or("BENCH_CALLS_PER_SECOND", 5),
    };
    let slot_ms = 1_100.0 / f64::from(knobs.calls_per_second);
    println!(
        "quota_fairness (1): through Prosody, enedis.calls_per_second = {} (a call every {slot_ms:.0} ms), quota_wait_secs 60, request_timeout_secs 120",
        knobs.calls_per_second
    );
    println!(
        "peer A floods up to {} distinct days ({} in flight); peer B asks for one day every {:.1} s, {} times",
        knobs.flood,
        knobs.in_flight,
        knobs.every.as_secs_f64(),
        knobs.samples
    );
    println!(
        "{:<22} {:>8} {:>8} {:>9} {:>9} {:>9} | {:>26} | {:>9} {:>9} | {:>9}",
        "B's queue",
        "B served",
        "refused",
        "rtt p50",
        "rtt p99",
        "rtt max",
        "B quota wait",
        "A ans/s",
        "A refused",
        "calls/s"
    );
    let runtime = runtime();
    let _runtime = runtime.enter();
    for (label, shared) in [
        ("its own (fair turns)", false),
        ("A's (arrival order)", true),
    ] {
        let p = phase(&runtime, &knobs, shared);
        let wait = match p.wait {
            Some((mean, p99, _)) => format!(
                "mean {:.0} ms, p99 ≤ {}",
                mean * 1000.0,
                p99.map_or("-".to_owned(), |le| format!("{:.0} ms", le * 1000.0))
            ),
            None => "(A's)".to_owned(),
        };
        println!(
            "{:<22} {:>8} {:>8} {:>6.0} ms {:>6.0} ms {:>6.0} ms | {:>26} | {:>9.2} {:>9} | {:>9.2}",
            label,
            p.rtts.len(),
            p.refused.len(),
            pct(&p.rtts, 0.50),
            pct(&p.rtts, 0.99),
            pct(&p.rtts, 1.0),
            wait,
            p.a_served as f64 / p.seconds,
            p.a_refused,
            p.calls / p.seconds,
        );
        if !p.refused.is_empty() {
            let mut kinds = p.refused.clone();
            kinds.dedup();
            println!("    B refused: {kinds:?}");
        }
        if !p.a_refusals.is_empty() {
            println!("    A refused: {:?}", p.a_refusals);
        }
    }

    // (2) The scheduler alone, in virtual time.
    let scenario = quota_sim::Scenario::two_thousand_pushes();
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime");
    let computed = Instant::now();
    let run = paused.block_on(quota_sim::run(&scenario));
    let computed = computed.elapsed();
    let waits = run.waits();
    let all = run.all();
    println!();
    println!(
        "quota_fairness (2): the scheduler in virtual time ({:.2} s of computing): {} subscriptions of {} subscribers, {} calls/h, {} % kept for people, {}/s; a person's call every {} s for {} h",
        computed.as_secs_f64(),
        scenario.subscriptions,
        scenario.subscribers,
        scenario.per_hour,
        scenario.reserve_percent,
        scenario.per_second,
        scenario.people_every.as_secs(),
        scenario.people_for.as_secs() / 3_600,
    );
    println!(
        "all pushed in {:.2} h; busiest hour {} calls ({} pushes); {} people's calls, waited p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (one slot: {:.0} ms)",
        run.pushed_in().as_secs_f64() / 3_600.0,
        quota_sim::busiest_hour(&all),
        quota_sim::busiest_hour(&run.background),
        run.people.len(),
        pct(&waits, 0.50),
        pct(&waits, 0.99),
        pct(&waits, 1.0),
        scenario.slot().as_secs_f64() * 1000.0,
    );
}
