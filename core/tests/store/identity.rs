//! A series on a shared remote server is found by its natural key (quantity + device),
//! not by its local series id: two installations whose registries gave id 1 to
//! different devices each read back only their own device, and an installation
//! re-created from scratch (another id for the same device) reads the device's history.
//! A device that moves to another building keeps it. Runs against the real
//! VictoriaMetrics named by `VIGIE_TEST_VICTORIAMETRICS_URL`, with real registries in
//! temporary directories; skipped with a message when the variable is unset.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigie_core::config::TsdbConfig;
use vigie_core::db::Db;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry};
use vigie_core::store::{
    Aggregation, Point, RemoteStore, Sample, TimeSeriesStore, aggregate_points, bucket_query,
};
use vigie_core::time::Bucket;
use vigie_core::{DeviceId, Quantity, SeriesId, Timestamp};

use crate::common::{close, date, paris};

/// One vigie installation: its data directory and registry.
struct Installation {
    _dir: tempfile::TempDir,
    registry: Registry,
}

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

impl Installation {
    /// A fresh data directory with a member, two buildings, and `devices` (electricity
    /// meters in `mairie`) registered in that order; returns their series ids.
    async fn new(devices: &[&str]) -> (Installation, Vec<SeriesId>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new(Db::open_dir(dir.path()).expect("open db"));
        registry
            .upsert_member(&Member {
                id: parse("commune-a"),
                name: "Commune A".into(),
                kind: "commune".into(),
            })
            .await
            .expect("member");
        for b in ["mairie", "ecole"] {
            registry
                .upsert_building(&Building {
                    id: parse(b),
                    member_id: parse("commune-a"),
                    name: b.into(),
                    address: String::new(),
                    floor_area_m2: None,
                    usage: "bureaux".into(),
                    gas_pcs_kwh_per_m3: 11.2,
                })
                .await
                .expect("building");
        }
        let inst = Installation {
            _dir: dir,
            registry,
        };
        let mut ids = Vec::new();
        for d in devices {
            inst.place(d, "mairie").await;
            let series = inst
                .registry
                .series_id(&parse::<DeviceId>(d), Quantity::ElectricityKwh)
                .await
                .expect("series");
            ids.push(series);
        }
        (inst, ids)
    }

    /// Installs (or moves) `device` in `building`.
    async fn place(&self, device: &str, building: &str) {
        self.registry
            .upsert_device(&Device::new(
                parse(device),
                Some(parse(building)),
                DeviceKind::ElectricityMeter,
            ))
            .await
            .expect("device");
    }

    /// A remote store on `url` tagging from this registry (a fresh tag cache, as after
    /// a restart).
    fn store(&self, url: &str) -> RemoteStore {
        let config = TsdbConfig {
            url: url.into(),
            token: String::new(),
            org: "vigie".into(),
            bucket: "vigie".into(),
            dialect: "prometheus".into(),
        };
        RemoteStore::new(&config, Arc::new(self.registry.clone())).expect("remote store")
    }
}

/// An index every 30 minutes from `from`, starting at `start`, rising by `step`.
fn index(series: SeriesId, from: Timestamp, n: i64, start: f64, step: f64) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            series,
            ts: from.plus_millis(i * 1_800_000),
            value: start + step * i as f64,
        })
        .collect()
}

fn points(samples: &[Sample]) -> Vec<Point> {
    let m: BTreeMap<Timestamp, f64> = samples.iter().map(|s| (s.ts, s.value)).collect();
    m.into_iter()
        .map(|(ts, value)| Point { ts, value })
        .collect()
}

/// Reads of `series` on `store` give exactly `want` (range, latest, and daily
/// consumption, which also reads the last value before the first day).
async fn reads_exactly(store: &RemoteStore, series: SeriesId, want: &[Point], who: &str) {
    let got = store
        .range(series, paris(2025, 1, 1, 0, 0), paris(2027, 1, 1, 0, 0))
        .await
        .expect("range");
    assert_eq!(got, want, "{who}: range");
    let latest = store.latest(&[series]).await.expect("latest");
    assert_eq!(
        latest,
        want.last()
            .map(|p| (series, *p))
            .into_iter()
            .collect::<Vec<_>>(),
        "{who}: latest"
    );
    let q = bucket_query(
        vec![series],
        Aggregation::Consumption,
        date(2026, 1, 11),
        date(2026, 1, 13),
        Bucket::Day,
    );
    let expected = aggregate_points(&[want.to_vec()], q.aggregation, &q.periods);
    let days = store.aggregate(&q).await.expect("aggregate");
    assert_eq!(days.len(), expected.len(), "{who}: days");
    for (g, w) in days.iter().zip(&expected) {
        assert!(
            close(g.value, w.value),
            "{who}: {}: got {:?}, want {:?}",
            g.period,
            g.value,
            w.value
        );
    }
}

