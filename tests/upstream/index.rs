//! The index series and the energy per calendar class: hand-written 2026 index
//! answers (shaped like the SGE index capture) through the dialect, then the client
//! and the cache against the real simulator over HTTP: every class and the
//! totalisator from one call, the stamps (Paris midnights in UTC, DST days), the
//! energy per class derived from consecutive counters and adding up to the daily
//! energy, off-peak hours that change, calendars that change, gaps, Tempo, and a
//! second class of the same days costing no call.

use crate::common::upstream_sim;

use std::sync::Arc;

use jiff::ToSpan;
use jiff::civil::{Date, date};
use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::{
    Calendar, ClassCode, Direction, Prm, Reading, Series, Step, TimeClass,
};
use quoalise_agent::store::{NewConsent, Store};
use quoalise_agent::time::{PARIS, day_start};
use quoalise_agent::upstream::api2026::parse_index;
use quoalise_agent::upstream::cache::CachedUpstream;
use quoalise_agent::upstream::{EnedisClient, ErrorKind, Upstream, UpstreamError, dialect};
use serde_json::json;
use upstream_sim::{AGENT, Sim, config};

/// Profile 0: an ordinary consumer, peak / off-peak.
const CONSUMER: &str = "22516914714270";
/// Profile 4: no data on Tuesdays.
const GAPPY: &str = "42900589957123";
/// Profile 5: production only.
const PRODUCER: &str = "24880057139941";
/// The simulator's Tempo meter, and the meters whose off-peak hours and calendars
/// change (`enedis_sim::tariff`).
const TEMPO: &str = enedis_sim::tariff::TEMPO_PRM;
const OFF_PEAK_CHANGE: &str = enedis_sim::tariff::OFF_PEAK_CHANGE_PRM;
const CALENDAR_CHANGE: &str = enedis_sim::tariff::CALENDAR_CHANGE_PRM;
const INDEX: &str = "GET /mesure_synchrone_auto/v2/index_consommation";

fn prm(s: &str) -> Prm {
    s.parse().unwrap()
}

fn class(calendar: Calendar, code: &str) -> TimeClass {
    TimeClass::new(calendar, ClassCode::new(code).unwrap())
}

fn distributor(code: &str) -> TimeClass {
    class(Calendar::Distributor, code)
}

fn provider(code: &str) -> TimeClass {
    class(Calendar::Provider, code)
}

fn index(class: TimeClass) -> Series {
    Series::ClassIndex(Direction::Consumption, class)
}

fn daily(class: TimeClass) -> Series {
    Series::ClassEnergyDaily(Direction::Consumption, class)
}

const TOTAL: Series = Series::EnergyIndex(Direction::Consumption);

fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).unwrap().to_string()
}

fn days(from: Date, n: i64) -> Vec<Date> {
    (0..n)
        .map(|i| from.checked_add(i.days()).unwrap())
        .collect()
}

fn values(readings: &[Reading]) -> Vec<Option<f64>> {
    readings.iter().map(|r| r.value).collect()
}

// --- the dialect, on hand-written answers -------------------------------------------

/// A 2026 index answer holding `calendrier` and, if given, a totalisator.
fn answer(calendrier: serde_json::Value, total: Option<serde_json::Value>) -> Vec<u8> {
    let mut grandeur = json!({
        "grandeurMetier": "CONS", "grandeurPhysique": "EA", "unite": "Wh",
        "points": [], "calendrier": calendrier,
    });
    if let Some(total) = total {
        grandeur["cadranTotalisateur"] = json!({"codeCadran": "IDX_EAS_T", "valeur": total});
    }
    serde_json::to_vec(&json!({
        "idPrm": "09111642617347",
        "periode": {"dateDebut": "2023-04-01", "dateFin": "2023-04-04"},
        "grandeur": [],
        "contexte": [{"etapeMetier": "BRUT", "contexteReleve": "COL", "typeReleve": "AQ",
                      "grandeur": [grandeur]}],
    }))
    .unwrap()
}

