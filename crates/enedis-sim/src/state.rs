//! The simulator's mutable state: consents, codes, tokens, quota windows, fault
//! switches and call counters, behind one cheap-to-clone handle.
//!
//! A std `Mutex` is enough: every critical section is short and never awaits, and a
//! poisoned lock is recovered (the state stays consistent between statements).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::model::Prm;
use crate::paris::paris_today;

use super::catalogue::{CALENDAR_PRMS, PROFILES, PT10M_PRM, PT60M_PRM};
use super::synth::unit;
use super::tariff::IndexCache;
use crate::options::Options;

/// Handle on the whole simulator state.
#[derive(Clone)]
pub struct Sim(Arc<Shared>);

struct Shared {
    options: Options,
    state: Mutex<State>,
    index: IndexCache,
}

impl Sim {
    pub fn new(options: Options) -> Sim {
        let state = State::new(&options);
        Sim(Arc::new(Shared {
            options,
            state: Mutex::new(state),
            index: IndexCache::default(),
        }))
    }

    /// The options the simulator was started with.
    pub fn options(&self) -> &Options {
        &self.0.options
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self) -> &IndexCache {
        &self.0.index
    }

    /// "Today" in Paris: the fixed date if one is set, else the real date.
    pub fn today(&self) -> Date {
        self.lock()
            .config
            .today
            .unwrap_or_else(|| paris_today(Timestamp::now()))
    }

    /// Whether a token held by `holder` may read `prm` today.
    pub fn may_read(&self, holder: Holder, prm: Prm) -> bool {
        // `today()` takes the lock: compute it before taking it again.
        let today = self.today();
        self.lock().may_read(holder, prm, today)
    }

    /// Back to the state right after start.
    pub fn reset(&self) {
        *self.lock() = State::new(&self.0.options);
    }
}

/// Settings that can change at run time (`/sim/admin/config`).
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeConfig {
    /// The application's registered redirect URI.
    #[serde(serialize_with = "url_as_str")]
    pub redirect_uri: Option<Url>,
    /// Fixed "today" (Paris); `None` follows the clock.
    pub today: Option<Date>,
    /// Lifetime of access tokens, seconds.
    pub token_ttl_secs: u64,
    /// `/oauth2/v3/token` answers `expires_in` as a string (v5 openapi) instead of a
    /// number (2026).
    pub expires_in_as_string: bool,
}

fn url_as_str<S: serde::Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_str(u.as_str()),
        None => s.serialize_none(),
    }
}

/// How a consent came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Held from the start (sandbox profiles 0–7, PT10M and PT60M meters).
    Standing,
    /// Given on the v1 consent page (code grant).
    V1,
    /// Given on the v2 (2026) consent page (`autorisation_id`).
    V2,
}

/// One consent (an "autorisation" in 2026 terms).
#[derive(Debug, Clone, Serialize)]
pub struct Consent {
    pub id: u64,
    pub prms: Vec<Prm>,
    pub origin: Origin,
    pub profile: Option<u8>,
    /// The ISO 8601 duration asked.
    pub duration: String,
    pub granted: Date,
    pub expires: Date,
    pub revoked: Option<Date>,
}

impl Consent {
    pub fn active(&self, today: Date) -> bool {
        self.revoked.is_none() && today < self.expires
    }
}

/// A v1 authorization code (single use, 180 s).
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub consent: u64,
    pub redirect_uri: String,
    pub expires: Timestamp,
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "consent")]
pub enum Holder {
    /// `client_credentials` token (v5, 2026): the whole application.
    Application,
    /// v3/v4 token, bound to one consent and its PRMs.
    Consent(u64),
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub holder: Holder,
    pub issued: Timestamp,
    pub expires: Timestamp,
}

#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub consent: u64,
    /// The token this one replaced. It stays valid until this one is first used, so a
    /// client that dies between our answer and its own commit can still refresh with
    /// the token it kept; once the new token is used, the old one is dead.
    pub predecessor: Option<String>,
    /// The token issued the last time this one was used, while it has not been used.
    /// Using this token again (the client lost that answer) kills that successor.
    pub successor: Option<String>,
}

