//! Meter swaps across an ingest restart, through the real pipeline: the first readings
//! of the new meter are refused (quarantined) by one ingest, which stops; a new ingest
//! (new process state, its own pool on the same data directory) gets the rest and
//! confirms the swap from the quarantine. A lone spike stays quarantined across a
//! restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vigie_core::db::Db;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{Device, DeviceKind, MeterSettings, QuarantineReason, Registry};
use vigie_core::store::{Aggregation, Point, SqliteStore, TimeSeriesStore, bucket_query};
use vigie_core::time::Bucket;
use vigie_core::{BuildingId, DeviceId, Quantity, Timestamp};
use vigie_ingest::{IngestError, IngestOptions};

use crate::harness::{DEADLINE, Harness, readings, wait_for};

const HOUR: i64 = 3_600_000;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Another ingest on the harness's broker and data directory, as a new process would
/// be: its own pool, caches and in-memory suspects.
struct Ingest {
    registry: Registry,
    store: Arc<SqliteStore>,
    metrics: Arc<Metrics>,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), IngestError>>,
}

impl Ingest {
    async fn start(h: &Harness) -> Ingest {
        let db = Db::open_dir(h.db_path().parent().unwrap()).unwrap();
        let registry = Registry::new(db.clone());
        let store = Arc::new(SqliteStore::new(db));
        let mut opts = IngestOptions::new("127.0.0.1", h.broker.addr().port());
        opts.client_id = format!(
            "ingest-restarted-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let metrics = Arc::new(Metrics::new());
        let (shutdown, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(vigie_ingest::run(
            opts,
            registry.clone(),
            store.clone() as Arc<dyn TimeSeriesStore>,
            metrics.clone(),
            async {
                let _ = rx.await;
            },
        ));
        let m = metrics.clone();
        wait_for("restarted ingest subscribed", || {
            let m = m.clone();
            async move { m.mqtt_connected.load(Ordering::Relaxed) }
        })
        .await;
        Ingest {
            registry,
            store,
            metrics,
            shutdown,
            handle,
        }
    }

    fn acked(&self) -> u64 {
        self.metrics.messages_acked.load(Ordering::Relaxed)
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("ingest stops within the deadline")
            .expect("ingest task did not panic")
            .expect("ingest stopped cleanly");
    }
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
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

async fn meter(h: &Harness, id: &str, kind: DeviceKind) {
    let device = DeviceId::new(id).unwrap();
    h.registry
        .upsert_device(&Device::new(
            device.clone(),
            Some(BuildingId::new("mairie").unwrap()),
            kind,
        ))
        .await
        .unwrap();
    h.registry
        .set_meter_settings(&device, &MeterSettings::default())
        .await
        .unwrap();
}

async fn stored(registry: &Registry, store: &SqliteStore, device: &str, q: Quantity) -> Vec<Point> {
    let s = registry
        .series_id(&DeviceId::new(device).unwrap(), q)
        .await
        .unwrap();
    store
        .range(s, Timestamp(0), Timestamp(i64::MAX))
        .await
        .unwrap()
}

async fn october(
    registry: &Registry,
    store: &SqliteStore,
    device: &str,
    q: Quantity,
) -> Vec<Option<f64>> {
    let s = registry
        .series_id(&DeviceId::new(device).unwrap(), q)
        .await
        .unwrap();
    store
        .aggregate(&bucket_query(
            vec![s],
            Aggregation::Consumption,
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            Bucket::Month,
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.value)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_whose_first_readings_came_before_a_restart_is_confirmed_from_its_first_reading() {
    let mut h = Harness::start().await;
    meter(&h, "elec-restart", DeviceKind::ElectricityMeter).await;
    // 10 kWh a day; on 10 October the meter is swapped for one at 500 003 kWh (a jump
    // of 450 000 kWh in a day: 18 750 kW, above the default 1 000 kW).
    let values: Vec<f64> = (0..=31)
        .map(|n| match n {
            0..10 => 50_000.0 + 10.0 * n as f64,
            _ => 500_003.0 + 10.0 * (n - 10) as f64,
        })
        .collect();
    let points = daily(&values);
    let q = Quantity::ElectricityKwh;
    // The old meter, then the new meter's first two readings: refused, then ingest stops.
    h.publish(&readings("elec-restart", q, &points[..12])).await;
    wait_for("12 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 12
    })
    .await;
    assert_eq!(h.registry.quarantined(10).await.unwrap().len(), 2);
    h.stop().await.unwrap();

    // A new ingest gets the third reading: the swap is confirmed with the two in
    // quarantine, from the first of them, and they are replayed.
    let ingest = Ingest::start(&h).await;
    h.publish(&readings("elec-restart", q, &points[12..13]))
        .await;
    wait_for("the third reading acked", || async { ingest.acked() == 1 }).await;
    let segments = ingest
        .registry
        .meter_segments_blocking(&DeviceId::new("elec-restart").unwrap())
        .unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(segments[0].since, points[10].0);
    assert_eq!(segments[0].offset, 500_003.0 - 50_090.0);
    wait_for("the new meter's first readings replayed", || async {
        stored(&ingest.registry, &ingest.store, "elec-restart", q)
            .await
            .len()
            == 13
    })
    .await;
    wait_for("quarantine emptied by the replay", || async {
        ingest.registry.quarantined(10).await.unwrap().is_empty()
    })
    .await;

    h.publish(&readings("elec-restart", q, &points[13..])).await;
    wait_for("all 32 readings stored", || async {
        stored(&ingest.registry, &ingest.store, "elec-restart", q)
            .await
            .len()
            == 32
    })
    .await;
    let s = stored(&ingest.registry, &ingest.store, "elec-restart", q).await;
    assert_eq!(
        s.iter().map(|p| p.ts).collect::<Vec<_>>(),
        points.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(s[9].value, 50_090.0);
    assert_eq!(s[10].value, 50_090.0, "the swap is a zero step");
    assert_eq!(s[11].value, 50_100.0);
    assert!(ingest.registry.quarantined(10).await.unwrap().is_empty());
    // 31 daily steps in October, the swap one counting 0.
    assert_eq!(
        october(&ingest.registry, &ingest.store, "elec-restart", q).await,
        [Some(300.0)]
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_spike_before_a_restart_stays_quarantined_and_is_not_replayed() {
    let mut h = Harness::start().await;
    meter(&h, "gas-spike-restart", DeviceKind::GasMeter).await;
    // 5 m³ a day; on 10 October the reading is garbage (99 999 m³), then back on trend.
    let values: Vec<f64> = (0..=31)
        .map(|n| match n {
            10 => 99_999.0,
            n => 1_000.0 + 5.0 * n as f64,
        })
        .collect();
    let points = daily(&values);
    let q = Quantity::GasM3;
    h.publish(&readings("gas-spike-restart", q, &points[..11]))
        .await;
    wait_for("11 messages acked", || async {
        h.metric(|m| &m.messages_acked) == 11
    })
    .await;
    h.stop().await.unwrap();

    let ingest = Ingest::start(&h).await;
    h.publish(&readings("gas-spike-restart", q, &points[11..]))
        .await;
    wait_for("21 messages acked", || async { ingest.acked() == 21 }).await;
    // The replay only replays meters with a recorded segment, and a segment is recorded
    // in the commit before its messages are acknowledged: with none below, nothing can
    // be replayed later.

    let s = stored(&ingest.registry, &ingest.store, "gas-spike-restart", q).await;
    assert_eq!(s.len(), 31);
    assert!(s.iter().all(|p| p.value < 2_000.0), "{s:?}");
    let device = DeviceId::new("gas-spike-restart").unwrap();
    assert!(
        ingest
            .registry
            .meter_segments_blocking(&device)
            .unwrap()
            .is_empty()
    );
    let quarantined = ingest.registry.quarantined(10).await.unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:#?}");
    assert_eq!(quarantined[0].reason, QuarantineReason::OutOfRange);
    assert_eq!(quarantined[0].occurrences, 1, "not replayed");
    assert!(quarantined[0].payload.contains("99999"));
    assert_eq!(
        october(&ingest.registry, &ingest.store, "gas-spike-restart", q).await,
        [Some(155.0)]
    );
    ingest.stop().await;
}
