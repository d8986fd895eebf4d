//! The agent's data commands end to end: the REAL `quoalise-agent run` against a
//! real Prosody and the REAL `enedis-sim`, asked by slixmpp peers playing the
//! Quoalise client and the first Data Connect proxy's applications (payloads
//! parsed in Python), by Rust peers, and by the `query` command line.

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, submit};
use enedis_sim::model::Direction as SimDirection;
use quoalise_agent::quoalise::decode_element;
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use serde_json::{Value, json};

fn identifier(prm: &str, series: &str) -> String {
    format!("urn:dev:prm:{prm}_{series}")
}

const POWER: &str = "consumption/power/active/raw";

/// The fields of an adhoc.py form description, `{var: field}`.
fn fields(form: &Value) -> serde_json::Map<String, Value> {
    form["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields in {form}"))
        .iter()
        .map(|f| (f["var"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

fn records(answer: &Value) -> &Vec<Value> {
    answer["data"][0]["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {answer}"))
}

fn times(answer: &Value) -> Vec<i64> {
    records(answer)
        .iter()
        .map(|r| r["time"].as_f64().unwrap() as i64)
        .collect()
}

fn assert_error(answer: &Value, condition: &str, etype: &str) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], condition, "{answer}");
    assert_eq!(answer["etype"], etype, "{answer}");
    assert!(
        answer["text"].as_str().is_some_and(|t| !t.is_empty()),
        "every error carries a text: {answer}"
    );
}

// --- the Quoalise client ----------------------------------------------------------

