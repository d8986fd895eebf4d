//! Quoalise identifiers: `urn:dev:prm:<14-digit PRM>_<series>` (device URNs, RFC 9039).
//!
//! The PRM (point de référence mesure, also "usage point" or PDL) is the 14-digit
//! number Enedis gives every delivery point. The series names which quantity of that
//! meter is meant: the whole meter's ([`Series::WHOLE_METER`]) or one calendar
//! class's (`…/energy/active/index/distributor/hph`, [`Series::ClassIndex`]).
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

/// Which calendar a class belongs to: the distributor's (Enedis, the grid tariff
/// TURPE: `BASE`, or `HPH`/`HCH`/`HPB`/`HCB`…) or the supplier's (the offer the
/// consumer pays: `HP`/`HC`, Tempo's six classes…). Written `distributor` and
/// `provider` in series names, as the Quoalise SGE proxy writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Calendar {
    Distributor,
    Provider,
}

impl Calendar {
    pub fn as_str(self) -> &'static str {
        match self {
            Calendar::Distributor => "distributor",
            Calendar::Provider => "provider",
        }
    }
}

impl FromStr for Calendar {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "distributor" => Ok(Calendar::Distributor),
            "provider" => Ok(Calendar::Provider),
            other => Err(format!(
                "the calendar is \"distributor\" or \"provider\", not {:?}",
                shorten(other)
            )),
        }
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The code of a calendar class (a "classe temporelle": `hph`, `hc`, `base`,
/// `buhp`…), as series names write it: 1 to [`ClassCode::MAX`] lower-case ASCII
/// letters or digits, held inline so that [`Series`] stays `Copy`. Enedis writes
/// the same codes in upper case (`HPH`); the Quoalise SGE proxy lowers them, and so
/// does [`ClassCode::from_enedis`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassCode([u8; ClassCode::MAX]);

/// Why a class code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    #[error("the class code is empty")]
    Empty,
    #[error("a class code has at most 8 characters, {code:?} has {length}")]
    TooLong { code: String, length: usize },
    #[error(
        "class codes are written in lower case, as the Quoalise SGE proxy writes them: {lower:?}, not {code:?}"
    )]
    UpperCase { code: String, lower: String },
    #[error(
        "a class code has only ASCII letters and digits, found {found:?} at position {position} of {code:?}"
    )]
    BadCharacter {
        code: String,
        position: usize,
        found: char,
    },
}

impl ClassCode {
    /// The longest code (Enedis' are 2 to 4 characters: `HP`, `BASE`, `BUHP`).
    pub const MAX: usize = 8;

    /// A code as series names write it: lower case only.
    pub fn new(code: &str) -> Result<ClassCode, ClassError> {
        ClassCode::read(code, false)
    }

    /// A code as Enedis writes it (`HPH`, `BUHP`; any case), lowered.
    pub fn from_enedis(code: &str) -> Result<ClassCode, ClassError> {
        ClassCode::read(code.trim(), true)
    }

    fn read(code: &str, any_case: bool) -> Result<ClassCode, ClassError> {
        if code.is_empty() {
            return Err(ClassError::Empty);
        }
        if let Some((position, found)) = code
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
        {
            return Err(ClassError::BadCharacter {
                code: shorten(code),
                position,
                found,
            });
        }
        // Only ASCII from here: one byte per character.
        if code.len() > ClassCode::MAX {
            return Err(ClassError::TooLong {
                code: shorten(code),
                length: code.len(),
            });
        }
        if !any_case && code.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ClassError::UpperCase {
                code: code.to_owned(),
                lower: code.to_ascii_lowercase(),
            });
        }
        let mut bytes = [0u8; ClassCode::MAX];
        for (slot, b) in bytes.iter_mut().zip(code.bytes()) {
            *slot = b.to_ascii_lowercase();
        }
        Ok(ClassCode(bytes))
    }

    /// The code, lower case.
    pub fn as_str(&self) -> &str {
        let length = self
            .0
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(ClassCode::MAX);
        // The constructor only stores ASCII letters and digits.
        std::str::from_utf8(&self.0[..length]).unwrap_or("?")
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClassCode({})", self.as_str())
    }
}

