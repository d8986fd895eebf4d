//! The application's quota, shared fairly: one scheduler in front of every call to
//! Enedis.
//!
//! Enedis counts calls per APPLICATION (5 per second, and 1,000 or 10,000 per hour
//! depending on the generation), whichever peer they serve, so the whole agent shares
//! one [`QuotaLimiter`]. Every call says who it is for and how urgent it is (an
//! [`Ask`]), and waits in a queue of its own peer and class:
//!
//! - **interactive before background**: a call for a peer's command is always
//!   granted before a subscription push, a catch-up or a prefetch;
//! - **fair between peers**: within a class, peers take turns (start-time fair
//!   queuing, weighted by `[[peers]] weight`), so a peer that asked for a thousand
//!   days does not delay another peer's one day by more than one slot;
//! - **a share kept for interactive requests**: background calls stop when the hour
//!   has used `calls_per_hour × (100 − interactive_reserve_percent) %`, so pushes
//!   never lock people out;
//! - **per-peer budgets**: a peer with `calls_per_hour` gets no more than that in
//!   any hour, whatever the quota has left;
//! - **evenly spaced**: at most one call every `1.1 s / calls_per_second` (the
//!   per-second limit without bursts, so that the next caller never waits more
//!   than one such slot; the 1.1 s rather than 1 s because our clock starts when
//!   the call leaves, Enedis's when it arrives);
//! - **pauses**: a 429 from Enedis pauses every caller until the instant Enedis
//!   gave, or for a growing backoff when it gave none.
//!
//! A caller never waits past its deadline. When the scheduler can already tell
//! that the slot will come too late (the peer's budget or the hour is spent, the
//! queue ahead is too long), it refuses AT ONCE with the instant the slot is
//! expected ([`QuotaExceeded`]), so the peer can be told when to come back.
//!
//! The hour survives a restart: with a journal kept ([`QuotaLimiter::keep_journal`]),
//! every grant and pause is also written down for the store's ledger
//! (`upstream::quota_ledger` writes it behind), and a new limiter is seeded from
//! that ledger ([`QuotaLimiter::restore`]) before its first call.
//!
//! The waiting is done without a task of its own: the state is behind a std mutex,
//! each waiter has a [`Notify`], and one waiter at a time (the "timer") sleeps until
//! the next instant something frees, then grants the slot to whoever is next.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QuotaState;

/// The per-second window, slightly longer than a second (see the module doc).
const SECOND_WINDOW: Duration = Duration::from_millis(1_100);
const HOUR_WINDOW: Duration = Duration::from_secs(3_600);
/// Backoff after a 429 without a wait hint: first pause, doubled up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Shortest pause after a 429, whatever the hint.
const MIN_PAUSE: Duration = Duration::from_millis(250);
/// Default share of the hourly quota kept for interactive requests, in percent.
pub const DEFAULT_INTERACTIVE_RESERVE_PERCENT: u32 = 20;
/// Largest `[[peers]] weight`.
pub const MAX_WEIGHT: u32 = 100;
/// Virtual time of one call at weight 1 (a call at weight w costs `UNIT / w`).
const UNIT: u64 = 1_000_000;

/// How urgent a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Somebody waits for the answer: a peer's command, a consent being resolved.
    Interactive = 0,
    /// Nobody waits: subscription pushes, catch-ups, prefetches.
    Background = 1,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Background => "background",
        }
    }
}

/// Who a call is for, how urgent it is, and by when it must be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The peer (normalised bare JID) the call is charged to; `None` for the
    /// agent's own calls (administration, housekeeping).
    pub peer: Option<Arc<str>>,
    pub class: Class,
    /// When the call must have started at the latest; `None`: the client's
    /// longest quota wait (`enedis.quota_wait_secs`) from when it asks.
    pub deadline: Option<Instant>,
    /// The peer's share against other peers of its class (`[[peers]] weight`, ≥ 1).
    pub weight: u32,
    /// The peer's own calls-per-hour cap (`[[peers]] calls_per_hour`), if any.
    pub calls_per_hour: Option<u32>,
}

impl Default for Ask {
    fn default() -> Self {
        Ask::agent()
    }
}

impl Ask {
    /// A call of the agent itself, interactive, without a budget of its own.
    pub const fn agent() -> Ask {
        Ask {
            peer: None,
            class: Class::Interactive,
            deadline: None,
            weight: 1,
            calls_per_hour: None,
        }
    }

    /// A call for `peer` (a normalised bare JID) in `class`.
    pub fn peer(peer: &str, class: Class) -> Ask {
        Ask {
            peer: Some(Arc::from(peer)),
            class,
            ..Ask::agent()
        }
    }

    pub fn with_class(mut self, class: Class) -> Ask {
        self.class = class;
        self
    }

    pub fn with_deadline(mut self, deadline: Instant) -> Ask {
        self.deadline = Some(deadline);
        self
    }

    /// The peer's weight and calls-per-hour cap.
    pub fn with_budget(mut self, weight: u32, calls_per_hour: Option<u32>) -> Ask {
        self.weight = weight.clamp(1, MAX_WEIGHT);
        self.calls_per_hour = calls_per_hour;
        self
    }

    /// The peer's name in logs and metrics (`agent` for the agent's own calls).
    pub fn peer_name(&self) -> &str {
        self.peer.as_deref().unwrap_or("agent")
    }
}

/// What holds a call back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The peer's own `calls_per_hour`.
    PeerBudget,
    /// The application's hourly quota.
    Hourly,
    /// The part of the hourly quota background work may use (the rest is kept
    /// for interactive requests).
    BackgroundShare,
    /// The per-second pace, behind the calls queued before this one.
    PerSecond,
    /// A pause Enedis asked for (HTTP 429).
    EnedisPause,
}

