//! The security standard, as an attacker would probe it: CSRF on API writes by session
//! cookie, staff-only actions refused to managers and viewers, every route scoped for a
//! viewer, expired sessions refused by the server, escaping of registry text, security
//! headers on every answer.

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vigie_core::config::{HttpConfig, HumanDuration};
use vigie_core::registry::{Device, DeviceKind, Role, Sighting};

use crate::{PASSWORD, TestApp, csrf_of, ts};

const ASSIGN: &str = "/api/v1/devices/pending-1/assign";

/// Records one message of the unknown device `pending-1`, with `payload`.
async fn pending_device(app: &TestApp, payload: &str) {
    let sighting = Sighting {
        device_id: "pending-1".parse().expect("id"),
        received_at: ts("2026-01-10T09:15:00Z"),
        topic: "vigie/pending-1/telemetry".into(),
        format: "native".into(),
        payload: payload.as_bytes().to_vec(),
    };
    let r = app.registry.clone();
    tokio::task::spawn_blocking(move || r.record_sightings_blocking(&[sighting]))
        .await
        .expect("join")
        .expect("sighting");
}

async fn pending_ids(app: &TestApp) -> Vec<String> {
    app.registry
        .pending_devices()
        .await
        .expect("pending")
        .into_iter()
        .map(|p| p.device_id.to_string())
        .collect()
}

/// A viewer of commune-a, with an API token.
async fn viewer(app: &TestApp) -> String {
    let r = app.registry.clone();
    tokio::task::spawn_blocking(move || {
        let member = "commune-a".parse().expect("member");
        r.create_user_blocking("victor", Role::Viewer, Some(&member), PASSWORD)
            .expect("viewer");
        r.create_token_blocking("victor").expect("token")
    })
    .await
    .expect("join")
}

fn assignment() -> Value {
    json!({"building_id": "mairie-a", "kind": "electricity_meter", "format": "native"})
}