/// One class of one calendar: `distributor/hph`, `provider/hc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeClass {
    pub calendar: Calendar,
    pub code: ClassCode,
}

impl TimeClass {
    pub fn new(calendar: Calendar, code: ClassCode) -> TimeClass {
        TimeClass { calendar, code }
    }
}

impl fmt::Display for TimeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.calendar, self.code)
    }
}

/// The series served from Data Connect.
///
/// The first five are the whole meter's ([`Series::ALL`]); the index series and
/// the energy per class need the 2026 API (`index_consommation`,
/// `index_production`). Classes are dynamic ([`TimeClass`]), held inline: a
/// `Series` is a small `Copy` value.
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
    /// The meter's active-energy counter, Wh, stamped at the instant it was read
    /// (a Linky: the Paris midnight starting each day): Enedis' totalisator
    /// (`cadranTotalisateur`), or the sum of the distributor classes when it
    /// gives none. `<direction>/energy/active/index`.
    ///
    /// scope: index
    EnergyIndex(Direction),
    /// The counter of one calendar class, Wh, stamped like [`Series::EnergyIndex`].
    /// `<direction>/energy/active/index/<calendar>/<class>`.
    ///
    /// scope: index
    ClassIndex(Direction, TimeClass),
    /// The energy of one calendar class per Paris day, Wh, derived from the class's
    /// counters at the two midnights around the day (missing when either is).
    /// `<direction>/energy/active/daily/<calendar>/<class>`.
    ///
    /// scope: index
    ClassEnergyDaily(Direction, TimeClass),
    /// Mean active power, W, as corrected by Enedis (gaps filled, faulty values
    /// replaced: SGE's `mesuresCorrigees`, "BEST"), at the meter's own step:
    /// Enedis SGE only, for C1–C4 and P1–P3 meters.
    /// `<direction>/power/active/corrected`.
    ///
    /// scope: load_curve
    CorrectedPower(Direction),
    /// Mean reactive power, VAr, inductive or capacitive, at the meter's own
    /// step: Enedis SGE only (`PRI`, `PRC`), for C1–C4 meters.
    /// `consumption/power/{inductive|capacitive}/raw`.
    ///
    /// scope: load_curve
    ReactivePower(Reactive),
}

/// Which reactive power a [`Series::ReactivePower`] is: Enedis' `PRI`
/// (inductive) or `PRC` (capacitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reactive {
    Inductive,
    Capacitive,
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
    /// A counter (index), stamped at the instant it was read, one a day.
    Index,
}

/// The names of every series, classes as patterns: for forms and messages.
pub const SERIES_NAMES: [&str; 15] = [
    "consumption/power/active/raw",
    "production/power/active/raw",
    "consumption/power/active/corrected",
    "production/power/active/corrected",
    "consumption/power/inductive/raw",
    "consumption/power/capacitive/raw",
    "consumption/energy/active/daily",
    "production/energy/active/daily",
    "consumption/power/apparent/max",
    "consumption/energy/active/index",
    "production/energy/active/index",
    "consumption/energy/active/index/{distributor|provider}/<class>",
    "production/energy/active/index/{distributor|provider}/<class>",
    "consumption/energy/active/daily/{distributor|provider}/<class>",
    "production/energy/active/daily/{distributor|provider}/<class>",
];

impl Series {
    /// The whole meter's series that every API generation serves.
    pub const ALL: [Series; 5] = [
        Series::ConsumptionPower,
        Series::ProductionPower,
        Series::ConsumptionEnergyDaily,
        Series::ProductionEnergyDaily,
        Series::ConsumptionMaxPower,
    ];

