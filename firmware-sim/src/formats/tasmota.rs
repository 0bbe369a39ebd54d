//! Tasmota telemetry: `tele/<topic>/SENSOR` with `Time` (local time, no offset) and
//! one object per sensor. Tasmota devices here use the Europe/Paris time zone
//! (`Timezone 99`, the French DST rules), so `Time` is Paris wall-clock time: during
//! the hour repeated when summer time ends it is ambiguous, as on a real device.
//!
//! - electricity (energy monitor): `ENERGY` with `TotalStartTime`, `Total` (kWh),
//!   `Yesterday`, `Today`, `Power` (W), `ApparentPower`, `ReactivePower`, `Factor`,
//!   `Voltage`, `Current`;
//! - gas and water (pulse input): `COUNTER.C1` in pulses, 0.01 m³ per pulse for gas
//!   (Gazpar's pulse output), 1 litre per pulse for water;
//! - air quality: `SCD30` with `CarbonDioxide` (ppm), `eCO2`, `Temperature` (°C),
//!   `Humidity` (%), `DewPoint`, and `TempUnit`;
//! - outdoor thermometer: `DS18B20` with `Id` and `Temperature`, and `TempUnit`.
//!
//! Availability is Tasmota's own last will: `Online` / `Offline` retained on
//! `tele/<topic>/LWT`. This module never emits a time with an offset.

use serde_json::{Map, Value, json};
use vigie_core::registry::DeviceKind;
use vigie_core::time::PARIS;
use vigie_core::{Quantity, Timestamp};

use super::{DeviceInfo, Message, num};
use crate::climate::{hash_str, noise};
use crate::firmware::Reading;

/// Cubic metres per pulse of a gas meter's pulse output.
pub(crate) const GAS_M3_PER_PULSE: f64 = 0.01;
/// Cubic metres per pulse of a water meter's pulse output.
pub(crate) const WATER_M3_PER_PULSE: f64 = 0.001;

/// Paris wall-clock time, `YYYY-MM-DDTHH:MM:SS`, as Tasmota prints it.
pub(crate) fn local_time(ts: Timestamp) -> String {
    ts.to_utc()
        .with_timezone(&PARIS)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn energy(device: &DeviceInfo, r: &Reading) -> Value {
    let key = hash_str(device.id.as_str());
    let minute = r.ts.millis().div_euclid(60_000);
    let power = r
        .values
        .get(&Quantity::PowerW)
        .copied()
        .unwrap_or(0.0)
        .round();
    let voltage = (230.0 + 3.0 * noise(key, minute, 12)).round();
    let factor = ((0.93 + 0.04 * noise(key, minute, 13)) * 100.0).round() / 100.0;
    let apparent = (power / factor).round();
    let reactive = (apparent * apparent - power * power)
        .max(0.0)
        .sqrt()
        .round();
    let day = r.day_energy.unwrap_or(crate::firmware::DayEnergy {
        today_kwh: 0.0,
        yesterday_kwh: 0.0,
    });
    json!({
        "TotalStartTime": local_time(r.meter_since.unwrap_or(r.ts)),
        "Total": num(r.values.get(&Quantity::ElectricityKwh).copied().unwrap_or(0.0), 3),
        "Yesterday": num(day.yesterday_kwh, 3),
        "Today": num(day.today_kwh, 3),
        "Power": num(power, 0),
        "ApparentPower": num(apparent, 0),
        "ReactivePower": num(reactive, 0),
        "Factor": factor,
        "Voltage": num(voltage, 0),
        "Current": num(apparent / voltage, 3),
    })
}

/// Dew point (°C) by the Magnus formula, as Tasmota computes it.
fn dew_point(t: f64, rh: f64) -> f64 {
    let (a, b) = (17.62, 243.12);
    let g = (rh.max(1.0) / 100.0).ln() + a * t / (b + t);
    b * g / (a - g)
}

pub(super) fn encode(device: &DeviceInfo, r: &Reading) -> Message {
    let mut obj = Map::new();
    obj.insert("Time".into(), json!(local_time(r.ts)));
    let v = |q: Quantity| r.values.get(&q).copied().unwrap_or(0.0);
    match device.kind {
        DeviceKind::ElectricityMeter => {
            obj.insert("ENERGY".into(), energy(device, r));
        }
        DeviceKind::GasMeter => {
            let pulses = (v(Quantity::GasM3) / GAS_M3_PER_PULSE).round();
            obj.insert("COUNTER".into(), json!({ "C1": num(pulses, 0) }));
        }
        DeviceKind::WaterMeter => {
            let pulses = (v(Quantity::WaterM3) / WATER_M3_PER_PULSE).round();
            obj.insert("COUNTER".into(), json!({ "C1": num(pulses, 0) }));
        }
        DeviceKind::AirQuality => {
            let (co2, t, rh) = (
                v(Quantity::Co2Ppm),
                v(Quantity::TemperatureC),
                v(Quantity::HumidityPct),
            );
            obj.insert(
                "SCD30".into(),
                json!({
                    "CarbonDioxide": num(co2, 0),
                    "eCO2": num(co2 * 0.97, 0),
                    "Temperature": num(t, 1),
                    "Humidity": num(rh, 1),
                    "DewPoint": num(dew_point(t, rh), 1),
                }),
            );
            obj.insert("TempUnit".into(), json!("C"));
        }
        DeviceKind::OutdoorThermometer => {
            let id = format!("{:012X}", hash_str(device.id.as_str()) & 0xFFFF_FFFF_FFFF);
            obj.insert(
                "DS18B20".into(),
                json!({ "Id": id, "Temperature": num(v(Quantity::OutdoorTemperatureC), 1) }),
            );
            obj.insert("TempUnit".into(), json!("C"));
        }
        DeviceKind::ServerAgent | DeviceKind::Other => {}
    }
    Message {
        topic: format!("tele/{}/SENSOR", device.id),
        payload: serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
        retain: false,
        samples: r.values.len() as u64,
    }
}

pub(super) fn status(device: &DeviceInfo, online: bool) -> (String, Vec<u8>) {
    let payload = if online { "Online" } else { "Offline" };
    (
        format!("tele/{}/LWT", device.id),
        payload.as_bytes().to_vec(),
    )
}
