//! The whole publishing path in each ecosystem's format, against a real broker: every
//! acknowledged message arrives on the ecosystem's topics, parses, and history keeps
//! its timestamps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use vigie_firmware_sim::{SimFormat, SimOptions, demo_fleet, run};

use crate::broker::{start_broker, subscribe_to};

/// Runs one building with a day of history in `format`; returns the report and every
/// (topic, payload) received, once every acknowledged message arrived.
async fn publish(format: SimFormat) -> (vigie_firmware_sim::SimReport, Vec<(String, Vec<u8>)>) {
    let port = start_broker();
    let mut rx = subscribe_to(port, &["#"]).await;
    let opts = SimOptions {
        broker_port: port,
        client_id_prefix: format!("test-{format}"),
        buildings: 1,
        seed: 5,
        backfill_days: 1,
        interval: Duration::from_secs(1),
        duration: Some(Duration::from_millis(1500)),
        format,
        resets: true,
        ..SimOptions::default()
    };
    let report = run(opts, std::future::pending()).await.expect("runs");
    let mut got = Vec::new();
    let mut telemetry = 0;
    while telemetry < report.messages {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("every acknowledged message arrives")
            .expect("subscriber alive");
        let status = topic.ends_with("/status")
            || topic.ends_with("/availability")
            || topic.ends_with("/LWT");
        if !status {
            telemetry += 1;
        }
        got.push((topic, payload));
    }
    (report, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasmota_devices_publish_one_sensor_message_per_reading_with_local_time() {
    let (report, got) = publish(SimFormat::Tasmota).await;
    let fleet = demo_fleet(1, 5);
    let mut per_device: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (topic, payload) in &got {
        let parts: Vec<&str> = topic.split('/').collect();
        assert_eq!(parts[0], "tele", "{topic}");
        if parts[2] == "LWT" {
            continue;
        }
        assert_eq!(parts[2], "SENSOR");
        let v: Value = serde_json::from_slice(payload).expect("JSON");
        let time = v["Time"].as_str().expect("Time");
        assert_eq!(time.len(), 19, "no offset: {time}");
        let device = fleet
            .devices
            .iter()
            .find(|d| d.id.as_str() == parts[1])
            .expect("known device");
        per_device
            .entry(device.id.as_str())
            .or_default()
            .insert(time.to_string());
        let object = match device.kind {
            vigie_core::registry::DeviceKind::ElectricityMeter => "ENERGY",
            vigie_core::registry::DeviceKind::AirQuality => "SCD30",
            vigie_core::registry::DeviceKind::OutdoorThermometer => "DS18B20",
            _ => "COUNTER",
        };
        assert!(v[object].is_object(), "{object} missing in {v}");
    }
    assert_eq!(per_device.len(), fleet.devices.len());
    // History went out one reading per message: at least the quarter-hours of today.
    for (d, times) in &per_device {
        assert!(times.len() >= 2, "{d}: {times:?}");
    }
    assert_eq!(report.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zigbee2mqtt_live_readings_have_no_timestamp_and_history_goes_native() {
    let (_, got) = publish(SimFormat::Zigbee2Mqtt).await;
    let fleet = demo_fleet(1, 5);
    let (mut live, mut history) = (BTreeSet::new(), BTreeSet::new());
    for (topic, payload) in &got {
        let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        if let Some(name) = topic.strip_prefix("zigbee2mqtt/") {
            if let Some(device) = name.strip_suffix("/availability") {
                assert!(v["state"].is_string(), "{topic}: {v}");
                assert!(fleet.devices.iter().any(|d| d.id.as_str() == device));
                continue;
            }
            assert!(v.get("ts").is_none() && v.get("last_seen").is_none(), "{v}");
            assert!(v["linkquality"].is_i64(), "{v}");
            live.insert(name.to_string());
        } else if let Some(rest) = topic.strip_prefix("vigie/") {
            let device = rest.strip_suffix("/telemetry").expect("telemetry topic");
            let first = if v.is_array() { &v[0] } else { &v };
            assert!(first["ts"].is_string(), "history keeps timestamps: {v}");
            history.insert(device.to_string());
        } else {
            panic!("unexpected topic {topic}");
        }
    }
    assert_eq!(live.len(), fleet.devices.len(), "{live:?}");
    assert_eq!(history.len(), fleet.devices.len(), "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttn_and_telegraf_devices_publish_on_their_topics() {
    let (_, got) = publish(SimFormat::Ttn).await;
    let fleet = demo_fleet(1, 5);
    let devices: BTreeSet<&str> = got
        .iter()
        .map(|(topic, payload)| {
            let parts: Vec<&str> = topic.split('/').collect();
            assert_eq!(
                (parts[0], parts[2], parts[4]),
                ("v3", "devices", "up"),
                "{topic}"
            );
            assert!(parts[1].ends_with("@ttn"), "{topic}");
            let v: Value = serde_json::from_slice(payload).expect("JSON");
            assert_eq!(v["end_device_ids"]["device_id"], parts[3]);
            assert!(v["received_at"].is_string());
            assert!(v["uplink_message"]["decoded_payload"].is_object());
            parts[3]
        })
        .collect();
    assert_eq!(devices.len(), fleet.devices.len());

    let (_, got) = publish(SimFormat::Telegraf).await;
    let mut lines = 0;
    for (topic, payload) in &got {
        assert!(topic.starts_with("telegraf/"), "{topic}");
        let text = String::from_utf8(payload.clone()).expect("UTF-8");
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "{line}");
            assert!(parts[0].contains(",device="), "{line}");
            assert!(
                parts[2]
                    .parse::<i64>()
                    .is_ok_and(|ns| ns > 1_700_000_000_000_000_000)
            );
            lines += 1;
        }
    }
    assert!(
        lines > got.len(),
        "history is batched: {lines} lines in {} messages",
        got.len()
    );
}
