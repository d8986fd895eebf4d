//! The access services ordered from the simulated SGE
//! (`CommanderServicesAccesDonnees`), as the simulator's state keeps them: which
//! point has which service, until when. The SOAP side is `sge::sad`.

use jiff::civil::Date;
use serde::Serialize;

use crate::model::Prm;

/// `typeDonnees` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TypeDonnees {
    #[serde(rename = "CDC")]
    Cdc,
    #[serde(rename = "IDX")]
    Idx,
    #[serde(rename = "PMAX")]
    Pmax,
    #[serde(rename = "ENERGIE")]
    Energie,
}

impl TypeDonnees {
    pub fn code(self) -> &'static str {
        match self {
            TypeDonnees::Cdc => "CDC",
            TypeDonnees::Idx => "IDX",
            TypeDonnees::Pmax => "PMAX",
            TypeDonnees::Energie => "ENERGIE",
        }
    }

    pub fn parse(code: &str) -> Option<TypeDonnees> {
        Some(match code {
            "CDC" => TypeDonnees::Cdc,
            "IDX" => TypeDonnees::Idx,
            "PMAX" => TypeDonnees::Pmax,
            "ENERGIE" => TypeDonnees::Energie,
            _ => return None,
        })
    }
}

/// One access service ordered on a point.
#[derive(Debug, Clone, Serialize)]
pub struct AccessService {
    #[serde(rename = "serviceSouscritId")]
    pub id: String,
    #[serde(rename = "affaireId")]
    pub affaire: String,
    #[serde(rename = "pointId")]
    pub prm: Prm,
    #[serde(rename = "typeDonnees")]
    pub kind: TypeDonnees,
    pub sens: String,
    /// The order's day: the service covers data from `dateDebut` back to the
    /// depth of history, and to `dateFin` (excluded) forward.
    #[serde(rename = "dateDebut")]
    pub start: Date,
    #[serde(rename = "dateFin")]
    pub end: Date,
    /// `periodiciteTransmission` of its publication option, if any.
    pub publication: Option<String>,
    /// The declared consent's holder (`nom prenom` or `denominationSociale`).
    pub titulaire: Option<String>,
    /// The day it was stopped (`CommanderArretServicesAccesDonnees`).
    #[serde(rename = "dateArret")]
    pub stopped: Option<Date>,
}

impl AccessService {
    pub fn active(&self, today: Date) -> bool {
        self.stopped.is_none() && today < self.end
    }
}

/// Every access service ordered since start.
#[derive(Debug, Default, Serialize)]
pub struct Services {
    pub services: Vec<AccessService>,
    #[serde(skip)]
    next: u64,
}

impl Services {
    /// Whether an active service of `kind` on `prm` exists today (not stopped,
    /// before its `dateFin`): reads under `SERVICE_ACCES` need one, whatever the
    /// period read (inferred: SGE documents no period check).
    pub fn active(&self, prm: Prm, kind: TypeDonnees, today: Date) -> bool {
        self.services
            .iter()
            .any(|s| s.prm == prm && s.kind == kind && s.active(today))
    }

    /// A new id: `serviceSouscritId` numeric (as the CCPM example), `affaireId`
    /// 8 characters of `[0-9A-Z]`.
    pub fn next_ids(&mut self) -> (String, String) {
        self.next += 1;
        let n = self.next;
        (format!("{}", 64_697_748 + n), format!("M02S{n:04X}"))
    }
}
