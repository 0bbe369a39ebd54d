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
        segments: Vec::new(),
        registry: None,
    }
}

fn run(context: &[Point], jobs: &[CounterJob]) -> (Vec<Outcome>, Vec<Point>) {
    let mut refs: Vec<&CounterJob> = jobs.iter().collect();
    refs.sort_by_key(|j| j.ts);
    let run = normalise_series(context, &[], Vec::new(), &refs);
    (run.outcomes, run.timeline)
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

#[test]
fn a_swap_to_a_higher_index_is_a_new_segment_once_confirmed() {
    let f = Some(160.0);
    // 1 m³/h on the old meter, then a new meter from 5 000 m³ at 1 m³/h.
    let jobs = [
        job(0, 100.0, None, f),
        job(60, 101.0, None, f),
        job(120, 5_000.0, None, f),
        job(180, 5_001.0, None, f),
        job(240, 5_002.0, None, f),
        job(300, 5_003.0, None, f),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    let stored: Vec<f64> = run
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted(v) => *v,
            other => panic!("{other:?}"),
        })
        .collect();
    // The jump is a zero step; the new meter's readings are stored minus 4 899.
    assert_eq!(stored, [100.0, 101.0, 101.0, 102.0, 103.0, 104.0]);
    assert_eq!(total(&run.timeline), 4.0);
    assert_eq!(
        run.new_segments,
        [(
            Segment {
                since: jobs[2].ts,
                offset: 4_899.0
            },
            false
        )]
    );
    assert!(run.suspects.is_empty());
}

#[test]
fn a_swap_confirmed_in_a_later_batch_asks_for_the_earlier_readings_to_be_replayed() {
    let f = Some(160.0);
    let old = [Point {
        ts: job(0, 0.0, None, None).ts,
        value: 100.0,
    }];
    let first = [job(60, 5_000.0, None, f), job(120, 5_001.0, None, f)];
    let refs: Vec<&CounterJob> = first.iter().collect();
    let run = normalise_series(&old, &[], Vec::new(), &refs);
    assert!(
        run.outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Rejected(_))),
        "{:?}",
        run.outcomes
    );
    assert_eq!(run.suspects.len(), 2);
    let third = job(180, 5_002.5, None, f);
    let run = normalise_series(&old, &[], run.suspects, &[&third]);
    assert_eq!(run.outcomes, [Outcome::Accepted(102.5)]);
    let (segment, replay) = run.new_segments[0];
    assert!(replay);
    assert_eq!(segment.since, first[0].ts);
    // Replayed later, with the segment known, the earlier readings fit.
    let replayed = normalise_series(&run.timeline, &[segment], Vec::new(), &refs);
    assert_eq!(
        replayed.outcomes,
        [Outcome::Accepted(100.0), Outcome::Accepted(101.0)]
    );
    assert_eq!(total(&replayed.timeline), 2.5);
}

