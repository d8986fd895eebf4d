//! The audit trail of the data path: every access that reaches
//! [`super::data::fetch`] or [`super::contract::fetch_contract`], allowed or
//! refused, is written to the store ([`crate::store::audit`]) before its answer
//! leaves the agent (a contract read as `contract`, without a range).
//!
//! The row and the request's log line are filled from ONE record, the
//! request's [`RequestLog`]: [`Audit::begin`] writes the PRM and the period into
//! it, the data path adds the upstream calls to it, and [`Audit::end`] reads the
//! command, the calls and the duration back from it.
//!
//! The store's schema refuses an allowed row without a valid basis. That check is
//! the last word: if the consent ended while the data was being fetched, the
//! insert fails, and the peer gets `not-authorized` instead of the data (and a
//! refused row is written). If the trail cannot be written at all, readings are
//! not served either (fail closed): an access that is not on record does not
//! happen. Refusals and failures are always answered as they are, the trail
//! problem is logged.

use xmpp_parsers::jid::BareJid;

use super::authorise::Grant;
use super::context::AgentContext;
use super::request::DataRequest;
use crate::logging::RequestLog;
use crate::quoalise::{Prm, Series};
use crate::store::{
    Access, AccessBasis, AccessError, AccessOutcome, AuditError, Store, StoreError, Subject,
    now_seconds,
};
use crate::xmpp::CommandError;

/// The basis the store records for a grant of the data path.
pub fn basis_of(grant: &Grant) -> AccessBasis {
    match grant {
        Grant::Configured => AccessBasis::Grant,
        Grant::Consent { id, .. } => AccessBasis::Consent(*id),
    }
}

/// The error as the trail records it: condition, code, text. The code is the
/// Enedis code of an upstream refusal, the limit of a quota refusal
/// (`hourly-quota`), or `scope:<name>` for data outside the peer's scopes
/// (`scope:load_curve`).
pub fn access_error(e: &CommandError) -> AccessError {
    AccessError {
        condition: e.condition().to_owned(),
        code: match e {
            CommandError::Upstream { code, .. } => Some(code.clone()),
            CommandError::RetryLater(later) => Some(later.limit.to_owned()),
            CommandError::OutOfScope { scope, .. } => Some(format!("scope:{scope}")),
            _ => None,
        },
        text: e.to_string(),
    }
}

/// One access being handled: filled in along the data path, written by
/// [`Audit::end`].
#[derive(Debug)]
pub struct Audit {
    at: i64,
    peer: String,
    prm: Prm,
    subject: Subject,
    range: Option<(i64, i64)>,
    basis: Option<AccessBasis>,
}

impl Audit {
    /// An access of `request`, decided now, recorded in the request's `log`
    /// (its PRM and period, for the log line).
    pub fn begin(request: &DataRequest, log: &mut RequestLog) -> Audit {
        log.prm(&request.identifier.prm);
        log.window(&request.window);
        Audit {
            at: now_seconds(),
            peer: request.requester.to_string(),
            prm: request.identifier.prm,
            subject: request.identifier.series.into(),
            range: Some((request.window.start, request.window.end)),
            basis: None,
        }
    }

    /// A read of `prm`'s contract by `requester` (`get_contract`), decided now,
    /// recorded in the request's `log` (its PRM). The trail names it `contract`,
    /// without a range.
    pub fn begin_contract(requester: &BareJid, prm: Prm, log: &mut RequestLog) -> Audit {
        log.prm(&prm);
        Audit {
            at: now_seconds(),
            peer: requester.to_string(),
            prm,
            subject: Subject::Contract,
            range: None,
            basis: None,
        }
    }

    /// The request was authorised on `grant`.
    pub fn allowed_on(&mut self, grant: &Grant) {
        self.basis = Some(basis_of(grant));
    }

