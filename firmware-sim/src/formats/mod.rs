//! The payload formats a simulated device can publish in: vigie's own JSON and the
//! formats of the device ecosystems found in real buildings (Zigbee2MQTT, Tasmota,
//! The Things Stack LoRaWAN uplinks, Telegraf). One module per format; FORMATS.md
//! (next to Cargo.toml) lists the exact topics and keys, for the ingest decoders.
//!
//! An encoder turns [`Reading`]s into MQTT messages; it never draws a value of its
//! own except the radio and battery details an ecosystem always sends (link
//! quality, RSSI, battery), which are deterministic from (device, instant). It must
//! never drop a reading: a format that cannot carry a timestamp publishes history
//! in the native format instead (see [`Delivery`]).

mod native;
mod tasmota;
mod telegraf;
mod ttn;
mod zigbee2mqtt;

use std::fmt;
use std::str::FromStr;

use vigie_core::registry::{Device, DeviceKind};
use vigie_core::{BuildingId, DeviceId};

use crate::firmware::Reading;

pub use ttn::TTN_TENANT;

/// The ecosystem whose format and topics the simulated devices use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SimFormat {
    /// vigie's own JSON on `vigie/<device>/telemetry`.
    #[default]
    Native,
    /// Zigbee2MQTT device messages on `zigbee2mqtt/<friendly_name>`.
    Zigbee2Mqtt,
    /// Tasmota telemetry on `tele/<topic>/SENSOR`.
    Tasmota,
    /// The Things Stack v3 uplinks on `v3/<app>@<tenant>/devices/<device>/up`.
    Ttn,
    /// Telegraf's MQTT output with `data_format = "influx"` (line protocol).
    Telegraf,
    /// Telegraf's MQTT output with `data_format = "json"`.
    TelegrafJson,
}

impl SimFormat {
    /// Every format.
    pub const ALL: [SimFormat; 6] = [
        SimFormat::Native,
        SimFormat::Zigbee2Mqtt,
        SimFormat::Tasmota,
        SimFormat::Ttn,
        SimFormat::Telegraf,
        SimFormat::TelegrafJson,
    ];

    /// The name used on the command line and in the registry's `format` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SimFormat::Native => "native",
            SimFormat::Zigbee2Mqtt => "zigbee2mqtt",
            SimFormat::Tasmota => "tasmota",
            SimFormat::Ttn => "ttn",
            SimFormat::Telegraf => "telegraf",
            SimFormat::TelegrafJson => "telegraf-json",
        }
    }

    /// Whether the format's payload carries the reading's timestamp.
    pub fn carries_timestamps(self) -> bool {
        self != SimFormat::Zigbee2Mqtt
    }

    /// Most readings published in one message when several are waiting (a backlog or
    /// a day of history); 1 for ecosystems that publish one reading per message.
    pub(crate) fn max_batch(self) -> usize {
        match self {
            SimFormat::Tasmota | SimFormat::Ttn => 1,
            SimFormat::Native | SimFormat::Zigbee2Mqtt => 100,
            SimFormat::Telegraf | SimFormat::TelegrafJson => 100,
        }
    }

    /// Litres (gas, water) or Wh (electricity) per pulse when a `kind` device publishes
    /// its index as a pulse count in this format (Tasmota counters): the registry's
    /// `pulse_factor` for it. `None` when the format publishes the index itself.
    pub fn pulse_factor(self, kind: DeviceKind) -> Option<f64> {
        match (self, kind) {
            (SimFormat::Tasmota, DeviceKind::GasMeter) => Some(tasmota::GAS_M3_PER_PULSE * 1000.0),
            (SimFormat::Tasmota, DeviceKind::WaterMeter) => {
                Some(tasmota::WATER_M3_PER_PULSE * 1000.0)
            }
            _ => None,
        }
    }

    /// Whether readings need [`Reading::day_energy`].
    pub(crate) fn needs_day_energy(self) -> bool {
        self == SimFormat::Tasmota
    }
}

