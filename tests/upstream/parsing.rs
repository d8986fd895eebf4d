//! Reading Enedis answers without a network: every captured fixture (2026 and v5,
//! and the seed's v3 example; the contract answers of 2026 and those written from
//! the v5 openapi), error bodies of every shape, DST days, and bodies that are
//! wrong in every way a gateway can make them. Also the pure parts of the
//! client: day windows and their splitting, consent durations, callbacks, URLs.

use jiff::Timestamp;
use jiff::civil::{Date, date};
use quoalise_agent::config::{ApiGeneration, EnedisConfig, Secret};
use quoalise_agent::quoalise::contract::{
    Activation, Address, Changed, Coded, Contract, LastChange, Power,
};
use quoalise_agent::quoalise::{Direction, Prm, Reading, Series, Step};
use quoalise_agent::time::day_start;
use quoalise_agent::upstream::error::{excerpt, parse_error_body};
use quoalise_agent::upstream::v1::{self, V3, V4, V5};
use quoalise_agent::upstream::{
    Callback, ConsentDuration, Dialect, UpstreamError, api2026, authorize_url, parse_prm_list,
    window,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/upstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn utc(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_second()
}

const CONS_PRM: &str = "99999999999991";
const PROD_PRM: &str = "99999999999992";

fn assert_consecutive(readings: &[Reading], seconds: i64) {
    for pair in readings.windows(2) {
        assert_eq!(
            pair[1].start - pair[0].start,
            seconds,
            "not consecutive: {pair:?}"
        );
    }
}

#[test]
fn load_curve_2026_fixture_is_start_stamped_utc() {
    let readings = api2026::parse_readings(
        Series::ConsumptionPower,
        &prm(CONS_PRM),
        date(2026, 9, 29),
        date(2026, 10, 1),
        &fixture("2026/mesure_courbe_de_charge_consommation.json"),
    )
    .unwrap();
    assert_eq!(readings.len(), 96);
    // "2026-09-29 00:30:00" ends the first half-hour: it starts at Paris midnight.
    assert_eq!(readings[0].start, utc("2026-09-28T22:00:00Z"));
    assert_eq!(readings[0].value, Some(4078.0));
    assert_eq!(readings[0].step, Step::PT30M);
    assert_consecutive(&readings, 1800);
    let last = readings.last().unwrap();
    assert_eq!(last.start + 1800, utc("2026-09-30T22:00:00Z"));
    assert_eq!(last.value, Some(3974.0));
}

#[test]
fn v5_and_2026_fixtures_of_the_same_curve_give_the_same_readings() {
    let (from, to) = (date(2026, 9, 29), date(2026, 10, 1));
    let new = api2026::parse_readings(
        Series::ConsumptionPower,
        &prm(CONS_PRM),
        from,
        to,
        &fixture("2026/mesure_courbe_de_charge_consommation.json"),
    )
    .unwrap();
    let old = V5
        .parse(
            Series::ConsumptionPower,
            &prm(CONS_PRM),
            from,
            to,
            &fixture("2026/v5_consumption_load_curve.json"),
        )
        .unwrap();
    assert_eq!(old.len(), 96);
    assert_eq!(new, old);
}

#[test]
fn production_load_curve_2026_fixture() {
    let readings = api2026::parse_readings(
        Series::ProductionPower,
        &prm(PROD_PRM),
        date(2026, 9, 29),
        date(2026, 10, 1),
        &fixture("2026/mesure_courbe_de_charge_production.json"),
    )
    .unwrap();
    assert_eq!(readings.len(), 96);
    assert_consecutive(&readings, 1800);
    // Night: zero production is a real zero, not a missing value.
    assert_eq!(readings[0].value, Some(0.0));
    let noon = readings
        .iter()
        .find(|r| r.start == utc("2026-09-29T10:00:00Z"))
        .unwrap();
    assert!(noon.value.unwrap() > 0.0, "{noon:?}");
}

#[test]
fn daily_2026_fixtures_are_paris_midnights() {
    let (from, to) = (date(2026, 9, 29), date(2026, 10, 1));
    let cases = [
        (
            Series::ConsumptionEnergyDaily,
            CONS_PRM,
            "2026/mesure_consommation_quotidienne.json",
            [33495.0, 38022.0],
        ),
        (
            Series::ProductionEnergyDaily,
            PROD_PRM,
            "2026/mesure_production_quotidienne.json",
            [8263.0, 941.0],
        ),
        // The peak's instant is dropped: the value stands for its Paris day.
        (
            Series::ConsumptionMaxPower,
            CONS_PRM,
            "2026/mesure_puissance_conso_max_quotidienne.json",
            [4680.0, 6510.0],
        ),
    ];
    for (series, id, file, values) in cases {
        let readings = api2026::parse_readings(series, &prm(id), from, to, &fixture(file)).unwrap();
        assert_eq!(
            readings,
            vec![
                Reading {
                    start: utc("2026-09-28T22:00:00Z"),
                    step: Step::Day,
                    value: Some(values[0])
                },
                Reading {
                    start: utc("2026-09-29T22:00:00Z"),
                    step: Step::Day,
                    value: Some(values[1])
                },
            ],
            "{file}"
        );
    }
}

#[test]
fn readings_outside_the_asked_days_are_dropped() {
    let readings = api2026::parse_readings(
        Series::ConsumptionPower,
        &prm(CONS_PRM),
        date(2026, 9, 30),
        date(2026, 10, 1),
        &fixture("2026/mesure_courbe_de_charge_consommation.json"),
    )
    .unwrap();
    assert_eq!(readings.len(), 48);
    assert_eq!(readings[0].start, utc("2026-09-29T22:00:00Z"));
}

#[test]
fn an_answer_for_another_series_or_prm_is_refused_with_the_reason() {
    let body = fixture("2026/mesure_courbe_de_charge_production.json");
    let err = api2026::parse_readings(
        Series::ConsumptionPower,
        &prm(PROD_PRM),
        date(2026, 9, 29),
        date(2026, 10, 1),
        &body,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("CONS/PA") && err.contains("PROD/PA"), "{err}");

    let err = api2026::parse_readings(
        Series::ProductionPower,
        &prm(CONS_PRM),
        date(2026, 9, 29),
        date(2026, 10, 1),
        &body,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(PROD_PRM) && err.contains(CONS_PRM), "{err}");
}

#[test]
fn the_gateway_error_fixture_gives_code_and_message() {
    let (code, message) = parse_error_body(&fixture("2026/erreur_comptage_non_souscrit.json"))
        .expect("an error body");
    assert_eq!(code.as_deref(), Some("900908"));
    assert!(message.starts_with("Resource forbidden"), "{message}");
    assert!(
        message.contains("API Subscription validation failed"),
        "{message}"
    );
}

#[test]
fn contract_fixtures_are_not_taken_for_metering_answers() {
    for file in [
        "2026/donnees_generales.json",
        "2026/situation_contrat_autoconsommation.json",
        "2026/situation_contrat_consommateur.json",
        "2026/synth_contrat_autoconsommation.json",
        "2026/synth_contrat_consommateur.json",
        "2026/erreur_comptage_non_souscrit.json",
    ] {
        let body = fixture(file);
        let (from, to) = (date(2026, 9, 29), date(2026, 10, 1));
        let err =
            api2026::parse_readings(Series::ConsumptionPower, &prm(CONS_PRM), from, to, &body)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("not a mesure_synchrone_auto answer"),
            "{file}: {err}"
        );
        let err = V5
            .parse(Series::ConsumptionPower, &prm(CONS_PRM), from, to, &body)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metering_data"), "{file}: {err}");
    }
}

