//! The embedded time-series backend: samples in the SQLite file of the registry.
//!
//! Samples live in a `WITHOUT ROWID` table keyed by (series, ts), so a duplicate write
//! is a no-op and a range read is one index scan. A write batch is one `IMMEDIATE`
//! transaction: when `write` returns, the batch is durable (WAL, synchronous=NORMAL
//! survives a process crash; a power cut may lose the last transactions, which the
//! MQTT broker then redelivers because they were never acknowledged... only if the
//! ack came after the OS had the data, which it did). This backend must never hold a
//! transaction open across an await point.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

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

    /// Writes a batch on the calling (blocking) thread.
    pub fn write_blocking(&self, samples: &[Sample]) -> Result<WriteReport, DbError> {
        if samples.is_empty() {
            return Ok(WriteReport::default());
        }
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut inserted = 0u64;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?1, ?2, ?3)",
                )?;
                for s in samples {
                    inserted += st.execute(params![s.series.0, s.ts.0, s.value])? as u64;
                }
            }
            tx.commit()?;
            Ok(WriteReport {
                inserted,
                duplicates: samples.len() as u64 - inserted,
            })
        })
    }
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

fn last_before(
    c: &rusqlite::Connection,
    series: SeriesId,
    before: i64,
) -> rusqlite::Result<Option<Point>> {
    c.prepare_cached(
        "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1",
    )?
    .query_row(params![series.0, before], |r| {
        Ok(Point {
            ts: Timestamp(r.get(0)?),
            value: r.get(1)?,
        })
    })
    .optional()
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
                let mut all = Vec::with_capacity(q.series.len());
                for &s in &q.series {
                    let mut pts = Vec::new();
                    if q.aggregation == Aggregation::Consumption {
                        pts.extend(last_before(c, s, from)?);
                    }
                    pts.extend(range_blocking(c, s, from, to)?);
                    all.push(pts);
                }
                Ok(super::aggregate_points(&all, q.aggregation, &q.periods))
            })
            .await?)
    }

    async fn retain(&self, _before: Timestamp) -> Result<u64, StoreError> {
        Err(StoreError::InvalidQuery(
            "raw retention needs rollups, which the embedded store does not keep yet".into(),
        ))
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
}
