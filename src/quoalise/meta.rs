//! The `<meta>` element of a Quoalise `<data>`: which meter and which measurement
//! the SenML records that follow describe.
//!
//! Two forms exist on the wire, both starting with the same `<device>`:
//!
//! - the FLAT form, answered to `get_history` (what the Quoalise client reads):
//!   one `<measurement name=… direction=… quantity=… type=… unit=… aggregation=…
//!   sampling-interval="PT30M"/>`;
//! - the NESTED legacy form, answered to `get_load_curve`/`get_daily`, as the first
//!   Data Connect proxy's code last wrote it (its README and its early versions
//!   differ): `<measurement><physical …/><business graph="load-profile" …/>
//!   <aggregate …/><sampling interval="PT30M"/></measurement>` (the interval as
//!   Enedis gives it, an ISO 8601 duration), and for daily energy
//!   `<business direction="…"/>` (no `graph`) and `<sampling interval="P1D"/>`.
//!
//! [`Meta`] is both what the encoder writes ([`Meta::for_series`] then
//! [`Meta::write`]) and what the decoder reads, so the two cannot drift apart. Its
//! fields keep the strings as written (a peer may send values this agent never
//! writes); typed accessors ([`Meta::step`], [`Meta::identifier`], …) interpret them
//! with precise errors.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::{Direction, Identifier, NS_QUOALISE, Prm, Reactive, Series, SeriesKind, Step};

/// Which `<measurement>` form a `<meta>` uses, and with it how the records are
/// named ([`MetaForm::record_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaForm {
    /// `<measurement name=… unit=… sampling-interval="PT30M"/>`, answered to
    /// `get_history`; records named by their identifier.
    Flat,
    /// `<measurement><physical/><business/><aggregate/><sampling/></measurement>`, the
    /// first Data Connect proxy's form, answered to `get_load_curve`/`get_daily`;
    /// records named as that proxy named them (`…_consumption_load`,
    /// `…_daily_consumption`).
    Nested,
}

impl MetaForm {
    /// The `bn` of the records of `identifier` in a payload of this form: the
    /// identifier (flat), or the first Data Connect proxy's name for it
    /// (nested, [`Identifier::legacy_name`]), which the applications written for
    /// that proxy look for.
    pub fn record_name(self, identifier: &Identifier) -> String {
        match self {
            MetaForm::Flat => identifier.to_string(),
            MetaForm::Nested => identifier.legacy_name(),
        }
    }
}

/// The contents of a `<meta>` element, as written on the wire.
///
/// Every field is optional because a decoder must tolerate peers that leave some out;
/// [`Meta::for_series`] fills all the fields of its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Which measurement form was written or read. A `<meta>` whose `<measurement>`
    /// has none of the nested children reads as [`MetaForm::Flat`].
    pub form: MetaForm,
    /// `<device type="…">`, "electricity-meter" here.
    pub device_type: Option<String>,
    /// `<identifier authority="…">`, "enedis" here.
    pub authority: Option<String>,
    /// `<identifier type="…">`, "prm" here.
    pub identifier_type: Option<String>,
    /// `<identifier value="…">`: the meter's PRM.
    pub identifier: Option<String>,
    /// Flat `name` ("active-power", "active-energy", "apparent-power",
    /// "active-energy-index").
    pub name: Option<String>,
    /// Flat `direction`, nested `business/@direction`.
    pub direction: Option<String>,
    /// Flat `quantity`, nested `physical/@quantity` ("power", "energy").
    pub quantity: Option<String>,
    /// Flat `type`, nested `physical/@type` ("electrical").
    pub measurement_type: Option<String>,
    /// Flat `unit`, nested `physical/@unit` ("W", "Wh", "VA").
    pub unit: Option<String>,
    /// Flat `aggregation` ("mean", "sum", "maximum"; none for an index), nested
    /// `aggregate/@type` ("average", "sum", "maximum").
    pub aggregation: Option<String>,
    /// Nested `business/@graph` ("load-profile", "daily-max-power"; none for
    /// daily energy, as the first Data Connect proxy wrote it).
    pub graph: Option<String>,
    /// Flat `corrected="true"` on a curve Enedis corrected (SGE's `BEST`), as the
    /// Quoalise SGE proxy writes it; absent on raw data.
    pub corrected: Option<String>,
    /// Flat `sampling-interval`, nested `sampling/@interval`: an ISO 8601
    /// duration ("PT30M", "P1D"), as both forms are written; a nested interval
    /// in seconds ("1800", "86400", as early writers of that form wrote it)
    /// reads too.
    pub sampling: Option<String>,
}

