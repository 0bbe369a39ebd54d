//! The ecosystem decoders (Zigbee2MQTT, Tasmota, The Things Stack, Telegraf) never
//! panic, whatever the topic and the bytes; and they read what firmware-sim publishes
//! (firmware-sim/FORMATS.md).
//!
//! `cargo test` runs a modest number of cases. The long run mutates documented payloads
//! and random bytes, `VIGIE_FUZZ_CASES` inputs per decoder (1,000,000 by default):
//! `cargo test -p vigie-ingest --release --test it -- --ignored fuzz`.

use std::time::Duration;

use proptest::prelude::*;
use vigie_core::config::{FormatsConfig, MappingConfig};
use vigie_core::{DeviceId, Quantity, Timestamp};
use vigie_ingest::decode::{TasmotaDecoder, TelegrafDecoder, TtnDecoder, Zigbee2MqttDecoder};
use vigie_ingest::{DecodeContext, Decoded, Decoder, Decoders, MessageKind, Route};

fn ctx() -> DecodeContext {
    DecodeContext {
        received_at: Timestamp::parse_rfc3339("2026-11-29T10:15:30Z").unwrap(),
        max_future_skew: Duration::from_secs(300),
    }
}

fn decoders() -> Vec<Box<dyn Decoder>> {
    vec![
        Box::new(Zigbee2MqttDecoder::new("zigbee2mqtt")),
        Box::new(TasmotaDecoder::new("tele")),
        Box::new(TtnDecoder::new("v3")),
        Box::new(TelegrafDecoder::new()),
    ]
}

/// Decodes as telemetry and as status; every reading must be usable.
fn check(d: &dyn Decoder, payload: &[u8]) {
    for kind in [MessageKind::Telemetry, MessageKind::Status] {
        let route = Route {
            device: DeviceId::new("dev-1").unwrap(),
            kind,
        };
        let out = d.decode(&route, payload, &ctx());
        for r in &out.readings {
            assert!(r.quantity.check(r.value).is_ok(), "{}: {r:?}", d.format());
            assert!(r.ts <= ctx().latest_acceptable(), "{}: {r:?}", d.format());
            assert!(r.ts.0 >= 946_684_800_000, "{}: {r:?}", d.format());
        }
    }
}

