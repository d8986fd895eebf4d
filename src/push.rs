//! The scheduler of daily pushes: each day's data sent to its subscribers.
//!
//! Enedis publishes yesterday's readings in the morning (`subscriptions.publish_time`,
//! 08:00 Paris by default). From then on, the [`Scheduler`] runs delivery PASSES:
//! every subscription whose subscriber has not yet been sent the latest published
//! day gets ALL the days it misses, read through THE data path
//! ([`crate::agent::data::fetch`]: authorised, cached, coalesced and audited like
//! `get_history`), as `<message><quoalise xmlns="urn:quoalise:0"><data>…</data>
//! </quoalise></message>`s sent to the subscriber's BARE JID, so that the server
//! delivers them to the subscriber's online resources, or keeps them in offline
//! storage.
//!
//! # A fleet of subscriptions on one quota
//!
//! Deliveries are BACKGROUND calls for the quota scheduler
//! ([`crate::upstream::limiter`]): they wait behind every interactive request, and
//! stop when the hour has used the background share of the quota
//! (`enedis.calls_per_hour × (100 − enedis.interactive_reserve_percent) %`), so a
//! thousand subscribers never lock a person out of `get_history`. A pass therefore
//! goes exactly as fast as the budget left after interactive traffic allows, as a
//! sequence of ROUNDS:
//!
//! - **oldest-due first**: each round reads the subscriptions again and takes the
//!   next [`ROUND_SIZE`] still due, by `delivered_through` ascending (then id): the
//!   subscriber who has waited longest goes first, and yesterday's leftovers go
//!   before today's;
//! - **bounded**: at most [`PARALLEL_DELIVERIES`] deliveries are in flight;
//! - **held back by the quota, never failed by it**: a delivery refused for the
//!   quota (`service-unavailable` with `<retry-after/>`: the background share or
//!   the hour is spent, or Enedis asked for a pause) is not counted as delivered:
//!   it stays due, the round launches nothing more, and the next round starts when
//!   the scheduler said the next slot comes. A peer over its own `calls_per_hour`
//!   only holds back that peer's subscriptions, until its slot;
//! - **one log line per round** (`subscription round`, at info): the round number,
//!   what it sent, found late, failed or ended, how many subscriptions still wait,
//!   and, when the quota stopped it, the limit and when the next background slot
//!   is expected;
//! - **progress in `/metrics`** ([`crate::metrics::PushProgress`]):
//!   `quoalise_agent_push_subscriptions{state="due|sent|waiting"}`, set when a pass
//!   starts, after each delivery and when it ends.
//!
//! A pass lasts until every due subscription was tried (sent, late, failed or
//! ended), or until the next publish time: then the next pass starts at once with
//! the new day, and what was still waiting is still due, first in line.
//!
//! # Never dropped
//!
//! No published day is skipped: a subscriber behind by more than
//! [`MAX_CATCH_UP_DAYS`] (the agent was down, or the quota kept it waiting) gets
//! every missing day, in messages of at most [`MAX_CATCH_UP_DAYS`] days, oldest
//! first. Progress is stored per subscription (`delivered_through`) after each
//! message, so a restart neither loses nor repeats a day. The history to send is
//! bounded: a new subscription starts at the latest published day
//! (`delivered_through` is the day before), so only days missed since can be due.
//!
//! When the latest day is not there yet (Enedis is late), or Enedis or the XMPP
//! session is unavailable, the subscription is tried again by the next pass, with
//! backoff (15 min, doubling, at most 2 h) until the next publish time; after it,
//! the day is simply still due, with the next one. A subscription whose basis is
//! gone (no consent or grant any more) ends, and so does one whose series left the
//! peer's scopes (a reload narrowed them): the refusal is on record in the audit
//! trail, and the peer subscribes again once its operator gives the scope back.
//!
//! Time is injected ([`Clock`]) and a pass can be run on demand
//! ([`Scheduler::run_once`]), so tests need not wait for 08:00.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
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
use crate::metrics::PushProgress;
use crate::quoalise::{MetaForm, TimeSeries};
use crate::store::Subscription;
use crate::time::{PARIS, Window, add_days, day_start, due_through, paris_today};
use crate::upstream::Limit;
use crate::upstream::cache::Clock;
use crate::xmpp::{CommandError, SessionState};

