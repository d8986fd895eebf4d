//! SOAP 1.1 for SGE: the envelope around a request's payload, a small tree of an
//! answer read by *local name* (producers choose their own prefixes: Enedis writes
//! `ns3:`/`ns4:`, the examples swap `ns0` and `ns1`), and the fault an answer may
//! carry (`soap:Fault/detail/*:erreur/resultat@code`).

use quick_xml::Reader;
use quick_xml::events::Event;

/// The SOAP 1.1 envelope namespace.
pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SGE's technical namespace (`tec:`): `erreur`, `acquittement`, `entete`.
pub const TECHNIQUE: &str = "http://www.enedis.fr/sge/b2b/technique/v1.0";

/// Deepest element nesting read; SGE answers are about eight deep.
const MAX_DEPTH: usize = 64;

/// Text escaped for an XML element or attribute.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// A SOAP 1.1 envelope whose body is `payload` (one element, already written).
pub fn envelope(payload: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\"><soapenv:Header/><soapenv:Body>{payload}</soapenv:Body></soapenv:Envelope>"
    )
}

/// Writes a payload element by element: `<tag>escaped text</tag>`.
#[derive(Debug, Default)]
pub struct Payload(String);

impl Payload {
    /// `<prefix:name xmlns:prefix="namespace">`: the payload's root element.
    pub fn root(prefix: &str, name: &str, namespace: &str) -> Payload {
        Payload(format!(
            "<{prefix}:{name} xmlns:{prefix}=\"{}\">",
            escape(namespace)
        ))
    }
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        self
    }
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        self.0.push_str(&escape(text));
        self.close(name)
    }
    pub fn leaf_opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(text) = text {
            self.leaf(name, text);
        }
        self
    }
    /// Closes the root element and returns the payload.
    pub fn finish(mut self, prefix: &str, name: &str) -> String {
        self.close(&format!("{prefix}:{name}"));
        self.0
    }
}

/// One element of an answer: its local name, attributes (by local name), direct
/// text (trimmed) and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    /// Every child named `name`, in document order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The element at `path` (child names) below this one.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, name| node.child(name))
    }
    /// The trimmed text of the child `name`, when present and not empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }
    /// The text at `path`, when present and not empty.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        self.attribute("nil").is_some_and(|v| v.trim() == "true")
    }
}

/// Read a document into its root [`Node`], names without prefixes.
pub fn parse(xml: &[u8]) -> Result<Node, String> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err("content after the root element".to_owned());
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(node_of(&e)?);
            }
            Event::Empty(e) => {
                let node = node_of(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(node) = stack.last_mut() {
                    let name = r.xml10_content();
                    if let Some(c) = r
                        .resolve_char_ref()
                        .map_err(|e| format!("character reference in <{}>: {e}", node.name))?
                    {
                        node.text.push(c);
                    } else {
                        let entity = format!("&{name};");
                        let text = quick_xml::escape::unescape(&entity)
                            .map_err(|e| format!("entity in <{}>: {e}", node.name))?;
                        node.text.push_str(&text);
                    }
                }
            }
            Event::End(_) => {
                let Some(mut node) = stack.pop() else {
                    return Err("unbalanced end tag".to_owned());
                };
                node.text = node.text.trim().to_owned();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".to_owned());
    }
    root.ok_or_else(|| "no root element".to_owned())
}

fn node_of(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let name = e.local_name().as_ref().to_owned();
    let mut attributes = Vec::new();
    for attribute in e.attributes() {
        let attribute = attribute.map_err(|err| format!("attribute of <{name}>: {err}"))?;
        let key = attribute.key.local_name().as_ref().to_owned();
        if attribute.key.as_ref().starts_with("xmlns") {
            continue;
        }
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::default())
            .map_err(|err| format!("attribute {key} of <{name}>: {err}"))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Node {
        name,
        attributes,
        text: String::new(),
        children: Vec::new(),
    })
}

/// A read answer: its header and body elements.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub header: Option<Node>,
    pub body: Node,
}

impl Envelope {
    /// The body's first element (the operation's response, or `Fault`).
    pub fn payload(&self) -> Option<&Node> {
        self.body.children.first()
    }
}

/// Read a SOAP envelope.
pub fn read_envelope(xml: &[u8]) -> Result<Envelope, String> {
    let root = parse(xml)?;
    if root.name != "Envelope" {
        return Err(format!(
            "<{}> where a SOAP Envelope was expected",
            root.name
        ));
    }
    let body = root
        .child("Body")
        .cloned()
        .ok_or("the SOAP envelope has no Body")?;
    Ok(Envelope {
        header: root.child("Header").cloned(),
        body,
    })
}

/// A SOAP fault as SGE writes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `soap:Server`, `soap:Client`, without the prefix.
    pub faultcode: String,
    pub faultstring: String,
    /// `detail/erreur/resultat@code` (`SGT4K2`), when given.
    pub code: Option<String>,
    /// `detail/erreur/resultat` text (Enedis' label of the code), when given.
    pub label: Option<String>,
}

/// The fault in a body, if the body holds one.
pub fn fault(envelope: &Envelope) -> Option<Fault> {
    let fault = envelope.body.child("Fault")?;
    let faultcode = fault.text_of("faultcode").unwrap_or_default();
    let faultcode = faultcode
        .rsplit_once(':')
        .map_or(faultcode, |(_, local)| local)
        .to_owned();
    let resultat = fault
        .child("detail")
        .and_then(|d| d.children.iter().find_map(|e| e.child("resultat")));
    Some(Fault {
        faultcode,
        faultstring: fault.text_of("faultstring").unwrap_or_default().to_owned(),
        code: resultat
            .and_then(|r| r.attribute("code"))
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty()),
        label: resultat.map(|r| r.text.clone()).filter(|t| !t.is_empty()),
    })
}

/// The `tec:acquittement` of an order's header: its `resultat` code and label.
pub fn acknowledgement(envelope: &Envelope) -> Option<(String, String)> {
    let resultat = envelope
        .header
        .as_ref()?
        .child("acquittement")?
        .child("resultat")?;
    Some((
        resultat
            .attribute("code")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        resultat.text.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_without_prefixes_and_entities_resolved() {
        let xml = br#"<?xml version="1.0"?><a:Envelope xmlns:a="x"><a:Body><b:r xmlns:b="y" b:k="1 &amp; 2"><v xsi:nil="true" xmlns:xsi="z"/><t> caf&#233; &lt;ok&gt; </t></b:r></a:Body></a:Envelope>"#;
        let envelope = read_envelope(xml).unwrap();
        let r = envelope.payload().unwrap();
        assert_eq!(r.name, "r");
        assert_eq!(r.attribute("k"), Some("1 & 2"));
        assert!(r.child("v").unwrap().is_nil());
        assert_eq!(r.text_of("t"), Some("café <ok>"));
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"").is_err());
        assert!(read_envelope(b"<html/>").is_err());
    }

    #[test]
    fn payloads_escape_text() {
        let mut p = Payload::root("ns", "op", "urn:x");
        p.open("demande")
            .leaf("nom", "Dupont & <fils>")
            .close("demande");
        let xml = p.finish("ns", "op");
        assert_eq!(
            xml,
            "<ns:op xmlns:ns=\"urn:x\"><demande><nom>Dupont &amp; &lt;fils&gt;</nom></demande></ns:op>"
        );
    }
}
