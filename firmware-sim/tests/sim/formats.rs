//! Each format's payloads against the shape its ecosystem documents: topic, keys,
//! units and timestamps, parsed back with serde_json.

use std::collections::BTreeMap;

use serde_json::Value;
use vigie_core::registry::DeviceKind;
use vigie_core::{BuildingId, DeviceId, Quantity, Timestamp};
use vigie_firmware_sim::firmware::DayEnergy;
use vigie_firmware_sim::formats::{self, Delivery, DeviceInfo, Message};
use vigie_firmware_sim::{Reading, SimFormat};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid timestamp")
}

fn info(id: &str, kind: DeviceKind) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId::new(id).expect("id"),
        kind,
        building: BuildingId::new("mairie-saint-aubin").expect("id"),
    }
}

fn reading(at: &str, values: &[(Quantity, f64)]) -> Reading {
    Reading {
        ts: ts(at),
        values: values.iter().copied().collect::<BTreeMap<_, _>>(),
        meter_since: Some(ts("2026-01-01T00:00:00Z")),
        day_energy: Some(DayEnergy {
            today_kwh: 3.25,
            yesterday_kwh: 8.5,
        }),
    }
}

fn elec() -> (DeviceInfo, Reading) {
    (
        info("mairie-saint-aubin-elec", DeviceKind::ElectricityMeter),
        reading(
            "2026-11-29T10:15:00Z",
            &[
                (Quantity::ElectricityKwh, 12345.6),
                (Quantity::PowerW, 830.0),
            ],
        ),
    )
}

fn aq() -> (DeviceInfo, Reading) {
    (
        info("mairie-saint-aubin-aq-accueil", DeviceKind::AirQuality),
        reading(
            "2026-11-29T10:15:00Z",
            &[
                (Quantity::Co2Ppm, 812.0),
                (Quantity::TemperatureC, 20.5),
                (Quantity::HumidityPct, 45.1),
            ],
        ),
    )
}

fn one(format: SimFormat, d: &DeviceInfo, r: &Reading, delivery: Delivery) -> (Message, Value) {
    let mut m = formats::encode(format, d, std::slice::from_ref(r), delivery);
    assert_eq!(m.len(), 1, "{format}");
    let m = m.remove(0);
    let v = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    (m, v)
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn format_names_parse_and_unknown_names_say_what_is_expected() {
    for f in SimFormat::ALL {
        assert_eq!(f.as_str().parse::<SimFormat>(), Ok(f));
        assert_eq!(f.to_string(), f.as_str());
    }
    assert_eq!(
        "Zigbee2MQTT".parse::<SimFormat>(),
        Ok(SimFormat::Zigbee2Mqtt)
    );
    assert_eq!(SimFormat::default(), SimFormat::Native);
    let err = "lora".parse::<SimFormat>().expect_err("unknown");
    let text = err.to_string();
    assert!(
        text.contains("`lora`") && text.contains("tasmota"),
        "{text}"
    );
}

#[test]
fn native_is_the_documented_object_and_a_backlog_is_an_array() {
    let (d, r) = elec();
    let (m, v) = one(SimFormat::Native, &d, &r, Delivery::Current);
    assert_eq!(m.topic, "vigie/mairie-saint-aubin-elec/telemetry");
    assert_eq!(
        String::from_utf8_lossy(&m.payload),
        r#"{"ts":"2026-11-29T10:15:00Z","values":{"electricity_kwh":12345.6,"power_w":830.0}}"#
    );
    assert_eq!(v["values"]["power_w"], 830.0);
    assert_eq!(m.samples, 2);
    let later = reading(
        "2026-11-29T10:30:00Z",
        &[(Quantity::ElectricityKwh, 12345.8)],
    );
    let m = formats::encode(SimFormat::Native, &d, &[r, later], Delivery::History);
    let v: Value = serde_json::from_slice(&m[0].payload).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["ts"], "2026-11-29T10:30:00Z");
    assert_eq!(m[0].samples, 3);
}

