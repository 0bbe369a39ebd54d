//! End to end through ingest: publish at QoS 1, read back from the store.

use std::time::Duration;

use vigie_core::registry::QuarantineReason;
use vigie_core::{DeviceId, Quantity, Timestamp};

use crate::harness::{Harness, telemetry, wait_for};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_published_at_qos1_are_stored_and_visible_as_latest() {
    let mut h = Harness::start().await;
    h.publish(&[
        telemetry(
            "elec-01",
            r#"{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":12345.6,"power_w":830}}"#,
        ),
        telemetry(
            "elec-01",
            r#"[{"ts":"2026-11-29T10:20:00Z","values":{"electricity_kwh":12346.0}},
                {"ts":1795947900000,"values":{"electricity_kwh":12346.4}}]"#,
        ),
        telemetry("aq-01", r#"{"values":{"co2_ppm":812}}"#),
    ])
    .await;
    wait_for("5 samples stored", || async { h.count().await == 5 }).await;

    let elec = h.latest("elec-01", Quantity::ElectricityKwh).await.unwrap();
    assert_eq!((elec.ts, elec.value), (ts("2026-11-29T10:25:00Z"), 12346.4));
    let power = h.latest("elec-01", Quantity::PowerW).await.unwrap();
    assert_eq!(power.value, 830.0);
    let co2 = h.latest("aq-01", Quantity::Co2Ppm).await.unwrap();
    assert_eq!(co2.value, 812.0);

    wait_for("all 3 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 3
    })
    .await;
    assert_eq!(h.metric(|m| &m.samples_written), 5);
    let device = h
        .registry
        .device_for_ingest_blocking(&DeviceId::new("aq-01").unwrap())
        .unwrap()
        .unwrap();
    assert!(device.last_seen.is_some(), "last_seen recorded");
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_quarantined_with_its_reason_and_good_samples_around_it_are_stored() {
    let mut h = Harness::start().await;
    h.publish(&[
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":500}}"#,
        ),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:01:00Z","values":{"co2_ppm":"#,
        ),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:02:00Z","values":{"co2":1,"temperature_c":21.5}}"#,
        ),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:03:00Z","values":{"humidity_pct":"wet"}}"#,
        ),
        telemetry(
            "ghost-99",
            r#"{"ts":"2026-11-29T10:04:00Z","values":{"co2_ppm":650}}"#,
        ),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:05:00Z","values":{"co2_ppm":700}}"#,
        ),
    ])
    .await;
    wait_for("6 messages committed and acked", || async {
        h.metric(|m| &m.messages_acked) == 6
    })
    .await;

    let q = h.registry.quarantined(100).await.unwrap();
    let reason_of = |needle: &str| {
        q.iter()
            .find(|e| e.payload.contains(needle) || e.topic.contains(needle))
            .map(|e| e.reason)
    };
    assert_eq!(reason_of("10:01:00"), Some(QuarantineReason::Malformed));
    assert_eq!(
        reason_of("\"co2\":1"),
        Some(QuarantineReason::UnknownQuantity)
    );
    assert_eq!(reason_of("wet"), Some(QuarantineReason::NonNumeric));
    assert_eq!(reason_of("ghost-99"), Some(QuarantineReason::UnknownDevice));
    assert_eq!(q.len(), 4, "{q:#?}");
    for reason in [
        QuarantineReason::Malformed,
        QuarantineReason::UnknownQuantity,
        QuarantineReason::NonNumeric,
        QuarantineReason::UnknownDevice,
    ] {
        assert_eq!(h.metrics.quarantined_count(reason), 1, "{reason:?}");
    }

    // The good samples around the bad ones, including the good value of a mixed message.
    assert_eq!(h.count().await, 3);
    let t = h.latest("aq-01", Quantity::TemperatureC).await.unwrap();
    assert_eq!((t.ts, t.value), (ts("2026-11-29T10:02:00Z"), 21.5));
    let co2 = h.latest("aq-01", Quantity::Co2Ppm).await.unwrap();
    assert_eq!((co2.ts, co2.value), (ts("2026-11-29T10:05:00Z"), 700.0));

    // Still running, still ingesting.
    assert!(h.is_running());
    h.publish(&[telemetry(
        "aq-01",
        r#"{"ts":"2026-11-29T10:06:00Z","values":{"co2_ppm":710}}"#,
    )])
    .await;
    wait_for("a later sample stored", || async { h.count().await == 4 }).await;
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_published_twice_is_stored_once() {
    let mut h = Harness::start().await;
    let msg = telemetry(
        "elec-01",
        r#"{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":42.5}}"#,
    );
    h.publish(std::slice::from_ref(&msg)).await;
    h.publish(&[msg]).await;
    wait_for("both copies acked", || async {
        h.metric(|m| &m.messages_acked) == 2
    })
    .await;
    assert_eq!(h.count().await, 1);
    assert_eq!(h.metric(|m| &m.samples_written), 1);
    assert_eq!(h.metric(|m| &m.samples_duplicate), 1);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_and_acks_the_pending_batch() {
    // A batch that would wait a minute before committing on its own.
    let mut h = Harness::start_with(|o| {
        o.batch_linger = Duration::from_secs(60);
        o.batch_idle = Duration::from_secs(60);
        o.batch_max_messages = 1000;
    })
    .await;
    let msgs: Vec<_> = (0..20)
        .map(|i| {
            telemetry(
                "aq-01",
                &format!(
                    r#"{{"ts":{},"values":{{"co2_ppm":{}}}}}"#,
                    1_764_410_000_000i64 + i * 60_000,
                    400 + i
                ),
            )
        })
        .collect();
    h.publish(&msgs).await;
    wait_for("20 messages received by ingest", || async {
        h.metric(|m| &m.messages_received) == 20
    })
    .await;
    assert_eq!(h.count().await, 0, "nothing committed before shutdown");

    h.stop().await.expect("clean stop");
    assert_eq!(h.count().await, 20);
    assert_eq!(h.metric(|m| &m.messages_acked), 20);
    assert_eq!(h.metric(|m| &m.consumer_lag), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_message_sets_the_device_online_or_offline() {
    let mut h = Harness::start().await;
    h.publish(&[("vigie/aq-01/status".to_string(), b"offline".to_vec())])
        .await;
    let id = DeviceId::new("aq-01").unwrap();
    wait_for("status recorded", || async {
        h.registry
            .device_for_ingest_blocking(&id)
            .unwrap()
            .unwrap()
            .online
            == Some(false)
    })
    .await;
    h.publish(&[("vigie/aq-01/status".to_string(), b"online".to_vec())])
        .await;
    wait_for("status back online", || async {
        h.registry
            .device_for_ingest_blocking(&id)
            .unwrap()
            .unwrap()
            .online
            == Some(true)
    })
    .await;
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_qos1_samples_are_stored_exactly_once_even_when_published_twice() {
    let mut h = Harness::start().await;
    let msgs: Vec<_> = (0..10_000i64)
        .map(|i| {
            telemetry(
                "elec-01",
                &format!(
                    r#"{{"ts":{},"values":{{"electricity_kwh":{}}}}}"#,
                    1_760_000_000_000i64 + i * 1000,
                    1000.0 + i as f64 * 0.01
                ),
            )
        })
        .collect();
    h.publish(&msgs).await;
    wait_for("10,000 samples stored", || async {
        h.count().await >= 10_000
    })
    .await;
    wait_for("10,000 acked", || async {
        h.metric(|m| &m.messages_acked) == 10_000
    })
    .await;
    assert_eq!(h.count().await, 10_000);

    h.publish(&msgs).await;
    wait_for("20,000 acked", || async {
        h.metric(|m| &m.messages_acked) == 20_000
    })
    .await;
    assert_eq!(h.count().await, 10_000);
    assert_eq!(h.metric(|m| &m.samples_duplicate), 10_000);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acked_while_the_store_cannot_commit_and_ingest_catches_up_by_itself() {
    let mut h = Harness::start_with(|o| o.retry_max = Duration::from_millis(500)).await;
    // Another process holds the write lock: every write waits, then fails (busy).
    let locker = rusqlite::Connection::open(h.db_path()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();

    h.publish(&[telemetry(
        "aq-01",
        r#"{"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":555}}"#,
    )])
    .await;
    wait_for("the failed commit is visible", || async {
        !h.metrics
            .store_writable
            .load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    assert!(h.metric(|m| &m.batch_commit_failures) >= 1);
    assert_eq!(h.metric(|m| &m.messages_acked), 0, "acked before commit");
    assert_eq!(h.metric(|m| &m.consumer_lag), 1);
    assert_eq!(h.count().await, 0);

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    wait_for("committed and acked after the store came back", || async {
        h.metric(|m| &m.messages_acked) == 1
    })
    .await;
    assert_eq!(h.count().await, 1);
    assert!(
        h.metrics
            .store_writable
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(h.metric(|m| &m.consumer_lag), 0);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reconnects_after_losing_its_connection_and_keeps_ingesting() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    use std::sync::atomic::Ordering;

    // A long backoff, so that the disconnected state is observable.
    let mut h = Harness::start_with(|o| {
        o.retry_min = Duration::from_secs(2);
        o.retry_max = Duration::from_secs(2);
    })
    .await;
    h.publish(&[telemetry(
        "aq-01",
        r#"{"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":501}}"#,
    )])
    .await;
    wait_for("first sample stored", || async { h.count().await == 1 }).await;

    // A client with ingest's id: the broker drops ingest's connection for it.
    let mut o = MqttOptions::new(h.client_id.clone(), "127.0.0.1", h.broker.addr().port());
    o.set_clean_session(false);
    let (intruder, mut eventloop) = AsyncClient::new(o, 10);
    loop {
        let ev = tokio::time::timeout(crate::harness::DEADLINE, eventloop.poll())
            .await
            .expect("intruder connects in time")
            .expect("intruder connection");
        if let Event::Incoming(Packet::ConnAck(_)) = ev {
            break;
        }
    }
    wait_for("ingest notices it was disconnected", || async {
        !h.metrics.mqtt_connected.load(Ordering::Relaxed)
    })
    .await;
    drop((intruder, eventloop));

    h.publish(&[telemetry(
        "aq-01",
        r#"{"ts":"2026-11-29T10:01:00Z","values":{"co2_ppm":502}}"#,
    )])
    .await;
    wait_for("ingest is back and stored the later sample", || async {
        h.count().await == 2
    })
    .await;
    // The intruder's own disconnection can briefly race ingest's takeover: wait, don't sample.
    wait_for("ingest reports connected", || async {
        h.metrics.mqtt_connected.load(Ordering::Relaxed)
    })
    .await;
    assert!(h.is_running());
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_quarantined_truncated_and_ingest_goes_on() {
    let mut h = Harness::start_with(|o| o.max_payload_bytes = 10_000).await;
    let big = format!(
        r#"{{"values":{{"co2_ppm":500}},"pad":"{}"}}"#,
        "x".repeat(50_000)
    );
    h.publish(&[
        telemetry("aq-01", &big),
        telemetry("ghost-1", &big),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":600}}"#,
        ),
    ])
    .await;
    wait_for("3 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 3
    })
    .await;
    let q = h.registry.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 2, "{q:#?}");
    assert!(
        q.iter().all(|e| e.payload.len() <= 4096),
        "payload kept whole"
    );
    assert!(q.iter().any(|e| e.reason == QuarantineReason::TooLarge));
    assert_eq!(h.count().await, 1);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdoor_thermometers_temperature_is_stored_as_outdoor_temperature() {
    use vigie_core::registry::{Device, DeviceKind};
    let mut h = Harness::start().await;
    let aq = h
        .registry
        .device_for_ingest_blocking(&DeviceId::new("aq-01").unwrap())
        .unwrap()
        .unwrap();
    let outdoor = DeviceId::new("outdoor-01").unwrap();
    h.registry
        .upsert_device(&Device::new(
            outdoor.clone(),
            aq.building_id.clone(),
            DeviceKind::OutdoorThermometer,
        ))
        .await
        .unwrap();
    h.publish(&[
        telemetry(
            "outdoor-01",
            r#"{"ts":"2026-11-29T10:15:00Z","values":{"temperature_c":4.5}}"#,
        ),
        telemetry(
            "aq-01",
            r#"{"ts":"2026-11-29T10:15:00Z","values":{"temperature_c":20.5}}"#,
        ),
    ])
    .await;
    wait_for("2 samples stored", || async { h.count().await == 2 }).await;
    let out = h.latest("outdoor-01", Quantity::OutdoorTemperatureC).await;
    assert_eq!(out.map(|p| p.value), Some(4.5));
    assert!(
        h.latest("outdoor-01", Quantity::TemperatureC)
            .await
            .is_none()
    );
    let indoor = h.latest("aq-01", Quantity::TemperatureC).await;
    assert_eq!(indoor.map(|p| p.value), Some(20.5));
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_older_than_the_retention_cut_are_quarantined_and_the_rest_of_the_batch_is_stored()
{
    let mut h = Harness::start_with(|o| {
        // Both messages of the second publish in one batch.
        o.batch_idle = Duration::from_millis(500);
    })
    .await;
    // A first commit, so that ingest has read the store's retention cut (none yet).
    h.publish(&[telemetry(
        "aq-01",
        r#"{"ts":"2026-11-29T09:00:00Z","values":{"humidity_pct":40}}"#,
    )])
    .await;
    wait_for("the first message acked", || async {
        h.metric(|m| &m.messages_acked) == 1
    })
    .await;
    // Then retention runs: raw samples before 1 January 2026 (Paris) are gone. Ingest
    // still holds the old cut: the store refuses the batch and ingest commits again
    // with the new cut.
    let cut = ts("2025-12-31T23:00:00Z");
    let store = h.store.clone();
    tokio::task::spawn_blocking(move || store.retain_blocking(cut))
        .await
        .unwrap()
        .unwrap();
    h.publish(&[
        telemetry(
            "aq-01",
            r#"[{"ts":"2025-06-01T00:00:00Z","values":{"co2_ppm":500,"temperature_c":20.5}},
                {"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":600}}]"#,
        ),
        telemetry(
            "elec-01",
            r#"[{"ts":"2025-12-31T22:59:59Z","values":{"electricity_kwh":100.0}},
                {"ts":"2026-11-29T10:00:00Z","values":{"electricity_kwh":250.0}}]"#,
        ),
    ])
    .await;
    wait_for("both messages committed and acked", || async {
        h.metric(|m| &m.messages_acked) == 3
    })
    .await;

    // The recent readings are stored; the old ones are not, and not as duplicates.
    assert_eq!(h.count().await, 3);
    assert_eq!(h.metric(|m| &m.samples_written), 3);
    assert_eq!(h.metric(|m| &m.batch_commit_failures), 0);
    assert_eq!(h.metric(|m| &m.samples_duplicate), 0);
    let co2 = h.latest("aq-01", Quantity::Co2Ppm).await.unwrap();
    assert_eq!((co2.ts, co2.value), (ts("2026-11-29T10:00:00Z"), 600.0));
    assert!(h.latest("aq-01", Quantity::TemperatureC).await.is_none());
    let elec = h.latest("elec-01", Quantity::ElectricityKwh).await.unwrap();
    assert_eq!(elec.value, 250.0);

    // Each message is quarantined once for its old readings, with a clear reason.
    let q = h.registry.quarantined(100).await.unwrap();
    assert_eq!(q.len(), 2, "{q:#?}");
    assert!(
        q.iter()
            .all(|e| e.reason == QuarantineReason::OlderThanRetention)
    );
    let aq = q.iter().find(|e| e.topic.contains("aq-01")).unwrap();
    assert!(
        aq.detail.contains(
            "sample at 2025-06-01T00:00:00Z is older than the raw retention window \
             (raw samples before 2025-12-31T23:00:00Z were deleted, storage.raw_retention_days)"
        ),
        "{}",
        aq.detail
    );
    assert!(aq.payload.contains("20.5"), "the payload is kept");
    assert_eq!(
        h.metrics
            .quarantined_count(QuarantineReason::OlderThanRetention),
        3,
        "counted per refused value"
    );
    assert!(
        h.metrics
            .render()
            .contains("vigie_ingest_quarantined_total{reason=\"older_than_retention\"} 3")
    );
    h.stop().await.expect("clean stop");
}
