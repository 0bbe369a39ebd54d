//! `vigie export`: the embedded store's history, to CSV and to a real VictoriaMetrics.

use std::time::{Duration, Instant};

use crate::server::TestServer;
use crate::victoria::VictoriaMetrics;

const SMALL_HISTORY: &str = r#"
[simulator]
buildings = 1
backfill_days = 3
interval = "1h"
"#;

/// Runs vigie with three days of simulated history, waits until the backfill is in,
/// and stops it so that the store no longer changes.
async fn server_with_history() -> TestServer {
    let mut server = TestServer::start(SMALL_HISTORY, &["--demo"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.stored_samples().await;
        if now > 1_000 && now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backfill did not settle ({now} samples)"
        );
        last = now;
    }
    assert!(server.stop().success());
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_holds_every_stored_sample_once() {
    let server = server_with_history().await;
    let stored = server.stored_samples().await;
    let file = server.dir.path().join("export.csv");
    let out = server.vigie(&["export", "csv", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(&file).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("series,ts,value"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as u64, stored);
    let distinct: std::collections::HashSet<(&str, &str)> = rows
        .iter()
        .filter_map(|r| {
            let mut f = r.split(',');
            Some((f.next()?, f.next()?))
        })
        .collect();
    assert_eq!(distinct.len(), rows.len(), "a (series, ts) appears twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_victoriametrics_checks_counts_per_series() {
    let Some(victoria) = VictoriaMetrics::start("the export to VictoriaMetrics").await else {
        return;
    };
    let vm = victoria.url.clone();
    let server = server_with_history().await;
    let stored = server.stored_samples().await;
    let out = server
        .vigie_command(&["export", "tsdb"])
        .env("VIGIE_TSDB_URL", &vm)
        .env("VIGIE_TSDB_DIALECT", "prometheus")
        .env("VIGIE_TSDB_ORG", "vigie")
        .env("VIGIE_TSDB_BUCKET", "vigie")
        .env("VIGIE_TSDB_TOKEN", "unused")
        .output()
        .expect("run vigie export");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{stored} in the source, {stored} in the destination"
        )),
        "{stdout}"
    );
}
