//! Time-series store benchmark: write throughput, bytes per sample and query latency of
//! the embedded store and, when `VIGIE_BENCH_VICTORIAMETRICS_URL` is set, of
//! VictoriaMetrics side by side on the same data, in one run.
//!
//! Data: 10 series × `VIGIE_BENCH_YEARS` (default 5) years at 10-minute steps, 10,000
//! series with one day each at 10-minute steps, one series with a month at one-minute
//! steps. Queries: (a) a year of daily consumption of one building's three energies,
//! (b) a month of raw one-minute data of one series, (c) the latest value of 10,000
//! series. Prints figures; asserts nothing about time.
//!
//! Also, on a fresh file: the write pattern of `vigie bench ingest` (400 gauge series,
//! batches of 2,000 samples = 500 messages of 4 values, one-minute steps), the store's
//! share of an ingest commit. `VIGIE_BENCH_ONLY=ingest` runs only that part.
//!
//! Run: `cargo bench -p vigie-core --bench store` (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vigie_core::config::TsdbConfig;
use vigie_core::db::Db;
use vigie_core::store::{
    Aggregation, RemoteStore, Sample, SqliteStore, StaticLabels, TimeSeriesStore, bucket_query,
};
use vigie_core::time::{Bucket, local_midnight};
use vigie_core::{SeriesId, Timestamp};

const STEP: i64 = 600_000;
const DAY: i64 = 86_400_000;

struct Data {
    long: Vec<Vec<Sample>>,
    wide: Vec<Vec<Sample>>,
    minute: Vec<Vec<Sample>>,
    samples: u64,
}

