//! One output document for answers that arrive in pieces (pages of one session,
//! or the answers to consecutive sub-ranges), written as the pieces arrive.
//!
//! [`Merger`] receives each piece as a decoded series and writes its records at
//! once; it keeps only counters (records, sum, first and last instant) and the
//! state of the document being written, so memory is bounded by one piece, not by
//! the range. The document is the one a single answer would have given:
//!
//! - csv: `time,value` then one line per record;
//! - json: `{"identifier", "unit", "sampling", "records": [{"time", "value"}]}`,
//!   the opening written with the first piece and closed by [`Merger::finish`];
//! - xml: one `<quoalise xmlns="urn:quoalise:0"><data>` with the first piece's
//!   `<meta>` and one `<sensml>` whose first record carries `bn`, `bt`, `t="0"`,
//!   `v`, `bu` and every later one `t` (seconds after that `bt`) and `v`, as the
//!   agent's encoder (`quoalise::encode`) writes a whole range, indented by two
//!   spaces as `query` always printed it.
//!
//! Records without a (finite) value are left out, as the encoder leaves them out.
//! The metadata (identifier, sampling) of the output are the first piece's; a
//! later piece of another identifier, or whose first record is not after the last
//! record already written, is refused ([`MergeError`]).

use std::io::{self, Write};

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::{Format, instant, summary_line};
use crate::quoalise::{Identifier, Meta, NS_QUOALISE, NS_SENML, Step, TimeSeries};

/// Why a piece could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot write the output: {0}")]
    Write(#[from] io::Error),
    #[error("its records are of {found}, the earlier ones of {expected}")]
    Identifier { expected: String, found: String },
    #[error(
        "its first record ({first}) is not after the last record already received ({last}): the pieces overlap"
    )]
    Overlap { first: String, last: String },
}

/// Where the XML document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XmlState {
    /// `<meta>` written, `<sensml>` not opened yet (no record with a value so far).
    NoRecord,
    /// `<sensml>` open, its first record (with the base values) written at `bt`.
    Records { base_time: i64 },
}

/// The series every piece must continue.
#[derive(Debug, Clone)]
struct Started {
    identifier: Identifier,
    sampling: Step,
    /// The records' `bn` in xml: named as the first piece's meta form names them.
    record_name: String,
    xml: XmlState,
}

/// Writes pieces of one series as one document; see the module doc.
pub struct Merger<W: Write> {
    out: Writer<W>,
    format: Format,
    started: Option<Started>,
    /// Start of the last reading received (with or without a value).
    last_start: Option<i64>,
    /// Records written (readings with a finite value).
    count: u64,
    sum: f64,
    first: Option<i64>,
    last: Option<i64>,
    /// Reused for number formatting.
    number: itoa::Buffer,
}