/// Quota limits; 0 means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimits {
    /// Calls per second, per API.
    pub per_second: u32,
    /// Calls per hour, per 2026 API (`mesure_synchrone_auto`, `subscribed_services`,
    /// each ITC API).
    pub per_hour_2026: u32,
    /// Calls per hour for all v5 APIs together.
    pub per_hour_v5: u32,
    /// Calls per hour for the v3 and v4 metering APIs together.
    pub per_hour_v1: u32,
}

impl QuotaLimits {
    pub fn from_options(o: &Options) -> QuotaLimits {
        QuotaLimits {
            per_second: o.quota_per_second,
            per_hour_2026: o.quota_per_hour.unwrap_or(1000),
            per_hour_v5: o.quota_per_hour.unwrap_or(10_000),
            per_hour_v1: o.quota_per_hour.unwrap_or(10_000),
        }
    }
}

/// Which window refused a call, and when the next call would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Second { retry_after: Duration },
    Hour { retry_after: Duration },
}

/// Sliding one-second and one-hour windows per quota bucket.
#[derive(Debug)]
pub struct Quota {
    pub limits: QuotaLimits,
    windows: HashMap<String, VecDeque<Instant>>,
}

const HOUR: Duration = Duration::from_secs(3600);
const SECOND: Duration = Duration::from_secs(1);

impl Quota {
    fn new(limits: QuotaLimits) -> Quota {
        Quota {
            limits,
            windows: HashMap::new(),
        }
    }

    pub fn clear_usage(&mut self) {
        self.windows.clear();
    }

    /// Count a call in `bucket` unless a window is full. Refused calls do not count.
    pub fn admit(&mut self, bucket: &str, per_hour: u32, now: Instant) -> Result<(), Throttled> {
        let per_second = self.limits.per_second;
        let window = self.windows.entry(bucket.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        if per_second > 0 {
            let recent: Vec<&Instant> = window
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < SECOND)
                .collect();
            if recent.len() >= per_second as usize {
                let oldest = recent[per_second as usize - 1];
                return Err(Throttled::Second {
                    retry_after: SECOND.saturating_sub(now.duration_since(*oldest)),
                });
            }
        }
        if per_hour > 0 && window.len() >= per_hour as usize {
            let oldest = window[window.len() - per_hour as usize];
            return Err(Throttled::Hour {
                retry_after: HOUR.saturating_sub(now.duration_since(oldest)),
            });
        }
        window.push_back(now);
        Ok(())
    }

    /// Calls counted in each bucket over the last hour.
    pub fn usage(&self, now: Instant) -> BTreeMap<String, usize> {
        self.windows
            .iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    w.iter().filter(|t| now.duration_since(**t) < HOUR).count(),
                )
            })
            .collect()
    }
}

/// A forced answer for the next `count` matching calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedStatus {
    pub status: u16,
    /// Body to send; default: the generation's error body for that status.
    #[serde(default)]
    pub body: Option<String>,
    /// Content-Type of `body`; default `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// Fault switches (`/sim/admin/faults`). A POST replaces them all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Delay before answering each affected call.
    pub latency_ms: u64,
    /// Fraction (0 to 1) of affected calls answered 500 technical_error.
    pub failure_rate: f64,
    /// A forced status (and body) for the next N affected calls.
    pub force_status: Option<ForcedStatus>,
    /// The next N affected JSON answers are cut in the middle.
    pub truncated_body: u32,
    /// The next N affected calls get a 503 HTML error page.
    pub html_body: u32,
    /// JSON answers carry `Content-Type: application/octet-stream` (as 2026 does).
    pub octet_stream: bool,
    /// The consent pages redirect with the portal error.
    pub portal_error: bool,
    /// 2026 answers write missing points as `"v": null` instead of leaving them out.
    pub null_gaps: bool,
    /// Calls affected: paths starting with this prefix; default every data call
    /// (all API calls except the token endpoints).
    pub path_prefix: Option<String>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.failure_rate) || self.failure_rate.is_nan() {
            return Err(format!(
                "failure_rate must be between 0 and 1, not {}",
                self.failure_rate
            ));
        }
        if self.latency_ms > 600_000 {
            return Err("latency_ms must be at most 600000 (10 minutes)".to_owned());
        }
        if let Some(f) = &self.force_status {
            if !(100..=599).contains(&f.status) {
                return Err(format!(
                    "force_status.status must be an HTTP status (100-599), not {}",
                    f.status
                ));
            }
            if let Some(ct) = &f.content_type
                && axum::http::HeaderValue::from_str(ct).is_err()
            {
                return Err(format!(
                    "force_status.content_type is not a valid header value: {ct:?}"
                ));
            }
        }
        if let Some(p) = &self.path_prefix
            && !p.starts_with('/')
        {
            return Err(format!("path_prefix must start with '/', not {p:?}"));
        }
        Ok(())
    }
}

