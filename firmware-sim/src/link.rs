//! One simulated device's MQTT connection: QoS 1 publishes through a bounded
//! in-flight window, counted only once the broker acknowledged them.
//!
//! Like real firmware, each device has its own connection, a stable client id with a
//! persistent session (`clean_session = false`) and, when its ecosystem has one, its
//! own last will (retained, on its availability topic). A background task drives the
//! rumqttc event loop, matches PUBACKs to what was published, releases window slots
//! and tells the device whether it is connected. After a lost connection it reconnects
//! (exponential backoff from 100 ms to 10 s); when the broker kept the session, rumqttc
//! sends the unacknowledged messages again (so a message may arrive twice, never
//! zero times); when the broker lost it, they are counted as lost, never as
//! published. This module must never report a message as published before its PUBACK.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::ProgressBar;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio::task::JoinHandle;
use vigie_core::DeviceId;

use crate::SimError;
use crate::formats::Message;

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Largest packet the simulator sends (a day of quarter-hour samples is ~10 kB).
const MAX_PACKET_BYTES: usize = 256 * 1024;

/// What a published message was, for the accounting at PUBACK time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    /// `online` / `offline` on the status topic.
    Status,
    /// A day of history.
    Backfill,
    /// A live reading (or a short catch-up backlog).
    Live,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: MessageKind,
    samples: u64,
}

/// What one link achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LinkReport {
    /// Telemetry messages acknowledged by the broker.
    pub(crate) messages: u64,
    /// Values in those messages.
    pub(crate) samples: u64,
    /// Telemetry messages in flight when a connection was lost.
    pub(crate) lost: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Published, not yet given a packet id by the event loop (in publish order).
    queued: VecDeque<Pending>,
    /// Sent, waiting for their PUBACK.
    in_flight: HashMap<u16, Pending>,
    report: LinkReport,
}

impl Ledger {
    fn on_sent(&mut self, pkid: u16) {
        // A retransmission keeps its packet id and its entry.
        if !self.in_flight.contains_key(&pkid)
            && let Some(p) = self.queued.pop_front()
        {
            self.in_flight.insert(pkid, p);
        }
    }

    fn on_ack(&mut self, pkid: u16) -> Option<Pending> {
        let p = self.in_flight.remove(&pkid)?;
        if p.kind != MessageKind::Status {
            self.report.messages += 1;
            self.report.samples += p.samples;
        }
        Some(p)
    }

    /// Forgets everything in flight (a new clean session); returns how many slots to
    /// release.
    fn on_new_session(&mut self) -> usize {
        let gone: Vec<Pending> = self
            .queued
            .drain(..)
            .chain(self.in_flight.drain().map(|(_, p)| p))
            .collect();
        self.report.lost += gone
            .iter()
            .filter(|p| p.kind != MessageKind::Status)
            .count() as u64;
        gone.len()
    }
}

/// A connected device.
pub(crate) struct DeviceLink {
    device: DeviceId,
    client: AsyncClient,
    window: Arc<Semaphore>,
    window_size: usize,
    ledger: Arc<Mutex<Ledger>>,
    connected: watch::Receiver<bool>,
    sessions: Arc<AtomicU64>,
    driver: JoinHandle<()>,
}

