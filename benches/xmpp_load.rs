//! Load generator: N concurrent peers through one Prosody against the REAL
//! agent and the REAL simulator (release builds), as `cargo bench --bench
//! xmpp_load` builds them.
//!
//! For each level of concurrency it prints requests/s, p50/p99 latency, and the
//! CPU seconds the agent, Prosody, the simulator and this generator spent in
//! the measured window (from /proc/<pid>/stat), with the agent's CPU as a share
//! of Prosody's: the goal is that the agent is not the bottleneck (under 25 %
//! of Prosody's CPU at saturation).
//!
//! Requests: `get_history` of ONE day of a 30-minute load curve (48 records,
//! days 2 to 60 days old, served from the agent's cache after the first pass:
//! docs/operations.md), or with
//! `BENCH_COMMAND=list_usage_points` the agent-only path (no upstream).
//!
//! Knobs (environment): `BENCH_PEERS` (default 20 peer accounts),
//! `BENCH_LEVELS` (in-flight requests per level, default "20,100,200"),
//! `BENCH_SECS` (measured seconds per level, default 10), `BENCH_AGENT_BIN` (another
//! build of the agent, to compare), `BENCH_LOG` (the
//! agent's log.level, default "info": one request line per request, as in
//! production).
//!
//! Needs root (Prosody runs as its own user) and the Debian `prosody` package.
//! Prosody runs with a minimal config: no debug log, no mod_limits, Nagle off.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;

use common::agent_harness::PRM;
use common::xmpp_harness::Peer;
use measure::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quoalise_agent::xmpp::{Command as AdHoc, IqError};
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;

fn request(command: &str, day: usize) -> AdHoc {
    if command == "list_usage_points" {
        return AdHoc::execute("list_usage_points", None);
    }
    // Days from 2 to 60 days ago, so that successive requests differ.
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let first = quoalise_agent::time::add_days(today, -2 - (day % 59) as i64).unwrap();
    get_history(PRM, first, first.tomorrow().unwrap(), false)
}

struct LevelResult {
    in_flight: usize,
    completed: usize,
    errors: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    cpu: [f64; 4],
}

async fn level(
    peers: &[Peer],
    in_flight: usize,
    secs: f64,
    command: &str,
    pids: [u32; 4],
) -> LevelResult {
    let agent = Jid::new("agent@localhost/agent").unwrap();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let handle = peers[worker % peers.len()].running.handle.clone();
        let agent = agent.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let command = command.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let element = request(&command, n).to_element();
                n += in_flight;
                let started = Instant::now();
                let answer = handle
                    .send_iq(
                        Some(agent.clone()),
                        IqRequestPayload::Set(element),
                        Duration::from_secs(60),
                    )
                    .await;
                let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                match answer {
                    Ok(_) if counted => latencies.push(started.elapsed()),
                    Ok(_) => {}
                    Err(IqError::Error(e)) => {
                        if counted {
                            errors += 1;
                        }
                        if errors == 1 {
                            eprintln!("error answer: {:?}", e.texts);
                        }
                    }
                    Err(e) => {
                        if counted {
                            errors += 1;
                        }
                        eprintln!("no answer: {e}");
                    }
                }
            }
            (latencies, errors)
        }));
    }
    // Warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = pids.map(cpu_seconds);
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = pids.map(cpu_seconds);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut cpu = [0.0; 4];
    for i in 0..4 {
        cpu[i] = cpu_after[i] - cpu_before[i];
    }
    LevelResult {
        in_flight,
        completed: latencies.len(),
        errors,
        seconds,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu,
    }
}

fn main() {
    measure::serve_sim_if_child();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful:
    // only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("xmpp_load: run with `cargo bench --bench xmpp_load`");
        return;
    }
    let peers_n: usize = env_or("BENCH_PEERS", 20);
    let secs: f64 = env_or("BENCH_SECS", 10.0);
    let command: String = env_or("BENCH_COMMAND", "get_history".to_owned());
    let log: String = env_or("BENCH_LOG", "info".to_owned());
    let levels: Vec<usize> = env_or("BENCH_LEVELS", "20,100,200".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let runtime = runtime();
    let _runtime = runtime.enter();
    let mut users = vec!["agent".to_owned()];
    users.extend((0..peers_n).map(|i| format!("peer{i}")));
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    // `_dir` holds the agent's directory (config, store) until the end.
    let Stage {
        dir: _dir,
        prosody,
        prosody_pid,
        sim,
        agent,
        ..
    } = stage(&runtime, "xmpp-load", &users, &log, |config| {
        (0..peers_n).fold(config, |config, i| {
            config.peer(&format!("peer{i}@localhost"), &[PRM])
        })
    });

    let pids = [agent.pid(), prosody_pid, sim.pid, std::process::id()];
    println!(
        "xmpp_load: {command} ({}), {peers_n} peers, {secs} s per level, agent log.level={log}",
        if command == "get_history" {
            "1 day of 30-min load curve, 48 records, cached after the first pass"
        } else {
            "no upstream call"
        }
    );
    println!(
        "{:>9} {:>9} {:>7} {:>9} {:>9} | {:>8} {:>8} {:>8} {:>8} | {:>12}",
        "in-flight",
        "req/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "agent s",
        "prosody",
        "sim s",
        "loadgen",
        "agent/prosody"
    );
    runtime.block_on(async {
        let mut peers = Vec::new();
        for i in 0..peers_n {
            peers.push(connect(&prosody, &format!("peer{i}")).await);
        }
        for in_flight in &levels {
            let r = level(&peers, *in_flight, secs, &command, pids).await;
            println!(
                "{:>9} {:>9.0} {:>7} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>11.0}%",
                r.in_flight,
                r.completed as f64 / r.seconds,
                r.errors,
                r.p50.as_secs_f64() * 1000.0,
                r.p99.as_secs_f64() * 1000.0,
                r.cpu[0],
                r.cpu[1],
                r.cpu[2],
                r.cpu[3],
                100.0 * r.cpu[0] / r.cpu[1].max(1e-9)
            );
        }
        for p in &peers {
            p.running.shutdown.cancel();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    drop(agent);
    drop(sim);
    drop(prosody);
}
