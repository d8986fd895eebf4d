//! cargo-fuzz target `form`: see [`quoalise_agent_fuzz::form`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::form(data));
