//! What the PostgreSQL store costs against SQLite's, per cached `get_history`:
//! the same stage twice (a real Prosody, the simulator, the REAL release agent),
//! once on a SQLite file, once on a PostgreSQL server on 127.0.0.1 (Debian's
//! package, started as its own user as the tests do). 40 closed days are warmed,
//! then asked one at a time: every request reads the cache and writes an audit
//! row, which on PostgreSQL are round trips to the server.
//!
//! Run by `bench/run`, or `cargo bench --bench store_cost`. Knobs:
//! `BENCH_SAMPLES` (sequential requests per figure, default 500). Needs root
//! and the Debian `prosody` and `postgresql` packages.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;

use common::agent_harness::PRM;
use common::config::AgentConfig;
use common::postgres::PgServer;
use common::xmpp_harness::Peer;
use measure::*;

use std::time::{Duration, Instant};

use quoalise_agent::time::{add_days, paris_today};
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;

fn agent_jid() -> Jid {
    Jid::new("agent@localhost/agent").unwrap()
}

/// `get_history` of the 30-minute load curve of the Paris day `today - days`.
fn day(days: i64) -> IqRequestPayload {
    let today = paris_today(jiff::Timestamp::now());
    let at = |d: i64| add_days(today, -d).unwrap();
    IqRequestPayload::Set(get_history(PRM, at(days), at(days - 1), false).to_element())
}

async fn ask(peer: &Peer, payload: IqRequestPayload) -> Duration {
    let started = Instant::now();
    peer.running
        .handle
        .send_iq(Some(agent_jid()), payload, Duration::from_secs(60))
        .await
        .expect("an answer");
    started.elapsed()
}

struct Figures {
    p50: f64,
    p99: f64,
    mean: f64,
}

/// `samples` cached one-day requests, one at a time, after warming 40 days.
fn measure(label: &str, samples: usize, store: impl FnOnce(AgentConfig) -> AgentConfig) -> Figures {
    let runtime = runtime();
    let _runtime = runtime.enter();
    let stage = stage(
        &runtime,
        &format!("store-cost-{label}"),
        &["agent", "granted"],
        "warn",
        |c| store(c).peer("granted@localhost", &[PRM]),
    );
    let figures = runtime.block_on(async {
        let peer = connect(&stage.prosody, "granted").await;
        let days = 40i64;
        for d in 0..days {
            ask(&peer, day(3 + d)).await;
        }
        for i in 0..20 {
            ask(&peer, day(3 + i % days)).await;
        }
        let mut took = Vec::with_capacity(samples);
        for i in 0..samples as i64 {
            took.push(ask(&peer, day(3 + i % days)).await);
        }
        peer.running.shutdown.cancel();
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |p: f64| ms(took[((took.len() as f64 * p) as usize).min(took.len() - 1)]);
        Figures {
            p50: at(0.5),
            p99: at(0.99),
            mean: took.iter().map(|d| ms(*d)).sum::<f64>() / took.len() as f64,
        }
    });
    drop(stage);
    figures
}

fn main() {
    measure::serve_sim_if_child();
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("store_cost: run with `cargo bench --bench store_cost`");
        return;
    }
    let samples: usize = env_or("BENCH_SAMPLES", 500);
    println!("== cached get_history, 1 day, 48 records, one at a time ({samples} samples each)");
    let sqlite = measure("sqlite", samples, |c| c);
    let server = PgServer::start();
    let url = server.fresh_database();
    let postgres = measure("postgres", samples, |c| c.set("store.url", url.as_str()));
    drop(server);
    let row = |label: &str, f: &Figures| {
        println!(
            "{label:<34} p50 {:>6.2} ms   p99 {:>6.2} ms   mean {:>6.2} ms",
            f.p50, f.p99, f.mean
        )
    };
    row("SQLite (store.path)", &sqlite);
    row("PostgreSQL on 127.0.0.1 (store.url)", &postgres);
    println!(
        "PostgreSQL's cost per request:     p50 {:+.2} ms   p99 {:+.2} ms   mean {:+.2} ms",
        postgres.p50 - sqlite.p50,
        postgres.p99 - sqlite.p99,
        postgres.mean - sqlite.mean
    );
}
