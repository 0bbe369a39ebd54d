//! The newcomer's first start: `vigie run` on an empty data dir with the embedded
//! defaults (the README's first command) fills itself with a year of simulated history,
//! and after logging in through the login form the dashboard lists at least three
//! buildings of two members whose pages carry non-empty 30-day and 12-month charts for
//! electricity, gas and water. How long it takes is measured, not asserted (README and
//! the closing notes give the figure on a 2-core machine).

// Test helpers: a failed setup step should stop the test with its error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Days;
use reqwest::header::{COOKIE, SET_COOKIE};
use vigie_core::Timestamp;
use vigie_core::time::local_date;

use crate::server::{ADMIN_PASSWORD, TestServer};

/// Daily consumption values of `energy` for the 30 days up to today (Paris).
async fn last_30_days(server: &TestServer, token: &str, building: &str, energy: &str) -> usize {
    let today = local_date(Timestamp::now());
    let from = today.checked_sub_days(Days::new(29)).unwrap();
    let rows = server
        .get_json(
            token,
            &format!(
                "/api/v1/buildings/{building}/consumption?energy={energy}&from={from}&to={today}&step=day"
            ),
        )
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["value"].is_number())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_shows_three_buildings_with_a_year_of_consumption_after_login() {
    // No configuration at all: the embedded defaults, as `cargo run --release -- run`.
    let started = Instant::now();
    let server = TestServer::start("", &[]).await;
    let token = server.admin_token();

    let buildings = server.get_json(&token, "/api/v1/buildings").await;
    let buildings: Vec<(String, String)> = buildings
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["member_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(buildings.len() >= 3, "{buildings:?}");
    let members: BTreeSet<&str> = buildings.iter().map(|(_, m)| m.as_str()).collect();
    assert!(members.len() >= 2, "{members:?}");

    // Wait (generously: CI runs tests in parallel, in debug) for the backfill to land.
    let deadline = Instant::now() + Duration::from_secs(300);
    'wait: loop {
        let mut full = true;
        for (b, _) in &buildings {
            for energy in ["electricity", "gas", "water"] {
                full &= last_30_days(&server, &token, b, energy).await == 30;
            }
        }
        if full {
            break 'wait;
        }
        assert!(
            Instant::now() < deadline,
            "the year of history did not arrive; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "first start: 30 full days for every building and energy after {:.1} s (debug build)",
        started.elapsed().as_secs_f64()
    );

    // Log in through the form, as a person would.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client.get(server.url("/login")).send().await.unwrap();
    let form_cookie = set_cookie(&form, "vigie_login_csrf").expect("a login form cookie");
    let html = form.text().await.unwrap();
    let field = "name=\"csrf_token\" value=\"";
    let at = html.find(field).expect("the form's csrf_token") + field.len();
    let form_token = &html[at..at + html[at..].find('"').unwrap()];
    let res = client
        .post(server.url("/login"))
        .header(COOKIE, form_cookie)
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", form_token),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "login: {}", res.status());
    let cookie = set_cookie(&res, "vigie_session").expect("a session cookie");
    let page = |path: String| {
        let (client, cookie, url) = (client.clone(), cookie.clone(), server.url(&path));
        async move {
            let r = client.get(url).header(COOKIE, cookie).send().await.unwrap();
            assert!(r.status().is_success(), "GET {path}: {}", r.status());
            r.text().await.unwrap()
        }
    };

    let list = page("/".into()).await;
    for (b, _) in &buildings {
        assert!(list.contains(&format!("/buildings/{b}")), "{b} not listed");
        let html = page(format!("/buildings/{b}")).await;
        for energy in ["Électricité", "Gaz", "Eau"] {
            for span in ["par jour, 30 derniers jours", "par mois, 12 derniers mois"] {
                assert!(
                    html.contains(&format!("{energy} — {span}")),
                    "{b}: no chart '{energy} — {span}'"
                );
            }
        }
        assert_eq!(html.matches("<svg").count(), 6, "{b}: six charts");
        assert!(!html.contains("Aucune donnée"), "{b}: an empty chart");
    }
}

/// The `name=value` pair of the cookie `name` that an answer sets.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
        .map(str::to_string)
}
