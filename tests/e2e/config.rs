//! Start-up refuses a bad configuration with one line naming the file and the key.

use std::process::Command;

use crate::server::{free_addr, vigie_bin};

#[test]
fn a_bad_config_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[ingest]\nbatch_linger = \"soon\"\n").expect("write");
    let out = Command::new(vigie_bin())
        .args(["run", "--config"])
        .arg(&path)
        .env("VIGIE_DATA_DIR", dir.path().join("data"))
        .env("VIGIE_HTTP_ADDR", free_addr().to_string())
        .env("VIGIE_MQTT_LISTEN", free_addr().to_string())
        .output()
        .expect("run vigie");
    assert!(!out.status.success(), "vigie started with a bad config");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(
        line.contains("bad.toml") && line.contains("ingest.batch_linger"),
        "{err}"
    );
    assert!(
        line.contains("\"soon\"") && line.contains("expected a duration"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing should be created before the config is valid"
    );
}

#[test]
fn a_bad_environment_override_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(vigie_bin())
        .arg("run")
        .env("VIGIE_DATA_DIR", dir.path().join("data"))
        .env("VIGIE_HTTP_ADDR", "somewhere")
        .output()
        .expect("run vigie");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VIGIE_HTTP_ADDR") && err.contains("\"somewhere\""),
        "{err}"
    );
}
