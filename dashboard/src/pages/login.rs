//! The login form. It posts to `/login` with the page to return to (`next`, already
//! checked to be a local path) and the login form's CSRF token (the value of the
//! `vigie_login_csrf` cookie set with the page, see [`crate::auth`]). This module must
//! never echo the password back.

use maud::{Markup, html};

use super::layout;

/// The login page carrying `csrf_token`, with an error message after a refused
/// attempt.
pub fn page(next: &str, csrf_token: &str, error: Option<&str>) -> Markup {
    layout::bare_page(
        "Connexion",
        html! {
            form.login method="post" action="/login" {
                h1 { "Connexion" }
                @if let Some(e) = error {
                    p.error role="alert" { (e) }
                }
                input type="hidden" name="next" value=(next);
                input type="hidden" name="csrf_token" value=(csrf_token);
                label for="username" { "Identifiant" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
                label for="password" { "Mot de passe" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Se connecter" }
            }
        },
    )
}
