//! Quoalise identifiers: `urn:dev:prm:<14-digit PRM>_<series>` (device URNs, RFC 9039).
//!
//! The PRM (point de référence mesure, also "usage point" or PDL) is the 14-digit
//! number Enedis gives every delivery point. The series names which quantity of that
//! meter is meant; the five served from Data Connect are [`Series::ALL`].
//!
//! The first Data Connect proxy named its records differently, and the
//! applications written for it read those names: `urn:dev:prm:<PRM>_consumption_load`
//! (`_production_load`) for load curves, `urn:dev:prm:<PRM>_daily_consumption`
//! (`_daily_production`) for daily energy ([`Identifier::legacy_name`]). They are
//! only ever record names of the legacy commands' answers, never identifiers a peer
//! asks for.

use std::fmt;
use std::str::FromStr;

/// A PRM: exactly 14 ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prm([u8; 14]);

/// Why a PRM was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrmError {
    #[error("a PRM has 14 digits, this one has {0} characters")]
    Length(usize),
    #[error("a PRM has only digits, found {found:?} at position {position}")]
    NotDigit { position: usize, found: char },
}

impl Prm {
    /// The PRM as its 14-digit string.
    pub fn as_str(&self) -> &str {
        // The constructor only accepts ASCII digits, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("00000000000000")
    }
}

impl FromStr for Prm {
    type Err = PrmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let length = s.chars().count();
        if length != 14 {
            return Err(PrmError::Length(length));
        }
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(PrmError::NotDigit { position, found });
        }
        let bytes: [u8; 14] = s
            .as_bytes()
            .try_into()
            .map_err(|_| PrmError::Length(length))?;
        Ok(Prm(bytes))
    }
}

impl fmt::Display for Prm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Prm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prm({})", self.as_str())
    }
}

impl serde::Serialize for Prm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Prm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which way the energy flows, seen from the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Consumption,
    Production,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Consumption => "consumption",
            Direction::Production => "production",
        }
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "consumption" => Ok(Direction::Consumption),
            "production" => Ok(Direction::Production),
            other => Err(format!(
                "direction must be \"consumption\" or \"production\", not {other:?}"
            )),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five series served from Data Connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    /// Mean active power drawn, W, at the meter's own step (PT10M…PT60M).
    ConsumptionPower,
    /// Mean active power injected, W, at the meter's own step.
    ProductionPower,
    /// Energy drawn per day, Wh.
    ConsumptionEnergyDaily,
    /// Energy injected per day, Wh.
    ProductionEnergyDaily,
    /// Daily maximum apparent power drawn, VA.
    ConsumptionMaxPower,
}

/// What kind of values a series holds; drives upstream limits and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesKind {
    /// Load curve: sub-daily mean power, stamped at interval end upstream.
    LoadCurve,
    /// One energy value per day.
    DailyEnergy,
    /// One maximum power value per day, with the instant of the peak.
    DailyMaxPower,
}

impl Series {
    pub const ALL: [Series; 5] = [
        Series::ConsumptionPower,
        Series::ProductionPower,
        Series::ConsumptionEnergyDaily,
        Series::ProductionEnergyDaily,
        Series::ConsumptionMaxPower,
    ];

