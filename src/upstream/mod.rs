//! The Enedis upstream: one interface ([`Upstream`]) over four API generations.
//!
//! | `enedis.api` | consent | token | data |
//! |---|---|---|---|
//! | `2026` | v2 page → `autorisation_id` → `subscribed_services` | application | [`api2026`] |
//! | `v5` | v1 page → `usage_point_id` | application | [`v1::V5`] |
//! | `v4` | v1 page → `code` + `usage_point_id` | per consent | [`v1::V4`] |
//! | `v3` | same as v4 | per consent | [`v1::V3`] (`rank`) |
//!
//! Each API family module only knows its paths and its answer format (a
//! [`Dialect`]): [`api2026`], and [`v1`] for v3, v4 and v5, one description per
//! generation. Everything else is shared by [`EnedisClient`]: the HTTP client with
//! its timeouts and retries ([`http`]), the application-wide quota ([`limiter`]),
//! tokens ([`token`]), the day windows and their splitting ([`window`]), and the
//! consent flow ([`consent`]).
//!
//! Readings come out normalised: UTC seconds at the START of the interval they cover,
//! with their step, ordered, without duplicates, missing values as `None`.

pub mod api2026;
pub mod consent;
pub mod error;
pub mod http;
pub mod limiter;
pub mod normalise;
pub mod token;
pub mod v1;
pub mod window;

pub use consent::{Callback, ConsentDuration, authorize_url, parse_prm_list};
pub use error::{EnedisFault, ErrorKind, UpstreamError};
pub use limiter::QuotaLimiter;
pub use window::{Limits, Plan};

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use jiff::civil::Date;
use reqwest::Method;
use url::Url;

use self::http::{Body, Call, Http, Tally};
use self::normalise::ShapeError;
use self::token::{AppToken, ConsentTokens};
use crate::config::{ApiGeneration, EnedisConfig, Secret};
use crate::metrics::Metrics;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::{Consent, NewConsent, Store, now_seconds};
use crate::time::{day_start, paris_today};

/// Upstream calls of one request in flight at once; the limiter paces them anyway.
const PARALLEL_CALLS: usize = 4;

/// The readings of one request, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Normalised readings, ordered by start, without duplicates.
    pub readings: Vec<Reading>,
    /// HTTP requests sent to Enedis for this request (data, token renewals, retries).
    pub calls: u32,
    /// The Paris days actually served, `[from, to[` (after clamping).
    pub from: Date,
    pub to: Date,
    /// What was clamped and why.
    pub notes: Vec<String>,
}

/// What the agent asks of Enedis, whatever the generation. Object safe: the agent
/// holds an `Arc<dyn Upstream>`.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// The generation spoken.
    fn generation(&self) -> ApiGeneration;

    /// Readings of `series` for `prm` over the Paris days `[from, to[`.
    ///
    /// The caller has checked that the requesting peer may read `prm`; for v3/v4 the
    /// tokens of any usable consent covering `prm` are used.
    async fn readings(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Result<Fetched, UpstreamError>;

    /// The consent page to send a consumer to.
    fn authorize_url(&self, state: &str, duration: &ConsentDuration) -> Result<Url, UpstreamError>;

    /// Turn Enedis's redirect into a stored consent owned by `owner` (a normalised bare
    /// JID). `duration` is what was asked on the authorize URL (the validity of v3–v5
    /// consents; 2026 takes it from the consent's services).
    async fn resolve_consent(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError>;
}

/// One data call of a generation: where, and with which query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCall {
    pub endpoint: String,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
}

impl DataCall {
    /// A GET of `path` (absolute) with `query`; the endpoint, as logged and counted,
    /// is the path without its leading `/`.
    pub fn new(path: String, query: Vec<(&'static str, String)>) -> DataCall {
        DataCall {
            endpoint: path.trim_start_matches('/').to_owned(),
            path,
            query,
        }
    }
}

/// What differs between generations on the data side.
pub trait Dialect: Send + Sync {
    fn generation(&self) -> ApiGeneration;
    /// The call for `series` of `prm` over `[from, to[` (at most one call's worth).
    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall;
    /// Read a 2xx answer of that call into normalised readings within `[from, to[`.
    fn parse(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<Reading>, ShapeError>;
}

/// The dialect of a generation.
pub fn dialect(generation: ApiGeneration) -> Box<dyn Dialect> {
    match generation {
        ApiGeneration::Api2026 => Box::new(api2026::Api2026),
        ApiGeneration::V5 => Box::new(v1::V5),
        ApiGeneration::V4 => Box::new(v1::V4),
        ApiGeneration::V3 => Box::new(v1::V3),
    }
}

/// Whose token a call uses.
#[derive(Debug, Clone, Copy)]
enum Auth {
    App,
    Consent(i64),
}

/// What every part of the client shares: the HTTP machinery, the configuration
/// and the store.
pub(crate) struct Shared {
    pub http: Http,
    pub config: EnedisConfig,
    pub store: Store,
}

/// The upstream client for the configured generation.
pub struct EnedisClient {
    shared: Arc<Shared>,
    dialect: Box<dyn Dialect>,
    app_token: AppToken,
    consent_tokens: Arc<ConsentTokens>,
}

impl EnedisClient {
    /// A client for `config.api`, with its own quota limiter.
    pub fn new(config: &EnedisConfig, store: Store) -> Result<EnedisClient, UpstreamError> {
        let limiter = Arc::new(QuotaLimiter::new(
            config.calls_per_second,
            config.calls_per_hour,
        ));
        EnedisClient::with_limiter(config, store, limiter)
    }

