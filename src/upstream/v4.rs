//! Metering v4 (retired 2023): `/v4/metering_data/<name>`, dated readings like v5,
//! and OAuth tokens PER CONSENT (authorization_code, then refresh_token), which the
//! shared machinery keeps in the store.

use jiff::civil::Date;

use super::meter_reading::{self, Timing};
use super::normalise::ShapeError;
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};

/// The v4 dialect.
pub struct V4;

/// The resource name of a series in `/v3|v4/metering_data/<name>`.
pub fn resource(series: Series) -> &'static str {
    match series {
        Series::ConsumptionPower => "consumption_load_curve",
        Series::ProductionPower => "production_load_curve",
        Series::ConsumptionEnergyDaily => "daily_consumption",
        Series::ProductionEnergyDaily => "daily_production",
        Series::ConsumptionMaxPower => "consumption_max_power",
    }
}

impl Dialect for V4 {
    fn generation(&self) -> ApiGeneration {
        ApiGeneration::V4
    }

    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall {
        DataCall::usage_point(
            &format!("/v4/metering_data/{}", resource(series)),
            prm,
            from,
            to,
        )
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

/// Read a v4 metering answer for `series` of `prm` over `[from, to[`.
pub fn parse_readings(
    series: Series,
    prm: &Prm,
    from: Date,
    to: Date,
    body: &[u8],
) -> Result<Vec<Reading>, ShapeError> {
    meter_reading::parse_readings(Timing::Date, series, prm, from, to, body)
}
