//! No loss under faults, with the real binary and a real mosquitto (persistence on):
//! `kill -9` of ingest mid-stream, mosquitto restarted mid-stream (under a rumqttc
//! stream and under the simulated fleet), a full data disk;
//! and what the embedded broker does (not) guarantee across a `kill -9`.
//!
//! Each stream is published at QoS 1 by a client that waits for every PUBACK; every
//! message carries samples no other message has, so "every sample stored" with the
//! exact count means every message was stored exactly once.

// Test helpers: a failed setup step should stop the test with its error.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::external::{
    Mosquitto, VALUES_PER_MESSAGE, Vigie, acknowledged_samples, env_for, mosquitto_bin, publish,
    register_devices, stored, stored_as_published, stream, wait_until,
};
use crate::server::vigie_bin;

const MESSAGES: usize = 100_000;
const DEVICES: usize = 50;

async fn wait_stored(data: &Path, at_least: u64, what: &str, log: &dyn Fn() -> String) {
    let data = data.to_path_buf();
    if let Err(e) = wait_until(what, Duration::from_secs(600), || {
        let data = data.clone();
        async move { stored(&data).await >= at_least }
    })
    .await
    {
        panic!(
            "{e}: {} of {at_least} stored; log:\n{}",
            stored(&data).await,
            log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ingest_mid_stream_loses_and_duplicates_nothing() {
    let Some(bin) = mosquitto_bin("kill -9 of ingest") else {
        return;
    };
    let broker = Mosquitto::start(&bin, "allow_anonymous true");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, DEVICES).await;
    let env = env_for(&data, &broker.url(), "vigie-ingest-kill");
    let mut ingest = Vigie::spawn(&["ingest"], &env, dir.path().join("ingest.log"));
    ingest.wait_log("subscribed to", 1).await;

    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish(
        broker.port,
        "pub-kill",
        stream(MESSAGES, DEVICES, 0),
        acked.clone(),
    ));
    let expected = MESSAGES as u64 * VALUES_PER_MESSAGE;
    wait_stored(&data, expected / 4, "a quarter stored", &|| {
        ingest.log_text()
    })
    .await;
    ingest.kill9();
    let at_kill = stored(&data).await;
    assert!(
        at_kill < expected,
        "killed after the end: nothing was tested"
    );
    ingest.restart();
    publisher.await.expect("publisher");
    wait_stored(&data, expected, "every sample", &|| ingest.log_text()).await;
    ingest.stop();
    assert_eq!(stored(&data).await, expected, "exactly once");
    assert_eq!(acked.load(Ordering::Relaxed), MESSAGES);
    eprintln!("kill -9 at {at_kill} of {expected} samples; all stored exactly once after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restarted_mid_stream_loses_and_duplicates_nothing() {
    let Some(bin) = mosquitto_bin("mosquitto restart") else {
        return;
    };
    let mut broker = Mosquitto::start(&bin, "allow_anonymous true");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, DEVICES).await;
    let env = env_for(&data, &broker.url(), "vigie-ingest-restart");
    let mut ingest = Vigie::spawn(&["ingest"], &env, dir.path().join("ingest.log"));
    ingest.wait_log("subscribed to", 1).await;

    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish(
        broker.port,
        "pub-restart",
        stream(MESSAGES, DEVICES, 0),
        acked.clone(),
    ));
    let expected = MESSAGES as u64 * VALUES_PER_MESSAGE;
    wait_stored(&data, expected / 4, "a quarter stored", &|| {
        ingest.log_text()
    })
    .await;
    broker.restart();
    let after_restart = stored(&data).await;
    assert!(
        after_restart < expected,
        "restarted after the end: nothing tested"
    );
    publisher.await.expect("publisher");
    wait_stored(&data, expected, "every sample", &|| ingest.log_text()).await;
    ingest.wait_log("session present: true", 1).await;
    ingest.stop();
    assert_eq!(stored(&data).await, expected, "exactly once");
    eprintln!(
        "mosquitto restarted at {after_restart} of {expected} samples; all stored exactly once"
    );
}

