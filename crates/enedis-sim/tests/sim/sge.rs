//! SGE (B2B) `ConsultationMesuresDetaillees` v3.0 over SOAP: the real example
//! requests of `tests/fixtures/sge/` are accepted and answered in the exact shape
//! of the example responses (values aside); SGT faults for refused requests. SGE
//! is served only over mutual TLS: the agent's certificate, issued by the
//! simulator's test CA, is accepted; another CA's, or none, refused at the handshake.

use enedis_sim::harness::Sim;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

const PATH: &str = "/ConsultationMesuresDetaillees/v3.0";
/// The day after the examples' last `dateFin` (2023-05-01).
const TODAY: &str = "2023-05-02";

fn fixture(case: &str, file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/sge/cmd-v3/{case}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The document as a list of events: tags with their attributes and non-blank
/// texts, the text of `<v>` elements replaced by `*` (values are synthetic).
fn skeleton(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut in_v = false;
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("{e}: {xml}")) {
            Event::Start(e) => {
                in_v = e.name().as_ref() == "v";
                let attrs: Vec<String> = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        format!("{}={}", a.key.as_ref(), a.value)
                    })
                    .collect();
                out.push(format!("<{} {}>", e.name().as_ref(), attrs.join(" ")));
            }
            Event::End(e) => {
                in_v = false;
                out.push(format!("</{}>", e.name().as_ref()));
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                out.push(if in_v { "*".to_owned() } else { t.into_owned() });
            }
            Event::Empty(e) => out.push(format!("<{}/>", e.name().as_ref())),
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The text of every `<name>` element.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut inside = false;
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => inside = e.local_name().as_ref() == name,
            Event::Text(t) if inside => out.push(t.xml10_content().into_owned()),
            Event::End(_) => inside = false,
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// POST `body` to CMD v3 on the mutual-TLS listener, with the agent's certificate.
async fn post(sim: &Sim, body: String) -> (u16, String) {
    post_with(sim, sim.sge_http(), body)
        .await
        .expect("the agent's certificate is accepted")
}

async fn post_with(
    sim: &Sim,
    client: &reqwest::Client,
    body: String,
) -> Result<(u16, String), reqwest::Error> {
    let response = client
        .post(sim.sge_url(PATH))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::test]
async fn cmd_v3_example_requests_get_the_example_shapes() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    for case in ["C5-ENERGIE", "C4-ENERGIE", "C5-PA", "C4-PA"] {
        let (status, body) = post(&sim, fixture(case, "request.xml")).await;
        assert_eq!(status, 200, "{case}: {body}");
        let expected = fixture(case, "response.xml");
        assert_eq!(skeleton(&body), skeleton(&expected), "{case}");
        // The layout too, apart from the values.
        assert_eq!(body.lines().count(), expected.lines().count(), "{case}");
        let values = texts(&body, "v");
        assert!(
            values.iter().all(|v| v.parse::<u64>().is_ok()),
            "{case}: {values:?}"
        );
    }
}

#[tokio::test]
async fn cmd_v3_daily_energy_is_the_integral_of_the_curve() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    for (energy, curve, minutes) in [("C4-ENERGIE", "C4-PA", 5), ("C5-ENERGIE", "C5-PA", 30)] {
        let (_, energy_body) = post(&sim, fixture(energy, "request.xml")).await;
        let (_, curve_body) = post(&sim, fixture(curve, "request.xml")).await;
        let first_day: Vec<u64> = texts(&energy_body, "v")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let per_day = 24 * 60 / minutes;
        let watts: u64 = texts(&curve_body, "v")
            .iter()
            .take(per_day)
            .map(|v| v.parse::<u64>().unwrap())
            .sum();
        let wh = (watts * minutes as u64 + 30) / 60;
        assert_eq!(first_day[0], wh, "{energy} vs {curve}");
    }
}

#[tokio::test]
async fn cmd_v3_answers_are_deterministic() {
    let a = Sim::start_sge(&["--today", TODAY]);
    let b = Sim::start_sge(&["--today", "2024-01-01"]);
    let request = fixture("C4-PA", "request.xml");
    assert_eq!(post(&a, request.clone()).await, post(&b, request).await);
}

/// The request of `case` with `from` replaced by `to` (which must occur).
fn edit(case: &str, from: &str, to: &str) -> String {
    let request = fixture(case, "request.xml");
    assert!(request.contains(from), "{case} has no {from}");
    request.replace(from, to)
}

