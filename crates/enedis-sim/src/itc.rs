//! Contract and customer data: the 2026 ITC APIs (`situation_contrat_auto`,
//! `synth_contrat_auto`, `donnees_generales_auto`, `comptage_auto`, PRM in the path)
//! and the v5 customer APIs (`customers_*`, PRM in the query).
//!
//! The 2026 shapes follow the captured fixtures field for field (the captures are
//! masked: the simulator fills them with synthetic people and places drawn from the
//! PRM). `comptage_auto` answers 403 `900908`, as it did for the application the
//! captures come from (not subscribed).

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use axum::{Json, Router};
use jiff::ToSpan;
use jiff::civil::Date;
use serde::Serialize;

use crate::model::Prm;

use super::catalogue::{self, Kind, Meter};
use super::errors::{Gen, Refusal};
use super::metering::{param, parse_query, parse_usage_point};
use super::state::{Holder, Sim};
use super::synth::{itc_date, midnight_offset, seed, unit};

/// A synthetic customer, drawn from the PRM.
struct Customer {
    customer_id: String,
    title: &'static str,
    firstname: &'static str,
    lastname: &'static str,
    email: String,
    phone: String,
    landline: String,
    number: u32,
    street: &'static str,
    postal_code: &'static str,
    city: &'static str,
    insee: &'static str,
    latitude: &'static str,
    longitude: &'static str,
    kva: u32,
    contract_start: Date,
}

const FIRST: [(&str, &str); 6] = [
    ("M.", "Jean"),
    ("Mme", "Camille"),
    ("M.", "Karim"),
    ("Mme", "Sandra"),
    ("M.", "Louis"),
    ("Mme", "Inès"),
];
const LAST: [&str; 6] = ["Martin", "Bernard", "Moreau", "Laurent", "Garnier", "Roux"];
const STREETS: [&str; 5] = [
    "RUE DES LILAS",
    "AVENUE JEAN JAURES",
    "CHEMIN DU MOULIN",
    "PLACE DE LA MAIRIE",
    "ALLEE DES TILLEULS",
];
/// (postal code, city, INSEE code, latitude, longitude)
const PLACES: [(&str, &str, &str, &str, &str); 4] = [
    ("69003", "LYON", "69383", "45.759723", "4.842223"),
    ("32400", "MAULICHERES", "32244", "43.687253", "-0.087957"),
    ("44000", "NANTES", "44109", "47.218371", "-1.553621"),
    (
        "63000",
        "CLERMONT-FERRAND",
        "63113",
        "45.777222",
        "3.087025",
    ),
];
const KVA: [u32; 4] = [6, 9, 12, 15];

fn pick<T: Copy>(items: &[T], s: u64, tag: u64) -> T {
    items[(unit(s, tag, 0) * items.len() as f64) as usize % items.len()]
}

fn customer(meter: &Meter) -> Customer {
    let s = seed(meter.prm);
    let (title, firstname) = pick(&FIRST, s, 11);
    let lastname = pick(&LAST, s, 12);
    let (postal_code, city, insee, latitude, longitude) = pick(&PLACES, s, 13);
    let digits = |tag: u64, n: usize| -> String {
        (0..n)
            .map(|i| char::from(b'0' + (unit(s, tag, i as i64) * 10.0) as u8 % 10))
            .collect()
    };
    let days = (unit(s, 16, 0) * 2000.0) as i64;
    Customer {
        customer_id: format!("1{}", digits(14, 9)),
        title,
        firstname,
        lastname,
        email: format!(
            "{}.{}@example.fr",
            firstname.to_lowercase().replace('è', "e"),
            lastname.to_lowercase()
        ),
        phone: format!("06{}", digits(15, 8)),
        landline: format!("04{}", digits(17, 8)),
        number: 1 + (unit(s, 18, 0) * 120.0) as u32,
        street: pick(&STREETS, s, 19),
        postal_code,
        city,
        insee,
        latitude,
        longitude,
        kva: pick(&KVA, s, 20),
        contract_start: meter.activation.saturating_add(days.days()),
    }
}

// ---------------------------------------------------------------- 2026 ITC

#[derive(Serialize)]
struct Contract {
    usage_point_id: String,
    contract_start: String,
    contract_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contractor: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution_tariff: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribed_power: Option<Power>,
    segment: &'static str,
    customer: CustomerWrap,
    contact_data: ContactData,
    person: Person,
}

#[derive(Serialize)]
struct Power {
    unit: &'static str,
    value: String,
}

