//! The one way every generation talks HTTP to Enedis: quota, timeouts, retries.
//!
//! [`Http::send`] takes a slot from the shared [`QuotaLimiter`] before each attempt,
//! retries connection failures, timeouts, 5xx and `technical_error` answers up to
//! `max_retries` times with jittered exponential backoff, and on a 429 pauses every
//! caller for as long as Enedis asked (`Retry-After`, or `nextAccessTime` in the body)
//! or a growing backoff, within the request's quota deadline. Any other answer is
//! returned as is; [`Answer::json`] turns it into JSON or a typed error. Bodies are
//! parsed as JSON whatever their `Content-Type` says (the 2026 API sometimes answers
//! `application/octet-stream`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use tokio::time::Instant;
use url::Url;

use super::error::{EnedisFault, UpstreamError, excerpt, fault_from_answer, strip_bom};
use super::limiter::{Ask, Limit, QuotaLimiter};
use crate::config::{EnedisConfig, Secret};
use crate::metrics::Metrics;
use crate::store::Store;

/// What every part of the client shares: the HTTP machinery, the configuration
/// and the store.
pub(crate) struct Shared {
    pub http: Http,
    pub config: EnedisConfig,
    pub store: Store,
}

/// Largest body read; a week of 5-minute load curve is about 200 KB.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// First retry delay; doubled at each retry, then jittered by ±50 %.
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(8);
/// A wait for a call slot shorter than this is not a quota wait, only the lock.
const QUOTA_WAIT_THRESHOLD: Duration = Duration::from_millis(1);

