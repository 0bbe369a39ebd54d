//! The embedded time-series backend: samples in the SQLite file of the registry.
//!
//! Raw samples live in three tiers (see [`super::chunks`]): live samples (after
//! everything stored for their series) land in a small recent table keyed by (ts,
//! series), folded every few batches into compressed per-series UTC-day chunks; late
//! samples land in the hot table keyed by (series, ts), which compaction merges into
//! the chunks of days older than yesterday (automatically every [`COMPACT_EVERY`]
//! inserted samples, or through [`SqliteStore::compact_blocking`]). A (series, ts) is
//! stored once across the three, so a
//! duplicate write is a no-op. A write batch is one `IMMEDIATE` transaction, worked
//! series by series (chunks looked up once per series, not per sample), that also
//! updates the hourly and daily rollups it touched (see [`super::rollup`]): when
//! `write` returns, samples and rollups are durable together (WAL with
//! synchronous=FULL: the commit is fsynced, so it survives a power cut as well as a
//! process crash — ingest acknowledges MQTT messages right after it). Aggregates over
//! hour-aligned periods read hourly rollups, over day-aligned periods (day, week,
//! month, year) daily rollups; only unaligned periods read raw samples. Retention
//! deletes raw samples before a local midnight and keeps rollups for ever. This
//! backend must never hold a transaction open across an await point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rusqlite::params;

use super::{
    AggregateQuery, Aggregation, BucketValue, Point, Sample, StoreError, TimeSeriesStore,
    WriteReport,
};
use super::{chunks, rollup};
use crate::db::{Db, DbError};
use crate::ids::SeriesId;
use crate::time::Timestamp;

/// Inserted samples between two automatic compactions.
pub const COMPACT_EVERY: u64 = 100_000;

/// Prepared statements kept per connection: the write path uses about 20, the
/// registry as many; rusqlite's default of 16 made them evict one another.
const STATEMENT_CACHE: usize = 128;

/// Per-connection settings of the write path, applied on each write (cheap; pooled
/// connections are shared with the registry): a 32 MiB page cache, so that the
/// leaf pages of the series being written stay in memory, and a checkpoint every
/// 8,192 WAL pages (32 MiB at 4 KiB) instead of 1,000: a batch of a few hundred series
/// dirties a page per series, and a page rewritten by many batches is copied to the
/// file once per checkpoint. Every commit is still fsynced (synchronous=FULL).
fn tune_for_writes(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    c.execute_batch("PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 8192;")
}