impl Limit {
    /// The machine-readable name (`limit` attribute, metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::PeerBudget => "peer-budget",
            Limit::Hourly => "hourly-quota",
            Limit::BackgroundShare => "background-share",
            Limit::PerSecond => "per-second-quota",
            Limit::EnedisPause => "enedis-pause",
        }
    }

    /// For people.
    pub fn describe(self) -> &'static str {
        match self {
            Limit::PeerBudget => "the peer's own calls-per-hour budget",
            Limit::Hourly => "the hourly limit",
            Limit::BackgroundShare => "the share of the hourly limit background work may use",
            Limit::PerSecond => "the per-second limit, behind the calls queued before this one",
            Limit::EnedisPause => "a pause asked by Enedis (HTTP 429)",
        }
    }
}

/// No slot before the caller's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// How long until the slot is expected, from now.
    pub next_slot_in: Duration,
    /// What holds it back.
    pub limit: Limit,
}

/// A call granted, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub at: Instant,
    /// The peer it was charged to; `None`: the agent's own call.
    pub peer: Option<Arc<str>>,
    pub class: Class,
}

/// What the limiter did since the journal was last taken
/// ([`QuotaLimiter::take_journal`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// The calls granted, oldest first.
    pub calls: Vec<Granted>,
    /// The end of the longest pause Enedis asked for (429) meanwhile.
    pub pause_until: Option<Instant>,
}

/// Most grants a journal holds when nobody takes it (an hour at 5 calls a
/// second, and some): past that, the oldest are dropped.
const MAX_JOURNAL: usize = 20_000;

/// The shared scheduler.
#[derive(Debug)]
pub struct QuotaLimiter {
    state: StdMutex<State>,
}

#[derive(Debug)]
struct State {
    spacing: Duration,
    per_hour: usize,
    background_per_hour: usize,
    last_grant: Option<Instant>,
    /// Every grant of the last hour, oldest first.
    hour: VecDeque<Instant>,
    pause_until: Option<Instant>,
    next_backoff: Option<Duration>,
    peers: HashMap<Option<Arc<str>>, Peer>,
    waiters: HashMap<u64, Waiter>,
    next_ticket: u64,
    /// Virtual clock of each class: the start tag of the last grant.
    clock: [u64; 2],
    /// The waiter that sleeps until `wake_at` and then grants, if any is waiting.
    timer: Option<u64>,
    wake_at: Option<Instant>,
    /// Grants and pauses not yet taken for the ledger, when one is kept.
    journal: Option<Journal>,
}

#[derive(Debug, Default)]
struct Peer {
    /// This peer's grants of the last hour.
    hour: VecDeque<Instant>,
    /// Tickets waiting, per class, oldest first.
    queues: [VecDeque<u64>; 2],
    /// Virtual finish tag per class.
    tag: [u64; 2],
}

#[derive(Debug)]
struct Waiter {
    peer: Option<Arc<str>>,
    class: Class,
    weight: u32,
    cap: Option<u32>,
    status: Status,
    notify: Arc<Notify>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Waiting,
    Granted,
}

impl QuotaLimiter {
    /// A limiter allowing `per_second` calls in any (1.1 s) second and `per_hour` in
    /// any hour (each at least 1), 20 % of the hour kept for interactive requests.
    pub fn new(per_second: u32, per_hour: u32) -> Self {
        Self::with_reserve(per_second, per_hour, DEFAULT_INTERACTIVE_RESERVE_PERCENT)
    }

    /// The limiter of `config`'s application.
    pub fn for_config(config: &crate::config::EnedisConfig) -> Self {
        Self::with_reserve(
            config.calls_per_second,
            config.calls_per_hour,
            config.interactive_reserve_percent,
        )
    }

