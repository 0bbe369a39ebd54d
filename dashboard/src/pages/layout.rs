//! The frame of every page: head, embedded CSS, navigation header with the user's
//! name and a logout form (POST with the session's CSRF token).
//!
//! The CSS is a constant embedded here, so the app is one binary with no static files
//! to serve; the content security policy allows it by its hash ([`style_source`]).
//! This module must never interpolate anything unescaped but that CSS.

use std::sync::LazyLock;

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use crate::auth::{SessionUser, is_staff};

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font-family:"DejaVu Sans",system-ui,sans-serif;color:#1d2733;background:#f4f6f8;font-size:15px}
header.top{display:flex;align-items:center;gap:1.5rem;padding:.6rem 1.5rem;background:#1f3b57;color:#fff}
header.top a{color:#fff;text-decoration:none}
header.top .brand{font-weight:bold;font-size:1.2rem;letter-spacing:.05em}
header.top nav{display:flex;gap:1rem;flex:1}
header.top .user{display:flex;gap:.8rem;align-items:center}
header.top button{background:transparent;color:#fff;border:1px solid #fff8;border-radius:4px;padding:.25rem .6rem;cursor:pointer}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.8rem 0}
h2{font-size:1.2rem;margin:1.6rem 0 .6rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;background:#fff;margin:.4rem 0 1rem}
th,td{padding:.4rem .6rem;border-bottom:1px solid #e3e8ee;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}
td.num{text-align:right;white-space:nowrap}
.muted{color:#6a737d}
.totals{display:flex;gap:2rem;margin:.3rem 0}
.totals strong{font-size:1.1rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.chart{background:#fff;border:1px solid #e3e8ee;border-radius:4px;max-width:100%;overflow-x:auto}
.chart svg{display:block;max-width:100%;height:auto}
.co2-ok{background:#dff3e3}.co2-warn{background:#fff1c9}.co2-bad{background:#fbd5d5;font-weight:600}
.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.5rem;border-radius:3px}
details.monthly{margin:.3rem 0 1rem}
details.monthly summary{cursor:pointer;color:#1f3b57}
details.monthly table{max-width:32rem}
pre.payload{margin:0;max-width:28rem;white-space:pre-wrap;word-break:break-all;font-size:.8rem}
form.login{background:#fff;max-width:22rem;margin:3rem auto;padding:1.5rem;border:1px solid #d0d7de;border-radius:6px}
form.login label{display:block;margin:.8rem 0 .2rem}
form.login input[type=text],form.login input[type=password]{width:100%;padding:.45rem;border:1px solid #b6c0ca;border-radius:4px}
form.login button{margin-top:1.2rem;width:100%;padding:.55rem;background:#1f3b57;color:#fff;border:0;border-radius:4px;font-size:1rem}
.error{color:#a40e26;background:#fde7ea;padding:.5rem .7rem;border-radius:4px}
"#;

/// The CSP source of the embedded style sheet: `'sha256-…'` of [`CSS`], so that the
/// content policy allows this `<style>` block and no other inline style.
pub(crate) fn style_source() -> &'static str {
    static SOURCE: LazyLock<String> = LazyLock::new(|| {
        let digest = Sha256::digest(CSS.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    });
    &SOURCE
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " — vigie" }
            style { (PreEscaped(CSS)) }
        }
    }
}

/// A page for a logged-in user: header with navigation and logout, then `content`.
pub fn page(session: &SessionUser, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="fr" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "vigie" }
                    nav {
                        a href="/" { "Bâtiments" }
                        @if is_staff(&session.user) {
                            a href="/devices/pending" { "Appareils en attente" }
                            a href="/quarantine" { "Quarantaine" }
                        }
                    }
                    div.user {
                        span.name { (session.user.name) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf_token" value=(session.csrf_token);
                            button type="submit" { "Se déconnecter" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// A page without navigation (login, errors).
pub fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="fr" {
            (head(title))
            body {
                header.top { a.brand href="/" { "vigie" } }
                main { (content) }
            }
        }
    }
}

/// A message page (errors).
pub fn bare(title: &str, message: &str) -> Markup {
    bare_page(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/" { "Retour à l'accueil" } }
        },
    )
}
