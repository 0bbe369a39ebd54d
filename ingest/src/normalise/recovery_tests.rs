//! A meter swap confirmed across two ingest processes: two committers, each with its
//! own normaliser (its own in-memory suspects) and its own connection pool, on the same
//! data directory (real SQLite file), with the real native decoder and the real replay.
//! No broker: which process gets which message is chosen by the test.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use vigie_core::db::Db;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{
    Building, Device, Member, MeterSegment, QuarantineReason, ReplayableMessage,
};
use vigie_core::store::{Aggregation, SqliteStore, bucket_query};
use vigie_core::time::Bucket;
use vigie_core::{BuildingId, MemberId};

use super::*;
use crate::pipeline::commit::Committer;
use crate::replay::{Replayer, decode_rows};

const DEVICE: &str = "elec-swap";
const HOUR: i64 = 3_600_000;
const SKEW: Duration = Duration::from_secs(300);

/// One ingest process: its own pool on the shared file, its own caches and suspects.
struct Process {
    committer: Committer,
    replayer: Replayer,
}

fn process(dir: &std::path::Path) -> Process {
    let db = Db::open_dir(dir).unwrap();
    let registry = Registry::new(db.clone());
    let store: Arc<dyn TimeSeriesStore> = Arc::new(SqliteStore::new(db));
    let decoders = Arc::new(Decoders::native("vigie"));
    let committer = Committer::new(registry, store).recovering(Recovery {
        decoders: decoders.clone(),
        max_future_skew: SKEW,
    });
    Process {
        replayer: Replayer {
            committer: committer.clone(),
            decoders,
            metrics: Arc::new(Metrics::new()),
            max_future_skew: SKEW,
        },
        committer,
    }
}

async fn provision(dir: &std::path::Path) -> Registry {
    let registry = Registry::new(Db::open_dir(dir).unwrap());
    let member = MemberId::new("commune-test").unwrap();
    registry
        .upsert_member(&Member {
            id: member.clone(),
            name: "Commune de Test".into(),
            kind: "commune".into(),
        })
        .await
        .unwrap();
    let building = BuildingId::new("mairie").unwrap();
    registry
        .upsert_building(&Building {
            id: building.clone(),
            member_id: member,
            name: "Mairie".into(),
            address: "1 place de la Mairie".into(),
            floor_area_m2: None,
            usage: "bureaux".into(),
            gas_pcs_kwh_per_m3: 11.2,
        })
        .await
        .unwrap();
    registry
        .upsert_device(&Device::new(
            DeviceId::new(DEVICE).unwrap(),
            Some(building),
            DeviceKind::ElectricityMeter,
        ))
        .await
        .unwrap();
    registry
}

/// Daily electricity indexes at 12:00 UTC from 30 September 2026: 10 kWh a day, and
/// from 10 October a new meter at 500 003 kWh (a jump of 18 750 kW over a day, above
/// the default 1 000 kW).
fn readings() -> Vec<(Timestamp, f64)> {
    let start = Timestamp::parse_rfc3339("2026-09-30T12:00:00Z").unwrap();
    (0..=31)
        .map(|n: i64| {
            let v = match n {
                0..10 => 50_000.0 + 10.0 * n as f64,
                _ => 500_003.0 + 10.0 * (n - 10) as f64,
            };
            (start.plus_millis(n * 24 * HOUR), v)
        })
        .collect()
}

/// One commit per reading (one native message each), as separate batches arrive.
async fn publish(p: &Process, points: &[(Timestamp, f64)]) {
    for (ts, v) in points {
        let row = ReplayableMessage {
            id: 0,
            received_at: ts.plus_millis(1_000),
            last_received_at: ts.plus_millis(1_000),
            topic: format!("vigie/{DEVICE}/telemetry"),
            device_id: DeviceId::new(DEVICE).unwrap(),
            format: "native".into(),
            payload: format!(
                r#"{{"ts":"{}","values":{{"electricity_kwh":{v}}}}}"#,
                ts.to_rfc3339()
            )
            .into_bytes(),
        };
        let messages = decode_rows(&[row], &p.replayer.decoders, SKEW);
        p.committer.commit(Arc::new(messages)).await.unwrap();
    }
}

