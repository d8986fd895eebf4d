//! cargo-fuzz target `senml`: see [`quoalise_agent_fuzz::senml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::senml(data));
