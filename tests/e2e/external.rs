//! The real binary against a real mosquitto: shared-subscription scale-out and
//! per-device topic ACLs from `vigie broker mosquitto-config`; plus the helpers the
//! fault tests share (a private mosquitto per test, `vigie` processes, a publisher
//! that waits for every PUBACK and survives broker restarts).
//!
//! Gated on `VIGIE_TEST_MOSQUITTO_BIN` (set by `.ci/run`): unset, each test prints why
//! it is skipped; set to a missing file, they fail.

// Test helpers: a failed setup step should stop the test with its error.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vigie_core::db::Db;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry};
use vigie_core::store::{SqliteStore, TimeSeriesStore};
use vigie_core::{BuildingId, DeviceId, MemberId, Timestamp};

use crate::server::{free_addr, vigie_bin};

/// The mosquitto binary from `VIGIE_TEST_MOSQUITTO_BIN`, or `None` (test skipped).
pub(crate) fn mosquitto_bin(test: &str) -> Option<PathBuf> {
    match std::env::var("VIGIE_TEST_MOSQUITTO_BIN") {
        Ok(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "VIGIE_TEST_MOSQUITTO_BIN={} does not exist",
                p.display()
            );
            Some(p)
        }
        _ => {
            eprintln!(
                "skipped: {test} needs a real mosquitto; set VIGIE_TEST_MOSQUITTO_BIN=/usr/sbin/mosquitto (.ci/run does)"
            );
            None
        }
    }
}

