//! Instants and Europe/Paris calendar periods.
//!
//! Instants are stored in UTC as milliseconds since the Unix epoch ([`Timestamp`]).
//! Days, weeks, months and years are Europe/Paris calendar periods, DST included: a
//! day is 23, 24 or 25 hours long. This module must never compute a period boundary
//! by adding a fixed number of seconds.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The time zone of every calendar period.
pub const PARIS: Tz = chrono_tz::Europe::Paris;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current instant.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
    /// As a chrono UTC date-time (saturating on absurd values).
    pub fn to_utc(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    /// RFC 3339 in UTC with a `Z`, to the millisecond when needed.
    pub fn to_rfc3339(self) -> String {
        let dt = self.to_utc();
        if self.0 % 1000 == 0 {
            dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        }
    }
    /// Parses RFC 3339 (any offset).
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        Ok(Timestamp(
            DateTime::parse_from_rfc3339(s)?.timestamp_millis(),
        ))
    }
    /// This instant plus a number of milliseconds.
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A calendar bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One clock hour.
    Hour,
    /// One local day (23 to 25 hours).
    Day,
    /// One ISO week, Monday to Sunday.
    Week,
    /// One calendar month.
    Month,
    /// One calendar year.
    Year,
}

impl FromStr for Bucket {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            "week" => Ok(Bucket::Week),
            "month" => Ok(Bucket::Month),
            "year" => Ok(Bucket::Year),
            _ => Err(format!(
                "unknown step {s:?}: expected hour, day, week, month or year"
            )),
        }
    }
}

/// The first instant of a local date in Paris (midnight, or the first instant after a
/// DST gap at midnight, which Paris does not have but other zones do).
pub fn local_midnight(date: NaiveDate) -> Timestamp {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match PARIS.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Timestamp(dt.timestamp_millis()),
        LocalResult::Ambiguous(first, _) => Timestamp(first.timestamp_millis()),
        LocalResult::None => {
            // A gap at midnight: the day starts one hour later.
            let later = naive + Duration::hours(1);
            Timestamp(
                PARIS
                    .from_local_datetime(&later)
                    .earliest()
                    .map(|d| d.timestamp_millis())
                    .unwrap_or_else(|| later.and_utc().timestamp_millis()),
            )
        }
    }
}

/// The local (Paris) calendar date of an instant.
pub fn local_date(ts: Timestamp) -> NaiveDate {
    ts.to_utc().with_timezone(&PARIS).date_naive()
}

/// The local date on which the bucket containing `date` starts.
pub fn bucket_start_date(date: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Hour | Bucket::Day => date,
        Bucket::Week => date - Duration::days(date.weekday().num_days_from_monday() as i64),
        Bucket::Month => date.with_day(1).unwrap_or(date),
        Bucket::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date),
    }
}

/// The local date on which the bucket after the one starting at `start` starts.
pub fn next_bucket_date(start: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Hour | Bucket::Day => start + Duration::days(1),
        Bucket::Week => start + Duration::days(7),
        Bucket::Month => start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(start),
        Bucket::Year => start
            .checked_add_months(chrono::Months::new(12))
            .unwrap_or(start),
    }
}

/// The start instant of the bucket that contains `ts`.
pub fn bucket_start(ts: Timestamp, bucket: Bucket) -> Timestamp {
    match bucket {
        // Paris offsets are whole hours, so a clock hour is a UTC hour.
        Bucket::Hour => Timestamp(ts.0.div_euclid(3_600_000) * 3_600_000),
        _ => local_midnight(bucket_start_date(local_date(ts), bucket)),
    }
}

/// One calendar period: `[start, end)` with a label such as `2026-11-28` or `2026-11`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// First instant of the period.
    pub start: Timestamp,
    /// First instant after the period.
    pub end: Timestamp,
    /// Label: `YYYY-MM-DDTHH` (hour), `YYYY-MM-DD` (day, week: its Monday), `YYYY-MM`
    /// (month), `YYYY` (year).
    pub label: String,
}

/// The calendar periods of width `bucket` that cover the local dates `from..=to`.
///
/// The first period starts at the bucket containing `from`; the last one contains `to`.
pub fn periods(from: NaiveDate, to: NaiveDate, bucket: Bucket) -> Vec<Period> {
    let mut out = Vec::new();
    if to < from {
        return out;
    }
    if bucket == Bucket::Hour {
        let start = local_midnight(from);
        let end = local_midnight(to + Duration::days(1));
        let mut t = start;
        while t < end {
            let local = t.to_utc().with_timezone(&PARIS);
            out.push(Period {
                start: t,
                end: t.plus_millis(3_600_000),
                label: local.format("%Y-%m-%dT%H%:z").to_string(),
            });
            t = t.plus_millis(3_600_000);
        }
        return out;
    }
    let mut d = bucket_start_date(from, bucket);
    while d <= to {
        let next = next_bucket_date(d, bucket);
        let label = match bucket {
            Bucket::Month => d.format("%Y-%m").to_string(),
            Bucket::Year => d.format("%Y").to_string(),
            _ => d.format("%Y-%m-%d").to_string(),
        };
        out.push(Period {
            start: local_midnight(d),
            end: local_midnight(next),
            label,
        });
        d = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    #[test]
    fn dst_days_in_paris_last_23_and_25_hours() {
        let spring = periods(date(2026, 3, 29), date(2026, 3, 29), Bucket::Day);
        assert_eq!((spring[0].end.0 - spring[0].start.0) / 3_600_000, 23);
        let autumn = periods(date(2026, 10, 25), date(2026, 10, 25), Bucket::Day);
        assert_eq!((autumn[0].end.0 - autumn[0].start.0) / 3_600_000, 25);
        let hours = periods(date(2026, 10, 25), date(2026, 10, 25), Bucket::Hour);
        assert_eq!(hours.len(), 25);
    }

    #[test]
    fn a_local_day_starts_at_paris_midnight() {
        // 2026-11-29 00:00 in Paris is 2026-11-28 23:00 UTC (winter time).
        assert_eq!(
            local_midnight(date(2026, 11, 29)).to_rfc3339(),
            "2026-11-28T23:00:00Z"
        );
        // 2026-07-01 00:00 in Paris is 2026-06-30 22:00 UTC (summer time).
        assert_eq!(
            local_midnight(date(2026, 7, 1)).to_rfc3339(),
            "2026-06-30T22:00:00Z"
        );
    }

    #[test]
    fn months_and_weeks_are_labelled_by_their_first_day() {
        let months = periods(date(2026, 1, 15), date(2026, 3, 2), Bucket::Month);
        let labels: Vec<_> = months.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["2026-01", "2026-02", "2026-03"]);
        let weeks = periods(date(2026, 11, 29), date(2026, 11, 30), Bucket::Week);
        assert_eq!(weeks[0].label, "2026-11-23");
        assert_eq!(weeks[1].label, "2026-11-30");
    }

    #[test]
    fn bucket_start_of_an_instant_uses_local_time() {
        let ts = Timestamp::parse_rfc3339("2026-11-28T23:30:00Z").expect("valid");
        assert_eq!(local_date(ts), date(2026, 11, 29));
        assert_eq!(
            bucket_start(ts, Bucket::Day),
            local_midnight(date(2026, 11, 29))
        );
        assert_eq!(
            bucket_start(ts, Bucket::Month),
            local_midnight(date(2026, 11, 1))
        );
    }
}
