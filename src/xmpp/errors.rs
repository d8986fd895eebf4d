//! The errors a command (or the command framework) returns to a peer, and their
//! mapping to XMPP stanza errors as `quoalise-protocol.md` specifies. Every error
//! carries a human-readable `<text/>`.

use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::ns::NS_COMMANDS;
use crate::quoalise::{NS_QUOALISE, Scope};

/// `issuer` of upstream errors coming from Enedis Data Connect.
pub const ISSUER_ENEDIS: &str = "enedis-data-connect";
/// `issuer` of upstream errors coming from Enedis SGE (its `SGT…` codes), as the
/// Quoalise SGE proxy names it.
pub const ISSUER_ENEDIS_SGE: &str = "enedis-sge-tiers";

/// A failed request, as the peer will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The requester may not do this: unknown peer, no consent for that PRM…
    /// (`not-authorized`, type `auth`).
    #[error("{0}")]
    NotAuthorized(String),
    /// The requested data is outside the requester's scopes (`[[peers]] scopes`):
    /// `not-authorized`, type `auth`, plus
    /// `<missing-scope xmlns="urn:quoalise:0" scope=…/>` naming the scope.
    #[error("{text}")]
    OutOfScope { scope: Scope, text: String },
    /// Malformed input; the text says which field and why (`bad-request`, `modify`).
    #[error("{0}")]
    BadRequest(String),
    /// No such command, node or item (`item-not-found`, `cancel`).
    #[error("{0}")]
    ItemNotFound(String),
    /// Understood but not supported (`feature-not-implemented`, `cancel`).
    #[error("{0}")]
    FeatureNotImplemented(String),
    /// The service cannot answer now: upstream unreachable, agent shutting down,
    /// request past its deadline (`service-unavailable`, `wait` when `retry`,
    /// else `cancel`).
    #[error("{text}")]
    ServiceUnavailable { text: String, retry: bool },
    /// Too many requests in flight (`resource-constraint`, `wait`).
    #[error("{0}")]
    ResourceConstraint(String),
    /// The upstream refused the request (`undefined-condition`, `cancel`, plus
    /// `<upstream-error xmlns="urn:quoalise:0" issuer=… code=…/>`).
    #[error("{text} ({issuer} {code})")]
    Upstream {
        issuer: String,
        code: String,
        text: String,
    },
    /// A bug or an unexpected local failure (`internal-server-error`, `cancel`).
    #[error("{0}")]
    Internal(String),
    /// XEP-0050: unknown session, or a session of another requester
    /// (`bad-request` + `<bad-sessionid/>`).
    #[error("{0}")]
    BadSessionId(String),
    /// XEP-0050: the session timed out (`not-allowed` + `<session-expired/>`).
    #[error("{0}")]
    SessionExpired(String),
    /// XEP-0050: an action not allowed at this stage (`bad-request` + `<bad-action/>`).
    #[error("{0}")]
    BadAction(String),
    /// XEP-0050: the `<command/>` element itself is malformed
    /// (`bad-request` + `<malformed-action/>`).
    #[error("{0}")]
    MalformedAction(String),
    /// The answer would not fit in one stanza and the peer did not ask for
    /// pages (`not-acceptable`, `modify`, plus
    /// `<answer-too-large xmlns="urn:quoalise:0" …/>` with the same figures).
    #[error("{}", .0.text)]
    TooLarge(Box<TooLarge>),
    /// The Enedis call quota (the application's, or the peer's own budget) has
    /// no slot before the request's deadline (`service-unavailable`, `wait`, plus
    /// `<retry-after xmlns="urn:quoalise:0" at=… limit=…/>`).
    #[error("{}", .0.text)]
    RetryLater(Box<RetryLater>),
}

/// The figures of a [`CommandError::RetryLater`] refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryLater {
    /// The whole message, for people.
    pub text: String,
    /// The instant the request may be made again (UTC, to the second).
    pub at: jiff::Timestamp,
    /// What holds it back: `peer-budget`, `hourly-quota`, `background-share`,
    /// `per-second-quota` or `enedis-pause`.
    pub limit: &'static str,
}