    /// [`QuotaLimiter::new`] keeping `reserve_percent` % of the hour (0–100) for
    /// interactive requests.
    pub fn with_reserve(per_second: u32, per_hour: u32, reserve_percent: u32) -> Self {
        let per_second = per_second.max(1);
        let per_hour = per_hour.max(1) as usize;
        let reserve = reserve_percent.min(100) as usize;
        let background_per_hour = per_hour * (100 - reserve) / 100;
        QuotaLimiter {
            state: StdMutex::new(State {
                spacing: SECOND_WINDOW / per_second,
                per_hour,
                background_per_hour,
                last_grant: None,
                hour: VecDeque::new(),
                pause_until: None,
                next_backoff: None,
                peers: HashMap::new(),
                waiters: HashMap::new(),
                next_ticket: 0,
                clock: [0; 2],
                timer: None,
                wake_at: None,
                journal: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Held only for bookkeeping, never across an await; a panic while holding
        // it leaves numbers that are still the best we have.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot for `ask` and take it, or fail if none comes before
    /// `deadline`: at once when the slot is already known to come too late.
    pub async fn acquire(&self, ask: &Ask, deadline: Instant) -> Result<(), QuotaExceeded> {
        let (ticket, notify) = {
            let mut state = self.lock();
            let now = Instant::now();
            state.prune(now);
            let (expected, limit) = state.estimate(ask, now);
            if expected > deadline {
                return Err(QuotaExceeded {
                    next_slot_in: expected.saturating_duration_since(now),
                    limit,
                });
            }
            let (ticket, notify) = state.enqueue(ask);
            state.pump(now);
            (ticket, notify)
        };
        let mut waiting = Waiting {
            limiter: self,
            ticket,
            done: false,
        };
        loop {
            let timer = {
                let mut state = self.lock();
                if state.waiters.get(&ticket).map(|w| &w.status) == Some(&Status::Granted) {
                    state.waiters.remove(&ticket);
                    waiting.done = true;
                    return Ok(());
                }
                (state.timer == Some(ticket))
                    .then_some(state.wake_at)
                    .flatten()
            };
            let until = timer.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep_until(until) => {
                    let mut state = self.lock();
                    let now = Instant::now();
                    state.pump(now);
                    if state.waiters.get(&ticket).map(|w| &w.status) == Some(&Status::Granted) {
                        state.waiters.remove(&ticket);
                        waiting.done = true;
                        return Ok(());
                    }
                    if now >= deadline {
                        state.remove(ticket);
                        waiting.done = true;
                        let (expected, limit) = state.estimate(ask, now);
                        state.pump(now);
                        return Err(QuotaExceeded {
                            next_slot_in: expected.saturating_duration_since(now),
                            limit,
                        });
                    }
                }
            }
        }
    }

    /// Enedis answered 429: pause everybody for `wait` if given, else for a backoff
    /// that doubles at each 429 without a hint. Returns the pause applied.
    pub fn pause(&self, wait: Option<Duration>) -> Duration {
        let mut state = self.lock();
        let wait = match wait {
            // A hint of "now" (Retry-After: 0, a past nextAccessTime) still gets a
            // short pause: a 429 is never answered by an immediate retry.
            Some(wait) => wait.max(MIN_PAUSE),
            None => {
                let backoff = state.next_backoff.unwrap_or(FIRST_BACKOFF);
                state.next_backoff = Some((backoff * 2).min(MAX_BACKOFF));
                backoff
            }
        };
        let now = Instant::now();
        let until = now + wait;
        if state.pause_until.is_none_or(|current| current < until) {
            state.pause_until = Some(until);
        }
        if let Some(journal) = &mut state.journal
            && journal.pause_until.is_none_or(|current| current < until)
        {
            journal.pause_until = Some(until);
        }
        state.pump(now);
        wait
    }

    /// From now on, write every grant and pause down for
    /// [`QuotaLimiter::take_journal`].
    pub fn keep_journal(&self) {
        let mut state = self.lock();
        if state.journal.is_none() {
            state.journal = Some(Journal::default());
        }
    }

    /// The grants and pauses since the last call (empty unless
    /// [`QuotaLimiter::keep_journal`] was called).
    pub fn take_journal(&self) -> Journal {
        let mut state = self.lock();
        match &mut state.journal {
            Some(journal) => std::mem::take(journal),
            None => Journal::default(),
        }
    }

    /// Counts calls made before this limiter existed (by a previous run of the
    /// agent, or another instance): each call of the last hour counts against
    /// the hour, against its peer's own cap, and the next call keeps the pace
    /// after the last of them; a pause Enedis asked for and not over yet holds.
    /// Calls older than an hour are ignored; instants in the future (another
    /// machine's clock) count as now. They are not written to the journal: they
    /// come from the ledger.
    pub fn restore(&self, calls: impl IntoIterator<Item = Granted>, pause_until: Option<Instant>) {
        self.lock().restore(calls, pause_until, Instant::now());
    }

    /// Makes the hour exactly `calls` (a ledger's hour) plus the grants still in
    /// the journal, and holds a pause until `pause_until` as [`Self::restore`]
    /// does. For an instance that wrote its own calls to the ledger it now reads
    /// (a standby taking the lead): what it counted before is forgotten, so each
    /// of its calls counts once, whether the ledger already has it or the journal
    /// still holds it.
    pub fn replace_hour(
        &self,
        calls: impl IntoIterator<Item = Granted>,
        pause_until: Option<Instant>,
    ) {
        let mut state = self.lock();
        state.hour.clear();
        for peer in state.peers.values_mut() {
            peer.hour.clear();
        }
        let unwritten: Vec<Granted> = state
            .journal
            .as_ref()
            .map(|j| j.calls.clone())
            .unwrap_or_default();
        state.restore(
            calls.into_iter().chain(unwritten),
            pause_until,
            Instant::now(),
        );
    }

    /// A call went through: the backoff starts over at the next 429.
    pub fn succeeded(&self) {
        self.lock().next_backoff = None;
    }

    /// Calls counted in the current hour window.
    pub fn calls_last_hour(&self) -> usize {
        let mut state = self.lock();
        state.prune(Instant::now());
        state.hour.len()
    }

    /// The quota's state now (for `/metrics`).
    pub fn state(&self) -> QuotaState {
        let mut state = self.lock();
        let now = Instant::now();
        state.prune(now);
        let mut waiting = [0usize; 2];
        for w in state.waiters.values() {
            if w.status == Status::Waiting {
                waiting[w.class as usize] += 1;
            }
        }
        let (free, _) = state.ready_at(Class::Interactive, None, None, now);
        QuotaState {
            used_this_hour: state.hour.len(),
            per_hour: state.per_hour,
            background_per_hour: state.background_per_hour,
            next_free_in: free.saturating_duration_since(now),
            waiting_interactive: waiting[0],
            waiting_background: waiting[1],
        }
    }
}

/// Takes a waiter out of the queue when its `acquire` is dropped (the request was
/// cancelled) before it got its slot or its refusal.
struct Waiting<'a> {
    limiter: &'a QuotaLimiter,
    ticket: u64,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.limiter.lock();
        state.remove(self.ticket);
        state.pump(Instant::now());
    }
}

impl State {
    /// [`QuotaLimiter::restore`] at `now`.
    fn restore(
        &mut self,
        calls: impl IntoIterator<Item = Granted>,
        pause_until: Option<Instant>,
        now: Instant,
    ) {
        let mut restored = false;
        for call in calls {
            let at = call.at.min(now);
            if now.duration_since(at) >= HOUR_WINDOW {
                continue;
            }
            restored = true;
            self.hour.push_back(at);
            self.peers.entry(call.peer).or_default().hour.push_back(at);
            if self.last_grant.is_none_or(|last| last < at) {
                self.last_grant = Some(at);
            }
        }
        if restored {
            self.hour.make_contiguous().sort_unstable();
            for peer in self.peers.values_mut() {
                peer.hour.make_contiguous().sort_unstable();
            }
        }
        if let Some(until) = pause_until.filter(|until| *until > now)
            && self.pause_until.is_none_or(|current| current < until)
        {
            self.pause_until = Some(until);
        }
        self.pump(now);
    }

