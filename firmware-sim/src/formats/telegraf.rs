//! Telegraf's MQTT output (`[[outputs.mqtt]]`): topic `telegraf/<host>/<measurement>`
//! (the default topic layout `telegraf/{{ .Hostname }}/{{ .PluginName }}`), and either
//! - `data_format = "influx"`: InfluxDB line protocol,
//!   `energy,building=<b>,device=<d>,host=<h> electricity_kwh=12345.6,power_w=830 1764411300000000000`
//!   (tags sorted by key, float fields, nanosecond timestamp); with `batch = true` a
//!   backlog is one message of several lines separated by `\n`;
//! - `data_format = "json"`: `{"fields":{…},"name":"energy","tags":{…},"timestamp":1764411300}`
//!   (`json_timestamp_units = "1s"`, the default: whole seconds, a skewed clock's
//!   milliseconds are cut); a batch is `{"metrics":[…]}`.
//!
//! The host is the building's gateway `<building>-gw`; measurements are `energy`
//! (electricity and gas meters), `water`, `air_quality` and `weather`; field names are
//! vigie's quantity names, so the mapping is the identity. Telegraf has no
//! availability topic. This module never writes a field without a value.

use serde_json::{Map, Value, json};
use vigie_core::registry::DeviceKind;

use super::{DeviceInfo, Message, num, samples};
use crate::firmware::Reading;

/// The measurement name of a device kind.
pub(crate) fn measurement(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::ElectricityMeter | DeviceKind::GasMeter => "energy",
        DeviceKind::WaterMeter => "water",
        DeviceKind::AirQuality => "air_quality",
        DeviceKind::OutdoorThermometer => "weather",
        DeviceKind::ServerAgent | DeviceKind::Other => "other",
    }
}

/// The Telegraf agent's host name.
pub(crate) fn host(device: &DeviceInfo) -> String {
    format!("{}-gw", device.building)
}

fn topic(device: &DeviceInfo) -> String {
    format!("telegraf/{}/{}", host(device), measurement(device.kind))
}

/// Escapes a tag value for line protocol (commas, spaces and equal signs).
fn tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | ' ' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn line(device: &DeviceInfo, r: &Reading) -> String {
    let fields: Vec<String> = r
        .values
        .iter()
        .map(|(q, v)| format!("{}={}", q.name(), v))
        .collect();
    format!(
        "{},building={},device={},host={} {} {}",
        measurement(device.kind),
        tag(device.building.as_str()),
        tag(device.id.as_str()),
        tag(&host(device)),
        fields.join(","),
        i128::from(r.ts.millis()) * 1_000_000
    )
}

pub(super) fn encode_influx(device: &DeviceInfo, readings: &[Reading]) -> Message {
    let lines: Vec<String> = readings.iter().map(|r| line(device, r)).collect();
    Message {
        topic: topic(device),
        payload: (lines.join("\n") + "\n").into_bytes(),
        retain: false,
        samples: samples(readings),
    }
}

fn metric(device: &DeviceInfo, r: &Reading) -> Value {
    let fields: Map<String, Value> = r
        .values
        .iter()
        .map(|(q, v)| (q.name().to_string(), num(*v, 6)))
        .collect();
    json!({
        "fields": fields,
        "name": measurement(device.kind),
        "tags": {
            "building": device.building.as_str(),
            "device": device.id.as_str(),
            "host": host(device),
        },
        "timestamp": r.ts.millis().div_euclid(1000),
    })
}

pub(super) fn encode_json(device: &DeviceInfo, readings: &[Reading]) -> Message {
    let payload = match readings {
        [one] => metric(device, one),
        _ => json!({ "metrics": readings.iter().map(|r| metric(device, r)).collect::<Vec<_>>() }),
    };
    Message {
        topic: topic(device),
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
        retain: false,
        samples: samples(readings),
    }
}
