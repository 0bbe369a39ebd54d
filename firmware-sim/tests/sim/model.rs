//! Properties of the simulated physics: counters, occupancy, heating, Paris days.

use chrono::NaiveDate;
use vigie_core::registry::DeviceKind;
use vigie_core::time::{local_date, local_midnight};
use vigie_core::{Quantity, Timestamp};
use vigie_firmware_sim::model::published_quantities;
use vigie_firmware_sim::{DeviceModel, Fleet, backfill_plan, demo_fleet};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid timestamp")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn models(fleet: &Fleet, seed: u64, kind: DeviceKind) -> Vec<(String, DeviceModel)> {
    fleet
        .devices
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| {
            let b = fleet.building_of(d).expect("device has a building");
            (d.id.to_string(), DeviceModel::new(d, b, seed))
        })
        .collect()
}

fn value(model: &mut DeviceModel, at: Timestamp, q: Quantity) -> f64 {
    *model
        .reading_at(at)
        .values
        .get(&q)
        .unwrap_or_else(|| panic!("{q} missing at {at}"))
}

#[test]
fn counters_never_decrease_during_backfill_and_power_matches_index_steps() {
    let fleet = demo_fleet(3, 7);
    // 40 days across the end of summer time (25 October 2026).
    let plan = backfill_plan(ts("2026-11-29T10:07:00Z"), 40);
    for (kind, q) in [
        (DeviceKind::ElectricityMeter, Quantity::ElectricityKwh),
        (DeviceKind::GasMeter, Quantity::GasM3),
        (DeviceKind::WaterMeter, Quantity::WaterM3),
    ] {
        for (id, mut m) in models(&fleet, 7, kind) {
            let mut prev: Option<(Timestamp, f64)> = None;
            let first = value(&mut m, plan[0].samples[0], q);
            assert!(
                first > 50.0,
                "{id} starts at a realistic index, got {first}"
            );
            for t in plan.iter().flat_map(|d| d.samples.iter().copied()) {
                let reading = m.reading_at(t);
                let index = reading.values[&q];
                if let Some((pt, pv)) = prev {
                    assert!(
                        index >= pv,
                        "{id}: {q} went from {pv} at {pt} to {index} at {t}"
                    );
                    if kind == DeviceKind::ElectricityMeter {
                        // power_w is the mean power over the quarter-hour that ends at t.
                        let from_index = (index - pv) * 4.0 * 1000.0;
                        let power = reading.values[&Quantity::PowerW];
                        assert!(
                            (from_index - power).abs() <= 6.0,
                            "{id} at {t}: {power} W vs {from_index} W"
                        );
                    }
                }
                prev = Some((t, index));
            }
            let last = prev.expect("samples").1;
            assert!(last > first, "{id}: {q} never moved in 40 days");
        }
    }
}

#[test]
fn school_co2_is_higher_in_class_hours_than_at_night() {
    let fleet = demo_fleet(3, 11);
    let school = fleet
        .buildings
        .iter()
        .find(|b| b.usage == "enseignement")
        .expect("a school");
    let sensors: Vec<_> = models(&fleet, 11, DeviceKind::AirQuality)
        .into_iter()
        .filter(|(id, _)| id.starts_with(school.id.as_str()))
        .collect();
    assert!(sensors.len() >= 2);
    for (id, mut m) in sensors {
        // Thursday 26 November 2026: 10:30 and 03:00 in Paris.
        let class = value(&mut m, ts("2026-11-26T09:30:00Z"), Quantity::Co2Ppm);
        let night = value(&mut m, ts("2026-11-26T02:00:00Z"), Quantity::Co2Ppm);
        assert!(
            class > 750.0 && class < 1500.0,
            "{id}: {class} ppm in class"
        );
        assert!(night < 500.0, "{id}: {night} ppm at night");
        // Wednesday: no school, the air stays near the outdoor level.
        let wednesday = value(&mut m, ts("2026-11-25T09:30:00Z"), Quantity::Co2Ppm);
        assert!(wednesday < 500.0, "{id}: {wednesday} ppm on Wednesday");
    }
}