/// The command name pushes are logged, measured and audited under.
pub const PUSH_COMMAND: &str = "subscription";
/// At most this many days are sent in one message; a longer catch-up goes as
/// several, oldest first.
pub const MAX_CATCH_UP_DAYS: i64 = 7;
/// Subscriptions a round takes, oldest-due first. A fixed batch rather than one
/// sized to the quota: the quota scheduler already paces the calls (a round ends
/// early when it refuses), and a fixed size keeps what a round costs the same at
/// any quota: one read of the subscriptions (so that each round sees new
/// subscriptions, ended ones and the progress stored), and one log line per
/// hundred deliveries at most, about every 20 s at Enedis' 5 calls per second.
pub const ROUND_SIZE: usize = 100;
/// Deliveries in flight at the same time (identical reads coalesce). Enough to
/// keep the quota's pace busy while one delivery sends its message; few enough
/// that a round stopped by the quota has only these refused.
pub const PARALLEL_DELIVERIES: usize = 8;
/// Deadline of one delivery's read. A delivery waits for its turn rather than
/// failing: an hour covers a wait in the quota scheduler's queue (which the HTTP
/// client bounds by `enedis.quota_wait_secs`, refusing at once a slot known to come
/// later, and then the ROUND waits for it instead) and a catch-up of many calls
/// with their retries. A read still unanswered after an hour fails, and the
/// subscription is tried again by the next pass.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(3600);
/// Shortest wait before a round held back by the quota (against a slot given
/// as "now" or in the past).
const MIN_ROUND_WAIT: Duration = Duration::from_secs(1);

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
    /// Sent days `[from, to[` (in messages of at most [`MAX_CATCH_UP_DAYS`] days).
    Sent { from: Date, to: Date },
    /// The latest day is not published yet.
    Late,
    /// Could not read or send; retried by the next pass (days already sent are
    /// recorded).
    Failed(String),
    /// Its basis is gone: the subscription ended.
    Ended(String),
    /// Refused for the Enedis call quota, or not tried yet: still due, and not
    /// counted as delivered. `retry_at`: when the quota scheduler expects the next
    /// slot; `limit`: what held it back (`background-share`, `hourly-quota`,
    /// `per-second-quota`, `peer-budget`, `enedis-pause`), when it was tried.
    Waiting {
        retry_at: Option<Timestamp>,
        limit: Option<&'static str>,
    },
}

/// The outcome of one pass, per subscription id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// The last outcome of each subscription the pass saw, in the order they were
    /// settled (those still waiting last).
    pub deliveries: Vec<(i64, Delivery)>,
    /// Rounds run.
    pub rounds: u32,
}

impl Pass {
    /// Whether a later pass has something to do today.
    pub fn pending(&self) -> bool {
        self.deliveries.iter().any(|(_, d)| {
            matches!(
                d,
                Delivery::Late | Delivery::Failed(_) | Delivery::Waiting { .. }
            )
        })
    }

    pub fn sent(&self) -> usize {
        self.count(|d| matches!(d, Delivery::Sent { .. }))
    }

    /// Subscriptions still waiting for their turn when the pass ended (it reached
    /// the next publish time).
    pub fn waiting(&self) -> usize {
        self.count(|d| matches!(d, Delivery::Waiting { .. }))
    }

    fn count(&self, f: impl Fn(&Delivery) -> bool) -> usize {
        self.deliveries.iter().filter(|(_, d)| f(d)).count()
    }
}