#[test]
fn truncated_and_non_json_bodies_are_errors_not_panics() {
    let body = fixture("2026/mesure_courbe_de_charge_consommation.json");
    let half = &body[..body.len() / 2];
    let (from, to) = (date(2026, 9, 29), date(2026, 10, 1));
    for bad in [
        half,
        b"".as_slice(),
        b"<html><body>502 Bad Gateway</body></html>",
        b"[]",
        b"null",
        b"{\"grandeur\": 3}",
        b"{\"grandeur\": [{\"grandeurMetier\": \"CONS\", \"grandeurPhysique\": \"PA\", \"points\": [{\"v\": \"1\"}]}]}",
    ] {
        let err = api2026::parse_readings(Series::ConsumptionPower, &prm(CONS_PRM), from, to, bad)
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        assert!(
            V5.parse(Series::ConsumptionPower, &prm(CONS_PRM), from, to, bad).is_err()
        );
        assert!(
            V3.parse(Series::ConsumptionPower, &prm(CONS_PRM), from, to, bad).is_err()
        );
    }
}

#[test]
fn missing_values_stay_missing_never_zero() {
    let body = br#"{"idPrm":"99999999999991","periode":{},"grandeur":[{"grandeurMetier":"CONS","grandeurPhysique":"EA","unite":"Wh","points":[
        {"v":null,"d":"2026-09-29"},{"v":"","d":"2026-09-30"},{"d":"2026-10-01"},{"v":12,"d":"2026-10-02"},{"v":"0","d":"2026-10-03"}]}]}"#;
    let readings = api2026::parse_readings(
        Series::ConsumptionEnergyDaily,
        &prm(CONS_PRM),
        date(2026, 9, 29),
        date(2026, 10, 4),
        body,
    )
    .unwrap();
    let values: Vec<Option<f64>> = readings.iter().map(|r| r.value).collect();
    assert_eq!(values, [None, None, None, Some(12.0), Some(0.0)]);

    let garbage = br#"{"idPrm":"99999999999991","grandeur":[{"grandeurMetier":"CONS","grandeurPhysique":"EA","points":[{"v":"12kW","d":"2026-09-29"}]}]}"#;
    let err = api2026::parse_readings(
        Series::ConsumptionEnergyDaily,
        &prm(CONS_PRM),
        date(2026, 9, 29),
        date(2026, 9, 30),
        garbage,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("12kW") && err.contains("not a number"),
        "{err}"
    );
}

