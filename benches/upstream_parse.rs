//! How long normalising one upstream answer takes: a week of 10-minute load curve
//! (1,008 points, the largest answer a call brings back) in the 2026 format, the same
//! week in the v5 format, and a week of half-hours ranked as v3 sends them.
//!
//! `cargo bench --bench upstream_parse`

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::civil::{Date, date};
use quoalise_agent::quoalise::{Prm, Series};
use quoalise_agent::time::{PARIS, day_start};
use quoalise_agent::upstream::v1::{V3, V5};
use quoalise_agent::upstream::{Dialect, api2026};
use std::hint::black_box;

const PRM: &str = "30000000000010";

fn ends(from: Date, to: Date, minutes: i64) -> Vec<String> {
    let (start, end) = (day_start(from).unwrap(), day_start(to).unwrap());
    (1..)
        .map(|i| start + i * minutes * 60)
        .take_while(|t| *t <= end)
        .map(|t| {
            PARIS
                .to_datetime(Timestamp::from_second(t).unwrap())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let prm: Prm = PRM.parse().unwrap();
    // A week that holds the autumn change, the hardest case.
    let (from, to) = (date(2026, 10, 20), date(2026, 10, 27));
    let points = ends(from, to, 10);
    let body_2026 = format!(
        r#"{{"idPrm":"{PRM}","grandeur":[{{"grandeurMetier":"CONS","grandeurPhysique":"PA","unite":"W","points":[{}]}}]}}"#,
        points
            .iter()
            .enumerate()
            .map(|(i, d)| format!(r#"{{"v":"{}","d":"{d}","p":"PT10M","n":"B"}}"#, 500 + i))
            .collect::<Vec<_>>()
            .join(",")
    );
    let body_v5 = format!(
        r#"{{"meter_reading":{{"usage_point_id":"{PRM}","start":"{from}","end":"{to}","reading_type":{{"unit":"W"}},"interval_reading":[{}]}}}}"#,
        points
            .iter()
            .enumerate()
            .map(|(i, d)| format!(
                r#"{{"value":"{}","date":"{d}","interval_length":"PT10M","measure_type":"B"}}"#,
                500 + i
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let half_hours = ends(from, to, 30).len();
    let body_v3 = format!(
        r#"{{"usage_point":[{{"meter_reading":{{"usage_point_id":"{PRM}","start":"{from}","end":"{to}","reading_type":{{"interval_length":"1800","unit":"W"}},"interval_reading":[{}]}}}}]}}"#,
        (1..=half_hours)
            .map(|n| format!(r#"{{"rank":"{n}","value":"{}"}}"#, 500 + n))
            .collect::<Vec<_>>()
            .join(",")
    );
    let series = Series::ConsumptionPower;
    assert_eq!(
        api2026::parse_readings(series, &prm, from, to, body_2026.as_bytes())
            .unwrap()
            .len(),
        points.len()
    );
    c.bench_function("2026 load curve, 7 days at PT10M", |b| {
        b.iter(|| api2026::parse_readings(series, &prm, from, to, black_box(body_2026.as_bytes())))
    });
    c.bench_function("v5 load curve, 7 days at PT10M", |b| {
        b.iter(|| V5.parse(series, &prm, from, to, black_box(body_v5.as_bytes())))
    });
    c.bench_function("v3 ranked load curve, 7 days at PT30M", |b| {
        b.iter(|| V3.parse(series, &prm, from, to, black_box(body_v3.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
