//! The readings cache and request coalescing, as an [`Upstream`] decorating the
//! real one: the data path calls it exactly like the upstream client. This is the
//! cache's policy (what is closed, what to ask upstream, who waits for whom); its
//! table lives with the rest of the database in [`crate::store::readings`].
//!
//! - Closed days (older than two days, Paris time: Enedis no longer changes them)
//!   are kept in the store per generation, PRM, series and day, gaps included. A
//!   request served wholly from the cache costs no upstream call; one that overlaps
//!   it asks only for the missing days, one upstream request per contiguous run of
//!   them. The last two days are always asked again.
//! - One index answer holds the totalisator and every calendar class: the cache
//!   fetches the totalisator's series ([`super::source`]) and keeps every series
//!   of the answer, so the other classes of those days cost no call either (a
//!   class absent from the answer reads as an empty day). The energy per class
//!   is derived from the class's cached index ([`derive`]); indexes of closed days
//!   are final, and so are the energies derived from them.
//! - Identical upstream requests in flight at the same time (same generation, PRM,
//!   series and days) share one: the first caller's fetch is awaited by the others
//!   ([`futures::future::Shared`]), and counts its upstream calls once.
//!
//! - Contract data ([`Upstream::contract`]) are kept in memory for
//!   [`CONTRACT_TTL_SECS`] (24 hours) after they were read: contracts change
//!   rarely (a new subscribed power, tariff or off-peak hours takes effect at
//!   Enedis within days) but do change, and a day-old contract is what a
//!   comparison of powers needs. Never on disk (a v5 answer holds the meter's
//!   address), at most [`CONTRACT_CACHE_ENTRIES`] PRMs, gone at a restart, and
//!   dropped by housekeeping once no consent or grant covers the PRM
//!   ([`CachedUpstream::purge_contracts`]); failures are not kept. Identical
//!   requests in flight share one read.
//!
//! The cache is an optimisation, never a source of failure: when the store cannot
//! be read or written the request goes upstream and the problem is logged.
//!
//! Authorisation stays with the caller, as for [`Upstream::readings`]; the store
//! itself refuses to keep a day whose PRM no consent or grant covers, and drops them
//! when the last one ends.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::Shared;
use jiff::Timestamp;
use jiff::civil::Date;
use url::Url;

use super::client::{derived, derived_plan, unsupported};
use super::{
    Ask, Callback, Class, ConsentDuration, Fetched, FetchedContract, Upstream, UpstreamError,
    derive, window,
};
use crate::config::ApiGeneration;
use crate::metrics::Metrics;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::readings::Days;
use crate::store::{Consent, Store, StoreError};
use crate::time::{add_days, paris_date, paris_today, sort_dedup};

/// Days at least this old (Paris calendar) are closed: cached, never asked again.
pub const CLOSED_AFTER_DAYS: i64 = 2;

/// How long a contract read from Enedis is served from memory: 24 hours.
pub const CONTRACT_TTL_SECS: i64 = 24 * 3600;

/// At most this many PRMs' contracts are kept; beyond, the oldest read goes.
pub const CONTRACT_CACHE_ENTRIES: usize = 10_000;

/// The time source, injectable so tests (and the subscription scheduler's tests)
/// can move it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Timestamp::now))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// A clock stopped at `t`.
    pub fn fixed(t: Timestamp) -> Clock {
        Clock(Arc::new(move || t))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The first day that is not closed yet when today (Paris) is `today`.
pub fn first_open_day(today: Date) -> Date {
    add_days(today, -CLOSED_AFTER_DAYS).unwrap_or(today)
}

/// One upstream request, as coalescing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FetchKey {
    /// Interactive requests never join a background fetch: it would make them
    /// wait in the background queue.
    class: Class,
    generation: ApiGeneration,
    prm: Prm,
    series: Series,
    from: Date,
    to: Date,
}

type FetchResult = Result<Arc<Fetched>, Arc<UpstreamError>>;
type SharedFetch = Shared<Pin<Box<dyn Future<Output = FetchResult> + Send>>>;

type ContractResult = Result<Arc<FetchedContract>, Arc<UpstreamError>>;
type SharedContract = Shared<Pin<Box<dyn Future<Output = ContractResult> + Send>>>;

