//! Server-rendered pages: escaping, charts, air quality, quarantine.

use reqwest::StatusCode;
use vigie_core::Quantity;
use vigie_core::registry::{QuarantineEntry, QuarantineReason};
use vigie_core::time::Timestamp;

use crate::{TestApp, XSS_NAME, ts};

const HOUR_MS: i64 = 3_600_000;

#[tokio::test]
async fn a_building_named_like_a_script_is_escaped() {
    let app = TestApp::start().await;
    let cookie = app.login("alice").await;
    let (status, html) = app.page(&cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(XSS_NAME), "unescaped building name");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let (status, page) = app.page(&cookie, "/buildings/xss-a").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(XSS_NAME));
    assert!(page.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn the_building_page_draws_consumption_bars_and_room_readings() {
    let app = TestApp::start().await;
    // Gas index over the last three days (relative to now, so that it falls in the
    // 30-day chart whatever the date): at least two days with consumption.
    let now = Timestamp::now().0 / HOUR_MS * HOUR_MS;
    app.write(
        "mairie-a-gas",
        Quantity::GasM3,
        &[
            (Timestamp(now - 72 * HOUR_MS), 500.0),
            (Timestamp(now - 48 * HOUR_MS), 512.5),
            (Timestamp(now - 24 * HOUR_MS), 530.0),
            (Timestamp(now), 541.0),
        ],
    )
    .await;
    app.write(
        "mairie-a-air",
        Quantity::Co2Ppm,
        &[(ts("2026-01-10T09:15:00Z"), 812.0)],
    )
    .await;
    app.write(
        "mairie-a-air",
        Quantity::TemperatureC,
        &[(ts("2026-01-10T09:15:00Z"), 21.5)],
    )
    .await;
    let cookie = app.login("alice").await;
    let (status, html) = app.page(&cookie, "/buildings/mairie-a").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<svg"), "no chart");
    let bars = html.matches("fill=\"#2F6FA8\"").count();
    // 3 daily bars (or 2 when two steps fall on one Paris day) + at least 1 monthly bar.
    assert!(bars >= 3, "{bars} bars");
    assert!(html.contains("Gaz"));
    assert!(html.contains("par jour, 30 derniers jours"));
    assert!(html.contains("Salle du conseil"));
    // 812 ppm is between 800 and 1200: "to watch", shown with the reading's time.
    assert!(html.contains("class=\"num co2-warn\""), "{html}");
    assert!(html.contains("812\u{a0}ppm"));
    assert!(html.contains("21,5\u{a0}°C"));
    assert!(html.contains("10/01/2026 10:15"));
    // Gas is shown in kWh (41 m³ × PCS 11,2 = 459,2 kWh) with the metered m³
    // alongside, over 30 days and 12 months, French style.
    assert_eq!(
        html.matches("<strong>459\u{a0}kWh</strong> (41,0\u{a0}m³)")
            .count(),
        2,
        "{html}"
    );
    assert!(html.contains("11,2\u{a0}kWh/m³"), "{html}");
    // The monthly table has both units in the current month's row.
    assert!(html.contains("Détail mensuel"), "{html}");
    assert!(
        html.contains("<td class=\"num\">41,0\u{a0}m³</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn the_buildings_list_shows_member_area_and_last_data_time_in_paris() {
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
    let cookie = app.login("alice").await;
    let (status, html) = app.page(&cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("href=\"/buildings/mairie-a\""));
    assert!(html.contains("Commune d'Alpha"));
    assert!(html.contains("1\u{202f}250\u{a0}m²"), "{html}");
    assert!(html.contains("10/01/2026 10:00"), "{html}");
    let (status, same) = app.page(&cookie, "/buildings").await;
    assert_eq!(status, StatusCode::OK, "/buildings lists them too");
    assert!(same.contains("href=\"/buildings/mairie-a\""));
}

#[tokio::test]
async fn another_members_building_page_is_not_found() {
    let app = TestApp::start().await;
    let cookie = app.login("alice").await;
    let (status, _) = app.page(&cookie, "/buildings/ecole-b").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let cookie = app.login("bob").await;
    let (status, html) = app.page(&cookie, "/buildings/ecole-b").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("École de Bêta"));
}

#[tokio::test]
async fn the_quarantine_page_is_for_staff_and_escapes_payloads() {
    let app = TestApp::start().await;
    let payload = b"<img src=x onerror=alert(1)>".to_vec();
    let entry = QuarantineEntry {
        received_at: ts("2026-01-10T09:15:00Z"),
        topic: "vigie/ghost/telemetry".into(),
        device_id: "ghost".parse().ok(),
        reason: QuarantineReason::UnknownDevice,
        detail: "device \"ghost\" is not in the registry".into(),
        payload,
    };
    let r = app.registry.clone();
    tokio::task::spawn_blocking(move || r.quarantine_blocking(&[entry.clone(), entry]))
        .await
        .expect("join")
        .expect("quarantine");

    let alice = app.login("alice").await;
    assert_eq!(
        app.page(&alice, "/quarantine").await.0,
        StatusCode::FORBIDDEN
    );
    let (_, home) = app.page(&alice, "/").await;
    assert!(!home.contains("href=\"/quarantine\""));

    let admin = app.login("admin").await;
    let (status, html) = app.page(&admin, "/quarantine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Appareil inconnu"));
    assert!(!html.contains("<img src=x"), "unescaped payload");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // Received twice: one row, two occurrences.
    assert!(html.contains("<td class=\"num\">2</td>"), "{html}");
}