impl RetryLater {
    /// `<retry-after xmlns="urn:quoalise:0" at="2026-12-06T09:42:00Z" limit="hourly-quota"/>`.
    pub fn element(&self) -> Element {
        let at = self
            .at
            .round(
                jiff::TimestampRound::new()
                    .smallest(jiff::Unit::Second)
                    .mode(jiff::RoundMode::Ceil),
            )
            .unwrap_or(self.at);
        Element::builder("retry-after", NS_QUOALISE)
            .attr(
                minidom::rxml::xml_ncname!("at").to_owned(),
                at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
            .attr(minidom::rxml::xml_ncname!("limit").to_owned(), self.limit)
            .build()
    }
}

/// The figures of a [`CommandError::TooLarge`] refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The whole message, for people.
    pub text: String,
    /// SenML records the whole answer would hold (predicted when refused before
    /// reading Enedis).
    pub records: u64,
    /// The largest stanza the agent may send.
    pub max_bytes: u64,
    /// The series' step (`PT30M`, `P1D`), when known.
    pub step: Option<String>,
    /// The longest range, in days, whose answer fits one stanza at that step.
    pub max_days: Option<u64>,
}

impl TooLarge {
    /// `<answer-too-large xmlns="urn:quoalise:0" records=… max-bytes=… step=… max-days=…/>`.
    pub fn element(&self) -> Element {
        let mut builder = Element::builder("answer-too-large", NS_QUOALISE)
            .attr(
                minidom::rxml::xml_ncname!("records").to_owned(),
                self.records.to_string(),
            )
            .attr(
                minidom::rxml::xml_ncname!("max-bytes").to_owned(),
                self.max_bytes.to_string(),
            );
        if let Some(step) = &self.step {
            builder = builder.attr(minidom::rxml::xml_ncname!("step").to_owned(), step.as_str());
        }
        if let Some(days) = self.max_days {
            builder = builder.attr(
                minidom::rxml::xml_ncname!("max-days").to_owned(),
                days.to_string(),
            );
        }
        builder.build()
    }
}

impl CommandError {
    pub fn not_authorized(text: impl Into<String>) -> Self {
        CommandError::NotAuthorized(text.into())
    }

    /// The requester's scopes do not include `scope`.
    pub fn out_of_scope(scope: Scope, text: impl Into<String>) -> Self {
        CommandError::OutOfScope {
            scope,
            text: text.into(),
        }
    }

    pub fn bad_request(text: impl Into<String>) -> Self {
        CommandError::BadRequest(text.into())
    }

    /// The upstream cannot be reached; the peer may retry later.
    pub fn unavailable(text: impl Into<String>) -> Self {
        CommandError::ServiceUnavailable {
            text: text.into(),
            retry: true,
        }
    }

    /// Enedis Data Connect refused the request with `code`.
    pub fn enedis(code: impl Into<String>, text: impl Into<String>) -> Self {
        CommandError::Upstream {
            issuer: ISSUER_ENEDIS.to_owned(),
            code: code.into(),
            text: text.into(),
        }
    }

    pub fn internal(text: impl Into<String>) -> Self {
        CommandError::Internal(text.into())
    }

