//! The scheduler of daily pushes: each day's data sent to its subscribers.
//!
//! Enedis publishes yesterday's readings in the morning (`subscriptions.publish_time`,
//! 08:00 Paris by default). From then on, the [`Scheduler`] runs delivery passes:
//! each subscription whose subscriber has not yet been sent the latest published day
//! gets the days it misses (at most [`MAX_CATCH_UP_DAYS`], e.g. after the agent was
//! down), read through THE data path ([`crate::agent::data::fetch`]: authorised,
//! cached, coalesced and audited like `get_history`), as a
//! `<message><quoalise xmlns="urn:quoalise:0"><data>…</data></quoalise></message>`
//! sent to the subscriber's BARE JID, so that the server delivers it to the
//! subscriber's online resources, or keeps it in offline storage.
//!
//! When the day is not there yet (Enedis is late), or Enedis or the XMPP session is
//! unavailable, the pass is retried with backoff (15 min, doubling, at most 2 h)
//! until the end of the day; what was not delivered is caught up by the next
//! passes. A subscription whose basis is gone (no consent or grant any more) ends.
//! Progress is stored per subscription (`delivered_through`), after each sent
//! message, so a restart neither loses nor repeats a day.
//!
//! Time is injected ([`Clock`]) and a pass can be run on demand
//! ([`Scheduler::run_once`]), so tests need not wait for 08:00.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::civil::{Date, Time};
use jiff::{Timestamp, ToSpan};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;

use crate::agent::answer::split;
use crate::agent::context::AgentContext;
use crate::agent::data::fetch;
use crate::agent::request::DataRequest;
use crate::logging::RequestLog;
use crate::quoalise::{MetaForm, TimeSeries};
use crate::store::Subscription;
use crate::time::{PARIS, Window, add_days, day_start, due_through, paris_today};
use crate::upstream::cache::Clock;
use crate::xmpp::{CommandError, SessionState};

/// The command name pushes are logged, measured and audited under.
pub const PUSH_COMMAND: &str = "subscription";
/// At most this many days are sent in one push (catching up after downtime).
pub const MAX_CATCH_UP_DAYS: i64 = 7;
/// Deliveries run at the same time in one pass (identical reads coalesce).
const PARALLEL_DELIVERIES: usize = 8;
/// Deadline of one delivery's read.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

/// How late data is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry; each next one waits twice as long.
    pub first: Duration,
    /// Longest wait between two passes while something is pending.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(15 * 60),
            max: Duration::from_secs(2 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `n`-th pass in a row that left something pending (n ≥ 1).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// The next instant at which `publish` (Paris) comes, strictly after `now`.
pub fn next_publish(now: Timestamp, publish: Time) -> Timestamp {
    let today = paris_today(now);
    for offset in 0..3 {
        let Ok(day) = add_days(today, offset) else {
            break;
        };
        if let Ok(at) = PARIS
            .to_ambiguous_timestamp(day.to_datetime(publish))
            .compatible()
            && at > now
        {
            return at;
        }
    }
    now.checked_add(24.hours()).unwrap_or(now)
}

/// What happened to one subscription in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing to send: the subscriber has every published day.
    UpToDate,
    /// Sent days `[from, to[`.
    Sent { from: Date, to: Date },
    /// The latest day is not published yet.
    Late,
    /// Could not read or send; retried.
    Failed(String),
    /// Its basis is gone: the subscription ended.
    Ended(String),
}

/// The outcome of one pass, per subscription id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub deliveries: Vec<(i64, Delivery)>,
}

impl Pass {
    /// Whether a later pass has something to do today.
    pub fn pending(&self) -> bool {
        self.deliveries
            .iter()
            .any(|(_, d)| matches!(d, Delivery::Late | Delivery::Failed(_)))
    }

    pub fn sent(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|(_, d)| matches!(d, Delivery::Sent { .. }))
            .count()
    }
}

/// Runs delivery passes for the agent.
#[derive(Clone)]
pub struct Scheduler {
    ctx: Arc<AgentContext>,
    clock: Clock,
    publish: Time,
    retry: RetryPolicy,
    wake: Arc<Notify>,
}

