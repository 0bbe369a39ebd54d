//! The JSON API under `/api/v1/`: one file per resource, shared query parsing in
//! [`params`], documented by [`crate::openapi`].
//!
//! Every handler takes an [`ApiCaller`](crate::auth::ApiCaller) and scopes every read
//! with `user.scope()`: an object of another member answers 404 exactly like a missing
//! one. Bad parameters answer 400 `{"error": "parameter \"from\": …"}`. This module
//! must never return an object without going through a scoped registry read.

pub mod buildings;
pub mod devices;
pub mod members;
pub mod params;
pub mod pending;
pub mod quarantine;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// The API's routes, with their full `/api/v1/…` paths.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/buildings", get(buildings::list))
        .route("/api/v1/buildings/{id}", get(buildings::one))
        .route(
            "/api/v1/buildings/{id}/consumption",
            get(buildings::consumption),
        )
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/pending", get(pending::list))
        .route("/api/v1/devices/{id}/assign", post(pending::assign))
        .route("/api/v1/devices/{id}", get(devices::one))
        .route("/api/v1/devices/{id}/latest", get(devices::latest))
        .route("/api/v1/devices/{id}/samples", get(devices::samples))
        .route("/api/v1/members", get(members::list))
        .route("/api/v1/quarantine", get(quarantine::list))
        .route("/api/v1/openapi.json", get(crate::openapi::document))
}
