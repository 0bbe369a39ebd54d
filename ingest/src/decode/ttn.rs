//! The Things Stack (v3) uplinks, decoded through a mapping table.
//!
//! Topic `v3/<application-id>@<tenant>/devices/<device-id>/up` (`v3/<application-id>/
//! devices/<device-id>/up` on a single-tenant deployment); ingest subscribes to
//! `v3/+/devices/+/up`. The device id of the stack is the vigie device id: device ids
//! must be unique across applications. Other message types (`join`, `down/…`,
//! `service/data`, `location/solved`) are not device data and are refused as
//! `bad_topic` if they arrive.
//!
//! Values come from `uplink_message.decoded_payload`, the output of the application's
//! uplink payload formatter (nested keys joined with `.`), through the mapping table.
//! An uplink with `frm_payload` but no `decoded_payload` is quarantined: the
//! application has no payload formatter, and vigie never decodes device bytes itself.
//! The timestamp is `received_at` (RFC 3339 with nanoseconds, UTC); then
//! `uplink_message.received_at`; then the receive time. This decoder must never panic.

use serde_json::{Map, Value};
use vigie_core::DeviceId;
use vigie_core::registry::QuarantineReason;

use super::mapping::{Mapping, keep, raw, walk};
use super::{
    DecodeContext, Decoded, Decoder, MessageKind, Problem, Route, bad_topic, stamp, truncate_chars,
};
use vigie_core::Timestamp;

/// The format name, as in `[ingest.mapping.ttn]` and a device's `format`.
pub(crate) const FORMAT: &str = "ttn";

/// Built-in mapping: vigie's own quantity names, and the names common payload
/// formatters use (Elsys, Milesight, Dragino-like `temperature`, `humidity`, `co2`).
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("electricity_kwh", "electricity_kwh"),
    ("power_w", "power_w"),
    ("gas_m3", "gas_m3"),
    ("water_m3", "water_m3"),
    ("co2_ppm", "co2_ppm"),
    ("temperature_c", "temperature_c"),
    ("humidity_pct", "humidity_pct"),
    ("outdoor_temperature_c", "outdoor_temperature_c"),
    ("energy_kwh", "electricity_kwh"),
    ("power", "power_w"),
    ("co2", "co2_ppm"),
    ("temperature", "temperature_c"),
    ("humidity", "humidity_pct"),
    ("vdd", "ignore"),
    ("battery", "ignore"),
    ("light", "ignore"),
    ("motion", "ignore"),
    ("bytes", "ignore"),
];

/// The Things Stack decoder.
#[derive(Debug, Clone)]
pub struct TtnDecoder {
    prefix: String,
    mapping: Mapping,
}

impl TtnDecoder {
    /// A decoder under `prefix` (`v3`) with the built-in mapping.
    pub fn new(prefix: &str) -> TtnDecoder {
        TtnDecoder::with_mapping(prefix, Mapping::builtin(FORMAT, BUILTIN))
    }

    /// A decoder under `prefix` with a configured mapping.
    pub fn with_mapping(prefix: &str, mapping: Mapping) -> TtnDecoder {
        TtnDecoder {
            prefix: prefix.trim_end_matches('/').to_string(),
            mapping,
        }
    }

    /// The subscription filters of this format.
    pub fn topics(&self) -> Vec<String> {
        vec![format!("{}/+/devices/+/up", self.prefix)]
    }
}

