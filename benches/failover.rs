//! How long a failover takes, as a peer sees it: two REAL agents (release
//! build) on one PostgreSQL, a real Prosody, the simulator; the leader is
//! killed -9 `BENCH_KILLS` times (default 20), and each time the time is taken
//! from the kill to the first answer of the new leader to a peer that keeps
//! asking (a one-day `get_history`, retried every 50 ms while nobody answers).
//! The killed agent is started again as the standby before the next kill.
//!
//! What it includes: PostgreSQL ending the dead leader's session (at once: the
//! kernel closes its socket), the standby's lock granted, the grace period a
//! new leader waits when the old one did not announce a handover (5 s: longer
//! than a leader takes to notice a lost lock, so two never answer), the quota's
//! hour read from the ledger, the XMPP login, the answer. Goal: p99 under 10 s.
//!
//! Run by `bench/run`, or `cargo bench --bench failover`. Needs root and the
//! Debian `prosody` and `postgresql` packages.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;

use std::time::{Duration, Instant};

use common::agent_harness::{AgentSettings, PRM, peer};
use common::standby::{Pair, days_ago, one_day, wait_role};
use common::xmpp_harness::Peer;
use measure::env_or;

fn main() {
    measure::serve_sim_if_child();
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("failover: run with `cargo bench --bench failover`");
        return;
    }
    let kills: usize = env_or("BENCH_KILLS", 20);
    let runtime = measure::runtime();
    let took = runtime.block_on(async {
        let mut settings = AgentSettings::with_peers(vec![peer("app", &[PRM])]);
        settings.log_level = "warn,quoalise_agent::daemon=info".to_owned();
        let mut pair = Pair::start(settings).await;
        let app = Peer::login(&pair.prosody, "app@localhost/bench").await;
        app.command(one_day(PRM, days_ago(2)))
            .await
            .expect("the first leader answers");
        let mut took = Vec::with_capacity(kills);
        for kill in 0..kills {
            pair.first.process.signal("-KILL");
            let killed = Instant::now();
            loop {
                let ask = app.command(one_day(PRM, days_ago(2)));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), ask).await {
                    break;
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(120),
                    "no new leader after kill {kill}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            took.push(killed.elapsed());
            pair.first.process.wait_exit(Duration::from_secs(30)).await;
            pair.first.process.respawn().await;
            wait_role(&mut pair.first.process, "standby", Duration::from_secs(60)).await;
            std::mem::swap(&mut pair.first, &mut pair.second);
        }
        pair.first.process.stop().await;
        pair.second.process.stop().await;
        took
    });
    let mut ms: Vec<f64> = took.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    println!("== failover: kill -9 of the leader to the new leader's first answer ({kills} kills)");
    println!(
        "p50 {:>7.0} ms   p99 {:>7.0} ms   min {:>7.0} ms   max {:>7.0} ms   (goal: p99 under 10 s)",
        at(0.5),
        at(0.99),
        ms[0],
        ms[ms.len() - 1]
    );
}
