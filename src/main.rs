//! The `ringcache` binary: command line to configuration to runtime, nothing else.

use clap::Parser;
use ringcache::config::{Args, Config};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("cluster") {
        std::process::exit(ringcache::runtime::admin::main(&argv[2..]));
    }
    let args = Args::parse();
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ringcache: {message}");
            std::process::exit(64);
        }
    };
    let level = match config.verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    std::process::exit(ringcache::runtime::run(config));
}
