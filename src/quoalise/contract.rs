//! The contract and technical data of a usage point, as `get_contract` answers
//! them: segment, subscribed power, tariff option, off-peak hours, meter type,
//! services level, dates, and (v5 only) the address of the meter. Every part is
//! optional: what Enedis does not give is left out, never made up; a part Enedis
//! would not give (an API the agent's application is not subscribed to, say) is
//! named in an [`Unavailable`].
//!
//! The payload, `schemas/contract.rng`:
//!
//! ```xml
//! <contract xmlns="urn:quoalise:0" prm="22516914714270" generation="v5"
//!           fetched="2026-12-06T09:41:07Z">
//!   <segment>C5</segment>
//!   <subscribed-power value="9" unit="kVA"/>
//!   <tariff-option code="BTINFMUDT"/>
//!   <off-peak-hours raw="HC (22H00-6H00)"><range start="22:00" end="06:00"/></off-peak-hours>
//!   <meter-type code="AMM"/>
//!   <services-level code="com"/>
//!   <activation date="2019-08-27"/>
//!   <last-change of="tariff-option" date="2021-03-02"/>
//!   <address street="12 RUE DES LILAS" postal-code="69003" city="LYON" insee-code="69383" country="France"/>
//! </contract>
//! ```
//!
//! [`Contract::to_element`] writes it, [`Contract::from_element`] reads it back
//! (the `query` command line prints it as text).

use jiff::civil::Date;
use minidom::Element;
use minidom::rxml::{Namespace, NcName};

use super::NS_QUOALISE;
use super::identifier::{Direction, Prm};

/// The contract and technical data of one usage point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub prm: Prm,
    /// The Enedis API generation it was read from (`2026`, `v5`).
    pub generation: String,
    /// When the agent read it from Enedis, UTC seconds (an answer from the cache
    /// carries the instant of the reading it comes from).
    pub fetched: i64,
    /// `C5`, `P4`…: one per contract of the point (a self-consumer has two).
    pub segments: Vec<String>,
    pub subscribed_power: Option<Power>,
    /// The distribution tariff (formule tarifaire d'acheminement): v5 gives its
    /// code (`BTINFMUDT`), 2026 its label.
    pub tariff_option: Option<Coded>,
    pub off_peak_hours: Option<OffPeakHours>,
    /// `AMM` (Linky), `CBE`…
    pub meter_type: Option<Coded>,
    /// v5: `com` or `no_com`; 2026: a label (`Communicant (ouvert aux services)`).
    pub services_level: Option<Coded>,
    /// Start of the current contract (2026).
    pub contract_start: Option<Date>,
    /// Last commissioning dates, per direction when Enedis says which.
    pub activations: Vec<Activation>,
    pub last_changes: Vec<LastChange>,
    /// The meter's address (v5 only, where the consent allows it).
    pub address: Option<Address>,
    /// The parts Enedis would not give, and why.
    pub unavailable: Vec<Unavailable>,
}

/// A power with its unit, as Enedis gives it (`12` `kVA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Power {
    /// A decimal number, as written by Enedis (`12`, `36.5`).
    pub value: String,
    pub unit: String,
}

/// A value Enedis gives as a code, a label, or both; at least one is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coded {
    pub code: Option<String>,
    pub label: Option<String>,
}

impl Coded {
    pub fn code(code: impl Into<String>) -> Coded {
        Coded {
            code: Some(code.into()),
            label: None,
        }
    }

    pub fn label(label: impl Into<String>) -> Coded {
        Coded {
            code: None,
            label: Some(label.into()),
        }
    }

