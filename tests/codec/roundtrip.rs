//! Encode → decode round trips of the Quoalise payload (property tests), and
//! decoding payloads written the way the Quoalise Python client and the first Data
//! Connect proxy wrote them.

use proptest::prelude::*;
use quoalise_agent::quoalise::{
    Calendar, ClassCode, Data, DecodeError, Direction, Identifier, Meta, MetaForm, Prm, Reading,
    Record, Series, SeriesKind, Step, TimeClass, TimeSeries, decode, decode_bytes, decode_element,
    encode, encode_element,
};

/// Every whole-meter series, and per-class ones with class codes of every length.
fn series_strategy() -> impl Strategy<Value = Series> {
    prop_oneof![
        3 => prop::sample::select(Series::WHOLE_METER.to_vec()),
        1 => (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            "[a-z0-9]{1,8}",
        )
            .prop_map(|(production, provider, daily, code)| {
                let direction = if production {
                    Direction::Production
                } else {
                    Direction::Consumption
                };
                let calendar = if provider {
                    Calendar::Provider
                } else {
                    Calendar::Distributor
                };
                let class = TimeClass::new(calendar, ClassCode::new(&code).expect("valid code"));
                if daily {
                    Series::ClassEnergyDaily(direction, class)
                } else {
                    Series::ClassIndex(direction, class)
                }
            }),
    ]
}

fn prm_strategy() -> impl Strategy<Value = Prm> {
    "[0-9]{14}".prop_map(|s| s.parse::<Prm>().expect("14 digits"))
}

/// Integral and fractional finite values, and some missing ones.
fn value_strategy() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        2 => Just(None),
        4 => (-100_000_000i64..100_000_000).prop_map(|v| Some(v as f64)),
        2 => (-1_000_000i64..1_000_000, 1u32..1000)
            .prop_map(|(v, d)| Some(v as f64 / f64::from(d))),
        1 => prop::num::f64::NORMAL.prop_map(Some),
        1 => prop::num::f64::SUBNORMAL.prop_map(Some),
        1 => prop::num::f64::ZERO.prop_map(Some),
    ]
}

/// A series with strictly increasing starts: load curves at a meter step (with
/// occasional gaps), daily series a Paris day apart (23, 24 or 25 hours).
fn time_series_strategy() -> impl Strategy<Value = TimeSeries> {
    (series_strategy(), prm_strategy()).prop_flat_map(|(series, prm)| {
        let step = match series.kind() {
            SeriesKind::LoadCurve => prop::sample::select(vec![
                Step::Minutes(5),
                Step::Minutes(10),
                Step::Minutes(15),
                Step::Minutes(30),
                Step::Minutes(60),
            ])
            .boxed(),
            SeriesKind::DailyEnergy | SeriesKind::DailyMaxPower | SeriesKind::Index => {
                Just(Step::Day).boxed()
            }
        };
        (
            step,
            1_300_000_000i64..2_000_000_000,
            prop::collection::vec((1i64..4, value_strategy()), 0..120),
        )
            .prop_map(move |(step, first, points)| {
                let mut start = first;
                let readings = points
                    .into_iter()
                    .map(|(gap, value)| {
                        start += match step {
                            Step::Day => [82_800, 86_400, 90_000][(gap as usize) % 3],
                            fixed => gap * fixed.nominal_seconds(),
                        };
                        Reading { start, step, value }
                    })
                    .collect();
                TimeSeries::new(Identifier::new(prm, series), readings)
            })
    })
}

/// What a series reads back as from its meta alone.
fn whole_meter_kin(series: Series) -> Series {
    match series {
        Series::ClassIndex(d, _) => Series::EnergyIndex(d),
        Series::ClassEnergyDaily(d, _) => Series::daily_energy(d),
        other => other,
    }
}

fn present(series: &TimeSeries) -> Vec<(i64, f64)> {
    series
        .readings
        .iter()
        .filter_map(|r| r.value.map(|v| (r.start, v)))
        .collect()
}

