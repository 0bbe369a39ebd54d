//! The login form and its session: `GET /login`, `POST /login` (password, throttle,
//! the form's own CSRF token), `POST /logout`, and the cookies they set.
//!
//! The form has no session yet, so it carries a token of its own (a double-submit
//! cookie, against login CSRF: a forged form logging the victim into the attacker's
//! account): every answer that shows the form (`GET /login`, and the refusals 401, 403
//! and 429) draws 256 fresh random bits and puts them both in the form's hidden
//! `csrf_token` field and in the cookie `vigie_login_csrf` (`HttpOnly; SameSite=Strict;
//! Path=/login; Max-Age=3600`, `Secure` when `http.secure_cookies` is on). `POST /login`
//! refuses with 403 and a fresh form, before the throttle and the password are
//! consulted (so it never counts as a failure), unless the field equals the cookie
//! (constant-time compare); a success clears the cookie. The server keeps no state
//! for it: the cookie's lifetime bounds the form's, and a form shown before another
//! tab loaded `/login` is refused once and shown again. [`super::refuse_cross_site`]
//! stays the first defence (it also stops a sibling sub-domain that could set cookies,
//! since `Sec-Fetch-Site` calls it `same-site`, not `same-origin`).
//!
//! `POST /login` goes through the [`LoginThrottle`](crate::throttle::LoginThrottle):
//! once a user name or a client address ([`client_addr`]) has too many recent
//! failures, attempts answer 429 with `Retry-After` and a French message, without the
//! password being checked; the session is opened only while the verified password is
//! still the user's ([`vigie_core::registry::Registry::login`]). This module must never
//! log a password or a token, and never redirect to another site after login.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use vigie_core::registry::Registry;

use super::{SESSION_COOKIE, SessionUser, constant_time_eq, cookie};
use crate::AppState;
use crate::error::PageError;
use crate::pages::login;
use crate::throttle::Locked;

/// Name of the login form's CSRF cookie (the form has no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "vigie_login_csrf";

/// Lifetime of the login form's CSRF cookie: a form older than that is refused once
/// (403) and shown again.
pub const LOGIN_CSRF_MAX_AGE_S: u64 = 3600;

/// What a login form with a missing, stale or forged CSRF token shows.
pub const LOGIN_FORM_EXPIRED: &str = "Le formulaire de connexion a expiré : réessayez.";

/// A local path to go to after login; anything else (another site, `//host`,
/// `/\host`) becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `GET /login`: the login form, with a fresh CSRF token and its cookie.
pub async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    login_form(StatusCode::OK, &next, None, state.secure_cookies)
}

/// The `Set-Cookie` value of the login form's CSRF token: `HttpOnly; SameSite=Strict;
/// Path=/login`, `Secure` when asked; `max_age_s` 0 clears the cookie.
pub fn login_csrf_cookie(token: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{LOGIN_CSRF_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; \
         Max-Age={max_age_s}{secure}"
    )
}

/// The login page answered with `status` (and `error` shown): its form and the
/// `vigie_login_csrf` cookie carry the same fresh token.
fn login_form(status: StatusCode, next: &str, error: Option<&str>, secure: bool) -> Response {
    let token = Registry::random_secret();
    let cookie = login_csrf_cookie(&token, LOGIN_CSRF_MAX_AGE_S, secure);
    let mut res = (status, login::page(next, &token, error)).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            res.headers_mut().append(header::SET_COOKIE, v);
            res
        }
        Err(e) => PageError::internal("building the login form's cookie", &e).into_response(),
    }
}

/// Whether the login form's `csrf_token` field is present and equals its cookie.
pub(super) fn login_csrf_matches(headers: &HeaderMap, sent: Option<&str>) -> bool {
    match (cookie(headers, LOGIN_CSRF_COOKIE), sent) {
        (Some(kept), Some(sent)) if !kept.is_empty() => {
            constant_time_eq(kept.as_bytes(), sent.as_bytes())
        }
        _ => false,
    }
}

/// The client address that the login throttle counts: the TCP peer or, when the peer
/// is a loopback address (a reverse proxy on the same machine, vigie's default set-up
/// behind HTTPS), the right-most address of `X-Forwarded-For`, which is the one that
/// proxy saw. A remote peer's `X-Forwarded-For` is ignored: anyone can write it.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    if !peer.is_loopback() {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|v| {
            v.parse::<IpAddr>()
                .ok()
                .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
        });
    Some(forwarded.unwrap_or(peer))
}