    /// A client sharing `limiter` (there must be one per Enedis application).
    pub fn with_limiter(
        config: &EnedisConfig,
        store: Store,
        limiter: Arc<QuotaLimiter>,
    ) -> Result<EnedisClient, UpstreamError> {
        EnedisClient::build(Http::new(config, limiter)?, config, store)
    }

    /// A client whose calls and quota waits are counted in `metrics` (the agent's).
    pub fn with_metrics(
        config: &EnedisConfig,
        store: Store,
        metrics: Metrics,
    ) -> Result<EnedisClient, UpstreamError> {
        let limiter = Arc::new(QuotaLimiter::new(
            config.calls_per_second,
            config.calls_per_hour,
        ));
        let http = Http::new(config, limiter)?.with_metrics(metrics);
        EnedisClient::build(http, config, store)
    }

    fn build(
        http: Http,
        config: &EnedisConfig,
        store: Store,
    ) -> Result<EnedisClient, UpstreamError> {
        Ok(EnedisClient {
            shared: Arc::new(Shared {
                http,
                config: config.clone(),
                store,
            }),
            dialect: dialect(config.api),
            app_token: AppToken::new(),
            consent_tokens: Arc::new(ConsentTokens::new()),
        })
    }

    /// Refresh the tokens of v3/v4 consent `consent_id` now, storing the new pair
    /// durably; returns when the new access token expires (UTC seconds). For the
    /// admin command line and housekeeping.
    pub async fn refresh_consent(&self, consent_id: i64) -> Result<i64, UpstreamError> {
        if !self.shared.config.api.per_consent_tokens() {
            return Err(UpstreamError::BadConsentRequest(format!(
                "API generation {} has no per-consent tokens to refresh",
                self.shared.config.api.as_str()
            )));
        }
        let (_, expires_at) = self
            .consent_tokens
            .access_token(&self.shared, consent_id, None, true, &Tally::default())
            .await?;
        Ok(expires_at)
    }

    async fn token(
        &self,
        auth: Auth,
        refused: Option<&Secret>,
        tally: &Tally,
    ) -> Result<Secret, UpstreamError> {
        match auth {
            Auth::App => {
                if let Some(refused) = refused {
                    self.app_token.invalidate(refused).await;
                }
                self.app_token.get(&self.shared, tally).await
            }
            Auth::Consent(id) => self
                .consent_tokens
                .access_token(&self.shared, id, refused, false, tally)
                .await
                .map(|(token, _)| token),
        }
    }

    /// The token source for reading `prm`.
    async fn auth_for(&self, prm: Prm) -> Result<Auth, UpstreamError> {
        let generation = self.shared.config.api;
        if !generation.per_consent_tokens() {
            return Ok(Auth::App);
        }
        let now = now_seconds();
        let consents = self
            .shared
            .store
            .call(move |s| s.usable_consents_for_prm(generation, &prm, now))
            .await?;
        consents
            .into_iter()
            .find(|c| c.has_refresh_token)
            .map(|c| Auth::Consent(c.id))
            .ok_or_else(|| {
                UpstreamError::NotAuthorized(format!(
                    "no valid {} consent with a token covers PRM {prm}",
                    generation.as_str()
                ))
            })
    }

    /// A call with a bearer token, renewing the token once on a 401.
    async fn authorized(
        &self,
        auth: Auth,
        call: &Call,
        tally: &Tally,
    ) -> Result<http::Answer, UpstreamError> {
        let endpoint = call.endpoint.as_str();
        let mut refused: Option<Secret> = None;
        loop {
            let token = self.token(auth, refused.as_ref(), tally).await?;
            let answer = self.shared.http.send(call, Some(&token), tally).await?;
            if answer.status != 401 {
                return Ok(answer);
            }
            if refused.is_none() {
                tracing::info!(endpoint, "access token refused (401), renewing it once");
                refused = Some(token);
                continue;
            }
            let fault = answer.fault();
            return Err(match auth {
                Auth::App => UpstreamError::Unavailable {
                    reason: format!("Enedis refused a freshly renewed application token ({fault})"),
                    fault: Some(fault),
                },
                Auth::Consent(id) => UpstreamError::NotAuthorized(format!(
                    "Enedis refused a freshly renewed token of consent {id} ({fault})"
                )),
            });
        }
    }

