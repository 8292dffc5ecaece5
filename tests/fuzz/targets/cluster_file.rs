//! libFuzzer target: [`ringcache_fuzz::cluster_file`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcache_fuzz::cluster_file(data));
