//! What can go wrong talking to Enedis, typed so the XMPP layer can answer a peer
//! precisely, and reading Enedis error bodies whatever their shape.
//!
//! Enedis answers errors in at least three shapes: `{error, error_description}` (v3–v5
//! and some 2026 answers), `{code, message}` (2026), and the WSO2 gateway's
//! `{fault: {code, message, description}}`; codes may be strings or numbers. A body
//! that is none of these (an HTML page from a proxy, an empty body) still gives an
//! error with the status and a short excerpt.

use crate::store::StoreError;

/// How the rest of the agent should treat an error (the XMPP mapping in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Enedis refused for a business reason; the code and message say why
    /// (`undefined-condition` with the upstream code).
    Refused,
    /// Enedis could not be reached or kept failing, or the quota has no slot before
    /// the deadline, or it answered something unreadable (`service-unavailable`).
    Unavailable,
    /// The request itself cannot be served as asked, e.g. a window out of the history
    /// limits (`bad-request`, with the text).
    BadRequest,
    /// No usable consent or token for this PRM (`not-authorized`).
    NotAuthorized,
    /// A fault of the agent itself: store, configuration (`internal-server-error`).
    Internal,
    /// The configured generation has no API for what was asked
    /// (`feature-not-implemented`, with the text naming the generations that have).
    NotImplemented,
}

/// An Enedis error answer: HTTP status, Enedis code when there is one, and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnedisFault {
    /// What was called, e.g. `mesure_synchrone_auto/v2/courbe_de_charge_consommation`.
    pub endpoint: String,
    pub status: u16,
    /// `ADAM-ERR0123`, `ADAM-DC-0008`, `900908`, `no_data_found`, `invalid_grant`…
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for EnedisFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered HTTP {}", self.endpoint, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl EnedisFault {
    /// Whether the code is `code`, ignoring the `-`/`_` spelling variants Enedis uses
    /// (`ADAM-DC-0008` and `ADAM_DC_0008` both occur) and case.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref().is_some_and(|c| same_code(c, code))
    }

    /// Temporary per Enedis: retry later.
    pub fn is_technical(&self) -> bool {
        self.has_code("technical_error") || self.has_code("ADAM-DC-0500")
    }

    /// The application has no (more) consent for this PRM.
    pub fn is_no_consent(&self) -> bool {
        self.has_code("ADAM-DC-0008")
    }

    /// Enedis has no data for the asked period (`404 no_data_found`): an answer,
    /// not a failure, unless no part of a request has any.
    pub fn is_no_data(&self) -> bool {
        self.status == 404 && self.has_code("no_data_found")
    }
}

fn same_code(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().replace('_', "-").to_ascii_lowercase();
    norm(a) == norm(b)
}

/// An error from the upstream client. Messages never hold a token or secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Enedis refused the request for a business reason.
    #[error("Enedis refused the request: {0}")]
    Refused(EnedisFault),
    /// Enedis unreachable, or failing after every retry, or the application's own
    /// credentials were refused.
    #[error("Enedis is unavailable: {reason}")]
    Unavailable {
        reason: String,
        /// The last Enedis answer, if there was one.
        fault: Option<EnedisFault>,
    },
    /// The quota leaves no slot before the request's deadline.
    #[error("Enedis quota: {detail}")]
    Quota {
        /// What was waited for, and why not longer (for the operator's log).
        detail: String,
        /// When the next call slot opens, if the quota knows it (the hourly or
        /// per-second window, or the pause Enedis asked for); `None` when the
        /// request gave up waiting behind others.
        retry_at: Option<jiff::Timestamp>,
        /// What held the call back, as [`super::limiter::Limit::as_str`] names it.
        limit: &'static str,
    },
    /// Enedis answered 2xx with a body we cannot read.
    #[error("unreadable answer from {endpoint} (HTTP {status}): {problem}{}", excerpt.as_ref().map(|e| format!("; body starts with: {e}")).unwrap_or_default())]
    BadResponse {
        endpoint: String,
        status: u16,
        problem: String,
        /// A short excerpt of the body, only where it cannot hold a secret.
        excerpt: Option<String>,
    },
    /// The requested window cannot be served; the text says which limit and why.
    #[error("{0}")]
    BadWindow(String),
    /// The configured API generation does not serve the series (the v1 family
    /// has no index); the text says which and what would.
    #[error("{0}")]
    Unsupported(String),
    /// No usable consent or token.
    #[error("{0}")]
    NotAuthorized(String),
    /// The consumer (or the Enedis portal) did not give the consent.
    #[error("the consent was not given: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ConsentRefused {
        error: String,
        description: Option<String>,
    },
    /// A consent callback or consent request that cannot be used as is.
    #[error("{0}")]
    BadConsentRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client is misconfigured (e.g. an unusable base URL).
    #[error("upstream configuration: {0}")]
    Config(String),
    /// A fault of the agent itself (a task that panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// The configured generation has no API for this; the text says which
    /// generations have one.
    #[error("{0}")]
    NotImplemented(String),
}

