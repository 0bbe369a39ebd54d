//! `vigie bench ingest`: vigie's durable ingest rate beside a bare `mosquitto_sub`,
//! in one run, through the same local mosquitto and the same recorded stream.
//!
//! Method: start a private mosquitto (no persistence, unlimited queues, 1,000
//! in-flight messages per client), create two persistent QoS 1 sessions (one for
//! `mosquitto_sub -q 1 -c`, one for vigie's ingest), publish the recorded stream once
//! while both are offline (the broker queues it for each), then let each drain its
//! queue and time it: `mosquitto_sub -C N` until it has received every message; vigie
//! (the same `vigie_ingest::run` as `vigie ingest`, embedded SQLite store in a
//! temporary data dir) until every message is committed *and* acknowledged. Both
//! figures therefore measure the consumer, not the publisher. This module must never
//! touch the user's data dir or broker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry};
use vigie_core::store::{SqliteStore, TimeSeriesStore};
use vigie_core::{BuildingId, DeviceId, MemberId, Timestamp};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Durable ingest rate vs a bare `mosquitto_sub -q 1`, same stream, same broker.
    Ingest(IngestBenchArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct IngestBenchArgs {
    /// Messages in the recorded stream.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Devices publishing it (round robin).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// The mosquitto binary.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: PathBuf,
    /// The mosquitto_sub binary.
    #[arg(long, default_value = "mosquitto_sub")]
    mosquitto_sub: PathBuf,
}

pub(crate) async fn run(config: Config, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest(config, args).await,
    }
}

const FILTER: &str = "vigie/+/telemetry";
/// Values (samples) per message of the recorded stream.
const VALUES: usize = 4;
const VIGIE_CLIENT: &str = "vigie-bench-ingest";
const BARE_CLIENT: &str = "vigie-bench-bare";

/// The recorded stream: `(topic, payload)` of native messages, ~140 bytes with topic.
pub(crate) fn recorded_stream(messages: usize, devices: usize) -> Vec<(String, Vec<u8>)> {
    let devices = devices.max(1);
    let start = Timestamp::now().0 - (messages as i64 / devices as i64 + 1) * 60_000;
    (0..messages)
        .map(|i| {
            let d = i % devices;
            let ts = Timestamp(start + (i / devices) as i64 * 60_000).to_rfc3339();
            let power = 500.0 + (i % 997) as f64 * 1.5;
            let temp = 19.0 + (i % 50) as f64 / 10.0;
            let co2 = 400 + i % 800;
            let rh = 35.0 + (i % 300) as f64 / 10.0;
            let payload = format!(
                r#"{{"ts":"{ts}","values":{{"power_w":{power:.1},"temperature_c":{temp:.1},"humidity_pct":{rh:.1},"co2_ppm":{co2}}}}}"#
            );
            (format!("vigie/bench-{d:04}/telemetry"), payload.into_bytes())
        })
        .collect()
}

