//! The ingest pipeline: MQTT session → bounded channel → batcher → store, then acks.
//!
//! [`run`] opens a persistent MQTT session (stable client id, `clean_session = false`,
//! manual acks), and runs two tasks: the connection task (polls rumqttc's event loop,
//! subscribes, reconnects with backoff, forwards publishes through a bounded channel)
//! and the batcher (commits batches, then acks). On shutdown it stops receiving,
//! commits and acks what was received, disconnects and returns.
//!
//! Guarantee: a message is acknowledged only after its samples, quarantine entries and
//! status are committed. This module must never ack first, never panic on input and
//! never hold an unbounded queue.

mod batch;
pub(crate) mod commit;
mod connection;
pub(crate) mod plan;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions};
use tokio::sync::{mpsc, watch};
use vigie_core::metrics::Metrics;
use vigie_core::registry::Registry;
use vigie_core::store::TimeSeriesStore;

use crate::decode::Decoders;
use crate::error::IngestError;
use crate::normalise::Recovery;
use crate::options::IngestOptions;
use crate::replay::Replayer;
use batch::{BatchLimits, Batcher};
use commit::Committer;
use connection::Connection;

/// Largest MQTT packet the client accepts: the protocol's own limit, so that an
/// oversized message is quarantined as `too_large` instead of breaking the connection
/// (and being redelivered forever).
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// Largest packet the client sends (acks, subscriptions).
const MAX_OUTGOING_PACKET: usize = 64 << 10;
/// Capacity of rumqttc's request channel (acks). It must exceed the number of
/// unacknowledged messages the broker can send (at most 65,535 packet ids), so that an
/// ack never waits on the event loop while the event loop waits on the batcher.
/// flume allocates it lazily.
const REQUEST_CHANNEL: usize = 65_536 + 64;
/// How long the connection gets to send the acks and DISCONNECT at shutdown.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Runs ingest with the native decoder and the formats enabled in `opts.formats`
/// (mapped through `opts.mapping`) until `shutdown` completes.
pub async fn run(
    opts: IngestOptions,
    registry: Registry,
    store: Arc<dyn TimeSeriesStore>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), IngestError> {
    let decoders = Decoders::from_config(&opts.topic_prefix, &opts.formats, &opts.mapping)
        .map_err(|e| IngestError::Options {
            key: "ingest.formats / ingest.mapping",
            reason: e.to_string(),
        })?;
    run_with_decoders(opts, decoders, registry, store, metrics, shutdown).await
}

/// Runs ingest with the given decoders until `shutdown` completes.
pub async fn run_with_decoders(
    opts: IngestOptions,
    decoders: Decoders,
    registry: Registry,
    store: Arc<dyn TimeSeriesStore>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), IngestError> {
    opts.validate()?;
    let mut mqtt = MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
    mqtt.set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(u16::try_from(opts.batch_max_messages).unwrap_or(u16::MAX))
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_keep_alive(opts.keep_alive);
    if let Some((user, password)) = &opts.credentials {
        mqtt.set_credentials(user.clone(), password.clone());
    }
    mqtt.set_transport(opts.transport()?);
    let (client, eventloop) = AsyncClient::new(mqtt, REQUEST_CHANNEL);
    let (tx, rx) = mpsc::channel(opts.batch_max_messages);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_replay = stop_rx.clone();
    let decoders = Arc::new(decoders);
    let committer = Committer::new(registry, store).recovering(Recovery {
        decoders: decoders.clone(),
        max_future_skew: opts.max_future_skew,
    });
    let generation = Arc::new(AtomicU64::new(0));
    let endpoint = opts.broker_url();
    tracing::info!(
        "ingest connecting to MQTT broker {endpoint} as {:?} (persistent session, QoS 1, manual acks)",
        opts.client_id
    );

    let mut conn = tokio::spawn(
        Connection {
            eventloop,
            client: client.clone(),
            topics: opts.topics.clone(),
            endpoint,
            tx,
            acks: ack_rx,
            stop: stop_rx.clone(),
            generation: generation.clone(),
            metrics: metrics.clone(),
            retry_min: opts.retry_min,
            retry_max: opts.retry_max,
        }
        .run(),
    );
    let mut batcher = tokio::spawn(
        Batcher {
            rx,
            acks: ack_tx,
            client,
            generation,
            stop: stop_rx,
            decoders: decoders.clone(),
            committer: committer.clone(),
            metrics: metrics.clone(),
            limits: BatchLimits {
                max_messages: opts.batch_max_messages,
                linger: opts.batch_linger,
                idle: opts.batch_idle,
                max_payload_bytes: opts.max_payload_bytes,
                max_future_skew: opts.max_future_skew,
                retry_min: opts.retry_min,
                retry_max: opts.retry_max,
            },
        }
        .run(),
    );
    let replay = tokio::spawn(
        Replayer {
            committer,
            decoders,
            metrics: metrics.clone(),
            max_future_skew: opts.max_future_skew,
        }
        .run(stop_rx_replay),
    );

    tokio::pin!(shutdown);
    let (joined, early) = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("ingest stopping: committing and acknowledging what was received");
            let _ = stop_tx.send(true);
            ((&mut batcher).await, false)
        }
        joined = &mut batcher => (joined, true),
    };
    let _ = stop_tx.send(true);
    let mut result = joined.unwrap_or_else(|e| {
        Err(IngestError::Task {
            task: "batch",
            reason: e.to_string(),
        })
    });
    match tokio::time::timeout(DISCONNECT_GRACE, &mut conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            result = result.and(Err(IngestError::Task {
                task: "connection",
                reason: e.to_string(),
            }));
        }
        Err(_) => {
            tracing::warn!("MQTT connection did not close within {DISCONNECT_GRACE:?}; dropped");
            conn.abort();
        }
    }
    if tokio::time::timeout(DISCONNECT_GRACE, replay)
        .await
        .is_err()
    {
        tracing::warn!("replay of quarantined messages did not stop within {DISCONNECT_GRACE:?}");
    }
    metrics.mqtt_connected.store(false, Ordering::Relaxed);
    if early && result.is_ok() {
        result = Err(IngestError::Task {
            task: "connection",
            reason: "ended before shutdown was asked".into(),
        });
    }
    if result.is_ok() {
        tracing::info!("ingest stopped cleanly");
    }
    result
}
