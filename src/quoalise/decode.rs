//! The Quoalise payload decoder: `<quoalise xmlns="urn:quoalise:0">` holding one or
//! more `<data>`, each a `<meta>` (flat or nested form) and a SenML pack.
//!
//! SenML records are resolved as RFC 8428 section 4.5 says: a base field (`bn`,
//! `bt`, `bu`, `bv`) applies to its own record and every later one until replaced;
//! the name is `bn` + `n`, the time `bt` + `t` (`t` defaults to 0), the unit `u` or
//! else `bu`, the value `bv` + `v`. `bver`, `bs`, `s`, `ut`, `l` are ignored and
//! `vs`/`vb`/`vd` records are kept without a numeric value; an attribute whose name
//! ends with `_` must be understood (RFC 8428 section 4.4), so it is refused.
//!
//! It reads what the Quoalise Python client writes, which differs from this agent's
//! encoder: `bt="1600041600.0"`, `t="1800.0"`, `v="100.0"`, `n` suffixes under a
//! `bn` that is only a common prefix, no `t` when it is 0, a `bn`/`bt`/`bu`/`bv` on
//! every record when it did not compress, and `v="None"` for a missing value
//! (Python's `str(None)`), read here as missing.
//!
//! Every error says where (which `<data>`, which record) and what (which attribute,
//! which value); no input makes it panic.

use std::borrow::Cow;

use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, XmlVersion};

use super::meta::{Meta, MetaError, MetaForm};
use super::{
    Identifier, IdentifierError, NS_QUOALISE, NS_SENML, Reading, SeriesKind, Step, TimeSeries,
};

/// One resolved SenML record (RFC 8428 section 4.6): no base fields left.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `bn` + `n`.
    pub name: String,
    /// `bt` + `t`, UTC seconds since the Unix epoch.
    pub time: f64,
    /// `u`, else the `bu` in force.
    pub unit: Option<String>,
    /// `bv` + `v`; `None` when the record has no numeric value (missing, or a
    /// string/boolean/data value).
    pub value: Option<f64>,
}

/// One `<data>`: its metadata and its records, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub meta: Meta,
    pub records: Vec<Record>,
}

/// Why a payload was refused. Positions are 0-based: `data #0` is the first `<data>`,
/// `record #0` the first `<senml>` of its pack.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the payload is not UTF-8 (invalid byte at offset {position})")]
    NotUtf8 { position: usize },
    #[error("malformed XML at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("the document ends inside <{inside}>")]
    UnexpectedEnd { inside: String },
    #[error("the document holds no element; expected <quoalise xmlns=\"urn:quoalise:0\">")]
    NoRoot,
    #[error("expected a <quoalise xmlns=\"urn:quoalise:0\"> element, found <{found}>")]
    Root { found: String },
    #[error("<{element}> must be in namespace {expected:?}, found {}", found.as_deref().map_or("no namespace".to_owned(), |n| format!("{n:?}")))]
    Namespace {
        element: String,
        expected: &'static str,
        found: Option<String>,
    },
    #[error("<quoalise> holds no <data>")]
    NoData,
    #[error("data #{data}: no <meta>")]
    MissingMeta { data: usize },
    #[error("data #{data}: more than one <meta>")]
    DuplicateMeta { data: usize },
    #[error("data #{data}: no <sensml xmlns=\"urn:ietf:params:xml:ns:senml\">")]
    MissingSensml { data: usize },
    #[error("data #{data}: more than one <sensml>")]
    DuplicateSensml { data: usize },
    #[error("data #{data}, record #{record}: {attribute}={value:?} {reason}")]
    Attribute {
        data: usize,
        record: usize,
        attribute: String,
        value: String,
        reason: &'static str,
    },
    #[error(
        "data #{data}, record #{record}: attribute {attribute:?} ends with \"_\" and must be understood, but this decoder does not know it"
    )]
    MustUnderstand {
        data: usize,
        record: usize,
        attribute: String,
    },
    #[error(
        "data #{data}, record #{record}: no name (no bn on this or an earlier record, and no n)"
    )]
    NoName { data: usize, record: usize },
    #[error(
        "data #{data}, record #{record}: time {time} is relative to \"now\" (below 2^28), set bt to an absolute UTC time"
    )]
    RelativeTime {
        data: usize,
        record: usize,
        time: f64,
    },
    #[error("meta: {0}")]
    Meta(#[from] MetaError),
    #[error("record #{record}: name {name:?} is not a Quoalise identifier: {source}")]
    Identifier {
        record: usize,
        name: String,
        source: IdentifierError,
    },
    #[error("record #{record}: name {found:?} differs from the first record's {first:?}")]
    MixedNames {
        record: usize,
        first: String,
        found: String,
    },
    #[error("record #{record}: unit {found:?}, but {identifier} is in {expected}")]
    Unit {
        record: usize,
        found: String,
        identifier: Identifier,
        expected: &'static str,
    },
    #[error("record #{record}: time {time} is not a whole number of seconds")]
    FractionalTime { record: usize, time: f64 },
    #[error("record #{record}: time {time} is after year 9999")]
    TimeRange { record: usize, time: f64 },
    #[error("record #{record}: a second value for time {start}")]
    DuplicateTime { record: usize, start: i64 },
}