    /// The series without a class, every one (the five of [`Series::ALL`], SGE's
    /// corrected and reactive curves, and the two summed indexes).
    pub const WHOLE_METER: [Series; 11] = [
        Series::ConsumptionPower,
        Series::ProductionPower,
        Series::CorrectedPower(Direction::Consumption),
        Series::CorrectedPower(Direction::Production),
        Series::ReactivePower(Reactive::Inductive),
        Series::ReactivePower(Reactive::Capacitive),
        Series::ConsumptionEnergyDaily,
        Series::ProductionEnergyDaily,
        Series::ConsumptionMaxPower,
        Series::EnergyIndex(Direction::Consumption),
        Series::EnergyIndex(Direction::Production),
    ];

    pub fn direction(self) -> Direction {
        match self {
            Series::ConsumptionPower
            | Series::ConsumptionEnergyDaily
            | Series::ConsumptionMaxPower
            | Series::ReactivePower(_) => Direction::Consumption,
            Series::CorrectedPower(d) => d,
            Series::ProductionPower | Series::ProductionEnergyDaily => Direction::Production,
            Series::EnergyIndex(d) | Series::ClassIndex(d, _) | Series::ClassEnergyDaily(d, _) => d,
        }
    }

    pub fn kind(self) -> SeriesKind {
        match self {
            Series::ConsumptionPower
            | Series::ProductionPower
            | Series::CorrectedPower(_)
            | Series::ReactivePower(_) => SeriesKind::LoadCurve,
            Series::ConsumptionEnergyDaily
            | Series::ProductionEnergyDaily
            | Series::ClassEnergyDaily(..) => SeriesKind::DailyEnergy,
            Series::ConsumptionMaxPower => SeriesKind::DailyMaxPower,
            Series::EnergyIndex(_) | Series::ClassIndex(..) => SeriesKind::Index,
        }
    }

    /// The calendar class of a per-class series.
    pub fn class(self) -> Option<TimeClass> {
        match self {
            Series::ClassIndex(_, class) | Series::ClassEnergyDaily(_, class) => Some(class),
            _ => None,
        }
    }

    /// Whether only Enedis SGE serves the series (corrected and reactive curves):
    /// Data Connect has no such data, at any generation.
    pub fn is_sge_only(self) -> bool {
        matches!(self, Series::CorrectedPower(_) | Series::ReactivePower(_))
    }

    /// Whether the agent computes the series from another one rather than reading
    /// it from Enedis: the energy per class, from consecutive class indexes.
    pub fn is_derived(self) -> bool {
        matches!(self, Series::ClassEnergyDaily(..))
    }

    /// How many days after the other series its latest day can be served: 1 for
    /// the energy per class (a day's energy needs the counter read at the
    /// following midnight, which Enedis serves only the next day), 0 otherwise.
    pub fn lag_days(self) -> i64 {
        i64::from(self.is_derived())
    }

    /// The step of every reading when the series fixes it (`P1D` for daily
    /// series and indexes, read once a day); `None` for load curves, at the
    /// meter's own step.
    pub fn fixed_step(self) -> Option<super::Step> {
        match self.kind() {
            SeriesKind::LoadCurve => None,
            SeriesKind::DailyEnergy | SeriesKind::DailyMaxPower | SeriesKind::Index => {
                Some(super::Step::Day)
            }
        }
    }

