//! Rollups of the embedded store: aggregates read from hourly and daily rollups must
//! equal the reference computation over raw samples, whatever the arrival order, across
//! DST changes, after retention and after duplicate batches.

use proptest::prelude::*;
use vigie_core::store::{
    AggregateQuery, Aggregation, Point, Sample, StoreError, TimeSeriesStore, aggregate_points,
    bucket_query,
};
use vigie_core::time::{Bucket, periods};
use vigie_core::{SeriesId, Timestamp};

use crate::common::{close, date, paris, sample, sqlite_store};

const ALL: [Aggregation; 6] = [
    Aggregation::Consumption,
    Aggregation::Mean,
    Aggregation::Min,
    Aggregation::Max,
    Aggregation::Last,
    Aggregation::Count,
];

/// A gas meter read every hour that does not move for a summer day consumed 0 that
/// day (a value, shown as 0), while a day without any reading has no value; a day
/// whose only step is a reset consumed 0 too, never a negative amount.
#[tokio::test]
async fn a_day_of_readings_without_increase_consumed_zero_and_a_day_without_readings_nothing() {
    let (_dir, store) = sqlite_store();
    let hourly = |d: u32, from: f64, per_hour: f64| -> Vec<Sample> {
        (0..24)
            .map(|h| sample(9, paris(2026, 7, d, h, 0), from + per_hour * f64::from(h)))
            .collect()
    };
    let mut samples = hourly(1, 100.0, 1.0); // 1 July: 23 m³ (+1 from 30 June's none)
    samples.extend(hourly(2, 123.0, 0.0)); // 2 July: flat
    samples.push(sample(9, paris(2026, 7, 4, 12, 0), 0.5)); // 4 July: only a reset
    // 3 July: no reading at all.
    store.write(&samples).await.expect("write");
    let q = bucket_query(
        vec![SeriesId(9)],
        Aggregation::Consumption,
        date(2026, 7, 1),
        date(2026, 7, 4),
        Bucket::Day,
    );
    let got: Vec<Option<f64>> = store
        .aggregate(&q)
        .await
        .expect("aggregate")
        .iter()
        .map(|b| b.value)
        .collect();
    assert_eq!(got, vec![Some(23.0), Some(0.0), None, Some(0.0)]);
    assert_matches_reference(&*store, &q).await;
}

async fn all_points(store: &dyn TimeSeriesStore, series: SeriesId) -> Vec<Point> {
    store
        .range(series, Timestamp(i64::MIN), Timestamp(i64::MAX))
        .await
        .expect("range")
}

async fn assert_matches_reference(store: &dyn TimeSeriesStore, query: &AggregateQuery) {
    let mut raw = Vec::new();
    for &s in &query.series {
        raw.push(all_points(store, s).await);
    }
    let want = aggregate_points(&raw, query.aggregation, &query.periods);
    let got = store.aggregate(query).await.expect("aggregate");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.period, w.period);
        assert!(
            close(g.value, w.value),
            "{:?} {}: store {:?}, reference {:?}",
            query.aggregation,
            g.period,
            g.value,
            w.value
        );
    }
}

