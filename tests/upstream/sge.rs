//! The SGE (B2B SOAP) client: every request it writes validates against Enedis'
//! XSD (`xmllint --schema`); the real example answers of `tests/fixtures/sge/`
//! read into normalised readings (counts, first and last stamps in UTC, steps,
//! values); CDTC and the access orders read from answers that validate against
//! their XSD; then the client against the simulator over real mutual TLS:
//! C5 and C4 curves and energy normalised (the energy of each day is the integral
//! of that day's curve, which only holds if the curve was stamped right), a week
//! of curve in one call, SGT faults with their codes and no retry, a foreign
//! certificate refused at the handshake without any secret in the error, and the
//! quota's `Ask` honoured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::{Date, date};
use quoalise_agent::config::Secret;
use quoalise_agent::quoalise::{
    Calendar, ClassCode, Direction, Prm, Reading, Series, Step, TimeClass,
};
use quoalise_agent::time::day_start;
use quoalise_agent::upstream::http::Tally;
use quoalise_agent::upstream::sge::access::{
    AccessOrder, AccessStop, Civility, Consent, DataType, Periodicity, Person, Publication,
    ServiceOrder,
};
use quoalise_agent::upstream::sge::measures::{
    self, AccessFrame, MaxPowerStep, MeasuresRequest, Quantity, Stamping,
};
use quoalise_agent::upstream::sge::{
    FaultKind, SgeClient, SgeError, SgeSettings, access, soap, technical,
};
use quoalise_agent::upstream::{Ask, Class, ErrorKind, QuotaLimiter, UpstreamError};

use crate::common::sim::Sim;

const C5: &str = "09111642617347";
const C4: &str = "30001642617347";
const LOGIN: &str = "sge-tiers@votre-entreprise.fr";
/// The day after the examples' last `dateFin`, for the simulator.
const TODAY: &str = "2023-05-02";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sge")
}

