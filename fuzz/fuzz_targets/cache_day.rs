//! cargo-fuzz target `cache_day`: see [`quoalise_agent_fuzz::cache_day`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::cache_day(data));