/// Calls to one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallCounter {
    pub count: u64,
    /// Count per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
}

/// One recorded request (secrets removed from the query).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
}

/// Everything that changes while the simulator runs.
#[derive(Debug)]
pub struct State {
    pub config: RuntimeConfig,
    pub consents: BTreeMap<u64, Consent>,
    next_consent: u64,
    pub codes: HashMap<String, CodeGrant>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshGrant>,
    pub quota: Quota,
    pub faults: Faults,
    fault_rolls: u64,
    pub calls: BTreeMap<String, CallCounter>,
    pub total_calls: u64,
    pub requests: VecDeque<RequestRecord>,
    /// SGE access services (`CommanderServicesAccesDonnees`).
    pub sge: crate::access_services::Services,
    /// When the SGE calls of the last second were admitted (`--sge-pace`).
    pub sge_window: VecDeque<Instant>,
}

/// How many recent requests `/sim/admin/requests` keeps.
const REQUEST_LOG: usize = 2000;
/// First consent id; standing consents take the first ones, in a fixed order.
const FIRST_CONSENT_ID: u64 = 100_000_001;

impl State {
    fn new(options: &Options) -> State {
        let today = options
            .today
            .unwrap_or_else(|| paris_today(Timestamp::now()));
        let mut state = State {
            config: RuntimeConfig {
                redirect_uri: options.redirect_uri.clone(),
                today: options.today,
                token_ttl_secs: options.token_ttl_secs,
                expires_in_as_string: options.expires_in_as_string,
            },
            consents: BTreeMap::new(),
            next_consent: FIRST_CONSENT_ID,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            quota: Quota::new(QuotaLimits::from_options(options)),
            faults: Faults::default(),
            fault_rolls: 0,
            calls: BTreeMap::new(),
            sge: Default::default(),
            sge_window: VecDeque::new(),
            total_calls: 0,
            requests: VecDeque::new(),
        };
        let groups = PROFILES
            .iter()
            .filter(|p| p.digit <= 7)
            .map(|p| (Some(p.digit), p.prms.to_vec()))
            .chain([(None, vec![PT10M_PRM]), (None, vec![PT60M_PRM])])
            .chain(CALENDAR_PRMS.iter().map(|prm| (None, vec![*prm])));
        for (profile, prms) in groups {
            let prms = prms.iter().filter_map(|s| s.parse().ok()).collect();
            let expires = today.saturating_add(3.years());
            state.add_consent(
                prms,
                Origin::Standing,
                profile,
                "P3Y".to_owned(),
                today,
                expires,
            );
        }
        state
    }

    /// Record a new consent; returns its id.
    pub fn add_consent(
        &mut self,
        prms: Vec<Prm>,
        origin: Origin,
        profile: Option<u8>,
        duration: String,
        granted: Date,
        expires: Date,
    ) -> u64 {
        let id = self.next_consent;
        self.next_consent += 1;
        self.consents.insert(
            id,
            Consent {
                id,
                prms,
                origin,
                profile,
                duration,
                granted,
                expires,
                revoked: None,
            },
        );
        id
    }

