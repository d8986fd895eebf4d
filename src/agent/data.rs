//! THE data path: every command that serves readings (`get_history`,
//! `get_load_curve`, `get_daily`, and later `subscribe`'s pushes) goes through
//! [`fetch`], and nothing else reads Enedis for a peer:
//!
//! 1. authorise: may this peer read this PRM ([`super::authorise`])?
//! 2. fetch: ask the upstream for the Paris days covering the window, within
//!    the request's deadline;
//! 3. trim to the window and encode the Quoalise payload in the meta form the
//!    peer family expects.
//!
//! Every access, allowed or refused, is written to the audit trail before it is
//! answered ([`super::audit`]), and the upstream of step 2 is the cache with
//! request coalescing ([`crate::upstream::cache`]), so every command gets them at once.
//!
//! Upstream errors become stanza errors here ([`upstream_error`]), exactly as
//! the protocol doc says: Enedis refusals → `undefined-condition` with the
//! Enedis code; Enedis unreachable → `service-unavailable`; an impossible
//! window → `bad-request`.

use std::time::Duration;

use xmpp_parsers::jid::BareJid;

use super::audit::Audit;
use super::authorise::{Grant, Platform, authorise, platform_for};
use super::context::{AgentContext, Settings};
use super::request::DataRequest;
use super::size::{may_be_too_large, too_large_before};
use crate::logging::RequestLog;
use crate::quoalise::{Step, TimeSeries};
use crate::upstream::{Ask, Class, ErrorKind, Limit, UpstreamError};
use crate::xmpp::{CommandError, RetryLater};

/// What [`fetch`] answers before the framework's own deadline does, so that the
/// peer gets this path's precise error (and the request its log line).
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The readings of a request.
#[derive(Debug, Clone)]
pub struct DataAnswer {
    /// The readings inside the window.
    pub series: TimeSeries,
    /// What the upstream clamped and why, for the peer.
    pub notes: Vec<String>,
    /// Why the peer could read the PRM.
    pub grant: Grant,
}

/// Authorise and fetch: the one way readings reach a peer. Every access,
/// allowed or refused, is written to the audit trail before it is answered
/// ([`super::audit`]).
pub async fn fetch(
    ctx: &AgentContext,
    request: &DataRequest,
    log: &mut RequestLog,
) -> Result<DataAnswer, CommandError> {
    fetch_with(ctx, request, log, Ok).await
}

/// [`fetch`], then `shape` (encoding, sizing) before the access is written to
/// the audit trail, so that the trail records what the peer gets.
pub async fn fetch_with<T: Send + 'static>(
    ctx: &AgentContext,
    request: &DataRequest,
    log: &mut RequestLog,
    shape: impl FnOnce(DataAnswer) -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    let mut audit = Audit::begin(request, log);
    let result = fetch_unaudited(ctx, request, log, &mut audit)
        .await
        .and_then(shape);
    audit.end(&ctx.store, log, result).await
}

/// The meter's step for `identifier`, when the cache knows it (the latest
/// cached days before `to`), for predicting an answer's size.
async fn known_step(ctx: &AgentContext, request: &DataRequest) -> Option<Step> {
    if let Some(step) = request.identifier.series.fixed_step() {
        return Some(step);
    }
    let (_, to) = request.window.paris_dates().ok()?;
    let from = crate::time::add_days(to, -7).ok()?;
    let generation = ctx.upstream.generation();
    let prm = request.identifier.prm;
    let series = request.identifier.series;
    let days = ctx
        .store
        .call_now(move |s| s.cached_days(generation, &prm, series, from, to))
        .await
        .ok()?;
    days.values()
        .rev()
        .find_map(|day| day.first().map(|r| r.step))
}

