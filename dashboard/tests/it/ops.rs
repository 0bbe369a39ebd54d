//! `/healthz`, `/metrics` and graceful shutdown.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::Value;

use crate::TestApp;

#[tokio::test]
async fn health_is_503_naming_mqtt_while_disconnected_and_200_once_connected() {
    let app = TestApp::start().await;
    app.metrics.mqtt_connected.store(false, Ordering::Relaxed);
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["failed"], serde_json::json!(["mqtt"]));
    assert_eq!(body["store"]["ok"], true);

    app.metrics.mqtt_connected.store(true, Ordering::Relaxed);
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"]["backend"], "sqlite");
}

#[tokio::test]
async fn metrics_are_public_prometheus_text_with_ingest_counters_and_registry_gauges() {
    let app = TestApp::start().await;
    app.metrics
        .messages_received
        .fetch_add(7, Ordering::Relaxed);
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.expect("body");
    assert!(
        text.contains("vigie_ingest_messages_received_total 7"),
        "{text}"
    );
    assert!(text.contains("vigie_registry_buildings 3"), "{text}");
    assert!(text.contains("vigie_registry_devices 4"), "{text}");
    assert!(text.contains("vigie_store_up 1"), "{text}");
}

#[tokio::test]
async fn serve_returns_once_shutdown_is_signalled() {
    let app = TestApp::start().await;
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let base = app.base.clone();
    app.stop().await.expect("clean shutdown");
    let after = reqwest::get(format!("{base}/healthz")).await;
    assert!(after.is_err(), "still serving after shutdown");
}