/// A counter with increments, flat steps and resets, plus a gauge, over ~two months
/// around the spring DST change; then shuffled and cut into batches.
fn scenario() -> impl Strategy<Value = (Vec<Vec<Sample>>, u64)> {
    let step = (1i64..=2_000, 0u8..10, 0.0f64..50.0);
    (
        prop::collection::vec(step, 1..300),
        any::<u64>(),
        1usize..40,
    )
        .prop_map(|(steps, seed, batch)| {
            let mut t = paris(2026, 3, 1, 0, 0).0;
            let mut counter = 1_000.0;
            let mut samples = Vec::new();
            for (minutes, kind, x) in steps {
                t += minutes * 43_000; // up to ~24 h between samples
                counter = match kind {
                    0 => x,       // reset or meter swap
                    1 => counter, // flat step
                    _ => counter + x,
                };
                samples.push(sample(1, Timestamp(t), counter));
                samples.push(sample(2, Timestamp(t), x - 10.0));
            }
            // Deterministic shuffle from the seed (late and out-of-order arrival).
            let mut state = seed | 1;
            for i in (1..samples.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                samples.swap(i, (state % (i as u64 + 1)) as usize);
            }
            (
                samples.chunks(batch).map(<[Sample]>::to_vec).collect(),
                seed,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_from_rollups_equal_the_reference_over_raw_samples((batches, seed) in scenario()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let (_dir, store) = sqlite_store();
            for (i, b) in batches.iter().enumerate() {
                store.write(b).await.expect("write");
                // Replay some batches: at-least-once delivery.
                if (seed >> (i % 64)) & 1 == 1 {
                    store.write(b).await.expect("rewrite");
                }
                // Compact now and then, everything or the days before mid-March, so
                // that late samples and redeliveries meet compressed chunks.
                match (seed >> ((i + 17) % 64)) & 7 {
                    0 => { store.compact_blocking(Timestamp(i64::MAX / 2)).expect("compact"); }
                    1 => { store.compact_blocking(paris(2026, 3, 15, 12, 0)).expect("compact"); }
                    _ => {}
                }
            }
            let series = [vec![SeriesId(1)], vec![SeriesId(2)], vec![SeriesId(1), SeriesId(2)]];
            for bucket in [Bucket::Day, Bucket::Month, Bucket::Week, Bucket::Hour] {
                let to = if bucket == Bucket::Hour { date(2026, 3, 10) } else { date(2026, 12, 31) };
                for s in &series {
                    for agg in ALL {
                        let q = bucket_query(s.clone(), agg, date(2026, 2, 27), to, bucket);
                        assert_matches_reference(store.as_ref(), &q).await;
                    }
                }
            }
        });
    }
}

#[tokio::test]
async fn dst_days_have_23_and_25_hours_of_consumption() {
    let (_dir, store) = sqlite_store();
    // A meter advancing 1 unit every 10 minutes around both 2026 DST changes.
    for (from, to) in [
        (paris(2026, 3, 27, 0, 0), paris(2026, 3, 31, 0, 0)),
        (paris(2026, 10, 23, 0, 0), paris(2026, 10, 27, 0, 0)),
    ] {
        let samples: Vec<Sample> = (0..)
            .map(|i| Timestamp(from.0 + i * 600_000))
            .take_while(|t| *t <= to)
            .enumerate()
            .map(|(i, t)| sample(7, t, i as f64))
            .collect();
        store.write(&samples).await.expect("write");
    }
    let day = |y, m, d| {
        bucket_query(
            vec![SeriesId(7)],
            Aggregation::Consumption,
            date(y, m, d),
            date(y, m, d),
            Bucket::Day,
        )
    };
    let value = |q: AggregateQuery| {
        let store = store.clone();
        async move { store.aggregate(&q).await.expect("aggregate")[0].value }
    };
    assert_eq!(value(day(2026, 3, 28)).await, Some(144.0));
    assert_eq!(value(day(2026, 3, 29)).await, Some(138.0));
    assert_eq!(value(day(2026, 10, 24)).await, Some(144.0));
    assert_eq!(value(day(2026, 10, 25)).await, Some(150.0));
    let hours = store
        .aggregate(&bucket_query(
            vec![SeriesId(7)],
            Aggregation::Count,
            date(2026, 10, 25),
            date(2026, 10, 25),
            Bucket::Hour,
        ))
        .await
        .expect("hours");
    assert_eq!(hours.len(), 25);
    assert!(hours.iter().all(|h| h.value == Some(6.0)), "{hours:?}");
}

#[tokio::test]
async fn retention_removes_old_raw_samples_and_keeps_daily_and_monthly_consumption() {
    let (_dir, store) = sqlite_store();
    let start = paris(2026, 1, 1, 0, 0);
    let samples: Vec<Sample> = (0..24 * 120)
        .map(|h| {
            sample(
                3,
                start.plus_millis(h * 3_600_000),
                (h * h % 97 + h * 5) as f64,
            )
        })
        .collect();
    store.write(&samples).await.expect("write");
    let daily = bucket_query(
        vec![SeriesId(3)],
        Aggregation::Consumption,
        date(2026, 1, 1),
        date(2026, 4, 30),
        Bucket::Day,
    );
    let monthly = AggregateQuery {
        periods: periods(date(2026, 1, 1), date(2026, 4, 30), Bucket::Month),
        ..daily.clone()
    };
    let before_daily = store.aggregate(&daily).await.expect("daily");
    let before_monthly = store.aggregate(&monthly).await.expect("monthly");
    let before_count = store.count().await.expect("count");

    // January to March in compressed chunks (UTC days: one straddles the cut below).
    store
        .compact_blocking(paris(2026, 4, 1, 0, 0))
        .expect("compact");
    let removed = store
        .retain(paris(2026, 3, 1, 12, 0))
        .await
        .expect("retain");
    // Cut at the local midnight starting 1 March: January and February are gone.
    assert_eq!(removed, 24 * (31 + 28));
    assert_eq!(store.count().await.expect("count"), before_count - removed);
    let old = store
        .range(SeriesId(3), start, paris(2026, 3, 1, 0, 0))
        .await
        .expect("range");
    assert!(old.is_empty(), "{} raw samples left", old.len());
    assert_eq!(store.aggregate(&daily).await.expect("daily"), before_daily);
    assert_eq!(
        store.aggregate(&monthly).await.expect("monthly"),
        before_monthly
    );

    // A late sample just after the cut still gets its step from the last dropped one.
    let mut expected = store
        .range(SeriesId(3), start, Timestamp(i64::MAX))
        .await
        .expect("range");
    let late = sample(3, paris(2026, 3, 1, 0, 30), 10_000.0);
    store.write(&[late]).await.expect("late write");
    let first_march = bucket_query(
        vec![SeriesId(3)],
        Aggregation::Consumption,
        date(2026, 3, 1),
        date(2026, 3, 1),
        Bucket::Day,
    );
    expected.insert(
        1,
        Point {
            ts: late.ts,
            value: late.value,
        },
    );
    let last_feb = samples[24 * (31 + 28) - 1];
    expected.insert(
        0,
        Point {
            ts: last_feb.ts,
            value: last_feb.value,
        },
    );
    let want = aggregate_points(&[expected], Aggregation::Consumption, &first_march.periods);
    assert_eq!(store.aggregate(&first_march).await.expect("march"), want);

    // A batch holding a sample older than the cut is refused whole, visibly: that
    // sample's neighbours are gone. The cut is readable, so callers can filter first.
    assert_eq!(
        store.raw_retained_before().await.expect("cut"),
        Some(paris(2026, 3, 1, 0, 0))
    );
    let refused = store
        .write(&[
            sample(3, paris(2026, 2, 10, 0, 30), 1e9),
            sample(3, paris(2026, 4, 30, 23, 30), 1e9),
        ])
        .await;
    match refused {
        Err(StoreError::OlderThanRetention {
            refused,
            first,
            retained_before,
        }) => {
            assert_eq!(refused, 1);
            assert_eq!(first, paris(2026, 2, 10, 0, 30));
            assert_eq!(retained_before, paris(2026, 3, 1, 0, 0));
        }
        other => panic!("expected OlderThanRetention, got {other:?}"),
    }
    assert!(
        store
            .range(
                SeriesId(3),
                paris(2026, 4, 30, 23, 0),
                paris(2026, 5, 1, 0, 0)
            )
            .await
            .expect("range")
            .iter()
            .all(|p| p.value != 1e9),
        "nothing of the refused batch was written"
    );
    assert_eq!(
        store.aggregate(&monthly).await.expect("monthly")[1],
        before_monthly[1]
    );
}

#[tokio::test]
async fn writing_the_same_batch_twice_leaves_the_same_rollups() {
    let (_dir, store) = sqlite_store();
    let t0 = paris(2026, 6, 1, 0, 0);
    let batch: Vec<Sample> = (0..500)
        .rev()
        .map(|i| sample(4 + i % 3, t0.plus_millis(i * 900_000), (i * 7 % 50) as f64))
        .collect();
    let first = store.write(&batch).await.expect("first");
    assert_eq!(first.inserted, 500);
    let query = |agg| {
        bucket_query(
            vec![SeriesId(4), SeriesId(5), SeriesId(6)],
            agg,
            date(2026, 6, 1),
            date(2026, 6, 30),
            Bucket::Day,
        )
    };
    let mut before = Vec::new();
    for agg in ALL {
        before.push(store.aggregate(&query(agg)).await.expect("aggregate"));
    }
    let second = store.write(&batch).await.expect("second");
    assert_eq!((second.inserted, second.duplicates), (0, 500));
    for (agg, want) in ALL.into_iter().zip(before) {
        assert_eq!(store.aggregate(&query(agg)).await.expect("aggregate"), want);
    }
}

#[tokio::test]
async fn live_batches_folded_into_rollups_equal_a_recomputation_bit_for_bit() {
    // A counter with resets and flat steps and a gauge, every 7 minutes across the
    // autumn DST change, written twice: in time order, 40 samples per batch (each batch
    // after everything stored: rollups are extended), and as one shuffled batch
    // (rollups recomputed from raw samples).
    let t0 = paris(2026, 10, 24, 20, 0);
    let mut samples = Vec::new();
    let mut counter = 500.0;
    for i in 0..900i64 {
        counter = match i % 37 {
            0 => 3.0,
            5 | 6 => counter,
            _ => counter + (i % 11) as f64 * 0.1,
        };
        let ts = t0.plus_millis(i * 420_000);
        samples.push(sample(1, ts, counter));
        samples.push(sample(2, ts, ((i * 13) % 29) as f64 - 4.5));
    }
    let (_a, live) = sqlite_store();
    for b in samples.chunks(40) {
        live.write(b).await.expect("live write");
    }
    let (_b, recomputed) = sqlite_store();
    let mut shuffled = samples.clone();
    shuffled.reverse();
    shuffled.swap(3, 700);
    recomputed.write(&shuffled).await.expect("write");
    for bucket in [Bucket::Hour, Bucket::Day, Bucket::Month] {
        for agg in ALL {
            for s in [vec![SeriesId(1)], vec![SeriesId(2)]] {
                let q = bucket_query(s, agg, date(2026, 10, 24), date(2026, 10, 28), bucket);
                let got = live.aggregate(&q).await.expect("live");
                assert_eq!(
                    got,
                    recomputed.aggregate(&q).await.expect("recomputed"),
                    "{agg:?} {bucket:?}"
                );
                assert_matches_reference(live.as_ref(), &q).await;
            }
        }
    }
}