#[derive(Serialize)]
struct CustomerWrap {
    customer: CustomerAddress,
}

#[derive(Serialize)]
struct CustomerAddress {
    adress: Adress,
}

#[derive(Serialize)]
struct Adress {
    line1: String,
    line4: String,
    line6: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line7: Option<&'static str>,
}

#[derive(Serialize)]
struct ContactData {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    landline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

#[derive(Serialize)]
struct Person {
    title: &'static str,
    lastname: &'static str,
    firstname: &'static str,
}

#[derive(Serialize)]
struct Synthese {
    segments: Vec<Segment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_last_activation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumption_last_activation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_subscribed_power_change_date: Option<String>,
    services_level: &'static str,
}

#[derive(Serialize)]
struct Segment {
    segment: &'static str,
}

#[derive(Serialize)]
struct DonneesGenerales {
    address: GeneralAddress,
}

#[derive(Serialize)]
struct GeneralAddress {
    number_street_name: String,
    postal_code_city: String,
    insee_code: &'static str,
}

#[derive(Serialize)]
struct Forbidden {
    code: &'static str,
    message: &'static str,
    description: &'static str,
}

/// Common checks of the ITC APIs; returns the meter.
fn itc_check(
    sim: &Sim,
    holder: Holder,
    method: &Method,
    prm: &str,
    query: Option<&str>,
) -> Result<Meter, Refusal> {
    if method != Method::GET {
        return Err(Refusal::OutsideSwagger(format!(
            "method {method} on an ITC API"
        )));
    }
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(Refusal::OutsideSwagger(
            "ITC APIs take the PRM in the path and no query parameter".to_owned(),
        ));
    }
    let prm: Prm = prm
        .parse()
        .map_err(|_| Refusal::InvalidRequest("Le PRM doit comporter 14 chiffres".to_owned()))?;
    if !sim.may_read(holder, prm) {
        return Err(Refusal::NoConsent);
    }
    Ok(catalogue::meter(prm))
}

fn contracts(meter: &Meter) -> Result<Vec<Contract>, Refusal> {
    let c = customer(meter);
    let person = || Person {
        title: c.title,
        lastname: c.lastname,
        firstname: c.firstname,
    };
    let adress = |line7: bool| Adress {
        line1: format!("{} {} {}", c.title, c.firstname, c.lastname.to_uppercase()),
        line4: format!("{} {}", c.number, c.street),
        line6: format!("{} {}", c.postal_code, c.city),
        line7: line7.then_some("FRANCE"),
    };
    let soutirage = |email: bool| -> Result<Contract, Refusal> {
        Ok(Contract {
            usage_point_id: meter.prm.to_string(),
            contract_start: itc_date(c.contract_start)?,
            contract_type: "Contrat GRD-F",
            contractor: Some("EDF"),
            distribution_tariff: Some(
                "Tarif BT<=36kVA Moyenne Utilisation heures pleines heures creuses associées à deux saisons",
            ),
            subscribed_power: Some(Power {
                unit: "kVA",
                value: c.kva.to_string(),
            }),
            segment: "C5",
            customer: CustomerWrap {
                customer: CustomerAddress {
                    adress: adress(true),
                },
            },
            contact_data: ContactData {
                email: email.then(|| c.email.clone()),
                landline: Some(c.landline.clone()),
                phone: Some(c.phone.clone()),
            },
            person: person(),
        })
    };
    let injection = || -> Result<Contract, Refusal> {
        Ok(Contract {
            usage_point_id: meter.prm.to_string(),
            contract_start: itc_date(meter.activation)?,
            contract_type: "Contrat GRD-A",
            contractor: None,
            distribution_tariff: None,
            subscribed_power: None,
            segment: "P4",
            customer: CustomerWrap {
                customer: CustomerAddress {
                    adress: adress(false),
                },
            },
            contact_data: ContactData {
                email: Some(c.email.clone()),
                landline: Some(c.landline.clone()),
                phone: None,
            },
            person: person(),
        })
    };
    Ok(match meter.kind {
        Kind::Consumption => vec![soutirage(false)?],
        Kind::SelfConsumption => vec![soutirage(true)?, injection()?],
        Kind::Production => vec![injection()?],
    })
}

const SERVICES_LEVEL: &str = "Communicant (ouvert aux services)";

