//! Provisioning over the API (staff only): `GET /api/v1/devices/pending` lists the
//! devices heard from but not registered (last payload, detected format, message
//! count); `POST /api/v1/devices/{id}/assign` with `{"building_id", "kind", "format",
//! "room"?}` registers one in a building. Ingest then replays its quarantined messages
//! by itself (it polls the registry), whether or not it runs in this process.
//!
//! Answers: 403 for a manager or viewer, 404 for an unknown building or a device that
//! is not pending, 400 for an unknown kind or a malformed format. This module must
//! never assign a device for a caller who is not staff.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use vigie_core::ids::{BuildingId, DeviceId};
use vigie_core::registry::{AssignOutcome, Assignment, DeviceKind, PendingDevice};

use super::devices::DeviceJson;
use crate::AppState;
use crate::auth::{ApiCaller, is_staff};
use crate::error::ApiError;

/// A pending device as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingJson {
    /// Its id (MQTT topic level).
    pub id: String,
    /// First message (RFC 3339).
    pub first_seen: String,
    /// Latest message (RFC 3339).
    pub last_seen: String,
    /// Topic of the latest message.
    pub topic: String,
    /// Payload format detected from the topic (`native`, `zigbee2mqtt`…).
    pub format: String,
    /// Latest payload, as text (first 4 KiB).
    pub last_payload: String,
    /// Messages received while pending.
    pub messages: u64,
}

impl From<PendingDevice> for PendingJson {
    fn from(p: PendingDevice) -> Self {
        PendingJson {
            id: p.device_id.to_string(),
            first_seen: p.first_seen.to_rfc3339(),
            last_seen: p.last_seen.to_rfc3339(),
            topic: p.topic,
            format: p.format,
            last_payload: p.last_payload,
            messages: p.messages,
        }
    }
}

/// The body of `POST /api/v1/devices/{id}/assign`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// Building to install it in.
    pub building_id: String,
    /// What it is (`electricity_meter`, `gas_meter`, `water_meter`, `air_quality`…).
    pub kind: String,
    /// Payload format (`native`, `zigbee2mqtt`, `tasmota`, `ttn`, `telegraf`…).
    pub format: String,
    /// Room it measures (air-quality sensors).
    #[serde(default)]
    pub room: Option<String>,
}

/// Checks an assignment request; the error names the field.
pub fn parse_assignment(req: &AssignRequest) -> Result<Assignment, ApiError> {
    let bad = |field: &str, why: String| ApiError {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: format!("field {field:?}: {why}"),
    };
    let building_id: BuildingId = req
        .building_id
        .parse()
        .map_err(|e| bad("building_id", format!("{e}")))?;
    let kind = DeviceKind::parse(&req.kind);
    if kind.as_str() != req.kind {
        return Err(bad(
            "kind",
            format!(
                "unknown kind {:?}; expected electricity_meter, gas_meter, water_meter, \
                 air_quality, outdoor_thermometer, server_agent or other",
                req.kind.chars().take(40).collect::<String>()
            ),
        ));
    }
    let format = req.format.trim();
    if format.is_empty()
        || format.len() > 32
        || !format
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(bad(
            "format",
            "expected a format name such as native, zigbee2mqtt, tasmota, ttn or telegraf".into(),
        ));
    }
    let room = req.room.as_deref().unwrap_or("").trim();
    if room.chars().count() > 120 {
        return Err(bad("room", "longer than 120 characters".into()));
    }
    Ok(Assignment {
        building_id,
        kind,
        format: format.to_string(),
        room: room.to_string(),
    })
}

fn staff_only(caller: &ApiCaller) -> Result<(), ApiError> {
    if is_staff(&caller.user) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "provisioning is for the agency's staff only",
        ))
    }
}

/// `GET /api/v1/devices/pending`.
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Vec<PendingJson>>, ApiError> {
    staff_only(&caller)?;
    let pending = state.registry.pending_devices().await?;
    Ok(Json(pending.into_iter().map(PendingJson::from).collect()))
}

/// `POST /api/v1/devices/{id}/assign`.
pub async fn assign(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    body: Result<Json<AssignRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeviceJson>, ApiError> {
    staff_only(&caller)?;
    let Json(req) = body.map_err(|e| ApiError {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: format!("body: {}", e.body_text()),
    })?;
    let device: DeviceId = id
        .parse()
        .map_err(|_| ApiError::not_found("pending device", &id))?;
    let assignment = parse_assignment(&req)?;
    match state.registry.assign_device(&device, &assignment).await? {
        AssignOutcome::Assigned(d) => {
            tracing::info!(
                device = %d.id,
                building = %assignment.building_id,
                user = %caller.user.name,
                "pending device assigned"
            );
            Ok(Json(DeviceJson::from(&d)))
        }
        AssignOutcome::UnknownBuilding => Err(ApiError::not_found(
            "building",
            assignment.building_id.as_str(),
        )),
        AssignOutcome::NotPending => Err(ApiError::not_found("pending device", &id)),
    }
}