    /// Whether the application may read `prm` with a token held by `holder`.
    pub fn may_read(&self, holder: Holder, prm: Prm, today: Date) -> bool {
        match holder {
            Holder::Application => self
                .consents
                .values()
                .any(|c| c.active(today) && c.prms.contains(&prm)),
            Holder::Consent(id) => self
                .consents
                .get(&id)
                .is_some_and(|c| c.active(today) && c.prms.contains(&prm)),
        }
    }

    /// Revoke every consent covering `prm`; returns how many were active.
    pub fn revoke_prm(&mut self, prm: Prm, today: Date) -> usize {
        let mut n = 0;
        for c in self.consents.values_mut() {
            if c.prms.contains(&prm) && c.revoked.is_none() {
                c.revoked = Some(today);
                n += 1;
            }
        }
        n
    }

    /// Replace the fault switches (and restart the failure sequence).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.fault_rolls = 0;
    }

    /// Whether the next affected call fails, per `failure_rate`. Deterministic: the
    /// n-th call after the faults were set always gets the same roll.
    pub fn roll_failure(&mut self) -> bool {
        if self.faults.failure_rate <= 0.0 {
            return false;
        }
        self.fault_rolls += 1;
        unit(0xFA11_7E57, 0, self.fault_rolls as i64) < self.faults.failure_rate
    }

    pub fn record(&mut self, method: &str, path: &str, query: Option<String>, status: u16) {
        self.total_calls += 1;
        let counter = self.calls.entry(format!("{method} {path}")).or_default();
        counter.count += 1;
        *counter.statuses.entry(status).or_default() += 1;
        if self.requests.len() == REQUEST_LOG {
            self.requests.pop_front();
        }
        self.requests.push_back(RequestRecord {
            seq: self.total_calls,
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            status,
        });
    }

    pub fn clear_calls(&mut self) {
        self.calls.clear();
        self.total_calls = 0;
        self.requests.clear();
    }

    /// Forget expired codes and tokens (called on each issue, keeps maps small).
    pub fn sweep(&mut self, now: Timestamp) {
        self.codes.retain(|_, c| c.expires > now);
        self.access.retain(|_, t| t.expires > now);
    }
}

/// An unguessable token: 40 characters of [A-Za-z0-9].
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32) -> QuotaLimits {
        QuotaLimits {
            per_second,
            per_hour_2026: 3,
            per_hour_v5: 10,
            per_hour_v1: 10,
        }
    }

    #[test]
    fn quota_windows() {
        let mut q = Quota::new(limits(2));
        let t0 = Instant::now();
        assert!(q.admit("a", 3, t0).is_ok());
        assert!(q.admit("a", 3, t0).is_ok());
        assert!(matches!(q.admit("a", 3, t0), Err(Throttled::Second { .. })));
        assert!(q.admit("b", 3, t0).is_ok(), "buckets are separate");
        let t1 = t0 + Duration::from_millis(1500);
        assert!(q.admit("a", 3, t1).is_ok());
        let Err(Throttled::Hour { retry_after }) = q.admit("a", 3, t1) else {
            panic!("hour window");
        };
        assert!(retry_after > Duration::from_secs(3590));
        let t2 = t0 + HOUR + Duration::from_millis(10);
        assert!(q.admit("a", 3, t2).is_ok());
    }

    #[test]
    fn failure_rolls_are_deterministic() {
        let options = Options::default();
        let mut a = State::new(&options);
        let mut b = State::new(&options);
        let faults = Faults {
            failure_rate: 0.5,
            ..Faults::default()
        };
        a.set_faults(faults.clone());
        b.set_faults(faults);
        let ra: Vec<bool> = (0..50).map(|_| a.roll_failure()).collect();
        let rb: Vec<bool> = (0..50).map(|_| b.roll_failure()).collect();
        assert_eq!(ra, rb);
        let n = ra.iter().filter(|x| **x).count();
        assert!((10..40).contains(&n), "{n}");
    }
}
