//! Zigbee2MQTT device messages: `zigbee2mqtt/<friendly_name>` with a flat JSON object
//! of the device's exposed properties (`temperature`, `humidity`, `co2`, `energy` in
//! kWh, `power` in W, `water_consumed` / `gas_consumed` in m³, `battery` in %,
//! `linkquality` 0–255). Zigbee2MQTT puts no timestamp in the payload (its optional
//! `last_seen` is not enabled here): the receiver uses the receive time, so only
//! current readings are published this way. Availability: `{"state":"online"}` /
//! `{"state":"offline"}` retained on `zigbee2mqtt/<friendly_name>/availability`.

use serde_json::{Map, Value, json};
use vigie_core::Quantity;
use vigie_core::registry::DeviceKind;

use super::{DeviceInfo, Message, num};
use crate::climate::{hash_str, noise};
use crate::firmware::Reading;
use crate::model::COUNTER_EPOCH;

/// Topic prefix (Zigbee2MQTT's `mqtt.base_topic` default).
pub(crate) const BASE_TOPIC: &str = "zigbee2mqtt";

/// Battery level: a year-long discharge from 100 % to 40 %, then a new battery.
pub(super) fn battery_pct(device: &DeviceInfo, ts_ms: i64) -> i64 {
    let days = (ts_ms - COUNTER_EPOCH.millis()).div_euclid(86_400_000)
        + (hash_str(device.id.as_str()) % 365) as i64;
    100 - days.rem_euclid(365) * 60 / 365
}

fn linkquality(device: &DeviceInfo, ts_ms: i64) -> i64 {
    let n = noise(hash_str(device.id.as_str()), ts_ms.div_euclid(60_000), 9);
    (110.0 + 60.0 * n).round() as i64
}

/// The key of each quantity (indoor and outdoor temperatures are both
/// `temperature`: the device's mapping tells them apart).
pub(crate) fn key(q: Quantity) -> Option<&'static str> {
    Some(match q {
        Quantity::ElectricityKwh => "energy",
        Quantity::PowerW => "power",
        Quantity::GasM3 => "gas_consumed",
        Quantity::WaterM3 => "water_consumed",
        Quantity::Co2Ppm => "co2",
        Quantity::TemperatureC | Quantity::OutdoorTemperatureC => "temperature",
        Quantity::HumidityPct => "humidity",
        // Quantities the simulated devices never measure.
        _ => return None,
    })
}

fn decimals(q: Quantity) -> i32 {
    match q {
        Quantity::ElectricityKwh | Quantity::GasM3 | Quantity::WaterM3 => 3,
        Quantity::PowerW | Quantity::Co2Ppm => 0,
        _ => 2,
    }
}

pub(super) fn encode(device: &DeviceInfo, r: &Reading) -> Message {
    let mut obj = Map::new();
    for (q, v) in &r.values {
        if let Some(k) = key(*q) {
            obj.insert(k.into(), num(*v, decimals(*q)));
        }
    }
    // Mains-powered devices (energy monitor, CO2 sensor) report no battery.
    let battery_powered = matches!(
        device.kind,
        DeviceKind::GasMeter | DeviceKind::WaterMeter | DeviceKind::OutdoorThermometer
    );
    if battery_powered {
        obj.insert("battery".into(), json!(battery_pct(device, r.ts.millis())));
    }
    obj.insert(
        "linkquality".into(),
        json!(linkquality(device, r.ts.millis())),
    );
    Message {
        topic: format!("{BASE_TOPIC}/{}", device.id),
        payload: serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
        retain: false,
        samples: r.values.len() as u64,
    }
}

pub(super) fn status(device: &DeviceInfo, online: bool) -> (String, Vec<u8>) {
    let state = if online { "online" } else { "offline" };
    (
        format!("{BASE_TOPIC}/{}/availability", device.id),
        json!({ "state": state }).to_string().into_bytes(),
    )
}
