//! The index series and the energy per calendar class end to end: the REAL
//! `quoalise-agent run`, a real Prosody and the REAL `enedis-sim` (2026 API), asked
//! by the slixmpp peer playing the Quoalise client (`get_history`) and by Rust
//! peers (subscriptions):
//!
//! - a class's counters, stamped at each Paris midnight in UTC, with the flat meta
//!   the Quoalise SGE proxy writes for an index (no aggregation), and the energy
//!   per class derived from them, across both DST days of the year;
//! - a class code in upper case is refused with the reason;
//! - a subscriber to a class's counter gets the latest published day, one to its
//!   energy per day the day before it (its closing counter comes a day later).

use crate::common;
use crate::common::agent_harness;

use std::time::Duration;

use agent_harness::*;
use common::prosody::{DOMAIN, Prosody, ProsodyOptions};
use common::xmpp_harness::{AGENT, Peer, condition, submit};
use jiff::ToSpan;
use jiff::civil::Date;
use quoalise_agent::quoalise::{TimeSeries, decode_element};
use quoalise_agent::time::{day_start, due_through};
use quoalise_agent::xmpp::{Command, NS_QUOALISE};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_xmpp::Stanza;

const HCH: &str = "consumption/energy/active/index/distributor/hch";
const HCH_DAILY: &str = "consumption/energy/active/daily/distributor/hch";
const HCB_DAILY: &str = "consumption/energy/active/daily/distributor/hcb";
const HC_DAILY: &str = "consumption/energy/active/daily/provider/hc";
const HC: &str = "consumption/energy/active/index/provider/hc";

fn identifier(series: &str) -> String {
    format!("urn:dev:prm:{PRM}_{series}")
}

/// (time, value) of every record of the answer's one `<data>`.
fn records(answer: &Value) -> Vec<(i64, f64)> {
    assert_eq!(answer["type"], "result", "{answer}");
    answer["data"][0]["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {answer}"))
        .iter()
        .map(|r| {
            (
                r["time"].as_f64().unwrap() as i64,
                r["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn history(d: &Deployment, series: &str, from: Date, to: Date) -> Value {
    d.python(
        "alice@localhost/client",
        "history",
        &[&identifier(series), &midnight(from), &midnight(to)],
    )
    .await
}

#[tokio::test]
async fn get_history_of_a_class_index_and_of_its_energy_per_day_through_prosody() {
    let d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let first = today().checked_sub(9.days()).unwrap();
    let end = today().checked_sub(2.days()).unwrap();
    let days: Vec<Date> = (0..8)
        .map(|i| first.checked_add(i.days()).unwrap())
        .collect();

    // The counters of one class: one a day, at each Paris midnight, in Wh.
    let answer = history(&d, HCH, first, end.tomorrow().unwrap()).await;
    let counters = records(&answer);
    let stamps: Vec<i64> = counters.iter().map(|(t, _)| *t).collect();
    let midnights: Vec<i64> = days.iter().map(|d| midnight_seconds(*d)).collect();
    assert_eq!(stamps, midnights);
    assert!(
        counters.windows(2).all(|w| w[1].1 >= w[0].1),
        "{counters:?}"
    );
    let measurement = &answer["data"][0]["meta"]["measurement"];
    assert_eq!(measurement["name"], "active-energy-index", "{measurement}");
    assert_eq!(measurement["quantity"], "energy");
    assert_eq!(measurement["unit"], "Wh");
    assert_eq!(measurement["direction"], "consumption");
    assert_eq!(measurement["sampling-interval"], "P1D");
    assert!(
        measurement.get("aggregation").is_none(),
        "an index aggregates nothing, as the SGE proxy writes it: {measurement}"
    );
    let raw = answer["data"][0]["raw"].as_array().unwrap();
    assert_eq!(raw[0]["bn"], identifier(HCH));
    assert_eq!(raw[0]["bu"], "Wh");

    // The energy of that class per day: the difference of its two midnights.
    let answer = history(&d, HCH_DAILY, first, end).await;
    let energy = records(&answer);
    assert_eq!(energy.len(), 7);
    for (i, (t, v)) in energy.iter().enumerate() {
        assert_eq!(*t, midnights[i]);
        assert_eq!(*v, counters[i + 1].1 - counters[i].1, "{}", days[i]);
    }
    let measurement = &answer["data"][0]["meta"]["measurement"];
    assert_eq!(measurement["name"], "active-energy");
    assert_eq!(measurement["aggregation"], "sum");
    assert_eq!(measurement["sampling-interval"], "P1D");

    // The supplier's off-peak hours are the distributor's off-peak classes of
    // either season (each calendar rounds its own split: 1 Wh apart at most).
    let hc = records(&history(&d, HC_DAILY, first, end).await);
    let hcb = records(&history(&d, HCB_DAILY, first, end).await);
    for i in 0..7 {
        let distributor = energy[i].1 + hcb[i].1;
        assert!((hc[i].1 - distributor).abs() <= 1.0, "{}: {hc:?}", days[i]);
        assert!(hc[i].1 > 0.0);
    }

    // Both DST days: counters 23 and 25 hours apart, and the day's energy.
    for hours in [23, 25] {
        let dst = last_dst_day(hours);
        let (before, after) = (dst.yesterday().unwrap(), dst.tomorrow().unwrap());
        let counters = records(&history(&d, HCH, before, after.tomorrow().unwrap()).await);
        let stamps: Vec<i64> = counters.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            stamps,
            [
                midnight_seconds(before),
                midnight_seconds(dst),
                midnight_seconds(after)
            ]
        );
        assert_eq!(stamps[2] - stamps[1], hours * 3600);
        let energy = records(&history(&d, HCH_DAILY, dst, after).await);
        assert_eq!(
            energy,
            [(midnight_seconds(dst), counters[2].1 - counters[1].1)]
        );
    }

    // A class code in upper case: refused, and told how to write it.
    let answer = d
        .python(
            "alice@localhost/client",
            "history",
            &[
                &identifier("consumption/energy/active/index/distributor/HCH"),
                &midnight(first),
                &midnight(end),
            ],
        )
        .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["condition"], "bad-request", "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("lower case") && text.contains("\"hch\""),
        "{text}"
    );
}