#[tokio::test]
async fn the_quoalise_clients_get_history_gets_a_week_of_load_curve() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let first = today().checked_sub(jiff::ToSpan::days(7)).unwrap();
    let id = identifier(PRM, POWER);
    let answer = d
        .python(
            "alice@localhost/client",
            "history",
            &[&id, &midnight(first), &midnight(today())],
        )
        .await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["form"]["type"], "result");
    assert_eq!(answer["form"]["title"], "Get history");
    let result = &fields(&answer["form"])["result"];
    assert_eq!(result["type"], "fixed");
    assert_eq!(result["label"], format!("Get {id}"));
    assert_eq!(result["values"], json!(["Success"]));

    // The flat meta form the client reads.
    let meta = &answer["data"][0]["meta"];
    assert_eq!(meta["device"]["type"], "electricity-meter");
    assert_eq!(meta["device"]["identifier"]["value"], PRM);
    assert_eq!(meta["device"]["identifier"]["authority"], "enedis");
    let measurement = &meta["measurement"];
    assert_eq!(measurement["name"], "active-power");
    assert_eq!(measurement["direction"], "consumption");
    assert_eq!(measurement["unit"], "W");
    assert_eq!(measurement["aggregation"], "mean");
    assert_eq!(measurement["sampling-interval"], "PT30M");

    // SenML: the first record carries bn, bt, bu; the next ones only t and v.
    let raw = answer["data"][0]["raw"].as_array().unwrap();
    assert_eq!(raw[0]["bn"], id);
    assert_eq!(raw[0]["bu"], "W");
    assert_eq!(raw[0]["t"], "0");
    assert_eq!(raw[0]["bt"], midnight_seconds(first).to_string());
    let mut keys: Vec<&str> = raw[1]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["t", "v"]);

    // 7 days of half-hours, stamped at interval STARTS in UTC from the Paris
    // midnight, every one with a value in W.
    let days_hours = (midnight_seconds(today()) - midnight_seconds(first)) / 3600;
    let t = times(&answer);
    assert_eq!(t.len() as i64, days_hours * 2, "{days_hours} hours");
    assert_eq!(t[0], midnight_seconds(first));
    assert!(t.windows(2).all(|w| w[1] - w[0] == 1800));
    assert_eq!(*t.last().unwrap(), midnight_seconds(today()) - 1800);
    for r in records(&answer) {
        assert_eq!(r["name"], id);
        assert_eq!(r["unit"], "W");
        assert!(r["value"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    }

    // One log line for the request, with its outcome and upstream calls.
    assert!(
        d.agent
            .wait_log(
                "command=get_history prm=22516914714270",
                Duration::from_secs(5)
            )
            .await
    );
    let line = d
        .agent
        .log()
        .lines()
        .find(|l| l.contains("quoalise_agent::request") && l.contains("command=get_history"))
        .unwrap()
        .to_owned();
    assert!(line.contains("outcome=ok"), "{line}");
    assert!(line.contains("peer=alice@localhost/client"), "{line}");
    assert!(line.contains("upstream_calls="), "{line}");
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains(r#"quoalise_agent_requests_total{command="get_history",outcome="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_first_proxys_legacy_commands_get_the_nested_meta_form() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("app", &[PRM])])).await;
    let day = today().checked_sub(jiff::ToSpan::days(3)).unwrap();
    let next = day.tomorrow().unwrap();
    let (day_s, next_s) = (day.to_string(), next.to_string());

    let curve = d
        .python(
            "app@localhost/proxy",
            "legacy",
            &["get_load_curve", PRM, "consumption", &day_s, &next_s],
        )
        .await;
    assert_eq!(curve["status"], "completed", "{curve}");
    let meta = &curve["data"][0]["meta"]["measurement"];
    assert_eq!(meta["physical"]["quantity"], "power");
    assert_eq!(meta["physical"]["unit"], "W");
    assert_eq!(meta["business"]["direction"], "consumption");
    assert_eq!(meta["business"]["graph"], "load-profile");
    assert_eq!(meta["aggregate"]["type"], "average");
    assert_eq!(meta["sampling"]["interval"], "PT30M");
    let hours = (midnight_seconds(next) - midnight_seconds(day)) / 3600;
    assert_eq!(records(&curve).len() as i64, hours * 2);
    assert_eq!(times(&curve)[0], midnight_seconds(day));
    // Named as the first proxy named them, not by a get_history identifier.
    assert_eq!(
        curve["data"][0]["raw"][0]["bn"],
        format!("urn:dev:prm:{PRM}_consumption_load")
    );

    let daily = d
        .python(
            "app@localhost/proxy",
            "legacy",
            &["get_daily", PRM, "consumption", &day_s, &next_s],
        )
        .await;
    assert_eq!(daily["status"], "completed", "{daily}");
    let meta = &daily["data"][0]["meta"]["measurement"];
    assert_eq!(meta["physical"]["unit"], "Wh");
    assert_eq!(meta["business"], json!({"direction": "consumption"}));
    assert_eq!(meta["sampling"]["interval"], "P1D");
    let day_records = records(&daily);
    assert_eq!(
        daily["data"][0]["raw"][0]["bn"],
        format!("urn:dev:prm:{PRM}_daily_consumption")
    );
    assert_eq!(day_records.len(), 1);
    assert_eq!(
        day_records[0]["time"].as_f64().unwrap() as i64,
        midnight_seconds(day)
    );
    assert_eq!(day_records[0]["unit"], "Wh");
    // The day's energy is the integral of its half-hourly mean power.
    let integral: f64 = records(&curve)
        .iter()
        .map(|r| r["value"].as_f64().unwrap() / 2.0)
        .sum();
    assert_eq!(day_records[0]["value"].as_f64().unwrap(), integral.round());

    // Several days of daily energy, one value per Paris midnight.
    let week_start = today().checked_sub(jiff::ToSpan::days(7)).unwrap();
    let week = d
        .python(
            "app@localhost/proxy",
            "legacy",
            &[
                "get_daily",
                PRM,
                "consumption",
                &week_start.to_string(),
                &today().to_string(),
            ],
        )
        .await;
    let expected: Vec<i64> = (0..7)
        .map(|i| midnight_seconds(week_start.checked_add(jiff::ToSpan::days(i)).unwrap()))
        .collect();
    assert_eq!(times(&week), expected);
}

/// A self-consumption point (sandbox profile 6): data in both directions.
const PRM_BOTH_WAYS: &str = "12655648759651";

/// What an application written for the first Data Connect proxy reads of a
/// `get_load_curve` or `get_daily` answer (quoalise_peer.py `proxy-app`): the
/// records it finds by the proxy's names, their `<sampling interval>`.
async fn as_proxy_app(
    d: &Deployment,
    node: &str,
    prm: &str,
    direction: &str,
    (start, end): (jiff::civil::Date, jiff::civil::Date),
) -> Value {
    let answer = d
        .python(
            "app@localhost/proxy",
            "proxy-app",
            &[node, prm, direction, &start.to_string(), &end.to_string()],
        )
        .await;
    assert_eq!(answer["status"], "completed", "{answer}");
    let app = answer["app"].clone();
    assert_eq!(app["direction"], direction, "{app}");
    assert_eq!(app["other_names"], json!([]), "no record of another name");
    app
}

/// The simulator's meter and direction (its own reading of Enedis, not the
/// agent's).
fn sim_meter(prm: &str, direction: &str) -> (enedis_sim::catalogue::Meter, SimDirection) {
    let meter = enedis_sim::catalogue::meter(prm.parse().unwrap());
    let direction = match direction {
        "consumption" => SimDirection::Consumption,
        _ => SimDirection::Production,
    };
    (meter, direction)
}

/// The UTC instant of `seconds`, as RFC 3339 with `Z`.
fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).unwrap().to_string()
}

