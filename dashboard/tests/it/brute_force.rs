//! Login brute-force protection and the session cookie's attributes, over real HTTP
//! from two loopback addresses (127.0.0.1 and 127.0.0.2), with the throttle's clock
//! moved by hand.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{COOKIE, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};
use vigie_core::config::{HttpConfig, HumanDuration};
use vigie_dashboard::throttle::ManualClock;

use crate::{PASSWORD, TestApp, csrf_of, set_cookie};

const WRONG: &str = "not the password, but close";

/// An HTTP client whose connections come from `local` (a loopback address).
fn client_from(local: &str) -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(Some(local.parse().expect("ip")))
        .build()
        .expect("client")
}

/// One login through the form, as `client` (from its address) gets it and posts it.
async fn attempt(app: &TestApp, client: &Client, user: &str, password: &str) -> Response {
    app.post_login(
        client,
        &[("username", user), ("password", password), ("next", "/")],
    )
    .await
}

/// Asserts a refusal for too many attempts: 429, no session cookie, `Retry-After`,
/// and the French message with `minutes`.
async fn assert_locked(res: Response, minutes: &str, what: &str) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    assert!(set_cookie(&res, "vigie_session").is_none(), "{what}");
    assert!(res.headers().get(RETRY_AFTER).is_some(), "{what}");
    let html = res.text().await.expect("body");
    let expected = format!("Trop de tentatives : réessayez dans {minutes}.");
    assert!(html.contains(&expected), "{what}: {html}");
}

fn assert_logged_in(res: &Response, what: &str) {
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{what}");
    assert!(set_cookie(res, "vigie_session").is_some(), "{what}");
}

#[tokio::test]
async fn five_failures_lock_the_name_and_the_address_until_the_lockout_ends() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::start_with(&HttpConfig::default(), Some(clock.clone())).await;
    let here = client_from("127.0.0.1");
    let elsewhere = client_from("127.0.0.2");

    for i in 1..=5 {
        let res = attempt(&app, &here, "alice", WRONG).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // The right password is refused now, from the same address or another one.
    let res = attempt(&app, &here, "alice", PASSWORD).await;
    assert_eq!(
        res.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
        Some("300")
    );
    assert_locked(res, "5 minutes", "alice from .1").await;
    assert_locked(
        attempt(&app, &elsewhere, "alice", PASSWORD).await,
        "5 minutes",
        "alice from .2",
    )
    .await;
    // The address is locked for every name.
    assert_locked(
        attempt(&app, &here, "bob", PASSWORD).await,
        "5 minutes",
        "bob from .1",
    )
    .await;
    // Another user from another address is not affected.
    assert_logged_in(
        &attempt(&app, &elsewhere, "bob", PASSWORD).await,
        "bob from .2",
    );

    clock.advance(Duration::from_secs(4 * 60 + 30));
    assert_locked(
        attempt(&app, &here, "alice", PASSWORD).await,
        "1 minute",
        "alice after 4 min 30",
    )
    .await;
    clock.advance(Duration::from_secs(30));
    assert_logged_in(
        &attempt(&app, &here, "alice", PASSWORD).await,
        "alice after the lockout",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_attempts_get_no_more_tries_than_sequential_ones() {
    let clock = Arc::new(ManualClock::new());
    let app = Arc::new(TestApp::start_with(&HttpConfig::default(), Some(clock)).await);
    let client = client_from("127.0.0.1");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, client) = (app.clone(), client.clone());
        set.spawn(async move { attempt(&app, &client, "alice", WRONG).await.status() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.expect("task"));
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 15), "{statuses:?}");
    assert_locked(
        attempt(&app, &client, "alice", PASSWORD).await,
        "5 minutes",
        "after the parallel burst",
    )
    .await;
}

#[tokio::test]
async fn a_success_resets_the_user_names_counter() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::start_with(&HttpConfig::default(), Some(clock)).await;
    // Failures spread over two addresses so that neither reaches the limit alone.
    let (a, b) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    for _ in 0..4 {
        attempt(&app, &a, "alice", WRONG).await;
    }
    assert_logged_in(&attempt(&app, &b, "alice", PASSWORD).await, "after 4");
    for _ in 0..4 {
        attempt(&app, &b, "alice", WRONG).await;
    }
    // 8 failures in all, but only 4 since the success.
    assert_logged_in(
        &attempt(&app, &client_from("127.0.0.3"), "alice", PASSWORD).await,
        "4 since the success",
    );
}