impl<W: Write> Merger<W> {
    /// A merger writing `format` to `out` (wrap stdout in a `BufWriter`: records
    /// are written one by one).
    pub fn new(format: Format, out: W) -> Self {
        let out = match format {
            Format::Xml => Writer::new_with_indent(out, b' ', 2),
            Format::Json | Format::Csv => Writer::new(out),
        };
        Merger {
            out,
            format,
            started: None,
            last_start: None,
            count: 0,
            sum: 0.0,
            first: None,
            last: None,
            number: itoa::Buffer::new(),
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.count
    }

    /// Writes the records of one piece; the first piece also writes the opening
    /// of the document (with its `meta`, in xml).
    pub fn piece(&mut self, meta: &Meta, series: &TimeSeries) -> Result<(), MergeError> {
        match &self.started {
            None => self.begin(meta, series)?,
            Some(started) if started.identifier != series.identifier => {
                return Err(MergeError::Identifier {
                    expected: started.identifier.to_string(),
                    found: series.identifier.to_string(),
                });
            }
            Some(_) => {}
        }
        if let (Some(last), Some(first)) = (self.last_start, series.readings.first())
            && first.start <= last
        {
            return Err(MergeError::Overlap {
                first: instant(first.start),
                last: instant(last),
            });
        }
        if let Some(last) = series.readings.last() {
            self.last_start = Some(last.start);
        }
        for reading in &series.readings {
            if let Some(value) = reading.value.filter(|v| v.is_finite()) {
                self.record(reading.start, value)?;
            }
        }
        Ok(())
    }

    fn begin(&mut self, meta: &Meta, series: &TimeSeries) -> Result<(), MergeError> {
        let identifier = series.identifier;
        let sampling = series.sampling();
        match self.format {
            Format::Csv => writeln!(self.out.get_mut(), "time,value")?,
            Format::Json => {
                let out = self.out.get_mut();
                writeln!(out, "{{")?;
                writeln!(
                    out,
                    "  \"identifier\": {},",
                    json_string(&identifier.to_string())
                )?;
                writeln!(
                    out,
                    "  \"unit\": {},",
                    json_string(identifier.series.unit())
                )?;
                writeln!(
                    out,
                    "  \"sampling\": {},",
                    json_string(&sampling.to_string())
                )?;
                write!(out, "  \"records\": [")?;
            }
            Format::Xml => {
                let mut quoalise = BytesStart::new("quoalise");
                quoalise.push_attribute(("xmlns", NS_QUOALISE));
                self.out.write_event(Event::Start(quoalise))?;
                self.out
                    .write_event(Event::Start(BytesStart::new("data")))?;
                meta.write(&mut self.out)?;
            }
        }
        self.started = Some(Started {
            identifier,
            sampling,
            record_name: meta.form.record_name(&identifier),
            xml: XmlState::NoRecord,
        });
        Ok(())
    }

    fn record(&mut self, start: i64, value: f64) -> Result<(), MergeError> {
        let Some(started) = self.started.as_mut() else {
            // `piece` begins the document before any record.
            return Ok(());
        };
        match self.format {
            Format::Csv => writeln!(self.out.get_mut(), "{},{}", instant(start), value)?,
            Format::Json => {
                let separator = if self.count == 0 { "" } else { "," };
                let value = serde_json::to_string(&value).map_err(io::Error::other)?;
                write!(
                    self.out.get_mut(),
                    "{separator}\n    {{\n      \"time\": \"{}\",\n      \"value\": {value}\n    }}",
                    instant(start)
                )?;
            }
            Format::Xml => {
                let mut record = BytesStart::new("senml");
                match started.xml {
                    XmlState::NoRecord => {
                        let mut sensml = BytesStart::new("sensml");
                        sensml.push_attribute(("xmlns", NS_SENML));
                        self.out.write_event(Event::Start(sensml))?;
                        record.push_attribute(("bn", started.record_name.as_str()));
                        record.push_attribute(("bt", self.number.format(start)));
                        record.push_attribute(("t", "0"));
                        record.push_attribute(("v", number(&mut self.number, value).as_str()));
                        record.push_attribute(("bu", started.identifier.series.unit()));
                        started.xml = XmlState::Records { base_time: start };
                    }
                    XmlState::Records { base_time } => {
                        let t = start.saturating_sub(base_time);
                        record.push_attribute(("t", self.number.format(t)));
                        record.push_attribute(("v", number(&mut self.number, value).as_str()));
                    }
                }
                self.out.write_event(Event::Empty(record))?;
            }
        }
        self.count += 1;
        self.sum += value;
        self.first.get_or_insert(start);
        self.last = Some(start);
        Ok(())
    }

    /// Closes the document and gives the one-line summary for stderr (`None`
    /// when no piece was received: nothing was written).
    pub fn finish(mut self) -> Result<(Option<String>, W), MergeError> {
        let Some(started) = self.started.take() else {
            return Ok((None, self.out.into_inner()));
        };
        match self.format {
            Format::Csv => {}
            Format::Json => {
                let out = self.out.get_mut();
                if self.count == 0 {
                    writeln!(out, "]")?;
                } else {
                    writeln!(out, "\n  ]")?;
                }
                writeln!(out, "}}")?;
            }
            Format::Xml => {
                match started.xml {
                    XmlState::NoRecord => {
                        let mut sensml = BytesStart::new("sensml");
                        sensml.push_attribute(("xmlns", NS_SENML));
                        self.out.write_event(Event::Empty(sensml))?;
                    }
                    XmlState::Records { .. } => {
                        self.out.write_event(Event::End(BytesEnd::new("sensml")))?;
                    }
                }
                self.out.write_event(Event::End(BytesEnd::new("data")))?;
                self.out
                    .write_event(Event::End(BytesEnd::new("quoalise")))?;
                writeln!(self.out.get_mut())?;
            }
        }
        let mean = if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        };
        let line = summary_line(
            &started.identifier,
            started.sampling,
            self.count,
            self.first.zip(self.last),
            mean,
        );
        let mut out = self.out.into_inner();
        out.flush()?;
        Ok((Some(line), out))
    }
}

