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
//!
//! Acknowledgements come back from the batcher on their own channel and this task
//! writes them itself, before polling again, even while it waits for room in the
//! publish channel. They must not go through rumqttc's request channel: its event loop
//! serves at most one request per read of up to ten packets, so under a steady inflow
//! the acks fell behind, that channel filled, the batcher blocked on it, this task
//! blocked on the full publish channel and the event loop stopped being polled (no
//! reads, no PINGREQ: a deadlock seen against mosquitto). The ack channel is unbounded
//! but holds at most the messages received and not yet acknowledged, which the
//! bounded publish channel and the broker's in-flight window already bound.
//! This task must never await anything but the event loop, the channels and the stop
//! signal.
//!
//! A failed connection is one log line naming the broker URL and the reason; a TLS
//! failure (unknown authority, wrong host name, plain port) says what to check. It is
//! retried like any other connection error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter};
use rumqttc::{ConnectionError, PubAck, Publish, Request, SubscribeReasonCode, TlsError};
use rustls::{CertificateError, InvalidMessage};
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

/// An acknowledgement to send: the packet id of a committed message and the connection
/// it came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    pub(crate) generation: u64,
    pub(crate) pkid: u16,
}

/// Writes acknowledgements of the current connection on the socket and flushes.
/// Acks of an earlier connection are dropped: the broker redelivers those messages.
/// Returns how many were written.
async fn write_acks(eventloop: &mut EventLoop, acks: &[Ack], current: u64) -> usize {
    let Some(network) = eventloop.network.as_mut() else {
        return 0;
    };
    let mut written = 0;
    for ack in acks.iter().filter(|a| a.generation == current) {
        let packet = match eventloop
            .state
            .handle_outgoing_packet(Request::PubAck(PubAck::new(ack.pkid)))
        {
            Ok(Some(packet)) => packet,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("cannot acknowledge message {}: {e}", ack.pkid);
                continue;
            }
        };
        if let Err(e) = network.write(packet).await {
            // The connection is failing: the next poll reports it and reconnects; the
            // broker redelivers what was not acknowledged.
            tracing::debug!("acknowledgement not written: {e}");
            return written;
        }
        written += 1;
    }
    if written > 0
        && let Err(e) = network.flush().await
    {
        tracing::debug!("acknowledgements not flushed: {e}");
        return 0;
    }
    written
}

/// The reason a connection failed, in one line; TLS failures say what to check.
fn describe_failure(e: &ConnectionError) -> String {
    let ConnectionError::Tls(tls) = e else {
        return e.to_string();
    };
    let refused = match tls {
        TlsError::TLS(r) => Some(r),
        TlsError::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        TlsError::DNSName(_) => {
            return "TLS: the host of mqtt.url is not a valid DNS name or IP address".into();
        }
        _ => None,
    };
    let Some(r) = refused else {
        return format!("TLS: {tls}");
    };
    let hint = match r {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the broker's certificate is not signed by a trusted authority (mqtt.ca_file, or the bundled Mozilla roots when it is empty)"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the broker's certificate does not name the host of mqtt.url"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the clock)"
            }
            _ => "the broker's certificate was refused",
        },
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "the broker did not answer in TLS (is this port a TLS listener?)"
        }
        _ => "the broker and vigie could not agree",
    };
    format!("TLS handshake failed: {hint}: {r}")
}

/// The connection task's state.
pub(crate) struct Connection {
    pub(crate) eventloop: EventLoop,
    pub(crate) client: AsyncClient,
    pub(crate) topics: Vec<String>,
    pub(crate) endpoint: String,
    pub(crate) tx: mpsc::Sender<Inbound>,
    pub(crate) acks: mpsc::UnboundedReceiver<Vec<Ack>>,
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
            mut acks,
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
        let mut acks_open = true;
        loop {
            let polled = tokio::select! {
                biased;
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    tx = None;
                    continue;
                }
                batch = acks.recv(), if acks_open => {
                    match batch {
                        Some(batch) => {
                            let current = generation.load(Ordering::SeqCst);
                            let n = write_acks(&mut eventloop, &batch, current).await;
                            metrics.messages_acked.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        None => acks_open = false,
                    }
                    continue;
                }
                polled = eventloop.poll() => polled,
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
                    // Wait for room in the channel, writing acks meanwhile (see the
                    // module doc: not writing them here is what deadlocked).
                    let forwarded = loop {
                        tokio::select! {
                            biased;
                            batch = acks.recv(), if acks_open => {
                                match batch {
                                    Some(batch) => {
                                        let current = generation.load(Ordering::SeqCst);
                                        let n = write_acks(&mut eventloop, &batch, current).await;
                                        metrics.messages_acked.fetch_add(n as u64, Ordering::Relaxed);
                                    }
                                    None => acks_open = false,
                                }
                            }
                            permit = sender.reserve() => match permit {
                                Ok(permit) => {
                                    permit.send(inbound);
                                    break true;
                                }
                                Err(_) => break false,
                            },
                            _ = stop.changed(), if !stopping => {
                                stopping = true;
                                break false;
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
                        // Let the broker close first: closing a socket with unread
                        // messages in it sends a TCP reset, which brokers log as an
                        // error. Whatever arrives meanwhile stays unacknowledged.
                        let drain = async { while eventloop.poll().await.is_ok() {} };
                        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
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
                        "MQTT connection to {endpoint} failed ({}); attempt {failures}, retrying in {backoff:?}",
                        describe_failure(&e)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_failure(r: rustls::Error) -> ConnectionError {
        ConnectionError::Tls(TlsError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            r,
        )))
    }

    #[test]
    fn an_unknown_authority_is_described_with_what_to_check() {
        let line = describe_failure(&tls_failure(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )));
        assert!(
            line.starts_with("TLS handshake failed: the broker's certificate is not signed by a trusted authority (mqtt.ca_file")
                && line.contains("UnknownIssuer"),
            "{line}"
        );
    }

    #[test]
    fn a_wrong_host_name_and_a_plain_port_are_described() {
        let line = describe_failure(&tls_failure(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        )));
        assert!(
            line.contains("does not name the host of mqtt.url"),
            "{line}"
        );
        let line = describe_failure(&tls_failure(rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType,
        )));
        assert!(line.contains("is this port a TLS listener?"), "{line}");
    }

    #[test]
    fn a_plain_connection_error_is_left_as_rumqttc_says_it() {
        let e = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(describe_failure(&e), "I/O: connection refused");
    }
}