/// End stamps of a Paris day of half-hours, as Enedis writes them.
fn half_hour_ends(day: Date) -> Vec<String> {
    let start = day_start(day).unwrap();
    let end = day_start(day.tomorrow().unwrap()).unwrap();
    (1..)
        .map(|i| start + i * 1800)
        .take_while(|t| *t <= end)
        .map(|t| {
            quoalise_agent::time::PARIS
                .to_datetime(Timestamp::from_second(t).unwrap())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .collect()
}

#[test]
fn dst_days_in_2026_and_v5_formats() {
    for (day, expected) in [(date(2026, 10, 25), 50), (date(2026, 3, 29), 46)] {
        let ends = half_hour_ends(day);
        assert_eq!(ends.len(), expected);
        let points: Vec<String> = ends
            .iter()
            .enumerate()
            .map(|(i, d)| format!(r#"{{"v":"{i}","d":"{d}","p":"PT30M","n":"B"}}"#))
            .collect();
        let body = format!(
            r#"{{"idPrm":"{CONS_PRM}","grandeur":[{{"grandeurMetier":"CONS","grandeurPhysique":"PA","unite":"W","points":[{}]}}]}}"#,
            points.join(",")
        );
        let tomorrow = day.tomorrow().unwrap();
        let readings = api2026::parse_readings(
            Series::ConsumptionPower,
            &prm(CONS_PRM),
            day,
            tomorrow,
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(readings.len(), expected, "{day}");
        assert_consecutive(&readings, 1800);
        assert_eq!(readings[0].start, day_start(day).unwrap());
        // Values stay in upstream order: the repeated autumn hour is not folded.
        let values: Vec<f64> = readings.iter().map(|r| r.value.unwrap()).collect();
        assert!(values.windows(2).all(|w| w[1] == w[0] + 1.0), "{values:?}");

        let v5_points: Vec<String> = ends
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    r#"{{"value":"{i}","date":"{d}","interval_length":"PT30M","measure_type":"B"}}"#
                )
            })
            .collect();
        let v5_body = format!(
            r#"{{"meter_reading":{{"usage_point_id":"{CONS_PRM}","start":"{day}","end":"{tomorrow}","quality":"BRUT","reading_type":{{"unit":"W","measurement_kind":"power","aggregate":"average"}},"interval_reading":[{}]}}}}"#,
            v5_points.join(",")
        );
        let from_v5 = V5
            .parse(
                Series::ConsumptionPower,
                &prm(CONS_PRM),
                day,
                tomorrow,
                v5_body.as_bytes(),
            )
            .unwrap();
        assert_eq!(from_v5, readings);
        let from_v4 = V4
            .parse(
                Series::ConsumptionPower,
                &prm(CONS_PRM),
                day,
                tomorrow,
                v5_body.as_bytes(),
            )
            .unwrap();
        assert_eq!(from_v4, readings);

        // v3: ranks count real intervals from Paris midnight.
        let ranks: Vec<String> = (1..=expected)
            .map(|n| format!(r#"{{"rank":"{n}","value":"{}"}}"#, n - 1))
            .collect();
        let v3_body = format!(
            r#"{{"usage_point":[{{"meter_reading":{{"usage_point_id":"{CONS_PRM}","start":"{day}","end":"{tomorrow}","reading_type":{{"measurement_kind":"power","interval_length":"1800","unit":"W","aggregate":"average"}},"interval_reading":[{}]}}}}]}}"#,
            ranks.join(",")
        );
        let from_v3 = V3
            .parse(
                Series::ConsumptionPower,
                &prm(CONS_PRM),
                day,
                tomorrow,
                v3_body.as_bytes(),
            )
            .unwrap();
        assert_eq!(from_v3, readings);
    }
}

#[test]
fn the_seed_v3_example_is_placed_by_rank() {
    let readings = V3
        .parse(
            Series::ConsumptionPower,
            &prm("22516914714270"),
            date(2019, 12, 1),
            date(2019, 12, 5),
            &fixture("v3_seed_load_curve.json"),
        )
        .unwrap();
    let got: Vec<(i64, Option<f64>)> = readings.iter().map(|r| (r.start, r.value)).collect();
    assert_eq!(
        got,
        [
            // rank 49 = the first half-hour of the second day (00:00 CET = 23:00Z)
            (utc("2019-12-01T23:00:00Z"), Some(200.0)),
            (utc("2019-12-01T23:30:00Z"), Some(228.0)),
            (utc("2019-12-04T22:00:00Z"), Some(6384.0)),
            // rank 192 = 23:30–24:00 of the last day
            (utc("2019-12-04T22:30:00Z"), Some(3664.0)),
        ]
    );
    assert!(readings.iter().all(|r| r.step == Step::PT30M));
}

#[test]
fn v3_daily_ranks_are_days() {
    let body = br#"{"usage_point":[{"meter_reading":{"usage_point_id":"22516914714270","start":"2026-10-24","end":"2026-10-27",
        "reading_type":{"measurement_kind":"energy","interval_length":"86400","unit":"Wh","aggregate":"sum"},
        "interval_reading":[{"rank":"1","value":"10"},{"rank":"2","value":"20"},{"rank":"3","value":"30"}]}}]}"#;
    let readings = V3
        .parse(
            Series::ConsumptionEnergyDaily,
            &prm("22516914714270"),
            date(2026, 10, 24),
            date(2026, 10, 27),
            body,
        )
        .unwrap();
    let starts: Vec<i64> = readings.iter().map(|r| r.start).collect();
    // 2026-10-25 has 25 hours: day starts follow the calendar, not 86,400 s.
    assert_eq!(
        starts,
        [
            utc("2026-10-23T22:00:00Z"),
            utc("2026-10-24T22:00:00Z"),
            utc("2026-10-25T23:00:00Z")
        ]
    );
}