fn fixture(path: &str) -> Vec<u8> {
    let path = fixtures().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn utc(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

// ------------------------------------------------------------------ XSD

const CMD_XSD: &str =
    "xsd/ConsultationMesuresDetailleesV3/ADAM.ConsulterMesuresDetailleesCommun.xsd";
const CDTC_XSD: &str = "xsd/ConsultationDonneesTechniquesContractuelles/Services/ConsultationDonneesTechniquesContractuelles/ConsulterDonneesTechniquesContractuelles-v1.0.xsd";
const ORDER_XSD: &str =
    "xsd/AccesDonneesOptionPublication/xsd/CommanderServicesAccesDonnees-V1.0.xsd";
const STOP_XSD: &str =
    "xsd/AccesDonneesOptionPublication/xsd/CommanderArretServicesAccesDonnees-V1.0.xsd";

/// `xmllint --schema`'s verdict on `xml` (a SOAP body's payload element).
fn validate(xsd: &str, xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(fixtures().join(xsd))
        .arg(&file)
        .output()
        .expect("xmllint (libxml2-utils, scripts/setup-system.sh)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn assert_valid(xsd: &str, xml: &str) {
    if let Err(e) = validate(xsd, xml) {
        panic!("{xml}\ndoes not validate against {xsd}:\n{e}");
    }
}

/// The payload element of a SOAP answer, as text.
fn body_of(envelope: &[u8]) -> String {
    let text = String::from_utf8(envelope.to_vec()).unwrap();
    let open = text.find("<soap:Body>").unwrap() + "<soap:Body>".len();
    let close = text.find("</soap:Body>").unwrap();
    text[open..close].trim().to_owned()
}

#[test]
fn every_request_validates_against_its_xsd() {
    let from = date(2023, 4, 1);
    let to = date(2023, 4, 8);
    let requests = [
        MeasuresRequest::curve(prm(C5), from, to),
        MeasuresRequest::energy(prm(C5), from, to),
        MeasuresRequest::max_power(prm(C5), from, to),
        MeasuresRequest::max_power(prm(C5), from, to).with_max_power_step(MaxPowerStep::Monthly),
        MeasuresRequest::index(prm(C4), from, to),
        MeasuresRequest::curve(prm(C4), from, to)
            .with_quantity(Quantity::InductiveReactive)
            .with_corrected(true),
        MeasuresRequest::curve(prm(C4), from, to)
            .with_direction(Direction::Production)
            .with_access(AccessFrame::AccessService),
        MeasuresRequest::energy(prm(C4), from, to).with_access(AccessFrame::Holder),
    ];
    for request in &requests {
        assert_valid(CMD_XSD, &request.payload(LOGIN));
    }
    // The control: the validation does refuse a payload out of the schema.
    let broken = requests[0]
        .payload(LOGIN)
        .replace("<sens>SOUTIRAGE</sens>", "<sens>BOTH</sens>");
    assert!(validate(CMD_XSD, &broken).is_err());
    let misordered = requests[0].payload(LOGIN).replace(
        "<mesuresCorrigees>false</mesuresCorrigees><sens>SOUTIRAGE</sens>",
        "<sens>SOUTIRAGE</sens><mesuresCorrigees>false</mesuresCorrigees>",
    );
    assert!(validate(CMD_XSD, &misordered).is_err());

    assert_valid(CDTC_XSD, &technical::payload(&prm(C5), LOGIN));

    let natural = AccessOrder {
        prm: prm(C5),
        reference: Some("quoalise-42".to_owned()),
        end: Some(date(2026, 1, 1)),
        direction: Direction::Consumption,
        consent: Some(Consent {
            given: true,
            person: Some(Person::Natural {
                civility: Some(Civility::Mrs),
                last_name: "Dupont & Fils".to_owned(),
                first_name: Some("Zoé".to_owned()),
            }),
        }),
        services: vec![
            ServiceOrder {
                data: DataType::Curve,
                publications: vec![Publication {
                    corrected: Some(false),
                    periodicity: Periodicity::Daily,
                }],
            },
            ServiceOrder {
                data: DataType::Index,
                publications: Vec::new(),
            },
            ServiceOrder {
                data: DataType::MaxPower,
                publications: vec![Publication {
                    corrected: None,
                    periodicity: Periodicity::Monthly,
                }],
            },
        ],
    };
    let legal = AccessOrder {
        reference: None,
        end: None,
        direction: Direction::Production,
        consent: Some(Consent {
            given: true,
            person: Some(Person::Legal {
                name: "ACME SAS".to_owned(),
            }),
        }),
        services: vec![ServiceOrder {
            data: DataType::Energy,
            publications: vec![Publication {
                corrected: None,
                periodicity: Periodicity::Weekly,
            }],
        }],
        ..natural.clone()
    };
    let anonymous = AccessOrder {
        consent: None,
        ..legal.clone()
    };
    for order in [&natural, &legal, &anonymous] {
        assert_valid(ORDER_XSD, &order.payload(LOGIN, "1234567").unwrap());
    }
    let stop = AccessStop {
        prm: prm(C5),
        reference: None,
        direction: Direction::Consumption,
        services: vec!["64697749".to_owned(), "64697750".to_owned()],
    };
    assert_valid(STOP_XSD, &stop.payload(LOGIN, "1234567").unwrap());

    // What the XSD would refuse is refused before it is sent.
    let empty = AccessOrder {
        services: Vec::new(),
        ..natural.clone()
    };
    assert!(matches!(
        empty.payload(LOGIN, "1234567"),
        Err(SgeError::BadRequest(_))
    ));
    let nameless = AccessOrder {
        consent: Some(Consent {
            given: true,
            person: Some(Person::Legal {
                name: "  ".to_owned(),
            }),
        }),
        ..natural
    };
    assert!(matches!(
        nameless.payload(LOGIN, "1234567"),
        Err(SgeError::BadRequest(_))
    ));
}

// --------------------------------------------------- the real example answers

/// Read an example answer to the example request `case` (whose dates it gives).
fn example(case: &str, request: MeasuresRequest) -> measures::Measures {
    let answer = fixture(&format!("cmd-v3/{case}/response.xml"));
    let envelope = soap::read_envelope(&answer).unwrap();
    // The example request is the one our client writes, field for field.
    let theirs = String::from_utf8(fixture(&format!("cmd-v3/{case}/request.xml"))).unwrap();
    for (field, value) in [
        ("pointId", request.prm.as_str().to_owned()),
        ("dateDebut", request.from.to_string()),
        ("dateFin", request.to.to_string()),
    ] {
        assert!(
            theirs.contains(&format!("<{field}>{value}</{field}>")),
            "{case}: {field}"
        );
    }
    measures::parse(&request, envelope.payload().unwrap()).unwrap()
}

fn check(readings: &[Reading], count: usize, first: (&str, f64), last: (&str, f64), step: Step) {
    assert_eq!(readings.len(), count);
    assert_eq!(readings[0].start, utc(first.0));
    assert_eq!(readings[0].value, Some(first.1));
    let l = readings.last().unwrap();
    assert_eq!(l.start, utc(last.0));
    assert_eq!(l.value, Some(last.1));
    assert!(readings.iter().all(|r| r.step == step));
    assert!(readings.windows(2).all(|w| w[0].start < w[1].start));
}

#[test]
fn example_curves_are_stamped_at_their_start_in_utc() {
    let week = (date(2023, 4, 1), date(2023, 4, 7));
    // C5: stamped at the END upstream (00:30 … 04-07 00:00), PT30M, W.
    let m = example("C5-PA", MeasuresRequest::curve(prm(C5), week.0, week.1));
    let g = &m.grandeurs[0];
    assert_eq!(g.stamping, Some(Stamping::End));
    assert_eq!((g.quantity.as_str(), g.unit.as_str()), ("PA", "W"));
    check(
        &g.readings,
        288,
        ("2023-03-31T22:00:00Z", 1268.0),
        ("2023-04-06T21:30:00Z", 2106.0),
        Step::Minutes(30),
    );
    // C4: stamped at the START upstream (00:00 … 23:55), PT5M.
    let m = example("C4-PA", MeasuresRequest::curve(prm(C4), week.0, week.1));
    let g = &m.grandeurs[0];
    assert_eq!(g.stamping, Some(Stamping::Start));
    check(
        &g.readings,
        1728,
        ("2023-03-31T22:00:00Z", 25000.0),
        ("2023-04-06T21:55:00Z", 11000.0),
        Step::Minutes(5),
    );
    let m = example(
        "C4-PRI",
        MeasuresRequest::curve(prm(C4), week.0, week.1).with_quantity(Quantity::InductiveReactive),
    );
    let g = &m.grandeurs[0];
    assert_eq!((g.quantity.as_str(), g.unit.as_str()), ("PRI", "VAr"));
    check(
        &g.readings,
        1728,
        ("2023-03-31T22:00:00Z", 2000.0),
        ("2023-04-06T21:55:00Z", 0.0),
        Step::Minutes(5),
    );
}

#[test]
fn example_energy_and_maxima_are_paris_days() {
    let april = (date(2023, 4, 1), date(2023, 5, 1));
    let m = example(
        "C5-ENERGIE",
        MeasuresRequest::energy(prm(C5), april.0, april.1),
    );
    check(
        &m.grandeurs[0].readings,
        30,
        ("2023-03-31T22:00:00Z", 22125.0),
        ("2023-04-29T22:00:00Z", 18455.0),
        Step::Day,
    );
    let m = example(
        "C4-ENERGIE",
        MeasuresRequest::energy(prm(C4), april.0, april.1),
    );
    check(
        &m.grandeurs[0].readings,
        30,
        ("2023-03-31T22:00:00Z", 185666.0),
        ("2023-04-29T22:00:00Z", 218166.0),
        Step::Day,
    );
    let m = example(
        "C5-PMAX",
        MeasuresRequest::max_power(prm(C5), april.0, april.1),
    );
    let g = &m.grandeurs[0];
    assert_eq!(g.unit, "VA");
    check(
        &g.readings,
        30,
        ("2023-03-31T22:00:00Z", 6241.0),
        ("2023-04-29T22:00:00Z", 5546.0),
        Step::Day,
    );
    assert_eq!(g.maxima.len(), 30);
    assert_eq!(g.maxima[0].reached, Some(utc("2023-04-01T07:13:20Z")));
    assert_eq!(g.maxima[29].reached, Some(utc("2023-04-30T07:06:03Z")));
}

fn class(calendar: Calendar, code: &str) -> TimeClass {
    TimeClass::new(calendar, ClassCode::new(code).unwrap())
}

#[test]
fn example_indexes_give_the_totalisator_and_every_class() {
    let april = (date(2023, 4, 1), date(2023, 5, 1));
    let consumption = Direction::Consumption;
    // C5: the totalisator is given; a distributor and a supplier calendar.
    let m = example(
        "C5-INDEX",
        MeasuresRequest::index(prm(C5), april.0, april.1),
    );
    let all = m.into_series(Series::EnergyIndex(consumption));
    assert_eq!(all.len(), 1 + 7, "the totalisator and 7 classes");
    let (series, total) = &all[0];
    assert_eq!(*series, Series::EnergyIndex(consumption));
    check(
        total,
        30,
        ("2023-03-31T22:00:00Z", 17007764.0),
        ("2023-04-29T22:00:00Z", 17522906.0),
        Step::Day,
    );
    let find = |all: &[(Series, Vec<Reading>)], c: TimeClass| {
        all.iter()
            .find(|(s, _)| *s == Series::ClassIndex(consumption, c))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no class {c}"))
    };
    let buhp = find(&all, class(Calendar::Provider, "buhp"));
    check(
        &buhp,
        30,
        ("2023-03-31T22:00:00Z", 1422334.0),
        ("2023-04-29T22:00:00Z", 1715033.0),
        Step::Day,
    );
    let base = find(&all, class(Calendar::Distributor, "base"));
    assert_eq!(base.last().unwrap().value, Some(17522906.0));

    // C4: no totalisator: the sum of the distributor calendar's four classes,
    // at the instants they were read (two contextes merged: 30 + 1 readings).
    let m = example(
        "C4-INDEX",
        MeasuresRequest::index(prm(C4), april.0, april.1),
    );
    let all = m.into_series(Series::ClassIndex(
        consumption,
        class(Calendar::Distributor, "hpe"),
    ));
    assert_eq!(
        all[0].0,
        Series::ClassIndex(consumption, class(Calendar::Distributor, "hpe")),
        "the series asked comes first"
    );
    let hpe = &all[0].1;
    check(
        hpe,
        31,
        ("2023-04-01T02:24:40Z", 146034000.0),
        ("2023-04-30T01:49:22Z", 149684000.0),
        Step::Day,
    );
    let total = &all
        .iter()
        .find(|(s, _)| *s == Series::EnergyIndex(consumption))
        .unwrap()
        .1;
    check(
        total,
        31,
        ("2023-04-01T02:24:40Z", 913239000.0),
        ("2023-04-30T01:49:22Z", 919201000.0),
        Step::Day,
    );
}

#[test]
fn a_fault_gives_its_sgt_code_and_kind() {
    // The layout of GUI.0488 §4.3's example (and of the simulator's faults).
    let xml = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
 <soap:Body>
  <soap:Fault>
   <faultcode>soap:Server</faultcode>
   <faultstring>Erreur Technique Mesures</faultstring>
   <detail>
    <ns3:erreur xmlns:ns3="http://www.enedis.fr/sge/b2b/technique/v1.0">
     <resultat code="SGT583">La demande ne peut pas aboutir, le sens de la mesure ne correspond pas.</resultat>
    </ns3:erreur>
   </detail>
  </soap:Fault>
 </soap:Body>
</soap:Envelope>"#;
    let envelope = soap::read_envelope(xml).unwrap();
    let fault = soap::fault(&envelope).unwrap();
    assert_eq!(fault.code.as_deref(), Some("SGT583"));
    assert_eq!(fault.faultcode, "Server");
    assert_eq!(
        fault.label.as_deref(),
        Some("La demande ne peut pas aboutir, le sens de la mesure ne correspond pas.")
    );
}

// ------------------------------------------------------ CDTC and the orders

#[test]
fn technical_data_reads_into_the_contract() {
    let answer = fixture("cdtc-response.xml");
    assert_valid(CDTC_XSD, &body_of(&answer));
    let envelope = soap::read_envelope(&answer).unwrap();
    let t = technical::parse(&prm(C5), envelope.payload().unwrap(), 1_700_000_000).unwrap();
    let c = &t.contract;
    assert_eq!(c.generation, "sge");
    assert_eq!(c.segments, ["C5"]);
    let power = c.subscribed_power.as_ref().unwrap();
    assert_eq!((power.value.as_str(), power.unit.as_str()), ("9", "kVA"));
    let tariff = c.tariff_option.as_ref().unwrap();
    assert_eq!(tariff.code.as_deref(), Some("BTINFMUDT"));
    assert_eq!(c.meter_type.as_ref().unwrap().code.as_deref(), Some("AMM"));
    assert_eq!(
        c.services_level.as_ref().unwrap().code.as_deref(),
        Some("2")
    );
    let off_peak = c.off_peak_hours.as_ref().unwrap();
    assert_eq!(off_peak.raw, "HC (22H00-6H00)", "the relay's hours first");
    assert_eq!(off_peak.ranges.len(), 1);
    use quoalise_agent::quoalise::contract::Changed;
    assert_eq!(c.last_change(Changed::TariffOption), Some(date(2021, 3, 2)));
    assert_eq!(
        c.last_change(Changed::SubscribedPower),
        Some(date(2022, 1, 15)),
        "the later of the last increase and decrease"
    );
    let address = c.address.as_ref().unwrap();
    assert_eq!(address.insee_code.as_deref(), Some("69383"));
    assert_eq!(address.postal_code.as_deref(), Some("69003"));
    assert_eq!(
        address.street.as_deref(),
        Some("Esc B Etage 2, 12 RUE DES LILAS")
    );
    assert!(c.activations.is_empty(), "CDTC gives no commissioning date");
    let x = &t.extras;
    assert_eq!(
        x.contractual_state.as_ref().unwrap().code.as_deref(),
        Some("SERVC")
    );
    assert_eq!(
        x.voltage_domain.as_ref().unwrap().label.as_deref(),
        Some("BT < 36 kVA")
    );
    assert_eq!(x.meter_serials, ["041967204522"]);
    assert_eq!(
        x.supplier_calendar.as_ref().unwrap().code.as_deref(),
        Some("FC000050")
    );
    // The contract element the agent sends peers is valid.
    let element = c.to_element();
    assert_eq!(
        quoalise_agent::quoalise::Contract::from_element(&element).unwrap(),
        *c
    );
    // An answer about another point is refused.
    assert!(technical::parse(&prm(C4), envelope.payload().unwrap(), 0).is_err());
}

#[test]
fn order_answers_give_the_affairs_and_the_acknowledgement() {
    let answer = fixture("order-response.xml");
    assert_valid(ORDER_XSD, &body_of(&answer));
    let read = access::parse_order(&soap::read_envelope(&answer).unwrap()).unwrap();
    let ack = read.acknowledgement.unwrap();
    assert_eq!(
        (ack.code.as_str(), ack.label.as_str()),
        ("SGT200", "Succès")
    );
    assert_eq!(read.affairs.len(), 2);
    assert_eq!(read.affairs[0].id, "M02SXITK");
    assert_eq!(read.affairs[0].service_id.as_deref(), Some("64697749"));
    assert_eq!(read.affairs[0].data.as_deref(), Some("CDC"));
    assert_eq!(read.affairs[0].prestation.as_deref(), Some("F300C"));
    assert_eq!(read.affairs[1].service_id.as_deref(), Some("64697750"));

    let answer = fixture("stop-response.xml");
    assert_valid(STOP_XSD, &body_of(&answer));
    let read = access::parse_stop(&soap::read_envelope(&answer).unwrap()).unwrap();
    assert_eq!(read.acknowledgement.unwrap().code, "SGT200");
    assert_eq!(read.affairs[0].id, "M02TZ01A");
    assert_eq!(read.affairs[0].service_id.as_deref(), Some("64697749"));
    // The answer of the other order is not taken for this one.
    assert!(
        access::parse_stop(&soap::read_envelope(&fixture("order-response.xml")).unwrap()).is_err()
    );
}

// ---------------------------------------------- against the simulator (mTLS)

fn settings(sim: &Sim, cert: &Path, key: &Path) -> SgeSettings {
    let dir = sim.sge_tls_dir();
    SgeSettings {
        endpoint: sim.sge_url("/").parse().unwrap(),
        certificate_pem: std::fs::read(cert).unwrap(),
        key_pem: Secret::new(std::fs::read_to_string(key).unwrap()),
        extra_roots_pem: Some(std::fs::read(dir.join("ca.pem")).unwrap()),
        login: LOGIN.to_owned(),
        contract_id: "1234567".to_owned(),
        timeout: Duration::from_secs(30),
        quota_wait: Duration::from_secs(30),
        max_retries: 1,
    }
}

fn agent_settings(sim: &Sim) -> SgeSettings {
    let dir = sim.sge_tls_dir();
    settings(sim, &dir.join("agent.pem"), &dir.join("agent.key"))
}

/// A client with a quota generous enough never to wait in these tests.
fn client(settings: &SgeSettings) -> SgeClient {
    SgeClient::new(settings, Arc::new(QuotaLimiter::new(100, 100_000))).unwrap()
}

async fn cmd_calls(sim: &Sim) -> u64 {
    sim.admin().total_calls().await
}

fn day_sums(readings: &[Reading], from: Date, days: i64) -> Vec<i64> {
    (0..days)
        .map(|i| {
            let day = from.checked_add(jiff::Span::new().days(i)).unwrap();
            let (start, end) = (
                day_start(day).unwrap(),
                day_start(day.tomorrow().unwrap()).unwrap(),
            );
            let watts: f64 = readings
                .iter()
                .filter(|r| r.start >= start && r.start < end)
                .map(|r| r.value.unwrap())
                .sum();
            let minutes = readings[0].step.nominal_seconds() / 60;
            (watts as i64 * minutes + 30) / 60
        })
        .collect()
}

/// `days` Paris days ending at least three days ago, none of them a DST day:
/// what `SgeClient::readings` serves today (it plans with the real clock, within
/// SGE's 24 months of curve), with whole days of 24 hours.
fn recent_plain_days(days: i64) -> (Date, Date) {
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let mut to = today.checked_sub(jiff::Span::new().days(3)).unwrap();
    loop {
        let from = to.checked_sub(jiff::Span::new().days(days)).unwrap();
        if day_start(to).unwrap() - day_start(from).unwrap() == days * 86_400 {
            return (from, to);
        }
        to = from;
    }
}

#[tokio::test]
async fn curves_and_energy_from_the_simulator_are_normalised() {
    // The real clock's days: readings() plans with it (the example dates of the
    // other tests are older than SGE's 24 months of curve).
    let sim = Sim::start_sge(&[]);
    let sge = client(&agent_settings(&sim));
    let (from, to) = recent_plain_days(7);
    let ask = Ask::peer("peer@example.net", Class::Interactive);
    for (point, minutes) in [(C5, 30i64), (C4, 5)] {
        sim.admin().clear_calls().await;
        let curve = sge
            .readings(prm(point), Series::ConsumptionPower, from, to, &ask)
            .await
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        assert_eq!(curve.calls, 1, "a week of curve is one call");
        assert_eq!(cmd_calls(&sim).await, 1);
        let per_day = (24 * 60 / minutes) as usize;
        assert_eq!(curve.readings.len(), 7 * per_day, "{point}");
        assert_eq!(curve.readings[0].start, day_start(from).unwrap());
        assert_eq!(
            curve.readings.last().unwrap().start,
            day_start(to).unwrap() - minutes * 60
        );
        assert!(
            curve
                .readings
                .iter()
                .all(|r| r.step == Step::Minutes(minutes as u16))
        );

        let energy = sge
            .readings(prm(point), Series::ConsumptionEnergyDaily, from, to, &ask)
            .await
            .unwrap();
        assert_eq!(energy.readings.len(), 7);
        assert_eq!(energy.readings[0].start, day_start(from).unwrap());
        assert!(energy.readings.iter().all(|r| r.step == Step::Day));
        // The simulator's energy of a day is the integral of that day's curve:
        // it matches only if the curve was stamped at the right end.
        let energies: Vec<i64> = energy
            .readings
            .iter()
            .map(|r| r.value.unwrap() as i64)
            .collect();
        assert_eq!(day_sums(&curve.readings, from, 7), energies, "{point}");
    }
}

/// SGE serves 24 months of curve: a period reaching further back is served from
/// the limit, with a note saying so, and the days before it cost no call; a
/// period wholly before it is refused without a call.
#[tokio::test]
async fn curves_older_than_sge_serves_are_left_out_with_a_note() {
    let sim = Sim::start_sge(&[]);
    let sge = client(&agent_settings(&sim));
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let days = |n: i64| today.checked_sub(jiff::Span::new().days(n)).unwrap();
    let ask = Ask::agent();

    let straddling = sge
        .readings(
            prm(C4),
            Series::ConsumptionPower,
            days(740),
            days(720),
            &ask,
        )
        .await
        .unwrap();
    assert!(straddling.from > days(740), "{:?}", straddling.from);
    assert_eq!(straddling.to, days(720));
    assert!(
        straddling.notes.iter().any(|n| n.contains("24 months")),
        "{:?}",
        straddling.notes
    );
    assert!(straddling.calls <= 3, "{} calls", straddling.calls);
    assert_eq!(
        straddling.readings.first().map(|r| r.start),
        Some(day_start(straddling.from).unwrap())
    );

    sim.admin().clear_calls().await;
    let e = sge
        .readings(
            prm(C4),
            Series::ConsumptionPower,
            days(900),
            days(890),
            &ask,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
    assert_eq!(cmd_calls(&sim).await, 0, "nothing asked of SGE");
}

#[tokio::test]
async fn sgt_faults_surface_with_their_code_and_are_not_retried() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let sge = client(&agent_settings(&sim));
    let tally = Tally::new(Ask::agent());
    // The C5 example point has no injection: SGT583.
    let request = MeasuresRequest::curve(prm(C5), date(2023, 4, 3), date(2023, 4, 10))
        .with_direction(Direction::Production);
    let e = sge.measures(&request, &tally).await.unwrap_err();
    let SgeError::Fault(fault) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(fault.code.as_deref(), Some("SGT583"));
    assert_eq!(fault.kind(), FaultKind::Functional);
    assert!(e.to_string().contains("SGT583"), "{e}");
    assert_eq!(tally.get(), 1, "a functional fault is not retried");
    assert_eq!(cmd_calls(&sim).await, 1);
    // As the agent sees it: a refusal carrying the SGT code.
    let upstream = UpstreamError::from(e);
    assert_eq!(upstream.kind(), ErrorKind::Refused);
    assert_eq!(upstream.enedis_code(), Some("SGT583"));

    // Eight days of curve: SGT4L8 through `readings`, which never asks more than 7.
    let eight = MeasuresRequest::curve(prm(C4), date(2023, 4, 1), date(2023, 4, 9));
    let e = sge.measures(&eight, &tally).await.unwrap_err();
    assert_eq!(e.sgt_code(), Some("SGT4L8"));
    // readings() plans with the real clock: recent days, on a simulator that
    // has the same today.
    let sim = Sim::start_sge(&[]);
    let sge = client(&agent_settings(&sim));
    let (from, to) = recent_plain_days(8);
    let fetched = sge
        .readings(prm(C4), Series::ConsumptionPower, from, to, &Ask::agent())
        .await
        .unwrap();
    assert_eq!(fetched.calls, 2, "8 days are two calls of at most 7");
    assert_eq!(fetched.readings.len(), 8 * 288);
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_at_the_handshake() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let other = tempfile::tempdir().unwrap();
    let foreign = enedis_sim::sge_tls::generate(other.path()).unwrap();
    let settings = settings(&sim, &foreign.agent_cert(), &foreign.agent_key());
    let key_text = settings.key_pem.expose().to_owned();
    let sge = client(&settings);
    let tally = Tally::new(Ask::agent());
    let request = MeasuresRequest::energy(prm(C5), date(2023, 4, 3), date(2023, 4, 10));
    let e = sge.measures(&request, &tally).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            SgeError::Transport {
                handshake: true,
                attempts: 1,
                ..
            }
        ),
        "a refused handshake is not retried: {e:?}"
    );
    assert!(
        text.contains("TLS handshake was refused") && text.contains("UnknownCA"),
        "the handshake's reason is said: {text}"
    );
    let key_body: String = key_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        !text.contains(&key_body) && !text.contains("PRIVATE KEY"),
        "{text}"
    );
    assert!(!format!("{e:?}{settings:?}").contains(&key_body));
    assert_eq!(cmd_calls(&sim).await, 0, "nothing reached the service");
    let upstream = UpstreamError::from(e);
    assert_eq!(upstream.kind(), ErrorKind::Unavailable);

    // Without the test CA among the roots, the agent refuses the server.
    let mut untrusting = agent_settings(&sim);
    untrusting.extra_roots_pem = None;
    let e = client(&untrusting)
        .measures(&request, &Tally::new(Ask::agent()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SgeError::Transport {
                handshake: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert_eq!(cmd_calls(&sim).await, 0);

    // A certificate without its key is refused when the client is made.
    let mut broken = agent_settings(&sim);
    broken.key_pem = Secret::new("not a key");
    let e = SgeClient::new(&broken, Arc::new(QuotaLimiter::new(1, 10))).unwrap_err();
    assert!(matches!(e, SgeError::Config(_)), "{e:?}");
    assert!(!e.to_string().contains("not a key"));
}

#[tokio::test]
async fn calls_wait_in_the_quota_under_the_callers_ask() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let limiter = Arc::new(QuotaLimiter::new(100, 100_000));
    let metrics = quoalise_agent::metrics::Metrics::new();
    let sge = SgeClient::new(&agent_settings(&sim), Arc::clone(&limiter))
        .unwrap()
        .with_metrics(metrics.clone());
    // A peer allowed one call an hour: its first call goes, its second is refused
    // by its own budget before anything is sent; another peer still gets through.
    let capped = Ask::peer("capped@example.net", Class::Interactive).with_budget(1, Some(1));
    let request = MeasuresRequest::energy(prm(C5), date(2023, 4, 3), date(2023, 4, 10));
    let first = Tally::new(capped.clone());
    sge.measures(&request, &first).await.unwrap();
    let second = Tally::new(capped);
    let e = sge.measures(&request, &second).await.unwrap_err();
    let SgeError::Quota { limit, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*limit, "peer-budget");
    assert_eq!(second.get(), 0);
    assert_eq!(cmd_calls(&sim).await, 1);
    let upstream = UpstreamError::from(e);
    assert!(matches!(
        upstream,
        UpstreamError::Quota {
            limit: "peer-budget",
            ..
        }
    ));
    let other = Tally::new(Ask::peer("other@example.net", Class::Interactive));
    sge.measures(&request, &other).await.unwrap();
    assert_eq!(cmd_calls(&sim).await, 2);
    assert_eq!(limiter.calls_last_hour(), 2);
    let rendered = metrics.render();
    let line = rendered
        .lines()
        .find(|l| l.contains("ConsultationMesuresDetaillees/v3.0") && l.contains("200"))
        .unwrap_or_else(|| panic!("no SGE call in /metrics:\n{rendered}"));
    assert!(line.ends_with(" 2"), "{line}");
}

/// A plain-HTTP stand-in for SGE on 127.0.0.1 answering every POST with
/// `status` and `body`, counting the posts and keeping the last one's headers.
struct Stub {
    url: String,
    posts: Arc<std::sync::atomic::AtomicU32>,
    soap_action: Arc<std::sync::Mutex<Option<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn stub(status: u16, body: &'static str) -> Stub {
    use axum::http::{HeaderMap, StatusCode};
    let posts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let soap_action = Arc::new(std::sync::Mutex::new(None));
    let (p, a) = (Arc::clone(&posts), Arc::clone(&soap_action));
    let app = axum::Router::new().fallback(axum::routing::post(move |headers: HeaderMap| {
        let (p, a) = (Arc::clone(&p), Arc::clone(&a));
        async move {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            *a.lock().unwrap() = headers
                .get("soapaction")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "text/xml; charset=utf-8")],
                body,
            )
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Stub {
        url,
        posts,
        soap_action,
        _task: task,
    }
}

fn stub_settings(stub: &Stub, material: &enedis_sim::sge_tls::Material) -> SgeSettings {
    SgeSettings {
        endpoint: stub.url.parse().unwrap(),
        certificate_pem: std::fs::read(material.agent_cert()).unwrap(),
        key_pem: Secret::new(std::fs::read_to_string(material.agent_key()).unwrap()),
        extra_roots_pem: None,
        login: LOGIN.to_owned(),
        contract_id: "1234567".to_owned(),
        timeout: Duration::from_secs(30),
        quota_wait: Duration::from_secs(30),
        max_retries: 1,
    }
}

const SGT500: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>Erreur Technique</faultstring><detail><ns3:erreur xmlns:ns3="http://www.enedis.fr/sge/b2b/technique/v1.0"><resultat code="SGT500">Une erreur technique est survenue</resultat></ns3:erreur></detail></soap:Fault></soap:Body></soap:Envelope>"#;

#[tokio::test]
async fn technical_failures_are_retried_once_then_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let material = enedis_sim::sge_tls::generate(dir.path()).unwrap();
    let request = MeasuresRequest::energy(prm(C5), date(2023, 4, 3), date(2023, 4, 10));

    // SGT500: technical, retried once.
    let sgt500 = stub(500, SGT500).await;
    let sge = client(&stub_settings(&sgt500, &material));
    let tally = Tally::new(Ask::agent());
    let e = sge.measures(&request, &tally).await.unwrap_err();
    assert_eq!(e.sgt_code(), Some("SGT500"));
    let SgeError::Fault(fault) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(fault.kind(), FaultKind::Technical);
    assert_eq!(tally.get(), 2);
    assert_eq!(sgt500.posts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        sgt500.soap_action.lock().unwrap().as_deref(),
        Some("\"http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/v3.0\"")
    );
    let upstream = UpstreamError::from(e);
    assert_eq!(upstream.kind(), ErrorKind::Unavailable);
    assert_eq!(upstream.enedis_code(), Some("SGT500"));

    // A gateway's HTML 503: no SOAP fault, retried once, said with an excerpt.
    let html = stub(503, "<html><body>Service Unavailable</body></html>").await;
    let sge = client(&stub_settings(&html, &material));
    let tally = Tally::new(Ask::agent());
    let e = sge.technical(prm(C5), &tally).await.unwrap_err();
    assert!(matches!(e, SgeError::Status { status: 503, .. }), "{e:?}");
    assert!(e.to_string().contains("Service Unavailable"), "{e}");
    assert_eq!(html.posts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(html.soap_action.lock().unwrap().as_deref(), Some("\"\""));

    // SGT4G3 (no measurement): an empty answer, not an error, not retried.
    let none = stub(
        500,
        Box::leak(SGT500.replace("SGT500", "SGT4G3").into_boxed_str()),
    )
    .await;
    let sge = client(&stub_settings(&none, &material));
    let tally = Tally::new(Ask::agent());
    let m = sge.measures(&request, &tally).await.unwrap();
    assert!(m.grandeurs.is_empty() && m.index.is_empty());
    assert_eq!(tally.get(), 1);

    // A 200 that is not SOAP is unreadable, not retried.
    let junk = stub(200, "{\"json\": true}").await;
    let sge = client(&stub_settings(&junk, &material));
    let e = sge
        .measures(&request, &Tally::new(Ask::agent()))
        .await
        .unwrap_err();
    assert!(matches!(e, SgeError::BadResponse { .. }), "{e:?}");
    assert_eq!(junk.posts.load(std::sync::atomic::Ordering::SeqCst), 1);
}
