//! Raw samples of the embedded store in three tiers: `samples_recent` (live samples
//! keyed by (ts, series), so that a batch of many series appends to a few pages),
//! `sample_chunks` (one compressed row per series and UTC day, see [`super::codec`]),
//! where the recent tier is folded every [`RECENT_FOLD_ROWS`] rows, and the hot
//! `samples` table keyed by (series, ts), where late samples go until compaction
//! merges them into their day's chunk. Reads merge the three; `series_latest` holds
//! each series' latest sample, whatever its tier.
//!
//! Invariants: a (series, ts) is in at most one tier (the recent tier only receives
//! samples after their series' latest one; other writes fold it first and check the
//! chunk before keeping a hot row); a chunk holds samples of one UTC day only, keyed
//! by its first instant; `series_latest` is the latest raw sample of each series that
//! has one. Folding and compaction move rows into chunks (a day's chunk decoded and
//! re-encoded when rows join it). This module must never change a value or drop a
//! sample when moving it between tiers.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};

use super::Point;
use super::codec::{self, CorruptChunk};
use crate::time::Timestamp;

const DAY: i64 = 86_400_000;

/// Rows of the recent tier that trigger a fold into chunks at the end of a write. A
/// fold re-encodes a chunk per series, so folding rarely spreads that cost over many
/// batches; reads scan the recent tier by time, so it stays small.
pub(crate) const RECENT_FOLD_ROWS: i64 = 32_768;

fn window(ts: i64) -> i64 {
    ts.div_euclid(DAY).saturating_mul(DAY)
}

fn corrupt(e: CorruptChunk) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, Type::Blob, Box::new(e))
}

fn point(r: &rusqlite::Row<'_>) -> rusqlite::Result<Point> {
    Ok(Point {
        ts: Timestamp(r.get(0)?),
        value: r.get(1)?,
    })
}

/// A stored chunk: its first instant and its decoded points.
fn chunk_at(c: &Connection, series: i64, start: i64) -> rusqlite::Result<Vec<Point>> {
    let data: Vec<u8> = c
        .prepare_cached("SELECT data FROM sample_chunks WHERE series_id = ?1 AND start = ?2")?
        .query_row(params![series, start], |r| r.get(0))?;
    codec::decode(&data).map_err(corrupt)
}

/// The chunk of the UTC day containing `ts`: (first instant, last instant).
fn chunk_of_day(c: &Connection, series: i64, ts: i64) -> rusqlite::Result<Option<(i64, i64)>> {
    let w = window(ts);
    c.prepare_cached(
        "SELECT start, end FROM sample_chunks WHERE series_id = ?1 AND start >= ?2 AND start < ?3",
    )?
    .query_row(params![series, w, w.saturating_add(DAY)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// Inserts the new points of one series (sorted by instant, no two equal) into the hot
/// tier, skipping those already stored in it or in a chunk (a redelivery stores
/// nothing; the recent tier must have been folded first, see [`fold`]); returns the
/// instants actually inserted, in order. Each chunk overlapping the points is looked
/// up and decoded once, not once per point.
pub(crate) fn insert_new(
    c: &Connection,
    series: i64,
    points: &[Point],
) -> rusqlite::Result<Vec<i64>> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(Vec::new());
    };
    // Chunks whose span holds one of the points: (start, end), by start.
    let spans: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT start, end FROM sample_chunks WHERE series_id = ?1 AND start >= ?2
             AND start <= ?3 AND end >= ?4 ORDER BY start",
        )?
        .query_map(
            params![series, window(first.ts.0), last.ts.0, first.ts.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut decoded: Option<(i64, Vec<Point>)> = None;
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?1, ?2, ?3)",
    )?;
    let mut inserted = Vec::with_capacity(points.len());
    for p in points {
        let ts = p.ts.0;
        let span = spans
            .get(
                spans
                    .partition_point(|&(start, _)| start <= ts)
                    .wrapping_sub(1),
            )
            .filter(|&&(_, end)| ts <= end);
        if let Some(&(start, _)) = span {
            if decoded.as_ref().is_none_or(|(s, _)| *s != start) {
                decoded = Some((start, chunk_at(c, series, start)?));
            }
            if decoded
                .as_ref()
                .is_some_and(|(_, pts)| pts.binary_search_by_key(&ts, |q| q.ts.0).is_ok())
            {
                // Already compacted: a redelivery.
                continue;
            }
        }
        if insert.execute(params![series, ts, p.value])? > 0 {
            inserted.push(ts);
        }
    }
    // Only the last point can be a new latest; if it was stored already, it is not.
    if inserted.last() == Some(&last.ts.0) {
        set_latest(c, series, *last)?;
    }
    Ok(inserted)
}

