//! The embedded time-series backend: samples in the SQLite file of the registry.
//!
//! Samples live in a `WITHOUT ROWID` table keyed by (series, ts), so a duplicate write
//! is a no-op and a range read is one index scan. A write batch is one `IMMEDIATE`
//! transaction that also recomputes the hourly and daily rollups it touched (see
//! [`super::rollup`]): when `write` returns, samples and rollups are durable together
//! (WAL, synchronous=NORMAL survives a process crash; a power cut may lose the last
//! transactions, which the MQTT broker redelivers since they were never acknowledged).
//! Aggregates over hour-aligned periods read hourly rollups, over day-aligned periods
//! (day, week, month, year) daily rollups; only unaligned periods read raw samples.
//! Retention deletes raw samples before a local midnight and keeps rollups for ever.
//! This backend must never hold a transaction open across an await point.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::rollup;
use super::{
    AggregateQuery, Aggregation, BucketValue, Point, Sample, StoreError, TimeSeriesStore,
    WriteReport,
};
use crate::db::{Db, DbError};
use crate::ids::SeriesId;
use crate::time::Timestamp;

/// The embedded store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    /// A store over the given database.
    pub fn new(db: Db) -> SqliteStore {
        SqliteStore { db }
    }

    /// Writes a batch on the calling (blocking) thread, with its rollups, in one
    /// transaction. Samples older than the retention watermark (see
    /// [`TimeSeriesStore::retain`]) are not stored: their neighbours are gone, so their
    /// consumption step cannot be known; they are reported as duplicates and logged.
    pub fn write_blocking(&self, samples: &[Sample]) -> Result<WriteReport, DbError> {
        if samples.is_empty() {
            return Ok(WriteReport::default());
        }
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut inserted = 0u64;
            let mut too_old = 0u64;
            let watermark = rollup::watermark(&tx)?;
            let mut touched = rollup::Touched::default();
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?1, ?2, ?3)",
                )?;
                for s in samples {
                    if s.ts.0 < watermark {
                        too_old += 1;
                        continue;
                    }
                    if st.execute(params![s.series.0, s.ts.0, s.value])? > 0 {
                        inserted += 1;
                        touched.inserted(&tx, s.series.0, s.ts.0)?;
                    }
                }
            }
            touched.recompute(&tx)?;
            tx.commit()?;
            if too_old > 0 {
                tracing::warn!(
                    too_old,
                    retained_before = %Timestamp(watermark),
                    "samples older than the raw retention window were not stored"
                );
            }
            Ok(WriteReport {
                inserted,
                duplicates: samples.len() as u64 - inserted,
            })
        })
    }

    /// Recomputes every rollup from the raw samples (for a file whose samples were
    /// written before rollups existed). Rollups of retained periods are kept.
    pub fn rebuild_rollups_blocking(&self) -> Result<(), DbError> {
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for s in series_ids(&tx)? {
                rollup::rebuild_series(&tx, s)?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Retention on the calling (blocking) thread; see [`TimeSeriesStore::retain`].
    pub fn retain_blocking(&self, before: Timestamp) -> Result<u64, DbError> {
        // Cut at a local midnight so that no hour or day keeps part of its raw samples:
        // a late sample in a partly retained bucket could not be recomputed.
        let cut = rollup::local_day_bounds(before.0).0;
        self.db.call_blocking(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if cut <= rollup::watermark(&tx)? {
                return Ok(0);
            }
            let mut deleted = 0u64;
            for s in series_ids(&tx)? {
                // Keep the last dropped sample: the step from it to the first kept one
                // must stay computable when a late sample lands after the cut.
                if let Some(anchor) = rollup::last_before(&tx, s, cut)? {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO retention_anchors (series_id, ts, value)
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![s, anchor.ts.0, anchor.value])?;
                }
                deleted += tx
                    .prepare_cached("DELETE FROM samples WHERE series_id = ?1 AND ts < ?2")?
                    .execute(params![s, cut])? as u64;
            }
            rollup::set_watermark(&tx, cut)?;
            tx.commit()?;
            Ok(deleted)
        })
    }
}

