//! What a firmware reports around meter resets and swaps, and with a skewed clock.

use std::collections::BTreeSet;
use std::time::Duration;

use vigie_core::Timestamp;
use vigie_firmware_sim::firmware::{clock_offset_ms, index_quantity};
use vigie_firmware_sim::meter::{MeterEventKind, meter_events};
use vigie_firmware_sim::{DeviceReadings, FirmwareOptions, demo_fleet};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid timestamp")
}

#[test]
fn indexes_drop_exactly_at_scheduled_resets_and_swaps_and_never_otherwise() {
    let seed = 7;
    let fleet = demo_fleet(1, seed);
    let (from, to) = (ts("2026-08-01T00:00:00Z"), ts("2026-11-29T00:00:00Z"));
    let mut kinds = BTreeSet::new();
    let mut drops = 0;
    for d in fleet
        .devices
        .iter()
        .filter(|d| index_quantity(d.kind).is_some())
    {
        let q = index_quantity(d.kind).expect("meter");
        let b = fleet.building_of(d).expect("building");
        let opts = FirmwareOptions {
            resets: true,
            ..FirmwareOptions::default()
        };
        let mut fw = DeviceReadings::new(d, b, seed, opts);
        let events = meter_events(d, seed, from, to);
        kinds.extend(events.iter().map(|e| format!("{:?}", e.kind)));
        let mut prev = fw.reading_at(from);
        let mut t = from;
        while t < to {
            t = t.plus_millis(20 * 60_000);
            let cur = fw.reading_at(t);
            let (a, b) = (prev.values[&q], cur.values[&q]);
            let event = events.iter().find(|e| e.at > prev.ts && e.at <= cur.ts);
            match event {
                Some(e) => {
                    drops += 1;
                    assert!(
                        b < a,
                        "{}: no drop at {:?} {}: {a} → {b}",
                        d.id,
                        e.kind,
                        e.at
                    );
                    assert_eq!(cur.meter_since, Some(e.at), "{}", d.id);
                    if e.kind == MeterEventKind::Reset {
                        assert!(b < 0.01 * a.max(1.0) + 5.0, "{}: reset to {b}", d.id);
                    } else {
                        assert!(b >= 0.04 * a && b <= 0.51 * a, "{}: swap {a} → {b}", d.id);
                    }
                }
                None => assert!(b >= a, "{}: {q} fell from {a} to {b} at {t}", d.id),
            }
            prev = cur;
        }
    }
    assert!(
        drops >= 2,
        "only {drops} events in four months over three meters"
    );
    assert_eq!(kinds.len(), 2, "both resets and swaps happen: {kinds:?}");
}

#[test]
fn without_resets_the_firmware_reports_the_models_indexes() {
    let fleet = demo_fleet(1, 7);
    for d in &fleet.devices {
        let b = fleet.building_of(d).expect("building");
        let mut fw = DeviceReadings::new(d, b, 7, FirmwareOptions::default());
        let mut model = vigie_firmware_sim::DeviceModel::new(d, b, 7);
        for t in [ts("2026-09-03T10:00:00Z"), ts("2026-11-20T17:45:00Z")] {
            let r = fw.reading_at(t);
            assert_eq!(r.ts, t);
            assert_eq!(r.values, model.reading_at(t).values, "{}", d.id);
        }
    }
}

#[test]
fn a_skewed_clock_shifts_every_timestamp_by_a_fixed_bounded_offset() {
    let fleet = demo_fleet(2, 3);
    let skew = Some(Duration::from_secs(120));
    let offsets: BTreeSet<i64> = fleet
        .devices
        .iter()
        .map(|d| clock_offset_ms(d, 3, skew))
        .collect();
    assert!(
        offsets.len() > fleet.devices.len() / 2,
        "offsets differ per device"
    );
    assert!(offsets.iter().all(|o| o.abs() <= 120_000), "{offsets:?}");
    assert!(offsets.iter().any(|o| *o < 0) && offsets.iter().any(|o| *o > 0));
    let d = &fleet.devices[0];
    let b = fleet.building_of(d).expect("building");
    let opts = FirmwareOptions {
        skew,
        ..FirmwareOptions::default()
    };
    let mut skewed = DeviceReadings::new(d, b, 3, opts);
    let mut exact = DeviceReadings::new(d, b, 3, FirmwareOptions::default());
    let t = ts("2026-11-29T10:15:00Z");
    let (s, e) = (skewed.reading_at(t), exact.reading_at(t));
    assert_eq!(s.ts.millis() - e.ts.millis(), skewed.clock_offset_ms());
    assert_eq!(
        s.values, e.values,
        "a wrong clock does not change what was measured"
    );
    assert_eq!(clock_offset_ms(d, 3, None), 0);
}