fn synthese(meter: &Meter) -> Result<Synthese, Refusal> {
    let c = customer(meter);
    let consumes = meter.kind != Kind::Production;
    let produces = meter.kind != Kind::Consumption;
    let mut segments = Vec::new();
    if consumes {
        segments.push(Segment { segment: "C5" });
    }
    if produces {
        segments.push(Segment { segment: "P4" });
    }
    Ok(Synthese {
        segments,
        generation_last_activation_date: if produces {
            Some(itc_date(meter.activation)?)
        } else {
            None
        },
        consumption_last_activation_date: if consumes {
            Some(itc_date(meter.activation)?)
        } else {
            None
        },
        last_subscribed_power_change_date: if meter.kind == Kind::Consumption {
            Some(itc_date(c.contract_start)?)
        } else {
            None
        },
        services_level: SERVICES_LEVEL,
    })
}

fn itc_answer<T: Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.response(Gen::Api2026),
    }
}

/// The 2026 ITC paths and the v5 customer paths.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/situation_contrat_auto/v1/{prm}", itc_resource(contracts))
        .route("/synth_contrat_auto/v1/{prm}", itc_resource(synthese))
        .route(
            "/donnees_generales_auto/v1/{prm}",
            itc_resource(donnees_generales),
        )
        .route("/comptage_auto/v1/{prm}", any(comptage))
        .route("/customers_i/v5/identity", v5_resource(v5_identity))
        .route(
            "/customers_cd/v5/contact_data",
            v5_resource(v5_contact_data),
        )
        .route(
            "/customers_upc/v5/usage_points/contracts",
            v5_resource(v5_contracts),
        )
        .route(
            "/customers_upa/v5/usage_points/addresses",
            v5_resource(v5_addresses),
        )
}

/// A 2026 ITC resource (`/{api}/v1/{prm}`, any method: `itc_check` refuses all but
/// GET as Enedis does), answering `body` of the meter.
fn itc_resource<T: Serialize + 'static>(
    body: fn(&Meter) -> Result<T, Refusal>,
) -> MethodRouter<Sim> {
    any(
        move |State(sim): State<Sim>,
              Extension(holder): Extension<Holder>,
              method: Method,
              Path(prm): Path<String>,
              RawQuery(query): RawQuery| async move {
            itc_answer(
                itc_check(&sim, holder, &method, &prm, query.as_deref()).and_then(|m| body(&m)),
            )
        },
    )
}

fn donnees_generales(meter: &Meter) -> Result<DonneesGenerales, Refusal> {
    let c = customer(meter);
    Ok(DonneesGenerales {
        address: GeneralAddress {
            number_street_name: format!("{} {}", c.number, c.street),
            postal_code_city: format!("{} {}", c.postal_code, c.city),
            insee_code: c.insee,
        },
    })
}

/// The application is not subscribed to `comptage_auto` (as in the captures).
async fn comptage(
    Extension(_holder): Extension<Holder>,
    method: Method,
    RawQuery(query): RawQuery,
) -> Response {
    if method != Method::GET || query.is_some_and(|q| !q.is_empty()) {
        return Refusal::OutsideSwagger("comptage_auto takes GET with the PRM in the path".into())
            .response(Gen::Api2026);
    }
    (
        StatusCode::FORBIDDEN,
        Json(Forbidden {
            code: "900908",
            message: "Resource forbidden ",
            description: "User is NOT authorized to access the Resource. API Subscription validation failed.",
        }),
    )
        .into_response()
}

// ------------------------------------------------------------ v5 customers

/// `YYYY-MM-DD+01:00`, as the v5 contract API writes dates.
fn v5_date(day: Date) -> Result<String, Refusal> {
    Ok(format!("{day}{}", midnight_offset(day, ":")?))
}

fn v5_check(sim: &Sim, holder: Holder, query: Option<&str>) -> Result<Meter, Refusal> {
    let params = parse_query(query);
    let prm = parse_usage_point(param(&params, "usage_point_id"))?;
    if !sim.may_read(holder, prm) {
        return Err(Refusal::NoConsent);
    }
    Ok(catalogue::meter(prm))
}

fn v5_answer<T: Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.response(Gen::V5),
    }
}

/// A v5 customer resource (`GET`, PRM in `usage_point_id`), answering `body` of
/// the meter.
fn v5_resource<T: Serialize + 'static>(
    body: fn(&Meter) -> Result<T, Refusal>,
) -> MethodRouter<Sim> {
    get(
        move |State(sim): State<Sim>,
              Extension(holder): Extension<Holder>,
              RawQuery(query): RawQuery| async move {
            v5_answer(v5_check(&sim, holder, query.as_deref()).and_then(|m| body(&m)))
        },
    )
}

