//! Quarantine: what ingest could not use, with the reason, kept for people to see.
//!
//! A payload lands here instead of being dropped. Rows are keyed by (topic, payload
//! digest, reason, detail): a redelivered message (at-least-once) adds an occurrence,
//! never a second row. This module must never discard a quarantined payload silently.

use rusqlite::params;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Registry, ReplayableMessage};
use crate::db::DbError;
use crate::ids::DeviceId;
use crate::time::Timestamp;

/// Why a payload (or one value in it) was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    /// Not decodable (bad JSON, wrong shape).
    Malformed,
    /// The device is not in the registry.
    UnknownDevice,
    /// The quantity name is not in the vocabulary.
    UnknownQuantity,
    /// The value is not a number.
    NonNumeric,
    /// The value is outside the physical range.
    OutOfRange,
    /// The timestamp cannot be read.
    BadTimestamp,
    /// The timestamp is too far in the future.
    FutureTimestamp,
    /// The topic does not follow a known pattern.
    BadTopic,
    /// The payload is larger than allowed.
    TooLarge,
    /// The sample is older than the raw retention window (`storage.raw_retention_days`):
    /// its raw neighbours were deleted, so the store cannot place it.
    OlderThanRetention,
}

impl QuarantineReason {
    /// Every reason (for metrics with zero counts).
    pub const ALL: [QuarantineReason; 10] = [
        QuarantineReason::Malformed,
        QuarantineReason::UnknownDevice,
        QuarantineReason::UnknownQuantity,
        QuarantineReason::NonNumeric,
        QuarantineReason::OutOfRange,
        QuarantineReason::BadTimestamp,
        QuarantineReason::FutureTimestamp,
        QuarantineReason::BadTopic,
        QuarantineReason::TooLarge,
        QuarantineReason::OlderThanRetention,
    ];
    /// Stable text form, also the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::Malformed => "malformed",
            QuarantineReason::UnknownDevice => "unknown_device",
            QuarantineReason::UnknownQuantity => "unknown_quantity",
            QuarantineReason::NonNumeric => "non_numeric",
            QuarantineReason::OutOfRange => "out_of_range",
            QuarantineReason::BadTimestamp => "bad_timestamp",
            QuarantineReason::FutureTimestamp => "future_timestamp",
            QuarantineReason::BadTopic => "bad_topic",
            QuarantineReason::TooLarge => "too_large",
            QuarantineReason::OlderThanRetention => "older_than_retention",
        }
    }
    /// French label for the dashboard.
    pub fn label_fr(self) -> &'static str {
        match self {
            QuarantineReason::Malformed => "Message illisible",
            QuarantineReason::UnknownDevice => "Appareil inconnu",
            QuarantineReason::UnknownQuantity => "Grandeur inconnue",
            QuarantineReason::NonNumeric => "Valeur non numérique",
            QuarantineReason::OutOfRange => "Valeur hors plage physique",
            QuarantineReason::BadTimestamp => "Horodatage illisible",
            QuarantineReason::FutureTimestamp => "Horodatage dans le futur",
            QuarantineReason::BadTopic => "Sujet MQTT inconnu",
            QuarantineReason::TooLarge => "Message trop gros",
            QuarantineReason::OlderThanRetention => "Plus ancien que la durée de conservation",
        }
    }
    fn parse(s: &str) -> QuarantineReason {
        QuarantineReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or(QuarantineReason::Malformed)
    }
}

/// One thing to quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineEntry {
    /// When it was received.
    pub received_at: Timestamp,
    /// MQTT topic.
    pub topic: String,
    /// The device, when the topic names a valid one.
    pub device_id: Option<DeviceId>,
    /// Why.
    pub reason: QuarantineReason,
    /// Human detail (`"co2" is not a known quantity`).
    pub detail: String,
    /// The raw payload.
    pub payload: Vec<u8>,
}

/// A quarantined message as listed.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedMessage {
    /// Row id.
    pub id: i64,
    /// First reception.
    pub received_at: Timestamp,
    /// Latest reception.
    pub last_received_at: Timestamp,
    /// How many times it was received.
    pub occurrences: i64,
    /// MQTT topic.
    pub topic: String,
    /// Device named by the topic.
    pub device_id: Option<String>,
    /// Why.
    pub reason: QuarantineReason,
    /// Human detail.
    pub detail: String,
    /// The payload, as text (lossy).
    pub payload: String,
}

impl Registry {
    /// Stores quarantine entries in one transaction (idempotent per message).
    pub fn quarantine_blocking(&self, entries: &[QuarantineEntry]) -> Result<(), DbError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.db().call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            self.quarantine_in(&tx, entries)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Stores quarantine entries (idempotent per message) within the caller's
    /// transaction on `c`, which must be a connection to this registry's file: ingest
    /// writes them in the same commit as the samples of their batch.
    pub fn quarantine_in(
        &self,
        c: &rusqlite::Connection,
        entries: &[QuarantineEntry],
    ) -> Result<(), DbError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut st = c.prepare_cached(
            "INSERT INTO quarantine (received_at, last_received_at, topic, device_id, reason, detail, payload, payload_sha256)
             VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (topic, payload_sha256, reason, detail) DO UPDATE SET
               occurrences = occurrences + 1, last_received_at = excluded.last_received_at",
        )?;
        for e in entries {
            let sha = Sha256::digest(&e.payload).to_vec();
            st.execute(params![
                e.received_at.0,
                e.topic,
                e.device_id.as_ref().map(|d| d.as_str()),
                e.reason.as_str(),
                e.detail,
                e.payload,
                sha
            ])?;
        }
        Ok(())
    }

    /// The latest quarantined messages, newest first.
    pub async fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedMessage>, DbError> {
        self.db()
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT id, received_at, last_received_at, occurrences, topic, device_id, reason, detail, payload
                     FROM quarantine ORDER BY last_received_at DESC, id DESC LIMIT ?1",
                )?;
                let rows = st.query_map([limit as i64], |r| {
                    Ok(QuarantinedMessage {
                        id: r.get(0)?,
                        received_at: Timestamp(r.get(1)?),
                        last_received_at: Timestamp(r.get(2)?),
                        occurrences: r.get(3)?,
                        topic: r.get(4)?,
                        device_id: r.get(5)?,
                        reason: QuarantineReason::parse(&r.get::<_, String>(6)?),
                        detail: r.get(7)?,
                        payload: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(8)?).into_owned(),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Up to `limit` of a device's `out_of_range` quarantine rows, newest (highest id)
    /// first: what ingest reads back when a meter's readings may be a swap whose first
    /// readings another process (or an earlier run) refused (blocking).
    pub fn latest_out_of_range_blocking(
        &self,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<ReplayableMessage>, DbError> {
        let d = device.clone();
        self.db().call_blocking(move |c| {
            let mut st = c.prepare_cached(
                "SELECT q.id, q.received_at, q.last_received_at, q.topic, q.device_id, d.format,
                        q.payload
                 FROM quarantine q JOIN devices d ON d.id = q.device_id
                 WHERE q.device_id = ?1 AND q.reason = 'out_of_range'
                 ORDER BY q.id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(
                params![d.as_str(), limit as i64],
                super::pending::replayable_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Quarantined occurrences by reason.
    pub async fn quarantine_counts(&self) -> Result<Vec<(QuarantineReason, u64)>, DbError> {
        self.db()
            .call(|c| {
                let mut st = c.prepare("SELECT reason, SUM(occurrences) FROM quarantine GROUP BY reason ORDER BY reason")?;
                let rows = st.query_map([], |r| {
                    Ok((QuarantineReason::parse(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as u64))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
