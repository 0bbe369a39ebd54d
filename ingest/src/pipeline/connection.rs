//! The MQTT connection task: polls rumqttc's event loop and forwards publishes.
//!
//! It subscribes on every CONNACK (re-subscribing is harmless with a persistent
//! session and needed without one), numbers each connection (a *generation*) so that
//! the batcher never acks a message on a connection other than the one that brought
//! it, reconnects with exponential backoff (rumqttc has none of its own) and keeps
//! `metrics.mqtt_connected` true while connected and subscribed.
//!
//! Publishes go to the batcher through a bounded channel: when the batcher is behind,
//! this task waits, and the broker holds what it has not delivered (back-pressure).
//! This task must never ack and never await anything but the event loop, the channel
//! and the stop signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter};
use rumqttc::{Publish, SubscribeReasonCode};
use tokio::sync::{mpsc, watch};
use vigie_core::Timestamp;
use vigie_core::metrics::Metrics;

/// One message handed to the batcher.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The packet as received (topic, payload, pkid).
    pub(crate) publish: Publish,
    /// The connection it came on.
    pub(crate) generation: u64,
    /// When it was received.
    pub(crate) received_at: Timestamp,
}

/// The connection task's state.
pub(crate) struct Connection {
    pub(crate) eventloop: EventLoop,
    pub(crate) client: AsyncClient,
    pub(crate) topics: Vec<String>,
    pub(crate) endpoint: String,
    pub(crate) tx: mpsc::Sender<Inbound>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

impl Connection {
    /// Runs until stopped and disconnected (or stopped while the broker is away).
    pub(crate) async fn run(self) {
        let Connection {
            mut eventloop,
            client,
            topics,
            endpoint,
            tx,
            mut stop,
            generation,
            metrics,
            retry_min,
            retry_max,
        } = self;
        let mut tx = Some(tx);
        let mut stopping = *stop.borrow();
        let mut backoff = retry_min;
        let mut failures = 0u32;
        loop {
            let polled = if stopping {
                eventloop.poll().await
            } else {
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        stopping = true;
                        tx = None;
                        continue;
                    }
                    polled = eventloop.poll() => polled,
                }
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
                    if failures > 0 {
                        tracing::info!(
                            "MQTT connection to {endpoint} is back after {failures} failed attempt(s) (session present: {})",
                            ack.session_present
                        );
                    } else {
                        tracing::info!(
                            "MQTT connected to {endpoint} (session present: {}, connection #{g})",
                            ack.session_present
                        );
                    }
                    failures = 0;
                    backoff = retry_min;
                    if !stopping {
                        let filters = topics
                            .iter()
                            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(filters) {
                            tracing::error!("cannot queue the MQTT subscription: {e}");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        tracing::error!(
                            "broker {endpoint} refused {refused} of the subscriptions {topics:?}: nothing will be received on them"
                        );
                    } else {
                        tracing::info!("subscribed to {topics:?} at QoS 1");
                    }
                    metrics.mqtt_connected.store(true, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                    let Some(sender) = tx.as_ref() else {
                        tracing::debug!(
                            topic = publish.topic,
                            "stopping: message left unacknowledged at the broker"
                        );
                        continue;
                    };
                    metrics.consumer_lag.fetch_add(1, Ordering::Relaxed);
                    let inbound = Inbound {
                        publish,
                        generation: generation.load(Ordering::SeqCst),
                        received_at: Timestamp::now(),
                    };
                    let forwarded = if stopping {
                        sender.send(inbound).await.is_ok()
                    } else {
                        tokio::select! {
                            sent = sender.send(inbound) => sent.is_ok(),
                            _ = stop.changed() => {
                                stopping = true;
                                false
                            }
                        }
                    };
                    if !forwarded {
                        // Batcher gone or stopping: the message stays unacknowledged.
                        metrics.consumer_lag.fetch_sub(1, Ordering::Relaxed);
                        tx = None;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    tracing::info!("MQTT disconnected from {endpoint}");
                    metrics.mqtt_connected.store(false, Ordering::Relaxed);
                    if stopping {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.mqtt_connected.store(false, Ordering::Relaxed);
                    if stopping {
                        tracing::info!("MQTT connection closed while stopping: {e}");
                        break;
                    }
                    failures += 1;
                    tracing::warn!(
                        "MQTT connection to {endpoint} failed ({e}); attempt {failures}, retrying in {backoff:?}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {
                            // Nothing unacknowledged can be acked on a dead connection.
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(retry_max);
                }
            }
        }
        metrics.mqtt_connected.store(false, Ordering::Relaxed);
    }
}
