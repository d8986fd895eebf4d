//! Logging: `tracing` events to stderr (journald captures it under systemd), as
//! human text or as JSON lines, and the one-line-per-request format every command
//! uses.
//!
//! # Setting up
//!
//! [`init`] is called once by the binary with `log.format` and `log.level` from the
//! configuration. `RUST_LOG`, when set and not empty, replaces `log.level` (for a
//! one-off debugging session without editing the file). In text format under
//! journald (`JOURNAL_STREAM` naming our stderr), lines carry no timestamp, since
//! the journal stamps each one; colours only go to a terminal.
//!
//! # Request lines
//!
//! Every peer request produces exactly ONE line at INFO, target
//! [`REQUEST_TARGET`], message `request`, with these fields, in this order:
//!
//! | field            | value                                                        |
//! |------------------|--------------------------------------------------------------|
//! | `peer`           | full JID of the requester                                    |
//! | `command`        | command node, e.g. `get_history` (as the peer sent it)       |
//! | `prm`            | usage point, or `-` when the command has none                |
//! | `range`          | `start/end` in UTC (RFC 3339, end excluded), or `-`          |
//! | `outcome`        | `ok` or the error condition answered, e.g. `not-authorized`  |
//! | `upstream_calls` | HTTP calls made to Enedis for this request (0 when cached)   |
//! | `duration_ms`    | receipt to answer, milliseconds with µs precision            |
//!
//! ```text
//! 2026-03-02T08:00:01.123456Z  INFO quoalise_agent::request: request peer=app@example.org/x command=get_history prm=22516914714270 range=2026-02-01T00:00:00Z/2026-03-01T00:00:00Z outcome=ok upstream_calls=1 duration_ms=84.213
//! {"timestamp":"…","level":"INFO","message":"request","peer":"app@example.org/x","command":"get_history","prm":"22516914714270","range":"2026-02-01T00:00:00Z/2026-03-01T00:00:00Z","outcome":"ok","upstream_calls":1,"duration_ms":84.213,"target":"quoalise_agent::request"}
//! ```
//!
//! Commands do not write this line themselves: they fill a [`RequestLog`] as they
//! learn things, and [`RequestLog::finish`] writes it (or its `Drop`, with outcome
//! `cancelled`, when the request's future is dropped, e.g. at its deadline), so
//! the fields cannot drift between commands. The same record feeds the audit
//! row of a data access (`crate::agent::audit::Audit` reads its command, upstream
//! calls and duration), so the line and the row cannot disagree either. Values
//! that came from a peer are written with control characters escaped, so that
//! a crafted value cannot forge a second log line.
//!
//! # Secrets are never logged
//!
//! Secrets (client secret, XMPP password, access and refresh tokens, OAuth
//! authorization codes and states) must not reach a log line or an error message:
//!
//! - Configuration secrets are [`crate::config::Secret`], whose `Debug` and
//!   `Display` print `***`; call `expose()` only where the value is sent.
//! - Tokens held in memory get the same treatment: wrap them in `Secret`, never in
//!   a plain `String` that a `?` field or `{:?}` would print.
//! - Never log a `reqwest::Request`, `RequestBuilder` or `HeaderMap` unless every
//!   credential header in it is marked sensitive: set `Authorization` ONLY through
//!   `RequestBuilder::bearer_auth` / `basic_auth` (which mark it sensitive, so
//!   `Debug` prints `Sensitive`), or on a `HeaderValue` after
//!   `set_sensitive(true)`. `.header(AUTHORIZATION, …)` with a plain value prints
//!   the token in `Debug` (tests/operations/logging_secrets.rs checks both).
//! - Never log a request or response BODY of the token endpoint (it carries the
//!   client secret, codes and tokens), nor a form body sent upstream.
//! - Secrets never go into URLs (`reqwest::Error` prints its URL); send them in
//!   headers or form bodies.
//! - Log a failed upstream call with its endpoint name, status and Enedis error
//!   code, not with the whole response.

use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use crate::config::LogFormat;
use crate::quoalise::Prm;
use crate::time::Window;

/// `target` of the per-request lines, so they can be filtered
/// (`RUST_LOG=quoalise_agent::request=info`) or routed apart.
pub const REQUEST_TARGET: &str = "quoalise_agent::request";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter in RUST_LOG ({value:?}): {reason}")]
    RustLog { value: String, reason: String },
    #[error("RUST_LOG is not valid UTF-8")]
    RustLogNotUnicode,
    #[error("invalid log.level ({value:?}): {reason}")]
    Level { value: String, reason: String },
    #[error("logging was already set up in this process")]
    AlreadyInitialised,
}