/// A private mosquitto on a free port, with persistence in its own directory.
pub(crate) struct Mosquitto {
    bin: PathBuf,
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts it with persistence on, unlimited queues, and `extra` config lines.
    pub(crate) fn start(bin: &Path, extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_addr().port();
        let conf = format!(
            "listener {port} 127.0.0.1\npersistence true\npersistence_location {}/\n\
             max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n\
             user root\nlog_type error\nlog_type warning\nlog_type notice\n{extra}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("write conf");
        let mut m = Mosquitto {
            bin: bin.to_path_buf(),
            child: None,
            port,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it gracefully (SIGTERM: it saves its persistence file) and starts it again.
    pub(crate) fn restart(&mut self) {
        let mut c = self.child.take().expect("running");
        signal(&c, "TERM");
        c.wait().expect("wait mosquitto");
        self.spawn();
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// A `vigie` process (`ingest` or `run`) with its own log file.
pub(crate) struct Vigie {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub(crate) log: PathBuf,
}

impl Vigie {
    /// Spawns `vigie ARGS` with `env` on top of a clean `VIGIE_*` environment.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, String)], log: PathBuf) -> Vigie {
        let mut v = Vigie {
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            log,
        };
        v.start();
        v
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(vigie_bin())
            .args(&self.args)
            .env("VIGIE_MQTT_URL", "")
            .env("VIGIE_MQTT_SHARED_GROUP", "")
            .env(
                "RUST_LOG",
                std::env::var("VIGIE_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vigie");
        self.child = Some(child);
    }

    /// `kill -9`: no chance to commit, ack or disconnect.
    pub(crate) fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("SIGKILL");
        c.wait().expect("wait");
    }

    /// SIGTERM, and wait for a clean exit.
    pub(crate) fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        signal(&c, "TERM");
        let st = c.wait().expect("wait");
        assert!(st.success(), "vigie exited with {st}: {}", self.log_text());
    }

    /// Starts the same command again.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.start();
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (e.g. ingest has subscribed).
    pub(crate) async fn wait_log(&self, needle: &str, nth: usize) {
        wait_until(
            &format!("{needle:?} in the log"),
            Duration::from_secs(60),
            || {
                let n = self.log_text().matches(needle).count();
                async move { n >= nth }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", self.log_text()));
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `check` every 100 ms until it holds, or fails after `limit`.
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Registers one member, one building and `devices` devices `dev-0000…` in `data`.
pub(crate) async fn register_devices(data: &Path, devices: usize) -> Vec<DeviceId> {
    let registry = Registry::new(Db::open_dir(data).expect("open data dir"));
    let member = MemberId::new("m").unwrap();
    registry
        .upsert_member(&Member {
            id: member.clone(),
            name: "Commune".into(),
            kind: "commune".into(),
        })
        .await
        .unwrap();
    let building = BuildingId::new("b").unwrap();
    registry
        .upsert_building(&Building {
            id: building.clone(),
            member_id: member,
            name: "Mairie".into(),
            address: String::new(),
            floor_area_m2: None,
            usage: String::new(),
            gas_pcs_kwh_per_m3: 11.2,
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for d in 0..devices {
        let id = DeviceId::new(format!("dev-{d:04}")).unwrap();
        registry
            .upsert_device(&Device::new(
                id.clone(),
                Some(building.clone()),
                DeviceKind::AirQuality,
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// Samples stored in the data dir's embedded store.
pub(crate) async fn stored(data: &Path) -> u64 {
    let store = SqliteStore::new(Db::open_dir(data).expect("open store"));
    store.count().await.expect("count")
}

/// The sample count `vigie sim` reports on stderr ("… (N samples) acknowledged …").
pub(crate) fn acknowledged_samples(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("acknowledged by the broker"))
        .unwrap_or_else(|| panic!("no report line in vigie sim's stderr:\n{stderr}"));
    let (_, rest) = line.split_once('(').unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Samples stored in `data` as published: every series but the `gas_kwh` ingest derives
/// from each gas index (m³ × the building's PCS).
pub(crate) async fn stored_as_published(data: &Path) -> u64 {
    use vigie_core::store::{SqliteStore, TimeSeriesStore};
    use vigie_core::{Quantity, Timestamp, db::Db, registry::Registry};
    let db = Db::open_dir(data).expect("open data dir");
    let registry = Registry::new(db.clone());
    let store = SqliteStore::new(db);
    let mut n = 0;
    for labels in registry.series_labels().await.expect("series") {
        if labels.series.quantity == Quantity::GasKwh {
            continue;
        }
        let points = store
            .range(labels.series.id, Timestamp(0), Timestamp(i64::MAX / 2))
            .await
            .expect("range");
        n += points.len() as u64;
    }
    n
}

/// Values per message of [`stream`].
pub(crate) const VALUES_PER_MESSAGE: u64 = 2;

/// `n` native messages over `devices` devices, each with distinct timestamps, so that
/// every message maps to [`VALUES_PER_MESSAGE`] samples no other message has.
pub(crate) fn stream(n: usize, devices: usize, first: usize) -> Vec<(String, Vec<u8>)> {
    // Whole days, so that the same arguments give the same stream within a test.
    let start = (Timestamp::now().0 / 86_400_000 - 400) * 86_400_000;
    (first..first + n)
        .map(|i| {
            let d = i % devices;
            let ts = start + (i / devices) as i64 * 1000;
            let p = format!(
                r#"{{"ts":{ts},"values":{{"power_w":{},"temperature_c":{}}}}}"#,
                500 + i % 1000,
                (i % 300) as f64 / 10.0
            );
            (format!("vigie/dev-{d:04}/telemetry"), p.into_bytes())
        })
        .collect()
}

/// Publishes every message at QoS 1 with a persistent session and counts PUBACKs in
/// `acked`; reconnects through broker restarts (rumqttc resends what is unacked when
/// the broker kept the session). Returns when all are acknowledged.
pub(crate) async fn publish(
    port: u16,
    client_id: &str,
    msgs: Vec<(String, Vec<u8>)>,
    acked: Arc<AtomicUsize>,
) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_clean_session(false)
        .set_inflight(200)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let total = msgs.len();
    let sender = tokio::spawn(async move {
        for (t, p) in msgs {
            client
                .publish(t, QoS::AtLeastOnce, false, p)
                .await
                .expect("queue");
        }
        client
    });
    let mut errors = 0;
    while acked.load(Ordering::Relaxed) < total {
        match tokio::time::timeout(Duration::from_secs(60), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if errors > 0 => {
                assert!(a.session_present, "the broker lost the publisher's session");
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                errors += 1;
                assert!(errors < 600, "publisher cannot reconnect");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => panic!(
                "publisher: no MQTT event for 60 s after {} PUBACKs",
                acked.load(Ordering::Relaxed)
            ),
        }
    }
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
}

/// The environment of a `vigie` process on `data` with the broker at `url`.
pub(crate) fn env_for(data: &Path, url: &str, client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VIGIE_DATA_DIR", data.display().to_string()),
        ("VIGIE_MQTT_URL", url.to_string()),
        ("VIGIE_MQTT_CLIENT_ID", client_id.to_string()),
        ("VIGIE_HTTP_ADDR", free_addr().to_string()),
        (
            "VIGIE_ADMIN_PASSWORD",
            crate::server::ADMIN_PASSWORD.to_string(),
        ),
    ]
}

/// From `ingest report: messages received: R, messages acknowledged: A, …` in a log.
fn acked_in_report(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let rest = l.split("messages acknowledged: ").nth(1)?;
            rest.split(',').next()?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no ingest report in:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_share_a_subscription_and_store_every_sample_once() {
    let Some(bin) = mosquitto_bin("shared-subscription scale-out") else {
        return;
    };
    let broker = Mosquitto::start(&bin, "allow_anonymous true");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, 20).await;
    let mut procs: Vec<Vigie> = ["ingest-a", "ingest-b"]
        .iter()
        .map(|id| {
            let mut env = env_for(&data, &broker.url(), id);
            env.push(("VIGIE_MQTT_SHARED_GROUP", "vigie".into()));
            Vigie::spawn(&["ingest"], &env, dir.path().join(format!("{id}.log")))
        })
        .collect();
    for p in &procs {
        p.wait_log("subscribed to", 1).await;
    }
    let n = 20_000;
    let acked = Arc::new(AtomicUsize::new(0));
    publish(broker.port, "pub-shared", stream(n, 20, 0), acked).await;
    let expected = n as u64 * VALUES_PER_MESSAGE;
    wait_until("every sample stored", Duration::from_secs(300), || {
        let data = data.clone();
        async move { stored(&data).await >= expected }
    })
    .await
    .unwrap();
    for p in &mut procs {
        p.stop();
    }
    assert_eq!(stored(&data).await, expected);
    let a = acked_in_report(&procs[0].log_text());
    let b = acked_in_report(&procs[1].log_text());
    assert!(a > 0 && b > 0, "both processes took a share: {a} and {b}");
    assert_eq!(
        a + b,
        n as u64,
        "each message acknowledged by exactly one process"
    );
    for p in &procs {
        assert!(p.log_text().contains("duplicates: 0"), "{}", p.log_text());
    }
}

/// Runs `vigie ARGS` on `data` and returns its stdout; fails with its stderr.
fn vigie_cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(vigie_bin())
        .args(args)
        .env("VIGIE_DATA_DIR", data)
        .output()
        .expect("run vigie");
    assert!(
        out.status.success(),
        "vigie {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Connects; `Ok(client, eventloop)` once the broker accepted, `Err` if it refused.
async fn connect(
    port: u16,
    id: &str,
    user: &str,
    password: &str,
) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, password);
    let (c, mut ev) = AsyncClient::new(o, 100);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((c, ev)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no CONNACK in 10 s".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mosquitto_config_a_device_cannot_publish_under_another_devices_topic() {
    let Some(bin) = mosquitto_bin("per-device topic ACLs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, 2).await;
    let pw_a = vigie_cli(&data, &["device", "credentials", "dev-0000"]);
    let pw_b = vigie_cli(&data, &["device", "credentials", "dev-0001"]);
    let conf_dir = dir.path().join("mosquitto");
    vigie_cli(
        &data,
        &["broker", "mosquitto-config", conf_dir.to_str().unwrap()],
    );
    let snippet = std::fs::read_to_string(conf_dir.join("vigie.conf")).unwrap();
    let env = std::fs::read_to_string(conf_dir.join("ingest.env")).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in ingest.env"))
            .to_string()
    };
    let (ingest_user, ingest_pw) = (var("VIGIE_MQTT_USERNAME"), var("VIGIE_MQTT_PASSWORD"));
    let broker = Mosquitto::start(&bin, &snippet);

    // Refused: anonymous, a wrong password, another device's password.
    assert!(connect(broker.port, "anon", "", "").await.is_err());
    assert!(
        connect(broker.port, "x", "dev-0000", "wrong")
            .await
            .is_err()
    );
    assert!(
        connect(broker.port, "x", "dev-0000", pw_b.trim())
            .await
            .is_err()
    );

    // Ingest reads through the shared subscription it uses to scale out.
    let (sub, mut sub_ev) = connect(broker.port, "ingest", &ingest_user, &ingest_pw)
        .await
        .expect("ingest connects");
    sub.subscribe("$share/vigie/vigie/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    let received = Arc::new(std::sync::Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let (got, subscribed) = (received.clone(), Arc::new(AtomicUsize::new(0)));
    let sub_flag = subscribed.clone();
    tokio::spawn(async move {
        while let Ok(e) = sub_ev.poll().await {
            match e {
                Event::Incoming(Packet::SubAck(a)) => {
                    let ok = a
                        .return_codes
                        .iter()
                        .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    sub_flag.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
                }
                Event::Incoming(Packet::Publish(p)) => {
                    got.lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    wait_until("SUBACK", Duration::from_secs(10), || {
        let s = subscribed.clone();
        async move { s.load(Ordering::SeqCst) != 0 }
    })
    .await
    .unwrap();
    assert_eq!(
        subscribed.load(Ordering::SeqCst),
        1,
        "ingest's subscription refused"
    );

    // Device A: a forged publish under B's topic. mosquitto 2.0.11 answers with a
    // PUBACK and drops it; with persistence on it then also closes the connection
    // ("Bad socket read/write"). Either way nothing may reach ingest.
    let (dev, mut dev_ev) = connect(broker.port, "dev-a", "dev-0000", pw_a.trim())
        .await
        .expect("device A connects with its own password");
    dev.publish(
        "vigie/dev-0001/telemetry",
        QoS::AtLeastOnce,
        false,
        "forged",
    )
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), dev_ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no PUBACK for the forged publish; log:\n{}", broker.log()),
        }
    }
    drop(dev_ev);
    // Then one under its own topic, on a new connection.
    let (dev, mut dev_ev) = connect(broker.port, "dev-a", "dev-0000", pw_a.trim())
        .await
        .expect("device A connects again");
    dev.publish("vigie/dev-0000/telemetry", QoS::AtLeastOnce, false, "own")
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), dev_ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!(
                "device A, own topic: {other:?}; mosquitto log:\n{}",
                broker.log()
            ),
        }
    }
    wait_until("the device's own message", Duration::from_secs(10), || {
        let r = received.clone();
        async move { !r.lock().unwrap().is_empty() }
    })
    .await
    .unwrap();
    // Device B's own publish goes through too, after A's forged one: if the forged one
    // had been delivered, it would have arrived by now (same broker, same subscriber).
    let (dev_b, mut dev_b_ev) = connect(broker.port, "dev-b", "dev-0001", pw_b.trim())
        .await
        .expect("device B connects");
    dev_b
        .publish("vigie/dev-0001/telemetry", QoS::AtLeastOnce, false, "b-own")
        .await
        .unwrap();
    tokio::spawn(async move { while dev_b_ev.poll().await.is_ok() {} });
    wait_until("device B's own message", Duration::from_secs(10), || {
        let r = received.clone();
        async move { r.lock().unwrap().len() >= 2 }
    })
    .await
    .unwrap();
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            ("vigie/dev-0000/telemetry".to_string(), b"own".to_vec()),
            ("vigie/dev-0001/telemetry".to_string(), b"b-own".to_vec()),
        ],
        "the forged message must not reach ingest; mosquitto log:\n{}",
        broker.log()
    );
}

#[test]
fn the_ingest_benchmark_runs_and_stores_every_sample() {
    let Some(bin) = mosquitto_bin("vigie bench ingest") else {
        return;
    };
    let sub = bin.with_file_name("mosquitto_sub");
    let sub = if sub.exists() {
        sub
    } else {
        PathBuf::from("mosquitto_sub")
    };
    let out = Command::new(vigie_bin())
        .args(["bench", "ingest", "--messages", "3000", "--devices", "10"])
        .arg("--mosquitto")
        .arg(&bin)
        .arg("--mosquitto-sub")
        .arg(&sub)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vigie bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("bare mosquitto_sub -q 1"), "{stdout}");
    assert!(
        stdout.contains("samples stored: 12000 of 12000"),
        "{stdout}"
    );
}