#[test]
fn gas_use_in_january_far_exceeds_july() {
    let fleet = demo_fleet(3, 3);
    for (id, mut m) in models(&fleet, 3, DeviceKind::GasMeter) {
        let mut used = |from: NaiveDate, to: NaiveDate| {
            let a = value(&mut m, local_midnight(from), Quantity::GasM3);
            let b = value(&mut m, local_midnight(to), Quantity::GasM3);
            b - a
        };
        let january = used(date(2026, 1, 1), date(2026, 2, 1));
        let july = used(date(2026, 7, 1), date(2026, 8, 1));
        assert!(january > 500.0, "{id}: {january} m³ in January");
        assert!(
            january > 10.0 * july,
            "{id}: January {january} m³, July {july} m³"
        );
    }
}

#[test]
fn town_hall_is_heated_when_open_and_set_back_at_night_in_winter() {
    let fleet = demo_fleet(1, 5);
    for (id, mut m) in models(&fleet, 5, DeviceKind::AirQuality) {
        // Tuesday 13 January 2026: 11:00 and 04:00 in Paris.
        let open = value(&mut m, ts("2026-01-13T10:00:00Z"), Quantity::TemperatureC);
        let night = value(&mut m, ts("2026-01-13T03:00:00Z"), Quantity::TemperatureC);
        assert!((19.0..=21.8).contains(&open), "{id}: {open} °C when open");
        assert!((15.5..=17.5).contains(&night), "{id}: {night} °C at night");
        for h in 0..48 {
            let t = ts("2026-01-12T00:00:00Z").plus_millis(h * 1_800_000);
            let rh = value(&mut m, t, Quantity::HumidityPct);
            assert!((35.0..=60.0).contains(&rh), "{id}: {rh} % at {t}");
        }
    }
}

#[test]
fn backfill_days_are_paris_calendar_days() {
    // The day summer time ends has 25 hours, so 100 quarter-hours.
    let plan = backfill_plan(ts("2026-10-26T10:00:00Z"), 3);
    let dates: Vec<_> = plan.iter().map(|d| d.date).collect();
    assert_eq!(
        dates,
        [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
    );
    assert_eq!(plan[0].samples.len(), 96);
    assert_eq!(plan[1].samples.len(), 100);
    for day in &plan {
        assert_eq!(day.samples[0], local_midnight(day.date));
        assert!(day.samples.iter().all(|t| local_date(*t) == day.date));
    }
    // Today stops at now: 11:00 in Paris is the 45th quarter-hour.
    assert_eq!(
        plan[2].samples.last().copied(),
        Some(ts("2026-10-26T10:00:00Z"))
    );
    assert_eq!(plan[2].samples.len(), 45);
    // Spring forward: 23 hours.
    let spring = backfill_plan(ts("2026-03-30T12:00:00Z"), 2);
    assert_eq!(spring[0].date, date(2026, 3, 29));
    assert_eq!(spring[0].samples.len(), 92);
    assert!(backfill_plan(ts("2026-03-30T12:00:00Z"), 0).is_empty());
}

#[test]
fn same_seed_gives_same_values_whatever_the_reading_order() {
    let fleet = demo_fleet(3, 21);
    let t1 = ts("2026-02-03T08:45:00Z");
    let t2 = ts("2026-11-20T17:30:00Z");
    for d in &fleet.devices {
        let b = fleet.building_of(d).expect("building");
        let mut walked = DeviceModel::new(d, b, 21);
        let _ = walked.reading_at(t1);
        let _ = walked.reading_at(t2);
        let back = walked.reading_at(t1);
        let mut direct = DeviceModel::new(d, b, 21);
        assert_eq!(walked.reading_at(t2), direct.reading_at(t2), "{}", d.id);
        assert_eq!(back, direct.reading_at(t1), "{}", d.id);
        let keys: Vec<_> = back.values.keys().copied().collect();
        let mut expected = published_quantities(d.kind).to_vec();
        expected.sort();
        assert_eq!(keys, expected, "{}", d.id);
        for (q, v) in &back.values {
            assert!(q.check(*v).is_ok(), "{}: {q} = {v}", d.id);
        }
    }
    let elec = fleet
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::ElectricityMeter)
        .expect("meter");
    let b = fleet.building_of(elec).expect("building");
    let other = DeviceModel::new(elec, b, 22).reading_at(t2);
    assert_ne!(other, DeviceModel::new(elec, b, 21).reading_at(t2));
}