/// What one round did.
#[derive(Debug, Default)]
struct Round {
    deliveries: Vec<(i64, Delivery)>,
    /// A quota limit of the whole application stopped the round: the earliest
    /// instant a slot is expected, and the limit.
    held: Option<(Timestamp, &'static str)>,
}

impl Round {
    fn count(&self, f: impl Fn(&Delivery) -> bool) -> usize {
        self.deliveries.iter().filter(|(_, d)| f(d)).count()
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

    /// One delivery pass: rounds of the due subscriptions, oldest-due first, until
    /// each was tried or the next publish time comes (see the module doc).
    pub async fn run_once(&self) -> Pass {
        let now = self.clock.now();
        let through = due_through(now, self.publish);
        let ends = next_publish(now, self.publish);
        let mut pass = Pass::default();
        // Settled in this pass (sent, late, failed, ended): not tried again by it.
        let mut settled: HashSet<i64> = HashSet::new();
        // Due and not settled, with their last quota refusal, if any.
        let mut waiting: BTreeMap<i64, Delivery> = BTreeMap::new();
        // Peers over their own calls-per-hour budget, until their next slot.
        let mut held_peers: HashMap<String, Timestamp> = HashMap::new();
        let mut progress = PushProgress::default();
        let mut first_read = true;
        loop {
            let subs = match self.ctx.store.call(|s| s.subscriptions()).await {
                Ok(subs) => subs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the subscriptions");
                    // Retried by the next pass, with backoff (not at once, as
                    // a pass cut short by the publish time would be).
                    waiting.clear();
                    pass.deliveries.push((0, Delivery::Failed(e.to_string())));
                    break;
                }
            };
            let mut due = Vec::new();
            for sub in subs {
                if settled.contains(&sub.id) {
                    continue;
                }
                if sub.delivered_through >= through {
                    if first_read {
                        pass.deliveries.push((sub.id, Delivery::UpToDate));
                    }
                    continue;
                }
                due.push(sub);
            }
            first_read = false;
            // Ended or unsubscribed meanwhile: no longer waiting.
            let due_ids: HashSet<i64> = due.iter().map(|s| s.id).collect();
            waiting.retain(|id, _| due_ids.contains(id));
            for sub in &due {
                waiting.entry(sub.id).or_insert_with(|| {
                    progress.due += 1;
                    Delivery::Waiting {
                        retry_at: None,
                        limit: None,
                    }
                });
            }
            progress.waiting = due.len() as u64;
            self.ctx.metrics.set_push_progress(progress);
            if due.is_empty() {
                break;
            }
            if self.clock.now() >= ends {
                // A new day is published: its pass takes over, oldest-due first.
                break;
            }
            due.sort_by_key(|s| (s.delivered_through, s.id));
            let now = Timestamp::now();
            held_peers.retain(|_, until| *until > now);
            let batch: Vec<Subscription> = due
                .into_iter()
                .filter(|s| !held_peers.contains_key(&s.peer))
                .take(ROUND_SIZE)
                .collect();
            if batch.is_empty() {
                // Every subscription still due belongs to a peer over its own
                // budget: wait for the first of them to have a slot again.
                let until = held_peers.values().min().copied().unwrap_or(now);
                if !self.pause(until, ends).await {
                    break;
                }
                continue;
            }
            pass.rounds += 1;
            let round = self
                .round(batch, through, &mut progress, &mut held_peers)
                .await;
            for (id, delivery) in &round.deliveries {
                if matches!(delivery, Delivery::Waiting { .. }) {
                    waiting.insert(*id, delivery.clone());
                } else {
                    waiting.remove(id);
                    settled.insert(*id);
                    pass.deliveries.push((*id, delivery.clone()));
                }
            }
            tracing::info!(
                through = %through,
                round = pass.rounds,
                sent = round.count(|d| matches!(d, Delivery::Sent { .. })),
                late = round.count(|d| matches!(d, Delivery::Late)),
                failed = round.count(|d| matches!(d, Delivery::Failed(_))),
                ended = round.count(|d| matches!(d, Delivery::Ended(_))),
                waiting = progress.waiting,
                limit = round.held.map(|(_, limit)| tracing::field::display(limit)),
                next_slot = round.held.map(|(at, _)| tracing::field::display(at)),
                "subscription round"
            );
            if let Some((until, _)) = round.held
                && !self.pause(until, ends).await
            {
                break;
            }
        }
        self.ctx.metrics.set_push_progress(progress);
        pass.deliveries.extend(waiting);
        if !pass.deliveries.is_empty() {
            tracing::debug!(
                through = %through,
                rounds = pass.rounds,
                due = progress.due,
                sent = progress.sent,
                waiting = progress.waiting,
                "subscription pass done"
            );
        }
        pass
    }

