//! Who is calling: login sessions (cookie `vigie_session`), API bearer tokens, CSRF,
//! and the login form's brute-force protection.
//!
//! Pages take a [`SessionUser`] (no session: redirect to `/login?next=…`); API handlers
//! take an [`ApiCaller`] (bearer token or session; neither: 401 JSON). The session
//! cookie is `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when
//! `http.secure_cookies` is on (behind an HTTPS reverse proxy; off by default because
//! vigie serves plain HTTP on loopback). Cross-site writes are refused twice:
//! [`refuse_cross_site`] rejects any non-GET/HEAD request whose `Origin` or
//! `Sec-Fetch-Site` says it comes from another site, and every form carries the
//! session's CSRF token, checked by [`SessionUser::check_csrf`]. An API write (POST…)
//! authenticated by the session cookie rather than a bearer token must carry the same
//! token in [`CSRF_HEADER`].
//!
//! The login form ([`login`]) has no session yet: it carries a CSRF token of its own
//! and goes through the login throttle. This module must never log a password or a
//! token (session, API or CSRF).

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use vigie_core::registry::{Role, User};

use crate::AppState;
use crate::error::{ApiError, PageError};

mod login;

pub use login::{
    ClientAddr, LOGIN_CSRF_COOKIE, LOGIN_CSRF_MAX_AGE_S, LOGIN_FORM_EXPIRED, client_addr, login,
    login_csrf_cookie, login_page, logout, safe_next, session_cookie, too_many_attempts_message,
};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "vigie_session";

/// Header carrying the session's CSRF token on an API write authenticated by the
/// session cookie (a bearer token needs none: browsers never send it on their own).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A user with a live login session (pages and forms).
#[derive(Clone)]
pub struct SessionUser {
    /// The user.
    pub user: User,
    /// The session's CSRF token, to embed in forms.
    pub csrf_token: String,
    /// The session cookie's value.
    session_token: String,
}

impl std::fmt::Debug for SessionUser {
    /// The secrets (cookie value, CSRF token) are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionUser")
            .field("user", &self.user)
            .field("csrf_token", &"<redacted>")
            .field("session_token", &"<redacted>")
            .finish()
    }
}

impl SessionUser {
    /// Checks the CSRF token a form sent against the session's.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), PageError> {
        match sent {
            Some(s) if constant_time_eq(s.as_bytes(), self.csrf_token.as_bytes()) => Ok(()),
            _ => Err(PageError {
                status: StatusCode::FORBIDDEN,
                message: "Jeton de sécurité du formulaire absent ou périmé : rechargez la \
                          page et recommencez."
                    .into(),
            }),
        }
    }
}

/// A caller of the JSON API, by bearer token or session.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The user.
    pub user: User,
}

/// Whether the user belongs to the agency's staff (sees every member, quarantine…).
pub fn is_staff(user: &User) -> bool {
    matches!(user.role, Role::Admin | Role::Technician)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionUser>, vigie_core::db::DbError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    Ok(state
        .registry
        .session(token)
        .await?
        .map(|(user, csrf_token)| SessionUser {
            user,
            csrf_token,
            session_token: token.to_string(),
        }))
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session_of(state, &parts.headers).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                Err(Redirect::to(&format!("/login?next={}", percent_encode(next))).into_response())
            }
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            // A token that is present but wrong is refused, never ignored in favour
            // of a cookie.
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .filter(|t| !t.is_empty())
                .ok_or_else(ApiError::unauthorized)?;
            return match state.registry.user_by_token(token).await? {
                Some(user) => Ok(ApiCaller { user }),
                None => Err(ApiError::unauthorized()),
            };
        }
        let Some(session) = session_of(state, &parts.headers).await? else {
            return Err(ApiError::unauthorized());
        };
        // A browser sends the cookie with any request, a forged one too: a write
        // authorised by the cookie alone must also carry the session's CSRF token.
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), session.csrf_token.as_bytes()))
            {
                tracing::warn!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    user = %session.user.name,
                    "API write by session cookie without its CSRF token refused"
                );
                return Err(ApiError::forbidden(
                    "a write authenticated by the session cookie needs the session's CSRF \
                     token in X-CSRF-Token (or use Authorization: Bearer <token>)",
                ));
            }
        }
        Ok(ApiCaller { user: session.user })
    }
}