#[tokio::test]
async fn apps_of_the_first_proxy_find_their_records_by_name_at_utc_interval_starts() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer(
        "app",
        &[PRM, PRM_BOTH_WAYS],
    )]))
    .await;
    let autumn = last_dst_day(25);
    let spring = last_dst_day(23);

    // Load curves of both DST days, both directions: every half-hour found by
    // the name `…_<direction>_load`, at PT30M, stamped at its START in UTC,
    // with the value the simulator computes for the half-hour starting then.
    for (prm, direction, day, half_hours) in [
        (PRM, "consumption", autumn, 50),
        (PRM_BOTH_WAYS, "production", autumn, 50),
        (PRM, "consumption", spring, 46),
    ] {
        let next = day.tomorrow().unwrap();
        let app = as_proxy_app(&d, "get_load_curve", prm, direction, (day, next)).await;
        assert_eq!(app["name"], format!("urn:dev:prm:{prm}_{direction}_load"));
        assert_eq!(
            (&app["interval"], &app["step"]),
            (&json!("PT30M"), &json!(1800))
        );
        let (meter, sim_direction) = sim_meter(prm, direction);
        let expected: Vec<Value> = enedis_sim::synth::day_curve(&meter, sim_direction, day)
            .unwrap()
            .iter()
            .map(|p| json!([p.start, f64::from(p.value), utc(p.start)]))
            .collect();
        assert_eq!(expected.len(), half_hours, "{day}");
        assert_eq!(app["records"], json!(expected), "{prm} {direction} {day}");
        // Paris midnight in UTC, then every 30 minutes through the hour that is
        // skipped or repeated, the last half-hour starting 30 minutes before the
        // next Paris midnight.
        let records = app["records"].as_array().unwrap();
        assert_eq!(records[0][2], utc(midnight_seconds(day)));
        assert_eq!(
            records[half_hours - 1][2],
            utc(midnight_seconds(next) - 1800)
        );
        if direction == "production" {
            assert!(
                records.iter().any(|r| r[1].as_f64().unwrap() > 0.0),
                "the sun shone on {day}: {app}"
            );
        }
    }

    // Daily energy of a week around the autumn change: found by the name
    // `…_daily_<direction>` with a P1D interval, one value per day stamped at
    // the Paris midnight starting it, in UTC (22:00Z before the change, 23:00Z
    // after: 25 hours between the two stamps around it), the day's energy as
    // the simulator integrates it.
    let week = (
        autumn.checked_sub(jiff::ToSpan::days(3)).unwrap(),
        autumn.checked_add(jiff::ToSpan::days(4)).unwrap(),
    );
    for (prm, direction) in [(PRM, "consumption"), (PRM_BOTH_WAYS, "production")] {
        let app = as_proxy_app(&d, "get_daily", prm, direction, week).await;
        assert_eq!(app["name"], format!("urn:dev:prm:{prm}_daily_{direction}"));
        assert_eq!(app["interval"], "P1D");
        let (meter, sim_direction) = sim_meter(prm, direction);
        let expected: Vec<Value> = (0..7)
            .map(|i| {
                let day = week.0.checked_add(jiff::ToSpan::days(i)).unwrap();
                let start = midnight_seconds(day);
                let energy = enedis_sim::synth::daily_energy(&meter, sim_direction, day).unwrap();
                json!([start, energy as f64, utc(start)])
            })
            .collect();
        assert_eq!(app["records"], json!(expected), "{prm} {direction}");
        let starts: Vec<i64> = expected.iter().map(|r| r[0].as_i64().unwrap()).collect();
        assert_eq!(
            starts[4] - starts[3],
            25 * 3600,
            "the autumn day lasts 25 hours"
        );
    }
}

