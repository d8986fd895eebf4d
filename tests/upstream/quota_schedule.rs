//! The quota scheduler ([`QuotaLimiter`]) over hours of VIRTUAL time (tokio's
//! paused clock: every instant below is exact, none depends on the machine):
//!
//! - 2,000 subscription pushes (background) queued at once under a 300-an-hour
//!   quota, 20 % kept for people, while people ask every few minutes for ten
//!   hours: every push goes out, no hour holds more than 300 calls nor more than
//!   240 pushes, and no person waits more than one call slot;
//! - one peer queues a thousand calls, another asks once: the second waits at
//!   most one slot, where arrival order (the same peer's queue) would have put it
//!   minutes behind, and is refused at once for it.

use std::sync::Arc;
use std::time::Duration;

use quoalise_agent::upstream::{Ask, Class, Limit, QuotaLimiter};
use tokio::time::Instant;

#[path = "../common/quota_sim.rs"]
mod quota_sim;
use quota_sim::{HOUR, Scenario, busiest_hour, quantile};

/// One call slot at 5 calls per second: 1.1 s / 5 (the limiter's spacing).
const SLOT: Duration = Duration::from_millis(220);

#[tokio::test(start_paused = true)]
async fn two_thousand_pushes_under_300_an_hour_never_hold_people_back() {
    let scenario = Scenario::two_thousand_pushes();
    assert_eq!(scenario.slot(), SLOT);
    let run = quota_sim::run(&scenario).await;
    let all = run.all();
    let waits = run.waits();
    let done = run.pushed_in();
    println!(
        "{} pushes in {:.2} h; {} people's calls, wait p50 {:?} p99 {:?} max {:?}; busiest hour {} calls, {} pushes",
        run.background.len(),
        done.as_secs_f64() / 3_600.0,
        run.people.len(),
        quantile(&waits, 0.50),
        quantile(&waits, 0.99),
        waits.last().unwrap(),
        busiest_hour(&all),
        busiest_hour(&run.background),
    );

    // Every push went out (none refused: `run` panics then).
    assert_eq!(run.background.len(), 2_000);
    assert!(
        busiest_hour(&all) <= 300,
        "{} calls in an hour",
        busiest_hour(&all)
    );
    assert!(
        busiest_hour(&run.background) <= 240,
        "{} pushes in an hour: more than 80 % of 300",
        busiest_hour(&run.background)
    );
    // The pushes used what they could (240 an hour, less the people's calls):
    // 2,000 take eight hours and some.
    assert!(done < 9 * HOUR, "pushes done after {done:?}");
    // People asked all along, and none waited more than one slot.
    assert!(
        run.people.len() as u128
            >= scenario.people_for.as_millis() / scenario.people_every.as_millis(),
        "{} people's calls",
        run.people.len()
    );
    let longest = *waits.last().unwrap();
    assert!(
        longest <= SLOT,
        "a person waited {longest:?}, more than one slot"
    );
    // Calls never closer together than the slot.
    assert!(
        all.windows(2).all(|w| w[1] - w[0] >= SLOT),
        "two calls closer than {SLOT:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_asking_once_waits_one_slot_behind_a_thousand_queued_by_another() {
    let limiter = Arc::new(QuotaLimiter::with_reserve(5, 10_000, 20));
    let start = Instant::now();
    let far = start + HOUR;
    let flood: Vec<_> = (0..1_000)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let ask = Ask::peer("flood@example.org", Class::Interactive);
                limiter.acquire(&ask, far).await.map(|()| Instant::now())
            })
        })
        .collect();
    // Let the flood's first calls go, then ask once, a few times.
    let mut waits = Vec::new();
    for round in 0..5u32 {
        tokio::time::sleep_until(start + Duration::from_secs(10 + 20 * u64::from(round))).await;
        let waiting = limiter.state().waiting_interactive;
        assert!(waiting > 500, "the flood still waits: {waiting}");
        // Arrival order: behind the whole backlog, so refused at once for a
        // one-minute deadline, and told how far the slot is.
        let asked = Instant::now();
        let behind = limiter
            .acquire(
                &Ask::peer("flood@example.org", Class::Interactive),
                asked + Duration::from_secs(60),
            )
            .await
            .expect_err("the flood's own next call is minutes away");
        assert_eq!(Instant::now(), asked, "refused at once");
        assert_eq!(behind.limit, Limit::PerSecond);
        assert!(
            behind.next_slot_in >= SLOT * (waiting as u32),
            "{behind:?} behind {waiting}"
        );
        // Another peer: served next.
        let asked = Instant::now();
        limiter
            .acquire(
                &Ask::peer("single@example.org", Class::Interactive),
                asked + Duration::from_secs(60),
            )
            .await
            .expect("one slot away");
        waits.push(Instant::now() - asked);
    }
    println!("the single peer waited {waits:?} behind a thousand queued calls");
    assert!(waits.iter().all(|w| *w <= SLOT), "{waits:?}");
    let mut served = 0;
    for call in flood {
        call.await.unwrap().expect("the flood is served in full");
        served += 1;
    }
    assert_eq!(served, 1_000);
    assert_eq!(limiter.calls_last_hour(), 1_000 + 5);
}