    /// One round: `batch` (oldest-due first) with at most [`PARALLEL_DELIVERIES`]
    /// in flight, launching nothing more once the application's quota refuses.
    async fn round(
        &self,
        batch: Vec<Subscription>,
        through: Date,
        progress: &mut PushProgress,
        held_peers: &mut HashMap<String, Timestamp>,
    ) -> Round {
        let mut round = Round::default();
        let mut queue = batch.into_iter();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < PARALLEL_DELIVERIES && round.held.is_none() {
                let Some(sub) = queue.next() else {
                    break;
                };
                if held_peers.contains_key(&sub.peer) {
                    continue;
                }
                in_flight.push(async move {
                    let (id, peer) = (sub.id, sub.peer.clone());
                    (id, peer, self.deliver(sub, through).await)
                });
            }
            let Some((id, peer, delivery)) = in_flight.next().await else {
                break;
            };
            match &delivery {
                Delivery::Waiting { retry_at, limit } => {
                    let at = retry_at.unwrap_or_else(Timestamp::now);
                    if *limit == Some(Limit::PeerBudget.as_str()) {
                        held_peers.insert(peer, at);
                    } else {
                        let limit = limit.unwrap_or("quota");
                        round.held = Some(match round.held {
                            Some((earlier, why)) if earlier <= at => (earlier, why),
                            _ => (at, limit),
                        });
                    }
                }
                Delivery::Sent { .. } => {
                    progress.sent += 1;
                    progress.waiting = progress.waiting.saturating_sub(1);
                }
                Delivery::UpToDate | Delivery::Late | Delivery::Failed(_) | Delivery::Ended(_) => {
                    progress.waiting = progress.waiting.saturating_sub(1);
                }
            }
            self.ctx.metrics.set_push_progress(*progress);
            round.deliveries.push((id, delivery));
        }
        round
    }

    /// Waits until `until` (a quota slot), or a wake-up (a new subscription), for
    /// the next round; `false` when the pass must end first: the next publish time
    /// `ends` comes before.
    async fn pause(&self, until: Timestamp, ends: Timestamp) -> bool {
        let for_slot = until
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO)
            .max(MIN_ROUND_WAIT);
        let for_publish: Duration = ends
            .duration_since(self.clock.now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        if for_publish <= for_slot {
            tokio::time::sleep(for_publish).await;
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(for_slot) => {}
            () = self.wake.notified() => {}
        }
        true
    }