fn date(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// The benchmark data for series ids starting at `base`, in write batches.
fn data(base: i64, years: i64) -> Data {
    let end = local_midnight(date(2026, 11, 1)).0;
    let start = end - years * 365 * DAY;
    let mut long = Vec::new();
    let mut batch = Vec::with_capacity(5_000);
    let mut t = start;
    // Meter indexes in tenths, as meters send them (decimal text).
    let mut tenths = [0i64; 10];
    while t < end {
        for (s, idx) in tenths.iter_mut().enumerate() {
            *idx += (t / STEP + s as i64) % 13;
            batch.push(Sample {
                series: SeriesId(base + 1 + s as i64),
                ts: Timestamp(t),
                value: *idx as f64 / 10.0,
            });
        }
        if batch.len() >= 5_000 {
            long.push(std::mem::take(&mut batch));
        }
        t += STEP;
    }
    long.push(batch);
    // Live pattern: every batch is one sample of each of 10,000 series.
    let day = end - DAY;
    let wide = (0..144)
        .map(|i| {
            (0..10_000)
                .map(|s| Sample {
                    series: SeriesId(base + 100 + s),
                    ts: Timestamp(day + i * STEP),
                    value: (i * 7 + s) as f64 % 50.0,
                })
                .collect()
        })
        .collect();
    let month = end - 30 * DAY;
    let minute: Vec<Sample> = (0..30 * 1_440)
        .map(|i| Sample {
            series: SeriesId(base + 50),
            ts: Timestamp(month + i * 60_000),
            value: 20.0 + (i % 90) as f64 / 10.0,
        })
        .collect();
    let minute = minute.chunks(5_000).map(<[Sample]>::to_vec).collect();
    let samples = (10 * (end - start) / STEP + 144 * 10_000 + 30 * 1_440) as u64;
    Data {
        long,
        wide,
        minute,
        samples,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn timed<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm-up
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    median(v)
}

struct Figures {
    name: &'static str,
    write_bulk: f64,
    write_live: f64,
    bytes_per_sample: Option<f64>,
    a: Duration,
    b: Duration,
    c: Duration,
}

async fn write_all(store: &dyn TimeSeriesStore, batches: &[Vec<Sample>]) -> (u64, Duration) {
    let t = Instant::now();
    let mut n = 0;
    for b in batches {
        store.write(b).await.expect("write");
        n += b.len() as u64;
    }
    (n, t.elapsed())
}

async fn run(
    name: &'static str,
    store: Arc<dyn TimeSeriesStore>,
    d: &Data,
    base: i64,
    size: impl AsyncFnOnce() -> Option<(u64, u64)>,
) -> Figures {
    let (n1, t1) = write_all(store.as_ref(), &d.long).await;
    let (n2, t2) = write_all(store.as_ref(), &d.wide).await;
    let (n3, t3) = write_all(store.as_ref(), &d.minute).await;
    store.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_secs(if name == "sqlite" { 0 } else { 2 })).await;
    let bytes = size().await.map(|(b, n)| b as f64 / n.max(1) as f64);
    println!(
        "{name}: wrote {} samples ({n1} long + {n2} wide + {n3} one-minute)",
        n1 + n2 + n3
    );
    let _ = t3;
    let year = date(2025, 11, 1);
    let queries: Vec<_> = (1..=3)
        .map(|s| {
            bucket_query(
                vec![SeriesId(base + s)],
                Aggregation::Consumption,
                year,
                date(2026, 10, 31),
                Bucket::Day,
            )
        })
        .collect();
    let check = store.aggregate(&queries[0]).await.expect("a");
    assert_eq!(check.len(), 365);
    let a = timed(30, || {
        let (store, queries) = (store.clone(), queries.clone());
        async move {
            for q in &queries {
                store.aggregate(q).await.expect("aggregate");
            }
        }
    })
    .await;
    let end = local_midnight(date(2026, 11, 1));
    let from = end.plus_millis(-30 * DAY);
    let got = store
        .range(SeriesId(base + 50), from, end)
        .await
        .expect("range")
        .len();
    assert_eq!(got, 30 * 1_440, "{name}: one-minute month");
    let b = timed(20, || {
        let store = store.clone();
        async move {
            store
                .range(SeriesId(base + 50), from, end)
                .await
                .expect("range");
        }
    })
    .await;
    let ids: Vec<SeriesId> = (0..10_000).map(|s| SeriesId(base + 100 + s)).collect();
    assert_eq!(
        store.latest(&ids).await.expect("latest").len(),
        10_000,
        "{name}: latest"
    );
    let c = timed(10, || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            store.latest(&ids).await.expect("latest");
        }
    })
    .await;
    Figures {
        name,
        write_bulk: n1 as f64 / t1.as_secs_f64(),
        write_live: n2 as f64 / t2.as_secs_f64(),
        bytes_per_sample: bytes,
        a,
        b,
        c,
    }
}

/// VictoriaMetrics' bytes on disk (data and index) and rows stored, from `/metrics`.
async fn vm_storage(url: &str) -> Option<(u64, u64)> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Some((sum("vm_data_size_bytes{"), sum("vm_rows{type=\"storage/")))
}