#[test]
fn error_bodies_of_every_shape() {
    let cases: [(&[u8], Option<&str>, &str); 8] = [
        (
            br#"{"error":"ADAM-ERR0123","error_description":"The requested period cannot be anterior to the meter's last activation date"}"#,
            Some("ADAM-ERR0123"),
            "anterior",
        ),
        (
            br#"{"code":"ADAM-DC-0008","message":"No consent can be found for this customer and this usage point."}"#,
            Some("ADAM-DC-0008"),
            "No consent",
        ),
        (
            br#"{"fault":{"code":900901,"message":"Invalid Credentials","description":"Access failure for API"}}"#,
            Some("900901"),
            "Invalid Credentials",
        ),
        (
            br#"{"fault":{"code":900807,"message":"Message throttled out","nextAccessTime":"2026-Oct-04 12:00:01+0000 UTC"}}"#,
            Some("900807"),
            "throttled",
        ),
        (
            br#"{"code":"900804","message":"Message throttled out","description":"You have exceeded your quota","nextAccessTime":"2026-Oct-04 12:00:01+0000 UTC"}"#,
            Some("900804"),
            "exceeded",
        ),
        (
            br#"{"error":"429","error_description":"Quota Q4 reached"}"#,
            Some("429"),
            "Quota Q4",
        ),
        (
            br#"{"error":{"code":"technical_error","message":"Technical error"}}"#,
            Some("technical_error"),
            "Technical",
        ),
        (b"\xEF\xBB\xBF{\"code\":404,\"message\":\"PRM non existant\"}", Some("404"), "PRM non existant"),
    ];
    for (body, code, message) in cases {
        let (got_code, got_message) = parse_error_body(body).expect("a known shape");
        assert_eq!(got_code.as_deref(), code);
        assert!(got_message.contains(message), "{got_message}");
    }
    assert_eq!(parse_error_body(b"<html>Bad Gateway</html>"), None);
    assert_eq!(parse_error_body(b"{\"foo\":1}"), None);
    assert_eq!(parse_error_body(b""), None);
    // Excerpts are short, on one line, quoted.
    let long = "x".repeat(500) + "\n<secret?>";
    let e = excerpt(long.as_bytes());
    assert!(e.chars().count() < 130 && !e.contains('\n'), "{e}");
}

