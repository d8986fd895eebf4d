//! The Quoalise payload encoder: a [`TimeSeries`] into
//! `<quoalise xmlns="urn:quoalise:0"><data><meta>…</meta><sensml …>…</sensml></data></quoalise>`.
//!
//! It streams quick-xml events into any [`io::Write`] without building a tree. The
//! SenML records follow the protocol doc exactly: the first carries `bn` (the
//! identifier, or in the nested form the first Data Connect proxy's name for it:
//! [`MetaForm::record_name`]), `bt` (its start, UTC seconds), `t="0"`, `v` and `bu`; later ones only
//! `t` (seconds after `bt`) and `v`. A reading without a value is left out (missing
//! stays missing, never 0), so `bt` is the first reading that has one.
//!
//! Speed matters because a year of half-hours is 17,520 records: every record after
//! the first is written as bytes into a reused chunk buffer (no allocation and no
//! writer call per record), integers are printed with `itoa`, and `encode` sizes its
//! output up front (`cargo bench --bench codec`: about 40 M records/s on a year of
//! whole values).

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::meta::{Meta, MetaForm};
use super::{Identifier, NS_QUOALISE, NS_SENML, Reading, SeriesView, TimeSeries};

/// Why [`encode_element`] failed: the XML layer refused a name the encoder uses,
/// which would be a bug in the encoder, reported rather than panicking.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Quoalise payload element: {0}")]
pub struct EncodeError(String);

/// Bytes per record, generous: `<senml t="1234567" v="12345.678"/>` is 32.
const RECORD_BYTES: usize = 40;
/// Envelope, meta and first-record extras.
const FIXED_BYTES: usize = 768;
/// Records are handed to the writer in chunks of about this size.
const CHUNK_BYTES: usize = 8 * 1024;
/// The stack buffer records are assembled in.
const RECORDS_BUFFER: usize = 4096;

/// The payload as UTF-8 XML bytes.
pub fn encode(series: &TimeSeries, form: MetaForm) -> Vec<u8> {
    encode_view(series.view(), form)
}

/// [`encode`] of readings held elsewhere (a page of a longer series).
pub fn encode_view(series: SeriesView<'_>, form: MetaForm) -> Vec<u8> {
    let buffer = Vec::with_capacity(FIXED_BYTES + RECORD_BYTES * series.readings.len());
    let mut w = Writer::new(Sink(buffer));
    // The records go straight into the output buffer (no chunk to copy).
    match write_envelope(&mut w, series, form, |w| {
        write_sensml(w, series, form, Some(|sink: &mut Sink| &mut sink.0))
    }) {
        Ok(()) => w.into_inner().0,
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
    let series = series.view();
    let mut w = Writer::new(out);
    write_envelope(&mut w, series, form, |w| {
        write_sensml(w, series, form, None)
    })?;
    Ok(w.into_inner())
}

/// The payload as a DOM element, for the XMPP layer (xmpp-parsers/minidom).
///
/// Built directly, without going through bytes: the envelope is three elements,
/// `<meta>` comes from the description [`Meta::write`] uses too, and the records
/// are written as [`write_sensml`] writes them (this runs for every answer: `cargo
/// bench --bench codec`, group `encode_element`). A property test checks that the
/// element equals the parsed bytes of [`encode`] for both meta forms.
pub fn encode_element(
    series: &TimeSeries,
    form: MetaForm,
) -> Result<minidom::Element, EncodeError> {
    let meta = Meta::for_series(&series.identifier, series.sampling(), form).to_element();
    let mut sensml = minidom::Element::bare("sensml", NS_SENML);
    append_records(&mut sensml, series, form)?;
    let mut data = minidom::Element::bare("data", NS_QUOALISE);
    data.append_child(meta);
    data.append_child(sensml);
    let mut root = minidom::Element::bare("quoalise", NS_QUOALISE);
    root.append_child(data);
    Ok(root)
}

/// The records of `series` as `<senml/>` children of `sensml`, exactly as
/// [`write_sensml`] writes them.
fn append_records(
    sensml: &mut minidom::Element,
    series: &TimeSeries,
    form: MetaForm,
) -> Result<(), EncodeError> {
    use minidom::rxml::{Namespace, NcName};
    let name = |n: &str| NcName::try_from(n).map_err(|e| EncodeError(e.to_string()));
    let (t, v) = (name("t")?, name("v")?);
    let mut values = present_values(series.view());
    let Some((base_time, first_value)) = values.next() else {
        return Ok(());
    };
    let mut numbers = Numbers::default();
    // Clones share the template's namespace instead of allocating it per record.
    let bare = minidom::Element::bare("senml", NS_SENML);
    let mut first = bare.clone();
    let record_name = form.record_name(&series.identifier);
    let bt = numbers.int(base_time).to_owned();
    for (n, value) in [
        (name("bn")?, record_name.as_str()),
        (name("bt")?, &bt),
        (t.clone(), "0"),
        (v.clone(), numbers.value(first_value)),
        (name("bu")?, series.identifier.series.unit()),
    ] {
        first
            .attrs_mut()
            .insert(Namespace::NONE, n, value.to_owned());
    }
    sensml.append_child(first);
    // The other records are clones of one that already has `t` and `v`: a clone
    // copies the attribute map as it is, where inserting into an empty map per
    // record compared keys and grew the map (a third of the encoding's CPU).
    let mut template = bare;
    for n in [&t, &v] {
        template
            .attrs_mut()
            .insert(Namespace::NONE, n.clone(), String::new());
    }
    for (start, value) in values {
        let mut record = template.clone();
        for ((_, n), slot) in record.attrs_mut().iter_mut() {
            *slot = if *n == t {
                numbers.int(start.saturating_sub(base_time)).to_owned()
            } else {
                numbers.value(value).to_owned()
            };
        }
        sensml.append_child(record);
    }
    Ok(())
}

/// The readings that have a (finite) value, as (start, value).
fn present_values<'a>(series: SeriesView<'a>) -> impl Iterator<Item = (i64, f64)> + 'a {
    series
        .readings
        .iter()
        .filter_map(|r| r.value.filter(|v| v.is_finite()).map(|v| (r.start, v)))
}

