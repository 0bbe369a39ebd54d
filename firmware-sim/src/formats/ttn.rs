//! The Things Stack (v3) uplink messages, as its MQTT server publishes them:
//! topic `v3/<application-id>@<tenant>/devices/<device-id>/up`, JSON with
//! `end_device_ids` (`device_id`, `application_ids.application_id`, `dev_eui`,
//! `join_eui`, `dev_addr`), `received_at` (RFC 3339, UTC) and `uplink_message`
//! (`f_port`, `f_cnt`, `frm_payload` in base64, `decoded_payload`, `rx_metadata`,
//! `settings`, `received_at`, `consumed_airtime`).
//!
//! The application id is the building id and the tenant [`TTN_TENANT`]. The
//! `decoded_payload` is what the application's payload formatter emits:
//! - electricity: `energy_kwh`, `power_w`; gas: `gas_m3`; water: `water_m3`;
//! - air quality (Elsys ERS CO2 style): `co2` (ppm), `temperature` (°C),
//!   `humidity` (%), `vdd` (mV);
//! - outdoor thermometer: `temperature` (°C), `vdd` (mV).
//!
//! `frm_payload` is informational: each decoded value as a big-endian i32 of the value
//! × 1000, in the order above. LoRaWAN devices have no MQTT connection of their own, so
//! there is no availability topic. This module never emits a local time.

use serde_json::{Map, Value, json};
use vigie_core::Quantity;
use vigie_core::registry::DeviceKind;

use super::{DeviceInfo, Message, num};
use crate::climate::{hash_str, noise};
use crate::firmware::Reading;

/// The tenant in uplink topics (`ttn` on The Things Network community edition).
pub const TTN_TENANT: &str = "ttn";

/// The decoded payload keys of a device kind, in `frm_payload` order.
fn keys(kind: DeviceKind) -> &'static [(&'static str, Quantity, i32)] {
    match kind {
        DeviceKind::ElectricityMeter => &[
            ("energy_kwh", Quantity::ElectricityKwh, 3),
            ("power_w", Quantity::PowerW, 0),
        ],
        DeviceKind::GasMeter => &[("gas_m3", Quantity::GasM3, 3)],
        DeviceKind::WaterMeter => &[("water_m3", Quantity::WaterM3, 3)],
        DeviceKind::AirQuality => &[
            ("co2", Quantity::Co2Ppm, 0),
            ("temperature", Quantity::TemperatureC, 1),
            ("humidity", Quantity::HumidityPct, 1),
        ],
        DeviceKind::OutdoorThermometer => &[("temperature", Quantity::OutdoorTemperatureC, 1)],
        DeviceKind::ServerAgent | DeviceKind::Other => &[],
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn encode(device: &DeviceInfo, r: &Reading) -> Message {
    let key = hash_str(device.id.as_str());
    let ts = r.ts.millis();
    let received_at = r.ts.to_rfc3339();
    let mut decoded = Map::new();
    let mut frm = Vec::new();
    for (name, q, decimals) in keys(device.kind) {
        let v = r.values.get(q).copied().unwrap_or(0.0);
        decoded.insert((*name).into(), num(v, *decimals));
        frm.extend_from_slice(&((v * 1000.0).round() as i32).to_be_bytes());
    }
    if matches!(
        device.kind,
        DeviceKind::AirQuality | DeviceKind::OutdoorThermometer
    ) {
        let vdd = (3600.0 - 400.0 * ((ts as f64 / 3.15e10) % 1.0)).round();
        decoded.insert("vdd".into(), num(vdd, 0));
        frm.extend_from_slice(&(vdd as i32 * 1000).to_be_bytes());
    }
    let dev_eui = format!("70B3D5{:010X}", key & 0xFF_FFFF_FFFF);
    let rssi = (-95.0 + 15.0 * noise(key, ts / 60_000, 14)).round();
    let snr = ((4.0 + 5.0 * noise(key, ts / 60_000, 15)) * 10.0).round() / 10.0;
    let concentrator = (ts.rem_euclid(1 << 32)) as u64 * 1000 % (1 << 32);
    let f_cnt = (ts / 1000).rem_euclid(1 << 31);
    let payload = json!({
        "end_device_ids": {
            "device_id": device.id.as_str(),
            "application_ids": { "application_id": device.building.as_str() },
            "dev_eui": dev_eui,
            "join_eui": "0000000000000000",
            "dev_addr": format!("{:08X}", (key >> 32) as u32 & 0x01FF_FFFF | 0x2600_0000),
        },
        "correlation_ids": [format!("as:up:{:016X}", key ^ ts as u64)],
        "received_at": received_at,
        "uplink_message": {
            "f_port": 1,
            "f_cnt": f_cnt,
            "frm_payload": base64(&frm),
            "decoded_payload": Value::Object(decoded),
            "rx_metadata": [{
                "gateway_ids": {
                    "gateway_id": format!("{}-gw", device.building),
                    "eui": format!("B827EBFFFE{:06X}", hash_str(device.building.as_str()) & 0xFF_FFFF),
                },
                "time": received_at,
                "timestamp": concentrator,
                "rssi": num(rssi, 0),
                "channel_rssi": num(rssi, 0),
                "snr": snr,
                "channel_index": (key % 8),
                "received_at": received_at,
            }],
            "settings": {
                "data_rate": { "lora": { "bandwidth": 125000, "spreading_factor": 7, "coding_rate": "4/5" } },
                "frequency": "868100000",
                "timestamp": concentrator,
            },
            "received_at": received_at,
            "consumed_airtime": "0.061696s",
        },
    });
    Message {
        topic: format!(
            "v3/{}@{TTN_TENANT}/devices/{}/up",
            device.building, device.id
        ),
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
        retain: false,
        samples: r.values.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), out);
        }
    }
}
