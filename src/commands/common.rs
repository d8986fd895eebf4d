//! What every command shares: one wrapper, [`instrumented`], that runs a
//! request in its span and then writes its log line and records its metrics;
//! and what the commands serving data share about scopes: who sees them
//! ([`sees_any_series`]) and how a peer that may not run them is refused
//! ([`refuse`]).

use tracing::Instrument;
use xmpp_parsers::jid::BareJid;

use crate::agent::audit::record_refusal;
use crate::agent::authorise::{out_of_scope, scopes_in_words};
use crate::agent::context::AgentContext;
use crate::logging::RequestLog;
use crate::quoalise::{Identifier, Prm, Scope, Series};
use crate::store::Subject;
use crate::xmpp::{CommandError, Outcome, Request};

/// Runs one request of the command `node`: `work` inside the request's span
/// (so every line it logs says which request it belongs to), filling the
/// request's log line; then, outside the span (the line carries peer and command
/// itself), writes that line and records the metrics.
pub async fn instrumented(
    ctx: &AgentContext,
    node: &'static str,
    request: &Request,
    work: impl AsyncFnOnce(&mut RequestLog) -> Result<Outcome, CommandError>,
) -> Result<Outcome, CommandError> {
    let (mut log, span) = begin(request);
    let result = work(&mut log).instrument(span).await;
    finish(ctx, node, log, &result);
    result
}

/// Starts the log line of a request, and the span to run it in.
fn begin(request: &Request) -> (RequestLog, tracing::Span) {
    let log = RequestLog::start(&request.from, &request.node);
    let span = log.span();
    (log, span)
}

/// Writes the request's log line and records its metrics.
fn finish(
    ctx: &AgentContext,
    command: &'static str,
    log: RequestLog,
    result: &Result<Outcome, CommandError>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.condition(),
    };
    let duration = log.finish(outcome);
    ctx.metrics.request(command, outcome, duration);
}

/// Whether `requester`'s scopes let it receive at least one series: who sees the
/// commands that serve any series (`get_history`, `subscribe`).
pub fn sees_any_series(ctx: &AgentContext, requester: &BareJid) -> bool {
    ctx.settings().scopes(requester).allows_any_series()
}

/// Why `requester` may not run `node`, a command serving `serves` (the scopes of
/// its series): when the request named a series (`asked`), the scope of that
/// series; else, when the command serves one scope, that scope; else none of
/// them.
pub fn refusal(
    ctx: &AgentContext,
    requester: &BareJid,
    node: &str,
    serves: &[Scope],
    asked: Option<Identifier>,
) -> CommandError {
    let scopes = ctx.settings().scopes(requester);
    if let Some(id) = asked {
        let scope = Scope::of(id.series);
        return out_of_scope(
            requester,
            scopes,
            scope,
            &format!("{} is {scope} data", id.series),
        );
    }
    if let [scope] = serves {
        return out_of_scope(
            requester,
            scopes,
            *scope,
            &format!("{node} serves {scope} data"),
        );
    }
    let serves: Vec<&str> = serves.iter().map(|s| s.as_str()).collect();
    CommandError::not_authorized(format!(
        "{node} serves {} data: this peer's scopes include none of them ({}); the agent's operator can add them to the scopes of {requester} in [[peers]]",
        serves.join(", "),
        scopes_in_words(scopes)
    ))
}

/// The scopes of every series, each once, in [`Scope::ALL`]'s order: what
/// `get_history` and `subscribe` serve.
pub fn series_scopes() -> Vec<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|scope| Series::ALL.iter().any(|s| Scope::of(*s) == *scope))
        .collect()
}

/// Refuses `request` of the data command `node`, which its requester may not
/// run (see [`refusal`]), and puts it on record: the request's log line and
/// metrics, and a refused row in the audit trail with the scope as its code.
pub async fn refuse(
    ctx: &AgentContext,
    node: &'static str,
    request: &Request,
    serves: &[Scope],
    asked: Option<Identifier>,
) -> CommandError {
    let named = asked.map(|id| (id.prm, Subject::Series(id.series)));
    refuse_named(ctx, node, request, serves, asked, named).await
}

/// [`refuse`], the request naming `named` (its PRM, and what of it: a series, the
/// contract) for the log line and the audit trail.
pub async fn refuse_named(
    ctx: &AgentContext,
    node: &'static str,
    request: &Request,
    serves: &[Scope],
    asked: Option<Identifier>,
    named: Option<(Prm, Subject)>,
) -> CommandError {
    let error = refusal(ctx, &request.requester, node, serves, asked);
    let refused = instrumented(ctx, node, request, async |log| {
        if let Some((prm, _)) = named {
            log.prm(&prm);
        }
        tracing::info!(reason = %error, "command refused: outside the peer's scopes");
        record_refusal(ctx, log, request.requester.as_str(), named, &error).await;
        Err(error)
    })
    .await;
    match refused {
        Err(error) => error,
        Ok(_) => CommandError::internal("the agent answered a refused command"),
    }
}
