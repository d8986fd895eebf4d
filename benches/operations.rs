//! The operator's figures that the load generator (`xmpp_load`) does not give, from
//! the REAL release binaries (agent, simulator) and a real Prosody:
//!
//! - upstream calls per request, cold and warm (the cache), counted by the
//!   simulator: 30 closed days of load curve, and yesterday (never cached);
//! - latency of a cached `get_history` against the bare Prosody round trip (a
//!   XEP-0199 ping to the server) and a ping to the agent, one request at a time;
//! - the agent's memory (RSS) idle, and after a loaded period (with its CPU against
//!   Prosody's during it);
//! - the same latencies with 100,000 consents in the store, for a peer reading on
//!   its consent, and `list_usage_points`;
//! - the audit write of every request, 5,000 in a row on a store of its own, with
//!   SQLite's checkpoints inside commits (its default) and on the agent's
//!   background thread.
//!
//! Run by `bench/run`, or `cargo bench --bench operations`. Knobs: `BENCH_SAMPLES`
//! (sequential requests per latency figure, default 500), `BENCH_SECS` (loaded
//! period, default 10), `BENCH_CONSENTS` (default 100000). Needs root (Prosody runs
//! as its own user) and the Debian `prosody` package.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;

use common::agent_harness::PRM;
use common::xmpp_harness::Peer;
use measure::*;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use minidom::Element;
use quoalise_agent::time::{add_days, paris_today};
use quoalise_agent::xmpp::Command as AdHoc;
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;

const LOAD_CURVE: &str = "GET /mesure_synchrone_auto/v2/courbe_de_charge_consommation";

fn agent_jid() -> Jid {
    Jid::new("agent@localhost/agent").unwrap()
}

/// `get_history` of the 30-minute load curve over `[today - from, today - to[`.
fn history(from: i64, to: i64) -> Element {
    let today = paris_today(jiff::Timestamp::now());
    let day = |days: i64| add_days(today, -days).unwrap();
    get_history(PRM, day(from), day(to), false).to_element()
}

fn ping() -> Element {
    Element::builder("ping", "urn:xmpp:ping").build()
}

async fn ask(peer: &Peer, to: Option<Jid>, payload: IqRequestPayload) -> Duration {
    let started = Instant::now();
    match peer
        .running
        .handle
        .send_iq(to, payload, Duration::from_secs(60))
        .await
    {
        Ok(_) => started.elapsed(),
        Err(e) => panic!("request failed: {e}"),
    }
}

struct Latency {
    p50: f64,
    p99: f64,
}

fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    Latency {
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// `n` sequential round trips of `payload` to `to`.
async fn sequential(
    peer: &Peer,
    n: usize,
    to: Option<Jid>,
    payload: impl Fn(usize) -> IqRequestPayload,
) -> Latency {
    for i in 0..20 {
        ask(peer, to.clone(), payload(i)).await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        samples.push(ask(peer, to.clone(), payload(i)).await);
    }
    percentiles(samples)
}

async fn sim_calls(http: &reqwest::Client, sim: &str, endpoint: &str) -> u64 {
    let v: serde_json::Value = http
        .get(format!("{sim}/sim/admin/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if endpoint.is_empty() {
        return v["total"].as_u64().unwrap_or(0);
    }
    v["endpoints"][endpoint]["count"].as_u64().unwrap_or(0)
}

async fn clear_calls(http: &reqwest::Client, sim: &str) {
    http.delete(format!("{sim}/sim/admin/calls"))
        .send()
        .await
        .unwrap();
}

/// 100,000 consents of other peers, one PRM each, and one of `consented` for PRM,
/// written in one transaction straight into the store's tables (what years of
/// `consents add` and consent pages would leave).
fn fill_consents(db: &Path, n: usize) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let tx = conn.transaction().unwrap();
    {
        let mut consent = tx
            .prepare(
                "INSERT INTO consents (generation, owner, autorisation_id, valid_from, valid_until, \
                 state, created_at, updated_at) VALUES ('2026', ?1, ?2, ?3, ?4, 'active', ?3, ?3)",
            )
            .unwrap();
        let mut prm = tx
            .prepare("INSERT INTO consent_prms (consent_id, prm) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..n {
            consent
                .execute(rusqlite::params![
                    format!("user{i}@example.org"),
                    i as i64,
                    now - 86_400,
                    now + 365 * 86_400
                ])
                .unwrap();
            let id = tx.last_insert_rowid();
            prm.execute(rusqlite::params![
                id,
                format!("{:014}", 50_000_000_000_000u64 + i as u64)
            ])
            .unwrap();
        }
        consent
            .execute(rusqlite::params![
                "consented@localhost",
                -1,
                now - 86_400,
                now + 365 * 86_400
            ])
            .unwrap();
        let id = tx.last_insert_rowid();
        prm.execute(rusqlite::params![id, PRM]).unwrap();
    }
    tx.commit().unwrap();
}

fn main() {
    measure::serve_sim_if_child();
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("operations: run with `cargo bench --bench operations`");
        return;
    }
    let samples: usize = env_or("BENCH_SAMPLES", 500);
    let secs: f64 = env_or("BENCH_SECS", 10.0);
    let consents: usize = env_or("BENCH_CONSENTS", 100_000);

    let runtime = runtime();
    let _runtime = runtime.enter();
    let Stage {
        dir,
        prosody,
        prosody_pid,
        sim,
        sim_url,
        web,
        agent,
    } = stage(
        &runtime,
        "operations",
        &["agent", "granted", "consented"],
        "info",
        |config| {
            config
                .peer("granted@localhost", &[PRM])
                .peer("consented@localhost", &[])
        },
    );
    let agent_pid = agent.pid();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let granted = connect(&prosody, "granted").await;
        let agent_to = Some(agent_jid());
        let server: Option<Jid> = Some(Jid::new("localhost").unwrap());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_mib(agent_pid);

        println!("== upstream calls per request (2026 simulator; counted by the simulator)");
        for (label, from, to) in [("30 closed days of load curve", 32, 2), ("yesterday only (never cached)", 1, 0)] {
            clear_calls(&http, &sim_url).await;
            ask(&granted, agent_to.clone(), IqRequestPayload::Set(history(from, to))).await;
            let cold = sim_calls(&http, &sim_url, LOAD_CURVE).await;
            clear_calls(&http, &sim_url).await;
            ask(&granted, agent_to.clone(), IqRequestPayload::Set(history(from, to))).await;
            let warm = sim_calls(&http, &sim_url, LOAD_CURVE).await;
            println!("{label:<34} cold {cold:>2} data calls, warm {warm:>2}");
        }

        println!("\n== latency, one request at a time ({samples} samples each)");
        let bare = sequential(&granted, samples, server.clone(), |_| IqRequestPayload::Get(ping())).await;
        let to_agent = sequential(&granted, samples, agent_to.clone(), |_| IqRequestPayload::Get(ping())).await;
        // Warm one day per sample, then ask them again.
        let days = 40usize;
        for d in 0..days {
            ask(&granted, agent_to.clone(), IqRequestPayload::Set(history(3 + d as i64, 2 + d as i64))).await;
        }
        let cached = sequential(&granted, samples, agent_to.clone(), |i| {
            let d = 3 + (i % days) as i64;
            IqRequestPayload::Set(history(d, d - 1))
        })
        .await;
        let row = |label: &str, l: &Latency| println!("{label:<46} p50 {:>6.2} ms   p99 {:>6.2} ms", l.p50, l.p99);
        row("ping to the server (bare Prosody round trip)", &bare);
        row("ping to the agent (through Prosody)", &to_agent);
        row("cached get_history, 1 day, 48 records", &cached);
        println!(
            "cached get_history over the bare round trip:   p50 +{:.2} ms   p99 +{:.2} ms (goal: p99 under +10 ms)",
            cached.p50 - bare.p50,
            cached.p99 - bare.p99
        );

        println!("\n== memory and CPU");
        // A loaded period: 50 requests in flight, cached days.
        let stop = Arc::new(AtomicBool::new(false));
        let handle = granted.running.handle.clone();
        let cpu_before = (cpu_seconds(agent_pid), cpu_seconds(prosody_pid));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..50usize {
            let handle = handle.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let d = 3 + ((w + n * 50) % days) as i64;
                    let _ = handle
                        .send_iq(Some(agent_jid()), IqRequestPayload::Set(history(d, d - 1)), Duration::from_secs(60))
                        .await;
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut done = 0;
        for t in tasks {
            done += t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (cpu_seconds(agent_pid) - cpu_before.0, cpu_seconds(prosody_pid) - cpu_before.1);
        let loaded = rss_mib(agent_pid);
        println!("agent RSS idle                 {:>7.1} MiB", idle.0);
        println!("agent RSS after load           {:>7.1} MiB (peak {:.1} MiB)", loaded.0, loaded.1);
        println!(
            "loaded period: {:.0} cached get_history/s at 50 in flight; CPU agent {:.2} s, Prosody {:.2} s over {:.1} s: agent = {:.0} % of Prosody",
            done as f64 / elapsed,
            cpu.0,
            cpu.1,
            elapsed,
            100.0 * cpu.0 / cpu.1.max(1e-9)
        );
        granted.running.shutdown.cancel();
    });

    println!("\n== with {consents} consents in the store");
    drop(agent);
    let filled = Instant::now();
    fill_consents(&dir.path().join("agent.db"), consents);
    let fill = filled.elapsed();
    let started = Instant::now();
    let agent = runtime.block_on(start_agent(dir.path(), web));
    let startup = started.elapsed();
    println!(
        "written in {:.1} s; agent healthy {:.2} s after start; RSS {:.1} MiB",
        fill.as_secs_f64(),
        startup.as_secs_f64(),
        rss_mib(agent.pid()).0
    );
    runtime.block_on(async {
        let consented = connect(&prosody, "consented").await;
        let granted = connect(&prosody, "granted").await;
        let to = Some(agent_jid());
        let days = 40usize;
        let payload = |i: usize| {
            let d = 3 + (i % days) as i64;
            IqRequestPayload::Set(history(d, d - 1))
        };
        let on_consent = sequential(&consented, samples, to.clone(), payload).await;
        let on_grant = sequential(&granted, samples, to.clone(), payload).await;
        let list = sequential(&consented, samples.min(50), to.clone(), |_| {
            IqRequestPayload::Set(AdHoc::execute("list_usage_points", None).to_element())
        })
        .await;
        let row = |label: &str, l: &Latency| {
            println!("{label:<46} p50 {:>6.2} ms   p99 {:>6.2} ms", l.p50, l.p99)
        };
        row("cached get_history, reading on a consent", &on_consent);
        row("cached get_history, reading on a grant", &on_grant);
        row("list_usage_points", &list);
        consented.running.shutdown.cancel();
        granted.running.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    drop(agent);
    drop(sim);
    drop(prosody);

    println!("\n== audit writes, 5,000 in a row (the store alone)");
    for (label, background) in [
        ("checkpoints inside commits (SQLite's default)", false),
        ("checkpoints on the agent's background thread", true),
    ] {
        let l = audit_writes(5_000, background);
        println!(
            "{label:<46} p50 {:>6.3} ms   p99 {:>6.3} ms   max {:>6.2} ms",
            l.p50, l.p99, l.max
        );
    }
}

struct WriteLatency {
    p50: f64,
    p99: f64,
    max: f64,
}

/// `n` audit rows written one after the other, as requests do: at once on
/// `Store::call_now`'s connection, from the agent's kind of event loop.
fn audit_writes(n: usize, background_checkpoints: bool) -> WriteLatency {
    use quoalise_agent::quoalise::Series;
    use quoalise_agent::store::{
        Access, AccessBasis, AccessOutcome, Store, StoreError, now_seconds,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    if background_checkpoints {
        store
            .checkpoint_in_background(Duration::from_secs(1))
            .unwrap();
    }
    let prm = PRM.parse().unwrap();
    let prms = [prm];
    store.sync_grants([("app@localhost", &prms[..])]).unwrap();
    let mut samples: Vec<Duration> = (0..n)
        .map(|i| {
            let access = Access {
                at: now_seconds(),
                peer: "app@localhost".into(),
                command: "get_history".into(),
                prm: Some(prm),
                series: Some(Series::ConsumptionPower.into()),
                range: Some((0, 86_400)),
                basis: Some(AccessBasis::Grant),
                outcome: AccessOutcome::Allowed { error: None },
                upstream_calls: 0,
                duration_ms: Some(i as u64),
            };
            let started = Instant::now();
            runtime
                .block_on(store.call_now(move |s| {
                    s.record_access(&access)
                        .map_err(|e| StoreError::Write(e.to_string()))
                }))
                .unwrap();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    WriteLatency {
        p50: ms(samples[n / 2]),
        p99: ms(samples[n * 99 / 100]),
        max: ms(samples[n - 1]),
    }
}