/// A contract read, and when (the cache's clock, UTC seconds).
#[derive(Debug, Clone)]
struct CachedContract {
    at: i64,
    contract: Arc<FetchedContract>,
}

/// The contracts read, and the reads in flight (one per class and PRM).
#[derive(Default)]
struct Contracts {
    kept: HashMap<Prm, CachedContract>,
    in_flight: HashMap<(Class, Prm), SharedContract>,
}

/// What [`CachedUpstream::readings`] did, for tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOutcome {
    /// Days served from the cache.
    pub cached_days: usize,
    /// Upstream requests (runs of missing days) this request needed.
    pub runs: usize,
    /// Runs that joined a fetch already in flight.
    pub joined: usize,
}

/// The upstream with a cache and coalescing in front of it.
pub struct CachedUpstream {
    inner: Arc<dyn Upstream>,
    store: Store,
    clock: Clock,
    metrics: Option<Metrics>,
    in_flight: Arc<Mutex<HashMap<FetchKey, SharedFetch>>>,
    contracts: Arc<Mutex<Contracts>>,
}

impl CachedUpstream {
    pub fn new(inner: Arc<dyn Upstream>, store: Store) -> CachedUpstream {
        CachedUpstream {
            inner,
            store,
            clock: Clock::system(),
            metrics: None,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            contracts: Arc::new(Mutex::new(Contracts::default())),
        }
    }

    /// Decide what is closed with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Count cache hits and misses (in days) in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The wrapped upstream.
    pub fn inner(&self) -> &Arc<dyn Upstream> {
        &self.inner
    }