#[tokio::test]
async fn gajim_style_multi_stage_flows_offer_defaults_and_serve_them() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let flow = d
        .python("alice@localhost/gajim", "multistage", &["get_history"])
        .await;
    let steps = flow["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{flow}");
    // First stage: a form with a session and sensible defaults.
    assert_eq!(steps[0]["status"], "executing", "{flow}");
    assert!(
        steps[0]["sessionid"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let form = fields(&steps[0]["form"]);
    let yesterday = today().yesterday().unwrap();
    let id = identifier(PRM, POWER);
    assert_eq!(form["identifier"]["values"], json!([id]));
    assert_eq!(form["start_time"]["values"], json!([midnight(yesterday)]));
    assert_eq!(form["end_time"]["values"], json!([midnight(today())]));
    // Second stage: the defaults give yesterday's curve.
    assert_eq!(steps[1]["status"], "completed", "{flow}");
    let hours = (midnight_seconds(today()) - midnight_seconds(yesterday)) / 3600;
    assert_eq!(records(&steps[1]).len() as i64, hours * 2);

    // The legacy form too, with a period chosen by the human.
    let start = today().checked_sub(jiff::ToSpan::days(3)).unwrap();
    let flow = d
        .python(
            "alice@localhost/gajim",
            "multistage",
            &[
                "get_load_curve",
                &format!("start_date={start}"),
                &format!("end_date={}", start.tomorrow().unwrap()),
            ],
        )
        .await;
    let steps = flow["steps"].as_array().unwrap();
    let form = fields(&steps[0]["form"]);
    assert_eq!(form["usage_point_id"]["values"], json!([PRM]));
    assert_eq!(form["direction"]["values"], json!(["consumption"]));
    assert_eq!(form["direction"]["type"], "list-single");
    assert_eq!(steps[1]["status"], "completed", "{flow}");
    assert_eq!(times(&steps[1])[0], midnight_seconds(start));

    // A command without input runs at once.
    let flow = d
        .python(
            "alice@localhost/gajim",
            "multistage",
            &["list_usage_points"],
        )
        .await;
    let steps = flow["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{flow}");
    assert_eq!(steps[0]["status"], "completed");
    assert_eq!(
        fields(&steps[0]["form"])["usage_points"]["values"],
        json!([PRM])
    );
}

// --- authorisation ---------------------------------------------------------------

#[tokio::test]
async fn peers_read_only_what_they_are_granted() {
    let d = Deployment::start(AgentSettings::with_peers(vec![
        peer("alice", &[PRM]),
        peer("bob", &[PRM_PT10M]),
    ]))
    .await;
    d.prosody
        .register("mallory", common::xmpp_harness::PASSWORD)
        .await;
    let id = identifier(PRM, POWER);
    let (start, end) = (midnight(today().yesterday().unwrap()), midnight(today()));

    // A JID outside [[peers]]: not-authorized everywhere, no commands in disco,
    // whatever the letter case or resource.
    for jid in ["mallory@localhost/x", "MALLORY@LOCALHOST/Other"] {
        let answer = d.python(jid, "history", &[&id, &start, &end]).await;
        assert_error(&answer, "not-authorized", "auth");
        assert!(
            answer["text"].as_str().unwrap().contains("not a peer"),
            "{answer}"
        );
        assert_error(&d.python(jid, "list", &[]).await, "not-authorized", "auth");
        let commands = d.python(jid, "commands", &[]).await;
        assert_eq!(commands["commands"], json!([]), "{commands}");
    }

    // An allowed peer under another letter case and resource is the same peer.
    let answer = d
        .python("ALICE@LocalHost/phone", "history", &[&id, &start, &end])
        .await;
    assert_eq!(answer["status"], "completed", "{answer}");
    let commands = d.python("alice@localhost/pc", "commands", &[]).await;
    let mut nodes: Vec<&str> = commands["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            "get_authorize_uri",
            "get_contract",
            "get_daily",
            "get_history",
            "get_load_curve",
            "list_usage_points",
            "subscribe",
            "unsubscribe"
        ]
    );

    // A peer asking for a PRM granted to someone else learns nothing about it.
    let answer = d
        .python("bob@localhost/x", "history", &[&id, &start, &end])
        .await;
    assert_error(&answer, "not-authorized", "auth");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("PRM 22516914714270 is not granted to bob@localhost"),
        "{text}"
    );
    assert!(!text.contains("alice"), "{text}");
    let legacy = d
        .python(
            "bob@localhost/x",
            "legacy",
            &[
                "get_daily",
                PRM,
                "consumption",
                &today().yesterday().unwrap().to_string(),
                &today().to_string(),
            ],
        )
        .await;
    assert_error(&legacy, "not-authorized", "auth");
    // Nothing was asked upstream for refused requests.
    assert_eq!(
        d.sim
            .admin()
            .call_count("GET /mesure_synchrone_auto/v2/consommation_quotidienne")
            .await,
        0
    );
}

