//! vigie's native payload (DESIGN.md), decoded from untrusted bytes.
//!
//! Topics `vigie/<device_id>/telemetry` and `vigie/<device_id>/status`. Telemetry is
//! `{"ts": …, "values": {"<quantity>": number, …}}` or a JSON array of such objects (a
//! buffered backlog); `ts` is optional (receive time), RFC 3339 or epoch milliseconds.
//! Status is `online` or `offline`.
//!
//! Granularity of problems: malformed JSON or a payload of the wrong shape spoils the
//! whole message; an array element of the wrong shape, or with an unreadable or future
//! timestamp, spoils that element only; an unknown quantity, a non-numeric or an
//! out-of-range value spoils that value only. Keys other than `ts` and `values` are
//! ignored. This decoder must never guess: no unit conversion, no numbers in strings,
//! no seconds taken for milliseconds.

use serde_json::{Map, Value};
use vigie_core::payload::TOPIC_PREFIX;
use vigie_core::registry::QuarantineReason;
use vigie_core::{DeviceId, Quantity, Timestamp};

use super::{
    DecodeContext, Decoded, Decoder, MessageKind, Problem, Reading, Route, bad_topic,
    truncate_chars,
};

/// 2000-01-01T00:00:00Z: earlier epoch values are taken for a unit mistake (seconds).
const EARLIEST_MS: i64 = 946_684_800_000;
/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write.
const LATEST_MS: i64 = 253_402_300_799_999;

/// The native JSON decoder.
#[derive(Debug, Clone)]
pub struct NativeDecoder {
    prefix: String,
}

impl Default for NativeDecoder {
    fn default() -> Self {
        NativeDecoder::new(TOPIC_PREFIX)
    }
}

impl NativeDecoder {
    /// A decoder for topics under `prefix` (normally `vigie`).
    pub fn new(prefix: &str) -> NativeDecoder {
        NativeDecoder {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }
}

impl Decoder for NativeDecoder {
    fn format(&self) -> &'static str {
        "native"
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
                    "{p}/<device_id>/telemetry or {p}/<device_id>/status",
                    p = self.prefix
                )),
            )))
        };
        let mut parts = rest.split('/');
        let (device, suffix, extra) = (parts.next(), parts.next(), parts.next());
        let kind = match (suffix, extra) {
            (Some("telemetry"), None) => MessageKind::Telemetry,
            (Some("status"), None) => MessageKind::Status,
            _ => return bad("unknown topic shape".into()),
        };
        match DeviceId::new(device.unwrap_or_default()) {
            Ok(device) => Some(Ok(Route { device, kind })),
            Err(e) => bad(e.to_string()),
        }
    }

    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        match route.kind {
            MessageKind::Telemetry => decode_telemetry(payload, ctx),
            MessageKind::Status => decode_status(payload),
        }
    }
}

fn decode_status(payload: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(payload);
    let t = text.trim();
    if t.eq_ignore_ascii_case("online") {
        Decoded {
            online: Some(true),
            ..Decoded::default()
        }
    } else if t.eq_ignore_ascii_case("offline") {
        Decoded {
            online: Some(false),
            ..Decoded::default()
        }
    } else {
        Decoded::problem(
            QuarantineReason::Malformed,
            format!(
                "status {:?} is neither online nor offline",
                truncate_chars(t, 40)
            ),
        )
    }
}

fn decode_telemetry(payload: &[u8], ctx: &DecodeContext) -> Decoded {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return Decoded::problem(QuarantineReason::Malformed, format!("not valid JSON: {e}"));
        }
    };
    let mut out = Decoded::default();
    match &value {
        Value::Object(map) => decode_object(map, None, ctx, &mut out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(map) => decode_object(map, Some(i), ctx, &mut out),
                    other => out.problems.push(Problem::new(
                        QuarantineReason::Malformed,
                        format!("element {i}: expected an object, found {}", kind_of(other)),
                    )),
                }
            }
        }
        other => out.problems.push(Problem::new(
            QuarantineReason::Malformed,
            format!(
                "expected a JSON object or an array of objects, found {}",
                kind_of(other)
            ),
        )),
    }
    out
}