    fn prune(&mut self, now: Instant) {
        let old = |t: &Instant| now.duration_since(*t) >= HOUR_WINDOW;
        while self.hour.front().is_some_and(old) {
            self.hour.pop_front();
        }
        if self.pause_until.is_some_and(|until| until <= now) {
            self.pause_until = None;
        }
        self.peers.retain(|_, peer| {
            while peer.hour.front().is_some_and(old) {
                peer.hour.pop_front();
            }
            // A peer idle for an hour loses nothing by being forgotten: it would
            // start again at the current virtual time anyway.
            !peer.hour.is_empty() || peer.queues.iter().any(|q| !q.is_empty())
        });
    }

    fn enqueue(&mut self, ask: &Ask) -> (u64, Arc<Notify>) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let class = ask.class as usize;
        let clock = self.clock[class];
        let peer = self.peers.entry(ask.peer.clone()).or_default();
        if peer.queues[class].is_empty() {
            // A peer coming back from idle starts at the current virtual time:
            // served next, with no credit saved up while it was away.
            peer.tag[class] = peer.tag[class].max(clock);
        }
        peer.queues[class].push_back(ticket);
        let notify = Arc::new(Notify::new());
        self.waiters.insert(
            ticket,
            Waiter {
                peer: ask.peer.clone(),
                class: ask.class,
                weight: ask.weight.clamp(1, MAX_WEIGHT),
                cap: ask.calls_per_hour,
                status: Status::Waiting,
                notify: notify.clone(),
            },
        );
        (ticket, notify)
    }

    /// Takes a waiting ticket out of its queue.
    fn remove(&mut self, ticket: u64) {
        let Some(waiter) = self.waiters.remove(&ticket) else {
            return;
        };
        if waiter.status == Status::Waiting
            && let Some(peer) = self.peers.get_mut(&waiter.peer)
        {
            peer.queues[waiter.class as usize].retain(|t| *t != ticket);
        }
        if self.timer == Some(ticket) {
            self.timer = None;
        }
    }

    /// The first instant a call of `class` may be made, and what holds it back
    /// until then, for a peer with `cap` and `peer_calls` grants this hour, with
    /// `ahead` calls of the same or a higher class to be granted first.
    fn ready_at(
        &self,
        class: Class,
        peer: Option<(&Peer, u32)>,
        ahead: Option<usize>,
        now: Instant,
    ) -> (Instant, Limit) {
        let ahead = ahead.unwrap_or(0);
        let mut at = now;
        let mut limit = Limit::PerSecond;
        let mut later = |t: Instant, why: Limit| {
            if t > at {
                (at, limit) = (t, why);
            }
        };
        // The pace: the next free slot, then one per spacing for each call ahead.
        let next = self.last_grant.map_or(now, |t| (t + self.spacing).max(now));
        later(next + self.spacing * ahead as u32, Limit::PerSecond);
        let (quota, why) = match class {
            Class::Interactive => (self.per_hour, Limit::Hourly),
            Class::Background => (self.background_per_hour, Limit::BackgroundShare),
        };
        later(slot_after(&self.hour, ahead, quota, now), why);
        if let Some((peer, cap)) = peer {
            let queued: usize = peer.queues.iter().map(VecDeque::len).sum();
            later(
                slot_after(&peer.hour, queued, cap as usize, now),
                Limit::PeerBudget,
            );
        }
        if let Some(until) = self.pause_until {
            later(until, Limit::EnedisPause);
        }
        (at, limit)
    }

    /// When a new call for `ask` would be granted, roughly: behind the calls
    /// queued that fair queuing puts first.
    fn estimate(&self, ask: &Ask, now: Instant) -> (Instant, Limit) {
        let class = ask.class as usize;
        let own = self.peers.get(&ask.peer);
        let mine = own.map_or(0, |p| p.queues[class].len());
        let weight = ask.weight.clamp(1, MAX_WEIGHT) as usize;
        let mut ahead = mine;
        for (key, peer) in &self.peers {
            if key == &ask.peer {
                continue;
            }
            if class == Class::Background as usize {
                ahead += peer.queues[Class::Interactive as usize].len();
            }
            let theirs = peer.queues[class].len();
            if theirs == 0 {
                continue;
            }
            let their_weight = peer.queues[class]
                .front()
                .and_then(|t| self.waiters.get(t))
                .map_or(1, |w| w.weight as usize);
            // Fair turns: for each of our calls, `their_weight / weight` of theirs.
            ahead += theirs.min(((mine + 1) * their_weight).div_ceil(weight));
        }
        if class == Class::Background as usize
            && let Some(own) = own
        {
            ahead += own.queues[Class::Interactive as usize].len();
        }
        let empty = Peer::default();
        let budget = ask.calls_per_hour.map(|cap| (own.unwrap_or(&empty), cap));
        self.ready_at(ask.class, budget, Some(ahead), now)
    }