async fn fetch_unaudited(
    ctx: &AgentContext,
    request: &DataRequest,
    log: &mut RequestLog,
    audit: &mut Audit,
) -> Result<DataAnswer, CommandError> {
    let prm = request.identifier.prm;
    let series = request.identifier.series;
    let settings = ctx.settings();

    let grant = authorise(ctx, &settings, &request.requester, request.identifier).await?;
    audit.allowed_on(&grant);

    if let Some(room) = request.max_payload
        && may_be_too_large(request, room)
        && let Some(step) = known_step(ctx, request).await
        && let Some(refusal) = too_large_before(request, step, room)
    {
        tracing::info!(%prm, %series, %step, "answer predictably too large for one stanza: refused before calling Enedis");
        return Err(refusal);
    }

    let (from, to) = request
        .window
        .paris_dates()
        .map_err(|e| CommandError::bad_request(format!("fields {}: {e}", request.period_fields)))?;
    let due = request.deadline - DEADLINE_MARGIN;
    let ask = ask_for(&settings, &request.requester, request.class, due);
    let platform = platform_for(ctx, &grant, prm).await?;
    let read = async {
        match platform {
            Platform::DataConnect => ctx.upstream.readings(prm, series, from, to, &ask).await,
            Platform::Sge => {
                sge_client(ctx, prm)?
                    .readings(prm, series, from, to, &ask)
                    .await
            }
        }
    };
    let fetched = match tokio::time::timeout_at(due, read).await {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(e)) => return Err(upstream_error(platform, &e, request.period_fields)),
        Err(_) => {
            tracing::warn!(%prm, %series, %from, %to, platform = platform.name(), "Enedis did not answer before the request's deadline");
            return Err(CommandError::unavailable(format!(
                "{} did not answer in time; try again later, or ask for a shorter period",
                platform.name()
            )));
        }
    };
    log.upstream_calls(fetched.calls);

    let mut readings = fetched.readings;
    request.window.retain(&mut readings);
    let series = TimeSeries::new(request.identifier, readings);
    Ok(DataAnswer {
        series,
        notes: fetched.notes,
        grant,
    })
}

/// The SGE client that reads `prm`, a PRM with a declared consent; an agent
/// without `[sge]` cannot (its operator declared a consent it cannot use).
pub(super) fn sge_client(
    ctx: &AgentContext,
    prm: crate::quoalise::Prm,
) -> Result<&crate::upstream::sge::SgeClient, UpstreamError> {
    ctx.sge.as_deref().ok_or_else(|| {
        tracing::error!(%prm, "a consent declared to Enedis SGE covers this PRM, but the configuration has no [sge] section");
        UpstreamError::Config(format!(
            "PRM {prm} is read through Enedis SGE (a declared consent), but this agent has no [sge] configuration"
        ))
    })
}

/// The quota scheduler's view of a request of `requester`: its peer, with the
/// weight and the calls-per-hour cap of its `[[peers]]` entry, its class, and by
/// when its calls must have started (`due`, a little before the answer is due).
pub(super) fn ask_for(
    settings: &Settings,
    requester: &BareJid,
    class: Class,
    due: tokio::time::Instant,
) -> Ask {
    let ask = Ask::peer(requester.as_str(), class).with_deadline(due);
    match settings.peer(requester) {
        Some(peer) => ask.with_budget(peer.weight, peer.calls_per_hour),
        None => ask,
    }
}

/// The stanza error for an upstream failure on `platform`. `period_fields` names
/// the form fields of the period, for window errors.
pub fn upstream_error(platform: Platform, e: &UpstreamError, period_fields: &str) -> CommandError {
    let name = platform.name();
    match e.kind() {
        ErrorKind::Refused => {
            let code = e
                .enedis_code()
                .map(str::to_owned)
                .or_else(|| e.status().map(|s| format!("HTTP {s}")))
                .unwrap_or_else(|| "unknown".to_owned());
            let text = match e.fault() {
                Some(fault) if !fault.message.is_empty() => fault.message.clone(),
                _ => e.to_string(),
            };
            tracing::info!(code, error = %e, platform = name, "Enedis refused the request");
            CommandError::Upstream {
                issuer: platform.issuer().to_owned(),
                code,
                text,
            }
        }
        ErrorKind::Unavailable => {
            // The detail (addresses, statuses) is for the operator, not the peer.
            tracing::warn!(error = %e, "Enedis is unavailable");
            let text = match e {
                UpstreamError::Quota {
                    retry_at: Some(at),
                    limit,
                    ..
                } => {
                    let text = if *limit == Limit::PeerBudget.as_str() {
                        format!(
                            "this peer has used its Enedis call budget for now; retry after {}",
                            retry_minute(*at)
                        )
                    } else {
                        format!(
                            "the agent has used its Enedis call quota for now; retry after {}",
                            retry_minute(*at)
                        )
                    };
                    return CommandError::RetryLater(Box::new(RetryLater {
                        text,
                        at: *at,
                        limit,
                    }));
                }
                UpstreamError::Quota { retry_at: None, .. } => {
                    "the agent has used its Enedis call quota for now; try again in a few minutes"
                        .to_owned()
                }
                UpstreamError::BadResponse { .. } => {
                    format!("{name} answered something unreadable; try again later")
                }
                _ => format!("{name} cannot be reached right now; try again later"),
            };
            CommandError::unavailable(text)
        }
        // The series, not the period, is what this generation cannot serve.
        ErrorKind::BadRequest if matches!(e, UpstreamError::Unsupported(_)) => {
            CommandError::bad_request(format!("field identifier: {e}"))
        }
        ErrorKind::BadRequest => CommandError::bad_request(format!("fields {period_fields}: {e}")),
        ErrorKind::NotAuthorized => CommandError::not_authorized(e.to_string()),
        ErrorKind::NotImplemented => CommandError::FeatureNotImplemented(e.to_string()),
        ErrorKind::Internal => {
            tracing::error!(error = %e, "internal failure while reading Enedis");
            CommandError::internal(
                "the agent failed while reading Enedis; its operator can find details in its log",
            )
        }
    }
}

