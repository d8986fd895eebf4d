//! The fuzzing entry points: everything the agent reads from outside the process
//! (peer forms and identifiers, dates, SenML payloads, Enedis answers of every
//! generation, consent callbacks) and its own cache blobs.
//!
//! Each function takes arbitrary bytes and must return without panicking; where a
//! property is cheap to state it is asserted too (a parsed identifier prints back to
//! itself, upstream readings come out ordered and inside the asked days, a decoded
//! payload survives re-encoding). The cargo-fuzz targets (`fuzz_targets/*.rs`) call
//! them, and so does the main crate's `tests/codec/fuzz_regressions.rs`, which runs every
//! file kept under `fuzz/regressions/<target>/` on stable Rust: this file is shared
//! between the two through `#[path]`, and uses only crates the main package has.

use std::str::FromStr;

use jiff::civil::{Date, date};
use quoalise_agent::commands::data::LegacyQuery;
use quoalise_agent::commands::subscription::parse_identifier;
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{
    Direction, Identifier, MetaForm, Prm, Series, Step, decode_bytes, encode,
};
use quoalise_agent::store::readings::{decode_day, encode_day};
use quoalise_agent::time::{
    Window, convert_load_curve, day_start, parse_date, parse_instant, parse_local_datetime,
};
use quoalise_agent::upstream::error::{excerpt, fault_from_answer, parse_error_body};
use quoalise_agent::upstream::{Callback, ConsentDuration, api2026, dialect, parse_prm_list};
use quoalise_agent::xmpp::{Command, SubmittedForm};

/// One fuzzing entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression runner.
pub const TARGETS: &[(&str, Target)] = &[
    ("form", form),
    ("identifier", identifier),
    ("dates", dates),
    ("senml", senml),
    ("upstream_json", upstream_json),
    ("consent_callback", consent_callback),
    ("cache_day", cache_day),
];

/// A peer's `<command/>` with its data form, read as the agent reads it: the
/// XEP-0050 element, the submitted form, and the fields of every command.
pub fn form(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(element) = text.parse::<minidom::Element>() else {
        return;
    };
    let form = match Command::from_element(element.clone()) {
        Ok(command) => {
            let _ = command.to_element();
            command.form
        }
        Err(_) => xmpp_parsers::data_forms::DataForm::try_from(element).ok(),
    };
    let Some(form) = form else {
        return;
    };
    let Ok(form) = SubmittedForm::new(form) else {
        return;
    };
    let _ = LegacyQuery::from_form(&form);
    let _ = parse_identifier(&form);
    let _ = form.parse_required("start_time", parse_instant);
    let _ = form.parse_required("end_date", parse_date);
    let _ = form.optional("end_time");
    let _ = form.required_text_multi("description");
    let _ = form.values("description");
    let _ = form.boolean("sandbox", false);
    let _ = form.choice(
        "direction",
        &["consumption", "production"],
        Some("consumption"),
    );
}

/// Identifiers, PRMs, series, steps and directions: parsed values print back to
/// themselves.
pub fn identifier(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = Identifier::from_str(text) {
        assert_eq!(Identifier::from_str(&id.to_string()), Ok(id));
    }
    if let Ok(prm) = Prm::from_str(text) {
        assert_eq!(prm.as_str(), text);
    }
    if let Ok(series) = Series::from_str(text) {
        assert_eq!(series.to_string(), text);
    }
    if let Ok(step) = Step::from_str(text) {
        assert_eq!(Step::from_str(&step.to_string()), Ok(step));
    }
    let _ = Direction::from_str(text);
    let _ = parse_prm_list(text, "usage_point_id");
}

