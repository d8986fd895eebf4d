//! The Quoalise data model: identifiers, readings, metadata, and the SenML codec.
//!
//! Everything here is independent of Enedis and of XMPP: upstream adapters produce
//! [`TimeSeries`], commands encode them, the peer command line decodes them.

pub mod contract;
pub mod decode;
pub mod encode;
pub mod identifier;
pub mod meta;
pub mod scope;

pub use contract::{Contract, ContractError, Unavailable};
pub use decode::{Data, DecodeError, Record, decode, decode_bytes, decode_element};
pub use encode::{EncodeError, encode, encode_element, encode_fitting, encode_to, encode_view};
pub use identifier::{
    Calendar, ClassCode, ClassError, Direction, Identifier, IdentifierError, Prm, PrmError,
    Reactive, SERIES_NAMES, Series, SeriesKind, TimeClass,
};
pub use meta::{Meta, MetaError, MetaForm};
pub use scope::{Scope, Scopes};

use std::fmt;
use std::str::FromStr;

/// The Quoalise XML namespace.
pub const NS_QUOALISE: &str = "urn:quoalise:0";
/// The SenML XML namespace (RFC 8428 section 7).
pub const NS_SENML: &str = "urn:ietf:params:xml:ns:senml";

/// How long one reading covers.
///
/// Load curves come at the meter's step (Enedis: PT5M, PT10M, PT15M, PT30M, PT60M);
/// daily series cover one Paris calendar day (23, 24 or 25 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// A fixed number of minutes, `PT{n}M`.
    Minutes(u16),
    /// One calendar day in Europe/Paris, `P1D`.
    Day,
}

impl Step {
    pub const PT30M: Step = Step::Minutes(30);

    /// Length in seconds for fixed steps; `None` for a calendar day.
    pub fn seconds(self) -> Option<i64> {
        match self {
            Step::Minutes(m) => Some(i64::from(m) * 60),
            Step::Day => None,
        }
    }

    /// Nominal length in seconds (a day counts 86,400 s).
    pub fn nominal_seconds(self) -> i64 {
        self.seconds().unwrap_or(86_400)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Minutes(m) => write!(f, "PT{m}M"),
            Step::Day => f.write_str("P1D"),
        }
    }
}

/// Why a step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported step {0:?}: expected PT<minutes>M (1 to 1440 minutes), PT<hours>H or P1D")]
pub struct StepError(pub String);

impl FromStr for Step {
    type Err = StepError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StepError(s.chars().take(20).collect());
        if s == "P1D" {
            return Ok(Step::Day);
        }
        let body = s.strip_prefix("PT").ok_or_else(err)?;
        let (digits, factor) = if let Some(d) = body.strip_suffix('M') {
            (d, 1)
        } else if let Some(d) = body.strip_suffix('H') {
            (d, 60)
        } else {
            return Err(err());
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let minutes: u16 = digits
            .parse::<u16>()
            .map_err(|_| err())?
            .checked_mul(factor)
            .ok_or_else(err)?;
        if minutes == 0 || minutes > 1440 {
            return Err(err());
        }
        Ok(Step::Minutes(minutes))
    }
}

/// One value of a series, normalised: stamped at the START of the period it covers,
/// in UTC seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Start of the covered period, UTC seconds.
    pub start: i64,
    /// Length of the covered period.
    pub step: Step,
    /// The value in the series' unit; `None` where Enedis reported no value
    /// (a `null` or a gap). Missing values are never turned into zero.
    pub value: Option<f64>,
}

/// Readings of one identifier, ordered by `start`, without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    pub identifier: Identifier,
    pub readings: Vec<Reading>,
}

impl TimeSeries {
    pub fn new(identifier: Identifier, readings: Vec<Reading>) -> Self {
        TimeSeries {
            identifier,
            readings,
        }
    }

    /// The step announced in metadata: the step of most readings (a meter may change
    /// step inside a period), or the series' natural step when empty.
    pub fn sampling(&self) -> Step {
        self.view().sampling()
    }

    /// The series as a view, for what only reads it.
    pub fn view(&self) -> SeriesView<'_> {
        SeriesView {
            identifier: self.identifier,
            readings: &self.readings,
        }
    }
}

/// Readings of one identifier held elsewhere (a page of a longer series, say):
/// what the encoder reads, without copying them into a [`TimeSeries`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesView<'a> {
    pub identifier: Identifier,
    pub readings: &'a [Reading],
}

impl<'a> SeriesView<'a> {
    pub fn new(identifier: Identifier, readings: &'a [Reading]) -> Self {
        SeriesView {
            identifier,
            readings,
        }
    }

    /// See [`TimeSeries::sampling`].
    pub fn sampling(&self) -> Step {
        // Fast path for the usual case of a single step (the encoder calls this on
        // every payload, a year of half-hours is 17,520 readings).
        if let Some(first) = self.readings.first()
            && self.readings.iter().all(|r| r.step == first.step)
        {
            return first.step;
        }
        let mut counts: Vec<(Step, usize)> = Vec::new();
        for r in self.readings {
            match counts.iter_mut().find(|(s, _)| *s == r.step) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.step, 1)),
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(s, _)| s)
            .unwrap_or(match self.identifier.series.kind() {
                SeriesKind::LoadCurve => Step::PT30M,
                _ => Step::Day,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_print() {
        assert_eq!("PT30M".parse(), Ok(Step::Minutes(30)));
        assert_eq!("PT10M".parse(), Ok(Step::Minutes(10)));
        assert_eq!("PT60M".parse(), Ok(Step::Minutes(60)));
        assert_eq!("PT1H".parse(), Ok(Step::Minutes(60)));
        assert_eq!("P1D".parse(), Ok(Step::Day));
        for bad in [
            "", "PT", "PTM", "PT0M", "PT-5M", "30", "PT1441M", "P2D", "PT99999H",
        ] {
            assert!(bad.parse::<Step>().is_err(), "{bad} accepted");
        }
        assert_eq!(Step::Minutes(60).to_string(), "PT60M");
        assert_eq!(Step::Day.to_string(), "P1D");
    }
}
