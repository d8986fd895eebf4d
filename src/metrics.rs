//! The agent's metrics, rendered in the Prometheus text exposition format
//! (version 0.0.4) for `GET /metrics`.
//!
//! [`Metrics`] is a cheap-to-clone handle (an `Arc`): every part of the agent holds
//! one and records what it does; the HTTP endpoint calls [`Metrics::render`].
//!
//! Every label value is a `&'static str` (or a number): label values come from the
//! code, never from a peer, so a peer cannot grow the number of series (a peer's
//! unknown command must be recorded as e.g. `"unknown"`, not by its name).
//!
//! This is a small implementation of its own rather than a crate: the metrics are a
//! fixed, known set, and the popular crates either render OpenMetrics rather than
//! 0.0.4 or bring a global recorder we do not want. It follows the format's rules:
//! one `# HELP` and `# TYPE` line per family, label values escaped (`\\`, `\"`,
//! `\n`), histograms as cumulative `_bucket{le=…}` series ending with `+Inf`, then
//! `_sum` and `_count`.
//!
//! Locks are std `Mutex`es: they are held only to bump a number or copy a map, never
//! across an `.await`, so an async mutex would only cost more.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request latency histogram buckets: from 1 ms (a
/// cached answer) to 60 s (a request that waited for the upstream quota).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Label value of an upstream call that got no HTTP response (connection failure,
/// timeout).
pub const NO_RESPONSE: &str = "no_response";

/// Handle on the agent's metrics; clone it freely.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unix time (seconds) at which the registry was created, i.e. process start.
    start_time: f64,
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    request_duration: Mutex<BTreeMap<&'static str, Histogram>>,
    upstream_calls: Mutex<BTreeMap<(String, UpstreamStatus), u64>>,
    quota_waits: AtomicU64,
    /// f64 bits; only ever increased through [`add_f64`].
    quota_wait_seconds: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    xmpp_reconnects: AtomicU64,
    xmpp_session_up: AtomicBool,
    /// Whether this instance leads (holds the XMPP session and calls Enedis).
    leader: AtomicBool,
    /// Store statements that failed for a reason of the store itself, by kind
    /// (`disk_full`, `read_only`…) and operation.
    store_write_failures: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Whether the store's last write (or write probe) succeeded.
    store_writable: AtomicBool,
    consents: Mutex<BTreeMap<&'static str, u64>>,
    subscriptions_pushed: AtomicU64,
    /// Per peer (a configured bare JID, or `agent`) and class: calls granted, and
    /// how long each waited in the quota scheduler.
    peer_calls: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    /// Per peer and limit: calls refused for the quota.
    peer_refusals: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Reads the quota scheduler's state at render time.
    quota_probe: Mutex<Option<QuotaProbe>>,
    /// The daily pushes' progress.
    push_progress: Mutex<PushProgress>,
}

/// The quota scheduler's state, as `/metrics` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaState {
    /// Calls made in the last hour.
    pub used_this_hour: usize,
    pub per_hour: usize,
    /// Of `per_hour`, what background work may use.
    pub background_per_hour: usize,
    /// Until an interactive call may be made (zero: now).
    pub next_free_in: Duration,
    pub waiting_interactive: usize,
    pub waiting_background: usize,
}

/// A function reading the quota's state.
pub type QuotaProbe = Box<dyn Fn() -> QuotaState + Send + Sync>;

/// Where today's subscription pushes stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushProgress {
    /// Subscriptions that miss a published day, at the start of the current pass.
    pub due: u64,
    /// Of those, sent in the current pass.
    pub sent: u64,
    /// Of those, still to send (waiting for their turn or the quota).
    pub waiting: u64,
}

/// The status label of an upstream call; ordered so that the output is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UpstreamStatus {
    Http(u16),
    NoResponse,
}

