//! Integration tests of the dashboard: a real SQLite registry and store in a tempdir,
//! the real app served on 127.0.0.1:0 with `serve`, real HTTP with reqwest.

mod api;
mod auth;
mod brute_force;
mod login_csrf;
mod ops;
mod pages;
mod security;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use tokio::sync::oneshot;
use vigie_core::Quantity;
use vigie_core::config::{HttpConfig, HumanDuration};
use vigie_core::db::Db;
use vigie_core::ids::{DeviceId, SeriesId};
use vigie_core::metrics::Metrics;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry, Role};
use vigie_core::store::{Sample, SqliteStore};
use vigie_core::time::Timestamp;
use vigie_dashboard::auth::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use vigie_dashboard::throttle::ManualClock;
use vigie_dashboard::{AppState, serve};

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const XSS_NAME: &str = "<script>alert(1)</script>";

/// One running dashboard over a fresh data dir with two members:
/// - commune-a: buildings `mairie-a` (electricity, gas, air quality) and `xss-a`
///   (named [`XSS_NAME`]); manager `alice`;
/// - commune-b: building `ecole-b` (electricity); manager `bob`;
/// - `admin` sees everything.
pub(crate) struct TestApp {
    pub base: String,
    pub client: Client,
    pub registry: Registry,
    pub store: SqliteStore,
    pub metrics: Arc<Metrics>,
    pub alice_token: String,
    pub admin_token: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

pub(crate) fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).expect("valid instant")
}

impl TestApp {
    pub(crate) async fn start() -> TestApp {
        let http = HttpConfig {
            session_ttl: HumanDuration(Duration::from_secs(3600)),
            ..HttpConfig::default()
        };
        TestApp::start_with(&http, None).await
    }

    /// A dashboard configured by `http`, its login throttle on `clock` when given.
    pub(crate) async fn start_with(http: &HttpConfig, clock: Option<Arc<ManualClock>>) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_dir(dir.path()).expect("open db");
        let registry = Registry::new(db.clone());
        let store = SqliteStore::new(db);
        for (m, name) in [
            ("commune-a", "Commune d'Alpha"),
            ("commune-b", "Commune de Bêta"),
        ] {
            registry
                .upsert_member(&Member {
                    id: id(m),
                    name: name.into(),
                    kind: "commune".into(),
                })
                .await
                .expect("member");
        }
        for (b, m, name) in [
            ("mairie-a", "commune-a", "Mairie d'Alpha"),
            ("xss-a", "commune-a", XSS_NAME),
            ("ecole-b", "commune-b", "École de Bêta"),
        ] {
            registry
                .upsert_building(&Building {
                    id: id(b),
                    member_id: id(m),
                    name: name.into(),
                    address: "1 place de la République".into(),
                    floor_area_m2: Some(1250.0),
                    usage: "bureaux".into(),
                    gas_pcs_kwh_per_m3: 11.2,
                })
                .await
                .expect("building");
        }
        for (d, b, kind, room) in [
            (
                "mairie-a-elec",
                "mairie-a",
                DeviceKind::ElectricityMeter,
                "",
            ),
            ("mairie-a-gas", "mairie-a", DeviceKind::GasMeter, ""),
            (
                "mairie-a-air",
                "mairie-a",
                DeviceKind::AirQuality,
                "Salle du conseil",
            ),
            ("ecole-b-elec", "ecole-b", DeviceKind::ElectricityMeter, ""),
        ] {
            let mut device = Device::new(id(d), Some(id(b)), kind);
            device.room = room.into();
            registry.upsert_device(&device).await.expect("device");
        }
        let r = registry.clone();
        let (alice_token, admin_token) = tokio::task::spawn_blocking(move || {
            r.create_user_blocking("admin", Role::Admin, None, PASSWORD)
                .expect("admin");
            r.create_user_blocking("alice", Role::Manager, Some(&id("commune-a")), PASSWORD)
                .expect("alice");
            r.create_user_blocking("bob", Role::Manager, Some(&id("commune-b")), PASSWORD)
                .expect("bob");
            (
                r.create_token_blocking("alice").expect("token"),
                r.create_token_blocking("admin").expect("token"),
            )
        })
        .await
        .expect("users");