#[derive(Serialize)]
struct Identity {
    customer_id: String,
    identity: IdentityInner,
}

#[derive(Serialize)]
struct IdentityInner {
    natural_person: NaturalPerson,
}

#[derive(Serialize)]
struct NaturalPerson {
    title: &'static str,
    firstname: &'static str,
    lastname: &'static str,
}

#[derive(Serialize)]
struct Contact {
    customer_id: String,
    contact: ContactInner,
}

#[derive(Serialize)]
struct ContactInner {
    phone: String,
    email: String,
}

#[derive(Serialize)]
struct CustomerBody<T> {
    customer: CustomerPoints<T>,
}

#[derive(Serialize)]
struct CustomerPoints<T> {
    customer_id: String,
    usage_points: Vec<T>,
}

#[derive(Serialize)]
struct ContractEntry {
    usage_point: UsagePoint,
    contracts: V5Contract,
}

#[derive(Serialize)]
struct UsagePoint {
    usage_point_id: String,
    usage_point_status: &'static str,
    meter_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_point_addresses: Option<V5Address>,
}

#[derive(Serialize)]
struct V5Contract {
    segment: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribed_power: Option<String>,
    last_activation_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution_tariff: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offpeak_hours: Option<&'static str>,
    contract_type: &'static str,
    contract_status: &'static str,
    last_distribution_tariff_change_date: String,
}

#[derive(Serialize)]
struct AddressEntry {
    usage_point: UsagePoint,
}

#[derive(Serialize)]
struct V5Address {
    street: String,
    postal_code: &'static str,
    insee_code: &'static str,
    city: &'static str,
    country: &'static str,
    geo_points: GeoPoints,
}

#[derive(Serialize)]
struct GeoPoints {
    latitude: &'static str,
    longitude: &'static str,
    altitude: &'static str,
}

fn v5_identity(m: &Meter) -> Result<Identity, Refusal> {
    Ok({
        let c = customer(m);
        Identity {
            customer_id: c.customer_id,
            identity: IdentityInner {
                natural_person: NaturalPerson {
                    title: c.title,
                    firstname: c.firstname,
                    lastname: c.lastname,
                },
            },
        }
    })
}

fn v5_contact_data(m: &Meter) -> Result<Contact, Refusal> {
    Ok({
        let c = customer(m);
        Contact {
            customer_id: c.customer_id,
            contact: ContactInner {
                phone: c.phone,
                email: c.email,
            },
        }
    })
}

fn v5_contracts(m: &Meter) -> Result<CustomerBody<ContractEntry>, Refusal> {
    {
        let c = customer(m);
        let consumes = m.kind != Kind::Production;
        Ok(CustomerBody {
            customer: CustomerPoints {
                customer_id: c.customer_id.clone(),
                usage_points: vec![ContractEntry {
                    usage_point: UsagePoint {
                        usage_point_id: m.prm.to_string(),
                        usage_point_status: "com",
                        meter_type: "AMM",
                        usage_point_addresses: None,
                    },
                    contracts: V5Contract {
                        segment: if consumes { "C5" } else { "P4" },
                        subscribed_power: consumes.then(|| format!("{} kVA", c.kva)),
                        last_activation_date: v5_date(m.activation)?,
                        distribution_tariff: consumes.then_some("BTINFMUDT"),
                        offpeak_hours: consumes.then_some("HC (22H00-6H00)"),
                        contract_type: if consumes { "CRAE" } else { "CARD-I" },
                        contract_status: "SERVC",
                        last_distribution_tariff_change_date: v5_date(c.contract_start)?,
                    },
                }],
            },
        })
    }
}

fn v5_addresses(m: &Meter) -> Result<CustomerBody<AddressEntry>, Refusal> {
    Ok({
        let c = customer(m);
        CustomerBody {
            customer: CustomerPoints {
                customer_id: c.customer_id.clone(),
                usage_points: vec![AddressEntry {
                    usage_point: UsagePoint {
                        usage_point_id: m.prm.to_string(),
                        usage_point_status: "com",
                        meter_type: "AMM",
                        usage_point_addresses: Some(V5Address {
                            street: format!("{} {}", c.number, c.street),
                            postal_code: c.postal_code,
                            insee_code: c.insee,
                            city: c.city,
                            country: "France",
                            geo_points: GeoPoints {
                                latitude: c.latitude,
                                longitude: c.longitude,
                                altitude: "150",
                            },
                        }),
                    },
                }],
            },
        }
    })
}