impl fmt::Display for UpstreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamStatus::Http(code) => write!(f, "{code}"),
            UpstreamStatus::NoResponse => f.write_str(NO_RESPONSE),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (NOT cumulative); beyond the last bound only `count`.
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| value <= le) {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A poisoned lock only means another thread panicked while bumping a number: the
/// numbers are still the best we have, so keep serving them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    // fetch_update retries on contention; the closure never returns None.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

impl Metrics {
    /// A new registry; create it once at start, its creation time is exported as
    /// the process start time.
    pub fn new() -> Metrics {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Metrics::with_start_time(start_time)
    }

    fn with_start_time(start_time: f64) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                start_time,
                requests: Mutex::default(),
                request_duration: Mutex::default(),
                upstream_calls: Mutex::default(),
                quota_waits: AtomicU64::new(0),
                quota_wait_seconds: AtomicU64::new(0.0f64.to_bits()),
                cache_hits: AtomicU64::new(0),
                cache_misses: AtomicU64::new(0),
                xmpp_reconnects: AtomicU64::new(0),
                xmpp_session_up: AtomicBool::new(false),
                leader: AtomicBool::new(false),
                store_write_failures: Mutex::default(),
                store_writable: AtomicBool::new(true),
                consents: Mutex::default(),
                subscriptions_pushed: AtomicU64::new(0),
                peer_calls: Mutex::default(),
                peer_refusals: Mutex::default(),
                quota_probe: Mutex::default(),
                push_progress: Mutex::default(),
            }),
        }
    }

    /// One peer request answered (or refused, or failed): counts it by command and
    /// outcome and records its latency under its command.
    pub fn request(&self, command: &'static str, outcome: &'static str, duration: Duration) {
        *lock(&self.inner.requests)
            .entry((command, outcome))
            .or_default() += 1;
        lock(&self.inner.request_duration)
            .entry(command)
            .or_default()
            .observe(duration.as_secs_f64());
    }

    /// One upstream HTTP call to `endpoint` (a fixed name such as
    /// `"metering/daily_consumption"` or `"oauth2/token"`), with the HTTP status it
    /// got, or `None` when no response came (rendered as [`NO_RESPONSE`]).
    pub fn upstream_call(&self, endpoint: &str, status: Option<u16>) {
        let status = status.map_or(UpstreamStatus::NoResponse, UpstreamStatus::Http);
        let mut calls = lock(&self.inner.upstream_calls);
        // The endpoints are a small fixed set: allocate only the first time.
        match calls
            .iter_mut()
            .find(|((e, s), _)| e == endpoint && *s == status)
        {
            Some((_, n)) => *n += 1,
            None => {
                calls.insert((endpoint.to_owned(), status), 1);
            }
        }
    }

    /// A request had to wait `waited` for the upstream call quota.
    pub fn quota_wait(&self, waited: Duration) {
        self.inner.quota_waits.fetch_add(1, Ordering::Relaxed);
        add_f64(&self.inner.quota_wait_seconds, waited.as_secs_f64());
    }

    /// A call for `peer` (a configured bare JID, or `agent`) of `class` got its
    /// slot after waiting `waited` in the quota scheduler.
    pub fn peer_call(&self, peer: &str, class: &'static str, waited: Duration) {
        let mut calls = lock(&self.inner.peer_calls);
        match calls
            .iter_mut()
            .find(|((p, c), _)| p == peer && *c == class)
        {
            Some((_, h)) => h.observe(waited.as_secs_f64()),
            None => calls
                .entry((peer.to_owned(), class))
                .or_default()
                .observe(waited.as_secs_f64()),
        }
    }

    /// A call for `peer` was refused by the quota scheduler, held back by `limit`.
    pub fn peer_refused(&self, peer: &str, limit: &'static str) {
        let mut refusals = lock(&self.inner.peer_refusals);
        match refusals
            .iter_mut()
            .find(|((p, l), _)| p == peer && *l == limit)
        {
            Some((_, n)) => *n += 1,
            None => {
                refusals.insert((peer.to_owned(), limit), 1);
            }
        }
    }

    /// Where `/metrics` reads the quota's state from.
    pub fn set_quota_probe(&self, probe: QuotaProbe) {
        *lock(&self.inner.quota_probe) = Some(probe);
    }

    /// The daily pushes' progress now.
    pub fn set_push_progress(&self, progress: PushProgress) {
        *lock(&self.inner.push_progress) = progress;
    }

    /// The last progress given to [`Metrics::set_push_progress`].
    pub fn push_progress(&self) -> PushProgress {
        *lock(&self.inner.push_progress)
    }

    /// `days` days of readings served from the cache.
    pub fn cache_hits(&self, days: u64) {
        self.inner.cache_hits.fetch_add(days, Ordering::Relaxed);
    }

    /// `days` days of readings not in the cache (fetched upstream).
    pub fn cache_misses(&self, days: u64) {
        self.inner.cache_misses.fetch_add(days, Ordering::Relaxed);
    }

    /// The XMPP session was lost and a new one is being opened.
    pub fn xmpp_reconnect(&self) {
        self.inner.xmpp_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the XMPP session is currently up (online, answering).
    pub fn set_xmpp_session_up(&self, up: bool) {
        self.inner.xmpp_session_up.store(up, Ordering::Relaxed);
    }

    /// The last value given to [`Metrics::set_xmpp_session_up`].
    pub fn xmpp_session_up(&self) -> bool {
        self.inner.xmpp_session_up.load(Ordering::Relaxed)
    }

    /// Whether this instance is the leader (always, on SQLite) or a standby.
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::Relaxed);
    }

    /// A store write failed for a reason of the store itself: `kind` says which
    /// (`disk_full`, `read_only`, `io_error`…), `operation` what was being written.
    pub fn store_write_failure(&self, kind: &'static str, operation: &'static str) {
        *lock(&self.inner.store_write_failures)
            .entry((kind, operation))
            .or_default() += 1;
    }

    /// Whether the store accepts writes, as its last write or probe found.
    pub fn set_store_writable(&self, writable: bool) {
        self.inner.store_writable.store(writable, Ordering::Relaxed);
    }

    /// Replaces the number of consents per state (e.g. `"active"`, `"expired"`,
    /// `"revoked"`) with `counts`, as counted in the store. A state seen before but
    /// absent from `counts` is set to 0, so a state that emptied does not keep its
    /// old number.
    pub fn set_consents(&self, counts: &[(&'static str, u64)]) {
        let mut consents = lock(&self.inner.consents);
        for value in consents.values_mut() {
            *value = 0;
        }
        for &(state, n) in counts {
            consents.insert(state, n);
        }
    }

    /// One subscriber was sent its daily data.
    pub fn subscription_pushed(&self) {
        self.inner
            .subscriptions_pushed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The whole registry in the Prometheus text format, version 0.0.4.
    pub fn render(&self) -> String {
        let inner = &*self.inner;
        let mut out = String::with_capacity(4096);

        family(
            &mut out,
            "quoalise_agent_requests_total",
            "Peer requests handled, by command and outcome.",
            "counter",
        );
        for (&(command, outcome), &n) in lock(&inner.requests).iter() {
            sample(
                &mut out,
                "quoalise_agent_requests_total",
                &[("command", command), ("outcome", outcome)],
                n,
            );
        }

        family(
            &mut out,
            "quoalise_agent_request_duration_seconds",
            "Time from receipt of a peer request to its answer, by command.",
            "histogram",
        );
        let durations = lock(&inner.request_duration).clone();
        for (command, h) in &durations {
            histogram(
                &mut out,
                "quoalise_agent_request_duration_seconds",
                &[("command", command)],
                h,
            );
        }

        family(
            &mut out,
            "quoalise_agent_upstream_calls_total",
            "HTTP calls to the Enedis API, by endpoint and HTTP status \
             (no_response: connection failure or timeout).",
            "counter",
        );
        for ((endpoint, status), &n) in lock(&inner.upstream_calls).iter() {
            sample(
                &mut out,
                "quoalise_agent_upstream_calls_total",
                &[("endpoint", endpoint), ("status", &status.to_string())],
                n,
            );
        }

        counter(
            &mut out,
            "quoalise_agent_quota_waits_total",
            "Requests that waited for the upstream call quota.",
            inner.quota_waits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "quoalise_agent_quota_wait_seconds_total",
            "Total time requests waited for the upstream call quota.",
            Float(f64::from_bits(
                inner.quota_wait_seconds.load(Ordering::Relaxed),
            )),
        );
        counter(
            &mut out,
            "quoalise_agent_cache_hits_total",
            "Days of readings served from the cache.",
            inner.cache_hits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "quoalise_agent_cache_misses_total",
            "Days of readings not in the cache, fetched upstream.",
            inner.cache_misses.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "quoalise_agent_xmpp_reconnects_total",
            "XMPP sessions lost and reopened.",
            inner.xmpp_reconnects.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "quoalise_agent_xmpp_session_up",
            "1 while the XMPP session is up, 0 otherwise.",
            u64::from(inner.xmpp_session_up.load(Ordering::Relaxed)),
        );
        gauge(
            &mut out,
            "quoalise_agent_leader",
            "1 while this instance leads (holds the XMPP session, calls Enedis), 0 while it is a standby.",
            u64::from(inner.leader.load(Ordering::Relaxed)),
        );

        family(
            &mut out,
            "quoalise_agent_store_write_failures_total",
            "Store statements that failed for a reason of the store itself, by kind \
             (disk_full, read_only, io_error, cannot_open, corrupt, permission_denied, other) \
             and operation (what was being written, or probe).",
            "counter",
        );
        for (&(kind, operation), &n) in lock(&inner.store_write_failures).iter() {
            sample(
                &mut out,
                "quoalise_agent_store_write_failures_total",
                &[("kind", kind), ("operation", operation)],
                n,
            );
        }
        gauge(
            &mut out,
            "quoalise_agent_store_writable",
            "1 while the store accepts writes (its last write or write probe succeeded), 0 otherwise.",
            u64::from(inner.store_writable.load(Ordering::Relaxed)),
        );

        family(
            &mut out,
            "quoalise_agent_consents",
            "Consents in the store, by state.",
            "gauge",
        );
        for (&state, &n) in lock(&inner.consents).iter() {
            sample(&mut out, "quoalise_agent_consents", &[("state", state)], n);
        }

        counter(
            &mut out,
            "quoalise_agent_subscriptions_pushed_total",
            "Daily data messages sent to subscribers.",
            inner.subscriptions_pushed.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "quoalise_agent_peer_quota_wait_seconds",
            "Time calls waited for their Enedis call slot, by peer (a configured JID, or \
             agent for the agent's own calls) and class (interactive, background); the \
             count is the calls made.",
            "histogram",
        );
        let peer_calls = lock(&inner.peer_calls).clone();
        for ((peer, class), h) in &peer_calls {
            histogram(
                &mut out,
                "quoalise_agent_peer_quota_wait_seconds",
                &[("peer", peer), ("class", class)],
                h,
            );
        }
        family(
            &mut out,
            "quoalise_agent_peer_quota_refusals_total",
            "Calls refused for the Enedis quota, by peer and by what held them back \
             (peer-budget, hourly-quota, background-share, per-second-quota, enedis-pause).",
            "counter",
        );
        for ((peer, limit), &n) in lock(&inner.peer_refusals).iter() {
            sample(
                &mut out,
                "quoalise_agent_peer_quota_refusals_total",
                &[("peer", peer), ("limit", limit)],
                n,
            );
        }
        let quota = lock(&inner.quota_probe).as_ref().map(|probe| probe());
        if let Some(q) = quota {
            gauge(
                &mut out,
                "quoalise_agent_quota_used_this_hour",
                "Enedis calls made in the last hour.",
                q.used_this_hour,
            );
            gauge(
                &mut out,
                "quoalise_agent_quota_per_hour",
                "The hourly Enedis call quota (enedis.calls_per_hour).",
                q.per_hour,
            );
            gauge(
                &mut out,
                "quoalise_agent_quota_background_per_hour",
                "Of the hourly quota, what background work (subscription pushes) may use.",
                q.background_per_hour,
            );
            gauge(
                &mut out,
                "quoalise_agent_quota_next_free_slot_seconds",
                "Seconds until an interactive request may make its next Enedis call (0: now).",
                Float(q.next_free_in.as_secs_f64()),
            );
            family(
                &mut out,
                "quoalise_agent_quota_waiting_calls",
                "Calls waiting for their Enedis call slot, by class.",
                "gauge",
            );
            sample(
                &mut out,
                "quoalise_agent_quota_waiting_calls",
                &[("class", "interactive")],
                q.waiting_interactive,
            );
            sample(
                &mut out,
                "quoalise_agent_quota_waiting_calls",
                &[("class", "background")],
                q.waiting_background,
            );
        }
        let push = *lock(&inner.push_progress);
        family(
            &mut out,
            "quoalise_agent_push_subscriptions",
            "The current delivery pass of the daily pushes: subscriptions due (missing a \
             published day, since the pass started), sent, and waiting for their turn \
             (due minus sent minus waiting: late, failed or ended).",
            "gauge",
        );
        for (state, n) in [
            ("due", push.due),
            ("sent", push.sent),
            ("waiting", push.waiting),
        ] {
            sample(
                &mut out,
                "quoalise_agent_push_subscriptions",
                &[("state", state)],
                n,
            );
        }

        family(
            &mut out,
            "quoalise_agent_build_info",
            "Version of the running agent (value always 1).",
            "gauge",
        );
        sample(
            &mut out,
            "quoalise_agent_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        gauge(
            &mut out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Float(inner.start_time),
        );
        out
    }
}

/// A float as Prometheus reads it (Go's ParseFloat): `+Inf`, `-Inf`, `NaN`, or
/// Rust's shortest round-trip decimal (never exponent notation).
struct Float(f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{v}")
        }
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    // HELP text escapes only backslash and newline (quotes stay as they are).
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: impl fmt::Display) {
    family(out, name, help, "counter");
    sample(out, name, &[], value);
}

/// The `_bucket`, `_sum` and `_count` samples of histogram `h` under `labels`.
fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
        cumulative += n;
        let le = Float(*le).to_string();
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, cumulative);
    }
    let mut with_le = labels.to_vec();
    with_le.push(("le", "+Inf"));
    sample(out, &bucket, &with_le, h.count);
    sample(out, &format!("{name}_sum"), labels, Float(h.sum));
    sample(out, &format!("{name}_count"), labels, h.count);
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl fmt::Display) {
    family(out, name, help, "gauge");
    sample(out, name, &[], value);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole output of a fresh registry: every family announced, unlabelled
    /// ones at zero, labelled ones without samples.
    #[test]
    fn fresh_registry_renders_every_family() {
        let m = Metrics::with_start_time(1_700_000_000.5);
        let expected = format!(
            "\
# HELP quoalise_agent_requests_total Peer requests handled, by command and outcome.
# TYPE quoalise_agent_requests_total counter
# HELP quoalise_agent_request_duration_seconds Time from receipt of a peer request to its answer, by command.
# TYPE quoalise_agent_request_duration_seconds histogram
# HELP quoalise_agent_upstream_calls_total HTTP calls to the Enedis API, by endpoint and HTTP status (no_response: connection failure or timeout).
# TYPE quoalise_agent_upstream_calls_total counter
# HELP quoalise_agent_quota_waits_total Requests that waited for the upstream call quota.
# TYPE quoalise_agent_quota_waits_total counter
quoalise_agent_quota_waits_total 0
# HELP quoalise_agent_quota_wait_seconds_total Total time requests waited for the upstream call quota.
# TYPE quoalise_agent_quota_wait_seconds_total counter
quoalise_agent_quota_wait_seconds_total 0
# HELP quoalise_agent_cache_hits_total Days of readings served from the cache.
# TYPE quoalise_agent_cache_hits_total counter
quoalise_agent_cache_hits_total 0
# HELP quoalise_agent_cache_misses_total Days of readings not in the cache, fetched upstream.
# TYPE quoalise_agent_cache_misses_total counter
quoalise_agent_cache_misses_total 0
# HELP quoalise_agent_xmpp_reconnects_total XMPP sessions lost and reopened.
# TYPE quoalise_agent_xmpp_reconnects_total counter
quoalise_agent_xmpp_reconnects_total 0
# HELP quoalise_agent_xmpp_session_up 1 while the XMPP session is up, 0 otherwise.
# TYPE quoalise_agent_xmpp_session_up gauge
quoalise_agent_xmpp_session_up 0
# HELP quoalise_agent_leader 1 while this instance leads (holds the XMPP session, calls Enedis), 0 while it is a standby.
# TYPE quoalise_agent_leader gauge
quoalise_agent_leader 0
# HELP quoalise_agent_store_write_failures_total Store statements that failed for a reason of the store itself, by kind (disk_full, read_only, io_error, cannot_open, corrupt, permission_denied, other) and operation (what was being written, or probe).
# TYPE quoalise_agent_store_write_failures_total counter
# HELP quoalise_agent_store_writable 1 while the store accepts writes (its last write or write probe succeeded), 0 otherwise.
# TYPE quoalise_agent_store_writable gauge
quoalise_agent_store_writable 1
# HELP quoalise_agent_consents Consents in the store, by state.
# TYPE quoalise_agent_consents gauge
# HELP quoalise_agent_subscriptions_pushed_total Daily data messages sent to subscribers.
# TYPE quoalise_agent_subscriptions_pushed_total counter
quoalise_agent_subscriptions_pushed_total 0
# HELP quoalise_agent_peer_quota_wait_seconds Time calls waited for their Enedis call slot, by peer (a configured JID, or agent for the agent's own calls) and class (interactive, background); the count is the calls made.
# TYPE quoalise_agent_peer_quota_wait_seconds histogram
# HELP quoalise_agent_peer_quota_refusals_total Calls refused for the Enedis quota, by peer and by what held them back (peer-budget, hourly-quota, background-share, per-second-quota, enedis-pause).
# TYPE quoalise_agent_peer_quota_refusals_total counter
# HELP quoalise_agent_push_subscriptions The current delivery pass of the daily pushes: subscriptions due (missing a published day, since the pass started), sent, and waiting for their turn (due minus sent minus waiting: late, failed or ended).
# TYPE quoalise_agent_push_subscriptions gauge
quoalise_agent_push_subscriptions{{state=\"due\"}} 0
quoalise_agent_push_subscriptions{{state=\"sent\"}} 0
quoalise_agent_push_subscriptions{{state=\"waiting\"}} 0
# HELP quoalise_agent_build_info Version of the running agent (value always 1).
# TYPE quoalise_agent_build_info gauge
quoalise_agent_build_info{{version=\"{}\"}} 1
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.5
",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(m.render(), expected);
    }

    #[test]
    fn the_quota_is_shown_per_peer_and_as_a_whole() {
        let m = Metrics::new();
        m.peer_call("a@example.org", "interactive", Duration::from_millis(200));
        m.peer_call("a@example.org", "interactive", Duration::from_millis(3));
        m.peer_call("b@example.org", "background", Duration::from_secs(90));
        m.peer_refused("a@example.org", "peer-budget");
        m.set_quota_probe(Box::new(|| QuotaState {
            used_this_hour: 812,
            per_hour: 1000,
            background_per_hour: 800,
            next_free_in: Duration::from_millis(1500),
            waiting_interactive: 2,
            waiting_background: 40,
        }));
        m.set_push_progress(PushProgress {
            due: 2000,
            sent: 1200,
            waiting: 800,
        });
        let text = m.render();
        let wait = "quoalise_agent_peer_quota_wait_seconds";
        assert!(text.contains(&format!(
            "{wait}_bucket{{peer=\"a@example.org\",class=\"interactive\",le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "{wait}_count{{peer=\"a@example.org\",class=\"interactive\"}} 2\n"
        )));
        // A wait past the last bucket is only in +Inf, the sum and the count.
        assert!(text.contains(&format!(
            "{wait}_bucket{{peer=\"b@example.org\",class=\"background\",le=\"60\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "{wait}_bucket{{peer=\"b@example.org\",class=\"background\",le=\"+Inf\"}} 1\n"
        )));
        assert_eq!(
            samples(&text, "quoalise_agent_peer_quota_refusals_total"),
            vec![
                "quoalise_agent_peer_quota_refusals_total{peer=\"a@example.org\",limit=\"peer-budget\"} 1"
            ]
        );
        assert_eq!(
            samples(&text, "quoalise_agent_quota_used_this_hour"),
            vec!["quoalise_agent_quota_used_this_hour 812"]
        );
        assert_eq!(
            samples(&text, "quoalise_agent_quota_next_free_slot_seconds"),
            vec!["quoalise_agent_quota_next_free_slot_seconds 1.5"]
        );
        assert_eq!(
            samples(&text, "quoalise_agent_quota_waiting_calls"),
            vec![
                "quoalise_agent_quota_waiting_calls{class=\"interactive\"} 2",
                "quoalise_agent_quota_waiting_calls{class=\"background\"} 40"
            ]
        );
        assert_eq!(
            samples(&text, "quoalise_agent_push_subscriptions"),
            vec![
                "quoalise_agent_push_subscriptions{state=\"due\"} 2000",
                "quoalise_agent_push_subscriptions{state=\"sent\"} 1200",
                "quoalise_agent_push_subscriptions{state=\"waiting\"} 800"
            ]
        );
    }

    /// Lines of `text` that are samples of `prefix` (the name followed by `{` or ` `).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn requests_are_counted_by_command_and_outcome() {
        let m = Metrics::new();
        m.request("get_history", "ok", Duration::from_millis(3));
        m.request("get_history", "ok", Duration::from_millis(4));
        m.request("get_history", "not_authorized", Duration::from_millis(1));
        m.request("list_usage_points", "ok", Duration::from_millis(2));
        let text = m.render();
        assert_eq!(
            samples(&text, "quoalise_agent_requests_total"),
            [
                r#"quoalise_agent_requests_total{command="get_history",outcome="not_authorized"} 1"#,
                r#"quoalise_agent_requests_total{command="get_history",outcome="ok"} 2"#,
                r#"quoalise_agent_requests_total{command="list_usage_points",outcome="ok"} 1"#,
            ]
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        let m = Metrics::new();
        // One observation exactly on a bound (le is inclusive), one between bounds,
        // one beyond the last bound (only in +Inf).
        m.request("get_history", "ok", Duration::from_millis(10));
        m.request("get_history", "ok", Duration::from_millis(300));
        m.request("get_history", "timeout", Duration::from_secs(90));
        let text = m.render();
        let name = "quoalise_agent_request_duration_seconds";
        let expected = format!(
            "\
{name}_bucket{{command=\"get_history\",le=\"0.001\"}} 0
{name}_bucket{{command=\"get_history\",le=\"0.0025\"}} 0
{name}_bucket{{command=\"get_history\",le=\"0.005\"}} 0
{name}_bucket{{command=\"get_history\",le=\"0.01\"}} 1
{name}_bucket{{command=\"get_history\",le=\"0.025\"}} 1
{name}_bucket{{command=\"get_history\",le=\"0.05\"}} 1
{name}_bucket{{command=\"get_history\",le=\"0.1\"}} 1
{name}_bucket{{command=\"get_history\",le=\"0.25\"}} 1
{name}_bucket{{command=\"get_history\",le=\"0.5\"}} 2
{name}_bucket{{command=\"get_history\",le=\"1\"}} 2
{name}_bucket{{command=\"get_history\",le=\"2.5\"}} 2
{name}_bucket{{command=\"get_history\",le=\"5\"}} 2
{name}_bucket{{command=\"get_history\",le=\"10\"}} 2
{name}_bucket{{command=\"get_history\",le=\"30\"}} 2
{name}_bucket{{command=\"get_history\",le=\"60\"}} 2
{name}_bucket{{command=\"get_history\",le=\"+Inf\"}} 3
{name}_sum{{command=\"get_history\"}} 90.31
{name}_count{{command=\"get_history\"}} 3
"
        );
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_")))
            .collect();
        assert_eq!(lines.join("\n") + "\n", expected);
    }

    #[test]
    fn upstream_calls_by_endpoint_and_status() {
        let m = Metrics::new();
        m.upstream_call("metering/daily_consumption", Some(200));
        m.upstream_call("metering/daily_consumption", Some(200));
        m.upstream_call("metering/daily_consumption", Some(429));
        m.upstream_call("oauth2/token", None);
        let text = m.render();
        assert_eq!(
            samples(&text, "quoalise_agent_upstream_calls_total"),
            [
                r#"quoalise_agent_upstream_calls_total{endpoint="metering/daily_consumption",status="200"} 2"#,
                r#"quoalise_agent_upstream_calls_total{endpoint="metering/daily_consumption",status="429"} 1"#,
                r#"quoalise_agent_upstream_calls_total{endpoint="oauth2/token",status="no_response"} 1"#,
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.upstream_call("a\"b\\c\nd", Some(500));
        let text = m.render();
        assert_eq!(
            samples(&text, "quoalise_agent_upstream_calls_total"),
            [r#"quoalise_agent_upstream_calls_total{endpoint="a\"b\\c\nd",status="500"} 1"#]
        );
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        let mut out = String::new();
        family(&mut out, "x", "a\\b\nc \"q\"", "counter");
        assert_eq!(out, "# HELP x a\\\\b\\nc \"q\"\n# TYPE x counter\n");
    }

    #[test]
    fn quota_cache_xmpp_and_subscriptions() {
        let m = Metrics::new();
        m.quota_wait(Duration::from_millis(1500));
        m.quota_wait(Duration::from_millis(250));
        m.cache_hits(30);
        m.cache_misses(2);
        m.cache_misses(1);
        m.xmpp_reconnect();
        m.set_xmpp_session_up(true);
        m.subscription_pushed();
        m.subscription_pushed();
        let text = m.render();
        for line in [
            "quoalise_agent_quota_waits_total 2",
            "quoalise_agent_quota_wait_seconds_total 1.75",
            "quoalise_agent_cache_hits_total 30",
            "quoalise_agent_cache_misses_total 3",
            "quoalise_agent_xmpp_reconnects_total 1",
            "quoalise_agent_xmpp_session_up 1",
            "quoalise_agent_subscriptions_pushed_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(m.xmpp_session_up());
        m.set_xmpp_session_up(false);
        assert!(!m.xmpp_session_up());
        assert!(m.render().contains("\nquoalise_agent_xmpp_session_up 0\n"));
    }

    #[test]
    fn consents_are_replaced_and_emptied_states_go_to_zero() {
        let m = Metrics::new();
        m.set_consents(&[("active", 5), ("expired", 2)]);
        m.set_consents(&[("active", 4), ("revoked", 1)]);
        let text = m.render();
        assert_eq!(
            samples(&text, "quoalise_agent_consents"),
            [
                r#"quoalise_agent_consents{state="active"} 4"#,
                r#"quoalise_agent_consents{state="expired"} 0"#,
                r#"quoalise_agent_consents{state="revoked"} 1"#,
            ]
        );
    }

    #[test]
    fn clones_share_the_same_registry() {
        let m = Metrics::new();
        let other = m.clone();
        let t = std::thread::spawn(move || other.xmpp_reconnect());
        t.join().unwrap();
        m.xmpp_reconnect();
        assert!(
            m.render()
                .contains("\nquoalise_agent_xmpp_reconnects_total 2\n")
        );
    }

    #[test]
    fn floats_render_as_prometheus_reads_them() {
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(0.0025).to_string(), "0.0025");
        assert_eq!(Float(60.0).to_string(), "60");
        assert_eq!(Float(1e-7).to_string(), "0.0000001");
    }

    /// Every line is a comment or `name{labels} value` with a parseable value, and
    /// every sample's family was announced by a TYPE line before it: the shape a
    /// Prometheus scraper requires.
    #[test]
    fn every_line_is_well_formed() {
        let m = Metrics::new();
        m.request("get_history", "ok", Duration::from_millis(7));
        m.upstream_call("x", Some(200));
        m.set_consents(&[("active", 1)]);
        let text = m.render();
        assert!(text.ends_with('\n'));
        let mut typed: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            let family = typed.last().expect("sample before any TYPE line");
            assert!(
                name == family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{family}{s}")),
                "{name} outside its family {family}"
            );
            assert!(
                value == "+Inf" || value.parse::<f64>().is_ok(),
                "bad value in {line}"
            );
        }
    }
}