    /// One data call's readings; `Ok(None)` for `no_data_found`.
    async fn part(
        &self,
        auth: Auth,
        series: Series,
        prm: Prm,
        from: Date,
        to: Date,
        tally: &Tally,
    ) -> Result<Option<Vec<Reading>>, UpstreamError> {
        let data = self.dialect.data_call(series, &prm, from, to);
        let call = Call {
            endpoint: data.endpoint,
            method: Method::GET,
            path: data.path,
            query: data.query,
            body: Body::None,
        };
        let answer = self.authorized(auth, &call, tally).await?;
        if !answer.is_success() {
            let fault = answer.fault();
            if fault.status == 404 && fault.has_code("no_data_found") {
                return Ok(None);
            }
            return Err(UpstreamError::Refused(fault));
        }
        self.dialect
            .parse(series, &prm, from, to, &answer.body)
            .map(Some)
            .map_err(|e| UpstreamError::BadResponse {
                endpoint: call.endpoint.clone(),
                status: answer.status,
                problem: e.0,
                excerpt: Some(error::excerpt(&answer.body)),
            })
    }

    async fn read(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Result<Fetched, UpstreamError> {
        let today = paris_today(jiff::Timestamp::now());
        let plan = window::plan(series, from, to, today)?;
        let auth = self.auth_for(prm).await?;
        let tally = Tally::default();
        let mut parts = futures::stream::iter(plan.calls.iter().copied())
            .map(|(a, b)| self.part(auth, series, prm, a, b, &tally))
            .buffered(PARALLEL_CALLS);
        let mut readings = Vec::new();
        let (mut no_data, mut some_data) = (false, false);
        // In order; the first error ends the request (dropping the calls still in
        // flight: token renewals run in their own tasks and are not cut short).
        while let Some(part) = parts.next().await {
            match part? {
                Some(part) => {
                    some_data = true;
                    readings.extend(part);
                }
                None => no_data = true,
            }
        }
        drop(parts);
        if no_data && !some_data {
            // Every call said no_data_found: that is Enedis's answer to the request.
            return Err(UpstreamError::Refused(EnedisFault {
                endpoint: self
                    .dialect
                    .data_call(series, &prm, plan.from, plan.to)
                    .endpoint,
                status: 404,
                code: Some("no_data_found".to_owned()),
                message: format!("no data for PRM {prm} from {} to {}", plan.from, plan.to),
            }));
        }
        crate::time::sort_dedup(&mut readings);
        Ok(Fetched {
            readings,
            calls: tally.get(),
            from: plan.from,
            to: plan.to,
            notes: plan.notes,
        })
    }

    /// 2026: the consent's PRMs and validity from `subscribed_services`.
    async fn resolve_2026(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        let raw = callback.autorisation_id.as_deref().ok_or_else(|| {
            UpstreamError::BadConsentRequest(
                "the Data Connect 2026 callback has no autorisation_id".into(),
            )
        })?;
        let autorisation_id: i64 = raw
            .parse()
            .ok()
            .filter(|n| *n >= 0 && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                UpstreamError::BadConsentRequest(format!(
                    "autorisation_id {:?} is not a non-negative integer",
                    raw.chars().take(30).collect::<String>()
                ))
            })?;
        let tally = Tally::default();
        // Every state, not only the default ACTIF and DEMANDE: a consent that cannot
        // be used then says why (TERMINE, SUPPRIME).
        let body = serde_json::json!({
            "autorisationId": autorisation_id,
            "comptage": false,
            "serviceType": "ACCES",
            "etatCode": ["ACTIF", "DEMANDE", "TERMINE", "SUPPRIME"],
        });
        let endpoint = "subscribed_services/v1";
        let call = Call {
            endpoint: endpoint.to_owned(),
            method: Method::POST,
            path: "/subscribed_services/v1/".to_owned(),
            query: Vec::new(),
            body: Body::Json(body),
        };
        let answer = self.authorized(Auth::App, &call, &tally).await?;
        if !answer.is_success() {
            return Err(UpstreamError::Refused(answer.fault()));
        }
        let scope =
            api2026::parse_services(&answer.body).map_err(|e| UpstreamError::BadResponse {
                endpoint: endpoint.to_owned(),
                status: answer.status,
                problem: e.0,
                excerpt: Some(error::excerpt(&answer.body)),
            })?;
        if let Some(why) = scope.why_unusable() {
            return Err(UpstreamError::ConsentRefused {
                error: "no_active_service".into(),
                description: Some(format!("autorisation {autorisation_id}: {why}")),
            });
        }
        let now = now_seconds();
        let valid_from = match scope.start {
            Some(day) => {
                day_start(day).map_err(|e| UpstreamError::BadConsentRequest(e.to_string()))?
            }
            None => now,
        };
        let valid_until = match scope.end {
            // Like every Enedis period, a service runs [dateDebut, dateFin[: the
            // consent ends at Paris midnight starting dateFin.
            Some(day) => {
                day_start(day).map_err(|e| UpstreamError::BadConsentRequest(e.to_string()))?
            }
            None => duration.end_from(now)?,
        };
        if valid_until <= now {
            return Err(UpstreamError::BadConsentRequest(format!(
                "autorisation {autorisation_id}: its services ended on {}",
                scope.end.map(|d| d.to_string()).unwrap_or_default()
            )));
        }
        let new = NewConsent {
            generation: ApiGeneration::Api2026,
            owner: owner.to_owned(),
            prms: scope.prms,
            autorisation_id: Some(autorisation_id),
            valid_from,
            valid_until,
        };
        Ok(self
            .shared
            .store
            .call(move |s| s.add_consent(&new, None))
            .await?)
    }