impl Scheduler {
    /// A scheduler for `ctx`, publishing from `subscriptions.publish_time`.
    pub fn new(ctx: Arc<AgentContext>) -> Scheduler {
        let publish = ctx.settings().config.subscriptions.publish_time;
        Scheduler {
            wake: ctx.pushes.clone(),
            ctx,
            clock: Clock::system(),
            publish,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Wakes [`Scheduler::run`] for a pass now (e.g. after a new subscription).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One delivery pass over every subscription.
    pub async fn run_once(&self) -> Pass {
        let now = self.clock.now();
        let through = due_through(now, self.publish);
        let subs = match self.ctx.store.call(|s| s.subscriptions()).await {
            Ok(subs) => subs,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the subscriptions");
                return Pass {
                    deliveries: vec![(0, Delivery::Failed(e.to_string()))],
                };
            }
        };
        let deliveries = futures::stream::iter(subs)
            .map(|sub| async move {
                let id = sub.id;
                (id, self.deliver(sub, through).await)
            })
            .buffer_unordered(PARALLEL_DELIVERIES)
            .collect::<Vec<_>>()
            .await;
        let pass = Pass { deliveries };
        let sent = pass.sent();
        if sent > 0 || pass.pending() {
            tracing::info!(
                through = %through,
                sent,
                pending = pass.deliveries.iter().filter(|(_, d)| matches!(d, Delivery::Late | Delivery::Failed(_))).count(),
                ended = pass.deliveries.iter().filter(|(_, d)| matches!(d, Delivery::Ended(_))).count(),
                "subscription pass"
            );
        }
        pass
    }

    /// Sends `sub` the days it misses, up to `through` (one day less for the
    /// energy per class, whose latest day comes a day after the others':
    /// [`crate::quoalise::Series::lag_days`]).
    async fn deliver(&self, sub: Subscription, through: Date) -> Delivery {
        let through = add_days(through, -sub.identifier.series.lag_days()).unwrap_or(through);
        if sub.delivered_through >= through {
            return Delivery::UpToDate;
        }
        let oldest = add_days(through, 1 - MAX_CATCH_UP_DAYS).unwrap_or(through);
        let from = add_days(sub.delivered_through, 1)
            .unwrap_or(through)
            .max(oldest);
        let to = add_days(through, 1).unwrap_or(through);
        let (requester, window) = match (BareJid::new(&sub.peer), Window::from_dates(from, to)) {
            (Ok(j), Ok(w)) => (j, w),
            (Err(e), _) => return Delivery::Failed(format!("bad subscriber JID: {e}")),
            (_, Err(e)) => return Delivery::Failed(e.to_string()),
        };
        let mut log = RequestLog::start(&sub.peer, PUSH_COMMAND);
        let request = DataRequest {
            requester: requester.clone(),
            identifier: sub.identifier,
            window,
            meta: MetaForm::Flat,
            period_fields: "subscription",
            deadline: tokio::time::Instant::now() + DELIVERY_DEADLINE,
            class: crate::upstream::Class::Background,
            max_payload: None,
        };
        let (delivery, outcome) = match fetch(&self.ctx, &request, &mut log).await {
            Ok(answer) if !has_day(&answer.series, through) => (Delivery::Late, "late"),
            Ok(answer) => {
                if !self.ctx.xmpp.is_up() {
                    (
                        Delivery::Failed("the XMPP session is down".into()),
                        "service-unavailable",
                    )
                } else {
                    match self.push(&requester, &answer.series).await {
                        Ok(()) => {
                            let id = sub.id;
                            if let Err(e) = self
                                .ctx
                                .store
                                .call(move |s| s.mark_delivered(id, through))
                                .await
                            {
                                tracing::error!(subscription = id, error = %e, "cannot record a delivery: it may be sent again");
                            }
                            self.ctx.metrics.subscription_pushed();
                            (Delivery::Sent { from, to }, "ok")
                        }
                        Err(e) => (Delivery::Failed(e.to_string()), "service-unavailable"),
                    }
                }
            }
            Err(CommandError::NotAuthorized(why)) => {
                let id = sub.id;
                match self.ctx.store.call(move |s| s.end_subscription(id)).await {
                    Ok(_) => {
                        tracing::info!(subscription = id, peer = %sub.peer, identifier = %sub.identifier, reason = %why, "subscription ended: no consent or grant any more");
                    }
                    Err(e) => {
                        tracing::error!(subscription = id, error = %e, "cannot end a subscription")
                    }
                }
                (Delivery::Ended(why), "not-authorized")
            }
            Err(CommandError::Upstream { code, .. }) if is_not_published(&code) => {
                (Delivery::Late, "late")
            }
            Err(e) => {
                let name = e.condition();
                (Delivery::Failed(e.to_string()), name)
            }
        };
        let duration = log.finish(outcome);
        self.ctx
            .metrics
            .request(PUSH_COMMAND, outcome_label(outcome), duration);
        delivery
    }

    /// Sends `series` to `peer` in as many messages as the stanza size limit
    /// needs (a catch-up of weeks of 10-minute readings does not fit one), in
    /// order; each carries a complete Quoalise payload.
    async fn push(&self, peer: &BareJid, series: &TimeSeries) -> Result<(), String> {
        let xmpp = &self.ctx.xmpp;
        let to = Jid::from(peer.clone());
        let envelope = xmpp
            .envelope_bytes(|placeholder| {
                Message::normal(Some(to.clone()))
                    .with_payloads(vec![placeholder])
                    .into()
            })
            .map_err(|e| e.to_string())?;
        let room = xmpp.max_stanza_bytes().saturating_sub(envelope);
        let parts = split(series, MetaForm::Flat, room).map_err(|e| e.text)?;
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let splice = xmpp.prepare(part);
            let message =
                Message::normal(Some(to.clone())).with_payloads(vec![splice.placeholder()]);
            xmpp.send_spliced(message, splice)
                .await
                .map_err(|e| format!("message {} of {count}: {e}", i + 1))?;
        }
        if count > 1 {
            tracing::info!(peer = %peer, identifier = %series.identifier, messages = count, "pushed in several messages: larger than one stanza");
        }
        Ok(())
    }

