//! The few meter facts the simulator shares with Enedis' vocabulary: a PRM (the
//! 14-digit delivery-point number) and the direction of the energy.
//!
//! These are written here rather than borrowed from quoalise-agent on purpose: the
//! simulator is an independent implementation of Enedis, so the agent's tests meet
//! a second reading of the rules, not the agent's own code answering itself. The
//! refusal texts match the agent's word for word, since the consent page shows them.

use std::fmt;
use std::str::FromStr;

/// A PRM: exactly 14 ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prm([u8; 14]);

/// Why a PRM was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrmError {
    Length(usize),
    NotDigit { position: usize, found: char },
}

impl fmt::Display for PrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrmError::Length(n) => write!(f, "a PRM has 14 digits, this one has {n} characters"),
            PrmError::NotDigit { position, found } => write!(
                f,
                "a PRM has only digits, found {found:?} at position {position}"
            ),
        }
    }
}

impl std::error::Error for PrmError {}

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

/// Which way the energy flows, seen from the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Consumption,
    Production,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prm_is_fourteen_ascii_digits() {
        assert!("".parse::<Prm>().is_err());
        assert!("123456789012345".parse::<Prm>().is_err());
        assert!("1234567890123٤".parse::<Prm>().is_err());
        assert_eq!(
            "22516914714270".parse::<Prm>().map(|p| p.to_string()),
            Ok("22516914714270".to_owned())
        );
    }
}
