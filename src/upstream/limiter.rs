//! The application's quota: one limiter shared by every request to Enedis.
//!
//! Enedis counts calls per APPLICATION (5 per second, and 1,000 or 10,000 per hour
//! depending on the generation), whichever peer they serve, so the whole agent shares
//! one [`QuotaLimiter`]. It keeps the instants of recent calls and hands out slots in
//! arrival order (waiters queue on a fair async mutex). A 429 from Enedis pauses
//! every caller until the instant Enedis gave, or for a growing backoff when it gave
//! none. A caller never waits past its deadline: it gets [`QuotaExceeded`] instead,
//! at once when the next slot is already known to be too late.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The per-second window, slightly longer than a second: our clock starts when the
/// call leaves, Enedis's when it arrives, and network jitter must not make five
/// calls land inside one of its seconds next to a sixth.
const SECOND_WINDOW: Duration = Duration::from_millis(1_100);
const HOUR_WINDOW: Duration = Duration::from_secs(3_600);
/// Backoff after a 429 without a wait hint: first pause, doubled up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Shortest pause after a 429, whatever the hint.
const MIN_PAUSE: Duration = Duration::from_millis(250);

/// No slot before the caller's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// How long until the next slot, from now.
    pub next_slot_in: Duration,
    /// Why: the per-second limit, the hourly limit or a pause asked by Enedis.
    pub cause: &'static str,
}

/// The shared limiter.
#[derive(Debug)]
pub struct QuotaLimiter {
    per_second: usize,
    per_hour: usize,
    calls: Mutex<Calls>,
    /// Set by a 429; read without the queue lock so a pause applies at once.
    pause: StdMutex<Pause>,
}

#[derive(Debug, Default)]
struct Calls {
    last_second: VecDeque<Instant>,
    last_hour: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    next_backoff: Option<Duration>,
}

impl QuotaLimiter {
    /// A limiter allowing `per_second` calls in any second and `per_hour` in any hour
    /// (each at least 1).
    pub fn new(per_second: u32, per_hour: u32) -> Self {
        QuotaLimiter {
            per_second: per_second.max(1) as usize,
            per_hour: per_hour.max(1) as usize,
            calls: Mutex::new(Calls::default()),
            pause: StdMutex::new(Pause::default()),
        }
    }

    /// Wait for a slot and take it, or fail if none comes before `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), QuotaExceeded> {
        // Waiting in the queue counts against the deadline too.
        let mut calls = match tokio::time::timeout_at(deadline, self.calls.lock()).await {
            Ok(guard) => guard,
            Err(_) => {
                return Err(QuotaExceeded {
                    next_slot_in: Duration::ZERO,
                    cause: "other requests are queued before this one",
                });
            }
        };
        loop {
            let now = Instant::now();
            calls.prune(now);
            let mut ready = now;
            let mut cause = "";
            if calls.last_second.len() >= self.per_second {
                let slot =
                    calls.last_second[calls.last_second.len() - self.per_second] + SECOND_WINDOW;
                if slot > ready {
                    (ready, cause) = (slot, "the per-second limit");
                }
            }
            if calls.last_hour.len() >= self.per_hour {
                let slot = calls.last_hour[calls.last_hour.len() - self.per_hour] + HOUR_WINDOW;
                if slot > ready {
                    (ready, cause) = (slot, "the hourly limit");
                }
            }
            if let Some(until) = self.paused_until()
                && until > ready
            {
                (ready, cause) = (until, "a pause asked by Enedis (HTTP 429)");
            }
            if ready <= now {
                calls.last_second.push_back(now);
                calls.last_hour.push_back(now);
                return Ok(());
            }
            if ready > deadline {
                return Err(QuotaExceeded {
                    next_slot_in: ready - now,
                    cause,
                });
            }
            // Sleep holding the queue: the callers behind keep their order.
            tokio::time::sleep_until(ready).await;
        }
    }

    /// Enedis answered 429: pause everybody for `wait` if given, else for a backoff
    /// that doubles at each 429 without a hint. Returns the pause applied.
    pub fn pause(&self, wait: Option<Duration>) -> Duration {
        let mut pause = self.pause.lock().unwrap_or_else(|p| p.into_inner());
        let wait = match wait {
            // A hint of "now" (Retry-After: 0, a past nextAccessTime) still gets a
            // short pause: a 429 is never answered by an immediate retry.
            Some(wait) => wait.max(MIN_PAUSE),
            None => {
                let backoff = pause.next_backoff.unwrap_or(FIRST_BACKOFF);
                pause.next_backoff = Some((backoff * 2).min(MAX_BACKOFF));
                backoff
            }
        };
        let until = Instant::now() + wait;
        if pause.until.is_none_or(|current| current < until) {
            pause.until = Some(until);
        }
        wait
    }

    /// A call went through: the backoff starts over at the next 429.
    pub fn succeeded(&self) {
        let mut pause = self.pause.lock().unwrap_or_else(|p| p.into_inner());
        pause.next_backoff = None;
    }

    fn paused_until(&self) -> Option<Instant> {
        let pause = self.pause.lock().unwrap_or_else(|p| p.into_inner());
        pause.until.filter(|until| *until > Instant::now())
    }

    /// Calls counted in the current hour window (for metrics).
    pub async fn calls_last_hour(&self) -> usize {
        let mut calls = self.calls.lock().await;
        calls.prune(Instant::now());
        calls.last_hour.len()
    }
}

impl Calls {
    fn prune(&mut self, now: Instant) {
        while self
            .last_second
            .front()
            .is_some_and(|t| now.duration_since(*t) >= SECOND_WINDOW)
        {
            self.last_second.pop_front();
        }
        while self
            .last_hour
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR_WINDOW)
        {
            self.last_hour.pop_front();
        }
    }
}