/// Decode a `<quoalise>` element from UTF-8 bytes.
pub fn decode_bytes(xml: &[u8]) -> Result<Vec<Data>, DecodeError> {
    let text = std::str::from_utf8(xml).map_err(|e| DecodeError::NotUtf8 {
        position: e.valid_up_to(),
    })?;
    decode(text)
}

/// Decode a `<quoalise>` element from text.
pub fn decode(xml: &str) -> Result<Vec<Data>, DecodeError> {
    Parser::new(xml).quoalise()
}

/// Decode a `<quoalise>` element received as a DOM element (XMPP layer).
pub fn decode_element(element: &minidom::Element) -> Result<Vec<Data>, DecodeError> {
    let mut bytes = Vec::new();
    element.write_to(&mut bytes).map_err(|e| DecodeError::Xml {
        position: 0,
        message: format!("cannot serialise the element: {e}"),
    })?;
    decode_bytes(&bytes)
}

impl Data {
    /// The records as a [`TimeSeries`]: the identifier is the records' name, an
    /// identifier or the first Data Connect proxy's name for one
    /// ([`Identifier::from_record_name`]), or, without records, the one the meta
    /// describes; every reading gets the meta's
    /// sampling step (or, when the meta has none, one calendar day for daily series
    /// and the most common gap between records for load curves).
    pub fn to_time_series(&self) -> Result<TimeSeries, DecodeError> {
        let identifier = match self.records.first() {
            Some(first) => Identifier::from_record_name(&first.name).map_err(|source| {
                DecodeError::Identifier {
                    record: 0,
                    name: shorten(&first.name),
                    source,
                }
            })?,
            None => self.meta.to_identifier()?,
        };
        let unit = identifier.series.unit();

        let mut readings = Vec::with_capacity(self.records.len());
        for (index, record) in self.records.iter().enumerate() {
            if let Some(first) = self.records.first()
                && record.name != first.name
            {
                return Err(DecodeError::MixedNames {
                    record: index,
                    first: shorten(&first.name),
                    found: shorten(&record.name),
                });
            }
            if let Some(found) = &record.unit
                && found != unit
            {
                return Err(DecodeError::Unit {
                    record: index,
                    found: shorten(found),
                    identifier,
                    expected: unit,
                });
            }
            if record.time.fract() != 0.0 {
                return Err(DecodeError::FractionalTime {
                    record: index,
                    time: record.time,
                });
            }
            // Whole seconds up to year 9999 convert exactly to i64 and stay within
            // what the time-zone code downstream accepts.
            if !(0.0..=LAST_SECOND).contains(&record.time) {
                return Err(DecodeError::TimeRange {
                    record: index,
                    time: record.time,
                });
            }
            readings.push((
                index,
                Reading {
                    start: record.time as i64,
                    step: Step::Day,
                    value: record.value,
                },
            ));
        }
        readings.sort_by_key(|(_, r)| r.start);
        if let Some(pair) = readings.windows(2).find(|w| w[0].1.start == w[1].1.start) {
            return Err(DecodeError::DuplicateTime {
                record: pair[1].0,
                start: pair[1].1.start,
            });
        }
        let mut readings: Vec<Reading> = readings.into_iter().map(|(_, r)| r).collect();

        let step = match self.meta.step()? {
            Some(step) => step,
            None => match identifier.series.kind() {
                SeriesKind::LoadCurve => most_common_gap(&readings).unwrap_or(Step::PT30M),
                SeriesKind::DailyEnergy | SeriesKind::DailyMaxPower | SeriesKind::Index => {
                    Step::Day
                }
            },
        };
        for r in &mut readings {
            r.step = step;
        }
        Ok(TimeSeries::new(identifier, readings))
    }
}

