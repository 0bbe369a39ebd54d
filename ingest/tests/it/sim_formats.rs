//! firmware-sim's fleet, in each format it speaks, through the real embedded broker into
//! ingest with that format enabled: one day of history (a fixed past day, so that the
//! run is the same whenever it happens) and a few live readings. Nothing is
//! quarantined, and what is stored is what the simulator says it published
//! ([`vigie_firmware_sim::backfill_readings`]): every reading of every device, and the
//! day's electricity, gas and water consumption of each building.
//!
//! Every format carries every quantity of the fleet (FORMATS.md): Zigbee2MQTT sends
//! its history natively (it has no timestamp) and its live readings as Zigbee2MQTT;
//! Tasmota sends gas and water as pulses (`COUNTER.C1`), which the pulse factors
//! registered with the fleet turn into m³, rounded to the pulse (0.01 m³ of gas).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use vigie_core::registry::{Device, DeviceKind};
use vigie_core::store::{Aggregation, Point, TimeSeriesStore, bucket_query};
use vigie_core::time::{Bucket, local_midnight};
use vigie_core::{BuildingId, DeviceId, Quantity, SeriesKind, Timestamp};
use vigie_firmware_sim::{Reading, SimFormat, SimOptions, backfill_readings, demo_fleet};
use vigie_ingest::decode::format_topics;

use crate::harness::{Harness, wait_for};

const SEED: u64 = 7;
const BUILDINGS: usize = 2;

fn day() -> NaiveDate {
    // Summer time, far from a DST change: Tasmota's local `Time` is unambiguous.
    NaiveDate::from_ymd_opt(2026, 10, 14).unwrap()
}

/// The last instant of [`day`] in Paris: the backfill's end.
fn until() -> Timestamp {
    local_midnight(day().succ_opt().unwrap()).plus_millis(-1)
}

/// The decoder a format needs (native is always on).
fn enable(opts: &mut vigie_ingest::IngestOptions, format: SimFormat) {
    let f = &mut opts.formats;
    match format {
        SimFormat::Native => {}
        SimFormat::Zigbee2Mqtt => f.zigbee2mqtt.enabled = true,
        SimFormat::Tasmota => f.tasmota.enabled = true,
        SimFormat::Ttn => f.ttn.enabled = true,
        SimFormat::Telegraf | SimFormat::TelegrafJson => f.telegraf.enabled = true,
    }
    opts.topics.extend(format_topics(&opts.formats));
}

/// How far a stored value may be from the measured one: Tasmota counts gas in pulses
/// of 0.01 m³ (the reading is rounded to the nearest pulse).
fn tolerance(format: SimFormat, q: Quantity) -> f64 {
    match (format, q) {
        (SimFormat::Tasmota, Quantity::GasM3) => 0.005 + 1e-9,
        _ => 1e-6,
    }
}

/// Sum of the positive steps between consecutive readings of `q`.
fn consumption_of(readings: &[Reading], q: Quantity) -> f64 {
    let values: Vec<f64> = readings
        .iter()
        .filter_map(|r| r.values.get(&q).copied())
        .collect();
    values.windows(2).map(|w| (w[1] - w[0]).max(0.0)).sum()
}

async fn points(h: &Harness, device: &DeviceId, q: Quantity) -> Vec<Point> {
    let s = h.registry.series_id(device, q).await.unwrap();
    h.store
        .range(s, Timestamp(0), Timestamp(i64::MAX))
        .await
        .unwrap()
}

/// Whether every reading of the day and a live one are stored for every device; fails
/// at once on a quarantined message (it would never be stored).
async fn all_stored(h: &Harness, truth: &[(Device, Vec<Reading>)]) -> bool {
    let quarantined = h.registry.quarantined(5).await.unwrap();
    assert!(quarantined.is_empty(), "{quarantined:#?}");
    for (device, readings) in truth {
        for q in readings[0].values.keys() {
            let p = points(h, &device.id, *q).await;
            let in_day = p.iter().filter(|p| p.ts <= until()).count();
            if in_day < readings.len() || !p.iter().any(|p| p.ts > until()) {
                return false;
            }
        }
    }
    true
}

