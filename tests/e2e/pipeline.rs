//! The data path through the real binary: MQTT publish → embedded broker → ingest →
//! store → JSON API.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::server::{LIGHT_CONFIG, TestServer, device_of_kind};

/// Publishes every payload at QoS 1 and returns once the broker acknowledged all.
pub(crate) async fn publish_all(
    server: &TestServer,
    client_id: &str,
    topic: &str,
    payloads: Vec<Vec<u8>>,
) {
    let mut opts = MqttOptions::new(client_id, server.mqtt.ip().to_string(), server.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 200);
    let total = payloads.len();
    let topic = topic.to_string();
    let sender = tokio::spawn(async move {
        for p in payloads {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, p)
                .await
                .expect("queue publish");
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < total {
        assert!(
            Instant::now() < deadline,
            "only {acked}/{total} PUBACKs received"
        );
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT client error after {acked} acks: {e}"),
            Err(_) => panic!("no MQTT event for 10 s after {acked} acks"),
        }
    }
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await;
}

pub(crate) async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    // Generous: CI runs these tests in parallel on two cores. Never a speed assertion.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const BASE_MS: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_qos1_samples_are_stored_exactly_once_even_when_published_twice() {
    let server = TestServer::start(LIGHT_CONFIG, &["--demo"]).await;
    let token = server.admin_token();
    let device = device_of_kind(&server, &token, "outdoor_thermometer").await;
    let topic = format!("vigie/{device}/telemetry");
    let payloads: Vec<Vec<u8>> = (0..10_000i64)
        .map(|i| {
            format!(
                r#"{{"ts":{},"values":{{"outdoor_temperature_c":{}}}}}"#,
                BASE_MS + i * 60_000,
                (i % 50) as f64 / 2.0
            )
            .into_bytes()
        })
        .collect();
    let path = format!(
        "/api/v1/devices/{device}/samples?quantity=outdoor_temperature_c&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
    );

    let acked_before = server.metric("vigie_ingest_messages_acked_total").await;
    publish_all(&server, "e2e-pub-1", &topic, payloads.clone()).await;
    wait_for("10,000 samples stored", async || {
        server
            .get_json(&token, &path)
            .await
            .as_array()
            .map_or(0, Vec::len)
            >= 10_000
    })
    .await;
    let samples = server.get_json(&token, &path).await;
    let samples = samples.as_array().expect("array");
    assert_eq!(samples.len(), 10_000);
    let distinct: HashSet<&str> = samples.iter().filter_map(|s| s["ts"].as_str()).collect();
    assert_eq!(distinct.len(), 10_000, "a timestamp was returned twice");
    assert_eq!(samples[1]["value"], 0.5);

    // The same 10,000 again: all acknowledged, nothing new stored.
    publish_all(&server, "e2e-pub-2", &topic, payloads).await;
    wait_for(
        "the second 10,000 messages acknowledged by ingest",
        async || {
            server.metric("vigie_ingest_messages_acked_total").await >= acked_before + 20_000.0
        },
    )
    .await;
    let again = server.get_json(&token, &path).await;
    assert_eq!(again.as_array().map(Vec::len), Some(10_000));
    assert!(server.metric("vigie_ingest_samples_duplicate_total").await >= 10_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_co2_value_appears_in_latest_and_bad_messages_go_to_quarantine() {
    let server = TestServer::start(LIGHT_CONFIG, &["--demo"]).await;
    let token = server.admin_token();
    let device = device_of_kind(&server, &token, "air_quality").await;
    let topic = format!("vigie/{device}/telemetry");
    let bad: Vec<(String, &str)> = vec![
        (topic.clone(), "{not json"),
        (topic.clone(), r#"{"values":{"co2":500}}"#),
        (topic.clone(), r#"{"values":{"temperature_c":"warm"}}"#),
        (
            "vigie/no-such-device/telemetry".to_string(),
            r#"{"values":{"co2_ppm":600}}"#,
        ),
    ];
    for (i, (t, p)) in bad.iter().enumerate() {
        publish_all(
            &server,
            &format!("e2e-bad-{i}"),
            t,
            vec![p.as_bytes().to_vec()],
        )
        .await;
    }
    publish_all(
        &server,
        "e2e-good",
        &topic,
        vec![br#"{"values":{"co2_ppm":812}}"#.to_vec()],
    )
    .await;
    wait_for("co2_ppm 812 in latest", async || {
        server
            .get_json(&token, &format!("/api/v1/devices/{device}/latest"))
            .await["values"]["co2_ppm"]
            == 812.0
    })
    .await;
    let q = server.get_json(&token, "/api/v1/quarantine").await;
    let text = q.to_string();
    for reason in [
        "malformed",
        "unknown_quantity",
        "non_numeric",
        "unknown_device",
    ] {
        assert!(text.contains(reason), "no {reason} in quarantine: {text}");
    }
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(
        health.status().is_success(),
        "ingest should still be healthy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_value_reaches_the_api() {
    if std::process::Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("VIGIE_TEST_MOSQUITTO_URL").is_err(),
            "mosquitto_pub missing although CI installed mosquitto-clients"
        );
        eprintln!(
            "skipped: mosquitto_pub not installed (apt-get install mosquitto-clients; .ci/run does)"
        );
        return;
    }
    let server = TestServer::start(LIGHT_CONFIG, &["--demo"]).await;
    let token = server.admin_token();
    let device = device_of_kind(&server, &token, "air_quality").await;
    let status = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            &server.mqtt.ip().to_string(),
            "-p",
            &server.mqtt.port().to_string(),
            "-q",
            "1",
        ])
        .args([
            "-t",
            &format!("vigie/{device}/telemetry"),
            "-m",
            r#"{"values":{"co2_ppm":812}}"#,
        ])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    wait_for("co2_ppm 812 in latest", async || {
        server
            .get_json(&token, &format!("/api/v1/devices/{device}/latest"))
            .await["values"]["co2_ppm"]
            == 812.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_the_pending_batch_and_a_restart_keeps_every_sample() {
    let mut server = TestServer::start(LIGHT_CONFIG, &["--demo"]).await;
    let token = server.admin_token();
    let device = device_of_kind(&server, &token, "outdoor_thermometer").await;
    let payloads: Vec<Vec<u8>> = (0..3_000i64)
        .map(|i| {
            format!(
                r#"{{"ts":{},"values":{{"outdoor_temperature_c":1.5}}}}"#,
                BASE_MS + i * 60_000
            )
            .into_bytes()
        })
        .collect();
    publish_all(
        &server,
        "e2e-term",
        &format!("vigie/{device}/telemetry"),
        payloads,
    )
    .await;
    // Stop while ingest may still be working through what the broker holds, but only
    // once it has received something, so that there is a batch to commit.
    wait_for("ingest received a message", async || {
        server.metric("vigie_ingest_messages_received_total").await >= 1.0
    })
    .await;
    let status = server.stop();
    assert!(
        status.success(),
        "vigie did not stop cleanly: {status:?}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("stopped cleanly"), "{log}");
    // What ingest reported written at shutdown is exactly what the file holds.
    let written: u64 = log
        .lines()
        .rev()
        .find_map(|l| l.split("samples written: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|t| t.trim_end_matches(','))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no final ingest report in log:\n{log}"));
    let stored = server.stored_samples().await;
    assert_eq!(
        stored, written,
        "store holds {stored} samples, ingest reported {written}"
    );
    assert!(stored > 0);

    server.restart(&[]).await;
    let token = server.admin_token();
    let path = format!(
        "/api/v1/devices/{device}/samples?quantity=outdoor_temperature_c&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
    );
    let after = server.get_json(&token, &path).await;
    let n = after.as_array().map_or(0, Vec::len);
    assert!(n > 0 && n <= 3_000, "{n} samples after restart");
    assert!(
        server.stored_samples().await >= stored,
        "a restart lost samples"
    );
}

/// rumqttd logs every clean client disconnect at ERROR (`router-drop`, `no-connection
/// id N is already gone`), and a start-up probe without CONNECT as another: vigie keeps
/// those out of its log (`vigie_ingest::is_rumqttd_noise`, a `/proc` listen check,
/// ingest letting the broker close first). If rumqttd is upgraded and its lines move,
/// this fails instead of a newcomer's Ctrl-C printing a screen of red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_demo_run_logs_no_error_from_start_to_stop() {
    let mut server = TestServer::start(LIGHT_CONFIG, &["--demo"]).await;
    // Every simulated device connected and published once (3 buildings: 21 devices).
    wait_for("the simulated devices published", async || {
        server.metric("vigie_ingest_messages_received_total").await >= 21.0
    })
    .await;
    let status = server.stop();
    let log = server.log();
    assert!(
        status.success(),
        "vigie did not stop cleanly: {status:?}\n{log}"
    );
    assert!(log.contains("stopped cleanly"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a clean run logged {} error line(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
}
