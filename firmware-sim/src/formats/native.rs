//! vigie's native format (DESIGN.md): `vigie/<device>/telemetry` with
//! `{"ts":"RFC 3339","values":{quantity: number}}`, or a JSON array of such objects for
//! a backlog; status `online`/`offline` on `vigie/<device>/status`. Never drops the
//! timestamp.

use vigie_core::payload::{Telemetry, status_topic, telemetry_topic};

use super::{DeviceInfo, Message, samples};
use crate::firmware::Reading;

fn telemetry(r: &Reading) -> Telemetry {
    Telemetry {
        ts: Some(r.ts),
        values: r.values.clone(),
    }
}

/// One reading as an object, several as an array.
pub(super) fn encode(device: &DeviceInfo, readings: &[Reading]) -> Message {
    let payload = match readings {
        [one] => telemetry(one).to_json(),
        _ => Telemetry::backlog_to_json(&readings.iter().map(telemetry).collect::<Vec<_>>()),
    };
    Message {
        topic: telemetry_topic(&device.id),
        payload,
        retain: false,
        samples: samples(readings),
    }
}

pub(super) fn status(device: &DeviceInfo, online: bool) -> (String, Vec<u8>) {
    let payload = if online { "online" } else { "offline" };
    (status_topic(&device.id), payload.as_bytes().to_vec())
}