    /// Grants the next slot if it is free now, then arms the timer for the next
    /// instant something frees.
    fn pump(&mut self, now: Instant) {
        self.prune(now);
        if let Some(ticket) = self.pick(now) {
            self.grant(ticket, now);
        }
        // The timer: the earliest instant a waiting head may be granted.
        let mut wake: Option<Instant> = None;
        let mut holder = None;
        for peer in self.peers.values() {
            for class in [Class::Interactive, Class::Background] {
                let Some(&head) = peer.queues[class as usize].front() else {
                    continue;
                };
                let cap = self.waiters.get(&head).and_then(|w| w.cap);
                let (at, _) = self.head_ready(peer, class, cap, now);
                if wake.is_none_or(|w| at < w) {
                    wake = Some(at);
                    holder = Some(head);
                }
            }
        }
        let changed = self.timer != holder || self.wake_at != wake;
        self.wake_at = wake;
        // Keep the current holder while it still waits: it is already sleeping.
        let keep = self.timer.filter(|t| {
            self.waiters
                .get(t)
                .is_some_and(|w| w.status == Status::Waiting)
        });
        self.timer = keep.or(holder);
        if changed
            && let Some(timer) = self.timer
            && let Some(w) = self.waiters.get(&timer)
        {
            w.notify.notify_one();
        }
    }

    /// When the head of `peer`'s `class` queue may be granted.
    fn head_ready(
        &self,
        peer: &Peer,
        class: Class,
        cap: Option<u32>,
        now: Instant,
    ) -> (Instant, Limit) {
        let mut at = self.ready_at(class, None, None, now);
        if let Some(cap) = cap {
            let own = slot_after(&peer.hour, 0, cap as usize, now);
            if own > at.0 {
                at = (own, Limit::PeerBudget);
            }
        }
        at
    }

    /// The ticket to grant now, if any: interactive before background, and in a
    /// class the peer with the smallest virtual tag.
    fn pick(&self, now: Instant) -> Option<u64> {
        for class in [Class::Interactive, Class::Background] {
            let mut best: Option<(u64, u64)> = None; // (tag, ticket)
            for peer in self.peers.values() {
                let Some(&head) = peer.queues[class as usize].front() else {
                    continue;
                };
                let cap = self.waiters.get(&head).and_then(|w| w.cap);
                let (at, _) = self.head_ready(peer, class, cap, now);
                if at > now {
                    continue;
                }
                // A peer held back by its own budget saves no credit meanwhile:
                // it comes back at the current virtual time, like a newcomer.
                let key = (
                    peer.tag[class as usize].max(self.clock[class as usize]),
                    head,
                );
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            if let Some((_, ticket)) = best {
                return Some(ticket);
            }
        }
        None
    }

    fn grant(&mut self, ticket: u64, now: Instant) {
        let Some(waiter) = self.waiters.get_mut(&ticket) else {
            return;
        };
        waiter.status = Status::Granted;
        waiter.notify.notify_one();
        let class = waiter.class as usize;
        let cost = UNIT / u64::from(waiter.weight);
        let key = waiter.peer.clone();
        if let Some(journal) = &mut self.journal {
            if journal.calls.len() >= MAX_JOURNAL {
                journal.calls.remove(0);
            }
            journal.calls.push(Granted {
                at: now,
                peer: key.clone(),
                class: waiter.class,
            });
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.queues[class].front() == Some(&ticket) {
                peer.queues[class].pop_front();
            } else {
                peer.queues[class].retain(|t| *t != ticket);
            }
            let start = peer.tag[class].max(self.clock[class]);
            self.clock[class] = start;
            peer.tag[class] = start + cost;
            peer.hour.push_back(now);
        }
        self.last_grant = Some(now);
        self.hour.push_back(now);
        if self.timer == Some(ticket) {
            self.timer = None;
        }
    }
}

/// The instant a window of `calls` (oldest first, within the last hour) allows
/// one more call under `limit`, after `ahead` more calls are made first.
fn slot_after(calls: &VecDeque<Instant>, ahead: usize, limit: usize, now: Instant) -> Instant {
    if limit == 0 {
        // Nothing allowed (a background share of 0 %): not in this hour, nor the next.
        return now + HOUR_WINDOW;
    }
    let used = calls.len() + ahead;
    if used < limit {
        return now;
    }
    match calls.get(used - limit) {
        Some(t) => *t + HOUR_WINDOW,
        // Beyond the known calls: not before an hour from now.
        None => now + HOUR_WINDOW,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(peer: &str, class: Class) -> Ask {
        Ask::peer(peer, class)
    }

    /// Grants at `now` until nothing is free, returning the peers served in order.
    fn drain(state: &mut State, now: Instant) -> Vec<String> {
        let mut served = Vec::new();
        while let Some(ticket) = state.pick(now) {
            let peer = state.waiters[&ticket]
                .peer
                .as_deref()
                .unwrap_or("agent")
                .to_owned();
            state.grant(ticket, now);
            state.waiters.remove(&ticket);
            served.push(peer);
            // Move past the pace so the next one is free.
            state.last_grant = Some(now - SECOND_WINDOW);
        }
        served
    }

    fn limiter(per_second: u32, per_hour: u32, reserve: u32) -> QuotaLimiter {
        QuotaLimiter::with_reserve(per_second, per_hour, reserve)
    }

    #[test]
    fn a_newcomer_is_served_next_whatever_the_backlog() {
        let l = limiter(5, 10_000, 20);
        let mut s = l.lock();
        let now = Instant::now();
        for _ in 0..100 {
            s.enqueue(&ask("a@x", Class::Interactive));
        }
        // a has been served a while.
        for _ in 0..10 {
            let t = s.pick(now).unwrap();
            s.grant(t, now);
            s.last_grant = Some(now - SECOND_WINDOW);
        }
        s.enqueue(&ask("b@x", Class::Interactive));
        let next = s.pick(now).unwrap();
        assert_eq!(s.waiters[&next].peer.as_deref(), Some("b@x"));
    }

    #[test]
    fn peers_take_turns_by_weight() {
        let l = limiter(5, 10_000, 20);
        let mut s = l.lock();
        let now = Instant::now();
        for _ in 0..30 {
            s.enqueue(&ask("a@x", Class::Interactive).with_budget(2, None));
            s.enqueue(&ask("b@x", Class::Interactive));
        }
        let served = drain(&mut s, now);
        let a = served[..30].iter().filter(|p| *p == "a@x").count();
        assert_eq!(a, 20, "weight 2 gets two turns for one: {served:?}");
    }

    #[test]
    fn interactive_goes_before_background() {
        let l = limiter(5, 10_000, 20);
        let mut s = l.lock();
        let now = Instant::now();
        for _ in 0..5 {
            s.enqueue(&ask("sub@x", Class::Background));
        }
        s.enqueue(&ask("a@x", Class::Interactive));
        let served = drain(&mut s, now);
        assert_eq!(served[0], "a@x");
        assert_eq!(served.len(), 6);
    }

    #[test]
    fn background_stops_at_its_share_of_the_hour() {
        let l = limiter(5, 100, 20);
        let mut s = l.lock();
        let now = Instant::now();
        for _ in 0..100 {
            s.enqueue(&ask("sub@x", Class::Background));
        }
        let served = drain(&mut s, now);
        assert_eq!(served.len(), 80);
        // The 20 left are for people.
        for _ in 0..30 {
            s.enqueue(&ask("a@x", Class::Interactive));
        }
        let served = drain(&mut s, now);
        assert_eq!(served.len(), 20);
        // And a refusal says when the first call of the hour leaves the window.
        let (at, limit) = s.estimate(&ask("b@x", Class::Interactive), now);
        assert_eq!(limit, Limit::Hourly);
        assert_eq!(at, now + HOUR_WINDOW);
    }

    #[test]
    fn a_peer_budget_is_its_own() {
        let l = limiter(5, 10_000, 20);
        let mut s = l.lock();
        let now = Instant::now();
        for _ in 0..5 {
            s.enqueue(&ask("a@x", Class::Interactive).with_budget(1, Some(3)));
        }
        s.enqueue(&ask("b@x", Class::Interactive));
        let served = drain(&mut s, now);
        assert_eq!(served.iter().filter(|p| *p == "a@x").count(), 3);
        assert_eq!(served.iter().filter(|p| *p == "b@x").count(), 1);
        let (at, limit) = s.estimate(&ask("a@x", Class::Interactive).with_budget(1, Some(3)), now);
        assert_eq!(limit, Limit::PeerBudget);
        assert_eq!(at, now + HOUR_WINDOW);
        // Another peer is not held back by a's budget.
        let (at, _) = s.estimate(&ask("c@x", Class::Interactive), now);
        assert!(at < now + Duration::from_secs(2));
    }

    /// One step of a random workload against the pure scheduler.
    #[derive(Debug, Clone)]
    enum Step {
        /// A call of peer `0..4` in a class, with or without that peer's cap.
        Ask { peer: u8, background: bool },
        /// Time passes, in milliseconds.
        Wait(u32),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0u8..4, any::<bool>()).prop_map(|(peer, background)| Step::Ask { peer, background }),
            1 => (1u32..400_000).prop_map(Step::Wait),
        ]
    }