/// Makes `p` the latest sample of `series` unless a later one is stored (writes of
/// the recent tier call it, see [`insert_recent`]).
pub(crate) fn set_latest(c: &Connection, series: i64, p: Point) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO series_latest (series_id, ts, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, value = excluded.value
         WHERE excluded.ts > series_latest.ts",
    )?
    .execute(params![series, p.ts.0, p.value])?;
    Ok(())
}

/// Rows in the recent tier.
pub(crate) fn recent_rows(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COUNT(*) FROM samples_recent")?
        .query_row([], |r| r.get(0))
}

/// Moves every row of the recent tier into the chunks of its series and UTC day (each
/// touched chunk decoded and re-encoded once); returns how many rows moved. Recent
/// rows come after every other sample of their series, so none is a duplicate.
pub(crate) fn fold(c: &Connection) -> rusqlite::Result<u64> {
    // Read in key order (no SQL sorter), grouped by series here (stable: time order
    // is kept within a series).
    let mut rows: Vec<(i64, Point)> = c
        .prepare_cached("SELECT series_id, ts, value FROM samples_recent")?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Point {
                    ts: Timestamp(r.get(1)?),
                    value: r.get(2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.sort_by_key(|(series, p)| (*series, p.ts));
    let mut i = 0;
    while i < rows.len() {
        let (series, first) = rows[i];
        let w = window(first.ts.0);
        let j = i + rows[i..].partition_point(|(s, p)| *s == series && window(p.ts.0) == w);
        merge_into_chunk(c, series, rows[i..j].iter().map(|(_, p)| *p).collect())?;
        i = j;
    }
    if !rows.is_empty() {
        c.prepare_cached("DELETE FROM samples_recent")?
            .execute([])?;
    }
    Ok(rows.len() as u64)
}

/// Adds `day` (points of one series and UTC day, none stored yet) to that day's chunk.
fn merge_into_chunk(c: &Connection, series: i64, mut day: Vec<Point>) -> rusqlite::Result<()> {
    let Some(first) = day.first() else {
        return Ok(());
    };
    if let Some((start, _)) = chunk_of_day(c, series, first.ts.0)? {
        day.extend(chunk_at(c, series, start)?);
        day.sort_by_key(|p| p.ts);
        delete_chunk(c, series, start)?;
    }
    put_chunk(c, series, &day)
}

/// Rows of one multi-row insert into the recent tier.
const RECENT_INSERT_ROWS: usize = 64;

/// Inserts live samples `(ts, series, value)` into the recent tier, in key order and
/// [`RECENT_INSERT_ROWS`] per statement. Each must come after the latest stored sample
/// of its series (so none can be stored already, in any tier), and [`set_latest`]
/// must be called for each series with its last one.
pub(crate) fn insert_recent(c: &Connection, rows: &mut [(i64, i64, f64)]) -> rusqlite::Result<()> {
    rows.sort_unstable_by_key(|&(ts, series, _)| (ts, series));
    let mut chunks = rows.chunks_exact(RECENT_INSERT_ROWS);
    if chunks.len() > 0 {
        let values = vec!["(?, ?, ?)"; RECENT_INSERT_ROWS].join(", ");
        let mut many = c.prepare_cached(&format!(
            "INSERT INTO samples_recent (ts, series_id, value) VALUES {values}"
        ))?;
        for chunk in chunks.by_ref() {
            let params: Vec<&dyn rusqlite::ToSql> = chunk
                .iter()
                .flat_map(|(ts, series, value)| {
                    [
                        ts as &dyn rusqlite::ToSql,
                        series as &dyn rusqlite::ToSql,
                        value as &dyn rusqlite::ToSql,
                    ]
                })
                .collect();
            many.execute(params.as_slice())?;
        }
    }
    let mut one =
        c.prepare_cached("INSERT INTO samples_recent (ts, series_id, value) VALUES (?1, ?2, ?3)")?;
    for (ts, series, value) in chunks.remainder() {
        one.execute(params![ts, series, value])?;
    }
    Ok(())
}

/// Points of `series` with `from <= ts < to`, all tiers, in time order.
pub(crate) fn range(
    c: &Connection,
    series: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<Point>> {
    let mut out: Vec<Point> = c
        .prepare_cached(
            "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts",
        )?
        .query_map(params![series, from, to], point)?
        .collect::<rusqlite::Result<_>>()?;
    // Each tier gives its points in order; sort only when more than one gave some.
    let mut tiers = usize::from(!out.is_empty());
    let before = out.len();
    let mut recent = c.prepare_cached(
        "SELECT ts, value FROM samples_recent WHERE ts >= ?2 AND ts < ?3 AND series_id = ?1
         ORDER BY ts",
    )?;
    for p in recent.query_map(params![series, from, to], point)? {
        out.push(p?);
    }
    tiers += usize::from(out.len() > before);
    let before = out.len();
    let mut st = c.prepare_cached(
        "SELECT data FROM sample_chunks WHERE series_id = ?1 AND start >= ?2 AND start < ?3
         AND end >= ?4 ORDER BY start",
    )?;
    let blobs = st.query_map(params![series, window(from), to, from], |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    for b in blobs {
        let pts = codec::decode(&b?).map_err(corrupt)?;
        out.extend(pts.into_iter().filter(|p| from <= p.ts.0 && p.ts.0 < to));
    }
    tiers += usize::from(out.len() > before);
    if tiers > 1 {
        out.sort_by_key(|p| p.ts);
    }
    Ok(out)
}

/// Up to `limit` points of `series` strictly after `after`, all tiers, in order.
pub(crate) fn range_after(
    c: &Connection,
    series: i64,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Point>> {
    let lim = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out: Vec<Point> = c
        .prepare_cached(
            "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts > ?2 ORDER BY ts LIMIT ?3",
        )?
        .query_map(params![series, after, lim], point)?
        .collect::<rusqlite::Result<_>>()?;
    out.extend(
        c.prepare_cached(
            "SELECT ts, value FROM samples_recent WHERE ts > ?2 AND series_id = ?1 ORDER BY ts
             LIMIT ?3",
        )?
        .query_map(params![series, after, lim], point)?
        .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    let mut st = c.prepare_cached(
        "SELECT data FROM sample_chunks WHERE series_id = ?1 AND start >= ?2 AND end > ?3 ORDER BY start",
    )?;
    let mut rows = st.query(params![series, window(after), after])?;
    let mut from_chunks = 0usize;
    while from_chunks < limit {
        let Some(r) = rows.next()? else { break };
        let pts = codec::decode(&r.get::<_, Vec<u8>>(0)?).map_err(corrupt)?;
        let before = out.len();
        out.extend(pts.into_iter().filter(|p| p.ts.0 > after));
        from_chunks += out.len() - before;
    }
    out.sort_by_key(|p| p.ts);
    out.truncate(limit);
    Ok(out)
}

/// The last point of `series` strictly before `before`, all tiers.
pub(crate) fn last_before(
    c: &Connection,
    series: i64,
    before: i64,
) -> rusqlite::Result<Option<Point>> {
    let hot = c
        .prepare_cached("SELECT ts, value FROM samples WHERE series_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1")?
        .query_row(params![series, before], point)
        .optional()?;
    let recent = c
        .prepare_cached(
            "SELECT ts, value FROM samples_recent WHERE ts < ?2 AND series_id = ?1
             ORDER BY ts DESC LIMIT 1",
        )?
        .query_row(params![series, before], point)
        .optional()?;
    let hot = match (hot, recent) {
        (Some(a), Some(b)) => Some(if a.ts > b.ts { a } else { b }),
        (a, b) => a.or(b),
    };
    let start: Option<i64> = c
        .prepare_cached(
            "SELECT start FROM sample_chunks WHERE series_id = ?1 AND start < ?2 ORDER BY start DESC LIMIT 1",
        )?
        .query_row(params![series, before], |r| r.get(0))
        .optional()?;
    let chunked = match start {
        Some(s) => chunk_at(c, series, s)?
            .into_iter()
            .take_while(|p| p.ts.0 < before)
            .last(),
        None => None,
    };
    Ok(match (hot, chunked) {
        (Some(a), Some(b)) => Some(if a.ts > b.ts { a } else { b }),
        (a, b) => a.or(b),
    })
}

/// The instant of the first point of `series` strictly after `after`, all tiers.
pub(crate) fn next_after(c: &Connection, series: i64, after: i64) -> rusqlite::Result<Option<i64>> {
    let hot: Option<i64> = c
        .prepare_cached(
            "SELECT ts FROM samples WHERE series_id = ?1 AND ts > ?2 ORDER BY ts LIMIT 1",
        )?
        .query_row(params![series, after], |r| r.get(0))
        .optional()?;
    let recent: Option<i64> = c
        .prepare_cached(
            "SELECT ts FROM samples_recent WHERE ts > ?2 AND series_id = ?1 ORDER BY ts LIMIT 1",
        )?
        .query_row(params![series, after], |r| r.get(0))
        .optional()?;
    let hot = match (hot, recent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut st = c.prepare_cached(
        "SELECT start FROM sample_chunks WHERE series_id = ?1 AND start >= ?2 AND end > ?3
         ORDER BY start LIMIT 1",
    )?;
    let chunk: Option<i64> = st
        .query_row(params![series, window(after), after], |r| r.get(0))
        .optional()?;
    let chunked = match chunk {
        Some(s) if s > after => Some(s),
        Some(s) => chunk_at(c, series, s)?
            .into_iter()
            .map(|p| p.ts.0)
            .find(|&t| t > after),
        None => None,
    };
    Ok(match (hot, chunked) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// The latest point of `series`, all tiers.
pub(crate) fn latest(c: &Connection, series: i64) -> rusqlite::Result<Option<Point>> {
    c.prepare_cached("SELECT ts, value FROM series_latest WHERE series_id = ?1")?
        .query_row([series], point)
        .optional()
}

/// Number of raw samples, all tiers.
pub(crate) fn count(c: &Connection) -> rusqlite::Result<u64> {
    let hot: i64 = c.query_row(
        "SELECT (SELECT COUNT(*) FROM samples) + (SELECT COUNT(*) FROM samples_recent)",
        [],
        |r| r.get(0),
    )?;
    let chunked: i64 = c.query_row("SELECT COALESCE(SUM(n), 0) FROM sample_chunks", [], |r| {
        r.get(0)
    })?;
    Ok((hot + chunked) as u64)
}

fn skip_scan(c: &Connection, table: &str) -> rusqlite::Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached(&format!(
        "SELECT MIN(series_id) FROM {table} WHERE series_id > ?1"
    ))?;
    let mut after = i64::MIN;
    while let Some(s) = st.query_row([after], |r| r.get::<_, Option<i64>>(0))? {
        out.push(s);
        after = s;
    }
    Ok(out)
}

/// The distinct series with raw samples in any tier, in order.
pub(crate) fn series_ids(c: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut ids = skip_scan(c, "samples")?;
    ids.extend(skip_scan(c, "sample_chunks")?);
    ids.extend(
        c.prepare_cached("SELECT DISTINCT series_id FROM samples_recent")?
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn put_chunk(c: &Connection, series: i64, points: &[Point]) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(());
    };
    c.prepare_cached(
        "INSERT INTO sample_chunks (series_id, start, end, n, last_value, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        series,
        first.ts.0,
        last.ts.0,
        points.len() as i64,
        last.value,
        codec::encode(points)
    ])?;
    Ok(())
}

fn delete_chunk(c: &Connection, series: i64, start: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM sample_chunks WHERE series_id = ?1 AND start = ?2")?
        .execute(params![series, start])?;
    Ok(())
}

/// Deletes the raw samples of `series` before `cut`, all tiers (the recent one must
/// have been folded); returns how many.
pub(crate) fn delete_before(c: &Connection, series: i64, cut: i64) -> rusqlite::Result<u64> {
    c.prepare_cached("DELETE FROM series_latest WHERE series_id = ?1 AND ts < ?2")?
        .execute(params![series, cut])?;
    let mut deleted = c
        .prepare_cached("DELETE FROM samples WHERE series_id = ?1 AND ts < ?2")?
        .execute(params![series, cut])? as u64;
    let whole: i64 = c
        .prepare_cached(
            "SELECT COALESCE(SUM(n), 0) FROM sample_chunks WHERE series_id = ?1 AND end < ?2",
        )?
        .query_row(params![series, cut], |r| r.get(0))?;
    c.prepare_cached("DELETE FROM sample_chunks WHERE series_id = ?1 AND end < ?2")?
        .execute(params![series, cut])?;
    deleted += whole as u64;
    // A chunk straddling the cut keeps its later part.
    if let Some((start, _)) = chunk_of_day(c, series, cut)?.filter(|(s, _)| *s < cut) {
        let pts = chunk_at(c, series, start)?;
        let keep: Vec<Point> = pts.iter().copied().filter(|p| p.ts.0 >= cut).collect();
        deleted += (pts.len() - keep.len()) as u64;
        delete_chunk(c, series, start)?;
        put_chunk(c, series, &keep)?;
    }
    Ok(deleted)
}

/// Moves hot samples of UTC days wholly before `horizon` into chunks; returns how many
/// samples moved.
pub(crate) fn compact(c: &Connection, horizon: i64) -> rusqlite::Result<u64> {
    fold(c)?;
    let limit = window(horizon);
    let mut moved = 0u64;
    for series in skip_scan(c, "samples")? {
        let hot: Vec<Point> = c
            .prepare_cached(
                "SELECT ts, value FROM samples WHERE series_id = ?1 AND ts < ?2 ORDER BY ts",
            )?
            .query_map(params![series, limit], point)?
            .collect::<rusqlite::Result<_>>()?;
        let mut i = 0;
        while i < hot.len() {
            let w = window(hot[i].ts.0);
            let j = i + hot[i..].partition_point(|p| window(p.ts.0) == w);
            merge_into_chunk(c, series, hot[i..j].to_vec())?;
            moved += (j - i) as u64;
            i = j;
        }
        c.prepare_cached("DELETE FROM samples WHERE series_id = ?1 AND ts < ?2")?
            .execute(params![series, limit])?;
    }
    Ok(moved)
}
