//! A running ingest over a real broker and a real store, and a real publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vigie_core::db::Db;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{Building, Device, DeviceKind, Member, Registry};
use vigie_core::store::{Point, SqliteStore, TimeSeriesStore};
use vigie_core::{BuildingId, DeviceId, MemberId, Quantity};
use vigie_ingest::{EmbeddedBroker, IngestError, IngestOptions};

/// How long a test waits for something before it fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Devices provisioned in every harness.
pub(crate) const DEVICES: [&str; 2] = ["elec-01", "aq-01"];

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) struct Harness {
    pub(crate) broker: EmbeddedBroker,
    pub(crate) registry: Registry,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// Ingest's MQTT client id.
    pub(crate) client_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    ingest: Option<JoinHandle<Result<(), IngestError>>>,
    dir: tempfile::TempDir,
}

impl Harness {
    /// Broker on a free port, store with one member, one building and [`DEVICES`],
    /// ingest running and subscribed.
    pub(crate) async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tune: impl FnOnce(&mut IngestOptions)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_dir(dir.path()).expect("open db");
        let registry = Registry::new(db.clone());
        provision(&registry).await;
        let store = Arc::new(SqliteStore::new(db));
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), 1 << 20)
            .expect("embedded broker");
        let mut opts = IngestOptions::new("127.0.0.1", broker.addr().port());
        opts.client_id = unique("ingest");
        tune(&mut opts);
        let client_id = opts.client_id.clone();
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = oneshot::channel::<()>();
        let ingest = tokio::spawn(vigie_ingest::run(
            opts,
            registry.clone(),
            store.clone() as Arc<dyn TimeSeriesStore>,
            metrics.clone(),
            async {
                let _ = rx.await;
            },
        ));
        let h = Harness {
            broker,
            registry,
            store,
            metrics,
            client_id,
            shutdown: Some(tx),
            ingest: Some(ingest),
            dir,
        };
        let m = h.metrics.clone();
        wait_for("ingest subscribed", || {
            let m = m.clone();
            async move { m.mqtt_connected.load(Ordering::Relaxed) }
        })
        .await;
        h
    }

    /// Asks ingest to stop and returns what `run` returned.
    pub(crate) async fn stop(&mut self) -> Result<(), IngestError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.ingest.take().expect("ingest still running");
        tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("ingest stops within the deadline")
            .expect("ingest task did not panic")
    }

    /// The SQLite file ingest writes to.
    pub(crate) fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("vigie.db")
    }

    pub(crate) fn is_running(&self) -> bool {
        self.ingest.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub(crate) async fn latest(&self, device: &str, q: Quantity) -> Option<Point> {
        let series = self
            .registry
            .series_id(&DeviceId::new(device).unwrap(), q)
            .await
            .expect("series id");
        let latest = self.store.latest(&[series]).await.expect("latest");
        latest.into_iter().next().map(|(_, p)| p)
    }

    pub(crate) async fn count(&self) -> u64 {
        self.store.count().await.expect("count")
    }

    pub(crate) fn metric(&self, f: impl Fn(&Metrics) -> &AtomicU64) -> u64 {
        f(&self.metrics).load(Ordering::Relaxed)
    }

    /// Publishes every message at QoS 1 and returns once the broker acked them all.
    pub(crate) async fn publish(&self, msgs: &[(String, Vec<u8>)]) {
        publish_all(self.broker.addr().port(), msgs).await;
    }
}

async fn provision(registry: &Registry) {
    let member = MemberId::new("commune-test").unwrap();
    registry
        .upsert_member(&Member {
            id: member.clone(),
            name: "Commune de Test".into(),
            kind: "commune".into(),
        })
        .await
        .expect("member");
    let building = BuildingId::new("mairie").unwrap();
    registry
        .upsert_building(&Building {
            id: building.clone(),
            member_id: member,
            name: "Mairie".into(),
            address: "1 place de la Mairie".into(),
            floor_area_m2: Some(800.0),
            usage: "bureaux".into(),
            gas_pcs_kwh_per_m3: 11.2,
        })
        .await
        .expect("building");
    for (id, kind) in DEVICES
        .iter()
        .zip([DeviceKind::ElectricityMeter, DeviceKind::AirQuality])
    {
        registry
            .upsert_device(&Device::new(
                DeviceId::new(*id).unwrap(),
                Some(building.clone()),
                kind,
            ))
            .await
            .expect("device");
    }
}

/// Polls `check` until it is true; fails the test after [`DEADLINE`].
pub(crate) async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real publisher: QoS 1, waits for every PUBACK, then disconnects.
pub(crate) async fn publish_all(port: u16, msgs: &[(String, Vec<u8>)]) {
    let mut o = MqttOptions::new(unique("publisher"), "127.0.0.1", port);
    o.set_max_packet_size(2 << 20, 2 << 20).set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let n = msgs.len();
    let msgs = msgs.to_vec();
    let sender = client.clone();
    let publishing = tokio::spawn(async move {
        for (topic, payload) in msgs {
            sender
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("queue publish");
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut acked = 0;
    while acked < n {
        let Ok(polled) = tokio::time::timeout_at(deadline, eventloop.poll()).await else {
            panic!("only {acked} of {n} publishes acked in time");
        };
        let ev = polled.expect("publisher connection");
        if let Event::Incoming(Packet::PubAck(_)) = ev {
            acked += 1;
        }
    }
    publishing.await.expect("publishing task");
    client.disconnect().await.expect("disconnect request");
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}

pub(crate) fn telemetry(device: &str, payload: &str) -> (String, Vec<u8>) {
    (
        format!("vigie/{device}/telemetry"),
        payload.as_bytes().to_vec(),
    )
}

/// One native message per reading of one quantity.
pub(crate) fn readings(
    device: &str,
    q: Quantity,
    points: &[(vigie_core::Timestamp, f64)],
) -> Vec<(String, Vec<u8>)> {
    points
        .iter()
        .map(|(t, v)| {
            telemetry(
                device,
                &format!(r#"{{"ts":"{}","values":{{"{q}":{v}}}}}"#, t.to_rfc3339()),
            )
        })
        .collect()
}
