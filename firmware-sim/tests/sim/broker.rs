//! The simulator against a real embedded broker (rumqttd) and a real subscriber.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use chrono::NaiveDate;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use serde_json::Value;
use tokio::sync::mpsc;
use vigie_core::time::local_date;
use vigie_core::{Quantity, Timestamp};
use vigie_firmware_sim::model::published_quantities;
use vigie_firmware_sim::{SimError, SimOptions, demo_fleet, run};

/// Starts rumqttd on a free loopback port and waits until it accepts connections.
pub(crate) fn start_broker() -> u16 {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = ServerSettings {
        name: "v4-test".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::spawn(move || {
        let mut broker = Broker::new(config);
        let _ = broker.start();
    });
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return port;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("rumqttd did not start on {addr}");
}

/// A subscriber to every native topic; forwards (topic, payload) once subscribed.
pub(crate) async fn subscribe(port: u16) -> mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    subscribe_to(port, &["vigie/+/telemetry", "vigie/+/status"]).await
}

/// A subscriber to `filters`; forwards (topic, payload) once subscribed.
pub(crate) async fn subscribe_to(
    port: u16,
    filters: &[&str],
) -> mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut options = MqttOptions::new("test-subscriber", "127.0.0.1", port);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut event_loop) = AsyncClient::new(options, 10);
    for f in filters {
        client
            .subscribe(*f, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
    }
    let wanted = filters.len();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _client = client;
        let mut subacks = 0;
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == wanted {
                        let _ = ready_tx.send(()).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
        .await
        .expect("subscribed in time");
    rx
}

fn options(port: u16) -> SimOptions {
    SimOptions {
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        client_id_prefix: "test-sim".into(),
        buildings: 1,
        seed: 5,
        backfill_days: 2,
        interval: Duration::from_secs(1),
        rate: None,
        duration: Some(Duration::from_millis(1500)),
        progress: false,
        ..SimOptions::default()
    }
}

/// Checks one native telemetry object and returns its timestamp and quantities.
fn check_object(v: &Value) -> (Timestamp, BTreeSet<Quantity>) {
    let ts = v["ts"].as_str().expect("ts is a string");
    let ts = Timestamp::parse_rfc3339(ts).expect("ts is RFC 3339");
    let values = v["values"].as_object().expect("values is an object");
    let quantities = values
        .iter()
        .map(|(k, v)| {
            assert!(v.is_number(), "{k} = {v} is not a number");
            k.parse::<Quantity>().expect("known quantity")
        })
        .collect();
    (ts, quantities)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_live_readings_reach_a_subscriber_in_the_native_shape() {
    let port = start_broker();
    let mut rx = subscribe(port).await;
    let before = local_date(Timestamp::now());
    let report = run(options(port), std::future::pending())
        .await
        .expect("simulation runs");
    let after = local_date(Timestamp::now());
    let fleet = demo_fleet(1, 5);
    assert_eq!(report.devices, fleet.devices.len());
    assert!(
        report.messages >= 2 * fleet.devices.len() as u64,
        "{report:?}"
    );
    assert_eq!(report.lost, 0);

    // Every acknowledged message reaches the subscriber.
    let mut telemetry: HashMap<String, Vec<Value>> = HashMap::new();
    let mut status: HashMap<String, Vec<String>> = HashMap::new();
    let mut received = 0;
    while received < report.messages {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("all messages delivered")
            .expect("subscriber alive");
        let parts: Vec<_> = topic.split('/').collect();
        let device = parts[1].to_string();
        match parts[2] {
            "telemetry" => {
                received += 1;
                let v: Value = serde_json::from_slice(&payload).expect("valid JSON");
                match v {
                    Value::Array(items) => telemetry.entry(device).or_default().extend(items),
                    obj => telemetry.entry(device).or_default().push(obj),
                }
            }
            _ => status
                .entry(device)
                .or_default()
                .push(String::from_utf8_lossy(&payload).into_owned()),
        }
    }

    let mut samples = 0;
    for d in &fleet.devices {
        let objects = telemetry
            .get(d.id.as_str())
            .unwrap_or_else(|| panic!("nothing from {}", d.id));
        let mut dates = BTreeSet::new();
        for o in objects {
            let (ts, quantities) = check_object(o);
            let expected: BTreeSet<_> = published_quantities(d.kind).iter().copied().collect();
            assert_eq!(quantities, expected, "{} at {ts}", d.id);
            samples += quantities.len() as u64;
            dates.insert(local_date(ts));
        }
        let covers = |today: NaiveDate| {
            today
                .pred_opt()
                .is_some_and(|y| dates.contains(&y) && dates.contains(&today))
        };
        assert!(covers(before) || covers(after), "{}: dates {dates:?}", d.id);
        assert_eq!(
            status
                .get(d.id.as_str())
                .and_then(|s| s.first())
                .map(String::as_str),
            Some("online"),
            "{}",
            d.id
        );
    }
    assert_eq!(samples, report.samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_live_phase_and_devices_say_offline() {
    let port = start_broker();
    let mut rx = subscribe(port).await;
    let opts = SimOptions {
        backfill_days: 0,
        duration: None,
        client_id_prefix: "test-stop".into(),
        ..options(port)
    };
    let devices = demo_fleet(1, 5).devices.len();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(run(opts, async {
        let _ = stop_rx.await;
    }));
    // Stop once a live reading came from every device.
    let mut seen = BTreeSet::new();
    while seen.len() < devices {
        let (topic, _) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("live readings arrive")
            .expect("subscriber alive");
        if topic.ends_with("/telemetry") {
            seen.insert(topic);
        }
    }
    stop_tx.send(()).expect("simulator waiting");
    let report = tokio::time::timeout(Duration::from_secs(30), sim)
        .await
        .expect("simulator stops")
        .expect("task joined")
        .expect("clean stop");
    assert!(report.messages >= devices as u64, "{report:?}");
    let mut offline = BTreeSet::new();
    while offline.len() < devices {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("offline statuses arrive")
            .expect("subscriber alive");
        if topic.ends_with("/status") && payload == b"offline" {
            offline.insert(topic);
        }
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let err = run(options(port), std::future::pending())
        .await
        .expect_err("no broker listens there");
    assert!(matches!(err, SimError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
