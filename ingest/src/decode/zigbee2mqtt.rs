//! Zigbee2MQTT device messages, decoded through a mapping table.
//!
//! Topics (base topic `zigbee2mqtt` by default): `<base>/<friendly_name>` carries a flat
//! JSON object of the device's exposed properties (`{"temperature":27.34,
//! "humidity":44.72,"linkquality":97}`); `<base>/<friendly_name>/availability` carries
//! `{"state":"online"}` (or the legacy bare `online`/`offline`). The friendly name is the
//! vigie device id, so it must be a valid [`DeviceId`] (no `/`). `<base>/bridge/…` and
//! the `/set`, `/get` command topics are Zigbee2MQTT's own, not device data: ingest
//! subscribes only to `<base>/+` and `<base>/+/availability`, and if one arrives anyway
//! it is refused as `bad_topic` with a detail saying so.
//!
//! Zigbee2MQTT sends no timestamp: readings are stamped with the receive time, unless
//! `last_seen` is present (`advanced.last_seen: ISO_8601` or `epoch`), which is then used.
//! Nested objects (`update`, `color`) are flattened to `update.state` etc. This decoder
//! must never panic and never store a key that the mapping does not name.

use serde_json::Value;
use vigie_core::DeviceId;
use vigie_core::registry::QuarantineReason;

use super::mapping::{Mapping, keep, raw, walk};
use super::{
    DecodeContext, Decoded, Decoder, MessageKind, Problem, Route, bad_topic, native, truncate_chars,
};

/// The format name, as in `[ingest.mapping.zigbee2mqtt]` and a device's `format`.
pub(crate) const FORMAT: &str = "zigbee2mqtt";

/// Built-in mapping: the exposes of common sensors and meters; radio and battery
/// details, and air-quality indexes vigie has no quantity for, are ignored.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("temperature", "temperature_c"),
    ("humidity", "humidity_pct"),
    ("co2", "co2_ppm"),
    ("energy", "electricity_kwh"),
    ("power", "power_w"),
    ("gas_consumed", "gas_m3"),
    ("water_consumed", "water_m3"),
    ("battery", "ignore"),
    ("linkquality", "ignore"),
    ("voltage", "ignore"),
    ("current", "ignore"),
    ("voc", "ignore"),
    ("voc_index", "ignore"),
    ("pm25", "ignore"),
    ("pm10", "ignore"),
    ("formaldehyd", "ignore"),
    ("illuminance", "ignore"),
    ("illuminance_lux", "ignore"),
    ("pressure", "ignore"),
    ("device_temperature", "ignore"),
    ("brightness", "ignore"),
    ("color_temp", "ignore"),
    ("update.*", "ignore"),
    ("color.*", "ignore"),
];

/// The Zigbee2MQTT decoder.
#[derive(Debug, Clone)]
pub struct Zigbee2MqttDecoder {
    base: String,
    mapping: Mapping,
}

impl Zigbee2MqttDecoder {
    /// A decoder under `base_topic` with the built-in mapping.
    pub fn new(base_topic: &str) -> Zigbee2MqttDecoder {
        Zigbee2MqttDecoder::with_mapping(base_topic, Mapping::builtin(FORMAT, BUILTIN))
    }

    /// A decoder under `base_topic` with a configured mapping.
    pub fn with_mapping(base_topic: &str, mapping: Mapping) -> Zigbee2MqttDecoder {
        Zigbee2MqttDecoder {
            base: base_topic.trim_end_matches('/').to_string(),
            mapping,
        }
    }

    /// The subscription filters of this format.
    pub fn topics(&self) -> Vec<String> {
        vec![
            format!("{}/+", self.base),
            format!("{}/+/availability", self.base),
        ]
    }
}

