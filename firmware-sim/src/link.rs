//! One simulated device's MQTT connection: QoS 1 publishes through a bounded
//! in-flight window, counted only once the broker acknowledged them.
//!
//! Like real firmware, each device has its own connection, its own client id and its
//! own last will (`offline`, retained, on its status topic). A background task drives
//! the rumqttc event loop, matches PUBACKs to what was published and releases window
//! slots. After a lost connection it reconnects (bounded exponential backoff); with a
//! clean session the messages in flight at that moment are counted as lost, never as
//! published. This module must never report a message as published before its PUBACK.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::ProgressBar;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use vigie_core::DeviceId;
use vigie_core::payload::status_topic;

use crate::SimError;

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
    driver: JoinHandle<()>,
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeviceLink {
    /// Connects `device` to the broker; fails if the first connection fails.
    pub(crate) async fn connect(
        device: &DeviceId,
        client_id: String,
        host: &str,
        port: u16,
        window_size: usize,
        progress: ProgressBar,
    ) -> Result<DeviceLink, SimError> {
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(u16::try_from(window_size + 1).unwrap_or(u16::MAX))
            .set_clean_session(true)
            .set_last_will(LastWill::new(
                status_topic(device),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
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
        let driver = tokio::spawn(drive(
            event_loop,
            device.clone(),
            Arc::clone(&window),
            Arc::clone(&ledger),
            progress,
        ));
        Ok(DeviceLink {
            device: device.clone(),
            client,
            window,
            window_size,
            ledger,
            driver,
        })
    }

    /// Waits for a free slot in the in-flight window. Cancel-safe.
    pub(crate) async fn ready(&self) -> Result<(), SimError> {
        let permit = self
            .window
            .acquire()
            .await
            .map_err(|_| SimError::LinkClosed(self.device.clone()))?;
        permit.forget();
        Ok(())
    }

    /// Publishes at QoS 1 in the slot taken by [`DeviceLink::ready`].
    pub(crate) async fn send(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        kind: MessageKind,
        samples: u64,
    ) -> Result<(), SimError> {
        lock(&self.ledger)
            .queued
            .push_back(Pending { kind, samples });
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
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

    /// Publishes `offline` (retained), waits for the acks, disconnects cleanly.
    pub(crate) async fn close(self, timeout: Duration) -> LinkReport {
        if self.ready().await.is_ok() {
            let _ = self
                .send(
                    status_topic(&self.device),
                    b"offline".to_vec(),
                    true,
                    MessageKind::Status,
                    0,
                )
                .await;
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

/// Drives the event loop: matches PUBACKs, releases window slots, reconnects.
async fn drive(
    mut event_loop: rumqttc::EventLoop,
    device: DeviceId,
    window: Arc<Semaphore>,
    ledger: Arc<Mutex<Ledger>>,
    progress: ProgressBar,
) {
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
                tracing::warn!(%device, error = %e, retry_in = ?backoff, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
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
