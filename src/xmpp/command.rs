//! XEP-0050 (ad-hoc commands) wire types: the `<command/>` element, its actions,
//! notes, optional data form and extra payloads such as `<quoalise/>`.
//!
//! xmpp-parsers 0.23 has no ad-hoc module, so the element is derived here with
//! xso. The `node` attribute is optional in the type (mandatory in the XEP) so
//! that a request without it gets a precise error instead of a generic parse
//! failure. Used both by the agent (requests in, answers out) and by peers built on
//! this crate (the `query` command line).

use std::borrow::Cow;

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

/// XEP-0050 namespace.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// Requested action (attribute `action`); absent means `execute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Execute,
    Cancel,
    Prev,
    Next,
    Complete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Cancel => "cancel",
            Action::Prev => "prev",
            Action::Next => "next",
            Action::Complete => "complete",
        }
    }
}

/// A value that is not one of an attribute's allowed values.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}' (expected one of: {allowed})")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
    allowed: &'static str,
}

impl FromXmlText for Action {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        Ok(match data.as_str() {
            "execute" => Action::Execute,
            "cancel" => Action::Cancel,
            "prev" => Action::Prev,
            "next" => Action::Next,
            "complete" => Action::Complete,
            _ => {
                return Err(xso::error::Error::text_parse_error(UnknownValue {
                    what: "action",
                    value: data,
                    allowed: "execute, cancel, prev, next, complete",
                }));
            }
        })
    }
}

impl AsXmlText for Action {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(self.as_str()))
    }
}

/// Status of a command session (attribute `status`, in answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Executing,
    Completed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        }
    }
}

impl FromXmlText for Status {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        Ok(match data.as_str() {
            "executing" => Status::Executing,
            "completed" => Status::Completed,
            "canceled" => Status::Canceled,
            _ => {
                return Err(xso::error::Error::text_parse_error(UnknownValue {
                    what: "status",
                    value: data,
                    allowed: "executing, completed, canceled",
                }));
            }
        })
    }
}

impl AsXmlText for Status {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(self.as_str()))
    }
}

/// Severity of a `<note/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteType {
    Info,
    Warn,
    Error,
}

impl FromXmlText for NoteType {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        Ok(match data.as_str() {
            "info" => NoteType::Info,
            "warn" => NoteType::Warn,
            "error" => NoteType::Error,
            _ => {
                return Err(xso::error::Error::text_parse_error(UnknownValue {
                    what: "note type",
                    value: data,
                    allowed: "info, warn, error",
                }));
            }
        })
    }
}

impl AsXmlText for NoteType {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(match self {
            NoteType::Info => "info",
            NoteType::Warn => "warn",
            NoteType::Error => "error",
        }))
    }
}

/// `<actions execute="…"><prev/><next/><complete/></actions>`: what the requester
/// may do next in a multi-stage session.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq, Default)]
#[xml(namespace = NS_COMMANDS, name = "actions")]
pub struct Actions {
    /// The default action (what a client's "OK"/"Finish" button sends).
    #[xml(attribute(default))]
    pub execute: Option<Action>,
    #[xml(flag)]
    pub prev: bool,
    #[xml(flag)]
    pub next: bool,
    #[xml(flag)]
    pub complete: bool,
}

/// `<note type="…">text</note>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_COMMANDS, name = "note")]
pub struct Note {
    #[xml(attribute(name = "type", default))]
    pub type_: Option<NoteType>,
    #[xml(text)]
    pub text: String,
}

