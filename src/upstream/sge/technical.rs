//! `ConsultationDonneesTechniquesContractuelles` v1.0 (CDTC): the request, and
//! the answer read into the agent's [`Contract`] as far as it maps.
//!
//! | CDTC (`point/…`) | [`Contract`] |
//! |---|---|
//! | `donneesGenerales/segment@code` | `segments` |
//! | `donneesGenerales/niveauOuvertureServices` | `services_level` (code, `0`–`2`) |
//! | `situationContractuelle/structureTarifaire/puissanceSouscriteMax` | `subscribed_power` |
//! | `…/structureTarifaire/formuleTarifaireAcheminement` (`@code`, `libelle`) | `tariff_option` |
//! | `situationComptage/dispositifComptage/typeComptage` | `meter_type` |
//! | `…/dispositifComptage/relais/plageHeuresCreuses`, else a meter's `plagesHeuresCreuses` | `off_peak_hours` |
//! | `donneesGenerales/dateDerniereModificationFormuleTarifaireAcheminement` | `last_changes` (tariff option) |
//! | the later of `dateDerniereAugmentationPuissanceSouscrite` and `…Diminution…` | `last_changes` (subscribed power) |
//! | `donneesGenerales/adresseInstallation` | `address` (street: staircase, building, street lines joined) |
//!
//! CDTC gives no commissioning date (`activations` stays empty) and no contract
//! start. What it gives that the model has no place for is in [`TechnicalExtras`]:
//! the contractual state (`etatContractuel`: `SERVC` in service, `RESIL`
//! terminated…), the voltage domain, the connection power, the meters' serial
//! numbers, the reading mode and medium, the supplier calendar.

use super::soap::{Node, Payload};
use crate::quoalise::Prm;
use crate::quoalise::contract::{Address, Changed, Coded, Contract, LastChange, Power};
use crate::upstream::normalise::{self, ShapeError};

/// The service's namespace.
pub const NAMESPACE: &str =
    "http://www.enedis.fr/sge/b2b/services/consulterdonneestechniquescontractuelles/v1.0";

/// The `soap:Body` element asking the data of `prm`, as `login`
/// (`loginUtilisateur`), with the customer's authorisation declared.
pub fn payload(prm: &Prm, login: &str) -> String {
    let mut p = Payload::root(
        "cdtc",
        "consulterDonneesTechniquesContractuelles",
        NAMESPACE,
    );
    p.leaf("pointId", prm.as_str())
        .leaf("loginUtilisateur", login)
        .leaf("autorisationClient", "true");
    p.finish("cdtc", "consulterDonneesTechniquesContractuelles")
}

/// What CDTC says that [`Contract`] has no field for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TechnicalExtras {
    /// `etatContractuel` (`SERVC`, `RESIL`, `ECRES`, `INACCE`, `IMPRO`, `ECRAC`).
    pub contractual_state: Option<Coded>,
    /// `domaineTension` (`BTINF`, `BTSUP`, `HTA`…).
    pub voltage_domain: Option<Coded>,
    /// `puissanceRaccordementSoutirage`.
    pub connection_power: Option<Power>,
    /// The meters' `matricule`s.
    pub meter_serials: Vec<String>,
    /// `modeReleve`, `mediaReleve`.
    pub reading_mode: Option<Coded>,
    pub reading_medium: Option<Coded>,
    /// `structureTarifaire/calendrierFrn`.
    pub supplier_calendar: Option<Coded>,
}

/// A read CDTC answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technical {
    pub contract: Contract,
    pub extras: TechnicalExtras,
}

fn coded(node: Option<&Node>) -> Option<Coded> {
    let node = node?;
    let code = node
        .attribute("code")
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let label = node.text_of("libelle");
    (code.is_some() || label.is_some()).then(|| Coded {
        code: code.map(str::to_owned),
        label: label.map(str::to_owned),
    })
}

fn power(node: Option<&Node>, what: &str) -> Result<Option<Power>, ShapeError> {
    let Some(node) = node else {
        return Ok(None);
    };
    let Some(value) = node.text_of("valeur") else {
        return Ok(None);
    };
    let value = normalise::decimal(&serde_json::Value::String(value.to_owned()), what)?;
    let unit = node
        .text_of("unite")
        .ok_or_else(|| ShapeError(format!("{what} {value} has no unit")))?;
    Ok(Some(Power {
        value,
        unit: unit.to_owned(),
    }))
}