impl fmt::Display for SimFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`SimFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown simulator format `{0}`: expected one of native, zigbee2mqtt, tasmota, ttn, telegraf, telegraf-json"
)]
pub struct UnknownFormat(pub String);

impl FromStr for SimFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        SimFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted)
            .or(match wanted.as_str() {
                "z2m" => Some(SimFormat::Zigbee2Mqtt),
                "telegraf-influx" | "influx" => Some(SimFormat::Telegraf),
                "the-things-stack" | "lorawan" => Some(SimFormat::Ttn),
                _ => None,
            })
            .ok_or_else(|| UnknownFormat(s.chars().take(40).collect()))
    }
}

/// What an encoder needs to know about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The registry id (also the Zigbee2MQTT friendly name, the Tasmota topic, the
    /// TTS device id and the Telegraf `device` tag).
    pub id: DeviceId,
    /// What it is.
    pub kind: DeviceKind,
    /// Its building (the TTS application id, the Telegraf `building` tag).
    pub building: BuildingId,
}

impl DeviceInfo {
    /// The info of an installed device (`None` if it has no building).
    pub fn of(device: &Device) -> Option<DeviceInfo> {
        Some(DeviceInfo {
            id: device.id.clone(),
            kind: device.kind,
            building: device.building_id.clone()?,
        })
    }
}

/// One MQTT message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retain flag (status messages only).
    pub retain: bool,
    /// vigie samples (quantity values) it carries.
    pub samples: u64,
}

/// Whether readings are the device's current one or older ones (history, backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The reading just taken: published as the ecosystem does.
    Current,
    /// Older readings: published with their timestamps. Formats that carry none
    /// (Zigbee2MQTT) publish them in the native format instead, as one JSON array.
    History,
}

/// Encodes readings of `device` in `format`. Tasmota and TTS publish one message per
/// reading; the others put several readings in one message (a native JSON array, a
/// Telegraf batch).
pub fn encode(
    format: SimFormat,
    device: &DeviceInfo,
    readings: &[Reading],
    delivery: Delivery,
) -> Vec<Message> {
    if readings.is_empty() {
        return Vec::new();
    }
    match format {
        SimFormat::Native => vec![native::encode(device, readings)],
        SimFormat::Zigbee2Mqtt => match (delivery, readings) {
            (Delivery::Current, [one]) => vec![zigbee2mqtt::encode(device, one)],
            _ => vec![native::encode(device, readings)],
        },
        SimFormat::Tasmota => readings
            .iter()
            .map(|r| tasmota::encode(device, r))
            .collect(),
        SimFormat::Ttn => readings.iter().map(|r| ttn::encode(device, r)).collect(),
        SimFormat::Telegraf => vec![telegraf::encode_influx(device, readings)],
        SimFormat::TelegrafJson => vec![telegraf::encode_json(device, readings)],
    }
}

/// The retained availability message of a device in `format` (`online` when it
/// connects, `offline` as its last will), or `None` for ecosystems whose devices have
/// no MQTT presence of their own (TTS, Telegraf).
pub fn status(format: SimFormat, device: &DeviceInfo, online: bool) -> Option<Message> {
    let (topic, payload) = match format {
        SimFormat::Native => native::status(device, online),
        SimFormat::Zigbee2Mqtt => zigbee2mqtt::status(device, online),
        SimFormat::Tasmota => tasmota::status(device, online),
        SimFormat::Ttn | SimFormat::Telegraf | SimFormat::TelegrafJson => return None,
    };
    Some(Message {
        topic,
        payload,
        retain: true,
        samples: 0,
    })
}

/// Vigie samples in readings.
fn samples(readings: &[Reading]) -> u64 {
    readings.iter().map(|r| r.values.len() as u64).sum()
}

/// A float rounded to `decimals`, as a JSON number.
fn num(v: f64, decimals: i32) -> serde_json::Value {
    let f = 10f64.powi(decimals);
    let r = (v * f).round() / f;
    if decimals == 0 && r.abs() < 9e15 {
        serde_json::Value::from(r as i64)
    } else {
        serde_json::Value::from(r)
    }
}
