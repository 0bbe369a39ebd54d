//! `GET /api/v1/quarantine?limit=N` (staff only): occurrence counts by reason and the
//! latest quarantined messages. Payloads are returned as text (lossy UTF-8) inside
//! JSON strings. This module must never answer a manager or viewer (403).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::params::Params;
use crate::AppState;
use crate::auth::{ApiCaller, is_staff};
use crate::error::ApiError;

/// One quarantined message.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedJson {
    /// Row id.
    pub id: i64,
    /// First reception (RFC 3339).
    pub received_at: String,
    /// Latest reception (RFC 3339).
    pub last_received_at: String,
    /// How many times it was received.
    pub occurrences: i64,
    /// MQTT topic.
    pub topic: String,
    /// Device named by the topic.
    pub device_id: Option<String>,
    /// Why (`malformed`, `unknown_device`…).
    pub reason: &'static str,
    /// Human detail.
    pub detail: String,
    /// The payload as text.
    pub payload: String,
}

/// The quarantine overview.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineJson {
    /// Occurrences by reason.
    pub counts: BTreeMap<&'static str, u64>,
    /// Latest messages, newest first.
    pub entries: Vec<QuarantinedJson>,
}

/// `GET /api/v1/quarantine`.
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    params: Params,
) -> Result<Json<QuarantineJson>, ApiError> {
    if !is_staff(&caller.user) {
        return Err(ApiError::forbidden(
            "the quarantine is visible to the agency's staff only",
        ));
    }
    params.only(&["limit"])?;
    let limit = params.limit("limit", 100, 1000)?;
    let counts = state.registry.quarantine_counts().await?;
    let entries = state.registry.quarantined(limit).await?;
    Ok(Json(QuarantineJson {
        counts: counts.into_iter().map(|(r, n)| (r.as_str(), n)).collect(),
        entries: entries
            .into_iter()
            .map(|m| QuarantinedJson {
                id: m.id,
                received_at: m.received_at.to_rfc3339(),
                last_received_at: m.last_received_at.to_rfc3339(),
                occurrences: m.occurrences,
                topic: m.topic,
                device_id: m.device_id,
                reason: m.reason.as_str(),
                detail: m.detail,
                payload: m.payload,
            })
            .collect(),
    }))
}
