//! Metering v3, the seed's (retired 2023): `/v3/metering_data/<name>`, readings
//! placed by `rank` (rank 1 = 00:00–00:30 of the start day for a 30-minute meter,
//! `reading_type.interval_length` in seconds), per-consent tokens as in v4.

use jiff::civil::Date;

use super::meter_reading::{self, Timing};
use super::normalise::ShapeError;
use super::v4::resource;
use super::{DataCall, Dialect};
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};

/// The v3 dialect.
pub struct V3;

impl Dialect for V3 {
    fn generation(&self) -> ApiGeneration {
        ApiGeneration::V3
    }

    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall {
        DataCall::usage_point(
            &format!("/v3/metering_data/{}", resource(series)),
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

/// Read a v3 metering answer for `series` of `prm` over `[from, to[`.
pub fn parse_readings(
    series: Series,
    prm: &Prm,
    from: Date,
    to: Date,
    body: &[u8],
) -> Result<Vec<Reading>, ShapeError> {
    meter_reading::parse_readings(Timing::Rank, series, prm, from, to, body)
}
