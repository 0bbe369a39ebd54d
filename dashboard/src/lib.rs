//! vigie's web app (axum): login, server-rendered French pages with plotters charts,
//! the JSON API under `/api/v1/`, `/healthz` and `/metrics`.
//!
//! Every page needs a login session and every API call a session or a bearer token;
//! every query is scoped to what the caller's user may see, so another member's
//! building answers 404 rather than 403. Only `/login`, `/healthz` and `/metrics` are
//! public. This crate reads the registry and the store; it must never write samples.
//!
//! Layout: [`auth`] (sessions, tokens, CSRF), [`throttle`] (login brute-force
//! protection), `api/` (JSON, one file per resource),
//! `pages/` (HTML, one file per page family), [`charts`], [`format`] (French numbers
//! and dates), [`openapi`], `health` (`/healthz`, `/metrics`).

pub mod api;
pub mod auth;
pub mod charts;
pub mod consumption;
pub mod error;
pub mod format;
mod health;
pub mod openapi;
pub mod pages;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use vigie_core::config::HttpConfig;
use vigie_core::metrics::Metrics;
use vigie_core::registry::Registry;
use vigie_core::store::TimeSeriesStore;

use crate::throttle::{Clock, LoginThrottle, SystemClock};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
#[non_exhaustive]
pub struct AppState {
    /// Members, buildings, devices, users, sessions.
    pub registry: Registry,
    /// The time-series store.
    pub store: Arc<dyn TimeSeriesStore>,
    /// The process's self-metrics (read for `/metrics` and `/healthz`).
    pub metrics: Arc<Metrics>,
    /// Lifetime of a login session.
    pub session_ttl: Duration,
    /// Whether the session cookie carries `Secure` (HTTPS only).
    pub secure_cookies: bool,
    /// Failed-login counters (per process, in memory).
    pub login_throttle: Arc<LoginThrottle>,
}

impl AppState {
    /// The state of a dashboard over these parts, with the default HTTP settings but
    /// for the session lifetime.
    pub fn new(
        registry: Registry,
        store: Arc<dyn TimeSeriesStore>,
        metrics: Arc<Metrics>,
        session_ttl: Duration,
    ) -> AppState {
        let http = HttpConfig {
            session_ttl: vigie_core::config::HumanDuration(session_ttl),
            ..HttpConfig::default()
        };
        AppState::with_http(registry, store, metrics, &http)
    }

    /// The state of a dashboard configured by `http` (session lifetime, `Secure`
    /// cookies, login brute-force protection).
    pub fn with_http(
        registry: Registry,
        store: Arc<dyn TimeSeriesStore>,
        metrics: Arc<Metrics>,
        http: &HttpConfig,
    ) -> AppState {
        AppState {
            registry,
            store,
            metrics,
            session_ttl: http.session_ttl.0,
            secure_cookies: http.secure_cookies,
            login_throttle: Arc::new(LoginThrottle::new(
                http.login_max_failures,
                http.login_lockout.0,
                Arc::new(SystemClock),
            )),
        }
    }

    /// The same state with a fresh login throttle reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> AppState {
        self.login_throttle = Arc::new(self.login_throttle.on_clock(clock));
        self
    }
}

/// The whole app: pages, API, login, health and metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .merge(pages::routes())
        .merge(api::routes())
        .fallback(error::not_found)
        .layer(middleware::from_fn(auth::refuse_cross_site))
        .layer(middleware::from_fn_with_state(
            state.secure_cookies,
            security_headers,
        ))
        .with_state(state)
}

/// The content security policy of every answer: nothing may load but same-origin
/// images and the embedded style sheet (by hash), no script at all, no framing, forms
/// post only here.
fn content_security_policy() -> &'static HeaderValue {
    static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
        let policy = format!(
            "default-src 'none'; style-src {}; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            pages::layout::style_source()
        );
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    });
    &CSP
}

/// Headers every answer carries: no framing, no sniffing, no caching of private data,
/// a content policy that allows no script at all (the pages need none) and, when the
/// dashboard is served over HTTPS (`secure_cookies`), HSTS.
async fn security_headers(
    State(https): State<bool>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    if https {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert_with(|| content_security_policy().clone());
    res
}

/// Serves the app on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "dashboard listening");
    }
    // The peer address feeds the login throttle (see `auth::client_addr`).
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