/// The date parsers, windows, and the load-curve time conversion.
pub fn dates(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(day) = parse_date(text) {
            assert_eq!(day.to_string(), text);
            let _ = day_start(day);
            let _ = day.tomorrow().map(|next| Window::from_dates(day, next));
        }
        if let Ok(local) = parse_local_datetime(text) {
            let _ = convert_load_curve([(local, Step::PT30M, Some(1.0))]);
        }
        if let Ok(instant) = parse_instant(text)
            && let Ok(later) = instant.checked_add(jiff::SignedDuration::from_hours(1))
            && let Ok(window) = Window::new(instant, later)
        {
            let _ = window.paris_dates();
        }
        let _ = ConsentDuration::parse_at(text, date(2026, 11, 29));
    }
    // A sequence of local end times (seconds around the 2026 changes of time) in
    // upstream order: the conversion never panics and its output is ordered.
    let base = 1_774_742_400i64; // 2026-03-29T00:00:00Z
    let points: Vec<_> = data
        .chunks_exact(2)
        .filter_map(|c| {
            let offset = i64::from(i16::from_le_bytes([c[0], c[1]])) * 60;
            let ts = jiff::Timestamp::from_second(base + offset).ok()?;
            Some((
                quoalise_agent::time::PARIS.to_datetime(ts),
                Step::Minutes(u16::from(c[0] % 60) + 1),
                Some(f64::from(c[1])),
            ))
        })
        .collect();
    if let Ok(readings) = convert_load_curve(points) {
        assert!(readings.windows(2).all(|w| w[0].start < w[1].start));
    }
}

/// The SenML decoder (what the `query` command line reads from agents): a decoded
/// series survives encoding and decoding again (but for its readings without a
/// value, which the encoder leaves out).
pub fn senml(data: &[u8]) {
    let Ok(decoded) = decode_bytes(data) else {
        return;
    };
    for item in decoded {
        let Ok(series) = item.to_time_series() else {
            continue;
        };
        let again = encode(&series, MetaForm::Flat);
        let redecoded = decode_bytes(&again).expect("the encoder's output decodes");
        assert_eq!(redecoded.len(), 1);
        let back = redecoded[0]
            .to_time_series()
            .expect("the encoder's output is a series");
        // The encoder leaves readings without a value out (missing stays missing).
        let mut present = series.clone();
        present.readings.retain(|r| r.value.is_some());
        assert_eq!(back.readings, present.readings);
        assert_eq!(back.identifier, series.identifier);
    }
}

/// The PRM the upstream answers are read for.
fn asked_prm() -> Prm {
    Prm::from_str("22516914714270").unwrap_or_else(|_| unreachable!())
}

/// An Enedis answer body of any generation and series (the first two bytes choose
/// them): readings come out ordered and inside the asked days; error bodies and
/// consent scopes are read without panicking.
pub fn upstream_json(data: &[u8]) {
    let [g, s, body @ ..] = data else {
        return;
    };
    let generation = [
        ApiGeneration::Api2026,
        ApiGeneration::V5,
        ApiGeneration::V4,
        ApiGeneration::V3,
    ][usize::from(*g) % 4];
    let series = Series::ALL[usize::from(*s) % Series::ALL.len()];
    let (from, to): (Date, Date) = (date(2026, 9, 1), date(2026, 9, 8));
    if let Ok(readings) = dialect(generation).parse(series, &asked_prm(), from, to, body) {
        let (start, end) = (day_start(from).unwrap_or(0), day_start(to).unwrap_or(0));
        assert!(readings.windows(2).all(|w| w[0].start < w[1].start));
        assert!(readings.iter().all(|r| start <= r.start && r.start < end));
        assert!(readings.iter().all(|r| r.value.is_none_or(f64::is_finite)));
    }
    let _ = parse_error_body(body);
    let _ = fault_from_answer("metering_data_clc/v5/consumption_load_curve", 500, body);
    let _ = excerpt(body);
    if let Ok(scope) = api2026::parse_services(body) {
        let _ = scope.why_unusable();
    }
}

/// The query string of Enedis's redirect to the agent, and consent durations.
pub fn consent_callback(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let callback = Callback::from_query(text);
    let _ = callback.refusal();
    if let Some(list) = &callback.usage_point_id {
        let _ = parse_prm_list(list, "usage_point_id");
    }
    let _ = ConsentDuration::parse_at(text, date(2026, 11, 29));
}

/// The cache's day blobs: decoding is total, and stable through re-encoding.
pub fn cache_day(data: &[u8]) {
    if let Ok(readings) = decode_day(data) {
        assert_eq!(decode_day(&encode_day(&readings)), Ok(readings));
    }
}
