//! Meter normalisation through the real pipeline: resets and swaps, rollover, pulse
//! factor, gas energy with the building's PCS, impossible flows, and a backlog after
//! live data giving the same daily totals as the same data in order.

use chrono::NaiveDate;
use vigie_core::registry::{Building, Device, DeviceKind, MeterSettings, QuarantineReason};
use vigie_core::store::{Aggregation, Point, TimeSeriesStore, bucket_query};
use vigie_core::time::Bucket;
use vigie_core::{BuildingId, DeviceId, MemberId, Quantity, Timestamp};

use crate::harness::{Harness, readings, telemetry, wait_for};

const HOUR: i64 = 3_600_000;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Registers a device in the harness's building, with meter settings.
async fn meter(h: &Harness, id: &str, kind: DeviceKind, settings: MeterSettings) {
    let building = BuildingId::new("mairie").unwrap();
    let device = DeviceId::new(id).unwrap();
    h.registry
        .upsert_device(&Device::new(device.clone(), Some(building), kind))
        .await
        .unwrap();
    h.registry
        .set_meter_settings(&device, &settings)
        .await
        .unwrap();
}

/// One native message holding a backlog array.
fn backlog(device: &str, q: Quantity, points: &[(Timestamp, f64)]) -> (String, Vec<u8>) {
    let items: Vec<String> = points
        .iter()
        .map(|(t, v)| format!(r#"{{"ts":"{}","values":{{"{q}":{v}}}}}"#, t.to_rfc3339()))
        .collect();
    telemetry(device, &format!("[{}]", items.join(",")))
}

async fn stored(h: &Harness, device: &str, q: Quantity) -> Vec<Point> {
    let s = h
        .registry
        .series_id(&DeviceId::new(device).unwrap(), q)
        .await
        .unwrap();
    h.store
        .range(s, Timestamp(0), Timestamp(i64::MAX))
        .await
        .unwrap()
}

async fn consumption(
    h: &Harness,
    device: &str,
    q: Quantity,
    from: NaiveDate,
    to: NaiveDate,
    bucket: Bucket,
) -> Vec<Option<f64>> {
    let s = h
        .registry
        .series_id(&DeviceId::new(device).unwrap(), q)
        .await
        .unwrap();
    h.store
        .aggregate(&bucket_query(
            vec![s],
            Aggregation::Consumption,
            from,
            to,
            bucket,
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.value)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_and_a_swap_mid_month_give_the_right_monthly_consumption_never_negative() {
    let mut h = Harness::start().await;
    meter(
        &h,
        "elec-rs",
        DeviceKind::ElectricityMeter,
        MeterSettings::default(),
    )
    .await;
    // One reading a day at 12:00 UTC from 30 September to 31 October 2026, 10 kWh a
    // day; on 10 October the meter is swapped for one at 12 003 kWh, on 20 October it
    // is reset to 2 kWh.
    let start = ts("2026-09-30T12:00:00Z");
    let points: Vec<(Timestamp, f64)> = (0..=31)
        .map(|n| {
            let v = match n {
                0..10 => 50_000.0 + 10.0 * n as f64,
                10..20 => 12_003.0 + 10.0 * (n - 10) as f64,
                _ => 2.0 + 10.0 * (n - 20) as f64,
            };
            (start.plus_millis(n * 24 * HOUR), v)
        })
        .collect();
    h.publish(&readings("elec-rs", Quantity::ElectricityKwh, &points))
        .await;
    wait_for("32 readings stored", || async {
        stored(&h, "elec-rs", Quantity::ElectricityKwh).await.len() == 32
    })
    .await;

    let month = consumption(
        &h,
        "elec-rs",
        Quantity::ElectricityKwh,
        date(2026, 10, 1),
        date(2026, 10, 31),
        Bucket::Month,
    )
    .await;
    // 31 daily steps in October, two of which (swap, reset) count 0.
    assert_eq!(month, [Some(290.0)]);
    let days = consumption(
        &h,
        "elec-rs",
        Quantity::ElectricityKwh,
        date(2026, 10, 1),
        date(2026, 10, 31),
        Bucket::Day,
    )
    .await;
    for (i, d) in days.iter().enumerate() {
        // A day whose only step is the swap or the reset has no positive step.
        let expected = if i + 1 == 10 || i + 1 == 20 {
            0.0
        } else {
            10.0
        };
        assert_eq!(d.unwrap_or(0.0), expected, "day {}", i + 1);
    }
    assert_eq!(h.metrics.quarantined_count(QuarantineReason::OutOfRange), 0);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_is_unwrapped_and_gas_energy_uses_the_buildings_pcs() {
    let mut h = Harness::start().await;
    let member = MemberId::new("commune-test").unwrap();
    h.registry
        .upsert_building(&Building {
            id: BuildingId::new("ecole").unwrap(),
            member_id: member,
            name: "École".into(),
            address: String::new(),
            floor_area_m2: None,
            usage: "enseignement".into(),
            gas_pcs_kwh_per_m3: 10.5,
        })
        .await
        .unwrap();
    let device = DeviceId::new("gas-5d").unwrap();
    h.registry
        .upsert_device(&Device::new(
            device.clone(),
            Some(BuildingId::new("ecole").unwrap()),
            DeviceKind::GasMeter,
        ))
        .await
        .unwrap();
    // A 5-digit register (largest shown value 99999.9) wraps at 100 000.
    h.registry
        .set_meter_settings(
            &device,
            &MeterSettings {
                index_rollover: Some(100_000.0),
                ..MeterSettings::default()
            },
        )
        .await
        .unwrap();
    let t0 = ts("2026-10-05T06:00:00Z");
    let raws = [99_990.0, 99_995.0, 99_998.0, 3.0, 8.0];
    let points: Vec<(Timestamp, f64)> = raws
        .iter()
        .enumerate()
        .map(|(i, v)| (t0.plus_millis(i as i64 * HOUR), *v))
        .collect();
    h.publish(&readings("gas-5d", Quantity::GasM3, &points))
        .await;
    wait_for("5 gas readings and their energy stored", || async {
        stored(&h, "gas-5d", Quantity::GasKwh).await.len() == 5
    })
    .await;

    let m3 = stored(&h, "gas-5d", Quantity::GasM3).await;
    let values: Vec<f64> = m3.iter().map(|p| p.value).collect();
    assert_eq!(values, [99_990.0, 99_995.0, 99_998.0, 100_003.0, 100_008.0]);
    // The raw reading stays visible as the stored value modulo the rollover.
    assert_eq!(m3[3].value % 100_000.0, 3.0);
    let day = |q| {
        consumption(
            &h,
            "gas-5d",
            q,
            date(2026, 10, 5),
            date(2026, 10, 5),
            Bucket::Day,
        )
    };
    assert_eq!(day(Quantity::GasM3).await, [Some(18.0)]);
    let kwh = day(Quantity::GasKwh).await[0].unwrap();
    assert!((kwh - 18.0 * 10.5).abs() < 1e-6, "{kwh}");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulses_become_an_index_with_the_meters_factor_and_are_kept() {
    let mut h = Harness::start().await;
    meter(
        &h,
        "water-p",
        DeviceKind::WaterMeter,
        MeterSettings {
            pulse_factor: Some(10.0), // litres per pulse
            ..MeterSettings::default()
        },
    )
    .await;
    meter(
        &h,
        "water-nof",
        DeviceKind::WaterMeter,
        MeterSettings::default(),
    )
    .await;
    let t0 = ts("2026-10-06T08:00:00Z");
    let points = [
        (t0, 1_000.0),
        (t0.plus_millis(HOUR), 1_100.0),
        (t0.plus_millis(2 * HOUR), 1_250.0),
    ];
    let mut msgs = readings("water-p", Quantity::Pulses, &points);
    msgs.push(telemetry(
        "water-nof",
        r#"{"ts":"2026-10-06T08:00:00Z","values":{"pulses":12}}"#,
    ));
    h.publish(&msgs).await;
    wait_for("all 4 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 4
    })
    .await;

    let index: Vec<f64> = stored(&h, "water-p", Quantity::WaterM3)
        .await
        .iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(index, [10.0, 11.0, 12.5]);
    let pulses: Vec<f64> = stored(&h, "water-p", Quantity::Pulses)
        .await
        .iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(pulses, [1_000.0, 1_100.0, 1_250.0]);
    let day = consumption(
        &h,
        "water-p",
        Quantity::WaterM3,
        date(2026, 10, 6),
        date(2026, 10, 6),
        Bucket::Day,
    )
    .await;
    assert_eq!(day, [Some(2.5)]);

    let q = h.registry.quarantined(10).await.unwrap();
    let no_factor = q.iter().find(|e| e.topic.contains("water-nof")).unwrap();
    assert_eq!(no_factor.reason, QuarantineReason::UnknownQuantity);
    assert!(
        no_factor.detail.contains("pulse_factor"),
        "{}",
        no_factor.detail
    );
    assert!(stored(&h, "water-nof", Quantity::WaterM3).await.is_empty());
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_physically_impossible_flow_is_quarantined_with_a_clear_detail() {
    let mut h = Harness::start().await;
    meter(
        &h,
        "water-f",
        DeviceKind::WaterMeter,
        MeterSettings::default(),
    )
    .await;
    let t0 = ts("2026-10-07T10:00:00Z");
    let points = [
        (t0, 100.0),
        // 100 m³ in 10 minutes = 600 m³/h, above the default 50 m³/h of a water meter.
        (t0.plus_millis(HOUR / 6), 200.0),
        (t0.plus_millis(HOUR / 3), 100.5),
    ];
    h.publish(&readings("water-f", Quantity::WaterM3, &points))
        .await;
    wait_for("3 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 3
    })
    .await;

    let values: Vec<f64> = stored(&h, "water-f", Quantity::WaterM3)
        .await
        .iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(values, [100.0, 100.5]);
    let q = h.registry.quarantined(10).await.unwrap();
    let e = q.iter().find(|e| e.payload.contains("200")).unwrap();
    assert_eq!(e.reason, QuarantineReason::OutOfRange);
    for needle in ["water-f", "100 m³", "600 m³/h", "50 m³/h", "10 min"] {
        assert!(e.detail.contains(needle), "{needle:?} in {}", e.detail);
    }
    assert_eq!(h.metrics.quarantined_count(QuarantineReason::OutOfRange), 1);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_day_backlog_after_live_data_gives_the_same_daily_totals_as_in_order() {
    let mut h = Harness::start().await;
    let settings = MeterSettings {
        index_rollover: Some(10_000.0),
        ..MeterSettings::default()
    };
    meter(&h, "elec-ordered", DeviceKind::ElectricityMeter, settings).await;
    meter(&h, "elec-late", DeviceKind::ElectricityMeter, settings).await;
    // Six days of half-hourly readings from 10 October 2026 00:00 Paris, a varying load,
    // a register that rolls over at 10 000 and a reset on day 4.
    let t0 = ts("2026-10-09T22:00:00Z");
    let mut index = 9_700.0_f64;
    let points: Vec<(Timestamp, f64)> = (0..6 * 48)
        .map(|i| {
            if i == 3 * 48 + 17 {
                index = 0.4;
            } else {
                index += 1.0 + (i % 7) as f64 * 0.5;
            }
            let raw = (index % 10_000.0 * 10.0).round() / 10.0;
            (t0.plus_millis(i * HOUR / 2), raw)
        })
        .collect();
    let rollover = points.windows(2).position(|w| w[1].1 < w[0].1).unwrap();
    assert!(
        (2 * 48..5 * 48).contains(&rollover) && points[rollover].1 > 9_900.0,
        "the data rolls over in the backlog ({rollover})"
    );

    h.publish(&[backlog("elec-ordered", Quantity::ElectricityKwh, &points)])
        .await;
    // The other device: days 1–2 live, then day 6 live after its outage, then the
    // backlog of days 3–5 in one buffered message.
    let (live_a, rest) = points.split_at(2 * 48);
    let (buffered, live_b) = rest.split_at(3 * 48);
    h.publish(&readings("elec-late", Quantity::ElectricityKwh, live_a))
        .await;
    h.publish(&readings("elec-late", Quantity::ElectricityKwh, live_b))
        .await;
    wait_for("live data stored", || async {
        stored(&h, "elec-late", Quantity::ElectricityKwh)
            .await
            .len()
            == 3 * 48
    })
    .await;
    h.publish(&[backlog("elec-late", Quantity::ElectricityKwh, buffered)])
        .await;
    wait_for("backlog committed", || async {
        h.metric(|m| &m.messages_acked) == 1 + 3 * 48 + 1
    })
    .await;
    let late_n = stored(&h, "elec-late", Quantity::ElectricityKwh)
        .await
        .len();
    let ordered_n = stored(&h, "elec-ordered", Quantity::ElectricityKwh)
        .await
        .len();
    let q = h.registry.quarantined(10).await.unwrap();
    assert!(q.is_empty(), "{late_n} {ordered_n} {q:#?}");
    wait_for("both series complete", || async {
        stored(&h, "elec-late", Quantity::ElectricityKwh)
            .await
            .len()
            == 6 * 48
            && stored(&h, "elec-ordered", Quantity::ElectricityKwh)
                .await
                .len()
                == 6 * 48
    })
    .await;

    let (from, to) = (date(2026, 10, 10), date(2026, 10, 15));
    let ordered = consumption(
        &h,
        "elec-ordered",
        Quantity::ElectricityKwh,
        from,
        to,
        Bucket::Day,
    )
    .await;
    let late = consumption(
        &h,
        "elec-late",
        Quantity::ElectricityKwh,
        from,
        to,
        Bucket::Day,
    )
    .await;
    assert_eq!(late, ordered);
    assert_eq!(
        stored(&h, "elec-late", Quantity::ElectricityKwh).await,
        stored(&h, "elec-ordered", Quantity::ElectricityKwh).await
    );
    // Every day has consumption; none is negative; the rollover day is not a reset.
    assert!(
        ordered.iter().all(|d| d.is_some_and(|v| v > 40.0)),
        "{ordered:?}"
    );
    assert_eq!(h.metrics.quarantined_count(QuarantineReason::OutOfRange), 0);
    h.stop().await.unwrap();
}

/// Daily readings at 12:00 UTC from 30 September 2026, one value per day.
fn daily(values: &[f64]) -> Vec<(Timestamp, f64)> {
    let start = ts("2026-09-30T12:00:00Z");
    values
        .iter()
        .enumerate()
        .map(|(n, v)| (start.plus_millis(n as i64 * 24 * HOUR), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_a_higher_index_mid_month_is_a_new_segment_and_nothing_is_lost() {
    let mut h = Harness::start().await;
    meter(
        &h,
        "elec-up",
        DeviceKind::ElectricityMeter,
        MeterSettings::default(),
    )
    .await;
    // 10 kWh a day; on 10 October the meter is swapped for one at 500 003 kWh (a jump
    // of 450 000 kWh in a day: 18 750 kW, above the default 1 000 kW); on 20 October
    // the new meter is reset to 2 kWh.
    let values: Vec<f64> = (0..=31)
        .map(|n| match n {
            0..10 => 50_000.0 + 10.0 * n as f64,
            10..20 => 500_003.0 + 10.0 * (n - 10) as f64,
            _ => 2.0 + 10.0 * (n - 20) as f64,
        })
        .collect();
    let points = daily(&values);
    // Up to the first two readings of the new meter: the jump is refused, twice.
    h.publish(&readings(
        "elec-up",
        Quantity::ElectricityKwh,
        &points[..12],
    ))
    .await;
    wait_for("12 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 12
    })
    .await;
    let q = h.registry.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 2, "{q:#?}");
    assert!(q.iter().all(|e| e.reason == QuarantineReason::OutOfRange));
    assert_eq!(
        stored(&h, "elec-up", Quantity::ElectricityKwh).await.len(),
        10
    );
    // The third reading of the new meter confirms the swap: the first two are replayed.
    h.publish(&readings(
        "elec-up",
        Quantity::ElectricityKwh,
        &points[12..],
    ))
    .await;
    wait_for("all 32 readings stored", || async {
        stored(&h, "elec-up", Quantity::ElectricityKwh).await.len() == 32
    })
    .await;
    wait_for("quarantine emptied by the replay", || async {
        h.registry.quarantined(10).await.unwrap().is_empty()
    })
    .await;

    let s = stored(&h, "elec-up", Quantity::ElectricityKwh).await;
    let times: Vec<Timestamp> = s.iter().map(|p| p.ts).collect();
    assert_eq!(times, points.iter().map(|p| p.0).collect::<Vec<_>>());
    // The new meter is stored minus the jump (the swap is a zero step); after its reset
    // its readings are stored as published.
    assert_eq!(s[9].value, 50_090.0);
    assert_eq!(s[10].value, 50_090.0);
    assert_eq!(s[11].value, 50_100.0);
    assert_eq!(s[20].value, 2.0);
    assert!(s.iter().all(|p| p.value >= 0.0));
    let month = consumption(
        &h,
        "elec-up",
        Quantity::ElectricityKwh,
        date(2026, 10, 1),
        date(2026, 10, 31),
        Bucket::Month,
    )
    .await;
    // 31 daily steps in October; the swap and the reset count 0.
    assert_eq!(month, [Some(290.0)]);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_spike_stays_quarantined_and_the_trend_continues() {
    let mut h = Harness::start().await;
    meter(
        &h,
        "gas-spike",
        DeviceKind::GasMeter,
        MeterSettings::default(),
    )
    .await;
    // 5 m³ a day; on 10 October the reading is garbage (99 999 m³), then back on trend.
    let values: Vec<f64> = (0..=31)
        .map(|n| match n {
            10 => 99_999.0,
            n => 1_000.0 + 5.0 * n as f64,
        })
        .collect();
    let points = daily(&values);
    h.publish(&readings("gas-spike", Quantity::GasM3, &points))
        .await;
    wait_for("32 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 32
    })
    .await;
    // Give the replay task a chance to act wrongly (it polls every second).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    let s = stored(&h, "gas-spike", Quantity::GasM3).await;
    assert_eq!(s.len(), 31);
    assert!(s.iter().all(|p| p.value < 2_000.0), "{s:?}");
    let q = h.registry.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0].reason, QuarantineReason::OutOfRange);
    assert!(q[0].payload.contains("99999"), "{}", q[0].payload);
    let month = consumption(
        &h,
        "gas-spike",
        Quantity::GasM3,
        date(2026, 10, 1),
        date(2026, 10, 31),
        Bucket::Month,
    )
    .await;
    assert_eq!(month, [Some(155.0)]);
    h.stop().await.unwrap();
}