/// The simulator as the publisher, as real firmware would be: `vigie sim` publishes a
/// month of history for three buildings (throttled, so that the restart lands
/// mid-stream), mosquitto is restarted under it, the devices reconnect with backoff and
/// replay what they buffered; every sample the simulator reports acknowledged by the
/// broker is stored exactly once, and it reports none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_fleet_rides_out_a_mosquitto_restart_and_every_acked_sample_is_stored_once() {
    let Some(bin) = mosquitto_bin("simulated fleet across a mosquitto restart") else {
        return;
    };
    let mut broker = Mosquitto::start(&bin, "allow_anonymous true");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = env_for(&data, &broker.url(), "vigie-ingest-sim");
    // Ingest first (an empty data dir: `vigie ingest` starts no simulator of its own).
    let mut ingest = Vigie::spawn(&["ingest"], &env, dir.path().join("ingest.log"));
    ingest.wait_log("subscribed to", 1).await;

    let sim_env = env.clone();
    let sim = tokio::task::spawn_blocking(move || {
        std::process::Command::new(vigie_bin())
            .args([
                "sim",
                "--buildings",
                "3",
                "--backfill",
                "30",
                "--rate",
                "150",
            ])
            .args(["--duration", "0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(sim_env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run vigie sim")
    });
    // A quarter of the month (3 × 7 devices × 30 daily messages) before the restart.
    wait_stored(&data, 10_000, "part of the month stored", &|| {
        ingest.log_text()
    })
    .await;
    broker.restart();
    let at_restart = stored_as_published(&data).await;
    let out = sim.await.expect("sim task");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "vigie sim failed:\n{stderr}");
    let published = acknowledged_samples(&stderr);
    assert!(stderr.contains(", 0 lost"), "{stderr}");
    assert!(
        at_restart < published,
        "restarted after the end ({at_restart} of {published}): nothing tested"
    );
    let data2 = data.clone();
    if let Err(e) = wait_until(
        "every acknowledged sample",
        Duration::from_secs(300),
        || {
            let data = data2.clone();
            async move { stored_as_published(&data).await >= published }
        },
    )
    .await
    {
        panic!("{e}; sim:\n{stderr}\ningest log:\n{}", ingest.log_text());
    }
    ingest.stop();
    assert_eq!(
        stored_as_published(&data).await,
        published,
        "exactly once; sim:\n{stderr}"
    );
    eprintln!("simulated fleet: restart at {at_restart} of {published} samples; all stored once");
}

/// A tmpfs of `size` mounted on `path`, unmounted on drop. CI runs as root in a
/// container, where `chmod` does not stop writes but `mount -t tmpfs` is allowed.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "cannot mount a tmpfs on {} (the full-disk test needs root or CAP_SYS_ADMIN)",
            path.display()
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until it refuses to grow.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