    /// `code (label)`, `code` or `label`.
    pub fn text(&self) -> String {
        match (&self.code, &self.label) {
            (Some(c), Some(l)) => format!("{c} ({l})"),
            (Some(c), None) => c.clone(),
            (None, Some(l)) => l.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Off-peak hours as Enedis writes them, and their ranges when they can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPeakHours {
    /// Enedis' text, e.g. `HC (22H00-6H00;12H30-14H30)`.
    pub raw: String,
    /// The ranges, Paris local time; empty when `raw` cannot be read.
    pub ranges: Vec<TimeRange>,
}

/// A range of the day, in minutes after Paris midnight, `[start, end[`; `end`
/// may be before `start` (a range across midnight) and 1440 (midnight, `24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u16,
    pub end: u16,
}

impl TimeRange {
    /// `22:00-06:00`.
    pub fn text(&self) -> String {
        format!("{}-{}", hhmm(self.start), hhmm(self.end))
    }
}

/// `HH:MM` of minutes after midnight (`24:00` for 1440).
pub fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A last commissioning (mise en service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// Which side was commissioned, when Enedis says (2026 does, v5 does not).
    pub direction: Option<Direction>,
    pub date: Date,
}

/// What a [`LastChange`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    SubscribedPower,
    TariffOption,
}

impl Changed {
    pub fn as_str(self) -> &'static str {
        match self {
            Changed::SubscribedPower => "subscribed-power",
            Changed::TariffOption => "tariff-option",
        }
    }

    fn parse(s: &str) -> Option<Changed> {
        match s {
            "subscribed-power" => Some(Changed::SubscribedPower),
            "tariff-option" => Some(Changed::TariffOption),
            _ => None,
        }
    }
}

/// The last change of a part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastChange {
    pub of: Changed,
    pub date: Date,
}

/// The meter's address, as Enedis writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub street: Option<String>,
    pub locality: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub insee_code: Option<String>,
    pub country: Option<String>,
}

impl Address {
    /// The attributes of `<address/>`, in order, with their values.
    pub fn parts(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("street", self.street.as_deref()),
            ("locality", self.locality.as_deref()),
            ("postal-code", self.postal_code.as_deref()),
            ("city", self.city.as_deref()),
            ("insee-code", self.insee_code.as_deref()),
            ("country", self.country.as_deref()),
        ]
    }

    fn is_empty(&self) -> bool {
        self.parts().iter().all(|(_, v)| v.is_none())
    }
}

/// A part of the answer Enedis would not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The Enedis API, e.g. `comptage_auto/v1`.
    pub source: String,
    /// The fields it would have given (`off-peak-hours`, `meter-type`…), as the
    /// payload names them.
    pub fields: Vec<String>,
    /// Enedis' code (`900908`), when there is one.
    pub code: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// Why a `<contract/>` element cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid <contract/>: {0}")]
pub struct ContractError(pub String);

fn bad(message: impl Into<String>) -> ContractError {
    ContractError(message.into())
}

impl Contract {
    /// A contract of `prm` read from `generation` at `fetched`, with nothing in it yet.
    pub fn new(prm: Prm, generation: impl Into<String>, fetched: i64) -> Contract {
        Contract {
            prm,
            generation: generation.into(),
            fetched,
            segments: Vec::new(),
            subscribed_power: None,
            tariff_option: None,
            off_peak_hours: None,
            meter_type: None,
            services_level: None,
            contract_start: None,
            activations: Vec::new(),
            last_changes: Vec::new(),
            address: None,
            unavailable: Vec::new(),
        }
    }

    /// The activation date of `direction` (`None`: the one without a direction).
    pub fn activation(&self, direction: Option<Direction>) -> Option<Date> {
        self.activations
            .iter()
            .find(|a| a.direction == direction)
            .map(|a| a.date)
    }

    /// The date of the last change of `of`.
    pub fn last_change(&self, of: Changed) -> Option<Date> {
        self.last_changes
            .iter()
            .find(|c| c.of == of)
            .map(|c| c.date)
    }