fn valeur(d: &str, v: serde_json::Value) -> serde_json::Value {
    json!({"d": d, "v": v, "iv": 0})
}

/// The first three days of the SGE capture's Tempo meter (same PRM, values and
/// class order), written as the 2026 API writes JSON.
fn tempo_capture(with_total: bool) -> Vec<u8> {
    let days = [
        "2023-04-01 00:00:00",
        "2023-04-02 00:00:00",
        "2023-04-03 00:00:00",
    ];
    let classes = [
        (
            "BUHP",
            "Bleu Heures Pleines",
            "IDX_EAS_F2",
            [1422334, 1439264, 1450738],
        ),
        (
            "BCHP",
            "Blanc Heures Pleines",
            "IDX_EAS_F4",
            [418462, 418462, 418462],
        ),
        (
            "RHC",
            "Rouge Heures Creuses",
            "IDX_EAS_F5",
            [110045, 110045, 110045],
        ),
        (
            "BCHC",
            "Blanc Heures Creuses",
            "IDX_EAS_F3",
            [148724, 148724, 148724],
        ),
        (
            "BUHC",
            "Bleu Heures Creuses",
            "IDX_EAS_F1",
            [14708116, 14713311, 14718216],
        ),
        (
            "RHP",
            "Rouge Heures Pleines",
            "IDX_EAS_F6",
            [200083, 200083, 200083],
        ),
    ];
    let total: Vec<i64> = (0..3)
        .map(|i| classes.iter().map(|c| c.3[i]).sum())
        .collect();
    let supplier: Vec<serde_json::Value> = classes
        .iter()
        .map(|(id, label, cadran, v)| {
            json!({"idClasseTemporelle": id, "libelleClasseTemporelle": label,
                   "codeCadran": cadran,
                   "valeur": (0..3).map(|i| valeur(days[i], json!(v[i]))).collect::<Vec<_>>()})
        })
        .collect();
    let calendrier = json!([
        {"idCalendrier": "FC000050", "libelleCalendrier": "6 cadrans", "classeTemporelle": supplier},
        {"idCalendrier": "DI000001", "libelleCalendrier": "Sans différenciation temporelle",
         "classeTemporelle": [{"idClasseTemporelle": "BASE", "libelleClasseTemporelle": "Base",
            "codeCadran": "IDX_EAS_D1",
            "valeur": (0..3).map(|i| valeur(days[i], json!(total[i]))).collect::<Vec<_>>()}]},
    ]);
    let total = with_total.then(|| {
        json!(
            (0..3)
                .map(|i| valeur(days[i], json!(total[i])))
                .collect::<Vec<_>>()
        )
    });
    answer(calendrier, total)
}

fn parse(body: &[u8]) -> Result<Vec<(Series, Vec<Reading>)>, String> {
    parse_index(
        Direction::Consumption,
        &prm("09111642617347"),
        date(2023, 4, 1),
        date(2023, 4, 4),
        body,
    )
    .map_err(|e| e.to_string())
}

fn series_of(all: &[(Series, Vec<Reading>)], series: Series) -> Vec<Reading> {
    all.iter()
        .find(|(s, _)| *s == series)
        .unwrap_or_else(|| panic!("no {series} in {all:?}"))
        .1
        .clone()
}