#[test]
fn windows_are_split_clamped_or_refused_with_the_reason() {
    let today = date(2026, 11, 29);
    // 30 days of load curve: 7+7+7+7+2, in order, contiguous.
    let plan = window::plan(
        Series::ConsumptionPower,
        date(2026, 10, 29),
        date(2026, 11, 28),
        today,
    )
    .unwrap();
    assert_eq!(plan.calls.len(), 5);
    assert_eq!(plan.calls[0], (date(2026, 10, 29), date(2026, 11, 5)));
    assert_eq!(plan.calls[4], (date(2026, 11, 26), date(2026, 11, 28)));
    assert!(plan.calls.windows(2).all(|w| w[0].1 == w[1].0));
    assert!(plan.notes.is_empty());
    // 365 days of daily energy: one call; 366: two.
    for (days, calls) in [(365, 1), (366, 2)] {
        let from = date(2026, 11, 28)
            .checked_sub(jiff::Span::new().days(days))
            .unwrap();
        let plan = window::plan(
            Series::ConsumptionEnergyDaily,
            from,
            date(2026, 11, 28),
            today,
        )
        .unwrap();
        assert_eq!(plan.calls.len(), calls, "{days} days");
    }
    // Ending after yesterday: clamped to today (exclusive), and said so.
    let plan = window::plan(
        Series::ConsumptionEnergyDaily,
        date(2026, 11, 20),
        date(2026, 12, 5),
        today,
    )
    .unwrap();
    assert_eq!(plan.to, today);
    assert!(plan.notes[0].contains("end clamped") && plan.notes[0].contains("2026-11-28"));
    // Starting today or later: refused.
    let err = window::plan(Series::ConsumptionPower, today, date(2026, 12, 1), today).unwrap_err();
    assert!(matches!(err, UpstreamError::BadWindow(_)));
    assert!(
        err.to_string().contains("only up to yesterday (2026-11-28"),
        "{err}"
    );
    // Older than 24 months + 15 days: clamped if it overlaps, refused otherwise.
    let oldest = date(2024, 11, 14);
    let plan = window::plan(
        Series::ConsumptionPower,
        date(2024, 11, 1),
        date(2024, 11, 20),
        today,
    )
    .unwrap();
    assert_eq!(plan.from, oldest);
    assert!(
        plan.notes[0].contains("24 months + 15 days"),
        "{:?}",
        plan.notes
    );
    let err = window::plan(Series::ConsumptionPower, date(2024, 10, 1), oldest, today).unwrap_err();
    assert!(
        err.to_string().contains("history limit") && err.to_string().contains("2024-11-14"),
        "{err}"
    );
    // Daily values go back 36 months + 15 days.
    let plan = window::plan(
        Series::ConsumptionMaxPower,
        date(2023, 11, 14),
        date(2023, 11, 20),
        today,
    )
    .unwrap();
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    let err = window::plan(
        Series::ConsumptionEnergyDaily,
        date(2026, 5, 1),
        date(2026, 5, 1),
        today,
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn consent_durations() {
    let today = date(2026, 11, 29);
    for ok in ["P1Y", "P3Y", "P6M", "P1095D", "P2Y11M", "P52W"] {
        let d = ConsentDuration::parse_at(ok, today).unwrap();
        assert_eq!(d.as_str(), ok.to_ascii_uppercase());
    }
    for (bad, why) in [
        ("P4Y", "at most 3 years"),
        ("P3Y1D", "at most 3 years"),
        ("PT12H", "only years"),
        ("P0D", "positive"),
        ("1Y", "ISO 8601"),
        ("", "ISO 8601"),
        ("P1Y; DROP", "ISO 8601"),
    ] {
        let err = ConsentDuration::parse_at(bad, today)
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let start = utc("2026-03-01T00:00:00Z");
    let one_year = ConsentDuration::parse_at("P1Y", today).unwrap();
    assert_eq!(
        one_year.end_from(start).unwrap(),
        utc("2027-03-01T00:00:00Z")
    );
}

#[test]
fn callbacks_of_every_generation() {
    let v4 = Callback::from_query("code=abc123&state=s0&usage_point_id=22516914714270");
    assert_eq!(v4.code.as_deref(), Some("abc123"));
    assert!(
        !format!("{v4:?}").contains("abc123"),
        "the code is a credential"
    );
    let v5 = Callback::from_query(
        "?state=x7&usage_point_id=64975835695673%3B63695879465986,22315546958763",
    );
    let prms = parse_prm_list(v5.usage_point_id.as_deref().unwrap(), "usage_point_id").unwrap();
    assert_eq!(prms.len(), 3);
    let v2 = Callback::from_query("autorisation_id=123456&state=abc");
    assert_eq!(v2.autorisation_id.as_deref(), Some("123456"));
    // Refusal: no state, an error, and a numeric `code` that is not a grant.
    let refused = Callback::from_query(
        "code=403&error=access_denied&error_description=authorization_request_refused",
    );
    let err = refused.refusal().unwrap();
    assert_eq!(err.enedis_code(), Some("access_denied"));
    assert!(err.to_string().contains("authorization_request_refused"));
    assert!(
        Callback::from_query("autorisation_id=1")
            .refusal()
            .is_none()
    );
    let err = parse_prm_list("2251691471427X", "usage_point_id")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("usage_point_id") && err.contains("not a PRM"),
        "{err}"
    );
}

fn enedis_config(api: ApiGeneration) -> EnedisConfig {
    EnedisConfig {
        api,
        base_url: "https://gw.example".into(),
        authorize_url: "https://mon-compte-particulier.enedis.fr/".into(),
        client_id: "my-client".into(),
        client_secret: Secret::new("s3cret"),
        redirect_uri: "https://agent.example.org/redirect".into(),
        sandbox: false,
        calls_per_second: 5,
        calls_per_hour: 1000,
        interactive_reserve_percent: 20,
        connect_timeout_secs: 5,
        request_timeout_secs: 30,
        max_retries: 3,
        quota_wait_secs: 60,
    }
}

#[test]
fn authorize_urls_per_generation() {
    let duration = ConsentDuration::parse_at("P1Y", date(2026, 11, 29)).unwrap();
    let url = authorize_url(&enedis_config(ApiGeneration::Api2026), "abc-1", &duration).unwrap();
    assert_eq!(url.path(), "/dataconnect/v2/oauth2/authorize");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("client_id".into(), "my-client".into())));
    assert!(pairs.contains(&("state".into(), "abc-1".into())));
    assert!(pairs.contains(&("duration".into(), "P1Y".into())));
    assert!(pairs.contains(&("response_type".into(), "code".into())));
    assert!(!pairs.iter().any(|(k, _)| k == "redirect_uri"));
    assert!(!url.as_str().contains("s3cret"));

    let url = authorize_url(&enedis_config(ApiGeneration::V5), "abc-1", &duration).unwrap();
    assert_eq!(url.path(), "/dataconnect/v1/oauth2/authorize");
    assert!(!url.query_pairs().any(|(k, _)| k == "redirect_uri"));
    for api in [ApiGeneration::V4, ApiGeneration::V3] {
        let url = authorize_url(&enedis_config(api), "abc-1", &duration).unwrap();
        assert_eq!(url.path(), "/dataconnect/v1/oauth2/authorize");
        assert!(
            url.query_pairs()
                .any(|(k, v)| k == "redirect_uri" && v == "https://agent.example.org/redirect")
        );
    }
    let config = enedis_config(ApiGeneration::Api2026);
    assert!(authorize_url(&config, "", &duration).is_err());
    assert!(authorize_url(&config, &"a".repeat(101), &duration).is_err());
    assert!(authorize_url(&config, "a&b=c", &duration).is_err());
}