fn decode_object(
    map: &Map<String, Value>,
    index: Option<usize>,
    ctx: &DecodeContext,
    out: &mut Decoded,
) {
    let at = index.map(|i| format!("element {i}: ")).unwrap_or_default();
    let values = match map.get("values") {
        Some(Value::Object(values)) => values,
        Some(other) => {
            out.problems.push(Problem::new(
                QuarantineReason::Malformed,
                format!("{at}\"values\" must be an object, found {}", kind_of(other)),
            ));
            return;
        }
        None => {
            out.problems.push(Problem::new(
                QuarantineReason::Malformed,
                format!("{at}missing \"values\""),
            ));
            return;
        }
    };
    let ts = match timestamp(map.get("ts"), ctx) {
        Ok(ts) => ts,
        Err(mut p) => {
            p.detail = format!("{at}{}; {} value(s) not stored", p.detail, values.len());
            out.problems.push(p);
            return;
        }
    };
    for (name, v) in values {
        let quantity = match name.parse::<Quantity>() {
            Ok(q) => q,
            Err(_) => {
                out.problems.push(Problem::new(
                    QuarantineReason::UnknownQuantity,
                    format!("{at}{:?} is not a known quantity", truncate_chars(name, 64)),
                ));
                continue;
            }
        };
        let Some(value) = v.as_f64() else {
            out.problems.push(Problem::new(
                QuarantineReason::NonNumeric,
                format!(
                    "{at}{quantity} = {} is not a number",
                    truncate_chars(&v.to_string(), 64)
                ),
            ));
            continue;
        };
        if let Err(e) = quantity.check(value) {
            out.problems.push(Problem::new(
                QuarantineReason::OutOfRange,
                format!("{at}{e}"),
            ));
            continue;
        }
        out.readings.push(Reading {
            ts,
            quantity,
            value,
        });
    }
}

