//! libFuzzer target: [`ringcache_fuzz::peer_wire`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcache_fuzz::peer_wire(data));