#[tokio::test]
async fn cmd_v3_refusals_are_sgt_faults() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let cases = [
        (
            "unknown PRM",
            edit("C5-PA", "09111642617347", "12345678901234"),
            "SGT401",
        ),
        (
            "8-day curve",
            edit("C5-PA", "2023-04-07", "2023-04-09"),
            "SGT4L8",
        ),
        (
            "curve older than 24 months",
            edit("C5-PA", "2023-04-01", "2021-04-01").replace("2023-04-07", "2021-04-03"),
            "SGT4L8",
        ),
        (
            "no declared consent (access service without one)",
            edit("C5-PA", "ACCORD_CLIENT", "SERVICE_ACCES"),
            "SGT4K2",
        ),
        (
            "corrected data on C5",
            edit("C5-PA", "<mesuresCorrigees>false", "<mesuresCorrigees>true"),
            "SGT4H2",
        ),
        (
            "injection on a consumption point",
            edit("C4-ENERGIE", "SOUTIRAGE", "INJECTION"),
            "SGT583",
        ),
        (
            "end after today",
            edit("C5-ENERGIE", "2023-05-01", "2023-05-03"),
            "SGT4K1",
        ),
        (
            "start after end",
            edit("C5-ENERGIE", "2023-04-01", "2023-05-01"),
            "SGT4K4",
        ),
        (
            "reactive curve on C5",
            edit("C5-PA", "<grandeurPhysique>PA", "<grandeurPhysique>PRI"),
            "SGT579",
        ),
        (
            "fields out of XSD order",
            edit("C5-ENERGIE", "<sens>SOUTIRAGE</sens>", "").replace(
                "<mesuresCorrigees>",
                "<sens>SOUTIRAGE</sens><mesuresCorrigees>",
            ),
            "SGT562",
        ),
        ("not XML", "<soap".to_owned(), "SGT562"),
    ];
    for (what, request, code) in cases {
        let (status, body) = post(&sim, request).await;
        assert_eq!(status, 500, "{what}: {body}");
        assert_eq!(
            skeleton(&body)
                .iter()
                .filter(|e| e.starts_with('<'))
                .map(|e| e.split(' ').next().unwrap().to_owned())
                .collect::<Vec<_>>(),
            [
                "<soap:Envelope",
                "<soap:Body",
                "<soap:Fault",
                "<faultcode",
                "</faultcode>",
                "<faultstring",
                "</faultstring>",
                "<detail",
                "<ns3:erreur",
                "<resultat",
                "</resultat>",
                "</ns3:erreur>",
                "</detail>",
                "</soap:Fault>",
                "</soap:Body>",
                "</soap:Envelope>",
            ],
            "{what}: {body}"
        );
        assert_eq!(texts(&body, "faultcode"), ["soap:Server"], "{what}");
        assert_eq!(
            texts(&body, "faultstring"),
            ["Erreur Technique Mesures"],
            "{what}"
        );
        assert!(
            body.contains(&format!("<resultat code=\"{code}\">")),
            "{what}: expected {code}: {body}"
        );
    }
}

const CALLS: &str = "POST /ConsultationMesuresDetaillees/v3.0";

/// The chain of source errors of `e`, for assertions on TLS failures.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(" / ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test]
async fn sge_mtls_agent_certificate_is_answered_and_counted() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let dir = sim.sge_tls_dir();
    for file in [
        "ca.pem",
        "server.pem",
        "server.key",
        "agent.pem",
        "agent.key",
    ] {
        assert!(dir.join(file).is_file(), "{file} in {}", dir.display());
    }
    // The agent's identity read from the files, as the agent would.
    let client = sim.sge_client(Some((&dir.join("agent.pem"), &dir.join("agent.key"))));
    let (status, body) = post_with(&sim, &client, fixture("C5-ENERGIE", "request.xml"))
        .await
        .expect("answered");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("consulterMesuresDetailleesResponseV3"),
        "{body}"
    );
    assert_eq!(sim.admin().call_count(CALLS).await, 1);
    assert!(sim.log().contains("SGE TLS: client certificate accepted"));
}

#[tokio::test]
async fn sge_mtls_refuses_another_ca_and_no_certificate_at_the_handshake() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    // A complete second set of material: its agent certificate is issued by
    // another CA, unknown to the simulator.
    let other = tempfile::tempdir().unwrap();
    let other = enedis_sim::sge_tls::generate(other.path()).unwrap();
    let stranger = sim.sge_client(Some((&other.agent_cert(), &other.agent_key())));
    let anonymous = sim.sge_client(None);
    for (who, client, alert) in [
        ("another CA", &stranger, "received fatal alert: UnknownCA"),
        (
            "no certificate",
            &anonymous,
            "received fatal alert: CertificateRequired",
        ),
    ] {
        let error = post_with(&sim, client, fixture("C5-ENERGIE", "request.xml"))
            .await
            .expect_err(who);
        // The client learns of the refusal from the server's TLS alert.
        let text = chain(&error);
        assert!(text.contains(alert), "{who}: {text}");
    }
    // Nothing reached the service; the simulator says why it refused.
    assert_eq!(sim.admin().call_count(CALLS).await, 0);
    let log = sim.log();
    assert_eq!(
        log.matches("SGE TLS: handshake refused").count(),
        2,
        "{log}"
    );
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("peer sent no certificates"), "{log}");
    // The agent's own certificate still works.
    let (status, _) = post(&sim, fixture("C5-ENERGIE", "request.xml")).await;
    assert_eq!(status, 200);
    assert_eq!(sim.admin().call_count(CALLS).await, 1);
}

