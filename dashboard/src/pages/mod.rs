//! Server-rendered HTML pages (maud, French, no JavaScript): one file per page family,
//! the shared frame in [`layout`].
//!
//! Every page takes a [`SessionUser`](crate::auth::SessionUser), so an anonymous
//! visitor is redirected to the login page, and reads through `user.scope()`. maud
//! escapes every interpolated value; this module must never use `PreEscaped` on
//! anything but the embedded CSS and SVG drawn by [`crate::charts`].

pub mod buildings;
pub mod layout;
pub mod login;
pub mod pending;
pub mod quarantine;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(buildings::list))
        // The list also where a reader would type it (the pages live under /buildings/).
        .route("/buildings", get(buildings::list))
        .route("/buildings/{id}", get(buildings::detail))
        .route("/quarantine", get(quarantine::page))
        .route("/devices/pending", get(pending::page))
        .route("/devices/pending/{id}/assign", post(pending::assign))
}
