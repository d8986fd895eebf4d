//! Metering v5 (2023 to October 2026): one application token, `metering_data_*`
//! paths, `meter_reading.interval_reading[]` dated readings. Consent through the v1
//! page, whose redirect carries the PRMs in `usage_point_id`.

use jiff::civil::Date;

use super::meter_reading::{self, Timing};
use super::normalise::ShapeError;
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};

/// The v5 dialect.
pub struct V5;

/// The path of a series' data.
pub fn path(series: Series) -> &'static str {
    match series {
        Series::ConsumptionPower => "/metering_data_clc/v5/consumption_load_curve",
        Series::ProductionPower => "/metering_data_plc/v5/production_load_curve",
        Series::ConsumptionEnergyDaily => "/metering_data_dc/v5/daily_consumption",
        Series::ProductionEnergyDaily => "/metering_data_dp/v5/daily_production",
        Series::ConsumptionMaxPower => "/metering_data_dcmp/v5/daily_consumption_max_power",
    }
}

impl Dialect for V5 {
    fn generation(&self) -> ApiGeneration {
        ApiGeneration::V5
    }

    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall {
        DataCall::usage_point(path(series), prm, from, to)
    }

    fn parse(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<Reading>, ShapeError> {
        parse_readings(series, prm, from, to, body)
    }
}

/// Read a v5 metering answer for `series` of `prm` over `[from, to[`.
pub fn parse_readings(
    series: Series,
    prm: &Prm,
    from: Date,
    to: Date,
    body: &[u8],
) -> Result<Vec<Reading>, ShapeError> {
    meter_reading::parse_readings(Timing::Date, series, prm, from, to, body)
}