#[test]
fn subscribed_services_keep_active_prms_once() {
    let body = br#"{"nbTotalServices":4,"serviceSouscrit":[
        {"pointId":"22516914714270","etatCode":"ACTIF","dateDebut":"2026-10-04","dateFin":"2027-10-03","mesuresTypeCode":"CDC","autorisation":{"autorisationId":42}},
        {"pointId":"22516914714270","etatCode":"ACTIF","dateDebut":"2026-10-04","dateFin":"2027-10-04","mesuresTypeCode":"ENERGIE"},
        {"pointId":"11453290002823","etatCode":"TERMINE","dateDebut":"2025-01-01","dateFin":"2026-01-01"},
        {"pointId":"32320647321714","etatCode":"DEMANDE","dateDebut":"2026-10-04","dateFin":"2027-10-04"}]}"#;
    let scope = api2026::parse_services(body).unwrap();
    assert_eq!(scope.prms, vec![prm("22516914714270")]);
    assert_eq!(scope.start, Some(date(2026, 10, 4)));
    assert_eq!(scope.end, Some(date(2027, 10, 4)));
    let none = br#"{"nbTotalServices":1,"serviceSouscrit":[{"pointId":"22516914714270","etatCode":"SUPPRIME"}]}"#;
    let scope = api2026::parse_services(none).unwrap();
    assert!(scope.prms.is_empty());
    let why = scope.why_unusable().unwrap();
    assert!(
        why.contains("no ACTIF service") && why.contains("SUPPRIME"),
        "{why}"
    );
    let empty = api2026::parse_services(br#"{"nbTotalServices":0,"serviceSouscrit":[]}"#).unwrap();
    assert!(empty.why_unusable().unwrap().contains("no service"));
    let bad = br#"{"serviceSouscrit":[{"pointId":"12","etatCode":"ACTIF"}]}"#;
    assert!(api2026::parse_services(bad).is_err());
}

