//! The contract every `TimeSeriesStore` backend must meet, as one function run against
//! the embedded store always and against a real VictoriaMetrics when
//! `VIGIE_TEST_VICTORIAMETRICS_URL` is set (as `.ci/run` does; then a missing server
//! fails the test).

use std::collections::BTreeMap;
use std::sync::Arc;

use vigie_core::store::{
    AggregateQuery, Aggregation, Point, Sample, SqliteStore, TimeSeriesStore, aggregate_points,
    bucket_query,
};
use vigie_core::time::{Bucket, periods};
use vigie_core::{SeriesId, Timestamp};

use crate::common::{close, date, paris, sample, sqlite_store, vm_store};

/// How written samples become visible to reads.
pub(crate) enum Visibility {
    /// At once (the embedded store).
    Immediate,
    /// After `GET <url>/internal/force_flush` (VictoriaMetrics).
    VictoriaMetricsFlush(String),
    /// At once, and the embedded store compacts everything written so far into
    /// chunks at each settle, so reads and redeliveries cross both tiers.
    Compacting(Arc<SqliteStore>),
}

impl Visibility {
    pub(crate) async fn settle(&self) {
        if let Visibility::Compacting(store) = self {
            store
                .compact_blocking(Timestamp(i64::MAX / 2))
                .expect("compact");
        }
        if let Visibility::VictoriaMetricsFlush(url) = self {
            let r = reqwest::get(format!("{url}/internal/force_flush"))
                .await
                .expect("force_flush");
            assert!(r.status().is_success(), "force_flush: {}", r.status());
        }
    }
}

/// The data of the suite: a counter with a reset, around both 2026 DST changes, and a
/// gauge; `base` keeps runs against a shared server apart.
fn dataset(base: i64) -> (SeriesId, SeriesId, Vec<Sample>) {
    let (counter, gauge) = (SeriesId(base + 1), SeriesId(base + 2));
    let mut samples = Vec::new();
    for (from, days) in [
        (paris(2026, 3, 27, 0, 0), 4),
        (paris(2026, 10, 24, 0, 0), 3),
    ] {
        let mut index = 5_000.0;
        for i in 0..(days * 24 * 4) {
            let ts = from.plus_millis(i * 900_000);
            index = if i == 150 {
                3.0
            } else {
                index + (i % 7) as f64 * 0.25
            };
            samples.push(sample(counter.0, ts, index));
            samples.push(sample(gauge.0, ts, 18.0 + ((i * 37) % 11) as f64 / 4.0));
        }
    }
    (counter, gauge, samples)
}

fn by_series(samples: &[Sample], s: SeriesId) -> Vec<Point> {
    let m: BTreeMap<Timestamp, f64> = samples
        .iter()
        .filter(|x| x.series == s)
        .map(|x| (x.ts, x.value))
        .collect();
    m.into_iter()
        .map(|(ts, value)| Point { ts, value })
        .collect()
}

async fn check_aggregate(store: &dyn TimeSeriesStore, q: &AggregateQuery, samples: &[Sample]) {
    let raw: Vec<Vec<Point>> = q.series.iter().map(|s| by_series(samples, *s)).collect();
    let want = aggregate_points(&raw, q.aggregation, &q.periods);
    let got = store.aggregate(q).await.expect("aggregate");
    assert_eq!(got.len(), want.len(), "{}", store.name());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            close(g.value, w.value),
            "{} {:?} {}: got {:?}, want {:?}",
            store.name(),
            q.aggregation,
            g.period,
            g.value,
            w.value
        );
    }
}

/// Runs the contract against `store`; `base` is a fresh series-id base.
pub(crate) async fn contract(store: Arc<dyn TimeSeriesStore>, visibility: Visibility, base: i64) {
    store.ping().await.expect("ping");
    let count_before = store.count().await.expect("count");
    let (counter, gauge, samples) = dataset(base);

    // Out-of-order arrival in two batches, then the first batch redelivered.
    let (late, early) = samples.split_at(samples.len() / 2);
    store.write(early).await.expect("write early");
    visibility.settle().await;
    store.write(late).await.expect("write late");
    store.write(early).await.expect("redeliver");
    visibility.settle().await;
    store.flush().await.expect("flush");

    // Idempotent: each (series, ts) stored once.
    let added = store.count().await.expect("count") - count_before;
    assert_eq!(added, samples.len() as u64, "{}: count", store.name());

    // Range: half-open, sorted, exact values.
    let all = store
        .range(counter, paris(2026, 1, 1, 0, 0), paris(2026, 12, 1, 0, 0))
        .await
        .expect("range");
    assert_eq!(all, by_series(&samples, counter), "{}: range", store.name());
    let (from, to) = (all[10].ts, all[20].ts);
    let part = store.range(counter, from, to).await.expect("range part");
    assert_eq!(
        part,
        all[10..20].to_vec(),
        "{}: half-open range",
        store.name()
    );

    // Latest of several series, unknown ones left out.
    let latest = store
        .latest(&[gauge, SeriesId(base + 999), counter])
        .await
        .expect("latest");
    let last = |s| *by_series(&samples, s).last().expect("data");
    assert_eq!(latest, vec![(gauge, last(gauge)), (counter, last(counter))]);

    // Aggregates by Paris calendar periods equal the reference, DST days included.
    for bucket in [Bucket::Day, Bucket::Month, Bucket::Week] {
        for agg in [Aggregation::Consumption, Aggregation::Count] {
            let q = bucket_query(
                vec![counter],
                agg,
                date(2026, 3, 1),
                date(2026, 10, 31),
                bucket,
            );
            check_aggregate(store.as_ref(), &q, &samples).await;
        }
        for agg in [
            Aggregation::Mean,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Last,
        ] {
            let q = bucket_query(
                vec![gauge],
                agg,
                date(2026, 3, 1),
                date(2026, 10, 31),
                bucket,
            );
            check_aggregate(store.as_ref(), &q, &samples).await;
        }
    }
    let both = bucket_query(
        vec![counter, gauge],
        Aggregation::Consumption,
        date(2026, 10, 24),
        date(2026, 10, 26),
        Bucket::Hour,
    );
    check_aggregate(store.as_ref(), &both, &samples).await;
    let dst = AggregateQuery {
        series: vec![gauge],
        aggregation: Aggregation::Count,
        periods: periods(date(2026, 3, 29), date(2026, 3, 29), Bucket::Day),
    };
    let n = store.aggregate(&dst).await.expect("dst count")[0].value;
    assert_eq!(n, Some(23.0 * 4.0), "{}: 23-hour day", store.name());
}

#[tokio::test]
async fn the_embedded_store_meets_the_contract() {
    let (_dir, store) = sqlite_store();
    contract(store, Visibility::Immediate, 1_000).await;
}

#[tokio::test]
async fn the_embedded_store_meets_the_contract_across_compacted_chunks() {
    let (_dir, store) = sqlite_store();
    contract(store.clone(), Visibility::Compacting(store), 1_000).await;
}

#[tokio::test]
async fn victoriametrics_meets_the_contract() {
    let Some((url, store)) = vm_store("prometheus") else {
        eprintln!(
            "SKIPPED victoriametrics_meets_the_contract: VIGIE_TEST_VICTORIAMETRICS_URL is not set \
             (start VictoriaMetrics and set it, as .ci/run does, to run this test)"
        );
        return;
    };
    let _guard = crate::common::VM_LOCK.lock().await;
    let base = crate::common::fresh_base();
    contract(store, Visibility::VictoriaMetricsFlush(url), base).await;
}
