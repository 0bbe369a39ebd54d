//! vigie's web app (axum): login, server-rendered French pages with plotters charts,
//! the JSON API under `/api/v1/`, `/healthz` and `/metrics`.

pub mod charts;
pub mod format;