    /// Runs passes until `shutdown`: one at start (catching up), one at each
    /// publish time, and retries with backoff while data is late.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut streak = 0u32;
        let mut day = None;
        loop {
            // Pushes go out on the XMPP session: while it is down (the agent just
            // started, or the server restarts) a pass would only fail and back
            // off; wait for it, and pass at once when it is up.
            let mut session = self.ctx.xmpp.watch_state();
            tokio::select! {
                _ = session.wait_for(|s| matches!(s, SessionState::Up | SessionState::Stopped)) => {}
                () = shutdown.cancelled() => return,
            }
            let pass = tokio::select! {
                pass = self.run_once() => pass,
                () = shutdown.cancelled() => return,
            };
            let now = self.clock.now();
            let today = paris_today(now);
            if day != Some(today) {
                day = Some(today);
                streak = 0;
            }
            let next_publish = next_publish(now, self.publish);
            let wait_until = if pass.pending() {
                streak = streak.saturating_add(1);
                let retry = now
                    .checked_add(
                        jiff::SignedDuration::try_from(self.retry.backoff(streak))
                            .unwrap_or_default(),
                    )
                    .unwrap_or(next_publish);
                // Never past the next publication, which starts a new day's passes.
                retry.min(next_publish)
            } else {
                streak = 0;
                next_publish
            };
            let wait = wait_until
                .duration_since(now)
                .unsigned_abs()
                .max(Duration::from_secs(1));
            tracing::debug!(next = %wait_until, "next subscription pass");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Whether `series` holds a value for the Paris day `day`: a daily value stamped at
/// its midnight, a load-curve interval starting in it, or an index read during it
/// (a Linky's: at its first midnight).
fn has_day(series: &TimeSeries, day: Date) -> bool {
    let (Ok(start), Ok(end)) = (day_start(day), add_days(day, 1).and_then(day_start)) else {
        return false;
    };
    series
        .readings
        .iter()
        .any(|r| r.start >= start && r.start < end && r.value.is_some())
}

/// Upstream answers meaning "not published yet" rather than a refusal.
fn is_not_published(code: &str) -> bool {
    let norm = code.replace('_', "-").to_ascii_lowercase();
    norm == "no-data-found" || norm == "adam-dc-0012"
}

fn outcome_label(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "ok",
        "late" => "late",
        "not-authorized" => "not-authorized",
        "bad-request" => "bad-request",
        "undefined-condition" => "undefined-condition",
        "internal-server-error" => "internal-server-error",
        _ => "service-unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_publication_is_today_or_tomorrow() {
        let eight = time(8, 0, 0, 0);
        assert_eq!(
            next_publish(at("2026-11-29T06:00:00Z"), eight),
            at("2026-11-29T07:00:00Z")
        );
        assert_eq!(
            next_publish(at("2026-11-29T07:00:00Z"), eight),
            at("2026-11-30T07:00:00Z")
        );
        // Across the spring change: 29 March 2026 08:00 CEST is 06:00 UTC.
        assert_eq!(
            next_publish(at("2026-03-28T12:00:00Z"), eight),
            at("2026-03-29T06:00:00Z")
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy::default();
        let minutes: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, vec![15, 30, 60, 120, 120, 120]);
        assert_eq!(p.backoff(1000), p.max);
    }
}