async fn health(client: &reqwest::Client, http: &str) -> (u16, serde_json::Value) {
    match client.get(format!("http://{http}/healthz")).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_stops_acks_shows_in_healthz_and_ingest_catches_up() {
    let Some(bin) = mosquitto_bin("full data disk") else {
        return;
    };
    let broker = Mosquitto::start(&bin, "allow_anonymous true");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "24m");
    let data = mnt.join("data");
    register_devices(&data, DEVICES).await;
    let env = env_for(&data, &broker.url(), "vigie-ingest-full");
    let http = env
        .iter()
        .find(|(k, _)| *k == "VIGIE_HTTP_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let vigie = Vigie::spawn(&["run"], &env, dir.path().join("vigie.log"));
    vigie.wait_log("subscribed to", 1).await;
    let client = reqwest::Client::new();
    assert_eq!(health(&client, &http).await.0, 200, "{}", vigie.log_text());

    // Some data first, then the disk is full.
    let acked = Arc::new(AtomicUsize::new(0));
    let first = 2_000;
    publish(
        broker.port,
        "pub-full",
        stream(first, DEVICES, 0),
        acked.clone(),
    )
    .await;
    let mut expected = first as u64 * VALUES_PER_MESSAGE;
    wait_stored(&data, expected, "the first messages", &|| vigie.log_text()).await;
    fill(&mnt);

    // Publish until ingest cannot commit: the broker acknowledges (it keeps them).
    let chunk = 5_000;
    let mut sent = first;
    let mut unhealthy = serde_json::Value::Null;
    while sent < 200_000 {
        publish(
            broker.port,
            "pub-full",
            stream(chunk, DEVICES, sent),
            Arc::new(AtomicUsize::new(0)),
        )
        .await;
        sent += chunk;
        let full = wait_until("healthz 503", Duration::from_secs(5), || {
            let client = client.clone();
            let http = http.clone();
            async move { health(&client, &http).await.0 == 503 }
        })
        .await;
        if full.is_ok() {
            unhealthy = health(&client, &http).await.1;
            break;
        }
    }
    assert!(
        unhealthy != serde_json::Value::Null,
        "the disk never filled up; log:\n{}",
        vigie.log_text()
    );
    assert_eq!(unhealthy["ingest"]["store_writable"], false, "{unhealthy}");
    assert!(
        vigie.log_text().contains("Nothing is acknowledged"),
        "{}",
        vigie.log_text()
    );
    expected = sent as u64 * VALUES_PER_MESSAGE;
    let while_full = stored(&data).await;
    assert!(
        while_full < expected,
        "everything stored although the disk is full"
    );

    // Space again: ingest catches up by itself, health comes back.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    wait_stored(&data, expected, "catch-up", &|| vigie.log_text()).await;
    wait_until("healthz 200", Duration::from_secs(60), || {
        let client = client.clone();
        let http = http.clone();
        async move { health(&client, &http).await.0 == 200 }
    })
    .await
    .unwrap();
    assert!(
        vigie.log_text().contains("store writable again"),
        "{}",
        vigie.log_text()
    );
    assert_eq!(stored(&data).await, expected, "exactly once");
    eprintln!("disk full at {while_full} of {expected} samples; caught up");
}

/// Publishes `msgs` with a persistent session until done or the connection breaks;
/// returns the PUBACKs received and whether the broker had kept the session.
async fn publish_until_broken(
    mqtt: std::net::SocketAddr,
    msgs: Vec<(String, Vec<u8>)>,
    acked: Arc<AtomicUsize>,
) -> bool {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new("pub-embedded", mqtt.ip().to_string(), mqtt.port());
    o.set_clean_session(false).set_inflight(100);
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let total = msgs.len();
    tokio::spawn(async move {
        for (t, p) in msgs {
            if client.publish(t, QoS::AtLeastOnce, false, p).await.is_err() {
                break;
            }
        }
    });
    let mut session_present = None;
    while acked.load(Ordering::Relaxed) < total {
        match ev.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => session_present = Some(a.session_present),
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    session_present.expect("connected")
}

/// What the embedded broker guarantees across a `kill -9` of `vigie run`: every
/// committed sample survives and nothing is duplicated; but it keeps no session, no
/// queue and no in-flight message (no persistence), so messages it acknowledged to a
/// device and ingest had not committed are gone unless the device publishes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_keeps_nothing_across_a_kill_but_committed_samples_survive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, DEVICES).await;
    let mqtt = crate::server::free_addr();
    let mut env = env_for(&data, "", "vigie-ingest");
    env.push(("VIGIE_MQTT_LISTEN", mqtt.to_string()));
    let mut vigie = Vigie::spawn(&["run"], &env, dir.path().join("vigie.log"));
    vigie.wait_log("subscribed to", 1).await;

    let n = 30_000;
    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish_until_broken(
        mqtt,
        stream(n, DEVICES, 0),
        acked.clone(),
    ));
    wait_stored(&data, 5_000 * VALUES_PER_MESSAGE, "some samples", &|| {
        vigie.log_text()
    })
    .await;
    vigie.kill9();
    publisher.await.unwrap();
    let (acked_at_kill, at_kill) = (acked.load(Ordering::Relaxed) as u64, stored(&data).await);
    assert!(
        at_kill <= acked_at_kill * VALUES_PER_MESSAGE,
        "stored more than was acknowledged"
    );
    assert!(
        at_kill < n as u64 * VALUES_PER_MESSAGE,
        "ingest had stored everything before the kill: nothing tested"
    );

    vigie.restart();
    vigie.wait_log("subscribed to", 2).await;
    assert_eq!(
        stored(&data).await,
        at_kill,
        "committed samples survive the kill, nothing more"
    );
    let log = vigie.log_text();
    assert_eq!(log.matches("session present: false").count(), 2, "{log}");

    // The device's session is gone too: it must publish again what it wants stored.
    let again = Arc::new(AtomicUsize::new(0));
    let kept = publish_until_broken(mqtt, stream(n, DEVICES, 0), again.clone()).await;
    assert!(
        !kept,
        "the embedded broker claims it kept the device's session"
    );
    let expected = n as u64 * VALUES_PER_MESSAGE;
    wait_stored(&data, expected, "the republished stream", &|| {
        vigie.log_text()
    })
    .await;
    vigie.stop();
    assert_eq!(
        stored(&data).await,
        expected,
        "republishing duplicates nothing"
    );
    eprintln!(
        "embedded broker: {acked_at_kill} messages acknowledged to the device before the kill, \
         {} stored; {} acknowledged but lost until republished",
        at_kill / VALUES_PER_MESSAGE,
        acked_at_kill - at_kill / VALUES_PER_MESSAGE
    );
}
