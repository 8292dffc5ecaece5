//! The bare-metal kit in `tuning/`: the systemd unit passes `systemd-analyze verify`
//! (with its ExecStart pointed at the binary just built).

mod support;

use std::process::Command;

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tuning/ringcache.service"
    ))
    .expect("tuning/ringcache.service");
    assert!(unit.contains("Type=notify"), "the unit waits for READY=1");
    assert!(
        unit.contains("LimitMEMLOCK="),
        "the unit raises the memlock limit for io_uring"
    );
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("!!! systemd-analyze is not installed: the unit check is SKIPPED");
        return;
    };
    assert!(version.status.success());
    let dir = std::env::temp_dir().join(format!("ringcache-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringcache.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ringcache", env!("CARGO_BIN_EXE_ringcache")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
