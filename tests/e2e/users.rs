//! An admin's token and password chores on a running vigie, through the real binary:
//! `vigie user token --label`, `vigie user tokens` (listed, never shown again),
//! `vigie user revoke-token` (the API refuses it at once), and `vigie user password`
//! (the old password and every open session stop working).

use std::io::Write;
use std::process::{Output, Stdio};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

use crate::server::{ADMIN_PASSWORD, LIGHT_CONFIG, TestServer};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `vigie ARGS` on the server's data dir and asserts that it succeeded.
fn vigie_ok(server: &TestServer, args: &[&str]) -> String {
    let out = server.vigie(args);
    assert!(
        out.status.success(),
        "vigie {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The row of `vigie user tokens NAME` whose label is `label`, split on whitespace.
fn listed_row(server: &TestServer, name: &str, label: &str) -> Option<Vec<String>> {
    let listing = vigie_ok(server, &["user", "tokens", name]);
    listing
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.get(1).map(String::as_str) == Some(label))
}

/// Runs `vigie ARGS` with `input` on its standard input.
fn vigie_with_stdin(server: &TestServer, args: &[&str], input: &str) -> Output {
    let mut child = server
        .vigie_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigie");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

async fn buildings_status(server: &TestServer, token: &str) -> StatusCode {
    server
        .client
        .get(server.url("/api/v1/buildings"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/buildings")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_token_is_listed_without_its_secret_and_stops_working_once_revoked() {
    let server = TestServer::start(LIGHT_CONFIG, &[]).await;
    let out = server.vigie(&["user", "token", "admin", "--label", "grafana"]);
    assert!(out.status.success(), "user token: {}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("vigie_"), "{token}");
    let secret_part = token.trim_start_matches("vigie_");

    let listing = vigie_ok(&server, &["user", "tokens", "admin"]);
    assert!(listing.contains("grafana"), "{listing}");
    assert!(
        !listing.contains(secret_part),
        "the listing shows the token"
    );
    assert!(
        !listing.contains(&secret_part[..16]),
        "the listing shows part of the token"
    );
    let row = listed_row(&server, "admin", "grafana").expect("grafana row");
    let id = row[0].clone();
    assert!(id.parse::<i64>().is_ok(), "{listing}");
    // ID, label, created (date, time), last used (`never`), expires (`never`).
    assert_eq!(row[4..], ["never", "never"], "{listing}");

    assert_eq!(buildings_status(&server, &token).await, StatusCode::OK);
    let row = listed_row(&server, "admin", "grafana").expect("grafana row");
    assert_ne!(row[4], "never", "last use not recorded: {row:?}");

    let revoked = vigie_ok(&server, &["user", "revoke-token", &id]);
    assert!(
        revoked.contains(&id) && revoked.contains("grafana"),
        "{revoked}"
    );
    assert_eq!(
        buildings_status(&server, &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(listed_row(&server, "admin", "grafana").is_none());

    // Errors name what is unknown.
    let again = server.vigie(&["user", "revoke-token", &id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains(&format!("no API token with id {id}")),
        "{}",
        stderr(&again)
    );
    let nobody = server.vigie(&["user", "tokens", "nobody"]);
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains("nobody"), "{}", stderr(&nobody));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_expiry_is_listed_with_it() {
    let server = TestServer::start(LIGHT_CONFIG, &[]).await;
    let token = vigie_ok(
        &server,
        &[
            "user",
            "token",
            "admin",
            "--label",
            "ci",
            "--expires-in",
            "30",
        ],
    );
    let token = token.trim();
    let row = listed_row(&server, "admin", "ci").expect("ci row");
    // ID, label, created (2 cells), last used, expires (2 cells: a date and a time).
    assert_eq!(row.len(), 7, "{row:?}");
    assert!(row[5].contains('/') && row[6].contains(':'), "{row:?}");
    assert_ne!(row[5], row[2], "expires the day it was created: {row:?}");
    assert_eq!(buildings_status(&server, token).await, StatusCode::OK);
    let zero = server.vigie(&["user", "token", "admin", "--expires-in", "0"]);
    assert!(
        !zero.status.success(),
        "a token that never worked was issued"
    );
}

/// The status of a login through the form (`GET /login` for its CSRF cookie and
/// field, then `POST /login`) and the `vigie_session=…` pair it set, if any.
async fn login(
    server: &TestServer,
    client: &reqwest::Client,
    password: &str,
) -> (StatusCode, Option<String>) {
    let form = client
        .get(server.url("/login"))
        .send()
        .await
        .expect("GET /login");
    let form_cookie = set_cookie(&form, "vigie_login_csrf=").expect("login form cookie");
    let html = form.text().await.expect("login form");
    let field = "name=\"csrf_token\" value=\"";
    let at = html.find(field).expect("csrf field") + field.len();
    let csrf = &html[at..at + html[at..].find('"').expect("end of field")];
    let res = client
        .post(server.url("/login"))
        .header(COOKIE, form_cookie)
        .form(&[
            ("username", "admin"),
            ("password", password),
            ("csrf_token", csrf),
        ])
        .send()
        .await
        .expect("POST /login");
    (res.status(), set_cookie(&res, "vigie_session="))
}

/// The `name=value` pair of the cookie set by `res` whose pair starts with `prefix`.
fn set_cookie(res: &reqwest::Response, prefix: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(prefix))
        .map(str::to_string)
}

async fn api_status_with_cookie(server: &TestServer, cookie: &str) -> StatusCode {
    server
        .client
        .get(server.url("/api/v1/buildings"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("GET /api/v1/buildings")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_refuses_the_old_password_and_ends_open_sessions() {
    let server = TestServer::start(LIGHT_CONFIG, &[]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (status, cookie) = login(&server, &client, ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("session cookie");
    assert_eq!(
        api_status_with_cookie(&server, &cookie).await,
        StatusCode::OK
    );
    let token = server.admin_token();

    let new_password = "a brand new password";
    let out = vigie_with_stdin(
        &server,
        &["user", "password", "admin", "--password-stdin"],
        &format!("{new_password}\n"),
    );
    assert!(out.status.success(), "user password: {}", stderr(&out));
    assert!(
        stdout(&out).contains("1 login session ended"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains(new_password) && !stderr(&out).contains(new_password));

    // The stolen cookie is dead, the old password logs in nowhere, the new one does.
    assert_eq!(
        api_status_with_cookie(&server, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, &client, ADMIN_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let registry = vigie_core::registry::Registry::new(
        vigie_core::db::Db::open_dir(&server.dir.path().join("data")).expect("open registry"),
    );
    assert!(
        registry
            .verify_password("admin", ADMIN_PASSWORD)
            .await
            .expect("verify")
            .is_none()
    );
    assert_eq!(
        login(&server, &client, new_password).await.0,
        StatusCode::SEE_OTHER
    );
    // API tokens are not sessions: they stay until revoked.
    assert_eq!(buildings_status(&server, &token).await, StatusCode::OK);

    let unknown = vigie_with_stdin(
        &server,
        &["user", "password", "nobody", "--password-stdin"],
        "whatever password\n",
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("\"nobody\""),
        "{}",
        stderr(&unknown)
    );
}