#[test]
fn one_index_answer_gives_the_totalisator_and_every_class_stamped_at_paris_midnight() {
    let all = parse(&tempo_capture(true)).unwrap();
    let names: Vec<String> = all.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(
        names,
        [
            "consumption/energy/active/index",
            "consumption/energy/active/index/distributor/base",
            "consumption/energy/active/index/provider/bchc",
            "consumption/energy/active/index/provider/bchp",
            "consumption/energy/active/index/provider/buhc",
            "consumption/energy/active/index/provider/buhp",
            "consumption/energy/active/index/provider/rhc",
            "consumption/energy/active/index/provider/rhp",
        ],
        "the Quoalise SGE proxy's names: calendar owner, class code in lower case"
    );
    let total = series_of(&all, TOTAL);
    // 2023-04-01 00:00 in Paris (CEST) is 2023-03-31T22:00Z.
    let stamps: Vec<String> = total.iter().map(|r| utc(r.start)).collect();
    assert_eq!(
        stamps,
        [
            "2023-03-31T22:00:00Z",
            "2023-04-01T22:00:00Z",
            "2023-04-02T22:00:00Z"
        ]
    );
    assert!(total.iter().all(|r| r.step == Step::Day));
    assert_eq!(
        values(&total),
        [Some(17007764.0), Some(17029889.0), Some(17046268.0)],
        "the capture's totalisator"
    );
    assert_eq!(
        values(&series_of(&all, index(provider("buhp")))),
        [Some(1422334.0), Some(1439264.0), Some(1450738.0)]
    );
    // The dialect's `parse` gives the one series asked.
    let d = dialect(ApiGeneration::Api2026);
    let buhc = d
        .parse(
            index(provider("buhc")),
            &prm("09111642617347"),
            date(2023, 4, 1),
            date(2023, 4, 4),
            &tempo_capture(true),
        )
        .unwrap();
    assert_eq!(values(&buhc)[2], Some(14718216.0));
    // A class the answer does not have: nothing, not an error.
    let absent = d
        .parse(
            index(provider("hp")),
            &prm("09111642617347"),
            date(2023, 4, 1),
            date(2023, 4, 4),
            &tempo_capture(true),
        )
        .unwrap();
    assert!(absent.is_empty());
}

#[test]
fn without_a_totalisator_the_whole_counter_is_the_distributor_classes_sum_when_complete() {
    let with = series_of(&parse(&tempo_capture(true)).unwrap(), TOTAL);
    let without = series_of(&parse(&tempo_capture(false)).unwrap(), TOTAL);
    assert_eq!(with, without);
    // One distributor class missing at an instant: no whole counter then.
    let calendrier = json!([{"idCalendrier": "DI000003", "libelleCalendrier": "Avec différenciation temporelle",
    "classeTemporelle": [
        {"idClasseTemporelle": "HPH", "valeur": [valeur("2023-04-01 00:00:00", json!(10)), valeur("2023-04-02 00:00:00", json!(15))]},
        {"idClasseTemporelle": "HCH", "valeur": [valeur("2023-04-01 00:00:00", json!(100)), valeur("2023-04-02 00:00:00", json!(null))]},
    ]}]);
    let all = parse(&answer(calendrier, None)).unwrap();
    assert_eq!(values(&series_of(&all, TOTAL)), [Some(110.0), None]);
    assert_eq!(
        values(&series_of(&all, index(distributor("hch")))),
        [Some(100.0), None],
        "a null value stays missing, never zero"
    );
}

