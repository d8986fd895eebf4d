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

use super::ns::NS_COMMANDS;

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

    /// Parses a `<command/>` element, as its derived reader does (the tests
    /// compare them).
    ///
    /// A plain request (known attributes, at most one `<actions/>` and one data
    /// form, notes, payloads, blank text) is read directly, with its form read by
    /// [`super::forms::plain_form`]: the derived reader replays the element
    /// as parser events, which cost about 6 % of the agent's CPU per cached request.
    /// Anything else goes through the derived reader, with its precise errors.
    pub fn from_element(mut element: Element) -> Result<Self, xso::error::FromElementError> {
        let Some(mut command) = plain_command(&element) else {
            return Command::try_from(element);
        };
        // Checked by plain_command: every child element that is not the form, the
        // actions or a note is a payload, in document order.
        for node in element.take_nodes() {
            if let minidom::Node::Element(child) = node
                && child_kind(&child) == ChildKind::Payload
            {
                command.payloads.push(child);
            }
        }
        Ok(command)
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

/// What a child of `<command/>` is to its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildKind {
    Actions,
    Note,
    Form,
    Payload,
}

fn child_kind(child: &Element) -> ChildKind {
    if child.is("actions", NS_COMMANDS) {
        ChildKind::Actions
    } else if child.is("note", NS_COMMANDS) {
        ChildKind::Note
    } else if child.is("x", xmpp_parsers::ns::DATA_FORMS) {
        ChildKind::Form
    } else {
        ChildKind::Payload
    }
}

