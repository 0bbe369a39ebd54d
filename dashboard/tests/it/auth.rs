//! Login, sessions, tokens and cross-site refusal.

use reqwest::StatusCode;
use reqwest::header::COOKIE;

use crate::{PASSWORD, TestApp, csrf_of, location, set_cookie};

#[tokio::test]
async fn a_page_without_session_redirects_to_login_with_the_page_to_return_to() {
    let app = TestApp::start().await;
    let res = app.get("/buildings/mairie-a").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login?next=/buildings/mairie-a");
    let login = app.get("/login?next=/buildings/mairie-a").await;
    assert_eq!(login.status(), StatusCode::OK);
    let html = login.text().await.expect("body");
    assert!(html.contains("value=\"/buildings/mairie-a\""), "{html}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_a_cookie() {
    let app = TestApp::start().await;
    for (user, password) in [("alice", "not the password"), ("nobody", PASSWORD)] {
        let res = app
            .post_login(&app.client, &[("username", user), ("password", password)])
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(set_cookie(&res, "vigie_session").is_none());
        let html = res.text().await.expect("body");
        assert!(html.contains("Identifiant ou mot de passe incorrect"));
    }
}

#[tokio::test]
async fn the_right_password_sets_a_strict_http_only_cookie_that_opens_the_pages() {
    let app = TestApp::start().await;
    let res = app
        .post_login(
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
    let set = set_cookie(&res, "vigie_session").expect("cookie");
    assert!(set.starts_with("vigie_session="), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().expect("pair");
    let (status, html) = app.page(cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Mairie d&#39;Alpha") || html.contains("Mairie d'Alpha"),
        "{html}"
    );
    assert!(html.contains("alice"));
    assert!(
        !html.contains("École de Bêta"),
        "alice sees commune-b: {html}"
    );
}

#[tokio::test]
async fn login_never_redirects_to_another_site() {
    let app = TestApp::start().await;
    let res = app
        .post_login(
            &app.client,
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_then_ends_the_session() {
    let app = TestApp::start().await;
    let cookie = app.login("alice").await;
    let (_, html) = app.page(&cookie, "/").await;
    let csrf = csrf_of(&html);

    let forged = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.page(&cookie, "/").await.0, StatusCode::OK);

    let res = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login");
    assert_eq!(app.page(&cookie, "/").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_cross_site_post_is_refused_even_with_a_valid_session_and_token() {
    let app = TestApp::start().await;
    let cookie = app.login("alice").await;
    let (_, html) = app.page(&cookie, "/").await;
    let csrf = csrf_of(&html);
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let res = app
            .client
            .post(app.url("/logout"))
            .header(COOKIE, &cookie)
            .header(name, value)
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name}");
    }
    // The session survived both attempts.
    assert_eq!(app.page(&cookie, "/").await.0, StatusCode::OK);
    // A cross-site login attempt is refused too, even with the form's cookie and token.
    let form = app.login_form(&app.client).await;
    let res = app
        .client
        .post(app.url("/login"))
        .header(COOKIE, &form.cookie)
        .header("origin", "https://evil.example")
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", form.token.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&res, "vigie_session").is_none());
    let html = res.text().await.expect("body");
    assert!(html.contains("un autre site"), "{html}");
    // The same origin is accepted.
    let res = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .header("origin", app.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_api_answers_401_json_without_a_valid_token_and_accepts_a_session() {
    let app = TestApp::start().await;
    let res = app.get("/api/v1/buildings").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("Bearer"));

    let res = app.api("vigie_not_a_token", "/api/v1/buildings").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let cookie = app.login("bob").await;
    let res = app
        .client
        .get(app.url("/api/v1/buildings"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    let ids: Vec<_> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["ecole-b"]);
}