#[test]
fn a_single_spike_stays_refused_and_the_trend_goes_on() {
    let f = Some(160.0);
    let jobs = [
        job(0, 100.0, None, f),
        job(60, 101.0, None, f),
        job(120, 5_000.0, None, f),
        job(180, 103.0, None, f),
        job(240, 5_003.0, None, f),
        job(300, 105.0, None, f),
        job(360, 106.0, None, f),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    for (i, o) in run.outcomes.iter().enumerate() {
        assert_eq!(
            matches!(o, Outcome::Rejected(_)),
            i == 2 || i == 4,
            "{i}: {o:?}"
        );
    }
    assert!(run.new_segments.is_empty());
    assert_eq!(total(&run.timeline), 6.0);
}

#[test]
fn inconsistent_jumps_are_not_a_new_meter() {
    let f = Some(160.0);
    // Three impossible readings, but not a meter: they go down, or jump between them.
    let jobs = [
        job(0, 100.0, None, f),
        job(60, 9_000.0, None, f),
        job(120, 5_000.0, None, f),
        job(180, 50_000.0, None, f),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    assert!(run.new_segments.is_empty(), "{:?}", run.new_segments);
    assert_eq!(run.timeline.len(), 1);
}

#[test]
fn a_reset_after_a_swap_upwards_stores_the_reading_as_published_again() {
    let f = Some(160.0);
    let segment = Segment {
        since: job(60, 0.0, None, None).ts,
        offset: 4_899.0,
    };
    let stored = [
        Point {
            ts: job(0, 0.0, None, None).ts,
            value: 100.0,
        },
        Point {
            ts: segment.since,
            value: 101.0,
        },
    ];
    let jobs = [
        job(120, 5_001.0, None, f),
        job(180, 2.0, None, f),
        job(240, 3.0, None, f),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&stored, &[segment], Vec::new(), &refs);
    assert_eq!(
        run.outcomes,
        [
            Outcome::Accepted(102.0),
            Outcome::Accepted(2.0),
            Outcome::Accepted(3.0)
        ]
    );
    assert_eq!(run.new_segments.len(), 1);
    assert_eq!(run.new_segments[0].0.offset, 0.0);
    assert_eq!(total(&run.timeline), 3.0);
}

#[test]
fn readings_continuing_a_jump_join_its_chain_even_once_the_jump_looks_possible() {
    // 100 m³ in 1 h is impossible (limit 60 m³/h), in 2 h it is not: the third
    // reading alone would pass, but it continues the new meter.
    let f = Some(60.0);
    let jobs = [
        job(0, 100.0, None, f),
        job(60, 200.0, None, f),
        job(90, 201.0, None, f),
        job(120, 202.0, None, f),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    assert_eq!(
        run.outcomes,
        [
            Outcome::Accepted(100.0),
            Outcome::Accepted(100.0),
            Outcome::Accepted(101.0),
            Outcome::Accepted(102.0)
        ]
    );
    assert_eq!(total(&run.timeline), 2.0);
}

#[test]
fn a_mis_stamped_reading_ahead_of_the_trend_is_not_a_new_meter() {
    // 100 kW on a 1 MW meter; a reading stamped 1 min after 12:15 carries the value of
    // 12:30 (25 kWh in 1 min: impossible); then the trend goes on.
    let f = Some(1_000.0);
    let at = |min: i64, v: f64| job(min, v, None, f);
    let jobs = [
        at(0, 1_000.0),
        at(15, 1_025.0),
        at(16, 1_050.0),
        at(30, 1_050.5),
        at(45, 1_075.0),
        at(60, 1_100.0),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    assert!(
        matches!(run.outcomes[2], Outcome::Rejected(_)),
        "{:?}",
        run.outcomes
    );
    assert!(run.new_segments.is_empty(), "{:?}", run.new_segments);
    assert_eq!(total(&run.timeline), 100.0);
}

#[test]
fn a_swap_stays_a_swap_when_later_readings_make_the_jump_look_possible() {
    // Daily readings of an electricity meter (10 kWh a day, at most 1 000 kW): a new
    // meter at 120 003 kWh. Over three days the 70 000 kWh jump would be possible.
    let f = Some(1_000.0);
    let day = 24 * 60;
    let at = |d: i64, v: f64| job(d * day, v, None, f);
    let jobs = [
        at(0, 50_000.0),
        at(1, 50_010.0),
        at(2, 120_003.0),
        at(3, 120_013.0),
        at(4, 120_023.0),
        at(5, 120_033.0),
    ];
    let refs: Vec<&CounterJob> = jobs.iter().collect();
    let run = normalise_series(&[], &[], Vec::new(), &refs);
    assert_eq!(run.new_segments.len(), 1, "{:?}", run.outcomes);
    assert_eq!(total(&run.timeline), 40.0);
}

#[test]
fn refused_readings_read_back_are_suspects_only_after_the_last_stored_point() {
    let template = job(0, 0.0, Some(100_000.0), None);
    let at = |m: i64| Timestamp(1_800_000_000_000 + m * MIN);
    let context = [
        Point {
            ts: at(0),
            value: 99_000.0,
        },
        Point {
            ts: at(60),
            value: 99_990.0,
        },
    ];
    let segments = [Segment {
        since: at(120),
        offset: 1_000.0,
    }];
    let readings = [
        // At or before the last stored point: no suspect.
        (at(30), 99_500.0),
        (at(60), 99_990.0),
        // Not below the rollover: refused for that, no suspect.
        (at(90), 100_000.0),
        // Unwrapped after the last point, then minus the offset in force.
        (at(150), 5.0),
        (at(100), 99_995.0),
        (at(150), 5.0),
    ];
    let got = recovered_suspects(&context, &segments, &template, &readings);
    assert_eq!(
        got,
        [
            Suspect {
                ts: at(100),
                value: 99_995.0,
                job: None
            },
            Suspect {
                ts: at(150),
                value: 100_005.0 - 1_000.0,
                job: None
            },
        ]
    );
}