// --- contract data ------------------------------------------------------------

/// A fixture with its masked `usage_point_id` replaced by `prm` (the captures
/// mask it; a real answer names the PRM asked).
fn unmasked(name: &str, prm: &str) -> Vec<u8> {
    String::from_utf8(fixture(name))
        .unwrap()
        .replace(
            r#""usage_point_id": "<masque>""#,
            &format!(r#""usage_point_id": "{prm}""#),
        )
        .into_bytes()
}

fn new_contract(p: &str, generation: &str) -> Contract {
    Contract::new(prm(p), generation, 0)
}

#[test]
fn contract_2026_fixtures_of_a_consumer() {
    let mut c = new_contract(CONS_PRM, "2026");
    api2026::read_situation(
        &unmasked("2026/situation_contrat_consommateur.json", CONS_PRM),
        &prm(CONS_PRM),
        &mut c,
    )
    .unwrap();
    api2026::read_synthese(
        &fixture("2026/synth_contrat_consommateur.json"),
        &prm(CONS_PRM),
        &mut c,
    )
    .unwrap();
    assert_eq!(c.segments, ["C5"]);
    assert_eq!(
        c.subscribed_power,
        Some(Power {
            value: "12".into(),
            unit: "kVA".into()
        })
    );
    assert_eq!(
        c.tariff_option,
        Some(Coded::label(
            "Tarif BT<=36kVA Moyenne Utilisation heures pleines heures creuses associées à deux saisons"
        ))
    );
    assert_eq!(c.contract_start, Some(date(2026, 2, 11)));
    assert_eq!(
        c.services_level,
        Some(Coded::label("Communicant (ouvert aux services)"))
    );
    assert_eq!(
        c.activations,
        [Activation {
            direction: Some(Direction::Consumption),
            date: date(2018, 8, 31)
        }]
    );
    assert_eq!(
        c.last_changes,
        [LastChange {
            of: Changed::SubscribedPower,
            date: date(2026, 2, 11)
        }]
    );
    // Nothing the captures do not give: no meter type, no off-peak hours, and
    // never the customer's name, contact data or address they also carry.
    assert_eq!(c.meter_type, None);
    assert_eq!(c.off_peak_hours, None);
    assert_eq!(c.address, None);
    assert!(!String::from(&c.to_element()).contains("masque"));
}

#[test]
fn contract_2026_fixtures_of_a_self_consumer_keep_the_consumption_contract() {
    let mut c = new_contract(CONS_PRM, "2026");
    api2026::read_situation(
        &unmasked("2026/situation_contrat_autoconsommation.json", CONS_PRM),
        &prm(CONS_PRM),
        &mut c,
    )
    .unwrap();
    api2026::read_synthese(
        &fixture("2026/synth_contrat_autoconsommation.json"),
        &prm(CONS_PRM),
        &mut c,
    )
    .unwrap();
    assert_eq!(c.segments, ["C5", "P4"]);
    assert_eq!(c.subscribed_power.as_ref().unwrap().value, "12");
    // The consumption contract's start, not the production one's (2024-07-31).
    assert_eq!(c.contract_start, Some(date(2024, 10, 12)));
    assert_eq!(
        c.activation(Some(Direction::Consumption)),
        Some(date(2014, 1, 22))
    );
    assert_eq!(
        c.activation(Some(Direction::Production)),
        Some(date(2024, 7, 31))
    );
    assert_eq!(c.last_changes, []);
}

#[test]
fn contract_2026_comptage_as_its_swagger_describes_it() {
    let body =
        br#"{"dispositifComptage":{"typeComptage":{"code":"AMM","libelle":"Compteur Linky"}},
        "compteurs":[{"numeroSerie":"123"}],
        "relais":{"plageHeuresCreuses":"HC (1H30-7H30;12H30-14H30)"}}"#;
    let mut c = new_contract(CONS_PRM, "2026");
    api2026::read_comptage(body, &prm(CONS_PRM), &mut c).unwrap();
    assert_eq!(
        c.meter_type,
        Some(Coded {
            code: Some("AMM".into()),
            label: Some("Compteur Linky".into())
        })
    );
    let hours = c.off_peak_hours.unwrap();
    assert_eq!(hours.raw, "HC (1H30-7H30;12H30-14H30)");
    let ranges: Vec<String> = hours.ranges.iter().map(|r| r.text()).collect();
    assert_eq!(ranges, ["01:30-07:30", "12:30-14:30"]);
    // An answer without them gives nothing, and no error.
    let mut c = new_contract(CONS_PRM, "2026");
    api2026::read_comptage(b"{}", &prm(CONS_PRM), &mut c).unwrap();
    assert_eq!((c.meter_type, c.off_peak_hours), (None, None));
}