fn only(mut data: Vec<Data>) -> Data {
    assert_eq!(data.len(), 1, "one <data> expected");
    data.remove(0)
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_series_back(
        series in time_series_strategy(),
        nested in any::<bool>(),
    ) {
        // The nested form is the legacy commands', which serve no SGE series.
        let nested = nested && !series.identifier.series.is_sge_only();
        let form = if nested { MetaForm::Nested } else { MetaForm::Flat };
        let data = only(decode_bytes(&encode(&series, form)).expect("decodes"));
        prop_assert_eq!(
            &data.meta,
            &Meta::for_series(&series.identifier, series.sampling(), form)
        );
        let back = data.to_time_series().expect("converts");
        // Without a record, the identifier comes from the meta, which names no
        // calendar class: a per-class series reads back as its whole-meter kin.
        let expected_identifier = if present(&series).is_empty() {
            Identifier::new(series.identifier.prm, whole_meter_kin(series.identifier.series))
        } else {
            series.identifier
        };
        prop_assert_eq!(back.identifier, expected_identifier);
        // Every present value, same start, same value (bit for bit up to the sign of
        // zero), same order; missing values are not invented.
        let expected = present(&series);
        let got = present(&back);
        prop_assert_eq!(got.len(), back.readings.len());
        prop_assert_eq!(&got, &expected);
        for ((_, a), (_, b)) in got.iter().zip(&expected) {
            prop_assert!(a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0));
        }
        prop_assert!(back.readings.iter().all(|r| r.step == series.sampling()));
    }

    #[test]
    fn the_element_is_the_encoded_bytes_parsed(series in time_series_strategy()) {
        for form in [MetaForm::Flat, MetaForm::Nested] {
            let element = encode_element(&series, form).expect("builds");
            let bytes = encode(&series, form);
            let parsed: minidom::Element =
                std::str::from_utf8(&bytes).expect("UTF-8").parse().expect("parses");
            prop_assert_eq!(&element, &parsed);
            // And it serialises to the same document.
            let mut written = Vec::new();
            element.write_to(&mut written).expect("writes");
            let again: minidom::Element =
                std::str::from_utf8(&written).expect("UTF-8").parse().expect("parses");
            prop_assert_eq!(&again, &parsed);
        }
    }

    #[test]
    fn the_element_path_decodes_the_same(series in time_series_strategy()) {
        let element = encode_element(&series, MetaForm::Flat).expect("parses");
        let from_element = decode_element(&element).expect("decodes");
        let from_bytes = decode_bytes(&encode(&series, MetaForm::Flat)).expect("decodes");
        prop_assert_eq!(from_element, from_bytes);
    }

    /// Whatever bytes arrive, the decoder answers with data or an error, never a panic.
    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_bytes(&bytes);
    }

    /// Mutating one character of a valid payload never panics either.
    #[test]
    fn mutated_payloads_never_panic(
        series in time_series_strategy(),
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(vec!['<', '>', '"', '/', '=', ' ', 'x', '0', '-', '.', '&', ':']),
    ) {
        let text = String::from_utf8(encode(&series, MetaForm::Nested)).expect("UTF-8");
        let chars: Vec<char> = text.chars().collect();
        let i = position.index(chars.len());
        let mutated: String = chars
            .iter()
            .enumerate()
            .map(|(j, &c)| if j == i { replacement } else { c })
            .collect();
        if let Ok(data) = decode(&mutated) {
            for d in data {
                let _ = d.to_time_series();
            }
        }
    }
}

const PYTHON_PAYLOAD: &str = include_str!("../fixtures/python_client_payload.xml");

fn record(name: &str, time: f64, unit: &str, value: Option<f64>) -> Record {
    Record {
        name: name.to_owned(),
        time,
        unit: Some(unit.to_owned()),
        value,
    }
}

