//! libFuzzer target: [`ringcache_fuzz::text`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcache_fuzz::text(data));