#[test]
fn contract_v5_fixtures_from_the_openapi_examples() {
    const P: &str = "12345678910123";
    let mut c = new_contract(P, "v5");
    v1::read_v5_contracts(&fixture("v5/customers_upc_contracts.json"), &prm(P), &mut c).unwrap();
    v1::read_v5_addresses(&fixture("v5/customers_upa_addresses.json"), &prm(P), &mut c).unwrap();
    assert_eq!(c.segments, ["C5"]);
    assert_eq!(
        c.subscribed_power,
        Some(Power {
            value: "9".into(),
            unit: "kVA".into()
        })
    );
    assert_eq!(c.tariff_option, Some(Coded::code("BTINFCUST")));
    let hours = c.off_peak_hours.as_ref().unwrap();
    assert_eq!(hours.raw, "HC (23h00-7h30)");
    assert_eq!(
        hours.ranges.iter().map(|r| r.text()).collect::<Vec<_>>(),
        ["23:00-07:30"]
    );
    assert_eq!(c.meter_type, Some(Coded::code("AMM")));
    assert_eq!(c.services_level, Some(Coded::code("com")));
    assert_eq!(c.activation(None), Some(date(2013, 8, 14)));
    assert_eq!(
        c.last_change(Changed::TariffOption),
        Some(date(2017, 5, 25))
    );
    assert_eq!(
        c.address,
        Some(Address {
            street: Some("2 bis rue du capitaine Flam".into()),
            locality: Some("lieudit Tourtouze".into()),
            postal_code: Some("32400".into()),
            city: Some("Maulichères".into()),
            insee_code: Some("32244".into()),
            country: Some("France".into()),
        })
    );
    // Not the customer's id, nor the coordinates.
    let xml = String::from(&c.to_element());
    assert!(
        !xml.contains("1358019319") && !xml.contains("43.687253"),
        "{xml}"
    );
}

#[test]
fn bad_contract_answers_are_precise_errors() {
    let p = prm(CONS_PRM);
    let situation = |body: &str| {
        api2026::read_situation(body.as_bytes(), &p, &mut new_contract(CONS_PRM, "2026"))
            .unwrap_err()
            .to_string()
    };
    let e = situation(r#""oops""#);
    assert!(e.contains("a string instead of a list of contracts"), "{e}");
    let e = situation(r#"[{"subscribed_power":{"unit":"kVA","value":"douze"},"segment":"C5"}]"#);
    assert!(
        e.contains(r#"subscribed_power.value "douze" is not a number"#),
        "{e}"
    );
    let e = situation(r#"[{"subscribed_power":{"value":"12"},"segment":"C5"}]"#);
    assert!(e.contains("subscribed_power 12 has no unit"), "{e}");
    let e = situation(r#"[{"usage_point_id":"11453290002823","segment":"C5"}]"#);
    assert!(e.contains("about PRM 11453290002823"), "{e}");
    let e = situation(r#"[{"segment":5}]"#);
    assert!(e.contains("contract 0 of situation_contrat_auto"), "{e}");
    let e = situation(r#"[{"segment":"C5","contract_start":"12/02/2026"}]"#);
    assert!(e.contains(r#"date "12/02/2026""#), "{e}");
    let e = api2026::read_synthese(b"[]", &p, &mut new_contract(CONS_PRM, "2026"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a synth_contrat_auto answer"), "{e}");

    let v5 = |body: &str| {
        v1::read_v5_contracts(body.as_bytes(), &p, &mut new_contract(CONS_PRM, "v5"))
            .unwrap_err()
            .to_string()
    };
    let e = v5(
        r#"{"customer":{"usage_points":[{"usage_point":{"usage_point_id":"11453290002823"}}]}}"#,
    );
    assert!(
        e.contains("does not list PRM 99999999999991 (it lists 11453290002823)"),
        "{e}"
    );
    let e = v5(r#"{"customer":{"usage_points":[]}}"#);
    assert!(e.contains("lists no usage point"), "{e}");
    let e = v5(
        r#"{"customer":{"usage_points":[{"contracts":{"segment":"C5","subscribed_power":"9kVA"}}]}}"#,
    );
    assert!(
        e.contains(r#"subscribed_power "9kVA" is not "<number> kVA""#),
        "{e}"
    );
    let e = v5(r#"{"usage_points":[]}"#);
    assert!(
        e.contains("not a customers_upc/v5/usage_points/contracts answer"),
        "{e}"
    );
}