#[tokio::test]
async fn consents_in_the_store_grant_access_until_they_expire() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("bob", &[])])).await;
    let config = d.files.path();
    let add = |prm: &'static str, from: String, until: String| {
        let config = config.clone();
        async move {
            let out = tokio::process::Command::new(AGENT_BIN)
                .arg("--config")
                .arg(&config)
                .args(["consents", "add", "--owner", "bob@localhost", "--prm", prm])
                .args(["--from", &from, "--until", &until])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let next_year = today().checked_add(jiff::ToSpan::years(1)).unwrap();
    add(PRM_PROFILE_1, "2026-01-01".into(), next_year.to_string()).await;
    add("12345678901234", "2025-01-01".into(), "2025-06-01".into()).await;

    let (start, end) = (midnight(today().yesterday().unwrap()), midnight(today()));
    let answer = d
        .python(
            "bob@localhost/x",
            "history",
            &[&identifier(PRM_PROFILE_1, POWER), &start, &end],
        )
        .await;
    assert_eq!(answer["status"], "completed", "{answer}");

    let answer = d
        .python(
            "bob@localhost/x",
            "history",
            &[&identifier("12345678901234", POWER), &start, &end],
        )
        .await;
    assert_error(&answer, "not-authorized", "auth");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("expired on 2025-05-31T22:00:00Z"), "{text}");

    let list = d.python("bob@localhost/x", "list", &[]).await;
    let form = fields(&list["form"]);
    assert_eq!(form["usage_points"]["values"], json!([PRM_PROFILE_1]));
    let lines = form[PRM_PROFILE_1]["values"].as_array().unwrap();
    assert!(
        lines[1]
            .as_str()
            .unwrap()
            .starts_with("access: consent 1 (Enedis API 2026)"),
        "{lines:?}"
    );
    assert_eq!(
        lines[2],
        format!(
            "valid until: {}",
            jiff::Timestamp::from_second(midnight_seconds(next_year)).unwrap()
        )
    );
}