async fn ingest(config: Config, args: IngestBenchArgs) -> Result<()> {
    let work = tempfile_dir()?;
    let port = free_port()?;
    let broker = Mosquitto::start(&args.mosquitto, &work.path, port)?;
    let stream = recorded_stream(args.messages, args.devices);
    let n = stream.len();
    let bytes: usize = stream.iter().map(|(t, p)| t.len() + p.len()).sum();
    let samples_expected = n * VALUES;

    // The data dir and its devices.
    let data = work.path.join("data");
    let db = Db::open_dir(&data)?;
    let registry = Registry::new(db.clone());
    register_devices(&registry, args.devices).await?;
    let store: Arc<dyn TimeSeriesStore> = Arc::new(SqliteStore::new(db));

    // Both sessions subscribe, then go offline.
    let sub = &args.mosquitto_sub;
    let port_s = port.to_string();
    let bare_args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port_s,
        "-q",
        "1",
        "-c",
        "-i",
        BARE_CLIENT,
        "-t",
        FILTER,
    ];
    let st = Command::new(sub)
        .args(bare_args)
        .arg("-E")
        .status()
        .with_context(|| format!("cannot run {}", sub.display()))?;
    if !st.success() {
        bail!("{} -E failed: {st}", sub.display());
    }
    subscribe_offline(port, VIGIE_CLIENT).await?;

    eprintln!(
        "publishing {n} messages ({} bytes on average, topic included) at QoS 1…",
        bytes / n
    );
    publish_all(port, "vigie-bench-publisher", &stream).await?;

    // Bare subscriber drains its queue.
    let t0 = Instant::now();
    let st = Command::new(sub)
        .args(bare_args)
        .args(["-C", &n.to_string()])
        .stdout(Stdio::null())
        .status()?;
    let bare = t0.elapsed();
    if !st.success() {
        bail!("mosquitto_sub -C {n} failed: {st}");
    }

    // vigie drains its queue: committed and acknowledged.
    let metrics = Arc::new(Metrics::new());
    let mut opts = vigie_ingest::IngestOptions::from_config(
        &config.mqtt,
        &config.ingest,
        "127.0.0.1".into(),
        port,
    );
    opts.client_id = VIGIE_CLIENT.into();
    opts.credentials = None;
    opts.topics = vec![FILTER.into()];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let t0 = Instant::now();
    let task = tokio::spawn(vigie_ingest::run(
        opts,
        registry,
        store.clone(),
        metrics.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let deadline = t0 + Duration::from_secs(600);
    while metrics.messages_acked.load(Ordering::Relaxed) < n as u64 {
        if Instant::now() > deadline || task.is_finished() {
            bail!(
                "vigie acknowledged only {} of {n} messages",
                metrics.messages_acked.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let vigie = t0.elapsed();
    let _ = stop_tx.send(());
    task.await??;
    drop(broker);
    let written = metrics.samples_written.load(Ordering::Relaxed);
    let stored = store.count().await?;
    let batches = metrics.batches_committed.load(Ordering::Relaxed).max(1);
    let commit_s = metrics.batch_commit_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "vigie bench ingest: {n} messages from {} devices, {} bytes on average (topic + payload), {VALUES} samples each",
        args.devices,
        bytes / n
    );
    println!(
        "  bare mosquitto_sub -q 1 : {:>9.0} messages/s ({:.2} s)",
        rate(bare),
        bare.as_secs_f64()
    );
    println!(
        "  vigie durable + acked   : {:>9.0} messages/s, {:.0} samples/s ({:.2} s) = {:.0} % of bare",
        rate(vigie),
        written as f64 / vigie.as_secs_f64(),
        vigie.as_secs_f64(),
        100.0 * bare.as_secs_f64() / vigie.as_secs_f64()
    );
    println!(
        "  {batches} batches, {:.0} messages per batch, {:.2} ms mean commit; samples stored: {stored} of {samples_expected}",
        n as f64 / batches as f64,
        1000.0 * commit_s / batches as f64
    );
    if stored != samples_expected as u64 {
        bail!("stored {stored} samples, expected {samples_expected}");
    }
    Ok(())
}

async fn register_devices(registry: &Registry, devices: usize) -> Result<()> {
    let member = MemberId::new("bench")?;
    registry
        .upsert_member(&Member {
            id: member.clone(),
            name: "Bench".into(),
            kind: "commune".into(),
        })
        .await?;
    let building = BuildingId::new("bench-building")?;
    registry
        .upsert_building(&Building {
            id: building.clone(),
            member_id: member,
            name: "Bench".into(),
            address: String::new(),
            floor_area_m2: None,
            usage: String::new(),
            gas_pcs_kwh_per_m3: 11.2,
        })
        .await?;
    for d in 0..devices.max(1) {
        let id = DeviceId::new(format!("bench-{d:04}"))?;
        registry
            .upsert_device(&Device::new(
                id,
                Some(building.clone()),
                DeviceKind::AirQuality,
            ))
            .await?;
    }
    Ok(())
}

/// Opens a persistent session subscribed to [`FILTER`], then disconnects.
async fn subscribe_offline(port: u16, client_id: &str) -> Result<()> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_clean_session(false);
    let (client, mut ev) = AsyncClient::new(o, 10);
    client.subscribe(FILTER, QoS::AtLeastOnce).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline.into(), ev.poll())
            .await
            .context("no SUBACK within 10 s")??;
        if let Event::Incoming(Packet::SubAck(_)) = e {
            break;
        }
    }
    client.disconnect().await?;
    while !matches!(
        ev.poll().await,
        Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
    ) {}
    Ok(())
}

/// Publishes every message at QoS 1 and returns once each got its PUBACK.
pub(crate) async fn publish_all(
    port: u16,
    client_id: &str,
    stream: &[(String, Vec<u8>)],
) -> Result<()> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_inflight(1000).set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 2000);
    let owned: Vec<(String, Vec<u8>)> = stream.to_vec();
    let total = owned.len();
    let sender = tokio::spawn(async move {
        for (t, p) in owned {
            client.publish(t, QoS::AtLeastOnce, false, p).await?;
        }
        Ok::<_, rumqttc::ClientError>(client)
    });
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(30), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("publisher: {e} after {acked} PUBACKs"),
            Err(_) => bail!("publisher: no event for 30 s after {acked} PUBACKs"),
        }
    }
    let client = sender.await??;
    let _ = client.disconnect().await;
    Ok(())
}

struct WorkDir {
    path: PathBuf,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempfile_dir() -> Result<WorkDir> {
    let path = std::env::temp_dir().join(format!(
        "vigie-bench-{}-{}",
        std::process::id(),
        Timestamp::now().0
    ));
    std::fs::create_dir_all(&path)?;
    Ok(WorkDir { path })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A private mosquitto, killed on drop.
struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    fn start(bin: &Path, dir: &Path, port: u16) -> Result<Mosquitto> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n"
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (install mosquitto)", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Mosquitto { child })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