    proptest::proptest! {
        /// Whatever arrives: the hour never holds more than the quota, background
        /// never passes its share, calls are spaced, a peer's cap holds, background
        /// never goes while an interactive call could, and a peer that starts
        /// waiting is served before any other peer of its class is served thrice.
        #[test]
        fn the_scheduler_keeps_every_promise(steps in proptest::collection::vec(step(), 1..300)) {
            const PER_HOUR: usize = 40;
            const CAP: u32 = 8;
            let l = limiter(5, PER_HOUR as u32, 25);
            let mut s = l.lock();
            let spacing = s.spacing;
            let start = Instant::now();
            let mut now = start;
            let mut grants: Vec<(Instant, Option<Arc<str>>, Class)> = Vec::new();
            // Per waiting ticket: the grants to others of its class since it queued.
            let mut overtaken: HashMap<u64, HashMap<Option<Arc<str>>, u32>> = HashMap::new();
            let peer_name = |p: u8| format!("p{p}@x");
            for step in steps {
                match step {
                    Step::Ask { peer, background } => {
                        let class = if background { Class::Background } else { Class::Interactive };
                        let mut ask = ask(&peer_name(peer), class);
                        if peer == 3 {
                            ask = ask.with_budget(1, Some(CAP));
                        }
                        let (ticket, _) = s.enqueue(&ask);
                        overtaken.insert(ticket, HashMap::new());
                    }
                    Step::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
                }
                s.prune(now);
                while let Some(ticket) = s.pick(now) {
                    let w = &s.waiters[&ticket];
                    let (peer, class) = (w.peer.clone(), w.class);
                    // Background only when no interactive head is ready.
                    if class == Class::Background {
                        for other in s.peers.values() {
                            if let Some(head) = other.queues[0].front() {
                                let cap = s.waiters[head].cap;
                                let (at, _) = s.head_ready(other, Class::Interactive, cap, now);
                                proptest::prop_assert!(at > now, "background before a ready interactive call");
                            }
                        }
                    }
                    s.grant(ticket, now);
                    s.waiters.remove(&ticket);
                    overtaken.remove(&ticket);
                    for (t, seen) in overtaken.iter_mut() {
                        let Some(w) = s.waiters.get(t) else { continue };
                        // Fair turns: while a call waits at the head of its peer's
                        // queue, another peer of its class is served at most twice:
                        // the rest of the current round, then the tie of the next
                        // (unless the waiter's own budget holds it back).
                        let at_head = s.peers[&w.peer].queues[class as usize].front() == Some(t);
                        if w.class == class && w.peer != peer && at_head && w.cap.is_none() {
                            let n = seen.entry(peer.clone()).or_default();
                            *n += 1;
                            proptest::prop_assert!(*n <= 2, "{:?} overtook {t} {n} times", peer);
                        }
                    }
                    grants.push((now, peer, class));
                }
            }
            for (i, (at, _, class)) in grants.iter().enumerate() {
                if i > 0 {
                    proptest::prop_assert!(*at - grants[i - 1].0 >= spacing, "calls closer than the pace");
                }
                let window = grants[..=i].iter().filter(|(t, _, _)| *at - *t < HOUR_WINDOW);
                let total = window.clone().count();
                proptest::prop_assert!(total <= PER_HOUR, "{total} calls in an hour");
                if *class == Class::Background {
                    proptest::prop_assert!(total <= PER_HOUR * 75 / 100, "background past its share");
                }
                let capped = window
                    .filter(|(_, p, _)| p.as_deref() == Some("p3@x"))
                    .count();
                proptest::prop_assert!(capped <= CAP as usize, "{capped} calls of a capped peer");
            }
        }
    }

