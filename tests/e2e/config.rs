//! Start-up refuses a bad configuration with one line naming the file and the key;
//! the secrets a configuration (and a session) holds never reach the log.

use std::process::Command;

use crate::server::{free_addr, vigie_bin};

#[test]
fn a_bad_config_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[ingest]\nbatch_linger = \"soon\"\n").expect("write");
    let out = Command::new(vigie_bin())
        .args(["run", "--config"])
        .arg(&path)
        .env("VIGIE_DATA_DIR", dir.path().join("data"))
        .env("VIGIE_HTTP_ADDR", free_addr().to_string())
        .env("VIGIE_MQTT_LISTEN", free_addr().to_string())
        .output()
        .expect("run vigie");
    assert!(!out.status.success(), "vigie started with a bad config");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(
        line.contains("bad.toml") && line.contains("ingest.batch_linger"),
        "{err}"
    );
    assert!(
        line.contains("\"soon\"") && line.contains("expected a duration"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing should be created before the config is valid"
    );
}

#[test]
fn a_bad_environment_override_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(vigie_bin())
        .arg("run")
        .env("VIGIE_DATA_DIR", dir.path().join("data"))
        .env("VIGIE_HTTP_ADDR", "somewhere")
        .output()
        .expect("run vigie");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VIGIE_HTTP_ADDR") && err.contains("\"somewhere\""),
        "{err}"
    );
}

/// Secrets this test hands to vigie (config file, environment, login form, API), none
/// of which may reach the log.
const MQTT_PASSWORD: &str = "mqtt-secret-Zq81xv";
const TSDB_TOKEN: &str = "tsdb-secret-Kp27wd";
const ADMIN_PASSWORD: &str = "admin-secret-Hn40ue";
const WRONG_PASSWORD: &str = "wrong-secret-Vb52kt";
const WRONG_TOKEN: &str = "vigie_wrongsecret0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_config_the_login_form_and_the_api_never_reach_the_log() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vigie.toml");
    std::fs::write(
        &config,
        format!(
            "[simulator]\nbuildings = 1\nbackfill_days = 0\ninterval = \"1h\"\n\
             [mqtt]\nusername = \"ingest-user\"\npassword = \"{MQTT_PASSWORD}\"\n\
             [tsdb]\ntoken = \"{TSDB_TOKEN}\"\n"
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("vigie.log");
    let (http, mqtt) = (free_addr(), free_addr());
    let env = [
        (
            "VIGIE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("VIGIE_HTTP_ADDR", http.to_string()),
        ("VIGIE_MQTT_LISTEN", mqtt.to_string()),
        ("VIGIE_MQTT_URL", String::new()),
        ("VIGIE_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        // More verbose than any operator would make it: every library, every level.
        ("RUST_LOG", "trace".to_string()),
    ];
    let mut child = Command::new(vigie_bin())
        .args(["run", "--config"])
        .arg(&config)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn vigie");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let url = |path: &str| format!("http://{http}{path}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(url("/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "vigie not healthy:\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A failed and a successful login (each through the form and its CSRF cookie, as
    // the page showing it set them), a page, a logout.
    let login_form = client.get(url("/login")).send().await.expect("GET /login");
    let (form_cookie, form_token) = login_form_of(login_form).await;
    let wrong = client
        .post(url("/login"))
        .header("cookie", &form_cookie)
        .form(&[
            ("username", "admin"),
            ("password", WRONG_PASSWORD),
            ("csrf_token", form_token.as_str()),
        ])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let (retry_cookie, retry_token) = login_form_of(wrong).await;
    let login = client
        .post(url("/login"))
        .header("cookie", &retry_cookie)
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", retry_token.as_str()),
        ])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let session = cookie.split_once('=').expect("name=value").1.to_string();
    let home = client
        .get(url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("body");
    let field = "name=\"csrf_token\" value=\"";
    let at = home.find(field).expect("csrf field") + field.len();
    let csrf = home[at..at + home[at..].find('"').expect("end")].to_string();
    let logout = client
        .post(url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("POST /logout");
    assert_eq!(logout.status(), reqwest::StatusCode::SEE_OTHER);

    // An API token, used; a wrong one, refused.
    let out = Command::new(vigie_bin())
        .args(["user", "token", "admin", "--config"])
        .arg(&config)
        .envs(env.iter().cloned())
        .output()
        .expect("vigie user token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    for (t, status) in [
        (token.as_str(), reqwest::StatusCode::OK),
        (WRONG_TOKEN, reqwest::StatusCode::UNAUTHORIZED),
    ] {
        let res = client
            .get(url("/api/v1/buildings"))
            .bearer_auth(t)
            .send()
            .await
            .expect("GET api");
        assert_eq!(res.status(), status);
    }

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = log();
    assert!(log.contains("login"), "the log was not captured:\n{log}");
    for (what, secret) in [
        ("mqtt.password", MQTT_PASSWORD),
        ("tsdb.token", TSDB_TOKEN),
        ("VIGIE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("a wrong password typed at login", WRONG_PASSWORD),
        ("a wrong bearer token", WRONG_TOKEN),
        ("the API token", token.as_str()),
        ("the session cookie", session.as_str()),
        ("the CSRF token", csrf.as_str()),
        ("the login form's CSRF token", form_token.as_str()),
        ("the retried login form's CSRF token", retry_token.as_str()),
        ("an argon2 hash", "$argon2"),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}

/// The `vigie_login_csrf=…` cookie pair and the `csrf_token` field of a page showing
/// the login form.
async fn login_form_of(res: reqwest::Response) -> (String, String) {
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vigie_login_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("login form cookie")
        .to_string();
    let html = res.text().await.expect("body");
    let field = "name=\"csrf_token\" value=\"";
    let at = html.find(field).expect("csrf field") + field.len();
    let token = html[at..at + html[at..].find('"').expect("end")].to_string();
    (cookie, token)
}
