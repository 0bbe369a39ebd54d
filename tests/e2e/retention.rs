//! Raw retention through the real binary: `vigie run` with
//! `storage.raw_retention_days` deletes raw samples older than the window at start-up
//! (then daily) while daily and monthly consumption stay the same; a sample published
//! later for a deleted day is quarantined as `older_than_retention`, not lost silently.

use vigie_core::Timestamp;
use vigie_core::time::local_date;

use crate::pipeline::{publish_all, wait_for};
use crate::server::{LIGHT_CONFIG, TestServer, building_of, device_of_kind};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const WINDOW_DAYS: i64 = 730;

/// [`publish_all`] for text payloads.
async fn publish(server: &TestServer, client_id: &str, topic: &str, payloads: Vec<String>) {
    let payloads = payloads.into_iter().map(String::into_bytes).collect();
    publish_all(server, client_id, topic, payloads).await;
}

fn config(retention_days: i64) -> String {
    format!("{LIGHT_CONFIG}\n[storage]\nraw_retention_days = {retention_days}\n")
}

fn rfc3339(ms: i64) -> String {
    Timestamp(ms).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_raw_samples_older_than_the_window_and_keeps_daily_and_monthly_consumption()
 {
    // Raw retention off while a meter's history around the future cut is ingested.
    let mut server = TestServer::start(&config(0), &["--demo"]).await;
    let token = server.admin_token();
    let meter = device_of_kind(&server, &token, "electricity_meter").await;
    let building = building_of(&server, &token, &meter).await;

    // Hourly index readings over 30 days centred on "now − 730 days".
    let now = Timestamp::now().0;
    let first = (now - (WINDOW_DAYS + 15) * DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let hours = 30 * 24;
    let payloads: Vec<String> = (0..hours)
        .map(|h| {
            let index = 1_000.0 + (h * 3 + h % 7) as f64 / 10.0;
            format!(
                r#"{{"ts":"{}","values":{{"electricity_kwh":{index:.1}}}}}"#,
                rfc3339(first + h * HOUR_MS)
            )
        })
        .collect();
    let topic = format!("vigie/{meter}/telemetry");
    publish(&server, "e2e-retention-history", &topic, payloads).await;

    let last = first + (hours - 1) * HOUR_MS;
    let samples_path = |from: i64, to: i64| {
        format!(
            "/api/v1/devices/{meter}/samples?quantity=electricity_kwh&from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        )
    };
    let all = samples_path(first, last + 1);
    wait_for("the history stored", async || {
        server
            .get_json(&token, &all)
            .await
            .as_array()
            .map_or(0, Vec::len)
            == hours as usize
    })
    .await;
    let (from, to) = (local_date(Timestamp(first)), local_date(Timestamp(last)));
    let consumption = |step: &str| {
        format!(
            "/api/v1/buildings/{building}/consumption?energy=electricity&from={from}&to={to}&step={step}"
        )
    };
    let daily_before = server.get_json(&token, &consumption("day")).await;
    let monthly_before = server.get_json(&token, &consumption("month")).await;
    assert!(
        daily_before
            .as_array()
            .expect("array")
            .iter()
            .filter(|d| d["value"].as_f64().is_some_and(|v| v > 0.0))
            .count()
            >= 29,
        "{daily_before}"
    );

    // Restart with a 730-day raw window: the retention task runs at start-up.
    assert!(server.stop().success());
    std::fs::write(&server.config, config(WINDOW_DAYS)).expect("config");
    server.restart(&[]).await;
    let cut_day = local_date(Timestamp(now - WINDOW_DAYS * DAY_MS));
    let cut = vigie_core::time::local_midnight(cut_day).0;
    assert!(first < cut && cut < last, "the history straddles the cut");
    wait_for("raw samples before the cut deleted", async || {
        server
            .get_json(&token, &samples_path(first, cut))
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    let kept = server.get_json(&token, &samples_path(cut, last + 1)).await;
    assert_eq!(
        kept.as_array().map(Vec::len),
        Some(((last - cut) / HOUR_MS + 1) as usize),
        "raw samples inside the window are kept"
    );
    assert!(
        server.log().contains("retention: deleted"),
        "{}",
        server.log()
    );

    // Daily and monthly consumption read rollups: unchanged.
    assert_eq!(
        server.get_json(&token, &consumption("day")).await,
        daily_before
    );
    assert_eq!(
        server.get_json(&token, &consumption("month")).await,
        monthly_before
    );

    // A late reading for a deleted day is quarantined with its reason, not dropped.
    let quarantined = r#"vigie_ingest_quarantined_total{reason="older_than_retention"}"#;
    assert_eq!(server.metric(quarantined).await, 0.0);
    publish(
        &server,
        "e2e-retention-late",
        &topic,
        vec![format!(
            r#"{{"ts":"{}","values":{{"electricity_kwh":5000.0}}}}"#,
            rfc3339(first + 30 * 60_000)
        )],
    )
    .await;
    wait_for("the late reading quarantined", async || {
        server.metric(quarantined).await == 1.0
    })
    .await;
    assert_eq!(
        server.get_json(&token, &consumption("day")).await,
        daily_before
    );
}