/// The distinct series with raw samples, by index skip-scan.
fn series_ids(c: &rusqlite::Connection) -> rusqlite::Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached("SELECT MIN(series_id) FROM samples WHERE series_id > ?1")?;
    let mut after = i64::MIN;
    while let Some(s) = st.query_row([after], |r| r.get::<_, Option<i64>>(0))? {
        out.push(s);
        after = s;
    }
    Ok(out)
}

fn range_blocking(
    c: &rusqlite::Connection,
    series: SeriesId,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<Point>> {
    let mut st = c.prepare_cached(
        "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts",
    )?;
    let rows = st.query_map(params![series.0, from, to], |r| {
        Ok(Point {
            ts: Timestamp(r.get(0)?),
            value: r.get(1)?,
        })
    })?;
    rows.collect()
}

#[async_trait]
impl TimeSeriesStore for SqliteStore {
    async fn write(&self, samples: &[Sample]) -> Result<WriteReport, StoreError> {
        let this = self.clone();
        let samples = samples.to_vec();
        tokio::task::spawn_blocking(move || this.write_blocking(&samples))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
            .map_err(StoreError::from)
    }

    async fn range(
        &self,
        series: SeriesId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        Ok(self
            .db
            .call(move |c| Ok(range_blocking(c, series, from.0, to.0)?))
            .await?)
    }

    async fn latest(&self, series: &[SeriesId]) -> Result<Vec<(SeriesId, Point)>, StoreError> {
        let series = series.to_vec();
        Ok(self
            .db
            .call(move |c| {
                let mut out = Vec::with_capacity(series.len());
                let mut st = c.prepare_cached(
                    "SELECT ts, value FROM samples WHERE series_id = ?1 ORDER BY ts DESC LIMIT 1",
                )?;
                for s in series {
                    if let Some(p) = st
                        .query_row([s.0], |r| {
                            Ok(Point {
                                ts: Timestamp(r.get(0)?),
                                value: r.get(1)?,
                            })
                        })
                        .optional()?
                    {
                        out.push((s, p));
                    }
                }
                Ok(out)
            })
            .await?)
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<BucketValue>, StoreError> {
        let (Some(first), Some(last)) = (query.periods.first(), query.periods.last()) else {
            return Ok(Vec::new());
        };
        let (from, to) = (first.start.0, last.end.0);
        let q = query.clone();
        Ok(self
            .db
            .call(move |c| {
                if let Some(width) = rollup::width_for(&q.periods) {
                    return Ok(rollup::aggregate(
                        c,
                        &q.series,
                        q.aggregation,
                        &q.periods,
                        width,
                    )?);
                }
                // Periods not aligned on hours: only raw samples can answer.
                let mut all = Vec::with_capacity(q.series.len());
                for &s in &q.series {
                    let mut pts = Vec::new();
                    if q.aggregation == Aggregation::Consumption {
                        pts.extend(rollup::last_before(c, s.0, from)?);
                    }
                    pts.extend(range_blocking(c, s, from, to)?);
                    all.push(pts);
                }
                Ok(super::aggregate_points(&all, q.aggregation, &q.periods))
            })
            .await?)
    }

    async fn retain(&self, before: Timestamp) -> Result<u64, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.retain_blocking(before))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
            .map_err(StoreError::from)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .call(|c| {
                Ok(c.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get::<_, i64>(0))? as u64)
            })
            .await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self
            .db
            .call(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn series_ids(&self) -> Result<Vec<SeriesId>, StoreError> {
        Ok(self
            .db
            .call(|c| Ok(series_ids(c)?.into_iter().map(SeriesId).collect()))
            .await?)
    }

    async fn range_after(
        &self,
        series: SeriesId,
        after: Timestamp,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts > ?2
                     ORDER BY ts LIMIT ?3",
                )?;
                let rows = st.query_map(params![series.0, after.0, limit], |r| {
                    Ok(Point {
                        ts: Timestamp(r.get(0)?),
                        value: r.get(1)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }
}