fn print(figs: &[Figures]) {
    println!(
        "\n| figure | {} |",
        figs.iter().map(|f| f.name).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", "---|".repeat(figs.len()));
    let row = |label: &str, f: &dyn Fn(&Figures) -> String| {
        println!(
            "| {label} | {} |",
            figs.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    };
    row("write, bulk history (samples/s)", &|f| {
        format!("{:.0}", f.write_bulk)
    });
    row("write, live 10,000-series batches (samples/s)", &|f| {
        format!("{:.0}", f.write_live)
    });
    row(
        "bytes per raw sample (SQLite: samples + chunks tables; VM: data + index)",
        &|f| {
            f.bytes_per_sample
                .map_or("n/a".into(), |b| format!("{b:.1}"))
        },
    );
    row("(a) year of daily consumption, 3 energies (median)", &|f| {
        format!("{:.2} ms", f.a.as_secs_f64() * 1e3)
    });
    row("(b) month of one-minute raw data (median)", &|f| {
        format!("{:.2} ms", f.b.as_secs_f64() * 1e3)
    });
    row("(c) latest of 10,000 series (median)", &|f| {
        format!("{:.2} ms", f.c.as_secs_f64() * 1e3)
    });
}

/// The write pattern of `vigie bench ingest`: 100 devices × 4 gauges, one sample a
/// minute each, `minutes` × 100 messages (× 4 samples) per batch; returns (samples/s,
/// mean ms per batch).
async fn ingest_pattern(batches: usize, minutes: i64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::new(Db::open_dir(dir.path()).expect("db"));
    let start = Timestamp::now().0 - (batches as i64 * minutes + 1) * 60_000;
    let batches: Vec<Vec<Sample>> = (0..batches as i64)
        .map(|b| {
            (0..minutes * 100 * 4)
                .map(|i| Sample {
                    series: SeriesId(1 + i % 400),
                    ts: Timestamp(start + (b * minutes + i / 400) * 60_000),
                    value: 19.0 + ((b * minutes + i) % 50) as f64 / 10.0,
                })
                .collect()
        })
        .collect();
    let (n, t) = write_all(&store, &batches).await;
    (
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64() * 1e3 / batches.len() as f64,
    )
}

#[tokio::main]
async fn main() {
    for (batches, minutes) in [(200, 5), (100, 10)] {
        let (rate, per_batch) = ingest_pattern(batches, minutes).await;
        println!(
            "sqlite, ingest pattern (400 series, {} samples per batch, {batches} batches): {rate:.0} samples/s, {per_batch:.2} ms per batch",
            minutes * 400
        );
    }
    if std::env::var("VIGIE_BENCH_ONLY").is_ok_and(|v| v == "ingest") {
        return;
    }
    let years: i64 = std::env::var("VIGIE_BENCH_YEARS")
        .ok()
        .and_then(|y| y.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_dir(dir.path()).expect("db");
    let sqlite = Arc::new(SqliteStore::new(db.clone()));
    let d = data(0, years);
    println!(
        "data: {} samples ({years} years × 10 series, 10,000 × 1 day, 1 × 30 days at 1 min)",
        d.samples
    );
    let path = db.path().to_path_buf();
    let compactor = sqlite.clone();
    let size = async || {
        // The steady state: days before yesterday compacted (writes do it every
        // COMPACT_EVERY samples; this finishes the last round).
        let moved = compactor
            .compact_blocking(Timestamp::now().plus_millis(-DAY))
            .ok()?;
        let (bytes, samples) = compactor.storage_blocking().ok()?;
        let tables = db
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC",
                )?;
                let rows =
                    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .ok()?;
        let raw: i64 = tables
            .iter()
            .filter(|(n, _)| n == "samples" || n == "sample_chunks")
            .map(|(_, b)| b)
            .sum();
        println!(
            "sqlite: last compaction moved {moved}; file in use {bytes} bytes for {samples} samples"
        );
        for (name, b) in tables.iter().take(4) {
            println!(
                "  {name}: {b} bytes ({:.2} per sample)",
                *b as f64 / samples as f64
            );
        }
        Some((raw as u64, samples))
    };
    let mut figs = vec![run("sqlite", sqlite.clone(), &d, 0, size).await];
    println!("embedded file: {}", path.display());
    if let Ok(url) = std::env::var("VIGIE_BENCH_VICTORIAMETRICS_URL") {
        let url = url.trim_end_matches('/').to_string();
        let base = (Timestamp::now().0 % 1_000_000) * 100_000;
        let d = data(base, years);
        let config = TsdbConfig {
            url: url.clone(),
            token: String::new(),
            org: "vigie".into(),
            bucket: "vigie".into(),
            dialect: "prometheus".into(),
        };
        let vm =
            Arc::new(RemoteStore::new(&config, Arc::new(StaticLabels::default())).expect("vm"));
        let size = async || {
            // Whole server: bytes of data and index over rows stored, after merges had
            // a few seconds (other data on the server counts too).
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (bytes, rows) = vm_storage(&url).await?;
            println!("victoriametrics: {bytes} bytes for {rows} rows on the server");
            Some((bytes, rows))
        };
        figs.push(run("victoriametrics", vm, &d, base, size).await);
    } else {
        println!("VictoriaMetrics skipped: VIGIE_BENCH_VICTORIAMETRICS_URL is not set");
    }
    print(&figs);
}
