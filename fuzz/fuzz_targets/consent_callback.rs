//! cargo-fuzz target `consent_callback`: see [`quoalise_agent_fuzz::consent_callback`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quoalise_agent_fuzz::consent_callback(data));