    /// The stanza error condition a failure is answered with, as logs and metrics
    /// name it.
    pub fn condition(&self) -> &'static str {
        match self {
            CommandError::NotAuthorized(_) | CommandError::OutOfScope { .. } => "not-authorized",
            CommandError::BadRequest(_)
            | CommandError::BadSessionId(_)
            | CommandError::BadAction(_)
            | CommandError::MalformedAction(_) => "bad-request",
            CommandError::ItemNotFound(_) => "item-not-found",
            CommandError::FeatureNotImplemented(_) => "feature-not-implemented",
            CommandError::ServiceUnavailable { .. } | CommandError::RetryLater(_) => {
                "service-unavailable"
            }
            CommandError::ResourceConstraint(_) => "resource-constraint",
            CommandError::Upstream { .. } => "undefined-condition",
            CommandError::Internal(_) => "internal-server-error",
            CommandError::SessionExpired(_) => "not-allowed",
            CommandError::TooLarge(_) => "not-acceptable",
        }
    }

    /// The XMPP stanza error for this failure.
    pub fn to_stanza_error(&self) -> StanzaError {
        use DefinedCondition as C;
        use ErrorType as T;
        let (type_, condition, text, other) = match self {
            CommandError::NotAuthorized(t) => (T::Auth, C::NotAuthorized, t, None),
            CommandError::OutOfScope { scope, text } => (
                T::Auth,
                C::NotAuthorized,
                text,
                Some(missing_scope_element(*scope)),
            ),
            CommandError::BadRequest(t) => (T::Modify, C::BadRequest, t, None),
            CommandError::ItemNotFound(t) => (T::Cancel, C::ItemNotFound, t, None),
            CommandError::FeatureNotImplemented(t) => {
                (T::Cancel, C::FeatureNotImplemented, t, None)
            }
            CommandError::ServiceUnavailable { text, retry } => (
                if *retry { T::Wait } else { T::Cancel },
                C::ServiceUnavailable,
                text,
                None,
            ),
            CommandError::ResourceConstraint(t) => (T::Wait, C::ResourceConstraint, t, None),
            CommandError::Upstream { issuer, code, text } => (
                T::Cancel,
                C::UndefinedCondition,
                text,
                Some(upstream_error_element(issuer, code)),
            ),
            CommandError::Internal(t) => (T::Cancel, C::InternalServerError, t, None),
            CommandError::BadSessionId(t) => (
                T::Modify,
                C::BadRequest,
                t,
                Some(commands_condition("bad-sessionid")),
            ),
            CommandError::SessionExpired(t) => (
                T::Cancel,
                C::NotAllowed,
                t,
                Some(commands_condition("session-expired")),
            ),
            CommandError::BadAction(t) => (
                T::Modify,
                C::BadRequest,
                t,
                Some(commands_condition("bad-action")),
            ),
            CommandError::MalformedAction(t) => (
                T::Modify,
                C::BadRequest,
                t,
                Some(commands_condition("malformed-action")),
            ),
            CommandError::TooLarge(too_large) => (
                T::Modify,
                C::NotAcceptable,
                &too_large.text,
                Some(too_large.element()),
            ),
            CommandError::RetryLater(later) => (
                T::Wait,
                C::ServiceUnavailable,
                &later.text,
                Some(later.element()),
            ),
        };
        let mut error = StanzaError::new(type_, condition, "en", text.clone());
        error.other = other;
        error
    }
}

/// `<upstream-error xmlns="urn:quoalise:0" issuer=… code=…/>`. The Quoalise
/// client reads both attributes unconditionally, so neither is ever left out.
fn upstream_error_element(issuer: &str, code: &str) -> Element {
    let issuer = if issuer.is_empty() { "unknown" } else { issuer };
    let code = if code.is_empty() { "unknown" } else { code };
    let mut element = Element::bare("upstream-error", NS_QUOALISE);
    element.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::xml_ncname!("issuer").to_owned(),
        issuer,
    );
    element.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::xml_ncname!("code").to_owned(),
        code,
    );
    element
}

/// `<missing-scope xmlns="urn:quoalise:0" scope="load_curve"/>`.
fn missing_scope_element(scope: Scope) -> Element {
    Element::builder("missing-scope", NS_QUOALISE)
        .attr(
            minidom::rxml::xml_ncname!("scope").to_owned(),
            scope.as_str(),
        )
        .build()
}