// --- time: DST days and meter steps ---------------------------------------------

#[tokio::test]
async fn dst_days_and_meter_steps_give_the_right_number_of_records() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer(
        "alice",
        &[PRM, PRM_PT10M],
    )]))
    .await;
    let cases = [
        (PRM, last_dst_day(23), 46, 1800),
        (PRM, last_dst_day(25), 50, 1800),
        (
            PRM_PT10M,
            today().checked_sub(jiff::ToSpan::days(2)).unwrap(),
            144,
            600,
        ),
    ];
    for (prm, day, expected, step) in cases {
        let answer = d
            .python(
                "alice@localhost/x",
                "history",
                &[
                    &identifier(prm, POWER),
                    &midnight(day),
                    &midnight(day.tomorrow().unwrap()),
                ],
            )
            .await;
        let t = times(&answer);
        // PT10M on an ordinary day only; a DST day changes the count.
        let hours = (midnight_seconds(day.tomorrow().unwrap()) - midnight_seconds(day)) / 3600;
        let expected = if step == 600 { hours * 6 } else { expected };
        assert_eq!(t.len() as i64, expected, "{prm} {day}");
        assert_eq!(t[0], midnight_seconds(day));
        assert!(t.windows(2).all(|w| w[1] - w[0] == step), "{prm} {day}");
        let sampling = &answer["data"][0]["meta"]["measurement"]["sampling-interval"];
        assert_eq!(sampling, if step == 600 { "PT10M" } else { "PT30M" });
    }
}

// --- errors ------------------------------------------------------------------------

#[tokio::test]
async fn malformed_requests_are_bad_request_naming_the_field() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let id = identifier(PRM, POWER);
    let (start, end) = (midnight(today().yesterday().unwrap()), midnight(today()));
    let cases: Vec<([String; 3], &str)> = vec![
        (
            [
                "urn:dev:prm:2251691471427_consumption/power/active/raw".into(),
                start.clone(),
                end.clone(),
            ],
            "field 'identifier': invalid PRM \"2251691471427\" in identifier: a PRM has 14 digits",
        ),
        (
            [
                format!("urn:dev:prm:{PRM}_consumption/power/reactive/raw"),
                start.clone(),
                end.clone(),
            ],
            "field 'identifier': unknown series \"consumption/power/reactive/raw\"",
        ),
        (
            [id.clone(), "2026-11-01T00:00:00".into(), end.clone()],
            "field 'start_time': invalid date-time \"2026-11-01T00:00:00\"",
        ),
        (
            [id.clone(), end.clone(), start.clone()],
            "fields start_time/end_time: the period is empty",
        ),
        (
            [
                id.clone(),
                midnight(today().tomorrow().unwrap()),
                midnight(today().tomorrow().unwrap().tomorrow().unwrap()),
            ],
            "fields start_time/end_time: refused: the period starts on",
        ),
    ];
    for ([identifier, start, end], text) in cases {
        let answer = d
            .python("alice@localhost/x", "history", &[&identifier, &start, &end])
            .await;
        assert_error(&answer, "bad-request", "modify");
        let got = answer["text"].as_str().unwrap();
        assert!(got.starts_with(text), "expected {text:?}, got {got:?}");
    }
    // The agent is still there.
    assert_eq!(d.agent.healthz().await.unwrap().0, 200);
}