/// The most common gap between consecutive readings, if it is a whole number of
/// minutes of at most a day.
fn most_common_gap(readings: &[Reading]) -> Option<Step> {
    let mut gaps: Vec<i64> = readings
        .windows(2)
        .map(|w| w[1].start - w[0].start)
        .collect();
    gaps.sort_unstable();
    let mut best: Option<(i64, usize)> = None;
    for run in gaps.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, n)| run.len() > n) {
            best = Some((run[0], run.len()));
        }
    }
    let (gap, _) = best?;
    if gap > 0 && gap % 60 == 0 && gap <= 86_400 {
        u16::try_from(gap / 60).ok().map(Step::Minutes)
    } else {
        None
    }
}

/// Cut a peer-supplied string for an error message.
fn shorten(s: &str) -> String {
    if s.len() <= 80 {
        s.to_owned()
    } else {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    }
}

/// The namespace an element resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ns {
    Quoalise,
    Senml,
    Other(String),
    None,
}

impl Ns {
    fn name(&self) -> Option<String> {
        match self {
            Ns::Quoalise => Some(NS_QUOALISE.to_owned()),
            Ns::Senml => Some(NS_SENML.to_owned()),
            Ns::Other(n) => Some(n.clone()),
            Ns::None => None,
        }
    }
}

