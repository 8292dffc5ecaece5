//! The bare-metal kit in `tuning/`: the systemd unit passes `systemd-analyze verify`
//! (with its ExecStart pointed at the binary just built), and the Debian package's
//! metadata names files that exist and puts the binary where the unit runs it
//! (`scripts/deb.sh --test` builds and installs the package itself).

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
        unit.replace("/usr/bin/ringcache", env!("CARGO_BIN_EXE_ringcache")),
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

/// `[package.metadata.deb]` of Cargo.toml, read as cargo-deb reads it.
fn deb_metadata() -> toml::Table {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let mut manifest: toml::Table = toml::from_str(&manifest).expect("Cargo.toml parses");
    let deb = manifest
        .remove("package")
        .and_then(|p| p.get("metadata")?.get("deb").cloned());
    match deb {
        Some(toml::Value::Table(deb)) => deb,
        other => panic!("no [package.metadata.deb] table: {other:?}"),
    }
}

#[test]
fn the_debian_package_installs_the_binary_where_its_unit_runs_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = deb_metadata();
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (source, _) in &assets {
        // cargo-deb builds what is under target/release itself.
        if !source.starts_with("target/release/") {
            assert!(root.join(source).is_file(), "asset {source} is missing");
        }
    }
    let binary = assets
        .iter()
        .find(|(source, _)| source == "target/release/ringcache")
        .map(|(_, dest)| format!("/{dest}ringcache"))
        .expect("the package ships the binary");
    assert!(
        assets
            .iter()
            .any(|(s, d)| s == "tuning/ringcache.default" && d == "etc/default/ringcache"),
        "the package ships tuning/ringcache.default as /etc/default/ringcache"
    );

    let units = deb["systemd-units"].as_table().expect("systemd-units");
    let unit_dir = units["unit-scripts"].as_str().expect("unit-scripts");
    let unit_name = units["unit-name"].as_str().expect("unit-name");
    let unit = std::fs::read_to_string(root.join(unit_dir).join(format!("{unit_name}.service")))
        .expect("the unit cargo-deb ships");
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    assert_eq!(
        exec_start.split_whitespace().next(),
        Some(binary.as_str()),
        "the unit runs the binary where the package puts it"
    );
    assert!(
        unit.contains("EnvironmentFile=-/etc/default/ringcache"),
        "the unit reads the packaged /etc/default/ringcache"
    );

    let scripts = root.join(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    let postinst = std::fs::read_to_string(scripts.join("postinst")).expect("postinst");
    assert!(
        unit.contains("User=ringcache") && postinst.contains("adduser --system"),
        "postinst creates the user the unit runs as"
    );
    assert!(
        postinst.contains("#DEBHELPER#"),
        "postinst keeps the place for cargo-deb's systemd snippets"
    );
}