    /// Upstream requests in flight right now (for tests).
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// [`Upstream::readings`], also saying what the cache did. The energy per
    /// class is derived from the class's index read through the cache, so its
    /// closed days cost no call once the index's are cached.
    pub async fn readings_with_outcome(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<(Fetched, CacheOutcome), UpstreamError> {
        let generation = self.inner.generation();
        if !super::serves(generation, series) {
            return Err(unsupported(generation, series));
        }
        let Some(index) = derive::index_of(series) else {
            return self.cached(prm, series, from, to, ask).await;
        };
        let (plan, a, b) = derived_plan(series, from, to, paris_today(self.clock.now()))?;
        let (fetched, outcome) = self.cached(prm, index, a, b, ask).await?;
        Ok((derived(fetched, plan)?, outcome))
    }

    /// A series read from Enedis, through the cache.
    async fn cached(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<(Fetched, CacheOutcome), UpstreamError> {
        let generation = self.inner.generation();
        let today = paris_today(self.clock.now());
        // The same clamping as the upstream, decided before looking at the cache so
        // that a cached answer has the same days and notes as a fresh one.
        let plan = window::plan(series, from, to, today)?;
        let open = first_open_day(today);
        // The series whose call answers this one: its cached days say which days
        // were fetched (a class absent from them had no counter those days).
        let source = super::source(series);
        let cached = if plan.from < open {
            let (a, b) = (plan.from, plan.to.min(open));
            match self
                .store
                .call_now(move |s| cached_or_known_empty(s, generation, &prm, series, source, a, b))
                .await
            {
                Ok(days) => days,
                Err(e) => {
                    tracing::warn!(%prm, error = %e, "cache unreadable, asking upstream");
                    BTreeMap::new()
                }
            }
        } else {
            BTreeMap::new()
        };
        let runs = missing_runs(plan.from, plan.to, |d| cached.contains_key(&d));
        let total_days = days_between(plan.from, plan.to);
        if let Some(m) = &self.metrics {
            m.cache_hits(cached.len() as u64);
            m.cache_misses(total_days.saturating_sub(cached.len()) as u64);
        }
        let mut outcome = CacheOutcome {
            cached_days: cached.len(),
            runs: runs.len(),
            joined: 0,
        };

        let mut readings: Vec<Reading> =
            Vec::with_capacity(cached.values().map(|day| day.len()).sum());
        for day in cached.values() {
            readings.extend_from_slice(day);
        }
        let mut calls = 0u32;
        let mut no_data: Option<UpstreamError> = None;
        for (a, b) in runs {
            let key = FetchKey {
                class: ask.class,
                generation,
                prm,
                series: source,
                from: a,
                to: b,
            };
            let (shared, leader) = self.join_or_start(key, open, ask);
            if !leader {
                outcome.joined += 1;
            }
            match shared.await {
                Ok(fetched) => {
                    if leader {
                        calls = calls.saturating_add(fetched.calls);
                    }
                    readings.extend_from_slice(readings_of(&fetched, source, series));
                }
                Err(e) if is_no_data(&e) => {
                    // Part of the period has no data: that is an answer only if no
                    // other part has any (as the upstream does for one request).
                    no_data = Some(e.duplicate());
                }
                Err(e) => return Err(e.duplicate()),
            }
        }
        if readings.is_empty()
            && let Some(e) = no_data
        {
            return Err(e);
        }
        sort_dedup(&mut readings);
        Ok((
            Fetched {
                readings,
                calls,
                from: plan.from,
                to: plan.to,
                notes: plan.notes,
                siblings: Vec::new(),
            },
            outcome,
        ))
    }

    /// [`Upstream::contract`], also saying whether it came from memory (`true`)
    /// or from a read (its own, or one in flight it joined).
    pub async fn contract_with_outcome(
        &self,
        prm: Prm,
        ask: &Ask,
    ) -> Result<(FetchedContract, bool), UpstreamError> {
        let now = self.clock.now().as_second();
        let shared = {
            let mut contracts = self.contracts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(kept) = contracts.kept.get(&prm) {
                if (0..CONTRACT_TTL_SECS).contains(&(now - kept.at)) {
                    let mut contract = FetchedContract::clone(&kept.contract);
                    contract.calls = 0;
                    return Ok((contract, true));
                }
                contracts.kept.remove(&prm);
            }
            match contracts.in_flight.get(&(ask.class, prm)) {
                Some(shared) => (shared.clone(), false),
                None => {
                    let shared = self.start_contract(prm, ask);
                    contracts.in_flight.insert((ask.class, prm), shared.clone());
                    (shared, true)
                }
            }
        };
        let (shared, leader) = shared;
        match shared.await {
            Ok(contract) => {
                let mut contract = FetchedContract::clone(&contract);
                if !leader {
                    // The calls are the first caller's.
                    contract.calls = 0;
                }
                Ok((contract, false))
            }
            Err(e) => Err(e.duplicate()),
        }
    }

    /// Drops the contracts past their lifetime, and those of PRMs no consent (of
    /// the generation) or grant covers any more: the cache never keeps personal
    /// data longer than something allows reading it, give or take a
    /// housekeeping period. Returns how many were dropped.
    pub async fn purge_contracts(&self) -> usize {
        let now = self.clock.now().as_second();
        let generation = self.inner.generation();
        let (kept, mut dropped) = {
            let mut contracts = self.contracts.lock().unwrap_or_else(|p| p.into_inner());
            let before = contracts.kept.len();
            contracts
                .kept
                .retain(|_, c| (0..CONTRACT_TTL_SECS).contains(&(now - c.at)));
            let kept: Vec<Prm> = contracts.kept.keys().copied().collect();
            (kept, before - contracts.kept.len())
        };
        if kept.is_empty() {
            return dropped;
        }
        let store_now = jiff::Timestamp::now().as_second();
        let uncovered = self
            .store
            .call(move |s| {
                let mut uncovered = Vec::new();
                for prm in kept {
                    if !s.is_covered(generation, &prm, store_now)? {
                        uncovered.push(prm);
                    }
                }
                Ok(uncovered)
            })
            .await;
        let uncovered = match uncovered {
            Ok(uncovered) => uncovered,
            Err(e) => {
                // Kept a little longer; the next housekeeping tries again.
                tracing::warn!(error = %e, "cannot check the cached contracts against the consents");
                Vec::new()
            }
        };
        let mut contracts = self.contracts.lock().unwrap_or_else(|p| p.into_inner());
        let before = contracts.kept.len();
        contracts.kept.retain(|prm, _| !uncovered.contains(prm));
        dropped += before - contracts.kept.len();
        dropped
    }

    /// A read of `prm`'s contract for `ask` (the first caller's: a coalesced read
    /// is charged to the peer that started it), kept when it succeeds.
    fn start_contract(&self, prm: Prm, ask: &Ask) -> SharedContract {
        let inner = Arc::clone(&self.inner);
        let clock = self.clock.clone();
        let contracts = Arc::clone(&self.contracts);
        let ask = ask.clone();
        let read = async move {
            let result = inner
                .contract(prm, &ask)
                .await
                .map(Arc::new)
                .map_err(Arc::new);
            let mut kept = contracts.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(contract) = &result {
                let at = clock.now().as_second();
                if kept.kept.len() >= CONTRACT_CACHE_ENTRIES && !kept.kept.contains_key(&prm) {
                    kept.kept
                        .retain(|_, c| (0..CONTRACT_TTL_SECS).contains(&(at - c.at)));
                    if kept.kept.len() >= CONTRACT_CACHE_ENTRIES
                        && let Some(oldest) =
                            kept.kept.iter().min_by_key(|(_, c)| c.at).map(|(p, _)| *p)
                    {
                        kept.kept.remove(&oldest);
                    }
                }
                kept.kept.insert(
                    prm,
                    CachedContract {
                        at,
                        contract: Arc::clone(contract),
                    },
                );
            }
            // Only now leave the registry, in the same critical section as the
            // result is kept: a request arriving later finds it.
            kept.in_flight.remove(&(ask.class, prm));
            result
        };
        (Box::pin(read) as Pin<Box<dyn Future<Output = ContractResult> + Send>>).shared()
    }

    /// The fetch of `key` in flight, or a new one; `true` when this caller started it.
    fn join_or_start(&self, key: FetchKey, open: Date, ask: &Ask) -> (SharedFetch, bool) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = map.get(&key) {
            return (shared.clone(), false);
        }
        let inner = Arc::clone(&self.inner);
        let store = self.store.clone();
        let clock = self.clock.clone();
        let registry = Arc::clone(&self.in_flight);
        // The first caller's ask: a coalesced read is charged to the peer that started it.
        let ask = ask.clone();
        let fetch = async move {
            let result = inner
                .readings(key.prm, key.series, key.from, key.to, &ask)
                .await;
            if let Ok(fetched) = &result {
                store_closed_days(&store, &clock, key, fetched, open).await;
            }
            // Only now leave the registry: a request arriving until here joins this
            // fetch, one arriving later finds the cache filled.
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            result.map(Arc::new).map_err(Arc::new)
        };
        let shared =
            (Box::pin(fetch) as Pin<Box<dyn Future<Output = FetchResult> + Send>>).shared();
        map.insert(key, shared.clone());
        (shared, true)
    }
}

/// The readings of `series` in a fetch of `fetched_series`: its own, or a
/// sibling's (none when the answer had no such series, e.g. a class the meter's
/// calendars do not have).
fn readings_of(fetched: &Fetched, fetched_series: Series, series: Series) -> &[Reading] {
    if series == fetched_series {
        return &fetched.readings;
    }
    fetched
        .siblings
        .iter()
        .find(|(s, _)| *s == series)
        .map_or(&[], |(_, readings)| readings.as_slice())
}

/// The cached days of `series` in `[from, to[`, and, when `source` (the series
/// whose call answers it) differs, the days cached for `source` but not for
/// `series`, as empty: those days were fetched and the answer had no such series.
fn cached_or_known_empty(
    store: &Store,
    generation: ApiGeneration,
    prm: &Prm,
    series: Series,
    source: Series,
    from: Date,
    to: Date,
) -> Result<BTreeMap<Date, Arc<[Reading]>>, StoreError> {
    let mut days = store.cached_days(generation, prm, series, from, to)?;
    if source != series {
        for day in store
            .cached_days(generation, prm, source, from, to)?
            .into_keys()
        {
            days.entry(day).or_insert_with(|| Arc::from(Vec::new()));
        }
    }
    Ok(days)
}

/// Keep the closed days of a fetch in the store, each day with all its readings
/// (an empty day too: the upstream had nothing for it, which is its final answer),
/// for the series fetched and every sibling the answer held (every class of an
/// index), in one transaction.
async fn store_closed_days(
    store: &Store,
    clock: &Clock,
    key: FetchKey,
    fetched: &Fetched,
    open: Date,
) {
    let mut closed: Vec<Date> = Vec::new();
    let mut day = fetched.from;
    while day < fetched.to.min(open) {
        closed.push(day);
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    if closed.is_empty() {
        return;
    }
    let by_day = |readings: &[Reading]| -> Days {
        let mut days: BTreeMap<Date, Vec<Reading>> =
            closed.iter().map(|d| (*d, Vec::new())).collect();
        for r in readings {
            if let Ok(d) = paris_date(r.start)
                && let Some(list) = days.get_mut(&d)
            {
                list.push(*r);
            }
        }
        days.into_iter().collect()
    };
    let series: Vec<(Series, Days)> = std::iter::once((key.series, by_day(&fetched.readings)))
        .chain(
            fetched
                .siblings
                .iter()
                .map(|(s, readings)| (*s, by_day(readings))),
        )
        .collect();
    let now = clock.now().as_second();
    let result: Result<usize, StoreError> = store
        .call(move |s| s.cache_series_days(key.generation, &key.prm, &series, now))
        .await;
    if let Err(e) = result {
        tracing::warn!(prm = %key.prm, error = %e, "cannot write the cache");
    }
}

/// Contiguous runs `[a, b[` of the days in `[from, to[` for which `cached` is false.
pub fn missing_runs(from: Date, to: Date, cached: impl Fn(Date) -> bool) -> Vec<(Date, Date)> {
    let mut runs = Vec::new();
    let mut start: Option<Date> = None;
    let mut day = from;
    while day < to {
        match (cached(day), start) {
            (false, None) => start = Some(day),
            (true, Some(s)) => {
                runs.push((s, day));
                start = None;
            }
            _ => {}
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    if let Some(s) = start {
        runs.push((s, to));
    }
    runs
}

fn days_between(from: Date, to: Date) -> usize {
    from.until(to)
        .ok()
        .and_then(|span| usize::try_from(span.get_days()).ok())
        .unwrap_or(0)
}

fn is_no_data(e: &UpstreamError) -> bool {
    matches!(e, UpstreamError::Refused(fault) if fault.is_no_data())
}

#[async_trait]
impl Upstream for CachedUpstream {
    fn generation(&self) -> ApiGeneration {
        self.inner.generation()
    }

    async fn readings(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        self.readings_with_outcome(prm, series, from, to, ask)
            .await
            .map(|(fetched, _)| fetched)
    }

    async fn contract(&self, prm: Prm, ask: &Ask) -> Result<FetchedContract, UpstreamError> {
        self.contract_with_outcome(prm, ask)
            .await
            .map(|(contract, _)| contract)
    }

    fn authorize_url(&self, state: &str, duration: &ConsentDuration) -> Result<Url, UpstreamError> {
        self.inner.authorize_url(state, duration)
    }

    async fn resolve_consent(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        self.inner.resolve_consent(owner, callback, duration).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn runs_of_missing_days() {
        let have = [date(2026, 10, 3), date(2026, 10, 4), date(2026, 10, 7)];
        let runs = missing_runs(date(2026, 10, 1), date(2026, 10, 10), |d| have.contains(&d));
        assert_eq!(
            runs,
            vec![
                (date(2026, 10, 1), date(2026, 10, 3)),
                (date(2026, 10, 5), date(2026, 10, 7)),
                (date(2026, 10, 8), date(2026, 10, 10)),
            ]
        );
        assert!(
            missing_runs(date(2026, 10, 3), date(2026, 10, 5), |d| have.contains(&d)).is_empty()
        );
        assert_eq!(
            missing_runs(date(2026, 10, 1), date(2026, 10, 2), |_| false),
            vec![(date(2026, 10, 1), date(2026, 10, 2))]
        );
    }

    #[test]
    fn closed_means_older_than_two_days() {
        assert_eq!(first_open_day(date(2026, 11, 29)), date(2026, 11, 27));
        assert_eq!(days_between(date(2026, 10, 1), date(2026, 10, 31)), 30);
    }
}