/// A `<meta>` value that is missing or cannot be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("<meta> has no {0}")]
    Missing(&'static str),
    #[error("<meta> {field}={value:?} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// How each series is described; the single table both forms are written from.
struct Description {
    name: &'static str,
    quantity: &'static str,
    /// Flat `aggregation`; none for a counter, which aggregates nothing (the
    /// Quoalise SGE proxy writes its indexes without one).
    aggregation: Option<&'static str>,
    /// Nested `aggregate/@type`.
    aggregate: Option<&'static str>,
    /// Nested `business/@graph`; none for daily energy, whose `<business>` the
    /// first Data Connect proxy wrote without one.
    graph: Option<&'static str>,
}

/// The flat `name` of the index series, as the Quoalise SGE proxy writes it.
pub const INDEX_NAME: &str = "active-energy-index";
/// The nested `graph` of the index series (never answered: the nested form is
/// the legacy commands', which serve no index).
const INDEX_GRAPH: &str = "daily-index";

fn describe(series: Series) -> Description {
    match series.kind() {
        SeriesKind::LoadCurve => Description {
            // The reactive curves are named as the Quoalise SGE proxy names them.
            name: match series {
                Series::ReactivePower(Reactive::Inductive) => "inductive-power",
                Series::ReactivePower(Reactive::Capacitive) => "capacitive-power",
                _ => "active-power",
            },
            quantity: "power",
            aggregation: Some("mean"),
            aggregate: Some("average"),
            graph: Some("load-profile"),
        },
        SeriesKind::DailyEnergy => Description {
            name: "active-energy",
            quantity: "energy",
            aggregation: Some("sum"),
            aggregate: Some("sum"),
            // The first proxy's daily meta: `<business direction="…"/>`.
            graph: None,
        },
        SeriesKind::DailyMaxPower => Description {
            name: "apparent-power",
            quantity: "power",
            aggregation: Some("maximum"),
            aggregate: Some("maximum"),
            graph: Some("daily-max-power"),
        },
        // Index series are only answered in the flat form (get_history, pushes).
        SeriesKind::Index => Description {
            name: INDEX_NAME,
            quantity: "energy",
            aggregation: None,
            aggregate: None,
            graph: Some(INDEX_GRAPH),
        },
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// Cut a peer-supplied value for an error message.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Meta {
    /// An empty `<meta>` of the given form; the decoder fills it.
    pub fn empty(form: MetaForm) -> Meta {
        Meta {
            form,
            device_type: None,
            authority: None,
            identifier_type: None,
            identifier: None,
            name: None,
            direction: None,
            quantity: None,
            measurement_type: None,
            unit: None,
            aggregation: None,
            graph: None,
            corrected: None,
            sampling: None,
        }
    }

    /// The metadata this agent writes for a series sampled at `sampling`
    /// (`TimeSeries::sampling()`).
    pub fn for_series(identifier: &Identifier, sampling: Step, form: MetaForm) -> Meta {
        let series = identifier.series;
        let d = describe(series);
        let flat = form == MetaForm::Flat;
        Meta {
            form,
            device_type: some("electricity-meter"),
            authority: some("enedis"),
            identifier_type: some("prm"),
            identifier: some(identifier.prm.as_str()),
            name: if flat { some(d.name) } else { None },
            direction: some(series.direction().as_str()),
            quantity: some(d.quantity),
            measurement_type: some("electrical"),
            unit: some(series.unit()),
            aggregation: (if flat { d.aggregation } else { d.aggregate }).map(str::to_owned),
            graph: if flat {
                None
            } else {
                d.graph.map(str::to_owned)
            },
            // Only the flat form says it: the nested one is the legacy commands',
            // which serve no SGE series.
            corrected: (flat && matches!(series, Series::CorrectedPower(_)))
                .then(|| "true".to_owned()),
            sampling: Some(sampling.to_string()),
        }
    }

    /// Write `<meta>…</meta>` (in the namespace already in scope, `urn:quoalise:0`).
    pub fn write<W: io::Write>(&self, w: &mut Writer<W>) -> io::Result<()> {
        self.emit(w)
    }

    /// `<meta>…</meta>` as a minidom element in `urn:quoalise:0`: the same
    /// elements and attributes as [`Meta::write`], from the same description.
    pub fn to_element(&self) -> minidom::Element {
        let mut tree = TreeSink(vec![minidom::Element::bare("meta", NS_QUOALISE)]);
        match self.emit_children(&mut tree) {
            Ok(()) => {}
            Err(never) => match never {},
        }
        tree.0.swap_remove(0)
    }

    fn emit<S: MetaSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.open("meta", &[])?;
        self.emit_children(sink)?;
        sink.close("meta")
    }

    /// The one description of what `<meta>` holds, for both outputs.
    fn emit_children<S: MetaSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.open("device", &[("type", &self.device_type)])?;
        sink.leaf(
            "identifier",
            &[
                ("authority", &self.authority),
                ("type", &self.identifier_type),
                ("value", &self.identifier),
            ],
        )?;
        sink.close("device")?;
        match self.form {
            MetaForm::Flat => sink.leaf(
                "measurement",
                &[
                    ("name", &self.name),
                    ("direction", &self.direction),
                    ("quantity", &self.quantity),
                    ("type", &self.measurement_type),
                    ("unit", &self.unit),
                    ("aggregation", &self.aggregation),
                    ("corrected", &self.corrected),
                    ("sampling-interval", &self.sampling),
                ],
            ),
            MetaForm::Nested => {
                sink.open("measurement", &[])?;
                sink.leaf(
                    "physical",
                    &[
                        ("quantity", &self.quantity),
                        ("type", &self.measurement_type),
                        ("unit", &self.unit),
                    ],
                )?;
                sink.leaf(
                    "business",
                    &[("graph", &self.graph), ("direction", &self.direction)],
                )?;
                sink.leaf("aggregate", &[("type", &self.aggregation)])?;
                sink.leaf("sampling", &[("interval", &self.sampling)])?;
                sink.close("measurement")
            }
        }
    }

    /// The meter's PRM (`<identifier value>`).
    pub fn prm(&self) -> Result<Prm, MetaError> {
        let value = self
            .identifier
            .as_deref()
            .ok_or(MetaError::Missing("device identifier value"))?;
        value
            .parse()
            .map_err(|e: super::PrmError| MetaError::Invalid {
                field: "identifier value",
                value: shorten(value),
                reason: e.to_string(),
            })
    }

    /// The measurement's direction.
    pub fn direction(&self) -> Result<Direction, MetaError> {
        let value = self
            .direction
            .as_deref()
            .ok_or(MetaError::Missing("measurement direction"))?;
        value.parse().map_err(|reason| MetaError::Invalid {
            field: "direction",
            value: shorten(value),
            reason,
        })
    }

    /// The sampling step, if the meta announces one: an ISO 8601 duration; in
    /// the nested form also a number of seconds (86400 reads as one calendar day).
    pub fn step(&self) -> Result<Option<Step>, MetaError> {
        let Some(value) = self.sampling.as_deref() else {
            return Ok(None);
        };
        let invalid = |reason: String| MetaError::Invalid {
            field: match self.form {
                MetaForm::Flat => "sampling-interval",
                MetaForm::Nested => "sampling interval",
            },
            value: shorten(value),
            reason,
        };
        let step = match self.form {
            MetaForm::Flat => value.parse::<Step>().map_err(|e| invalid(e.to_string()))?,
            MetaForm::Nested if value.starts_with('P') => {
                value.parse::<Step>().map_err(|e| invalid(e.to_string()))?
            }
            MetaForm::Nested => {
                let seconds: u32 = value.parse().map_err(|_| {
                    invalid("expected a whole number of seconds or an ISO 8601 duration".into())
                })?;
                if seconds == 86_400 {
                    Step::Day
                } else if seconds > 0 && seconds.is_multiple_of(60) && seconds < 86_400 {
                    // Below one day and a whole number of minutes: fits in u16.
                    Step::Minutes(u16::try_from(seconds / 60).map_err(|e| invalid(e.to_string()))?)
                } else {
                    return Err(invalid(
                        "expected whole minutes below one day, or 86400".into(),
                    ));
                }
            }
        };
        Ok(Some(step))
    }

    /// Which whole-meter series the meta describes, from its direction, unit and,
    /// for an index or reactive power, its name (a corrected curve says so with
    /// `corrected="true"`). A per-class series is described like its whole-meter
    /// kin (the class is only in the records' names).
    pub fn series(&self) -> Result<Series, MetaError> {
        let direction = self.direction()?;
        let unit = self
            .unit
            .as_deref()
            .ok_or(MetaError::Missing("measurement unit"))?;
        match (unit, direction) {
            ("Wh", d)
                if self.name.as_deref() == Some(INDEX_NAME)
                    || self.graph.as_deref() == Some(INDEX_GRAPH) =>
            {
                Ok(Series::EnergyIndex(d))
            }
            ("W", d) if self.corrected.as_deref() == Some("true") => Ok(Series::CorrectedPower(d)),
            ("W", d) => Ok(Series::load_curve(d)),
            ("VAr", Direction::Consumption) => match self.name.as_deref() {
                Some("capacitive-power") => Ok(Series::ReactivePower(Reactive::Capacitive)),
                // The nested form carries no name: inductive, the usual one.
                _ => Ok(Series::ReactivePower(Reactive::Inductive)),
            },
            ("Wh", d) => Ok(Series::daily_energy(d)),
            ("VA", Direction::Consumption) => Ok(Series::ConsumptionMaxPower),
            ("VA", Direction::Production) => Err(MetaError::Invalid {
                field: "unit",
                value: unit.to_owned(),
                reason: "no production series is measured in VA".into(),
            }),
            (other, _) => Err(MetaError::Invalid {
                field: "unit",
                value: shorten(other),
                reason: "expected W, Wh, VA or VAr".into(),
            }),
        }
    }

    /// The identifier the meta describes (PRM, direction and unit).
    pub fn to_identifier(&self) -> Result<Identifier, MetaError> {
        Ok(Identifier::new(self.prm()?, self.series()?))
    }
}

