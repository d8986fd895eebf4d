//! What every command shares: one wrapper, [`instrumented`], that runs a
//! request in its span and then writes its log line and records its metrics.

use tracing::Instrument;

use crate::agent::context::AgentContext;
use crate::logging::RequestLog;
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