    /// The row: this access's own facts, the command, upstream calls and
    /// duration of the request's record `log`.
    fn access(&self, log: &RequestLog, outcome: AccessOutcome) -> Access {
        Access {
            at: self.at,
            peer: self.peer.clone(),
            command: log.command().to_owned(),
            prm: Some(self.prm),
            series: Some(self.subject),
            range: self.range,
            basis: match outcome {
                AccessOutcome::Allowed { .. } => self.basis,
                AccessOutcome::Refused(_) => None,
            },
            outcome,
            upstream_calls: log.calls(),
            duration_ms: Some(u64::try_from(log.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Writes the access and returns what the peer gets: `result`, unless the
    /// trail refuses an allowed access (its basis ended meanwhile) or cannot be
    /// written while readings would be served.
    pub async fn end<T: Send + 'static>(
        self,
        store: &Store,
        log: &RequestLog,
        result: Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        let outcome = match (&result, self.basis) {
            (Ok(_), Some(_)) => AccessOutcome::Allowed { error: None },
            (Err(e), Some(_)) => AccessOutcome::Allowed {
                error: Some(access_error(e)),
            },
            (Err(e), None) => AccessOutcome::Refused(access_error(e)),
            (Ok(_), None) => {
                // A success the data path did not authorise: a bug; never serve it.
                tracing::error!(peer = %self.peer, prm = %self.prm, "data served without an authorisation: refused");
                return Err(CommandError::internal(
                    "the agent refused to answer: the access was not authorised",
                ));
            }
        };
        let access = self.access(log, outcome);
        // On the request path: written at once unless SQLite would wait.
        let written = store
            .call_now(move |s| match s.record_access(&access) {
                Ok(id) => Ok(Ok(id)),
                Err(AuditError::NoBasis(why)) => {
                    // Record the refusal the peer is about to get.
                    let refusal = AccessError {
                        condition: "not-authorized".to_owned(),
                        code: None,
                        text: why.clone(),
                    };
                    let mut refused = access.clone();
                    refused.basis = None;
                    refused.outcome = AccessOutcome::Refused(refusal);
                    match s.record_access(&refused) {
                        Ok(_) => {}
                        // Nothing was written: both inserts run again, where they may wait.
                        Err(AuditError::Store(e)) if e.is_busy() => return Err(e),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot record a refused access in the audit trail");
                        }
                    }
                    Ok(Err(why))
                }
                Err(AuditError::Store(e)) => Err(e),
            })
            .await;
        match (written, result) {
            (Ok(Ok(_)), result) => result,
            (Ok(Err(why)), Ok(_)) => {
                tracing::warn!(peer = %self.peer, prm = %self.prm, reason = %why, "access refused by the audit trail: its basis ended during the request");
                Err(CommandError::not_authorized(format!(
                    "no valid consent for PRM {} any more: it ended while the request was served",
                    self.prm
                )))
            }
            (Ok(Err(_)), Err(e)) => Err(e),
            (Err(e), Ok(_)) => {
                tracing::error!(error = %e, "cannot write the audit trail: readings not served");
                Err(CommandError::internal(
                    "the agent cannot record this access in its audit trail; its operator can find details in its log",
                ))
            }
            (Err(e), Err(answer)) => {
                tracing::error!(error = %e, "cannot write the audit trail");
                Err(answer)
            }
        }
    }
}

/// Records a decision that is not a data read (a `subscribe`) of the request
/// recorded in `log` (its command): allowed on `basis`, or refused with
/// `error`. A failure to write is logged; an allowed decision the trail refuses
/// comes back as `not-authorized`.
pub async fn record_decision(
    ctx: &AgentContext,
    log: &RequestLog,
    peer: &str,
    prm: Prm,
    series: Series,
    decision: Result<AccessBasis, &CommandError>,
) -> Result<(), CommandError> {
    let (basis, outcome) = match decision {
        Ok(basis) => (Some(basis), AccessOutcome::Allowed { error: None }),
        Err(e) => (None, AccessOutcome::Refused(access_error(e))),
    };
    let access = Access {
        at: now_seconds(),
        peer: peer.to_owned(),
        command: log.command().to_owned(),
        prm: Some(prm),
        series: Some(series.into()),
        range: None,
        basis,
        outcome,
        upstream_calls: 0,
        duration_ms: None,
    };
    match write(&ctx.store, access).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(CommandError::not_authorized(why)),
        Err(e) => {
            tracing::error!(error = %e, "cannot write the audit trail");
            Err(CommandError::internal(
                "the agent cannot record this request in its audit trail; its operator can find details in its log",
            ))
        }
    }
}

/// Records the refusal of a request refused before the data path (a command the
/// peer may not run: its scopes lack what the command serves) of the request
/// recorded in `log`, with the PRM and what of it (a series, the contract) when
/// the request said them. A failure to write is logged: the peer gets its
/// refusal anyway.
pub async fn record_refusal(
    ctx: &AgentContext,
    log: &RequestLog,
    peer: &str,
    asked: Option<(Prm, Subject)>,
    error: &CommandError,
) {
    let access = Access {
        at: now_seconds(),
        peer: peer.to_owned(),
        command: log.command().to_owned(),
        prm: asked.map(|(prm, _)| prm),
        series: asked.map(|(_, subject)| subject),
        range: None,
        basis: None,
        outcome: AccessOutcome::Refused(access_error(error)),
        upstream_calls: 0,
        duration_ms: None,
    };
    match write(&ctx.store, access).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => tracing::error!(reason = %why, "the audit trail refused a refusal"),
        Err(e) => tracing::error!(error = %e, "cannot record a refused request in the audit trail"),
    }
}

/// Writes a decision's row: `Ok(Err(why))` when the trail refuses it (an allowed
/// row without a valid basis), `Err` when it cannot be written.
async fn write(store: &Store, access: Access) -> Result<Result<(), String>, StoreError> {
    store
        .call_now(move |s| match s.record_access(&access) {
            Ok(_) => Ok(Ok(())),
            Err(AuditError::NoBasis(why)) => Ok(Err(why)),
            Err(AuditError::Store(e)) => Err(e),
        })
        .await
}