/// Read the answer `payload` (`consulterDonneesTechniquesContractuellesResponse`)
/// for `prm`, fetched at `fetched` (UTC seconds); `generation` is what the
/// contract says it was read from (`sge`).
pub fn parse(prm: &Prm, payload: &Node, fetched: i64) -> Result<Technical, ShapeError> {
    if payload.name != "consulterDonneesTechniquesContractuellesResponse" {
        return Err(ShapeError(format!(
            "<{}> where consulterDonneesTechniquesContractuellesResponse was expected",
            payload.name
        )));
    }
    let point = payload
        .child("point")
        .ok_or_else(|| ShapeError("the answer has no point".to_owned()))?;
    normalise::check_prm(point.attribute("id"), prm)?;
    let mut contract = Contract::new(*prm, "sge", fetched);
    let mut extras = TechnicalExtras::default();

    if let Some(general) = point.child("donneesGenerales") {
        if let Some(segment) = general.child("segment").and_then(|s| s.attribute("code")) {
            let segment = segment.trim();
            if !segment.is_empty() {
                contract.segments.push(segment.to_owned());
            }
        }
        if let Some(level) = general.text_of("niveauOuvertureServices") {
            contract.services_level = Some(Coded::code(level));
        }
        extras.contractual_state = coded(general.child("etatContractuel"));
        if let Some(day) = general.text_of("dateDerniereModificationFormuleTarifaireAcheminement") {
            contract.last_changes.push(LastChange {
                of: Changed::TariffOption,
                date: normalise::contract_day(day)?,
            });
        }
        let mut power_change = None;
        for field in [
            "dateDerniereAugmentationPuissanceSouscrite",
            "dateDerniereDiminutionPuissanceSouscrite",
        ] {
            if let Some(day) = general.text_of(field) {
                let day = normalise::contract_day(day)?;
                power_change = Some(power_change.map_or(day, |d: jiff::civil::Date| d.max(day)));
            }
        }
        if let Some(date) = power_change {
            contract.last_changes.push(LastChange {
                of: Changed::SubscribedPower,
                date,
            });
        }
        if let Some(a) = general.child("adresseInstallation") {
            let street: Vec<&str> = [
                "escalierEtEtageEtAppartement",
                "batiment",
                "numeroEtNomVoie",
            ]
            .iter()
            .filter_map(|f| a.text_of(f))
            .collect();
            let commune = a.child("commune");
            let address = Address {
                street: (!street.is_empty()).then(|| street.join(", ")),
                locality: a.text_of("lieuDit").map(str::to_owned),
                postal_code: a.text_of("codePostal").map(str::to_owned),
                city: commune
                    .and_then(|c| c.text_of("libelle"))
                    .map(str::to_owned),
                insee_code: commune
                    .and_then(|c| c.attribute("code"))
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
                country: None,
            };
            if address != Address::default() {
                contract.address = Some(address);
            }
        }
    }
    if let Some(supply) = point.at(&["situationAlimentation", "alimentationPrincipale"]) {
        extras.voltage_domain = coded(supply.child("domaineTension"));
        extras.connection_power = power(
            supply.child("puissanceRaccordementSoutirage"),
            "puissanceRaccordementSoutirage",
        )?;
    }
    if let Some(metering) = point.child("situationComptage") {
        if let Some(device) = metering.child("dispositifComptage") {
            contract.meter_type = coded(device.child("typeComptage"));
            let meters: Vec<&Node> = device
                .child("compteurs")
                .map(|c| c.all("compteur").collect())
                .unwrap_or_default();
            extras.meter_serials = meters
                .iter()
                .filter_map(|m| m.text_of("matricule"))
                .map(str::to_owned)
                .collect();
            let off_peak = device
                .child("relais")
                .and_then(|r| r.text_of("plageHeuresCreuses"))
                .or_else(|| meters.iter().find_map(|m| m.text_of("plagesHeuresCreuses")));
            if let Some(hours) = off_peak {
                contract.off_peak_hours = Some(normalise::off_peak_hours(hours));
            }
        }
        extras.reading_mode = coded(metering.child("modeReleve"));
        extras.reading_medium = coded(metering.child("mediaReleve"));
    }
    if let Some(tariff) = point.at(&["situationContractuelle", "structureTarifaire"]) {
        contract.subscribed_power = power(
            tariff.child("puissanceSouscriteMax"),
            "puissanceSouscriteMax",
        )?;
        contract.tariff_option = coded(tariff.child("formuleTarifaireAcheminement"));
        extras.supplier_calendar = coded(tariff.child("calendrierFrn"));
    }
    Ok(Technical { contract, extras })
}