#[tokio::test]
async fn installations_sharing_a_server_read_their_own_devices_by_device_not_by_series_id() {
    let Ok(url) = std::env::var("VIGIE_TEST_VICTORIAMETRICS_URL") else {
        eprintln!(
            "SKIPPED installations_sharing_a_server_read_their_own_devices_by_device_not_by_series_id: \
             VIGIE_TEST_VICTORIAMETRICS_URL is not set (start VictoriaMetrics and set it, as .ci/run does)"
        );
        return;
    };
    let url = url.trim_end_matches('/').to_string();
    let _guard = crate::common::VM_LOCK.lock().await;
    let base = crate::common::fresh_base();
    let (a, b, c) = (
        format!("meter-a.{base}"),
        format!("meter-b.{base}"),
        format!("meter-c.{base}"),
    );

    // Production and staging: each registry's first series, id 1, is another device.
    let (production, ids) = Installation::new(&[&a]).await;
    let a_id = ids[0];
    let (staging, ids) = Installation::new(&[&b]).await;
    let b_id = ids[0];
    assert_eq!(a_id, b_id, "the test needs colliding series ids");

    // Two days of both, at the same instants; staging also half-way between.
    let from = paris(2026, 1, 11, 0, 0);
    let a_history = index(a_id, from, 96, 1_000.0, 0.5);
    let mut b_history = index(b_id, from, 96, 50_000.0, 3.0);
    b_history.extend(index(b_id, from.plus_millis(900_000), 96, 60_000.0, 1.0));
    let (prod_store, staging_store) = (production.store(&url), staging.store(&url));
    prod_store.write(&a_history).await.expect("write A");
    staging_store.write(&b_history).await.expect("write B");
    prod_store.flush().await.expect("flush");

    reads_exactly(
        &prod_store,
        a_id,
        &points(&a_history),
        "production, device A",
    )
    .await;
    reads_exactly(
        &staging_store,
        b_id,
        &points(&b_history),
        "staging, device B",
    )
    .await;

    // Still written with the `series` tag (and the building), next to the device.
    let export = reqwest::Client::new()
        .post(format!("{url}/api/v1/export"))
        .form(&[("match[]", format!("{{device=\"{a}\"}}"))])
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("export body");
    let first: serde_json::Value =
        serde_json::from_str(export.lines().next().expect("a stored series")).expect("json");
    assert_eq!(first["metric"]["series"], a_id.0.to_string(), "{export}");
    assert_eq!(first["metric"]["building"], "mairie", "{export}");
    assert_eq!(first["metric"]["__name__"], "electricity_kwh_value");

    // Production re-created from scratch: device C registered first takes id 1, A gets
    // another id, and reads A's history; C, with the id A and B had, reads nothing.
    let (reinstalled, ids) = Installation::new(&[&c, &a]).await;
    let (c_new, a_new) = (ids[0], ids[1]);
    assert_eq!(c_new, a_id);
    assert_ne!(a_new, a_id);
    let reinstalled_store = reinstalled.store(&url);
    reads_exactly(
        &reinstalled_store,
        a_new,
        &points(&a_history),
        "reinstalled, device A",
    )
    .await;
    reads_exactly(&reinstalled_store, c_new, &[], "reinstalled, device C").await;

    // A moves to the school: its next samples carry another building, one history.
    production.place(&a, "ecole").await;
    let moved_store = production.store(&url);
    let later = index(a_id, from.plus_millis(96 * 1_800_000), 4, 1_100.0, 1.0);
    moved_store
        .write(&later)
        .await
        .expect("write after the move");
    moved_store.flush().await.expect("flush");
    let mut whole = a_history.clone();
    whole.extend(later);
    reads_exactly(&moved_store, a_id, &points(&whole), "after the move").await;
    reads_exactly(
        &reinstalled.store(&url),
        a_new,
        &points(&whole),
        "reinstalled, after the move",
    )
    .await;
}
