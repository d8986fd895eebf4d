//! Long answers through the real send path: the REAL agent (release build)
//! answering year-long `get_history` requests in pages through a real Prosody
//! (TLS, stream management), the REAL simulator behind it, a Rust peer reading
//! every page. Prints, per kind of answer, the records and pages of one answer
//! and what the agent and Prosody spent on it (CPU from /proc/<pid>/stat over
//! `BENCH_ROUNDS` answers served from the agent's cache): CPU per 10,000
//! records, records per second of agent CPU, wall time per answer, and the
//! agent's peak RSS (VmHWM).
//!
//! The goal of issue 13: at least 20 M records per second of agent CPU on the
//! send path, i.e. a year of half-hours in under 2 ms of agent CPU. The agent's
//! figure here is its WHOLE work for the answer (requests and pages parsed,
//! consent checked and audit row written per page, cached days read, payload
//! encoded, stanza sized, TLS), not only the send path.
//!
//! Knobs: `BENCH_ROUNDS` (answers measured per kind, default 20), `BENCH_KINDS`
//! (which kinds, by number from 1, default "1,2,3,4").
//! Run by `cargo bench --bench answer_size` (and `bench/run`); needs root
//! (Prosody runs as its own user) and the Debian `prosody` package.

#[path = "../tests/common/mod.rs"]
mod common;
mod measure;

use common::agent_harness::{PRM, PRM_PT10M};
use common::config::write_secret;
use common::xmpp_harness::{PASSWORD, Peer};
use measure::*;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quoalise_agent::quoalise::decode_element;
use quoalise_agent::xmpp::{Action, Command as AdHoc, IqError, Status};
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;

fn request(prm: &str, days: i64) -> AdHoc {
    let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
    // Before the latest closed day: the days after are fetched again at every
    // request (docs/operations.md), and the day before the end too, for the
    // reading Enedis stamps at its midnight. The answers are wholly served from
    // the cache, so that the figures are the agent's own work.
    let end =
        quoalise_agent::time::add_days(quoalise_agent::upstream::cache::first_open_day(today), -1)
            .unwrap();
    let start = quoalise_agent::time::add_days(end, -days).unwrap();
    get_history(prm, start, end, true)
}

/// Upstream calls the simulator has answered so far.
async fn sim_calls(sim: &str) -> u64 {
    let body = reqwest::get(format!("{sim}/sim/admin/calls"))
        .await
        .expect("the simulator's admin API")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    body["total"].as_u64().unwrap_or(0)
}

/// Reads one whole answer, page after page; returns (records, pages).
async fn read_answer(peer: &Peer, agent: &Jid, prm: &str, days: i64) -> (usize, usize) {
    let mut command = request(prm, days);
    let mut records = 0;
    let mut pages = 0;
    loop {
        let answer = peer
            .running
            .handle
            .send_iq(
                Some(agent.clone()),
                IqRequestPayload::Set(command.to_element()),
                Duration::from_secs(120),
            )
            .await;
        let element = match answer {
            Ok(Some(element)) => element,
            Ok(None) => panic!("an answer without <command/>"),
            Err(IqError::Error(e)) => panic!("error answer: {:?}", e.texts),
            Err(e) => panic!("no answer: {e}"),
        };
        let answer = AdHoc::try_from(element).expect("a <command/>");
        pages += 1;
        for payload in &answer.payloads {
            if payload.name() == "quoalise" {
                let data = decode_element(payload).expect("a Quoalise payload");
                records += data.iter().map(|d| d.records.len()).sum::<usize>();
            }
        }
        match answer.status {
            Some(Status::Executing) => {
                let mut next = AdHoc::execute("get_history", None);
                next.sessionid = answer.sessionid.clone();
                next.action = Some(Action::Next);
                command = next;
            }
            Some(Status::Completed) => return (records, pages),
            other => panic!("unexpected status {other:?}"),
        }
    }
}