    /// What its values are, in words, for messages: "30-minute load curve".
    pub fn describe(self, step: super::Step) -> String {
        let what = match self.kind() {
            SeriesKind::LoadCurve => "load curve",
            SeriesKind::DailyEnergy => "daily energy",
            SeriesKind::DailyMaxPower => "daily maximum power",
            SeriesKind::Index => "daily index",
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
        if let Series::ReactivePower(_) = self {
            return "VAr";
        }
        match self.kind() {
            SeriesKind::LoadCurve => "W",
            SeriesKind::DailyEnergy | SeriesKind::Index => "Wh",
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
            Series::ConsumptionMaxPower
            | Series::EnergyIndex(_)
            | Series::ClassIndex(..)
            | Series::ClassEnergyDaily(..)
            | Series::CorrectedPower(_)
            | Series::ReactivePower(_) => None,
        }
    }

    /// The series name as written in identifiers, without allocating for the
    /// whole-meter series.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.fixed_name() {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(self.to_string()),
        }
    }

    /// The name of a whole-meter series; `None` for a per-class one.
    pub fn fixed_name(self) -> Option<&'static str> {
        Some(match self {
            Series::ConsumptionPower => "consumption/power/active/raw",
            Series::ProductionPower => "production/power/active/raw",
            Series::ConsumptionEnergyDaily => "consumption/energy/active/daily",
            Series::ProductionEnergyDaily => "production/energy/active/daily",
            Series::ConsumptionMaxPower => "consumption/power/apparent/max",
            Series::EnergyIndex(Direction::Consumption) => "consumption/energy/active/index",
            Series::EnergyIndex(Direction::Production) => "production/energy/active/index",
            Series::CorrectedPower(Direction::Consumption) => "consumption/power/active/corrected",
            Series::CorrectedPower(Direction::Production) => "production/power/active/corrected",
            Series::ReactivePower(Reactive::Inductive) => "consumption/power/inductive/raw",
            Series::ReactivePower(Reactive::Capacitive) => "consumption/power/capacitive/raw",
            Series::ClassIndex(..) | Series::ClassEnergyDaily(..) => return None,
        })
    }
}

/// Cut a peer-supplied value for an error message (long enough for any series
/// name).
fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

