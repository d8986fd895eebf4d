//! cargo-fuzz target `dates`: see [`quoalise_agent_fuzz::dates`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::dates(data));
