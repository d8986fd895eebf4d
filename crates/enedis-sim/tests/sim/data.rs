//! Metering data of every generation from the simulator over HTTP: shapes,
//! DST days, meter steps, consistency of daily values with the load curve,
//! determinism, each sandbox profile's behaviour and each error family.

use enedis_sim::harness as sim;

use jiff::Timestamp;
use jiff::civil::date;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde_json::{Value, json};
use sim::Sim;

const P0: &str = "22516914714270";

/// (timestamp, value) of a 2026 answer.
fn points_2026(body: &Value) -> Vec<(String, Value)> {
    body["grandeur"][0]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points: {body}"))
        .iter()
        .map(|p| (p["d"].as_str().unwrap().to_owned(), p["v"].clone()))
        .collect()
}

/// (date, value) of a v4/v5 answer.
fn readings_v5(body: &Value) -> Vec<(String, String)> {
    body["meter_reading"]["interval_reading"]
        .as_array()
        .unwrap_or_else(|| panic!("no readings: {body}"))
        .iter()
        .map(|r| {
            (
                r["date"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn mesure(resource: &str, prm: &str, start: &str, end: &str) -> String {
    let extra = if resource == "puissance_conso_max_quotidienne" {
        "&mesuresPas=P1D&grandeurPhysique=PMA"
    } else {
        ""
    };
    format!(
        "/mesure_synchrone_auto/v2/{resource}?pointId={prm}&dateDebut={start}&dateFin={end}{extra}"
    )
}

fn v5(path: &str, prm: &str, start: &str, end: &str) -> String {
    format!("{path}?usage_point_id={prm}&start={start}&end={end}")
}

const V5_CLC: &str = "/metering_data_clc/v5/consumption_load_curve";
const V5_PLC: &str = "/metering_data_plc/v5/production_load_curve";
const V5_DC: &str = "/metering_data_dc/v5/daily_consumption";
const V5_DP: &str = "/metering_data_dp/v5/daily_production";
const V5_MAX: &str = "/metering_data_dcmp/v5/daily_consumption_max_power";

fn start(today: &str) -> Sim {
    Sim::start(&["--today", today, "--quota-per-second", "0"])
}

fn num(v: &str) -> u64 {
    v.parse()
        .unwrap_or_else(|_| panic!("{v:?} is not an integer string"))
}

#[tokio::test]
async fn the_four_generations_give_the_same_load_curve() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let consent = sim.consent_v1_tokens("abc0", None).await;
    let user = consent["access_token"].as_str().unwrap();
    let (s, e) = ("2026-09-29", "2026-10-01");

    let (status, body) = sim
        .get_json(&app, &mesure("courbe_de_charge_consommation", P0, s, e))
        .await;
    assert_eq!(status, 200);
    let p2026 = points_2026(&body);
    assert_eq!(p2026.len(), 96);
    assert_eq!(p2026[0].0, "2026-09-29 00:30:00");
    assert_eq!(p2026[95].0, "2026-10-01 00:00:00");

    let (status, body) = sim.get_json(&app, &v5(V5_CLC, P0, s, e)).await;
    assert_eq!(status, 200);
    let mr = &body["meter_reading"];
    assert_eq!(mr["usage_point_id"], P0);
    assert_eq!(
        (mr["start"].as_str(), mr["end"].as_str()),
        (Some(s), Some(e))
    );
    assert_eq!(mr["quality"], "BRUT");
    assert_eq!(
        mr["reading_type"],
        json!({"unit": "W", "measurement_kind": "power", "aggregate": "average"})
    );
    let first = &mr["interval_reading"][0];
    assert_eq!(first["interval_length"], "PT30M");
    assert_eq!(first["measure_type"], "B");
    let pv5 = readings_v5(&body);

    let (status, body) = sim
        .get_json(
            user,
            &v5("/v4/metering_data/consumption_load_curve", P0, s, e),
        )
        .await;
    assert_eq!(status, 200);
    let pv4 = readings_v5(&body);

    let (status, body) = sim
        .get_json(
            user,
            &v5("/v3/metering_data/consumption_load_curve", P0, s, e),
        )
        .await;
    assert_eq!(status, 200);
    let mr = &body["usage_point"][0]["meter_reading"];
    assert_eq!(
        mr["reading_type"],
        json!({"measurement_kind": "power", "interval_length": "1800", "unit": "W", "aggregate": "average"})
    );
    let v3: Vec<(u64, String)> = mr["interval_reading"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                num(r["rank"].as_str().unwrap()),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        v3.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=96).collect::<Vec<_>>()
    );

    for i in 0..96 {
        let v = p2026[i].1.as_str().unwrap();
        assert_eq!(
            (p2026[i].0.as_str(), v),
            (pv5[i].0.as_str(), pv5[i].1.as_str())
        );
        assert_eq!(pv4[i], pv5[i]);
        assert_eq!(v3[i].1, v);
        num(v);
    }
}

async fn curve_2026(
    sim: &Sim,
    token: &str,
    prm: &str,
    day: &str,
    next: &str,
) -> Vec<(String, Value)> {
    let (status, body) = sim
        .get_json(
            token,
            &mesure("courbe_de_charge_consommation", prm, day, next),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    points_2026(&body)
}

static PARIS: TimeZone = jiff::tz::get!("Europe/Paris");

/// UTC seconds of the Paris midnight starting `day`.
fn day_start(day: Date) -> Result<i64, jiff::Error> {
    PARIS
        .to_ambiguous_timestamp(day.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map(Timestamp::as_second)
}

/// Start instants (UTC seconds) of end-stamped Paris local times, in answer order,
/// ordered and without duplicates: an hour that occurs twice is read as its first
/// occurrence unless the previous stamp already reached it. The test's own reading
/// of Enedis' convention, so it checks the simulator rather than repeating it.
fn convert_load_curve(stamps: &[String], step_seconds: i64) -> Vec<i64> {
    let mut last_end: Option<Timestamp> = None;
    let mut starts: Vec<i64> = stamps
        .iter()
        .map(|s| {
            let local: DateTime = s
                .replacen(' ', "T", 1)
                .parse()
                .unwrap_or_else(|e| panic!("{s:?}: not a local date-time: {e}"));
            let ambiguous = PARIS.to_ambiguous_timestamp(local);
            let end = if ambiguous.is_ambiguous() {
                let earlier = ambiguous.earlier().unwrap();
                match last_end {
                    Some(last) if last >= earlier => ambiguous.later().unwrap(),
                    _ => earlier,
                }
            } else {
                ambiguous.compatible().unwrap()
            };
            last_end = Some(end);
            end.as_second() - step_seconds
        })
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// Converts end-stamped local times in answer order; checks they are consecutive.
fn assert_consecutive(stamps: &[String], step_minutes: u16, day: jiff::civil::Date) {
    let seconds = i64::from(step_minutes) * 60;
    let readings = convert_load_curve(stamps, seconds);
    assert_eq!(readings.len(), stamps.len(), "no duplicate instants");
    assert_eq!(readings[0], day_start(day).unwrap());
    assert!(readings.windows(2).all(|w| w[1] - w[0] == seconds));
    assert_eq!(
        *readings.last().unwrap() + seconds,
        day_start(day.tomorrow().unwrap()).unwrap()
    );
}

#[tokio::test]
async fn dst_days_have_46_and_50_half_hours_in_order() {
    let sim = start("2026-11-10");
    let app = sim.app_token().await;

    let spring = curve_2026(&sim, &app, P0, "2026-03-29", "2026-03-30").await;
    assert_eq!(spring.len(), 46);
    assert!(!spring.iter().any(|(d, _)| d.starts_with("2026-03-29 02:")));
    let stamps: Vec<String> = spring.iter().map(|p| p.0.clone()).collect();
    assert_consecutive(&stamps, 30, date(2026, 3, 29));

    let autumn = curve_2026(&sim, &app, P0, "2026-10-25", "2026-10-26").await;
    assert_eq!(autumn.len(), 50);
    let stamps: Vec<String> = autumn.iter().map(|p| p.0.clone()).collect();
    let twice: Vec<&str> = stamps
        .iter()
        .filter(|d| d.starts_with("2026-10-25 02:") || d.starts_with("2026-10-25 03:00"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        twice,
        [
            "2026-10-25 02:00:00",
            "2026-10-25 02:30:00",
            "2026-10-25 02:00:00",
            "2026-10-25 02:30:00",
            "2026-10-25 03:00:00"
        ],
        "the repeated hour, in order (end stamps: 02:00 and 02:30 CEST, then CET)"
    );
    assert_consecutive(&stamps, 30, date(2026, 10, 25));

    // v5 says the same; v3 ranks count the real intervals.
    let (_, body) = sim
        .get_json(&app, &v5(V5_CLC, P0, "2026-10-25", "2026-10-26"))
        .await;
    assert_eq!(
        readings_v5(&body)
            .iter()
            .map(|r| r.0.clone())
            .collect::<Vec<_>>(),
        stamps
    );
    let consent = sim.consent_v1_tokens("abc0", None).await;
    let user = consent["access_token"].as_str().unwrap();
    let (_, body) = sim
        .get_json(
            user,
            &v5(
                "/v3/metering_data/consumption_load_curve",
                P0,
                "2026-03-29",
                "2026-03-31",
            ),
        )
        .await;
    let ranks: Vec<u64> = body["usage_point"][0]["meter_reading"]["interval_reading"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| num(r["rank"].as_str().unwrap()))
        .collect();
    assert_eq!(ranks, (1..=46 + 48).collect::<Vec<_>>());

    // Daily energy on DST days is the integral of their 46/50 half-hours.
    for (day, next, curve) in [
        ("2026-03-29", "2026-03-30", &spring),
        ("2026-10-25", "2026-10-26", &autumn),
    ] {
        let (_, body) = sim
            .get_json(&app, &mesure("consommation_quotidienne", P0, day, next))
            .await;
        let daily = num(points_2026(&body)[0].1.as_str().unwrap());
        let sum: u64 = curve.iter().map(|p| num(p.1.as_str().unwrap()) * 30).sum();
        assert_eq!(daily, (sum + 30) / 60, "{day}");
    }
}

#[tokio::test]
async fn pt10m_and_pt60m_meters_give_144_and_24_readings() {
    let sim = start("2026-11-10");
    let app = sim.app_token().await;
    for (prm, minutes, ordinary, autumn) in [
        ("30000000000010", 10u16, 144, 150),
        ("30000000000060", 60, 24, 25),
    ] {
        let day = curve_2026(&sim, &app, prm, "2026-06-10", "2026-06-11").await;
        assert_eq!(day.len(), ordinary, "{prm}");
        let stamps: Vec<String> = day.iter().map(|p| p.0.clone()).collect();
        assert_consecutive(&stamps, minutes, date(2026, 6, 10));
        let (_, body) = sim
            .get_json(
                &app,
                &mesure(
                    "courbe_de_charge_consommation",
                    prm,
                    "2026-06-10",
                    "2026-06-11",
                ),
            )
            .await;
        assert_eq!(
            body["grandeur"][0]["points"][0]["p"],
            format!("PT{minutes}M")
        );
        let (_, body) = sim
            .get_json(&app, &v5(V5_CLC, prm, "2026-06-10", "2026-06-11"))
            .await;
        assert_eq!(readings_v5(&body).len(), ordinary);
        assert_eq!(
            body["meter_reading"]["interval_reading"][0]["interval_length"],
            format!("PT{minutes}M")
        );
        let dst = curve_2026(&sim, &app, prm, "2026-10-25", "2026-10-26").await;
        assert_eq!(dst.len(), autumn, "{prm} autumn");
        // Daily energy integrates at the meter's step.
        let (_, body) = sim
            .get_json(
                &app,
                &mesure("consommation_quotidienne", prm, "2026-06-10", "2026-06-11"),
            )
            .await;
        let daily = num(points_2026(&body)[0].1.as_str().unwrap());
        let sum: u64 = day
            .iter()
            .map(|p| num(p.1.as_str().unwrap()) * u64::from(minutes))
            .sum();
        assert_eq!(daily, (sum + 30) / 60);
    }
    let consent = sim.consent_v1_tokens("x", Some("30000000000010")).await;
    let user = consent["access_token"].as_str().unwrap();
    let (_, body) = sim
        .get_json(
            user,
            &v5(
                "/v3/metering_data/consumption_load_curve",
                "30000000000010",
                "2026-06-10",
                "2026-06-11",
            ),
        )
        .await;
    let mr = &body["usage_point"][0]["meter_reading"];
    assert_eq!(mr["reading_type"]["interval_length"], "600");
    assert_eq!(mr["interval_reading"].as_array().unwrap().len(), 144);
}

#[tokio::test]
async fn daily_energy_is_the_curve_integral_and_max_power_tops_the_curve() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let (s, e) = ("2026-01-12", "2026-01-19");
    let (status, body) = sim.get_json(&app, &v5(V5_CLC, P0, s, e)).await;
    assert_eq!(status, 200);
    let curve = readings_v5(&body);
    assert_eq!(curve.len(), 7 * 48);
    let (_, body) = sim.get_json(&app, &v5(V5_DC, P0, s, e)).await;
    assert_eq!(
        body["meter_reading"]["reading_type"],
        json!({"measurement_kind": "energy", "measuring_period": "P1D", "unit": "Wh", "aggregate": "sum"})
    );
    let daily = readings_v5(&body);
    assert_eq!(daily.len(), 7);
    let (_, body) = sim.get_json(&app, &v5(V5_MAX, P0, s, e)).await;
    assert_eq!(
        body["meter_reading"]["reading_type"],
        json!({"measurement_kind": "power", "measuring_period": "P1D", "unit": "VA", "aggregate": "maximum"})
    );
    let peaks = readings_v5(&body);
    assert_eq!(peaks.len(), 7);
    for (i, (day, value)) in daily.iter().enumerate() {
        let of_day = &curve[i * 48..(i + 1) * 48];
        let sum: u64 = of_day.iter().map(|r| num(&r.1) * 30).sum();
        assert_eq!(num(value), (sum + 30) / 60, "{day}");
        let max = of_day.iter().map(|r| num(&r.1)).max().unwrap();
        let (at, peak) = &peaks[i];
        assert!(num(peak) >= max, "{day}: peak {peak} below curve max {max}");
        assert!(
            at.starts_with(day.as_str()) && at.len() == 19,
            "{at} is a time of {day}"
        );
    }
    // Same in 2026, with the instant of the peak.
    let (_, body) = sim
        .get_json(&app, &mesure("puissance_conso_max_quotidienne", P0, s, e))
        .await;
    let p = points_2026(&body);
    assert_eq!(p[0].0, peaks[0].0);
    assert_eq!(p[0].1, peaks[0].1.as_str());
    assert_eq!(body["pas"], "P1D");
    // Monthly: the highest daily peak of the month.
    let (status, body) = sim
        .get_json(
            &app,
            &format!("/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne?pointId={P0}&dateDebut={s}&dateFin={e}&mesuresPas=P1M&grandeurPhysique=PMA"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["pas"], "P1M");
    let monthly = points_2026(&body);
    assert_eq!(monthly.len(), 1);
    let best = peaks.iter().map(|p| num(&p.1)).max().unwrap();
    assert_eq!(num(monthly[0].1.as_str().unwrap()), best);
}

#[tokio::test]
async fn same_question_same_answer_even_after_a_restart() {
    let paths = [
        mesure(
            "courbe_de_charge_consommation",
            P0,
            "2025-12-01",
            "2025-12-08",
        ),
        mesure(
            "consommation_quotidienne",
            "12655648759651",
            "2025-01-01",
            "2025-03-01",
        ),
        v5(V5_PLC, "24880057139941", "2026-06-01", "2026-06-03"),
    ];
    let mut first = Vec::new();
    {
        let sim = start("2026-10-04");
        let app = sim.app_token().await;
        for p in &paths {
            let a = sim.get(&app, p).await.text().await.unwrap();
            let b = sim.get(&app, p).await.text().await.unwrap();
            assert_eq!(a, b);
            first.push(a);
        }
    }
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    for (p, before) in paths.iter().zip(&first) {
        assert_eq!(&sim.get(&app, p).await.text().await.unwrap(), before, "{p}");
    }
}

#[tokio::test]
async fn production_only_in_daylight_and_winter_above_summer() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let (status, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_production",
                "24880057139941",
                "2026-06-21",
                "2026-06-22",
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["grandeur"][0]["grandeurMetier"], "PROD");
    let points = points_2026(&body);
    for (d, v) in &points {
        let hour: u32 = d[11..13].parse().unwrap();
        if !(5..23).contains(&hour) || d.starts_with("2026-06-22") {
            assert_eq!(v, "0", "no sun at {d}");
        }
    }
    let noon = points
        .iter()
        .find(|p| p.0 == "2026-06-21 14:00:00")
        .unwrap();
    assert!(
        num(noon.1.as_str().unwrap()) > 500,
        "sun at noon (solar): {noon:?}"
    );

    let (_, winter) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", P0, "2026-01-10", "2026-01-17"),
        )
        .await;
    let (_, summer) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", P0, "2026-07-10", "2026-07-17"),
        )
        .await;
    let total = |b: &Value| -> u64 {
        points_2026(b)
            .iter()
            .map(|p| num(p.1.as_str().unwrap()))
            .sum()
    };
    assert!(
        total(&winter) > total(&summer) * 3 / 2,
        "winter {} vs summer {}",
        total(&winter),
        total(&summer)
    );
}

#[tokio::test]
async fn profile_1_before_commissioning_is_adam_err0123_in_every_generation() {
    let sim = start("2021-06-01");
    let app = sim.app_token().await;
    let prm = "11453290002823";
    let expected = json!({
        "error": "ADAM-ERR0123",
        "error_description": "The requested period cannot be anterior to the meter's last activation date"
    });
    let (status, body) = sim
        .get_json(&app, &v5(V5_DC, prm, "2019-08-20", "2019-09-01"))
        .await;
    assert_eq!((status, &body), (400, &expected));
    let (status, body) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", prm, "2019-08-26", "2019-09-01"),
        )
        .await;
    assert_eq!(
        (status, &body),
        (400, &expected),
        "2026 keeps the old shape"
    );
    let (status, _) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", prm, "2019-08-27", "2019-09-01"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sim
        .get_json(&app, &v5(V5_CLC, prm, "2019-08-26", "2019-08-28"))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn profile_2_has_no_load_curve() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let prm = "32320647321714";
    let (status, body) = sim
        .get_json(&app, &v5(V5_CLC, prm, "2026-10-01", "2026-10-03"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "no_data_found", "error_description": "no measure found for this usage point"})
    );
    let (status, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_consommation",
                prm,
                "2026-10-01",
                "2026-10-03",
            ),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": "no_data_found", "message": "no measure found for this usage point"})
    );
    let (status, _) = sim
        .get_json(&app, &v5(V5_DC, prm, "2026-10-01", "2026-10-03"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn profiles_3_5_6_directions() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let (s, e) = ("2026-06-01", "2026-06-03");
    let wrong = |body: &Value| body["error"] == "ADAM-ERR0069" || body["code"] == "ADAM-ERR0069";
    // 3: one consumption PRM, one production PRM.
    assert_eq!(
        sim.get_json(&app, &v5(V5_DC, "12345678901234", s, e))
            .await
            .0,
        200
    );
    let (status, body) = sim.get_json(&app, &v5(V5_DP, "12345678901234", s, e)).await;
    assert!(status == 400 && wrong(&body), "{body}");
    assert_eq!(
        sim.get_json(&app, &v5(V5_DP, "10284856584123", s, e))
            .await
            .0,
        200
    );
    let (status, body) = sim.get_json(&app, &v5(V5_DC, "10284856584123", s, e)).await;
    assert!(status == 400 && wrong(&body), "{body}");
    // 5: production only.
    for path in [
        v5(V5_DC, "24880057139941", s, e),
        v5(V5_CLC, "24880057139941", s, e),
        v5(V5_MAX, "24880057139941", s, e),
        mesure("consommation_quotidienne", "24880057139941", s, e),
        mesure("puissance_conso_max_quotidienne", "24880057139941", s, e),
    ] {
        let (status, body) = sim.get_json(&app, &path).await;
        assert!(status == 400 && wrong(&body), "{path}: {body}");
    }
    assert_eq!(
        sim.get_json(&app, &v5(V5_PLC, "24880057139941", s, e))
            .await
            .0,
        200
    );
    // 6: self-consumption, net flows never both positive.
    let prm = "12655648759651";
    let (_, cons) = sim
        .get_json(&app, &mesure("courbe_de_charge_consommation", prm, s, e))
        .await;
    let (_, prod) = sim
        .get_json(&app, &mesure("courbe_de_charge_production", prm, s, e))
        .await;
    let (cons, prod) = (points_2026(&cons), points_2026(&prod));
    assert_eq!(cons.len(), prod.len());
    assert!(
        prod.iter().any(|p| num(p.1.as_str().unwrap()) > 0),
        "some surplus in June"
    );
    for (c, p) in cons.iter().zip(&prod) {
        assert_eq!(c.0, p.0);
        assert!(
            num(c.1.as_str().unwrap()) == 0 || num(p.1.as_str().unwrap()) == 0,
            "{c:?} {p:?}"
        );
    }
    // 7: three consumption PRMs, all readable.
    for prm in ["64975835695673", "63695879465986", "22315546958763"] {
        assert_eq!(sim.get_json(&app, &v5(V5_DC, prm, s, e)).await.0, 200);
    }
}

#[tokio::test]
async fn profile_4_gaps_on_tuesdays_and_wednesdays() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let prm = "42900589957123";
    // 2026-09-21 is a Monday.
    let (_, body) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", prm, "2026-09-21", "2026-09-28"),
        )
        .await;
    let days: Vec<String> = points_2026(&body).into_iter().map(|p| p.0).collect();
    assert_eq!(
        days,
        [
            "2026-09-21",
            "2026-09-23",
            "2026-09-24",
            "2026-09-25",
            "2026-09-26",
            "2026-09-27"
        ],
        "no Tuesday"
    );
    let (_, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_consommation",
                prm,
                "2026-09-21",
                "2026-09-24",
            ),
        )
        .await;
    let stamps: Vec<String> = points_2026(&body).into_iter().map(|p| p.0).collect();
    assert_eq!(stamps.len(), 48 + 48 - 12);
    // End stamps: Tuesday's intervals end from 09-22 00:30 to 09-23 00:00.
    let within = |d: &str, from: &str, to: &str| (from..=to).contains(&d);
    assert!(
        !stamps
            .iter()
            .any(|d| within(d, "2026-09-22 00:30:00", "2026-09-23 00:00:00")),
        "no Tuesday point"
    );
    let wednesday: Vec<&String> = stamps
        .iter()
        .filter(|d| within(d, "2026-09-23 00:30:00", "2026-09-24 00:00:00"))
        .collect();
    assert_eq!(wednesday.len(), 36);
    assert!(
        !wednesday
            .iter()
            .any(|d| ("2026-09-23 12:30:00"..="2026-09-23 18:00:00").contains(&d.as_str()))
    );
    // v5 leaves the same points out.
    let (_, body) = sim
        .get_json(&app, &v5(V5_CLC, prm, "2026-09-21", "2026-09-24"))
        .await;
    assert_eq!(readings_v5(&body).len(), stamps.len());
    // Only a Tuesday: nothing at all.
    let (status, body) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", prm, "2026-09-22", "2026-09-23"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_data_found"))
    );
    // With the null_gaps switch, 2026 writes missing points as "v": null.
    sim.admin().faults(json!({"null_gaps": true})).await;
    let (_, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_consommation",
                prm,
                "2026-09-21",
                "2026-09-24",
            ),
        )
        .await;
    let points = points_2026(&body);
    assert_eq!(points.len(), 3 * 48);
    assert_eq!(points.iter().filter(|p| p.1.is_null()).count(), 48 + 12);
    assert!(
        points
            .iter()
            .filter(|p| !p.1.is_null())
            .all(|p| p.1.is_string())
    );
}

