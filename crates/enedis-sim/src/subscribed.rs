//! `POST /subscribed_services/v1/`: turns a 2026 `autorisation_id` into the PRMs
//! and services it covers (`Services-souscrits.yaml`).
//!
//! One service per measure type and per direction for each PRM of a consent: CDC
//! (when the load curve is recorded), ENERGIE and PMAX (consumption), IDX. A revoked
//! or expired consent's services are TERMINE and, as the spec's defaults say, only
//! listed when `etatCode` asks for them (default `["ACTIF","DEMANDE"]`). The search
//! is not paginated (`page` is accepted and ignored). An unknown `autorisationId`
//! finds nothing (200, `nbTotalServices` 0).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::model::{Direction, Prm};

use super::catalogue;
use super::errors::{Gen, Refusal, code_body};
use super::state::{Consent, Holder, Sim};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    nb_total_services: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_souscrit: Option<Vec<Service>>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Service {
    id: String,
    injection: bool,
    soutirage: bool,
    service_code: &'static str,
    date_debut: String,
    date_fin: String,
    etat_code: &'static str,
    etat_libelle: &'static str,
    point_id: String,
    mesures_type_code: &'static str,
    mesures_pas: String,
    periodicite_transmission: &'static str,
    mesures_corrigees: bool,
    espace_dynamique: bool,
    publication_donnees: bool,
    autorisation: Autorisation,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Autorisation {
    autorisation_id: u64,
    autorisation_libelle: &'static str,
    autorisation_type: &'static str,
}

fn bad(message: impl Into<String>) -> Response {
    code_body(StatusCode::BAD_REQUEST, "400", &message.into())
}

/// The criteria of a search, after validation.
struct Criteria {
    autorisation_id: Option<u64>,
    point_ids: Option<Vec<Prm>>,
    etat: Vec<String>,
    service_type: String,
    mesure_types: Option<Vec<String>>,
    soutirage: Option<bool>,
    injection: Option<bool>,
    comptage: bool,
}

fn strings(value: &Value, field: &str) -> Result<Vec<String>, String> {
    value
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("Le champ {field} doit être une liste de chaînes"))
}

