//! SOAP 1.1 envelopes: reading a request's body element and its `demande` fields
//! by local name and namespace (clients pick their own prefixes: the examples swap
//! `ns0` and `ns1`), writing answers and faults in the layout of Enedis' answers.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::codes::Sgt;

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The technical namespace of SGE (`tec:`), where faults put `erreur`.
pub const TECHNIQUE: &str = "http://www.enedis.fr/sge/b2b/technique/v1.0";

/// A request's operation element (`Envelope/Body/*`) and the leaf elements of its
/// `demande`, in document order, by local name.
#[derive(Debug, Default)]
pub struct Demande {
    pub operation: String,
    pub namespace: String,
    pub fields: Vec<(String, String)>,
}

impl Demande {
    /// The text of the one field of that name; `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read a SOAP 1.1 request. Nested elements below `demande` are not needed by the
/// services served so far and make the request malformed.
pub fn parse(body: &str) -> Result<Demande, String> {
    let mut reader = NsReader::from_str(body);
    reader.config_mut().trim_text(true);
    // Element stack as (namespace, local name).
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut demande = Demande::default();
    let mut text = String::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let ns = match ns {
                    ResolveResult::Bound(n) => n.as_ref().to_owned(),
                    ResolveResult::Unbound => String::new(),
                    ResolveResult::Unknown(p) => {
                        return Err(format!("unknown prefix {p}"));
                    }
                };
                let local = e.local_name().as_ref().to_owned();
                match stack.len() {
                    0 if !(ns == SOAP_ENV && local == "Envelope") => {
                        return Err("not a SOAP 1.1 envelope".into());
                    }
                    2 if stack[1].1 == "Body" => {
                        demande.operation = local.clone();
                        demande.namespace = ns.clone();
                    }
                    3 if local != "demande" => return Err(format!("unexpected <{local}>")),
                    5.. => return Err(format!("unexpected nested <{local}>")),
                    _ => {}
                }
                text.clear();
                stack.push((ns, local));
            }
            Event::Empty(e) => {
                let local = e.local_name().as_ref().to_owned();
                if stack.len() == 4 {
                    demande.fields.push((local, String::new()));
                }
            }
            Event::Text(t) => {
                text.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) => {
                let entity = format!("&{};", r.xml10_content());
                let t = quick_xml::escape::unescape(&entity)
                    .map_err(|e| format!("XML reference: {e}"))?;
                text.push_str(&t);
            }
            Event::End(_) => {
                let (_, local) = stack.pop().ok_or("unbalanced XML")?;
                if stack.len() == 4 {
                    demande.fields.push((local, std::mem::take(&mut text)));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if demande.operation.is_empty() {
        return Err("no operation in soap:Body".into());
    }
    Ok(demande)
}

/// A request's operation element and every leaf below it, as paths of local
/// names relative to the operation (`demande/donneesGenerales/pointId`), in
/// document order; for the services whose requests nest (CDTC, the orders).
#[derive(Debug, Default)]
pub struct Tree {
    pub operation: String,
    pub namespace: String,
    pub leaves: Vec<(String, String)>,
}

impl Tree {
    /// The text of the first leaf at `path`.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.leaves
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.trim())
    }

