//! The remote store in the Flux dialect, over real HTTP against a scripted server.
//!
//! No InfluxDB 2 server can be installed on the build machines, so this server answers
//! `/api/v2/query` with responses in InfluxDB's documented annotated-CSV format
//! (<https://docs.influxdata.com/influxdb/v2/reference/syntax/annotated-csv/>) and
//! records what the store sent to `/api/v2/write` and `/api/v2/query`. Everything
//! else of the remote backend is tested against a real VictoriaMetrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use vigie_core::config::TsdbConfig;
use vigie_core::store::{RemoteStore, SeriesTags, StaticLabels, TimeSeriesStore};
use vigie_core::{SeriesId, Timestamp};

use crate::common::sample;

/// One request the scripted server received.
#[derive(Debug, Clone)]
struct Request {
    target: String,
    headers: HashMap<String, String>,
    body: String,
    /// The Flux query of a `/api/v2/query` request.
    query: String,
}

const RANGE_CSV: &str = "#group,false,false,false,false\r
#datatype,string,long,dateTime:RFC3339,double\r
#default,_result,,,\r
,result,table,_time,_value\r
,,0,2026-11-01T10:00:00Z,100.5\r
,,0,2026-11-01T10:10:00.250Z,101\r
\r
";

// The latest point of each stored series the filter matched: meter-1 under its id
// (42) and under the id an earlier installation gave it (5, from another building,
// newer); series 43 without a device; and a stored series that must not be taken for
// anything asked: another installation's series 42, another device (meter-9).
const LATEST_CSV: &str = "#group,false,false,true,true,true,false,false\r
#datatype,string,long,string,string,string,dateTime:RFC3339,double\r
#default,_result,,,,,,\r
,result,table,_measurement,device,series,_time,_value\r
,,0,electricity_kwh,meter-1,42,2026-11-01T10:10:00Z,101\r
,,1,electricity_kwh,meter-1,5,2026-11-01T10:20:00Z,102\r
,,2,electricity_kwh,meter-9,42,2026-11-01T11:00:00Z,999\r
\r
#group,false,false,true,true,false,false\r
#datatype,string,long,string,string,dateTime:RFC3339,double\r
#default,_result,,,,,\r
,result,table,_measurement,series,_time,_value\r
,,3,vigie,43,2026-11-01T09:00:00Z,19.5\r
\r
";

const COUNT_CSV: &str = "#group,false,false,false\r
#datatype,string,long,long\r
#default,_result,,\r
,result,table,_value\r
,,0,1234\r
\r
";

async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<Request>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    stream.read_line(&mut h).await.expect("header");
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                stream.read_exact(&mut body).await.expect("body");
                let body = String::from_utf8_lossy(&body).to_string();
                let query = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["query"].as_str().map(String::from))
                    .unwrap_or_default();
                let (status, answer) = if target.starts_with("/api/v2/write") {
                    ("204 No Content", "")
                } else if target.starts_with("/health") {
                    ("200 OK", "{\"status\":\"pass\"}")
                } else if query.contains("count()") {
                    ("200 OK", COUNT_CSV)
                } else if query.contains("keep(columns: [\"_measurement\"") {
                    ("200 OK", LATEST_CSV)
                } else {
                    ("200 OK", RANGE_CSV)
                };
                seen.lock().expect("lock").push(Request {
                    target,
                    headers,
                    body,
                    query,
                });
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                stream
                    .get_mut()
                    .write_all(resp.as_bytes())
                    .await
                    .expect("write");
            }
        });
    }
}

