//! Tests of the embedded store's write path: one transaction with a side write, the
//! recent tier and its fold, the migration of `series_latest`, open days. They use
//! real SQLite files in temporary directories and must never assert on wall time.

use super::*;

/// Whether the probe row written by [`with_probe`] is in the file.
fn probe_written(store: &SqliteStore) -> bool {
    store
        .db()
        .call_blocking(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM store_meta WHERE key = 'probe'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .expect("probe read")
        > 0
}

/// Writes `samples` with a probe row in the same transaction, then fails if asked.
fn with_probe(
    store: &SqliteStore,
    samples: &[Sample],
    fail: bool,
) -> Result<WriteReport, StoreError> {
    store
        .write_with_blocking(samples, |c| {
            c.execute(
                "INSERT INTO store_meta (key, value) VALUES ('probe', 1)",
                [],
            )?;
            if fail {
                return Err(DbError::Task("the side write failed".into()));
            }
            Ok(())
        })
        .map(|(report, ())| report)
}

fn hours_with_data(store: &SqliteStore) -> i64 {
    store
        .db()
        .call_blocking(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM rollups", [], |r| r.get::<_, i64>(0))?)
        })
        .expect("rollup read")
}

#[test]
fn a_side_write_failing_in_the_samples_transaction_commits_neither() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::new(Db::open_dir(dir.path()).expect("open"));
    let t0 = 1_772_445_600_000; // 2026-03-02 10:00 UTC
    let samples: Vec<Sample> = (0..10)
        .map(|i| Sample {
            series: SeriesId(7),
            ts: Timestamp(t0 + i * 60_000),
            value: i as f64,
        })
        .collect();
    assert!(with_probe(&store, &samples, true).is_err());
    let count = |s: &SqliteStore| s.db().call_blocking(|c| Ok(chunks::count(c)?));
    assert_eq!(count(&store).expect("count"), 0, "no sample committed");
    assert_eq!(hours_with_data(&store), 0, "no rollup committed");
    assert!(!probe_written(&store), "no side row committed");

    let report = with_probe(&store, &samples, false).expect("write");
    assert_eq!(report.inserted, 10);
    assert_eq!(count(&store).expect("count"), 10);
    assert_eq!(hours_with_data(&store), 2, "hour and day rows");
    assert!(probe_written(&store), "side row committed with the samples");
}

/// Live batches of `series` series, `per` samples each per batch, one a minute.
fn live(series: i64, batches: i64, per: i64, t0: i64) -> Vec<Vec<Sample>> {
    (0..batches)
        .map(|b| {
            (0..series * per)
                .map(|i| Sample {
                    series: SeriesId(1 + i % series),
                    ts: Timestamp(t0 + (b * per + i / series) * 60_000),
                    value: ((b * per + i) % 97) as f64,
                })
                .collect()
        })
        .collect()
}

fn all_points(store: &SqliteStore, series: i64) -> Vec<Point> {
    store
        .db()
        .call_blocking(|c| Ok(chunks::range(c, series, i64::MIN, i64::MAX)?))
        .expect("range")
}

#[test]
fn live_samples_go_through_the_recent_tier_and_its_fold_keeps_each_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::new(Db::open_dir(dir.path()).expect("open"));
    let t0 = 1_772_445_600_000;
    // 40 series × 100 samples per batch: a fold every ~8 batches.
    let batches = live(40, 20, 100, t0);
    let mut expected: Vec<Sample> = Vec::new();
    for (n, b) in batches.iter().enumerate() {
        assert_eq!(store.write_blocking(b).expect("write").inserted, 4000);
        expected.extend(b);
        let (recent, all) = store
            .db()
            .call_blocking(|c| Ok((chunks::recent_rows(c)?, chunks::count(c)?)))
            .expect("tiers");
        assert_eq!(all as usize, expected.len(), "batch {n}");
        assert!(recent < chunks::RECENT_FOLD_ROWS, "batch {n}: folded");
        // A redelivery, whatever tier holds the batch, stores nothing.
        assert_eq!(
            store.write_blocking(b).expect("again").inserted,
            0,
            "batch {n}"
        );
    }
    // A late sample between two stored ones, and one of a new series.
    let late = Sample {
        series: SeriesId(3),
        ts: Timestamp(t0 + 30_000),
        value: 1000.0,
    };
    let other = Sample {
        series: SeriesId(99),
        ts: Timestamp(t0),
        value: 1.0,
    };
    assert_eq!(
        store.write_blocking(&[late, other]).expect("late").inserted,
        2
    );
    expected.push(late);
    expected.push(other);
    for s in [1, 3, 40, 99] {
        let mut want: Vec<Point> = expected
            .iter()
            .filter(|x| x.series.0 == s)
            .map(|x| Point {
                ts: x.ts,
                value: x.value,
            })
            .collect();
        want.sort_by_key(|p| p.ts);
        assert_eq!(all_points(&store, s), want, "series {s}");
        let latest = store
            .db()
            .call_blocking(|c| Ok(chunks::latest(c, s)?))
            .expect("latest");
        assert_eq!(latest, want.last().copied(), "latest of {s}");
    }
    let count = store.db().call_blocking(|c| Ok(chunks::count(c)?));
    assert_eq!(count.expect("count"), expected.len() as u64);
}

