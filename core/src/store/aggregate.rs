//! Aggregation over calendar periods, as pure functions over sorted points.
//!
//! This is the reference computation: backends may answer from rollups, but their
//! answers must equal what these functions return on the raw points. Nothing here may
//! do I/O.

use super::{Aggregation, BucketValue, Point};
use crate::time::{Period, Timestamp};

/// The consumption steps of a counter: for each sample after the first, the difference
/// with the previous one, at the later sample's instant. A negative step (reset, meter
/// swap) counts as zero, never as negative consumption. A bucket with steps but no
/// increase consumed 0 (the meter was read and did not move), which is not the same
/// as a bucket without any step (no data).
pub fn consumption_steps(points: &[Point]) -> impl Iterator<Item = Point> + '_ {
    points.windows(2).map(|w| Point {
        ts: w[1].ts,
        value: (w[1].value - w[0].value).max(0.0),
    })
}

/// Aggregates `points` of several series (each sorted by time) into `periods`.
///
/// For consumption, each series' points must include the last sample before the first
/// period, so that the first step is counted.
pub fn aggregate_points(
    series_points: &[Vec<Point>],
    aggregation: Aggregation,
    periods: &[Period],
) -> Vec<BucketValue> {
    #[derive(Clone, Copy)]
    struct Acc {
        sum: f64,
        n: u64,
        min: f64,
        max: f64,
        last: Option<(Timestamp, f64)>,
    }
    let empty = Acc {
        sum: 0.0,
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        last: None,
    };
    let mut accs = vec![empty; periods.len()];
    let index_of = |ts: Timestamp| -> Option<usize> {
        let i = periods.partition_point(|p| p.end <= ts);
        (i < periods.len() && periods[i].start <= ts).then_some(i)
    };
    let mut add = |p: Point| {
        if let Some(i) = index_of(p.ts) {
            let a = &mut accs[i];
            a.sum += p.value;
            a.n += 1;
            a.min = a.min.min(p.value);
            a.max = a.max.max(p.value);
            if a.last.is_none_or(|(t, _)| t <= p.ts) {
                a.last = Some((p.ts, p.value));
            }
        }
    };
    for points in series_points {
        if aggregation == Aggregation::Consumption {
            consumption_steps(points).for_each(&mut add);
        } else {
            points.iter().copied().for_each(&mut add);
        }
    }
    periods
        .iter()
        .zip(accs)
        .map(|(p, a)| BucketValue {
            period: p.label.clone(),
            start: p.start,
            value: match aggregation {
                Aggregation::Consumption => (a.n > 0).then_some(a.sum),
                Aggregation::Count => Some(a.n as f64),
                Aggregation::Mean => (a.n > 0).then(|| a.sum / a.n as f64),
                Aggregation::Min => (a.n > 0).then_some(a.min),
                Aggregation::Max => (a.n > 0).then_some(a.max),
                Aggregation::Last => a.last.map(|(_, v)| v),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Bucket, periods};
    use chrono::NaiveDate;

    fn p(ts: &str, value: f64) -> Point {
        Point {
            ts: Timestamp::parse_rfc3339(ts).expect("valid ts"),
            value,
        }
    }

    #[test]
    fn a_meter_reset_is_not_negative_consumption() {
        let pts = [
            p("2026-11-01T10:00:00Z", 100.0),
            p("2026-11-01T11:00:00Z", 110.0),
            p("2026-11-01T12:00:00Z", 2.0),
            p("2026-11-01T13:00:00Z", 7.0),
        ];
        let total: f64 = consumption_steps(&pts).map(|s| s.value).sum();
        assert_eq!(total, 15.0);
    }

    #[test]
    fn a_step_belongs_to_the_day_of_its_later_sample() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).expect("date");
        let per = periods(d(1), d(2), Bucket::Day);
        // 23:30 UTC on the 1st is 00:30 on the 2nd in Paris.
        let pts = vec![
            p("2026-10-31T22:00:00Z", 0.0),
            p("2026-11-01T12:00:00Z", 5.0),
            p("2026-11-01T23:30:00Z", 8.0),
        ];
        let out = aggregate_points(&[pts], Aggregation::Consumption, &per);
        assert_eq!(out[0].value, Some(5.0));
        assert_eq!(out[1].value, Some(3.0));
    }

    #[test]
    fn an_empty_period_has_no_value_but_counts_zero() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).expect("date");
        let per = periods(d(1), d(1), Bucket::Day);
        assert_eq!(
            aggregate_points(&[vec![]], Aggregation::Mean, &per)[0].value,
            None
        );
        assert_eq!(
            aggregate_points(&[vec![]], Aggregation::Count, &per)[0].value,
            Some(0.0)
        );
    }
}