/// The send path alone, in this process: a year of half-hours in memory, cut
/// into pages as the agent cuts them (`encode_fitting` against the room the
/// stanza leaves), each page's iq built with its placeholder and sized as the
/// agent sizes it, then written by tokio-xmpp's XML stream through the agent's
/// `SpliceIo` to a loopback pipe whose other end only counts bytes (no TLS, no
/// server). Returns (records per answer, pages per answer, CPU ms per answer).
fn send_path(rounds: usize) -> (usize, usize, f64) {
    use futures::SinkExt;
    use quoalise_agent::quoalise::{Identifier, MetaForm, Reading, Series, Step, encode_fitting};
    use quoalise_agent::xmpp::wire::{SpliceIo, Splices, stanza_size};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
    use tokio_xmpp::Stanza;
    use tokio_xmpp::xmlstream::{StreamHeader, Timeouts, XmppStreamElement, initiate_stream};
    use xmpp_parsers::iq::Iq;

    const LIMIT: usize = 262_144;
    let identifier = Identifier::new(PRM.parse().unwrap(), Series::ConsumptionPower);
    let start = 1_764_543_600;
    let readings: Vec<Reading> = (0..17_520)
        .map(|i| Reading {
            start: start + i * 1800,
            step: Step::PT30M,
            value: Some(((i * 7919) % 3_600 + 200) as f64),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        // The other end: answers the stream header, then drains.
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let n = server.read(&mut buf).await.unwrap();
            assert!(n > 0);
            server
                .write_all(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='bench' from='localhost' version='1.0'>")
                .await
                .unwrap();
            let mut total = 0usize;
            loop {
                match server.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let splices = Splices::new();
        let io = SpliceIo::new(BufStream::new(client), splices.clone());
        let header = StreamHeader {
            to: Some("localhost".into()),
            from: None,
            id: None,
        };
        let pending = initiate_stream(io, "jabber:client", header, Timeouts::tight())
            .await
            .unwrap();
        let mut stream = pending.skip_features::<XmppStreamElement>();
        let to = Jid::new("peer0@localhost/bench").unwrap();
        let answer = |splice: &quoalise_agent::xmpp::wire::Splice, n: usize| {
            let mut command = AdHoc::answer("get_history", Some("0123456789abcdef".into()), Status::Executing);
            command.payloads.push(splice.placeholder());
            Stanza::Iq(Iq::Result {
                from: None,
                to: Some(to.clone()),
                id: format!("page{n}"),
                payload: Some(command.into()),
            })
        };
        let mut pages = 0;
        let mut before = 0.0;
        // Three answers to warm up, then the measured ones.
        for round in 0..rounds + 3 {
            if round == 3 {
                before = cpu_seconds(std::process::id());
            }
            let mut at = 0;
            let mut n = 0;
            while at < readings.len() {
                let probe = splices.prepare(bytes::Bytes::new());
                let envelope = stanza_size(&answer(&probe, n)).unwrap() - probe.marker_len();
                let (taken, bytes) =
                    encode_fitting(&identifier, &readings[at..], MetaForm::Flat, LIMIT - envelope)
                        .unwrap();
                let splice = splices.prepare(bytes::Bytes::from(bytes));
                let stanza = answer(&splice, n);
                let size = (stanza_size(&stanza).unwrap() as isize + splice.growth()) as usize;
                assert!(size <= LIMIT);
                splices.register(&splice);
                stream
                    .send(&XmppStreamElement::Stanza(stanza))
                    .await
                    .unwrap();
                splices.release(splice.id());
                at += taken;
                n += 1;
            }
            pages = n;
        }
        let cpu = cpu_seconds(std::process::id()) - before;
        drop(stream);
        let _ = drain.await;
        (readings.len(), pages, cpu * 1000.0 / rounds as f64)
    })
}

/// VmHWM of `pid`, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    measure::serve_sim_if_child();
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("answer_size: run with `cargo bench --bench answer_size`");
        return;
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 20);
    let kinds: Vec<usize> = env_or("BENCH_KINDS", "1,2,3,4".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtime = runtime();
    let _runtime = runtime.enter();
    let Stage {
        dir,
        prosody,
        prosody_pid,
        sim,
        sim_url,
        agent,
        ..
    } = stage(
        &runtime,
        "answer-size",
        &["agent", "peer0"],
        "warn",
        |config| config.peer("peer0@localhost", &[PRM, PRM_PT10M]),
    );
    let agent_pid = agent.pid();
    let ca: PathBuf = prosody.ca_file();
    let send_rounds: usize = env_or("BENCH_SEND_ROUNDS", 400);
    let (records, pages, ms) = send_path(send_rounds);
    println!(
        "send path in process (encode pages, size stanzas, tokio-xmpp + SpliceIo to a pipe; no TLS): \
         1 year of 30-minute, {records} records in {pages} pages: {ms:.3} ms of CPU per answer, \
         {:.3} ms per 10,000 records, {:.1} M records/s ({send_rounds} answers)",
        ms * 10_000.0 / records as f64,
        records as f64 / ms / 1000.0,
    );
    println!(
        "answer_size: paged get_history answers served from the agent's cache, {rounds} answers per kind, xmpp.max_stanza_bytes = 262144"
    );
    println!(
        "{:<28} {:>8} {:>6} | {:>10} {:>14} {:>12} | {:>12} | {:>10} {:>9}",
        "answer",
        "records",
        "pages",
        "agent ms",
        "agent ms/10k",
        "M records/s",
        "prosody ms",
        "wall ms",
        "agent RSS"
    );
    runtime.block_on(async {
        let peer = connect(&prosody, "peer0").await;
        let jid = Jid::new("agent@localhost/agent").unwrap();
        let all = [
            ("1 year of 30-minute", PRM, 365),
            ("2 years of 30-minute", PRM, 730),
            ("1 year of 10-minute", PRM_PT10M, 365),
            ("2 years of 10-minute", PRM_PT10M, 730),
        ];
        for (name, prm, days) in kinds
            .iter()
            .filter_map(|k| all.get(k.wrapping_sub(1)))
            .copied()
        {
            // The first answer fills the cache (upstream calls).
            let (records, pages) = read_answer(&peer, &jid, prm, days).await;
            let calls = sim_calls(&sim_url).await;
            let before = [cpu_seconds(agent_pid), cpu_seconds(prosody_pid)];
            let started = Instant::now();
            for _ in 0..rounds {
                let again = read_answer(&peer, &jid, prm, days).await;
                assert_eq!(again, (records, pages), "answers differ between rounds");
            }
            let wall = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
            let after = [cpu_seconds(agent_pid), cpu_seconds(prosody_pid)];
            let upstream = sim_calls(&sim_url).await - calls;
            let agent_ms = (after[0] - before[0]) * 1000.0 / rounds as f64;
            let prosody_ms = (after[1] - before[1]) * 1000.0 / rounds as f64;
            println!(
                "{:<28} {:>8} {:>6} | {:>10.2} {:>14.3} {:>12.1} | {:>12.2} | {:>10.1} {:>7.1} MiB",
                name,
                records,
                pages,
                agent_ms,
                agent_ms * 10_000.0 / records as f64,
                records as f64 / agent_ms / 1000.0,
                prosody_ms,
                wall,
                peak_rss_mib(agent_pid),
            );
            if upstream > 0 {
                println!("  ({upstream} upstream calls during the rounds: not all from the cache)");
            }
        }
        peer.running.shutdown.cancel();
        // The command line a person would use: two years of the 10-minute meter
        // through `query`, written as csv as pages arrive.
        let today = quoalise_agent::time::paris_today(jiff::Timestamp::now());
        let end = quoalise_agent::time::add_days(quoalise_agent::upstream::cache::first_open_day(today), -1).unwrap();
        let start = quoalise_agent::time::add_days(end, -730).unwrap();
        write_secret(&dir.path().join("peer_password"), PASSWORD);
        let before = cpu_seconds(agent_pid);
        let started = Instant::now();
        let mut child = std::process::Command::new(agent_bin())
            .args(["query", "--jid", "peer0@localhost", "--password-file"])
            .arg(dir.path().join("peer_password"))
            .args(["--to", "agent@localhost/agent", "--server"])
            .arg(prosody.server())
            .arg("--ca-file")
            .arg(&ca)
            .args([
                "get-history",
                &format!("urn:dev:prm:{PRM_PT10M}_consumption/power/active/raw"),
                "--start",
                &quoalise_agent::commands::data::paris_midnight(start),
                "--end",
                &quoalise_agent::commands::data::paris_midnight(end),
                "--format",
                "csv",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run query");
        let pid = child.id();
        let mut peak: f64 = 0.0;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            peak = peak.max(peak_rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut summary = String::new();
        if let Some(mut err) = child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut summary);
        }
        assert!(status.success(), "query failed: {summary}");
        let agent_ms = (cpu_seconds(agent_pid) - before) * 1000.0;
        println!(
            "query get-history, 2 years of 10-minute as csv: {:.1} s, query peak RSS {peak:.1} MiB (sampled every 20 ms), agent {agent_ms:.0} ms of CPU; {}",
            started.elapsed().as_secs_f64(),
            summary.trim()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    println!(
        "(CPU clock resolution: {:.0} ms; figures are averages over the rounds)",
        1000.0 / clock_ticks()
    );
    drop(agent);
    drop(sim);
    drop(prosody);
}