    /// The series name as written in identifiers.
    pub fn as_str(self) -> &'static str {
        match self {
            Series::ConsumptionPower => "consumption/power/active/raw",
            Series::ProductionPower => "production/power/active/raw",
            Series::ConsumptionEnergyDaily => "consumption/energy/active/daily",
            Series::ProductionEnergyDaily => "production/energy/active/daily",
            Series::ConsumptionMaxPower => "consumption/power/apparent/max",
        }
    }

    pub fn direction(self) -> Direction {
        match self {
            Series::ConsumptionPower
            | Series::ConsumptionEnergyDaily
            | Series::ConsumptionMaxPower => Direction::Consumption,
            Series::ProductionPower | Series::ProductionEnergyDaily => Direction::Production,
        }
    }

    pub fn kind(self) -> SeriesKind {
        match self {
            Series::ConsumptionPower | Series::ProductionPower => SeriesKind::LoadCurve,
            Series::ConsumptionEnergyDaily | Series::ProductionEnergyDaily => {
                SeriesKind::DailyEnergy
            }
            Series::ConsumptionMaxPower => SeriesKind::DailyMaxPower,
        }
    }

    /// The step of every reading when the series fixes it (`P1D` for daily
    /// series); `None` for load curves, at the meter's own step.
    pub fn fixed_step(self) -> Option<super::Step> {
        match self.kind() {
            SeriesKind::LoadCurve => None,
            SeriesKind::DailyEnergy | SeriesKind::DailyMaxPower => Some(super::Step::Day),
        }
    }

    /// What its values are, in words, for messages: "30-minute load curve".
    pub fn describe(self, step: super::Step) -> String {
        let what = match self.kind() {
            SeriesKind::LoadCurve => "load curve",
            SeriesKind::DailyEnergy => "daily energy",
            SeriesKind::DailyMaxPower => "daily maximum power",
        };
        match step {
            super::Step::Minutes(m) if self.kind() == SeriesKind::LoadCurve => {
                format!("{m}-minute {what}")
            }
            _ => what.to_owned(),
        }
    }

    /// SenML unit of the values.
    pub fn unit(self) -> &'static str {
        match self.kind() {
            SeriesKind::LoadCurve => "W",
            SeriesKind::DailyEnergy => "Wh",
            SeriesKind::DailyMaxPower => "VA",
        }
    }

    /// The load-curve series of a direction.
    pub fn load_curve(direction: Direction) -> Series {
        match direction {
            Direction::Consumption => Series::ConsumptionPower,
            Direction::Production => Series::ProductionPower,
        }
    }

    /// The daily-energy series of a direction.
    pub fn daily_energy(direction: Direction) -> Series {
        match direction {
            Direction::Consumption => Series::ConsumptionEnergyDaily,
            Direction::Production => Series::ProductionEnergyDaily,
        }
    }

    /// What the first Data Connect proxy wrote after `urn:dev:prm:<PRM>_` in its
    /// record names (`consumption_load`, `daily_production`…); `None` for the
    /// daily maximum power, which it never served.
    pub fn legacy_suffix(self) -> Option<&'static str> {
        match self {
            Series::ConsumptionPower => Some("consumption_load"),
            Series::ProductionPower => Some("production_load"),
            Series::ConsumptionEnergyDaily => Some("daily_consumption"),
            Series::ProductionEnergyDaily => Some("daily_production"),
            Series::ConsumptionMaxPower => None,
        }
    }
}

