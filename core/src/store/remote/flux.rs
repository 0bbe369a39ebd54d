//! Reads in the Flux dialect (InfluxDB 2.x, InfluxDB Cloud): queries posted to
//! `/api/v2/query`, answers in annotated CSV (`#datatype`, `#group`, `#default`
//! annotation rows, then a header row and records per table, tables separated by
//! blank lines; an `error` column reports a failed query).
//!
//! A series is selected by `_measurement` and its read tag
//! ([`SeriesTags::read_tag`]: `device`, or `series` for a series without a device), and
//! answers are checked against the same pair; a device's history may span several
//! stored series (another `series` id after a reinstall, another `building` after a
//! move), which are merged. This module must never interpolate a string into Flux
//! without escaping it ([`flux_string`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::{RemoteStore, SeriesTags, labels::Owners};
use crate::ids::SeriesId;
use crate::store::{Point, StoreError};
use crate::time::Timestamp;

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses an annotated-CSV answer into records (column name → value). An `error`
/// record becomes `Err` with its message.
pub fn parse_annotated_csv(text: &str) -> Result<Vec<HashMap<String, String>>, String> {
    let mut rows = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            header = None; // next table
            continue;
        }
        if line.starts_with('#') {
            header = None; // annotations precede a new header
            continue;
        }
        let cells = split_csv(line);
        match &header {
            None => header = Some(cells),
            Some(h) => {
                let rec: HashMap<String, String> = h.iter().cloned().zip(cells).collect();
                if let Some(e) = rec.get("error").filter(|e| !e.is_empty()) {
                    return Err(e.clone());
                }
                rows.push(rec);
            }
        }
    }
    Ok(rows)
}

fn flux_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A Flux time literal, clamped to what Flux can represent (1970 to 2262 here).
fn flux_time(ts: Timestamp) -> String {
    Timestamp(ts.0.clamp(0, 9_000_000_000_000))
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn source(store: &RemoteStore, from: Timestamp, to: Timestamp) -> String {
    format!(
        "from(bucket: {})\n  |> range(start: {}, stop: {})\n",
        flux_string(&store.bucket),
        flux_time(from),
        flux_time(to)
    )
}

fn point(store: &RemoteStore, rec: &HashMap<String, String>) -> Result<Point, StoreError> {
    let ts = rec
        .get("_time")
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .ok_or_else(|| store.err("Flux answer without a valid _time"))?;
    let value = rec
        .get("_value")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| store.err("Flux answer without a numeric _value"))?;
    Ok(Point { ts, value })
}

async fn query(
    store: &RemoteStore,
    flux: String,
) -> Result<Vec<HashMap<String, String>>, StoreError> {
    let text = store.flux(flux).await?;
    parse_annotated_csv(&text).map_err(|e| store.err(format!("Flux query failed: {e}")))
}

/// The Flux predicate selecting the samples of one series.
fn predicate(tags: &SeriesTags) -> String {
    let (tag, value) = tags.read_tag();
    format!(
        "r._measurement == {} and r.{tag} == {}",
        flux_string(&tags.measurement),
        flux_string(&value)
    )
}

