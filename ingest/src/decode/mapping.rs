//! Mapping tables: which device key becomes which vigie quantity, with which scale.
//!
//! Every ecosystem names its values its own way (`temperature`, `ENERGY.Total`,
//! `decoded_payload.co2`, `energy.electricity_kwh`). A [`Mapping`] turns such a key into a
//! [`Quantity`] (value × scale + offset), marks it deliberately ignored, or leaves it
//! unmapped. Each format has built-in defaults; `[ingest.mapping.<format>]` adds to them
//! and overrides them, and `[ingest.mapping.devices.<device-id>]` overrides both for
//! one device. Nothing here knows a device model: it is data, not code.
//!
//! Keys are looked up as: the full key (`SCD30.Temperature`), its last segment alone
//! (`Temperature`), then wildcards from the longest prefix (`SCD30.*`) to `*` — first
//! in the device's own table, then in the format's. An unmapped key whose value looks
//! numeric is a problem (`unknown_quantity`) saying where to add it; an unmapped text
//! or boolean is ignored (states, versions, names). This module must never guess a
//! quantity nor read numbers in text for a mapped key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use vigie_core::config::MappingEntry;
use vigie_core::registry::QuarantineReason;
use vigie_core::{Quantity, Timestamp};

use super::{Decoded, Problem, Reading, truncate_chars};

/// A mapping entry that cannot work, found when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{path}`: {reason}")]
pub struct MappingError {
    /// Where in the configuration (`ingest.mapping.zigbee2mqtt."foo"`).
    pub path: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// Where a key goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// Deliberately not stored.
    Ignore,
    /// Stored as `quantity`, value × `scale` + `offset`.
    To {
        quantity: Quantity,
        scale: f64,
        offset: f64,
    },
}

/// Which table an entry came from, to say where to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Format,
    Device,
}

/// A value as a device sent it, before mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// A number.
    Number(f64),
    /// Text (a number in text is not read for a mapped key).
    Text(&'a str),
    /// A boolean.
    Bool(bool),
    /// Null, an array, an object: nothing to store.
    Other(&'static str),
}

impl Raw<'_> {
    /// Whether an unmapped value deserves a problem: a number, or text that reads as one.
    fn looks_numeric(&self) -> bool {
        match self {
            Raw::Number(_) => true,
            Raw::Text(s) => s.trim().parse::<f64>().is_ok_and(f64::is_finite),
            Raw::Bool(_) | Raw::Other(_) => false,
        }
    }

    fn shown(&self) -> String {
        match self {
            Raw::Number(n) => n.to_string(),
            Raw::Text(s) => format!("{:?}", truncate_chars(s, 40)),
            Raw::Bool(b) => b.to_string(),
            Raw::Other(what) => (*what).to_string(),
        }
    }
}

/// Per-device tables: device id → key → target.
pub(crate) type DeviceTables = Arc<HashMap<String, HashMap<String, Target>>>;

/// One format's tables: the built-in defaults merged with the configuration.
#[derive(Debug, Clone)]
pub struct Mapping {
    format: &'static str,
    table: HashMap<String, Target>,
    devices: DeviceTables,
}

fn parse_entry(path: String, e: &MappingEntry) -> Result<Target, MappingError> {
    let bad = |reason: String| MappingError {
        path: path.clone(),
        reason,
    };
    if e.quantity == MappingEntry::IGNORE {
        return Ok(Target::Ignore);
    }
    let quantity = e.quantity.parse::<Quantity>().map_err(|_| {
        let names: Vec<&str> = Quantity::ALL.iter().map(|q| q.name()).collect();
        bad(format!(
            "found {:?}, expected \"ignore\" or one of {}",
            truncate_chars(&e.quantity, 40),
            names.join(", ")
        ))
    })?;
    if !e.scale.is_finite() || e.scale == 0.0 {
        return Err(bad(format!(
            "scale {} must be a finite number other than 0",
            e.scale
        )));
    }
    if !e.offset.is_finite() {
        return Err(bad(format!("offset {} must be finite", e.offset)));
    }
    Ok(Target::To {
        quantity,
        scale: e.scale,
        offset: e.offset,
    })
}

/// The per-device tables of `[ingest.mapping.devices]`, checked once and shared.
pub(crate) fn device_tables(
    devices: &BTreeMap<String, BTreeMap<String, MappingEntry>>,
) -> Result<DeviceTables, MappingError> {
    let mut out = HashMap::new();
    for (device, table) in devices {
        let mut t = HashMap::new();
        for (key, e) in table {
            let path = format!("ingest.mapping.devices.{device}.{key:?}");
            t.insert(key.clone(), parse_entry(path, e)?);
        }
        out.insert(device.clone(), t);
    }
    Ok(Arc::new(out))
}

