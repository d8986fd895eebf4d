//! cargo-fuzz target `identifier`: see [`quoalise_agent_fuzz::identifier`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::identifier(data));
