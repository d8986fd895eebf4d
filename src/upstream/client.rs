//! [`EnedisClient`], the [`Upstream`] that calls Enedis: it picks the token of a
//! call (the application's, or a v3/v4 consent's), renews it once on a 401, splits a
//! request into the calls its window allows and sends them a few at a time, reads
//! each answer with the generation's [`Dialect`], and marks consents revoked when
//! Enedis says it no longer holds them. Consent resolution is in [`super::consent`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use jiff::civil::Date;
use reqwest::Method;
use url::Url;

use super::http::{self, Body, Call, Http, Shared, Tally};
use super::token::{AppToken, ConsentTokens};
use super::{
    Ask, Callback, ConsentDuration, Dialect, EnedisFault, Fetched, FetchedContract, QuotaLimiter,
    Upstream, UpstreamError, authorize_url, derive, dialect, error, window,
};
use crate::config::{ApiGeneration, EnedisConfig, Secret};
use crate::metrics::Metrics;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::{Consent, Store, now_seconds};
use crate::time::paris_today;

/// Upstream calls of one request in flight at once; the limiter paces them anyway.
const PARALLEL_CALLS: usize = 4;

/// Whose token a call uses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Auth {
    App,
    Consent(i64),
}

/// The upstream client for the configured generation.
pub struct EnedisClient {
    pub(super) shared: Arc<Shared>,
    dialect: Box<dyn Dialect>,
    app_token: AppToken,
    consent_tokens: Arc<ConsentTokens>,
}

impl EnedisClient {
    /// A client for `config.api`, with its own quota limiter.
    pub fn new(config: &EnedisConfig, store: Store) -> Result<EnedisClient, UpstreamError> {
        let limiter = Arc::new(QuotaLimiter::for_config(config));
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
        let http =
            Http::new(config, Arc::new(QuotaLimiter::for_config(config)))?.with_metrics(metrics);
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

    /// The quota scheduler of this application (for its ledger: `quota_ledger`).
    pub fn limiter(&self) -> &Arc<QuotaLimiter> {
        self.shared.http.limiter()
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
    pub(super) async fn auth_for(&self, prm: Prm) -> Result<Auth, UpstreamError> {
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
    pub(super) async fn authorized(
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

    /// One data call's readings, of `series` first and of every other series the
    /// answer holds ([`Dialect::parse_all`]); `Ok(None)` for `no_data_found`.
    async fn part(
        &self,
        auth: Auth,
        series: Series,
        prm: Prm,
        from: Date,
        to: Date,
        tally: &Tally,
    ) -> Result<Option<Vec<(Series, Vec<Reading>)>>, UpstreamError> {
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
            if fault.is_no_data() {
                return Ok(None);
            }
            return Err(UpstreamError::Refused(fault));
        }
        self.dialect
            .parse_all(series, &prm, from, to, &answer.body)
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
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        if !self.dialect.serves(series) {
            return Err(unsupported(self.dialect.generation(), series));
        }
        let today = paris_today(jiff::Timestamp::now());
        let plan = window::plan(series, from, to, today)?;
        let auth = self.auth_for(prm).await?;
        let tally = Tally::new(ask.clone());
        let mut parts = futures::stream::iter(plan.calls.iter().copied())
            .map(|(a, b)| self.part(auth, series, prm, a, b, &tally))
            .buffered(PARALLEL_CALLS);
        let mut all: BTreeMap<Series, Vec<Reading>> = BTreeMap::new();
        let (mut no_data, mut some_data) = (false, false);
        // In order; the first error ends the request (dropping the calls still in
        // flight: token renewals run in their own tasks and are not cut short).
        while let Some(part) = parts.next().await {
            match part? {
                Some(part) => {
                    some_data = true;
                    for (s, readings) in part {
                        all.entry(s).or_default().extend(readings);
                    }
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
        let mut readings = all.remove(&series).unwrap_or_default();
        crate::time::sort_dedup(&mut readings);
        let siblings = all
            .into_iter()
            .map(|(s, mut readings)| {
                crate::time::sort_dedup(&mut readings);
                (s, readings)
            })
            .collect();
        Ok(Fetched {
            readings,
            calls: tally.get(),
            from: plan.from,
            to: plan.to,
            notes: plan.notes,
            siblings,
        })
    }

    /// The energy per class, derived from the class's indexes ([`derive`]).
    async fn read_derived(
        &self,
        prm: Prm,
        series: Series,
        index: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        let (plan, a, b) = derived_plan(series, from, to, paris_today(jiff::Timestamp::now()))?;
        let fetched = self.read(prm, index, a, b, ask).await?;
        derived(fetched, plan)
    }
}

/// The refusal of a series that `generation` does not serve.
pub fn unsupported(generation: ApiGeneration, series: Series) -> UpstreamError {
    if series.is_sge_only() {
        return UpstreamError::Unsupported(format!(
            "series {series} is served by Enedis SGE only (C1 to C4 meters, P1 to P3 for production), and this PRM is read through Enedis Data Connect: its operator reads it through SGE once a consent for it is declared (quoalise-agent consents add --upstream sge)"
        ));
    }
    UpstreamError::Unsupported(format!(
        "series {series} is served by the Enedis Data Connect 2026 API only (index_consommation, index_production); this agent is configured for API {} (enedis.api), which has no index",
        generation.as_str()
    ))
}

/// The answer of a derived request: the days of `plan`, derived from the index
/// readings of `fetched` (which covered one more day).
/// The plan of a derived `series` over `[from, to[` (its clamping and notes)
/// and the days `[a, b[` of the index it is computed from.
pub(super) fn derived_plan(
    series: Series,
    from: Date,
    to: Date,
    today: Date,
) -> Result<(window::Plan, Date, Date), UpstreamError> {
    let plan = window::plan(series, from, to, today)?;
    let (a, b) = derive::index_days(plan.from, plan.to)
        .map_err(|e| UpstreamError::BadWindow(e.to_string()))?;
    Ok((plan, a, b))
}

pub(super) fn derived(fetched: Fetched, plan: window::Plan) -> Result<Fetched, UpstreamError> {
    let readings = derive::daily_energy(&fetched.readings, plan.from, plan.to)
        .map_err(|e| UpstreamError::Internal(format!("deriving the energy per class: {e}")))?;
    Ok(Fetched {
        readings,
        calls: fetched.calls,
        from: plan.from,
        to: plan.to,
        notes: plan.notes,
        siblings: Vec::new(),
    })
}

impl EnedisClient {
    /// When Enedis answered that it no longer holds a consent for `prm`
    /// (`ADAM-DC-0008`), neither do we: its consents are marked revoked.
    async fn forget_withdrawn<T>(&self, prm: Prm, result: &Result<T, UpstreamError>) {
        let Err(UpstreamError::Refused(fault)) = result else {
            return;
        };
        if !fault.is_no_consent() {
            return;
        }
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
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        let result = match derive::index_of(series) {
            Some(index) if self.dialect.serves(index) => {
                self.read_derived(prm, series, index, from, to, ask).await
            }
            Some(_) => Err(unsupported(self.dialect.generation(), series)),
            None => self.read(prm, series, from, to, ask).await,
        };
        self.forget_withdrawn(prm, &result).await;
        result
    }

    async fn contract(&self, prm: Prm, ask: &Ask) -> Result<FetchedContract, UpstreamError> {
        let result = self.read_contract(prm, ask).await;
        self.forget_withdrawn(prm, &result).await;
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
        self.resolve(owner, callback, duration).await
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
