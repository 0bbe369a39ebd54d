//! The native MQTT payload, as devices and the simulator publish it.
//!
//! Topic `vigie/<device_id>/telemetry`, QoS 1, JSON
//! `{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":12345.6}}` or an array of
//! such objects (a buffered backlog). `ts` is optional (receive time), RFC 3339 or epoch
//! milliseconds. This module only builds payloads; decoding untrusted bytes is the
//! ingest decoders' job, which must never trust this shape.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::DeviceId;
use crate::quantity::Quantity;
use crate::time::Timestamp;

/// Topic prefix of every native topic.
pub const TOPIC_PREFIX: &str = "vigie";

/// The telemetry topic of a device.
pub fn telemetry_topic(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}/{device}/telemetry")
}

/// The status topic of a device (`online` / `offline`, retained, last will).
pub fn status_topic(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}/{device}/status")
}

/// One telemetry message: values measured at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telemetry {
    /// When the values were measured (RFC 3339); `None` lets ingest use receive time.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_ts")]
    pub ts: Option<Timestamp>,
    /// Values by quantity name.
    pub values: BTreeMap<Quantity, f64>,
}

fn ser_ts<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

impl Telemetry {
    /// Serialises one message as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// Serialises a backlog (several messages) as one JSON array.
    pub fn backlog_to_json(batch: &[Telemetry]) -> Vec<u8> {
        serde_json::to_vec(batch).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_serialises_to_the_documented_shape() {
        let t = Telemetry {
            ts: Timestamp::parse_rfc3339("2026-11-29T10:15:00Z").ok(),
            values: BTreeMap::from([
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ]),
        };
        assert_eq!(
            String::from_utf8(t.to_json()).ok().as_deref(),
            Some(
                r#"{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":12345.6,"power_w":830.0}}"#
            )
        );
    }
}
