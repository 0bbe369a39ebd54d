//! The pending-device flow end to end: an unknown device publishes over MQTT, appears
//! pending in the registry and through the dashboard's HTTP API, a technician assigns
//! it over HTTP, and ingest replays its quarantined samples into the store with their
//! original timestamps.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use vigie_core::registry::{QuarantineReason, Role};
use vigie_core::store::{TimeSeriesStore, bucket_query};
use vigie_core::{DeviceId, Quantity, Timestamp};
use vigie_dashboard::{AppState, serve};

use crate::harness::{Harness, telemetry, wait_for};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

/// The dashboard over the harness's registry and store, on a free port.
struct Dashboard {
    base: String,
    client: reqwest::Client,
    admin: String,
    manager: String,
    _stop: oneshot::Sender<()>,
}

impl Dashboard {
    async fn start(h: &Harness) -> Dashboard {
        let r = h.registry.clone();
        let (admin, manager) = tokio::task::spawn_blocking(move || {
            r.create_user_blocking("tech", Role::Technician, None, "a long password")
                .unwrap();
            r.create_user_blocking(
                "manon",
                Role::Manager,
                Some(&"commune-test".parse().unwrap()),
                "a long password",
            )
            .unwrap();
            (
                r.create_token_blocking("tech").unwrap(),
                r.create_token_blocking("manon").unwrap(),
            )
        })
        .await
        .unwrap();
        let state = AppState::new(
            h.registry.clone(),
            h.store.clone() as Arc<dyn TimeSeriesStore>,
            h.metrics.clone(),
            Duration::from_secs(3600),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        Dashboard {
            base,
            client: reqwest::Client::new(),
            admin,
            manager,
            _stop: tx,
        }
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_appears_pending_is_assigned_and_its_earlier_samples_are_replayed() {
    let mut h = Harness::start().await;
    let web = Dashboard::start(&h).await;
    let device = DeviceId::new("elec-new").unwrap();

    // 1. An unknown meter publishes: one reading with `ts`, one without (stamped at
    //    reception), one buffered backlog, and one value that is wrong on its own.
    h.publish(&[
        telemetry(
            "elec-new",
            r#"{"ts":"2026-10-20T08:00:00Z","values":{"electricity_kwh":500.0}}"#,
        ),
        telemetry(
            "elec-new",
            r#"[{"ts":"2026-10-20T09:00:00Z","values":{"electricity_kwh":504.0}},
                {"ts":"2026-10-20T10:00:00Z","values":{"electricity_kwh":509.5,"co2":1}}]"#,
        ),
        telemetry("elec-new", r#"{"values":{"power_w":420}}"#),
    ])
    .await;
    wait_for("3 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 3
    })
    .await;
    assert_eq!(h.count().await, 0, "nothing stored for an unknown device");
    let quarantined = h.registry.quarantined(10).await.unwrap();
    assert_eq!(quarantined.len(), 3);
    assert!(
        quarantined
            .iter()
            .all(|q| q.reason == QuarantineReason::UnknownDevice)
    );
    let no_ts = quarantined
        .iter()
        .find(|q| q.payload.contains("power_w"))
        .unwrap()
        .received_at;

    // 2. Pending, in the registry and through the API (staff only).
    let pending = h.registry.pending_devices().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].device_id.as_str(),
            pending[0].messages,
            pending[0].format.as_str()
        ),
        ("elec-new", 3, "native")
    );
    let (status, body) = web.get(&web.admin, "/api/v1/devices/pending").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["id"], "elec-new");
    assert_eq!(body[0]["format"], "native");
    assert_eq!(body[0]["messages"], 3);
    assert_eq!(body[0]["topic"], "vigie/elec-new/telemetry");
    assert!(
        body[0]["last_payload"]
            .as_str()
            .unwrap()
            .contains("power_w")
    );
    let (status, _) = web.get(&web.manager, "/api/v1/devices/pending").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // 3. Assigned over HTTP: refused for a manager and for an unknown building.
    let assign = json!({"building_id": "mairie", "kind": "electricity_meter", "format": "native"});
    let path = "/api/v1/devices/elec-new/assign";
    let (status, _) = web.post(&web.manager, path, assign.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = web
        .post(
            &web.admin,
            path,
            json!({"building_id": "nowhere", "kind": "electricity_meter", "format": "native"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = web
        .post(
            &web.admin,
            path,
            json!({"building_id": "mairie", "kind": "toaster", "format": "native"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = web.post(&web.admin, path, assign.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["building_id"], "mairie");
    assert_eq!(body["kind"], "electricity_meter");
    let (status, _) = web
        .post(&web.admin, "/api/v1/devices/ghost/assign", assign)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // 4. Ingest replays the quarantined messages by itself.
    wait_for("4 replayed samples stored", || async {
        h.count().await == 4
    })
    .await;
    let series = h
        .registry
        .series_id(&device, Quantity::ElectricityKwh)
        .await
        .unwrap();
    let points = h
        .store
        .range(series, Timestamp(0), Timestamp(i64::MAX))
        .await
        .unwrap();
    let got: Vec<(Timestamp, f64)> = points.iter().map(|p| (p.ts, p.value)).collect();
    assert_eq!(
        got,
        [
            (ts("2026-10-20T08:00:00Z"), 500.0),
            (ts("2026-10-20T09:00:00Z"), 504.0),
            (ts("2026-10-20T10:00:00Z"), 509.5),
        ]
    );
    let power = h.latest("elec-new", Quantity::PowerW).await.unwrap();
    assert_eq!(
        (power.ts, power.value),
        (no_ts, 420.0),
        "original reception time"
    );
    let day = h
        .store
        .aggregate(&bucket_query(
            vec![series],
            vigie_core::store::Aggregation::Consumption,
            chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
            vigie_core::time::Bucket::Day,
        ))
        .await
        .unwrap();
    assert_eq!(day[0].value, Some(9.5));

    // The unknown_device rows are gone; what is wrong on its own stays, with its reason.
    wait_for("replayed rows deleted", || async {
        let q = h.registry.quarantined(10).await.unwrap();
        q.len() == 1 && q[0].reason == QuarantineReason::UnknownQuantity
    })
    .await;
    assert!(h.registry.pending_devices().await.unwrap().is_empty());
    let (_, body) = web.get(&web.admin, "/api/v1/devices/pending").await;
    assert_eq!(body, json!([]));

    // 5. From now on its messages go straight to the store.
    h.publish(&[telemetry(
        "elec-new",
        r#"{"ts":"2026-10-20T11:00:00Z","values":{"electricity_kwh":512.0}}"#,
    )])
    .await;
    wait_for("live sample stored", || async { h.count().await == 5 }).await;
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_page_lists_devices_and_its_form_assigns_with_the_csrf_token() {
    let mut h = Harness::start().await;
    let web = Dashboard::start(&h).await;
    h.publish(&[telemetry(
        "aq-new",
        r#"{"ts":"2026-10-20T08:00:00Z","values":{"co2_ppm":640}}"#,
    )])
    .await;
    wait_for("pending device recorded", || async {
        h.registry.pending_devices().await.unwrap().len() == 1
    })
    .await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The login form first: its CSRF cookie and token go with the POST.
    let form = client
        .get(format!("{}/login", web.base))
        .send()
        .await
        .unwrap();
    let form_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        form_cookie.starts_with("vigie_login_csrf="),
        "{form_cookie}"
    );
    let form_html = form.text().await.unwrap();
    let form_token = form_html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let login = client
        .post(format!("{}/login", web.base))
        .header("cookie", &form_cookie)
        .form(&[
            ("username", "tech"),
            ("password", "a long password"),
            ("csrf_token", form_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    // The session cookie comes first (the login form's, cleared, after it).
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("vigie_session="), "{cookie}");
    let page = client
        .get(format!("{}/devices/pending", web.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("aq-new") && html.contains("co2_ppm"),
        "{html}"
    );
    assert!(html.contains(r#"action="/devices/pending/aq-new/assign""#));
    let csrf = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let form = |token: &str| {
        vec![
            ("csrf_token", token.to_string()),
            ("building_id", "mairie".to_string()),
            ("kind", "air_quality".to_string()),
            ("format", "native".to_string()),
            ("room", "Salle du conseil".to_string()),
        ]
    };
    let url = format!("{}/devices/pending/aq-new/assign", web.base);
    let refused = client
        .post(&url)
        .header("cookie", &cookie)
        .form(&form("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.registry.pending_devices().await.unwrap().len(), 1);
    let done = client
        .post(&url)
        .header("cookie", &cookie)
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert!(h.registry.pending_devices().await.unwrap().is_empty());
    wait_for("replayed CO2 sample stored", || async {
        h.latest("aq-new", Quantity::Co2Ppm).await.is_some()
    })
    .await;
    let d = h
        .registry
        .device_for_ingest_blocking(&DeviceId::new("aq-new").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(d.room, "Salle du conseil");
    h.stop().await.unwrap();
}
