//! `vigie run` on a remote time-series store: the whole path (MQTT publish → ingest →
//! VictoriaMetrics through the InfluxDB v2 write API → the dashboard's API reading back
//! in the Prometheus dialect) against a real VictoriaMetrics of the test's own, so that
//! no other test's series share its server. The registry side of each batch (quarantine,
//! last seen) stays in the local SQLite file.
//!
//! Runs when `VIGIE_TEST_VICTORIAMETRICS_URL` is set (`.ci/run` sets it once its own
//! VictoriaMetrics answers) and then needs `VIGIE_TEST_VICTORIAMETRICS_BIN`; in plain
//! `cargo test` it says it is skipped.

use std::time::Duration;

use crate::pipeline::{publish_all, wait_for};
use crate::server::{TestServer, building_of, device_of_kind};
use crate::victoria::VictoriaMetrics;

/// 2020-01-01 00:00 in Paris (UTC+1 in winter), in ms.
const JAN_1_2020_PARIS_MS: i64 = 1_577_833_200_000;
const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_victoriametrics_as_store_published_samples_come_back_once_with_their_consumption() {
    let Some(vm) = VictoriaMetrics::start("the remote-store run").await else {
        return;
    };
    let config = format!(
        "{}\n[tsdb]\nurl = \"{}\"\ndialect = \"prometheus\"\n",
        crate::server::LIGHT_CONFIG,
        vm.url
    );
    let mut server = TestServer::start(&config, &["--demo"]).await;
    let token = server.admin_token();
    let thermometer = device_of_kind(&server, &token, "outdoor_thermometer").await;
    let meter = device_of_kind(&server, &token, "electricity_meter").await;
    let building_id = building_of(&server, &token, &meter).await;

    // 3,000 temperatures a minute apart, and three days of an hourly electricity index
    // rising 1 kWh an hour, all in January 2020 (far from the simulator's live days).
    let temperatures: Vec<Vec<u8>> = (0..3_000i64)
        .map(|i| {
            format!(
                r#"{{"ts":{},"values":{{"outdoor_temperature_c":{}}}}}"#,
                JAN_1_2020_PARIS_MS + i * 60_000,
                (i % 20) as f64 / 2.0
            )
            .into_bytes()
        })
        .collect();
    let index: Vec<Vec<u8>> = (0..72i64)
        .map(|h| {
            format!(
                r#"{{"ts":{},"values":{{"electricity_kwh":{}}}}}"#,
                JAN_1_2020_PARIS_MS + h * HOUR_MS,
                1000 + h
            )
            .into_bytes()
        })
        .collect();
    let thermo_topic = format!("vigie/{thermometer}/telemetry");
    let meter_topic = format!("vigie/{meter}/telemetry");
    publish_all(&server, "e2e-remote-t", &thermo_topic, temperatures.clone()).await;
    publish_all(&server, "e2e-remote-m", &meter_topic, index.clone()).await;
    publish_all(
        &server,
        "e2e-remote-bad",
        &thermo_topic,
        vec![b"{not json".to_vec()],
    )
    .await;

    let samples_path = format!(
        "/api/v1/devices/{thermometer}/samples?quantity=outdoor_temperature_c&from=2019-12-31T00:00:00Z&to=2020-02-01T00:00:00Z"
    );
    wait_for(
        "3,000 temperatures read back from VictoriaMetrics",
        async || {
            server
                .get_json(&token, &samples_path)
                .await
                .as_array()
                .map(Vec::len)
                == Some(3_000)
        },
    )
    .await;
    let samples = server.get_json(&token, &samples_path).await;
    let samples = samples.as_array().expect("array");
    assert_eq!(samples[0]["ts"], "2019-12-31T23:00:00Z");
    assert_eq!(samples[3]["value"], 1.5);

    // Daily consumption, computed from what VictoriaMetrics holds: 23 steps on the
    // first day (no reading before it), 24 on the next two.
    let consumption_path = format!(
        "/api/v1/buildings/{building_id}/consumption?energy=electricity&from=2020-01-01&to=2020-01-03&step=day"
    );
    wait_for("three days of consumption", async || {
        let c = server.get_json(&token, &consumption_path).await;
        c.as_array().map(|a| {
            a.iter()
                .map(|p| p["value"].as_f64().unwrap_or(-1.0))
                .collect::<Vec<_>>()
        }) == Some(vec![23.0, 24.0, 24.0])
    })
    .await;

    // The bad payload went to the local quarantine, as with the embedded store.
    let quarantine = server.get_json(&token, "/api/v1/quarantine").await;
    assert!(quarantine.to_string().contains("malformed"), "{quarantine}");

    // The same messages again: acknowledged, nothing new in VictoriaMetrics.
    let acked = server.metric("vigie_ingest_messages_acked_total").await;
    publish_all(&server, "e2e-remote-t2", &thermo_topic, temperatures).await;
    publish_all(&server, "e2e-remote-m2", &meter_topic, index).await;
    wait_for("the republished messages acknowledged", async || {
        server.metric("vigie_ingest_messages_acked_total").await >= acked + 3_072.0
    })
    .await;
    // VictoriaMetrics deduplicates at query time: poll a while for a count above 3,000.
    for _ in 0..10 {
        let n = server
            .get_json(&token, &samples_path)
            .await
            .as_array()
            .map(Vec::len);
        assert_eq!(n, Some(3_000), "a republished sample came back twice");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // And VictoriaMetrics itself holds each temperature once (the API's reads merge by
    // instant, so they alone could not show a duplicate).
    let body = server
        .client
        .get(format!("{}/api/v1/query", vm.url))
        .query(&[
            (
                "query",
                format!(
                    "count_over_time(outdoor_temperature_c_value{{device=\"{thermometer}\"}}[50y])"
                ),
            ),
            ("time", "2020-02-01T00:00:00Z".to_string()),
            ("nocache", "1".to_string()),
        ])
        .send()
        .await
        .expect("query VictoriaMetrics")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("\"3000\""),
        "VictoriaMetrics does not count 3,000 temperatures: {body}"
    );

    // Nothing of it lives in the local file: a restart reads it all back from the server.
    let status = server.stop();
    assert!(status.success(), "vigie did not stop cleanly: {status:?}");
    assert_eq!(
        server.stored_samples().await,
        0,
        "samples were written to the embedded store although tsdb.url is set"
    );
    server.restart(&[]).await;
    let token = server.admin_token();
    let again = server.get_json(&token, &samples_path).await;
    assert_eq!(again.as_array().map(Vec::len), Some(3_000));
    let c = server.get_json(&token, &consumption_path).await;
    let values: Vec<f64> = c
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .collect();
    assert_eq!(values, vec![23.0, 24.0, 24.0]);
}
