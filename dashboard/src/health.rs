//! `GET /healthz` and `GET /metrics`, both unauthenticated.
//!
//! Health is 200 only when the store answers a ping and the MQTT connection is up,
//! else 503 with the failing parts named. Metrics are the process's counters
//! (`Metrics::render`) plus a few gauges computed here from the registry and store.
//! Neither may reveal anything about members, buildings or users beyond counts.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vigie_core::registry::Scope;

use crate::AppState;

/// How long a store ping may take before health says the store is down.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

async fn ping_store(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PING_TIMEOUT.as_secs())),
    }
}

/// `GET /healthz`.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let store = ping_store(&state).await;
    let mqtt = state.metrics.mqtt_connected.load(Ordering::Relaxed);
    let mut failed = Vec::new();
    if store.is_err() {
        failed.push("store");
    }
    if !mqtt {
        failed.push("mqtt");
    }
    // The store answers reads but ingest's last commit failed (disk full, read-only):
    // messages wait unacknowledged at the broker until it is writable again.
    let writable = state.metrics.store_writable.load(Ordering::Relaxed);
    if !writable {
        failed.push("store_write");
    }
    let body = json!({
        "status": if failed.is_empty() { "ok" } else { "unavailable" },
        "failed": failed,
        "store": {
            "backend": state.store.name(),
            "ok": store.is_ok(),
            "error": store.err(),
        },
        "mqtt": { "connected": mqtt },
        "ingest": { "store_writable": writable },
    });
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = state.metrics.render();
    let store_up = ping_store(&state).await.is_ok();
    gauge(
        &mut out,
        "vigie_store_up",
        "1 when the time-series store answers a ping.",
        u8::from(store_up),
    );
    if store_up {
        match state.store.count().await {
            Ok(n) => gauge(&mut out, "vigie_store_samples", "Raw samples stored.", n),
            Err(e) => tracing::warn!(error = %e, "cannot count samples for /metrics"),
        }
    }
    match state.registry.buildings(&Scope::All).await {
        Ok(b) => gauge(
            &mut out,
            "vigie_registry_buildings",
            "Buildings in the registry.",
            b.len(),
        ),
        Err(e) => tracing::warn!(error = %e, "cannot count buildings for /metrics"),
    }
    match state.registry.devices(&Scope::All).await {
        Ok(d) => {
            gauge(
                &mut out,
                "vigie_registry_devices",
                "Devices installed in a building.",
                d.len(),
            );
            gauge(
                &mut out,
                "vigie_registry_devices_online",
                "Installed devices whose last status was online.",
                d.iter().filter(|d| d.online == Some(true)).count(),
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot count devices for /metrics"),
    }
    match state.registry.quarantine_counts().await {
        Ok(c) => gauge(
            &mut out,
            "vigie_quarantine_stored_occurrences",
            "Quarantined occurrences kept in the registry (all time).",
            c.iter().map(|(_, n)| n).sum::<u64>(),
        ),
        Err(e) => tracing::warn!(error = %e, "cannot count quarantine for /metrics"),
    }
    let mut res = out.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