impl UpstreamError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::Refused(_) | UpstreamError::ConsentRefused { .. } => ErrorKind::Refused,
            UpstreamError::Unavailable { .. }
            | UpstreamError::Quota { .. }
            | UpstreamError::BadResponse { .. } => ErrorKind::Unavailable,
            UpstreamError::BadWindow(_)
            | UpstreamError::Unsupported(_)
            | UpstreamError::BadConsentRequest(_) => ErrorKind::BadRequest,
            UpstreamError::NotAuthorized(_) => ErrorKind::NotAuthorized,
            UpstreamError::Store(_) | UpstreamError::Config(_) | UpstreamError::Internal(_) => {
                ErrorKind::Internal
            }
            UpstreamError::NotImplemented(_) => ErrorKind::NotImplemented,
        }
    }

    /// The Enedis answer behind the error, if any.
    pub fn fault(&self) -> Option<&EnedisFault> {
        match self {
            UpstreamError::Refused(fault) => Some(fault),
            UpstreamError::Unavailable { fault, .. } => fault.as_ref(),
            _ => None,
        }
    }

    /// The Enedis code (`ADAM-ERR0123`, `900908`…) behind the error, if any.
    pub fn enedis_code(&self) -> Option<&str> {
        match self {
            UpstreamError::ConsentRefused { error, .. } => Some(error),
            _ => self.fault().and_then(|f| f.code.as_deref()),
        }
    }

    /// The HTTP status of the Enedis answer behind the error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::BadResponse { status, .. } => Some(*status),
            _ => self.fault().map(|f| f.status),
        }
    }

    /// A copy of the error, for each caller sharing one (the type is not `Clone`:
    /// a store error carries a SQLite error, which becomes its message).
    pub fn duplicate(&self) -> UpstreamError {
        match self {
            UpstreamError::Refused(fault) => UpstreamError::Refused(fault.clone()),
            UpstreamError::Unavailable { reason, fault } => UpstreamError::Unavailable {
                reason: reason.clone(),
                fault: fault.clone(),
            },
            UpstreamError::Quota {
                detail,
                retry_at,
                limit,
            } => UpstreamError::Quota {
                detail: detail.clone(),
                retry_at: *retry_at,
                limit,
            },
            UpstreamError::BadResponse {
                endpoint,
                status,
                problem,
                excerpt,
            } => UpstreamError::BadResponse {
                endpoint: endpoint.clone(),
                status: *status,
                problem: problem.clone(),
                excerpt: excerpt.clone(),
            },
            UpstreamError::BadWindow(s) => UpstreamError::BadWindow(s.clone()),
            UpstreamError::Unsupported(s) => UpstreamError::Unsupported(s.clone()),
            UpstreamError::NotAuthorized(s) => UpstreamError::NotAuthorized(s.clone()),
            UpstreamError::ConsentRefused { error, description } => UpstreamError::ConsentRefused {
                error: error.clone(),
                description: description.clone(),
            },
            UpstreamError::BadConsentRequest(s) => UpstreamError::BadConsentRequest(s.clone()),
            UpstreamError::Store(e) => UpstreamError::Store(StoreError::Task(e.to_string())),
            UpstreamError::Config(s) => UpstreamError::Config(s.clone()),
            UpstreamError::Internal(s) => UpstreamError::Internal(s.clone()),
            UpstreamError::NotImplemented(s) => UpstreamError::NotImplemented(s.clone()),
        }
    }
}

/// Read an Enedis error body: `(code, message)` from whichever shape it has. `None`
/// when the body is not JSON or holds none of the known fields.
pub fn parse_error_body(body: &[u8]) -> Option<(Option<String>, String)> {
    let value: serde_json::Value = serde_json::from_slice(strip_bom(body)).ok()?;
    let obj = value.as_object()?;
    let text = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) => Some(s.trim().to_owned()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    // WSO2 gateway: {"fault":{"code":900901,"message":"Invalid Credentials","description":"…"}}
    if let Some(fault) = obj.get("fault").and_then(|f| f.as_object()) {
        let code = text(fault.get("code"));
        let message = join_message(text(fault.get("message")), text(fault.get("description")));
        return Some((code, message));
    }
    // {"error":"ADAM-ERR0123","error_description":"…"}; `error` may also be an object.
    if let Some(error) = obj.get("error") {
        if let Some(inner) = error.as_object() {
            let code = text(inner.get("code"));
            let message = join_message(text(inner.get("message")), text(inner.get("description")));
            return Some((code, message));
        }
        let code = text(Some(error));
        let message = text(obj.get("error_description"))
            .or_else(|| text(obj.get("message")))
            .unwrap_or_default();
        return Some((code, message));
    }
    // {"code":"900908","message":"…","description":"…"} (2026, and 900804 throttling)
    if obj.contains_key("code") || obj.contains_key("message") {
        let code = text(obj.get("code"));
        let message = join_message(text(obj.get("message")), text(obj.get("description")));
        return Some((code, message));
    }
    None
}

fn join_message(message: Option<String>, description: Option<String>) -> String {
    match (message, description) {
        (Some(m), Some(d)) if !d.is_empty() && d != m => {
            if m.is_empty() {
                d
            } else {
                format!("{m} ({d})")
            }
        }
        (Some(m), _) => m,
        (None, Some(d)) => d,
        (None, None) => String::new(),
    }
}

/// The fault an error answer stands for, whatever its body.
pub fn fault_from_answer(endpoint: &str, status: u16, body: &[u8]) -> EnedisFault {
    let (code, message) = match parse_error_body(body) {
        Some((code, message)) => (code, message),
        None if body.iter().all(u8::is_ascii_whitespace) => (None, "empty body".to_owned()),
        None => (
            None,
            format!("body is not an Enedis error: {}", excerpt(body)),
        ),
    };
    EnedisFault {
        endpoint: endpoint.to_owned(),
        status,
        code: code.filter(|c| !c.is_empty()),
        message,
    }
}

/// A UTF-8 byte-order mark some gateways prepend.
pub fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// At most 120 characters of a body, on one line, control characters escaped, for
/// error messages. Only for bodies that cannot carry a secret (not token answers).
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(strip_bom(body));
    let head: String = text.chars().take(MAX).collect();
    // Debug formatting quotes the text and escapes control characters.
    if text.chars().nth(MAX).is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}