/// `<quoalise><data><meta/>` then `pack` then the closing tags.
fn write_envelope<W: io::Write>(
    w: &mut Writer<W>,
    series: SeriesView<'_>,
    form: MetaForm,
    pack: impl FnOnce(&mut Writer<W>) -> io::Result<()>,
) -> io::Result<()> {
    let mut quoalise = BytesStart::new("quoalise");
    quoalise.push_attribute(("xmlns", NS_QUOALISE));
    w.write_event(Event::Start(quoalise.borrow()))?;
    w.write_event(Event::Start(BytesStart::new("data")))?;
    Meta::for_series(&series.identifier, series.sampling(), form).write(w)?;
    pack(w)?;
    w.write_event(Event::End(BytesEnd::new("data")))?;
    w.write_event(Event::End(quoalise.to_end()))
}

/// `direct` gives the output buffer itself when `W` is one (then records are
/// appended to it in place); otherwise they go through a chunk buffer.
fn write_sensml<W: io::Write>(
    w: &mut Writer<W>,
    series: SeriesView<'_>,
    form: MetaForm,
    direct: Option<fn(&mut W) -> &mut Vec<u8>>,
) -> io::Result<()> {
    let mut sensml = BytesStart::new("sensml");
    sensml.push_attribute(("xmlns", NS_SENML));

    let mut values = present_values(series);
    let Some((base_time, first_value)) = values.next() else {
        // No value at all: an empty pack, still a valid Quoalise payload.
        return w.write_event(Event::Empty(sensml));
    };
    w.write_event(Event::Start(sensml.borrow()))?;

    let name = form.record_name(&series.identifier);
    let mut numbers = Numbers::default();
    let mut first = BytesStart::new("senml");
    first.push_attribute(("bn", name.as_str()));
    first.push_attribute(("bt", numbers.int(base_time)));
    first.push_attribute(("t", "0"));
    first.push_attribute(("v", numbers.value(first_value)));
    first.push_attribute(("bu", series.identifier.series.unit()));
    w.write_event(Event::Empty(first))?;

    // Later records hold only numbers, which never need escaping: they are
    // assembled as bytes (no allocation, escape scan or writer call per record).
    // `Writer::new` does not indent, so these bytes are exactly what the writer
    // would have written.
    match direct {
        Some(buffer_of) => {
            push_records(
                buffer_of(w.get_mut()),
                values,
                base_time,
                &mut numbers,
                |_| Ok(()),
            )?;
        }
        None => {
            let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + RECORD_BYTES * 2);
            push_records(&mut chunk, values, base_time, &mut numbers, |chunk| {
                w.get_mut().write_all(chunk)?;
                chunk.clear();
                Ok(())
            })?;
            w.get_mut().write_all(&chunk)?;
        }
    }
    w.write_event(Event::End(sensml.to_end()))
}

