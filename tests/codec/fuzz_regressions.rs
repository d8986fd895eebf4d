//! Every input kept under `fuzz/regressions/<target>/` (crashes the fuzzers found,
//! and inputs worth keeping) runs through the same entry points as the cargo-fuzz
//! targets (`fuzz/src/lib.rs`), on stable Rust, in every test run.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_kept_input_runs_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (name, run) in targets::TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name}: {} panics", file.display());
            ran += 1;
        }
    }
    println!("{ran} kept fuzz inputs ran");
    assert!(ran > 0, "no input under {}", root.display());
}

#[test]
fn every_target_survives_trivial_inputs() {
    for (name, run) in targets::TARGETS {
        for data in [&b""[..], b"\0", b"{}", b"<x/>", &[0xff; 64]] {
            let outcome = std::panic::catch_unwind(|| run(data));
            assert!(outcome.is_ok(), "{name} panics on {data:?}");
        }
    }
}

use crate::common::sim;

/// Regenerates the fuzzers' starting corpus of Enedis answers
/// (`fuzz/seeds/upstream_json/`): one real answer of the simulator per generation
/// and series, for the PRM and days the target reads them for, prefixed with the
/// two selector bytes. Run with `cargo test --test codec generate_upstream_seeds -- --ignored`.
#[tokio::test]
#[ignore = "writes fuzz/seeds; run by hand when the answer formats change"]
async fn generate_upstream_seeds() {
    use quoalise_agent::config::ApiGeneration;
    use quoalise_agent::quoalise::Series;
    let sim = sim::Sim::start(&[
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--quota-per-second",
        "0",
    ]);
    let app = sim.app_token().await;
    let v1 = sim.consent_v1_tokens("seed0", Some("22516914714270")).await;
    let consent = v1["access_token"].as_str().unwrap().to_owned();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/upstream_json");
    std::fs::create_dir_all(&dir).unwrap();
    let prm: quoalise_agent::quoalise::Prm = "22516914714270".parse().unwrap();
    let (from, to) = (jiff::civil::date(2026, 9, 1), jiff::civil::date(2026, 9, 3));
    for (g, generation) in [
        ApiGeneration::Api2026,
        ApiGeneration::V5,
        ApiGeneration::V4,
        ApiGeneration::V3,
    ]
    .into_iter()
    .enumerate()
    {
        for (s, series) in Series::ALL.into_iter().enumerate() {
            let call =
                quoalise_agent::upstream::dialect(generation).data_call(series, &prm, from, to);
            let token = if generation.per_consent_tokens() {
                &consent
            } else {
                &app
            };
            let query: Vec<String> = call.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let response = sim
                .get(token, &format!("{}?{}", call.path, query.join("&")))
                .await;
            let mut bytes = vec![g as u8, s as u8];
            bytes.extend_from_slice(&response.bytes().await.unwrap());
            std::fs::write(dir.join(format!("{}_{s}.bin", generation.as_str())), bytes).unwrap();
        }
    }
}