impl FromStr for Series {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Series::ALL
            .into_iter()
            .find(|series| series.as_str() == s)
            .ok_or_else(|| IdentifierError::UnknownSeries(s.to_owned()))
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `urn:dev:prm:<PRM>_<series>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    pub prm: Prm,
    pub series: Series,
}

/// Why an identifier was refused; the message says which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier must start with \"urn:dev:prm:\", got {0:?}")]
    Prefix(String),
    #[error("identifier must be \"urn:dev:prm:<14-digit PRM>_<series>\": no \"_\" after the PRM")]
    MissingSeparator,
    #[error("invalid PRM {prm:?} in identifier: {source}")]
    Prm { prm: String, source: PrmError },
    #[error(
        "unknown series {0:?}; known series: consumption/power/active/raw, production/power/active/raw, consumption/energy/active/daily, production/energy/active/daily, consumption/power/apparent/max"
    )]
    UnknownSeries(String),
}

pub const URN_PREFIX: &str = "urn:dev:prm:";

impl Identifier {
    pub fn new(prm: Prm, series: Series) -> Self {
        Identifier { prm, series }
    }

    /// The name the first Data Connect proxy gave the records of this
    /// identifier: `urn:dev:prm:<PRM>_consumption_load`,
    /// `urn:dev:prm:<PRM>_daily_production`…; the identifier itself for the
    /// daily maximum power, which that proxy never served.
    pub fn legacy_name(&self) -> String {
        match self.series.legacy_suffix() {
            Some(suffix) => format!("{URN_PREFIX}{}_{suffix}", self.prm),
            None => self.to_string(),
        }
    }

    /// Reads a SenML record name: an identifier (`urn:dev:prm:<PRM>_<series>`)
    /// or a name the first Data Connect proxy wrote ([`Identifier::legacy_name`]).
    /// When it is neither, the error is the identifier's.
    pub fn from_record_name(name: &str) -> Result<Identifier, IdentifierError> {
        let (prm, series) = split(name)?;
        let series = match series.parse::<Series>() {
            Ok(series) => series,
            Err(e) => Series::ALL
                .into_iter()
                .find(|s| s.legacy_suffix() == Some(series))
                .ok_or(e)?,
        };
        Ok(Identifier { prm, series })
    }
}

/// `urn:dev:prm:<PRM>_<rest>` into the PRM and `rest`.
fn split(s: &str) -> Result<(Prm, &str), IdentifierError> {
    let rest = match s.get(..URN_PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(URN_PREFIX) => &s[URN_PREFIX.len()..],
        _ => return Err(IdentifierError::Prefix(s.chars().take(40).collect())),
    };
    let (prm, series) = rest
        .split_once('_')
        .ok_or(IdentifierError::MissingSeparator)?;
    let prm = prm.parse().map_err(|source| IdentifierError::Prm {
        prm: prm.chars().take(40).collect(),
        source,
    })?;
    Ok((prm, series))
}

impl FromStr for Identifier {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prm, series) = split(s)?;
        let series = series.parse()?;
        Ok(Identifier { prm, series })
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URN_PREFIX}{}_{}", self.prm, self.series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_series() {
        for series in Series::ALL {
            let text = format!("urn:dev:prm:30001610071843_{series}");
            let id: Identifier = text.parse().expect("valid identifier");
            assert_eq!(id.prm.as_str(), "30001610071843");
            assert_eq!(id.series, series);
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn errors_name_the_wrong_part() {
        let err = "urn:dev:mac:30001610071843_consumption/power/active/raw"
            .parse::<Identifier>()
            .unwrap_err();
        assert!(matches!(err, IdentifierError::Prefix(_)), "{err}");

        let err = "urn:dev:prm:3000161007184_consumption/power/active/raw"
            .parse::<Identifier>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid PRM \"3000161007184\" in identifier: a PRM has 14 digits, this one has 13 characters"
        );

        let err = "urn:dev:prm:3000161007184x_consumption/power/active/raw"
            .parse::<Identifier>()
            .unwrap_err();
        assert!(err.to_string().contains("'x' at position 13"), "{err}");

        let err = "urn:dev:prm:30001610071843_consumption/power/reactive/raw"
            .parse::<Identifier>()
            .unwrap_err();
        assert!(
            matches!(err, IdentifierError::UnknownSeries(ref s) if s == "consumption/power/reactive/raw")
        );

        let err = "urn:dev:prm:30001610071843"
            .parse::<Identifier>()
            .unwrap_err();
        assert_eq!(err, IdentifierError::MissingSeparator);
    }

    #[test]
    fn legacy_names_are_the_first_proxys() {
        let prm: Prm = "30001610071843".parse().unwrap();
        let cases = [
            (
                Series::ConsumptionPower,
                "urn:dev:prm:30001610071843_consumption_load",
            ),
            (
                Series::ProductionPower,
                "urn:dev:prm:30001610071843_production_load",
            ),
            (
                Series::ConsumptionEnergyDaily,
                "urn:dev:prm:30001610071843_daily_consumption",
            ),
            (
                Series::ProductionEnergyDaily,
                "urn:dev:prm:30001610071843_daily_production",
            ),
            // Never served by the first proxy: the identifier itself.
            (
                Series::ConsumptionMaxPower,
                "urn:dev:prm:30001610071843_consumption/power/apparent/max",
            ),
        ];
        for (series, name) in cases {
            let id = Identifier::new(prm, series);
            assert_eq!(id.legacy_name(), name);
            assert_eq!(Identifier::from_record_name(name), Ok(id));
            // Record names read both spellings.
            assert_eq!(Identifier::from_record_name(&id.to_string()), Ok(id));
        }
        // A legacy name is not an identifier a peer may ask for.
        assert_eq!(
            "urn:dev:prm:30001610071843_consumption_load".parse::<Identifier>(),
            Err(IdentifierError::UnknownSeries("consumption_load".into()))
        );
        // Neither spelling: the identifier's error.
        assert_eq!(
            Identifier::from_record_name("urn:dev:prm:30001610071843_daily_max"),
            Err(IdentifierError::UnknownSeries("daily_max".into()))
        );
        assert!(matches!(
            Identifier::from_record_name("urn:dev:prm:3000161007184_daily_consumption"),
            Err(IdentifierError::Prm { .. })
        ));
    }

    #[test]
    fn prm_rejects_non_ascii_and_lengths() {
        assert!("".parse::<Prm>().is_err());
        assert!("123456789012345".parse::<Prm>().is_err());
        assert!("1234567890123٤".parse::<Prm>().is_err());
        assert_eq!(
            "22516914714270".parse::<Prm>().map(|p| p.to_string()),
            Ok("22516914714270".into())
        );
    }
}
