//! Tests of the Telegraf decoder, on payloads shaped as Telegraf's documentation shows
//! them (InfluxDB line protocol reference; Telegraf "JSON output data format").

use vigie_core::Quantity;

use super::*;
use crate::decode::test_support::{ctx, decode_via};

fn decode_with(d: &TelegrafDecoder, topic: &str, payload: &str) -> Decoded {
    decode_via(d, topic, payload)
}

fn decode(topic: &str, payload: &str) -> Decoded {
    decode_with(&TelegrafDecoder::new(), topic, payload)
}

fn values(d: &Decoded) -> Vec<(Quantity, f64, Timestamp)> {
    d.readings
        .iter()
        .map(|r| (r.quantity, r.value, r.ts))
        .collect()
}

#[test]
fn a_line_protocol_batch_gives_every_line_in_nanoseconds() {
    // Telegraf [[outputs.mqtt]] data_format = "influx", batch = true: one line per
    // metric, tags sorted, nanosecond timestamps.
    let d = decode(
        "telegraf/ecole-gw/energy",
        "energy,building=ecole,device=elec-1,host=ecole-gw electricity_kwh=12345.6,power_w=830i 1764411300000000000\n\
         energy,building=ecole,device=elec-1,host=ecole-gw electricity_kwh=12345.7,power_w=812i 1764411360000000000\n",
    );
    let t0 = Timestamp(1_764_411_300_000);
    let t1 = Timestamp(1_764_411_360_000);
    assert_eq!(
        values(&d),
        [
            (Quantity::ElectricityKwh, 12345.6, t0),
            (Quantity::PowerW, 830.0, t0),
            (Quantity::ElectricityKwh, 12345.7, t1),
            (Quantity::PowerW, 812.0, t1),
        ]
    );
    assert_eq!(d.device.as_ref().map(DeviceId::as_str), Some("elec-1"));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn the_documented_json_forms_decode_in_seconds() {
    // Telegraf docs, JSON output "Standard format", with vigie field names.
    let one = r#"{"fields":{"co2_ppm":812,"temperature_c":21.4,"humidity_pct":45},"name":"air_quality","tags":{"host":"raynor"},"timestamp":1764411300}"#;
    let d = decode("telegraf/raynor/air_quality", one);
    assert_eq!(d.readings.len(), 3);
    assert!(
        d.readings
            .iter()
            .all(|r| r.ts == Timestamp(1_764_411_300_000))
    );
    assert_eq!(d.device, None, "host tag = topic host: the route's device");
    // "Batch format".
    let batch = format!(r#"{{"metrics":[{one},{one}]}}"#);
    assert_eq!(
        decode("telegraf/raynor/air_quality", &batch).readings.len(),
        6
    );
    // Field names that vigie does not know, as in the docs' docker example.
    let docker = r#"{"fields":{"field_1":30,"field_2":4,"field_N":59,"n_images":660},"name":"docker","tags":{"host":"raynor"},"timestamp":1458229140}"#;
    let d = decode("telegraf/raynor/docker", docker);
    assert!(d.readings.is_empty());
    assert_eq!(d.problems.len(), 4);
    assert!(
        d.problems
            .iter()
            .all(|p| p.reason == QuarantineReason::UnknownQuantity)
    );
}

#[test]
fn measurement_field_mappings_and_unknown_fields() {
    let d = decode(
        "telegraf/srv-1/cpu",
        "cpu,cpu=cpu-total,host=srv-1 usage_idle=97.5,usage_user=1.5 1764411300000000000",
    );
    assert_eq!(d.problems.len(), 2);
    assert!(
        d.problems[0]
            .detail
            .contains(r#"telegraf key "cpu.usage_idle""#)
            && d.problems[0].detail.contains("[ingest.mapping.telegraf]"),
        "{}",
        d.problems[0]
    );
    let user =
        serde_json::from_str(r#"{"cpu.*":"ignore","sensors.temp_input":"temperature_c"}"#).unwrap();
    let mapping = Mapping::new(FORMAT, BUILTIN, &user, Default::default()).unwrap();
    let dec = TelegrafDecoder::from_config(&TelegrafFormat::default(), mapping).unwrap();
    let d = decode_with(
        &dec,
        "telegraf/srv-1/cpu",
        "cpu,host=srv-1 usage_idle=97.5\nsensors,host=srv-1,feature=temp1 temp_input=45.5 1764411300000000000",
    );
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.readings[0].quantity, Quantity::TemperatureC);
}

#[test]
fn precision_strings_booleans_and_bad_lines() {
    let cfg = TelegrafFormat {
        precision: "s".into(),
        ..TelegrafFormat::default()
    };
    let dec = TelegrafDecoder::from_config(&cfg, Mapping::builtin(FORMAT, BUILTIN)).unwrap();
    let d = decode_with(
        &dec,
        "telegraf/h/x",
        "m,device=d1 co2_ppm=500u,label=\"salle 1\",ok=true 1764411300\n\
         m,device=d1 co2_ppm=\"high\" 1764411300\n\
         m,device=d1 co2_ppm=\n\
         # a comment\n\
         m,device=d1 co2_ppm=600 1800000000\n\
         m,device=d1 co2_ppm=700 1764411300000\n",
    );
    assert_eq!(
        values(&d),
        [(Quantity::Co2Ppm, 500.0, Timestamp(1_764_411_300_000))]
    );
    let reasons: Vec<_> = d.problems.iter().map(|p| p.reason).collect();
    assert_eq!(
        reasons,
        [
            QuarantineReason::NonNumeric,
            QuarantineReason::Malformed,
            QuarantineReason::FutureTimestamp,
            QuarantineReason::BadTimestamp
        ]
    );
    assert!(
        d.problems[1].detail.starts_with("line 3:"),
        "{}",
        d.problems[1]
    );
}

#[test]
fn one_message_carries_one_device() {
    let d = decode(
        "telegraf/gw/modbus",
        "energy,device=elec-1 electricity_kwh=1 1764411300000000000\nenergy,device=elec-2 electricity_kwh=2 1764411300000000000",
    );
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.device.as_ref().map(DeviceId::as_str), Some("elec-1"));
    assert_eq!(d.problems[0].reason, QuarantineReason::Malformed);
    assert!(d.problems[0].detail.contains("elec-2"), "{}", d.problems[0]);
    let d = decode("telegraf/gw/x", "energy,device=a\\ b electricity_kwh=1");
    assert_eq!(d.problems[0].reason, QuarantineReason::BadTopic);
}

#[test]
fn topics_and_garbage() {
    let d = TelegrafDecoder::new();
    assert_eq!(
        d.route("telegraf/srv.example.org/cpu")
            .unwrap()
            .unwrap()
            .device
            .as_str(),
        "srv.example.org"
    );
    assert!(d.route("telegraf/").unwrap().is_err());
    assert!(d.route("telegrafx/a").is_none());
    assert_eq!(d.topics(), ["telegraf/#"]);
    for p in ["", "\n\n", "{", "{\"metrics\":3}", "[1]"] {
        let out = decode("telegraf/h/x", p);
        assert!(!out.problems.is_empty() && out.readings.is_empty(), "{p:?}");
    }
    let route = d.route("telegraf/h/x").unwrap().unwrap();
    assert_eq!(
        d.decode(&route, &[0xff, 0xfe], &ctx()).problems[0].reason,
        QuarantineReason::Malformed
    );
}