/// A value as the encoder writes it: whole numbers as integers ("101"), others in
/// Rust's shortest form that reads back to the same `f64` ("101.5").
fn number(integers: &mut itoa::Buffer, v: f64) -> String {
    // 2^63 bounds the i64 range; every integral f64 below it converts exactly.
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
    let n = v as i64;
    if v.abs() < I64_BOUND && n as f64 == v {
        integers.format(n).to_owned()
    } else {
        v.to_string()
    }
}

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command as Process;

    use quick_xml::events::Event;

    use super::super::fake;
    use super::*;
    use crate::quoalise::{MetaForm, Reading, Series, decode, encode};

    const START: i64 = 1_792_447_200; // 2026-10-19T22:00:00Z

    fn piece(series: Series, step: Step, start: i64, end: i64) -> TimeSeries {
        TimeSeries::new(
            fake::identifier(series),
            fake::readings(series, step, start, end),
        )
    }

    fn meta(series: &TimeSeries, form: MetaForm) -> Meta {
        Meta::for_series(&series.identifier, series.sampling(), form)
    }

    /// The pieces merged in `format`; the text and the summary.
    fn merge(format: Format, pieces: &[TimeSeries], form: MetaForm) -> (String, Option<String>) {
        let mut merger = Merger::new(format, Vec::new());
        for p in pieces {
            merger.piece(&meta(p, form), p).unwrap();
        }
        let (summary, out) = merger.finish().unwrap();
        (String::from_utf8(out).unwrap(), summary)
    }

    /// Three pieces of a 10-minute series across the autumn change, and the whole.
    fn pieces() -> (Vec<TimeSeries>, TimeSeries) {
        let cuts = [
            START,
            START + 86_400 * 3,
            START + 86_400 * 5 + 3_600,
            START + 86_400 * 8,
        ];
        let pieces: Vec<TimeSeries> = cuts
            .windows(2)
            .map(|w| piece(Series::ConsumptionPower, Step::Minutes(10), w[0], w[1]))
            .collect();
        let whole = piece(Series::ConsumptionPower, Step::Minutes(10), START, cuts[3]);
        (pieces, whole)
    }

    /// The document indented as `query` prints it.
    fn indented(xml: &[u8]) -> String {
        let mut reader = quick_xml::Reader::from_reader(xml);
        reader.config_mut().trim_text(true);
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf).unwrap() {
                Event::Eof => break,
                event => writer.write_event(event).unwrap(),
            }
            buf.clear();
        }
        String::from_utf8(writer.into_inner()).unwrap()
    }

    /// Validates `xml` against `schemas/quoalise.rng` with xmllint.
    #[track_caller]
    fn assert_valid(xml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("merged.xml");
        std::fs::write(&file, xml).unwrap();
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/quoalise.rng");
        let out = match Process::new("xmllint")
            .arg("--noout")
            .arg("--relaxng")
            .arg(&schema)
            .arg(&file)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("xmllint is not installed; install the Debian package libxml2-utils")
            }
            Err(e) => panic!("cannot run xmllint: {e}"),
        };
        assert!(
            out.status.success(),
            "schemas/quoalise.rng rejects the merged output:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn xml_pieces_make_the_document_of_the_whole_range() {
        let (pieces, whole) = pieces();
        let (xml, summary) = merge(Format::Xml, &pieces, MetaForm::Flat);
        // Exactly what the agent would have sent in one answer, indented.
        assert_eq!(
            xml,
            format!("{}\n", indented(&encode(&whole, MetaForm::Flat)))
        );
        let data = decode(&xml).unwrap();
        assert_eq!(data.len(), 1);
        let series = data[0].to_time_series().unwrap();
        assert_eq!(series.readings, whole.readings);
        assert_valid(&xml);
        assert_eq!(
            summary.as_deref(),
            Some(super::super::summary(&whole).as_str())
        );
        assert!(xml.contains(r#"<senml bn="urn:dev:prm:30001610071843_consumption/power/active/raw" bt="1792447200" t="0" v=""#), "{xml}");
        assert_eq!(xml.matches(" bt=").count(), 1);
    }

    #[test]
    fn nested_meta_pieces_and_missing_values() {
        // Daily energy in the legacy form; two pieces, some values missing.
        let mut first = piece(
            Series::ProductionEnergyDaily,
            Step::Day,
            START,
            START + 10 * 86_400,
        );
        let second = piece(
            Series::ProductionEnergyDaily,
            Step::Day,
            START + 10 * 86_400,
            START + 20 * 86_400,
        );
        first.readings[0].value = None;
        first.readings[4].value = Some(f64::NAN);
        let (xml, summary) = merge(
            Format::Xml,
            &[first.clone(), second.clone()],
            MetaForm::Nested,
        );
        let mut whole = first.readings.clone();
        whole.extend(second.readings.iter().copied());
        let whole = TimeSeries::new(first.identifier, whole);
        assert_eq!(
            xml,
            format!("{}\n", indented(&encode(&whole, MetaForm::Nested)))
        );
        assert_valid(&xml);
        assert!(xml.contains("<sampling interval=\"P1D\"/>"), "{xml}");
        // Named as the first Data Connect proxy named daily records.
        assert!(
            xml.contains(r#"<senml bn="urn:dev:prm:30001610071843_daily_production" bt="#),
            "{xml}"
        );
        let decoded = decode(&xml).unwrap()[0].to_time_series().unwrap();
        let present: Vec<Reading> = whole
            .readings
            .iter()
            .filter(|r| r.value.is_some_and(f64::is_finite))
            .copied()
            .collect();
        assert_eq!(decoded.readings, present);
        assert!(summary.unwrap().starts_with("18 records of "));
    }

    #[test]
    fn empty_pieces_give_an_empty_pack() {
        let empty = TimeSeries::new(fake::identifier(Series::ConsumptionPower), Vec::new());
        let meta = Meta::for_series(&empty.identifier, Step::PT30M, MetaForm::Flat);
        let mut merger = Merger::new(Format::Xml, Vec::new());
        merger.piece(&meta, &empty).unwrap();
        merger.piece(&meta, &empty).unwrap();
        let (summary, out) = merger.finish().unwrap();
        let xml = String::from_utf8(out).unwrap();
        assert!(
            xml.contains(r#"<sensml xmlns="urn:ietf:params:xml:ns:senml"/>"#),
            "{xml}"
        );
        assert_valid(&xml);
        assert_eq!(
            summary.unwrap(),
            "0 records of urn:dev:prm:30001610071843_consumption/power/active/raw"
        );
        let (json, _) = merge(Format::Json, std::slice::from_ref(&empty), MetaForm::Flat);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["records"], serde_json::json!([]));
        // No piece at all: nothing written, no summary.
        let (summary, out) = Merger::new(Format::Csv, Vec::new()).finish().unwrap();
        assert!(summary.is_none() && out.is_empty());
    }

    #[test]
    fn json_pieces_make_the_json_of_the_whole_range() {
        let (pieces, whole) = pieces();
        let (json, _) = merge(Format::Json, &pieces, MetaForm::Flat);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let expected = serde_json::json!({
            "identifier": whole.identifier.to_string(),
            "unit": "W",
            "sampling": "PT10M",
            "records": whole.readings.iter().map(|r| serde_json::json!({
                "time": instant(r.start),
                "value": r.value.unwrap(),
            })).collect::<Vec<_>>(),
        });
        assert_eq!(value, expected);
        assert!(
            json.starts_with("{\n  \"identifier\": \"urn:dev:prm:"),
            "{json}"
        );
        assert!(json.ends_with("\n  ]\n}\n"));
    }

    #[test]
    fn csv_pieces_make_one_table() {
        let (pieces, whole) = pieces();
        let (csv, _) = merge(Format::Csv, &pieces, MetaForm::Flat);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "time,value");
        assert_eq!(lines.len(), 1 + whole.readings.len());
        assert_eq!(lines.iter().filter(|l| **l == "time,value").count(), 1);
        assert_eq!(
            lines[1],
            format!("2026-10-19T22:00:00Z,{}", fake::value_at(START))
        );
    }

    #[test]
    fn a_piece_of_another_series_or_overlapping_is_refused() {
        let (pieces, _) = pieces();
        let mut merger = Merger::new(Format::Csv, Vec::new());
        merger
            .piece(&meta(&pieces[0], MetaForm::Flat), &pieces[0])
            .unwrap();
        let other = piece(
            Series::ProductionPower,
            Step::Minutes(10),
            START + 86_400 * 3,
            START + 86_400 * 4,
        );
        assert_eq!(
            merger
                .piece(&meta(&other, MetaForm::Flat), &other)
                .unwrap_err()
                .to_string(),
            "its records are of urn:dev:prm:30001610071843_production/power/active/raw, the earlier ones of urn:dev:prm:30001610071843_consumption/power/active/raw"
        );
        let overlapping = piece(
            Series::ConsumptionPower,
            Step::Minutes(10),
            START + 86_400 * 3 - 600,
            START + 86_400 * 4,
        );
        assert_eq!(
            merger
                .piece(&meta(&overlapping, MetaForm::Flat), &overlapping)
                .unwrap_err()
                .to_string(),
            "its first record (2026-10-22T21:50:00Z) is not after the last record already received (2026-10-22T21:50:00Z): the pieces overlap"
        );
        assert_eq!(merger.records(), pieces[0].readings.len() as u64);
    }
}