impl Mapping {
    /// The built-in table of `format` (`key`, quantity name or `ignore`), overridden by
    /// `user` (`[ingest.mapping.<format>]`), with the per-device tables.
    pub(crate) fn new(
        format: &'static str,
        builtin: &[(&str, &str)],
        user: &BTreeMap<String, MappingEntry>,
        devices: DeviceTables,
    ) -> Result<Mapping, MappingError> {
        let mut table = HashMap::new();
        for (key, q) in builtin {
            let e = MappingEntry {
                quantity: (*q).to_string(),
                scale: 1.0,
                offset: 0.0,
            };
            let path = format!("built-in mapping {format}.{key:?}");
            table.insert((*key).to_string(), parse_entry(path, &e)?);
        }
        for (key, e) in user {
            let path = format!("ingest.mapping.{format}.{key:?}");
            table.insert(key.clone(), parse_entry(path, e)?);
        }
        Ok(Mapping {
            format,
            table,
            devices,
        })
    }

    /// The built-in table only (tests, and callers without configuration).
    pub(crate) fn builtin(format: &'static str, builtin: &[(&str, &str)]) -> Mapping {
        Mapping::new(format, builtin, &BTreeMap::new(), Arc::default()).unwrap_or(Mapping {
            format,
            table: HashMap::new(),
            devices: Arc::default(),
        })
    }

    fn lookup(&self, device: &str, key: &str) -> Option<(Target, Origin)> {
        let candidates = candidates(key);
        if let Some(t) = self.devices.get(device)
            && let Some(found) = candidates.iter().find_map(|c| t.get(c.as_str()))
        {
            return Some((*found, Origin::Device));
        }
        candidates
            .iter()
            .find_map(|c| self.table.get(c.as_str()))
            .map(|t| (*t, Origin::Format))
    }

    /// Maps one value of `device` under `key` stamped `ts`: pushes a reading, a
    /// problem, or nothing (ignored; unmapped text). `adjust` converts the raw number
    /// for the target quantity before scaling (Tasmota's °F), or refuses it (a unit it
    /// cannot convert: `malformed`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &self,
        out: &mut Decoded,
        at: &str,
        device: &str,
        key: &str,
        value: Raw<'_>,
        ts: Timestamp,
        adjust: &dyn Fn(Quantity, f64) -> Result<f64, String>,
    ) {
        let format = self.format;
        let shown_key = truncate_chars(key, 64);
        let Some((target, origin)) = self.lookup(device, key) else {
            if value.looks_numeric() {
                out.problems.push(Problem::new(
                    QuarantineReason::UnknownQuantity,
                    format!(
                        "{at}{format} key {shown_key:?} = {} has no mapping (add it under [ingest.mapping.{format}] as a quantity name or \"ignore\", or under [ingest.mapping.devices.{device}])",
                        value.shown()
                    ),
                ));
            }
            return;
        };
        let Target::To {
            quantity,
            scale,
            offset,
        } = target
        else {
            return;
        };
        let table = match origin {
            Origin::Format => format!("[ingest.mapping.{format}]"),
            Origin::Device => format!("[ingest.mapping.devices.{device}]"),
        };
        let Raw::Number(raw) = value else {
            out.problems.push(Problem::new(
                QuarantineReason::NonNumeric,
                format!(
                    "{at}{format} key {shown_key:?} → {quantity}: {} is not a number",
                    value.shown()
                ),
            ));
            return;
        };
        let converted = match adjust(quantity, raw) {
            Ok(v) => v,
            Err(why) => {
                out.problems.push(Problem::new(
                    QuarantineReason::Malformed,
                    format!("{at}{format} key {shown_key:?} → {quantity}: {why}"),
                ));
                return;
            }
        };
        let v = converted * scale + offset;
        if let Err(e) = quantity.check(v) {
            let how = if scale == 1.0 && offset == 0.0 {
                String::new()
            } else {
                format!(" (raw {raw} × {scale} + {offset})")
            };
            out.problems.push(Problem::new(
                QuarantineReason::OutOfRange,
                format!(
                    "{at}{format} key {shown_key:?}{how}: {e}; check the device, its unit and the mapping in {table}"
                ),
            ));
            return;
        }
        out.readings.push(Reading {
            ts,
            quantity,
            value: v,
        });
    }
}

/// Lookup order of a key: itself, its last segment, then wildcards, longest first.
fn candidates(key: &str) -> Vec<String> {
    let mut out = vec![key.to_string()];
    if let Some((_, last)) = key.rsplit_once('.') {
        out.push(last.to_string());
    }
    let mut prefix = key;
    while let Some((head, _)) = prefix.rsplit_once('.') {
        out.push(format!("{head}.*"));
        prefix = head;
    }
    out.push("*".into());
    out
}

/// Keeps the number as it is.
pub(crate) fn keep(_: Quantity, v: f64) -> Result<f64, String> {
    Ok(v)
}

/// A JSON value as a [`Raw`] value.
pub(crate) fn raw(v: &serde_json::Value) -> Raw<'_> {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().map_or(Raw::Other("a number"), Raw::Number),
        Value::String(s) => Raw::Text(s),
        Value::Bool(b) => Raw::Bool(*b),
        Value::Null => Raw::Other("null"),
        Value::Array(_) => Raw::Other("an array"),
        Value::Object(_) => Raw::Other("an object"),
    }
}

