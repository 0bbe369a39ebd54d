//! Hourly and daily rollups of the embedded store, kept exact under late writes.
//!
//! A rollup row summarises one series over one bucket: the counter consumption (number
//! of steps whose later sample falls in the bucket, and sum of the positive ones, as in
//! [`super::aggregate`]) and the gauge statistics (count, sum, min, max, last). Daily
//! rows (Europe/Paris local days, 23 to 25 hours) are always merged from their hourly
//! rows, except that live writes leave the row of a series' *open day* (the day of its
//! latest sample) unwritten: reads merge that day from its hour rows instead
//! ([`aggregate`]), and its row is written once a write moves the latest sample past
//! it (or retention deletes it). Hourly rows are maintained in one of two ways, both
//! in the write transaction, so a committed batch always has matching rollups:
//! - samples that come after every stored sample of their series (live data, the
//!   common case) extend the stored hour rows ([`append`]): the same additions in the
//!   same order as a recomputation, so the rows are bit-identical, with no raw read;
//! - any other write (late, out of order, redelivered) recomputes each touched hour
//!   from raw samples, plus the last sample before it (which may be a retention
//!   anchor), one read per run of consecutive hours ([`Touched`]).
//!
//! This module must never update a rollup incrementally from samples that have a
//! stored sample after them: a late sample between two existing ones changes two
//! steps, and only a recomputation from raw neighbours is exact.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::chunks;
use super::{Aggregation, BucketValue, Point};
use crate::ids::SeriesId;
use crate::time::{Period, Timestamp, local_date, local_midnight};

/// One hour, in milliseconds.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Width of a rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    /// One clock hour.
    Hour = 0,
    /// One Europe/Paris local day.
    Day = 1,
}

/// The summary of some samples (or of merged summaries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rollup {
    /// Number of counter steps (a step that did not increase counts, as zero).
    pub(crate) steps: u64,
    /// Sum of positive counter steps.
    pub(crate) consumption: f64,
    /// Number of samples.
    pub(crate) n: u64,
    /// Sum of values.
    pub(crate) sum: f64,
    /// Minimum value.
    pub(crate) min: f64,
    /// Maximum value.
    pub(crate) max: f64,
    /// Latest sample, if any.
    pub(crate) last: Option<(i64, f64)>,
}

impl Rollup {
    /// The summary with nothing in it.
    pub(crate) const EMPTY: Rollup = Rollup {
        steps: 0,
        consumption: 0.0,
        n: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        last: None,
    };

    /// Summarises `points` (sorted), `prev` being the sample just before them.
    pub(crate) fn of_points(prev: Option<Point>, points: &[Point]) -> Rollup {
        let mut r = Rollup::EMPTY;
        r.extend(prev, points);
        r
    }

    /// Adds `points` (sorted, all after the ones already summarised), `prev` being the
    /// sample just before them: the same additions in the same order as
    /// [`Rollup::of_points`] over all the points, so the result is bit-identical.
    pub(crate) fn extend(&mut self, prev: Option<Point>, points: &[Point]) {
        let r = self;
        let mut before = prev.map(|p| p.value);
        for p in points {
            if let Some(b) = before {
                let d = p.value - b;
                r.steps += 1;
                if d > 0.0 {
                    r.consumption += d;
                }
            }
            before = Some(p.value);
            r.n += 1;
            r.sum += p.value;
            r.min = r.min.min(p.value);
            r.max = r.max.max(p.value);
            r.last = Some((p.ts.0, p.value));
        }
    }

    /// Adds another summary into this one; on equal last instants `other` wins (the
    /// reference keeps the later series of a query).
    pub(crate) fn merge(&mut self, other: &Rollup) {
        self.steps += other.steps;
        self.consumption += other.consumption;
        self.n += other.n;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if let Some((t, v)) = other.last
            && self.last.is_none_or(|(mine, _)| mine <= t)
        {
            self.last = Some((t, v));
        }
    }

    /// The value of `aggregation` over this summary (`None` for no data).
    pub(crate) fn value(&self, aggregation: Aggregation) -> Option<f64> {
        match aggregation {
            Aggregation::Consumption => (self.steps > 0).then_some(self.consumption),
            Aggregation::Count => Some(self.n as f64),
            Aggregation::Mean => (self.n > 0).then(|| self.sum / self.n as f64),
            Aggregation::Min => (self.n > 0).then_some(self.min),
            Aggregation::Max => (self.n > 0).then_some(self.max),
            Aggregation::Last => self.last.map(|(_, v)| v),
        }
    }
}