#[test]
fn the_migration_fills_the_latest_sample_of_every_series_from_both_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_dir(dir.path()).expect("open");
    let store = SqliteStore::new(db.clone());
    let t0 = 1_772_445_600_000;
    for b in live(5, 3, 10, t0) {
        store.write_blocking(&b).expect("write");
    }
    // Series 1's samples all compacted into chunks; the others partly hot.
    store
        .compact_blocking(Timestamp(t0 + 2 * 86_400_000))
        .expect("compact");
    store
        .write_blocking(&[Sample {
            series: SeriesId(2),
            ts: Timestamp(t0 + 3 * 86_400_000),
            value: 7.0,
        }])
        .expect("write");
    let latest = |db: &Db| {
        db.call_blocking(|c| {
            chunks::fold(c)?;
            (1..=5)
                .map(|s| Ok(chunks::latest(c, s)?))
                .collect::<Result<Vec<_>, DbError>>()
        })
        .expect("latest")
    };
    let before = latest(&db);
    assert!(before.iter().all(Option::is_some));
    db.call_blocking(|c| {
        c.execute_batch(
            "DROP TABLE samples_recent; DROP TABLE series_latest; PRAGMA user_version = 6;",
        )?;
        Ok(())
    })
    .expect("back to 6");
    drop(store);
    drop(db);
    let db = Db::open_dir(dir.path()).expect("migrate");
    assert_eq!(latest(&db), before);
}

/// Daily counts of series 1 over the three days from `t0`, from rollups.
fn daily_counts(store: &SqliteStore, t0: i64) -> Vec<Option<f64>> {
    let d = crate::time::local_date(Timestamp(t0));
    let periods = crate::time::periods(
        d,
        d.succ_opt().and_then(|d| d.succ_opt()).expect("date"),
        crate::time::Bucket::Day,
    );
    store
        .db()
        .call_blocking(|c| {
            Ok(rollup::aggregate(
                c,
                &[SeriesId(1)],
                Aggregation::Count,
                &periods,
                rollup::Width::Day,
            )?)
        })
        .expect("aggregate")
        .into_iter()
        .map(|b| b.value)
        .collect()
}

#[test]
fn the_open_day_is_read_from_its_hours_and_closed_by_late_writes_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::new(Db::open_dir(dir.path()).expect("open"));
    let t0 = crate::time::local_midnight(crate::time::local_date(Timestamp(1_772_445_600_000))).0;
    let at = |minutes: i64, v: f64| Sample {
        series: SeriesId(1),
        ts: Timestamp(t0 + minutes * 60_000),
        value: v,
    };
    // First write (recomputed), then live batches in the same day (appended: the
    // day's stored row is left stale, reads merge its hours).
    store.write_blocking(&[at(10, 1.0)]).expect("first");
    store
        .write_blocking(&[at(20, 2.0), at(30, 3.0)])
        .expect("live");
    assert_eq!(
        daily_counts(&store, t0),
        vec![Some(3.0), Some(0.0), Some(0.0)]
    );
    // A redelivered sample and one on the next day, in one batch: not appended,
    // and no hour of the first day changes; the first day closes all the same.
    store
        .write_blocking(&[at(30, 3.0), at(24 * 60 + 5, 4.0)])
        .expect("redelivery");
    assert_eq!(
        daily_counts(&store, t0),
        vec![Some(3.0), Some(1.0), Some(0.0)]
    );
    // A late sample in the closed day: recomputed.
    store.write_blocking(&[at(15, 9.0)]).expect("late");
    assert_eq!(
        daily_counts(&store, t0),
        vec![Some(4.0), Some(1.0), Some(0.0)]
    );
    // Live into the second day, then into the third: the second closes.
    store
        .write_blocking(&[at(24 * 60 + 50, 5.0)])
        .expect("live 2");
    store
        .write_blocking(&[at(48 * 60 + 1, 6.0)])
        .expect("live 3");
    assert_eq!(
        daily_counts(&store, t0),
        vec![Some(4.0), Some(2.0), Some(1.0)]
    );
    // Retention past every sample: the open (third) day keeps its count.
    store
        .retain_blocking(Timestamp(t0 + 4 * 86_400_000))
        .expect("retain");
    assert_eq!(
        daily_counts(&store, t0),
        vec![Some(4.0), Some(2.0), Some(1.0)]
    );
}