/// Raw points of one series with `from <= ts < to`.
pub(super) async fn range(
    store: &RemoteStore,
    tags: &SeriesTags,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Point>, StoreError> {
    let q = format!(
        "{}  |> filter(fn: (r) => r._field == \"value\" and {})\n  |> group()\n  |> keep(columns: [\"_time\", \"_value\"])\n  |> sort(columns: [\"_time\"])",
        source(store, from, to),
        predicate(tags)
    );
    let mut points = query(store, q)
        .await?
        .iter()
        .map(|r| point(store, r))
        .collect::<Result<Vec<_>, _>>()?;
    points.sort_by_key(|p| p.ts);
    points.dedup_by_key(|p| p.ts);
    Ok(points)
}

/// The query of the latest point of every stored series of `series`.
fn latest_query(store: &RemoteStore, series: &[Arc<SeriesTags>]) -> String {
    let any: Vec<String> = series
        .iter()
        .map(|t| format!("({})", predicate(t)))
        .collect();
    format!(
        "{}  |> filter(fn: (r) => r._field == \"value\" and ({}))\n  |> sort(columns: [\"_time\"])\n  |> last()\n  |> keep(columns: [\"_measurement\", \"device\", \"series\", \"_time\", \"_value\"])",
        source(
            store,
            Timestamp(0),
            Timestamp::now().plus_millis(86_400_000)
        ),
        any.join(" or ")
    )
}

/// Latest point of each of `series` that has one.
pub(super) async fn latest(
    store: &RemoteStore,
    series: &[Arc<SeriesTags>],
) -> Result<Vec<(SeriesId, Point)>, StoreError> {
    let owners = Owners::new(series.iter().map(|t| t.as_ref()));
    let mut out: HashMap<SeriesId, Point> = HashMap::new();
    // One record per stored series; a device's history may span several.
    for rec in query(store, latest_query(store, series)).await? {
        let Some(measurement) = rec.get("_measurement") else {
            continue;
        };
        let p = point(store, &rec)?;
        for s in owners.of(measurement, |tag| rec.get(tag).map(String::as_str)) {
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
    let q = format!(
        "{}  |> filter(fn: (r) => r._field == \"value\" and {})\n  |> group()\n  |> sort(columns: [\"_time\"])\n  |> last()",
        source(store, Timestamp(0), before),
        predicate(tags)
    );
    match query(store, q).await?.last() {
        Some(rec) => Ok(Some(point(store, rec)?.value)),
        None => Ok(None),
    }
}

/// Number of samples of every vigie series.
pub(super) async fn count(store: &RemoteStore) -> Result<u64, StoreError> {
    let q = format!(
        "{}  |> filter(fn: (r) => r._field == \"value\" and exists r.series)\n  |> group()\n  |> count()",
        source(
            store,
            Timestamp(0),
            Timestamp::now().plus_millis(86_400_000)
        )
    );
    let rows = query(store, q).await?;
    let mut total = 0u64;
    for r in rows {
        total += r
            .get("_value")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| store.err("Flux count without a numeric _value"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shape from InfluxDB's documentation of annotated CSV (two tables, then an error).
    const TWO_TABLES: &str = "#group,false,false,true,true,false,false,true,true,true\r
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r
#default,_result,,,,,,,,\r
,result,table,_start,_stop,_time,_value,_field,_measurement,series\r
,,0,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,2026-11-01T10:00:00Z,12.5,value,electricity_kwh,42\r
,,0,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,2026-11-01T10:10:00.123456789Z,13,value,electricity_kwh,42\r
\r
#group,false,false,true,true,false,false,true,true,true\r
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r
#default,_result,,,,,,,,\r
,result,table,_start,_stop,_time,_value,_field,_measurement,series\r
,,1,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,2026-11-01T11:00:00Z,\"1,5\",value,\"a \"\"quoted\"\" name\",43\r
";

    #[test]
    fn annotated_csv_tables_become_records_with_their_own_headers() {
        let rows = parse_annotated_csv(TWO_TABLES).expect("parse");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["_value"], "12.5");
        assert_eq!(rows[1]["_time"], "2026-11-01T10:10:00.123456789Z");
        assert_eq!(rows[2]["_value"], "1,5");
        assert_eq!(rows[2]["_measurement"], "a \"quoted\" name");
        assert_eq!(rows[2]["series"], "43");
    }

    #[test]
    fn an_error_table_is_an_error_with_its_message() {
        let text = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"failed to execute query: bucket not found\",897\n";
        let err = parse_annotated_csv(text).unwrap_err();
        assert!(err.contains("bucket not found"), "{err}");
    }

    #[test]
    fn flux_strings_and_times_are_escaped_and_clamped() {
        assert_eq!(flux_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(flux_time(Timestamp(i64::MIN)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            flux_time(Timestamp(1_764_460_800_123)),
            "2025-11-30T00:00:00.123Z"
        );
    }

    fn meter(series: i64, device: &str) -> SeriesTags {
        SeriesTags {
            series: SeriesId(series),
            measurement: "electricity_kwh".into(),
            device: Some(device.into()),
            building: Some("mairie".into()),
            member: Some("commune-a".into()),
        }
    }

    #[test]
    fn a_registry_series_is_filtered_by_measurement_and_device_never_by_id_or_building() {
        assert_eq!(
            predicate(&meter(42, "meter-1")),
            r#"r._measurement == "electricity_kwh" and r.device == "meter-1""#
        );
    }

    #[test]
    fn a_series_without_a_device_falls_back_to_its_measurement_and_id() {
        assert_eq!(
            predicate(&SeriesTags::bare(SeriesId(42))),
            r#"r._measurement == "vigie" and r.series == "42""#
        );
    }

    #[test]
    fn quotes_backslashes_and_interpolations_in_tag_values_are_escaped() {
        let odd = SeriesTags {
            measurement: "q\\".into(),
            ..meter(1, r#"x" or true or "${y}"#)
        };
        assert_eq!(
            predicate(&odd),
            r#"r._measurement == "q\\" and r.device == "x\" or true or \"\${y}""#
        );
    }
}
