//! XEP-0004 data-form helpers: reading a submitted form with precise errors, and
//! building the forms a Gajim/Psi user fills and the result forms peers read.

use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};
use xmpp_parsers::ns;

use super::errors::CommandError;

/// A precise complaint about a submitted form; becomes `bad-request`/`modify`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("expected a data form of type 'submit', got type '{0}'")]
    NotSubmit(&'static str),
    #[error("missing required field '{0}'")]
    Missing(String),
    #[error("field '{0}' is empty")]
    Empty(String),
    #[error("field '{var}' has {count} values; expected one")]
    TooManyValues { var: String, count: usize },
    #[error("field '{var}' must be one of: {allowed}; got '{value}'")]
    NotAnOption {
        var: String,
        value: String,
        allowed: String,
    },
    #[error("field '{var}' must be a boolean (true, false, 1 or 0); got '{value}'")]
    NotBoolean { var: String, value: String },
    #[error("field '{var}': {reason}")]
    Invalid { var: String, reason: String },
}

impl From<FormError> for CommandError {
    fn from(e: FormError) -> Self {
        CommandError::BadRequest(e.to_string())
    }
}

fn type_name(t: &DataFormType) -> &'static str {
    match t {
        DataFormType::Cancel => "cancel",
        DataFormType::Form => "form",
        DataFormType::Result_ => "result",
        DataFormType::Submit => "submit",
    }
}

/// A form a peer submitted (`type="submit"`), read field by field.
///
/// Field types are not trusted (peers often omit them in submissions): the
/// caller says what it expects with the accessor it calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubmittedForm {
    fields: Vec<Field>,
}

impl SubmittedForm {
    /// Accepts only `type="submit"` forms.
    pub fn new(form: DataForm) -> Result<Self, FormError> {
        if form.type_ != DataFormType::Submit {
            return Err(FormError::NotSubmit(type_name(&form.type_)));
        }
        Ok(SubmittedForm {
            fields: form.fields,
        })
    }

    /// An empty submission (a command run without a form).
    pub fn empty() -> Self {
        SubmittedForm::default()
    }

    fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// Whether the field was submitted at all (possibly empty).
    pub fn has(&self, var: &str) -> bool {
        self.field(var).is_some()
    }

