//! Telegraf's MQTT output (`[[outputs.mqtt]]`), line protocol or JSON, through a
//! mapping table.
//!
//! Topics: everything under the configured prefix (`telegraf/#`; Telegraf's default
//! layout is `telegraf/<host>/<plugin>`). Payloads, detected by their first byte:
//! - `data_format = "influx"`: line protocol, one metric per line (several with
//!   `batch = true`), timestamps in the configured precision (`ns` by default);
//! - `data_format = "json"`: `{"fields":{…},"name":"…","tags":{…},"timestamp":…}` or
//!   the batch form `{"metrics":[…]}`, timestamps in `json_timestamp_units` (`s` by
//!   default) or RFC 3339 text (`json_timestamp_format`).
//!
//! The device is named by the first configured tag present (`device`, then `host`),
//! otherwise by the topic's second level. One message carries one device: a metric
//! naming another device than the first one is refused with a reason. Fields are looked
//! up as `measurement.field`, then `field` (vigie's quantity names map to themselves).
//! A bad line costs only itself. This decoder must never panic.

use serde_json::{Map, Value};
use vigie_core::config::TelegrafFormat;
use vigie_core::registry::QuarantineReason;
use vigie_core::{DeviceId, Timestamp};

use super::lineproto::{FieldValue, parse_line};
use super::mapping::{Mapping, MappingError, Raw, keep, raw};
use super::{DecodeContext, Decoded, Decoder, MessageKind, Problem, Route, stamp, truncate_chars};

/// The format name, as in `[ingest.mapping.telegraf]` and a device's `format`.
pub(crate) const FORMAT: &str = "telegraf";

/// Built-in mapping: vigie's quantity names as field names.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("electricity_kwh", "electricity_kwh"),
    ("power_w", "power_w"),
    ("gas_m3", "gas_m3"),
    ("water_m3", "water_m3"),
    ("co2_ppm", "co2_ppm"),
    ("temperature_c", "temperature_c"),
    ("humidity_pct", "humidity_pct"),
    ("outdoor_temperature_c", "outdoor_temperature_c"),
];

/// Nanoseconds per unit of a precision name (`ns`, `us`, `ms`, `s`; also Telegraf's `1s`).
fn unit_ns(name: &str, key: &str) -> Result<i128, MappingError> {
    match name.trim().trim_start_matches('1') {
        "ns" => Ok(1),
        "us" | "µs" => Ok(1_000),
        "ms" => Ok(1_000_000),
        "s" => Ok(1_000_000_000),
        other => Err(MappingError {
            path: format!("ingest.formats.telegraf.{key}"),
            reason: format!("found {other:?}, expected ns, us, ms or s"),
        }),
    }
}

/// The Telegraf decoder.
#[derive(Debug, Clone)]
pub struct TelegrafDecoder {
    prefix: String,
    device_tags: Vec<String>,
    line_unit_ns: i128,
    json_unit_ns: i128,
    mapping: Mapping,
}

impl TelegrafDecoder {
    /// A decoder with the default settings and the built-in mapping.
    pub fn new() -> TelegrafDecoder {
        let cfg = TelegrafFormat::default();
        TelegrafDecoder {
            prefix: cfg.topic_prefix,
            device_tags: cfg.device_tags,
            line_unit_ns: 1,
            json_unit_ns: 1_000_000_000,
            mapping: Mapping::builtin(FORMAT, BUILTIN),
        }
    }

    /// A decoder following `[ingest.formats.telegraf]` with a configured mapping.
    pub fn from_config(
        cfg: &TelegrafFormat,
        mapping: Mapping,
    ) -> Result<TelegrafDecoder, MappingError> {
        Ok(TelegrafDecoder {
            prefix: cfg.topic_prefix.trim_end_matches('/').to_string(),
            device_tags: cfg.device_tags.clone(),
            line_unit_ns: unit_ns(&cfg.precision, "precision")?,
            json_unit_ns: unit_ns(&cfg.json_timestamp_units, "json_timestamp_units")?,
            mapping,
        })
    }

    /// The subscription filters of this format.
    pub fn topics(&self) -> Vec<String> {
        vec![format!("{}/#", self.prefix)]
    }
}