pub(super) fn timestamp(ts: Option<&Value>, ctx: &DecodeContext) -> Result<Timestamp, Problem> {
    let bad = |detail: String| Problem::new(QuarantineReason::BadTimestamp, detail);
    let ts = match ts {
        None | Some(Value::Null) => return Ok(ctx.received_at),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s).map_err(|e| {
            bad(format!(
                "ts {:?} is not RFC 3339 ({e})",
                truncate_chars(s, 40)
            ))
        })?,
        Some(Value::Number(n)) => {
            let ms = match n.as_i64() {
                Some(ms) => Some(ms),
                None => n
                    .as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                    .map(|f| f.round() as i64),
            };
            let ms = ms.ok_or_else(|| bad(format!("ts {n} is not a number of milliseconds")))?;
            if ms < EARLIEST_MS {
                return Err(bad(format!(
                    "ts {n} is before 2000-01-01 in epoch milliseconds (seconds given?)"
                )));
            }
            Timestamp(ms)
        }
        Some(other) => {
            return Err(bad(format!(
                "ts must be RFC 3339 text or epoch milliseconds, found {}",
                kind_of(other)
            )));
        }
    };
    if ts.0 > LATEST_MS || ts.0 < EARLIEST_MS {
        return Err(bad(format!("ts {ts} is outside 2000–9999")));
    }
    let latest = ctx.latest_acceptable();
    if ts > latest {
        return Err(Problem::new(
            QuarantineReason::FutureTimestamp,
            format!(
                "ts {ts} is more than {}s after reception ({})",
                ctx.max_future_skew.as_secs(),
                ctx.received_at
            ),
        ));
    }
    Ok(ts)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_support::ctx;

    fn telemetry(payload: &str) -> Decoded {
        let route = Route {
            device: DeviceId::new("elec-01").unwrap(),
            kind: MessageKind::Telemetry,
        };
        NativeDecoder::default().decode(&route, payload.as_bytes(), &ctx())
    }

    fn reasons(d: &Decoded) -> Vec<QuarantineReason> {
        d.problems.iter().map(|p| p.reason).collect()
    }

    #[test]
    fn the_documented_payload_decodes_to_its_readings() {
        let d = telemetry(
            r#"{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":12345.6,"power_w":830}}"#,
        );
        let ts = Timestamp::parse_rfc3339("2026-11-29T10:15:00Z").unwrap();
        assert_eq!(
            d.readings,
            vec![
                Reading {
                    ts,
                    quantity: Quantity::ElectricityKwh,
                    value: 12345.6
                },
                Reading {
                    ts,
                    quantity: Quantity::PowerW,
                    value: 830.0
                },
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn a_missing_ts_means_receive_time_and_epoch_millis_are_accepted() {
        let d = telemetry(r#"{"values":{"co2_ppm":812}}"#);
        assert_eq!(d.readings[0].ts, ctx().received_at);
        let d = telemetry(r#"{"ts":1764411300000,"values":{"co2_ppm":812}}"#);
        assert_eq!(d.readings[0].ts, Timestamp(1_764_411_300_000));
    }

    #[test]
    fn a_backlog_array_yields_every_element() {
        let d = telemetry(
            r#"[{"ts":"2026-11-29T10:00:00Z","values":{"water_m3":1.5}},
                {"ts":"2026-11-29T10:05:00Z","values":{"water_m3":1.6}}]"#,
        );
        assert_eq!(d.readings.len(), 2);
        assert_eq!(d.readings[1].value, 1.6);
    }

    #[test]
    fn malformed_json_or_wrong_shape_spoils_the_whole_message() {
        assert_eq!(
            reasons(&telemetry("{not json")),
            [QuarantineReason::Malformed]
        );
        assert_eq!(reasons(&telemetry("42")), [QuarantineReason::Malformed]);
        assert_eq!(
            reasons(&telemetry(r#"{"co2_ppm":812}"#)),
            [QuarantineReason::Malformed]
        );
        assert_eq!(
            reasons(&telemetry(r#"{"values":[1,2]}"#)),
            [QuarantineReason::Malformed]
        );
    }

    #[test]
    fn a_bad_value_spoils_only_itself() {
        let d = telemetry(
            r#"{"values":{"co2":1,"co2_ppm":"high","humidity_pct":140,"temperature_c":21.5}}"#,
        );
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].quantity, Quantity::TemperatureC);
        let mut r = reasons(&d);
        r.sort_by_key(|r| r.as_str());
        assert_eq!(
            r,
            [
                QuarantineReason::NonNumeric,
                QuarantineReason::OutOfRange,
                QuarantineReason::UnknownQuantity
            ]
        );
        assert!(d.problems.iter().any(|p| p.detail.contains("\"co2\"")));
    }

    #[test]
    fn a_bad_array_element_spoils_only_that_element() {
        let d = telemetry(
            r#"[{"values":{"co2_ppm":500}}, 7, {"ts":"yesterday","values":{"co2_ppm":600}}]"#,
        );
        assert_eq!(d.readings.len(), 1);
        assert_eq!(
            reasons(&d),
            [QuarantineReason::Malformed, QuarantineReason::BadTimestamp]
        );
        assert!(
            d.problems[1].detail.starts_with("element 2:"),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn future_and_implausible_timestamps_are_refused() {
        let d = telemetry(r#"{"ts":"2026-11-29T11:00:00Z","values":{"co2_ppm":500}}"#);
        assert_eq!(reasons(&d), [QuarantineReason::FutureTimestamp]);
        // Within the allowed skew: accepted.
        let d = telemetry(r#"{"ts":"2026-11-29T10:19:00Z","values":{"co2_ppm":500}}"#);
        assert_eq!(d.readings.len(), 1);
        // Epoch seconds instead of milliseconds.
        let d = telemetry(r#"{"ts":1764411300,"values":{"co2_ppm":500}}"#);
        assert_eq!(reasons(&d), [QuarantineReason::BadTimestamp]);
        assert!(d.problems[0].detail.contains("seconds"));
        let d = telemetry(r#"{"ts":true,"values":{"co2_ppm":500}}"#);
        assert_eq!(reasons(&d), [QuarantineReason::BadTimestamp]);
    }

    #[test]
    fn topics_are_routed_or_refused_with_a_reason() {
        let n = NativeDecoder::default();
        let r = n.route("vigie/aq-12/status").unwrap().unwrap();
        assert_eq!((r.device.as_str(), r.kind), ("aq-12", MessageKind::Status));
        for bad in [
            "vigie/aq-12/foo",
            "vigie/aq-12/telemetry/x",
            "vigie//telemetry",
            "vigie/a b/telemetry",
            "vigie/aq",
        ] {
            let p = n.route(bad).unwrap().unwrap_err();
            assert_eq!(p.reason, QuarantineReason::BadTopic, "{bad}");
        }
        assert!(n.route("other/aq-12/telemetry").is_none());
        assert!(n.route("vigiex/aq-12/telemetry").is_none());
    }

    #[test]
    fn status_is_online_or_offline() {
        let n = NativeDecoder::default();
        let route = Route {
            device: DeviceId::new("aq-12").unwrap(),
            kind: MessageKind::Status,
        };
        assert_eq!(n.decode(&route, b"online", &ctx()).online, Some(true));
        assert_eq!(n.decode(&route, b"offline\n", &ctx()).online, Some(false));
        let d = n.decode(&route, b"maybe", &ctx());
        assert_eq!(
            (d.online, reasons(&d)),
            (None, vec![QuarantineReason::Malformed])
        );
    }
}