impl Decoder for TtnDecoder {
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
                Some(&format!(
                    "{}/<app-id>@<tenant>/devices/<device-id>/up",
                    self.prefix
                )),
            )))
        };
        let mut parts = rest.splitn(4, '/');
        let (app, devices, device, tail) = (parts.next(), parts.next(), parts.next(), parts.next());
        if app.is_none_or(str::is_empty) || devices != Some("devices") {
            return bad("not a device topic".into());
        }
        match tail {
            Some("up") => {}
            Some(other) => {
                return bad(format!(
                    "{:?} messages carry no measurements",
                    truncate_chars(other, 30)
                ));
            }
            None => return bad("no message type".into()),
        }
        match DeviceId::new(device.unwrap_or_default()) {
            Ok(device) => Some(Ok(Route {
                device,
                kind: MessageKind::Telemetry,
            })),
            Err(e) => bad(format!("the end device id is not a usable device id: {e}")),
        }
    }

    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        let map = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Decoded::problem(QuarantineReason::Malformed, "expected a JSON object");
            }
            Err(e) => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    format!("not valid JSON: {e}"),
                );
            }
        };
        let Some(Value::Object(up)) = map.get("uplink_message") else {
            return Decoded::problem(
                QuarantineReason::Malformed,
                "no uplink_message object: not an uplink",
            );
        };
        let decoded = match up.get("decoded_payload") {
            Some(Value::Object(d)) => d,
            Some(other) if !other.is_null() => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    "uplink_message.decoded_payload is not an object",
                );
            }
            _ if up.contains_key("frm_payload") => {
                return Decoded::problem(
                    QuarantineReason::Malformed,
                    "uplink has frm_payload but no decoded_payload: the application has no uplink payload formatter (add one in The Things Stack: Applications → Payload formatters → Uplink); vigie does not decode device bytes",
                );
            }
            // A MAC-only uplink (no application payload): nothing to store.
            _ => return Decoded::default(),
        };
        let ts = match received_at(&map, up, ctx) {
            Ok(ts) => ts,
            Err(mut p) => {
                p.detail.push_str("; no value stored");
                return Decoded {
                    problems: vec![p],
                    ..Decoded::default()
                };
            }
        };
        let mut out = Decoded::default();
        let device = route.device.as_str();
        walk("", decoded, 0, &mut |key, v| {
            self.mapping
                .push(&mut out, "", device, key, raw(v), ts, &keep);
        });
        out
    }
}

fn received_at(
    map: &Map<String, Value>,
    up: &Map<String, Value>,
    ctx: &DecodeContext,
) -> Result<Timestamp, Problem> {
    let (what, v) = match (map.get("received_at"), up.get("received_at")) {
        (Some(v), _) => ("received_at", v),
        (None, Some(v)) => ("uplink_message.received_at", v),
        (None, None) => return Ok(ctx.received_at),
    };
    let Value::String(s) = v else {
        return Err(Problem::new(
            QuarantineReason::BadTimestamp,
            format!("{what} must be RFC 3339 text"),
        ));
    };
    let ts = Timestamp::parse_rfc3339(s).map_err(|e| {
        Problem::new(
            QuarantineReason::BadTimestamp,
            format!("{what} {:?} is not RFC 3339 ({e})", truncate_chars(s, 40)),
        )
    })?;
    stamp::accept(ts, ctx, what)
}

#[cfg(test)]
mod tests {
    use vigie_core::Quantity;

    use super::*;
    use crate::decode::test_support::{ctx, decode_via};

    fn decode(topic: &str, payload: &str) -> Decoded {
        decode_via(&TtnDecoder::new("v3"), topic, payload)
    }