impl Default for TelegrafDecoder {
    fn default() -> Self {
        TelegrafDecoder::new()
    }
}

/// One metric, whatever its serialisation.
struct Metric<'a> {
    name: &'a str,
    tags: Vec<(&'a str, &'a str)>,
    fields: Vec<(&'a str, Raw<'a>)>,
}

/// What the messages's metrics have in common, and where the results go.
struct Sink<'d> {
    dec: &'d TelegrafDecoder,
    route: &'d Route,
    out: Decoded,
    device: Option<DeviceId>,
}

impl Sink<'_> {
    fn metric(&mut self, at: &str, m: &Metric<'_>, ts: Timestamp) {
        let named = self
            .dec
            .device_tags
            .iter()
            .find_map(|t| m.tags.iter().find(|(k, _)| k == t).map(|(k, v)| (*k, *v)));
        let device = match named {
            None => self.route.device.clone(),
            Some((tag, v)) => match DeviceId::new(v) {
                Ok(d) => d,
                Err(e) => {
                    self.out.problems.push(Problem::new(
                        QuarantineReason::BadTopic,
                        format!("{at}tag {tag} is not a usable device id: {e}"),
                    ));
                    return;
                }
            },
        };
        match &self.device {
            None => self.device = Some(device.clone()),
            Some(first) if *first != device => {
                self.out.problems.push(Problem::new(
                    QuarantineReason::Malformed,
                    format!(
                        "{at}names device {device} but this message is for {first}; publish one device per message (Telegraf batch = false, or one topic per device)"
                    ),
                ));
                return;
            }
            Some(_) => {}
        }
        for (field, value) in &m.fields {
            let key = format!("{}.{field}", m.name);
            self.dec
                .mapping
                .push(&mut self.out, at, device.as_str(), &key, *value, ts, &keep);
        }
    }

    fn finish(mut self) -> Decoded {
        if self.device.as_ref() != Some(&self.route.device) {
            self.out.device = self.device;
        }
        self.out
    }
}

impl Decoder for TelegrafDecoder {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn route(&self, topic: &str) -> Option<Result<Route, Problem>> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let host = rest.split('/').next().unwrap_or_default();
        match DeviceId::new(host) {
            Ok(device) => Some(Ok(Route {
                device,
                kind: MessageKind::Telemetry,
            })),
            Err(e) => Some(Err(Problem::new(
                QuarantineReason::BadTopic,
                format!(
                    "topic {:?}: the host level is not a usable device id ({e}); expected {}/<host>/<plugin>",
                    truncate_chars(topic, 120),
                    self.prefix
                ),
            ))),
        }
    }

    fn decode(&self, route: &Route, payload: &[u8], ctx: &DecodeContext) -> Decoded {
        let mut sink = Sink {
            dec: self,
            route,
            out: Decoded::default(),
            device: None,
        };
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            self.decode_json(&mut sink, payload, ctx);
        } else {
            match std::str::from_utf8(payload) {
                Ok(text) => self.decode_lines(&mut sink, text, ctx),
                Err(e) => {
                    return Decoded::problem(
                        QuarantineReason::Malformed,
                        format!("line protocol is not valid UTF-8: {e}"),
                    );
                }
            }
        }
        sink.finish()
    }
}

