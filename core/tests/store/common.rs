//! Helpers shared by the store tests: temporary stores, Paris instants, tolerant
//! float comparison.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone};
use vigie_core::config::TsdbConfig;
use vigie_core::db::Db;
use vigie_core::store::{RemoteStore, Sample, SqliteStore, StaticLabels, TimeSeriesStore};
use vigie_core::time::PARIS;
use vigie_core::{SeriesId, Timestamp};

/// An embedded store over a fresh file; keep the directory alive as long as the store.
pub(crate) fn sqlite_store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_dir(dir.path()).expect("open db");
    (dir, Arc::new(SqliteStore::new(db)))
}

/// A local date.
pub(crate) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// A Paris wall-clock instant (the earliest one when ambiguous).
pub(crate) fn paris(y: i32, m: u32, d: u32, h: u32, min: u32) -> Timestamp {
    let naive = date(y, m, d).and_hms_opt(h, min, 0).expect("valid time");
    Timestamp(
        PARIS
            .from_local_datetime(&naive)
            .earliest()
            .expect("instant exists")
            .timestamp_millis(),
    )
}

/// A sample.
pub(crate) fn sample(series: i64, ts: Timestamp, value: f64) -> Sample {
    Sample {
        series: SeriesId(series),
        ts,
        value,
    }
}

/// Whether two optional aggregates agree up to float summation order.
pub(crate) fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Serialises the tests that share one VictoriaMetrics (they compare global counts).
pub(crate) static VM_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A series-id base no earlier run against a shared server used.
pub(crate) fn fresh_base() -> i64 {
    (Timestamp::now().0 % 1_000_000_000) * 1_000
}

/// A remote store on the VictoriaMetrics named by `VIGIE_TEST_VICTORIAMETRICS_URL`,
/// or `None` when the variable is unset.
pub(crate) fn vm_store(dialect: &str) -> Option<(String, Arc<dyn TimeSeriesStore>)> {
    let url = std::env::var("VIGIE_TEST_VICTORIAMETRICS_URL").ok()?;
    let url = url.trim_end_matches('/').to_string();
    let config = TsdbConfig {
        url: url.clone(),
        token: String::new(),
        org: "vigie".into(),
        bucket: "vigie".into(),
        dialect: dialect.into(),
    };
    let store = RemoteStore::new(&config, Arc::new(StaticLabels::default())).expect("remote store");
    Some((url, Arc::new(store)))
}