    #[test]
    fn a_restored_hour_counts_against_the_hour_the_peer_and_the_pace() {
        let l = limiter(5, 10, 20);
        let mut s = l.lock();
        let now = Instant::now();
        let first = now - Duration::from_secs(1_800);
        // Ten calls before the restart: the first half an hour ago, the last
        // just now; the second to fourth a capped peer's; one too old to count.
        let mut calls: Vec<Granted> = (0..10)
            .map(|i| Granted {
                at: first + Duration::from_secs(200) * i,
                peer: Some(Arc::from(if (1..4).contains(&i) {
                    "capped@x"
                } else {
                    "other@x"
                })),
                class: Class::Interactive,
            })
            .collect();
        calls.push(Granted {
            at: now - HOUR_WINDOW - Duration::from_secs(1),
            peer: None,
            class: Class::Background,
        });
        calls.reverse();
        s.restore(calls, None, now);
        assert_eq!(s.hour.len(), 10);
        // The hour is spent: the next call comes an hour after the first one.
        let (at, limit) = s.estimate(&ask("new@x", Class::Interactive), now);
        assert_eq!((at, limit), (first + HOUR_WINDOW, Limit::Hourly));
        // When the hour frees a call, the capped peer's budget of 3 is still
        // spent, until its own first call leaves the hour.
        let capped = ask("capped@x", Class::Interactive).with_budget(1, Some(3));
        let later = first + HOUR_WINDOW + Duration::from_secs(1);
        s.prune(later);
        assert_eq!(
            s.estimate(&ask("new@x", Class::Interactive), later).0,
            later
        );
        let (at, limit) = s.estimate(&capped, later);
        assert_eq!(limit, Limit::PeerBudget);
        assert_eq!(at, first + Duration::from_secs(200) + HOUR_WINDOW);
        // And the pace holds after the last restored call.
        let l = limiter(1, 10_000, 20);
        let mut s = l.lock();
        let last = Instant::now();
        s.restore(
            [Granted {
                at: last,
                peer: None,
                class: Class::Interactive,
            }],
            None,
            last,
        );
        let (at, limit) = s.estimate(&ask("a@x", Class::Interactive), last);
        assert_eq!((at, limit), (last + s.spacing, Limit::PerSecond));
    }

    #[test]
    fn a_restored_pause_holds_and_an_expired_one_does_not() {
        let l = limiter(5, 10_000, 20);
        let mut s = l.lock();
        let now = Instant::now();
        s.restore([], Some(now - Duration::from_secs(1)), now);
        assert_eq!(s.estimate(&ask("a@x", Class::Interactive), now).0, now);
        let until = now + Duration::from_secs(42);
        s.restore([], Some(until), now);
        let (at, limit) = s.estimate(&ask("a@x", Class::Interactive), now);
        assert_eq!((at, limit), (until, Limit::EnedisPause));
    }

    #[tokio::test]
    async fn the_journal_holds_every_grant_and_the_longest_pause_once() {
        let l = limiter(100, 10_000, 20);
        let far = Instant::now() + Duration::from_secs(10);
        // Nothing is written down before a journal is kept.
        l.acquire(&Ask::agent(), far).await.unwrap();
        assert_eq!(l.take_journal(), Journal::default());
        l.keep_journal();
        let before = Instant::now();
        l.acquire(&ask("a@x", Class::Interactive), far)
            .await
            .unwrap();
        l.acquire(&ask("b@x", Class::Background), far)
            .await
            .unwrap();
        l.pause(Some(Duration::from_secs(30)));
        l.pause(Some(Duration::from_secs(5)));
        let journal = l.take_journal();
        let who: Vec<_> = journal
            .calls
            .iter()
            .map(|g| (g.peer.as_deref(), g.class))
            .collect();
        assert_eq!(
            who,
            [
                (Some("a@x"), Class::Interactive),
                (Some("b@x"), Class::Background)
            ]
        );
        assert!(journal.calls.iter().all(|g| g.at >= before));
        let pause = journal.pause_until.unwrap();
        assert!(
            pause >= before + Duration::from_secs(30),
            "the longest pause"
        );
        // Taken once: the next journal starts empty.
        assert_eq!(l.take_journal(), Journal::default());
    }