/// Appends `<senml t="…" v="…"/>` for each value to `out`; `full` is called
/// whenever `out` holds [`CHUNK_BYTES`] or more.
///
/// Records are assembled in a stack buffer of a few kilobytes, integers written
/// digit pairs at a time straight into it, and the buffer appended to `out` when
/// nearly full: profiling showed a copy per fragment (and the integer formatter's
/// own buffer) taking two thirds of the time of a simpler version.
#[inline]
fn push_records(
    out: &mut Vec<u8>,
    values: impl Iterator<Item = (i64, f64)>,
    base_time: i64,
    numbers: &mut Numbers,
    mut full: impl FnMut(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    const OPEN: &[u8] = br#"<senml t=""#;
    const MIDDLE: &[u8] = br#"" v=""#;
    const CLOSE: &[u8] = br#""/>"#;
    /// The longest record with integers: two of at most 20 characters, the tags.
    const LONGEST: usize = 64;
    let mut buf = [0u8; RECORDS_BUFFER];
    let mut at = 0;
    for (start, value) in values {
        if at + LONGEST > buf.len() {
            out.extend_from_slice(&buf[..at]);
            at = 0;
            if out.len() >= CHUNK_BYTES {
                full(out)?;
            }
        }
        at = put(&mut buf, at, OPEN);
        // Saturating: starts are UTC seconds of real readings, far from overflow,
        // but an absurd input must not panic.
        at = put_int(&mut buf, at, start.saturating_sub(base_time));
        at = put(&mut buf, at, MIDDLE);
        match whole(value) {
            Some(n) => at = put_int(&mut buf, at, n),
            None => {
                // Shortest round-trip form; it can be long (5e-324 has 324 digits).
                out.extend_from_slice(&buf[..at]);
                out.extend_from_slice(numbers.value(value).as_bytes());
                at = 0;
            }
        }
        at = put(&mut buf, at, CLOSE);
    }
    out.extend_from_slice(&buf[..at]);
    Ok(())
}

/// Copies `bytes` into `buf` at `at`; returns the position after them.
#[inline(always)]
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Two-digit groups "00" to "99".
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n` in decimal into `buf` at `at` (at most 20 characters); returns the
/// position after it.
#[inline(always)]
fn put_int(buf: &mut [u8], mut at: usize, n: i64) -> usize {
    if n < 0 {
        buf[at] = b'-';
        at += 1;
    }
    let mut u = n.unsigned_abs();
    let len = u.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut end = at + len;
    while u >= 100 {
        let pair = (u % 100) as usize * 2;
        u /= 100;
        buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if u >= 10 {
        let pair = u as usize * 2;
        buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        buf[end - 1] = b'0' + u as u8;
    }
    at + len
}

/// The longest prefix of `readings` whose payload (as [`encode`] writes it for
/// `identifier` in `form`) fits in `budget` bytes: how many readings it takes,
/// and the payload. Readings without a value take no room and are taken along
/// while the next value fits. `None` when not even the first value fits.
///
/// Sizes are computed, not tried: the first record and the envelope come from
/// encoding the readings up to the first value, every later record from the
/// digits of its `t` and `v`. The result is encoded once, and checked (a step
/// that changes within the readings can change the metadata's size).
pub fn encode_fitting(
    identifier: &Identifier,
    readings: &[Reading],
    form: MetaForm,
    budget: usize,
) -> Option<(usize, Vec<u8>)> {
    let encode_prefix = |n: usize| encode_view(SeriesView::new(*identifier, &readings[..n]), form);
    let Some(first) = readings
        .iter()
        .position(|r| r.value.is_some_and(f64::is_finite))
    else {
        // No value at all: one empty payload, whatever the number of readings.
        let bytes = encode_prefix(readings.len());
        return (bytes.len() <= budget).then_some((readings.len(), bytes));
    };
    let head = encode_prefix(first + 1).len();
    if head > budget {
        return None;
    }
    let base_time = readings[first].start;
    let mut numbers = Numbers::default();
    let mut total = head;
    let mut taken = first + 1;
    for r in &readings[first + 1..] {
        if let Some(v) = r.value.filter(|v| v.is_finite()) {
            let record = record_len(r.start.saturating_sub(base_time), v, &mut numbers);
            if total + record > budget {
                break;
            }
            total += record;
        }
        taken += 1;
    }
    loop {
        let bytes = encode_prefix(taken);
        if bytes.len() <= budget {
            return Some((taken, bytes));
        }
        // The metadata grew (a step changing within the readings): one value
        // less, and try again.
        let last = readings[..taken]
            .iter()
            .rposition(|r| r.value.is_some_and(f64::is_finite))?;
        if last <= first {
            return None;
        }
        taken = last;
    }
}

/// The bytes of `<senml t="…" v="…"/>` for a record after the first.
fn record_len(t: i64, v: f64, numbers: &mut Numbers) -> usize {
    const TAGS: usize = r#"<senml t="" v=""/>"#.len();
    let value = match whole(v) {
        Some(n) => int_len(n),
        None => numbers.value(v).len(),
    };
    TAGS + int_len(t) + value
}

/// Characters of `n` in decimal.
fn int_len(n: i64) -> usize {
    usize::from(n < 0)
        + n.unsigned_abs()
            .checked_ilog10()
            .map_or(1, |l| l as usize + 1)
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

    /// A year of half-hours with whole, fractional and missing values.
    fn mixed_year() -> TimeSeries {
        let start = 1_764_543_600;
        series(
            Series::ConsumptionPower,
            Step::PT30M,
            &(0..17_520)
                .map(|i| {
                    let value = match i % 97 {
                        0 => None,
                        1 => Some(1234.5),
                        _ => Some(f64::from((i * 7919) % 36_000)),
                    };
                    (start + i64::from(i) * 1800, value)
                })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn fitted_pages_are_as_large_as_the_budget_allows() {
        let year = mixed_year();
        for budget in [2_000, 10_000, 100_000, 262_144, 1_000_000] {
            let mut at = 0;
            let mut pages = 0;
            while at < year.readings.len() {
                let rest = &year.readings[at..];
                let (taken, bytes) =
                    encode_fitting(&year.identifier, rest, MetaForm::Flat, budget).unwrap();
                assert!(taken > 0);
                assert!(bytes.len() <= budget, "{} > {budget}", bytes.len());
                assert_eq!(
                    bytes,
                    encode(
                        &TimeSeries::new(year.identifier, rest[..taken].to_vec()),
                        MetaForm::Flat
                    ),
                    "the page is the encoding of the readings it took"
                );
                if taken < rest.len() {
                    // One more reading would not fit.
                    let more = encode(
                        &TimeSeries::new(year.identifier, rest[..=taken].to_vec()),
                        MetaForm::Flat,
                    );
                    assert!(more.len() > budget, "{} fits {budget}", more.len());
                }
                at += taken;
                pages += 1;
            }
            if budget == 262_144 {
                assert_eq!(pages, 2, "a year of half-hours is two pages of 256 KiB");
            }
        }
        assert!(encode_fitting(&year.identifier, &year.readings, MetaForm::Flat, 300).is_none());
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
            r#"<business direction="production"/><aggregate type="sum"/>"#,
            r#"<sampling interval="P1D"/></measurement>"#,
            r#"</meta><sensml xmlns="urn:ietf:params:xml:ns:senml">"#,
            r#"<senml bn="urn:dev:prm:30001610071843_daily_production" bt="1585350000" t="0" v="12345" bu="Wh"/>"#,
            r#"<senml t="86400" v="0.25"/>"#,
            r#"</sensml></data></quoalise>"#,
        );
        assert_eq!(text(&s, MetaForm::Nested), expected);
    }

    #[test]
    fn records_are_named_by_the_form() {
        // The nested form names them as the first Data Connect proxy did; the flat
        // form (get_history) by their identifier. Bytes and element agree.
        let cases = [
            (Series::ConsumptionPower, Step::PT30M, "consumption_load"),
            (
                Series::ProductionPower,
                Step::Minutes(10),
                "production_load",
            ),
            (
                Series::ConsumptionEnergyDaily,
                Step::Day,
                "daily_consumption",
            ),
            (Series::ProductionEnergyDaily, Step::Day, "daily_production"),
        ];
        for (name, step, legacy) in cases {
            let s = series(name, step, &[(1_585_350_000, Some(1.0))]);
            for (form, bn) in [
                (
                    MetaForm::Nested,
                    format!("urn:dev:prm:30001610071843_{legacy}"),
                ),
                (MetaForm::Flat, format!("urn:dev:prm:30001610071843_{name}")),
            ] {
                let out = text(&s, form);
                assert!(
                    out.contains(&format!(r#"<senml bn="{bn}" bt="1585350000""#)),
                    "{form:?}: {out}"
                );
                let element = encode_element(&s, form).unwrap();
                let first = element
                    .get_child("data", NS_QUOALISE)
                    .and_then(|d| d.get_child("sensml", NS_SENML))
                    .and_then(|p| p.children().next())
                    .unwrap();
                assert_eq!(first.attr("bn"), Some(bn.as_str()), "{form:?}");
            }
        }
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
    fn integers_print_as_rust_prints_them() {
        let mut samples = vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1800, 86_400];
        samples.extend([i64::MAX, i64::MIN, i64::MIN + 1, -1, -10, -100, -86_400]);
        let mut n = 1i64;
        while let Some(next) = n.checked_mul(10) {
            samples.extend([n - 1, n, n + 1, -n]);
            n = next;
        }
        for n in samples {
            let mut buf = [0u8; 64];
            let end = put_int(&mut buf, 3, n);
            assert_eq!(std::str::from_utf8(&buf[3..end]).unwrap(), n.to_string());
        }
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