#[test]
fn zigbee2mqtt_publishes_flat_keys_without_timestamp_and_history_natively() {
    let (d, r) = elec();
    let (m, v) = one(SimFormat::Zigbee2Mqtt, &d, &r, Delivery::Current);
    assert_eq!(m.topic, "zigbee2mqtt/mairie-saint-aubin-elec");
    assert_eq!(keys(&v), ["energy", "linkquality", "power"]);
    assert_eq!(v["energy"], 12345.6);
    assert_eq!(v["power"], 830);
    let lq = v["linkquality"].as_i64().expect("integer");
    assert!((0..=255).contains(&lq));
    let (d, r) = aq();
    let (_, v) = one(SimFormat::Zigbee2Mqtt, &d, &r, Delivery::Current);
    assert_eq!(keys(&v), ["co2", "humidity", "linkquality", "temperature"]);
    assert_eq!(
        (v["co2"].as_i64(), v["temperature"].as_f64()),
        (Some(812), Some(20.5))
    );
    let water = info("mairie-saint-aubin-water", DeviceKind::WaterMeter);
    let r = reading("2026-11-29T10:15:00Z", &[(Quantity::WaterM3, 1234.567)]);
    let (_, v) = one(SimFormat::Zigbee2Mqtt, &water, &r, Delivery::Current);
    assert_eq!(keys(&v), ["battery", "linkquality", "water_consumed"]);
    assert!((40..=100).contains(&v["battery"].as_i64().expect("battery")));
    // History cannot be told apart from now in Zigbee2MQTT: it goes out natively.
    let (m, v) = one(SimFormat::Zigbee2Mqtt, &water, &r, Delivery::History);
    assert_eq!(m.topic, "vigie/mairie-saint-aubin-water/telemetry");
    assert_eq!(v["ts"], "2026-11-29T10:15:00Z");
    let s = formats::status(SimFormat::Zigbee2Mqtt, &water, false).expect("availability");
    assert_eq!(s.topic, "zigbee2mqtt/mairie-saint-aubin-water/availability");
    assert_eq!(s.payload, br#"{"state":"offline"}"#);
    assert!(s.retain);
}

#[test]
fn tasmota_sends_paris_local_time_energy_totals_and_sensor_objects() {
    let (d, r) = elec();
    let (m, v) = one(SimFormat::Tasmota, &d, &r, Delivery::History);
    assert_eq!(m.topic, "tele/mairie-saint-aubin-elec/SENSOR");
    // 10:15 UTC is 11:15 in Paris in November; no offset, as Tasmota prints it.
    assert_eq!(v["Time"], "2026-11-29T11:15:00");
    let e = &v["ENERGY"];
    for k in [
        "TotalStartTime",
        "Total",
        "Yesterday",
        "Today",
        "Power",
        "ApparentPower",
        "ReactivePower",
        "Factor",
        "Voltage",
        "Current",
    ] {
        assert!(!e[k].is_null(), "ENERGY.{k} missing in {e}");
    }
    assert_eq!(e["Total"], 12345.6);
    assert_eq!(e["Power"], 830);
    assert_eq!(
        (e["Today"].as_f64(), e["Yesterday"].as_f64()),
        (Some(3.25), Some(8.5))
    );
    assert_eq!(e["TotalStartTime"], "2026-01-01T01:00:00");
    assert!(e["ApparentPower"].as_f64() >= e["Power"].as_f64());
    // Summer time: 10:15 UTC is 12:15 in Paris.
    let summer = reading("2026-07-01T10:15:00Z", &[(Quantity::ElectricityKwh, 1.0)]);
    let (_, v) = one(SimFormat::Tasmota, &d, &summer, Delivery::Current);
    assert_eq!(v["Time"], "2026-07-01T12:15:00");

    let (d, r) = aq();
    let (_, v) = one(SimFormat::Tasmota, &d, &r, Delivery::Current);
    assert_eq!(keys(&v), ["SCD30", "TempUnit", "Time"]);
    let s = &v["SCD30"];
    assert_eq!(
        keys(s),
        [
            "CarbonDioxide",
            "DewPoint",
            "Humidity",
            "Temperature",
            "eCO2"
        ]
    );
    assert_eq!(
        (s["CarbonDioxide"].as_i64(), s["Temperature"].as_f64()),
        (Some(812), Some(20.5))
    );
    let dew = s["DewPoint"].as_f64().expect("dew point");
    assert!((8.0..9.0).contains(&dew), "{dew}");

    let gas = info("mairie-saint-aubin-gas", DeviceKind::GasMeter);
    let r = reading("2026-11-29T10:15:00Z", &[(Quantity::GasM3, 4567.89)]);
    let (_, v) = one(SimFormat::Tasmota, &gas, &r, Delivery::Current);
    assert_eq!(v["COUNTER"]["C1"], 456_789, "0.01 m³ per pulse");
    let water = info("mairie-saint-aubin-water", DeviceKind::WaterMeter);
    let r = reading("2026-11-29T10:15:00Z", &[(Quantity::WaterM3, 123.456)]);
    let (_, v) = one(SimFormat::Tasmota, &water, &r, Delivery::Current);
    assert_eq!(v["COUNTER"]["C1"], 123_456, "1 litre per pulse");
    let outdoor = info("mairie-saint-aubin-outdoor", DeviceKind::OutdoorThermometer);
    let r = reading(
        "2026-11-29T10:15:00Z",
        &[(Quantity::OutdoorTemperatureC, -2.5)],
    );
    let (_, v) = one(SimFormat::Tasmota, &outdoor, &r, Delivery::Current);
    assert_eq!(v["DS18B20"]["Temperature"], -2.5);
    assert_eq!(v["DS18B20"]["Id"].as_str().map(str::len), Some(12));
    let s = formats::status(SimFormat::Tasmota, &outdoor, true).expect("LWT");
    assert_eq!(
        (s.topic.as_str(), s.payload.as_slice()),
        ("tele/mairie-saint-aubin-outdoor/LWT", &b"Online"[..])
    );
}

#[test]
fn ttn_uplinks_have_the_v3_topic_ids_received_at_and_decoded_payload() {
    let (d, r) = elec();
    let (m, v) = one(SimFormat::Ttn, &d, &r, Delivery::Current);
    assert_eq!(
        m.topic,
        "v3/mairie-saint-aubin@ttn/devices/mairie-saint-aubin-elec/up"
    );
    assert_eq!(v["end_device_ids"]["device_id"], "mairie-saint-aubin-elec");
    assert_eq!(
        v["end_device_ids"]["application_ids"]["application_id"],
        "mairie-saint-aubin"
    );
    assert_eq!(
        v["end_device_ids"]["dev_eui"].as_str().map(str::len),
        Some(16)
    );
    assert_eq!(v["received_at"], "2026-11-29T10:15:00Z");
    let up = &v["uplink_message"];
    assert_eq!(up["f_port"], 1);
    assert_eq!(keys(&up["decoded_payload"]), ["energy_kwh", "power_w"]);
    assert_eq!(up["decoded_payload"]["energy_kwh"], 12345.6);
    assert_eq!(up["decoded_payload"]["power_w"], 830);
    // frm_payload: big-endian i32 of value × 1000, base64.
    assert_eq!(up["frm_payload"], "ALxhAAAMqjA=");
    let rx = &up["rx_metadata"][0];
    assert_eq!(rx["gateway_ids"]["gateway_id"], "mairie-saint-aubin-gw");
    assert!(rx["rssi"].as_i64().is_some_and(|r| (-130..0).contains(&r)));
    assert!(formats::status(SimFormat::Ttn, &d, true).is_none());
    let (d, r) = aq();
    let (_, v) = one(SimFormat::Ttn, &d, &r, Delivery::Current);
    assert_eq!(
        keys(&v["uplink_message"]["decoded_payload"]),
        ["co2", "humidity", "temperature", "vdd"]
    );
}

#[test]
fn telegraf_writes_line_protocol_and_json_as_its_mqtt_output_does() {
    let (d, r) = elec();
    let (m, _) = one(SimFormat::Telegraf, &d, &r, Delivery::Current);
    assert_eq!(m.topic, "telegraf/mairie-saint-aubin-gw/energy");
    assert_eq!(
        String::from_utf8_lossy(&m.payload),
        "energy,building=mairie-saint-aubin,device=mairie-saint-aubin-elec,host=mairie-saint-aubin-gw electricity_kwh=12345.6,power_w=830 1795947300000000000\n"
    );
    let later = reading(
        "2026-11-29T10:30:00Z",
        &[(Quantity::ElectricityKwh, 12345.8)],
    );
    let batch = formats::encode(
        SimFormat::Telegraf,
        &d,
        &[r.clone(), later.clone()],
        Delivery::History,
    );
    let text = String::from_utf8_lossy(&batch[0].payload).into_owned();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(" 1795948200000000000"))
    );

    let (m, v) = one(SimFormat::TelegrafJson, &d, &r, Delivery::Current);
    assert_eq!(m.topic, "telegraf/mairie-saint-aubin-gw/energy");
    assert_eq!(keys(&v), ["fields", "name", "tags", "timestamp"]);
    assert_eq!(v["name"], "energy");
    assert_eq!(v["timestamp"], 1_795_947_300);
    assert_eq!(v["fields"]["electricity_kwh"], 12345.6);
    assert_eq!(v["tags"]["device"], "mairie-saint-aubin-elec");
    assert_eq!(v["tags"]["host"], "mairie-saint-aubin-gw");
    let batch = formats::encode(SimFormat::TelegrafJson, &d, &[r, later], Delivery::History);
    let v: Value = serde_json::from_slice(&batch[0].payload).expect("json");
    assert_eq!(v["metrics"].as_array().map(Vec::len), Some(2));
    assert!(formats::status(SimFormat::Telegraf, &d, true).is_none());
}