#[tokio::test]
async fn the_limits_come_from_the_configuration() {
    let clock = Arc::new(ManualClock::new());
    let http = HttpConfig {
        login_max_failures: 2,
        login_lockout: HumanDuration(Duration::from_secs(15 * 60)),
        ..HttpConfig::default()
    };
    let app = TestApp::start_with(&http, Some(clock.clone())).await;
    let c = client_from("127.0.0.1");
    for _ in 0..2 {
        assert_eq!(
            attempt(&app, &c, "alice", WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_locked(
        attempt(&app, &c, "alice", PASSWORD).await,
        "15 minutes",
        "2 failures",
    )
    .await;
    clock.advance(Duration::from_secs(15 * 60));
    assert_logged_in(&attempt(&app, &c, "alice", PASSWORD).await, "after 15 min");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_with_name_and_address_but_never_the_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, because tracing caches per call site whether anyone listens, and the
    // other tests of this binary run alongside without a subscriber. Their lines land
    // in the buffer too (none may hold a password either); this test counts only its
    // own user name.
    tracing::subscriber::set_global_default(subscriber).expect("first global subscriber");
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::start_with(&HttpConfig::default(), Some(clock)).await;
    let c = client_from("127.0.0.9");
    for _ in 0..5 {
        attempt(&app, &c, "mallory", WRONG).await;
    }
    attempt(&app, &c, "mallory", PASSWORD).await;
    // A login form's token is a secret too.
    let form = app.login_form(&c).await;
    let res = form
        .post(&app, &c, &[("username", "mallory"), ("password", WRONG)])
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("login failed") && l.contains("mallory"))
        .collect();
    assert_eq!(failed.len(), 5, "{log}");
    assert!(failed.iter().all(|l| l.contains("127.0.0.9")), "{log}");
    let mallory = |what: &str| {
        log.lines()
            .any(|l| l.contains(what) && l.contains("mallory") && l.contains("127.0.0.9"))
    };
    assert!(mallory("locked out"), "{log}");
    assert!(mallory("too many failed attempts"), "{log}");
    assert!(!log.contains(WRONG), "password in the log: {log}");
    assert!(!log.contains(PASSWORD), "password in the log: {log}");
    assert!(
        !log.contains(&form.token),
        "login form token in the log: {log}"
    );
}

async fn session_cookie(app: &TestApp) -> String {
    let res = attempt(app, &app.client, "alice", PASSWORD).await;
    assert_logged_in(&res, "alice");
    set_cookie(&res, "vigie_session").expect("cookie")
}

#[tokio::test]
async fn the_session_cookie_is_secure_only_when_configured() {
    for secure in [false, true] {
        let http = HttpConfig {
            secure_cookies: secure,
            ..HttpConfig::default()
        };
        let app = TestApp::start_with(&http, None).await;
        let set = session_cookie(&app).await;
        let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
        assert!(attrs[0].starts_with("vigie_session="), "{set}");
        assert!(attrs.contains(&"HttpOnly"), "{set}");
        assert!(attrs.contains(&"Path=/"), "{set}");
        assert!(
            attrs.contains(&"SameSite=Strict") || attrs.contains(&"SameSite=Lax"),
            "{set}"
        );
        assert_eq!(attrs.contains(&"Secure"), secure, "{set}");
        // Logging out clears the cookie with the same attributes.
        let cookie = attrs[0];
        let (_, html) = app.page(cookie, "/").await;
        let res = app
            .client
            .post(app.url("/logout"))
            .header(reqwest::header::COOKIE, cookie)
            .form(&[("csrf_token", csrf_of(&html).as_str())])
            .send()
            .await
            .expect("POST /logout");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let cleared = set_cookie(&res, "vigie_session").expect("cleared cookie");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert_eq!(cleared.contains("; Secure"), secure, "{cleared}");
        // The login form's cookie follows the same setting.
        let res = app.get("/login").await;
        let form = set_cookie(&res, "vigie_login_csrf").expect("login form cookie");
        let attrs: Vec<&str> = form.split(';').map(str::trim).collect();
        assert_eq!(attrs.contains(&"Secure"), secure, "{form}");
    }
}

#[tokio::test]
async fn an_ipv6_client_behind_the_proxy_is_counted_by_its_64_not_its_address() {
    let app = TestApp::start_with(&HttpConfig::default(), None).await;
    let proxy = client_from("127.0.0.1");
    let form = app.login_form(&proxy).await;
    let from = |addr: &'static str, user: &'static str| {
        proxy
            .post(app.url("/login"))
            .header("x-forwarded-for", addr)
            .header(COOKIE, &form.cookie)
            .form(&[
                ("username", user),
                ("password", WRONG),
                ("csrf_token", form.token.as_str()),
            ])
            .send()
    };
    // Five names, five addresses of one /64: a password spray.
    for (addr, user) in [
        ("2001:db8:7:7::1", "u1"),
        ("2001:db8:7:7::2", "u2"),
        ("2001:db8:7:7::3", "u3"),
        ("2001:db8:7:7::4", "u4"),
        ("2001:db8:7:7::5", "u5"),
    ] {
        let res = from(addr, user).await.expect("POST /login");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{addr}");
    }
    let res = from("2001:db8:7:7:abcd::6", "alice").await.expect("POST");
    assert_locked(res, "5 minutes", "a sixth address of the same /64").await;
    let res = from("2001:db8:7:8::1", "bob").await.expect("POST");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "another /64");
}
