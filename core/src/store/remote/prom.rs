//! Reads in the Prometheus dialect of VictoriaMetrics: raw points from
//! `/api/v1/export` (JSON lines), last values and counts from `/api/v1/query` with
//! MetricsQL rollups over a 50-year window (VictoriaMetrics refuses longer ones).
//!
//! Every query passes `nocache=1`: backfilled history would otherwise be hidden by the
//! rollup result cache. This module must never build a selector from unescaped input;
//! it only interpolates numeric series ids.

use std::collections::HashMap;

use serde::Deserialize;

use super::RemoteStore;
use crate::ids::SeriesId;
use crate::store::{Point, StoreError};
use crate::time::Timestamp;

/// The widest window VictoriaMetrics accepts in a rollup (older samples are not seen).
const ALL_HISTORY: &str = "50y";

#[derive(Deserialize)]
struct ExportLine {
    metric: HashMap<String, String>,
    values: Vec<Option<f64>>,
    timestamps: Vec<i64>,
}

#[derive(Deserialize)]
struct QueryResponse {
    data: QueryData,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: HashMap<String, String>,
    value: (f64, String),
}

fn seconds(ts: Timestamp) -> String {
    format!("{:.3}", ts.0 as f64 / 1000.0)
}

fn one(series: SeriesId) -> String {
    format!("{{series=\"{}\"}}", series.0)
}

fn many(series: &[SeriesId]) -> String {
    let ids: Vec<String> = series.iter().map(|s| s.0.to_string()).collect();
    format!("{{series=~\"{}\"}}", ids.join("|"))
}

async fn instant(
    store: &RemoteStore,
    query: String,
    at: Timestamp,
) -> Result<Vec<VectorSample>, StoreError> {
    let body = store
        .get_text(
            "/api/v1/query",
            &[
                ("query", query),
                ("time", seconds(at)),
                ("nocache", "1".into()),
            ],
        )
        .await?;
    let parsed: QueryResponse = serde_json::from_str(&body)
        .map_err(|e| store.err(format!("/api/v1/query: unexpected answer: {e}")))?;
    Ok(parsed.data.result)
}

fn series_of(store: &RemoteStore, m: &HashMap<String, String>) -> Result<SeriesId, StoreError> {
    m.get("series")
        .and_then(|s| s.parse().ok())
        .map(SeriesId)
        .ok_or_else(|| store.err("answer without a numeric series label"))
}

fn number(store: &RemoteStore, s: &str) -> Result<f64, StoreError> {
    s.parse()
        .map_err(|_| store.err(format!("not a number: {s:?}")))
}

/// A moment safely after any sample (a day ahead, for clocks running fast).
fn horizon() -> Timestamp {
    Timestamp::now().plus_millis(86_400_000)
}

/// Raw points of one series with `from <= ts < to`, sorted, duplicates removed.
pub(super) async fn range(
    store: &RemoteStore,
    series: SeriesId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Point>, StoreError> {
    // VictoriaMetrics answers nothing for instants it cannot represent.
    let (from, to) = (from.max(Timestamp(0)), to.min(horizon()));
    if to <= from {
        return Ok(Vec::new());
    }
    let body = store
        .get_text(
            "/api/v1/export",
            &[
                ("match[]", one(series)),
                ("start", seconds(from)),
                ("end", seconds(to)),
            ],
        )
        .await?;
    let mut points = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let l: ExportLine = serde_json::from_str(line)
            .map_err(|e| store.err(format!("/api/v1/export: unexpected line: {e}")))?;
        if l.metric.get("series") != Some(&series.0.to_string()) {
            continue;
        }
        for (t, v) in l.timestamps.iter().zip(&l.values) {
            if let Some(v) = v
                && (from.0..to.0).contains(t)
            {
                points.push(Point {
                    ts: Timestamp(*t),
                    value: *v,
                });
            }
        }
    }
    points.sort_by_key(|p| p.ts);
    points.dedup_by_key(|p| p.ts);
    Ok(points)
}

/// Latest point of each of `series` that has one.
pub(super) async fn latest(
    store: &RemoteStore,
    series: &[SeriesId],
) -> Result<Vec<(SeriesId, Point)>, StoreError> {
    // VictoriaMetrics refuses queries over 16 KiB (`-search.maxQueryLen`).
    let mut out = Vec::with_capacity(series.len());
    let mut start = 0;
    while start < series.len() {
        let mut end = start;
        let mut len = 0;
        while end < series.len() && (end == start || len < 7_000) {
            len += series[end].0.to_string().len() + 1;
            end += 1;
        }
        out.extend(latest_of(store, &series[start..end]).await?);
        start = end;
    }
    Ok(out)
}

async fn latest_of(
    store: &RemoteStore,
    series: &[SeriesId],
) -> Result<Vec<(SeriesId, Point)>, StoreError> {
    let sel = many(series);
    let at = horizon();
    let values = instant(store, format!("last_over_time({sel}[{ALL_HISTORY}])"), at).await?;
    let times = instant(store, format!("tlast_over_time({sel}[{ALL_HISTORY}])"), at).await?;
    let mut ts_of = HashMap::new();
    for v in times {
        let secs = number(store, &v.value.1)?;
        ts_of.insert(
            series_of(store, &v.metric)?,
            Timestamp((secs * 1000.0).round() as i64),
        );
    }
    let mut out: HashMap<SeriesId, Point> = HashMap::new();
    for v in values {
        let s = series_of(store, &v.metric)?;
        let Some(&ts) = ts_of.get(&s) else { continue };
        let p = Point {
            ts,
            value: number(store, &v.value.1)?,
        };
        out.insert(s, p);
    }
    Ok(out.into_iter().collect())
}

/// Value of the last sample of `series` strictly before `before`.
pub(super) async fn last_before(
    store: &RemoteStore,
    series: SeriesId,
    before: Timestamp,
) -> Result<Option<f64>, StoreError> {
    let r = instant(
        store,
        format!("last_over_time({}[{ALL_HISTORY}])", one(series)),
        before.plus_millis(-1),
    )
    .await?;
    match r.first() {
        Some(v) => Ok(Some(number(store, &v.value.1)?)),
        None => Ok(None),
    }
}

/// Number of samples of every vigie series.
pub(super) async fn count(store: &RemoteStore) -> Result<u64, StoreError> {
    let r = instant(
        store,
        format!("sum(count_over_time({{series!=\"\"}}[{ALL_HISTORY}]))"),
        horizon(),
    )
    .await?;
    match r.first() {
        Some(v) => Ok(number(store, &v.value.1)? as u64),
        None => Ok(0),
    }
}