#[test]
fn decodes_what_the_python_client_writes() {
    let data = decode(PYTHON_PAYLOAD).expect("decodes");
    assert_eq!(data.len(), 3);

    // Compressed, one series: float strings, no t on the first, "None" missing.
    let load = "urn:dev:prm:30001610071843_consumption/power/active/raw";
    assert_eq!(
        data[0].records,
        [
            record(load, 1_600_041_600.0, "W", Some(100.0)),
            record(load, 1_600_043_400.0, "W", Some(101.5)),
            record(load, 1_600_045_200.0, "W", None),
            record(load, 1_600_047_000.0, "W", Some(98.0)),
        ]
    );
    assert_eq!(data[0].meta.form, MetaForm::Flat);
    let series = data[0].to_time_series().expect("a time series");
    assert_eq!(series.identifier.to_string(), load);
    assert_eq!(
        series
            .readings
            .iter()
            .map(|r| (r.start, r.step, r.value))
            .collect::<Vec<_>>(),
        [
            (1_600_041_600, Step::PT30M, Some(100.0)),
            (1_600_043_400, Step::PT30M, Some(101.5)),
            (1_600_045_200, Step::PT30M, None),
            (1_600_047_000, Step::PT30M, Some(98.0)),
        ]
    );

    // Compressed, two series under a common bn prefix, n suffixes.
    let consumption = "urn:dev:prm:30001610071843_consumption/energy/active/daily";
    let production = "urn:dev:prm:30001610071843_production/energy/active/daily";
    assert_eq!(
        data[1].records,
        [
            record(consumption, 1_600_034_400.0, "Wh", Some(8123.0)),
            record(consumption, 1_600_120_800.0, "Wh", Some(7456.0)),
            record(production, 1_600_034_400.0, "Wh", Some(1520.0)),
            record(production, 1_600_120_800.0, "Wh", Some(0.0)),
        ]
    );
    assert_eq!(data[1].meta.unit.as_deref(), Some("Wh"));
    assert_eq!(data[1].meta.direction, None);
    // Two identifiers do not make one time series; the error says where.
    assert_eq!(
        data[1].to_time_series().unwrap_err(),
        DecodeError::MixedNames {
            record: 2,
            first: consumption.into(),
            found: production.into(),
        }
    );

    // Never compressed: bn, bt (float string), bv, bu on every record.
    let max = "urn:dev:prm:30001610071843_consumption/power/apparent/max";
    assert_eq!(
        data[2].records,
        [
            record(max, 1_600_034_400.0, "VA", Some(6120.0)),
            record(max, 1_600_120_800.0, "VA", Some(5870.5)),
        ]
    );
    assert_eq!(data[2].meta.form, MetaForm::Nested);
    let series = data[2].to_time_series().expect("a time series");
    assert_eq!(series.identifier.series, Series::ConsumptionMaxPower);
    assert!(series.readings.iter().all(|r| r.step == Step::Day));
}

const FIRST_PROXY_PAYLOADS: &str = include_str!("../fixtures/first_proxy_payloads.xml");

