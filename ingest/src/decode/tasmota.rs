//! Tasmota telemetry, decoded through a mapping table.
//!
//! Topics (Tasmota's default FullTopic `%prefix%/%topic%/`, prefix `tele`):
//! - `tele/<topic>/SENSOR`: `{"Time":"2026-11-29T11:15:00","ENERGY":{"Total":12.3,
//!   "Power":830,…},"SCD30":{"CarbonDioxide":812,"Temperature":21.4,…},"TempUnit":"C"}`;
//!   each sensor object's fields are looked up as `Sensor.Field`, then `Field`
//!   (`ENERGY.Total` → electricity_kwh, `CarbonDioxide` → co2_ppm, `Temperature` →
//!   temperature_c…);
//! - `tele/<topic>/STATE`: periodic device state; it proves the device is online;
//! - `tele/<topic>/LWT`: `Online` / `Offline` (retained; the last will).
//!
//! The Tasmota topic is the vigie device id. `Time` is local time without an offset:
//! it is read as Europe/Paris wall-clock time (devices set with `Timezone 99` and the
//! French DST rules); see `stamp::paris_local` for the repeated and skipped hours. A
//! `Time` with an offset (`SetOption52 1`) is taken as is; no `Time` means receive time.
//! `TempUnit: "F"` converts temperatures to °C. Pulse counters (`COUNTER.C1`…`C8`)
//! are `pulses` by default: the meter's registry `pulse_factor` (litres or Wh per pulse)
//! turns them into its index (`crate::normalise`). This decoder must never panic and
//! never store a key that the mapping does not name.

use serde_json::Value;
use vigie_core::registry::QuarantineReason;
use vigie_core::{DeviceId, Quantity, Unit};

use super::mapping::{Mapping, raw, walk};
use super::{
    DecodeContext, Decoded, Decoder, MessageKind, Problem, Route, bad_topic, stamp, truncate_chars,
};

/// The format name, as in `[ingest.mapping.tasmota]` and a device's `format`.
pub(crate) const FORMAT: &str = "tasmota";

/// Built-in mapping: energy monitors, pulse counters and common climate sensors (SCD30,
/// SCD40, BME280, SHT3X, DS18B20…); derived or diagnostic values are ignored.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("ENERGY.Total", "electricity_kwh"),
    ("ENERGY.Power", "power_w"),
    ("ENERGY.*", "ignore"),
    // Counter inputs C1…C8 (`SetOption` counters on a gas or water meter's pulse output).
    ("COUNTER.*", "pulses"),
    ("CarbonDioxide", "co2_ppm"),
    ("Temperature", "temperature_c"),
    ("Humidity", "humidity_pct"),
    ("DewPoint", "ignore"),
    ("Pressure", "ignore"),
    ("SeaPressure", "ignore"),
    ("eCO2", "ignore"),
    ("TVOC", "ignore"),
    ("Gas", "ignore"),
    ("Illuminance", "ignore"),
    ("Id", "ignore"),
    ("ESP32.Temperature", "ignore"),
    ("Global.Temperature", "ignore"),
    ("Global.Humidity", "ignore"),
    ("Global.DewPoint", "ignore"),
];

/// What the last topic level says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffix {
    Sensor,
    State,
    Lwt,
}

/// The Tasmota decoder.
#[derive(Debug, Clone)]
pub struct TasmotaDecoder {
    prefix: String,
    mapping: Mapping,
}

impl TasmotaDecoder {
    /// A decoder under `prefix` (`tele`) with the built-in mapping.
    pub fn new(prefix: &str) -> TasmotaDecoder {
        TasmotaDecoder::with_mapping(prefix, Mapping::builtin(FORMAT, BUILTIN))
    }

    /// A decoder under `prefix` with a configured mapping.
    pub fn with_mapping(prefix: &str, mapping: Mapping) -> TasmotaDecoder {
        TasmotaDecoder {
            prefix: prefix.trim_end_matches('/').to_string(),
            mapping,
        }
    }

    /// The subscription filters of this format.
    pub fn topics(&self) -> Vec<String> {
        ["SENSOR", "STATE", "LWT"]
            .iter()
            .map(|s| format!("{}/+/{s}", self.prefix))
            .collect()
    }

    fn suffix(topic: &str) -> Option<Suffix> {
        match topic.rsplit_once('/')?.1 {
            "SENSOR" => Some(Suffix::Sensor),
            "STATE" => Some(Suffix::State),
            "LWT" => Some(Suffix::Lwt),
            _ => None,
        }
    }
}

