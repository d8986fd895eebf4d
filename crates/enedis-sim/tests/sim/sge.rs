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