/// Percent-encodes everything but unreserved characters and `/` (for `next=`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a request is cross-site, if it is: `Sec-Fetch-Site` other than `same-origin`
/// or `none`; without `Sec-Fetch-Site` (older browsers), an `Origin` whose host is not
/// the `Host` the request was sent to. A browser's `Sec-Fetch-Site` is authoritative
/// (no page can set it), and unlike `Host` it survives a reverse proxy that rewrites
/// `Host` to the upstream address.
fn cross_site_reason(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => None,
            _ => Some("Sec-Fetch-Site"),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => {}
            _ => return Some("Origin"),
        }
    }
    None
}

/// Middleware: refuses a non-GET/HEAD request sent from another site (403).
pub async fn refuse_cross_site(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        && let Some(header) = cross_site_reason(req.headers())
    {
        tracing::warn!(method = %req.method(), path = req.uri().path(), header, "cross-site request refused");
        if req.uri().path().starts_with("/api/") {
            return ApiError::forbidden(&format!("cross-site request refused ({header})"))
                .into_response();
        }
        return PageError {
            status: StatusCode::FORBIDDEN,
            message: "Requête refusée : elle vient d'un autre site.".into(),
        }
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use axum::http::HeaderValue;

    use super::login::login_csrf_matches;
    use super::*;
    use crate::throttle::Locked;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/buildings/x?a=1")), "/buildings/x?a=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn same_origin_requests_pass_and_cross_site_ones_are_named() {
        let same = headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert_eq!(cross_site_reason(&same), None);
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(cross_site_reason(&none), None);
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert_eq!(cross_site_reason(&other), Some("Origin"));
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:8080")]);
        assert_eq!(cross_site_reason(&null), Some("Origin"));
        let fetch = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(cross_site_reason(&fetch), Some("Sec-Fetch-Site"));
        let fetch_same = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(cross_site_reason(&fetch_same), None);
        // Behind a proxy that rewrites Host, the browser's Sec-Fetch-Site decides.
        let proxied = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://vigie.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert_eq!(cross_site_reason(&proxied), None);
        let proxied_cross = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert_eq!(cross_site_reason(&proxied_cross), Some("Sec-Fetch-Site"));
    }

    #[test]
    fn cookies_are_found_among_several() {
        let h = headers(&[("cookie", "a=1; vigie_session=abc ; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_client_address_is_the_peer_unless_a_local_proxy_forwarded_one() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let fwd = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")]);
        // A local reverse proxy: the right-most forwarded address is the one it saw.
        assert_eq!(
            client_addr(Some(ip("127.0.0.1")), &fwd),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(client_addr(Some(ip("::1")), &fwd), Some(ip("198.51.100.7")));
        // A remote peer cannot choose its address.
        assert_eq!(
            client_addr(Some(ip("192.0.2.1")), &fwd),
            Some(ip("192.0.2.1"))
        );
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(
            client_addr(Some(ip("127.0.0.1")), &garbage),
            Some(ip("127.0.0.1"))
        );
        let with_port = headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]);
        assert_eq!(
            client_addr(Some(ip("127.0.0.1")), &with_port),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client_addr(None, &fwd), None);
    }

    #[test]
    fn the_lockout_message_counts_whole_minutes_in_french() {
        let msg = |s| {
            too_many_attempts_message(&Locked {
                retry_after: std::time::Duration::from_secs(s),
            })
        };
        assert_eq!(msg(300), "Trop de tentatives : réessayez dans 5 minutes.");
        assert_eq!(msg(241), "Trop de tentatives : réessayez dans 5 minutes.");
        assert_eq!(msg(59), "Trop de tentatives : réessayez dans 1 minute.");
    }

    #[test]
    fn the_login_form_token_must_equal_its_cookie() {
        let h = headers(&[("cookie", "a=1; vigie_login_csrf=abc123")]);
        assert!(login_csrf_matches(&h, Some("abc123")));
        assert!(!login_csrf_matches(&h, Some("abc124")));
        assert!(!login_csrf_matches(&h, Some("")));
        assert!(!login_csrf_matches(&h, None));
        assert!(!login_csrf_matches(&headers(&[]), Some("abc123")));
        let empty = headers(&[("cookie", "vigie_login_csrf=")]);
        assert!(!login_csrf_matches(&empty, Some("")));
        assert_eq!(
            login_csrf_cookie("t", 3600, true),
            "vigie_login_csrf=t; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600; Secure"
        );
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(percent_encode("/b?x=1&y"), "/b%3Fx%3D1%26y");
    }
}