impl Decoder for TasmotaDecoder {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn route(&self, topic: &str) -> Option<Result<Route, Problem>> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let bad = |why: String| {
            Some(Err(bad_topic(
                topic,
                &why,
                Some(&format!("{}/<topic>/SENSOR, STATE or LWT", self.prefix)),
            )))
        };
        let Some((name, suffix)) = rest.split_once('/') else {
            return bad("no message type".into());
        };
        let kind = match TasmotaDecoder::suffix(topic) {
            Some(_) if suffix.contains('/') => return bad("too many levels".into()),
            Some(Suffix::Sensor) => MessageKind::Telemetry,
            Some(Suffix::State | Suffix::Lwt) => MessageKind::Status,
            None => return bad(format!("{:?} is not decoded", truncate_chars(suffix, 20))),
        };
        match DeviceId::new(name) {
            Ok(device) => Some(Ok(Route { device, kind })),
            Err(e) => bad(format!("the Tasmota topic is not a usable device id: {e}")),
        }
    }

    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        match route.kind {
            MessageKind::Telemetry => self.decode_sensor(route, payload, ctx),
            MessageKind::Status => decode_status(payload),
        }
    }
}

/// LWT (`Online` / `Offline`) or STATE (a JSON object: the device is online).
fn decode_status(payload: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(payload);
    let t = text.trim();
    let online = if t.eq_ignore_ascii_case("online") {
        true
    } else if t.eq_ignore_ascii_case("offline") {
        false
    } else if matches!(serde_json::from_str::<Value>(t), Ok(Value::Object(_))) {
        true
    } else {
        return Decoded::problem(
            QuarantineReason::Malformed,
            format!(
                "status {:?} is neither Online, Offline nor a STATE object",
                truncate_chars(t, 40)
            ),
        );
    };
    Decoded {
        online: Some(online),
        ..Decoded::default()
    }
}

