//! Enedis SGE (the B2B "tiers" SOAP services) as a library: mutual TLS, its own
//! quota, and four services.
//!
//! | module | service |
//! |---|---|
//! | [`measures`] | `ConsultationMesuresDetaillees` v3.0: curves, daily energy, maxima, indexes → normalised [`Reading`]s |
//! | [`technical`] | `ConsultationDonneesTechniquesContractuelles` v1.0 → [`Contract`](crate::quoalise::Contract) |
//! | [`access`] | `CommanderServicesAccesDonnees` v1.0 and `CommanderArretServicesAccesDonnees` v1.0 |
//! | [`services`] | those orders for the declared consents of the store: ordered, recorded, stopped when the consent ends |
//!
//! [`transport`] POSTs SOAP 1.1 over mutual TLS, waits in the [`QuotaLimiter`]
//! given to it, retries a technical failure once, and turns faults into
//! [`SgeError`]s (which convert into [`UpstreamError`]); [`soap`] writes envelopes
//! and reads answers by local name. [`SgeClient`] ties them together.

pub mod access;
pub mod measures;
pub mod services;
pub mod soap;
pub mod technical;
pub mod transport;

pub use access::{AccessOrder, AccessStop, OrderAnswer};
pub use measures::{Measures, MeasuresRequest};
pub use technical::Technical;
pub use transport::{FaultKind, Service, SgeError, SgeFault, SgeSettings, SgeTransport};

use std::sync::Arc;

use jiff::civil::Date;

use crate::metrics::Metrics;
use crate::quoalise::{Prm, Reading, Series};
use crate::upstream::http::Tally;
use crate::upstream::limiter::{Ask, QuotaLimiter};
use crate::upstream::normalise::ShapeError;
use crate::upstream::{Fetched, UpstreamError};

/// The client of `[sge]`, waiting in a quota of its own (`sge.calls_per_second`,
/// `sge.calls_per_hour`, with the same share kept for interactive requests as
/// Data Connect's: [`Config::interactive_reserve_percent`], at most
/// [`Config::quota_wait_secs`] for a slot; their defaults without `[enedis]`) and
/// counting in `metrics`. Fails on an unreadable certificate, key or root.
///
/// [`Config::interactive_reserve_percent`]: crate::config::Config::interactive_reserve_percent
/// [`Config::quota_wait_secs`]: crate::config::Config::quota_wait_secs
pub fn connect(
    config: &crate::config::SgeConfig,
    quota_wait_secs: u64,
    interactive_reserve_percent: u32,
    metrics: Metrics,
) -> Result<SgeClient, SgeError> {
    let quota_wait = std::time::Duration::from_secs(quota_wait_secs);
    let settings = SgeSettings::from_config(config, quota_wait)?;
    let limiter = Arc::new(QuotaLimiter::with_reserve(
        config.calls_per_second,
        config.calls_per_hour,
        interactive_reserve_percent,
    ));
    Ok(SgeClient::new(&settings, limiter)?.with_metrics(metrics))
}

/// The SGE client of one application.
#[derive(Debug)]
pub struct SgeClient {
    transport: SgeTransport,
    login: String,
    contract_id: String,
    access: measures::AccessFrame,
}

impl SgeClient {
    /// A client presenting `settings`' certificate, waiting in `limiter` (SGE's
    /// own quota: homologation allows one call a second).
    pub fn new(settings: &SgeSettings, limiter: Arc<QuotaLimiter>) -> Result<SgeClient, SgeError> {
        Ok(SgeClient {
            transport: SgeTransport::new(settings, limiter)?,
            login: settings.login.clone(),
            contract_id: settings.contract_id.clone(),
            access: measures::AccessFrame::CustomerConsent,
        })
    }

    /// The `cadreAcces` [`SgeClient::readings`] asks under: the customer's
    /// consent (`ACCORD_CLIENT`) unless said otherwise.
    pub fn with_access_frame(mut self, access: measures::AccessFrame) -> SgeClient {
        self.access = access;
        self
    }

    /// SGE's quota scheduler (for its ledger: `upstream::quota_ledger`).
    pub fn limiter(&self) -> &Arc<QuotaLimiter> {
        self.transport.limiter()
    }