/// Walks a JSON object, joining nested keys with `.`, and calls `f` on each leaf
/// (arrays are leaves). Depth is bounded: deeper objects are leaves.
pub(crate) fn walk<'a>(
    prefix: &str,
    map: &'a serde_json::Map<String, serde_json::Value>,
    depth: usize,
    f: &mut dyn FnMut(&str, &'a serde_json::Value),
) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) if depth < 4 => walk(&key, inner, depth + 1, f),
            _ => f(&key, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_core::DeviceId;

    fn mapping(user: &str, devices: &str) -> Result<Mapping, MappingError> {
        let user: BTreeMap<String, MappingEntry> = serde_json::from_str(user).unwrap();
        let devices: BTreeMap<String, BTreeMap<String, MappingEntry>> =
            serde_json::from_str(devices).unwrap();
        Mapping::new(
            "zigbee2mqtt",
            &[("temperature", "temperature_c"), ("battery", "ignore")],
            &user,
            device_tables(&devices)?,
        )
    }

    fn push(m: &Mapping, device: &str, key: &str, v: Raw<'_>) -> Decoded {
        let mut out = Decoded::default();
        m.push(&mut out, "", device, key, v, Timestamp(0), &keep);
        out
    }

    #[test]
    fn keys_are_looked_up_exact_then_last_segment_then_wildcards() {
        assert_eq!(
            candidates("a.b.c"),
            ["a.b.c", "c", "a.b.*", "a.*", "*"].map(String::from)
        );
        assert_eq!(candidates("co2"), ["co2", "*"].map(String::from));
    }

    #[test]
    fn configuration_adds_overrides_and_scales() {
        let m = mapping(
            r#"{"gas": {"quantity": "gas_m3", "scale": 0.01}, "battery": "co2_ppm", "update.*": "ignore"}"#,
            r#"{"ext-1": {"temperature": "outdoor_temperature_c"}}"#,
        )
        .unwrap();
        let d = push(&m, "dev", "gas", Raw::Number(1234.0));
        assert_eq!(d.readings[0].quantity, Quantity::GasM3);
        assert!((d.readings[0].value - 12.34).abs() < 1e-9);
        assert_eq!(
            push(&m, "dev", "battery", Raw::Number(500.0)).readings[0].quantity,
            Quantity::Co2Ppm
        );
        assert_eq!(
            push(&m, "dev", "update.installed_version", Raw::Number(3.0)),
            Decoded::default()
        );
        let ext = DeviceId::new("ext-1").unwrap();
        let d = push(&m, ext.as_str(), "temperature", Raw::Number(-3.5));
        assert_eq!(d.readings[0].quantity, Quantity::OutdoorTemperatureC);
        let d = push(&m, "other", "temperature", Raw::Number(21.0));
        assert_eq!(d.readings[0].quantity, Quantity::TemperatureC);
    }

    #[test]
    fn an_unmapped_number_says_where_to_map_it_and_unmapped_text_is_ignored() {
        let m = mapping("{}", "{}").unwrap();
        let d = push(&m, "kitchen", "foo", Raw::Number(3.0));
        assert_eq!(d.problems[0].reason, QuarantineReason::UnknownQuantity);
        assert!(
            d.problems[0].detail.contains(r#"zigbee2mqtt key "foo""#)
                && d.problems[0]
                    .detail
                    .contains("[ingest.mapping.zigbee2mqtt]"),
            "{}",
            d.problems[0]
        );
        assert_eq!(
            push(&m, "kitchen", "state", Raw::Text("ON")),
            Decoded::default()
        );
        assert_eq!(
            push(&m, "kitchen", "foo", Raw::Text("12.5")).problems[0].reason,
            QuarantineReason::UnknownQuantity
        );
    }

    #[test]
    fn a_mapped_key_with_text_or_an_implausible_value_is_refused_with_the_mapping() {
        let m = mapping(
            r#"{"energy": {"quantity": "electricity_kwh", "scale": 1000}}"#,
            "{}",
        )
        .unwrap();
        let d = push(&m, "d", "temperature", Raw::Text("21.5"));
        assert_eq!(d.problems[0].reason, QuarantineReason::NonNumeric);
        let d = push(&m, "d", "energy", Raw::Number(-2.0));
        assert_eq!(d.problems[0].reason, QuarantineReason::OutOfRange);
        assert!(d.problems[0].detail.contains("× 1000"), "{}", d.problems[0]);
        assert!(
            d.problems[0]
                .detail
                .contains("[ingest.mapping.zigbee2mqtt]")
        );
    }

    #[test]
    fn a_bad_entry_is_refused_at_startup_by_its_path() {
        let e = mapping(r#"{"foo": "co2"}"#, "{}").unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"ingest.mapping.zigbee2mqtt."foo""#),
            "{e}"
        );
        assert!(e.to_string().contains("co2_ppm"), "{e}");
        let e = mapping("{}", r#"{"d": {"x": {"quantity": "power_w", "scale": 0}}}"#).unwrap_err();
        assert!(e.to_string().contains("devices.d"), "{e}");
    }
}
