//! libFuzzer target: [`ringcache_fuzz::consensus_codec`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcache_fuzz::consensus_codec(data));