impl Note {
    pub fn info(text: impl Into<String>) -> Self {
        Note {
            type_: Some(NoteType::Info),
            text: text.into(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Self {
        Note {
            type_: Some(NoteType::Warn),
            text: text.into(),
        }
    }
}

/// The `<command xmlns="http://jabber.org/protocol/commands"/>` element.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_COMMANDS, name = "command")]
pub struct Command {
    /// The command's node (mandatory in requests; checked by the router).
    #[xml(attribute(default))]
    pub node: Option<String>,
    /// Multi-stage session, chosen by the responder on the first answer.
    #[xml(attribute(default))]
    pub sessionid: Option<String>,
    /// Requested action; absent means `execute`.
    #[xml(attribute(default))]
    pub action: Option<Action>,
    /// Session status, in answers.
    #[xml(attribute(default))]
    pub status: Option<Status>,
    #[xml(child(default))]
    pub actions: Option<Actions>,
    #[xml(child(n = ..))]
    pub notes: Vec<Note>,
    /// The data form: `form` in an executing answer, `submit` in a request,
    /// `result` in a completed answer.
    #[xml(child(default))]
    pub form: Option<DataForm>,
    /// Anything else, e.g. `<quoalise xmlns="urn:quoalise:0">` in an answer.
    #[xml(element(n = ..))]
    pub payloads: Vec<Element>,
}

impl Command {
    /// A request: `<command node=… action=execute>` with an optional submitted form.
    pub fn execute(node: impl Into<String>, form: Option<DataForm>) -> Self {
        Command {
            node: Some(node.into()),
            sessionid: None,
            action: Some(Action::Execute),
            status: None,
            actions: None,
            notes: Vec::new(),
            form,
            payloads: Vec::new(),
        }
    }

    /// An answer on `node` with the given status.
    pub fn answer(node: impl Into<String>, sessionid: Option<String>, status: Status) -> Self {
        Command {
            node: Some(node.into()),
            sessionid,
            action: None,
            status: Some(status),
            actions: None,
            notes: Vec::new(),
            form: None,
            payloads: Vec::new(),
        }
    }

    /// The requested action, `execute` when absent (XEP-0050 §3.4).
    pub fn action_or_default(&self) -> Action {
        self.action.unwrap_or(Action::Execute)
    }

    /// Parses a `<command/>` element.
    pub fn from_element(element: Element) -> Result<Self, xso::error::FromElementError> {
        Command::try_from(element)
    }

    /// Serialises into a minidom element.
    pub fn to_element(&self) -> Element {
        self.clone().into_element()
    }

    /// Serialises into a minidom element, moving the payloads in as they are.
    ///
    /// Built by hand rather than with `xso::transform`, which replays every
    /// payload as XML events and rebuilds it: with a Quoalise payload of a few
    /// hundred records that was a fifth of the agent's CPU per answer
    /// (`cargo bench --bench xmpp_load`). The small children (actions, notes,
    /// form) still go through their derived serialisers; the result is the same
    /// element (see the tests).
    pub fn into_element(self) -> Element {
        use minidom::rxml::{Namespace, xml_ncname};
        let Command {
            node,
            sessionid,
            action,
            status,
            actions,
            notes,
            form,
            payloads,
        } = self;
        let mut element = Element::bare("command", NS_COMMANDS);
        let attributes = [
            (xml_ncname!("node"), node),
            (xml_ncname!("sessionid"), sessionid),
            (xml_ncname!("action"), action.map(|a| a.as_str().to_owned())),
            (xml_ncname!("status"), status.map(|s| s.as_str().to_owned())),
        ];
        for (name, value) in attributes {
            if let Some(value) = value {
                element.set_attr(Namespace::NONE, name.to_owned(), value);
            }
        }
        // Only fails for values that cannot be represented in XML text, which
        // our fields cannot produce (they come from parsed XML or code).
        let small = |child: Result<Element, xso::error::Error>| {
            child
                .map_err(|e| tracing::error!(error = %e, "cannot serialise a <command/> child"))
                .ok()
        };
        if let Some(actions) = actions.and_then(|a| small(xso::transform(&a))) {
            element.append_child(actions);
        }
        for note in notes {
            if let Some(note) = small(xso::transform(&note)) {
                element.append_child(note);
            }
        }
        if let Some(form) = form {
            element.append_child(super::forms::form_element(form));
        }
        for payload in payloads {
            element.append_child(payload);
        }
        element
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};

    fn parse(xml: &str) -> Result<Command, xso::error::FromElementError> {
        Command::from_element(xml.parse::<Element>().unwrap())
    }

    #[test]
    fn parses_the_quoalise_client_request() {
        let command = parse(
            r#"<command xmlns="http://jabber.org/protocol/commands" node="get_history" action="execute">
                <x xmlns="jabber:x:data" type="submit">
                  <field var="identifier" type="text-single"><value>urn:dev:prm:30001610071843_consumption/power/active/raw</value></field>
                  <field var="start_time" type="text-single"><value>2020-03-01T00:00:00+01:00</value></field>
                </x>
              </command>"#,
        )
        .unwrap();
        assert_eq!(command.node.as_deref(), Some("get_history"));
        assert_eq!(command.action, Some(Action::Execute));
        assert_eq!(command.sessionid, None);
        let form = command.form.unwrap();
        assert_eq!(form.type_, DataFormType::Submit);
        assert_eq!(form.fields.len(), 2);
        assert!(command.payloads.is_empty());
    }

    #[test]
    fn absent_action_means_execute() {
        let command =
            parse(r#"<command xmlns="http://jabber.org/protocol/commands" node="n"/>"#).unwrap();
        assert_eq!(command.action, None);
        assert_eq!(command.action_or_default(), Action::Execute);
    }

    #[test]
    fn unknown_action_is_a_precise_error() {
        let err = parse(
            r#"<command xmlns="http://jabber.org/protocol/commands" node="n" action="explode"/>"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown action 'explode'"), "{err}");
    }

    #[test]
    fn keeps_unknown_payloads() {
        let command = parse(
            r#"<command xmlns="http://jabber.org/protocol/commands" node="n" status="completed" sessionid="s1">
                 <quoalise xmlns="urn:quoalise:0"><data/></quoalise>
               </command>"#,
        )
        .unwrap();
        assert_eq!(command.status, Some(Status::Completed));
        assert_eq!(command.payloads.len(), 1);
        assert!(command.payloads[0].is("quoalise", "urn:quoalise:0"));
    }

    #[test]
    fn serialises_an_executing_answer_that_parses_back() {
        let mut answer = Command::answer("echo", Some("abc".into()), Status::Executing);
        answer.actions = Some(Actions {
            execute: Some(Action::Complete),
            complete: true,
            ..Actions::default()
        });
        answer.notes.push(Note::info("fill the form"));
        answer.form = Some(DataForm {
            type_: DataFormType::Form,
            title: Some("Echo".into()),
            instructions: None,
            fields: vec![Field::new("text", FieldType::TextSingle)],
        });
        let element = answer.to_element();
        crate::xmpp::test_util::assert_xml_eq(
            &element,
            concat!(
                r#"<command xmlns="http://jabber.org/protocol/commands" node="echo" sessionid="abc" status="executing">"#,
                r#"<actions execute="complete"><complete/></actions>"#,
                r#"<note type="info">fill the form</note>"#,
                r#"<x xmlns="jabber:x:data" type="form"><title>Echo</title><field var="text"/></x>"#,
                r#"</command>"#
            ),
        );
        assert_eq!(Command::from_element(element).unwrap(), answer);
    }

    #[test]
    fn the_hand_built_element_is_the_derived_one() {
        let mut answer = Command::answer("get_history", Some("s1".into()), Status::Completed);
        answer.action = Some(Action::Complete);
        answer.notes.push(Note::warn("end clamped"));
        answer.form = Some(DataForm {
            type_: DataFormType::Result_,
            title: Some("Get history".into()),
            instructions: None,
            fields: vec![Field::new("result", FieldType::Fixed)],
        });
        answer.payloads.push(
            r#"<quoalise xmlns="urn:quoalise:0"><data><sensml xmlns="urn:ietf:params:xml:ns:senml"><senml t="0" v="1"/></sensml></data></quoalise>"#
                .parse()
                .unwrap(),
        );
        let derived: Element = xso::transform(&answer).unwrap();
        assert_eq!(answer.clone().into_element(), derived);
        assert_eq!(answer.to_element(), derived);
        let bare = Command::answer("n", None, Status::Canceled);
        assert_eq!(bare.to_element(), xso::transform(&bare).unwrap());
    }
}