impl TelegrafDecoder {
    fn decode_lines(&self, sink: &mut Sink<'_>, text: &str, ctx: &DecodeContext) {
        let mut any = false;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            any = true;
            let at = format!("line {}: ", n + 1);
            let parsed = match parse_line(line) {
                Ok(l) => l,
                Err(e) => {
                    sink.out.problems.push(Problem::new(
                        QuarantineReason::Malformed,
                        format!("{at}{e}"),
                    ));
                    continue;
                }
            };
            let ts = match parsed.timestamp {
                None => Ok(ctx.received_at),
                Some(t) => match stamp::epoch_to_ms(t, self.line_unit_ns) {
                    Some(ts) => stamp::accept(ts, ctx, "timestamp"),
                    None => Err(Problem::new(
                        QuarantineReason::BadTimestamp,
                        format!("timestamp {t} does not fit"),
                    )),
                },
            };
            let ts = match ts {
                Ok(ts) => ts,
                Err(mut p) => {
                    p.detail = format!("{at}{}", p.detail);
                    sink.out.problems.push(p);
                    continue;
                }
            };
            let fields = parsed
                .fields
                .iter()
                .map(|(k, v)| {
                    let raw = match v {
                        FieldValue::Float(f) => Raw::Number(*f),
                        FieldValue::Int(i) => Raw::Number(*i as f64),
                        FieldValue::UInt(u) => Raw::Number(*u as f64),
                        FieldValue::Bool(b) => Raw::Bool(*b),
                        FieldValue::Str(s) => Raw::Text(s),
                    };
                    (k.as_str(), raw)
                })
                .collect();
            let metric = Metric {
                name: &parsed.measurement,
                tags: parsed
                    .tags
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                fields,
            };
            sink.metric(&at, &metric, ts);
        }
        if !any {
            sink.out.problems.push(Problem::new(
                QuarantineReason::Malformed,
                "no line protocol line in the message",
            ));
        }
    }

    fn decode_json(&self, sink: &mut Sink<'_>, payload: &[u8], ctx: &DecodeContext) {
        let value: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                sink.out.problems.push(Problem::new(
                    QuarantineReason::Malformed,
                    format!("not valid JSON: {e}"),
                ));
                return;
            }
        };
        match value.get("metrics") {
            Some(Value::Array(metrics)) => {
                for (i, m) in metrics.iter().enumerate() {
                    self.json_metric(sink, &format!("metric {i}: "), m, ctx);
                }
            }
            Some(_) => sink.out.problems.push(Problem::new(
                QuarantineReason::Malformed,
                "\"metrics\" must be an array",
            )),
            None => self.json_metric(sink, "", &value, ctx),
        }
    }

    fn json_metric(&self, sink: &mut Sink<'_>, at: &str, m: &Value, ctx: &DecodeContext) {
        let malformed = |detail: String| Problem::new(QuarantineReason::Malformed, detail);
        let (Some(Value::String(name)), Some(Value::Object(fields))) =
            (m.get("name"), m.get("fields"))
        else {
            sink.out.problems.push(malformed(format!(
                "{at}expected an object with \"name\" (text) and \"fields\" (object)"
            )));
            return;
        };
        let empty = Map::new();
        let tags = match m.get("tags") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(t)) => t,
            Some(_) => {
                sink.out
                    .problems
                    .push(malformed(format!("{at}\"tags\" must be an object")));
                return;
            }
        };
        let ts = match self.json_timestamp(m.get("timestamp"), ctx) {
            Ok(ts) => ts,
            Err(mut p) => {
                p.detail = format!("{at}{}", p.detail);
                sink.out.problems.push(p);
                return;
            }
        };
        let metric = Metric {
            name,
            tags: tags
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect(),
            fields: fields.iter().map(|(k, v)| (k.as_str(), raw(v))).collect(),
        };
        sink.metric(at, &metric, ts);
    }

    fn json_timestamp(&self, v: Option<&Value>, ctx: &DecodeContext) -> Result<Timestamp, Problem> {
        let bad = |d: String| Problem::new(QuarantineReason::BadTimestamp, d);
        let ts = match v {
            None | Some(Value::Null) => return Ok(ctx.received_at),
            Some(Value::Number(n)) => {
                let count = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Some(i128::from(i)),
                    (None, Some(u), _) => Some(i128::from(u)),
                    (None, None, Some(f)) if f.is_finite() && f.abs() < 1e30 => {
                        Some(f.floor() as i128)
                    }
                    _ => None,
                };
                count
                    .and_then(|c| stamp::epoch_to_ms(c, self.json_unit_ns))
                    .ok_or_else(|| bad(format!("timestamp {n} does not fit")))?
            }
            Some(Value::String(s)) => Timestamp::parse_rfc3339(s).map_err(|e| {
                bad(format!(
                    "timestamp {:?} is not RFC 3339 ({e})",
                    truncate_chars(s, 40)
                ))
            })?,
            Some(_) => return Err(bad("timestamp must be a number or RFC 3339 text".into())),
        };
        stamp::accept(ts, ctx, "timestamp")
    }
}

#[cfg(test)]
#[path = "telegraf_tests.rs"]
mod tests;
