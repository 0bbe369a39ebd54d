//! Provisioning: devices heard from but not in the registry, their assignment to a
//! building, and the hand-over of their quarantined messages to ingest's replay.
//!
//! Ingest records every message of an unknown device as a *sighting* (first and last
//! seen, last topic and payload, detected format, message count) besides quarantining
//! it as `unknown_device`. A technician assigns the device ([`Registry::assign_device`]);
//! from then on ingest stores its messages, and its replay task takes the quarantined
//! ones ([`Registry::replayable_blocking`]), stores their samples and deletes the rows
//! ([`Registry::forget_quarantined_blocking`]). The dashboard and ingest may be
//! separate processes: the registry is the only thing they share. This module must
//! never delete a quarantined message that was not handed to the replay.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Device, DeviceKind, Registry, parse_id};
use crate::db::DbError;
use crate::ids::{BuildingId, DeviceId};
use crate::time::Timestamp;

/// Bytes of the last payload kept per pending device.
pub const PENDING_PAYLOAD_BYTES: usize = 4096;

/// One message of an unknown device, as ingest saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// The device named by the topic.
    pub device_id: DeviceId,
    /// When ingest received the message.
    pub received_at: Timestamp,
    /// MQTT topic.
    pub topic: String,
    /// The payload format of the decoder that recognised the topic (`native`, …).
    pub format: String,
    /// The payload (truncated to [`PENDING_PAYLOAD_BYTES`] when stored).
    pub payload: Vec<u8>,
}

/// A device waiting to be assigned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingDevice {
    /// Its id (MQTT topic level).
    pub device_id: DeviceId,
    /// First message.
    pub first_seen: Timestamp,
    /// Latest message.
    pub last_seen: Timestamp,
    /// Topic of the latest message.
    pub topic: String,
    /// Detected payload format.
    pub format: String,
    /// Latest payload, as text (lossy).
    pub last_payload: String,
    /// Messages received.
    pub messages: u64,
}

/// What a technician decides for a pending device.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The building it is installed in.
    pub building_id: BuildingId,
    /// What it is.
    pub kind: DeviceKind,
    /// Its payload format (`native`, …).
    pub format: String,
    /// The room it measures (air-quality sensors), empty otherwise.
    pub room: String,
}

/// The outcome of [`Registry::assign_device`].
#[derive(Debug, Clone, PartialEq)]
pub enum AssignOutcome {
    /// Assigned: the device as now registered.
    Assigned(Device),
    /// No such building.
    UnknownBuilding,
    /// The device is neither pending nor a registered device without building.
    NotPending,
}

/// A quarantined message of a device that is now registered, for replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayableMessage {
    /// Quarantine row id.
    pub id: i64,
    /// First reception: the timestamp of readings without `ts`.
    pub received_at: Timestamp,
    /// Latest reception.
    pub last_received_at: Timestamp,
    /// MQTT topic.
    pub topic: String,
    /// The device.
    pub device_id: DeviceId,
    /// The device's registered format.
    pub format: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A [`ReplayableMessage`] from a row `q.id, q.received_at, q.last_received_at,
/// q.topic, q.device_id, d.format, q.payload` (quarantine joined with devices).
pub(crate) fn replayable_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReplayableMessage> {
    Ok(ReplayableMessage {
        id: r.get(0)?,
        received_at: Timestamp(r.get(1)?),
        last_received_at: Timestamp(r.get(2)?),
        topic: r.get(3)?,
        device_id: parse_id(r, 4)?,
        format: r.get(5)?,
        payload: r.get(6)?,
    })
}

