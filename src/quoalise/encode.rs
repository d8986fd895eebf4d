//! The Quoalise payload encoder: a [`TimeSeries`] into
//! `<quoalise xmlns="urn:quoalise:0"><data><meta>…</meta><sensml …>…</sensml></data></quoalise>`.
//!
//! It streams quick-xml events into any [`io::Write`] without building a tree. The
//! SenML records follow the protocol doc exactly: the first carries `bn` (the
//! identifier), `bt` (its start, UTC seconds), `t="0"`, `v` and `bu`; later ones only
//! `t` (seconds after `bt`) and `v`. A reading without a value is left out (missing
//! stays missing, never 0), so `bt` is the first reading that has one.
//!
//! Speed matters because a year of half-hours is 17,520 records: every record after
//! the first is assembled in one reused buffer (no allocation per record), integers
//! are printed with `itoa`, and `encode` sizes its output up front
//! (`cargo bench --bench codec`).

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::meta::{Meta, MetaForm};
use super::{NS_QUOALISE, NS_SENML, TimeSeries};

/// Why [`encode_element`] failed: the encoder's own output did not parse, which would
/// be a bug in the encoder, reported rather than panicking.
#[derive(Debug, thiserror::Error)]
#[error("the encoded Quoalise payload did not parse back as XML: {0}")]
pub struct EncodeError(String);

/// Bytes per record, generous: `<senml t="1234567" v="12345.678"/>` is 32.
const RECORD_BYTES: usize = 40;
/// Envelope, meta and first-record extras.
const FIXED_BYTES: usize = 768;

/// The payload as UTF-8 XML bytes.
pub fn encode(series: &TimeSeries, form: MetaForm) -> Vec<u8> {
    let buffer = Vec::with_capacity(FIXED_BYTES + RECORD_BYTES * series.readings.len());
    match encode_to(series, form, Sink(buffer)) {
        Ok(Sink(bytes)) => bytes,
        // `Sink` never returns an error (a full Vec aborts on OOM).
        Err(e) => unreachable!("writing to a Vec<u8> failed: {e}"),
    }
}

/// The in-memory output of [`encode`]: a `Vec<u8>` that appends the writer's
/// one- and two-byte fragments (`<`, `/>`, around every record) with plain pushes.
/// Through `Vec`'s own `io::Write` each is a libc `memcpy` call, which profiling a
/// year-long series showed to be a large share of the encoding time.
struct Sink(Vec<u8>);

