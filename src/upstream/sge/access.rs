//! The access-service orders of SGE v26.1 (GUI.0531): `CommanderServicesAccesDonnees`
//! v1.0 subscribes services on a point (what `cadreAcces=SERVICE_ACCES` then reads,
//! and, with a publication option, recurring file deposits);
//! `CommanderArretServicesAccesDonnees` v1.0 stops them. Both answer with an
//! `acquittement` in the SOAP header (`SGT200` "Succès") and the business cases
//! (`affaireId`) they opened.

use jiff::civil::Date;

use super::soap::{self, Envelope, Node, Payload};
use super::transport::SgeError;
use crate::quoalise::{Direction, Prm};
use crate::upstream::normalise::ShapeError;

/// `CommanderServicesAccesDonnees` v1.0's namespace.
pub const ORDER_NAMESPACE: &str = "http://www.enedis.fr/sge/b2b/commanderservicesaccesdonnees/v1.0";
/// `CommanderArretServicesAccesDonnees` v1.0's namespace.
pub const STOP_NAMESPACE: &str =
    "http://www.enedis.fr/sge/b2b/commanderarretservicesaccesdonnees/v1.0";

/// `typeDonnees`: which data a service gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `CDC`: load curve.
    Curve,
    /// `IDX`: daily index.
    Index,
    /// `PMAX`: maximum power (C5/P4 only).
    MaxPower,
    /// `ENERGIE`: daily energy.
    Energy,
}

impl DataType {
    pub fn code(self) -> &'static str {
        match self {
            DataType::Curve => "CDC",
            DataType::Index => "IDX",
            DataType::MaxPower => "PMAX",
            DataType::Energy => "ENERGIE",
        }
    }
}

/// `periodiciteTransmission` of a publication option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Periodicity {
    Daily,
    Weekly,
    Monthly,
}

impl Periodicity {
    pub fn code(self) -> &'static str {
        match self {
            Periodicity::Daily => "P1D",
            Periodicity::Weekly => "P7D",
            Periodicity::Monthly => "P1M",
        }
    }
}

/// A publication option: recurring deposits of the data (SFTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// `mesuresCorrigees`, when said.
    pub corrected: Option<bool>,
    pub periodicity: Periodicity,
}

/// One `serviceSouscrit` to order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOrder {
    pub data: DataType,
    /// Without any, the access is for consultation only (`SERVICE_ACCES`).
    pub publications: Vec<Publication>,
}

/// Who consented (`declarationAccordClient`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    /// `personnePhysique`: civility (`M` or `Mme`), name, first name.
    Natural {
        civility: Option<Civility>,
        last_name: String,
        first_name: Option<String>,
    },
    /// `personneMorale`: company name.
    Legal { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Civility {
    Mr,
    Mrs,
}

/// The customer's consent as declared to Enedis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// `accord`: `false` is refused by Enedis (SGT566).
    pub given: bool,
    pub person: Option<Person>,
}

/// A `commanderServicesAccesDonnees` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessOrder {
    pub prm: Prm,
    /// `refExterne`: the requester's own reference, when any.
    pub reference: Option<String>,
    /// `dateFin` of the services (at most 3 years ahead for C5/P4).
    pub end: Option<Date>,
    pub direction: Direction,
    pub consent: Option<Consent>,
    pub services: Vec<ServiceOrder>,
}

/// A `commanderArretServicesAccesDonnees` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessStop {
    pub prm: Prm,
    pub reference: Option<String>,
    pub direction: Direction,
    /// The `serviceSouscritId`s to stop.
    pub services: Vec<String>,
}

fn sens(direction: Direction) -> &'static str {
    super::measures::sens(direction)
}

fn non_empty(what: &str, text: &str) -> Result<(), SgeError> {
    if text.trim().is_empty() {
        return Err(SgeError::BadRequest(format!("{what} is empty")));
    }
    if text.chars().count() > 255 {
        return Err(SgeError::BadRequest(format!(
            "{what} has more than 255 characters"
        )));
    }
    Ok(())
}

impl AccessOrder {
    /// The `soap:Body` element, as `login` under the contract `contract_id`.
    pub fn payload(&self, login: &str, contract_id: &str) -> Result<String, SgeError> {
        if self.services.is_empty() {
            return Err(SgeError::BadRequest(
                "an access order needs at least one service".to_owned(),
            ));
        }
        let mut p = Payload::root("sad", "commanderServicesAccesDonnees", ORDER_NAMESPACE);
        p.open("demande").open("donneesGenerales");
        if let Some(reference) = &self.reference {
            non_empty("refExterne", reference)?;
            p.leaf("refExterne", reference);
        }
        p.leaf("pointId", self.prm.as_str())
            .leaf("initiateurLogin", login)
            .leaf("contratId", contract_id)
            .leaf_opt("dateFin", self.end.map(|d| d.to_string()).as_deref())
            .leaf("sens", sens(self.direction));
        if let Some(consent) = &self.consent {
            p.open("declarationAccordClient")
                .leaf("accord", if consent.given { "true" } else { "false" });
            match &consent.person {
                Some(Person::Natural {
                    civility,
                    last_name,
                    first_name,
                }) => {
                    non_empty("the customer's name", last_name)?;
                    p.open("personnePhysique");
                    if let Some(civility) = civility {
                        p.leaf(
                            "civilite",
                            match civility {
                                Civility::Mr => "M",
                                Civility::Mrs => "Mme",
                            },
                        );
                    }
                    p.leaf("nom", last_name);
                    if let Some(first) = first_name {
                        non_empty("the customer's first name", first)?;
                        p.leaf("prenom", first);
                    }
                    p.close("personnePhysique");
                }
                Some(Person::Legal { name }) => {
                    non_empty("the company name", name)?;
                    p.open("personneMorale")
                        .leaf("denominationSociale", name)
                        .close("personneMorale");
                }
                None => {}
            }
            p.close("declarationAccordClient");
        }
        p.close("donneesGenerales").open("servicesSouscrits");
        for service in &self.services {
            p.open("serviceSouscrit")
                .leaf("typeDonnees", service.data.code());
            if !service.publications.is_empty() {
                p.open("optionsPublication");
                for option in &service.publications {
                    p.open("optionPublication");
                    if let Some(corrected) = option.corrected {
                        p.leaf("mesuresCorrigees", if corrected { "true" } else { "false" });
                    }
                    p.leaf("periodiciteTransmission", option.periodicity.code())
                        .close("optionPublication");
                }
                p.close("optionsPublication");
            }
            p.close("serviceSouscrit");
        }
        p.close("servicesSouscrits").close("demande");
        Ok(p.finish("sad", "commanderServicesAccesDonnees"))
    }
}