#[tokio::test]
async fn sge_is_not_served_over_plain_http() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let response = sim
        .http()
        .post(sim.url(PATH))
        .header("content-type", "text/xml; charset=utf-8")
        .body(fixture("C5-ENERGIE", "request.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // Nor anything else over mutual TLS: only the SGE paths.
    let response = sim
        .sge_http()
        .get(sim.sge_url("/sim/admin/calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

use enedis_sim::sge::meters::{ALL_PRMS, C1_PRM, C2_PRM, C3_PRM, C4_PRM, C5_PRM, P1_PRM, P4_PRM};

/// A CMD v3 request of our own (prefixes `e`/`m`, unlike the examples').
#[allow(clippy::too_many_arguments)]
fn cmd(
    prm: &str,
    type_code: &str,
    grandeur: &str,
    start: &str,
    end: &str,
    pas: Option<&str>,
    corrected: bool,
    sens: &str,
    cadre: &str,
) -> String {
    let pas = pas
        .map(|p| format!("<mesuresPas>{p}</mesuresPas>"))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/common">
<e:Body><m:consulterMesuresDetailleesV3><demande>
<initiateurLogin>tests@example.org</initiateurLogin><pointId>{prm}</pointId>
<mesuresTypeCode>{type_code}</mesuresTypeCode><grandeurPhysique>{grandeur}</grandeurPhysique>
<dateDebut>{start}</dateDebut><dateFin>{end}</dateFin>{pas}
<mesuresCorrigees>{corrected}</mesuresCorrigees><sens>{sens}</sens><cadreAcces>{cadre}</cadreAcces>
</demande></m:consulterMesuresDetailleesV3></e:Body></e:Envelope>"#
    )
}

/// A raw read under the customer's consent.
fn read(prm: &str, type_code: &str, grandeur: &str, start: &str, end: &str, sens: &str) -> String {
    cmd(
        prm,
        type_code,
        grandeur,
        start,
        end,
        None,
        false,
        sens,
        "ACCORD_CLIENT",
    )
}

fn sens_of(prm: &str) -> &'static str {
    if [P1_PRM, P4_PRM].contains(&prm) {
        "INJECTION"
    } else {
        "SOUTIRAGE"
    }
}

fn numbers(xml: &str, name: &str) -> Vec<u64> {
    texts(xml, name)
        .iter()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

/// The SGT code of a fault answer.
fn code(body: &str) -> String {
    let at = body
        .find("code=\"")
        .unwrap_or_else(|| panic!("no code: {body}"))
        + 6;
    body[at..at + 6].to_owned()
}

#[tokio::test]
async fn cmd_v3_every_segment_has_its_curve_step_and_direction() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let cases = [
        (C1_PRM, "PT10M", "CONS", 144),
        (C2_PRM, "PT10M", "CONS", 144),
        (C3_PRM, "PT10M", "CONS", 144),
        (C4_PRM, "PT5M", "CONS", 288),
        (C5_PRM, "PT30M", "CONS", 48),
        (P1_PRM, "PT10M", "PROD", 144),
        (P4_PRM, "PT30M", "PROD", 48),
    ];
    assert_eq!(cases.len(), ALL_PRMS.len());
    let mut daily_energies = Vec::new();
    for (prm, step, metier, per_day) in cases {
        let sens = sens_of(prm);
        let (status, body) = post(
            &sim,
            read(prm, "COURBE", "PA", "2023-04-10", "2023-04-12", sens),
        )
        .await;
        assert_eq!(status, 200, "{prm}: {body}");
        assert_eq!(texts(&body, "grandeurMetier"), [metier], "{prm}");
        let values = numbers(&body, "v");
        assert_eq!(values.len(), 2 * per_day, "{prm}");
        assert!(texts(&body, "p").iter().all(|p| p == step), "{prm}");
        let linky = [C5_PRM, P4_PRM].contains(&prm);
        assert_eq!(texts(&body, "n")[0], if linky { "B" } else { "R" }, "{prm}");
        if !linky {
            // Whole kW, and a point of many households (roofs).
            assert!(values.iter().all(|v| v % 1000 == 0), "{prm}");
        }
        assert!(values.iter().any(|v| *v > 0), "{prm}");
        // The daily energy is the curve's integral, in the point's own direction.
        let (status, energy) = post(
            &sim,
            read(prm, "ENERGIE", "EA", "2023-04-10", "2023-04-11", sens),
        )
        .await;
        assert_eq!(status, 200, "{prm}: {energy}");
        assert_eq!(texts(&energy, "grandeurMetier"), [metier], "{prm}");
        let minutes = 1440 / per_day as u64;
        let integral = (values[..per_day].iter().sum::<u64>() * minutes + 30) / 60;
        assert_eq!(numbers(&energy, "v"), [integral], "{prm}");
        daily_energies.push((prm, integral));
        // The other direction does not exist on these points.
        let other = if sens == "SOUTIRAGE" {
            "INJECTION"
        } else {
            "SOUTIRAGE"
        };
        let (status, body) = post(
            &sim,
            read(prm, "ENERGIE", "EA", "2023-04-10", "2023-04-11", other),
        )
        .await;
        assert_eq!((status, code(&body)), (500, "SGT583".into()), "{prm}");
    }
    // C1 > C2 > C3 > C4 > C5 in size.
    let e: Vec<u64> = daily_energies.iter().map(|(_, e)| *e).collect();
    assert!(
        e[0] > e[1] && e[1] > e[2] && e[2] > e[3] && e[3] > e[4],
        "{e:?}"
    );
}

#[tokio::test]
async fn cmd_v3_reactive_voltage_and_corrected_off_linky_only() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    // The example's PRI request gets the example's shape (values aside).
    let (status, body) = post(&sim, fixture("C4-PRI", "request.xml")).await;
    assert_eq!(status, 200, "{body}");
    let expected = fixture("C4-PRI", "response.xml");
    assert_eq!(skeleton(&body), skeleton(&expected));
    assert_eq!(body.lines().count(), expected.lines().count());
    let active = numbers(
        &post(
            &sim,
            read(
                C4_PRM,
                "COURBE",
                "PA",
                "2023-04-01",
                "2023-04-07",
                "SOUTIRAGE",
            ),
        )
        .await
        .1,
        "v",
    );
    let reactive = numbers(&body, "v");
    assert!(reactive.iter().all(|v| v % 1000 == 0));
    assert!(reactive.iter().sum::<u64>() < active.iter().sum::<u64>());
    assert!(reactive.iter().sum::<u64>() > 0);
    // PRC and E on C1; TOUT is the four quantities, in that order.
    for (grandeur, units) in [
        ("PRC", vec!["VAr"]),
        ("E", vec!["V"]),
        ("TOUT", vec!["W", "VAr", "VAr", "V"]),
    ] {
        let (status, body) = post(
            &sim,
            read(
                C1_PRM,
                "COURBE",
                grandeur,
                "2023-04-01",
                "2023-04-02",
                "SOUTIRAGE",
            ),
        )
        .await;
        assert_eq!(status, 200, "{grandeur}: {body}");
        assert_eq!(texts(&body, "unite"), units, "{grandeur}");
        assert_eq!(numbers(&body, "v").len(), 144 * units.len(), "{grandeur}");
        if grandeur == "E" {
            // HTA: 20 kV.
            assert!(
                numbers(&body, "v")
                    .iter()
                    .all(|v| (19_000..21_000).contains(v))
            );
        }
    }
    // Corrected (BEST) data of a C1-C4/P1-P3 point: the same measurements.
    for prm in [C3_PRM, P1_PRM] {
        let sens = sens_of(prm);
        let brut = post(
            &sim,
            read(prm, "COURBE", "PA", "2023-04-01", "2023-04-02", sens),
        )
        .await
        .1;
        let best = post(
            &sim,
            cmd(
                prm,
                "COURBE",
                "PA",
                "2023-04-01",
                "2023-04-02",
                None,
                true,
                sens,
                "ACCORD_CLIENT",
            ),
        )
        .await
        .1;
        assert_eq!(texts(&brut, "mesuresCorrigees"), ["BRUT"]);
        assert_eq!(texts(&best, "mesuresCorrigees"), ["BEST"], "{best}");
        assert_eq!(numbers(&brut, "v"), numbers(&best, "v"));
    }
    // Linky points: PA only, no corrected data.
    for prm in [C5_PRM, P4_PRM] {
        let sens = sens_of(prm);
        for grandeur in ["PRI", "PRC", "E", "TOUT"] {
            let (status, body) = post(
                &sim,
                read(prm, "COURBE", grandeur, "2023-04-01", "2023-04-02", sens),
            )
            .await;
            assert_eq!(
                (status, code(&body)),
                (500, "SGT579".into()),
                "{prm} {grandeur}"
            );
        }
        let corrected = cmd(
            prm,
            "ENERGIE",
            "EA",
            "2023-04-01",
            "2023-04-02",
            None,
            true,
            sens,
            "ACCORD_CLIENT",
        );
        let (status, body) = post(&sim, corrected).await;
        assert_eq!((status, code(&body)), (500, "SGT4H2".into()), "{prm}");
    }
}

/// `skeleton` with the texts of `<d>` masked too (peak and reading times).
fn shape(xml: &str) -> Vec<String> {
    let mut out = skeleton(xml);
    for i in 1..out.len() {
        if out[i - 1].starts_with("<d ") && !out[i].starts_with('<') {
            out[i] = "*".into();
        }
    }
    out
}

#[tokio::test]
async fn cmd_v3_pmax_daily_and_monthly() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let (status, body) = post(&sim, fixture("C5-PMAX", "request.xml")).await;
    assert_eq!(status, 200, "{body}");
    let expected = fixture("C5-PMAX", "response.xml");
    assert_eq!(shape(&body), shape(&expected));
    assert_eq!(body.lines().count(), expected.lines().count());
    // Each daily maximum is reached that day, above the curve's highest mean.
    let peaks = numbers(&body, "v");
    let times = texts(&body, "d");
    assert_eq!(peaks.len(), 30);
    assert!(times[0].starts_with("2023-04-01 ") && times[29].starts_with("2023-04-30 "));
    let curve = post(
        &sim,
        read(
            C5_PRM,
            "COURBE",
            "PA",
            "2023-04-01",
            "2023-04-02",
            "SOUTIRAGE",
        ),
    )
    .await
    .1;
    assert!(peaks[0] >= *numbers(&curve, "v").iter().max().unwrap());
    // Monthly: 1st of the month at midnight; nil under 7 daily values (4 days of
    // March), else the month's highest daily value.
    let monthly = cmd(
        C5_PRM,
        "PMAX",
        "PMA",
        "2023-03-28",
        "2023-05-01",
        Some("P1M"),
        false,
        "SOUTIRAGE",
        "ACCORD_CLIENT",
    );
    let (status, body) = post(&sim, monthly).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        texts(&body, "d"),
        ["2023-03-01 00:00:00", "2023-04-01 00:00:00"]
    );
    assert!(body.contains("xsi:nil=\"true\""), "{body}");
    assert_eq!(numbers(&body, "v"), [*peaks.iter().max().unwrap()]);
    assert_eq!(texts(&body, "pas"), ["P1M"]);
    // PMAX is a Linky consumer's; without its step the request is malformed.
    for (request, sgt) in [
        (
            cmd(
                C4_PRM,
                "PMAX",
                "PMA",
                "2023-04-01",
                "2023-04-02",
                Some("P1D"),
                false,
                "SOUTIRAGE",
                "ACCORD_CLIENT",
            ),
            "SGT579",
        ),
        (
            read(
                C5_PRM,
                "PMAX",
                "PMA",
                "2023-04-01",
                "2023-04-02",
                "SOUTIRAGE",
            ),
            "SGT562",
        ),
    ] {
        let (status, body) = post(&sim, request).await;
        assert_eq!((status, code(&body)), (500, sgt.into()));
    }
}

