//! The access services of declared consents, between the store and SGE: order
//! them for a consent (`consents add --collect`, `consents collect`), and stop
//! them when the consent ends (`consents revoke`, the daemon's housekeeping).
//!
//! Every service SGE accepts is recorded at once
//! ([`Store::record_access_service`]); every stop is recorded, and a failed one
//! keeps the service active with its failure, for the next attempt.

use jiff::civil::Date;

use super::access::{self, AccessOrder, AccessStop, Consent as Declared, Person, ServiceOrder};
use super::{SgeClient, SgeError};
use crate::quoalise::{Direction, Prm};
use crate::store::{
    AccessService, Civility, Consent, NewAccessService, SgeDataType, SgeHolder, Store, StoreError,
};
use crate::upstream::http::Tally;

/// Why services could not be ordered for a consent at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("consent {0} is not an Enedis SGE consent: Data Connect has no access services")]
    NotSge(i64),
    #[error(
        "consent {id} is not usable now ({why}): SGE services are ordered for a consent in force"
    )]
    NotUsable { id: i64, why: String },
    #[error("consent {id} ends on {end} (Paris): SGE needs a dateFin after today ({today})")]
    EndsToday { id: i64, end: Date, today: Date },
    #[error("no data type to collect")]
    NothingAsked,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Time(String),
}

/// What happened to one PRM of an order.
#[derive(Debug)]
pub struct PrmOrder {
    pub prm: Prm,
    /// Types already collected for this consent and PRM: not ordered again.
    pub already: Vec<SgeDataType>,
    /// The services SGE accepted and the agent recorded.
    pub ordered: Vec<AccessService>,
    /// SGE's refusal or why the order failed (nothing ordered for this PRM), or
    /// what went wrong after SGE accepted (some of `ordered` may be missing).
    pub error: Option<OrderError>,
}

/// Why a PRM's order failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// SGE refused, or was not reached.
    #[error(transparent)]
    Sge(#[from] SgeError),
    /// SGE accepted but its answer cannot be recorded as it is.
    #[error("SGE accepted the order but {0}")]
    Answer(String),
    /// SGE accepted but the store did not record it: the operator must note it.
    #[error("SGE accepted service {service_id} ({data}) but the store did not record it: {source}")]
    Unrecorded {
        service_id: String,
        data: SgeDataType,
        #[source]
        source: StoreError,
    },
}

impl OrderError {
    /// SGE's code (`SGT401`…) and label when SGE refused with one.
    pub fn sgt(&self) -> Option<(&str, &str)> {
        match self {
            OrderError::Sge(SgeError::Fault(fault)) => fault
                .code
                .as_deref()
                .map(|code| (code, fault.message.as_str())),
            _ => None,
        }
    }

    /// SGE failed for a technical reason (`SGT500`, `SGT506`…): a later retry may
    /// succeed as it is.
    pub fn is_technical(&self) -> bool {
        matches!(self, OrderError::Sge(SgeError::Fault(fault)) if fault.kind() == super::FaultKind::Technical)
    }
}

/// The `dateFin` of a consent's services: the Paris day its validity ends on
/// (a service never outlives its consent).
pub fn end_date(consent: &Consent) -> Result<Date, CollectError> {
    crate::time::paris_date(consent.valid_until).map_err(|e| CollectError::Time(e.to_string()))
}

fn declared(holder: &SgeHolder) -> Declared {
    let person = match holder {
        SgeHolder::Person {
            civility,
            last_name,
            first_name,
        } => Person::Natural {
            civility: civility.map(|c| match c {
                Civility::M => access::Civility::Mr,
                Civility::Mme => access::Civility::Mrs,
            }),
            last_name: last_name.clone(),
            first_name: first_name.clone(),
        },
        SgeHolder::Company { name } => Person::Legal { name: name.clone() },
    };
    Declared {
        given: true,
        person: Some(person),
    }
}

fn data_type(t: SgeDataType) -> access::DataType {
    match t {
        SgeDataType::LoadCurve => access::DataType::Curve,
        SgeDataType::Index => access::DataType::Index,
        SgeDataType::MaxPower => access::DataType::MaxPower,
        SgeDataType::Energy => access::DataType::Energy,
    }
}