/// The start of the Europe/Paris local day containing `ts`, and of the next one.
pub(crate) fn local_day_bounds(ts: i64) -> (i64, i64) {
    let d = local_date(Timestamp(ts));
    let next = d.succ_opt().unwrap_or(d);
    (local_midnight(d).0, local_midnight(next).0)
}

/// Whether `ts` is the first instant of a Europe/Paris local day.
pub(crate) fn is_local_midnight(ts: i64) -> bool {
    local_day_bounds(ts).0 == ts
}

/// The start of the clock hour containing `ts`.
pub(crate) fn hour_start(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS) * HOUR_MS
}

/// The retention watermark: raw samples before it are gone (0 = never retained).
pub(crate) fn watermark(c: &Connection) -> rusqlite::Result<i64> {
    Ok(c.query_row(
        "SELECT value FROM store_meta WHERE key = 'raw_retained_before'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()?
    .unwrap_or(i64::MIN))
}

/// Sets the retention watermark.
pub(crate) fn set_watermark(c: &Connection, before: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO store_meta (key, value) VALUES ('raw_retained_before', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [before],
    )?;
    Ok(())
}

/// The last sample of `series` strictly before `before`, raw or retention anchor.
pub(crate) fn last_before(
    c: &Connection,
    series: i64,
    before: i64,
) -> rusqlite::Result<Option<Point>> {
    if let Some(p) = chunks::last_before(c, series, before)? {
        return Ok(Some(p));
    }
    c.prepare_cached("SELECT ts, value FROM retention_anchors WHERE series_id = ?1 AND ts < ?2")?
        .query_row(params![series, before], |r| {
            Ok(Point {
                ts: Timestamp(r.get(0)?),
                value: r.get(1)?,
            })
        })
        .optional()
}

fn put(c: &Connection, series: i64, width: Width, start: i64, r: &Rollup) -> rusqlite::Result<()> {
    match r.last {
        None => {
            c.prepare_cached(
                "DELETE FROM rollups WHERE series_id = ?1 AND width = ?2 AND start = ?3",
            )?
            .execute(params![series, width as i64, start])?;
        }
        Some((last_ts, last_value)) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO rollups
                 (series_id, width, start, steps, consumption, n, sum, min, max, last_ts, last_value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                series,
                width as i64,
                start,
                r.steps as i64,
                r.consumption,
                r.n as i64,
                r.sum,
                r.min,
                r.max,
                last_ts,
                last_value
            ])?;
        }
    }
    Ok(())
}

/// Reads the rollup rows of `series` with `from <= start < to`, in order.
pub(crate) fn read(
    c: &Connection,
    series: i64,
    width: Width,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, Rollup)>> {
    let mut st = c.prepare_cached(
        "SELECT start, steps, consumption, n, sum, min, max, last_ts, last_value FROM rollups
         WHERE series_id = ?1 AND width = ?2 AND start >= ?3 AND start < ?4 ORDER BY start",
    )?;
    let rows = st.query_map(params![series, width as i64, from, to], |r| {
        Ok((r.get::<_, i64>(0)?, rollup_from(r, 1)?))
    })?;
    rows.collect()
}

/// A rollup from the row's columns `first..first + 8` (steps … last_value).
fn rollup_from(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Rollup> {
    Ok(Rollup {
        steps: r.get::<_, i64>(first)? as u64,
        consumption: r.get(first + 1)?,
        n: r.get::<_, i64>(first + 2)? as u64,
        sum: r.get(first + 3)?,
        min: r.get(first + 4)?,
        max: r.get(first + 5)?,
        last: Some((r.get(first + 6)?, r.get(first + 7)?)),
    })
}

/// The hours whose rollups a batch touched, per series.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    hours: BTreeMap<i64, BTreeSet<i64>>,
}