/// The `v` of every `valeur` under the class or dial `id`, in order.
fn class_values(xml: &str, id: &str) -> Vec<u64> {
    let at = xml
        .find(&format!(">{id}<"))
        .unwrap_or_else(|| panic!("no {id}: {xml}"));
    let rest = &xml[at..];
    let end = rest
        .find("</classeTemporelle>")
        .or_else(|| rest.find("</cadranTotalisateur>"))
        .unwrap();
    rest[..end]
        .split("<v>")
        .skip(1)
        .map(|v| v.split("</v>").next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn cmd_v3_index_shapes_and_differences_are_daily_energies() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    // C5: the example's calendars, classes, dials and totalisator exactly.
    let (status, body) = post(&sim, fixture("C5-INDEX", "request.xml")).await;
    assert_eq!(status, 200, "{body}");
    let expected = fixture("C5-INDEX", "response.xml");
    assert_eq!(skeleton(&body), skeleton(&expected));
    assert_eq!(body.lines().count(), expected.lines().count());
    // The supplier's classes add up to the totalisator, and so do the
    // distributor's.
    let total = class_values(&body, "IDX_EAS_T");
    let tempo: Vec<Vec<u64>> = ["BUHP", "BCHP", "RHC", "BCHC", "BUHC", "RHP"]
        .iter()
        .map(|c| class_values(&body, c))
        .collect();
    for (i, t) in total.iter().enumerate() {
        assert_eq!(tempo.iter().map(|c| c[i]).sum::<u64>(), *t);
        assert_eq!(class_values(&body, "IDX_EAS_D1")[i], *t);
    }
    // C4: the example's first contexte (RC readings, the four classes of the
    // distributor's calendar), reading times aside.
    let (status, body) = post(&sim, fixture("C4-INDEX", "request.xml")).await;
    assert_eq!(status, 200, "{body}");
    let expected = fixture("C4-INDEX", "response.xml");
    let first = |xml: &str| {
        let s = shape(xml);
        let end = s.iter().position(|e| e == "</contexte>").unwrap();
        s[..=end].to_vec()
    };
    assert_eq!(first(&body), first(&expected));
    // Index differences are the daily energies, for every kind of point.
    for prm in [C5_PRM, C4_PRM, C1_PRM, P1_PRM, P4_PRM] {
        let sens = sens_of(prm);
        let (status, index) = post(
            &sim,
            read(prm, "INDEX", "EA", "2023-04-01", "2023-04-09", sens),
        )
        .await;
        assert_eq!(status, 200, "{prm}: {index}");
        let (_, energy) = post(
            &sim,
            read(prm, "ENERGIE", "EA", "2023-04-01", "2023-04-08", sens),
        )
        .await;
        let energy = numbers(&energy, "v");
        let totals: Vec<u64> = if index.contains("cadranTotalisateur") {
            class_values(&index, "IDX_EAS_T")
        } else {
            let classes: Vec<Vec<u64>> = ["HPH", "HCH", "HPE", "HCE"]
                .iter()
                .map(|c| class_values(&index, c))
                .collect();
            (0..8).map(|i| classes.iter().map(|c| c[i]).sum()).collect()
        };
        assert_eq!(totals.len(), 8, "{prm}");
        let differences: Vec<u64> = totals.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(differences, energy, "{prm}");
        assert!(totals[0] > 0, "{prm}");
    }
}

#[tokio::test]
async fn cmd_v3_dst_days_have_46_and_50_half_hours_in_local_time() {
    let sim = Sim::start_sge(&["--today", "2024-11-01"]);
    for (day, next, half_hours) in [
        ("2024-03-31", "2024-04-01", 46),
        ("2024-10-27", "2024-10-28", 50),
    ] {
        for (prm, per_half_hour) in [(C5_PRM, 1), (C4_PRM, 6)] {
            let (status, body) =
                post(&sim, read(prm, "COURBE", "PA", day, next, "SOUTIRAGE")).await;
            assert_eq!(status, 200, "{body}");
            let stamps = texts(&body, "d");
            assert_eq!(stamps.len(), half_hours * per_half_hour, "{prm} {day}");
            // Local time without offset: no 02:xx on the spring day; on the
            // autumn day the 02:xx stamps appear twice, in order.
            let twos: Vec<&String> = stamps.iter().filter(|s| s[11..13] == *"02").collect();
            if half_hours == 46 {
                assert!(twos.is_empty(), "{prm}: {twos:?}");
            } else {
                assert_eq!(twos.len(), 4 * per_half_hour, "{prm}: {twos:?}");
                let first = &twos[..twos.len() / 2];
                let second = &twos[twos.len() / 2..];
                assert_eq!(first, second, "{prm}");
            }
            // The day's energy is still the integral of its intervals.
            let (_, energy) = post(&sim, read(prm, "ENERGIE", "EA", day, next, "SOUTIRAGE")).await;
            let minutes = 30 / per_half_hour as u64;
            let integral = (numbers(&body, "v").iter().sum::<u64>() * minutes + 30) / 60;
            assert_eq!(numbers(&energy, "v"), [integral], "{prm} {day}");
        }
    }
}

const CDTC: &str = "/ConsultationDonneesTechniquesContractuelles/v1.0";

fn cdtc(prm: &str, autorisation: Option<&str>) -> String {
    let autorisation = autorisation
        .map(|a| format!("<autorisationClient>{a}</autorisationClient>"))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:v1="http://www.enedis.fr/sge/b2b/services/consulterdonneestechniquescontractuelles/v1.0">
  <soapenv:Header/>
  <soapenv:Body>
    <v1:consulterDonneesTechniquesContractuelles>
      <pointId>{prm}</pointId>
      <loginUtilisateur>tests@example.org</loginUtilisateur>
      {autorisation}
    </v1:consulterDonneesTechniquesContractuelles>
  </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// POST `body` to another SGE path.
async fn post_to(sim: &Sim, path: &str, body: String) -> (u16, String) {
    let response = sim
        .sge_http()
        .post(sim.sge_url(path))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The attribute `code` of the first `<name` element.
fn code_of(xml: &str, name: &str) -> String {
    let at = xml
        .find(&format!("<{name} code=\""))
        .unwrap_or_else(|| panic!("no {name}: {xml}"))
        + name.len()
        + 8;
    xml[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn cdtc_answers_each_point_its_segment_power_and_tariff() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    // segment, voltage, tariff (none for producers), subscribed power and unit.
    let cases = [
        (C1_PRM, "INDET", "HTA", Some("HTALU5"), "6000", "kW"),
        (C2_PRM, "C2", "HTA", Some("HTACU5"), "2500", "kW"),
        (C3_PRM, "C3", "HTA", Some("HTACU5"), "600", "kW"),
        (C4_PRM, "C4", "BTSUP", Some("BTSUPCU4"), "120", "kVA"),
        (C5_PRM, "C5", "BTINF", Some("BTINFCU4"), "9", "kVA"),
        (P1_PRM, "INDET", "HTA", None, "2000", "kW"),
        (P4_PRM, "INDET", "BTINF", None, "6", "kVA"),
    ];
    for (prm, segment, tension, fta, power, unit) in cases {
        let (status, body) = post_to(&sim, CDTC, cdtc(prm, Some("true"))).await;
        assert_eq!(status, 200, "{prm}: {body}");
        assert!(body.contains(&format!("<point id=\"{prm}\">")), "{body}");
        assert!(
            body.contains("consulterDonneesTechniquesContractuellesResponse"),
            "{body}"
        );
        assert_eq!(code_of(&body, "etatContractuel"), "SERVC");
        assert_eq!(code_of(&body, "segment"), segment, "{prm}");
        assert_eq!(code_of(&body, "domaineTension"), tension, "{prm}");
        match fta {
            Some(fta) => assert_eq!(code_of(&body, "formuleTarifaireAcheminement"), fta, "{prm}"),
            None => assert!(!body.contains("formuleTarifaireAcheminement"), "{prm}"),
        }
        let subscribed = &body[body.find("<puissanceSouscriteMax>").unwrap()
            ..body.find("</puissanceSouscriteMax>").unwrap() + 24];
        assert_eq!(texts(subscribed, "valeur")[0], power, "{prm}");
        assert_eq!(texts(subscribed, "unite")[0], unit, "{prm}");
        assert_eq!(texts(&body, "matricule")[0].len(), 12);
        // Well-formed XML.
        skeleton(&body);
    }
    // Unknown point, consent missing or refused, malformed.
    for (what, request, sgt) in [
        ("unknown", cdtc("12345678901234", Some("true")), "SGT401"),
        ("no consent", cdtc(C5_PRM, Some("false")), "SGT483"),
        ("consent absent", cdtc(C5_PRM, None), "SGT483"),
        ("not a boolean", cdtc(C5_PRM, Some("oui")), "SGT562"),
        (
            "another operation",
            cdtc(C5_PRM, Some("true")).replace(
                "consulterDonneesTechniquesContractuelles>",
                "rechercherPoint>",
            ),
            "SGT562",
        ),
    ] {
        let (status, body) = post_to(&sim, CDTC, request).await;
        assert_eq!((status, code(&body)), (500, sgt.into()), "{what}: {body}");
        assert_eq!(texts(&body, "faultcode"), ["soap:Server"], "{what}");
    }
}

const ORDER: &str = "/CommandeServicesAccesDonnees/v1.0";
const STOP: &str = "/CommandeArretServicesAccesDonnees/v1.0";

/// An access-service order; `accord` is the whole `declarationAccordClient`
/// content (empty: none).
fn order(prm: &str, sens: &str, end: Option<&str>, accord: &str, kinds: &[&str]) -> String {
    let end = end
        .map(|d| format!("<dateFin>{d}</dateFin>"))
        .unwrap_or_default();
    let accord = if accord.is_empty() {
        String::new()
    } else {
        format!("<declarationAccordClient>{accord}</declarationAccordClient>")
    };
    let services: String = kinds
        .iter()
        .map(|k| {
            format!(
                "<serviceSouscrit><typeDonnees>{k}</typeDonnees><optionsPublication><optionPublication><periodiciteTransmission>P1D</periodiciteTransmission></optionPublication></optionsPublication></serviceSouscrit>"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
<c:commanderServicesAccesDonnees xmlns:c="http://www.enedis.fr/sge/b2b/commanderservicesaccesdonnees/v1.0"><demande>
<donneesGenerales><refExterne>ref-1</refExterne><pointId>{prm}</pointId><initiateurLogin>tests@example.org</initiateurLogin>
<contratId>1234567</contratId>{end}<sens>{sens}</sens>{accord}</donneesGenerales>
<servicesSouscrits>{services}</servicesSouscrits>
</demande></c:commanderServicesAccesDonnees></S:Body></S:Envelope>"#
    )
}

fn stop(prm: &str, ids: &[&str]) -> String {
    let ids: String = ids
        .iter()
        .map(|i| format!("<serviceSouscritId>{i}</serviceSouscritId>"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
<a:commanderArretServicesAccesDonnees xmlns:a="http://www.enedis.fr/sge/b2b/commanderarretservicesaccesdonnees/v1.0"><demande>
<donneesGenerales><pointId>{prm}</pointId><initiateurLogin>tests@example.org</initiateurLogin><contratId>1234567</contratId><sens>SOUTIRAGE</sens></donneesGenerales>
<servicesSouscrits>{ids}</servicesSouscrits>
</demande></a:commanderArretServicesAccesDonnees></S:Body></S:Envelope>"#
    )
}

const PERSON: &str = "<accord>true</accord><personnePhysique><civilite>Mme</civilite><nom>Curie</nom><prenom>Marie</prenom></personnePhysique>";

#[tokio::test]
async fn access_services_are_ordered_checked_and_stopped() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let curve = |cadre: &str| {
        cmd(
            C4_PRM,
            "COURBE",
            "PA",
            "2023-04-01",
            "2023-04-02",
            None,
            false,
            "SOUTIRAGE",
            cadre,
        )
    };
    let index = cmd(
        C4_PRM,
        "INDEX",
        "EA",
        "2023-04-01",
        "2023-04-02",
        None,
        false,
        "SOUTIRAGE",
        "SERVICE_ACCES",
    );
    // No service yet: SERVICE_ACCES is refused.
    let (status, body) = post(&sim, curve("SERVICE_ACCES")).await;
    assert_eq!((status, code(&body)), (500, "SGT4K2".into()), "{body}");

    // Order a curve and an energy service under a declared consent.
    let (status, body) = post_to(
        &sim,
        ORDER,
        order(
            C4_PRM,
            "SOUTIRAGE",
            Some("2026-05-01"),
            PERSON,
            &["CDC", "ENERGIE"],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<resultat code=\"SGT200\">Succès</resultat>"),
        "{body}"
    );
    let affaires = texts(&body, "affaireId");
    let ids = texts(&body, "serviceSouscritId");
    // Header's affaireId, then one per service.
    assert_eq!(affaires.len(), 3, "{body}");
    assert_eq!(ids.len(), 2);
    assert_eq!(texts(&body, "mesuresTypeCode"), ["CDC", "ENERGIE"]);
    for a in &affaires {
        assert!(
            (4..=8).contains(&a.len())
                && a.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{a}"
        );
    }
    assert_ne!(ids[0], ids[1]);
    skeleton(&body);

    // Now the curve reads under SERVICE_ACCES; the index (no IDX service) not.
    let (status, body) = post(&sim, curve("SERVICE_ACCES")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&sim, index.clone()).await;
    assert_eq!((status, code(&body)), (500, "SGT4K2".into()), "{body}");

    // The state shows in the admin API.
    let services: serde_json::Value = sim
        .http()
        .get(sim.url("/sim/admin/sge/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = services["services"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{services}");
    assert_eq!(list[0]["pointId"], C4_PRM);
    assert_eq!(list[0]["typeDonnees"], "CDC");
    assert_eq!(list[0]["titulaire"], "Marie Curie");
    assert_eq!(list[0]["dateFin"], "2026-05-01");
    assert!(list[0]["dateArret"].is_null());

    // Refusals: already active, consent refused or missing, end too far, PMAX
    // off Linky, unknown point, producer's sens on a consumer.
    let company = "<accord>true</accord><personneMorale><denominationSociale>ACME</denominationSociale></personneMorale>";
    for (what, request, sgt) in [
        (
            "already active",
            order(C4_PRM, "SOUTIRAGE", None, company, &["CDC"]),
            "SGT570",
        ),
        (
            "consent refused",
            order(
                C5_PRM,
                "SOUTIRAGE",
                None,
                "<accord>false</accord>",
                &["IDX"],
            ),
            "SGT566",
        ),
        (
            "no declaration",
            order(C5_PRM, "SOUTIRAGE", None, "", &["IDX"]),
            "SGT566",
        ),
        (
            "more than 3 years",
            order(C5_PRM, "SOUTIRAGE", Some("2026-05-03"), company, &["IDX"]),
            "SGT5O9",
        ),
        (
            "PMAX on C4",
            order(C4_PRM, "SOUTIRAGE", None, company, &["PMAX"]),
            "SGT579",
        ),
        (
            "unknown point",
            order("12345678901234", "SOUTIRAGE", None, company, &["IDX"]),
            "SGT401",
        ),
        (
            "wrong sens",
            order(C4_PRM, "INJECTION", None, company, &["IDX"]),
            "SGT583",
        ),
        (
            "unknown type",
            order(C5_PRM, "SOUTIRAGE", None, company, &["XYZ"]),
            "SGT562",
        ),
    ] {
        let (status, body) = post_to(&sim, ORDER, request).await;
        assert_eq!((status, code(&body)), (500, sgt.into()), "{what}: {body}");
    }
    // A company's consent, exactly 3 years: accepted.
    let (status, body) = post_to(
        &sim,
        ORDER,
        order(
            C5_PRM,
            "SOUTIRAGE",
            Some("2026-05-02"),
            company,
            &["IDX", "PMAX"],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Stop the curve service: its reads are refused again, the energy's not.
    let (status, body) = post_to(&sim, STOP, stop(C4_PRM, &[&ids[0]])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(&body, "serviceSouscritId"), [ids[0].clone()]);
    assert!(body.contains("<servicesResilies>"), "{body}");
    let (status, body) = post(&sim, curve("SERVICE_ACCES")).await;
    assert_eq!((status, code(&body)), (500, "SGT4K2".into()), "{body}");
    let energy = cmd(
        C4_PRM,
        "ENERGIE",
        "EA",
        "2023-04-01",
        "2023-04-02",
        None,
        false,
        "SOUTIRAGE",
        "SERVICE_ACCES",
    );
    assert_eq!(post(&sim, energy).await.0, 200);
    // Stopping it twice, or another point's service: SGT4G3.
    for request in [stop(C4_PRM, &[&ids[0]]), stop(C5_PRM, &[&ids[1]])] {
        let (status, body) = post_to(&sim, STOP, request).await;
        assert_eq!((status, code(&body)), (500, "SGT4G3".into()), "{body}");
    }
    // The curve can be ordered again once stopped.
    let (status, body) = post_to(
        &sim,
        ORDER,
        order(C4_PRM, "SOUTIRAGE", None, company, &["CDC"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let services: serde_json::Value = sim
        .http()
        .get(sim.url("/sim/admin/sge/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services["services"][0]["dateArret"], TODAY);
}

#[tokio::test]
async fn sge_pace_refuses_calls_too_fast_with_a_soap_fault() {
    // Off by default: back-to-back calls are all answered.
    let free = Sim::start_sge(&["--today", TODAY]);
    for _ in 0..4 {
        let (status, body) = post(&free, fixture("C5-ENERGIE", "request.xml")).await;
        assert_eq!(status, 200, "{body}");
    }
    // One call a second: of four calls sent at once, one is answered, the
    // others refused with SGT506 (on any SGE path), unless a whole second passes
    // between them.
    let sim = Sim::start_sge(&["--today", TODAY, "--sge-pace", "1"]);
    let calls = [
        post_to(&sim, PATH, fixture("C5-ENERGIE", "request.xml")),
        post_to(&sim, CDTC, cdtc(C5_PRM, Some("true"))),
        post_to(&sim, PATH, fixture("C4-ENERGIE", "request.xml")),
        post_to(&sim, CDTC, cdtc(C4_PRM, Some("true"))),
    ];
    let answers = futures::future::join_all(calls).await;
    let answered = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(answered >= 1, "{answers:?}");
    let refused: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    for (status, body) in refused {
        assert_eq!((*status, code(body)), (500, "SGT506".into()), "{body}");
        assert_eq!(texts(body, "faultcode"), ["soap:Server"]);
    }
    // Every call is counted, refused ones too.
    assert_eq!(sim.admin().total_calls().await, 4);
}

#[tokio::test]
async fn admin_faults_on_sge_paths_are_soap_faults() {
    let sim = Sim::start_sge(&["--today", TODAY]);
    let admin = sim.admin();
    // A forced 503: a SOAP fault with SGT506 at that status, then back to normal.
    admin
        .faults(serde_json::json!({ "force_status": { "status": 503, "count": 1 } }))
        .await;
    let (status, body) = post(&sim, fixture("C5-ENERGIE", "request.xml")).await;
    assert_eq!((status, code(&body)), (503, "SGT506".into()), "{body}");
    assert_eq!(texts(&body, "faultstring"), ["Erreur Technique Mesures"]);
    assert!(body.starts_with("<?xml"), "{body}");
    assert_eq!(
        post(&sim, fixture("C5-ENERGIE", "request.xml")).await.0,
        200
    );
    // Random failures (here all): SGT500, on every SGE service.
    admin
        .faults(serde_json::json!({ "failure_rate": 1.0 }))
        .await;
    let (status, body) = post_to(&sim, CDTC, cdtc(C5_PRM, Some("true"))).await;
    assert_eq!((status, code(&body)), (500, "SGT500".into()), "{body}");
    assert_eq!(texts(&body, "faultstring"), ["Erreur Technique"]);
    let (status, body) = post_to(
        &sim,
        ORDER,
        order(C5_PRM, "SOUTIRAGE", None, PERSON, &["CDC"]),
    )
    .await;
    assert_eq!((status, code(&body)), (500, "SGT500".into()), "{body}");
    // Nothing was ordered.
    assert_eq!(
        admin.sge_services().await["services"],
        serde_json::json!([])
    );
    admin.clear_faults().await;
    assert_eq!(post_to(&sim, CDTC, cdtc(C5_PRM, Some("true"))).await.0, 200);
    // A forced body is sent as given.
    admin
        .faults(serde_json::json!({ "force_status": { "status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html" } }))
        .await;
    let (status, body) = post(&sim, fixture("C5-ENERGIE", "request.xml")).await;
    assert_eq!((status, body.as_str()), (502, "<html>bad gateway</html>"));
    // Every call counted per path.
    assert_eq!(admin.call_count(CALLS).await, 3);
    assert_eq!(
        admin
            .call_count("POST /ConsultationDonneesTechniquesContractuelles/v1.0")
            .await,
        2
    );
}
