//! The shell: glommio executors, sockets, channels, signals and the clock.
//!
//! Everything else in the crate is pure; this module is where requests meet I/O.

use crate::config::Config;

/// Runs the node until it is told to stop. Returns the process exit code.
pub fn run(config: Config) -> i32 {
    let _ = config;
    0
}