#[tokio::test]
async fn enedis_refusals_and_outages_map_to_the_protocols_errors() {
    let mut d = Deployment::start(AgentSettings::with_peers(vec![peer(
        "alice",
        &[PRM, PRM_PROFILE_1],
    )]))
    .await;
    let (start, end) = (midnight(today().yesterday().unwrap()), midnight(today()));
    let admin = d.sim.admin();

    // Profile 1 asked before its activation: the agent clamps to Enedis'
    // 24-month history first, so the refusal is forced at the simulator.
    let message = "The requested period cannot be anterior to the meter's last activation date";
    admin
        .faults(json!({"force_status": {
            "status": 400,
            "body": json!({"error": "ADAM-ERR0123", "error_description": message}).to_string(),
        }}))
        .await;
    let answer = d
        .python(
            "alice@localhost/x",
            "history",
            &[&identifier(PRM_PROFILE_1, POWER), &start, &end],
        )
        .await;
    assert_error(&answer, "undefined-condition", "cancel");
    assert_eq!(answer["text"], message);
    assert_eq!(
        answer["upstream"],
        json!({"issuer": "enedis-data-connect", "code": "ADAM-ERR0123"})
    );

    // A production series of a consumption-only meter: Enedis' own refusal.
    admin.clear_faults().await;
    let answer = d
        .python(
            "alice@localhost/x",
            "history",
            &[
                &identifier(PRM, "production/power/active/raw"),
                &start,
                &end,
            ],
        )
        .await;
    assert_error(&answer, "undefined-condition", "cancel");
    assert_eq!(answer["upstream"]["code"], "ADAM-ERR0069", "{answer}");

    // Enedis failing (500 on every call, after the configured retry).
    admin.faults(json!({"failure_rate": 1.0})).await;
    let answer = d
        .python(
            "alice@localhost/x",
            "history",
            &[&identifier(PRM, POWER), &start, &end],
        )
        .await;
    assert_error(&answer, "service-unavailable", "wait");

    // Enedis unreachable.
    admin.clear_faults().await;
    d.sim.stop();
    let answer = d
        .python(
            "alice@localhost/x",
            "history",
            &[&identifier(PRM, POWER), &start, &end],
        )
        .await;
    assert_error(&answer, "service-unavailable", "wait");
    assert!(
        !answer["text"].as_str().unwrap().contains("127.0.0.1"),
        "{answer}"
    );
    // Still serving.
    assert_eq!(d.agent.healthz().await.unwrap().0, 200);
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains(r#"quoalise_agent_requests_total{command="get_history",outcome="service-unavailable"} 2"#),
        "{metrics}"
    );
}

// --- concurrency and deadlines ---------------------------------------------------