/// Payloads as the ecosystems document them (also the fuzz seeds).
const SEEDS: &[&str] = &[
    r#"{"temperature":27.34,"humidity":44.72,"linkquality":97,"last_seen":"2026-11-29T11:14:09+01:00","update":{"state":"idle"}}"#,
    r#"{"Time":"2026-11-29T11:15:00","ENERGY":{"TotalStartTime":"2024-01-01T00:00:00","Total":12345.6,"Yesterday":8.5,"Today":3.25,"Power":830,"Factor":0.94,"Voltage":231,"Current":3.827}}"#,
    r#"{"Time":"2026-10-25T02:30:00","SCD30":{"CarbonDioxide":812,"eCO2":788,"Temperature":68.5,"Humidity":45.1,"DewPoint":8.3},"TempUnit":"F"}"#,
    r#"{"end_device_ids":{"device_id":"d"},"received_at":"2026-11-29T10:15:09.935284891Z","uplink_message":{"f_port":1,"frm_payload":"AA==","decoded_payload":{"co2":812,"temperature":21.5,"nested":{"humidity":40}}}}"#,
    "energy,building=b,device=elec-1,host=b-gw electricity_kwh=12345.6,power_w=830i 1795947300000000000\nm,t\\ k=v\\,x s=\"a \\\"b\\\"\",b=t 1\n",
    r#"{"metrics":[{"fields":{"co2_ppm":812,"x":"y"},"name":"air_quality","tags":{"device":"aq-1","host":"h"},"timestamp":1795947300}]}"#,
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z_0-9 :TZ.+-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("2026-11-29T11:15:00"),
            Just("2026-03-29T02:30:00"),
            Just("2026-11-29T10:15:09.935284891Z"),
            Just("F"),
            Just("online"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let key = prop_oneof![
        Just("Time"),
        Just("TempUnit"),
        Just("ENERGY"),
        Just("Total"),
        Just("SCD30"),
        Just("Temperature"),
        Just("temperature"),
        Just("last_seen"),
        Just("uplink_message"),
        Just("decoded_payload"),
        Just("received_at"),
        Just("frm_payload"),
        Just("metrics"),
        Just("fields"),
        Just("name"),
        Just("tags"),
        Just("device"),
        Just("timestamp"),
        Just("co2"),
    ]
    .prop_map(String::from)
    .boxed();
    leaf.prop_recursive(5, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop_oneof![key.clone(), "[a-z_]{1,8}"], inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_format(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for d in decoders() {
            check(d.as_ref(), &bytes);
        }
    }

    #[test]
    fn json_shaped_values_never_panic_any_format(v in json_value()) {
        let text = v.to_string();
        for d in decoders() {
            check(d.as_ref(), text.as_bytes());
        }
    }

    #[test]
    fn line_protocol_ish_text_never_panics(s in r#"([a-z_\\ ,="]{0,12}( [a-z_\\,="]{0,12}=("[^"\n]{0,8}"|-?[0-9.e]{0,8}[iu]?|t|false))?( -?[0-9]{0,20})?\n?){0,4}"#) {
        check(&TelegrafDecoder::new(), s.as_bytes());
    }

    #[test]
    fn arbitrary_topics_are_routed_or_refused_without_panic(topic in "\\PC{0,60}") {
        let mut formats = FormatsConfig::default();
        formats.zigbee2mqtt.enabled = true;
        formats.tasmota.enabled = true;
        formats.ttn.enabled = true;
        formats.telegraf.enabled = true;
        let all = Decoders::from_config("vigie", &formats, &MappingConfig::default()).unwrap();
        let _ = all.route(&topic);
        for prefix in ["zigbee2mqtt/", "tele/", "v3/", "telegraf/"] {
            let _ = all.route(&format!("{prefix}{topic}"));
        }
    }
}

/// A small deterministic generator (xorshift64*), so the long run needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A random input: random bytes, or a seed with a few byte-level mutations.
fn mutant(rng: &mut Rng, buf: &mut Vec<u8>) {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"=",
        b" ",
        b"\\",
        b"\n",
        b"null",
        b"1e308",
        b"-0",
        b"i",
        b"u",
        b"\"Time\":",
        b"\"F\"",
        b"99999999999999999999",
        b"\xff",
    ];
    buf.clear();
    if rng.below(8) == 0 {
        let n = rng.below(256);
        buf.extend((0..n).map(|_| rng.next() as u8));
        return;
    }
    buf.extend_from_slice(SEEDS[rng.below(SEEDS.len())].as_bytes());
    for _ in 0..=rng.below(6) {
        let at = rng.below(buf.len() + 1);
        match rng.below(5) {
            0 if !buf.is_empty() => {
                let i = at.min(buf.len() - 1);
                buf[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                buf.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(buf.len());
                buf.drain(at..end);
            }
            3 => buf.truncate(at),
            _ => {
                let i = rng.below(buf.len().max(1));
                let end = (i + rng.below(24)).min(buf.len());
                let piece = buf[i..end].to_vec();
                buf.splice(at..at, piece);
            }
        }
    }
}

#[test]
#[ignore = "long: VIGIE_FUZZ_CASES inputs per decoder (default 1,000,000); run in release"]
fn fuzz_every_format_with_mutated_documented_payloads() {
    let cases: u64 = std::env::var("VIGIE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut buf = Vec::new();
    for (i, d) in decoders().iter().enumerate() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
        let mut readings = 0u64;
        for _ in 0..cases {
            mutant(&mut rng, &mut buf);
            check(d.as_ref(), &buf);
            let route = Route {
                device: DeviceId::new("dev-1").unwrap(),
                kind: MessageKind::Telemetry,
            };
            readings += d.decode(&route, &buf, &ctx()).readings.len() as u64;
        }
        eprintln!(
            "{}: {cases} inputs without panic ({readings} readings decoded)",
            d.format()
        );
    }
}

/// Readings a published message must give.
type Expected = &'static [(Quantity, f64)];

fn decode_on(decoders: &Decoders, topic: &str, payload: &str) -> Decoded {
    let (d, route) = decoders.route(topic).unwrap();
    d.decode(&route, payload.as_bytes(), &ctx())
}

#[test]
fn what_firmware_sim_publishes_is_decoded() {
    // The examples of firmware-sim/FORMATS.md (10:15Z on 2026-11-29).
    let mut formats = FormatsConfig::default();
    formats.zigbee2mqtt.enabled = true;
    formats.tasmota.enabled = true;
    formats.ttn.enabled = true;
    formats.telegraf.enabled = true;
    let mapping: MappingConfig = serde_json::from_str(
        r#"{"devices":{"gas-1":{"COUNTER.C1":{"quantity":"gas_m3","scale":0.01}},
                       "ext-1":{"temperature":"outdoor_temperature_c","DS18B20.Temperature":"outdoor_temperature_c"}}}"#,
    )
    .unwrap();
    let all = Decoders::from_config("vigie", &formats, &mapping).unwrap();
    let ts = Timestamp::parse_rfc3339("2026-11-29T10:15:00Z").unwrap();
    let cases: &[(&str, &str, Expected)] = &[
        (
            "zigbee2mqtt/elec-1",
            r#"{"energy":12345.6,"power":830,"linkquality":120}"#,
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
        (
            "zigbee2mqtt/water-1",
            r#"{"water_consumed":123.456,"battery":80,"linkquality":120}"#,
            &[(Quantity::WaterM3, 123.456)],
        ),
        (
            "zigbee2mqtt/ext-1",
            r#"{"temperature":-2.5,"battery":80,"linkquality":120}"#,
            &[(Quantity::OutdoorTemperatureC, -2.5)],
        ),
        (
            "tele/elec-1/SENSOR",
            r#"{"Time":"2026-11-29T11:15:00","ENERGY":{"TotalStartTime":"2024-01-01T00:00:00","Total":12345.6,"Yesterday":8.5,"Today":3.25,"Power":830,"ApparentPower":884,"ReactivePower":304,"Factor":0.94,"Voltage":231,"Current":3.827}}"#,
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
        (
            "tele/gas-1/SENSOR",
            r#"{"Time":"2026-11-29T11:15:00","COUNTER":{"C1":456789}}"#,
            &[(Quantity::GasM3, 4567.89)],
        ),
        (
            "tele/aq-1/SENSOR",
            r#"{"Time":"2026-11-29T11:15:00","SCD30":{"CarbonDioxide":812,"eCO2":788,"Temperature":20.5,"Humidity":45.1,"DewPoint":8.3},"TempUnit":"C"}"#,
            &[
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 20.5),
                (Quantity::HumidityPct, 45.1),
            ],
        ),
        (
            "tele/ext-1/SENSOR",
            r#"{"Time":"2026-11-29T11:15:00","DS18B20":{"Id":"0123456789AB","Temperature":-2.5},"TempUnit":"C"}"#,
            &[(Quantity::OutdoorTemperatureC, -2.5)],
        ),
        (
            "v3/mairie@ttn/devices/elec-1/up",
            r#"{"end_device_ids":{"device_id":"elec-1","application_ids":{"application_id":"mairie"}},"received_at":"2026-11-29T10:15:00Z","uplink_message":{"f_port":1,"frm_payload":"ALxhAAAMqjA=","decoded_payload":{"energy_kwh":12345.6,"power_w":830},"received_at":"2026-11-29T10:15:00Z","consumed_airtime":"0.061696s"}}"#,
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
        (
            "v3/mairie@ttn/devices/aq-1/up",
            r#"{"received_at":"2026-11-29T10:15:00Z","uplink_message":{"frm_payload":"AA==","decoded_payload":{"co2":812,"temperature":20.5,"humidity":45.1,"vdd":3600}}}"#,
            &[
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 20.5),
                (Quantity::HumidityPct, 45.1),
            ],
        ),
        (
            "telegraf/mairie-gw/energy",
            "energy,building=mairie,device=elec-1,host=mairie-gw electricity_kwh=12345.6,power_w=830 1795947300000000000\n",
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
        (
            "telegraf/mairie-gw/energy",
            r#"{"fields":{"electricity_kwh":12345.6,"power_w":830.0},"name":"energy","tags":{"building":"mairie","device":"elec-1","host":"mairie-gw"},"timestamp":1795947300}"#,
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
    ];
    for (topic, payload, want) in cases {
        let d = decode_on(&all, topic, payload);
        assert!(d.problems.is_empty(), "{topic}: {:?}", d.problems);
        let mut got: Vec<_> = d
            .readings
            .iter()
            .map(|r| (r.quantity, (r.value * 1e6).round() / 1e6))
            .collect();
        got.sort_by_key(|g| g.0);
        let mut want = want.to_vec();
        want.sort_by_key(|w| w.0);
        assert_eq!(got, want, "{topic}");
        if !topic.starts_with("zigbee2mqtt") {
            assert!(
                d.readings.iter().all(|r| r.ts == ts),
                "{topic}: {:?}",
                d.readings
            );
        }
    }
    // Availability as published.
    assert_eq!(
        decode_on(
            &all,
            "zigbee2mqtt/aq-1/availability",
            r#"{"state":"offline"}"#
        )
        .online,
        Some(false)
    );
    assert_eq!(
        decode_on(&all, "tele/aq-1/LWT", "Online").online,
        Some(true)
    );
    // Zigbee2MQTT history goes out natively on vigie/<id>/telemetry: still decoded.
    let d = decode_on(
        &all,
        "vigie/aq-1/telemetry",
        r#"[{"ts":"2026-11-29T10:00:00Z","values":{"co2_ppm":700}}]"#,
    );
    assert_eq!(d.readings.len(), 1);
}