impl Registry {
    /// Records sightings of unknown devices (one transaction). A device registered
    /// meanwhile is not recorded.
    pub fn record_sightings_blocking(&self, sightings: &[Sighting]) -> Result<(), DbError> {
        if sightings.is_empty() {
            return Ok(());
        }
        self.db().call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            self.record_sightings_in(&tx, sightings)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records sightings of unknown devices within the caller's transaction on `c` (a
    /// connection to this registry's file). A device registered meanwhile is not
    /// recorded.
    pub fn record_sightings_in(
        &self,
        c: &rusqlite::Connection,
        sightings: &[Sighting],
    ) -> Result<(), DbError> {
        if sightings.is_empty() {
            return Ok(());
        }
        let mut st = c.prepare_cached(
            "INSERT INTO pending_devices (device_id, first_seen, last_seen, topic, format, last_payload, messages)
                     SELECT ?1, ?2, ?2, ?3, ?4, ?5, 1
                     WHERE NOT EXISTS (SELECT 1 FROM devices WHERE id = ?1)
                     ON CONFLICT (device_id) DO UPDATE SET
                       messages = messages + 1,
                       first_seen = MIN(first_seen, excluded.first_seen),
                       last_seen = MAX(last_seen, excluded.last_seen),
                       topic = CASE WHEN excluded.last_seen >= last_seen THEN excluded.topic ELSE topic END,
                       format = CASE WHEN excluded.last_seen >= last_seen THEN excluded.format ELSE format END,
                       last_payload = CASE WHEN excluded.last_seen >= last_seen THEN excluded.last_payload ELSE last_payload END",
        )?;
        for s in sightings {
            let kept = &s.payload[..s.payload.len().min(PENDING_PAYLOAD_BYTES)];
            st.execute(params![
                s.device_id.as_str(),
                s.received_at.0,
                s.topic,
                s.format,
                kept
            ])?;
        }
        Ok(())
    }

    /// Devices waiting to be assigned, most recently heard first.
    pub async fn pending_devices(&self) -> Result<Vec<PendingDevice>, DbError> {
        self.db()
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT device_id, first_seen, last_seen, topic, format, last_payload, messages
                     FROM pending_devices p
                     WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = p.device_id)
                     ORDER BY last_seen DESC, device_id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(PendingDevice {
                        device_id: parse_id(r, 0)?,
                        first_seen: Timestamp(r.get(1)?),
                        last_seen: Timestamp(r.get(2)?),
                        topic: r.get(3)?,
                        format: r.get(4)?,
                        last_payload: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(5)?)
                            .into_owned(),
                        messages: r.get::<_, i64>(6)?.max(0) as u64,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Assigns a pending device (or a registered one still without building) to a
    /// building, in one transaction: the device is registered and leaves the pending
    /// list. Ingest's replay then stores its quarantined messages.
    pub async fn assign_device(
        &self,
        id: &DeviceId,
        assignment: &Assignment,
    ) -> Result<AssignOutcome, DbError> {
        let (device, a) = (id.clone(), assignment.clone());
        let done = self
            .db()
            .call(move |c| {
                let id = device;
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let building_exists = tx
                    .query_row(
                        "SELECT 1 FROM buildings WHERE id = ?1",
                        [a.building_id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if !building_exists {
                    return Ok(Err(AssignOutcome::UnknownBuilding));
                }
                let pending = tx
                    .query_row(
                        "SELECT 1 FROM pending_devices WHERE device_id = ?1",
                        [id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                let unassigned: Option<Option<String>> = tx
                    .query_row(
                        "SELECT building_id FROM devices WHERE id = ?1",
                        [id.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let allowed = match &unassigned {
                    None => pending,
                    Some(building) => building.is_none(),
                };
                if !allowed {
                    return Ok(Err(AssignOutcome::NotPending));
                }
                tx.execute(
                    "INSERT INTO devices (id, building_id, kind, format, room, label, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, '', ?6)
                     ON CONFLICT (id) DO UPDATE SET building_id = excluded.building_id,
                       kind = excluded.kind, format = excluded.format, room = excluded.room",
                    params![
                        id.as_str(),
                        a.building_id.as_str(),
                        a.kind.as_str(),
                        a.format,
                        a.room,
                        Timestamp::now().0
                    ],
                )?;
                tx.execute(
                    "UPDATE devices SET last_seen = (SELECT last_seen FROM pending_devices WHERE device_id = ?1)
                     WHERE id = ?1 AND last_seen IS NULL",
                    [id.as_str()],
                )?;
                tx.execute(
                    "DELETE FROM pending_devices WHERE device_id = ?1",
                    [id.as_str()],
                )?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?;
        if let Err(outcome) = done {
            return Ok(outcome);
        }
        let (r, id) = (self.clone(), id.clone());
        let device = tokio::task::spawn_blocking(move || r.device_for_ingest_blocking(&id))
            .await
            .map_err(|e| DbError::Task(e.to_string()))??;
        Ok(device.map_or(AssignOutcome::NotPending, AssignOutcome::Assigned))
    }

    /// Up to `limit` quarantined `unknown_device` messages whose device is now
    /// registered, oldest first (blocking: for ingest's replay task).
    pub fn replayable_blocking(&self, limit: usize) -> Result<Vec<ReplayableMessage>, DbError> {
        self.db().call_blocking(move |c| {
            let mut st = c.prepare_cached(
                "SELECT q.id, q.received_at, q.last_received_at, q.topic, q.device_id, d.format, q.payload
                 FROM quarantine q JOIN devices d ON d.id = q.device_id
                 WHERE q.reason = 'unknown_device'
                 ORDER BY q.received_at, q.id LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], replayable_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Deletes quarantine rows once their content was replayed (blocking).
    pub fn forget_quarantined_blocking(&self, ids: &[i64]) -> Result<u64, DbError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = ids.to_vec();
        self.db().call_blocking(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut n = 0;
            {
                let mut st = tx.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?;
                for id in &ids {
                    n += st.execute([id])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }
}