    /// A standby taking the lead: its own calls already written to the ledger
    /// come back with the ledger's hour, those still in the journal stay, and
    /// none counts twice; a peer's cap counts the other instance's calls too.
    #[tokio::test]
    async fn replacing_the_hour_counts_each_own_call_once() {
        let l = limiter(100, 10_000, 20);
        let far = Instant::now() + Duration::from_secs(10);
        l.keep_journal();
        for peer in ["a@x", "a@x", "b@x"] {
            l.acquire(&ask(peer, Class::Interactive), far)
                .await
                .unwrap();
        }
        // Written to the ledger by the keeper...
        let written = l.take_journal().calls;
        // ...then one more, still in the journal.
        l.acquire(&ask("b@x", Class::Interactive), far)
            .await
            .unwrap();
        assert_eq!(l.calls_last_hour(), 4);
        // The ledger: this instance's three and two of the previous leader's.
        let earlier = Instant::now() - Duration::from_secs(600);
        let theirs = [
            Granted {
                at: earlier,
                peer: Some(Arc::from("a@x")),
                class: Class::Interactive,
            },
            Granted {
                at: earlier,
                peer: None,
                class: Class::Background,
            },
        ];
        l.replace_hour(written.into_iter().chain(theirs), None);
        assert_eq!(
            l.calls_last_hour(),
            6,
            "3 written + 2 of the other + 1 unwritten"
        );
        // a@x made three of them: a cap of 3 is spent.
        let capped = ask("a@x", Class::Interactive).with_budget(1, Some(3));
        let refused = l.acquire(&capped, far).await.unwrap_err();
        assert_eq!(refused.limit, Limit::PeerBudget);
        // The unwritten one is still in the journal, for the keeper.
        assert_eq!(l.take_journal().calls.len(), 1);
    }

    proptest::proptest! {
        /// A restart at any step, the new limiter seeded with the old one's
        /// journal: over both runs together, the hour never holds more than the
        /// quota, background never passes its share, a peer's cap holds and
        /// calls stay spaced.
        #[test]
        fn a_restart_keeps_the_promises_of_the_hour(
            steps in proptest::collection::vec(step(), 1..300),
            cut in 0usize..300,
        ) {
            const PER_HOUR: usize = 40;
            const CAP: u32 = 8;
            let start = Instant::now();
            let mut now = start;
            let mut grants: Vec<(Instant, Option<Arc<str>>, Class)> = Vec::new();
            let before = limiter(5, PER_HOUR as u32, 25);
            let after = limiter(5, PER_HOUR as u32, 25);
            before.keep_journal();
            let spacing = before.lock().spacing;
            let cut = cut.min(steps.len());
            for (i, step) in steps.iter().enumerate() {
                if i == cut {
                    let journal = before.take_journal();
                    after.lock().restore(journal.calls, journal.pause_until, now);
                }
                let l = if i < cut { &before } else { &after };
                let mut s = l.lock();
                match step {
                    Step::Ask { peer, background } => {
                        let class = if *background { Class::Background } else { Class::Interactive };
                        let mut ask = ask(&format!("p{peer}@x"), class);
                        if *peer == 3 {
                            ask = ask.with_budget(1, Some(CAP));
                        }
                        s.enqueue(&ask);
                    }
                    Step::Wait(ms) => now += Duration::from_millis(u64::from(*ms)),
                }
                s.prune(now);
                while let Some(ticket) = s.pick(now) {
                    let w = &s.waiters[&ticket];
                    grants.push((now, w.peer.clone(), w.class));
                    s.grant(ticket, now);
                    s.waiters.remove(&ticket);
                }
            }
            for (i, (at, _, class)) in grants.iter().enumerate() {
                if i > 0 {
                    proptest::prop_assert!(*at - grants[i - 1].0 >= spacing, "calls closer than the pace");
                }
                let window = grants[..=i].iter().filter(|(t, _, _)| *at - *t < HOUR_WINDOW);
                let total = window.clone().count();
                proptest::prop_assert!(total <= PER_HOUR, "{total} calls in an hour");
                if *class == Class::Background {
                    proptest::prop_assert!(total <= PER_HOUR * 75 / 100, "background past its share");
                }
                let capped = window
                    .filter(|(_, p, _)| p.as_deref() == Some("p3@x"))
                    .count();
                proptest::prop_assert!(capped <= CAP as usize, "{capped} calls of a capped peer");
            }
        }
    }

    #[tokio::test]
    async fn calls_are_spaced_and_refused_at_once_when_too_late() {
        let l = limiter(50, 10_000, 20);
        let start = Instant::now();
        let far = start + Duration::from_secs(10);
        for _ in 0..5 {
            l.acquire(&ask("a@x", Class::Interactive), far)
                .await
                .unwrap();
        }
        // Five calls at 22 ms apart: at least 88 ms.
        assert!(start.elapsed() >= SECOND_WINDOW / 50 * 4);
        // A deadline shorter than the pace is refused at once.
        let l = limiter(1, 10_000, 20);
        l.acquire(&ask("a@x", Class::Interactive), far)
            .await
            .unwrap();
        let asked = Instant::now();
        let err = l
            .acquire(
                &ask("a@x", Class::Interactive),
                asked + Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(asked.elapsed() < Duration::from_millis(100));
        assert_eq!(err.limit, Limit::PerSecond);
        assert!(err.next_slot_in > Duration::from_millis(900), "{err:?}");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let l = Arc::new(limiter(1, 10_000, 20));
        let far = Instant::now() + Duration::from_secs(30);
        l.acquire(&ask("a@x", Class::Interactive), far)
            .await
            .unwrap();
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&ask("a@x", Class::Interactive), far).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.state().waiting_interactive, 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(l.state().waiting_interactive, 0);
        // The next caller still gets the slot when it frees.
        l.acquire(&ask("b@x", Class::Interactive), far)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn concurrent_waiters_are_all_served_in_turn() {
        let l = Arc::new(limiter(100, 10_000, 20));
        let far = Instant::now() + Duration::from_secs(30);
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let l = l.clone();
                let peer = if i % 2 == 0 { "a@x" } else { "b@x" };
                tokio::spawn(async move { l.acquire(&ask(peer, Class::Interactive), far).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(l.calls_last_hour(), 40);
        assert_eq!(l.state().waiting_interactive, 0);
    }
}