    /// v3/v4: exchange the code at once, store the consent with its tokens.
    async fn resolve_with_code(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        let code = callback.code.clone().ok_or_else(|| {
            UpstreamError::BadConsentRequest(format!(
                "the {} callback has no code",
                self.shared.config.api.as_str()
            ))
        })?;
        // In its own task: once Enedis has answered, the code is spent and the tokens
        // exist nowhere else; a caller giving up must not cancel their commit.
        let task = tokio::spawn(token::exchange_code(
            Arc::clone(&self.shared),
            owner.to_owned(),
            code,
            callback.usage_point_id.clone(),
            duration.clone(),
        ));
        task.await
            .map_err(|e| UpstreamError::Internal(format!("the code exchange task failed: {e}")))?
    }

    /// v5: the PRMs are in the callback; the application token reads them.
    async fn resolve_v5(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        let list = callback.usage_point_id.as_deref().ok_or_else(|| {
            UpstreamError::BadConsentRequest("the v5 callback has no usage_point_id".into())
        })?;
        let now = now_seconds();
        let new = NewConsent {
            generation: ApiGeneration::V5,
            owner: owner.to_owned(),
            prms: parse_prm_list(list, "usage_point_id")?,
            autorisation_id: None,
            valid_from: now,
            valid_until: duration.end_from(now)?,
        };
        Ok(self
            .shared
            .store
            .call(move |s| s.add_consent(&new, None))
            .await?)
    }
}

#[async_trait]
impl Upstream for EnedisClient {
    fn generation(&self) -> ApiGeneration {
        self.dialect.generation()
    }

    async fn readings(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
    ) -> Result<Fetched, UpstreamError> {
        let result = self.read(prm, series, from, to).await;
        if let Err(UpstreamError::Refused(fault)) = &result
            && fault.is_no_consent()
        {
            // Enedis no longer holds a consent for this PRM: neither do we.
            let generation = self.shared.config.api;
            match self
                .shared
                .store
                .call(move |s| s.revoke_prm(generation, &prm))
                .await
            {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(%prm, consents = ?ids, "Enedis answered ADAM-DC-0008: consents marked revoked");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(%prm, error = %e, "cannot mark consents revoked"),
            }
        }
        result
    }

    fn authorize_url(&self, state: &str, duration: &ConsentDuration) -> Result<Url, UpstreamError> {
        authorize_url(&self.shared.config, state, duration)
    }

    async fn resolve_consent(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        if let Some(refusal) = callback.refusal() {
            return Err(refusal);
        }
        match self.shared.config.api {
            ApiGeneration::Api2026 => self.resolve_2026(owner, callback, duration).await,
            ApiGeneration::V5 => self.resolve_v5(owner, callback, duration).await,
            ApiGeneration::V4 | ApiGeneration::V3 => {
                self.resolve_with_code(owner, callback, duration).await
            }
        }
    }
}

/// The upstream for `config`, ready to share, counting its calls in `metrics`.
pub fn connect(
    config: &EnedisConfig,
    store: Store,
    metrics: Metrics,
) -> Result<Arc<dyn Upstream>, UpstreamError> {
    Ok(Arc::new(EnedisClient::with_metrics(
        config, store, metrics,
    )?))
}
