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
//! Audit, caching and request coalescing belong between steps 1 and 3 of this
//! function, so that every command gets them at once.
//!
//! Upstream errors become stanza errors here ([`upstream_error`]), exactly as
//! the protocol doc says: Enedis refusals → `undefined-condition` with the
//! Enedis code; Enedis unreachable → `service-unavailable`; an impossible
//! window → `bad-request`.

use std::time::Duration;

use minidom::Element;
use xmpp_parsers::jid::BareJid;

use super::authorise::{Grant, authorise};
use super::context::AgentContext;
use crate::logging::RequestLog;
use crate::quoalise::{Identifier, MetaForm, TimeSeries, encode_element};
use crate::time::Window;
use crate::upstream::{ErrorKind, UpstreamError};
use crate::xmpp::CommandError;

/// What [`fetch`] answers before the framework's own deadline does, so that the
/// peer gets this path's precise error (and the request its log line).
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// One request for readings, whatever command it came from.
#[derive(Debug, Clone)]
pub struct DataRequest {
    /// The requester's bare JID (authorisation and consents are per bare JID).
    pub requester: BareJid,
    pub identifier: Identifier,
    /// The period, `[start, end[`.
    pub window: Window,
    /// Flat for `get_history`, nested for the legacy commands.
    pub meta: MetaForm,
    /// The form fields the period came from, for error texts
    /// (e.g. `start_time/end_time`).
    pub period_fields: &'static str,
    /// When the answer is due.
    pub deadline: tokio::time::Instant,
}

/// The readings of a request, encoded.
#[derive(Debug, Clone)]
pub struct DataAnswer {
    /// The readings inside the window.
    pub series: TimeSeries,
    /// `<quoalise xmlns="urn:quoalise:0">…</quoalise>`.
    pub payload: Element,
    /// What the upstream clamped and why, for the peer.
    pub notes: Vec<String>,
    /// Why the peer could read the PRM.
    pub grant: Grant,
}

/// Authorise, fetch, encode: the one way readings reach a peer.
pub async fn fetch(
    ctx: &AgentContext,
    request: &DataRequest,
    log: &mut RequestLog,
) -> Result<DataAnswer, CommandError> {
    let prm = request.identifier.prm;
    let series = request.identifier.series;
    log.prm(&prm);
    log.window(&request.window);
    let settings = ctx.settings();

    let grant = authorise(ctx, &settings, &request.requester, prm).await?;

    let (from, to) = request
        .window
        .paris_dates()
        .map_err(|e| CommandError::bad_request(format!("fields {}: {e}", request.period_fields)))?;
    let due = request.deadline - DEADLINE_MARGIN;
    let fetched = match tokio::time::timeout_at(due, ctx.upstream.readings(prm, series, from, to))
        .await
    {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(e)) => return Err(upstream_error(&e, request.period_fields)),
        Err(_) => {
            tracing::warn!(%prm, %series, %from, %to, "Enedis did not answer before the request's deadline");
            return Err(CommandError::unavailable(
                "Enedis Data Connect did not answer in time; try again later, or ask for a shorter period",
            ));
        }
    };
    log.upstream_calls(fetched.calls);

    let mut readings = fetched.readings;
    request.window.retain(&mut readings);
    let series = TimeSeries::new(request.identifier, readings);
    let payload = encode_element(&series, request.meta).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a Quoalise payload");
        CommandError::internal(
            "the agent could not encode the answer; its operator can find details in its log",
        )
    })?;
    Ok(DataAnswer {
        series,
        payload,
        notes: fetched.notes,
        grant,
    })
}

/// The stanza error for an upstream failure. `period_fields` names the form
/// fields of the period, for window errors.
pub fn upstream_error(e: &UpstreamError, period_fields: &str) -> CommandError {
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
            tracing::info!(code, error = %e, "Enedis refused the request");
            CommandError::enedis(code, text)
        }
        ErrorKind::Unavailable => {
            // The detail (addresses, statuses) is for the operator, not the peer.
            tracing::warn!(error = %e, "Enedis is unavailable");
            let text = match e {
                UpstreamError::Quota(_) => {
                    "the agent has used its Enedis call quota for now; try again in a few minutes"
                }
                UpstreamError::BadResponse { .. } => {
                    "Enedis Data Connect answered something unreadable; try again later"
                }
                _ => "Enedis Data Connect cannot be reached right now; try again later",
            };
            CommandError::unavailable(text)
        }
        ErrorKind::BadRequest => CommandError::bad_request(format!("fields {period_fields}: {e}")),
        ErrorKind::NotAuthorized => CommandError::not_authorized(e.to_string()),
        ErrorKind::Internal => {
            tracing::error!(error = %e, "internal failure while reading Enedis");
            CommandError::internal(
                "the agent failed while reading Enedis; its operator can find details in its log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let e = upstream_error(&refused(None, ""), "x");
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