async fn stored(registry: &Registry) -> Vec<Point> {
    let s = registry
        .series_id(&DeviceId::new(DEVICE).unwrap(), Quantity::ElectricityKwh)
        .await
        .unwrap();
    SqliteStore::new(registry.db().clone())
        .range(s, Timestamp(0), END_OF_TIME)
        .await
        .unwrap()
}

fn segments(registry: &Registry) -> Vec<MeterSegment> {
    registry
        .meter_segments_blocking(&DeviceId::new(DEVICE).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_whose_readings_are_split_between_two_processes_is_confirmed_from_its_first_reading()
{
    let dir = tempfile::tempdir().unwrap();
    let registry = provision(dir.path()).await;
    let (a, b) = (process(dir.path()), process(dir.path()));
    let points = readings();

    // A stores the old meter and refuses the new meter's first reading (a suspect in
    // A's memory only).
    publish(&a, &points[..11]).await;
    // B refuses the second one: alone in B's memory it is no chain.
    publish(&b, &points[11..12]).await;
    assert!(segments(&registry).is_empty());
    assert_eq!(registry.quarantined(10).await.unwrap().len(), 2);
    // A gets the third: its memory holds the first only, the quarantine the second.
    publish(&a, &points[12..13]).await;
    let segs = segments(&registry);
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(
        segs[0].since, points[10].0,
        "the segment starts at the first reading"
    );
    assert_eq!(segs[0].offset, 500_003.0 - 50_090.0);

    // B (which did not record the segment) replays the refused readings.
    assert_eq!(b.replayer.replay_swaps().await.unwrap(), 2);
    assert!(registry.quarantined(10).await.unwrap().is_empty());
    // The rest of the month, split between both.
    for (k, chunk) in points[13..].chunks(3).enumerate() {
        publish(if k % 2 == 0 { &b } else { &a }, chunk).await;
    }
    assert_eq!(a.replayer.replay_swaps().await.unwrap(), 0);

    let s = stored(&registry).await;
    assert_eq!(
        s.iter().map(|p| p.ts).collect::<Vec<_>>(),
        points.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(s[9].value, 50_090.0);
    assert_eq!(s[10].value, 50_090.0, "the swap is a zero step");
    assert_eq!(s[11].value, 50_100.0);
    assert!(registry.quarantined(10).await.unwrap().is_empty());
    let series = registry
        .series_id(&DeviceId::new(DEVICE).unwrap(), Quantity::ElectricityKwh)
        .await
        .unwrap();
    let month = SqliteStore::new(registry.db().clone())
        .aggregate(&bucket_query(
            vec![series],
            Aggregation::Consumption,
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            Bucket::Month,
        ))
        .await
        .unwrap();
    // 31 daily steps in October, the swap one counting 0.
    assert_eq!(
        month.iter().map(|b| b.value).collect::<Vec<_>>(),
        [Some(300.0)]
    );
    assert_eq!(
        a.replayer
            .metrics
            .quarantined_count(QuarantineReason::OutOfRange),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_missed_the_swap_stores_the_new_meters_next_reading() {
    let dir = tempfile::tempdir().unwrap();
    let registry = provision(dir.path()).await;
    let (a, c) = (process(dir.path()), process(dir.path()));
    let points = readings();

    // C reads the device's segments (none) and the series' latest point, then A gets
    // the new meter's first three readings, confirms the swap and replays the two
    // refused ones: the quarantine is empty, nothing is left to replay.
    publish(&a, &points[..9]).await;
    publish(&c, &points[9..10]).await;
    publish(&a, &points[10..13]).await;
    assert_eq!(segments(&registry).len(), 1);
    assert_eq!(a.replayer.replay_swaps().await.unwrap(), 2);
    assert!(registry.quarantined(10).await.unwrap().is_empty());
    // C's next reading, with what C knew (no segment, the old meter last) an
    // impossible jump, is stored: C reads the registry's segment again.
    publish(&c, &points[13..14]).await;
    assert!(
        registry.quarantined(10).await.unwrap().is_empty(),
        "{:#?}",
        registry.quarantined(10).await.unwrap()
    );
    let s = stored(&registry).await;
    assert_eq!(s.len(), 14);
    assert_eq!(s[13].value, 50_120.0, "{s:?}");
    assert_eq!(c.replayer.replay_swaps().await.unwrap(), 0);
}