/// A free slot in the in-flight window, given back if not used.
pub(crate) struct Slot<'a>(SemaphorePermit<'a>);

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeviceLink {
    /// Connects `device` to the broker with a persistent session and `will` as its
    /// last will; fails if the first connection fails.
    pub(crate) async fn connect(
        device: &DeviceId,
        client_id: String,
        (host, port): (&str, u16),
        transport: Option<rumqttc::Transport>,
        will: Option<Message>,
        window_size: usize,
        progress: ProgressBar,
    ) -> Result<DeviceLink, SimError> {
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(u16::try_from(window_size + 1).unwrap_or(u16::MAX))
            .set_clean_session(false);
        if let Some(transport) = transport {
            options.set_transport(transport);
        }
        if let Some(will) = will {
            options.set_last_will(LastWill::new(
                will.topic,
                will.payload,
                QoS::AtLeastOnce,
                will.retain,
            ));
        }
        let (client, mut event_loop) = AsyncClient::new(options, window_size.max(1));
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(source) => {
                    return Err(SimError::Connect {
                        device: device.clone(),
                        broker: format!("{host}:{port}"),
                        source: Box::new(source),
                    });
                }
            }
        }
        let window = Arc::new(Semaphore::new(window_size));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (connected_tx, connected) = watch::channel(true);
        let sessions = Arc::new(AtomicU64::new(1));
        let driver = tokio::spawn(drive(
            event_loop,
            device.clone(),
            Link {
                window: Arc::clone(&window),
                ledger: Arc::clone(&ledger),
                connected: connected_tx,
                sessions: Arc::clone(&sessions),
            },
            progress,
        ));
        Ok(DeviceLink {
            device: device.clone(),
            client,
            window,
            window_size,
            ledger,
            connected,
            sessions,
            driver,
        })
    }

    /// How many connections (CONNACKs) this link had so far.
    pub(crate) fn connections(&self) -> u64 {
        self.sessions.load(Ordering::Acquire)
    }

    /// Whether the link is connected now.
    pub(crate) fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the link is connected and a slot of the in-flight window is free.
    /// Cancel-safe: a slot not used is given back.
    pub(crate) async fn ready(&self) -> Result<Slot<'_>, SimError> {
        let mut connected = self.connected.clone();
        connected
            .wait_for(|c| *c)
            .await
            .map_err(|_| SimError::LinkClosed(self.device.clone()))?;
        let permit = self
            .window
            .acquire()
            .await
            .map_err(|_| SimError::LinkClosed(self.device.clone()))?;
        Ok(Slot(permit))
    }

    /// Publishes `message` at QoS 1 in a slot taken by [`DeviceLink::ready`].
    pub(crate) async fn send(
        &self,
        slot: Slot<'_>,
        message: Message,
        kind: MessageKind,
    ) -> Result<(), SimError> {
        // The slot is given back at PUBACK time by the driver.
        slot.0.forget();
        lock(&self.ledger).queued.push_back(Pending {
            kind,
            samples: message.samples,
        });
        self.client
            .publish(
                message.topic,
                QoS::AtLeastOnce,
                message.retain,
                message.payload,
            )
            .await
            .map_err(|e| SimError::Client {
                device: self.device.clone(),
                source: Box::new(e),
            })
    }

    /// Waits until every message sent so far is acknowledged, at most `timeout`.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.window_size).unwrap_or(u32::MAX);
        match tokio::time::timeout(timeout, self.window.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                drop(permits);
                true
            }
            _ => false,
        }
    }

    /// Publishes `offline` (if given), waits for the acks, disconnects cleanly.
    pub(crate) async fn close(self, offline: Option<Message>, timeout: Duration) -> LinkReport {
        if let Some(offline) = offline
            && self.is_connected()
            && let Ok(Ok(slot)) = tokio::time::timeout(timeout, self.ready()).await
        {
            let _ = self.send(slot, offline, MessageKind::Status).await;
        }
        if !self.drain(timeout).await {
            tracing::warn!(device = %self.device, "broker did not acknowledge every message before stop");
        }
        let _ = self.client.disconnect().await;
        let mut driver = self.driver;
        if tokio::time::timeout(timeout, &mut driver).await.is_err() {
            driver.abort();
        }
        lock(&self.ledger).report
    }
}

/// What the driver shares with the device.
struct Link {
    window: Arc<Semaphore>,
    ledger: Arc<Mutex<Ledger>>,
    connected: watch::Sender<bool>,
    sessions: Arc<AtomicU64>,
}

/// Drives the event loop: matches PUBACKs, releases window slots, reconnects.
async fn drive(
    mut event_loop: rumqttc::EventLoop,
    device: DeviceId,
    link: Link,
    progress: ProgressBar,
) {
    let Link {
        window,
        ledger,
        connected,
        sessions,
    } = link;
    let mut backoff = Duration::from_millis(100);
    loop {
        match event_loop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => lock(&ledger).on_sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let acked = lock(&ledger).on_ack(ack.pkid);
                if let Some(p) = acked {
                    window.add_permits(1);
                    if p.kind == MessageKind::Backfill {
                        progress.inc(1);
                        if Some(progress.position()) == progress.length() {
                            progress.finish();
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                sessions.fetch_add(1, Ordering::AcqRel);
                connected.send_replace(true);
                tracing::debug!(%device, session_present = ack.session_present, "MQTT connection back");
                if !ack.session_present {
                    let released = lock(&ledger).on_new_session();
                    if released > 0 {
                        tracing::warn!(%device, released, "reconnected with a new session: messages in flight are lost");
                        window.add_permits(released);
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => break,
            Err(e) => {
                connected.send_replace(false);
                tracing::warn!(%device, error = %e, retry_in = ?backoff, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    connected.send_replace(false);
    window.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acknowledged_telemetry_counts_as_published() {
        let mut l = Ledger::default();
        for (kind, samples) in [
            (MessageKind::Status, 0),
            (MessageKind::Backfill, 96),
            (MessageKind::Live, 2),
        ] {
            l.queued.push_back(Pending { kind, samples });
        }
        l.on_sent(1);
        l.on_sent(2);
        l.on_sent(3);
        l.on_sent(2); // retransmission
        assert!(l.on_ack(1).is_some());
        assert!(l.on_ack(2).is_some());
        assert!(l.on_ack(9).is_none());
        assert_eq!(l.report.messages, 1);
        assert_eq!(l.report.samples, 96);
        assert_eq!(l.on_new_session(), 1);
        assert_eq!(l.report.lost, 1);
        assert_eq!(l.report.messages, 1);
    }
}