async fn flux_store() -> (RemoteStore, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(serve(listener, seen.clone()));
    let mut labels = StaticLabels::default();
    labels.0.insert(
        SeriesId(42),
        SeriesTags {
            series: SeriesId(42),
            measurement: "electricity_kwh".into(),
            device: Some("meter-1".into()),
            building: Some("mairie".into()),
            member: Some("commune-a".into()),
        },
    );
    let config = TsdbConfig {
        url: format!("http://{addr}"),
        token: "s3cret".into(),
        org: "agency".into(),
        bucket: "vigie".into(),
        dialect: "flux".into(),
    };
    (
        RemoteStore::new(&config, Arc::new(labels)).expect("store"),
        seen,
    )
}

#[tokio::test]
async fn writes_are_line_protocol_in_milliseconds_with_registry_tags() {
    let (store, seen) = flux_store().await;
    let ts = Timestamp::parse_rfc3339("2026-11-01T10:00:00Z").expect("ts");
    store
        .write(&[sample(42, ts, 100.5), sample(7, ts, 3.0)])
        .await
        .expect("write");
    let reqs = seen.lock().expect("lock").clone();
    let w = reqs
        .iter()
        .find(|r| r.target.starts_with("/api/v2/write"))
        .expect("a write");
    assert!(w.target.contains("precision=ms"), "{}", w.target);
    assert!(
        w.target.contains("bucket=vigie") && w.target.contains("org=agency"),
        "{}",
        w.target
    );
    assert_eq!(
        w.headers.get("authorization").map(String::as_str),
        Some("Token s3cret")
    );
    assert_eq!(
        w.body,
        "electricity_kwh,building=mairie,device=meter-1,member=commune-a,series=42 value=100.5 1793527200000\n\
         vigie,series=7 value=3.0 1793527200000\n"
    );
}

#[tokio::test]
async fn flux_answers_in_annotated_csv_become_points() {
    let (store, seen) = flux_store().await;
    let from = Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").expect("ts");
    let pts = store
        .range(SeriesId(42), from, from.plus_millis(86_400_000))
        .await
        .expect("range");
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[1].ts.to_rfc3339(), "2026-11-01T10:10:00.250Z");
    assert_eq!(pts[1].value, 101.0);
    let q = seen.lock().expect("lock").last().cloned().expect("query");
    assert!(
        q.target.starts_with("/api/v2/query?org=agency"),
        "{}",
        q.target
    );
    // Selected by its device (a series id is local to one installation).
    assert!(
        q.query.contains(
            r#"filter(fn: (r) => r._field == "value" and r._measurement == "electricity_kwh" and r.device == "meter-1")"#
        ),
        "{}",
        q.query
    );
    assert!(!q.query.contains("r.series"), "{}", q.query);
    assert!(
        q.query
            .contains("range(start: 2026-11-01T00:00:00.000Z, stop: 2026-11-02T00:00:00.000Z)"),
        "{}",
        q.query
    );

    // A series the registry does not know: by its measurement and id.
    store
        .range(SeriesId(43), from, from.plus_millis(86_400_000))
        .await
        .expect("range");
    let q = seen.lock().expect("lock").last().cloned().expect("query");
    assert!(
        q.query
            .contains(r#"r._measurement == "vigie" and r.series == "43")"#),
        "{}",
        q.query
    );

    let latest = store
        .latest(&[SeriesId(43), SeriesId(42)])
        .await
        .expect("latest");
    let q = seen.lock().expect("lock").last().cloned().expect("query");
    assert!(
        q.query.contains(
            r#"((r._measurement == "vigie" and r.series == "43") or (r._measurement == "electricity_kwh" and r.device == "meter-1"))"#
        ),
        "{}",
        q.query
    );
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].0, SeriesId(43));
    assert_eq!(latest[0].1.value, 19.5);
    // meter-1's newest point, whatever id it was written under; never meter-9's.
    assert_eq!(latest[1].0, SeriesId(42));
    assert_eq!(latest[1].1.ts.to_rfc3339(), "2026-11-01T10:20:00Z");
    assert_eq!(latest[1].1.value, 102.0);

    assert_eq!(store.count().await.expect("count"), 1234);
    store.ping().await.expect("ping");
}