    /// `<contract xmlns="urn:quoalise:0" …>`, children in the schema's order.
    pub fn to_element(&self) -> Element {
        let mut root = Element::bare("contract", NS_QUOALISE);
        set(&mut root, "prm", Some(self.prm.as_str()));
        set(&mut root, "generation", Some(&self.generation));
        set(&mut root, "fetched", Some(&instant(self.fetched)));
        for segment in &self.segments {
            let mut e = Element::bare("segment", NS_QUOALISE);
            e.append_text_node(segment.as_str());
            root.append_child(e);
        }
        if let Some(power) = &self.subscribed_power {
            root.append_child(empty(
                "subscribed-power",
                &[("value", Some(&power.value)), ("unit", Some(&power.unit))],
            ));
        }
        if let Some(tariff) = &self.tariff_option {
            root.append_child(coded("tariff-option", tariff));
        }
        if let Some(hours) = &self.off_peak_hours {
            let mut e = empty("off-peak-hours", &[("raw", Some(&hours.raw))]);
            for range in &hours.ranges {
                e.append_child(empty(
                    "range",
                    &[
                        ("start", Some(&hhmm(range.start))),
                        ("end", Some(&hhmm(range.end))),
                    ],
                ));
            }
            root.append_child(e);
        }
        if let Some(meter) = &self.meter_type {
            root.append_child(coded("meter-type", meter));
        }
        if let Some(level) = &self.services_level {
            root.append_child(coded("services-level", level));
        }
        if let Some(date) = self.contract_start {
            root.append_child(empty(
                "contract-start",
                &[("date", Some(&date.to_string()))],
            ));
        }
        for a in &self.activations {
            root.append_child(empty(
                "activation",
                &[
                    ("date", Some(&a.date.to_string())),
                    (
                        "direction",
                        a.direction.map(|d| d.as_str().to_owned()).as_ref(),
                    ),
                ],
            ));
        }
        for c in &self.last_changes {
            root.append_child(empty(
                "last-change",
                &[
                    ("of", Some(&c.of.as_str().to_owned())),
                    ("date", Some(&c.date.to_string())),
                ],
            ));
        }
        if let Some(address) = self.address.as_ref().filter(|a| !a.is_empty()) {
            let mut e = Element::bare("address", NS_QUOALISE);
            for (name, value) in address.parts() {
                set(&mut e, name, value);
            }
            root.append_child(e);
        }
        for u in &self.unavailable {
            let mut e = empty(
                "unavailable",
                &[
                    ("source", Some(&u.source)),
                    ("fields", Some(&u.fields.join(" "))),
                    ("code", u.code.as_ref()),
                ],
            );
            e.append_text_node(u.reason.as_str());
            root.append_child(e);
        }
        root
    }

    /// Reads a `<contract/>` element (what [`Contract::to_element`] writes).
    /// Unknown children are refused: a payload of a later agent names them.
    pub fn from_element(e: &Element) -> Result<Contract, ContractError> {
        if !e.is("contract", NS_QUOALISE) {
            return Err(bad(format!(
                "the element is <{}/> in {:?}, not <contract/> in {NS_QUOALISE}",
                e.name(),
                e.ns()
            )));
        }
        let prm: Prm = required(e, "prm")?
            .parse()
            .map_err(|err| bad(format!("attribute prm: {err}")))?;
        let generation = required(e, "generation")?.to_owned();
        let fetched = required(e, "fetched")?
            .parse::<jiff::Timestamp>()
            .map_err(|err| bad(format!("attribute fetched: {err}")))?
            .as_second();
        let mut c = Contract::new(prm, generation, fetched);
        for child in e.children() {
            if child.ns() != NS_QUOALISE {
                return Err(bad(format!(
                    "child <{}/> is not in {NS_QUOALISE}",
                    child.name()
                )));
            }
            match child.name() {
                "segment" => c.segments.push(child.text()),
                "subscribed-power" => {
                    c.subscribed_power = Some(Power {
                        value: required(child, "value")?.to_owned(),
                        unit: required(child, "unit")?.to_owned(),
                    })
                }
                "tariff-option" => c.tariff_option = Some(read_coded(child)?),
                "off-peak-hours" => {
                    let mut ranges = Vec::new();
                    for range in child.children() {
                        ranges.push(TimeRange {
                            start: minutes(required(range, "start")?)?,
                            end: minutes(required(range, "end")?)?,
                        });
                    }
                    c.off_peak_hours = Some(OffPeakHours {
                        raw: required(child, "raw")?.to_owned(),
                        ranges,
                    });
                }
                "meter-type" => c.meter_type = Some(read_coded(child)?),
                "services-level" => c.services_level = Some(read_coded(child)?),
                "contract-start" => c.contract_start = Some(date(child)?),
                "activation" => c.activations.push(Activation {
                    direction: child
                        .attr("direction")
                        .map(|d| d.parse::<Direction>().map_err(bad))
                        .transpose()?,
                    date: date(child)?,
                }),
                "last-change" => {
                    let of = required(child, "of")?;
                    c.last_changes.push(LastChange {
                        of: Changed::parse(of)
                            .ok_or_else(|| bad(format!("<last-change of={of:?}/>")))?,
                        date: date(child)?,
                    });
                }
                "address" => {
                    let text = |name: &str| child.attr(name).map(str::to_owned);
                    c.address = Some(Address {
                        street: text("street"),
                        locality: text("locality"),
                        postal_code: text("postal-code"),
                        city: text("city"),
                        insee_code: text("insee-code"),
                        country: text("country"),
                    });
                }
                "unavailable" => c.unavailable.push(Unavailable {
                    source: required(child, "source")?.to_owned(),
                    fields: required(child, "fields")?
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                    code: child.attr("code").map(str::to_owned),
                    reason: child.text(),
                }),
                other => return Err(bad(format!("unknown child <{other}/>"))),
            }
        }
        Ok(c)
    }
}