    /// The uplink example of The Things Stack docs, "Integrations → Data Formats →
    /// Uplink Messages" (same fields and nesting; dates moved to 2026 and the decoded
    /// payload of an Elsys ERS CO2 style formatter).
    const DOC_UPLINK: &str = r#"{
      "end_device_ids": {
        "device_id": "ers-co2-12",
        "application_ids": {"application_id": "ecole-jaures"},
        "dev_eui": "A81758FFFE0312A4",
        "join_eui": "800000000000000C",
        "dev_addr": "00BCB929"
      },
      "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ", "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE"],
      "received_at": "2026-11-29T10:15:09.935284891Z",
      "uplink_message": {
        "session_key_id": "AXA50...",
        "f_port": 5,
        "f_cnt": 743,
        "frm_payload": "AQDYAhwEAYUGAywHDhA=",
        "decoded_payload": {"temperature": 21.6, "humidity": 28, "light": 389, "motion": 0, "co2": 812, "vdd": 3600},
        "rx_metadata": [{
          "gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
          "time": "2026-11-29T10:15:09.668092Z",
          "timestamp": 2463457000,
          "rssi": -35,
          "channel_rssi": -35,
          "snr": 8.2,
          "uplink_token": "ChIKEAoEZ3R3MRIImFyOAAAaBcQQ6PXalwkaCwiFkvnyBRCo/bs9",
          "channel_index": 5
        }],
        "settings": {
          "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
          "coding_rate": "4/5",
          "frequency": "867500000",
          "timestamp": 2463457000,
          "time": "2026-11-29T10:15:09.668092Z"
        },
        "received_at": "2026-11-29T10:15:09.667906198Z",
        "consumed_airtime": "0.056576s"
      }
    }"#;

    #[test]
    fn the_documented_uplink_decodes_at_received_at() {
        let d = decode("v3/ecole-jaures@ttn/devices/ers-co2-12/up", DOC_UPLINK);
        let mut v: Vec<_> = d.readings.iter().map(|r| (r.quantity, r.value)).collect();
        v.sort_by_key(|a| a.0);
        assert_eq!(
            v,
            [
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 21.6),
                (Quantity::HumidityPct, 28.0)
            ]
        );
        // Nanoseconds are cut to the millisecond.
        let ts = Timestamp::parse_rfc3339("2026-11-29T10:15:09.935Z").unwrap();
        assert!(d.readings.iter().all(|r| r.ts == ts));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn an_uplink_without_payload_formatter_says_so() {
        let no_formatter = DOC_UPLINK.replace(
            r#""decoded_payload": {"temperature": 21.6, "humidity": 28, "light": 389, "motion": 0, "co2": 812, "vdd": 3600},"#,
            "",
        );
        let d = decode("v3/ecole-jaures/devices/ers-co2-12/up", &no_formatter);
        assert_eq!(d.problems[0].reason, QuarantineReason::Malformed);
        assert!(
            d.problems[0].detail.contains("payload formatter"),
            "{}",
            d.problems[0]
        );
    }

    #[test]
    fn a_meter_with_vigie_names_and_an_unknown_key() {
        let d = decode(
            "v3/mairie@ttn/devices/elec-3/up",
            r#"{"received_at":"2026-11-29T10:15:00.123456789Z","uplink_message":{"f_port":1,"frm_payload":"AA==","decoded_payload":{"energy_kwh":12345.678,"power_w":830,"phase":{"l1_volts":231}}}}"#,
        );
        assert_eq!(d.readings.len(), 2);
        assert_eq!(d.problems.len(), 1);
        assert!(
            d.problems[0].detail.contains(r#"ttn key "phase.l1_volts""#),
            "{}",
            d.problems[0]
        );
    }

    #[test]
    fn timestamps_fall_back_and_are_checked() {
        let d = decode(
            "v3/a/devices/d/up",
            r#"{"uplink_message":{"decoded_payload":{"co2":500},"received_at":"2026-11-29T10:15:00Z"}}"#,
        );
        assert_eq!(
            d.readings[0].ts,
            Timestamp::parse_rfc3339("2026-11-29T10:15:00Z").unwrap()
        );
        let d = decode(
            "v3/a/devices/d/up",
            r#"{"uplink_message":{"decoded_payload":{"co2":500}}}"#,
        );
        assert_eq!(d.readings[0].ts, ctx().received_at);
        let d = decode(
            "v3/a/devices/d/up",
            r#"{"received_at":"2026-11-30T00:00:00Z","uplink_message":{"decoded_payload":{"co2":500}}}"#,
        );
        assert_eq!(d.problems[0].reason, QuarantineReason::FutureTimestamp);
        let d = decode(
            "v3/a/devices/d/up",
            r#"{"received_at":12,"uplink_message":{"decoded_payload":{}}}"#,
        );
        assert_eq!(d.problems[0].reason, QuarantineReason::BadTimestamp);
    }

    #[test]
    fn topics_are_routed_or_refused_with_a_reason() {
        let d = TtnDecoder::new("v3");
        let r = d.route("v3/app1@tenant1/devices/dev1/up").unwrap().unwrap();
        assert_eq!(r.device.as_str(), "dev1");
        for bad in [
            "v3/app1/devices/dev1/join",
            "v3/app1/devices/dev1/down/queued",
            "v3/app1/devices/dev1",
            "v3/app1/gateways/g/up",
            "v3//devices/d/up",
            "v3/app1/devices/d%20x/up",
        ] {
            let p = d.route(bad).unwrap().unwrap_err();
            assert_eq!(p.reason, QuarantineReason::BadTopic, "{bad}");
        }
        assert!(d.route("v30/a/devices/d/up").is_none());
        assert_eq!(d.topics(), ["v3/+/devices/+/up"]);
    }
}