impl Touched {
    /// Records the newly inserted instants of one series (sorted; call after the
    /// inserts): their hours change, and so does the hour of the sample following each
    /// of them, whose step now starts from the new one. That following sample is only
    /// looked up where it can lie outside the touched hours: after the last new
    /// instant, and between two new instants more than an hour apart.
    pub(crate) fn inserted(
        &mut self,
        c: &Connection,
        series: i64,
        instants: &[i64],
    ) -> rusqlite::Result<()> {
        if instants.is_empty() {
            return Ok(());
        }
        let set = self.hours.entry(series).or_default();
        for (i, &ts) in instants.iter().enumerate() {
            set.insert(hour_start(ts));
            // The next sample lies in [ts, next new instant]: its hour is already
            // touched when the two hours are equal or adjacent.
            let covered = instants
                .get(i + 1)
                .is_some_and(|&n| hour_start(n) - hour_start(ts) <= HOUR_MS);
            if !covered && let Some(next) = chunks::next_after(c, series, ts)? {
                set.insert(hour_start(next));
            }
        }
        Ok(())
    }

    /// Records that the latest sample of `series` moved on from `former` (a write that
    /// was not [`append`]ed): the day of `former` is closed and needs its daily row,
    /// which the live path left unwritten; its hour is recomputed with it.
    pub(crate) fn latest_moved(&mut self, series: i64, former: i64) {
        self.hours
            .entry(series)
            .or_default()
            .insert(hour_start(former));
    }

    /// Recomputes every touched hour from raw samples, then every day containing one.
    pub(crate) fn recompute(&self, c: &Connection) -> rusqlite::Result<()> {
        for (&series, hours) in &self.hours {
            recompute_hours(c, series, hours)?;
            let days: BTreeSet<(i64, i64)> = hours.iter().map(|&h| local_day_bounds(h)).collect();
            for (start, end) in days {
                recompute_day(c, series, start, end)?;
            }
        }
        Ok(())
    }
}

/// Folds `points` of `series` into its rollups when they come after every stored
/// sample of it, `latest` being the last stored one (the live pattern): each touched
/// hour row is extended from its stored state, with no raw sample read. Equal to
/// recomputing from raw, bit for bit. The daily row of the series' open day (the day
/// of its latest sample) is not written: it is merged from the hour rows when read
/// ([`aggregate`]); the days this batch closes (the former open day and any day it
/// filled before the new open day) get their daily rows merged from their hours.
pub(crate) fn append(
    c: &Connection,
    series: i64,
    latest: Point,
    points: &[Point],
) -> rusqlite::Result<()> {
    let Some(last) = points.last() else {
        return Ok(());
    };
    let mut prev = latest;
    let mut rest = points;
    let mut hour_row = c.prepare_cached(
        "SELECT steps, consumption, n, sum, min, max, last_ts, last_value FROM rollups
         WHERE series_id = ?1 AND width = 0 AND start = ?2",
    )?;
    while let Some(p) = rest.first() {
        let hour = hour_start(p.ts.0);
        let k = rest.partition_point(|q| q.ts.0 < hour + HOUR_MS);
        let (these, later) = rest.split_at(k);
        let mut row = hour_row
            .query_row(params![series, hour], |r| rollup_from(r, 0))
            .optional()?
            .unwrap_or(Rollup::EMPTY);
        row.extend(Some(prev), these);
        put(c, series, Width::Hour, hour, &row)?;
        if let Some(l) = these.last() {
            prev = *l;
        }
        rest = later;
    }
    let open = local_day_bounds(last.ts.0);
    // The days of the points, each converted once (points are sorted).
    let mut closed: BTreeSet<(i64, i64)> = BTreeSet::new();
    let mut day = local_day_bounds(latest.ts.0);
    closed.insert(day);
    for p in points {
        if p.ts.0 >= day.1 {
            day = local_day_bounds(p.ts.0);
            closed.insert(day);
        }
    }
    closed.remove(&open);
    for (start, end) in closed {
        recompute_day(c, series, start, end)?;
    }
    Ok(())
}