#[test]
fn strings_kwh_and_dates_alone_are_read_and_bad_answers_are_precise_errors() {
    let calendrier = json!([{"idCalendrier": "FC020831", "classeTemporelle": [
        {"idClasseTemporelle": "HC", "valeur": [valeur("2023-04-02", json!("1.5"))]}]}]);
    let mut body: serde_json::Value = serde_json::from_slice(&answer(calendrier, None)).unwrap();
    body["contexte"][0]["grandeur"][0]["unite"] = json!("kWh");
    let all = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    let hc = series_of(&all, index(provider("hc")));
    assert_eq!(values(&hc), [Some(1500.0)]);
    assert_eq!(utc(hc[0].start), "2023-04-01T22:00:00Z");

    let bad = |calendrier: serde_json::Value| parse(&answer(calendrier, None)).unwrap_err();
    let err = bad(json!([{"idCalendrier": "XX000001", "classeTemporelle": []}]));
    assert!(
        err.contains("\"XX000001\" names neither a distributor calendar"),
        "{err}"
    );
    let err = bad(json!([{"idCalendrier": "DI000001", "classeTemporelle": [
        {"idClasseTemporelle": "HP/HC", "valeur": []}]}]));
    assert!(
        err.contains("idClasseTemporelle \"HP/HC\" of calendrier \"DI000001\"")
            && err.contains("found '/' at position 2"),
        "{err}"
    );
    let err = bad(json!([{"idCalendrier": "DI000001", "classeTemporelle": [
        {"idClasseTemporelle": "BASE", "valeur": [valeur("2023-04-01T00:00:00+02:00", json!(1))]}]}]));
    assert!(err.contains("invalid local date-time"), "{err}");
    let err = bad(json!([{"idCalendrier": "DI000001", "classeTemporelle": [
        {"idClasseTemporelle": "BASE", "valeur": [valeur("2023-04-01 00:00:00", json!({"x": 1}))]}]}]));
    assert!(err.contains("not a number"), "{err}");
    // Another direction's counters only.
    let mut body: serde_json::Value =
        serde_json::from_slice(&answer(json!([]), Some(json!([])))).unwrap();
    body["contexte"][0]["grandeur"][0]["grandeurMetier"] = json!("PROD");
    let err = parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert!(
        err.contains("no grandeur CONS/EA in the index answer (found PROD/EA)"),
        "{err}"
    );
    // No counter at all: nothing, not an error.
    let empty =
        serde_json::to_vec(&json!({"idPrm": "09111642617347", "grandeur": [], "contexte": []}))
            .unwrap();
    let all = parse(&empty).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].1.is_empty());
}

// --- the client and the cache, against the simulator ------------------------------

struct Setup {
    sim: Sim,
    client: Arc<EnedisClient>,
    cached: CachedUpstream,
    _dir: tempfile::TempDir,
}