        let metrics = Arc::new(Metrics::new());
        let mut state = AppState::with_http(
            registry.clone(),
            Arc::new(store.clone()),
            metrics.clone(),
            http,
        );
        if let Some(clock) = clock {
            state = state.with_clock(clock);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        TestApp {
            base,
            client,
            registry,
            store,
            metrics,
            alice_token,
            admin_token,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    pub(crate) async fn series(&self, device: &str, q: Quantity) -> SeriesId {
        self.registry
            .series_id(&id::<DeviceId>(device), q)
            .await
            .expect("series")
    }

    /// Writes `(instant, value)` samples of one series directly in the store.
    pub(crate) async fn write(&self, device: &str, q: Quantity, values: &[(Timestamp, f64)]) {
        let series = self.series(device, q).await;
        let samples: Vec<Sample> = values
            .iter()
            .map(|&(ts, value)| Sample { series, ts, value })
            .collect();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(&samples))
            .await
            .expect("join")
            .expect("write");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub(crate) async fn api(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET api")
    }

    pub(crate) async fn api_json(&self, token: &str, path: &str) -> serde_json::Value {
        let res = self.api(token, path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.json().await.expect("json")
    }

    /// Logs in through the form (`GET /login`, then `POST /login` with its cookie and
    /// token); returns the `Cookie` header value to send.
    pub(crate) async fn login(&self, user: &str) -> String {
        let res = self
            .post_login(
                &self.client,
                &[("username", user), ("password", PASSWORD), ("next", "/")],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let set = set_cookie(&res, SESSION_COOKIE).expect("session cookie");
        set.split(';').next().expect("pair").to_string()
    }

    /// The login form as `GET /login` shows it to `client`.
    pub(crate) async fn login_form(&self, client: &Client) -> LoginForm {
        let res = client
            .get(self.url("/login"))
            .send()
            .await
            .expect("GET /login");
        assert_eq!(res.status(), StatusCode::OK);
        LoginForm::of(res).await
    }

    /// `POST /login` by `client` with `fields`, as a browser sends the form it just
    /// got from `GET /login` (its cookie and its `csrf_token` field).
    pub(crate) async fn post_login(&self, client: &Client, fields: &[(&str, &str)]) -> Response {
        let form = self.login_form(client).await;
        form.post(self, client, fields).await
    }

    pub(crate) async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let res = self
            .client
            .get(self.url(path))
            .header(COOKIE, cookie)
            .send()
            .await
            .expect("GET page");
        (res.status(), res.text().await.expect("body"))
    }

    pub(crate) async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) fn location(res: &Response) -> String {
    res.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A login form as a browser holds it: the `vigie_login_csrf` cookie set with the
/// page and the token of its hidden field.
pub(crate) struct LoginForm {
    /// `vigie_login_csrf=…`, as a `Cookie` header value.
    pub cookie: String,
    /// The form's `csrf_token` field.
    pub token: String,
}

impl LoginForm {
    /// The form of a page that shows one (`GET /login` or a refused login), which
    /// must set its cookie.
    pub(crate) async fn of(res: Response) -> LoginForm {
        let set = set_cookie(&res, LOGIN_CSRF_COOKIE).expect("login form cookie");
        let cookie = set.split(';').next().expect("pair").to_string();
        let html = res.text().await.expect("body");
        LoginForm {
            cookie,
            token: csrf_of(&html),
        }
    }

    /// `POST /login` by `client` with `fields`, this form's cookie and token.
    pub(crate) async fn post(
        &self,
        app: &TestApp,
        client: &Client,
        fields: &[(&str, &str)],
    ) -> Response {
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &self.token));
        client
            .post(app.url("/login"))
            .header(COOKIE, &self.cookie)
            .form(&fields)
            .send()
            .await
            .expect("POST /login")
    }
}

/// The whole `Set-Cookie` value that sets cookie `name`, among the answer's.
pub(crate) fn set_cookie(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.split_once('=').is_some_and(|(n, _)| n == name))
        .map(str::to_string)
}

/// The value of the hidden `csrf_token` field in a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf_token\"").expect("csrf field");
    let rest = &html[at..];
    let v = rest.find("value=\"").expect("value") + 7;
    rest[v..v + rest[v..].find('"').expect("end")].to_string()
}