    /// The texts of every leaf at `path`.
    pub fn all(&self, path: &str) -> Vec<&str> {
        self.leaves
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Whether any leaf lies under `prefix/`.
    pub fn has(&self, prefix: &str) -> bool {
        let prefix = format!("{prefix}/");
        self.leaves.iter().any(|(p, _)| p.starts_with(&prefix))
    }
}

/// Read a SOAP 1.1 request whose operation element may nest (see [`Tree`]).
pub fn parse_tree(body: &str) -> Result<Tree, String> {
    let mut reader = NsReader::from_str(body);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut tree = Tree::default();
    let mut text = String::new();
    // Whether the element on top of the stack has child elements.
    let mut parent = false;
    let path = |stack: &[String]| stack.get(3..).map(|s| s.join("/")).unwrap_or_default();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let ns = match ns {
                    ResolveResult::Bound(n) => n.as_ref().to_owned(),
                    ResolveResult::Unbound => String::new(),
                    ResolveResult::Unknown(p) => return Err(format!("unknown prefix {p}")),
                };
                let local = e.local_name().as_ref().to_owned();
                match stack.len() {
                    0 if !(ns == SOAP_ENV && local == "Envelope") => {
                        return Err("not a SOAP 1.1 envelope".into());
                    }
                    2 if stack[1] == "Body" => {
                        tree.operation = local.clone();
                        tree.namespace = ns;
                    }
                    _ => {}
                }
                text.clear();
                parent = false;
                stack.push(local);
            }
            Event::Empty(e) => {
                if stack.len() >= 3 && tree.operation == stack[2] {
                    let local = e.local_name().as_ref().to_owned();
                    let mut p = path(&stack);
                    if !p.is_empty() {
                        p.push('/');
                    }
                    p.push_str(&local);
                    tree.leaves.push((p, String::new()));
                }
                parent = true;
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let entity = format!("&{};", r.xml10_content());
                let t = quick_xml::escape::unescape(&entity)
                    .map_err(|e| format!("XML reference: {e}"))?;
                text.push_str(&t);
            }
            Event::End(_) => {
                if stack.len() > 3 && !parent && tree.operation == stack[2] {
                    tree.leaves.push((path(&stack), std::mem::take(&mut text)));
                }
                stack.pop().ok_or("unbalanced XML")?;
                parent = true;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if tree.operation.is_empty() {
        return Err("no operation in soap:Body".into());
    }
    Ok(tree)
}

/// Escape text for an XML element.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// An answer: `body` is the content of `soap:Body`, indented by four spaces.
pub fn ok(body: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" ?>\n<soap:Envelope xmlns:soap=\"{SOAP_ENV}\">\n  <soap:Body>\n{body}  </soap:Body>\n</soap:Envelope>\n"
    );
    xml_response(StatusCode::OK, xml)
}

/// A fault as GUI.0488 §4.3 prints one: HTTP 500, `soap:Server`, `faultstring`,
/// `detail/tec:erreur/resultat@code`. `service_ns` is declared as `ns4`, as there.
pub fn fault(faultstring: &str, service_ns: &str, sgt: Sgt) -> Response {
    fault_with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        faultstring,
        service_ns,
        sgt,
    )
}

/// [`fault`] with another HTTP status (the admin API's forced statuses).
pub fn fault_with_status(
    status: StatusCode,
    faultstring: &str,
    service_ns: &str,
    sgt: Sgt,
) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" ?>\n<soap:Envelope xmlns:soap=\"{SOAP_ENV}\">\n <soap:Body>\n  <soap:Fault>\n   <faultcode>soap:Server</faultcode>\n   <faultstring>{}</faultstring>\n   <detail>\n    <ns3:erreur xmlns:ns4=\"{service_ns}\" xmlns:ns3=\"{TECHNIQUE}\" xmlns:ns2=\"{SOAP_ENV}\">\n     <resultat code=\"{}\">{}</resultat>\n    </ns3:erreur>\n   </detail>\n  </soap:Fault>\n </soap:Body>\n</soap:Envelope>\n",
        escape(faultstring),
        sgt.code(),
        escape(sgt.label()),
    );
    xml_response(status, xml)
}

/// An answer with a `soap:Header`: `inner` is the envelope's content (header and
/// body), indented by two spaces.
pub fn ok_with_header(inner: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" ?>\n<soap:Envelope xmlns:soap=\"{SOAP_ENV}\">\n{inner}</soap:Envelope>\n"
    );
    xml_response(StatusCode::OK, xml)
}

fn xml_response(status: StatusCode, xml: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}