/// The simulator (real today), a store where a peer holds a 2026 consent for
/// `prms`, the client and the cache over it.
async fn setup(prms: &[&str]) -> Setup {
    let sim = Sim::start(&["--quota-per-second", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    store
        .add_consent(
            &NewConsent {
                generation: ApiGeneration::Api2026,
                owner: "app@example.org".into(),
                prms: prms.iter().map(|p| prm(p)).collect(),
                autorisation_id: Some(1),
                valid_from: now - 86_400,
                valid_until: now + 365 * 86_400,
            },
            None,
        )
        .unwrap();
    let mut cfg = config(ApiGeneration::Api2026, &sim);
    cfg.calls_per_second = 1000;
    let client = Arc::new(EnedisClient::new(&cfg, store.clone()).unwrap());
    let cached = CachedUpstream::new(client.clone(), store);
    Setup {
        sim,
        client,
        cached,
        _dir: dir,
    }
}

async fn read(up: &dyn Upstream, p: &str, series: Series, from: Date, to: Date) -> Vec<Reading> {
    up.readings(prm(p), series, from, to, &AGENT)
        .await
        .unwrap_or_else(|e| panic!("{p} {series} {from}..{to}: {e}"))
        .readings
}

#[tokio::test]
async fn every_class_adds_up_to_the_totalisator_and_the_daily_energy() {
    let s = setup(&[CONSUMER]).await;
    let (from, to) = (date(2026, 11, 23), date(2026, 11, 30));
    let up: &dyn Upstream = s.client.as_ref();
    let total = read(up, CONSUMER, TOTAL, from, to).await;
    let starts: Vec<i64> = total.iter().map(|r| r.start).collect();
    let midnights: Vec<i64> = days(from, 7)
        .iter()
        .map(|d| day_start(*d).unwrap())
        .collect();
    assert_eq!(starts, midnights, "one counter per Paris midnight");
    for calendar in [
        vec![
            distributor("hph"),
            distributor("hch"),
            distributor("hpb"),
            distributor("hcb"),
        ],
        vec![provider("hc"), provider("hp")],
    ] {
        let mut sum = [0.0; 7];
        for c in &calendar {
            let readings = read(up, CONSUMER, index(*c), from, to).await;
            assert_eq!(readings.len(), 7, "{c}");
            for (i, r) in readings.iter().enumerate() {
                assert_eq!(r.start, midnights[i]);
                sum[i] += r.value.unwrap();
            }
        }
        assert_eq!(
            sum.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
            values(&total),
            "{calendar:?}: the classes add up to the totalisator"
        );
    }
    // The energy per class, derived, adds up to the daily energy of each day.
    let energy = read(up, CONSUMER, Series::ConsumptionEnergyDaily, from, to).await;
    let hc = read(up, CONSUMER, daily(provider("hc")), from, to).await;
    let hp = read(up, CONSUMER, daily(provider("hp")), from, to).await;
    assert_eq!(hc.len(), 7);
    for i in 0..7 {
        assert_eq!(hc[i].start, energy[i].start);
        assert_eq!(hc[i].step, Step::Day);
        assert_eq!(
            Some(hc[i].value.unwrap() + hp[i].value.unwrap()),
            energy[i].value,
            "{}",
            utc(hc[i].start)
        );
        assert!(
            hc[i].value.unwrap() > 0.0,
            "an off-peak water heater or a night"
        );
    }
    // November is high season: nothing in the low-season classes.
    let hpb = read(up, CONSUMER, daily(distributor("hpb")), from, to).await;
    assert!(hpb.iter().all(|r| r.value == Some(0.0)), "{hpb:?}");
}

#[tokio::test]
async fn counters_are_stamped_at_paris_midnights_in_utc_across_both_dst_days() {
    let s = setup(&[CONSUMER]).await;
    let up: &dyn Upstream = s.client.as_ref();
    for (from, stamps, hours) in [
        (
            date(2026, 3, 28),
            [
                "2026-03-27T23:00:00Z",
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
            ],
            23,
        ),
        (
            date(2026, 10, 24),
            [
                "2026-10-23T22:00:00Z",
                "2026-10-24T22:00:00Z",
                "2026-10-25T23:00:00Z",
            ],
            25,
        ),
    ] {
        let to = from.checked_add(3.days()).unwrap();
        let hch = read(up, CONSUMER, index(distributor("hch")), from, to).await;
        // The season out of force (low in March, high in October) does not move.
        let idle = if hours == 23 { "hpb" } else { "hph" };
        let still = read(up, CONSUMER, index(distributor(idle)), from, to).await;
        let got: Vec<String> = hch.iter().map(|r| utc(r.start)).collect();
        assert_eq!(got, stamps);
        // The DST day's energy per class: its two midnights, 23 or 25 hours apart.
        let dst = from.tomorrow().unwrap();
        let energy = read(
            up,
            CONSUMER,
            Series::ConsumptionEnergyDaily,
            dst,
            dst.tomorrow().unwrap(),
        )
        .await;
        let mut sum = 0.0;
        for c in ["hph", "hch", "hpb", "hcb"] {
            let day = read(
                up,
                CONSUMER,
                daily(distributor(c)),
                dst,
                dst.tomorrow().unwrap(),
            )
            .await;
            assert_eq!(day.len(), 1);
            assert_eq!(day[0].start, day_start(dst).unwrap());
            sum += day[0].value.unwrap();
        }
        assert_eq!(Some(sum), energy[0].value, "{dst}: {hours} hours");
        assert_eq!(hch[2].start - hch[1].start, hours * 3600);
        assert!(
            still.windows(2).all(|w| w[0].value == w[1].value),
            "{dst}: {still:?}"
        );
    }
}

/// Wh of the load curve of `day` in the local hours `off_peak` holds for.
fn curve_energy(curve: &[Reading], off_peak: impl Fn(i8) -> bool) -> f64 {
    curve
        .iter()
        .filter(|r| {
            let hour = PARIS
                .to_datetime(jiff::Timestamp::from_second(r.start).unwrap())
                .hour();
            off_peak(hour)
        })
        .map(|r| r.value.unwrap() * r.step.nominal_seconds() as f64 / 3600.0)
        .sum()
}

#[tokio::test]
async fn the_energy_per_class_follows_off_peak_hours_that_change_mid_range() {
    let s = setup(&[OFF_PEAK_CHANGE]).await;
    let up: &dyn Upstream = s.client.as_ref();
    // Off-peak 22:00-06:00 until 15 November, 02:00-07:00 and 13:00-16:00 after.
    let (from, to) = (date(2026, 11, 13), date(2026, 11, 19));
    let hc = read(up, OFF_PEAK_CHANGE, daily(provider("hc")), from, to).await;
    let hch = read(up, OFF_PEAK_CHANGE, daily(distributor("hch")), from, to).await;
    assert_eq!(hc.len(), 6);
    let night = |h: i8| !(6..22).contains(&h);
    let afternoon = |h: i8| (2..7).contains(&h) || (13..16).contains(&h);
    for (i, day) in days(from, 6).into_iter().enumerate() {
        let curve = read(
            up,
            OFF_PEAK_CHANGE,
            Series::ConsumptionPower,
            day,
            day.tomorrow().unwrap(),
        )
        .await;
        let (expected, other) = if day < date(2026, 11, 16) {
            (curve_energy(&curve, night), curve_energy(&curve, afternoon))
        } else {
            (curve_energy(&curve, afternoon), curve_energy(&curve, night))
        };
        for got in [hc[i].value.unwrap(), hch[i].value.unwrap()] {
            assert!((got - expected).abs() <= 1.0, "{day}: {got} vs {expected}");
            assert!(
                (got - other).abs() > 2.0,
                "{day}: the other hours give {other}"
            );
        }
    }
}

#[tokio::test]
async fn a_calendar_change_gives_each_class_values_only_where_both_counters_exist() {
    let s = setup(&[CALENDAR_CHANGE]).await;
    let up: &dyn Upstream = s.client.as_ref();
    // Base until 8 November, peak / off-peak from 9 November.
    let (from, to) = (date(2026, 11, 6), date(2026, 11, 12));
    let base = read(up, CALENDAR_CHANGE, daily(provider("base")), from, to).await;
    let hc = read(up, CALENDAR_CHANGE, daily(provider("hc")), from, to).await;
    let hp = read(up, CALENDAR_CHANGE, daily(provider("hp")), from, to).await;
    let dbase = read(up, CALENDAR_CHANGE, daily(distributor("base")), from, to).await;
    let hph = read(up, CALENDAR_CHANGE, daily(distributor("hph")), from, to).await;
    let energy = read(
        up,
        CALENDAR_CHANGE,
        Series::ConsumptionEnergyDaily,
        from,
        to,
    )
    .await;
    let present = |r: &[Reading]| r.iter().map(|r| r.value.is_some()).collect::<Vec<_>>();
    let old = [true, true, true, false, false, false];
    let new = [false, false, false, true, true, true];
    assert_eq!(present(&base), old);
    assert_eq!(present(&dbase), old);
    assert_eq!(present(&hc), new);
    assert_eq!(present(&hp), new);
    assert_eq!(present(&hph), new);
    for i in 0..6 {
        let sum = [&base, &hc, &hp]
            .iter()
            .filter_map(|s| s[i].value)
            .sum::<f64>();
        assert_eq!(Some(sum), energy[i].value, "{}", utc(energy[i].start));
    }
    // The counters themselves: BASE's last one is the change's midnight.
    let counters = read(up, CALENDAR_CHANGE, index(provider("base")), from, to).await;
    assert_eq!(
        counters.last().map(|r| r.start),
        Some(day_start(date(2026, 11, 9)).unwrap())
    );
}

#[tokio::test]
async fn gaps_give_missing_values_never_invented_ones() {
    let s = setup(&[GAPPY]).await;
    let up: &dyn Upstream = s.client.as_ref();
    // 2026-11-24 is a Tuesday: no counter that day.
    let (from, to) = (date(2026, 11, 22), date(2026, 11, 27));
    let counters = read(up, GAPPY, index(provider("hc")), from, to).await;
    let days_with: Vec<String> = counters
        .iter()
        .map(|r| utc(r.start)[..10].to_owned())
        .collect();
    assert_eq!(
        days_with,
        ["2026-11-21", "2026-11-22", "2026-11-24", "2026-11-25"]
    );
    let hc = read(up, GAPPY, daily(provider("hc")), from, to).await;
    let present: Vec<bool> = hc.iter().map(|r| r.value.is_some()).collect();
    // Monday lacks Tuesday's counter, Tuesday its own.
    assert_eq!(present, [true, false, false, true, true]);
}

#[tokio::test]
async fn tempo_classes_split_each_day() {
    let s = setup(&[TEMPO]).await;
    let up: &dyn Upstream = s.client.as_ref();
    let (from, to) = (date(2026, 11, 2), date(2026, 11, 30));
    let energy = read(up, TEMPO, Series::ConsumptionEnergyDaily, from, to).await;
    let mut sum = vec![0.0; energy.len()];
    for code in ["buhc", "buhp", "bchc", "bchp", "rhc", "rhp"] {
        let class = read(up, TEMPO, daily(provider(code)), from, to).await;
        assert!(class.iter().any(|r| r.value > Some(0.0)), "{code}");
        for (i, r) in class.iter().enumerate() {
            sum[i] += r.value.unwrap();
        }
    }
    assert_eq!(
        sum.into_iter().map(Some).collect::<Vec<_>>(),
        values(&energy)
    );
    let base = read(up, TEMPO, daily(distributor("base")), from, to).await;
    assert_eq!(values(&base), values(&energy));
}

#[tokio::test]
async fn production_indexes_have_the_distributors_base_class() {
    let s = setup(&[PRODUCER]).await;
    let up: &dyn Upstream = s.client.as_ref();
    let (from, to) = (date(2026, 6, 1), date(2026, 6, 8));
    let total = read(
        up,
        PRODUCER,
        Series::EnergyIndex(Direction::Production),
        from,
        to,
    )
    .await;
    let base = read(
        up,
        PRODUCER,
        Series::ClassIndex(Direction::Production, distributor("base")),
        from,
        to,
    )
    .await;
    assert_eq!(total, base);
    let energy = read(up, PRODUCER, Series::ProductionEnergyDaily, from, to).await;
    let derived = read(
        up,
        PRODUCER,
        Series::ClassEnergyDaily(Direction::Production, distributor("base")),
        from,
        to,
    )
    .await;
    assert_eq!(derived, energy);
}

#[tokio::test]
async fn the_energy_per_class_comes_one_day_after_the_others() {
    let s = setup(&[CONSUMER]).await;
    let up: &dyn Upstream = s.client.as_ref();
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    let yesterday = today.yesterday().unwrap();
    let before = yesterday.yesterday().unwrap();
    let fetched = up
        .readings(prm(CONSUMER), daily(provider("hc")), before, today, &AGENT)
        .await
        .unwrap();
    assert_eq!(fetched.to, yesterday, "clamped to the last derivable day");
    assert_eq!(fetched.readings.len(), 1);
    assert!(fetched.readings[0].value.is_some());
    assert!(
        fetched.notes[0].contains("known only up to")
            && fetched.notes[0].contains(&before.to_string()),
        "{:?}",
        fetched.notes
    );
    let err = up
        .readings(
            prm(CONSUMER),
            daily(provider("hc")),
            yesterday,
            today,
            &AGENT,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(
        err.to_string()
            .contains("the energy per calendar class is known only up to"),
        "{err}"
    );
    // The index itself reaches yesterday's first midnight.
    let counters = read(up, CONSUMER, TOTAL, yesterday, today).await;
    assert_eq!(counters.len(), 1);
}

#[tokio::test]
async fn one_call_serves_every_class_of_the_same_days_through_the_cache() {
    let s = setup(&[CONSUMER]).await;
    // Closed days only (older than two days), and the day after them too.
    let (from, to) = (date(2026, 11, 2), date(2026, 11, 12));
    s.sim.clear_calls().await;
    let first = s
        .cached
        .readings_with_outcome(prm(CONSUMER), index(distributor("hph")), from, to, &AGENT)
        .await
        .unwrap()
        .0;
    assert_eq!(s.sim.calls(INDEX).await, 1);
    assert_eq!(first.readings.len(), 10);
    // Every other class, the totalisator, a class the meter does not have: no call.
    for series in [
        index(distributor("hch")),
        index(provider("hc")),
        TOTAL,
        index(provider("buhp")),
    ] {
        let (fetched, outcome) = s
            .cached
            .readings_with_outcome(prm(CONSUMER), series, from, to, &AGENT)
            .await
            .unwrap();
        assert_eq!(outcome.runs, 0, "{series}");
        assert_eq!(outcome.cached_days, 10, "{series}");
        let fresh = read(s.client.as_ref(), CONSUMER, series, from, to).await;
        assert_eq!(
            fetched.readings, fresh,
            "{series}: the cache changes nothing"
        );
        if series == index(provider("buhp")) {
            assert!(fetched.readings.is_empty());
        }
    }
    let fresh_calls = s.sim.calls(INDEX).await;
    assert_eq!(fresh_calls, 1 + 4, "only the uncached reads called");
    // The energy per class of days whose both midnights are cached: no call.
    s.sim.clear_calls().await;
    let (derived, outcome) = s
        .cached
        .readings_with_outcome(
            prm(CONSUMER),
            daily(distributor("hch")),
            from,
            date(2026, 11, 11),
            &AGENT,
        )
        .await
        .unwrap();
    assert_eq!(outcome.runs, 0);
    assert_eq!(s.sim.calls(INDEX).await, 0);
    assert_eq!(derived.readings.len(), 9);
    assert!(derived.readings.iter().all(|r| r.value.is_some()));
    // Its last day needs the 12 November counter: one call for that day only.
    let (_, outcome) = s
        .cached
        .readings_with_outcome(prm(CONSUMER), daily(distributor("hch")), from, to, &AGENT)
        .await
        .unwrap();
    assert_eq!((outcome.cached_days, outcome.runs), (10, 1));
    assert_eq!(s.sim.calls(INDEX).await, 1);
}

#[tokio::test]
async fn concurrent_requests_for_two_classes_share_one_call() {
    let s = setup(&[CONSUMER]).await;
    let (from, to) = (date(2026, 10, 5), date(2026, 10, 12));
    s.sim.clear_calls().await;
    let (a, b) = tokio::join!(
        s.cached
            .readings_with_outcome(prm(CONSUMER), index(provider("hp")), from, to, &AGENT),
        s.cached
            .readings_with_outcome(prm(CONSUMER), index(provider("hc")), from, to, &AGENT),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(s.sim.calls(INDEX).await, 1);
    assert_eq!(a.1.joined + b.1.joined, 1);
    assert_eq!(a.0.readings.len(), 7);
    assert_eq!(b.0.readings.len(), 7);
    assert_ne!(a.0.readings, b.0.readings);
}

#[tokio::test]
async fn the_v1_generations_refuse_index_series_precisely() {
    let sim = Sim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let client = EnedisClient::new(&config(ApiGeneration::V5, &sim), store.clone()).unwrap();
    let cached = CachedUpstream::new(Arc::new(client), store);
    sim.clear_calls().await;
    for series in [TOTAL, index(distributor("hph")), daily(provider("hc"))] {
        let err = cached
            .readings(
                prm(CONSUMER),
                series,
                date(2026, 11, 2),
                date(2026, 11, 9),
                &AGENT,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Unsupported(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "series {series} is served by the Enedis Data Connect 2026 API only"
            )) && text.contains("configured for API v5"),
            "{text}"
        );
    }
    assert_eq!(sim.all_calls().await["total"], 0, "nothing asked of Enedis");
}