    /// Names of the submitted fields, in order (FORM_TYPE excluded).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter_map(|f| f.var.as_deref())
            .filter(|v| *v != "FORM_TYPE")
    }

    /// A single-valued field (text-single, list-single, jid-single, hidden…),
    /// trimmed; `None` when absent or empty.
    pub fn optional(&self, var: &str) -> Result<Option<String>, FormError> {
        let Some(field) = self.field(var) else {
            return Ok(None);
        };
        match field.values.as_slice() {
            [] => Ok(None),
            [one] => {
                let value = one.trim();
                Ok((!value.is_empty()).then(|| value.to_owned()))
            }
            many => Err(FormError::TooManyValues {
                var: var.to_owned(),
                count: many.len(),
            }),
        }
    }

    /// A single-valued field that must be present and non-empty.
    pub fn required(&self, var: &str) -> Result<String, FormError> {
        if !self.has(var) {
            return Err(FormError::Missing(var.to_owned()));
        }
        self.optional(var)?
            .ok_or_else(|| FormError::Empty(var.to_owned()))
    }

    /// A text-multi field: its `<value/>` lines joined by `\n`; `None` when absent
    /// or all lines are empty.
    pub fn text_multi(&self, var: &str) -> Option<String> {
        let field = self.field(var)?;
        let text = field.values.join("\n");
        (!text.trim().is_empty()).then_some(text)
    }

    /// A text-multi field that must be present and hold some text.
    pub fn required_text_multi(&self, var: &str) -> Result<String, FormError> {
        if !self.has(var) {
            return Err(FormError::Missing(var.to_owned()));
        }
        self.text_multi(var)
            .ok_or_else(|| FormError::Empty(var.to_owned()))
    }

    /// All values of a multi-valued field (list-multi, jid-multi), empty ones dropped.
    pub fn values(&self, var: &str) -> Vec<String> {
        self.field(var)
            .map(|f| {
                f.values
                    .iter()
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A list-single field whose value must be one of `allowed`; `default` when
    /// absent or empty.
    pub fn choice(
        &self,
        var: &str,
        allowed: &[&str],
        default: Option<&str>,
    ) -> Result<Option<String>, FormError> {
        match self.optional(var)? {
            None => Ok(default.map(str::to_owned)),
            Some(value) if allowed.contains(&value.as_str()) => Ok(Some(value)),
            Some(value) => Err(FormError::NotAnOption {
                var: var.to_owned(),
                value,
                allowed: allowed.join(", "),
            }),
        }
    }

    /// A boolean field (XEP-0004: `1`/`true`, `0`/`false`); `default` when absent.
    pub fn boolean(&self, var: &str, default: bool) -> Result<bool, FormError> {
        match self.optional(var)?.as_deref() {
            None => Ok(default),
            Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(other) => Err(FormError::NotBoolean {
                var: var.to_owned(),
                value: other.to_owned(),
            }),
        }
    }

    /// A required field parsed by `parse`, whose error text is reported with the
    /// field's name.
    pub fn parse_required<T, E: std::fmt::Display>(
        &self,
        var: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, FormError> {
        let value = self.required(var)?;
        parse(&value).map_err(|e| FormError::Invalid {
            var: var.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Builds a form (`type="form"`, for humans to fill) or a result form.
#[derive(Debug, Clone)]
pub struct FormBuilder {
    form: DataForm,
}

impl FormBuilder {
    /// A form to fill, with a title.
    pub fn form(title: impl Into<String>) -> Self {
        FormBuilder {
            form: DataForm {
                type_: DataFormType::Form,
                title: Some(title.into()),
                instructions: None,
                fields: Vec::new(),
            },
        }
    }

    /// A result form, with a title.
    pub fn result(title: impl Into<String>) -> Self {
        FormBuilder {
            form: DataForm {
                type_: DataFormType::Result_,
                title: Some(title.into()),
                instructions: None,
                fields: Vec::new(),
            },
        }
    }

    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.form.instructions = Some(text.into());
        self
    }

    /// Adds any field (see the `*_field` constructors and [`FieldExt`]).
    pub fn field(mut self, field: Field) -> Self {
        self.form.fields.push(field);
        self
    }

    pub fn build(self) -> DataForm {
        self.form
    }
}

/// A labelled text-single field.
pub fn text_single(var: &str, label: &str) -> Field {
    Field::new(var, FieldType::TextSingle).label(label)
}

/// A labelled text-multi field.
pub fn text_multi(var: &str, label: &str) -> Field {
    Field::new(var, FieldType::TextMulti).label(label)
}

/// A labelled list-single field with `(value, label)` options.
pub fn list_single(var: &str, label: &str, options: &[(&str, &str)]) -> Field {
    let mut field = Field::new(var, FieldType::ListSingle).label(label);
    field.options = options
        .iter()
        .map(|(value, label)| Option_ {
            label: Some((*label).to_owned()),
            value: (*value).to_owned(),
        })
        .collect();
    field
}

/// A labelled boolean field.
pub fn boolean(var: &str, label: &str) -> Field {
    Field::new(var, FieldType::Boolean).label(label)
}

/// A hidden field carrying `value` back in the submission.
pub fn hidden(var: &str, value: &str) -> Field {
    Field::new(var, FieldType::Hidden).value(value)
}

/// A fixed (read-only) field, e.g. `<field var="result" type="fixed" label=…><value>Success</value>`.
pub fn fixed(var: Option<&str>, label: Option<&str>, value: &str) -> Field {
    let mut field = Field::new("", FieldType::Fixed);
    field.var = var.map(str::to_owned);
    field.label = label.map(str::to_owned);
    field.values.push(value.to_owned());
    field
}

/// Chainable setters for xmpp-parsers' [`Field`].
pub trait FieldExt {
    fn label(self, label: &str) -> Self;
    /// Appends a value (the default shown to a human, or a result value).
    fn value(self, value: &str) -> Self;
    /// Sets the value(s) from text, one `<value/>` per line (text-multi).
    fn lines(self, text: &str) -> Self;
    fn required(self) -> Self;
    fn desc(self, desc: &str) -> Self;
}

impl FieldExt for Field {
    fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    fn value(mut self, value: &str) -> Self {
        self.values.push(value.to_owned());
        self
    }

    fn lines(mut self, text: &str) -> Self {
        self.values.extend(text.lines().map(str::to_owned));
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn desc(mut self, desc: &str) -> Self {
        self.desc = Some(desc.to_owned());
        self
    }
}

/// The form as a minidom element: the element `Element::from(form)` gives (the
/// tests compare them), built directly. xmpp-parsers' conversion replays the form
/// as serialiser events and rebuilds it from them, which was about 4 % of the
/// agent's CPU per cached request (the result form of every answer). Fields with
/// media or validation rules, which this agent never builds, still go through it.
pub fn form_element(form: DataForm) -> Element {
    if form
        .fields
        .iter()
        .any(|f| !f.media.is_empty() || f.validate.is_some())
    {
        return Element::from(form);
    }
    let DataForm {
        type_,
        title,
        instructions,
        fields,
    } = form;
    let mut x = Element::bare("x", ns::DATA_FORMS);
    attribute(&mut x, "type", type_);
    for (name, text) in [("title", title), ("instructions", instructions)] {
        if let Some(text) = text {
            x.append_child(text_element(name, text));
        }
    }
    for field in fields {
        x.append_child(field_element(field));
    }
    x
}

fn field_element(field: Field) -> Element {
    let Field {
        var,
        type_,
        label,
        required,
        desc,
        options,
        values,
        media: _,
        validate: _,
    } = field;
    let mut element = Element::bare("field", ns::DATA_FORMS);
    attribute(&mut element, "var", var);
    // The default type (text-single) is left out, as xmpp-parsers does.
    attribute(&mut element, "type", type_);
    attribute(&mut element, "label", label);
    if required {
        element.append_child(Element::bare("required", ns::DATA_FORMS));
    }
    if let Some(desc) = desc {
        element.append_child(text_element("desc", desc));
    }
    for option in options {
        let mut o = Element::bare("option", ns::DATA_FORMS);
        attribute(&mut o, "label", option.label);
        o.append_child(text_element("value", option.value));
        element.append_child(o);
    }
    for value in values {
        element.append_child(text_element("value", value));
    }
    element
}

fn text_element(name: &str, text: String) -> Element {
    let mut element = Element::bare(name, ns::DATA_FORMS);
    element.append_text_node(text);
    element
}

/// Sets an attribute; no value (or the type's default) leaves it out.
fn attribute(element: &mut Element, name: &'static str, value: impl minidom::IntoAttributeValue) {
    // Names here are constants, all valid.
    if let Ok(name) = NcName::try_from(name) {
        element.set_attr(Namespace::NONE, name, value);
    }
}

/// A data form read as `DataForm::try_from` reads it (the `<command/>` tests
/// compare them), directly, when it is a plain form: the submitted forms of peers
/// and of Gajim or Psi. xmpp-parsers replays the element as parser events into its
/// generated reader, which was, with the `<command/>` around it, about 6 % of the
/// agent's CPU per cached request (`cargo bench --bench xmpp_load`, perf). `None`
/// for anything else (a title, options, media, validation rules, an attribute or
/// text out of place, a form xmpp-parsers would refuse): the caller then leaves it
/// to xmpp-parsers, with its errors ([`super::command::Command::from_element`]).
pub(crate) fn plain_form(x: &Element) -> Option<DataForm> {
    if !x.is("x", ns::DATA_FORMS) || !only_attributes(x, &["type"]) {
        return None;
    }
    let type_: DataFormType = x.attr("type")?.parse().ok()?;
    let mut fields = Vec::new();
    for node in x.nodes() {
        match node {
            minidom::Node::Text(text) if is_blank(text) => {}
            minidom::Node::Element(e) if e.is("field", ns::DATA_FORMS) => {
                fields.push(plain_field(e)?);
            }
            _ => return None,
        }
    }
    // xmpp-parsers moves the FORM_TYPE field first, and refuses two of them or one
    // without exactly one value: leave those to it.
    let mut form_types = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_form_type(&type_));
    if let Some((index, field)) = form_types.next() {
        if field.values.len() != 1 || form_types.next().is_some() {
            return None;
        }
        let field = fields.remove(index);
        fields.insert(0, field);
    }
    Some(DataForm {
        type_,
        title: None,
        instructions: None,
        fields,
    })
}

/// A `<field/>` with a `var`, an optional type and label, and `<value/>`s only.
fn plain_field(e: &Element) -> Option<Field> {
    if !only_attributes(e, &["var", "type", "label"]) {
        return None;
    }
    let type_ = match e.attr("type") {
        Some(t) => t.parse::<FieldType>().ok()?,
        None => FieldType::default(),
    };
    let mut field = Field::new(e.attr("var")?, type_);
    field.label = e.attr("label").map(str::to_owned);
    for node in e.nodes() {
        match node {
            minidom::Node::Text(text) if is_blank(text) => {}
            minidom::Node::Element(v)
                if v.is("value", ns::DATA_FORMS)
                    && v.attrs().is_empty()
                    && v.nodes().all(|n| n.as_text().is_some()) =>
            {
                field.values.push(v.text());
            }
            _ => return None,
        }
    }
    Some(field)
}

/// Every attribute of `e` is unqualified and one of `allowed`.
pub(crate) fn only_attributes(e: &Element, allowed: &[&str]) -> bool {
    e.attrs()
        .iter()
        .all(|((namespace, name), _)| namespace.is_none() && allowed.contains(&name.as_str()))
}

/// Whitespace between elements, which readers ignore.
pub(crate) fn is_blank(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::test_util::assert_xml_eq;
    use minidom::Element;

    fn submitted(xml: &str) -> SubmittedForm {
        let element: Element = xml.parse().unwrap();
        SubmittedForm::new(DataForm::try_from(element).unwrap()).unwrap()
    }

    const FORM: &str = r#"<x xmlns="jabber:x:data" type="submit">
        <field var="identifier" type="text-single"><value> urn:dev:prm:30001610071843_consumption/power/active/raw </value></field>
        <field var="empty"><value></value></field>
        <field var="novalue"/>
        <field var="two"><value>a</value><value>b</value></field>
        <field var="description" type="text-multi"><value>&lt;p&gt;Hello</value><value>world&lt;/p&gt;</value></field>
        <field var="direction"><value>production</value></field>
        <field var="flag"><value>1</value></field>
      </x>"#;

    #[test]
    fn reads_single_values_trimmed() {
        let form = submitted(FORM);
        assert_eq!(
            form.required("identifier").unwrap(),
            "urn:dev:prm:30001610071843_consumption/power/active/raw"
        );
        assert_eq!(form.optional("absent").unwrap(), None);
    }

    #[test]
    fn missing_and_empty_required_fields_are_named() {
        let form = submitted(FORM);
        assert_eq!(
            form.required("start_time").unwrap_err().to_string(),
            "missing required field 'start_time'"
        );
        assert_eq!(
            form.required("empty").unwrap_err().to_string(),
            "field 'empty' is empty"
        );
        assert_eq!(
            form.required("novalue").unwrap_err().to_string(),
            "field 'novalue' is empty"
        );
        assert_eq!(
            form.required("two").unwrap_err().to_string(),
            "field 'two' has 2 values; expected one"
        );
    }

    #[test]
    fn text_multi_joins_lines() {
        let form = submitted(FORM);
        assert_eq!(
            form.text_multi("description").unwrap(),
            "<p>Hello\nworld</p>"
        );
        assert_eq!(form.text_multi("empty"), None);
        assert!(matches!(
            form.required_text_multi("nothing"),
            Err(FormError::Missing(_))
        ));
    }

    #[test]
    fn choices_and_booleans() {
        let form = submitted(FORM);
        let allowed = ["consumption", "production"];
        assert_eq!(
            form.choice("direction", &allowed, Some("consumption"))
                .unwrap()
                .as_deref(),
            Some("production")
        );
        assert_eq!(
            form.choice("absent", &allowed, Some("consumption"))
                .unwrap()
                .as_deref(),
            Some("consumption")
        );
        assert_eq!(
            form.choice("identifier", &allowed, None)
                .unwrap_err()
                .to_string(),
            "field 'identifier' must be one of: consumption, production; got 'urn:dev:prm:30001610071843_consumption/power/active/raw'"
        );
        assert!(form.boolean("flag", false).unwrap());
        assert!(form.boolean("identifier", false).is_err());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let form = submitted(FORM);
        let err = form
            .parse_required("direction", |v| v.parse::<u32>())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("field 'direction': invalid digit"), "{err}");
    }

    #[test]
    fn only_submit_forms_are_accepted() {
        let element: Element = r#"<x xmlns="jabber:x:data" type="result"/>"#.parse().unwrap();
        let err = SubmittedForm::new(DataForm::try_from(element).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a data form of type 'submit', got type 'result'"
        );
    }

    #[test]
    fn builds_a_labelled_form_with_defaults() {
        let form = FormBuilder::form("Get load curve")
            .instructions("Mean power, as Enedis records it")
            .field(text_single("usage_point_id", "Usage point (PRM)").required())
            .field(
                list_single(
                    "direction",
                    "Direction",
                    &[("consumption", "Consumption"), ("production", "Production")],
                )
                .value("consumption"),
            )
            .field(text_multi("description", "Description").lines("a\nb"))
            .build();
        // text-single is the default type: xmpp-parsers leaves the attribute out.
        assert_xml_eq(
            &Element::from(form),
            concat!(
                r#"<x xmlns="jabber:x:data" type="form"><title>Get load curve</title>"#,
                r#"<instructions>Mean power, as Enedis records it</instructions>"#,
                r#"<field var="usage_point_id" label="Usage point (PRM)"><required/></field>"#,
                r#"<field var="direction" type="list-single" label="Direction">"#,
                r#"<option label="Consumption"><value>consumption</value></option>"#,
                r#"<option label="Production"><value>production</value></option>"#,
                r#"<value>consumption</value></field>"#,
                r#"<field var="description" type="text-multi" label="Description"><value>a</value><value>b</value></field>"#,
                r#"</x>"#
            ),
        );
    }

    #[test]
    fn builds_a_result_form_with_fixed_fields() {
        let form = FormBuilder::result("Get history")
            .field(fixed(
                Some("result"),
                Some("Get urn:dev:prm:30001610071843_consumption/power/active/raw"),
                "Success",
            ))
            .field(text_single("count", "Records").value("2"))
            .build();
        assert_xml_eq(
            &Element::from(form),
            concat!(
                r#"<x xmlns="jabber:x:data" type="result"><title>Get history</title>"#,
                r#"<field var="result" type="fixed" label="Get urn:dev:prm:30001610071843_consumption/power/active/raw"><value>Success</value></field>"#,
                r#"<field var="count" label="Records"><value>2</value></field>"#,
                r#"</x>"#
            ),
        );
    }

    #[test]
    fn the_direct_element_is_xmpp_parsers_element() {
        let mut unlabelled = list_single("kind", "Kind", &[("a", "A")]);
        unlabelled.options.push(Option_ {
            label: None,
            value: "b".into(),
        });
        let forms = [
            FormBuilder::form("Get load curve")
                .instructions("Mean power <W> & \"more\"")
                .field(text_single("usage_point_id", "Usage point (PRM)").required())
                .field(unlabelled.value("a").desc("pick one"))
                .field(text_multi("description", "Description").lines("a\nb"))
                .field(boolean("agree", "Agree").value("true"))
                .field(hidden("FORM_TYPE", "urn:example"))
                .field(text_single("empty", "Empty").value(""))
                .build(),
            FormBuilder::result("Get history")
                .field(fixed(None, None, "Success"))
                .field(fixed(Some("result"), Some("Get it"), "Success"))
                .build(),
            DataForm {
                type_: DataFormType::Submit,
                title: None,
                instructions: None,
                fields: vec![Field::new("bare", FieldType::TextSingle)],
            },
            DataForm {
                type_: DataFormType::Cancel,
                title: None,
                instructions: None,
                fields: Vec::new(),
            },
        ];
        for form in forms {
            assert_eq!(form_element(form.clone()), Element::from(form));
        }
    }
}
