//! v3 and v4 metering (`/v3/metering_data/…`, `/v4/metering_data/…`), read with a
//! per-consent token.
//!
//! v4 answers in the v5 shape. v3 answers in the seed's shape:
//! `{"usage_point":[{"meter_reading":{…,"reading_type":{…,"interval_length":"1800",…},
//! "interval_reading":[{"rank":"1","value":"…"}]}}]}`, where rank 1 is the first
//! interval after Paris midnight of the start day and ranks count real intervals
//! (46 or 50 half-hours on DST days), continuing across days.

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::model::Direction;

use super::errors::{Gen, Refusal, gateway_not_found};
use super::metering::{self, Measure, V1Request};
use super::state::{Holder, Sim};
use super::v5;

fn resource(name: &str) -> Option<(Measure, Direction)> {
    Some(match name {
        "consumption_load_curve" => (Measure::LoadCurve, Direction::Consumption),
        "production_load_curve" => (Measure::LoadCurve, Direction::Production),
        "daily_consumption" => (Measure::Daily, Direction::Consumption),
        "daily_production" => (Measure::Daily, Direction::Production),
        "consumption_max_power" => (Measure::MaxPower, Direction::Consumption),
        _ => return None,
    })
}

pub async fn v4(
    State(sim): State<Sim>,
    Extension(holder): Extension<Holder>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((measure, direction)) = resource(&name) else {
        return gateway_not_found();
    };
    v5::answer(&sim, holder, Gen::V4, query.as_deref(), measure, direction)
}

pub async fn v3(
    State(sim): State<Sim>,
    Extension(holder): Extension<Holder>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((measure, direction)) = resource(&name) else {
        return gateway_not_found();
    };
    match build_v3(&sim, holder, query.as_deref(), measure, direction) {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.response(Gen::V3),
    }
}

#[derive(Serialize)]
struct V3Body {
    usage_point: Vec<UsagePoint>,
}

#[derive(Serialize)]
struct UsagePoint {
    meter_reading: MeterReading,
}

#[derive(Serialize)]
struct MeterReading {
    usage_point_id: String,
    start: String,
    end: String,
    reading_type: ReadingType,
    interval_reading: Vec<Reading>,
}

#[derive(Serialize)]
struct ReadingType {
    measurement_kind: &'static str,
    interval_length: String,
    unit: &'static str,
    aggregate: &'static str,
}

#[derive(Serialize)]
struct Reading {
    rank: String,
    value: String,
    /// Max power only: Paris local time of the peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
}

fn build_v3(
    sim: &Sim,
    holder: Holder,
    query: Option<&str>,
    measure: Measure,
    direction: Direction,
) -> Result<V3Body, Refusal> {
    let V1Request { meter, start, end } =
        metering::v1_request(sim, holder, Gen::V3, query, measure, direction)?;
    let (reading_type, interval_reading) = match measure {
        Measure::LoadCurve => (
            ReadingType {
                measurement_kind: "power",
                interval_length: (u32::from(meter.step_minutes) * 60).to_string(),
                unit: "W",
                aggregate: "average",
            },
            metering::load_curve(&meter, direction, start, end, false)?
                .into_iter()
                .filter_map(|p| {
                    Some(Reading {
                        rank: p.rank.to_string(),
                        value: p.value?.to_string(),
                        date: None,
                    })
                })
                .collect(),
        ),
        _ => {
            let max = measure == Measure::MaxPower;
            (
                ReadingType {
                    measurement_kind: if max { "power" } else { "energy" },
                    interval_length: "86400".to_owned(),
                    unit: if max { "VA" } else { "Wh" },
                    aggregate: if max { "maximum" } else { "sum" },
                },
                metering::daily(sim, &meter, measure, direction, start, end, false)?
                    .into_iter()
                    .filter_map(|p| {
                        Some(Reading {
                            rank: p.rank.to_string(),
                            value: p.value?.to_string(),
                            date: p.at_local,
                        })
                    })
                    .collect(),
            )
        }
    };
    Ok(V3Body {
        usage_point: vec![UsagePoint {
            meter_reading: MeterReading {
                usage_point_id: meter.prm.to_string(),
                start: start.to_string(),
                end: end.to_string(),
                reading_type,
                interval_reading,
            },
        }],
    })
}
