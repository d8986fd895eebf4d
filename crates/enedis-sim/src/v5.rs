//! v5 metering (`metering_data_*/v5/…`), whose shape v4 shares: `meter_reading`
//! with `interval_reading[]`, every value a string, as
//! `reference/enedis-2026/fixtures/v5_consumption_load_curve.json` and the v5 openapi.

use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::model::Direction;

use super::errors::{Gen, Refusal};
use super::metering::{self, Measure, V1Request};
use super::state::{Holder, Sim};

#[derive(Serialize)]
struct Body {
    meter_reading: MeterReading,
}

#[derive(Serialize)]
struct MeterReading {
    usage_point_id: String,
    start: String,
    end: String,
    quality: &'static str,
    reading_type: ReadingType,
    interval_reading: Vec<IntervalReading>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ReadingType {
    /// Field order as in the captured v5 load curve.
    Curve {
        unit: &'static str,
        measurement_kind: &'static str,
        aggregate: &'static str,
    },
    /// Field order as in the v5 openapi.
    Daily {
        measurement_kind: &'static str,
        measuring_period: &'static str,
        unit: &'static str,
        aggregate: &'static str,
    },
}

#[derive(Serialize)]
struct IntervalReading {
    value: String,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_length: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measure_type: Option<&'static str>,
}

/// Answer a v4 or v5 metering call.
pub fn answer(
    sim: &Sim,
    holder: Holder,
    generation: Gen,
    query: Option<&str>,
    measure: Measure,
    direction: Direction,
) -> Response {
    let body = metering::v1_request(sim, holder, generation, query, measure, direction)
        .and_then(|request| build(sim, request, measure, direction));
    match body {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.response(generation),
    }
}

fn build(
    sim: &Sim,
    V1Request { meter, start, end }: V1Request,
    measure: Measure,
    direction: Direction,
) -> Result<Body, Refusal> {
    let (reading_type, interval_reading) = match measure {
        Measure::LoadCurve => {
            let step = format!("PT{}M", meter.step_minutes);
            let points = metering::load_curve(&meter, direction, start, end, false)?;
            (
                ReadingType::Curve {
                    unit: "W",
                    measurement_kind: "power",
                    aggregate: "average",
                },
                points
                    .into_iter()
                    .filter_map(|p| {
                        Some(IntervalReading {
                            value: p.value?.to_string(),
                            date: p.end_local,
                            interval_length: Some(step.clone()),
                            measure_type: Some("B"),
                        })
                    })
                    .collect(),
            )
        }
        Measure::MaxPower => {
            let points = metering::daily(sim, &meter, measure, direction, start, end, false)?;
            (
                ReadingType::Daily {
                    measurement_kind: "power",
                    measuring_period: "P1D",
                    unit: "VA",
                    aggregate: "maximum",
                },
                points
                    .into_iter()
                    .filter_map(|p| {
                        Some(IntervalReading {
                            value: p.value?.to_string(),
                            date: p.at_local?,
                            interval_length: None,
                            measure_type: None,
                        })
                    })
                    .collect(),
            )
        }
        Measure::Daily | Measure::Index => {
            let points =
                metering::daily(sim, &meter, Measure::Daily, direction, start, end, false)?;
            (
                ReadingType::Daily {
                    measurement_kind: "energy",
                    measuring_period: "P1D",
                    unit: "Wh",
                    aggregate: "sum",
                },
                points
                    .into_iter()
                    .filter_map(|p| {
                        Some(IntervalReading {
                            value: p.value?.to_string(),
                            date: p.date.to_string(),
                            interval_length: None,
                            measure_type: None,
                        })
                    })
                    .collect(),
            )
        }
    };
    Ok(Body {
        meter_reading: MeterReading {
            usage_point_id: meter.prm.to_string(),
            start: start.to_string(),
            end: end.to_string(),
            quality: "BRUT",
            reading_type,
            interval_reading,
        },
    })
}

/// The five v5 metering paths and what each measures.
const PATHS: [(&str, Measure, Direction); 5] = [
    (
        "/metering_data_clc/v5/consumption_load_curve",
        Measure::LoadCurve,
        Direction::Consumption,
    ),
    (
        "/metering_data_plc/v5/production_load_curve",
        Measure::LoadCurve,
        Direction::Production,
    ),
    (
        "/metering_data_dc/v5/daily_consumption",
        Measure::Daily,
        Direction::Consumption,
    ),
    (
        "/metering_data_dp/v5/daily_production",
        Measure::Daily,
        Direction::Production,
    ),
    (
        "/metering_data_dcmp/v5/daily_consumption_max_power",
        Measure::MaxPower,
        Direction::Consumption,
    ),
];

/// `GET` on each v5 metering path.
pub fn routes() -> Router<Sim> {
    PATHS
        .into_iter()
        .fold(Router::new(), |router, (path, measure, direction)| {
            router.route(
                path,
                get(
                    move |State(sim): State<Sim>,
                          Extension(holder): Extension<Holder>,
                          RawQuery(query): RawQuery| async move {
                        answer(&sim, holder, Gen::V5, query.as_deref(), measure, direction)
                    },
                ),
            )
        })
}
