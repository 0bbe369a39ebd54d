//! The decoder set and subscription filters that the configuration asks for.
//!
//! `[ingest.formats.<format>] enabled = true` adds that ecosystem's decoder (after the
//! native one) with its topic prefix and its mapping (`[ingest.mapping.<format>]` over
//! the built-in table, `[ingest.mapping.devices.<id>]` over both), and its topics to the
//! subscriptions. Everything is checked here, once, at start: a bad quantity name,
//! scale, precision or prefix is an error naming its key, never a runtime surprise.
//! This module must never enable a format the configuration did not ask for.

use vigie_core::config::{FormatsConfig, MappingConfig};

use super::mapping::{Mapping, MappingError, device_tables};
use super::{
    Decoders, NativeDecoder, TasmotaDecoder, TelegrafDecoder, TtnDecoder, Zigbee2MqttDecoder,
    tasmota, telegraf, ttn, zigbee2mqtt,
};

fn check_prefix(key: &str, prefix: &str) -> Result<(), MappingError> {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() || p.contains(['+', '#']) || p.starts_with('$') {
        return Err(MappingError {
            path: format!("ingest.formats.{key}"),
            reason: format!(
                "found {prefix:?}, expected a topic prefix without wildcards, like \"zigbee2mqtt\""
            ),
        });
    }
    Ok(())
}

impl Decoders {
    /// The native decoder under `native_prefix`, then every format enabled in
    /// `formats` with its `mapping` (`[ingest.formats]`, `[ingest.mapping]`).
    pub fn from_config(
        native_prefix: &str,
        formats: &FormatsConfig,
        mapping: &MappingConfig,
    ) -> Result<Decoders, MappingError> {
        let f = formats;
        let m = mapping;
        let devices = device_tables(&m.devices)?;
        let mut d = Decoders::empty().with(NativeDecoder::new(native_prefix));
        if f.zigbee2mqtt.enabled {
            check_prefix("zigbee2mqtt.base_topic", &f.zigbee2mqtt.base_topic)?;
            let map = Mapping::new(
                zigbee2mqtt::FORMAT,
                zigbee2mqtt::BUILTIN,
                &m.zigbee2mqtt,
                devices.clone(),
            )?;
            d = d.with(Zigbee2MqttDecoder::with_mapping(
                &f.zigbee2mqtt.base_topic,
                map,
            ));
        }
        if f.tasmota.enabled {
            check_prefix("tasmota.prefix", &f.tasmota.prefix)?;
            let map = Mapping::new(
                tasmota::FORMAT,
                tasmota::BUILTIN,
                &m.tasmota,
                devices.clone(),
            )?;
            d = d.with(TasmotaDecoder::with_mapping(&f.tasmota.prefix, map));
        }
        if f.ttn.enabled {
            check_prefix("ttn.prefix", &f.ttn.prefix)?;
            let map = Mapping::new(ttn::FORMAT, ttn::BUILTIN, &m.ttn, devices.clone())?;
            d = d.with(TtnDecoder::with_mapping(&f.ttn.prefix, map));
        }
        if f.telegraf.enabled {
            check_prefix("telegraf.topic_prefix", &f.telegraf.topic_prefix)?;
            let map = Mapping::new(telegraf::FORMAT, telegraf::BUILTIN, &m.telegraf, devices)?;
            d = d.with(TelegrafDecoder::from_config(&f.telegraf, map)?);
        }
        Ok(d)
    }
}

/// The subscription filters of the formats enabled in `formats` (the native ones not
/// included).
pub fn format_topics(formats: &FormatsConfig) -> Vec<String> {
    let f = formats;
    let mut out = Vec::new();
    if f.zigbee2mqtt.enabled {
        out.extend(Zigbee2MqttDecoder::new(&f.zigbee2mqtt.base_topic).topics());
    }
    if f.tasmota.enabled {
        out.extend(TasmotaDecoder::new(&f.tasmota.prefix).topics());
    }
    if f.ttn.enabled {
        out.extend(TtnDecoder::new(&f.ttn.prefix).topics());
    }
    if f.telegraf.enabled {
        out.push(format!(
            "{}/#",
            f.telegraf.topic_prefix.trim_end_matches('/')
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use vigie_core::config::{IngestConfig, MappingEntry};

    use super::*;

    fn all_on() -> IngestConfig {
        let mut c = IngestConfig::default();
        c.formats.zigbee2mqtt.enabled = true;
        c.formats.tasmota.enabled = true;
        c.formats.ttn.enabled = true;
        c.formats.telegraf.enabled = true;
        c
    }

    #[test]
    fn by_default_only_the_native_format_is_decoded() {
        let c = IngestConfig::default();
        assert!(format_topics(&c.formats).is_empty());
        let d = Decoders::from_config("vigie", &c.formats, &c.mapping).unwrap();
        assert!(d.route("zigbee2mqtt/kitchen").is_err());
        assert!(d.route("vigie/kitchen/telemetry").is_ok());
    }

    #[test]
    fn enabled_formats_are_routed_and_subscribed() {
        let c = all_on();
        assert_eq!(
            format_topics(&c.formats),
            [
                "zigbee2mqtt/+",
                "zigbee2mqtt/+/availability",
                "tele/+/SENSOR",
                "tele/+/STATE",
                "tele/+/LWT",
                "v3/+/devices/+/up",
                "telegraf/#"
            ]
        );
        let d = Decoders::from_config("vigie", &c.formats, &c.mapping).unwrap();
        for (topic, format) in [
            ("zigbee2mqtt/kitchen", "zigbee2mqtt"),
            ("tele/plug-1/SENSOR", "tasmota"),
            ("v3/app@ttn/devices/d1/up", "ttn"),
            ("telegraf/srv-1/cpu", "telegraf"),
            ("vigie/x/telemetry", "native"),
        ] {
            assert_eq!(d.route(topic).unwrap().0.format(), format, "{topic}");
        }
    }

    #[test]
    fn a_bad_mapping_or_setting_is_an_error_naming_its_key() {
        let mut c = all_on();
        c.mapping.tasmota.insert(
            "COUNTER.C1".into(),
            MappingEntry {
                quantity: "gas".into(),
                scale: 0.01,
                offset: 0.0,
            },
        );
        let e = Decoders::from_config("vigie", &c.formats, &c.mapping)
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"ingest.mapping.tasmota."COUNTER.C1""#), "{e}");
        let mut c = all_on();
        c.formats.telegraf.precision = "minutes".into();
        let e = Decoders::from_config("vigie", &c.formats, &c.mapping)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingest.formats.telegraf.precision"), "{e}");
        let mut c = all_on();
        c.formats.zigbee2mqtt.base_topic = "z/#".into();
        let e = Decoders::from_config("vigie", &c.formats, &c.mapping)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingest.formats.zigbee2mqtt.base_topic"), "{e}");
    }
}