/// The body of a call.
pub(crate) enum Body {
    None,
    /// A form; values may be secrets and are never logged.
    Form(Vec<(&'static str, String)>),
    Json(serde_json::Value),
}

/// One call to describe to [`Http::send`].
pub(crate) struct Call {
    /// For messages and logs, e.g. `mesure_synchrone_auto/v2/consommation_quotidienne`.
    pub endpoint: String,
    pub method: Method,
    /// Path below the base URL, starting with `/`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
}

/// An answer that was not retried away: a success or a final error.
#[derive(Debug)]
pub(crate) struct Answer {
    pub endpoint: String,
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Enedis error this answer stands for.
    pub fn fault(&self) -> EnedisFault {
        fault_from_answer(&self.endpoint, self.status, &self.body)
    }

    /// The JSON of a success; a refusal or unreadable body as a typed error.
    /// `secret_body` hides the excerpt (token answers hold tokens).
    pub fn json(&self, secret_body: bool) -> Result<serde_json::Value, UpstreamError> {
        if !self.is_success() {
            return Err(UpstreamError::Refused(self.fault()));
        }
        serde_json::from_slice(strip_bom(&self.body)).map_err(|e| UpstreamError::BadResponse {
            endpoint: self.endpoint.clone(),
            status: self.status,
            problem: if self.body.iter().all(u8::is_ascii_whitespace) {
                "the body is empty, JSON was expected".to_owned()
            } else {
                format!("the body is not JSON ({e})")
            },
            excerpt: (!secret_body).then(|| excerpt(&self.body)),
        })
    }
}

/// One caller's request as the HTTP machinery sees it: who it is for (the
/// [`Ask`] the quota scheduler queues it under) and how many HTTP requests it
/// made (for audit and metrics).
#[derive(Debug, Default)]
pub struct Tally {
    calls: AtomicU32,
    ask: Ask,
}

impl Tally {
    /// The tally of a request for `ask`.
    pub fn new(ask: Ask) -> Tally {
        Tally {
            calls: AtomicU32::new(0),
            ask,
        }
    }
    pub fn ask(&self) -> &Ask {
        &self.ask
    }
    pub fn add(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_n(&self, n: u32) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The shared HTTP machinery of one Enedis application.
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    limiter: Arc<QuotaLimiter>,
    max_retries: u32,
    quota_wait: Duration,
    /// Where calls and quota waits are counted (`/metrics`), when the agent runs.
    metrics: Option<Metrics>,
}

impl Http {
    pub fn new(config: &EnedisConfig, limiter: Arc<QuotaLimiter>) -> Result<Http, UpstreamError> {
        let base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            UpstreamError::Config(format!(
                "enedis.base_url {:?} is not a URL: {e}",
                config.base_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(UpstreamError::Config(format!(
                "enedis.base_url must be http(s), not {:?}",
                base.scheme()
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
            .user_agent(concat!("quoalise-agent/", env!("CARGO_PKG_VERSION")))
            // Enedis never redirects its API; following one could leak a bearer token.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            base,
            limiter,
            max_retries: config.max_retries,
            quota_wait: Duration::from_secs(config.quota_wait_secs),
            metrics: None,
        })
    }

    /// The quota scheduler every call waits in.
    pub fn limiter(&self) -> &Arc<QuotaLimiter> {
        &self.limiter
    }

    /// Count every call and quota wait in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Http {
        let limiter = Arc::clone(&self.limiter);
        metrics.set_quota_probe(Box::new(move || limiter.state()));
        self.metrics = Some(metrics);
        self
    }

    /// Send `call` until it gets an answer worth returning (see the module doc).
    /// `bearer` is the access token to present, if the call needs one.
    pub async fn send(
        &self,
        call: &Call,
        bearer: Option<&Secret>,
        tally: &Tally,
    ) -> Result<Answer, UpstreamError> {
        let ask = tally.ask();
        let longest = Instant::now() + self.quota_wait;
        let deadline = ask.deadline.map_or(longest, |d| d.min(longest));
        let mut failures = 0u32;
        loop {
            let asked = Instant::now();
            let slot = self.limiter.acquire(ask, deadline).await;
            let waited = asked.elapsed();
            if let Some(metrics) = &self.metrics {
                // Taking a free slot costs microseconds; anything longer was a wait.
                if waited >= QUOTA_WAIT_THRESHOLD || slot.is_err() {
                    metrics.quota_wait(waited);
                }
                match &slot {
                    Ok(()) => metrics.peer_call(ask.peer_name(), ask.class.as_str(), waited),
                    Err(e) => metrics.peer_refused(ask.peer_name(), e.limit.as_str()),
                }
            }
            if let Err(e) = &slot {
                tracing::info!(
                    peer = ask.peer_name(),
                    class = ask.class.as_str(),
                    endpoint = %call.endpoint,
                    limit = e.limit.as_str(),
                    next_slot_in_secs = e.next_slot_in.as_secs_f64().ceil(),
                    waited_ms = waited.as_millis() as u64,
                    "no Enedis call slot before the request's deadline"
                );
            }
            slot.map_err(|e| UpstreamError::Quota {
                detail: format!(
                    "no call slot for {} within the request's deadline ({}; next slot in {} s)",
                    call.endpoint,
                    e.limit.describe(),
                    e.next_slot_in.as_secs_f64().ceil()
                ),
                retry_at: (!e.next_slot_in.is_zero()).then(|| in_from_now(e.next_slot_in)),
                limit: e.limit.as_str(),
            })?;
            tally.add();
            let outcome = self.once(call, bearer).await;
            if let Some(metrics) = &self.metrics {
                let status = outcome.as_ref().ok().map(|(answer, _)| answer.status);
                metrics.upstream_call(&call.endpoint, status);
            }
            let failure = match outcome {
                Ok((answer, headers)) => {
                    if answer.status == 429 {
                        let hint = retry_after(&headers, &answer.body);
                        let wait = self.limiter.pause(hint);
                        tracing::warn!(
                            endpoint = %call.endpoint,
                            wait_secs = wait.as_secs_f64(),
                            hinted = hint.is_some(),
                            "Enedis quota reached (HTTP 429), pausing upstream calls"
                        );
                        if Instant::now() + wait > deadline {
                            return Err(UpstreamError::Quota {
                                detail: format!(
                                    "{} answered 429 (quota reached: {}) and asks to wait {} s, beyond the {} s limit",
                                    call.endpoint,
                                    answer.fault().message,
                                    wait.as_secs_f64().ceil(),
                                    self.quota_wait.as_secs()
                                ),
                                retry_at: Some(in_from_now(wait)),
                                limit: Limit::EnedisPause.as_str(),
                            });
                        }
                        // The pause is now in the limiter: the next acquire waits it out.
                        continue;
                    }
                    let fault = (!answer.is_success()).then(|| answer.fault());
                    match fault {
                        Some(fault) if answer.status >= 500 || fault.is_technical() => {
                            Failure::Answer(fault)
                        }
                        _ => {
                            self.limiter.succeeded();
                            return Ok(answer);
                        }
                    }
                }
                Err(failure) => failure,
            };
            if failures >= self.max_retries {
                return Err(failure.into_error(&call.endpoint, failures + 1));
            }
            failures += 1;
            let delay = backoff(failures);
            tracing::warn!(
                endpoint = %call.endpoint,
                attempt = failures,
                retry_in_ms = delay.as_millis() as u64,
                cause = %failure.describe(),
                "upstream call failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: the answer and its headers, or why there was none.
    async fn once(
        &self,
        call: &Call,
        bearer: Option<&Secret>,
    ) -> Result<(Answer, HeaderMap), Failure> {
        let mut url = self.base.clone();
        {
            // Keep any path prefix of the base URL (e.g. a gateway mounted under /enedis).
            let prefix = self.base.path().trim_end_matches('/');
            url.set_path(&format!("{prefix}{}", call.path));
        }
        let mut request = self
            .client
            .request(call.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        request = match &call.body {
            Body::None => request,
            Body::Form(fields) => request.form(fields),
            Body::Json(value) => request.json(value),
        };
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Failure::Transport(describe_transport(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(Failure::Transport(format!(
                            "the answer is larger than {} MiB",
                            MAX_BODY / 1024 / 1024
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(Failure::Transport(describe_transport(&e))),
            }
        }
        tracing::debug!(endpoint = %call.endpoint, status, bytes = body.len(), "upstream answer");
        Ok((
            Answer {
                endpoint: call.endpoint.clone(),
                status,
                body,
            },
            headers,
        ))
    }
}

/// Why an attempt is worth retrying.
enum Failure {
    /// No answer: connection refused, reset, timeout…
    Transport(String),
    /// 5xx or `technical_error`.
    Answer(EnedisFault),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Transport(reason) => reason.clone(),
            Failure::Answer(fault) => fault.to_string(),
        }
    }

    fn into_error(self, endpoint: &str, attempts: u32) -> UpstreamError {
        match self {
            Failure::Transport(reason) => UpstreamError::Unavailable {
                reason: format!("{endpoint}: {reason} ({attempts} attempts)"),
                fault: None,
            },
            Failure::Answer(fault) => UpstreamError::Unavailable {
                reason: format!("{fault} ({attempts} attempts)"),
                fault: Some(fault),
            },
        }
    }
}

/// A transport error without its URL (which holds the PRM) and with its causes.
fn describe_transport(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() {
        "the answer was cut"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// Delay before retry number `n` (1-based): exponential, capped, jittered ±50 %.
fn backoff(n: u32) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << n.saturating_sub(1).min(10));
    let capped = exp.min(RETRY_CAP);
    capped.mul_f64(rand::random_range(0.5..1.5))
}

/// How long Enedis asks to wait after a 429: `Retry-After` (seconds or HTTP date),
/// else `nextAccessTime` in the body (WSO2 throttling), else nothing.
pub(crate) fn retry_after(headers: &HeaderMap, body: &[u8]) -> Option<Duration> {
    if let Some(value) = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(secs) = value.parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            return Some(Duration::from_secs_f64(secs));
        }
        if let Some(at) = parse_instant_loose(value) {
            return Some(until(at));
        }
    }
    let value: serde_json::Value = serde_json::from_slice(strip_bom(body)).ok()?;
    let next = value
        .get("nextAccessTime")
        .or_else(|| value.get("fault").and_then(|f| f.get("nextAccessTime")))?;
    let at = match next {
        serde_json::Value::Number(n) => {
            // Epoch milliseconds or seconds.
            let n = n.as_i64()?;
            let secs = if n > 100_000_000_000 { n / 1000 } else { n };
            jiff::Timestamp::from_second(secs).ok()?
        }
        serde_json::Value::String(s) => parse_instant_loose(s)?,
        _ => return None,
    };
    Some(until(at))
}

fn until(at: jiff::Timestamp) -> Duration {
    let now = jiff::Timestamp::now();
    if at <= now {
        Duration::ZERO
    } else {
        Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
    }
}

/// An instant as gateways write it: RFC 3339, RFC 2822 / HTTP date, WSO2's
/// `2019-Jul-17 15:49:00+0000 UTC`, or epoch seconds/milliseconds in a string.
pub(crate) fn parse_instant_loose(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    if let Ok(zoned) = jiff::fmt::rfc2822::parse(s) {
        return Some(zoned.timestamp());
    }
    if let Ok(n) = s.parse::<i64>() {
        let secs = if n > 100_000_000_000 { n / 1000 } else { n };
        return jiff::Timestamp::from_second(secs).ok();
    }
    let wso2 = s.trim_end_matches(" UTC").trim_end_matches(" GMT");
    for format in [
        "%Y-%b-%d %H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S%z",
        "%Y-%b-%d %H:%M:%S",
    ] {
        if let Ok(t) = jiff::Timestamp::strptime(format, wso2) {
            return Some(t);
        }
        if let Ok(dt) = jiff::civil::DateTime::strptime(format, wso2)
            && let Ok(t) = jiff::tz::TimeZone::UTC.to_timestamp(dt)
        {
            return Some(t);
        }
    }
    None
}

/// The instant `wait` from now, on the wall clock (what a peer can act on).
fn in_from_now(wait: Duration) -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::SignedDuration::try_from(wait)
        .ok()
        .and_then(|wait| now.checked_add(wait).ok())
        .unwrap_or(now)
}