#[tokio::test]
async fn error_families_in_v5_and_2026_shapes() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    // Over 7 days of load curve.
    let (status, body) = sim
        .get_json(&app, &v5(V5_CLC, P0, "2026-09-01", "2026-09-09"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("ADAM-DC-0015"))
    );
    let (status, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_consommation",
                P0,
                "2026-09-01",
                "2026-09-09",
            ),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("ADAM-DC-0015")));
    assert!(body["message"].is_string());
    assert_eq!(
        sim.get_json(&app, &v5(V5_CLC, P0, "2026-09-01", "2026-09-08"))
            .await
            .0,
        200
    );
    // History depth: load curve 24 months + 15 days, daily 36 months + 15 days.
    assert_eq!(
        sim.get_json(&app, &v5(V5_CLC, P0, "2024-09-19", "2024-09-20"))
            .await
            .0,
        200
    );
    let (status, body) = sim
        .get_json(&app, &v5(V5_CLC, P0, "2024-09-18", "2024-09-20"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("ADAM-ERR0125"))
    );
    let (status, body) = sim
        .get_json(
            &app,
            &mesure(
                "courbe_de_charge_consommation",
                P0,
                "2024-09-18",
                "2024-09-20",
            ),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("ADAM-DC-0016")));
    assert_eq!(
        sim.get_json(&app, &v5(V5_DC, P0, "2023-09-19", "2023-09-20"))
            .await
            .0,
        200
    );
    let (status, body) = sim
        .get_json(&app, &v5(V5_DC, P0, "2023-09-18", "2023-09-20"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("ADAM-ERR0125"))
    );
    // Invalid_request.
    for (path, mention) in [
        (
            format!("{V5_DC}?start=2026-10-01&end=2026-10-03"),
            "usage_point_id",
        ),
        (v5(V5_DC, "1234", "2026-10-01", "2026-10-03"), "14 digits"),
        (v5(V5_DC, P0, "2026-10-1", "2026-10-03"), "YYYY-MM-DD"),
        (
            format!("{V5_DC}?usage_point_id={P0}&start=2026-10-01"),
            "End date",
        ),
        (v5(V5_DC, P0, "2026-10-01", "2026-10-05"), "current date"),
        (v5(V5_DC, P0, "2026-10-03", "2026-10-03"), "before end"),
        (v5(V5_DC, P0, "2026-10-03", "2026-10-01"), "before end"),
    ] {
        let (status, body) = sim.get_json(&app, &path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "Invalid_request", "{path}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(mention),
            "{path}: {body}"
        );
    }
    assert_eq!(
        sim.get_json(&app, &v5(V5_DC, P0, "2026-10-03", "2026-10-04"))
            .await
            .0,
        200,
        "end = today"
    );
    for path in [
        mesure("consommation_quotidienne", P0, "2026-10-01", "2026-10-05"),
        mesure("consommation_quotidienne", P0, "2026-10-03", "2026-10-03"),
        mesure("consommation_quotidienne", P0, "2026-13-01", "2026-10-03"),
        mesure(
            "consommation_quotidienne",
            "123",
            "2026-10-01",
            "2026-10-03",
        ),
    ] {
        let (status, body) = sim.get_json(&app, &path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["code"], "Invalid_request", "{path}");
        assert!(body["message"].is_string());
    }
    // No consent.
    let (status, body) = sim
        .get_json(
            &app,
            &v5(V5_DC, "99999999999999", "2026-10-01", "2026-10-03"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ADAM-DC-0008"))
    );
    let (status, body) = sim
        .get_json(&app, "/situation_contrat_auto/v1/99999999999999")
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("ADAM-DC-0008")));
    let (status, _) = sim
        .get_json(
            &app,
            "/customers_i/v5/identity?usage_point_id=99999999999999",
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn requests_outside_the_2026_swagger_get_a_500() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let q = format!("pointId={P0}&dateDebut=2026-10-01&dateFin=2026-10-03");
    for path in [
        format!("/mesure_synchrone_auto/v2/consumption_load_curve?{q}"),
        format!("/mesure_synchrone_auto/v2/index_consumption?{q}"),
        format!(
            "/mesure_synchrone_auto/v2/consommation_quotidienne?usage_point_id={P0}&dateDebut=2026-10-01&dateFin=2026-10-03"
        ),
        format!("/mesure_synchrone_auto/v2/consommation_quotidienne?{q}&extra=1"),
        format!(
            "/mesure_synchrone_auto/v2/consommation_quotidienne?pointId={P0}&dateDebut=2026-10-01"
        ),
        format!("/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne?{q}"),
        format!(
            "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne?{q}&mesuresPas=P2D&grandeurPhysique=PMA"
        ),
        format!(
            "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne?{q}&mesuresPas=P1D&grandeurPhysique=XYZ"
        ),
        format!("/mesure_synchrone_auto/v1/consommation_quotidienne?{q}"),
        format!("/situation_contrat_auto/v1?usage_point_id={P0}"),
        format!("/situation_contrat_auto/v1/{P0}?usage_point_id={P0}"),
        "/synth_contrat_auto/v1/".to_owned(),
    ] {
        let (status, body) = sim.get_json(&app, &path).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{path}"
        );
    }
    let response = sim
        .http()
        .post(sim.url(&format!(
            "/mesure_synchrone_auto/v2/consommation_quotidienne?{q}"
        )))
        .bearer_auth(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500, "another method");
    // Elsewhere, an unknown path is the gateway's 404.
    let (status, body) = sim.get_json(&app, "/nothing/here").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("404")));
    let consent = sim.consent_v1_tokens("abc0", None).await;
    let (status, _) = sim
        .get_json(
            consent["access_token"].as_str().unwrap(),
            &v5(
                "/v4/metering_data/daily_everything",
                P0,
                "2026-10-01",
                "2026-10-03",
            ),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn index_counts_the_daily_energy() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let (status, body) = sim
        .get_json(
            &app,
            &mesure("index_consommation", P0, "2026-09-01", "2026-09-08"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["idPrm"], P0);
    assert_eq!(body["grandeur"], json!([]));
    let valeur = body["contexte"][0]["grandeur"][0]["cadranTotalisateur"]["valeur"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(valeur.len(), 7);
    let (_, daily) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", P0, "2026-09-01", "2026-09-08"),
        )
        .await;
    let daily = points_2026(&daily);
    for i in 0..6 {
        let step = valeur[i + 1]["v"].as_u64().unwrap() - valeur[i]["v"].as_u64().unwrap();
        assert_eq!(step, num(daily[i].1.as_str().unwrap()));
    }
    let (status, body) = sim
        .get_json(
            &app,
            &mesure(
                "index_production",
                "24880057139941",
                "2026-09-01",
                "2026-09-03",
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["contexte"][0]["grandeur"][0]["grandeurMetier"], "PROD");
}

/// The index answer's only grandeur.
fn index_grandeur(body: &Value) -> &Value {
    let contexte = body["contexte"].as_array().expect("contexte");
    assert_eq!(contexte.len(), 1, "{body}");
    assert_eq!(contexte[0]["grandeur"].as_array().unwrap().len(), 1);
    &contexte[0]["grandeur"][0]
}

/// (d, v) of a `valeur` array.
fn valeurs(values: &Value) -> Vec<(String, u64)> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("no valeur: {values}"))
        .iter()
        .map(|v| {
            assert_eq!(v["iv"], 0, "{v}");
            (
                v["d"].as_str().unwrap().to_owned(),
                v["v"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A class's id and its counters (d, v).
type Class = (String, Vec<(String, u64)>);

/// Calendar id → its classes.
fn calendars(body: &Value) -> Vec<(String, Vec<Class>)> {
    index_grandeur(body)["calendrier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["idCalendrier"].as_str().unwrap().to_owned(),
                c["classeTemporelle"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        (
                            k["idClasseTemporelle"].as_str().unwrap().to_owned(),
                            valeurs(&k["valeur"]),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The sum of a calendar's classes at `d`, if every class has a value then.
fn calendar_sum(classes: &[Class], d: &str) -> Option<u64> {
    classes
        .iter()
        .map(|(_, values)| values.iter().find(|(at, _)| at == d).map(|(_, v)| *v))
        .sum()
}

#[tokio::test]
async fn index_answers_hold_both_calendars_adding_up_to_the_totalisator() {
    let sim = start("2026-12-06");
    let app = sim.app_token().await;
    let path = mesure("index_consommation", P0, "2026-11-23", "2026-11-30");
    let raw = sim.get(&app, &path).await.text().await.unwrap();
    // The swagger's names, in the SGE capture's order, suppliers' calendar first.
    for fragment in [
        r#""contexte":[{"etapeMetier":"BRUT","contexteReleve":"COL","typeReleve":"AQ","grandeur":[{"grandeurMetier":"CONS","grandeurPhysique":"EA","unite":"Wh","points":[],"calendrier":[{"idCalendrier":"FC020831","libelleCalendrier":"Heures Pleines/Creuses","classeTemporelle":[{"idClasseTemporelle":"HC","libelleClasseTemporelle":"Heures Creuses","codeCadran":"IDX_EAS_F1","valeur":[{"d":"2026-11-23 00:00:00","v":"#,
        r#"{"idCalendrier":"DI000003","libelleCalendrier":"Avec différenciation temporelle","classeTemporelle":[{"idClasseTemporelle":"HPH","libelleClasseTemporelle":"Heures Pleines Saison Haute","codeCadran":"IDX_EAS_D1","valeur":[{"d":"2026-11-23 00:00:00","v":"#,
        r#""cadranTotalisateur":{"codeCadran":"IDX_EAS_T","valeur":[{"d":"2026-11-23 00:00:00","v":"#,
    ] {
        assert!(raw.contains(fragment), "{fragment}\nnot in\n{raw}");
    }
    let body: Value = serde_json::from_str(&raw).unwrap();
    let total = valeurs(&index_grandeur(&body)["cadranTotalisateur"]["valeur"]);
    assert_eq!(total.len(), 7);
    let cals = calendars(&body);
    let ids: Vec<&str> = cals.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["FC020831", "DI000003"]);
    let classes: Vec<Vec<&str>> = cals
        .iter()
        .map(|(_, c)| c.iter().map(|(id, _)| id.as_str()).collect())
        .collect();
    assert_eq!(
        classes,
        [vec!["HC", "HP"], vec!["HPH", "HCH", "HPB", "HCB"]]
    );
    for (d, t) in &total {
        for (id, classes) in &cals {
            assert_eq!(calendar_sum(classes, d), Some(*t), "{id} at {d}");
        }
    }
    // Off-peak energy is counted: HC and HCH grow every day; November is high
    // season, so HPB and HCB do not move.
    for (id, classes) in &cals {
        for (class, values) in classes {
            let grew = values.windows(2).all(|w| w[1].1 > w[0].1);
            let still = values.windows(2).all(|w| w[1].1 == w[0].1);
            match class.as_str() {
                "HPB" | "HCB" => assert!(still, "{id}/{class}"),
                _ => assert!(grew, "{id}/{class}"),
            }
        }
    }
    // A day's energy is the difference of its two midnights' totalisator.
    let (_, daily) = sim
        .get_json(
            &app,
            &mesure("consommation_quotidienne", P0, "2026-11-23", "2026-11-30"),
        )
        .await;
    let daily = points_2026(&daily);
    for i in 0..6 {
        assert_eq!(
            total[i + 1].1 - total[i].1,
            num(daily[i].1.as_str().unwrap())
        );
    }
    // An injection point has the distributor's base calendar only.
    let (_, body) = sim
        .get_json(
            &app,
            &mesure(
                "index_production",
                "24880057139941",
                "2026-06-01",
                "2026-06-03",
            ),
        )
        .await;
    let cals = calendars(&body);
    assert_eq!(cals.len(), 1);
    assert_eq!(cals[0].0, "DI000001");
    assert_eq!(cals[0].1[0].0, "BASE");
    assert_eq!(
        cals[0].1[0].1,
        valeurs(&index_grandeur(&body)["cadranTotalisateur"]["valeur"])
    );
}

#[tokio::test]
async fn index_counters_are_read_at_each_paris_midnight_dst_days_included() {
    let sim = start("2026-12-06");
    let app = sim.app_token().await;
    for (from, to) in [("2026-03-28", "2026-03-31"), ("2026-10-24", "2026-10-27")] {
        let (status, body) = sim
            .get_json(&app, &mesure("index_consommation", P0, from, to))
            .await;
        assert_eq!(status, 200, "{body}");
        let total = valeurs(&index_grandeur(&body)["cadranTotalisateur"]["valeur"]);
        let stamps: Vec<&str> = total.iter().map(|(d, _)| d.as_str()).collect();
        let first: Date = from.parse().unwrap();
        let expected: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "{} 00:00:00",
                    first.checked_add(jiff::ToSpan::days(i)).unwrap()
                )
            })
            .collect();
        assert_eq!(stamps, expected);
        // The 23- and 25-hour days' energies.
        let (_, daily) = sim
            .get_json(&app, &mesure("consommation_quotidienne", P0, from, to))
            .await;
        let daily = points_2026(&daily);
        assert_eq!(total[2].1 - total[1].1, num(daily[1].1.as_str().unwrap()));
    }
}

#[tokio::test]
async fn a_calendar_change_reports_the_old_calendars_closing_then_the_new_ones() {
    let sim = start("2026-12-06");
    let app = sim.app_token().await;
    let prm = enedis_sim::tariff::CALENDAR_CHANGE_PRM;
    let (status, body) = sim
        .get_json(
            &app,
            &mesure("index_consommation", prm, "2026-11-06", "2026-11-12"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cals = calendars(&body);
    let ids: Vec<&str> = cals.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["FC000165", "FC020831", "DI000001", "DI000003"]);
    let days = |classes: &[Class]| -> Vec<String> {
        classes[0]
            .1
            .iter()
            .map(|(d, _)| d[..10].to_owned())
            .collect()
    };
    // The old calendars up to the change's midnight (their closing reading), the
    // new ones from it.
    let old = ["2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09"];
    let new = ["2026-11-09", "2026-11-10", "2026-11-11"];
    assert_eq!(days(&cals[0].1), old);
    assert_eq!(days(&cals[2].1), old);
    assert_eq!(days(&cals[1].1), new);
    assert_eq!(days(&cals[3].1), new);
    let total = valeurs(&index_grandeur(&body)["cadranTotalisateur"]["valeur"]);
    for (d, t) in &total {
        for (id, classes) in &cals {
            if classes[0].1.iter().any(|(at, _)| at == d) {
                assert_eq!(calendar_sum(classes, d), Some(*t), "{id} at {d}");
            }
        }
    }
    // The registers go on: HC takes the register BASE had (IDX_EAS_F1).
    let base = &cals[0].1[0].1;
    let hc = &cals[1].1[0].1;
    assert_eq!(base.last().unwrap(), &hc[0]);
}

#[tokio::test]
async fn a_tempo_meter_has_the_six_classes_of_the_sge_capture() {
    let sim = start("2026-12-06");
    let app = sim.app_token().await;
    let prm = enedis_sim::tariff::TEMPO_PRM;
    let (status, body) = sim
        .get_json(
            &app,
            &mesure("index_consommation", prm, "2026-11-02", "2026-12-01"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let grandeur = index_grandeur(&body);
    let tempo = &grandeur["calendrier"][0];
    assert_eq!(tempo["idCalendrier"], "FC000050");
    assert_eq!(tempo["libelleCalendrier"], "6 cadrans");
    let classes: Vec<(&str, &str, &str)> = tempo["classeTemporelle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["idClasseTemporelle"].as_str().unwrap(),
                c["libelleClasseTemporelle"].as_str().unwrap(),
                c["codeCadran"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("BUHP", "Bleu Heures Pleines", "IDX_EAS_F2"),
            ("BCHP", "Blanc Heures Pleines", "IDX_EAS_F4"),
            ("RHC", "Rouge Heures Creuses", "IDX_EAS_F5"),
            ("BCHC", "Blanc Heures Creuses", "IDX_EAS_F3"),
            ("BUHC", "Bleu Heures Creuses", "IDX_EAS_F1"),
            ("RHP", "Rouge Heures Pleines", "IDX_EAS_F6"),
        ]
    );
    assert_eq!(grandeur["calendrier"][1]["idCalendrier"], "DI000001");
    // Over a November, every colour's peak counter moves on some day.
    for class in tempo["classeTemporelle"].as_array().unwrap() {
        let values = valeurs(&class["valeur"]);
        assert_eq!(values.len(), 29);
        assert!(
            values.windows(2).any(|w| w[1].1 > w[0].1),
            "{}",
            class["idClasseTemporelle"]
        );
        assert!(
            values.windows(2).any(|w| w[1].1 == w[0].1),
            "{}",
            class["idClasseTemporelle"]
        );
    }
}

#[tokio::test]
async fn a_day_without_data_has_no_counter_at_all() {
    let sim = start("2026-12-06");
    let app = sim.app_token().await;
    // Profile 4: no data on Tuesdays (2026-11-24 is one).
    let (_, body) = sim
        .get_json(
            &app,
            &mesure(
                "index_consommation",
                "42900589957123",
                "2026-11-23",
                "2026-11-26",
            ),
        )
        .await;
    let days = |values: &[(String, u64)]| -> Vec<String> {
        values.iter().map(|(d, _)| d[..10].to_owned()).collect()
    };
    let expected = ["2026-11-23", "2026-11-25"];
    assert_eq!(
        days(&valeurs(
            &index_grandeur(&body)["cadranTotalisateur"]["valeur"]
        )),
        expected
    );
    for (_, classes) in calendars(&body) {
        for (_, values) in classes {
            assert_eq!(days(&values), expected);
        }
    }
}

#[tokio::test]
async fn v5_customer_apis() {
    let sim = start("2026-10-04");
    let app = sim.app_token().await;
    let q = format!("usage_point_id={P0}");
    let (status, body) = sim
        .get_json(&app, &format!("/customers_i/v5/identity?{q}"))
        .await;
    assert_eq!(status, 200);
    assert!(body["identity"]["natural_person"]["lastname"].is_string());
    let (_, body) = sim
        .get_json(&app, &format!("/customers_cd/v5/contact_data?{q}"))
        .await;
    assert!(body["contact"]["email"].as_str().unwrap().contains('@'));
    let (_, body) = sim
        .get_json(
            &app,
            &format!("/customers_upc/v5/usage_points/contracts?{q}"),
        )
        .await;
    let up = &body["customer"]["usage_points"][0];
    assert_eq!(up["usage_point"]["usage_point_id"], P0);
    assert!(
        up["contracts"]["subscribed_power"]
            .as_str()
            .unwrap()
            .ends_with(" kVA")
    );
    assert!(
        up["contracts"]["offpeak_hours"]
            .as_str()
            .unwrap()
            .starts_with("HC (")
    );
    let (_, body) = sim
        .get_json(
            &app,
            &format!("/customers_upa/v5/usage_points/addresses?{q}"),
        )
        .await;
    assert!(
        body["customer"]["usage_points"][0]["usage_point"]["usage_point_addresses"]["city"]
            .is_string()
    );
    let (status, body) = sim.get_json(&app, "/customers_i/v5/identity").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Invalid_request"))
    );
}
