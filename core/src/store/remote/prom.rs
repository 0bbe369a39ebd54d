//! Reads in the Prometheus dialect of VictoriaMetrics: raw points from
//! `/api/v1/export` (JSON lines), last values and counts from `/api/v1/query` with
//! MetricsQL rollups over a 50-year window (VictoriaMetrics refuses longer ones).
//!
//! A series is selected by its metric name (`<measurement>_value`) and its read tag
//! ([`SeriesTags::read_tag`]: `device`, or `series` for a series without a device);
//! answers are checked against the same pair, so a time series of another device is
//! never taken for this one. A device's history may span several stored time series
//! (another `series` id after a reinstall, another `building` after a move): they are
//! merged. Every query passes `nocache=1`: backfilled history would otherwise be hidden
//! by the rollup result cache. This module must never put a label value in a selector
//! unescaped: every one goes through [`ql_string`] (and [`regex_literal`] in regexes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use super::{RemoteStore, SeriesTags, labels::Owners};
use crate::ids::SeriesId;
use crate::store::{Point, StoreError};
use crate::time::Timestamp;

/// The widest window VictoriaMetrics accepts in a rollup (older samples are not seen).
const ALL_HISTORY: &str = "50y";

/// The longest selector built for one query: VictoriaMetrics refuses queries over
/// 16 KiB (`-search.maxQueryLen`), and the query repeats nothing else of that size.
const MAX_SELECTOR: usize = 7_000;

/// The labels of one stored time series, as VictoriaMetrics answers them.
type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
struct ExportLine {
    metric: Labels,
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
    metric: Labels,
    value: (f64, String),
}

fn seconds(ts: Timestamp) -> String {
    format!("{:.3}", ts.0 as f64 / 1000.0)
}

/// A MetricsQL (PromQL) string literal holding `s`.
fn ql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regular expression (RE2) matching exactly `s`.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The metric name VictoriaMetrics gives the series (`<measurement>_value`).
fn metric_name(tags: &SeriesTags) -> String {
    format!("{}_value", tags.measurement)
}

/// A label matcher for one value (`label="v"`) or any of several (`label=~"a|b"`).
fn matcher(label: &str, values: &BTreeSet<String>) -> String {
    if values.len() == 1
        && let Some(v) = values.first()
    {
        return format!("{label}={}", ql_string(v));
    }
    let alternatives: Vec<String> = values.iter().map(|v| regex_literal(v)).collect();
    format!("{label}=~{}", ql_string(&alternatives.join("|")))
}

/// The selector of one series: its metric name and its read tag.
fn one(tags: &SeriesTags) -> String {
    let (label, value) = tags.read_tag();
    format!(
        "{{__name__={},{label}={}}}",
        ql_string(&metric_name(tags)),
        ql_string(&value)
    )
}

/// One selector covering `batch`, whose series all have the same read tag (all
/// `device`, or all `series`). It may match more than asked (another quantity of an
/// asked device): answers go through [`owners_of`].
fn many(batch: &[Arc<SeriesTags>]) -> String {
    let label = batch.first().map_or("series", |t| t.read_tag().0);
    let names: BTreeSet<String> = batch.iter().map(|t| metric_name(t)).collect();
    let values: BTreeSet<String> = batch.iter().map(|t| t.read_tag().1).collect();
    format!(
        "{{{},{}}}",
        matcher("__name__", &names),
        matcher(label, &values)
    )
}

/// The asked series a stored time series (its labels) holds samples of.
fn owners_of<'a>(owners: &'a Owners, metric: &Labels) -> &'a [SeriesId] {
    match metric
        .get("__name__")
        .and_then(|n| n.strip_suffix("_value"))
    {
        Some(measurement) => owners.of(measurement, |tag| metric.get(tag).map(String::as_str)),
        None => &[],
    }
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
    tags: &SeriesTags,
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
                ("match[]", one(tags)),
                ("start", seconds(from)),
                ("end", seconds(to)),
            ],
        )
        .await?;
    let owners = Owners::new([tags]);
    let mut points = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let l: ExportLine = serde_json::from_str(line)
            .map_err(|e| store.err(format!("/api/v1/export: unexpected line: {e}")))?;
        if owners_of(&owners, &l.metric).is_empty() {
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
    series: &[Arc<SeriesTags>],
) -> Result<Vec<(SeriesId, Point)>, StoreError> {
    // One selector per read tag; each batch's selector stays under MAX_SELECTOR.
    let (by_device, by_id): (Vec<_>, Vec<_>) = series
        .iter()
        .cloned()
        .partition(|t| t.device_tag().is_some());
    let mut out = Vec::with_capacity(series.len());
    for group in [by_device, by_id] {
        for batch in batches(&group) {
            out.extend(latest_of(store, batch).await?);
        }
    }
    Ok(out)
}