/// The next message carrying a Quoalise payload, as a series.
async fn next_push(inbound: &mut mpsc::Receiver<Stanza>, within: Duration) -> Option<TimeSeries> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stanza = tokio::time::timeout_at(deadline, inbound.recv())
            .await
            .ok()??;
        let Stanza::Message(message) = stanza else {
            continue;
        };
        let Some(quoalise) = message
            .payloads
            .iter()
            .find(|p| p.is("quoalise", NS_QUOALISE))
        else {
            continue;
        };
        assert_eq!(
            message.from.as_ref().map(|j| j.to_string()),
            Some(format!("{AGENT}@{DOMAIN}/agent"))
        );
        let data = decode_element(quoalise).expect("the pushed payload decodes");
        return Some(data[0].to_time_series().expect("a time series"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_a_class_counter_daily_and_its_energy_a_day_later() {
    let prosody = Prosody::start_with(ProsodyOptions {
        tls: true,
        offline: true,
        ..ProsodyOptions::default()
    })
    .await;
    let d = Deployment::start_on(
        prosody,
        AgentSettings::with_peers(vec![peer("alice", &[PRM])]),
    )
    .await;
    let mut alice = Peer::login(&d.prosody, "alice@localhost/phone").await;
    let latest = due_through(jiff::Timestamp::now(), jiff::civil::time(8, 0, 0, 0));

    // The counter: the latest published day's midnight reading.
    let answer = alice
        .command(Command::execute(
            "subscribe",
            Some(submit(&[("identifier", &identifier(HC))])),
        ))
        .await
        .map_err(|e| condition(&e))
        .unwrap();
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.text.contains(&format!("starting with {latest}"))),
        "{:?}",
        answer.notes
    );
    let series = next_push(&mut alice.inbound, Duration::from_secs(30))
        .await
        .expect("the latest counter is pushed at once");
    assert_eq!(series.identifier.to_string(), identifier(HC));
    assert_eq!(series.readings.len(), 1);
    assert_eq!(series.readings[0].start, day_start(latest).unwrap());
    assert!(series.readings[0].value.is_some());

    // The energy per day of that class: its latest day is the one before.
    let day_before = latest.yesterday().unwrap();
    let answer = alice
        .command(Command::execute(
            "subscribe",
            Some(submit(&[("identifier", &identifier(HC_DAILY))])),
        ))
        .await
        .map_err(|e| condition(&e))
        .unwrap();
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.text.contains(&format!("starting with {day_before}"))),
        "{:?}",
        answer.notes
    );
    let series = next_push(&mut alice.inbound, Duration::from_secs(30))
        .await
        .expect("the latest derivable day is pushed at once");
    assert_eq!(series.identifier.to_string(), identifier(HC_DAILY));
    assert_eq!(series.readings.len(), 1);
    assert_eq!(series.readings[0].start, day_start(day_before).unwrap());
    assert!(series.readings[0].value.is_some_and(|v| v > 0.0));
    // Nothing else is due: no retry pushes a late day.
    assert!(
        next_push(&mut alice.inbound, Duration::from_secs(2))
            .await
            .is_none()
    );
    assert!(
        !d.agent.log().contains("subscription pass") || !d.agent.log().contains("pending=1"),
        "a pass left something pending:\n{}",
        d.agent.log()
    );
}
