//! Codec throughput: `cargo bench --bench codec` (release). Reports points per second
//! (`Throughput::Elements`) for encoding a week and a year of half-hours and three
//! years of daily values, decoding the year, and the encode→`minidom::Element` path
//! the XMPP layer uses.
//!
//! Values are the shape Linky data has: whole watts / watt-hours, a few missing. The
//! `fractional` case shows the cost of non-integral values (float formatting).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quoalise_agent::quoalise::{
    Identifier, MetaForm, Reading, Series, Step, TimeSeries, decode_bytes, encode, encode_element,
};

/// 2020-03-01T00:00:00+01:00.
const START: i64 = 1_583_017_200;

fn series(series: Series, points: usize, fractional: bool) -> TimeSeries {
    let (step, seconds) = match series {
        Series::ConsumptionPower | Series::ProductionPower => (Step::PT30M, 1800),
        _ => (Step::Day, 86_400),
    };
    let readings = (0..points)
        .map(|i| Reading {
            start: START + i as i64 * seconds,
            step,
            value: if i % 97 == 13 {
                None
            } else if fractional {
                Some((i * 7919 % 9000) as f64 / 8.0 + 0.1)
            } else {
                Some((i * 7919 % 9000) as f64)
            },
        })
        .collect();
    TimeSeries::new(
        Identifier::new("30001610071843".parse().expect("PRM"), series),
        readings,
    )
}

fn codec(c: &mut Criterion) {
    let week = series(Series::ConsumptionPower, 336, false);
    let year = series(Series::ConsumptionPower, 17_520, false);
    let year_fractional = series(Series::ConsumptionPower, 17_520, true);
    let daily = series(Series::ConsumptionEnergyDaily, 1_096, false);

    let mut group = c.benchmark_group("encode");
    for (name, s) in [
        ("load_curve_336", &week),
        ("load_curve_17520", &year),
        ("load_curve_17520_fractional", &year_fractional),
        ("daily_1096", &daily),
    ] {
        group.throughput(Throughput::Elements(s.readings.len() as u64));
        group.bench_function(name, |b| b.iter(|| encode(black_box(s), MetaForm::Flat)));
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    let bytes = encode(&year, MetaForm::Flat);
    group.throughput(Throughput::Elements(year.readings.len() as u64));
    group.bench_function("load_curve_17520", |b| {
        b.iter(|| decode_bytes(black_box(&bytes)).expect("decodes"))
    });
    group.bench_function("load_curve_17520_to_time_series", |b| {
        b.iter(|| {
            decode_bytes(black_box(&bytes)).expect("decodes")[0]
                .to_time_series()
                .expect("converts")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("encode_element");
    group.throughput(Throughput::Elements(year.readings.len() as u64));
    group.bench_function("load_curve_17520", |b| {
        b.iter(|| encode_element(black_box(&year), MetaForm::Flat).expect("parses"))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