impl Sink {
    #[inline]
    fn append(&mut self, bytes: &[u8]) {
        if bytes.len() <= 2 {
            for &b in bytes {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(bytes);
        }
    }
}

impl io::Write for Sink {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stream the payload into `out` and give it back. Wrap files and sockets in a
/// `BufWriter`: the encoder issues many small writes.
pub fn encode_to<W: io::Write>(series: &TimeSeries, form: MetaForm, out: W) -> io::Result<W> {
    let mut w = Writer::new(out);
    let mut quoalise = BytesStart::new("quoalise");
    quoalise.push_attribute(("xmlns", NS_QUOALISE));
    w.write_event(Event::Start(quoalise.borrow()))?;
    w.write_event(Event::Start(BytesStart::new("data")))?;
    Meta::for_series(&series.identifier, series.sampling(), form).write(&mut w)?;
    write_sensml(&mut w, series)?;
    w.write_event(Event::End(BytesEnd::new("data")))?;
    w.write_event(Event::End(quoalise.to_end()))?;
    Ok(w.into_inner())
}

/// The payload as a DOM element, for the XMPP layer (xmpp-parsers/minidom).
///
/// Built by encoding then parsing, so the wire format has one source of truth.
pub fn encode_element(
    series: &TimeSeries,
    form: MetaForm,
) -> Result<minidom::Element, EncodeError> {
    let bytes = encode(series, form);
    let text = std::str::from_utf8(&bytes).map_err(|e| EncodeError(e.to_string()))?;
    text.parse::<minidom::Element>()
        .map_err(|e| EncodeError(e.to_string()))
}

fn write_sensml<W: io::Write>(w: &mut Writer<W>, series: &TimeSeries) -> io::Result<()> {
    let mut sensml = BytesStart::new("sensml");
    sensml.push_attribute(("xmlns", NS_SENML));

    let mut values = series
        .readings
        .iter()
        .filter_map(|r| r.value.filter(|v| v.is_finite()).map(|v| (r.start, v)));
    let Some((base_time, first_value)) = values.next() else {
        // No value at all: an empty pack, still a valid Quoalise payload.
        return w.write_event(Event::Empty(sensml));
    };
    w.write_event(Event::Start(sensml.borrow()))?;

    let name = series.identifier.to_string();
    let mut numbers = Numbers::default();
    let mut first = BytesStart::new("senml");
    first.push_attribute(("bn", name.as_str()));
    first.push_attribute(("bt", numbers.int(base_time)));
    first.push_attribute(("t", "0"));
    first.push_attribute(("v", numbers.value(first_value)));
    first.push_attribute(("bu", series.identifier.series.unit()));
    w.write_event(Event::Empty(first))?;

    // Later records hold only numbers, which never need escaping, so their tag
    // content is assembled directly in one reused buffer (no allocation, no escape
    // scan) and handed to the writer as an ordinary empty-element event.
    const PREFIX: &str = r#"senml t=""#;
    let mut content = String::with_capacity(64);
    content.push_str(PREFIX);
    for (start, value) in values {
        content.truncate(PREFIX.len());
        // Saturating: starts are UTC seconds of real readings, far from overflow,
        // but an absurd input must not panic.
        content.push_str(numbers.int(start.saturating_sub(base_time)));
        content.push_str(r#"" v=""#);
        content.push_str(numbers.value(value));
        content.push('"');
        w.write_event(Event::Empty(BytesStart::from_content(
            content.as_str(),
            "senml".len(),
        )))?;
    }
    w.write_event(Event::End(sensml.to_end()))
}

/// Reusable number formatting buffers.
#[derive(Default)]
struct Numbers {
    integer: itoa::Buffer,
    float: String,
}

impl Numbers {
    fn int(&mut self, n: i64) -> &str {
        self.integer.format(n)
    }

    /// Integral values print as integers ("101"), others with Rust's shortest
    /// representation that reads back to the same `f64` ("101.5", "0.1").
    fn value(&mut self, v: f64) -> &str {
        if let Some(n) = whole(v) {
            self.integer.format(n)
        } else {
            use std::fmt::Write;
            self.float.clear();
            // Writing into a String cannot fail.
            let _ = write!(self.float, "{v}");
            &self.float
        }
    }
}

/// `v` as an i64 when it is a whole number in the i64 range.
#[inline]
fn whole(v: f64) -> Option<i64> {
    // 2^63 bounds the i64 range; every integral f64 below it converts exactly.
    // (A round trip through i64 rather than `fract()`, which is a libm call.)
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
    let n = v as i64;
    (v.abs() < I64_BOUND && n as f64 == v).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quoalise::{Identifier, Reading, Series, Step};

    fn series(name: Series, step: Step, points: &[(i64, Option<f64>)]) -> TimeSeries {
        TimeSeries::new(
            Identifier::new("30001610071843".parse().unwrap(), name),
            points
                .iter()
                .map(|&(start, value)| Reading { start, step, value })
                .collect(),
        )
    }

    fn text(series: &TimeSeries, form: MetaForm) -> String {
        String::from_utf8(encode(series, form)).unwrap()
    }

    #[test]
    fn load_curve_flat_is_the_documented_payload() {
        let s = series(
            Series::ConsumptionPower,
            Step::PT30M,
            &[
                (1_583_017_200, Some(100.0)),
                (1_583_019_000, Some(101.0)),
                (1_583_020_800, None),
                (1_583_022_600, Some(98.5)),
            ],
        );
        let expected = concat!(
            r#"<quoalise xmlns="urn:quoalise:0"><data><meta>"#,
            r#"<device type="electricity-meter"><identifier authority="enedis" type="prm" value="30001610071843"/></device>"#,
            r#"<measurement name="active-power" direction="consumption" quantity="power" type="electrical" unit="W" aggregation="mean" sampling-interval="PT30M"/>"#,
            r#"</meta><sensml xmlns="urn:ietf:params:xml:ns:senml">"#,
            r#"<senml bn="urn:dev:prm:30001610071843_consumption/power/active/raw" bt="1583017200" t="0" v="100" bu="W"/>"#,
            r#"<senml t="1800" v="101"/>"#,
            r#"<senml t="5400" v="98.5"/>"#,
            r#"</sensml></data></quoalise>"#,
        );
        assert_eq!(text(&s, MetaForm::Flat), expected);
    }

    #[test]
    fn daily_energy_nested_is_the_legacy_payload() {
        // 2020-03-28 and 2020-03-29 (a 23-hour day) at Paris midnight.
        let s = series(
            Series::ProductionEnergyDaily,
            Step::Day,
            &[(1_585_350_000, Some(12_345.0)), (1_585_436_400, Some(0.25))],
        );
        let expected = concat!(
            r#"<quoalise xmlns="urn:quoalise:0"><data><meta>"#,
            r#"<device type="electricity-meter"><identifier authority="enedis" type="prm" value="30001610071843"/></device>"#,
            r#"<measurement><physical quantity="energy" type="electrical" unit="Wh"/>"#,
            r#"<business graph="daily-energy" direction="production"/><aggregate type="sum"/>"#,
            r#"<sampling interval="86400"/></measurement>"#,
            r#"</meta><sensml xmlns="urn:ietf:params:xml:ns:senml">"#,
            r#"<senml bn="urn:dev:prm:30001610071843_production/energy/active/daily" bt="1585350000" t="0" v="12345" bu="Wh"/>"#,
            r#"<senml t="86400" v="0.25"/>"#,
            r#"</sensml></data></quoalise>"#,
        );
        assert_eq!(text(&s, MetaForm::Nested), expected);
    }

    #[test]
    fn missing_values_are_skipped_and_base_time_is_the_first_present() {
        let s = series(
            Series::ConsumptionMaxPower,
            Step::Day,
            &[
                (1_000_000_000, None),
                (1_000_086_400, Some(f64::NAN)),
                (1_000_172_800, Some(-0.0)),
                (1_000_259_200, Some(1e-7)),
            ],
        );
        let out = text(&s, MetaForm::Flat);
        assert!(
            out.contains(concat!(
                r#"<senml bn="urn:dev:prm:30001610071843_consumption/power/apparent/max" bt="1000172800" t="0" v="0" bu="VA"/>"#,
                r#"<senml t="86400" v="0.0000001"/></sensml>"#
            )),
            "{out}"
        );
        assert_eq!(out.matches("<senml ").count(), 2);
    }

    #[test]
    fn empty_series_gives_an_empty_pack() {
        let s = series(Series::ConsumptionPower, Step::PT30M, &[(0, None)]);
        let out = text(&s, MetaForm::Flat);
        assert!(
            out.ends_with(
                r#"sampling-interval="PT30M"/></meta><sensml xmlns="urn:ietf:params:xml:ns:senml"/></data></quoalise>"#
            ),
            "{out}"
        );
    }

    #[test]
    fn element_matches_the_bytes() {
        let s = series(
            Series::ConsumptionPower,
            Step::Minutes(10),
            &[(1_583_017_200, Some(1.0)), (1_583_017_800, Some(2.5))],
        );
        let element = encode_element(&s, MetaForm::Flat).unwrap();
        assert!(element.is("quoalise", NS_QUOALISE));
        let mut reserialised = Vec::new();
        element.write_to(&mut reserialised).unwrap();
        // minidom writes the same document, modulo attribute order, so compare trees.
        let again: minidom::Element = std::str::from_utf8(&reserialised).unwrap().parse().unwrap();
        assert_eq!(again, element);
        let sensml = element
            .get_child("data", NS_QUOALISE)
            .and_then(|d| d.get_child("sensml", NS_SENML))
            .unwrap();
        let records: Vec<_> = sensml.children().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].attr("t"), Some("600"));
        assert_eq!(records[1].attr("v"), Some("2.5"));
    }

    #[test]
    fn large_and_small_values_keep_their_digits() {
        for v in [1e20, -3.0, 123_456_789.0, 0.1, 1.0 / 3.0, 5e-324, f64::MAX] {
            let s = series(Series::ConsumptionPower, Step::PT30M, &[(0, Some(v))]);
            let out = text(&s, MetaForm::Flat);
            let start = out.find(" v=\"").unwrap() + 4;
            let end = start + out[start..].find('"').unwrap();
            assert_eq!(
                out[start..end].parse::<f64>().unwrap(),
                v,
                "{}",
                &out[start..end]
            );
        }
    }
}