/// `<command/>` without its payloads, when it is plain (see
/// [`Command::from_element`]); `None` leaves it to the derived reader.
fn plain_command(element: &Element) -> Option<Command> {
    use super::forms::{is_blank, only_attributes, plain_form};
    if !element.is("command", NS_COMMANDS)
        || !only_attributes(element, &["node", "sessionid", "action", "status"])
    {
        return None;
    }
    let text = |name: &str| element.attr(name).map(str::to_owned);
    let mut command = Command {
        node: text("node"),
        sessionid: text("sessionid"),
        action: text("action").map(Action::from_xml_text).transpose().ok()?,
        status: text("status").map(Status::from_xml_text).transpose().ok()?,
        actions: None,
        notes: Vec::new(),
        form: None,
        payloads: Vec::new(),
    };
    for node in element.nodes() {
        let child = match node {
            minidom::Node::Text(text) if is_blank(text) => continue,
            minidom::Node::Text(_) => return None,
            minidom::Node::Element(child) => child,
        };
        match child_kind(child) {
            ChildKind::Actions if command.actions.is_none() => {
                command.actions = Some(Actions::try_from(child.clone()).ok()?);
            }
            ChildKind::Note => command.notes.push(Note::try_from(child.clone()).ok()?),
            ChildKind::Form if command.form.is_none() => command.form = Some(plain_form(child)?),
            ChildKind::Actions | ChildKind::Form => return None,
            ChildKind::Payload => {}
        }
    }
    Some(command)
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

    /// `from_element` (direct for plain requests) and the derived reader agree:
    /// the same command, or the same error.
    fn assert_reads_as_derived(xml: &str) {
        let element: Element = xml.parse().unwrap_or_else(|e| panic!("{xml}: {e}"));
        let direct = Command::from_element(element.clone()).map_err(|e| e.to_string());
        let derived = Command::try_from(element).map_err(|e| e.to_string());
        assert_eq!(direct, derived, "{xml}");
    }

    const CMD: &str = r#"xmlns="http://jabber.org/protocol/commands""#;
    const X: &str = r#"xmlns="jabber:x:data""#;

    #[test]
    fn direct_reading_is_the_derived_one() {
        let cases = [
            // The Quoalise client, the first proxy, Gajim and Psi.
            format!(
                r#"<command {CMD} node="get_history" action="execute">
                  <x {X} type="submit">
                    <field var="identifier" type="text-single"><value>urn:dev:prm:30001610071843_consumption/power/active/raw</value></field>
                    <field var="start_time" type="text-single"><value>2020-03-01T00:00:00+01:00</value></field>
                  </x>
                </command>"#
            ),
            format!(r#"<command {CMD} node="get_load_curve" action="execute"/>"#),
            format!(
                r#"<command {CMD} node="get_daily" sessionid="s1" action="complete"><x {X} type="submit"><field var="FORM_TYPE" type="hidden"><value>urn:x</value></field><field var="usage_point_id"><value>30001610071843</value></field></x></command>"#
            ),
            format!(r#"<command {CMD} node="n" sessionid="s1" action="cancel"/>"#),
            // FORM_TYPE is moved first, typed or not; refused twice or without one value.
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><value>1</value></field><field var="FORM_TYPE"><value>urn:x</value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="FORM_TYPE"><value>a</value></field><field var="FORM_TYPE"><value>b</value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="FORM_TYPE"/></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="form"><field var="FORM_TYPE"><value>a</value></field></x></command>"#
            ),
            // Values: empty, several, escaped, split text, multi-line.
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><value/></field><field var="b" type="text-multi" label="B"><value>x &amp; &lt;y&gt;</value><value>
z </value></field><field var="c" type="boolean"/></x></command>"#
            ),
            // What only the derived reader handles, or refuses.
            format!(r#"<command {CMD} node="n" action="explode"/>"#),
            format!(r#"<command {CMD} node="n" status="done"/>"#),
            format!(r#"<command {CMD} node="n" extra="1"/>"#),
            format!(r#"<command {CMD} node="n" xml:lang="fr"/>"#),
            format!(r#"<command {CMD} node="n">text</command>"#),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"/><x {X} type="submit"/></command>"#
            ),
            format!(r#"<command {CMD} node="n"><x {X} type="bogus"/></command>"#),
            format!(r#"<command {CMD} node="n"><x {X}/></command>"#),
            format!(r#"<command {CMD} node="n"><x {X} type="submit" extra="1"/></command>"#),
            format!(
                r#"<command {CMD} node="n"><x {X} type="form"><title>T</title><instructions>I</instructions></x></command>"#
            ),
            format!(r#"<command {CMD} node="n"><x {X} type="submit">text</x></command>"#),
            format!(r#"<command {CMD} node="n"><x {X} type="submit"><field/></x></command>"#),
            format!(
                r#"<command {CMD} node="n"><x {X} type="result"><field type="fixed"><value>v</value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a" type="weird"/></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a" extra="1"/></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a">t</field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><value a="1">v</value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><value>v<b/></value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="form"><field var="a" type="list-single"><required/><desc>D</desc><option label="A"><value>a</value></option><value>a</value></field></x></command>"#
            ),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><option><value>a</value></option></field></x></command>"#
            ),
            format!(r#"<command {CMD} node="n"><x {X} type="submit"><other/></x></command>"#),
            format!(
                r#"<command {CMD} node="n"><x {X} type="submit"><field var="a"><value xmlns="urn:other">v</value></field></x></command>"#
            ),
            // Actions, notes and payloads, in any order.
            format!(
                r#"<command {CMD} node="n" status="executing" sessionid="s"><actions execute="complete"><prev/><complete/></actions><note type="warn">w</note><note>i</note><quoalise xmlns="urn:quoalise:0"><data/></quoalise><x {X} type="form"/><other xmlns="urn:o"/></command>"#
            ),
            format!(r#"<command {CMD} node="n"><actions/><actions/></command>"#),
            format!(r#"<command {CMD} node="n"><actions execute="jump"/></command>"#),
            format!(r#"<command {CMD} node="n"><note type="shout">n</note></command>"#),
            format!(r#"<command {CMD} node="n"><unknown/></command>"#),
            format!(r#"<command {CMD}/>"#),
            r#"<command xmlns="urn:not-commands" node="n"/>"#.to_owned(),
        ];
        for xml in &cases {
            assert_reads_as_derived(xml);
        }
        // The requests of peers, Gajim and Psi take the direct path; the rest not.
        let direct = |xml: &str| plain_command(&xml.parse().unwrap()).is_some();
        assert!(cases[..5].iter().all(|xml| direct(xml)));
        assert!(direct(&cases[8]));
        assert!(direct(&cases[31]));
        assert!(!direct(&cases[5]) && !direct(&cases[12]) && !direct(&cases[18]));
    }

    proptest::proptest! {
        /// Any mix of the parts above reads the same both ways.
        #[test]
        fn any_command_reads_as_derived(
            attributes in proptest::sample::subsequence(
                vec![r#"node="n""#, r#"sessionid="s""#, r#"action="complete""#, r#"action="jump""#,
                     r#"status="completed""#, r#"xml:lang="en""#, r#"x="1""#],
                0..4,
            ),
            children in proptest::collection::vec(
                proptest::sample::select(vec![
                    " ", "\n  ", "text",
                    r#"<x xmlns="jabber:x:data" type="submit"><field var="a"><value>1</value></field></x>"#,
                    r#"<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>u</value></field> <field var="b" type="text-multi"><value>1</value><value>2</value></field></x>"#,
                    r#"<x xmlns="jabber:x:data" type="result"><field var="r" type="fixed" label="L"><value>ok</value></field></x>"#,
                    r#"<x xmlns="jabber:x:data" type="submit"><field var="a" type="nope"/></x>"#,
                    r#"<x xmlns="jabber:x:data" type="submit"><field><value>1</value></field></x>"#,
                    r#"<x xmlns="jabber:x:data" type="form"><title>t</title></x>"#,
                    r#"<x xmlns="jabber:x:data" type="cancel"/>"#,
                    r#"<actions execute="next"><next/></actions>"#,
                    r#"<note type="info">i</note>"#,
                    r#"<note type="loud">i</note>"#,
                    r#"<quoalise xmlns="urn:quoalise:0"><data/></quoalise>"#,
                    r#"<payload xmlns="urn:p">t</payload>"#,
                ]),
                0..5,
            ),
        ) {
            let xml = format!(
                r#"<command xmlns="http://jabber.org/protocol/commands" {}>{}</command>"#,
                attributes.join(" "),
                children.concat()
            );
            assert_reads_as_derived(&xml);
        }
    }
}