/// The caller's address as [`client_addr`] reads it (`None` when the app is served
/// without connection info).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = Option::<Extension<ConnectInfo<SocketAddr>>>::from_request_parts(parts, state)
            .await
            .ok()
            .flatten()
            .map(|Extension(ConnectInfo(a))| a.ip());
        Ok(ClientAddr(client_addr(peer, &parts.headers)))
    }
}

/// What a refused login shows for a lock: `Trop de tentatives : réessayez dans 5
/// minutes.`
pub fn too_many_attempts_message(locked: &Locked) -> String {
    match locked.minutes() {
        1 => "Trop de tentatives : réessayez dans 1 minute.".to_string(),
        n => format!("Trop de tentatives : réessayez dans {n} minutes."),
    }
}

fn too_many_attempts(next: &str, locked: &Locked, secure: bool) -> Response {
    let message = too_many_attempts_message(locked);
    let mut res = login_form(StatusCode::TOO_MANY_REQUESTS, next, Some(&message), secure);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(locked.seconds()));
    res
}

/// A user name as logged: at most 64 characters, control characters replaced.
fn logged_name(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `POST /login`: checks the form's CSRF token against its cookie (403 and a fresh
/// form if they differ, before anything else), then the password; opens a session and
/// sets its cookie. Refused with 429 while the user name or the client address is
/// locked out.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let next = safe_next(form.get("next").map(String::as_str));
    let name = form.get("username").map(|s| s.trim()).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let shown_addr = addr.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    let secure = state.secure_cookies;
    if !login_csrf_matches(&headers, form.get("csrf_token").map(String::as_str)) {
        tracing::warn!(
            user = logged_name(name),
            addr = shown_addr,
            "login refused: the form's CSRF token is missing or does not match its cookie"
        );
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some(LOGIN_FORM_EXPIRED),
            secure,
        );
    }
    let refused = |msg: &str| login_form(StatusCode::UNAUTHORIZED, &next, Some(msg), secure);
    if name.is_empty() || password.is_empty() {
        return refused("Saisissez votre identifiant et votre mot de passe.");
    }
    let attempt = match state.login_throttle.begin(name, addr) {
        Ok(attempt) => attempt,
        Err(locked) => {
            tracing::warn!(
                user = logged_name(name),
                addr = shown_addr,
                retry_after_s = locked.seconds(),
                "login refused: too many failed attempts"
            );
            return too_many_attempts(&next, &locked, secure);
        }
    };
    let ttl_ms = i64::try_from(state.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let (user, session) = match state.registry.login(name, password, ttl_ms).await {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            let lock = attempt.failed();
            tracing::warn!(
                user = logged_name(name),
                addr = shown_addr,
                "login failed: wrong user name or password"
            );
            if let Some(locked) = lock {
                tracing::warn!(
                    user = logged_name(name),
                    addr = shown_addr,
                    lockout_s = locked.seconds(),
                    "login locked out after too many failures"
                );
            }
            return refused("Identifiant ou mot de passe incorrect.");
        }
        Err(e) => {
            attempt.abandoned();
            return PageError::from(e).into_response();
        }
    };
    attempt.succeeded();
    tracing::info!(user = %user.name, addr = shown_addr, "login");
    let cookie = session_cookie(&session.token, state.session_ttl.as_secs(), secure);
    let mut res = Redirect::to(&next).into_response();
    // The session cookie first, then the login form's, cleared: its token is spent.
    for value in [cookie, login_csrf_cookie("", 0, secure)] {
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            Err(e) => {
                return PageError::internal("building the session cookie", &e).into_response();
            }
        }
    }
    res
}

/// The `Set-Cookie` value of a session: `HttpOnly; SameSite=Strict; Path=/`, `Secure`
/// when asked; `max_age_s` 0 clears the cookie.
pub fn session_cookie(token: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    )
}

/// `POST /logout`: ends the session (CSRF-checked) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    session: SessionUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    session.check_csrf(form.get("csrf_token").map(String::as_str))?;
    state
        .registry
        .delete_session(&session.session_token)
        .await?;
    let mut res = Redirect::to("/login").into_response();
    let cleared = HeaderValue::from_str(&session_cookie("", 0, state.secure_cookies))
        .map_err(|e| PageError::internal("building the session cookie", &e))?;
    res.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(res)
}
