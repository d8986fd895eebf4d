//! Data scopes: which KINDS of data a peer may receive, whatever PRM it may read.
//!
//! A grant of the configuration or a consumer's consent says which meters a peer
//! may read; its scopes (`[[peers]] scopes`) say what of them: a peer that needs
//! daily energy need not see the load curve, which tells when people are home.
//! Every series belongs to exactly one scope ([`Scope::of`]); the scopes that no
//! series carries (`contract`, `identity`) gate the commands that serve that data.
//!
//! Adding a series means adding its arm to [`Scope::of`] (the match is
//! exhaustive, so the compiler asks for it).

use std::fmt;

use super::{SERIES_NAMES, Series};

/// One kind of data a peer may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Consumption and production power at the meter's step (`…/power/active/raw`).
    LoadCurve,
    /// Energy per day (`…/energy/active/daily`).
    Daily,
    /// Daily maximum apparent power (`consumption/power/apparent/max`).
    MaxPower,
    /// Meter indexes and energy per tariff period.
    Index,
    /// Contract and technical data of the delivery point.
    Contract,
    /// The contract holder's identity and address, where an API generation gives them.
    Identity,
}

impl Scope {
    /// Every scope, in the order they are listed to people.
    pub const ALL: [Scope; 6] = [
        Scope::LoadCurve,
        Scope::Daily,
        Scope::MaxPower,
        Scope::Index,
        Scope::Contract,
        Scope::Identity,
    ];

    /// The name written in `[[peers]] scopes`, in refusals and in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LoadCurve => "load_curve",
            Scope::Daily => "daily",
            Scope::MaxPower => "max_power",
            Scope::Index => "index",
            Scope::Contract => "contract",
            Scope::Identity => "identity",
        }
    }

    /// The scope of `name`, if it is one.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The scope a series belongs to.
    pub fn of(series: Series) -> Scope {
        match series {
            Series::ConsumptionPower
            | Series::ProductionPower
            | Series::CorrectedPower(_)
            | Series::ReactivePower(_) => Scope::LoadCurve,
            Series::ConsumptionEnergyDaily | Series::ProductionEnergyDaily => Scope::Daily,
            Series::ConsumptionMaxPower => Scope::MaxPower,
            Series::EnergyIndex(_) | Series::ClassIndex(..) | Series::ClassEnergyDaily(..) => {
                Scope::Index
            }
        }
    }

    /// The known names, for messages: `load_curve, daily, …, identity`.
    pub fn names() -> String {
        Scope::ALL.map(Scope::as_str).join(", ")
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes: what one peer may receive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all (`scopes = []`): the peer may list its usage points and ask
    /// for consents, and read nothing.
    pub const NONE: Scopes = Scopes(0);

    /// The scopes of a peer whose entry sets none: every scope but `identity`,
    /// what a grant allowed before scopes existed. New kinds of data are no more
    /// revealing than the load curve; the holder's identity is.
    pub fn default_for_peers() -> Scopes {
        Scope::ALL
            .into_iter()
            .filter(|s| *s != Scope::Identity)
            .collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether a peer with these scopes may receive `series`.
    pub fn allows(self, series: Series) -> bool {
        self.contains(Scope::of(series))
    }

    /// The series these scopes let a peer receive, in [`Series::ALL`]'s order.
    pub fn series(self) -> Vec<Series> {
        Series::ALL
            .into_iter()
            .filter(|s| self.allows(*s))
            .collect()
    }

    /// The names of the series these scopes let a peer receive, as forms and
    /// `list_usage_points` write them: the whole meter's, then, with `index` and
    /// when the API generation serves them (`indexes`), the indexes and the energy
    /// per calendar class (as patterns).
    pub fn series_names(self, indexes: bool) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .series()
            .into_iter()
            .filter_map(Series::fixed_name)
            .collect();
        if indexes && self.contains(Scope::Index) {
            names.extend(
                SERIES_NAMES
                    .iter()
                    .filter(|n| n.contains("/index") || n.contains('<')),
            );
        }
        names
    }

    /// Whether these scopes let a peer receive at least one series.
    pub fn allows_any_series(self) -> bool {
        Series::ALL.into_iter().any(|s| self.allows(s)) || self.contains(Scope::Index)
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::NONE;
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

/// `load_curve, daily` (empty when there is none).
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        for bad in ["", "Load_Curve", "loadcurve", "all", "daily "] {
            assert_eq!(Scope::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Scope::names(),
            "load_curve, daily, max_power, index, contract, identity"
        );
    }

    #[test]
    fn every_series_has_its_scope() {
        let of: Vec<(&str, &str)> = Series::ALL
            .iter()
            .map(|s| (s.fixed_name().unwrap_or_default(), Scope::of(*s).as_str()))
            .collect();
        assert_eq!(
            of,
            [
                ("consumption/power/active/raw", "load_curve"),
                ("production/power/active/raw", "load_curve"),
                ("consumption/energy/active/daily", "daily"),
                ("production/energy/active/daily", "daily"),
                ("consumption/power/apparent/max", "max_power"),
            ]
        );
        // The index series, whole meter and per class, and the energy per class.
        for name in [
            "consumption/energy/active/index",
            "production/energy/active/index/provider/hc",
            "consumption/energy/active/daily/distributor/hph",
        ] {
            let series: Series = name.parse().unwrap();
            assert_eq!(Scope::of(series), Scope::Index, "{name}");
        }
    }

    #[test]
    fn the_series_listed_follow_the_scopes_and_the_api() {
        let default = Scopes::default_for_peers();
        // Every series but SGE's corrected and reactive curves (which only a PRM
        // read through SGE lists).
        let sge_only = SERIES_NAMES
            .iter()
            .filter(|n| n.parse::<Series>().is_ok_and(Series::is_sge_only))
            .count();
        assert_eq!(sge_only, 4);
        assert_eq!(
            default.series_names(true).len(),
            SERIES_NAMES.len() - sge_only
        );
        // An API without indexes (v3, v4, v5): the five whole-meter series.
        assert_eq!(
            default.series_names(false),
            Series::ALL.map(|s| s.fixed_name().unwrap_or_default())
        );
        let index_only: Scopes = [Scope::Index].into_iter().collect();
        let names = index_only.series_names(true);
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.contains("/index") || n.contains('<'))
        );
        assert!(index_only.series_names(false).is_empty());
    }

    #[test]
    fn the_default_is_everything_but_identity() {
        let default = Scopes::default_for_peers();
        assert_eq!(
            default.to_string(),
            "load_curve, daily, max_power, index, contract"
        );
        assert!(!default.contains(Scope::Identity));
        assert_eq!(default.series(), Series::ALL);
        assert!(Scopes::NONE.is_empty());
        assert!(Scopes::NONE.series().is_empty());
        assert!(!Scopes::NONE.allows_any_series());
        assert!(!Scopes::from_iter([Scope::Contract, Scope::Identity]).allows_any_series());
        assert!(Scopes::from_iter([Scope::MaxPower]).allows_any_series());
        assert_eq!(Scopes::NONE.to_string(), "");
        let daily: Scopes = [Scope::Daily].into_iter().collect();
        assert_eq!(
            daily.series(),
            [
                Series::ConsumptionEnergyDaily,
                Series::ProductionEnergyDaily
            ]
        );
        assert!(!daily.allows(Series::ConsumptionPower));
        assert_eq!(format!("{daily:?}"), "{Daily}");
    }
}
