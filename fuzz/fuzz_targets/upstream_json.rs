//! cargo-fuzz target `upstream_json`: see [`quoalise_agent_fuzz::upstream_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::upstream_json(data));
