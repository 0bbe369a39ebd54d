//! `TestServer`: spawns the real `vigie run` on free loopback ports in a temporary
//! data dir, waits for `/healthz`, and kills it on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const ADMIN_PASSWORD: &str = "e2e-admin-password";

/// A free loopback port (bound then released).
pub(crate) fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

pub(crate) fn vigie_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vigie")
}

pub(crate) struct TestServer {
    child: Option<Child>,
    pub(crate) http: SocketAddr,
    pub(crate) mqtt: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) client: reqwest::Client,
}

/// A config with a small simulator, so a test run stays light.
pub(crate) const LIGHT_CONFIG: &str = r#"
[simulator]
buildings = 3
backfill_days = 0
interval = "1h"
"#;

impl TestServer {
    /// Starts `vigie run ARGS` with `config` (TOML) and waits until it is healthy.
    pub(crate) async fn start(config: &str, args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("vigie.toml");
        std::fs::write(&config_path, config).expect("write config");
        let (http, mqtt) = (free_addr(), free_addr());
        let mut server = TestServer {
            child: None,
            http,
            mqtt,
            dir,
            config: config_path,
            client: reqwest::Client::new(),
        };
        server.spawn(args);
        server.wait_healthy().await;
        server
    }

    fn spawn(&mut self, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("vigie.log"))
            .expect("log file");
        let child = Command::new(vigie_bin())
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(Self::env_of(self.dir.path(), self.http, self.mqtt))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vigie");
        self.child = Some(child);
    }

    /// Starts `vigie run ARGS` again on the same data dir and ports, after `stop`.
    pub(crate) async fn restart(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn(args);
        self.wait_healthy().await;
    }

    /// Samples in the embedded store, read from the SQLite file directly.
    pub(crate) async fn stored_samples(&self) -> u64 {
        let db = vigie_core::db::Db::open_dir(&self.dir.path().join("data")).expect("open store");
        let store = vigie_core::store::SqliteStore::new(db);
        vigie_core::store::TimeSeriesStore::count(&store)
            .await
            .expect("count")
    }

    fn env_of(data: &Path, http: SocketAddr, mqtt: SocketAddr) -> Vec<(String, String)> {
        vec![
            (
                "VIGIE_DATA_DIR".into(),
                data.join("data").display().to_string(),
            ),
            ("VIGIE_HTTP_ADDR".into(), http.to_string()),
            ("VIGIE_MQTT_LISTEN".into(), mqtt.to_string()),
            ("VIGIE_MQTT_URL".into(), String::new()),
            ("VIGIE_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vigie.log")).unwrap_or_default()
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vigie did not become healthy; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Another `vigie` command on the same data dir and config, ready to run.
    pub(crate) fn vigie_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(vigie_bin());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(Self::env_of(self.dir.path(), self.http, self.mqtt));
        c
    }

    /// Runs another `vigie` command on the same data dir and config.
    pub(crate) fn vigie(&self, args: &[&str]) -> Output {
        self.vigie_command(args).output().expect("run vigie")
    }

    /// A new API token for the admin, through `vigie user token`.
    pub(crate) fn admin_token(&self) -> String {
        let out = self.vigie(&["user", "token", "admin"]);
        assert!(
            out.status.success(),
            "user token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    pub(crate) async fn get_json(&self, token: &str, path: &str) -> serde_json::Value {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("JSON body")
    }

    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    /// Asks vigie to stop (SIGTERM) and waits for it.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A device id of the given kind, from the API.
pub(crate) async fn device_of_kind(server: &TestServer, token: &str, kind: &str) -> String {
    let devices = server.get_json(token, "/api/v1/devices").await;
    devices
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["kind"] == kind)
        .and_then(|d| d["id"].as_str())
        .unwrap_or_else(|| panic!("no device of kind {kind} in {devices}"))
        .to_string()
}

/// The building of a device, from the API.
pub(crate) async fn building_of(server: &TestServer, token: &str, device: &str) -> String {
    let devices = server.get_json(token, "/api/v1/devices").await;
    devices
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["id"] == device)
        .and_then(|d| d["building_id"].as_str())
        .unwrap_or_else(|| panic!("no building for {device} in {devices}"))
        .to_string()
}