/// The filter to use: `RUST_LOG` when set and not blank, else `level`.
pub fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(value) => EnvFilter::builder()
            .parse(value)
            .map_err(|e| LoggingError::RustLog {
                value: value.to_owned(),
                reason: e.to_string(),
            }),
        None => EnvFilter::builder()
            .parse(level)
            .map_err(|e| LoggingError::Level {
                value: level.to_owned(),
                reason: e.to_string(),
            }),
    }
}

/// Sets up the process-wide subscriber: `format` to stderr, filtered by `level`
/// unless `RUST_LOG` says otherwise. Call once, early in `main`.
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(LoggingError::RustLogNotUnicode),
    };
    let filter = filter(level, rust_log.as_deref())?;
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => {
            let text = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            if stderr_is_journal() {
                text.without_time().boxed()
            } else {
                text.boxed()
            }
        }
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialised)
}

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM` is
/// `device:inode` of that stream); merely inheriting the variable does not count.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    expected == format!("{}:{}", meta.dev(), meta.ino())
}

/// A value from outside the process, written with control characters escaped
/// (`\n`, `\u{1b}`, …) so that it stays on its line.
pub struct Clean<'a>(pub &'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// The log line of one peer request, filled in as the request is handled and
/// written once by [`RequestLog::finish`] (or on drop, as `cancelled`).
#[derive(Debug)]
pub struct RequestLog {
    peer: String,
    command: String,
    prm: Option<String>,
    range: Option<String>,
    upstream_calls: u32,
    started: Instant,
    written: bool,
}

impl RequestLog {
    /// A request from `peer` (full JID) for `command` received now.
    pub fn start(peer: impl fmt::Display, command: impl fmt::Display) -> RequestLog {
        RequestLog {
            peer: peer.to_string(),
            command: command.to_string(),
            prm: None,
            range: None,
            upstream_calls: 0,
            started: Instant::now(),
            written: false,
        }
    }

    /// A span carrying `peer` and `command`, to enter while handling the request,
    /// so that every other line it logs says which request it belongs to.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            peer = %Clean(&self.peer),
            command = %Clean(&self.command),
        )
    }

    /// The command (node) of the request.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The usage point the request is about.
    pub fn prm(&mut self, prm: &Prm) {
        self.prm = Some(prm.to_string());
    }

    /// The period the request covers.
    pub fn window(&mut self, window: &Window) {
        let instant = |s: i64| {
            jiff::Timestamp::from_second(s)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| s.to_string())
        };
        self.range = Some(format!("{}/{}", instant(window.start), instant(window.end)));
    }

    /// `n` more HTTP calls made upstream for this request.
    pub fn upstream_calls(&mut self, n: u32) {
        self.upstream_calls = self.upstream_calls.saturating_add(n);
    }

    /// The HTTP calls made upstream for this request so far.
    pub fn calls(&self) -> u32 {
        self.upstream_calls
    }

    /// Time since the request was received.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes the line with `outcome` (`ok`, or the error condition answered) and
    /// returns the request's duration (for the latency metric).
    pub fn finish(mut self, outcome: &str) -> Duration {
        self.write(outcome)
    }

    fn write(&mut self, outcome: &str) -> Duration {
        let duration = self.started.elapsed();
        self.written = true;
        // Microsecond precision: cached answers take well under a millisecond.
        let duration_ms = duration.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: REQUEST_TARGET,
            peer = %Clean(&self.peer),
            command = %Clean(&self.command),
            prm = %self.prm.as_deref().unwrap_or("-"),
            range = %self.range.as_deref().unwrap_or("-"),
            outcome = %Clean(outcome),
            upstream_calls = self.upstream_calls,
            duration_ms,
            "request"
        );
        duration
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.written {
            self.write("cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_replaces_the_configured_level() {
        assert_eq!(filter("warn", None).unwrap().to_string(), "warn");
        assert_eq!(filter("warn", Some("")).unwrap().to_string(), "warn");
        assert_eq!(filter("warn", Some("  ")).unwrap().to_string(), "warn");
        assert_eq!(
            filter("warn", Some("quoalise_agent=debug"))
                .unwrap()
                .to_string(),
            "quoalise_agent=debug"
        );
    }

    #[test]
    fn a_bad_filter_names_where_it_came_from() {
        let e = filter("warn", Some("quoalise_agent=loud")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid log filter in RUST_LOG (\"quoalise_agent=loud\"): "),
            "{e}"
        );
        let e = filter("x=[", None).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid log.level (\"x=[\"): "),
            "{e}"
        );
    }

    #[test]
    fn clean_escapes_control_characters_only() {
        assert_eq!(
            Clean("app@example.org/é\n2026 INFO forged\u{1b}[31m").to_string(),
            "app@example.org/é\\n2026 INFO forged\\u{1b}[31m"
        );
    }
}