    /// Sends `sub` the days it misses, up to `through` (one day less for the
    /// energy per class, whose latest day comes a day after the others':
    /// [`crate::quoalise::Series::lag_days`]).
    async fn deliver(&self, sub: Subscription, through: Date) -> Delivery {
        let through = add_days(through, -sub.identifier.series.lag_days()).unwrap_or(through);
        if sub.delivered_through >= through {
            return Delivery::UpToDate;
        }
        let (from, to) = match (add_days(sub.delivered_through, 1), add_days(through, 1)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return Delivery::Failed(e.to_string()),
        };
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
                    match self
                        .send_days(&sub, &requester, &answer.series, from, to)
                        .await
                    {
                        Ok(()) => {
                            self.ctx.metrics.subscription_pushed();
                            (Delivery::Sent { from, to }, "ok")
                        }
                        Err(e) => (Delivery::Failed(e), "service-unavailable"),
                    }
                }
            }
            Err(e @ (CommandError::NotAuthorized(_) | CommandError::OutOfScope { .. })) => {
                let id = sub.id;
                let why = e.to_string();
                let ended = match e {
                    CommandError::OutOfScope { .. } => {
                        "subscription ended: its series is outside the peer's scopes"
                    }
                    _ => "subscription ended: no consent or grant any more",
                };
                match self.ctx.store.call(move |s| s.end_subscription(id)).await {
                    Ok(_) => {
                        tracing::info!(subscription = id, peer = %sub.peer, identifier = %sub.identifier, reason = %why, "{ended}");
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
            Err(CommandError::RetryLater(later)) => (
                Delivery::Waiting {
                    retry_at: Some(later.at),
                    limit: Some(later.limit),
                },
                "service-unavailable",
            ),
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

    /// Sends `sub` the days `[from, to[` of `series`, in messages of at most
    /// [`MAX_CATCH_UP_DAYS`] days, oldest first, recording after each that the
    /// subscriber has them (a restart resumes after the last one sent). Days
    /// without any reading (the meter recorded nothing; the latest day has one)
    /// have nothing to send: they are recorded as served.
    async fn send_days(
        &self,
        sub: &Subscription,
        peer: &BareJid,
        series: &TimeSeries,
        from: Date,
        to: Date,
    ) -> Result<(), String> {
        let chunks = catch_up_chunks(from, to).map_err(|e| e.to_string())?;
        for (start, end) in chunks {
            let (lo, hi) = match (day_start(start), day_start(end)) {
                (Ok(lo), Ok(hi)) => (lo, hi),
                (Err(e), _) | (_, Err(e)) => return Err(e.to_string()),
            };
            let last = add_days(end, -1).map_err(|e| e.to_string())?;
            let readings: Vec<_> = series
                .readings
                .iter()
                .filter(|r| r.start >= lo && r.start < hi)
                .cloned()
                .collect();
            if readings.is_empty() {
                tracing::info!(subscription = sub.id, identifier = %sub.identifier, from = %start, through = %last, "no readings on these days: nothing to send");
            } else {
                let part = TimeSeries::new(series.identifier, readings);
                self.push(peer, &part).await.map_err(|e| {
                    if start > from {
                        format!(
                            "{e} (sent through {})",
                            add_days(start, -1).unwrap_or(start)
                        )
                    } else {
                        e
                    }
                })?;
            }
            let id = sub.id;
            if let Err(e) = self
                .ctx
                .store
                .call(move |s| s.mark_delivered(id, last))
                .await
            {
                tracing::error!(subscription = id, error = %e, "cannot record a delivery: it may be sent again");
            }
        }
        Ok(())
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
            let wait_until = if pass.waiting() > 0 {
                // The pass reached the publish time with subscriptions still
                // waiting for the quota: the new day's pass starts now, and takes
                // them first (oldest-due first).
                streak = 0;
                now
            } else if pass.pending() {
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

/// The days `[from, to[` as consecutive ranges `[start, end[` of at most
/// [`MAX_CATCH_UP_DAYS`] days, oldest first: one message each.
fn catch_up_chunks(from: Date, to: Date) -> Result<Vec<(Date, Date)>, crate::time::TimeError> {
    let mut chunks = Vec::new();
    let mut start = from;
    while start < to {
        let end = add_days(start, MAX_CATCH_UP_DAYS)?.min(to);
        chunks.push((start, end));
        start = end;
    }
    Ok(chunks)
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
    fn a_long_catch_up_goes_a_week_at_a_time_oldest_first_without_a_gap() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        // Ten days: a week, then three.
        assert_eq!(
            catch_up_chunks(d("2026-11-20"), d("2026-11-30")).unwrap(),
            vec![
                (d("2026-11-20"), d("2026-11-27")),
                (d("2026-11-27"), d("2026-11-30"))
            ]
        );
        // One day, and exactly a week: one message.
        assert_eq!(
            catch_up_chunks(d("2026-11-29"), d("2026-11-30")).unwrap(),
            vec![(d("2026-11-29"), d("2026-11-30"))]
        );
        assert_eq!(
            catch_up_chunks(d("2026-11-23"), d("2026-11-30"))
                .unwrap()
                .len(),
            1
        );
        // Across a month and the autumn change: every day once, in order.
        let chunks = catch_up_chunks(d("2026-10-01"), d("2026-11-30")).unwrap();
        assert_eq!(chunks.len(), 9);
        assert_eq!(chunks.first().unwrap().0, d("2026-10-01"));
        assert_eq!(chunks.last().unwrap().1, d("2026-11-30"));
        assert!(chunks.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(
            chunks
                .iter()
                .all(|(a, b)| a < b && (*b - *a).get_days() <= 7)
        );
        assert!(
            catch_up_chunks(d("2026-11-30"), d("2026-11-30"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_pass_with_subscriptions_still_waiting_is_pending() {
        let waiting = Pass {
            deliveries: vec![
                (1, Delivery::UpToDate),
                (
                    2,
                    Delivery::Waiting {
                        retry_at: None,
                        limit: Some("background-share"),
                    },
                ),
            ],
            rounds: 1,
        };
        assert!(waiting.pending());
        assert_eq!((waiting.waiting(), waiting.sent()), (1, 0));
        let done = Pass {
            deliveries: vec![(1, Delivery::UpToDate)],
            rounds: 0,
        };
        assert!(!done.pending());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy::default();
        let minutes: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, vec![15, 30, 60, 120, 120, 120]);
        assert_eq!(p.backoff(1000), p.max);
    }
}
