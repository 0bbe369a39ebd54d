//! `GET /api/v1/devices`, `/devices/{id}`, `/devices/{id}/latest` and
//! `/devices/{id}/samples`.
//!
//! Instants are RFC 3339 in UTC. This module must never answer for a device outside
//! the caller's scope (pending devices, with no building, are staff-only).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use vigie_core::ids::DeviceId;
use vigie_core::registry::{Device, DeviceKind, Scope};
use vigie_core::store::Point;

use super::params::Params;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::ApiError;

/// A device as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceJson {
    /// Identifier (its MQTT topic level).
    pub id: String,
    /// Building it is installed in.
    pub building_id: Option<String>,
    /// What it is (`electricity_meter`, `air_quality`…).
    pub kind: DeviceKind,
    /// Last time a message from it was ingested (RFC 3339), or null.
    pub last_seen: Option<String>,
    /// Its last published status, or null when it never published one.
    pub online: Option<bool>,
    /// The room it measures (air-quality sensors), else empty.
    pub room: String,
}

impl From<&Device> for DeviceJson {
    fn from(d: &Device) -> Self {
        DeviceJson {
            id: d.id.to_string(),
            building_id: d.building_id.as_ref().map(|b| b.to_string()),
            kind: d.kind,
            last_seen: d.last_seen.map(|t| t.to_rfc3339()),
            online: d.online,
            room: d.room.clone(),
        }
    }
}

/// The latest values of a device.
#[derive(Debug, Clone, Serialize)]
pub struct LatestJson {
    /// Instant of the newest value (RFC 3339), or null when the device has none.
    pub ts: Option<String>,
    /// The latest value of each quantity.
    pub values: BTreeMap<&'static str, f64>,
}

/// One sample.
#[derive(Debug, Clone, Serialize)]
pub struct SampleJson {
    /// Instant (RFC 3339).
    pub ts: String,
    /// Value, in the quantity's unit.
    pub value: f64,
}

impl From<Point> for SampleJson {
    fn from(p: Point) -> Self {
        SampleJson {
            ts: p.ts.to_rfc3339(),
            value: p.value,
        }
    }
}

/// The longest range one samples request may cover: 400 days.
pub const MAX_SAMPLES_RANGE_MS: i64 = 400 * 24 * 3_600_000;

async fn visible(state: &AppState, scope: &Scope, id: &str) -> Result<Device, ApiError> {
    let not_found = || ApiError::not_found("device", id);
    let did: DeviceId = id.parse().map_err(|_| not_found())?;
    state
        .registry
        .device(scope, &did)
        .await?
        .ok_or_else(not_found)
}

/// `GET /api/v1/devices`.
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    params: Params,
) -> Result<Json<Vec<DeviceJson>>, ApiError> {
    params.only(&[])?;
    let devices = state.registry.devices(&caller.user.scope()).await?;
    Ok(Json(devices.iter().map(DeviceJson::from).collect()))
}

/// `GET /api/v1/devices/{id}`.
pub async fn one(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<DeviceJson>, ApiError> {
    let device = visible(&state, &caller.user.scope(), &id).await?;
    Ok(Json(DeviceJson::from(&device)))
}

/// `GET /api/v1/devices/{id}/latest`.
pub async fn latest(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<LatestJson>, ApiError> {
    let device = visible(&state, &caller.user.scope(), &id).await?;
    let series = state.registry.series_of_device(&device.id).await?;
    let ids: Vec<_> = series.iter().map(|s| s.id).collect();
    let latest = state.store.latest(&ids).await?;
    let mut values = BTreeMap::new();
    let mut newest = None;
    for (sid, point) in latest {
        if let Some(s) = series.iter().find(|s| s.id == sid) {
            values.insert(s.quantity.name(), point.value);
            newest = newest.max(Some(point.ts));
        }
    }
    Ok(Json(LatestJson {
        ts: newest.map(|t| t.to_rfc3339()),
        values,
    }))
}

/// `GET /api/v1/devices/{id}/samples?quantity=&from=&to=`: samples with
/// `from <= ts < to`, oldest first.
pub async fn samples(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Vec<SampleJson>>, ApiError> {
    params.only(&["quantity", "from", "to"])?;
    let quantity = params.quantity("quantity")?;
    let from = params.instant("from")?;
    let to = params.instant("to")?;
    if to <= from {
        return Err(ApiError::bad_parameter(
            "to",
            format!("must be after from ({from})"),
        ));
    }
    if to.0.saturating_sub(from.0) > MAX_SAMPLES_RANGE_MS {
        return Err(ApiError::bad_parameter(
            "to",
            "too far from from: at most 400 days per request",
        ));
    }
    let device = visible(&state, &caller.user.scope(), &id).await?;
    let series = state.registry.series_of_device(&device.id).await?;
    let Some(s) = series.iter().find(|s| s.quantity == quantity) else {
        return Ok(Json(Vec::new()));
    };
    let points = state.store.range(s.id, from, to).await?;
    Ok(Json(points.into_iter().map(SampleJson::from).collect()))
}