enum Item<'i> {
    /// An opening tag; its children and end tag follow.
    Start(BytesStart<'i>, Ns),
    /// A self-closing tag.
    Empty(BytesStart<'i>, Ns),
    End,
    Eof,
}

fn local<'a>(e: &'a BytesStart<'_>) -> &'a str {
    let name = e.name().into_inner();
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Base fields in force while reading a pack.
#[derive(Default)]
struct Base {
    name: Option<String>,
    time: Option<f64>,
    unit: Option<String>,
    value: Option<f64>,
}

/// 9999-12-31T23:59:59Z, the last second [`Data::to_time_series`] accepts.
const LAST_SECOND: f64 = 253_402_300_799.0;

/// Below this, RFC 8428 section 4.5.3 reads a time as relative to "now".
const RELATIVE_LIMIT: f64 = 268_435_456.0;

struct Parser<'i> {
    reader: NsReader<&'i [u8]>,
}

impl<'i> Parser<'i> {
    fn new(xml: &'i str) -> Self {
        Parser {
            reader: NsReader::from_str(xml),
        }
    }

    fn xml_error(&self, message: impl std::fmt::Display) -> DecodeError {
        DecodeError::Xml {
            position: self.reader.error_position(),
            message: message.to_string(),
        }
    }

    /// The next element boundary; text, comments and declarations are skipped.
    fn next(&mut self) -> Result<Item<'i>, DecodeError> {
        loop {
            let (ns, event) = match self.reader.read_resolved_event() {
                Ok((ns, event)) => {
                    let ns = match ns {
                        ResolveResult::Bound(Namespace(n)) if n == NS_QUOALISE => Ns::Quoalise,
                        ResolveResult::Bound(Namespace(n)) if n == NS_SENML => Ns::Senml,
                        ResolveResult::Bound(Namespace(n)) => Ns::Other(shorten(n)),
                        ResolveResult::Unbound => Ns::None,
                        ResolveResult::Unknown(prefix) => {
                            let prefix = shorten(&prefix);
                            return Err(self.xml_error(format_args!(
                                "namespace prefix {prefix:?} is not declared"
                            )));
                        }
                    };
                    (ns, event)
                }
                Err(e) => return Err(self.xml_error(e)),
            };
            return Ok(match event {
                Event::Start(e) => Item::Start(e, ns),
                Event::Empty(e) => Item::Empty(e, ns),
                Event::End(_) => Item::End,
                Event::Eof => Item::Eof,
                _ => continue,
            });
        }
    }

    /// The next child of the element `inside`, whose start was just read, as
    /// `(element, namespace, whether children follow)`; `None` at its end tag.
    #[inline]
    fn next_child(
        &mut self,
        inside: &str,
    ) -> Result<Option<(BytesStart<'i>, Ns, bool)>, DecodeError> {
        Ok(match self.next()? {
            Item::Start(e, ns) => Some((e, ns, true)),
            Item::Empty(e, ns) => Some((e, ns, false)),
            Item::End => None,
            Item::Eof => {
                return Err(DecodeError::UnexpectedEnd {
                    inside: inside.into(),
                });
            }
        })
    }

    /// Skip the children and end tag of an element whose start was just read.
    fn skip(&mut self, name: &str) -> Result<(), DecodeError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? {
                Item::Start(..) => depth += 1,
                Item::End => depth -= 1,
                Item::Empty(..) => {}
                Item::Eof => {
                    return Err(DecodeError::UnexpectedEnd {
                        inside: shorten(name),
                    });
                }
            }
        }
        Ok(())
    }

    /// Refuse an element whose local name we know but whose namespace is wrong.
    fn expect_ns(
        element: &BytesStart<'_>,
        ns: &Ns,
        wanted: &Ns,
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        if ns == wanted {
            Ok(())
        } else {
            Err(DecodeError::Namespace {
                element: shorten(local(element)),
                expected,
                found: ns.name(),
            })
        }
    }

    fn quoalise(mut self) -> Result<Vec<Data>, DecodeError> {
        let (root, ns, open) = match self.next()? {
            Item::Start(e, ns) => (e, ns, true),
            Item::Empty(e, ns) => (e, ns, false),
            Item::End => return Err(self.xml_error("unexpected end tag")),
            Item::Eof => return Err(DecodeError::NoRoot),
        };
        if local(&root) != "quoalise" {
            return Err(DecodeError::Root {
                found: shorten(root.name().into_inner()),
            });
        }
        Self::expect_ns(&root, &ns, &Ns::Quoalise, NS_QUOALISE)?;
        let mut data = Vec::new();
        if open {
            loop {
                match self.next()? {
                    Item::Start(e, ns) if local(&e) == "data" => {
                        Self::expect_ns(&e, &ns, &Ns::Quoalise, NS_QUOALISE)?;
                        let index = data.len();
                        data.push(self.data(index)?);
                    }
                    Item::Empty(e, ns) if local(&e) == "data" => {
                        Self::expect_ns(&e, &ns, &Ns::Quoalise, NS_QUOALISE)?;
                        return Err(DecodeError::MissingMeta { data: data.len() });
                    }
                    Item::Start(e, _) => self.skip(local(&e))?,
                    Item::Empty(..) => {}
                    Item::End => break,
                    Item::Eof => {
                        return Err(DecodeError::UnexpectedEnd {
                            inside: "quoalise".into(),
                        });
                    }
                }
            }
        }
        if data.is_empty() {
            return Err(DecodeError::NoData);
        }
        Ok(data)
    }

    fn data(&mut self, index: usize) -> Result<Data, DecodeError> {
        let mut meta = None;
        let mut records = None;
        while let Some((e, ns, open)) = self.next_child("data")? {
            match local(&e) {
                "meta" => {
                    Self::expect_ns(&e, &ns, &Ns::Quoalise, NS_QUOALISE)?;
                    if meta.is_some() {
                        return Err(DecodeError::DuplicateMeta { data: index });
                    }
                    meta = Some(if open {
                        self.meta()?
                    } else {
                        Meta::empty(MetaForm::Flat)
                    });
                }
                "sensml" => {
                    Self::expect_ns(&e, &ns, &Ns::Senml, NS_SENML)?;
                    if records.is_some() {
                        return Err(DecodeError::DuplicateSensml { data: index });
                    }
                    records = Some(if open {
                        self.sensml(index)?
                    } else {
                        Vec::new()
                    });
                }
                other if open => self.skip(other)?,
                _ => {}
            }
        }
        Ok(Data {
            meta: meta.ok_or(DecodeError::MissingMeta { data: index })?,
            records: records.ok_or(DecodeError::MissingSensml { data: index })?,
        })
    }

    /// Unprefixed attributes of an element, normalised (entities resolved).
    fn attributes<'e>(
        &self,
        e: &'e BytesStart<'_>,
    ) -> Result<Vec<(&'e str, Cow<'e, str>)>, DecodeError> {
        let mut out = Vec::new();
        for attr in e.attributes() {
            if let Some(pair) = self.own_attribute(attr)? {
                out.push(pair);
            }
        }
        Ok(out)
    }

    /// One attribute as `(name, normalised value)`, or `None` for a namespace
    /// declaration or a prefixed attribute (which Quoalise readers ignore).
    #[inline]
    fn own_attribute<'e>(
        &self,
        attr: Result<Attribute<'e>, AttrError>,
    ) -> Result<Option<(&'e str, Cow<'e, str>)>, DecodeError> {
        let attr = attr.map_err(|err| self.xml_error(err))?;
        let key = attr.key.into_inner();
        if key == "xmlns" || key.contains(':') {
            return Ok(None);
        }
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| self.xml_error(err))?;
        Ok(Some((key, value)))
    }

    /// The children of `<meta>`, whose start was just read. Unknown elements and
    /// attributes are skipped.
    fn meta(&mut self) -> Result<Meta, DecodeError> {
        let mut meta = Meta::empty(MetaForm::Flat);
        let mut depth = 1usize;
        // Which element of interest each open level is, to read nested children.
        let mut stack: Vec<String> = vec!["meta".into()];
        while depth > 0 {
            let (e, ns, open) = match self.next()? {
                Item::Start(e, ns) => (e, ns, true),
                Item::Empty(e, ns) => (e, ns, false),
                Item::End => {
                    depth -= 1;
                    stack.pop();
                    continue;
                }
                Item::Eof => {
                    return Err(DecodeError::UnexpectedEnd {
                        inside: stack.last().cloned().unwrap_or_else(|| "meta".into()),
                    });
                }
            };
            let parent = stack.last().map(String::as_str).unwrap_or("");
            let name = local(&e);
            if ns == Ns::Quoalise {
                let attrs = self.attributes(&e)?;
                let get = |key: &str| {
                    attrs
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.to_string())
                };
                match (parent, name) {
                    ("meta", "device") => meta.device_type = get("type"),
                    ("device", "identifier") => {
                        meta.authority = get("authority");
                        meta.identifier_type = get("type");
                        meta.identifier = get("value");
                    }
                    ("meta", "measurement") => {
                        meta.name = get("name");
                        meta.direction = get("direction");
                        meta.quantity = get("quantity");
                        meta.measurement_type = get("type");
                        meta.unit = get("unit");
                        meta.aggregation = get("aggregation");
                        meta.corrected = get("corrected");
                        meta.sampling = get("sampling-interval");
                    }
                    ("measurement", "physical") => {
                        meta.form = MetaForm::Nested;
                        meta.quantity = get("quantity");
                        meta.measurement_type = get("type");
                        meta.unit = get("unit");
                    }
                    ("measurement", "business") => {
                        meta.form = MetaForm::Nested;
                        meta.graph = get("graph");
                        meta.direction = get("direction");
                    }
                    ("measurement", "aggregate") => {
                        meta.form = MetaForm::Nested;
                        meta.aggregation = get("type");
                    }
                    ("measurement", "sampling") => {
                        meta.form = MetaForm::Nested;
                        meta.sampling = get("interval");
                    }
                    _ => {}
                }
            }
            if open {
                depth += 1;
                stack.push(name.to_owned());
            }
        }
        Ok(meta)
    }

    /// The `<senml>` records of a `<sensml>` whose start was just read.
    fn sensml(&mut self, data: usize) -> Result<Vec<Record>, DecodeError> {
        let mut records = Vec::new();
        let mut base = Base::default();
        while let Some((e, ns, open)) = self.next_child("sensml")? {
            if local(&e) == "senml" {
                Self::expect_ns(&e, &ns, &Ns::Senml, NS_SENML)?;
                let record = self.record(&e, data, records.len(), &mut base)?;
                records.push(record);
            }
            if open {
                self.skip(local(&e))?;
            }
        }
        Ok(records)
    }

    fn record(
        &self,
        e: &BytesStart<'_>,
        data: usize,
        index: usize,
        base: &mut Base,
    ) -> Result<Record, DecodeError> {
        let bad = |attribute: &str, value: &str, reason: &'static str| DecodeError::Attribute {
            data,
            record: index,
            attribute: attribute.to_owned(),
            value: shorten(value),
            reason,
        };
        let number = |attribute: &str, value: &str| -> Result<f64, DecodeError> {
            match value.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(n),
                Ok(_) => Err(bad(attribute, value, "is not a finite number")),
                Err(_) => Err(bad(attribute, value, "is not a number")),
            }
        };

        let mut suffix: Option<Cow<'_, str>> = None;
        let mut offset: Option<f64> = None;
        let mut unit: Option<Cow<'_, str>> = None;
        // Outer None: no `v`; inner None: a `v` that says "no value".
        let mut value: Option<Option<f64>> = None;
        let mut other_value = false;

        for attr in e.attributes() {
            let Some((key, text)) = self.own_attribute(attr)? else {
                continue;
            };
            match key {
                "bn" => base.name = Some(text.into_owned()),
                "bt" => base.time = Some(number(key, &text)?),
                "bu" => base.unit = Some(text.into_owned()),
                "bv" => base.value = Some(number(key, &text)?),
                "n" => suffix = Some(text),
                "t" => offset = Some(number(key, &text)?),
                "u" => unit = Some(text),
                "v" => {
                    let trimmed = text.trim();
                    value = Some(if trimmed == "None" {
                        // The Python client's `str(None)`.
                        None
                    } else {
                        match trimmed.parse::<f64>() {
                            Ok(n) if n.is_nan() => None,
                            Ok(n) if n.is_finite() => Some(n),
                            Ok(_) => return Err(bad(key, &text, "is not a finite number")),
                            Err(_) => return Err(bad(key, &text, "is not a number")),
                        }
                    });
                }
                "vs" | "vb" | "vd" => other_value = true,
                _ if key.ends_with('_') => {
                    return Err(DecodeError::MustUnderstand {
                        data,
                        record: index,
                        attribute: shorten(key),
                    });
                }
                // bver, bs, s, ut, l and unknown attributes.
                _ => {}
            }
        }

        let name = match (&base.name, &suffix) {
            (Some(b), Some(n)) => {
                let mut name = String::with_capacity(b.len() + n.len());
                name.push_str(b);
                name.push_str(n);
                name
            }
            (Some(b), None) => b.clone(),
            (None, Some(n)) => n.to_string(),
            (None, None) => String::new(),
        };
        if name.is_empty() {
            return Err(DecodeError::NoName {
                data,
                record: index,
            });
        }

        let time = base.time.unwrap_or(0.0) + offset.unwrap_or(0.0);
        if !time.is_finite() {
            return Err(bad("t", &time.to_string(), "gives a time out of range"));
        }
        if time < RELATIVE_LIMIT {
            return Err(DecodeError::RelativeTime {
                data,
                record: index,
                time,
            });
        }

        let value = match value {
            Some(Some(v)) => Some(base.value.unwrap_or(0.0) + v),
            Some(None) => None,
            None if other_value => None,
            None => base.value,
        };

        Ok(Record {
            name,
            time,
            unit: match unit {
                Some(u) => Some(u.into_owned()),
                None => base.unit.clone(),
            },
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::encode::encode;
    use crate::quoalise::{Series, Step};

    const META: &str = r#"<meta><device type="electricity-meter"><identifier authority="enedis" type="prm" value="30001610071843"/></device><measurement name="active-power" direction="consumption" quantity="power" type="electrical" unit="W" aggregation="mean" sampling-interval="PT30M"/></meta>"#;

    fn doc(records: &str) -> String {
        format!(
            r#"<quoalise xmlns="urn:quoalise:0"><data>{META}<sensml xmlns="urn:ietf:params:xml:ns:senml">{records}</sensml></data></quoalise>"#
        )
    }

    fn err(xml: &str) -> String {
        decode(xml).unwrap_err().to_string()
    }

    #[test]
    fn resolves_base_fields() {
        let data = decode(&doc(concat!(
            r#"<senml bn="urn:dev:prm:" bt="1600000000" bu="W" bv="10"/>"#,
            r#"<senml n="x" t="60" v="1.5" u="kW"/>"#,
            r#"<senml bn="b" bt="1700000000" t="-1" v="2"/>"#,
        )))
        .unwrap();
        assert_eq!(data.len(), 1);
        let r = &data[0].records;
        assert_eq!(
            r[0],
            Record {
                name: "urn:dev:prm:".into(),
                time: 1_600_000_000.0,
                unit: Some("W".into()),
                value: Some(10.0)
            }
        );
        assert_eq!(
            r[1],
            Record {
                name: "urn:dev:prm:x".into(),
                time: 1_600_000_060.0,
                unit: Some("kW".into()),
                value: Some(11.5)
            }
        );
        assert_eq!(
            r[2],
            Record {
                name: "b".into(),
                time: 1_699_999_999.0,
                unit: Some("W".into()),
                value: Some(12.0)
            }
        );
    }

    #[test]
    fn reads_its_own_encoding() {
        let id = Identifier::new("30001610071843".parse().unwrap(), Series::ConsumptionPower);
        let series = TimeSeries::new(
            id,
            vec![
                Reading {
                    start: 1_583_017_200,
                    step: Step::PT30M,
                    value: Some(100.0),
                },
                Reading {
                    start: 1_583_019_000,
                    step: Step::PT30M,
                    value: None,
                },
                Reading {
                    start: 1_583_020_800,
                    step: Step::PT30M,
                    value: Some(0.5),
                },
            ],
        );
        for form in [MetaForm::Flat, MetaForm::Nested] {
            let data = decode_bytes(&encode(&series, form)).unwrap();
            assert_eq!(data[0].meta, Meta::for_series(&id, Step::PT30M, form));
            let back = data[0].to_time_series().unwrap();
            assert_eq!(back.identifier, id);
            let points: Vec<_> = back
                .readings
                .iter()
                .map(|r| (r.start, r.value, r.step))
                .collect();
            assert_eq!(
                points,
                [
                    (1_583_017_200, Some(100.0), Step::PT30M),
                    (1_583_020_800, Some(0.5), Step::PT30M)
                ]
            );
        }
    }

    #[test]
    fn namespaces_are_resolved_not_matched_by_prefix() {
        let xml = concat!(
            r#"<q:quoalise xmlns:q="urn:quoalise:0" xmlns:s="urn:ietf:params:xml:ns:senml">"#,
            r#"<q:data><q:meta/><s:sensml><s:senml bn="urn:dev:prm:30001610071843_consumption/power/active/raw" bt="1600000000" v="1"/></s:sensml></q:data>"#,
            r#"</q:quoalise>"#
        );
        let data = decode(xml).unwrap();
        assert_eq!(data[0].records.len(), 1);

        assert_eq!(
            err(r#"<quoalise xmlns="urn:quoalise:1"><data/></quoalise>"#),
            "<quoalise> must be in namespace \"urn:quoalise:0\", found \"urn:quoalise:1\""
        );
        assert_eq!(
            err(&format!(
                r#"<quoalise xmlns="urn:quoalise:0"><data>{META}<sensml><senml/></sensml></data></quoalise>"#
            )),
            "<sensml> must be in namespace \"urn:ietf:params:xml:ns:senml\", found \"urn:quoalise:0\""
        );
        assert_eq!(
            err("<quoalise><data/></quoalise>"),
            "<quoalise> must be in namespace \"urn:quoalise:0\", found no namespace"
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        assert_eq!(
            err(&doc(
                r#"<senml bn="a" bt="1600000000" v="1"/><senml t="1" v="abc"/>"#
            )),
            "data #0, record #1: v=\"abc\" is not a number"
        );
        assert_eq!(
            err(&doc(r#"<senml bn="a" bt="16000 00000" v="1"/>"#)),
            "data #0, record #0: bt=\"16000 00000\" is not a number"
        );
        assert_eq!(
            err(&doc(r#"<senml bn="a" bt="1600000000" t="inf" v="1"/>"#)),
            "data #0, record #0: t=\"inf\" is not a finite number"
        );
        assert_eq!(
            err(&doc(r#"<senml bt="1600000000" v="1"/>"#)),
            "data #0, record #0: no name (no bn on this or an earlier record, and no n)"
        );
        assert!(
            err(&doc(r#"<senml bn="a" v="1"/>"#))
                .starts_with("data #0, record #0: time 0 is relative")
        );
        assert_eq!(
            err(&doc(r#"<senml bn="a" bt="1600000000" v="1" x_="1"/>"#)),
            "data #0, record #0: attribute \"x_\" ends with \"_\" and must be understood, but this decoder does not know it"
        );
        assert_eq!(
            err(
                r#"<quoalise xmlns="urn:quoalise:0"><data><sensml xmlns="urn:ietf:params:xml:ns:senml"/></data></quoalise>"#
            ),
            "data #0: no <meta>"
        );
        assert_eq!(
            err(&format!(
                r#"<quoalise xmlns="urn:quoalise:0"><data>{META}</data></quoalise>"#
            )),
            "data #0: no <sensml xmlns=\"urn:ietf:params:xml:ns:senml\">"
        );
        assert_eq!(
            err(r#"<quoalise xmlns="urn:quoalise:0"/>"#),
            "<quoalise> holds no <data>"
        );
        assert_eq!(
            err(r#"<iq xmlns="jabber:client"/>"#),
            "expected a <quoalise xmlns=\"urn:quoalise:0\"> element, found <iq>"
        );
        assert_eq!(
            err(""),
            "the document holds no element; expected <quoalise xmlns=\"urn:quoalise:0\">"
        );
        assert_eq!(
            err(r#"<quoalise xmlns="urn:quoalise:0"><data>"#),
            "the document ends inside <data>"
        );
        assert!(
            err(r#"<quoalise xmlns="urn:quoalise:0"><data></meta>"#).starts_with("malformed XML")
        );
        assert!(err(r#"<x:quoalise/>"#).contains("prefix \"x\" is not declared"));
        assert_eq!(
            decode_bytes(b"<quoalise \xff/>").unwrap_err(),
            DecodeError::NotUtf8 { position: 10 }
        );
    }

    #[test]
    fn missing_values_stay_missing() {
        let data = decode(&doc(concat!(
            r#"<senml bn="a" bt="1600000000" v="None"/>"#,
            r#"<senml t="60" v="NaN"/>"#,
            r#"<senml t="120" vs="text"/>"#,
            r#"<senml t="180"/>"#,
        )))
        .unwrap();
        assert!(data[0].records.iter().all(|r| r.value.is_none()));
    }

    #[test]
    fn series_errors_name_the_record() {
        let series_err = |records: &str| {
            decode(&doc(records)).unwrap()[0]
                .to_time_series()
                .unwrap_err()
                .to_string()
        };
        let bn = "urn:dev:prm:30001610071843_consumption/power/active/raw";
        assert_eq!(
            series_err(&format!(
                r#"<senml bn="{bn}" bt="1600000000" v="1" bu="kW"/>"#
            )),
            format!("record #0: unit \"kW\", but {bn} is in W")
        );
        assert_eq!(
            series_err(&format!(
                r#"<senml bn="{bn}" bt="1600000000" v="1"/><senml t="0" v="2"/>"#
            )),
            "record #1: a second value for time 1600000000"
        );
        assert_eq!(
            series_err(&format!(r#"<senml bn="{bn}" bt="1600000000.5" v="1"/>"#)),
            "record #0: time 1600000000.5 is not a whole number of seconds"
        );
        assert_eq!(
            series_err(&format!(r#"<senml bn="{bn}" bt="1e300" v="1"/>"#)),
            format!("record #0: time {} is after year 9999", 1e300)
        );
        assert_eq!(
            series_err(&format!(
                r#"<senml bn="{bn}" bt="1600000000" v="1"/><senml n="x" v="1" t="1800"/>"#
            )),
            format!("record #1: name \"{bn}x\" differs from the first record's \"{bn}\"")
        );
        assert!(
            series_err(r#"<senml bn="urn:dev:prm:1_x" bt="1600000000" v="1"/>"#).starts_with(
                "record #0: name \"urn:dev:prm:1_x\" is not a Quoalise identifier: invalid PRM"
            )
        );
    }

    #[test]
    fn step_is_inferred_when_meta_has_none() {
        let xml = concat!(
            r#"<quoalise xmlns="urn:quoalise:0"><data><meta/><sensml xmlns="urn:ietf:params:xml:ns:senml">"#,
            r#"<senml bn="urn:dev:prm:30001610071843_production/power/active/raw" bt="1600000000" v="1"/>"#,
            r#"<senml t="600" v="1"/><senml t="1200" v="1"/><senml t="3600" v="1"/>"#,
            r#"</sensml></data></quoalise>"#
        );
        let series = decode(xml).unwrap()[0].to_time_series().unwrap();
        assert!(series.readings.iter().all(|r| r.step == Step::Minutes(10)));
    }

    #[test]
    fn element_input_decodes_the_same() {
        let xml = doc(r#"<senml bn="a" bt="1600000000" v="1"/>"#);
        let element: minidom::Element = xml.parse().unwrap();
        assert_eq!(decode_element(&element).unwrap(), decode(&xml).unwrap());
    }
}