async fn the_fleet_in(format: SimFormat) {
    let mut h = Harness::start_with(|o| enable(o, format)).await;
    let fleet = demo_fleet(BUILDINGS, SEED).with_format(format);
    fleet.provision(&h.registry).await.unwrap();
    let opts = SimOptions {
        broker_port: h.broker.addr().port(),
        client_id_prefix: format!("sim-{format}"),
        buildings: BUILDINGS,
        seed: SEED,
        backfill_days: 1,
        backfill_until: Some(until()),
        interval: Duration::from_secs(1),
        duration: Some(Duration::from_millis(2_500)),
        format,
        ..SimOptions::default()
    };
    let truth = backfill_readings(&opts, until());
    assert_eq!(truth.len(), fleet.devices.len());
    assert!(truth.iter().all(|(_, r)| r.len() == 96), "a whole day");
    let report = vigie_firmware_sim::run(opts, std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.lost, report.dropped), (0, 0), "{report:?}");
    wait_for(
        &format!("{format}: every reading and a live one stored"),
        || all_stored(&h, &truth),
    )
    .await;

    let quarantined = h.registry.quarantined(20).await.unwrap();
    assert!(quarantined.is_empty(), "{format}: {quarantined:#?}");

    // Every reading of the day, at its instant, with its value.
    for (device, readings) in &truth {
        for q in readings[0].values.keys() {
            let stored: Vec<Point> = points(&h, &device.id, *q)
                .await
                .into_iter()
                .filter(|p| p.ts <= until())
                .collect();
            assert_eq!(stored.len(), readings.len(), "{format} {} {q}", device.id);
            for (p, r) in stored.iter().zip(readings) {
                assert_eq!(p.ts, r.ts, "{format} {} {q}", device.id);
                let want = r.values[q];
                assert!(
                    (p.value - want).abs() <= tolerance(format, *q),
                    "{format} {} {q} at {}: stored {}, published {want}",
                    device.id,
                    p.ts,
                    p.value
                );
            }
        }
    }

    // Each building's consumption of the day, as the store computes it.
    let mut by_building: BTreeMap<(BuildingId, Quantity), (f64, f64)> = BTreeMap::new();
    for (device, readings) in &truth {
        let q = match device.kind {
            DeviceKind::ElectricityMeter => Quantity::ElectricityKwh,
            DeviceKind::GasMeter => Quantity::GasM3,
            DeviceKind::WaterMeter => Quantity::WaterM3,
            _ => continue,
        };
        assert_eq!(q.kind(), SeriesKind::Counter);
        let series = h.registry.series_id(&device.id, q).await.unwrap();
        let stored = h
            .store
            .aggregate(&bucket_query(
                vec![series],
                Aggregation::Consumption,
                day(),
                day(),
                Bucket::Day,
            ))
            .await
            .unwrap()[0]
            .value
            .unwrap_or(0.0);
        let building = device.building_id.clone().unwrap();
        let e = by_building.entry((building, q)).or_default();
        e.0 += stored;
        e.1 += consumption_of(readings, q);
    }
    assert_eq!(by_building.len(), 3 * BUILDINGS);
    for ((building, q), (stored, published)) in by_building {
        assert!(
            published > 0.0,
            "{format} {building} {q}: the day has consumption"
        );
        assert!(
            (stored - published).abs() <= 2.0 * tolerance(format, q),
            "{format} {building} {q}: stored {stored}, published {published}"
        );
    }
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_native_format_is_stored_as_published() {
    the_fleet_in(SimFormat::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_zigbee2mqtt_format_is_stored_as_published() {
    the_fleet_in(SimFormat::Zigbee2Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_tasmota_format_is_stored_as_published() {
    the_fleet_in(SimFormat::Tasmota).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_ttn_format_is_stored_as_published() {
    the_fleet_in(SimFormat::Ttn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_telegraf_line_protocol_is_stored_as_published() {
    the_fleet_in(SimFormat::Telegraf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_telegraf_json_is_stored_as_published() {
    the_fleet_in(SimFormat::TelegrafJson).await;
}
