//! The JSON API: scoping, consumption in Paris periods, latest, samples, errors.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigie_core::Quantity;

use crate::{TestApp, ts};

/// Electricity index samples of `mairie-a` around two Paris day and month boundaries
/// (winter time, UTC+1), with a meter reset on 1 December.
async fn electricity_history(app: &TestApp) {
    app.write(
        "mairie-a-elec",
        Quantity::ElectricityKwh,
        &[
            (ts("2025-11-27T12:00:00Z"), 1000.0),
            // 28 November: +10.
            (ts("2025-11-28T12:00:00Z"), 1010.0),
            // 23:30 UTC on the 28th is 00:30 on the 29th in Paris: +5 on the 29th.
            (ts("2025-11-28T23:30:00Z"), 1015.0),
            (ts("2025-11-29T12:00:00Z"), 1035.0),
            // 23:30 UTC on 30 November is 1 December in Paris: +5 in December.
            (ts("2025-11-30T23:30:00Z"), 1040.0),
            // Meter swap: the negative step counts for nothing, then +7.
            (ts("2025-12-01T11:00:00Z"), 3.0),
            (ts("2025-12-01T12:00:00Z"), 10.0),
        ],
    )
    .await;
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn buildings_devices_and_members_are_scoped_to_the_callers_member() {
    let app = TestApp::start().await;
    let buildings = app.api_json(&app.alice_token, "/api/v1/buildings").await;
    let mut got = ids(&buildings);
    got.sort_unstable();
    assert_eq!(got, ["mairie-a", "xss-a"]);
    let first = &buildings[0];
    for field in [
        "id",
        "name",
        "member_id",
        "floor_area_m2",
        "address",
        "usage",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    assert_eq!(first["member_id"], "commune-a");
    assert_eq!(first["floor_area_m2"], 1250.0);

    let devices = app.api_json(&app.alice_token, "/api/v1/devices").await;
    assert_eq!(
        ids(&devices),
        ["mairie-a-air", "mairie-a-elec", "mairie-a-gas"]
    );
    let members = app.api_json(&app.alice_token, "/api/v1/members").await;
    assert_eq!(ids(&members), ["commune-a"]);

    let all = app.api_json(&app.admin_token, "/api/v1/buildings").await;
    assert_eq!(ids(&all).len(), 3);
}

#[tokio::test]
async fn another_members_building_and_device_answer_404() {
    let app = TestApp::start().await;
    for path in [
        "/api/v1/buildings/ecole-b",
        "/api/v1/buildings/ecole-b/consumption?energy=electricity&from=2025-11-01&to=2025-11-30",
        "/api/v1/devices/ecole-b-elec",
        "/api/v1/devices/ecole-b-elec/latest",
        "/api/v1/devices/ecole-b-elec/samples?quantity=electricity_kwh&from=2025-11-01T00:00:00Z&to=2025-11-02T00:00:00Z",
        "/api/v1/buildings/does-not-exist",
        "/api/v1/buildings/not%20an%20id",
    ] {
        let res = app.api(&app.alice_token, path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = res.json().await.expect("json");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // The admin sees it.
    let b = app
        .api_json(&app.admin_token, "/api/v1/buildings/ecole-b")
        .await;
    assert_eq!(b["name"], "École de Bêta");
    assert_eq!(ids(&b["devices"]), ["ecole-b-elec"]);
}

#[tokio::test]
async fn a_building_comes_with_its_devices() {
    let app = TestApp::start().await;
    let touched = vec![(
        "mairie-a-elec".parse().expect("id"),
        ts("2026-01-10T09:00:00Z"),
    )];
    let r = app.registry.clone();
    tokio::task::spawn_blocking(move || r.touch_devices_blocking(&touched))
        .await
        .expect("join")
        .expect("touch");
    let b = app
        .api_json(&app.alice_token, "/api/v1/buildings/mairie-a")
        .await;
    assert_eq!(b["id"], "mairie-a");
    let devices = b["devices"].as_array().expect("devices");
    let elec = devices
        .iter()
        .find(|d| d["id"] == "mairie-a-elec")
        .expect("elec");
    assert_eq!(elec["kind"], "electricity_meter");
    assert_eq!(elec["building_id"], "mairie-a");
    assert_eq!(elec["last_seen"], "2026-01-10T09:00:00Z");
    assert_eq!(elec["online"], Value::Null);
    let air = devices
        .iter()
        .find(|d| d["id"] == "mairie-a-air")
        .expect("air");
    assert_eq!(air["room"], "Salle du conseil");
    assert_eq!(air["last_seen"], Value::Null);
}

#[tokio::test]
async fn daily_consumption_sums_positive_steps_in_paris_days() {
    let app = TestApp::start().await;
    electricity_history(&app).await;
    let v = app
        .api_json(
            &app.alice_token,
            "/api/v1/buildings/mairie-a/consumption?energy=electricity&from=2025-11-28&to=2025-12-01&step=day",
        )
        .await;
    assert_eq!(
        v,
        json!([
            {"period": "2025-11-28", "value": 10.0, "unit": "kWh"},
            {"period": "2025-11-29", "value": 25.0, "unit": "kWh"},
            {"period": "2025-11-30", "value": null, "unit": "kWh"},
            {"period": "2025-12-01", "value": 12.0, "unit": "kWh"},
        ])
    );
}

#[tokio::test]
async fn monthly_consumption_uses_paris_months() {
    let app = TestApp::start().await;
    electricity_history(&app).await;
    let v = app
        .api_json(
            &app.alice_token,
            "/api/v1/buildings/mairie-a/consumption?energy=electricity&from=2025-11-15&to=2025-12-31&step=month",
        )
        .await;
    assert_eq!(
        v,
        json!([
            {"period": "2025-11", "value": 35.0, "unit": "kWh"},
            {"period": "2025-12", "value": 12.0, "unit": "kWh"},
        ])
    );
    // No meter of that energy: every period is null, in its own unit.
    let water = app
        .api_json(
            &app.alice_token,
            "/api/v1/buildings/mairie-a/consumption?energy=water&from=2025-11-01&to=2025-11-02",
        )
        .await;
    assert_eq!(
        water,
        json!([
            {"period": "2025-11-01", "value": null, "unit": "m³"},
            {"period": "2025-11-02", "value": null, "unit": "m³"},
        ])
    );
}

#[tokio::test]
async fn latest_returns_the_newest_value_of_each_quantity() {
    let app = TestApp::start().await;
    app.write(
        "mairie-a-air",
        Quantity::Co2Ppm,
        &[
            (ts("2026-01-10T09:00:00Z"), 640.0),
            (ts("2026-01-10T09:15:00Z"), 812.0),
        ],
    )
    .await;
    app.write(
        "mairie-a-air",
        Quantity::TemperatureC,
        &[(ts("2026-01-10T09:30:00Z"), 21.5)],
    )
    .await;
    let v = app
        .api_json(&app.alice_token, "/api/v1/devices/mairie-a-air/latest")
        .await;
    assert_eq!(
        v,
        json!({"ts": "2026-01-10T09:30:00Z", "values": {"co2_ppm": 812.0, "temperature_c": 21.5}})
    );
    let empty = app
        .api_json(&app.alice_token, "/api/v1/devices/mairie-a-gas/latest")
        .await;
    assert_eq!(empty, json!({"ts": null, "values": {}}));
}

#[tokio::test]
async fn samples_are_returned_from_inclusive_to_exclusive() {
    let app = TestApp::start().await;
    app.write(
        "mairie-a-air",
        Quantity::Co2Ppm,
        &[
            (ts("2026-01-10T09:00:00Z"), 640.0),
            (ts("2026-01-10T09:15:00Z"), 812.0),
            (ts("2026-01-10T09:30:00Z"), 900.0),
        ],
    )
    .await;
    let v = app
        .api_json(
            &app.alice_token,
            "/api/v1/devices/mairie-a-air/samples?quantity=co2_ppm&from=2026-01-10T10:00:00%2B01:00&to=2026-01-10T09:30:00Z",
        )
        .await;
    assert_eq!(
        v,
        json!([
            {"ts": "2026-01-10T09:00:00Z", "value": 640.0},
            {"ts": "2026-01-10T09:15:00Z", "value": 812.0},
        ])
    );
    let none = app
        .api_json(
            &app.alice_token,
            "/api/v1/devices/mairie-a-air/samples?quantity=humidity_pct&from=2026-01-10T00:00:00Z&to=2026-01-11T00:00:00Z",
        )
        .await;
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn bad_parameters_answer_400_naming_the_parameter() {
    let app = TestApp::start().await;
    let cases = [
        (
            "/api/v1/buildings/mairie-a/consumption?energy=electricity&from=28/11/2025&to=2025-12-01",
            "\"from\"",
            "YYYY-MM-DD",
        ),
        (
            "/api/v1/buildings/mairie-a/consumption?energy=fuel&from=2025-11-28&to=2025-12-01",
            "\"energy\"",
            "electricity, gas or water",
        ),
        (
            "/api/v1/buildings/mairie-a/consumption?energy=gas&from=2025-11-28&to=2025-12-01&step=hour",
            "\"step\"",
            "day or month",
        ),
        (
            "/api/v1/buildings/mairie-a/consumption?energy=gas&from=2025-11-28",
            "\"to\"",
            "required",
        ),
        (
            "/api/v1/buildings/mairie-a/consumption?energy=gas&from=2025-12-28&to=2025-12-01",
            "\"to\"",
            "before",
        ),
        (
            "/api/v1/devices/mairie-a-air/samples?quantity=co2&from=2026-01-10T00:00:00Z&to=2026-01-11T00:00:00Z",
            "\"quantity\"",
            "co2_ppm",
        ),
        (
            "/api/v1/devices/mairie-a-air/samples?quantity=co2_ppm&from=yesterday&to=2026-01-11T00:00:00Z",
            "\"from\"",
            "RFC 3339",
        ),
        (
            "/api/v1/buildings?membre=commune-b",
            "\"membre\"",
            "unknown parameter",
        ),
    ];
    for (path, param, expected) in cases {
        let res = app.api(&app.alice_token, path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = res.json().await.expect("json");
        let msg = body["error"].as_str().expect("error");
        assert!(
            msg.contains(param) && msg.contains(expected),
            "{path}: {msg}"
        );
    }
}

#[tokio::test]
async fn quarantine_is_for_staff_only() {
    let app = TestApp::start().await;
    let res = app.api(&app.alice_token, "/api/v1/quarantine").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let v = app
        .api_json(&app.admin_token, "/api/v1/quarantine?limit=5")
        .await;
    assert!(v["entries"].as_array().expect("entries").is_empty());
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::start().await;
    let doc = app.api_json(&app.alice_token, "/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.0"));
    for path in [
        "/api/v1/buildings",
        "/api/v1/buildings/{id}",
        "/api/v1/buildings/{id}/consumption",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/devices/{id}/latest",
        "/api/v1/devices/{id}/samples",
        "/api/v1/members",
        "/api/v1/quarantine",
        "/api/v1/openapi.json",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    assert!(doc["paths"]["/api/v1/devices/pending"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/devices/{id}/assign"]["post"].is_object());
    let description = doc["info"]["description"].as_str().expect("description");
    assert!(description.contains("X-CSRF-Token"), "{description}");
    let unknown = app.api(&app.alice_token, "/api/v1/nothing").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.expect("json 404");
    assert!(body["error"].is_string());
}

/// Gas index samples of `mairie-a` over three Paris days of November 2025: 12.5, 17.5
/// and 6 m³.
async fn gas_history(app: &TestApp) {
    app.write(
        "mairie-a-gas",
        Quantity::GasM3,
        &[
            (ts("2025-11-27T12:00:00Z"), 500.0),
            (ts("2025-11-28T12:00:00Z"), 512.5),
            (ts("2025-11-29T12:00:00Z"), 530.0),
            (ts("2025-11-30T12:00:00Z"), 536.0),
        ],
    )
    .await;
}

/// `(period, value, unit)` of each entry.
fn entries(v: &Value) -> Vec<(String, Option<f64>, String)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["period"].as_str().expect("period").to_string(),
                e["value"].as_f64(),
                e["unit"].as_str().expect("unit").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn gas_consumption_is_m3_by_default_and_m3_times_the_buildings_pcs_in_kwh() {
    let app = TestApp::start().await;
    // A building whose gas has a PCS other than the default 11.2.
    let mut mairie = app
        .registry
        .buildings(&vigie_core::registry::Scope::All)
        .await
        .expect("buildings")
        .into_iter()
        .find(|b| b.id.as_str() == "mairie-a")
        .expect("mairie-a");
    mairie.gas_pcs_kwh_per_m3 = 10.37;
    app.registry.upsert_building(&mairie).await.expect("update");
    gas_history(&app).await;
    let path = "/api/v1/buildings/mairie-a/consumption?energy=gas&from=2025-11-28&to=2025-11-30";

    let default = app.api_json(&app.alice_token, path).await;
    let m3 = app
        .api_json(&app.alice_token, &format!("{path}&unit=m3"))
        .await;
    assert_eq!(default, m3, "the default unit of gas stays m³");
    let expected_m3 = [
        ("2025-11-28", Some(12.5)),
        ("2025-11-29", Some(17.5)),
        ("2025-11-30", Some(6.0)),
    ];
    let got = entries(&m3);
    assert_eq!(got.len(), 3, "{m3}");
    for ((period, value, unit), (p, v)) in got.iter().zip(expected_m3) {
        assert_eq!((period.as_str(), *value, unit.as_str()), (p, v, "m³"));
    }

    let kwh = app
        .api_json(&app.alice_token, &format!("{path}&unit=kwh"))
        .await;
    let got = entries(&kwh);
    assert_eq!(got.len(), 3, "{kwh}");
    for ((period, value, unit), (p, v)) in got.iter().zip(expected_m3) {
        assert_eq!((period.as_str(), unit.as_str()), (p, "kWh"));
        let (value, v) = (value.expect("value"), v.expect("m³"));
        assert!(
            (value - v * 10.37).abs() < 1e-9,
            "{p}: {value} kWh for {v} m³"
        );
    }
    // Monthly, and a period without data stays null in kWh.
    let months = app
        .api_json(
            &app.alice_token,
            "/api/v1/buildings/mairie-a/consumption?energy=gas&from=2025-10-01&to=2025-11-30&step=month&unit=kwh",
        )
        .await;
    let got = entries(&months);
    assert_eq!(got[0], ("2025-10".to_string(), None, "kWh".to_string()));
    assert_eq!(got[1].0, "2025-11");
    assert!(
        (got[1].1.expect("value") - 36.0 * 10.37).abs() < 1e-9,
        "{months}"
    );
    // The coefficient is part of the building.
    let b = app
        .api_json(&app.alice_token, "/api/v1/buildings/mairie-a")
        .await;
    assert_eq!(b["gas_pcs_kwh_per_m3"], 10.37);
}

#[tokio::test]
async fn a_unit_the_energy_is_not_measured_in_answers_400_naming_unit() {
    let app = TestApp::start().await;
    let base = "/api/v1/buildings/mairie-a/consumption?from=2025-11-28&to=2025-11-30";
    for (query, expected) in [
        (
            "energy=electricity&unit=m3",
            "electricity is measured in kWh only",
        ),
        ("energy=water&unit=kwh", "water is measured in m³ only"),
        ("energy=gas&unit=MWh", "expected kwh or m3"),
    ] {
        let res = app.api(&app.alice_token, &format!("{base}&{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = res.json().await.expect("json");
        let msg = body["error"].as_str().expect("error");
        assert!(msg.contains("\"unit\""), "{query}: {msg}");
        assert!(msg.contains(expected), "{query}: {msg}");
    }
    // The meters' own unit is always accepted.
    let elec = app
        .api_json(
            &app.alice_token,
            &format!("{base}&energy=electricity&unit=kwh"),
        )
        .await;
    assert_eq!(elec[0]["unit"], "kWh");
}