fn criteria(body: &[u8]) -> Result<Criteria, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("Le corps de la requête n'est pas un JSON valide : {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("Le corps de la requête doit être un objet JSON".to_owned());
    };
    const KNOWN: [&str; 12] = [
        "pointId",
        "siren",
        "dateDebut",
        "dateFin",
        "etatCode",
        "serviceType",
        "mesureTypeCode",
        "soutirage",
        "injection",
        "page",
        "comptage",
        "autorisationId",
    ];
    if let Some(unknown) = object
        .keys()
        .find(|k| !KNOWN.contains(&k.as_str()) && k.as_str() != "autorisation")
    {
        return Err(format!("Le champ {unknown} est inconnu"));
    }
    let comptage = match object.get("comptage") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("Le champ comptage doit être un booléen".to_owned()),
        None => return Err("Le champ comptage est obligatoire".to_owned()),
    };
    let autorisation_id = match object.get("autorisationId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or("Le champ autorisationId doit être un entier")?,
        ),
    };
    let point_ids = match object.get("pointId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            strings(v, "pointId")?
                .iter()
                .map(|s| {
                    s.parse::<Prm>()
                        .map_err(|e| format!("pointId {s:?} invalide : {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let siren = object.get("siren").is_some_and(|v| !v.is_null());
    if autorisation_id.is_none() && point_ids.is_none() && !siren {
        return Err(
            "Au moins un critère parmi autorisationId, pointId ou siren est obligatoire".to_owned(),
        );
    }
    let etat = match object.get("etatCode") {
        None | Some(Value::Null) => vec!["ACTIF".to_owned(), "DEMANDE".to_owned()],
        Some(v) => strings(v, "etatCode")?,
    };
    let service_type = match object.get("serviceType") {
        None | Some(Value::Null) => "ACCES".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("Le champ serviceType doit être une chaîne".to_owned()),
    };
    let mesure_types = match object.get("mesureTypeCode") {
        None | Some(Value::Null) => None,
        Some(v) => Some(strings(v, "mesureTypeCode")?),
    };
    let flag = |field: &str| -> Result<Option<bool>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("Le champ {field} doit être un booléen")),
        }
    };
    Ok(Criteria {
        autorisation_id,
        point_ids,
        etat,
        service_type,
        mesure_types,
        soutirage: flag("soutirage")?,
        injection: flag("injection")?,
        comptage,
    })
}

fn services_of(consent: &Consent, today: jiff::civil::Date) -> Vec<Service> {
    let active = consent.active(today);
    let (etat_code, etat_libelle) = if active {
        ("ACTIF", "Actif")
    } else {
        ("TERMINE", "Terminé")
    };
    let date_fin = consent
        .revoked
        .filter(|r| *r < consent.expires)
        .unwrap_or(consent.expires);
    let mut out = Vec::new();
    for prm in &consent.prms {
        let meter = catalogue::meter(*prm);
        for direction in [Direction::Consumption, Direction::Production] {
            if !meter.kind.has(direction) {
                continue;
            }
            let mut types: Vec<(&'static str, String)> = Vec::new();
            if meter.load_curve {
                types.push(("CDC", format!("PT{}M", meter.step_minutes)));
            }
            types.push(("ENERGIE", "P1D".to_owned()));
            if direction == Direction::Consumption {
                types.push(("PMAX", "P1D".to_owned()));
            }
            types.push(("IDX", "P1D".to_owned()));
            for (code, pas) in types {
                out.push(Service {
                    id: String::new(),
                    injection: direction == Direction::Production,
                    soutirage: direction == Direction::Consumption,
                    service_code: "ACCES",
                    date_debut: consent.granted.to_string(),
                    date_fin: date_fin.to_string(),
                    etat_code,
                    etat_libelle,
                    point_id: prm.to_string(),
                    mesures_type_code: code,
                    mesures_pas: pas,
                    periodicite_transmission: "P1D",
                    mesures_corrigees: false,
                    espace_dynamique: false,
                    publication_donnees: false,
                    autorisation: Autorisation {
                        autorisation_id: consent.id,
                        autorisation_libelle: "Autorisation Data Connect",
                        autorisation_type: "EXPLICITE",
                    },
                });
            }
        }
    }
    for (i, s) in out.iter_mut().enumerate() {
        s.id = format!("{}{:03}", consent.id, i + 1);
    }
    out
}

pub async fn search(
    State(sim): State<Sim>,
    Extension(_holder): Extension<Holder>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return Refusal::OutsideSwagger(format!("method {method} on subscribed_services"))
            .response(Gen::Api2026);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return bad("Le Content-Type doit être application/json");
    }
    let c = match criteria(&body) {
        Ok(c) => c,
        Err(message) => return bad(message),
    };
    let today = sim.today();
    // A search by SIREN only finds nothing: the simulator holds no company.
    let by_siren_only = c.autorisation_id.is_none() && c.point_ids.is_none();
    let services: Vec<Service> = if by_siren_only {
        Vec::new()
    } else {
        let st = sim.lock();
        st.consents
            .values()
            .filter(|consent| c.autorisation_id.is_none_or(|id| consent.id == id))
            .flat_map(|consent| services_of(consent, today))
            .filter(|s| {
                c.point_ids
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|p| p.as_str() == s.point_id))
            })
            .filter(|s| c.etat.iter().any(|e| e == s.etat_code))
            .filter(|s| c.service_type == s.service_code)
            .filter(|s| {
                c.mesure_types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|x| x == s.mesures_type_code))
            })
            .filter(|s| c.soutirage.is_none_or(|v| !v || s.soutirage))
            .filter(|s| c.injection.is_none_or(|v| !v || s.injection))
            .collect()
    };
    let answer = Answer {
        nb_total_services: services.len() as u64,
        service_souscrit: (!c.comptage).then_some(services),
    };
    Json(answer).into_response()
}
