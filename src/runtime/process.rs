//! What memcached does to its process before it serves, done the same way
//! (blocking I/O, before any shard starts): raise the core file limit (`-r`),
//! lock memory (`-k`), drop root for `-u USER`, and write the pid file (`-P`),
//! which [`PidFile::remove`] takes away at exit.
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::cli::Config;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{Gid, Uid, User};
use std::path::PathBuf;

/// A pid file this process wrote.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Removes the file; a failure (say, the directory is root's and the
    /// process dropped root) is logged, since the process is ending anyway.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!(
                "-P {}: cannot remove the pid file: {e}",
                self.path.display()
            );
        }
    }
}

/// Prepares the process as `config` asks; returns the pid file to remove at
/// exit. An error is one line naming the flag and the cause.
pub fn prepare(config: &Config) -> Result<Option<PidFile>, String> {
    if config.enable_coredumps {
        let (_, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(|e| format!("-r: {e}"))?;
        setrlimit(Resource::RLIMIT_CORE, hard, hard)
            .map_err(|e| format!("-r: failed to ensure corefile creation: {e}"))?;
    }
    if config.lock_memory {
        use nix::sys::mman::{mlockall, MlockAllFlags};
        // As memcached: a warning, and the node runs unlocked.
        if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
            log::warn!("-k: mlockall() failed ({e}): memory is not locked; raise LimitMEMLOCK");
        }
    }
    if let Some(name) = &config.user {
        become_user(name)?;
    }
    match &config.pid_file {
        None => Ok(None),
        Some(path) => {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(|e| format!("-P {}: cannot write the pid file: {e}", path.display()))?;
            Ok(Some(PidFile { path: path.clone() }))
        }
    }
}

/// `-u USER`: started as root, takes USER's uid, gid and only that group, as
/// memcached does; otherwise leaves the process as it is, with a note.
fn become_user(name: &str) -> Result<(), String> {
    if !Uid::effective().is_root() {
        log::warn!(
            "-u {name}: not started as root, so the process stays user {}",
            Uid::effective()
        );
        return Ok(());
    }
    let user = User::from_name(name)
        .map_err(|e| format!("-u {name}: cannot look the user up: {e}"))?
        .ok_or_else(|| format!("-u {name}: can't find the user {name} to switch to"))?;
    let gid: Gid = user.gid;
    nix::unistd::setgroups(&[gid])
        .and_then(|_| nix::unistd::setgid(gid))
        .and_then(|_| nix::unistd::setuid(user.uid))
        .map_err(|e| format!("-u {name}: failed to assume the identity of user {name}: {e}"))?;
    log::info!("running as user {name} (uid {}, gid {gid})", user.uid);
    Ok(())
}
