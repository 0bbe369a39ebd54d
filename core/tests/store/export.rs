//! Export: embedded → embedded with an interruption and a resume, embedded → CSV, and
//! embedded → VictoriaMetrics (when `VIGIE_TEST_VICTORIAMETRICS_URL` is set) with
//! counts and monthly totals compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use vigie_core::store::{
    AggregateQuery, Aggregation, BucketValue, ExportOptions, Point, Sample, StoreError,
    TimeSeriesStore, WriteReport, bucket_query, export, export_csv,
};
use vigie_core::time::Bucket;
use vigie_core::{SeriesId, Timestamp};

use crate::common::{close, date, paris, sample, sqlite_store, vm_store};

/// Two months of two counters and a gauge at 10-minute steps.
fn history(base: i64) -> Vec<Sample> {
    let t0 = paris(2026, 2, 1, 0, 0);
    (0..(59 * 144))
        .flat_map(|i| {
            let ts = t0.plus_millis(i * 600_000);
            [
                sample(base + 1, ts, (i * 3) as f64),
                sample(base + 2, ts, if i == 4_000 { 1.0 } else { (i / 2) as f64 }),
                sample(base + 3, ts, ((i * 13) % 40) as f64 / 2.0),
            ]
        })
        .collect()
}

/// A real embedded store whose writes fail after `allowed` batches (a lost link).
struct FlakyDestination {
    inner: Arc<dyn TimeSeriesStore>,
    allowed: AtomicUsize,
}

#[async_trait]
impl TimeSeriesStore for FlakyDestination {
    async fn write(&self, samples: &[Sample]) -> Result<WriteReport, StoreError> {
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(StoreError::InvalidQuery("link lost".into()));
        }
        self.inner.write(samples).await
    }
    async fn range(
        &self,
        s: SeriesId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        self.inner.range(s, from, to).await
    }
    async fn latest(&self, s: &[SeriesId]) -> Result<Vec<(SeriesId, Point)>, StoreError> {
        self.inner.latest(s).await
    }
    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<BucketValue>, StoreError> {
        self.inner.aggregate(q).await
    }
    async fn retain(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.retain(before).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn name(&self) -> &'static str {
        "flaky"
    }
}

async fn monthly(store: &dyn TimeSeriesStore, series: Vec<SeriesId>) -> Vec<BucketValue> {
    let q = bucket_query(
        series,
        Aggregation::Consumption,
        date(2026, 1, 1),
        date(2026, 4, 30),
        Bucket::Month,
    );
    store.aggregate(&q).await.expect("monthly")
}

#[tokio::test]
async fn an_interrupted_export_resumes_after_its_cursor_and_counts_match() {
    let (_a, src) = sqlite_store();
    let (_b, dst) = sqlite_store();
    let data = history(0);
    src.write(&data).await.expect("write");
    let cursor_dir = tempfile::tempdir().expect("tempdir");
    let opts = ExportOptions {
        chunk: 1_000,
        cursor_file: Some(cursor_dir.path().join("export.cursor")),
        verify: true,
    };
    let flaky = FlakyDestination {
        inner: dst.clone(),
        allowed: AtomicUsize::new(12),
    };
    let mut calls = 0;
    let err = export(src.as_ref(), &flaky, &opts, &mut |_| calls += 1).await;
    assert!(err.is_err(), "the lost link must surface");
    assert!(calls >= 12);
    let mut last = None;
    let report = export(src.as_ref(), dst.as_ref(), &opts, &mut |p| last = Some(*p))
        .await
        .expect("resumed export");
    assert_eq!(report.source_samples, data.len() as u64);
    assert_eq!(report.destination_samples, Some(data.len() as u64));
    // 12 chunks went through: the 9 of series 1 (8,496 samples) and 3 of series 2.
    assert_eq!(
        report.samples,
        data.len() as u64 - 8_496 - 3_000,
        "resumed after 12 chunks"
    );
    let last = last.expect("progress");
    assert_eq!((last.series_done, last.series_total), (3, 3));
    let all = vec![SeriesId(1), SeriesId(2), SeriesId(3)];
    assert_eq!(
        monthly(dst.as_ref(), all.clone()).await,
        monthly(src.as_ref(), all).await
    );
}

#[tokio::test]
async fn a_csv_export_has_one_row_per_sample() {
    let (_a, src) = sqlite_store();
    src.write(&history(0)[..300]).await.expect("write");
    let mut out = Vec::new();
    let rows = export_csv(src.as_ref(), &mut out, 64, &mut |_| {})
        .await
        .expect("csv");
    assert_eq!(rows, 300);
    let text = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 301);
    assert_eq!(lines[0], "series,ts,value");
    assert_eq!(lines[1], "1,2026-01-31T23:00:00Z,0");
    assert_eq!(lines[2], "1,2026-01-31T23:10:00Z,3");
}

#[tokio::test]
async fn export_to_victoriametrics_keeps_counts_and_monthly_totals() {
    let Some((_url, vm)) = vm_store("prometheus") else {
        eprintln!(
            "SKIPPED export_to_victoriametrics_keeps_counts_and_monthly_totals: \
             VIGIE_TEST_VICTORIAMETRICS_URL is not set"
        );
        return;
    };
    let _guard = crate::common::VM_LOCK.lock().await;
    let base = crate::common::fresh_base();
    let (_a, src) = sqlite_store();
    let data = history(base);
    src.write(&data).await.expect("write");
    let report = export(
        src.as_ref(),
        vm.as_ref(),
        &ExportOptions::default(),
        &mut |_| {},
    )
    .await
    .expect("export");
    assert_eq!(report.destination_samples, Some(data.len() as u64));
    for s in 1..=3 {
        let a = monthly(src.as_ref(), vec![SeriesId(base + s)]).await;
        let b = monthly(vm.as_ref(), vec![SeriesId(base + s)]).await;
        assert!(
            a.iter().zip(&b).all(|(x, y)| close(x.value, y.value)),
            "{a:?} vs {b:?}"
        );
        assert!(a[1].value.is_some(), "February has consumption");
    }
}
