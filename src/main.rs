//! The `ringcache` binary: command line to configuration to runtime, nothing else.

use clap::Parser;
use ringcache::cli::{Args, Config, DAEMONIZE_REFUSED, EXIT_DAEMONIZE_REFUSED};

/// The exit status for a command line that cannot be served.
const EXIT_USAGE: i32 = 64;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("cluster") {
        std::process::exit(ringcache::admin::main(&argv[2..]));
    }
    let args = Args::parse();
    if args.license {
        print!("{}", include_str!("../LICENSE"));
        return;
    }
    if args.daemonize {
        eprintln!("ringcache: {DAEMONIZE_REFUSED}");
        std::process::exit(EXIT_DAEMONIZE_REFUSED);
    }
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ringcache: {message}");
            std::process::exit(EXIT_USAGE);
        }
    };
    // -v and -vv raise ringcache's own lines only: the libraries' debug lines
    // (glommio's, one per shard and file) would bury them. -vvv shows everything.
    let level = match config.verbosity {
        0 => "warn",
        1 => "warn,ringcache=info",
        2 => "warn,ringcache=debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    for note in &config.notes {
        log::warn!("{note}");
    }
    let pid_file = match ringcache::runtime::process::prepare(&config) {
        Ok(pid_file) => pid_file,
        Err(message) => {
            eprintln!("ringcache: {message}");
            std::process::exit(1);
        }
    };
    let code = ringcache::runtime::run(config);
    if let Some(pid_file) = pid_file {
        pid_file.remove();
    }
    std::process::exit(code);
}