/// XEP-0050 application-specific condition, e.g. `<bad-sessionid/>`.
fn commands_condition(name: &str) -> Element {
    Element::bare(name, NS_COMMANDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::test_util::assert_xml_eq;
    use xmpp_parsers::iq::Iq;

    const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

    fn error_iq(error: &CommandError) -> Element {
        Element::from(Iq::from_error("ab63a", error.to_stanza_error()))
    }

    fn expected(type_: &str, condition: &str, text: &str, extra: &str) -> String {
        format!(
            r#"<iq xmlns="jabber:client" type="error" id="ab63a"><error type="{type_}"><{condition} xmlns="{STANZAS}"/><text xmlns="{STANZAS}" xml:lang="en">{text}</text>{extra}</error></iq>"#
        )
    }

    #[test]
    fn upstream_error_carries_issuer_and_code() {
        let text = "The requested period cannot be anterior to the meter's last activation date";
        assert_xml_eq(
            &error_iq(&CommandError::enedis("ADAM-ERR0123", text)),
            &expected(
                "cancel",
                "undefined-condition",
                text,
                r#"<upstream-error xmlns="urn:quoalise:0" issuer="enedis-data-connect" code="ADAM-ERR0123"/>"#,
            ),
        );
    }

    #[test]
    fn upstream_error_never_omits_an_attribute() {
        let error = CommandError::Upstream {
            issuer: String::new(),
            code: String::new(),
            text: "?".into(),
        };
        assert_xml_eq(
            &error_iq(&error),
            &expected(
                "cancel",
                "undefined-condition",
                "?",
                r#"<upstream-error xmlns="urn:quoalise:0" issuer="unknown" code="unknown"/>"#,
            ),
        );
    }

    #[test]
    fn conditions_and_types_follow_the_protocol() {
        let cases = [
            (CommandError::not_authorized("x"), "auth", "not-authorized"),
            (CommandError::bad_request("x"), "modify", "bad-request"),
            (
                CommandError::unavailable("x"),
                "wait",
                "service-unavailable",
            ),
            (
                CommandError::ServiceUnavailable {
                    text: "x".into(),
                    retry: false,
                },
                "cancel",
                "service-unavailable",
            ),
            (
                CommandError::ItemNotFound("x".into()),
                "cancel",
                "item-not-found",
            ),
            (
                CommandError::FeatureNotImplemented("x".into()),
                "cancel",
                "feature-not-implemented",
            ),
            (
                CommandError::internal("x"),
                "cancel",
                "internal-server-error",
            ),
            (
                CommandError::ResourceConstraint("x".into()),
                "wait",
                "resource-constraint",
            ),
        ];
        for (error, type_, condition) in cases {
            assert_xml_eq(&error_iq(&error), &expected(type_, condition, "x", ""));
        }
    }

    #[test]
    fn a_refusal_for_a_scope_names_it() {
        let text = "this peer's scopes do not include load_curve";
        let error = CommandError::out_of_scope(Scope::LoadCurve, text);
        assert_eq!(error.condition(), "not-authorized");
        assert_eq!(error.to_string(), text);
        assert_xml_eq(
            &error_iq(&error),
            &expected(
                "auth",
                "not-authorized",
                text,
                r#"<missing-scope xmlns="urn:quoalise:0" scope="load_curve"/>"#,
            ),
        );
    }

    #[test]
    fn session_errors_carry_the_xep_0050_condition() {
        let commands = "http://jabber.org/protocol/commands";
        assert_xml_eq(
            &error_iq(&CommandError::BadSessionId("no such session".into())),
            &expected(
                "modify",
                "bad-request",
                "no such session",
                &format!(r#"<bad-sessionid xmlns="{commands}"/>"#),
            ),
        );
        assert_xml_eq(
            &error_iq(&CommandError::SessionExpired("expired".into())),
            &expected(
                "cancel",
                "not-allowed",
                "expired",
                &format!(r#"<session-expired xmlns="{commands}"/>"#),
            ),
        );
        assert_xml_eq(
            &error_iq(&CommandError::BadAction("no".into())),
            &expected(
                "modify",
                "bad-request",
                "no",
                &format!(r#"<bad-action xmlns="{commands}"/>"#),
            ),
        );
    }
}
