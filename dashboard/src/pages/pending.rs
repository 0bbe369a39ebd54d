//! `/devices/pending` (agency staff only): devices heard from but not registered, with
//! their last payload and detected format, and a form per device to assign it to a
//! building (`POST /devices/pending/{id}/assign`, CSRF token checked). Ingest replays
//! the device's quarantined messages by itself once it is assigned.
//!
//! This module must never show the page nor accept the form from a manager or viewer,
//! and never render a payload unescaped.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use vigie_core::ids::DeviceId;
use vigie_core::registry::{AssignOutcome, DeviceKind, Scope};

use super::layout;
use crate::AppState;
use crate::api::pending::{AssignRequest, parse_assignment};
use crate::auth::{SessionUser, is_staff};
use crate::error::PageError;
use crate::format;

/// Longest payload prefix shown, in characters.
pub const PAYLOAD_CHARS: usize = 300;
/// Formats offered in the form.
pub const FORMATS: [&str; 5] = ["native", "zigbee2mqtt", "tasmota", "ttn", "telegraf"];
/// Kinds offered in the form.
pub const KINDS: [DeviceKind; 7] = [
    DeviceKind::ElectricityMeter,
    DeviceKind::GasMeter,
    DeviceKind::WaterMeter,
    DeviceKind::AirQuality,
    DeviceKind::OutdoorThermometer,
    DeviceKind::ServerAgent,
    DeviceKind::Other,
];

/// `GET /devices/pending`.
pub async fn page(
    State(state): State<AppState>,
    session: SessionUser,
) -> Result<Markup, PageError> {
    if !is_staff(&session.user) {
        return Err(PageError::forbidden());
    }
    let pending = state.registry.pending_devices().await?;
    let buildings = state.registry.buildings(&Scope::All).await?;
    let content = html! {
        p.muted {
            "Appareils qui publient sans être enregistrés. Une fois affecté à un bâtiment, "
            "les messages reçus de l'appareil sont rejoués depuis la quarantaine avec leur "
            "horodatage d'origine."
        }
        @if pending.is_empty() {
            p.muted { "Aucun appareil en attente." }
        } @else {
            table.pending {
                thead { tr {
                    th { "Appareil" } th { "Vu pour la première fois" } th { "Dernier message" }
                    th { "Messages" } th { "Format détecté" } th { "Dernier contenu" } th { "Affecter" }
                } }
                tbody {
                    @for p in &pending {
                        tr {
                            td { code { (p.device_id) } br; span.muted { (p.topic) } }
                            td { (format::date_time(p.first_seen)) }
                            td { (format::date_time(p.last_seen)) }
                            td.num { (format::number(p.messages as f64, 0)) }
                            td { code { (p.format) } }
                            td { pre.payload {
                                (p.last_payload.chars().take(PAYLOAD_CHARS).collect::<String>())
                                @if p.last_payload.chars().count() > PAYLOAD_CHARS { "…" }
                            } }
                            td {
                                form.assign method="post" action={ "/devices/pending/" (p.device_id) "/assign" } {
                                    input type="hidden" name="csrf_token" value=(session.csrf_token);
                                    label { "Bâtiment "
                                        select name="building_id" required {
                                            @for b in &buildings {
                                                option value=(b.id) { (b.name) }
                                            }
                                        }
                                    }
                                    br;
                                    label { "Type "
                                        select name="kind" {
                                            @for k in KINDS {
                                                option value=(k.as_str()) { (k.label_fr()) }
                                            }
                                        }
                                    }
                                    br;
                                    label { "Format "
                                        select name="format" {
                                            @for f in FORMATS {
                                                option value=(f) selected[f == p.format] { (f) }
                                            }
                                        }
                                    }
                                    br;
                                    label { "Pièce " input type="text" name="room" maxlength="120"; }
                                    br;
                                    button type="submit" { "Affecter" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Appareils en attente", content))
}

/// `POST /devices/pending/{id}/assign`: the form's target; redirects back to the list.
pub async fn assign(
    State(state): State<AppState>,
    session: SessionUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if !is_staff(&session.user) {
        return Err(PageError::forbidden());
    }
    session.check_csrf(form.get("csrf_token").map(String::as_str))?;
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let req = AssignRequest {
        building_id: field("building_id"),
        kind: field("kind"),
        format: field("format"),
        room: form.get("room").cloned(),
    };
    let bad = |message: String| PageError {
        status: axum::http::StatusCode::BAD_REQUEST,
        message,
    };
    let assignment = parse_assignment(&req).map_err(|e| bad(e.message))?;
    let device: DeviceId = id.parse().map_err(|_| PageError::not_found())?;
    match state.registry.assign_device(&device, &assignment).await? {
        AssignOutcome::Assigned(d) => {
            tracing::info!(device = %d.id, building = %assignment.building_id,
                user = %session.user.name, "pending device assigned");
            Ok(Redirect::to("/devices/pending").into_response())
        }
        AssignOutcome::UnknownBuilding | AssignOutcome::NotPending => Err(PageError::not_found()),
    }
}
