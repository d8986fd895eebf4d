//! What every command shares: the request log line and metrics around it
//! ([`begin`], [`finish`]).

use crate::agent::context::AgentContext;
use crate::logging::RequestLog;
use crate::xmpp::{CommandError, Outcome, Request};

/// Starts the log line of a request, and the span to run it in (so every line it
/// logs says which request it belongs to).
pub fn begin(request: &Request) -> (RequestLog, tracing::Span) {
    let log = RequestLog::start(&request.from, &request.node);
    let span = log.span();
    (log, span)
}

/// Writes the request's log line and records its metrics.
pub fn finish(
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
