//! Subscription pushes and people sharing the Enedis quota, on the REAL scheduler
//! ([`QuotaLimiter`]) in VIRTUAL time: run it on a runtime whose clock is paused
//! (`#[tokio::test(start_paused = true)]`, or a runtime built with
//! `start_paused(true)`), and hours pass in a fraction of a second, every
//! instant exact. Shared by tests/upstream/quota_schedule.rs, which asserts on
//! the figures, and benches/quota_fairness.rs, which prints them (included there
//! with `#[path]`; it is not part of `common/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use quoalise_agent::upstream::{Ask, Class, QuotaLimiter};
use tokio::time::Instant;

pub const HOUR: Duration = Duration::from_secs(3_600);

/// What is asked of the quota.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `enedis.calls_per_second`, `calls_per_hour`, `interactive_reserve_percent`.
    pub per_second: u32,
    pub per_hour: u32,
    pub reserve_percent: u32,
    /// Background calls queued at once (one per subscription), and the peers
    /// they are for (subscription `i` is for subscriber `i % subscribers`).
    pub subscriptions: usize,
    pub subscribers: usize,
    /// A person's call every `people_every` from 1.234 s, while `people_for`
    /// lasts; each may wait a minute.
    pub people_every: Duration,
    pub people_for: Duration,
}

impl Scenario {
    /// 2,000 subscriptions of 40 subscribers under 300 calls an hour (20 % kept
    /// for people), a person's call every 293 s for ten hours.
    pub fn two_thousand_pushes() -> Scenario {
        Scenario {
            per_second: 5,
            per_hour: 300,
            reserve_percent: 20,
            subscriptions: 2_000,
            subscribers: 40,
            people_every: Duration::from_secs(293),
            people_for: 10 * HOUR,
        }
    }

    /// One call slot: the limiter's spacing, 1.1 s / `per_second`.
    pub fn slot(&self) -> Duration {
        Duration::from_millis(1_100) / self.per_second
    }
}

/// What became of it.
#[derive(Debug, Clone)]
pub struct Run {
    pub start: Instant,
    /// When each background call was granted, sorted.
    pub background: Vec<Instant>,
    /// Each person's call: (asked, granted).
    pub people: Vec<(Instant, Instant)>,
}

impl Run {
    /// Every grant, sorted.
    pub fn all(&self) -> Vec<Instant> {
        let mut all = self.background.clone();
        all.extend(self.people.iter().map(|(_, granted)| *granted));
        all.sort();
        all
    }

    /// From the start to the last background grant.
    pub fn pushed_in(&self) -> Duration {
        self.background
            .last()
            .map_or(Duration::ZERO, |last| *last - self.start)
    }

    /// How long each person waited, sorted.
    pub fn waits(&self) -> Vec<Duration> {
        let mut waits: Vec<Duration> = self.people.iter().map(|(a, g)| *g - *a).collect();
        waits.sort();
        waits
    }
}

/// Runs `scenario` until every call is granted. Panics if the scheduler refuses
/// one (background calls may wait twice `people_for`).
pub async fn run(scenario: &Scenario) -> Run {
    let limiter = Arc::new(QuotaLimiter::with_reserve(
        scenario.per_second,
        scenario.per_hour,
        scenario.reserve_percent,
    ));
    let start = Instant::now();
    let pushes: Vec<_> = (0..scenario.subscriptions)
        .map(|i| {
            let limiter = limiter.clone();
            let subscriber = format!("subscriber{}@example.org", i % scenario.subscribers);
            let deadline = start + 2 * scenario.people_for;
            tokio::spawn(async move {
                let ask = Ask::peer(&subscriber, Class::Background);
                limiter
                    .acquire(&ask, deadline)
                    .await
                    .unwrap_or_else(|e| panic!("push {i} refused: {e:?}"));
                Instant::now()
            })
        })
        .collect();
    let people = {
        let limiter = limiter.clone();
        let (every, until) = (scenario.people_every, start + scenario.people_for);
        tokio::spawn(async move {
            let mut asked = start + Duration::from_millis(1_234);
            let mut calls = Vec::new();
            while asked < until {
                tokio::time::sleep_until(asked).await;
                let person = format!("person{}@example.org", calls.len() % 3);
                let ask = Ask::peer(&person, Class::Interactive);
                limiter
                    .acquire(&ask, asked + Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|e| panic!("person {} refused: {e:?}", calls.len()));
                calls.push((asked, Instant::now()));
                asked += every;
            }
            calls
        })
    };
    let mut background = Vec::with_capacity(pushes.len());
    for push in pushes {
        background.push(push.await.expect("a push task"));
    }
    background.sort();
    Run {
        start,
        background,
        people: people.await.expect("the people's task"),
    }
}

/// The most calls of `grants` (sorted) in any hour `[t, t + 1 h[`.
pub fn busiest_hour(grants: &[Instant]) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, t) in grants.iter().enumerate() {
        while *t - grants[first] >= HOUR {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// The `p` quantile (0–1) of sorted durations (zero when there are none).
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}
