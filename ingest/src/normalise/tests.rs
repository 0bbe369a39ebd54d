//! Unit tests of the pure part of meter normalisation.

use vigie_core::store::consumption_steps;

use super::*;

const MIN: i64 = 60_000;

fn job(ts_min: i64, raw: f64, rollover: Option<f64>, max_flow: Option<f64>) -> CounterJob {
    CounterJob {
        msg: 0,
        device: DeviceId::new("gas-01").unwrap(),
        quantity: Quantity::GasM3,
        ts: Timestamp(1_800_000_000_000 + ts_min * MIN),
        raw,
        series: SeriesId(1),
        rollover,
        max_flow_per_hour: max_flow,
        converted: None,
        gas_kwh: None,
    }
}

fn run(context: &[Point], jobs: &[CounterJob]) -> (Vec<Outcome>, Vec<Point>) {
    let mut refs: Vec<&CounterJob> = jobs.iter().collect();
    refs.sort_by_key(|j| j.ts);
    normalise_series(context, &refs)
}

fn total(points: &[Point]) -> f64 {
    consumption_steps(points).map(|p| p.value).sum()
}

#[test]
fn a_rollover_is_a_small_step_not_a_reset() {
    let jobs = [
        job(0, 99_990.0, Some(100_000.0), None),
        job(60, 99_998.0, Some(100_000.0), None),
        job(120, 3.0, Some(100_000.0), None),
        job(180, 9.0, Some(100_000.0), None),
    ];
    let (out, timeline) = run(&[], &jobs);
    assert_eq!(out[2], Outcome::Accepted(100_003.0));
    assert_eq!(out[3], Outcome::Accepted(100_009.0));
    assert_eq!(total(&timeline), 19.0);
}

#[test]
fn a_reset_far_from_the_top_is_a_new_segment() {
    let jobs = [
        job(0, 40_000.0, Some(100_000.0), None),
        job(60, 40_010.0, Some(100_000.0), None),
        job(120, 0.5, Some(100_000.0), None),
        job(180, 4.5, Some(100_000.0), None),
    ];
    let (out, timeline) = run(&[], &jobs);
    assert_eq!(out[2], Outcome::Accepted(0.5));
    assert_eq!(total(&timeline), 14.0);
}

#[test]
fn an_impossible_step_is_refused_with_a_detail_naming_the_limit() {
    let jobs = [
        job(0, 100.0, None, Some(160.0)),
        job(60, 120.0, None, Some(160.0)),
        job(70, 5_000.0, None, Some(160.0)),
        job(120, 250.0, None, Some(160.0)),
    ];
    let (out, timeline) = run(&[], &jobs);
    let Outcome::Rejected(p) = &out[2] else {
        panic!("{out:?}")
    };
    assert_eq!(p.reason, QuarantineReason::OutOfRange);
    assert!(p.detail.contains("160 m³/h"), "{}", p.detail);
    assert_eq!(out[3], Outcome::Accepted(250.0));
    assert_eq!(total(&timeline), 150.0);
}

#[test]
fn a_late_sample_is_checked_against_its_later_neighbour_too() {
    let stored = [
        Point {
            ts: job(0, 0.0, None, None).ts,
            value: 100.0,
        },
        Point {
            ts: job(60, 0.0, None, None).ts,
            value: 110.0,
        },
    ];
    // A dip to 1 between them would make 109 m³ of fake consumption in 30 min.
    let (out, _) = run(&stored, &[job(30, 1.0, None, Some(10.0))]);
    assert!(matches!(out[0], Outcome::Rejected(_)), "{out:?}");
    let (out, _) = run(&stored, &[job(30, 105.0, None, Some(10.0))]);
    assert_eq!(out[0], Outcome::Accepted(105.0));
}

#[test]
fn a_backlog_across_a_rollover_unwraps_as_in_order() {
    let m = Some(100_000.0);
    let raws = [
        99_900.0, 99_950.0, 99_990.0, 10.0, 60.0, 0.0, 20.0, 70.0, 99_000.0, 99_100.0,
    ];
    let all: Vec<CounterJob> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| job(i as i64 * 60, *r, m, Some(1_000.0)))
        .collect();
    let (_, in_order) = run(&[], &all);
    // Live first (first two and last three), then the backlog in the middle.
    let (_, live) = run(&[], &[&all[..2], &all[7..]].concat());
    let (_, replayed) = run(&live, &all[2..7]);
    assert_eq!(replayed, in_order);
    assert!(total(&in_order) > 0.0);
}

#[test]
fn a_duplicate_instant_keeps_the_stored_value() {
    let stored = [Point {
        ts: job(0, 0.0, None, None).ts,
        value: 42.0,
    }];
    let (out, _) = run(&stored, &[job(0, 41.0, None, None)]);
    assert_eq!(out, [Outcome::Duplicate(42.0)]);
}

#[test]
fn a_raw_index_at_or_above_the_rollover_is_refused() {
    let (out, _) = run(&[], &[job(0, 100_000.0, Some(100_000.0), None)]);
    assert!(matches!(out[0], Outcome::Rejected(_)), "{out:?}");
}
