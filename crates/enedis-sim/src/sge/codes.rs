//! The SGT return codes the simulator answers, with their labels from the Enedis
//! annex AX.0466 v1.5.0 (`reference/sge/derived/sgt-return-codes.tsv`).

/// One SGT return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sgt {
    /// SGT401: the point does not exist.
    PointInexistant,
    /// SGT4K1: the end date is after today.
    FinApresAujourdhui,
    /// SGT4K2: the customer's consent is required.
    AccordRequis,
    /// SGT4K4: the start date is not before the end date.
    DebutApresFin,
    /// SGT4L8: the duration does not fit the measurement type.
    DureeIncompatible,
    /// SGT4H2: no corrected data for a C5 point.
    PasDeCorrigeesC5,
    /// SGT4N1: the period is outside the client's holding of the point.
    HorsDetention,
    /// SGT579: this kind of request is not available for this kind of point.
    TypeIndisponible,
    /// SGT583: the measurement direction does not match.
    SensIncorrect,
    /// SGT562: malformed request.
    Malforme,
    /// SGT500: technical error.
    Technique,
    /// SGT483: the user lacks the rights for this operation (CDTC).
    Habilitation,
    /// SGT566: the service needs the customer's consent (orders).
    AccordClientRequis,
    /// SGT570: the service is already active over the period (orders).
    DejaActif,
    /// SGT5O9: an access service's end is more than 3 years away (ML; not in
    /// AX.0466 v1.5.0).
    FinTropLointaine,
    /// SGT506: the service is momentarily unavailable (a call over the
    /// homologation pace, inferred; a forced 503).
    Indisponible,
    /// SGT4G3: no measurement on this point (an unknown service to stop,
    /// inferred).
    AucuneMesure,
}

impl Sgt {
    pub fn code(self) -> &'static str {
        match self {
            Sgt::PointInexistant => "SGT401",
            Sgt::FinApresAujourdhui => "SGT4K1",
            Sgt::AccordRequis => "SGT4K2",
            Sgt::DebutApresFin => "SGT4K4",
            Sgt::DureeIncompatible => "SGT4L8",
            Sgt::PasDeCorrigeesC5 => "SGT4H2",
            Sgt::HorsDetention => "SGT4N1",
            Sgt::TypeIndisponible => "SGT579",
            Sgt::SensIncorrect => "SGT583",
            Sgt::Malforme => "SGT562",
            Sgt::Technique => "SGT500",
            Sgt::Habilitation => "SGT483",
            Sgt::AccordClientRequis => "SGT566",
            Sgt::DejaActif => "SGT570",
            Sgt::FinTropLointaine => "SGT5O9",
            Sgt::AucuneMesure => "SGT4G3",
            Sgt::Indisponible => "SGT506",
        }
    }

    /// The label of AX.0466 (SGT583's is GUI.0488's fault example).
    pub fn label(self) -> &'static str {
        match self {
            Sgt::PointInexistant => "Demande non recevable : point inexistant",
            Sgt::FinApresAujourdhui => {
                "La date de fin doit être antérieure ou égale à la date du jour."
            }
            Sgt::AccordRequis => {
                "Le client doit avoir donné son accord pour la transmission de ses données de mesure."
            }
            Sgt::DebutApresFin => "La date de début doit être antérieure à la date de fin.",
            Sgt::DureeIncompatible => {
                "La durée demandée n’est pas compatible avec le type de mesure demandé"
            }
            Sgt::PasDeCorrigeesC5 => {
                "La demande ne peut pas aboutir, les données de mesures ne sont pas corrigées pour un point du segment C5."
            }
            Sgt::HorsDetention => {
                "La consultation de données de mesures n’est autorisée que sur la période sur laquelle le client est détenteur du point."
            }
            Sgt::TypeIndisponible => {
                "Ce type de demande n'est pas disponible pour ce type de point."
            }
            Sgt::SensIncorrect => {
                "La demande ne peut pas aboutir, le sens de la mesure ne correspond pas."
            }
            Sgt::Malforme => "Problème : le message de demande est malformé",
            Sgt::Technique => "Une erreur technique est survenue",
            Sgt::Habilitation => {
                "Demande non recevable : l'utilisateur ne possède pas les habilitations nécessaires pour effectuer l'opération souhaitée"
            }
            Sgt::AccordClientRequis => "Ce service nécessite l'accord du client.",
            Sgt::DejaActif => "Le service demandé est déjà actif sur la période demandée.",
            // Not in AX.0466 v1.5.0: our wording.
            Sgt::FinTropLointaine => {
                "La date de fin du service ne peut pas dépasser 3 ans à compter de la date du jour."
            }
            Sgt::AucuneMesure => "Aucune mesure trouvée sur ce point.",
            Sgt::Indisponible => {
                "Problème: le service est momentanément indisponible. Veuillez renouveler votre demande ultérieurement."
            }
        }
    }
}
