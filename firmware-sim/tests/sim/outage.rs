//! Firmware behaviour across a broker outage: the simulator reaches the broker (a
//! real rumqttd) through a TCP proxy the test controls; cutting every proxied
//! connection is the outage. Readings taken meanwhile are buffered and arrive after
//! recovery with their original timestamps, at least once (a message in flight when
//! the link broke may arrive twice: the test dedups by timestamp and bounds the
//! duplicates by the in-flight window).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use vigie_core::Timestamp;
use vigie_firmware_sim::{SimOptions, demo_fleet, run};

use crate::broker::{start_broker, subscribe};

/// A TCP proxy to the broker that can drop every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(broker_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (Arc::clone(&up), Arc::clone(&links));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client); // the broker is "unreachable"
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(("127.0.0.1", broker_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
                links2.lock().expect("lock").push(link);
            }
        });
        Proxy { port, up, links }
    }

    /// Cuts every connection and refuses new ones.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Seen {
    /// Reading timestamps (ms) per device, with repeats.
    readings: BTreeMap<String, Vec<i64>>,
    /// Telemetry messages that were arrays (backlogs), per device.
    backlogs: BTreeMap<String, usize>,
    statuses: BTreeMap<String, Vec<String>>,
    messages: u64,
}

impl Seen {
    fn add(&mut self, topic: &str, payload: &[u8]) {
        let parts: Vec<&str> = topic.split('/').collect();
        let device = parts[1].to_string();
        if parts[2] == "status" {
            let s = String::from_utf8_lossy(payload).into_owned();
            self.statuses.entry(device).or_default().push(s);
            return;
        }
        self.messages += 1;
        let v: Value = serde_json::from_slice(payload).expect("valid JSON");
        let items = match v {
            Value::Array(items) => {
                *self.backlogs.entry(device.clone()).or_default() += 1;
                items
            }
            obj => vec![obj],
        };
        for o in items {
            let ts = o["ts"].as_str().expect("ts");
            let ts = Timestamp::parse_rfc3339(ts).expect("RFC 3339").millis();
            self.readings.entry(device.clone()).or_default().push(ts);
        }
    }

    fn every_device_has(&self, devices: &[String], pred: impl Fn(&[i64]) -> bool) -> bool {
        devices
            .iter()
            .all(|d| self.readings.get(d).is_some_and(|r| pred(r)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_taken_during_an_outage_arrive_after_it_with_their_timestamps() {
    let broker = start_broker();
    let mut rx = subscribe(broker).await;
    let proxy = Proxy::start(broker).await;
    let interval = 200;
    let opts = SimOptions {
        broker_port: proxy.port,
        client_id_prefix: "test-outage".into(),
        buildings: 1,
        seed: 5,
        interval: Duration::from_millis(interval as u64),
        ..SimOptions::default()
    };
    let devices: Vec<String> = demo_fleet(1, 5)
        .devices
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(run(opts, async {
        let _ = stop_rx.await;
    }));
    let mut seen = Seen::default();
    let mut receive_until = async |seen: &mut Seen, done: &dyn Fn(&Seen) -> bool| {
        while !done(seen) {
            let (topic, payload) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("messages keep arriving")
                .expect("subscriber alive");
            seen.add(&topic, &payload);
        }
    };
    // Live readings flow.
    receive_until(&mut seen, &|s| {
        s.every_device_has(&devices, |r| r.len() >= 3)
    })
    .await;
    proxy.down();
    let down_at = Timestamp::now().millis();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let up_at = Timestamp::now().millis();
    proxy.up();
    // Readings stamped after the outage arrive from every device.
    receive_until(&mut seen, &|s| {
        s.every_device_has(&devices, |r| r.iter().any(|t| *t > up_at + 500))
    })
    .await;
    stop_tx.send(()).expect("simulator waiting");
    let report = tokio::time::timeout(Duration::from_secs(30), sim)
        .await
        .expect("simulator stops")
        .expect("task joined")
        .expect("clean stop");
    // Every acknowledged message reaches the subscriber (at least once).
    receive_until(&mut seen, &|s| s.messages >= report.messages).await;
    assert_eq!(report.lost, 0, "the broker kept each session: nothing lost");
    assert_eq!(report.dropped, 0, "{report:?}");

    for d in &devices {
        let all = &seen.readings[d];
        let unique: BTreeSet<i64> = all.iter().copied().collect();
        let (first, last) = (
            *unique.first().expect("readings"),
            *unique.last().expect("readings"),
        );
        // Every tick of the grid from the first to the last reading, none missing.
        let expected: BTreeSet<i64> = (first..=last).step_by(interval as usize).collect();
        let missing: Vec<_> = expected.difference(&unique).collect();
        assert!(missing.is_empty(), "{d}: readings missing at {missing:?}");
        assert_eq!(unique.len(), expected.len(), "{d}: readings off the grid");
        let during = unique
            .iter()
            .filter(|t| **t > down_at && **t < up_at)
            .count();
        assert!(during >= 5, "{d}: only {during} readings from the outage");
        assert!(
            seen.backlogs.get(d).copied().unwrap_or(0) >= 1,
            "{d}: the outage's readings came back as a backlog array"
        );
        let duplicates = all.len() - unique.len();
        assert!(
            duplicates <= 16,
            "{d}: {duplicates} duplicates, more than the window"
        );
        // Last will on the cut, `online` again after the reconnection.
        let statuses = seen.statuses.get(d).cloned().unwrap_or_default();
        let pos = |from: usize, s: &str| {
            statuses[from..]
                .iter()
                .position(|x| x == s)
                .map(|p| p + from)
        };
        let sequence = pos(0, "online")
            .and_then(|a| pos(a + 1, "offline"))
            .and_then(|b| pos(b + 1, "online"));
        assert!(sequence.is_some(), "{d}: statuses {statuses:?}");
    }
}