impl Decoder for Zigbee2MqttDecoder {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn route(&self, topic: &str) -> Option<Result<Route, Problem>> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        let bad = |why: String| Some(Err(bad_topic(topic, &why, None)));
        let (name, kind) = match rest.split_once('/') {
            None => (rest, MessageKind::Telemetry),
            Some((name, "availability")) => (name, MessageKind::Status),
            Some(_) if rest == "bridge" || rest.starts_with("bridge/") => {
                return bad(
                    "Zigbee2MQTT's bridge topics are not device data; subscribe to <base>/+ and <base>/+/availability only".into(),
                );
            }
            Some((_, tail)) if ["set", "get"].contains(&tail) || tail.starts_with("set/") => {
                return bad(format!(
                    "/{tail} is a Zigbee2MQTT command topic, not device data"
                ));
            }
            Some(_) => {
                return bad(
                    "a friendly name with '/' or an unknown subtopic; the friendly name must be a vigie device id (a-z A-Z 0-9 - _ .)".into(),
                );
            }
        };
        if name == "bridge" {
            return bad("Zigbee2MQTT's bridge topics are not device data".into());
        }
        match DeviceId::new(name) {
            Ok(device) => Some(Ok(Route { device, kind })),
            Err(e) => bad(format!("the friendly name is not a usable device id: {e}")),
        }
    }

    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        match route.kind {
            MessageKind::Status => decode_availability(payload),
            MessageKind::Telemetry => self.decode_state(route, payload, ctx),
        }
    }
}

impl Zigbee2MqttDecoder {
    fn decode_state(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        let value: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    format!("not valid JSON: {e}"),
                );
            }
        };
        let Value::Object(map) = value else {
            return Decoded::problem(
                QuarantineReason::Malformed,
                "expected a JSON object of device properties",
            );
        };
        let ts = match native::timestamp(map.get("last_seen"), ctx) {
            Ok(ts) => ts,
            Err(mut p) => {
                p.detail = format!("last_seen: {}; no value stored", p.detail);
                return Decoded {
                    problems: vec![p],
                    ..Decoded::default()
                };
            }
        };
        let mut out = Decoded::default();
        let device = route.device.as_str();
        walk("", &map, 0, &mut |key, v| {
            if key != "last_seen" {
                self.mapping
                    .push(&mut out, "", device, key, raw(v), ts, &keep);
            }
        });
        out
    }
}

fn decode_availability(payload: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(payload);
    let t = text.trim();
    let state = match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(m)) => m
            .get("state")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_default(),
        _ => t.to_string(),
    };
    let online = if state.eq_ignore_ascii_case("online") {
        true
    } else if state.eq_ignore_ascii_case("offline") {
        false
    } else {
        return Decoded::problem(
            QuarantineReason::Malformed,
            format!(
                "availability {:?} is neither online nor offline",
                truncate_chars(t, 40)
            ),
        );
    };
    Decoded {
        online: Some(online),
        ..Decoded::default()
    }
}

#[cfg(test)]
mod tests {
    use vigie_core::{Quantity, Timestamp};

    use super::*;
    use crate::decode::test_support::{ctx, decode_via};

    fn decode(topic: &str, payload: &str) -> Decoded {
        decode_via(&Zigbee2MqttDecoder::new("zigbee2mqtt"), topic, payload)
    }

    fn values(d: &Decoded) -> Vec<(Quantity, f64)> {
        d.readings.iter().map(|r| (r.quantity, r.value)).collect()
    }