/// Recomputes the hourly rollups of `series` for `hours` (hour starts): each run of
/// consecutive hours is read once, with the sample before it.
pub(crate) fn recompute_hours(
    c: &Connection,
    series: i64,
    hours: &BTreeSet<i64>,
) -> rusqlite::Result<()> {
    let mut iter = hours.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while let Some(&h) = iter.peek() {
            if h != last + HOUR_MS {
                break;
            }
            last = h;
            iter.next();
        }
        let points = chunks::range(c, series, first, last + HOUR_MS)?;
        let mut prev = if points.is_empty() {
            None
        } else {
            last_before(c, series, first)?
        };
        let mut rest = points.as_slice();
        let mut hour = first;
        while hour <= last {
            let n = rest.partition_point(|p| p.ts.0 < hour + HOUR_MS);
            let (these, after) = rest.split_at(n);
            put(
                c,
                series,
                Width::Hour,
                hour,
                &Rollup::of_points(prev, these),
            )?;
            if let Some(p) = these.last() {
                prev = Some(*p);
            }
            rest = after;
            hour += HOUR_MS;
        }
    }
    Ok(())
}

/// Recomputes the daily rollup of `series` for the local day `[start, end)` from its
/// hourly rows.
pub(crate) fn recompute_day(
    c: &Connection,
    series: i64,
    start: i64,
    end: i64,
) -> rusqlite::Result<()> {
    let mut day = Rollup::EMPTY;
    for (_, h) in read(c, series, Width::Hour, start, end)? {
        day.merge(&h);
    }
    put(c, series, Width::Day, start, &day)
}

/// Rebuilds every rollup of `series` from its raw samples (for data written before
/// rollups existed). Rollups of periods whose raw samples were retained are kept.
pub(crate) fn rebuild_series(c: &Connection, series: i64) -> rusqlite::Result<()> {
    let mut touched = Touched::default();
    let hours: BTreeSet<i64> = chunks::range(c, series, i64::MIN, i64::MAX)?
        .iter()
        .map(|p| hour_start(p.ts.0))
        .collect();
    touched.hours.insert(series, hours);
    touched.recompute(c)
}

/// Replaces, among daily `rows` of `series` in `[from, to)`, the one of the series'
/// open day (the day of its latest sample, whose stored row may be stale) with the
/// merge of that day's hour rows, as [`recompute_day`] would write it.
fn merge_open_day(
    c: &Connection,
    series: i64,
    from: i64,
    to: i64,
    rows: &mut Vec<(i64, Rollup)>,
) -> rusqlite::Result<()> {
    let Some(latest) = chunks::latest(c, series)? else {
        return Ok(());
    };
    let (start, end) = local_day_bounds(latest.ts.0);
    if start < from || start >= to {
        return Ok(());
    }
    let mut day = Rollup::EMPTY;
    for (_, h) in read(c, series, Width::Hour, start, end)? {
        day.merge(&h);
    }
    rows.retain(|(s, _)| *s != start);
    if day.last.is_some() {
        let at = rows.partition_point(|(s, _)| *s < start);
        rows.insert(at, (start, day));
    }
    Ok(())
}

/// How a query's periods can be answered from rollups.
pub(crate) fn width_for(periods: &[Period]) -> Option<Width> {
    let bounds = || periods.iter().flat_map(|p| [p.start.0, p.end.0]);
    if bounds().all(is_local_midnight) {
        Some(Width::Day)
    } else if bounds().all(|t| t.rem_euclid(HOUR_MS) == 0) {
        Some(Width::Hour)
    } else {
        None
    }
}

/// Answers an aggregate query from rollups of `width` (periods must be aligned on it).
pub(crate) fn aggregate(
    c: &Connection,
    series: &[SeriesId],
    aggregation: Aggregation,
    periods: &[Period],
    width: Width,
) -> rusqlite::Result<Vec<BucketValue>> {
    let mut accs = vec![Rollup::EMPTY; periods.len()];
    if let (Some(first), Some(last)) = (periods.first(), periods.last()) {
        for s in series {
            let mut rows = read(c, s.0, width, first.start.0, last.end.0)?;
            if width == Width::Day {
                merge_open_day(c, s.0, first.start.0, last.end.0, &mut rows)?;
            }
            for (start, r) in rows {
                let i = periods.partition_point(|p| p.end.0 <= start);
                if i < periods.len() && periods[i].start.0 <= start {
                    accs[i].merge(&r);
                }
            }
        }
    }
    Ok(periods
        .iter()
        .zip(accs)
        .map(|(p, a)| BucketValue {
            period: p.label.clone(),
            start: p.start,
            value: a.value(aggregation),
        })
        .collect())
}