#[tokio::test]
async fn an_api_write_authorised_by_the_session_cookie_needs_the_csrf_header() {
    let app = TestApp::start().await;
    pending_device(&app, r#"{"values":{"electricity_kwh":1}}"#).await;
    let cookie = app.login("admin").await;
    let (_, html) = app.page(&cookie, "/").await;
    let csrf = csrf_of(&html);
    let post = |csrf: Option<&str>| {
        let mut req = app
            .client
            .post(app.url(ASSIGN))
            .header(COOKIE, &cookie)
            .json(&assignment());
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };

    for forged in [None, Some("wrong"), Some("")] {
        let res = post(forged).await.expect("POST");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{forged:?}");
        let body: Value = res.json().await.expect("json");
        assert!(
            body["error"].as_str().expect("error").contains("CSRF"),
            "{body}"
        );
        assert_eq!(pending_ids(&app).await, ["pending-1"], "assigned anyway");
    }
    // The session's own token lets the write through.
    let res = post(Some(&csrf)).await.expect("POST");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(pending_ids(&app).await.is_empty());
    // Reads by cookie need no header.
    let res = app
        .client
        .get(app.url("/api/v1/devices"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_token_write_needs_no_csrf_header() {
    let app = TestApp::start().await;
    pending_device(&app, "{}").await;
    let res = app
        .client
        .post(app.url(ASSIGN))
        .bearer_auth(&app.admin_token)
        .json(&assignment())
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(pending_ids(&app).await.is_empty());
}

#[tokio::test]
async fn managers_and_viewers_are_refused_every_staff_action() {
    let app = TestApp::start().await;
    pending_device(&app, "{}").await;
    let victor = viewer(&app).await;
    for token in [app.alice_token.as_str(), victor.as_str()] {
        for path in ["/api/v1/devices/pending", "/api/v1/quarantine"] {
            let res = app.api(token, path).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let res = app
            .client
            .post(app.url(ASSIGN))
            .bearer_auth(token)
            .json(&assignment())
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    for user in ["alice", "victor"] {
        let cookie = app.login(user).await;
        let (_, home) = app.page(&cookie, "/").await;
        let csrf = csrf_of(&home);
        for path in ["/devices/pending", "/quarantine"] {
            assert_eq!(
                app.page(&cookie, path).await.0,
                StatusCode::FORBIDDEN,
                "{user} {path}"
            );
        }
        let res = app
            .client
            .post(app.url("/devices/pending/pending-1/assign"))
            .header(COOKIE, &cookie)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("building_id", "mairie-a"),
                ("kind", "electricity_meter"),
                ("format", "native"),
            ])
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{user}");
    }
    assert_eq!(pending_ids(&app).await, ["pending-1"]);
}

#[tokio::test]
async fn a_viewer_sees_only_its_members_objects_and_404_for_the_others() {
    let app = TestApp::start().await;
    pending_device(&app, "{}").await;
    let victor = viewer(&app).await;
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|o| o["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort_unstable();
        ids
    };
    let buildings = app.api_json(&victor, "/api/v1/buildings").await;
    assert_eq!(ids(&buildings), ["mairie-a", "xss-a"]);
    let devices = app.api_json(&victor, "/api/v1/devices").await;
    assert_eq!(
        ids(&devices),
        ["mairie-a-air", "mairie-a-elec", "mairie-a-gas"]
    );
    assert_eq!(
        ids(&app.api_json(&victor, "/api/v1/members").await),
        ["commune-a"]
    );
    for path in [
        "/api/v1/buildings/ecole-b",
        "/api/v1/buildings/ecole-b/consumption?energy=electricity&from=2025-11-01&to=2025-11-30",
        "/api/v1/devices/ecole-b-elec",
        "/api/v1/devices/ecole-b-elec/latest",
        "/api/v1/devices/ecole-b-elec/samples?quantity=electricity_kwh&from=2025-11-01T00:00:00Z&to=2025-11-02T00:00:00Z",
        "/api/v1/devices/pending-1",
        "/api/v1/devices/pending-1/latest",
    ] {
        let res = app.api(&victor, path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let cookie = app.login("victor").await;
    assert_eq!(
        app.page(&cookie, "/buildings/ecole-b").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, home) = app.page(&cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!home.contains("ecole-b") && !home.contains("École de Bêta"));
}

#[tokio::test]
async fn an_expired_session_is_refused_by_the_server_even_if_the_client_keeps_it() {
    let http = HttpConfig {
        session_ttl: HumanDuration(std::time::Duration::ZERO),
        ..HttpConfig::default()
    };
    let app = TestApp::start_with(&http, None).await;
    // The browser would drop the cookie (Max-Age=0); an attacker replaying it must be
    // refused too.
    let cookie = app.login("alice").await;
    let res = app
        .client
        .get(app.url("/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = app
        .client
        .get(app.url("/api/v1/buildings"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn registry_text_on_pages_is_escaped() {
    let app = TestApp::start().await;
    let mut device = Device::new(
        "mairie-a-air".parse().expect("id"),
        Some("mairie-a".parse().expect("id")),
        DeviceKind::AirQuality,
    );
    device.room = "<script>alert('room')</script>".into();
    app.registry.upsert_device(&device).await.expect("device");
    pending_device(&app, "<img src=x onerror=alert('pending')>").await;

    let admin = app.login("admin").await;
    let (status, html) = app.page(&admin, "/buildings/mairie-a").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>alert('room')"), "room unescaped");
    assert!(html.contains("&lt;script&gt;alert("), "{html}");
    let (status, html) = app.page(&admin, "/devices/pending").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<img src=x"), "pending payload unescaped");
    assert!(html.contains("&lt;img src=x"), "{html}");
    // The building named like a script is escaped in the assignment form too.
    assert!(
        !html.contains("<script>alert(1)"),
        "building name unescaped"
    );
    assert!(!html.contains("<script"), "no script at all on a page");
}

/// The `<style>` block of a page, verbatim.
fn style_of(html: &str) -> &str {
    let start = html.find("<style>").expect("style") + "<style>".len();
    let end = html[start..].find("</style>").expect("end") + start;
    &html[start..end]
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_a_policy_without_inline_code() {
    let app = TestApp::start().await;
    let cookie = app.login("alice").await;
    let page = app
        .client
        .get(app.url("/buildings/mairie-a"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET");
    let headers = page.headers().clone();
    let html = page.text().await.expect("body");
    let login = app.get("/login").await;
    let api = app.api(&app.alice_token, "/api/v1/buildings").await;
    let missing = app.get("/buildings/nothing").await;
    for (what, h) in [
        ("page", &headers),
        ("login", login.headers()),
        ("api", api.headers()),
        ("redirect", missing.headers()),
    ] {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{what}: no {name}"))
                .to_string()
        };
        assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(get("x-frame-options"), "DENY", "{what}");
        assert_eq!(get("referrer-policy"), "same-origin", "{what}");
        let csp = get("content-security-policy");
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert!(!csp.contains("script-src"), "{what}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "{what}: HSTS over plain HTTP"
        );
    }
    // The page's style sheet is allowed by its hash, so the page still looks right.
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style_of(&html)));
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains(&format!("style-src 'sha256-{hash}'")),
        "{csp} does not allow the page's style"
    );
    assert!(
        !html.contains(" style=\""),
        "inline style attribute on the page"
    );
}

#[tokio::test]
async fn https_deployments_get_strict_transport_security() {
    let http = HttpConfig {
        secure_cookies: true,
        ..HttpConfig::default()
    };
    let app = TestApp::start_with(&http, None).await;
    let res = app.get("/login").await;
    let hsts = res
        .headers()
        .get("strict-transport-security")
        .expect("HSTS")
        .to_str()
        .expect("ascii");
    assert!(hsts.starts_with("max-age="), "{hsts}");
}

#[tokio::test]
async fn a_same_origin_form_behind_a_proxy_that_rewrites_host_is_accepted() {
    let app = TestApp::start().await;
    // nginx's default `proxy_set_header Host $proxy_host`: the dashboard sees its own
    // loopback address as Host while the browser's Origin is the public name.
    let form = app.login_form(&app.client).await;
    let post = |origin: &'static str, site: &'static str| {
        app.client
            .post(app.url("/login"))
            .header(COOKIE, &form.cookie)
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .form(&[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf_token", form.token.as_str()),
            ])
            .send()
    };
    let res = post("https://vigie.example", "same-origin")
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The same request from another site is still refused.
    let res = post("https://evil.example", "cross-site")
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[test]
fn chart_text_is_escaped_in_the_svg_the_pages_embed_verbatim() {
    // Pages insert chart SVG without escaping (PreEscaped): any text drawn in it, a
    // title, a unit or a bar label, must come out escaped.
    let evil = "<script>alert(1)</script>";
    let bars = vec![(evil.to_string(), Some(3.0)), ("b".to_string(), None)];
    let svg = vigie_dashboard::charts::bar_chart_svg(evil, evil, &bars).expect("svg");
    assert!(!svg.contains("<script"), "{svg}");
    assert!(svg.contains("&lt;script&gt;"), "{svg}");
}