/// Attributes of a `<meta>` element; absent values are left out.
type Attributes<'a> = [(&'a str, &'a Option<String>)];

/// Where [`Meta::emit`] writes `<meta>`: bytes, or a tree.
trait MetaSink {
    type Error;
    /// A start tag, children follow until [`MetaSink::close`].
    fn open(&mut self, name: &str, attributes: &Attributes<'_>) -> Result<(), Self::Error>;
    /// An element without children.
    fn leaf(&mut self, name: &str, attributes: &Attributes<'_>) -> Result<(), Self::Error>;
    fn close(&mut self, name: &str) -> Result<(), Self::Error>;
}

fn start<'a>(name: &'a str, attributes: &Attributes<'_>) -> BytesStart<'a> {
    let mut element = BytesStart::new(name);
    for (name, value) in attributes {
        if let Some(value) = value {
            element.push_attribute((*name, value.as_str()));
        }
    }
    element
}

impl<W: io::Write> MetaSink for Writer<W> {
    type Error = io::Error;

    fn open(&mut self, name: &str, attributes: &Attributes<'_>) -> io::Result<()> {
        self.write_event(Event::Start(start(name, attributes)))
    }

    fn leaf(&mut self, name: &str, attributes: &Attributes<'_>) -> io::Result<()> {
        self.write_event(Event::Empty(start(name, attributes)))
    }

    fn close(&mut self, name: &str) -> io::Result<()> {
        self.write_event(Event::End(BytesEnd::new(name)))
    }
}

/// Builds the tree: the open elements, innermost last.
struct TreeSink(Vec<minidom::Element>);

impl TreeSink {
    fn element(name: &str, attributes: &Attributes<'_>) -> minidom::Element {
        let mut element = minidom::Element::bare(name, NS_QUOALISE);
        for (name, value) in attributes {
            if let (Some(value), Ok(name)) = (value, minidom::rxml::NcName::try_from(*name)) {
                element.set_attr(minidom::rxml::Namespace::NONE, name, value.as_str());
            }
        }
        element
    }

    fn append(&mut self, child: minidom::Element) {
        if let Some(parent) = self.0.last_mut() {
            parent.append_child(child);
        }
    }
}

impl MetaSink for TreeSink {
    type Error = std::convert::Infallible;

    fn open(&mut self, name: &str, attributes: &Attributes<'_>) -> Result<(), Self::Error> {
        self.0.push(TreeSink::element(name, attributes));
        Ok(())
    }

    fn leaf(&mut self, name: &str, attributes: &Attributes<'_>) -> Result<(), Self::Error> {
        self.append(TreeSink::element(name, attributes));
        Ok(())
    }

    fn close(&mut self, _name: &str) -> Result<(), Self::Error> {
        // The outermost element stays for `to_element` to take.
        if self.0.len() > 1
            && let Some(done) = self.0.pop()
        {
            self.append(done);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(series: Series) -> Identifier {
        Identifier::new("30001610071843".parse().unwrap(), series)
    }

    fn written(meta: &Meta) -> String {
        let mut w = Writer::new(Vec::new());
        meta.write(&mut w).unwrap();
        String::from_utf8(w.into_inner()).unwrap()
    }

    const DEVICE: &str = r#"<device type="electricity-meter"><identifier authority="enedis" type="prm" value="30001610071843"/></device>"#;

    #[test]
    fn flat_form_of_each_kind() {
        let cases = [
            (
                Series::ConsumptionPower,
                Step::Minutes(10),
                r#"<measurement name="active-power" direction="consumption" quantity="power" type="electrical" unit="W" aggregation="mean" sampling-interval="PT10M"/>"#,
            ),
            (
                Series::ProductionEnergyDaily,
                Step::Day,
                r#"<measurement name="active-energy" direction="production" quantity="energy" type="electrical" unit="Wh" aggregation="sum" sampling-interval="P1D"/>"#,
            ),
            (
                Series::ConsumptionMaxPower,
                Step::Day,
                r#"<measurement name="apparent-power" direction="consumption" quantity="power" type="electrical" unit="VA" aggregation="maximum" sampling-interval="P1D"/>"#,
            ),
        ];
        for (series, step, measurement) in cases {
            let meta = Meta::for_series(&id(series), step, MetaForm::Flat);
            assert_eq!(
                written(&meta),
                format!("<meta>{DEVICE}{measurement}</meta>"),
                "{series}"
            );
            assert_eq!(meta.step(), Ok(Some(step)));
            assert_eq!(meta.to_identifier(), Ok(id(series)));
        }
    }

    #[test]
    fn nested_form_of_each_kind() {
        let cases = [
            (
                Series::ProductionPower,
                Step::Minutes(60),
                r#"<measurement><physical quantity="power" type="electrical" unit="W"/><business graph="load-profile" direction="production"/><aggregate type="average"/><sampling interval="PT60M"/></measurement>"#,
            ),
            (
                // Byte for byte the first Data Connect proxy's daily meta.
                Series::ConsumptionEnergyDaily,
                Step::Day,
                r#"<measurement><physical quantity="energy" type="electrical" unit="Wh"/><business direction="consumption"/><aggregate type="sum"/><sampling interval="P1D"/></measurement>"#,
            ),
            (
                Series::ConsumptionMaxPower,
                Step::Day,
                r#"<measurement><physical quantity="power" type="electrical" unit="VA"/><business graph="daily-max-power" direction="consumption"/><aggregate type="maximum"/><sampling interval="P1D"/></measurement>"#,
            ),
        ];
        for (series, step, measurement) in cases {
            let meta = Meta::for_series(&id(series), step, MetaForm::Nested);
            assert_eq!(
                written(&meta),
                format!("<meta>{DEVICE}{measurement}</meta>"),
                "{series}"
            );
            assert_eq!(meta.step(), Ok(Some(step)));
            assert_eq!(meta.to_identifier(), Ok(id(series)));
        }
    }

    #[test]
    fn accessors_name_the_bad_field() {
        let mut meta = Meta::empty(MetaForm::Nested);
        assert_eq!(meta.step(), Ok(None));
        assert_eq!(
            meta.prm(),
            Err(MetaError::Missing("device identifier value"))
        );
        meta.sampling = Some("90".into());
        let err = meta.step().unwrap_err();
        assert_eq!(
            err.to_string(),
            "<meta> sampling interval=\"90\" is invalid: expected whole minutes below one day, or 86400"
        );
        // What other writers of the nested form wrote reads too.
        meta.sampling = Some("86400".into());
        assert_eq!(meta.step(), Ok(Some(Step::Day)));
        meta.sampling = Some("PT30M".into());
        assert_eq!(meta.step(), Ok(Some(Step::PT30M)));
        meta.sampling = Some("P1W".into());
        assert!(
            meta.step()
                .unwrap_err()
                .to_string()
                .starts_with("<meta> sampling interval=\"P1W\" is invalid: unsupported step")
        );
        meta.sampling = Some("one day".into());
        assert!(
            meta.step()
                .unwrap_err()
                .to_string()
                .contains("expected a whole number of seconds or an ISO 8601 duration")
        );
        meta.form = MetaForm::Flat;
        meta.sampling = Some("P1M".into());
        assert!(
            meta.step()
                .unwrap_err()
                .to_string()
                .contains("sampling-interval=\"P1M\"")
        );
        meta.direction = Some("both".into());
        assert!(
            meta.direction()
                .unwrap_err()
                .to_string()
                .contains("direction=\"both\"")
        );
        meta.direction = Some("production".into());
        meta.unit = Some("VA".into());
        assert!(
            meta.series()
                .unwrap_err()
                .to_string()
                .contains("no production series")
        );
        meta.unit = Some("kW".into());
        assert!(
            meta.series()
                .unwrap_err()
                .to_string()
                .contains("unit=\"kW\"")
        );
        meta.identifier = Some("3000161007184".into());
        assert!(
            meta.prm()
                .unwrap_err()
                .to_string()
                .contains("13 characters")
        );
    }
}