impl TasmotaDecoder {
    fn decode_sensor(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        let map = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    "expected a JSON object with Time and sensor objects",
                );
            }
            Err(e) => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    format!("not valid JSON: {e}"),
                );
            }
        };
        let ts = match map.get("Time") {
            None | Some(Value::Null) => Ok(ctx.received_at),
            Some(Value::String(s)) => stamp::paris_local(s)
                .map_err(|e| Problem::new(QuarantineReason::BadTimestamp, e))
                .and_then(|ts| stamp::accept(ts, ctx, "Time")),
            Some(_) => Err(Problem::new(
                QuarantineReason::BadTimestamp,
                "Time must be text (YYYY-MM-DDTHH:MM:SS)",
            )),
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(mut p) => {
                p.detail.push_str("; no value stored");
                return Decoded {
                    problems: vec![p],
                    ..Decoded::default()
                };
            }
        };
        let temp_unit = map.get("TempUnit").and_then(Value::as_str).unwrap_or("C");
        let adjust = |q: Quantity, v: f64| -> Result<f64, String> {
            if q.unit() != Unit::Celsius {
                return Ok(v);
            }
            match temp_unit {
                "C" => Ok(v),
                "F" => Ok((v - 32.0) * 5.0 / 9.0),
                other => Err(format!(
                    "TempUnit {:?} is neither C nor F",
                    truncate_chars(other, 8)
                )),
            }
        };
        let mut out = Decoded::default();
        let device = route.device.as_str();
        walk("", &map, 0, &mut |key, v| {
            // Top-level texts are Time and units; sensor values live in objects.
            if key.contains('.') || !v.is_string() {
                self.mapping
                    .push(&mut out, "", device, key, raw(v), ts, &adjust);
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use vigie_core::Timestamp;

    use super::*;
    use crate::decode::test_support::{ctx, decode_via};

    fn decode(topic: &str, payload: &str) -> Decoded {
        decode_via(&TasmotaDecoder::new("tele"), topic, payload)
    }

    fn values(d: &Decoded) -> Vec<(Quantity, f64)> {
        let mut v: Vec<_> = d.readings.iter().map(|r| (r.quantity, r.value)).collect();
        v.sort_by_key(|a| a.0);
        v
    }

    #[test]
    fn an_energy_monitor_gives_total_and_power_at_paris_time() {
        // Shape of a Sonoff POW `tele/<topic>/SENSOR` (Tasmota docs and issue #1621:
        // {"Time":"2018-01-17T18:59:50","ENERGY":{"Total":1.956,"Yesterday":0.054,
        // "Today":0.049,"Period":0,"Power":9,"Factor":0.43,"Voltage":231,"Current":0.089}}),
        // with a current Tasmota's extra keys and a time in November (UTC+1).
        let d = decode(
            "tele/tasmota_5A1B2C/SENSOR",
            r#"{"Time":"2026-11-29T11:15:00","ENERGY":{"TotalStartTime":"2024-03-01T09:12:45","Total":1.956,"Yesterday":0.054,"Today":0.049,"Period":0,"Power":9,"ApparentPower":21,"ReactivePower":19,"Factor":0.43,"Voltage":231,"Current":0.089}}"#,
        );
        assert_eq!(
            values(&d),
            [(Quantity::ElectricityKwh, 1.956), (Quantity::PowerW, 9.0)]
        );
        let ts = Timestamp::parse_rfc3339("2026-11-29T10:15:00Z").unwrap();
        assert!(d.readings.iter().all(|r| r.ts == ts), "{:?}", d.readings);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn climate_sensor_objects_give_co2_temperature_and_humidity() {
        // Tasmota docs, SCD30 page: {"Time":…,"SCD30":{"CarbonDioxide":…,"eCO2":…,
        // "Temperature":…,"Humidity":…,"DewPoint":…},"TempUnit":"C"}.
        let d = decode(
            "tele/aq-1/SENSOR",
            r#"{"Time":"2026-11-29T11:10:00","SCD30":{"CarbonDioxide":812,"eCO2":790,"Temperature":21.4,"Humidity":45.3,"DewPoint":9.2},"TempUnit":"C"}"#,
        );
        assert_eq!(
            values(&d),
            [
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 21.4),
                (Quantity::HumidityPct, 45.3)
            ]
        );
        // Tasmota docs, BME280: Temperature, Humidity, DewPoint, Pressure; PressureUnit.
        let d = decode(
            "tele/meteo-1/SENSOR",
            r#"{"Time":"2026-11-29T11:10:00","BME280":{"Temperature":19.6,"Humidity":52.1,"DewPoint":9.6,"Pressure":1013.4},"PressureUnit":"hPa","TempUnit":"C"}"#,
        );
        assert_eq!(
            values(&d),
            [
                (Quantity::TemperatureC, 19.6),
                (Quantity::HumidityPct, 52.1)
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn fahrenheit_is_converted_to_celsius() {
        // DS18B20 with `SetOption8 1` (TempUnit F).
        let d = decode(
            "tele/ext-1/SENSOR",
            r#"{"Time":"2026-11-29T11:10:00","DS18B20":{"Id":"000012345678","Temperature":50.0},"TempUnit":"F"}"#,
        );
        assert_eq!(values(&d), [(Quantity::TemperatureC, 10.0)]);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let d = decode(
            "tele/ext-1/SENSOR",
            r#"{"DS18B20":{"Temperature":50.0},"TempUnit":"K"}"#,
        );
        assert_eq!(d.problems[0].reason, QuarantineReason::Malformed);
        assert!(
            d.problems[0].detail.contains("TempUnit"),
            "{}",
            d.problems[0]
        );
    }

    #[test]
    fn an_unset_clock_or_a_bad_time_is_refused_and_no_time_means_receive_time() {
        let d = decode(
            "tele/p/SENSOR",
            r#"{"Time":"1970-01-01T00:00:12","ENERGY":{"Power":3}}"#,
        );
        assert_eq!(d.problems[0].reason, QuarantineReason::BadTimestamp);
        assert!(d.readings.is_empty());
        let d = decode(
            "tele/p/SENSOR",
            r#"{"Time":"2026-11-29T12:00:00","ENERGY":{"Power":3}}"#,
        );
        assert_eq!(d.problems[0].reason, QuarantineReason::FutureTimestamp);
        let d = decode("tele/p/SENSOR", r#"{"ENERGY":{"Power":3}}"#);
        assert_eq!(d.readings[0].ts, ctx().received_at);
    }

    #[test]
    fn pulse_counters_are_pulses_by_default() {
        // Tasmota docs, Counters: `{"Time":…,"COUNTER":{"C1":123456}}`.
        let d = decode(
            "tele/gas-1/SENSOR",
            r#"{"Time":"2026-11-29T11:10:00","COUNTER":{"C1":123456}}"#,
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(values(&d), [(Quantity::Pulses, 123456.0)]);
    }

    #[test]
    fn lwt_and_state_set_availability() {
        assert_eq!(decode("tele/p/LWT", "Online").online, Some(true));
        assert_eq!(decode("tele/p/LWT", "Offline").online, Some(false));
        // Tasmota docs: tele/<topic>/STATE.
        let state = r#"{"Time":"2026-11-29T11:10:00","Uptime":"0T00:15:08","UptimeSec":908,"Heap":27,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER":"ON","Wifi":{"AP":1,"SSId":"mairie","RSSI":62,"Signal":-69}}"#;
        assert_eq!(decode("tele/p/STATE", state).online, Some(true));
        assert_eq!(
            decode("tele/p/LWT", "bof").problems[0].reason,
            QuarantineReason::Malformed
        );
    }

    #[test]
    fn topics_are_routed_or_refused_with_a_reason() {
        let d = TasmotaDecoder::new("tele");
        for bad in [
            "tele/p/INFO1",
            "tele/p",
            "tele/a b/SENSOR",
            "tele/x/y/SENSOR",
        ] {
            let p = d.route(bad).unwrap().unwrap_err();
            assert_eq!(p.reason, QuarantineReason::BadTopic, "{bad}");
        }
        assert!(d.route("stat/p/RESULT").is_none());
        assert_eq!(d.topics(), ["tele/+/SENSOR", "tele/+/STATE", "tele/+/LWT"]);
    }
}