/// `09:42 UTC`: the minute a peer may retry at, rounded up so that it is never early
/// (with the date when it is not today's, in UTC).
fn retry_minute(at: jiff::Timestamp) -> String {
    let up = at
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Ceil),
        )
        .unwrap_or(at);
    if up.strftime("%F").to_string() == jiff::Timestamp::now().strftime("%F").to_string() {
        up.strftime("%H:%M UTC").to_string()
    } else {
        up.strftime("%F %H:%M UTC").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_minute_is_never_early() {
        let now = jiff::Timestamp::now();
        let later = |secs: i64| {
            now.checked_add(jiff::SignedDuration::from_secs(secs))
                .unwrap()
        };
        // An instant inside a minute is told as the next minute.
        let at = later(600);
        let told = retry_minute(at);
        let expected = at
            .round(
                jiff::TimestampRound::new()
                    .smallest(jiff::Unit::Minute)
                    .mode(jiff::RoundMode::Ceil),
            )
            .unwrap();
        assert!(expected >= at);
        assert!(
            told.ends_with(&expected.strftime("%H:%M UTC").to_string()),
            "{told}"
        );
        // Another day than today's (UTC) carries its date.
        let told = retry_minute(later(3 * 86_400));
        assert!(
            told.starts_with(&later(3 * 86_400).strftime("%F ").to_string()),
            "{told}"
        );
    }
    use crate::upstream::EnedisFault;

    fn refused(code: Option<&str>, message: &str) -> UpstreamError {
        UpstreamError::Refused(EnedisFault {
            endpoint: "mesure_synchrone_auto/v2/courbe_de_charge_consommation".into(),
            status: 400,
            code: code.map(str::to_owned),
            message: message.into(),
        })
    }

    #[test]
    fn refusals_carry_the_enedis_code_and_message() {
        let e = upstream_error(
            Platform::DataConnect,
            &refused(
                Some("ADAM-ERR0123"),
                "The requested period cannot be anterior to the meter's last activation date",
            ),
            "start_time/end_time",
        );
        assert_eq!(
            e,
            CommandError::enedis(
                "ADAM-ERR0123",
                "The requested period cannot be anterior to the meter's last activation date"
            )
        );
        // No code: the HTTP status stands in, never an empty attribute.
        let e = upstream_error(Platform::DataConnect, &refused(None, ""), "x");
        match e {
            CommandError::Upstream { code, text, .. } => {
                assert_eq!(code, "HTTP 400");
                assert!(text.contains("answered HTTP 400"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unavailability_hides_the_details() {
        let e = upstream_error(
            Platform::DataConnect,
            &UpstreamError::Unavailable {
                reason: "cannot connect to http://10.0.0.7:8443: refused".into(),
                fault: None,
            },
            "x",
        );
        assert!(matches!(
            e,
            CommandError::ServiceUnavailable { retry: true, .. }
        ));
        assert!(!e.to_string().contains("10.0.0.7"), "{e}");
    }

    #[test]
    fn window_errors_name_the_fields() {
        let e = upstream_error(
            Platform::DataConnect,
            &UpstreamError::BadWindow("refused: the period starts on 2030-01-01".into()),
            "start_date/end_date",
        );
        assert_eq!(
            e,
            CommandError::bad_request(
                "fields start_date/end_date: refused: the period starts on 2030-01-01"
            )
        );
    }
}