#[tokio::test]
async fn a_slow_upstream_delays_nobody_else_and_meets_the_deadline() {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM]), peer("bob", &[PRM])]);
    // Margins for a loaded machine: bob's answer must come long before alice's
    // deadline, which comes long before Enedis answers.
    settings.request_timeout_secs = 6;
    let d = Deployment::start(settings).await;
    let alice = Peer::login(&d.prosody, "alice@localhost/x").await;
    let bob = Peer::login(&d.prosody, "bob@localhost/x").await;
    // Warm the application token so only data calls are slow.
    let day = today().yesterday().unwrap();
    let form = submit(&[
        ("identifier", &identifier(PRM, POWER)),
        ("start_time", &midnight(day)),
        ("end_time", &midnight(today())),
    ]);
    alice
        .command(Command::execute("get_history", Some(form.clone())))
        .await
        .expect("a first answer");

    d.sim.admin().faults(json!({"latency_ms": 15000})).await;
    let slow = tokio::spawn(async move {
        let answer = alice
            .command(Command::execute("get_history", Some(form)))
            .await;
        (alice, answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = bob
        .command(Command::execute("list_usage_points", None))
        .await
        .expect("bob's list");
    assert!(list.form.is_some());
    assert!(
        !slow.is_finished(),
        "bob was answered while alice's request still waits on Enedis"
    );

    // Past its deadline the slow request gets an error, not silence.
    let (_alice, answer) = slow.await.unwrap();
    let error = answer.expect_err("a request past its deadline fails");
    let (name, text) = condition(&error);
    assert_eq!(name, "service-unavailable");
    assert!(text.contains("did not answer in time"), "{text}");
    assert!(
        d.agent
            .wait_log("outcome=service-unavailable", Duration::from_secs(5))
            .await
    );
}

// --- the peer command line ---------------------------------------------------------

#[tokio::test]
async fn the_query_command_line_prints_records_and_errors() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    d.prosody
        .register("mallory", common::xmpp_harness::PASSWORD)
        .await;
    let id = identifier(PRM, POWER);
    let day = today().checked_sub(jiff::ToSpan::days(2)).unwrap();
    let (start, end) = (midnight(day), midnight(day.tomorrow().unwrap()));
    let half_hours = (midnight_seconds(day.tomorrow().unwrap()) - midnight_seconds(day)) / 1800;

    let (code, xml, summary) = d
        .query(
            "alice",
            &["get-history", &id, "--start", &start, "--end", &end],
        )
        .await;
    assert_eq!(code, 0, "{summary}");
    let element: minidom::Element = xml.trim().parse().expect("the XML output parses");
    assert!(element.is("quoalise", NS_QUOALISE));
    let series = decode_element(&element).unwrap()[0]
        .to_time_series()
        .unwrap();
    assert_eq!(series.readings.len() as i64, half_hours);
    assert!(
        summary.contains(&format!("{half_hours} records of {id} (PT30M)")),
        "{summary}"
    );
    assert!(summary.contains(&format!(
        "first {}",
        jiff::Timestamp::from_second(midnight_seconds(day)).unwrap()
    )));
    assert!(summary.contains(" W"), "{summary}");

    let (code, csv, _) = d
        .query(
            "alice",
            &[
                "get-history",
                &id,
                "--start",
                &start,
                "--end",
                &end,
                "--format",
                "csv",
            ],
        )
        .await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,value");
    assert_eq!(lines.len() as i64, half_hours + 1);
    assert!(lines[1].starts_with(&format!(
        "{},",
        jiff::Timestamp::from_second(midnight_seconds(day)).unwrap()
    )));

    let (code, json_text, _) = d
        .query(
            "alice",
            &[
                "get-daily",
                PRM,
                "--start",
                &day.to_string(),
                "--end",
                &today().to_string(),
                "--format",
                "json",
            ],
        )
        .await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(json["unit"], "Wh");
    assert_eq!(
        json["identifier"],
        identifier(PRM, "consumption/energy/active/daily")
    );
    assert_eq!(json["records"].as_array().unwrap().len(), 2);

    let (code, list, _) = d.query("alice", &["list-usage-points"]).await;
    assert_eq!(code, 0);
    assert!(
        list.contains("Usage points you may read: 22516914714270"),
        "{list}"
    );

    // The agent's errors: a clear message and a non-zero status.
    let (code, out, err) = d
        .query(
            "mallory",
            &["get-history", &id, "--start", &start, "--end", &end],
        )
        .await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("the agent answered not-authorized: mallory@localhost is not a peer"),
        "{err}"
    );
    let (code, _, err) = d
        .query(
            "alice",
            &[
                "get-load-curve",
                PRM,
                "--start",
                &day.to_string(),
                "--end",
                "2026-13-01",
            ],
        )
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("bad-request: field 'end_date': invalid date"),
        "{err}"
    );

    // A failed login says why.
    let wrong = d.dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let out = tokio::process::Command::new(AGENT_BIN)
        .args(["query", "--jid", "alice@localhost", "--password-file"])
        .arg(&wrong)
        .args([
            "--to",
            "agent@localhost/agent",
            "--server",
            &d.prosody.server(),
            "--ca-file",
        ])
        .arg(d.prosody.ca_file())
        .arg("list-usage-points")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot log in as alice@localhost"), "{err}");
    assert!(err.contains("wrong password"), "{err}");
}
