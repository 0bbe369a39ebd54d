//! The time-series store: the trait every backend implements, and its value types.
//!
//! A sample is identified by (series, timestamp): writing the same sample twice stores
//! it once, which is what makes at-least-once ingest safe. Aggregates are computed over
//! Europe/Paris calendar periods. Backends must never return consumption from a
//! negative counter step: a negative step is a reset or a meter swap.

mod aggregate;
mod chunks;
mod codec;
mod export;
pub mod remote;
mod rollup;
mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

pub use aggregate::{aggregate_points, consumption_steps};
pub use export::{
    ExportCursor, ExportError, ExportOptions, ExportProgress, ExportReport, export, export_csv,
};
pub use remote::{Dialect, RemoteStore, SeriesLabeler, SeriesTags, StaticLabels};
pub use sqlite::{COMPACT_EVERY, SqliteStore};

use crate::db::DbError;
use crate::ids::SeriesId;
use crate::quantity::SeriesKind;
use crate::time::{Bucket, Period, Timestamp};

/// One value of one series at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The series.
    pub series: SeriesId,
    /// The instant.
    pub ts: Timestamp,
    /// The value, in the series' unit.
    pub value: f64,
}

/// A value at an instant (series implied).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// The instant.
    pub ts: Timestamp,
    /// The value.
    pub value: f64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Samples that were new.
    pub inserted: u64,
    /// Samples already stored (same series and timestamp): nothing written.
    pub duplicates: u64,
}

/// How values within a bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Counters: sum of positive steps whose later sample falls in the bucket (0 when
    /// the bucket has steps but none increased; no value when it has no step).
    Consumption,
    /// Gauges: arithmetic mean.
    Mean,
    /// Gauges: minimum.
    Min,
    /// Gauges: maximum.
    Max,
    /// Last value in the bucket.
    Last,
    /// Number of samples.
    Count,
}

impl Aggregation {
    /// The natural aggregation for a series kind.
    pub fn natural(kind: SeriesKind) -> Aggregation {
        match kind {
            SeriesKind::Counter => Aggregation::Consumption,
            SeriesKind::Gauge => Aggregation::Mean,
        }
    }
}

/// An aggregate query over calendar periods.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateQuery {
    /// The series; with several, per-bucket results are summed (consumption, count) or
    /// combined (min, max, mean over all samples, last of all).
    pub series: Vec<SeriesId>,
    /// How to combine values.
    pub aggregation: Aggregation,
    /// The periods, contiguous and in order (see [`crate::time::periods`]).
    pub periods: Vec<Period>,
}

/// One period's result; `value` is `None` when the period has no data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketValue {
    /// Label of the period.
    pub period: String,
    /// First instant of the period.
    pub start: Timestamp,
    /// The aggregate.
    pub value: Option<f64>,
}

/// An error of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded SQLite store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A remote backend failed.
    #[error("time-series backend {url}: {message}")]
    Remote {
        /// Backend URL (no credentials).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The query cannot be answered.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A write held samples older than the raw retention cut; nothing was written.
    /// Callers filter with [`TimeSeriesStore::raw_retained_before`] first.
    #[error(
        "{refused} sample(s) older than the raw retention cut {retained_before} (first at {first}); nothing written"
    )]
    OlderThanRetention {
        /// How many samples of the batch were too old.
        refused: u64,
        /// The earliest of them.
        first: Timestamp,
        /// Raw samples before this instant were deleted.
        retained_before: Timestamp,
    },
}

/// What ingest, alerting, analytics and the dashboard need from a time-series store.
#[async_trait]
pub trait TimeSeriesStore: Send + Sync + 'static {
    /// Writes samples durably and idempotently; returns when they are committed.
    async fn write(&self, samples: &[Sample]) -> Result<WriteReport, StoreError>;

    /// Raw samples of one series with `from <= ts < to`, in time order.
    async fn range(
        &self,
        series: SeriesId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError>;

    /// The latest sample of each series that has one.
    async fn latest(&self, series: &[SeriesId]) -> Result<Vec<(SeriesId, Point)>, StoreError>;

    /// Aggregates over calendar periods.
    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<BucketValue>, StoreError>;

    /// Deletes raw samples older than `before`; aggregates of older periods must not
    /// change. Returns how many raw samples were removed. The embedded store cuts at
    /// the Paris midnight starting `before`'s day (so no rollup bucket is left half
    /// raw) and then refuses samples older than the cut (a write holding one fails
    /// with [`StoreError::OlderThanRetention`] and writes nothing); remote backends
    /// delete nothing (their server's retention applies).
    async fn retain(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// The retention cut: raw samples before it were deleted and writes of samples
    /// before it are refused. `None` when nothing was ever retained (the default, and
    /// remote backends).
    async fn raw_retained_before(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }

    /// Number of raw samples stored (all series).
    async fn count(&self) -> Result<u64, StoreError>;

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Short name for logs and health (`sqlite`, `victoriametrics`…).
    fn name(&self) -> &'static str;

    /// The embedded store, when this is it: its writes can share a transaction with
    /// the registry's (see [`SqliteStore::write_with_blocking`]). `None` for remote
    /// backends.
    fn as_sqlite(&self) -> Option<&SqliteStore> {
        None
    }

    /// Every series with at least one raw sample, in id order (for exports). Backends
    /// that cannot list series answer `InvalidQuery`.
    async fn series_ids(&self) -> Result<Vec<SeriesId>, StoreError> {
        Err(StoreError::InvalidQuery(format!(
            "the {} backend cannot list its series",
            self.name()
        )))
    }

    /// Up to `limit` raw samples of `series` strictly after `after`, in time order: the
    /// chunked read of exports.
    async fn range_after(
        &self,
        series: SeriesId,
        after: Timestamp,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        let mut pts = self
            .range(series, after.plus_millis(1), Timestamp(i64::MAX))
            .await?;
        pts.truncate(limit);
        Ok(pts)
    }

    /// Makes written samples visible to reads (VictoriaMetrics buffers them for a
    /// second or so); a no-op where writes are visible at once.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Convenience: daily or monthly buckets over local dates.
pub fn bucket_query(
    series: Vec<SeriesId>,
    aggregation: Aggregation,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    bucket: Bucket,
) -> AggregateQuery {
    AggregateQuery {
        series,
        aggregation,
        periods: crate::time::periods(from, to, bucket),
    }
}

/// The store the configuration asks for: the embedded store over `db` when
/// `tsdb.url` is empty, else the remote backend tagging samples from `registry`.
pub fn from_config(
    tsdb: &crate::config::TsdbConfig,
    db: crate::db::Db,
    registry: crate::registry::Registry,
) -> Result<std::sync::Arc<dyn TimeSeriesStore>, StoreError> {
    if tsdb.url.trim().is_empty() {
        Ok(std::sync::Arc::new(SqliteStore::new(db)))
    } else {
        Ok(std::sync::Arc::new(RemoteStore::new(
            tsdb,
            std::sync::Arc::new(registry),
        )?))
    }
}