/// `2026-12-06T09:41:07Z`.
fn instant(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Sets an attribute when there is a value.
fn set(element: &mut Element, name: &'static str, value: Option<impl AsRef<str>>) {
    // Names here are constants, all valid.
    if let (Some(value), Ok(name)) = (value, NcName::try_from(name)) {
        element.set_attr(Namespace::NONE, name, value.as_ref());
    }
}

fn empty(name: &str, attributes: &[(&'static str, Option<&String>)]) -> Element {
    let mut e = Element::bare(name, NS_QUOALISE);
    for (attribute, value) in attributes {
        set(&mut e, attribute, *value);
    }
    e
}

fn coded(name: &str, value: &Coded) -> Element {
    empty(
        name,
        &[
            ("code", value.code.as_ref()),
            ("label", value.label.as_ref()),
        ],
    )
}

fn required<'a>(e: &'a Element, name: &'a str) -> Result<&'a str, ContractError> {
    e.attr(name)
        .ok_or_else(|| bad(format!("<{}/> has no attribute {name}", e.name())))
}

fn read_coded(e: &Element) -> Result<Coded, ContractError> {
    let coded = Coded {
        code: e.attr("code").map(str::to_owned),
        label: e.attr("label").map(str::to_owned),
    };
    if coded.code.is_none() && coded.label.is_none() {
        return Err(bad(format!("<{}/> has neither code nor label", e.name())));
    }
    Ok(coded)
}

fn date(e: &Element) -> Result<Date, ContractError> {
    let raw = required(e, "date")?;
    raw.parse::<Date>()
        .map_err(|err| bad(format!("<{} date={raw:?}/>: {err}", e.name())))
}

/// Minutes after midnight of `HH:MM` (`24:00` is 1440).
fn minutes(raw: &str) -> Result<u16, ContractError> {
    let err = || bad(format!("{raw:?} is not a time HH:MM"));
    let (h, m) = raw.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let h: u16 = h.parse().map_err(|_| err())?;
    let m: u16 = m.parse().map_err(|_| err())?;
    match (h, m) {
        (0..=23, 0..=59) | (24, 0) => Ok(h * 60 + m),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn full() -> Contract {
        let mut c = Contract::new("22516914714270".parse().unwrap(), "v5", 1_796_550_000);
        c.segments = vec!["C5".into()];
        c.subscribed_power = Some(Power {
            value: "9".into(),
            unit: "kVA".into(),
        });
        c.tariff_option = Some(Coded::code("BTINFMUDT"));
        c.off_peak_hours = Some(OffPeakHours {
            raw: "HC (22H00-6H00;12H30-14H30)".into(),
            ranges: vec![
                TimeRange {
                    start: 1320,
                    end: 360,
                },
                TimeRange {
                    start: 750,
                    end: 870,
                },
            ],
        });
        c.meter_type = Some(Coded::code("AMM"));
        c.services_level = Some(Coded::code("com"));
        c.contract_start = Some(date(2024, 10, 12));
        c.activations = vec![
            Activation {
                direction: Some(Direction::Consumption),
                date: date(2014, 1, 22),
            },
            Activation {
                direction: None,
                date: date(2019, 8, 27),
            },
        ];
        c.last_changes = vec![LastChange {
            of: Changed::TariffOption,
            date: date(2021, 3, 2),
        }];
        c.address = Some(Address {
            street: Some("12 RUE DES LILAS".into()),
            postal_code: Some("69003".into()),
            city: Some("LYON".into()),
            ..Address::default()
        });
        c.unavailable = vec![Unavailable {
            source: "comptage_auto/v1".into(),
            fields: vec!["off-peak-hours".into(), "meter-type".into()],
            code: Some("900908".into()),
            reason: "not subscribed".into(),
        }];
        c
    }

    #[test]
    fn round_trips_through_its_element() {
        let c = full();
        let e = c.to_element();
        assert_eq!(Contract::from_element(&e).unwrap(), c);
        // Through text too.
        let text = String::from(&e);
        let again: Element = text.parse().unwrap();
        assert_eq!(Contract::from_element(&again).unwrap(), c);
        let empty = Contract::new("22516914714270".parse().unwrap(), "2026", 0);
        assert_eq!(Contract::from_element(&empty.to_element()).unwrap(), empty);
    }

    #[test]
    fn writes_the_documented_shape() {
        let expected: Element = concat!(
            r#"<contract xmlns="urn:quoalise:0" prm="22516914714270" generation="v5" fetched="2026-12-06T09:40:00Z">"#,
            r#"<segment>C5</segment>"#,
            r#"<subscribed-power value="9" unit="kVA"/>"#,
            r#"<tariff-option code="BTINFMUDT"/>"#,
            r#"<off-peak-hours raw="HC (22H00-6H00;12H30-14H30)">"#,
            r#"<range start="22:00" end="06:00"/><range start="12:30" end="14:30"/></off-peak-hours>"#,
            r#"<meter-type code="AMM"/>"#,
            r#"<services-level code="com"/>"#,
            r#"<contract-start date="2024-10-12"/>"#,
            r#"<activation date="2014-01-22" direction="consumption"/>"#,
            r#"<activation date="2019-08-27"/>"#,
            r#"<last-change of="tariff-option" date="2021-03-02"/>"#,
            r#"<address street="12 RUE DES LILAS" postal-code="69003" city="LYON"/>"#,
            r#"<unavailable source="comptage_auto/v1" fields="off-peak-hours meter-type" code="900908">not subscribed</unavailable>"#,
            r#"</contract>"#
        )
        .parse()
        .unwrap();
        assert_eq!(full().to_element(), expected);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let e: Element = r#"<contract xmlns="urn:quoalise:0" prm="22516914714270" generation="v5" fetched="2026-12-06T09:41:07Z"><colour/></contract>"#
            .parse()
            .unwrap();
        assert!(
            Contract::from_element(&e)
                .unwrap_err()
                .to_string()
                .contains("unknown child <colour/>")
        );
        let e: Element =
            r#"<contract xmlns="urn:quoalise:0" generation="v5" fetched="2026-12-06T09:41:07Z"/>"#
                .parse()
                .unwrap();
        assert!(Contract::from_element(&e).is_err());
        for bad in ["25:00", "7:30", "12:60", "24:01", "ab:cd"] {
            assert!(minutes(bad).is_err(), "{bad}");
        }
        assert_eq!(minutes("24:00"), Ok(1440));
    }
}
