//! Every captured Enedis response (tests/fixtures/enedis-2026/, copied from
//! ../shared/reference/enedis-2026/fixtures/) against the simulator's answer to the
//! same kind of request: same field names in the same order, same JSON types,
//! strings stay strings with the same timestamp/number formats, the same enum
//! values, and a JSON content type.

use enedis_sim::harness as sim;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// JSON that keeps object key order (serde_json's map sorts keys here).
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E: de::Error>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<J, E> {
                Ok(J::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<J, E> {
                Ok(J::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<J, E> {
                Ok(J::Num(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(J::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, J>()? {
                    out.push((k, v));
                }
                Ok(J::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Fields whose values are enumerations: they must be equal, not just alike.
const ENUM_FIELDS: &[&str] = &[
    "etapeMetier",
    "modeCalcul",
    "typeValeur",
    "pas",
    "grandeurMetier",
    "grandeurPhysique",
    "unite",
    "p",
    "n",
    "iv",
    "ec",
    "quality",
    "unit",
    "measurement_kind",
    "aggregate",
    "interval_length",
    "measure_type",
    "contract_type",
    "segment",
    "services_level",
    "distribution_tariff",
    "code",
    "message",
    "description",
];

/// The format class of a string: digits become 9, so dates, local times,
/// offset times and integers each have their own template.
fn class(s: &str) -> String {
    if s == "<masque>" {
        return "masked".to_owned();
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return "integer".to_owned();
    }
    let template: String = s
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    const KNOWN: [&str; 3] = [
        "9999-99-99",
        "9999-99-99 99:99:99",
        "9999-99-99T99:99:99+9999",
    ];
    if KNOWN.contains(&template.as_str()) {
        template
    } else {
        "text".to_owned()
    }
}

fn kind(j: &J) -> &'static str {
    match j {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Num(_) => "number",
        J::Str(_) => "string",
        J::Arr(_) => "array",
        J::Obj(_) => "object",
    }
}

fn compare(path: &str, field: &str, fixture: &J, actual: &J, errors: &mut Vec<String>) {
    match (fixture, actual) {
        (J::Obj(f), J::Obj(a)) => {
            let fk: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
            let ak: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
            if fk != ak {
                errors.push(format!("{path}: keys {ak:?}, expected {fk:?}"));
                return;
            }
            for ((k, fv), (_, av)) in f.iter().zip(a) {
                compare(&format!("{path}.{k}"), k, fv, av, errors);
            }
        }
        (J::Arr(f), J::Arr(a)) => {
            if f.is_empty() {
                if !a.is_empty() {
                    errors.push(format!("{path}: expected an empty array"));
                }
                return;
            }
            if a.is_empty() {
                errors.push(format!("{path}: empty array, expected elements"));
                return;
            }
            for (i, av) in a.iter().enumerate() {
                let fv = if f.len() == a.len() { &f[i] } else { &f[0] };
                compare(&format!("{path}[{i}]"), field, fv, av, errors);
            }
        }
        (J::Str(f), J::Str(a)) => {
            if ENUM_FIELDS.contains(&field) {
                if f != a {
                    errors.push(format!("{path}: {a:?}, expected {f:?}"));
                }
            } else {
                let (fc, ac) = (class(f), class(a));
                if fc != "masked" && fc != "text" && fc != ac {
                    errors.push(format!(
                        "{path}: {a:?} has format {ac}, expected {fc} like {f:?}"
                    ));
                }
            }
        }
        (f, a) if kind(f) == kind(a) => {}
        (f, a) => errors.push(format!("{path}: {} instead of {}", kind(a), kind(f))),
    }
}

/// The simulator question matching each captured fixture.
fn question(fixture: &str) -> Option<&'static str> {
    Some(match fixture {
        "donnees_generales.json" => "/donnees_generales_auto/v1/22516914714270",
        "erreur_comptage_non_souscrit.json" => "/comptage_auto/v1/22516914714270",
        "mesure_consommation_quotidienne.json" => {
            "/mesure_synchrone_auto/v2/consommation_quotidienne?pointId=22516914714270&dateDebut=2026-09-29&dateFin=2026-10-01"
        }
        "mesure_courbe_de_charge_consommation.json" => {
            "/mesure_synchrone_auto/v2/courbe_de_charge_consommation?pointId=22516914714270&dateDebut=2026-09-29&dateFin=2026-10-01"
        }
        "mesure_courbe_de_charge_production.json" => {
            "/mesure_synchrone_auto/v2/courbe_de_charge_production?pointId=24880057139941&dateDebut=2026-09-29&dateFin=2026-10-01"
        }
        "mesure_production_quotidienne.json" => {
            "/mesure_synchrone_auto/v2/production_quotidienne?pointId=24880057139941&dateDebut=2026-09-29&dateFin=2026-10-01"
        }
        "mesure_puissance_conso_max_quotidienne.json" => {
            "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne?pointId=22516914714270&dateDebut=2026-09-29&dateFin=2026-10-01&mesuresPas=P1D&grandeurPhysique=PMA"
        }
        "situation_contrat_autoconsommation.json" => "/situation_contrat_auto/v1/12655648759651",
        "situation_contrat_consommateur.json" => "/situation_contrat_auto/v1/22516914714270",
        "synth_contrat_autoconsommation.json" => "/synth_contrat_auto/v1/12655648759651",
        "synth_contrat_consommateur.json" => "/synth_contrat_auto/v1/22516914714270",
        "v5_consumption_load_curve.json" => {
            "/metering_data_clc/v5/consumption_load_curve?usage_point_id=22516914714270&start=2026-09-29&end=2026-10-01"
        }
        _ => return None,
    })
}

/// Timestamps of a load curve, in order (`d` in 2026, `date` in v5).
fn stamps(j: &J, out: &mut Vec<String>) {
    match j {
        J::Obj(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("d" | "date", J::Str(s)) => out.push(s.clone()),
                    _ => stamps(v, out),
                }
            }
        }
        J::Arr(a) => a.iter().for_each(|v| stamps(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_fixture_has_the_same_structure_as_the_simulator_answer() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/enedis-2026");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        12,
        "all captured fixtures are copied: {names:?}"
    );

    let sim = sim::Sim::start(&["--today", "2026-10-04", "--quota-per-second", "0"]);
    let token = sim.app_token().await;
    let mut failures = Vec::new();
    for name in &names {
        let Some(path) = question(name) else {
            failures.push(format!("{name}: no matching simulator question"));
            continue;
        };
        let text = std::fs::read_to_string(format!("{dir}/{name}")).expect("fixture");
        let fixture: J = serde_json::from_str(&text).expect("fixture JSON");
        let response = sim.get(&token, path).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.text().await.expect("body");
        let expected_status = if name.starts_with("erreur_comptage") {
            403
        } else {
            200
        };
        if status != expected_status {
            failures.push(format!(
                "{name}: status {status}, expected {expected_status}: {body}"
            ));
            continue;
        }
        if !content_type.starts_with("application/json") {
            failures.push(format!("{name}: content-type {content_type:?}"));
        }
        let actual: J = match serde_json::from_str(&body) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{name}: not JSON ({e}): {body}"));
                continue;
            }
        };
        let mut errors = Vec::new();
        compare(name, "", &fixture, &actual, &mut errors);
        // Same period, same step: the very same timestamps, in the same order.
        if name.contains("courbe_de_charge") || name.starts_with("v5_") {
            let (mut f, mut a) = (Vec::new(), Vec::new());
            stamps(&fixture, &mut f);
            stamps(&actual, &mut a);
            if f != a {
                errors.push(format!(
                    "{name}: load-curve timestamps differ from the capture"
                ));
            }
        }
        if name.starts_with("erreur_") && fixture != actual {
            errors.push(format!("{name}: error body differs: {body}"));
        }
        failures.extend(errors);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_structure_check_catches_differences() {
    let parse = |s: &str| serde_json::from_str::<J>(s).unwrap();
    let check = |f: &str, a: &str| {
        let mut e = Vec::new();
        compare("x", "", &parse(f), &parse(a), &mut e);
        e
    };
    assert!(
        check(
            r#"{"a":"1","b":"2026-01-01"}"#,
            r#"{"a":"7","b":"2026-02-03"}"#
        )
        .is_empty()
    );
    assert!(
        !check(r#"{"a":"1","b":"2"}"#, r#"{"b":"2","a":"1"}"#).is_empty(),
        "order"
    );
    assert!(
        !check(r#"{"v":"1"}"#, r#"{"v":1}"#).is_empty(),
        "string vs number"
    );
    assert!(
        !check(
            r#"{"d":"2026-01-01 00:30:00"}"#,
            r#"{"d":"2026-01-01T00:30:00"}"#
        )
        .is_empty()
    );
    assert!(
        !check(r#"{"p":"PT30M"}"#, r#"{"p":"PT10M"}"#).is_empty(),
        "enum value"
    );
    assert!(
        !check(r#"{"c":[]}"#, r#"{"c":[1]}"#).is_empty(),
        "empty array"
    );
}