/// Order the services `types` for every PRM of `consent` (an SGE consent usable at
/// `now`), consumption side, until the consent's end, declaring its holder; one
/// order per PRM, types already active for the consent and PRM left out. Each
/// accepted service is recorded before the next PRM is ordered.
pub async fn order_for_consent(
    store: &Store,
    client: &SgeClient,
    consent: &Consent,
    types: &[SgeDataType],
    now: i64,
    tally: &Tally,
) -> Result<Vec<PrmOrder>, CollectError> {
    let Some(declaration) = &consent.sge else {
        return Err(CollectError::NotSge(consent.id));
    };
    if !consent.is_usable_at(now) {
        let why = if consent.state != crate::store::ConsentState::Active {
            consent.state.to_string()
        } else if now < consent.valid_from {
            "not started yet".to_owned()
        } else {
            "past its validity".to_owned()
        };
        return Err(CollectError::NotUsable {
            id: consent.id,
            why,
        });
    }
    if types.is_empty() {
        return Err(CollectError::NothingAsked);
    }
    let end = end_date(consent)?;
    let today = crate::time::paris_date(now).map_err(|e| CollectError::Time(e.to_string()))?;
    if end <= today {
        return Err(CollectError::EndsToday {
            id: consent.id,
            end,
            today,
        });
    }
    let mut outcomes = Vec::new();
    for prm in &consent.prms {
        let mut already = Vec::new();
        let mut wanted = Vec::new();
        for &t in types {
            let (id, p) = (consent.id, *prm);
            if store
                .call(move |s| s.has_active_access_service(id, &p, t))
                .await?
            {
                already.push(t);
            } else if !wanted.contains(&t) {
                wanted.push(t);
            }
        }
        let mut outcome = PrmOrder {
            prm: *prm,
            already,
            ordered: Vec::new(),
            error: None,
        };
        if wanted.is_empty() {
            outcomes.push(outcome);
            continue;
        }
        let order = AccessOrder {
            prm: *prm,
            reference: None,
            end: Some(end),
            direction: Direction::Consumption,
            consent: Some(declared(&declaration.holder)),
            services: wanted
                .iter()
                .map(|&t| ServiceOrder {
                    data: data_type(t),
                    publications: Vec::new(),
                })
                .collect(),
        };
        match client.order_access(&order, tally).await {
            Err(e) => outcome.error = Some(e.into()),
            Ok(answer) => {
                if let Err(e) =
                    record_order(store, consent.id, *prm, end, &wanted, answer, &mut outcome).await
                {
                    outcome.error = Some(e);
                }
            }
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Record each service of an accepted order, matching the answer's affairs to the
/// types asked by their `mesuresTypeCode`, else by position.
async fn record_order(
    store: &Store,
    consent_id: i64,
    prm: Prm,
    end: Date,
    wanted: &[SgeDataType],
    answer: access::OrderAnswer,
    outcome: &mut PrmOrder,
) -> Result<(), OrderError> {
    let with_service: Vec<_> = answer
        .affairs
        .iter()
        .filter(|a| a.service_id.is_some())
        .collect();
    if with_service.is_empty() {
        return Err(OrderError::Answer(
            "its answer names no serviceSouscritId".to_owned(),
        ));
    }
    for (i, affair) in with_service.iter().enumerate() {
        let data = match affair.data.as_deref().and_then(SgeDataType::from_code) {
            Some(d) => d,
            None => match wanted.get(i) {
                Some(&d) => d,
                None => {
                    return Err(OrderError::Answer(format!(
                        "its answer has more services than asked (affaire {})",
                        affair.id
                    )));
                }
            },
        };
        let new = NewAccessService {
            consent_id,
            prm,
            data,
            service_id: affair.service_id.clone().unwrap_or_default(),
            affair_id: Some(affair.id.clone()),
            end,
        };
        let service_id = new.service_id.clone();
        match store.call(move |s| s.record_access_service(&new)).await {
            Ok(service) => outcome.ordered.push(service),
            Err(source) => {
                return Err(OrderError::Unrecorded {
                    service_id,
                    data,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// How a service's stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// SGE stopped it (`CommanderArretServicesAccesDonnees` answered).
    Stopped,
    /// It had reached its `dateFin`: Enedis ended it, nothing was asked.
    Ended,
    /// SGE knows no active service of that id (SGT4G3): stopped already (an
    /// earlier stop whose answer was lost, or ended at Enedis).
    NotActiveAtEnedis,
    /// The stop failed (recorded; the service stays active for the next try).
    Failed(String),
}

/// One service's stop.
#[derive(Debug, Clone)]
pub struct StopOutcome {
    pub service: AccessService,
    pub result: StopResult,
}

/// Stop `services` (active ones): one stop order per PRM, those past their
/// `dateFin` on Paris' `today` marked stopped without a call. Every outcome is
/// recorded in the store. A store failure ends the run (what was done stays
/// recorded).
pub async fn stop_services(
    store: &Store,
    client: &SgeClient,
    services: Vec<AccessService>,
    today: Date,
    tally: &Tally,
) -> Result<Vec<StopOutcome>, StoreError> {
    let now = crate::store::now_seconds();
    let mut outcomes = Vec::new();
    let mut by_prm: Vec<(Prm, Vec<AccessService>)> = Vec::new();
    for service in services.into_iter().filter(AccessService::is_active) {
        if service.ended_by(today) {
            mark_stopped(store, &service.service_id, now).await?;
            outcomes.push(StopOutcome {
                service,
                result: StopResult::Ended,
            });
            continue;
        }
        match by_prm.iter_mut().find(|(p, _)| *p == service.prm) {
            Some((_, list)) => list.push(service),
            None => by_prm.push((service.prm, vec![service])),
        }
    }
    for (prm, list) in by_prm {
        let stop = AccessStop {
            prm,
            reference: None,
            direction: Direction::Consumption,
            services: list.iter().map(|s| s.service_id.clone()).collect(),
        };
        let result = match client.stop_access(&stop, tally).await {
            Ok(_) => StopResult::Stopped,
            Err(SgeError::Fault(fault)) if fault.has_code("SGT4G3") => {
                StopResult::NotActiveAtEnedis
            }
            Err(e) => StopResult::Failed(e.to_string()),
        };
        for service in list {
            match &result {
                StopResult::Failed(why) => {
                    let (id, why) = (service.service_id.clone(), why.clone());
                    store
                        .call(move |s| s.record_access_stop_failure(&id, &why, now))
                        .await?;
                }
                _ => {
                    mark_stopped(store, &service.service_id, now).await?;
                }
            }
            outcomes.push(StopOutcome {
                service,
                result: result.clone(),
            });
        }
    }
    Ok(outcomes)
}

async fn mark_stopped(store: &Store, service_id: &str, at: i64) -> Result<bool, StoreError> {
    let id = service_id.to_owned();
    store
        .call(move |s| s.mark_access_service_stopped(&id, at))
        .await
}

/// The active services of `consent_id`, stopped ([`stop_services`]).
pub async fn stop_consent_services(
    store: &Store,
    client: &SgeClient,
    consent_id: i64,
    now: i64,
    tally: &Tally,
) -> Result<Vec<StopOutcome>, StoreError> {
    let services: Vec<AccessService> = store
        .call(move |s| s.access_services_of_consent(consent_id))
        .await?
        .into_iter()
        .filter(AccessService::is_active)
        .collect();
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let today = paris_today(now)?;
    stop_services(store, client, services, today, tally).await
}

/// One pass of the housekeeping: stop at most `limit` active services of consents
/// no longer usable at `now` (revoked, expired, past their validity), failures
/// tried again after those never tried.
pub async fn stop_ended_consents(
    store: &Store,
    client: &SgeClient,
    now: i64,
    limit: usize,
    tally: &Tally,
) -> Result<Vec<StopOutcome>, StoreError> {
    let services = store
        .call(move |s| s.access_services_to_stop(now, limit))
        .await?;
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let today = paris_today(now)?;
    stop_services(store, client, services, today, tally).await
}

fn paris_today(now: i64) -> Result<Date, StoreError> {
    crate::time::paris_date(now).map_err(|e| StoreError::Invalid(format!("today: {e}")))
}