/// Writes `samples` with their rollups within the open transaction `tx`; returns how
/// many were new, or the refusal of a batch holding samples older than the retention
/// cut (then nothing was written).
fn write_in(
    tx: &rusqlite::Connection,
    samples: &[Sample],
) -> Result<Result<u64, StoreError>, DbError> {
    if samples.is_empty() {
        return Ok(Ok(0));
    }
    let watermark = rollup::watermark(tx)?;
    let too_old = samples.iter().filter(|s| s.ts.0 < watermark);
    if let Some(first) = too_old.clone().map(|s| s.ts).min() {
        return Ok(Err(StoreError::OlderThanRetention {
            refused: too_old.count() as u64,
            first,
            retained_before: Timestamp(watermark),
        }));
    }
    // Per series, in time order; within the batch the first copy of a (series, ts)
    // wins, as with one INSERT OR IGNORE per sample.
    let mut sorted: Vec<Point> = Vec::with_capacity(samples.len());
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| (samples[i].series.0, samples[i].ts.0));
    let mut inserted = 0u64;
    let mut touched = rollup::Touched::default();
    let mut folded = false;
    let mut live: Vec<(i64, i64, f64)> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let series = samples[order[i]].series.0;
        sorted.clear();
        while i < order.len() && samples[order[i]].series.0 == series {
            let s = samples[order[i]];
            if sorted.last().is_none_or(|p| p.ts != s.ts) {
                sorted.push(Point {
                    ts: s.ts,
                    value: s.value,
                });
            }
            i += 1;
        }
        // After everything stored (live data): into the recent tier, and folded into
        // the rollups as is.
        let latest = chunks::latest(tx, series)?;
        if let (Some(latest), Some(first)) = (latest, sorted.first())
            && latest.ts < first.ts
        {
            live.extend(sorted.iter().map(|p| (p.ts.0, series, p.value)));
            if let Some(last) = sorted.last() {
                chunks::set_latest(tx, series, *last)?;
            }
            inserted += sorted.len() as u64;
            rollup::append(tx, series, latest, &sorted)?;
            continue;
        }
        // Late, out of order or redelivered: checked against `samples` and the
        // chunks, so the recent tier is folded first (once per batch at most).
        if !folded {
            chunks::fold(tx)?;
            folded = true;
        }
        let new = chunks::insert_new(tx, series, &sorted)?;
        if let (Some(former), Some(&last)) = (latest, new.last())
            && last > former.ts.0
            && rollup::local_day_bounds(last) != rollup::local_day_bounds(former.ts.0)
        {
            touched.latest_moved(series, former.ts.0);
        }
        inserted += new.len() as u64;
        touched.inserted(tx, series, &new)?;
    }
    touched.recompute(tx)?;
    // Live samples of every series at once, in the recent tier's key order. (A fold
    // above left them out: they come after everything stored, so they stay unique.)
    chunks::insert_recent(tx, &mut live)?;
    if !folded && chunks::recent_rows(tx)? >= chunks::RECENT_FOLD_ROWS {
        chunks::fold(tx)?;
    }
    Ok(Ok(inserted))
}

/// The embedded store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Db,
    since_compaction: Arc<AtomicU64>,
}

impl SqliteStore {
    /// A store over the given database.
    pub fn new(db: Db) -> SqliteStore {
        SqliteStore {
            db,
            since_compaction: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The database this store writes to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Writes a batch on the calling (blocking) thread, with its rollups, in one
    /// transaction. A batch holding a sample older than the retention cut (see
    /// [`TimeSeriesStore::retain`]) is refused whole with
    /// [`StoreError::OlderThanRetention`]: that sample's neighbours are gone, so its
    /// consumption step cannot be known, and it must not vanish silently.
    pub fn write_blocking(&self, samples: &[Sample]) -> Result<WriteReport, StoreError> {
        if samples.is_empty() {
            return Ok(WriteReport::default());
        }
        Ok(self.write_with_blocking(samples, |_| Ok(()))?.0)
    }

    /// As [`SqliteStore::write_blocking`], and runs `also` in the same transaction
    /// after the samples are written: one commit (one fsync) for both, and nothing of
    /// either is committed when one fails or the batch is refused. Ingest writes the
    /// registry side of a batch (last seen, statuses, quarantine) this way.
    pub fn write_with_blocking<T>(
        &self,
        samples: &[Sample],
        also: impl FnOnce(&rusqlite::Connection) -> Result<T, DbError>,
    ) -> Result<(WriteReport, T), StoreError> {
        let written = self.db.call_blocking(|c| {
            tune_for_writes(c)?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let inserted = match write_in(&tx, samples)? {
                Ok(n) => n,
                Err(refused) => return Ok(Err(refused)),
            };
            let out = also(&tx)?;
            tx.commit()?;
            Ok(Ok((inserted, out)))
        })?;
        let (inserted, out) = written?;
        let pending = self.since_compaction.fetch_add(inserted, Ordering::Relaxed) + inserted;
        if pending >= COMPACT_EVERY {
            self.since_compaction.store(0, Ordering::Relaxed);
            // Days before yesterday (UTC) are closed for all but late samples.
            self.compact_blocking(Timestamp::now().plus_millis(-86_400_000))?;
        }
        Ok((
            WriteReport {
                inserted,
                duplicates: samples.len() as u64 - inserted,
            },
            out,
        ))
    }

    /// Moves hot samples of UTC days before the one containing `horizon` into
    /// compressed chunks; returns how many moved. Reads see no difference.
    pub fn compact_blocking(&self, horizon: Timestamp) -> Result<u64, DbError> {
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let moved = chunks::compact(&tx, horizon.0)?;
            tx.commit()?;
            Ok(moved)
        })
    }