    #[test]
    fn the_documented_temperature_sensor_message_decodes_at_receive_time() {
        // zigbee2mqtt.io, "MQTT Topics and Messages": Xiaomi MiJia WSDCGQ01LM.
        let d = decode(
            "zigbee2mqtt/salle-1",
            r#"{"temperature": 27.34, "humidity": 44.72}"#,
        );
        let mut v = values(&d);
        v.sort_by_key(|a| a.0);
        assert_eq!(
            v,
            [
                (Quantity::TemperatureC, 27.34),
                (Quantity::HumidityPct, 44.72)
            ]
        );
        assert!(d.readings.iter().all(|r| r.ts == ctx().received_at));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn battery_linkquality_voc_and_pm25_are_ignored_not_errors() {
        // Shape of a Zigbee2MQTT air-quality sensor state (exposes co2, voc, pm25…).
        let d = decode(
            "zigbee2mqtt/aq-3",
            r#"{"co2":812,"voc":120,"pm25":7,"formaldehyd":3,"temperature":21.4,"humidity":48,"battery":86,"voltage":2985,"linkquality":97,"update":{"state":"idle","installed_version":16777241},"update_available":false}"#,
        );
        let mut v = values(&d);
        v.sort_by_key(|a| a.0);
        assert_eq!(
            v,
            [
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 21.4),
                (Quantity::HumidityPct, 48.0)
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn a_metering_plug_gives_energy_and_power_and_uses_last_seen() {
        // A Zigbee2MQTT log line (Xiaomi QBKG12LM) with `last_seen` in ISO 8601:
        // {"power":0,"consumption":0.32,"temperature":16,"linkquality":34,"last_seen":"2020-02-26T20:44:09+01:00",…}
        // here with `energy` (the current expose name) and a recent last_seen.
        let d = decode(
            "zigbee2mqtt/plug-2",
            r#"{"power":830,"energy":12345.6,"state":"ON","linkquality":34,"last_seen":"2026-11-29T11:14:09+01:00"}"#,
        );
        assert_eq!(
            values(&d),
            [
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0)
            ]
        );
        let ts = Timestamp::parse_rfc3339("2026-11-29T10:14:09Z").unwrap();
        assert!(d.readings.iter().all(|r| r.ts == ts));
        // last_seen as epoch milliseconds (`advanced.last_seen: epoch`).
        let d = decode(
            "zigbee2mqtt/plug-2",
            r#"{"power":5,"last_seen":1764411270000}"#,
        );
        assert_eq!(d.readings[0].ts, Timestamp(1_764_411_270_000));
        let d = decode("zigbee2mqtt/plug-2", r#"{"power":5,"last_seen":"soon"}"#);
        assert_eq!(d.problems[0].reason, QuarantineReason::BadTimestamp);
        assert!(
            d.problems[0].detail.starts_with("last_seen"),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn an_unmapped_numeric_key_names_the_table_to_add_it_to() {
        let d = decode(
            "zigbee2mqtt/x",
            r#"{"foo": 3, "action": "single", "contact": true}"#,
        );
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].reason, QuarantineReason::UnknownQuantity);
        assert!(
            d.problems[0]
                .detail
                .contains(r#"zigbee2mqtt key "foo" = 3 has no mapping (add it under [ingest.mapping.zigbee2mqtt]"#),
            "{}",
            d.problems[0]
        );
    }

    #[test]
    fn availability_is_read_in_both_forms() {
        let on = decode("zigbee2mqtt/aq-3/availability", r#"{"state":"online"}"#);
        assert_eq!(on.online, Some(true));
        let off = decode("zigbee2mqtt/aq-3/availability", "offline");
        assert_eq!(off.online, Some(false));
        let bad = decode("zigbee2mqtt/aq-3/availability", r#"{"state":"maybe"}"#);
        assert_eq!(bad.problems[0].reason, QuarantineReason::Malformed);
    }

    #[test]
    fn bridge_command_and_unusable_names_are_refused_with_a_reason() {
        let d = Zigbee2MqttDecoder::new("zigbee2mqtt");
        for (topic, why) in [
            ("zigbee2mqtt/bridge/state", "bridge"),
            ("zigbee2mqtt/bridge", "bridge"),
            ("zigbee2mqtt/lamp/set", "command"),
            ("zigbee2mqtt/lamp/get", "command"),
            ("zigbee2mqtt/kitchen/floor_light", "friendly name with '/'"),
            ("zigbee2mqtt/salle 1", "device id"),
            ("zigbee2mqtt/", "device id"),
        ] {
            let p = d.route(topic).unwrap().unwrap_err();
            assert_eq!(p.reason, QuarantineReason::BadTopic, "{topic}");
            assert!(p.detail.contains(why), "{topic}: {p}");
        }
        assert!(d.route("zigbee2mqttx/a").is_none());
        assert!(d.route("vigie/a/telemetry").is_none());
        assert_eq!(d.topics(), ["zigbee2mqtt/+", "zigbee2mqtt/+/availability"]);
    }

    #[test]
    fn malformed_payloads_are_refused_whole() {
        for p in ["{", "[1,2]", "42", ""] {
            let d = decode("zigbee2mqtt/x", p);
            assert_eq!(d.problems[0].reason, QuarantineReason::Malformed, "{p}");
            assert!(d.readings.is_empty());
        }
    }
}