impl AccessStop {
    /// The `soap:Body` element, as `login` under the contract `contract_id`.
    pub fn payload(&self, login: &str, contract_id: &str) -> Result<String, SgeError> {
        if self.services.is_empty() {
            return Err(SgeError::BadRequest(
                "a stop order needs at least one serviceSouscritId".to_owned(),
            ));
        }
        let mut p = Payload::root(
            "arret",
            "commanderArretServicesAccesDonnees",
            STOP_NAMESPACE,
        );
        p.open("demande").open("donneesGenerales");
        if let Some(reference) = &self.reference {
            non_empty("refExterne", reference)?;
            p.leaf("refExterne", reference);
        }
        p.leaf("pointId", self.prm.as_str())
            .leaf("initiateurLogin", login)
            .leaf("contratId", contract_id)
            .leaf("sens", sens(self.direction))
            .close("donneesGenerales")
            .open("servicesSouscrits");
        for id in &self.services {
            if id.trim().is_empty() || id.chars().count() > 15 {
                return Err(SgeError::BadRequest(format!(
                    "serviceSouscritId {id:?} is not 1 to 15 characters"
                )));
            }
            p.leaf("serviceSouscritId", id);
        }
        p.close("servicesSouscrits").close("demande");
        Ok(p.finish("arret", "commanderArretServicesAccesDonnees"))
    }
}

/// The header's `acquittement`: `SGT200` "Succès" for an accepted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub code: String,
    pub label: String,
}

/// One business case an order opened: its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affair {
    /// `affaireId` (`[0-9A-Z]{4,8}`).
    pub id: String,
    /// `serviceSouscritId`: what [`AccessStop`] and the publications name.
    pub service_id: Option<String>,
    /// `mesuresTypeCode` of the service (`CDC`, `IDX`…).
    pub data: Option<String>,
    /// `prestation/fiche@code` (`F300C`…), when given.
    pub prestation: Option<String>,
}

/// The answer to an order or a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAnswer {
    pub acknowledgement: Option<Acknowledgement>,
    pub affairs: Vec<Affair>,
}

fn acknowledgement(envelope: &Envelope) -> Option<Acknowledgement> {
    soap::acknowledgement(envelope).map(|(code, label)| Acknowledgement { code, label })
}

/// Read the answer to [`AccessOrder`].
pub fn parse_order(envelope: &Envelope) -> Result<OrderAnswer, ShapeError> {
    let payload = response(envelope, "commanderServicesAccesDonneesResponse")?;
    let mut affairs = Vec::new();
    for affaire in payload
        .child("affaires")
        .into_iter()
        .flat_map(|a| a.all("affaire"))
    {
        let id = affaire
            .text_of("affaireId")
            .ok_or_else(|| ShapeError("an affaire has no affaireId".to_owned()))?;
        let service = affaire.child("serviceSouscritMesures");
        affairs.push(Affair {
            id: id.to_owned(),
            service_id: service
                .and_then(|s| s.text_of("serviceSouscritId"))
                .map(str::to_owned),
            data: service
                .and_then(|s| s.text_of("mesuresTypeCode"))
                .map(str::to_owned),
            prestation: affaire
                .at(&["prestations", "prestation", "fiche"])
                .and_then(|f| f.attribute("code"))
                .map(str::to_owned),
        });
    }
    Ok(OrderAnswer {
        acknowledgement: acknowledgement(envelope),
        affairs,
    })
}

/// Read the answer to [`AccessStop`].
pub fn parse_stop(envelope: &Envelope) -> Result<OrderAnswer, ShapeError> {
    let payload = response(envelope, "commanderArretServicesAccesDonneesResponse")?;
    let mut affairs = Vec::new();
    for service in payload
        .child("servicesResilies")
        .into_iter()
        .flat_map(|s| s.all("serviceResilie"))
    {
        let id = service
            .text_of("affaireId")
            .ok_or_else(|| ShapeError("a serviceResilie has no affaireId".to_owned()))?;
        affairs.push(Affair {
            id: id.to_owned(),
            service_id: service.text_of("serviceSouscritId").map(str::to_owned),
            data: None,
            prestation: None,
        });
    }
    Ok(OrderAnswer {
        acknowledgement: acknowledgement(envelope),
        affairs,
    })
}

fn response<'a>(envelope: &'a Envelope, name: &str) -> Result<&'a Node, ShapeError> {
    let payload = envelope
        .payload()
        .ok_or_else(|| ShapeError(format!("the SOAP body is empty, {name} was expected")))?;
    if payload.name != name {
        return Err(ShapeError(format!(
            "<{}> where {name} was expected",
            payload.name
        )));
    }
    Ok(payload)
}
