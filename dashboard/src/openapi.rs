//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of the JSON API, written by
//! hand next to the handlers it describes. A test checks every route of
//! [`crate::api::routes`] is in it. This module describes; it must never serve data.

use axum::Json;
use serde_json::{Value, json};

use crate::auth::ApiCaller;

fn param(name: &str, location: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({
        "name": name, "in": location, "required": required,
        "schema": schema, "description": description,
    })
}

fn id_param(what: &str) -> Value {
    param(
        "id",
        "path",
        true,
        json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}),
        &format!("{what} identifier"),
    )
}

fn ok(description: &str, schema: Value) -> Value {
    json!({
        "200": {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": {"$ref": "#/components/responses/NotFound"},
    })
}

fn array_of(reference: &str) -> Value {
    json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{reference}")}})
}

fn schema(reference: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{reference}")})
}

/// The OpenAPI document.
pub fn spec() -> Value {
    let date = json!({"type": "string", "format": "date", "example": "2026-11-28"});
    let instant =
        json!({"type": "string", "format": "date-time", "example": "2026-11-29T10:15:00Z"});
    let quantities: Vec<&str> = vigie_core::Quantity::ALL.iter().map(|q| q.name()).collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "vigie API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Buildings, devices and energy consumption of the agency's members. \
                Every call needs `Authorization: Bearer <token>` (`vigie user token NAME`) or a \
                dashboard session, and sees only what its user may see: another member's \
                building or device answers 404. Calendar periods are Europe/Paris local time; \
                instants are RFC 3339 (UTC). Errors are `{\"error\": \"...\"}`; a bad query \
                parameter answers 400 naming the parameter. A write (POST) authenticated by the \
                session cookie rather than a bearer token must also send the session's CSRF \
                token in `X-CSRF-Token` (403 otherwise).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/buildings": {"get": {
                "summary": "Buildings visible to the caller, by name",
                "responses": ok("Buildings", array_of("Building")),
            }},
            "/api/v1/buildings/{id}": {"get": {
                "summary": "One building with its devices",
                "parameters": [id_param("Building")],
                "responses": ok("The building", schema("BuildingWithDevices")),
            }},
            "/api/v1/buildings/{id}/consumption": {"get": {
                "summary": "Consumption of one energy per Europe/Paris day or month",
                "description": "One entry per period from the period containing `from` to the one \
                    containing `to` (inclusive). Consumption is the sum of positive steps of the \
                    building's meter indexes. A period without data has `\"value\": null` (not 0). \
                    At most 3700 periods per request. Values are in the meters' own unit \
                    (electricity kWh, gas m³, water m³) unless `unit` asks for another: gas in kWh \
                    is the m³ consumption × the building's PCS (`gas_pcs_kwh_per_m3`), the energy \
                    that gas bills count.",
                "parameters": [
                    id_param("Building"),
                    param("energy", "query", true, json!({"type": "string", "enum": ["electricity", "gas", "water"]}), "Which meters"),
                    param("from", "query", true, date.clone(), "First local date (YYYY-MM-DD)"),
                    param("to", "query", true, date, "Last local date, inclusive (YYYY-MM-DD)"),
                    param("step", "query", false, json!({"type": "string", "enum": ["day", "month"], "default": "day"}), "Period width"),
                    param("unit", "query", false, json!({"type": "string", "enum": ["kwh", "m3"]}), "Unit of `value`. Default: the meters' own unit (electricity `kWh`, gas `m³`, water `m³`). `kwh` with `energy=gas` converts with the building's PCS; electricity accepts only `kwh` and water only `m3` (anything else answers 400)"),
                ],
                "responses": ok("Consumption per period", array_of("Consumption")),
            }},
            "/api/v1/devices": {"get": {
                "summary": "Devices installed in buildings visible to the caller",
                "responses": ok("Devices", array_of("Device")),
            }},
            "/api/v1/devices/{id}": {"get": {
                "summary": "One device",
                "parameters": [id_param("Device")],
                "responses": ok("The device", schema("Device")),
            }},
            "/api/v1/devices/{id}/latest": {"get": {
                "summary": "The latest value of each quantity of a device",
                "parameters": [id_param("Device")],
                "responses": ok("Latest values", schema("Latest")),
            }},
            "/api/v1/devices/{id}/samples": {"get": {
                "summary": "Raw samples of one quantity with from <= ts < to (at most 400 days)",
                "parameters": [
                    id_param("Device"),
                    param("quantity", "query", true, json!({"type": "string", "enum": quantities}), "Quantity name"),
                    param("from", "query", true, instant.clone(), "Start instant, inclusive (RFC 3339)"),
                    param("to", "query", true, instant, "End instant, exclusive (RFC 3339)"),
                ],
                "responses": ok("Samples, oldest first", array_of("Sample")),
            }},
            "/api/v1/devices/pending": {"get": {
                "summary": "Devices heard from but not registered (agency staff only; others get 403)",
                "responses": ok("Pending devices, with their last payload", array_of("Pending")),
            }},
            "/api/v1/devices/{id}/assign": {"post": {
                "summary": "Registers a pending device in a building (agency staff only; others get 403)",
                "description": "Ingest then replays the device's quarantined messages. 404 for an \
                    unknown building or a device that is not pending, 400 for an unknown kind or a \
                    malformed format. By session cookie, send `X-CSRF-Token` too.",
                "parameters": [id_param("Pending device")],
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema("Assignment")}}},
                "responses": ok("The registered device", schema("Device")),
            }},
            "/api/v1/members": {"get": {
                "summary": "Members visible to the caller",
                "responses": ok("Members", array_of("Member")),
            }},
            "/api/v1/quarantine": {"get": {
                "summary": "Quarantined messages (agency staff only; others get 403)",
                "parameters": [param("limit", "query", false, json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}), "How many latest entries")],
                "responses": ok("Counts by reason and latest entries", schema("Quarantine")),
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.0 document"}},
            }},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "vigie_session"},
            },
            "responses": {
                "BadRequest": {"description": "A parameter is missing or malformed", "content": {"application/json": {"schema": schema("Error")}}},
                "Unauthorized": {"description": "No valid token nor session", "content": {"application/json": {"schema": schema("Error")}}},
                "NotFound": {"description": "No such object visible to the caller", "content": {"application/json": {"schema": schema("Error")}}},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Building": {"type": "object", "required": ["id", "name", "member_id", "address", "usage", "gas_pcs_kwh_per_m3"], "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "member_id": {"type": "string"},
                    "floor_area_m2": {"type": "number", "nullable": true}, "address": {"type": "string"},
                    "usage": {"type": "string"},
                    "gas_pcs_kwh_per_m3": {"type": "number", "description": "Gas conversion coefficient (PCS), kWh per m³: gas kWh = m³ × PCS", "example": 11.2},
                }},
                "BuildingWithDevices": {"allOf": [schema("Building"), {"type": "object", "properties": {"devices": array_of("Device")}}]},
                "Device": {"type": "object", "required": ["id", "kind", "room"], "properties": {
                    "id": {"type": "string"}, "building_id": {"type": "string", "nullable": true},
                    "kind": {"type": "string", "enum": ["electricity_meter", "gas_meter", "water_meter", "air_quality", "outdoor_thermometer", "server_agent", "other"]},
                    "last_seen": {"type": "string", "format": "date-time", "nullable": true},
                    "online": {"type": "boolean", "nullable": true}, "room": {"type": "string"},
                }},
                "Consumption": {"type": "object", "required": ["period", "value", "unit"], "properties": {
                    "period": {"type": "string", "description": "2026-11-28 (day) or 2026-11 (month)"},
                    "value": {"type": "number", "nullable": true}, "unit": {"type": "string", "enum": ["kWh", "m³"]},
                }},
                "Latest": {"type": "object", "required": ["ts", "values"], "properties": {
                    "ts": {"type": "string", "format": "date-time", "nullable": true},
                    "values": {"type": "object", "additionalProperties": {"type": "number"}, "example": {"co2_ppm": 812}},
                }},
                "Sample": {"type": "object", "required": ["ts", "value"], "properties": {
                    "ts": {"type": "string", "format": "date-time"}, "value": {"type": "number"},
                }},
                "Pending": {"type": "object", "required": ["id", "first_seen", "last_seen", "topic", "format", "last_payload", "messages"], "properties": {
                    "id": {"type": "string"}, "first_seen": {"type": "string", "format": "date-time"},
                    "last_seen": {"type": "string", "format": "date-time"}, "topic": {"type": "string"},
                    "format": {"type": "string"}, "last_payload": {"type": "string"},
                    "messages": {"type": "integer"},
                }},
                "Assignment": {"type": "object", "required": ["building_id", "kind", "format"], "additionalProperties": false, "properties": {
                    "building_id": {"type": "string"},
                    "kind": {"type": "string", "enum": ["electricity_meter", "gas_meter", "water_meter", "air_quality", "outdoor_thermometer", "server_agent", "other"]},
                    "format": {"type": "string", "example": "native"},
                    "room": {"type": "string", "maxLength": 120},
                }},
                "Member": {"type": "object", "required": ["id", "name", "kind"], "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string"},
                }},
                "Quarantine": {"type": "object", "properties": {
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "entries": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "received_at": {"type": "string", "format": "date-time"},
                        "last_received_at": {"type": "string", "format": "date-time"},
                        "occurrences": {"type": "integer"}, "topic": {"type": "string"},
                        "device_id": {"type": "string", "nullable": true}, "reason": {"type": "string"},
                        "detail": {"type": "string"}, "payload": {"type": "string"},
                    }}},
                }},
            },
        },
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn document(_caller: ApiCaller) -> Json<Value> {
    Json(spec())
}
