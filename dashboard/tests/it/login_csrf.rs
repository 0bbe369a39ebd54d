//! The login form's own CSRF token (double-submit cookie `vigie_login_csrf`): a login
//! POST without it, or with a token that is not its cookie's, is refused with 403 and
//! a fresh form before the password is checked; every page showing the form carries a
//! token that works.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::COOKIE;
use reqwest::{Response, StatusCode};
use vigie_core::config::{HttpConfig, HumanDuration};
use vigie_dashboard::throttle::ManualClock;

use crate::{LoginForm, PASSWORD, TestApp, location, set_cookie};

const WRONG: &str = "not the password either";
const EXPIRED: &str = "Le formulaire de connexion a expiré : réessayez.";

/// A dashboard that locks a user name after two failures.
async fn strict_app() -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let http = HttpConfig {
        login_max_failures: 2,
        login_lockout: HumanDuration(Duration::from_secs(15 * 60)),
        ..HttpConfig::default()
    };
    (TestApp::start_with(&http, Some(clock.clone())).await, clock)
}

/// `POST /login` with an explicit `Cookie` header (or none) and `csrf_token` field (or
/// none).
async fn post_raw(
    app: &TestApp,
    cookie: Option<&str>,
    token: Option<&str>,
    password: &str,
) -> Response {
    let mut fields = vec![("username", "alice"), ("password", password), ("next", "/")];
    if let Some(t) = token {
        fields.push(("csrf_token", t));
    }
    let mut req = app.client.post(app.url("/login")).form(&fields);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.expect("POST /login")
}

/// Asserts a refusal for a bad form token: 403, no session, the French message, and
/// a fresh form whose cookie and field agree; returns that form.
async fn assert_expired(res: Response, what: &str) -> LoginForm {
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
    assert!(set_cookie(&res, "vigie_session").is_none(), "{what}");
    let form = LoginForm::of(res).await;
    assert_eq!(
        form.cookie,
        format!("vigie_login_csrf={}", form.token),
        "{what}"
    );
    form
}

#[tokio::test]
async fn get_login_sets_a_strict_short_lived_cookie_equal_to_the_forms_token() {
    let app = TestApp::start().await;
    let res = app.get("/login").await;
    assert_eq!(res.status(), StatusCode::OK);
    let set = set_cookie(&res, "vigie_login_csrf").expect("login form cookie");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/login", "Max-Age=3600"] {
        assert!(attrs.contains(&attr), "{attr} missing: {set}");
    }
    assert!(!attrs.contains(&"Secure"), "Secure over plain HTTP: {set}");
    let form = LoginForm::of(res).await;
    assert_eq!(form.cookie, format!("vigie_login_csrf={}", form.token));
    // 256 random bits, in hex.
    assert_eq!(form.token.len(), 64, "{}", form.token);
    assert!(form.token.bytes().all(|b| b.is_ascii_hexdigit()));
    // Each form gets its own.
    assert_ne!(app.login_form(&app.client).await.token, form.token);
}

#[tokio::test]
async fn a_login_with_the_forms_cookie_and_token_opens_a_session_and_spends_the_token() {
    let app = TestApp::start().await;
    let form = app.login_form(&app.client).await;
    let res = form
        .post(
            &app,
            &app.client,
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("next", "/buildings/mairie-a"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/buildings/mairie-a");
    let session = set_cookie(&res, "vigie_session").expect("session cookie");
    let cleared = set_cookie(&res, "vigie_login_csrf").expect("login cookie cleared");
    assert!(cleared.starts_with("vigie_login_csrf=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let cookie = session.split(';').next().expect("pair");
    assert_eq!(app.page(cookie, "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_login_without_a_matching_token_is_refused_before_the_password_is_checked() {
    let (app, _clock) = strict_app().await;
    let form = app.login_form(&app.client).await;
    let other = app.login_form(&app.client).await;
    let cases: [(&str, Option<&str>, Option<&str>); 6] = [
        ("neither cookie nor token", None, None),
        ("cookie without token", Some(&form.cookie), None),
        ("token without cookie", None, Some(&form.token)),
        (
            "another form's token",
            Some(&form.cookie),
            Some(&other.token),
        ),
        ("a forged token", Some(&form.cookie), Some("0123abcd")),
        (
            "empty cookie and token",
            Some("vigie_login_csrf="),
            Some(""),
        ),
    ];
    for (what, cookie, token) in cases {
        // The right password does not get in…
        let res = post_raw(&app, cookie, token, PASSWORD).await;
        let html_form = assert_expired(res, what).await;
        assert!(!html_form.token.is_empty());
        // …and a wrong one is not even checked: a check would answer 401 and count
        // towards the lock (two failures here).
        let res = post_raw(&app, cookie, token, WRONG).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
        let html = res.text().await.expect("body");
        assert!(html.contains(EXPIRED), "{what}: {html}");
        assert!(!html.contains("incorrect"), "{what}: {html}");
    }
    // Twelve refusals, no failure counted: the name is not locked.
    let res = form
        .post(
            &app,
            &app.client,
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&res, "vigie_session").is_some());
}

#[tokio::test]
async fn every_refusal_shows_a_form_whose_token_works() {
    let (app, clock) = strict_app().await;
    let alice = |password| [("username", "alice"), ("password", password)];

    // 403: a stale form.
    let res = post_raw(&app, None, None, PASSWORD).await;
    let form = assert_expired(res, "no token").await;

    // 401: the wrong password, from the form the 403 showed.
    let res = form.post(&app, &app.client, &alice(WRONG)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&res, "vigie_session").is_none());
    let form = LoginForm::of(res).await;

    // 429: the second failure locks the name; the next attempt shows the lock.
    let res = form.post(&app, &app.client, &alice(WRONG)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let form = LoginForm::of(res).await;
    let res = form.post(&app, &app.client, &alice(PASSWORD)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&res, "vigie_session").is_none());
    let form = LoginForm::of(res).await;

    // Once the lock ends, the form the 429 showed logs in.
    clock.advance(Duration::from_secs(15 * 60));
    let res = form.post(&app, &app.client, &alice(PASSWORD)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&res, "vigie_session").is_some());
}