    /// Recomputes every rollup from the raw samples (for a file whose samples were
    /// written before rollups existed). Rollups of retained periods are kept.
    pub fn rebuild_rollups_blocking(&self) -> Result<(), DbError> {
        self.db.call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for s in chunks::series_ids(&tx)? {
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
            chunks::fold(&tx)?;
            let mut deleted = 0u64;
            for s in chunks::series_ids(&tx)? {
                // Keep the last dropped sample: the step from it to the first kept one
                // must stay computable when a late sample lands after the cut.
                if let Some(anchor) = chunks::last_before(&tx, s, cut)? {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO retention_anchors (series_id, ts, value)
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![s, anchor.ts.0, anchor.value])?;
                }
                // A series left without samples has no open day any more: its last
                // day's row, which live writes left unwritten, is merged now.
                if let Some(latest) = chunks::latest(&tx, s)?
                    && latest.ts.0 < cut
                {
                    let (start, end) = rollup::local_day_bounds(latest.ts.0);
                    rollup::recompute_day(&tx, s, start, end)?;
                }
                deleted += chunks::delete_before(&tx, s, cut)?;
            }
            rollup::set_watermark(&tx, cut)?;
            tx.commit()?;
            Ok(deleted)
        })
    }

    /// Bytes of the file in use (pages minus free pages, after a WAL checkpoint) and
    /// raw samples stored: what `bytes per sample` is measured with. Free pages (left
    /// by compaction and retention) are reused by later writes.
    pub fn storage_blocking(&self) -> Result<(u64, u64), DbError> {
        self.db.call_blocking(|c| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((((pages - free) * size) as u64, chunks::count(c)?))
        })
    }
}

#[async_trait]
impl TimeSeriesStore for SqliteStore {
    async fn write(&self, samples: &[Sample]) -> Result<WriteReport, StoreError> {
        let this = self.clone();
        let samples = samples.to_vec();
        tokio::task::spawn_blocking(move || this.write_blocking(&samples))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    async fn range(
        &self,
        series: SeriesId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        Ok(self
            .db
            .read(move |c| Ok(chunks::range(c, series.0, from.0, to.0)?))
            .await?)
    }

    async fn latest(&self, series: &[SeriesId]) -> Result<Vec<(SeriesId, Point)>, StoreError> {
        let series = series.to_vec();
        Ok(self
            .db
            .read(move |c| {
                let mut out = Vec::with_capacity(series.len());
                for s in series {
                    if let Some(p) = chunks::latest(c, s.0)? {
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
            .read(move |c| {
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
                    pts.extend(chunks::range(c, s.0, from, to)?);
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

    async fn raw_retained_before(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .db
            .read(|c| {
                let w = rollup::watermark(c)?;
                Ok((w != i64::MIN).then_some(Timestamp(w)))
            })
            .await?)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.db.read(|c| Ok(chunks::count(c)?)).await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self
            .db
            .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn as_sqlite(&self) -> Option<&SqliteStore> {
        Some(self)
    }

    async fn series_ids(&self) -> Result<Vec<SeriesId>, StoreError> {
        Ok(self
            .db
            .read(|c| Ok(chunks::series_ids(c)?.into_iter().map(SeriesId).collect()))
            .await?)
    }

    async fn range_after(
        &self,
        series: SeriesId,
        after: Timestamp,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        Ok(self
            .db
            .read(move |c| Ok(chunks::range_after(c, series.0, after.0, limit)?))
            .await?)
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