/// What the first Data Connect proxy sent reads as the same series this agent
/// answers to `get_load_curve` and `get_daily`: its record names, its nested
/// meta, its ISO 8601 intervals. (Its load-curve times are the ends of their
/// half-hours; the decoder cannot know, and this agent sends the starts.)
#[test]
fn decodes_what_the_first_proxy_wrote() {
    let data = decode(FIRST_PROXY_PAYLOADS).expect("decodes");
    assert_eq!(data.len(), 2);
    let prm = "22516914714270".parse().unwrap();

    assert_eq!(data[0].meta.form, MetaForm::Nested);
    assert_eq!(data[0].meta.graph.as_deref(), Some("load-profile"));
    let curve = data[0].to_time_series().expect("a load curve");
    assert_eq!(
        curve.identifier,
        Identifier::new(prm, Series::ConsumptionPower)
    );
    assert_eq!(
        curve
            .readings
            .iter()
            .map(|r| (r.start, r.step, r.value))
            .collect::<Vec<_>>(),
        [
            (1_600_036_200, Step::PT30M, Some(245.0)),
            (1_600_038_000, Step::PT30M, Some(420.0)),
            (1_600_039_800, Step::PT30M, Some(367.0)),
        ]
    );

    assert_eq!(data[1].meta.form, MetaForm::Nested);
    assert_eq!(data[1].meta.graph, None);
    let daily = data[1].to_time_series().expect("daily energy");
    assert_eq!(
        daily.identifier,
        Identifier::new(prm, Series::ConsumptionEnergyDaily)
    );
    assert_eq!(
        daily
            .readings
            .iter()
            .map(|r| (r.start, r.step, r.value))
            .collect::<Vec<_>>(),
        [
            (1_600_034_400, Step::Day, Some(16_433.0)),
            (1_600_120_800, Step::Day, Some(15_012.0)),
        ]
    );
    // This agent's meta for the same series is the proxy's, attribute for
    // attribute.
    for d in &data {
        let series = d.to_time_series().unwrap();
        assert_eq!(
            d.meta,
            Meta::for_series(&series.identifier, series.sampling(), MetaForm::Nested)
        );
    }
}

#[test]
fn empty_series_round_trips_through_the_meta() {
    for series in Series::WHOLE_METER {
        for form in [MetaForm::Flat, MetaForm::Nested] {
            // The nested form is the legacy commands', which serve no SGE series.
            if form == MetaForm::Nested && series.is_sge_only() {
                continue;
            }
            let empty = TimeSeries::new(
                Identifier::new("22516914714270".parse().unwrap(), series),
                vec![],
            );
            let data = only(decode_bytes(&encode(&empty, form)).expect("decodes"));
            assert!(data.records.is_empty());
            let back = data.to_time_series().expect("identifier from meta");
            assert_eq!(back, empty);
        }
    }
}

#[test]
fn an_empty_class_series_reads_back_as_its_whole_meter_kin() {
    // The meta does not carry the class (the records' names do): without records,
    // a class index reads as the meter's index, a class's daily energy as the
    // meter's daily energy.
    let class = TimeClass::new(Calendar::Distributor, ClassCode::new("hph").unwrap());
    let prm: Prm = "22516914714270".parse().unwrap();
    for (series, kin) in [
        (
            Series::ClassIndex(Direction::Consumption, class),
            Series::EnergyIndex(Direction::Consumption),
        ),
        (
            Series::ClassEnergyDaily(Direction::Production, class),
            Series::ProductionEnergyDaily,
        ),
    ] {
        let empty = TimeSeries::new(Identifier::new(prm, series), vec![]);
        let data = only(decode_bytes(&encode(&empty, MetaForm::Flat)).expect("decodes"));
        let back = data.to_time_series().expect("identifier from meta");
        assert_eq!(back.identifier, Identifier::new(prm, kin));
    }
}

#[test]
fn unknown_meta_parts_are_tolerated() {
    let xml = concat!(
        r#"<quoalise xmlns="urn:quoalise:0"><data><meta>"#,
        r#"<device type="electricity-meter" vendor="x"><identifier authority="enedis" type="prm" value="30001610071843" extra="1"/><model>Linky</model></device>"#,
        r#"<contract kind="base"><option/></contract>"#,
        r#"<measurement name="active-power" direction="production" quantity="power" type="electrical" unit="W" aggregation="mean" sampling-interval="PT10M" precision="1"/>"#,
        r#"</meta><sensml xmlns="urn:ietf:params:xml:ns:senml"/><note>ignored</note></data></quoalise>"#
    );
    let data = only(decode(xml).expect("decodes"));
    assert_eq!(data.meta.step(), Ok(Some(Step::Minutes(10))));
    assert_eq!(
        data.to_time_series()
            .expect("series")
            .identifier
            .to_string(),
        "urn:dev:prm:30001610071843_production/power/active/raw"
    );
}