impl FromStr for Series {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(series) = Series::WHOLE_METER
            .into_iter()
            .find(|series| series.fixed_name() == Some(s))
        {
            return Ok(series);
        }
        let unknown = || IdentifierError::UnknownSeries(shorten(s));
        let (direction, rest) = s.split_once('/').ok_or_else(unknown)?;
        let direction: Direction = direction.parse().map_err(|_| unknown())?;
        let (per_class, class): (fn(Direction, TimeClass) -> Series, &str) =
            if let Some(class) = rest.strip_prefix("energy/active/index/") {
                (Series::ClassIndex, class)
            } else if let Some(class) = rest.strip_prefix("energy/active/daily/") {
                (Series::ClassEnergyDaily, class)
            } else {
                return Err(unknown());
            };
        let bad = |reason: String| IdentifierError::BadClass {
            series: shorten(s),
            reason,
        };
        let (calendar, code) = class.split_once('/').ok_or_else(|| {
            bad(format!(
                "a class is written <calendar>/<code> (distributor/hph, provider/hc), not {:?}",
                shorten(class)
            ))
        })?;
        let calendar: Calendar = calendar.parse().map_err(bad)?;
        let code = ClassCode::new(code).map_err(|e| bad(e.to_string()))?;
        Ok(per_class(direction, TimeClass::new(calendar, code)))
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Series::ClassIndex(d, class) => write!(f, "{d}/energy/active/index/{class}"),
            Series::ClassEnergyDaily(d, class) => write!(f, "{d}/energy/active/daily/{class}"),
            // Every other series has a fixed name.
            other => f.write_str(other.fixed_name().unwrap_or_default()),
        }
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
        "unknown series {0:?}; known series: consumption/power/active/raw, production/power/active/raw, consumption/energy/active/daily, production/energy/active/daily, consumption/power/apparent/max, consumption/energy/active/index, production/energy/active/index, and per calendar class <direction>/energy/active/index/<calendar>/<class> and <direction>/energy/active/daily/<calendar>/<class> (calendar distributor or provider, class e.g. hph, hc, base, buhp)"
    )]
    UnknownSeries(String),
    #[error("bad calendar class in series {series:?}: {reason}")]
    BadClass { series: String, reason: String },
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
        let hph = TimeClass::new(Calendar::Distributor, ClassCode::new("hph").unwrap());
        let buhp = TimeClass::new(Calendar::Provider, ClassCode::new("buhp").unwrap());
        let classes = [
            Series::ClassIndex(Direction::Consumption, hph),
            Series::ClassIndex(Direction::Production, buhp),
            Series::ClassEnergyDaily(Direction::Consumption, buhp),
            Series::ClassEnergyDaily(Direction::Production, hph),
        ];
        for series in Series::WHOLE_METER.into_iter().chain(classes) {
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
    fn class_series_are_named_as_the_sge_proxy_names_them() {
        let id: Identifier =
            "urn:dev:prm:30001610071843_consumption/energy/active/index/distributor/hph"
                .parse()
                .unwrap();
        let class = TimeClass::new(Calendar::Distributor, ClassCode::new("hph").unwrap());
        assert_eq!(id.series, Series::ClassIndex(Direction::Consumption, class));
        assert_eq!(id.series.kind(), SeriesKind::Index);
        assert_eq!(id.series.unit(), "Wh");
        assert_eq!(id.series.class(), Some(class));
        let daily: Series = "production/energy/active/daily/provider/hc"
            .parse()
            .unwrap();
        assert!(daily.is_derived());
        assert_eq!(daily.lag_days(), 1);
        assert_eq!(daily.kind(), SeriesKind::DailyEnergy);
        assert_eq!(daily.direction(), Direction::Production);
        assert_eq!(
            "consumption/energy/active/index".parse::<Series>(),
            Ok(Series::EnergyIndex(Direction::Consumption))
        );
        // A series stays small and Copy whatever its class.
        assert!(
            std::mem::size_of::<Series>() <= 12,
            "{}",
            std::mem::size_of::<Series>()
        );
    }

    #[test]
    fn bad_classes_are_refused_precisely() {
        let err = |s: &str| s.parse::<Series>().unwrap_err().to_string();
        assert_eq!(
            err("consumption/energy/active/index/distributor/HPH"),
            "bad calendar class in series \"consumption/energy/active/index/distributor/HPH\": class codes are written in lower case, as the Quoalise SGE proxy writes them: \"hph\", not \"HPH\""
        );
        assert!(
            err("consumption/energy/active/index/supplier/hp")
                .contains("the calendar is \"distributor\" or \"provider\", not \"supplier\""),
            "{}",
            err("consumption/energy/active/index/supplier/hp")
        );
        assert!(
            err("consumption/energy/active/index/provider/").contains("the class code is empty")
        );
        assert!(
            err("consumption/energy/active/daily/provider/heurespleines")
                .contains("at most 8 characters, \"heurespleines\" has 13")
        );
        assert!(
            err("consumption/energy/active/daily/provider/h-p")
                .contains("found '-' at position 1 of \"h-p\"")
        );
        assert!(
            err("consumption/energy/active/index/provider/hé").contains("found 'é' at position 1")
        );
        assert!(err("consumption/energy/active/index/hph").contains("<calendar>/<code>"));
        assert!(
            err("consumption/energy/active/index/distributor/hp/x")
                .contains("found '/' at position 2")
        );
        assert!(matches!(
            "consumption/energy/reactive/index/distributor/hp".parse::<Series>(),
            Err(IdentifierError::UnknownSeries(_))
        ));
        assert!(matches!(
            "heating/energy/active/index/distributor/hp".parse::<Series>(),
            Err(IdentifierError::UnknownSeries(_))
        ));
        // Enedis' own spelling is read case-insensitively, and lowered.
        assert_eq!(ClassCode::from_enedis("BUHP").unwrap().as_str(), "buhp");
        assert_eq!(ClassCode::from_enedis(" HC ").unwrap().as_str(), "hc");
        assert!(ClassCode::from_enedis("HP HC").is_err());
        assert_eq!(ClassCode::new("12345678").unwrap().as_str(), "12345678");
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
