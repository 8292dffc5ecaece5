//! Writes each target's seed inputs (valid requests, lines and files) into
//! `DIR/<target>/`, the corpus libFuzzer starts from.

// Built with coverage instrumentation like the targets, so it links the
// instrumentation's callbacks from libFuzzer; its own `main` is the one used.
use libfuzzer_sys as _;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seeds DIR");
    for target in ringcache_fuzz::TARGETS {
        let target_dir = std::path::Path::new(&dir).join(target.name);
        std::fs::create_dir_all(&target_dir).expect("create the corpus folder");
        for (i, seed) in (target.seeds)().iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i:03}")), seed).expect("write a seed");
        }
    }
}