/// `group` in consecutive batches whose [`many`] selectors stay under [`MAX_SELECTOR`]
/// (a single series always makes a batch).
fn batches(group: &[Arc<SeriesTags>]) -> Vec<&[Arc<SeriesTags>]> {
    // What a value adds to a matcher: itself escaped twice (regex, string) and a `|`.
    let cost = |v: &str| ql_string(&regex_literal(v)).len() - 1;
    let mut out = Vec::new();
    let (mut start, mut len) = (0, 0);
    let mut seen: HashSet<(bool, String)> = HashSet::new();
    for (i, t) in group.iter().enumerate() {
        let parts = [(true, metric_name(t)), (false, t.read_tag().1)];
        let add = |seen: &HashSet<(bool, String)>| -> usize {
            parts
                .iter()
                .filter(|p| !seen.contains(*p))
                .map(|p| cost(&p.1))
                .sum()
        };
        if i > start && len + add(&seen) > MAX_SELECTOR {
            out.push(&group[start..i]);
            (start, len) = (i, 0);
            seen.clear();
        }
        len += add(&seen);
        seen.extend(parts.iter().cloned());
    }
    if start < group.len() {
        out.push(&group[start..]);
    }
    out
}

async fn latest_of(
    store: &RemoteStore,
    batch: &[Arc<SeriesTags>],
) -> Result<Vec<(SeriesId, Point)>, StoreError> {
    let sel = many(batch);
    let owners = Owners::new(batch.iter().map(|t| t.as_ref()));
    let at = horizon();
    // `keep_metric_names`: the name tells a device's quantities apart.
    let rollup = |f: &str| format!("{f}({sel}[{ALL_HISTORY}]) keep_metric_names");
    let values = instant(store, rollup("last_over_time"), at).await?;
    let times = instant(store, rollup("tlast_over_time"), at).await?;
    let mut ts_of: HashMap<Labels, Timestamp> = HashMap::new();
    for v in times {
        let secs = number(store, &v.value.1)?;
        ts_of.insert(v.metric, Timestamp((secs * 1000.0).round() as i64));
    }
    let mut out: HashMap<SeriesId, Point> = HashMap::new();
    for v in values {
        let Some(&ts) = ts_of.get(&v.metric) else {
            continue;
        };
        let p = Point {
            ts,
            value: number(store, &v.value.1)?,
        };
        // A device's history may span several stored series: the newest point wins.
        for s in owners_of(&owners, &v.metric) {
            if out.get(s).is_none_or(|old| old.ts < p.ts) {
                out.insert(*s, p);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Value of the last sample of `series` strictly before `before`.
pub(super) async fn last_before(
    store: &RemoteStore,
    tags: &SeriesTags,
    before: Timestamp,
) -> Result<Option<f64>, StoreError> {
    let sel = one(tags);
    let at = before.plus_millis(-1);
    let rollup = |f: &str| format!("{f}({sel}[{ALL_HISTORY}]) keep_metric_names");
    let values = instant(store, rollup("last_over_time"), at).await?;
    if values.len() <= 1 {
        return match values.first() {
            Some(v) => Ok(Some(number(store, &v.value.1)?)),
            None => Ok(None),
        };
    }
    // Several stored series (a reinstall, a move): the value of the newest sample.
    let times = instant(store, rollup("tlast_over_time"), at).await?;
    let mut newest: Option<(f64, &Labels)> = None;
    for t in &times {
        let secs = number(store, &t.value.1)?;
        if newest.is_none_or(|(best, _)| secs > best) {
            newest = Some((secs, &t.metric));
        }
    }
    let Some((_, metric)) = newest else {
        return Ok(None);
    };
    match values.iter().find(|v| &v.metric == metric) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(series: i64, device: &str, measurement: &str) -> Arc<SeriesTags> {
        Arc::new(SeriesTags {
            series: SeriesId(series),
            measurement: measurement.into(),
            device: Some(device.into()),
            building: Some("mairie".into()),
            member: Some("commune-a".into()),
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_registry_series_is_selected_by_name_and_device_never_by_id_or_building() {
        assert_eq!(
            one(&meter(42, "meter-1", "electricity_kwh")),
            r#"{__name__="electricity_kwh_value",device="meter-1"}"#
        );
    }

    #[test]
    fn a_series_without_a_device_falls_back_to_its_name_and_id() {
        assert_eq!(
            one(&SeriesTags::bare(SeriesId(42))),
            r#"{__name__="vigie_value",series="42"}"#
        );
        let empty = SeriesTags {
            device: Some(String::new()),
            ..SeriesTags::bare(SeriesId(7))
        };
        assert_eq!(one(&empty), r#"{__name__="vigie_value",series="7"}"#);
    }

    #[test]
    fn quotes_and_backslashes_in_label_values_are_escaped() {
        assert_eq!(ql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            one(&meter(1, r#"x"}or{y\"#, r#"q"_kwh"#)),
            r#"{__name__="q\"_kwh_value",device="x\"}or{y\\"}"#
        );
        // In a regex, metacharacters are escaped, then the string is.
        assert_eq!(regex_literal("meter.1|a(b)"), r"meter\.1\|a\(b\)");
        let batch = [meter(1, r#"a"b\c.d"#, "power_w"), meter(2, "e", "power_w")];
        assert_eq!(
            many(&batch),
            r#"{__name__="power_w_value",device=~"a\"b\\\\c\\.d|e"}"#
        );
    }

    #[test]
    fn several_series_share_one_selector_of_names_and_devices() {
        let batch = [
            meter(1, "meter.1", "electricity_kwh"),
            meter(2, "room-2", "co2_ppm"),
            meter(3, "room-2", "temperature_c"),
        ];
        assert_eq!(
            many(&batch),
            r#"{__name__=~"co2_ppm_value|electricity_kwh_value|temperature_c_value",device=~"meter\\.1|room-2"}"#
        );
        let bare = [
            Arc::new(SeriesTags::bare(SeriesId(4))),
            Arc::new(SeriesTags::bare(SeriesId(5))),
        ];
        assert_eq!(many(&bare), r#"{__name__="vigie_value",series=~"4|5"}"#);
    }

    #[test]
    fn answers_belong_to_the_asked_device_not_to_a_series_with_the_same_id() {
        let batch = [
            meter(1, "meter-a", "electricity_kwh"),
            Arc::new(SeriesTags::bare(SeriesId(2))),
        ];
        let owners = Owners::new(batch.iter().map(|t| t.as_ref()));
        let of = |pairs: &[(&str, &str)]| owners_of(&owners, &labels(pairs)).to_vec();
        // Another installation's series 1 is another device: not ours.
        let foreign = [
            ("__name__", "electricity_kwh_value"),
            ("device", "meter-b"),
            ("series", "1"),
        ];
        assert_eq!(of(&foreign), Vec::<SeriesId>::new());
        // Ours, written under an older id and from another building: ours.
        let moved = [
            ("__name__", "electricity_kwh_value"),
            ("building", "ecole"),
            ("device", "meter-a"),
            ("series", "9"),
        ];
        assert_eq!(of(&moved), vec![SeriesId(1)]);
        // Another quantity of the same device (a wider selector's catch): not ours.
        let other = [("__name__", "power_w_value"), ("device", "meter-a")];
        assert_eq!(of(&other), Vec::<SeriesId>::new());
        assert_eq!(
            of(&[("__name__", "vigie_value"), ("series", "2")]),
            vec![SeriesId(2)]
        );
        assert_eq!(
            of(&[("__name__", "power_w_value"), ("series", "2")]),
            Vec::<SeriesId>::new()
        );
    }

    #[test]
    fn a_batch_of_long_device_ids_fits_the_query_limit() {
        let long = "d".repeat(64);
        let batch: Vec<Arc<SeriesTags>> = (0..2_000)
            .map(|i| meter(i, &format!("{long}{i}"), "electricity_kwh"))
            .collect();
        let parts = batches(&batch);
        // Full batches: 2,000 ids of ~70 characters in about 20 queries, not hundreds.
        assert!((2..=25).contains(&parts.len()), "{} batches", parts.len());
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), batch.len());
        for part in parts {
            let q = format!("tlast_over_time({}[50y]) keep_metric_names", many(part));
            assert!(q.len() <= MAX_SELECTOR + 80, "{} bytes", q.len());
        }
    }
}