    /// Count calls and quota waits in `metrics` (`/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> SgeClient {
        self.transport = self.transport.with_metrics(metrics);
        self
    }

    /// One `ConsultationMesuresDetaillees` v3.0 call. No data (SGT4G3, or an
    /// answer without values) is an empty [`Measures`].
    pub async fn measures(
        &self,
        request: &MeasuresRequest,
        tally: &Tally,
    ) -> Result<Measures, SgeError> {
        let service = Service::Measures;
        let envelope = match self
            .transport
            .call(service, &request.payload(&self.login), tally)
            .await
        {
            Ok(envelope) => envelope,
            Err(SgeError::Fault(fault)) if fault.is_no_data() => return Ok(Measures::default()),
            Err(e) => return Err(e),
        };
        let payload = envelope.payload().ok_or_else(|| SgeError::BadResponse {
            service,
            problem: "the SOAP body is empty".to_owned(),
        })?;
        measures::parse(request, payload).map_err(|e| bad(service, e))
    }

    /// The readings of `series` for `prm` over the Paris days `[from, to[`, as the
    /// agent's [`Upstream::readings`](crate::upstream::Upstream::readings) wants
    /// them: curves by calls of at most 7 days (a week is one call), daily data by
    /// calls of at most a year, within the history SGE serves (24 months of curve,
    /// 36 of daily data: older days are left out with a note); an index answers every class
    /// (`siblings`). Under the client's `cadreAcces` ([`SgeClient::with_access_frame`]).
    pub async fn readings(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        let Some(template) =
            MeasuresRequest::for_series(prm, series, from, to).map(|r| r.with_access(self.access))
        else {
            return Err(UpstreamError::Unsupported(format!(
                "{series} is derived from the index, not read from SGE"
            )));
        };
        // SGE's limits are nearly Data Connect's (7 days of curve a call, curves
        // within 24 months, daily data within 36): the same plan, clamping and
        // notes.
        let plan = crate::upstream::window::plan_within(
            crate::upstream::window::Limits::sge(series),
            series,
            from,
            to,
            crate::time::paris_today(jiff::Timestamp::now()),
        )?;
        let tally = Tally::new(ask.clone());
        let mut readings: Vec<Reading> = Vec::new();
        let mut siblings: Vec<(Series, Vec<Reading>)> = Vec::new();
        for &(start, end) in &plan.calls {
            let request = MeasuresRequest {
                from: start,
                to: end,
                ..template.clone()
            };
            let mut all = self.measures(&request, &tally).await?.into_series(series);
            if !all.is_empty() {
                readings.extend(all.remove(0).1);
            }
            for (s, r) in all {
                match siblings.iter_mut().find(|(t, _)| *t == s) {
                    Some((_, rs)) => rs.extend(r),
                    None => siblings.push((s, r)),
                }
            }
        }
        crate::time::sort_dedup(&mut readings);
        for (_, r) in &mut siblings {
            crate::time::sort_dedup(r);
        }
        Ok(Fetched {
            readings,
            calls: tally.get(),
            from: plan.from,
            to: plan.to,
            notes: plan.notes,
            siblings,
        })
    }

    /// One `ConsultationDonneesTechniquesContractuelles` v1.0 call, with the
    /// customer's authorisation declared (`autorisationClient=true`).
    pub async fn technical(&self, prm: Prm, tally: &Tally) -> Result<Technical, SgeError> {
        let service = Service::TechnicalData;
        let envelope = self
            .transport
            .call(service, &technical::payload(&prm, &self.login), tally)
            .await?;
        let payload = envelope.payload().ok_or_else(|| SgeError::BadResponse {
            service,
            problem: "the SOAP body is empty".to_owned(),
        })?;
        technical::parse(&prm, payload, jiff::Timestamp::now().as_second())
            .map_err(|e| bad(service, e))
    }

    /// The contract data of `prm` as the agent's `get_contract` serves it (one
    /// CDTC call, not cached).
    pub async fn contract(
        &self,
        prm: Prm,
        ask: &Ask,
    ) -> Result<crate::upstream::FetchedContract, UpstreamError> {
        let tally = Tally::new(ask.clone());
        let technical = self.technical(prm, &tally).await?;
        Ok(crate::upstream::FetchedContract {
            contract: technical.contract,
            calls: tally.get(),
        })
    }

    /// Order access services (`CommanderServicesAccesDonnees` v1.0).
    pub async fn order_access(
        &self,
        order: &AccessOrder,
        tally: &Tally,
    ) -> Result<OrderAnswer, SgeError> {
        let service = Service::OrderAccess;
        let payload = order.payload(&self.login, &self.contract_id)?;
        let envelope = self.transport.call(service, &payload, tally).await?;
        access::parse_order(&envelope).map_err(|e| bad(service, e))
    }

    /// Stop access services (`CommanderArretServicesAccesDonnees` v1.0).
    pub async fn stop_access(
        &self,
        stop: &AccessStop,
        tally: &Tally,
    ) -> Result<OrderAnswer, SgeError> {
        let service = Service::StopAccess;
        let payload = stop.payload(&self.login, &self.contract_id)?;
        let envelope = self.transport.call(service, &payload, tally).await?;
        access::parse_stop(&envelope).map_err(|e| bad(service, e))
    }
}

fn bad(service: Service, e: ShapeError) -> SgeError {
    SgeError::BadResponse {
        service,
        problem: e.0,
    }
}
